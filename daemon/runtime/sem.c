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

/* q.lock held, and released here: grants what fits to the head of the
 * queue, in order, then wakes the grantees after the unlock, touching
 * nothing of s after a successful wake (see rwmutex.c's grant_unlock for
 * why, and for the undo of a wake that failed). */
static void grant_unlock(struct rt_sem *s)
{
	for (;;) {
		struct rt_waiter *head = NULL, **tail = &head, *w;
		int64_t undo = 0;

		while ((w = s->q.head) && s->capacity - s->used >= (int64_t)w->data) {
			rt_waitq_remove(&s->q, w);
			s->used += (int64_t)w->data;
			*tail = w;
			tail = &w->next;
		}
		rt_spin_unlock(&s->q.lock);

		while ((w = head)) {
			int64_t n = (int64_t)w->data;
			head = w->next;
			if (!rt_waitq_wake(w, 0))
				undo += n;
		}
		if (!undo)
			return;
		rt_spin_lock(&s->q.lock);
		s->used -= undo;
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
	if (r < 0)
		grant_unlock(s); /* a big request leaving lets small ones in */
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
		rt_spin_unlock(&s->q.lock);
		return GORO_ENOTHELD;
	}
	s->used -= n;
	grant_unlock(s);
	return r;
}
