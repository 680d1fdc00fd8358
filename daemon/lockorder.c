/* lockorder.c: lock-order inversions, reported before they deadlock.
 *
 * Like the kernel's lockdep, applied to named mutexes: whenever a party is
 * granted mutex B while it holds mutex A, the edge A -> B is recorded with
 * who did it. An edge whose reverse B -> A was seen before (another time,
 * maybe another party) means the two locks are taken in both orders
 * somewhere: two parties doing so at once would deadlock, so it is a
 * finding for the leak monitor, with both acquisitions as its history.
 * Only direct inversions are checked (not longer cycles through three
 * locks), which is what catches the common mistake at the cost of one
 * lookup per lock held. Edges are kept in a hash of name pairs, at most
 * MAX_EDGES of them (then no new edge is recorded). All under names_lock. */
#include <stdlib.h>
#include <string.h>

#include "task.h"

#define MAX_EDGES 65536
#define BUCKETS 4096

struct edge {
	struct edge *next;
	uint64_t hash;
	char *from, *to;   /* owned */
	char *who;         /* "session 3 (pid 17) took A, then B"; owned */
};

static struct edge *edges[BUCKETS];
static size_t nedges;

static uint64_t pair_hash(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 1099511628211ULL;
	return h;
}

static struct edge *edge_find(const char *from, const char *to)
{
	uint64_t h = pair_hash(from, to);

	for (struct edge *e = edges[h % BUCKETS]; e; e = e->next)
		if (e->hash == h && strcmp(e->from, from) == 0 && strcmp(e->to, to) == 0)
			return e;
	return NULL;
}

/* Who s is, for the history: a task, or a session and its process. */
static char *who(struct session *s, const char *a, const char *b)
{
	char *w = NULL, comm[32] = "", path[64];
	struct task *t = session_task(s);
	FILE *f;
	int n;

	if (!t) {
		snprintf(path, sizeof path, "/proc/%d/comm", (int)s->pid);
		if ((f = fopen(path, "re"))) {
			if (fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
	}
	n = t ? asprintf(&w, "task %llu took %s, then %s", (unsigned long long)t->id, a, b)
	      : asprintf(&w, "session %llu (pid %d%s%s) took %s, then %s",
			 (unsigned long long)s->id, (int)s->pid, comm[0] ? ", " : "", comm, a, b);
	return n < 0 ? NULL : w;
}

void lockorder_acquired(struct session *s, struct grant *g)
{
	const char *b = names_name(g->prim);

	for (struct grant *h = s->grants; h; h = h->snext) {
		if (h == g || h->kind != PRIM_MUTEX || h->prim == g->prim)
			continue;
		const char *a = names_name(h->prim);
		if (edge_find(a, b))
			continue; /* seen: its reverse was checked then */
		struct edge *rev = edge_find(b, a);
		struct edge *e = nedges < MAX_EDGES ? calloc(1, sizeof *e) : NULL;
		char *now = who(s, a, b);
		if (rev && now)
			leak_lock_order(a, b, rev->who ? rev->who : "?", now);
		if (!e || !(e->from = strdup(a)) || !(e->to = strdup(b))) {
			if (e)
				free(e->from);
			free(e);
			free(now);
			continue;
		}
		e->who = now;
		e->hash = pair_hash(a, b);
		e->next = edges[e->hash % BUCKETS];
		edges[e->hash % BUCKETS] = e;
		nedges++;
	}
}
