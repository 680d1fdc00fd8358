/* names.c: the registry of named primitives.
 *
 * One open hash table per kind (WaitGroups, mutexes and semaphores have
 * separate namespaces), chained, keyed by the name's bytes with FNV-1a,
 * doubled when the load passes 1 and halved when it falls under 1/8, so
 * its memory follows the names in use, not the names ever used. Each entry
 * is the primitive itself: a header (struct name_hdr) followed by the
 * kind's own struct and the name's bytes. A name made for a session is
 * charged to its user until it is forgotten (quota.c). All under
 * names_lock. */
#include <stdlib.h>
#include <string.h>

#include "quota.h"

struct name_hdr {
	struct name_hdr *next;
	uint64_t hash;
	enum prim_kind kind;
	size_t len;
	char *name;          /* NUL-terminated copy, after the primitive */
	struct quota *payer; /* the user it is charged to, or NULL */
	/* the primitive follows, aligned */
} __attribute__((aligned(16)));

struct table {
	struct name_hdr **b;
	size_t nb, n;
};

struct rt_mutex names_lock;
static struct table tables[PRIM_KINDS];
static uint64_t tokens;

uint64_t token_next(void)
{
	return ++tokens;
}

static uint64_t fnv1a(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct name_hdr *hdr_of(void *prim)
{
	return (struct name_hdr *)prim - 1;
}

const char *names_name(void *prim)
{
	return hdr_of(prim)->name;
}

size_t names_count(enum prim_kind kind)
{
	return tables[kind].n;
}

static int resize(struct table *t, size_t nb)
{
	struct name_hdr **b = calloc(nb, sizeof *b);

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nb; i++) {
		struct name_hdr *h = t->b[i], *next;
		for (; h; h = next) {
			next = h->next;
			h->next = b[h->hash & (nb - 1)];
			b[h->hash & (nb - 1)] = h;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

/* The lookup, and the making of a name absent and create, charged to payer. */
static void *get(enum prim_kind kind, const char *name, size_t len, size_t size, bool create,
		 struct quota *payer)
{
	struct table *t = &tables[kind];
	uint64_t hash = fnv1a(name, len);
	struct name_hdr *h;

	if (t->nb) {
		for (h = t->b[hash & (t->nb - 1)]; h; h = h->next)
			if (h->hash == hash && h->len == len && memcmp(h->name, name, len) == 0)
				return h + 1;
	}
	if (!create)
		return NULL;
	if (t->n + 1 > t->nb && resize(t, t->nb ? t->nb * 2 : 64) < 0)
		return NULL;
	size = (size + 15) & ~(size_t)15;
	h = calloc(1, sizeof *h + size + len + 1);
	if (!h)
		return NULL;
	h->hash = hash;
	h->kind = kind;
	h->len = len;
	h->name = (char *)(h + 1) + size;
	memcpy(h->name, name, len);
	h->next = t->b[hash & (t->nb - 1)];
	t->b[hash & (t->nb - 1)] = h;
	t->n++;
	h->payer = payer;
	quota_name_charge(payer);
	return h + 1;
}

void *names_get(enum prim_kind kind, const char *name, size_t len, size_t size,
		bool create)
{
	return get(kind, name, len, size, create, NULL);
}

void *names_make(enum prim_kind kind, const char *name, size_t len, size_t size,
		 struct session *s)
{
	return get(kind, name, len, size, true, s ? s->quota : NULL);
}

void names_charge(enum prim_kind kind, const char *name, size_t len, struct quota *q)
{
	void *prim = get(kind, name, len, 0, false, NULL);

	if (prim && !hdr_of(prim)->payer) {
		hdr_of(prim)->payer = q;
		quota_name_charge(q);
	}
}

void names_sweep(enum prim_kind kind, bool (*expired)(void *prim, int64_t now), int64_t now)
{
	struct table *t = &tables[kind];

	for (size_t i = 0; i < t->nb; i++) {
		struct name_hdr **pp = &t->b[i];
		while (*pp) {
			struct name_hdr *h = *pp;
			if (expired(h + 1, now)) {
				*pp = h->next;
				t->n--;
				quota_name_uncharge(h->payer);
				free(h);
			} else {
				pp = &h->next;
			}
		}
	}
}

void names_drop(enum prim_kind kind, void *prim)
{
	struct table *t = &tables[kind];
	struct name_hdr *h = hdr_of(prim), **pp;

	for (pp = &t->b[h->hash & (t->nb - 1)]; *pp; pp = &(*pp)->next) {
		if (*pp == h) {
			*pp = h->next;
			t->n--;
			quota_name_uncharge(h->payer);
			free(h);
			break;
		}
	}
	if (t->nb > 64 && t->n < t->nb / 8)
		resize(t, t->nb / 2);
}
