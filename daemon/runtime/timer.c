/* timer.c: sleeping until a deadline.
 *
 * Timers are libevent timeouts on the runtime's one event_base (netpoll.c):
 * a sleeping goroutine parks with its deadline and no fd, and the event's
 * callback claims it. libevent keeps timeouts in a min-heap and runs the
 * expired ones in deadline order; the callbacks queue the goroutines in
 * that order on the polling worker, so they run in deadline order too. The
 * base uses the precise monotonic clock, so no timer fires before its
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
