/* waitq.c: wait queues, the one park/ready primitive every goroutine-level
 * sync object is built on.
 *
 * A wait queue is a FIFO of rt_waiter records protected by a spin lock.
 * The record lives on the waiting goroutine's stack (stacks never move).
 * A waiter leaves its queue in exactly one of two ways:
 *   - a waker pops it under the lock and claims it (rt_waitq_wake): the
 *     goroutine is made runnable with the waker's result;
 *   - its deadline passes or it is cancelled: the timer or the canceller
 *     claims the goroutine (sched_claim), and the goroutine, once running,
 *     takes the lock and unlinks itself.
 * The claim is a compare-and-swap on the goroutine's park state, so exactly
 * one of them wins; a waker that loses just moves on to the next waiter. */
#include <sched.h>
#include "internal.h"

/* Spin locks are held for a handful of instructions, never across a park
 * (rt_waitq_park hands its lock to the after-switch code), so spinning
 * beats sleeping. */
/* Spin locks are held for a few instructions, but the kernel may preempt
 * the holder (its CPU is wanted by a task's command, say): after spinning
 * ~1000 times without the lock, the spinner yields its CPU, so that a
 * preempted holder on it can run and let go. */
#define SPIN_BEFORE_YIELD 1024

void rt_spin_lock(rt_spin *l)
{
	unsigned spins = 0;

	for (;;) {
		if (!atomic_exchange_explicit(&l->v, 1, memory_order_acquire))
			return;
		while (atomic_load_explicit(&l->v, memory_order_relaxed)) {
			cpu_relax();
			if (++spins % SPIN_BEFORE_YIELD == 0)
				sched_yield();
		}
	}
}

void rt_spin_unlock(rt_spin *l)
{
	atomic_store_explicit(&l->v, 0, memory_order_release);
}

static void waitq_link(struct rt_waitq *q, struct rt_waiter *w, bool front)
{
	w->linked = true;
	if (front) {
		w->prev = NULL;
		w->next = q->head;
		if (q->head)
			q->head->prev = w;
		else
			q->tail = w;
		q->head = w;
	} else {
		w->next = NULL;
		w->prev = q->tail;
		if (q->tail)
			q->tail->next = w;
		else
			q->head = w;
		q->tail = w;
	}
}

void rt_waitq_remove(struct rt_waitq *q, struct rt_waiter *w)
{
	rt_assert(w->linked);
	if (w->prev)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->next = w->prev = NULL;
	w->linked = false;
}

struct rt_waiter *rt_waitq_pop(struct rt_waitq *q)
{
	struct rt_waiter *w = q->head;

	if (w)
		rt_waitq_remove(q, w);
	return w;
}

bool rt_waitq_wake(struct rt_waiter *w, int result)
{
	rt_assert(!w->linked);
	return sched_claim(w->g, result);
}

int rt_waitq_park(struct rt_waitq *q, struct rt_waiter *w, unsigned flags,
		  int64_t deadline, const char *reason, const void *obj)
{
	return rt_waitq_park_under(q, &q->lock, w, flags, deadline, reason, obj);
}

int rt_waitq_park_under(struct rt_waitq *q, rt_spin *lock, struct rt_waiter *w,
			unsigned flags, int64_t deadline, const char *reason,
			const void *obj)
{
	struct g *g = sched_current_g();
	int r;

	if (!g)
		rt_throw("rt_waitq_park called outside a goroutine");
	if (!(flags & RT_WQ_NOCANCEL) && g_cancelled(g)) {
		w->linked = false;
		return -ECANCELED;
	}
	if (deadline == 0 || (deadline > 0 && deadline <= rt_now())) {
		w->linked = false;
		return -ETIMEDOUT;
	}
	w->g = g;
	waitq_link(q, w, flags & RT_WQ_FRONT);

	struct park pk = {
		.unlock = lock,
		.fd = -1,
		.deadline = deadline,
		.reason = reason,
		.obj = obj,
		.nocancel = flags & RT_WQ_NOCANCEL,
	};
	r = sched_park(&pk);
	if (r == -ETIMEDOUT || r == -ECANCELED) {
		rt_spin_lock(lock);
		if (w->linked)
			rt_waitq_remove(q, w);
	}
	return r;
}
