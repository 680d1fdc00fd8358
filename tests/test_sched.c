/* test_sched.c: the scheduler (daemon/runtime/sched.c, runq.c).
 *
 * Checks that a million goroutines are spawned and joined with an exact count
 * at GOMAXPROCS 1 and 2; that rt_yield lets the other runnable goroutine run
 * and that a goroutine that does not yield is not interleaved (cooperative
 * scheduling); that goroutine ids are unique and increasing; that an idle
 * worker steals from a busy one; that an idle runtime, with or without parked
 * goroutines, burns no CPU; that rt_shutdown refuses while goroutines live;
 * and rt_cancel: a parked goroutine's park returns -ECANCELED, an ended one
 * gives -ESRCH. Ends by checking that no goroutine leaked. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "runtime.h"
#include "rt_test.h"
#include "tap.h"

#define MS (1000 * 1000LL)

static struct rt_wg join;

/* ---- helpers ------------------------------------------------------------ */

/* Goroutine only: yields until goroutine `id` is in state `want` (parked:
 * RT_G_WAITING, ended: RT_G_DEAD) or the deadline passes. */
static bool wait_state(uint64_t id, int want, int64_t deadline)
{
	int state;

	while ((state = g_state(id)) != want) {
		if (state == RT_G_DEAD || rt_now() >= deadline)
			return false;
		rt_yield();
	}
	return true;
}

static double cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- a million goroutines ----------------------------------------------- */

static atomic_long ran;

static void count_one(void *arg)
{
	atomic_fetch_add_explicit(&ran, 1, memory_order_relaxed);
	rt_wg_done(&join);
}

static void test_million(int procs)
{
	long n = tap_scale(1000000, 20000), failed = 0, i;
	struct rt_stats a, b;
	int64_t t0;

	cmp_ok(rt_maxprocs(procs), >, 0, "rt_maxprocs(%d)", procs);
	atomic_store(&ran, 0);
	rt_stats_get(&a);
	t0 = rt_now();
	is(rt_wg_add(&join, n), n, "wg add %ld", n);
	for (i = 0; i < n; i++) {
		if (rt_go(count_one, NULL, NULL) != 0) {
			failed++;
			rt_wg_done(&join);
		}
	}
	is(failed, 0, "maxprocs %d: all %ld rt_go calls succeed", procs, n);
	is(rt_wg_wait(&join, rt_deadline_ms(240 * 1000)), 0,
	   "maxprocs %d: joined %ld goroutines", procs, n);
	is(atomic_load(&ran), n, "maxprocs %d: each ran exactly once", procs);
	rt_stats_get(&b);
	is(b.spawned - a.spawned, n, "stats: spawned counts them");
	cmp_ok(b.finished - a.finished, >=, (uint64_t)(n - procs),
	       "stats: finished counts them");
	diag("%ld goroutines spawned+joined at maxprocs %d in %.1f ms", n,
	     procs, (rt_now() - t0) / 1e6);
}

/* ---- rt_yield interleaving and cooperative scheduling ------------------- */

#define PINGPONG_ROUNDS 200

struct pingpong {
	atomic_int steps[2];
	atomic_int stalls[2];
	atomic_int other_at_end[2];
};

struct player {
	struct pingpong *pp;
	int me;
};

/* Each yield must let the other runnable goroutine make a step. */
static void player(void *arg)
{
	struct player *pl = arg;
	struct pingpong *pp = pl->pp;
	int other = !pl->me, k, seen;

	for (k = 0; k < PINGPONG_ROUNDS; k++) {
		atomic_fetch_add(&pp->steps[pl->me], 1);
		seen = atomic_load(&pp->steps[other]);
		rt_yield();
		if (seen < PINGPONG_ROUNDS && atomic_load(&pp->steps[other]) == seen)
			atomic_fetch_add(&pp->stalls[pl->me], 1);
	}
	atomic_store(&pp->other_at_end[pl->me], atomic_load(&pp->steps[other]));
	rt_wg_done(&join);
}

