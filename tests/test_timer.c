/* test_timer.c: timers and rt_sleep (daemon/runtime/timer.c).
 *
 * Checks that 200 goroutines sleeping to shuffled deadlines 2 ms apart wake
 * in deadline order at GOMAXPROCS 1; that no sleep returns before its
 * deadline, also under a load of many short timers; that rt_sleep(0) and
 * past deadlines return at once; that rt_cancel ends a sleep early with
 * -ECANCELED (one sleeper, and a hundred with far deadlines); that a sleeping
 * goroutine does not hold its worker; and rt_now / rt_deadline_ms. Ends by
 * checking that no goroutine leaked. */
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "runtime.h"
#include "rt_test.h"
#include "tap.h"

#define MS (1000 * 1000LL)


/* ---- helpers ------------------------------------------------------------ */

/* One sleeping goroutine's record. */
struct nap {
	int64_t deadline;
	int64_t parked; /* rt_now() just before rt_sleep */
	int64_t woke;   /* rt_now() just after */
	int rc;
	int k;          /* its rank by deadline */
};

/* ---- clock -------------------------------------------------------------- */

static void test_clock(void)
{
	int64_t a = rt_now(), b = rt_now(), d = rt_deadline_ms(10), c = rt_now();

	cmp_ok(a, >, 0, "rt_now() is positive");
	cmp_ok(b, >=, a, "rt_now() does not go back");
	is(rt_deadline_ms(-1), RT_FOREVER, "rt_deadline_ms(-1) is RT_FOREVER");
	ok(d >= b + 10 * MS && d <= c + 10 * MS,
	   "rt_deadline_ms(10) is 10 ms from now");
}

/* ---- immediate returns -------------------------------------------------- */

static void test_immediate(void)
{
	int64_t t0 = rt_now();
	int i, bad = 0;

	for (i = 0; i < 100; i++) {
		bad += rt_sleep(0) != 0;
		bad += rt_sleep(rt_now() - 1000 * MS) != 0;
		bad += rt_sleep(rt_now()) != 0;
		bad += rt_sleep(1) != 0;
	}
	is(bad, 0, "rt_sleep(0), rt_sleep(past) and rt_sleep(now) return 0");
	cmp_ok(rt_now() - t0, <, 1000 * MS, "400 of them return at once");
}

/* ---- wake order --------------------------------------------------------- */

#define ORDER_N 200

static struct rt_mutex order_lock;
static int wake_order[ORDER_N]; /* guarded by order_lock */
static int nwoke;

static void ordered_sleeper(void *arg)
{
	struct nap *n = arg;

	n->parked = rt_now();
	n->rc = rt_sleep(n->deadline);
	n->woke = rt_now();
	rt_mutex_lock(&order_lock, RT_FOREVER);
	wake_order[nwoke++] = n->k;
	rt_mutex_unlock(&order_lock);
	rt_wg_done(&kids);
}

