/* rwmutex.c: rt_rwmutex, sync.RWMutex with first-come, first-served grants.
 *
 * state: WRITER | WAITERS | reader count. Without waiters, rlock is one
 * compare-and-swap that adds a reader, lock one that sets WRITER from zero.
 * As soon as anyone waits, WAITERS is set and every newcomer queues, readers
 * included: so a waiting writer blocks new readers (no writer starvation),
 * and grants go in arrival order: the writer at the head alone, or the run
 * of readers at the head together. Grants are handed over: the releaser sets
 * the state on the waiter's behalf before waking it, so nobody can slip in
 * between.
 *
 * WAITERS is set and cleared only with q.lock held, and grants are made only
 * under it; fast paths never touch a state with WAITERS set, except the
 * readers' release (a decrement), which is why grant_unlock re-reads the
 * state. */
#include "internal.h"

#define RW_WRITER (1ULL << 62)
#define RW_WAITERS (1ULL << 61)
#define RW_READERS ((1ULL << 61) - 1)
#define MODE_READ 1
#define MODE_WRITE 2

/* q.lock held, and released here: grants to the head of the queue what the
 * state allows (the writer alone, or the run of readers), then wakes the
 * grantees. The wakes come after the unlock, and nothing of rw is touched
 * after the wakes unless one failed: a woken goroutine may return and free
 * rw. A failed wake (the waiter is leaving on a deadline or a cancel) means
 * its grant was never taken: it is undone under the lock and the queue is
 * granted again. rw is then still alive, since that waiter is still inside
 * rw_acquire. */
static void grant_unlock(struct rt_rwmutex *rw)
{
	for (;;) {
		struct rt_waiter *head = NULL, **tail = &head, *w;
		unsigned long long undo = 0;

		while ((w = rw->q.head)) {
			unsigned long long s = atomic_load(&rw->state);
			if (s & RW_WRITER)
				break;
			if (w->data == MODE_WRITE && (s & RW_READERS))
				break;
			rt_waitq_remove(&rw->q, w);
			atomic_fetch_add(&rw->state, w->data == MODE_WRITE ? RW_WRITER : 1);
			*tail = w;
			tail = &w->next;
			if (w->data == MODE_WRITE)
				break;
		}
		if (rt_waitq_empty(&rw->q))
			atomic_fetch_and(&rw->state, ~RW_WAITERS);
		rt_spin_unlock(&rw->q.lock);

		while ((w = head)) {
			unsigned long long grant = w->data == MODE_WRITE ? RW_WRITER : 1;
			head = w->next; /* w may be gone once woken */
			if (!rt_waitq_wake(w, 0))
				undo += grant;
		}
		if (!undo)
			return;
		rt_spin_lock(&rw->q.lock);
		atomic_fetch_sub(&rw->state, undo);
	}
}

static bool try_fast(struct rt_rwmutex *rw, int mode)
{
	unsigned long long s = atomic_load_explicit(&rw->state, memory_order_relaxed);

	if (mode == MODE_WRITE) {
		s = 0;
		return atomic_compare_exchange_strong_explicit(&rw->state, &s, RW_WRITER,
							       memory_order_acquire,
							       memory_order_relaxed);
	}
	while (!(s & (RW_WRITER | RW_WAITERS)))
		if (atomic_compare_exchange_weak_explicit(&rw->state, &s, s + 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
	return false;
}

static int rw_acquire(struct rt_rwmutex *rw, int mode, int64_t deadline)
{
	struct rt_waiter w = { .data = (uintptr_t)mode };
	int r;

	if (likely(try_fast(rw, mode)))
		return 0;
	rt_spin_lock(&rw->q.lock);
	/* Set WAITERS first: from then on the state only changes under
	 * q.lock (or by a reader leaving), so the check below holds. */
	atomic_fetch_or(&rw->state, RW_WAITERS);
	if (rt_waitq_empty(&rw->q)) {
		unsigned long long s = atomic_load(&rw->state);
		bool free = mode == MODE_WRITE ? !(s & (RW_WRITER | RW_READERS))
					       : !(s & RW_WRITER);
		if (free) {
			atomic_fetch_add(&rw->state, mode == MODE_WRITE ? RW_WRITER : 1);
			atomic_fetch_and(&rw->state, ~RW_WAITERS);
			rt_spin_unlock(&rw->q.lock);
			return 0;
		}
	}
	r = rt_waitq_park(&rw->q, &w, false, deadline,
			  mode == MODE_WRITE ? "rwmutex.lock" : "rwmutex.rlock", rw);
	if (r < 0) /* leaving may let those behind us in (readers behind a writer) */
		grant_unlock(rw);
	return r;
}

int rt_rwmutex_rlock(struct rt_rwmutex *rw, int64_t deadline)
{
	return rw_acquire(rw, MODE_READ, deadline);
}

int rt_rwmutex_lock(struct rt_rwmutex *rw, int64_t deadline)
{
	return rw_acquire(rw, MODE_WRITE, deadline);
}

int rt_rwmutex_tryrlock(struct rt_rwmutex *rw)
{
	return try_fast(rw, MODE_READ) ? 0 : -EBUSY;
}

int rt_rwmutex_trylock(struct rt_rwmutex *rw)
{
	return try_fast(rw, MODE_WRITE) ? 0 : -EBUSY;
}

int rt_rwmutex_runlock(struct rt_rwmutex *rw)
{
	unsigned long long s = atomic_load_explicit(&rw->state, memory_order_relaxed);

	do {
		if (!(s & RW_READERS) || (s & RW_WRITER))
			return GORO_ENOTLOCKED;
	} while (!atomic_compare_exchange_weak_explicit(&rw->state, &s, s - 1,
							memory_order_release,
							memory_order_relaxed));
	if ((s & RW_WAITERS) && ((s - 1) & RW_READERS) == 0) {
		rt_spin_lock(&rw->q.lock);
		grant_unlock(rw);
	}
	return 0;
}

int rt_rwmutex_unlock(struct rt_rwmutex *rw)
{
	unsigned long long s = RW_WRITER;

	if (likely(atomic_compare_exchange_strong_explicit(&rw->state, &s, 0,
							   memory_order_release,
							   memory_order_relaxed)))
		return 0;
	if (!(s & RW_WRITER))
		return GORO_ENOTLOCKED;
	rt_spin_lock(&rw->q.lock);
	atomic_fetch_and(&rw->state, ~RW_WRITER);
	grant_unlock(rw);
	return 0;
}