static void test_yield_interleaves(void)
{
	struct pingpong pp = { 0 };
	struct player pl[2] = { { &pp, 0 }, { &pp, 1 } };

	rt_maxprocs(1);
	rt_wg_add(&join, 2);
	rt_go(player, &pl[0], NULL);
	rt_go(player, &pl[1], NULL);
	is(rt_wg_wait(&join, rt_deadline_ms(30000)), 0, "yielders joined");
	is(atomic_load(&pp.stalls[0]), 0, "maxprocs 1: each yield of A lets B run");
	is(atomic_load(&pp.stalls[1]), 0, "maxprocs 1: each yield of B lets A run");
	cmp_ok(atomic_load(&pp.other_at_end[0]), >=, PINGPONG_ROUNDS - 1,
	       "A did not finish before B ran");
	cmp_ok(atomic_load(&pp.other_at_end[1]), >=, PINGPONG_ROUNDS - 1,
	       "B did not finish before A ran");
}

static atomic_int bystander_ran;

static void bystander(void *arg)
{
	atomic_store(&bystander_ran, 1);
	rt_wg_done(&join);
}

/* At maxprocs 1, a goroutine that spins without yielding keeps its thread
 * and nobody else runs; its first yield lets the runnable one run. */
static void hog(void *arg)
{
	pthread_t self = pthread_self();
	int64_t until = rt_now() + 20 * MS;
	bool interleaved = false, moved = false;

	rt_wg_add(&join, 1);
	rt_go(bystander, NULL, NULL);
	while (rt_now() < until) {
		interleaved |= atomic_load(&bystander_ran) != 0;
		moved |= !pthread_equal(self, pthread_self());
	}
	ok(!interleaved, "maxprocs 1: nothing ran while a goroutine spun 20 ms");
	ok(!moved, "a goroutine stays on its thread between parks");
	rt_yield();
	rt_yield();
	ok(atomic_load(&bystander_ran), "its yield let the runnable one run");
	rt_wg_done(&join);
}

static void test_cooperative(void)
{
	rt_maxprocs(1);
	atomic_store(&bystander_ran, 0);
	rt_wg_add(&join, 1);
	rt_go(hog, NULL, NULL);
	is(rt_wg_wait(&join, rt_deadline_ms(30000)), 0, "hog and bystander joined");
}

/* ---- goroutine ids ------------------------------------------------------ */

#define ID_N 1000
#define ID_SPAWNERS 4

struct id_slot {
	uint64_t self;
};

static void record_id(void *arg)
{
	((struct id_slot *)arg)->self = rt_self_id();
	rt_wg_done(&join);
}

struct id_batch {
	struct rt_gref refs[ID_N];
	struct id_slot slots[ID_N];
	int failed;
};

