/* rwmutex.c: rt_rwmutex, Go's sync.RWMutex semantics, phase-fair.
 *
 * Any number of readers or one writer. Writers are served first come,
 * first served among themselves. The writer at the head of the writers'
 * queue, while readers hold the lock, is *pending*: from then on new
 * readers wait (a waiting writer blocks new readers, so writers never
 * starve), and it gets the lock when the last reader leaves. When a writer
 * unlocks, every reader that waited during its turn is let in together,
 * before the next writer, which becomes pending behind them (so readers
 * never starve either). This is what Go's RWMutex does; the grants go in
 * phases, a writer, then the readers that queued behind it, and so on.
 *
 * Rejected: one strict FIFO queue for readers and writers alike (a reader
 * that finds anyone queued must queue too). Under a steady mix it is a
 * convoy: with a writer always somewhere in the queue, every operation
 * parks, which bench/ measured at 5-23x Go's cost per operation. gorod's
 * named mutexes (daemon/rwmutex.c) are strictly FIFO, where fairness
 * between processes matters more and a round trip costs microseconds.
 *
 * state: reader count | WRITER (held) | PENDING (the head writer waits for
 * readers) | WAITERS (someone is queued: unlock must take the slow path).
 * Fast paths: rlock adds a reader while neither WRITER nor PENDING is set;
 * lock sets WRITER on a state of 0. Everything else changes under q.lock,
 * which guards both queues: q for writers (w->data marks the pending one)
 * and rq for readers. settle_unlock()
 * makes every grant the state allows, and wakes the grantees after the
 * lock is released (touching nothing of rw after a wake that succeeded: a
 * woken goroutine may return and free rw). */
#include "internal.h"

#define RW_WRITER (1ULL << 62)
#define RW_PENDING (1ULL << 61)
#define RW_WAITERS (1ULL << 60)
#define RW_READERS ((1ULL << 60) - 1)
#define W_PENDING 1u /* waiter data: this writer is the pending one */
#define W_TAKEN 2u   /* waiter data: settle_unlock took it off its queue */
#define W_RETRY 1    /* wake result: not granted, run the acquire again */

/* q.lock held, and released here: grants what the state allows: the
 * pending writer once readers are gone; when no writer holds or pends,
 * every waiting reader, then the head writer (granted, or made pending
 * behind those readers). A grant whose wake fails (the waiter is leaving
 * on a deadline or cancel) is undone and the state settled again; rw is
 * still alive then, since that waiter is still inside rw_acquire. */
static void settle_unlock(struct rt_rwmutex *rw)
{
	for (;;) {
		struct rt_waiter *wake = NULL, **tail = &wake, *w, *grant, *retry;
		struct rt_waiter *head_writer = rw->q.head;
		unsigned long long s, ns, undo = 0;
		uint32_t nrel, undo_retry = 0;

		s = atomic_load(&rw->state);
		do {
			grant = retry = NULL;
			nrel = 0;
			ns = s;
			if ((s & RW_WRITER) || rw->nretry) {
				/* the holder, or the writer woken to retry, settles */
			} else if (s & RW_PENDING) {
				if (!(s & RW_READERS)) {
					grant = head_writer;
					ns = (ns & ~RW_PENDING) | RW_WRITER;
				}
			} else {
				nrel = rw->nrq;
				ns += nrel;
				if (head_writer && (ns & RW_READERS))
					retry = head_writer;
				else if (head_writer)
					grant = head_writer;
				if (grant)
					ns |= RW_WRITER;
			}
			struct rt_waiter *out = grant ? grant : retry;
			bool writers_left = head_writer && (head_writer != out || head_writer->next);
			bool readers_left = !nrel && rw->nrq;
			bool busy = writers_left || readers_left || retry || rw->nretry;
			ns = busy ? ns | RW_WAITERS : ns & ~RW_WAITERS;
		} while (ns != s && !atomic_compare_exchange_weak(&rw->state, &s, ns));

		if (nrel) {
			while ((w = rt_waitq_pop(&rw->rq))) {
				w->data |= W_TAKEN; /* counted out of nrq here */
				*tail = w;
				tail = &w->next;
			}
			rw->nrq = 0;
		}
		if (grant || retry) {
			w = grant ? grant : retry;
			rt_waitq_remove(&rw->q, w);
			/* No longer the pending one: if its wake fails, it must
			 * not clear a PENDING bit that is someone else's by then. */
			w->data &= ~W_PENDING;
			*tail = w;
			tail = &w->next;
		}
		if (retry)
			rw->nretry++;
		rt_spin_unlock(&rw->q.lock);

		while ((w = wake)) {
			bool writer = w == grant, retrying = w == retry;
			wake = w->next; /* w may be gone once woken */
			if (!rt_waitq_wake(w, retrying ? W_RETRY : 0)) {
				if (retrying)
					undo_retry++;
				else
					undo += writer ? RW_WRITER : 1;
			}
		}
		if (!undo && !undo_retry)
			return;
		rt_spin_lock(&rw->q.lock);
		atomic_fetch_sub(&rw->state, undo);
		rw->nretry -= undo_retry;
	}
}

