/* test_maxprocs.c: changing GOMAXPROCS at run time (rt_maxprocs, sched.c).
 *
 * Checks that rt_maxprocs reads (n <= 0), sets and returns the previous value,
 * refuses 257 with -EINVAL, accepts RT_MAXPROCS_LIMIT, and that rt_stats
 * agrees; that 100k goroutines which yield a few times each all complete
 * exactly once while GOMAXPROCS goes 1->4->2->1->8->2 under them (spawned
 * concurrently with the changes); that GOMAXPROCS 1 really runs one goroutine
 * at a time; and that goroutines parked on timers and fds while workers are
 * retired still wake. Ends by checking that no goroutine leaked. */
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "rt_test.h"
#include "runtime.h"
#include "tap.h"

#define MS (1000 * 1000LL)

static int stats_maxprocs(void)
{
	struct rt_stats st;

	rt_stats_get(&st);
	return st.maxprocs;
}

/* ---- reading, setting, refusing ----------------------------------------- */

static void test_basics(void)
{
	is(rt_maxprocs(0), 2, "rt_maxprocs(0) reads the configured 2");
	is(rt_maxprocs(-1), 2, "rt_maxprocs(-1) reads too");
	is(stats_maxprocs(), 2, "stats agree");
	is_str(ename(rt_maxprocs(RT_MAXPROCS_LIMIT + 1)), "EINVAL",
	       "rt_maxprocs(%d) is refused", RT_MAXPROCS_LIMIT + 1);
	is_str(ename(rt_maxprocs(100000)), "EINVAL", "rt_maxprocs(100000) is refused");
	is(rt_maxprocs(0), 2, "and changed nothing");
	is(rt_maxprocs(3), 2, "rt_maxprocs(3) returns the previous 2");
	is(stats_maxprocs(), 3, "stats say 3");
	is(rt_maxprocs(1), 3, "rt_maxprocs(1) returns 3");
	is(stats_maxprocs(), 1, "stats say 1");
	is(rt_maxprocs(RT_MAXPROCS_LIMIT), 1, "rt_maxprocs(%d) is accepted",
	   RT_MAXPROCS_LIMIT);
	is(stats_maxprocs(), RT_MAXPROCS_LIMIT, "stats say %d", RT_MAXPROCS_LIMIT);
	is(rt_maxprocs(2), RT_MAXPROCS_LIMIT, "back to 2");
	is(rt_maxprocs(0), 2, "reads 2");
}

/* ---- changes under load ------------------------------------------------- */

static struct {
	long n;
	atomic_uchar *done;   /* per goroutine: times it completed */
	atomic_long completions;
	atomic_long spawned, spawn_failed;
	atomic_int bad_prev, bad_stats, missed_step;
} load;

static void load_task(void *arg)
{
	long i = (long)arg;
	int k;

	for (k = 0; k < 3; k++)
		rt_yield();
	atomic_fetch_add(&load.done[i], 1);
	atomic_fetch_add(&load.completions, 1);
	rt_wg_done(&kids);
}

/* Spawns tasks [first, first + count), yielding now and then so that the
 * changes happen while it spawns. */
static void load_spawner(void *arg)
{
	long first = (long)arg, count = load.n / 2, i;

	for (i = first; i < first + count; i++) {
		rt_wg_add(&kids, 1);
		if (rt_go(load_task, (void *)i, NULL) != 0) {
			atomic_fetch_add(&load.spawn_failed, 1);
			rt_wg_done(&kids);
		}
		atomic_fetch_add(&load.spawned, 1);
		if (i % 1000 == 0)
			rt_yield();
	}
	rt_wg_done(&kids);
}

/* Changes GOMAXPROCS each time another eighth of the tasks completed. */
static void load_controller(void *arg)
{
	static const int steps[] = { 1, 4, 2, 1, 8, 2 };
	int cur = rt_maxprocs(0), prev;
	int64_t deadline;
	size_t s;

	for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		deadline = rt_deadline_ms(120000);
		while (atomic_load(&load.completions) < (long)(s + 1) * load.n / 8 &&
		       rt_now() < deadline)
			rt_yield();
		if (rt_now() >= deadline)
			atomic_fetch_add(&load.missed_step, 1);
		prev = rt_maxprocs(steps[s]);
		if (prev != cur) {
			atomic_fetch_add(&load.bad_prev, 1);
			diag("rt_maxprocs(%d) returned %d, expected %d", steps[s], prev, cur);
		}
		if (stats_maxprocs() != steps[s])
			atomic_fetch_add(&load.bad_stats, 1);
		diag("maxprocs %d -> %d after %ld completions", cur, steps[s],
		     atomic_load(&load.completions));
		cur = steps[s];
	}
	rt_wg_done(&kids);
}

static void test_under_load(void)
{
	long n = tap_scale(100000, 5000) & ~1L, i, missing = 0, twice = 0;

	memset(&load, 0, sizeof(load));
	load.n = n;
	load.done = calloc(n, sizeof(*load.done));
	if (!load.done)
		bail_out("out of memory");
	rt_maxprocs(2);
	go(load_controller, NULL);
	go(load_spawner, (void *)0L);
	go(load_spawner, (void *)(n / 2));
	join_kids_within("load", 240000);
	for (i = 0; i < n; i++) {
		missing += atomic_load(&load.done[i]) == 0;
		twice += atomic_load(&load.done[i]) > 1;
	}
	is(atomic_load(&load.spawn_failed), 0, "all %ld spawns succeeded", n);
	is(missing, 0, "no goroutine lost across the changes");
	is(twice, 0, "no goroutine ran to completion twice");
	is(atomic_load(&load.completions), n, "completions: exactly %ld", n);
	is(atomic_load(&load.missed_step), 0, "every change happened under load");
	is(atomic_load(&load.bad_prev), 0, "each rt_maxprocs returned the previous value");
	is(atomic_load(&load.bad_stats), 0, "stats matched after each change");
	is(rt_maxprocs(0), 2, "ends at 2");
	free(load.done);
}

