/* rt_test.c: helpers the runtime's TAP tests share (rt_test.h). */
#include <sched.h>
#include <stdlib.h>

#include "error.h"
#include "rt_test.h"
#include "tap.h"

struct rt_wg kids;

int g_state(uint64_t id)
{
	struct rt_stats st;
	struct rt_ginfo *gi;
	size_t n, i, cap;
	int state = RT_G_DEAD;

	rt_stats_get(&st);
	cap = st.live + 64;
	gi = calloc(cap, sizeof(*gi));
	if (!gi)
		bail_out("out of memory");
	n = rt_goroutines(gi, cap);
	for (i = 0; i < n && i < cap; i++) {
		if (gi[i].id != id)
			continue;
		state = gi[i].state;
		if (state == RT_G_WAITING && gi[i].wait_reason == NULL)
			state = RT_G_RUNNING;
	}
	free(gi);
	return state;
}

bool wait_parked(struct rt_gref ref)
{
	int64_t deadline = rt_deadline_ms(10000);
	int state;

	while ((state = g_state(ref.id)) != RT_G_WAITING) {
		if (state == RT_G_DEAD || rt_now() >= deadline)
			return false;
		rt_yield();
	}
	return true;
}

struct rt_gref go(rt_fn fn, void *arg)
{
	struct rt_gref ref = { 0 };

	rt_wg_add(&kids, 1);
	if (rt_go(fn, arg, &ref) != 0)
		bail_out("rt_go failed");
	return ref;
}

void join_kids_within(const char *what, int64_t ms)
{
	is(rt_wg_wait(&kids, rt_deadline_ms(ms)), 0, "%s: all joined", what);
}

void join_kids(const char *what)
{
	join_kids_within(what, 60000);
}

const char *ename(int rc)
{
	return rc == 0 ? "0" : proto_err_name(rc);
}


void check_no_leaks(struct rt_stats *st)
{
	int64_t deadline = rt_now() + 10000 * 1000000LL;

	do {
		rt_stats_get(st);
		if (st->live == 0)
			break;
		sched_yield();
	} while (rt_now() < deadline);
	is(st->live, 0, "no goroutine is left alive");
	is(rt_shutdown(), 0, "rt_shutdown");
}
