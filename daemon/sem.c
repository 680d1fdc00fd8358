/* sem.c: named semaphores (sem.acquire / sem.release).
 *
 * A semaphore holds `capacity` units (set by its first user). Requests are
 * served strictly in arrival order: while the request at the head does not
 * fit, nobody behind it is served, so a large request is never starved by
 * small ones (x/sync/semaphore). Grants, tokens and owner_died work as for
 * mutexes (rwmutex.c). All under names_lock. */
#include <stdlib.h>

#include "gorod.h"

struct nsem {
	int64_t capacity, used;
	struct grant *holders;
	bool owner_died;
	int64_t died_ns;     /* when owner_died was set */
	struct nwait *queue;
};

struct grant *nsem_holders(void *prim)
{
	return ((struct nsem *)prim)->holders;
}

static void maybe_drop(struct nsem *m)
{
	if (!m->holders && !m->queue && !m->owner_died)
		names_drop(PRIM_SEM, m);
}

static void grant_queue(struct nsem *m)
{
	bool died = m->owner_died, granted = false;

	while (m->queue && m->capacity - m->used >= m->queue->n) {
		struct nwait *nw = m->queue;
		struct grant *g;

		nwait_unlink(&m->queue, nw);
		g = grant_new(nw->s, PRIM_SEM, m, &m->holders, false, nw->n, nw->since);
		if (!g) {
			nwait_complete(nw, -ENOMEM);
			continue;
		}
		m->used += nw->n;
		nw->token = g->token;
		nw->owner_died = died;
		granted = true;
		nwait_complete(nw, 0);
	}
	if (granted)
		m->owner_died = false;
}

int nsem_acquire(struct req *r)
{
	const struct args *a = &r->a;
	struct nsem *m = names_make(PRIM_SEM, a->name, a->name_len, sizeof *m, r->s);
	int64_t n = a->n > 0 ? a->n : 1;
	struct grant *g;

	if (!m)
		return -ENOMEM;
	if (m->capacity == 0)
		m->capacity = a->capacity > 0 ? a->capacity : 1;
	else if (a->capacity > 0 && a->capacity != m->capacity)
		return -EINVAL; /* dispatch.c words it */
	if (n > m->capacity) {
		maybe_drop(m);
		return -EINVAL;
	}
	if (!m->queue && m->capacity - m->used >= n) {
		if (!(g = grant_new(r->s, PRIM_SEM, m, &m->holders, false, n, 0))) {
			maybe_drop(m);
			return -ENOMEM;
		}
		m->used += n;
		r->nw.token = g->token;
		r->nw.owner_died = m->owner_died;
		m->owner_died = false;
		return 0;
	}
	if (a->try_ || a->timeout_ms == 0)
		return -EBUSY;
	r->nw.kind = PRIM_SEM;
	r->nw.prim = m;
	r->nw.s = r->s;
	r->nw.n = n;
	r->nw.since = rt_now();
	nwait_enqueue(&m->queue, &r->nw);
	return 1;
}

int64_t nsem_capacity(const char *name, size_t len)
{
	struct nsem *m = names_get(PRIM_SEM, name, len, sizeof *m, false);
	return m ? m->capacity : 0;
}

static void release(struct nsem *m, struct grant *g)
{
	m->used -= g->n;
	grant_free(&m->holders, g);
	grant_queue(m);
	maybe_drop(m);
}

int nsem_release(struct session *s, const struct args *a)
{
	struct nsem *m = names_get(PRIM_SEM, a->name, a->name_len, sizeof *m, false);
	struct grant *g = m ? grant_find(m->holders, s, a->token) : NULL;

	if (!g)
		return GORO_ENOTLOCKED;
	release(m, g);
	return 0;
}

void nsem_abandon(struct nwait *nw)
{
	struct nsem *m = nw->prim;

	nwait_unlink(&m->queue, nw);
	grant_queue(m); /* a big request leaving the head lets small ones in */
	maybe_drop(m);
}

void nsem_release_dead(struct grant *g)
{
	struct nsem *m = g->prim;

	m->owner_died = true;
	m->died_ns = rt_now();
	release(m, g);
}

/* The sweeper forgets a semaphore whose owner died and that nobody used
 * since, after OWNER_DIED_KEEP_NS: the mark is kept for the next user that
 * long, and memory does not grow with every name whose holder crashed. */
bool nsem_expired(void *prim, int64_t now)
{
	struct nsem *m = prim;

	if (m->owner_died && !m->holders && !m->queue && now - m->died_ns > OWNER_DIED_KEEP_NS) {
		m->owner_died = false;
		return true;
	}
	return false;
}
