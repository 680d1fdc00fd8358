/* mutex.c: rt_mutex, Go's sync.Mutex on the runtime's wait queues.
 *
 * state: LOCKED | WAITERS. Lock and unlock without contention are one
 * compare-and-swap each. A contended locker spins a little (the holder is
 * probably running on the other CPU and about to let go), then parks on
 * the queue. Unlock with waiters wakes the first one, which competes with
 * newcomers for the lock ("normal mode": the lock goes to whoever is
 * running, which is fastest). A woken waiter that loses goes back to the
 * front of the queue; once the first waiter has waited over 1 ms, unlock
 * hands the lock to it directly, without ever releasing it (Go's
 * "starvation mode"), so no waiter waits forever.
 *
 * The queue's lock also guards the WAITERS bit: it is set and cleared only
 * with q.lock held, and the slow unlock keeps LOCKED set until it has
 * decided, so the state cannot change under it. */
#include "internal.h"

#define M_LOCKED 1u
#define M_WAITERS 2u
#define M_HANDOFF 1 /* wake result: the lock is yours */
#define STARVING_NS (1000 * 1000LL)

bool rt_can_spin(int spins)
{
	struct p *p = sched_current_p();

	return spins < 4 && atomic_load_explicit(&sched.maxprocs, memory_order_relaxed) > 1 &&
	       p && runq_empty(p);
}

static int mutex_lock_slow(struct rt_mutex *m, int64_t deadline, unsigned flags)
{
	struct rt_waiter w = { 0 };
	int spins = 0;

	w.since = 0;
	for (;;) {
		unsigned s = atomic_load_explicit(&m->state, memory_order_relaxed);

		if (!(s & M_LOCKED)) {
			if (atomic_compare_exchange_weak_explicit(&m->state, &s, s | M_LOCKED,
								  memory_order_acquire,
								  memory_order_relaxed))
				return 0;
			continue;
		}
		if (rt_can_spin(spins)) {
			for (int i = 0; i < 30; i++)
				cpu_relax();
			spins++;
			continue;
		}
		rt_spin_lock(&m->q.lock);
		s = atomic_load_explicit(&m->state, memory_order_relaxed);
		if (!(s & M_LOCKED) ||
		    !atomic_compare_exchange_strong(&m->state, &s, s | M_WAITERS)) {
			rt_spin_unlock(&m->q.lock);
			continue;
		}
		if (!w.since)
			w.since = rt_now();
		int r = rt_waitq_park(&m->q, &w, flags, deadline, "mutex", m);
		if (r == M_HANDOFF)
			return 0;
		if (r < 0) {
			if (rt_waitq_empty(&m->q))
				atomic_fetch_and(&m->state, ~M_WAITERS);
			rt_spin_unlock(&m->q.lock);
			return r;
		}
		/* Woken to compete: back to the front if it loses again. */
		flags |= RT_WQ_FRONT;
		spins = 0;
	}
}

int rt_mutex_lock(struct rt_mutex *m, int64_t deadline)
{
	unsigned zero = 0;

	if (likely(atomic_compare_exchange_weak_explicit(&m->state, &zero, M_LOCKED,
							 memory_order_acquire,
							 memory_order_relaxed)))
		return 0;
	return mutex_lock_slow(m, deadline, 0);
}

void rt_mutex_lock_nocancel(struct rt_mutex *m)
{
	unsigned zero = 0;

	if (likely(atomic_compare_exchange_weak_explicit(&m->state, &zero, M_LOCKED,
							 memory_order_acquire,
							 memory_order_relaxed)))
		return;
	if (mutex_lock_slow(m, RT_FOREVER, RT_WQ_NOCANCEL) != 0)
		rt_throw("an uncancellable mutex wait failed");
}

int rt_mutex_trylock(struct rt_mutex *m)
{
	unsigned s = atomic_load_explicit(&m->state, memory_order_relaxed);

	while (!(s & M_LOCKED))
		if (atomic_compare_exchange_weak_explicit(&m->state, &s, s | M_LOCKED,
							  memory_order_acquire,
							  memory_order_relaxed))
			return 0;
	return -EBUSY;
}

/* Wakes the first waiter: hands it the lock if it has waited too long,
 * else releases the lock and lets it compete. The wake comes after q.lock
 * is released, and nothing of m is touched after a wake that succeeded:
 * the woken goroutine may return and free m (a mutex on its stack). A wake
 * that fails (the waiter is leaving on its deadline or a cancel) means m is
 * still in use by that waiter, so the next one is tried. */
static void mutex_unlock_slow(struct rt_mutex *m)
{
	for (;;) {
		struct rt_waiter *w;
		bool handoff;

		rt_spin_lock(&m->q.lock);
		w = rt_waitq_pop(&m->q);
		if (!w) {
			atomic_store_explicit(&m->state, 0, memory_order_release);
			rt_spin_unlock(&m->q.lock);
			return;
		}
		handoff = rt_now() - w->since > STARVING_NS;
		if (handoff) {
			/* LOCKED stays set: the lock passes to w. */
			if (rt_waitq_empty(&m->q))
				atomic_fetch_and(&m->state, ~M_WAITERS);
		} else {
			atomic_store_explicit(&m->state, rt_waitq_empty(&m->q) ? 0 : M_WAITERS,
					      memory_order_release);
		}
		rt_spin_unlock(&m->q.lock);
		if (rt_waitq_wake(w, handoff ? M_HANDOFF : 0))
			return;
		if (!handoff) {
			/* The lock is free again; if someone took it, their
			 * unlock wakes the rest. Else wake the next waiter. */
			unsigned s = atomic_load(&m->state);
			if (!(s & M_WAITERS) || (s & M_LOCKED) ||
			    !atomic_compare_exchange_strong(&m->state, &s, s | M_LOCKED))
				return;
		}
		/* We hold the lock again (handed back, or retaken): retry. */
	}
}

int rt_mutex_unlock(struct rt_mutex *m)
{
	unsigned s = M_LOCKED;

	if (likely(atomic_compare_exchange_strong_explicit(&m->state, &s, 0,
							   memory_order_release,
							   memory_order_relaxed)))
		return 0;
	if (!(s & M_LOCKED))
		return GORO_ENOTLOCKED;
	mutex_unlock_slow(m);
	return 0;
}