static void spawn_batch(void *arg)
{
	struct id_batch *b = arg;
	int i;

	rt_wg_add(&join, ID_N);
	for (i = 0; i < ID_N; i++)
		if (rt_go(record_id, &b->slots[i], &b->refs[i]) != 0) {
			b->failed++;
			rt_wg_done(&join);
		}
	rt_wg_done(&join);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Checks one batch: ids increase in spawn order and each goroutine saw the
 * id its handle carries. Appends the ids to all[]. */
static void check_batch(struct id_batch *b, uint64_t floor, uint64_t *all,
			int *nall, int *order_bad, int *self_bad)
{
	uint64_t prev = floor;
	int i;

	for (i = 0; i < ID_N; i++) {
		if (b->refs[i].id <= prev)
			(*order_bad)++;
		if (b->slots[i].self != b->refs[i].id)
			(*self_bad)++;
		prev = b->refs[i].id;
		all[(*nall)++] = b->refs[i].id;
	}
}

static void test_ids(void)
{
	static struct id_batch batch[ID_SPAWNERS];
	static uint64_t all[ID_N * ID_SPAWNERS];
	uint64_t me = rt_self_id();
	int i, nall = 0, order_bad = 0, self_bad = 0, dups = 0, failed = 0;

	cmp_ok(me, >, 0, "the main goroutine has an id");
	rt_maxprocs(2);
	memset(batch, 0, sizeof(batch));
	rt_wg_add(&join, ID_SPAWNERS);
	for (i = 0; i < ID_SPAWNERS; i++)
		rt_go(spawn_batch, &batch[i], NULL);
	is(rt_wg_wait(&join, rt_deadline_ms(60000)), 0, "id batches joined");
	for (i = 0; i < ID_SPAWNERS; i++) {
		check_batch(&batch[i], me, all, &nall, &order_bad, &self_bad);
		failed += batch[i].failed;
	}
	is(failed, 0, "all spawns succeeded");
	is(order_bad, 0, "ids increase in spawn order (and are above the spawner's)");
	is(self_bad, 0, "rt_self_id() matches the handle's id");
	qsort(all, nall, sizeof(all[0]), cmp_u64);
	for (i = 1; i < nall; i++)
		dups += all[i] == all[i - 1];
	is(dups, 0, "%d ids from %d concurrent spawners are unique", nall,
	   ID_SPAWNERS);
}

/* ---- work stealing ------------------------------------------------------ */

#define MAX_THREADS 16

static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t threads[MAX_THREADS];
static int nthreads;

/* Records the calling OS thread (never held across a park). */
static void note_thread(void)
{
	pthread_t self = pthread_self();
	int i;

	pthread_mutex_lock(&threads_lock);
	for (i = 0; i < nthreads; i++)
		if (pthread_equal(threads[i], self))
			break;
	if (i == nthreads && nthreads < MAX_THREADS)
		threads[nthreads++] = self;
	pthread_mutex_unlock(&threads_lock);
}

static void busy_task(void *arg)
{
	unsigned long x = 0;
	int round, k;

	for (round = 0; round < 8; round++) {
		note_thread();
		for (k = 0; k < 100000; k++) {
			x += k;
			__asm__ __volatile__("" : "+r"(x)); /* keep the loop */
		}
		rt_yield();
	}
	rt_wg_done(&join);
}

/* One goroutine spawns all the work onto its own worker's queue. Few enough
 * tasks to fit in that queue (256 slots): were it to overflow, the surplus
 * would go to the global queue and reach the idle worker without a steal. */
static void imbalanced_spawner(void *arg)
{
	long n = *(long *)arg, i;

	rt_wg_add(&join, n);
	for (i = 0; i < n; i++)
		if (rt_go(busy_task, NULL, NULL) != 0)
			rt_wg_done(&join);
	rt_wg_done(&join);
}

static void test_stealing(void)
{
	long n = 200;
	struct rt_stats a, b;

	rt_maxprocs(2);
	nthreads = 0;
	rt_stats_get(&a);
	rt_wg_add(&join, 1);
	rt_go(imbalanced_spawner, &n, NULL);
	is(rt_wg_wait(&join, rt_deadline_ms(120000)), 0,
	   "imbalanced load of %ld tasks joined", n);
	rt_stats_get(&b);
	cmp_ok(b.steals - a.steals, >, 0, "the idle worker stole work");
	cmp_ok(nthreads, >=, 2, "tasks ran on more than one OS thread");
	diag("steals %llu, threads %d", (unsigned long long)(b.steals - a.steals),
	     nthreads);
}

static void part1(void *arg)
{
	test_million(1);
	test_million(2);
	test_yield_interleaves();
	test_cooperative();
	test_ids();
	test_stealing();
}

/* ---- idle CPU ----------------------------------------------------------- */

/* Not waiting for an event: a 200 ms measurement window, from the main OS
 * thread outside the runtime. */
static void check_idle_cpu(const char *what)
{
	double t0 = cpu_ms(), used;

	poll(NULL, 0, 200);
	used = cpu_ms() - t0;
	cmp_ok((long)used, <, 20, "idle runtime (%s) used %.2f ms CPU in 200 ms",
	       what, used);
}

/* ---- cancellation ------------------------------------------------------- */

struct sleeper {
	struct rt_gref ref;
	int64_t deadline;
	int rc, rc_again;
	bool saw_cancelled;
	struct rt_wg done;
};

static void sleeper(void *arg)
{
	struct sleeper *s = arg;

	s->rc = rt_sleep(s->deadline);
	s->saw_cancelled = rt_cancelled();
	s->rc_again = rt_sleep(rt_deadline_ms(10000));
	rt_wg_done(&s->done);
}

/* Starts a sleeper from whatever thread calls it (rt_go works off-runtime). */
static void start_sleeper(struct sleeper *s, int64_t deadline)
{
	memset(s, 0, sizeof(*s));
	s->deadline = deadline;
	rt_wg_add(&s->done, 1);
	if (rt_go(sleeper, s, &s->ref) != 0)
		bail_out("rt_go failed");
}

static void check_cancel(struct sleeper *s, const char *what)
{
	int64_t t0 = rt_now();

	ok(wait_state(s->ref.id, RT_G_WAITING, rt_deadline_ms(10000)),
	   "%s: the sleeper is parked", what);
	is(rt_cancel(s->ref), 0, "%s: rt_cancel of a parked goroutine", what);
	is(rt_wg_wait(&s->done, rt_deadline_ms(10000)), 0,
	   "%s: the cancelled goroutine ended", what);
	is_str(proto_err_name(s->rc), "ECANCELED", "%s: its park returned -ECANCELED", what);
	ok(s->saw_cancelled, "%s: rt_cancelled() is true afterwards", what);
	is_str(proto_err_name(s->rc_again), "ECANCELED",
	       "%s: and its later parks return -ECANCELED", what);
	cmp_ok(rt_now() - t0, <, 5000 * MS, "%s: well before its deadline", what);
	ok(wait_state(s->ref.id, RT_G_DEAD, rt_deadline_ms(10000)),
	   "%s: it is no longer live", what);
	is_str(proto_err_name(rt_cancel(s->ref)), "ESRCH",
	       "%s: rt_cancel of an ended goroutine gives -ESRCH", what);
}

static void nothing(void *arg)
{
	rt_wg_done(&join);
}

static void part2(void *arg)
{
	static struct sleeper early; /* its group is not reused: see test_sync */
	struct sleeper *parked = arg;
	int i;

	check_cancel(&parked[0], "sleep(RT_FOREVER)");
	check_cancel(&parked[1], "sleep(60 s)");

	/* Cancelled before it ever parked: its first park fails. */
	rt_maxprocs(1);
	start_sleeper(&early, RT_FOREVER);
	is(rt_cancel(early.ref), 0, "rt_cancel of a goroutine not yet run");
	is(rt_wg_wait(&early.done, rt_deadline_ms(10000)), 0, "it ended");
	is_str(proto_err_name(early.rc), "ECANCELED", "its first park returned -ECANCELED");

	/* A stale handle stays stale after its record was recycled. */
	rt_wg_add(&join, 1000);
	for (i = 0; i < 1000; i++)
		rt_go(nothing, NULL, NULL);
	is(rt_wg_wait(&join, rt_deadline_ms(30000)), 0, "recycling batch joined");
	is_str(proto_err_name(rt_cancel(parked[0].ref)), "ESRCH",
	       "a handle whose record was recycled still gives -ESRCH");
}

/* ---- the end: nothing leaked -------------------------------------------- */

int main(void)
{
	static struct rt_stats st;
	struct sleeper parked[2];

	no_plan();
	is(rt_self_id(), 0, "rt_self_id() is 0 off the runtime");
	if (rt_init(&(struct rt_config){ .maxprocs = 1 }) != 0)
		bail_out("rt_init failed");
	is(rt_run(part1, NULL), 0, "rt_run(part1)");
	check_idle_cpu("no goroutines");

	start_sleeper(&parked[0], RT_FOREVER);
	start_sleeper(&parked[1], rt_deadline_ms(60000));
	check_idle_cpu("two parked goroutines, one with a timer");
	is_str(proto_err_name(rt_shutdown()), "EBUSY",
	       "rt_shutdown refuses while goroutines are alive");

	is(rt_run(part2, parked), 0, "rt_run(part2)");
	check_no_leaks(&st);
	is(st.spawned, st.finished, "stats: every spawned goroutine finished");
	return done_testing();
}
