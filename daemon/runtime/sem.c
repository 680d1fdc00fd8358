/* sem.c: rt_sem, a weighted semaphore (golang.org/x/sync/semaphore).
 *
 * All state is under q.lock. Waiters are served strictly in arrival order:
 * while the head's request does not fit, nobody behind it is served, even a
 * request that would fit (so a large request is never starved by small
 * ones). A release, or a waiter leaving the head, grants what now fits. */
#include "internal.h"

void rt_sem_init(struct rt_sem *s, int64_t capacity)
{
	s->capacity = capacity;
	s->used = 0;
	s->q = (struct rt_waitq){ 0 };
}

/* q.lock held. */
static void grant_locked(struct rt_sem *s)
{
	struct rt_waiter *w;

	while ((w = s->q.head) && s->capacity - s->used >= (int64_t)w->data) {
		rt_waitq_remove(&s->q, w);
		s->used += (int64_t)w->data;
		if (!rt_waitq_wake(w, 0))
			s->used -= (int64_t)w->data;
	}
}

int rt_sem_acquire(struct rt_sem *s, int64_t n, int64_t deadline)
{
	struct rt_waiter w = { .data = (uintptr_t)n };
	int r;

	if (n < 0 || n > s->capacity)
		return -EINVAL;
	rt_spin_lock(&s->q.lock);
	if (rt_waitq_empty(&s->q) && s->capacity - s->used >= n) {
		s->used += n;
		rt_spin_unlock(&s->q.lock);
		return 0;
	}
	r = rt_waitq_park(&s->q, &w, false, deadline, "semaphore", s);
	if (r < 0) {
		grant_locked(s);
		rt_spin_unlock(&s->q.lock);
	}
	return r;
}

int rt_sem_tryacquire(struct rt_sem *s, int64_t n)
{
	int r = -EBUSY;

	if (n < 0 || n > s->capacity)
		return -EINVAL;
	rt_spin_lock(&s->q.lock);
	if (rt_waitq_empty(&s->q) && s->capacity - s->used >= n) {
		s->used += n;
		r = 0;
	}
	rt_spin_unlock(&s->q.lock);
	return r;
}

int rt_sem_release(struct rt_sem *s, int64_t n)
{
	int r = 0;

	if (n < 0)
		return -EINVAL;
	rt_spin_lock(&s->q.lock);
	if (n > s->used) {
		r = GORO_ENOTHELD;
	} else {
		s->used -= n;
		grant_locked(s);
	}
	rt_spin_unlock(&s->q.lock);
	return r;
}
