/* timer.c: sleeping until a deadline.
 *
 * A sleeping goroutine parks with its deadline and no fd; the deadline
 * goes into netpoll.c's timer heap, whose timerfd expiry claims the due
 * goroutines in deadline order and queues them in that order on the
 * polling worker, so they run in deadline order too. The timerfd is set
 * on CLOCK_MONOTONIC, rt_now()'s clock, so no timer fires before its
 * deadline as rt_now() sees it. */
#include "internal.h"

int rt_sleep(int64_t deadline)
{
	struct g *g = sched_current_g();

	if (!g)
		rt_throw("rt_sleep called outside a goroutine");
	if (g_cancelled(g))
		return -ECANCELED;
	if (deadline != RT_FOREVER && deadline <= rt_now())
		return 0;

	struct park pk = {
		.fd = -1,
		.deadline = deadline,
		.reason = "sleep",
	};
	int r = sched_park(&pk);
	return r == -ETIMEDOUT ? 0 : r;
}
