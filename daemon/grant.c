/* grant.c: who holds what. A grant is one successful mutex.lock or
 * sem.acquire: it is linked both into its primitive's holders and into its
 * session's grants, so that either side can find it (an unlock by token;
 * a session that ends). All under names_lock.
 *
 * Every grant and every release passes here, so this is where the lock
 * metrics are taken (metrics.c): how long the request waited, and how
 * long the grant was held, whoever let go of it (an unlock, an unlock by
 * token, the holder's death). One clock read at each end. */
#include <stdlib.h>

#include "gorod.h"
#include "metrics.h"

static enum metrics_lock_kind lock_kind(const struct grant *g)
{
	if (g->kind == PRIM_SEM)
		return METRICS_SEM;
	return g->write ? METRICS_MUTEX : METRICS_RWMUTEX_READ;
}

struct grant *grant_new(struct session *s, enum prim_kind kind, void *prim,
			struct grant **holders, bool write, int64_t n, int64_t asked_ns)
{
	leak_changed();
	struct grant *g = calloc(1, sizeof *g);

	if (!g)
		return NULL;
	g->s = s;
	g->kind = kind;
	g->prim = prim;
	g->token = token_next();
	g->write = write;
	g->n = n;
	g->granted_ns = rt_now();
	metrics_lock_waited(lock_kind(g), asked_ns ? g->granted_ns - asked_ns : 0);
	/* Append to the holders (oldest first). */
	g->next = NULL;
	if (!*holders) {
		*holders = g;
		g->prev = g;
	} else {
		struct grant *tail = (*holders)->prev;
		tail->next = g;
		g->prev = tail;
		(*holders)->prev = g;
	}
	/* And to the session's grants. */
	g->snext = NULL;
	if (!s->grants) {
		s->grants = g;
		g->sprev = g;
	} else {
		struct grant *tail = s->grants->sprev;
		tail->snext = g;
		g->sprev = tail;
		s->grants->sprev = g;
	}
	return g;
}

void grant_free(struct grant **holders, struct grant *g)
{
	struct session *s = g->s;

	leak_changed();
	metrics_lock_held(lock_kind(g), rt_now() - g->granted_ns);
	if (g == *holders) {
		*holders = g->next;
		if (*holders)
			(*holders)->prev = g->prev;
	} else {
		g->prev->next = g->next;
		if (g->next)
			g->next->prev = g->prev;
		else
			(*holders)->prev = g->prev;
	}
	if (g == s->grants) {
		s->grants = g->snext;
		if (s->grants)
			s->grants->sprev = g->sprev;
	} else {
		g->sprev->snext = g->snext;
		if (g->snext)
			g->snext->sprev = g->sprev;
		else
			s->grants->sprev = g->sprev;
	}
	free(g);
}

struct grant *grant_find(struct grant *holders, struct session *s, uint64_t token)
{
	for (struct grant *g = holders; g; g = g->next)
		if (token ? g->token == token : g->s == s)
			return g;
	return NULL;
}

void nwait_abandon(struct nwait *nw, int result)
{
	switch (nw->kind) {
	case PRIM_MUTEX:
		nmutex_abandon(nw);
		break;
	case PRIM_SEM:
		nsem_abandon(nw);
		break;
	case PRIM_WG:
		nwg_abandon(nw);
		break;
	case PRIM_TASK:
	case PRIM_LOGS:
		task_nwait_abandon(nw);
		break;
	default:
		break;
	}
	nw->done = true;
	nw->result = result;
}

void holdings_release(struct session *s)
{
	while (s->grants) {
		struct grant *g = s->grants;
		if (g->kind == PRIM_MUTEX)
			nmutex_release_dead(g);
		else
			nsem_release_dead(g);
	}
	while (s->leases)
		nwg_lease_lost(s->leases);
}