int rt_rwmutex_tryrlock(struct rt_rwmutex *rw)
{
	unsigned long long s = atomic_load_explicit(&rw->state, memory_order_relaxed);

	while (!(s & (RW_WRITER | RW_PENDING)))
		if (atomic_compare_exchange_weak_explicit(&rw->state, &s, s + 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return 0;
	return -EBUSY;
}

int rt_rwmutex_trylock(struct rt_rwmutex *rw)
{
	unsigned long long s = 0;

	return atomic_compare_exchange_strong_explicit(&rw->state, &s, RW_WRITER,
						       memory_order_acquire,
						       memory_order_relaxed) ? 0 : -EBUSY;
}

/* A contended lock is usually held for a few instructions by a goroutine
 * on another CPU: retrying for a moment costs less than parking and being
 * woken (as sync.Mutex does; mutex.c has the same rule). */
static bool spin_for(struct rt_rwmutex *rw, int (*try)(struct rt_rwmutex *))
{
	for (int spins = 0; rt_can_spin(spins); spins++) {
		for (int i = 0; i < 30; i++)
			cpu_relax();
		if (try(rw) == 0)
			return true;
	}
	return false;
}

int rt_rwmutex_rlock(struct rt_rwmutex *rw, int64_t deadline)
{
	struct rt_waiter w = { 0 };
	unsigned long long s;
	int r;

	if (likely(rt_rwmutex_tryrlock(rw) == 0) || spin_for(rw, rt_rwmutex_tryrlock))
		return 0;
	rt_spin_lock(&rw->q.lock);
	s = atomic_load(&rw->state);
	for (;;) {
		if (!(s & (RW_WRITER | RW_PENDING))) {
			if (atomic_compare_exchange_weak(&rw->state, &s, s + 1)) {
				rt_spin_unlock(&rw->q.lock);
				return 0;
			}
		} else if (atomic_compare_exchange_weak(&rw->state, &s, s | RW_WAITERS)) {
			break;
		}
	}
	rw->nrq++;
	r = rt_waitq_park_under(&rw->rq, &rw->q.lock, &w, 0, deadline, "rwmutex.rlock", rw);
	if (r < 0) {
		if (!(w.data & W_TAKEN))
			rw->nrq--; /* it took itself off rq */
		settle_unlock(rw); /* only WAITERS may need clearing */
	}
	return r;
}

int rt_rwmutex_lock(struct rt_rwmutex *rw, int64_t deadline)
{
	struct rt_waiter w = { 0 };
	unsigned long long s, ns;
	unsigned flags = 0;
	int r;

	if (likely(rt_rwmutex_trylock(rw) == 0) || spin_for(rw, rt_rwmutex_trylock))
		return 0;
	rt_spin_lock(&rw->q.lock);
	for (;;) {
		/* A writer woken to retry was at the head: it is still first.
		 * A newcomer is first only if no writer is queued or retrying. */
		bool first = (flags & RT_WQ_FRONT) || (rt_waitq_empty(&rw->q) && !rw->nretry);

		s = atomic_load(&rw->state);
		do {
			if (first && !(s & (RW_WRITER | RW_PENDING | RW_READERS)))
				ns = s | RW_WRITER;
			else /* first in line while readers hold: pending */
				ns = s | RW_WAITERS |
				     (first && !(s & (RW_WRITER | RW_PENDING)) ? RW_PENDING : 0);
		} while (!atomic_compare_exchange_weak(&rw->state, &s, ns));
		if ((ns & RW_WRITER) && !(s & RW_WRITER)) {
			settle_unlock(rw); /* WAITERS may need clearing */
			return 0;
		}
		w.data = (ns & RW_PENDING) && !(s & RW_PENDING) ? W_PENDING : 0;
		r = rt_waitq_park_under(&rw->q, &rw->q.lock, &w, flags, deadline,
					"rwmutex.lock", rw);
		if (r == 0)
			return 0;
		if (r < 0)
			break;
		/* Woken to retry: readers came in meanwhile; in again, first. */
		rt_spin_lock(&rw->q.lock);
		rw->nretry--;
		flags |= RT_WQ_FRONT;
	}
	/* Leaving while pending lets the readers behind in. */
	if (w.data & W_PENDING)
		atomic_fetch_and(&rw->state, ~RW_PENDING);
	settle_unlock(rw);
	return r;
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
		settle_unlock(rw);
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
	settle_unlock(rw);
	return 0;
}
