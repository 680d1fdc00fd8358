/* wg.c: rt_wg, sync.WaitGroup on the runtime's wait queues.
 *
 * state: the counter (low 32 bits, never negative) and WAITERS (bit 32,
 * set and cleared with q.lock held). add() is a compare-and-swap; the step
 * that brings the counter to zero while waiters exist is taken with q.lock
 * held, together with waking every waiter queued until then, so the counter
 * reaching zero and the release are one atomic step (see runtime.h). */
#include <limits.h>

#include "internal.h"

#define WG_COUNT 0xffffffffULL
#define WG_WAITERS (1ULL << 32)

/* q.lock held: takes every waiter off the queue, for waking once the lock
 * is released (nothing of wg may be touched after the first wake: the
 * woken goroutine may return and free a group on its stack). */
static struct rt_waiter *take_all_locked(struct rt_wg *wg)
{
	struct rt_waiter *head = NULL, **tail = &head, *w;

	while ((w = rt_waitq_pop(&wg->q))) {
		*tail = w;
		tail = &w->next;
	}
	return head;
}

static void wake_list(struct rt_waiter *w)
{
	while (w) {
		struct rt_waiter *next = w->next;
		rt_waitq_wake(w, 0); /* one that is leaving needs nothing */
		w = next;
	}
}

int rt_wg_add(struct rt_wg *wg, int64_t delta)
{
	unsigned long long s = atomic_load_explicit(&wg->state, memory_order_relaxed);
	bool locked = false;
	int64_t n;

	for (;;) {
		n = (int64_t)(s & WG_COUNT) + delta;
		if (n < 0) {
			if (locked)
				rt_spin_unlock(&wg->q.lock);
			return GORO_ENEGATIVE;
		}
		if (n > INT32_MAX) {
			if (locked)
				rt_spin_unlock(&wg->q.lock);
			return -ERANGE;
		}
		if (n == 0 && (s & WG_WAITERS) && !locked) {
			rt_spin_lock(&wg->q.lock);
			locked = true;
			s = atomic_load(&wg->state);
			continue;
		}
		unsigned long long ns = (s & ~WG_COUNT & ~(locked && n == 0 ? WG_WAITERS : 0)) |
					(unsigned long long)n;
		if (atomic_compare_exchange_weak_explicit(&wg->state, &s, ns,
							  memory_order_acq_rel,
							  memory_order_relaxed))
			break;
	}
	if (locked) {
		struct rt_waiter *list = n == 0 ? take_all_locked(wg) : NULL;
		rt_spin_unlock(&wg->q.lock);
		wake_list(list);
	}
	return (int)n;
}

int rt_wg_done(struct rt_wg *wg)
{
	return rt_wg_add(wg, -1);
}

int64_t rt_wg_count(struct rt_wg *wg)
{
	return (int64_t)(atomic_load(&wg->state) & WG_COUNT);
}

int rt_wg_wait(struct rt_wg *wg, int64_t deadline)
{
	struct rt_waiter w = { 0 };
	int r;

	if ((atomic_load_explicit(&wg->state, memory_order_acquire) & WG_COUNT) == 0)
		return 0;
	rt_spin_lock(&wg->q.lock);
	/* Set WAITERS before the last look at the counter: an add() that
	 * takes it to zero after this sees WAITERS and waits for q.lock. */
	unsigned long long s = atomic_fetch_or(&wg->state, WG_WAITERS);
	if ((s & WG_COUNT) == 0) {
		if (rt_waitq_empty(&wg->q))
			atomic_fetch_and(&wg->state, ~WG_WAITERS);
		rt_spin_unlock(&wg->q.lock);
		return 0;
	}
	r = rt_waitq_park(&wg->q, &w, false, deadline, "waitgroup", wg);
	if (r < 0) {
		if (rt_waitq_empty(&wg->q))
			atomic_fetch_and(&wg->state, ~WG_WAITERS);
		rt_spin_unlock(&wg->q.lock);
	}
	return r;
}
