/* deadlock.c: refusing a wait that would close a cycle (EDEADLK, as fcntl
 * locks do).
 *
 * The wait-for graph has sessions as nodes. A session waiting for mutex M
 * (one of its requests is queued there) has an edge to every session that
 * holds M and to every session queued on M ahead of it: those must all move
 * before it does. A request from s that would wait closes a cycle exactly
 * when s is reachable from one of the sessions it would wait for; then
 * nobody in the cycle can ever move, so the request fails at once instead.
 * This covers two sessions crossing two locks, a session re-locking what it
 * holds for writing, upgrading a read lock, and a recursive read lock while
 * a writer waits (the writer waits for the holder, the holder would wait
 * behind the writer).
 *
 * Only mutex waits are edges: a semaphore or WaitGroup wait can be ended by
 * any of several parties, so a cycle through one is not a certain deadlock;
 * the leak monitor reasons about those. The walk is iterative (the graph
 * may be as deep as there are sessions) and visits each session once. All
 * under names_lock. */
#include <stdlib.h>

#include "gorod.h"

struct walk {
	struct session **v;
	size_t n, cap;
	bool oom;
};

static uint64_t mark_gen;

static bool push(struct session *x, void *arg)
{
	struct walk *w = arg;

	if (x->dl_mark == mark_gen)
		return false;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct session **v = realloc(w->v, cap * sizeof *v);
		if (!v) {
			w->oom = true;
			return true;
		}
		w->v = v;
		w->cap = cap;
	}
	w->v[w->n++] = x;
	return false;
}

bool deadlock_would_cycle(struct session *s, void *m, struct nwait *nw)
{
	struct walk w = { 0 };
	bool cycle = false;

	mark_gen++;
	nmutex_each_blocker(m, nw, push, &w);
	while (!cycle && !w.oom && w.n > 0) {
		struct session *x = w.v[--w.n];

		if (x == s) {
			cycle = true;
			break;
		}
		if (x->dl_mark == mark_gen)
			continue;
		x->dl_mark = mark_gen;
		for (struct req *r = x->reqs; r && !w.oom; r = r->next)
			if (r->nw.kind == PRIM_MUTEX && !r->nw.done)
				nmutex_each_blocker(r->nw.prim, &r->nw, push, &w);
	}
	free(w.v);
	return cycle;
}