static void shuffle(int *v, int n, unsigned seed)
{
	int i, j, t;

	for (i = n - 1; i > 0; i--) {
		j = rand_r(&seed) % (i + 1);
		t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

/* Counts the naps that returned nonzero, woke early, and (if `parks`)
 * parked only after their deadline. */
static void check_naps(struct nap *naps, int n, bool parks, const char *what)
{
	int i, failed = 0, late_park = 0, early = 0;
	int64_t worst = 0;

	for (i = 0; i < n; i++) {
		failed += naps[i].rc != 0;
		late_park += naps[i].parked >= naps[i].deadline;
		early += naps[i].woke < naps[i].deadline;
		if (naps[i].woke - naps[i].deadline > worst)
			worst = naps[i].woke - naps[i].deadline;
	}
	is(failed, 0, "%s: every rt_sleep returned 0", what);
	if (parks)
		is(late_park, 0, "%s: every sleeper parked before its deadline",
		   what);
	is(early, 0, "%s: no sleeper woke before its deadline", what);
	diag("%s: latest wake %.3f ms after its deadline", what, worst / 1e6);
}

static void test_wake_order(void)
{
	static struct nap naps[ORDER_N];
	static int spawn_order[ORDER_N];
	int64_t base;
	int i, misplaced = 0;

	rt_maxprocs(1);
	nwoke = 0;
	for (i = 0; i < ORDER_N; i++)
		spawn_order[i] = i;
	shuffle(spawn_order, ORDER_N, 12345);
	base = rt_deadline_ms(200);
	for (i = 0; i < ORDER_N; i++) {
		struct nap *n = &naps[spawn_order[i]];

		n->k = spawn_order[i];
		n->deadline = base + n->k * 2 * MS;
		go(ordered_sleeper, n);
	}
	join_kids("ordered sleepers");
	check_naps(naps, ORDER_N, true, "shuffled deadlines");
	is(nwoke, ORDER_N, "all %d woke", ORDER_N);
	for (i = 0; i < nwoke; i++) {
		if (wake_order[i] != i && misplaced++ == 0)
			diag("wake #%d was sleeper %d", i, wake_order[i]);
	}
	is(misplaced, 0, "maxprocs 1: wakes in deadline order");
}

/* ---- no early wake under load ------------------------------------------- */

static void many_naps(void *arg)
{
	struct nap *n = arg;
	unsigned seed = (unsigned)n->k;
	int round;

	for (round = 0; round < 5; round++) {
		n->deadline = rt_now() + (rand_r(&seed) % 3000) * 1000LL;
		n->parked = rt_now();
		n->rc |= rt_sleep(n->deadline);
		n->woke = rt_now();
		if (n->woke < n->deadline)
			break;
	}
	rt_wg_done(&kids);
}

static void test_no_early_wake(void)
{
	long count = tap_scale(2000, 300), i;
	struct nap *naps = calloc(count, sizeof(*naps));

	if (!naps)
		bail_out("out of memory");
	rt_maxprocs(2);
	for (i = 0; i < count; i++) {
		naps[i].k = (int)i + 1;
		go(many_naps, &naps[i]);
	}
	join_kids("short sleepers");
	check_naps(naps, (int)count, false, "5 random 0-3 ms naps each");
	free(naps);
}

/* ---- cancellation ------------------------------------------------------- */

static void plain_sleeper(void *arg)
{
	struct nap *n = arg;

	n->parked = rt_now();
	n->rc = rt_sleep(n->deadline);
	n->woke = rt_now();
	rt_wg_done(&kids);
}

static void test_cancel_one(void)
{
	struct nap n = { .deadline = rt_deadline_ms(10000), .rc = 1 };
	struct rt_gref ref = go(plain_sleeper, &n);
	int64_t t0;

	ok(wait_parked(ref), "a 10 s sleeper is parked");
	t0 = rt_now();
	is(rt_cancel(ref), 0, "rt_cancel");
	join_kids("cancelled sleeper");
	is_str(ename(n.rc), "ECANCELED", "its rt_sleep returned -ECANCELED");
	cmp_ok(n.woke - t0, <, 5000 * MS, "early: well before its deadline");
}

static void test_cancel_many(void)
{
	static struct nap naps[100];
	static struct rt_gref refs[100];
	int i, parked = 0, cancelled = 0;
	int64_t t0;

	for (i = 0; i < 100; i++) {
		naps[i] = (struct nap){ .deadline = rt_deadline_ms(60000 + i), .rc = 1 };
		refs[i] = go(plain_sleeper, &naps[i]);
	}
	for (i = 0; i < 100; i++)
		parked += wait_parked(refs[i]);
	is(parked, 100, "100 sleepers with far deadlines parked");
	t0 = rt_now();
	for (i = 0; i < 100; i++)
		rt_cancel(refs[i]);
	join_kids("cancelled sleepers");
	for (i = 0; i < 100; i++)
		cancelled += naps[i].rc == -ECANCELED;
	is(cancelled, 100, "all returned -ECANCELED");
	cmp_ok(rt_now() - t0, <, 5000 * MS, "at once");
}

/* ---- a sleeper holds no worker ------------------------------------------ */

static void flag_setter(void *arg)
{
	*(int64_t *)arg = rt_now();
	rt_wg_done(&kids);
}

static void test_sleep_frees_worker(void)
{
	struct nap n = { .deadline = rt_deadline_ms(300), .rc = 1 };
	int64_t other_ran = 0;
	struct rt_gref ref;

	rt_maxprocs(1);
	ref = go(plain_sleeper, &n);
	ok(wait_parked(ref), "a 300 ms sleeper is parked");
	go(flag_setter, &other_ran);
	join_kids("sleeper and runner");
	is(n.rc, 0, "the sleeper slept");
	ok(other_ran != 0 && other_ran < n.woke,
	   "maxprocs 1: another goroutine ran while it slept");
}

static void timer_main(void *arg)
{
	test_clock();
	test_immediate();
	test_wake_order();
	test_no_early_wake();
	test_cancel_one();
	test_cancel_many();
	test_sleep_frees_worker();
}

int main(void)
{
	static struct rt_stats st;

	no_plan();
	if (rt_init(&(struct rt_config){ .maxprocs = 1 }) != 0)
		bail_out("rt_init failed");
	is(rt_run(timer_main, NULL), 0, "rt_run");
	check_no_leaks(&st);
	return done_testing();
}