/* ---- GOMAXPROCS bounds parallelism -------------------------------------- */

static atomic_int inside, max_inside;

static void parallel_task(void *arg)
{
	unsigned long x = 0;
	int round, k, in, cur;

	for (round = 0; round < 10; round++) {
		in = atomic_fetch_add(&inside, 1) + 1;
		cur = atomic_load(&max_inside);
		while (in > cur && !atomic_compare_exchange_weak(&max_inside, &cur, in))
			;
		for (k = 0; k < 20000; k++) {
			x += k;
			__asm__ __volatile__("" : "+r"(x)); /* keep the loop */
		}
		atomic_fetch_sub(&inside, 1);
		rt_yield();
	}
	rt_wg_done(&kids);
}

static int max_parallel(int procs)
{
	int i;

	rt_maxprocs(procs);
	atomic_store(&inside, 0);
	atomic_store(&max_inside, 0);
	for (i = 0; i < 200; i++)
		go(parallel_task, NULL);
	join_kids_within("parallel tasks", 240000);
	return atomic_load(&max_inside);
}

static void test_bounds(void)
{
	int m;

	is(max_parallel(1), 1, "maxprocs 1: one goroutine runs at a time");
	m = max_parallel(2);
	cmp_ok(m, <=, 2, "maxprocs 2: at most two at a time");
	diag("maxprocs 2: up to %d ran at once", m);
	m = max_parallel(4);
	cmp_ok(m, <=, 4, "maxprocs 4: at most four at a time");
	diag("maxprocs 4: up to %d ran at once", m);
}

/* ---- parked goroutines survive retired workers -------------------------- */

#define SLEEPERS 100
#define FDWAITERS 50

static atomic_int woke_ok;

static void sleeper(void *arg)
{
	int64_t deadline = *(int64_t *)arg;

	if (rt_sleep(deadline) == 0 && rt_now() >= deadline)
		atomic_fetch_add(&woke_ok, 1);
	rt_wg_done(&kids);
}

static void fd_waiter(void *arg)
{
	int fd = (int)(long)arg;
	char c;

	if (rt_wait_fd(fd, RT_READ, rt_deadline_ms(30000)) > 0 && read(fd, &c, 1) == 1)
		atomic_fetch_add(&woke_ok, 1);
	rt_wg_done(&kids);
}

/* How many goroutines are parked. */
static long parked_count(void)
{
	struct rt_stats st;
	struct rt_ginfo *gi;
	size_t n, i, cap;
	long parked = 0;

	rt_stats_get(&st);
	cap = st.live + 64;
	gi = calloc(cap, sizeof(*gi));
	if (!gi)
		bail_out("out of memory");
	n = rt_goroutines(gi, cap);
	for (i = 0; i < n && i < cap; i++)
		parked += gi[i].state == RT_G_WAITING && gi[i].wait_reason;
	free(gi);
	return parked;
}

static void test_parked_survive(void)
{
	static int fds[FDWAITERS][2];
	int64_t deadline;
	int i, bad = 0;

	atomic_store(&woke_ok, 0);
	rt_maxprocs(8);
	deadline = rt_deadline_ms(500);
	for (i = 0; i < SLEEPERS; i++)
		go(sleeper, &deadline);
	for (i = 0; i < FDWAITERS; i++) {
		if (pipe2(fds[i], O_NONBLOCK | O_CLOEXEC) != 0)
			bail_out("pipe2: %m");
		go(fd_waiter, (void *)(long)fds[i][0]);
	}
	while (parked_count() < SLEEPERS + FDWAITERS && rt_now() < deadline)
		rt_yield();
	is(parked_count(), SLEEPERS + FDWAITERS, "all parked at maxprocs 8");
	is(rt_maxprocs(1), 8, "down from 8 to 1 with goroutines parked");
	for (i = 0; i < FDWAITERS; i++)
		bad += write(fds[i][1], "w", 1) != 1;
	is(bad, 0, "fd waiters released");
	join_kids_within("parked across a change", 240000);
	is(atomic_load(&woke_ok), SLEEPERS + FDWAITERS,
	   "every sleeper and fd waiter woke properly");
	for (i = 0; i < FDWAITERS; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
	rt_maxprocs(2);
}

static void maxprocs_main(void *arg)
{
	test_basics();
	test_under_load();
	test_bounds();
	test_parked_survive();
}

int main(void)
{
	static struct rt_stats st;

	no_plan();
	if (rt_init(&(struct rt_config){ .maxprocs = 2 }) != 0)
		bail_out("rt_init failed");
	is(rt_run(maxprocs_main, NULL), 0, "rt_run");
	check_no_leaks(&st);
	is(st.maxprocs, 2, "stats: maxprocs 2 at the end");
	return done_testing();
}
