/* rwmutex.c: named RWMutexes (mutex.lock / mutex.unlock).
 *
 * Go's semantics for a shared service: any number of readers or one
 * writer; requests are served first come, first served: once anyone
 * waits, a newcomer queues even if it could be granted (so a waiting
 * writer blocks new readers), and the run of readers at the head of the
 * queue is granted together. Every grant carries a fencing token (global
 * counter, so it increases per name even across forgetting an idle name).
 * A session that ends while holding a grant releases it and marks the
 * mutex: the next grant (the whole next batch of readers) is told
 * owner_died. A request that would close a wait-for cycle fails at once
 * with EDEADLK (deadlock.c). All under names_lock. */
#include <stdlib.h>

#include "gorod.h"

struct nmutex {
	struct grant *holders;
	int nreaders;
	bool writer;
	bool owner_died;
	int64_t died_ns;     /* when owner_died was set */
	struct nwait *queue;
};

static bool compatible(const struct nmutex *m, bool write)
{
	return write ? !m->writer && m->nreaders == 0 : !m->writer;
}

/* Forgets the mutex if it is back to its zero value. */
static void maybe_drop(struct nmutex *m)
{
	if (!m->holders && !m->queue && !m->owner_died)
		names_drop(PRIM_MUTEX, m);
}

/* A grant of m to s; asked_ns: when its request was queued (0: not). */
static struct grant *hold(struct nmutex *m, struct session *s, bool write, int64_t asked_ns)
{
	struct grant *g = grant_new(s, PRIM_MUTEX, m, &m->holders, write, 1, asked_ns);

	if (g) {
		if (write)
			m->writer = true;
		else
			m->nreaders++;
		lockorder_acquired(s, g);
	}
	return g;
}

struct grant *nmutex_holders(void *prim)
{
	return ((struct nmutex *)prim)->holders;
}

/* Grants what the head of the queue now allows, in order. */
static void grant_queue(struct nmutex *m)
{
	bool died = m->owner_died, granted = false;

	while (m->queue && compatible(m, m->queue->write)) {
		struct nwait *nw = m->queue;
		struct grant *g;

		nwait_unlink(&m->queue, nw);
		g = hold(m, nw->s, nw->write, nw->since);
		if (!g) {
			nwait_complete(nw, -ENOMEM);
			continue;
		}
		nw->token = g->token;
		nw->owner_died = died;
		granted = true;
		nwait_complete(nw, 0);
	}
	if (granted)
		m->owner_died = false;
}

int nmutex_lock(struct req *r)
{
	const struct args *a = &r->a;
	struct session *s = r->s;
	struct nmutex *m = names_make(PRIM_MUTEX, a->name, a->name_len, sizeof *m, s);
	struct grant *g;

	if (!m)
		return -ENOMEM;
	if (!m->queue && compatible(m, a->write)) {
		if (!(g = hold(m, s, a->write, 0))) {
			maybe_drop(m);
			return -ENOMEM;
		}
		r->nw.token = g->token;
		r->nw.owner_died = m->owner_died;
		m->owner_died = false;
		return 0;
	}
	r->nw.kind = PRIM_MUTEX;
	r->nw.prim = m;
	r->nw.s = s;
	r->nw.write = a->write;
	if (a->try_ || a->timeout_ms == 0)
		return -EBUSY; /* not waiting, so no cycle either */
	if (deadlock_would_cycle(s, m, NULL))
		return -EDEADLK;
	r->nw.since = rt_now();
	nwait_enqueue(&m->queue, &r->nw);
	return 1;
}

int nmutex_unlock(struct session *s, const struct args *a)
{
	struct nmutex *m = names_get(PRIM_MUTEX, a->name, a->name_len, sizeof *m, false);
	struct grant *g = m ? grant_find(m->holders, s, a->token) : NULL;

	if (!g)
		return GORO_ENOTLOCKED;
	if (g->write)
		m->writer = false;
	else
		m->nreaders--;
	grant_free(&m->holders, g);
	grant_queue(m);
	maybe_drop(m);
	return 0;
}

void nmutex_abandon(struct nwait *nw)
{
	struct nmutex *m = nw->prim;

	nwait_unlink(&m->queue, nw);
	grant_queue(m); /* a writer leaving the head lets the readers behind in */
	maybe_drop(m);
}

void nmutex_release_dead(struct grant *g)
{
	struct nmutex *m = g->prim;

	if (g->write)
		m->writer = false;
	else
		m->nreaders--;
	/* A reader cannot have left the guarded data half-updated: only a
	 * writer's death is passed on as owner_died. */
	if (g->write) {
		m->owner_died = true;
		m->died_ns = rt_now();
	}
	grant_free(&m->holders, g);
	grant_queue(m);
	maybe_drop(m);
}

/* The sessions a request on m waits for: the holders, and the requests
 * queued ahead of nw (all of the queue when nw is NULL: not queued yet).
 * Calls fn for each; stops and returns true when fn does. */
bool nmutex_each_blocker(void *prim, struct nwait *nw,
			 bool (*fn)(struct session *, void *), void *arg)
{
	struct nmutex *m = prim;

	for (struct grant *g = m->holders; g; g = g->next)
		if (fn(g->s, arg))
			return true;
	for (struct nwait *w = m->queue; w && w != nw; w = w->next)
		if (fn(w->s, arg))
			return true;
	return false;
}

size_t nmutex_waiters(void *prim)
{
	size_t n = 0;
	for (struct nwait *w = ((struct nmutex *)prim)->queue; w; w = w->next)
		n++;
	return n;
}

/* The sweeper forgets a mutex whose owner died and that nobody used
 * since, after OWNER_DIED_KEEP_NS: the mark is kept for the next user that
 * long, and memory does not grow with every name whose holder crashed. */
bool nmutex_expired(void *prim, int64_t now)
{
	struct nmutex *m = prim;

	if (m->owner_died && !m->holders && !m->queue && now - m->died_ns > OWNER_DIED_KEEP_NS) {
		m->owner_died = false;
		return true;
	}
	return false;
}
