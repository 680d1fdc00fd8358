/* test_sync.c: goroutine-level sync (daemon/runtime/mutex.c, rwmutex.c, wg.c,
 * sem.c, waitq.c).
 *
 * Checks, at GOMAXPROCS 2:
 *   - the Go tutorial's counter: readers under rt_rwmutex_rlock, incrementers
 *     under rt_rwmutex_lock; the final value is exact and no reader sees a
 *     write in progress;
 *   - the tutorial's "lock outside the goroutine" loop (lock, then go i; i
 *     records itself and unlocks) yields 0..9, every round, with rt_mutex and
 *     rt_rwmutex;
 *   - rt_rwmutex: a writer is not starved by a stream of readers; once a
 *     writer waits, new readers queue (tryrlock -EBUSY); grants are FIFO
 *     (a writer alone, a run of readers together);
 *   - rt_mutex: exclusion under contention, FIFO hand-over, unlock of an
 *     unlocked mutex gives -ENOTLOCKED;
 *   - rt_wg: negative counter refused and unchanged, zero-value wait, waiters
 *     wake only at zero, wait with a deadline, a group on the waiter's stack
 *     is not touched after the wait returned;
 *   - rt_sem: weighted FIFO (a big request at the head is not overtaken),
 *     capacity never exceeded, release without acquire, n > capacity;
 *   - for every blocking call: deadline 0 / in the past fails at once,
 *     a 20 ms deadline times out, rt_cancel gives -ECANCELED, and after a
 *     waiter left the primitive still works, including for those queued
 *     behind the waiter that left.
 * Ends by checking that no goroutine leaked. */
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

/* Starts fn(arg) and waits until it has parked. */
static struct rt_gref go_parked(rt_fn fn, void *arg, const char *what)
{
	struct rt_gref ref = go(fn, arg);

	ok(wait_parked(ref), "%s is parked", what);
	return ref;
}

static void yield_n(int n)
{
	while (n-- > 0)
		rt_yield();
}

/* Grant order, recorded by whoever acquired. */
static rt_spin order_lock;
static int order[64]; /* guarded by order_lock */
static int norder;

static void record(int tag)
{
	rt_spin_lock(&order_lock);
	order[norder++] = tag;
	rt_spin_unlock(&order_lock);
}

static int recorded(void)
{
	int n;

	rt_spin_lock(&order_lock);
	n = norder;
	rt_spin_unlock(&order_lock);
	return n;
}

static void max_update(atomic_int *max, int v)
{
	int cur = atomic_load(max);

	while (v > cur && !atomic_compare_exchange_weak(max, &cur, v))
		;
}

/* ---- the tutorial's counter --------------------------------------------- */

#define READERS 10
#define INCREMENTERS 10
#define INCREMENTS 1000

static struct {
	struct rt_rwmutex rw;
	long value;            /* guarded by rw */
	atomic_bool stop;
	atomic_long reads;
	atomic_int torn, backwards, failed;
} ctr;

static void ctr_reader(void *arg)
{
	long id = (long)arg, v, last = 0, reads = 0;

	while (!atomic_load(&ctr.stop)) {
		if (rt_rwmutex_rlock(&ctr.rw, rt_deadline_ms(30000)) != 0) {
			atomic_fetch_add(&ctr.failed, 1);
			break;
		}
		v = ctr.value;
		rt_yield();
		if (ctr.value != v)
			atomic_fetch_add(&ctr.torn, 1);
		rt_rwmutex_runlock(&ctr.rw);
		if (v < last)
			atomic_fetch_add(&ctr.backwards, 1);
		last = v;
		reads++;
		rt_yield();
	}
	atomic_fetch_add(&ctr.reads, reads);
	diag("reader %ld: %ld reads, last value %ld", id, reads, last);
	rt_wg_done(&kids);
}

static void ctr_incrementer(void *arg)
{
	struct rt_wg *incs = arg;
	long v;
	int k;

	for (k = 0; k < INCREMENTS; k++) {
		if (rt_rwmutex_lock(&ctr.rw, rt_deadline_ms(30000)) != 0) {
			atomic_fetch_add(&ctr.failed, 1);
			break;
		}
		v = ctr.value;
		rt_yield(); /* a data race would lose increments here */
		ctr.value = v + 1;
		rt_rwmutex_unlock(&ctr.rw);
	}
	rt_wg_done(incs);
	rt_wg_done(&kids);
}

static void test_counter(void)
{
	struct rt_wg incs = { 0 };
	long i;

	memset(&ctr, 0, sizeof(ctr));
	for (i = 0; i < READERS; i++)
		go(ctr_reader, (void *)i);
	rt_wg_add(&incs, INCREMENTERS);
	for (i = 0; i < INCREMENTERS; i++)
		go(ctr_incrementer, &incs);
	is(rt_wg_wait(&incs, rt_deadline_ms(120000)), 0, "incrementers done");
	atomic_store(&ctr.stop, true);
	join_kids("counter");
	is(ctr.value, INCREMENTERS * INCREMENTS, "counter is exact");
	is(atomic_load(&ctr.failed), 0, "no lock call failed");
	is(atomic_load(&ctr.torn), 0, "no reader saw a write under its rlock");
	is(atomic_load(&ctr.backwards), 0, "no reader saw the counter go back");
	cmp_ok(atomic_load(&ctr.reads), >, 0, "readers read");
}

/* ---- lock outside the goroutine ----------------------------------------- */

#define HELLOS 10

static struct {
	struct rt_mutex m;
	struct rt_rwmutex rw;
	bool use_rw;
	int seen[HELLOS]; /* guarded by the lock handed to each goroutine */
	int n;
} hand;

static void hello(void *arg)
{
	hand.seen[hand.n++] = (int)(long)arg;
	if (hand.use_rw)
		rt_rwmutex_unlock(&hand.rw);
	else
		rt_mutex_unlock(&hand.m);
	rt_wg_done(&kids);
}

static int hand_lock(void)
{
	if (hand.use_rw)
		return rt_rwmutex_lock(&hand.rw, rt_deadline_ms(10000));
	return rt_mutex_lock(&hand.m, rt_deadline_ms(10000));
}

/* One round: returns whether the goroutines recorded 0..9 in order. */
static bool hello_round(void)
{
	bool in_order = true;
	long i;

	hand.n = 0;
	for (i = 0; i < HELLOS; i++) {
		if (hand_lock() != 0)
			return false;
		go(hello, (void *)i);
	}
	if (hand_lock() != 0) /* waits for the last one's unlock */
		return false;
	for (i = 0; i < HELLOS; i++)
		in_order &= hand.n == HELLOS && hand.seen[i] == i;
	if (hand.use_rw)
		rt_rwmutex_unlock(&hand.rw);
	else
		rt_mutex_unlock(&hand.m);
	return in_order;
}

static void test_lock_outside(bool use_rw)
{
	const char *what = use_rw ? "rt_rwmutex" : "rt_mutex";
	int round;

	memset(&hand, 0, sizeof(hand));
	hand.use_rw = use_rw;
	for (round = 0; round < 5; round++)
		ok(hello_round(), "%s handed over: round %d printed 0..9 in order",
		   what, round);
	join_kids(what);
}

/* ---- rt_rwmutex: writers are not starved, new readers queue ------------- */

static struct {
	struct rt_rwmutex rw;
	atomic_bool stop;
	atomic_long reads;
	atomic_int inside, failed;
} flood;

static void flood_reader(void *arg)
{
	while (!atomic_load(&flood.stop)) {
		if (rt_rwmutex_rlock(&flood.rw, rt_deadline_ms(30000)) != 0) {
			atomic_fetch_add(&flood.failed, 1);
			break;
		}
		atomic_fetch_add(&flood.inside, 1);
		atomic_fetch_add(&flood.reads, 1);
		rt_yield();
		atomic_fetch_sub(&flood.inside, 1);
		rt_rwmutex_runlock(&flood.rw);
		rt_yield();
	}
	rt_wg_done(&kids);
}

static void test_writer_not_starved(void)
{
	int64_t deadline = rt_deadline_ms(10000), t0;
	int i, rc, inside;

	memset(&flood, 0, sizeof(flood));
	for (i = 0; i < 8; i++)
		go(flood_reader, NULL);
	while (atomic_load(&flood.reads) < 200 && rt_now() < deadline)
		rt_yield();
	cmp_ok(atomic_load(&flood.reads), >=, 200, "the reader stream is flowing");
	t0 = rt_now();
	rc = rt_rwmutex_lock(&flood.rw, rt_deadline_ms(10000));
	inside = atomic_load(&flood.inside);
	is_str(ename(rc), "0", "a writer gets the lock amid a stream of readers");
	is(inside, 0, "no reader inside while the writer holds it");
	diag("writer waited %.2f ms", (rt_now() - t0) / 1e6);
	if (rc == 0)
		rt_rwmutex_unlock(&flood.rw);
	atomic_store(&flood.stop, true);
	join_kids("reader stream");
	is(atomic_load(&flood.failed), 0, "no reader's rlock failed");
}

/* A goroutine that takes one rt_rwmutex in one mode, records its tag, holds
 * it for a few yields (a reader: until `group` readers are in, or 2 s), and
 * lets go. */
struct rw_req {
	struct rt_rwmutex *rw;
	bool writer;
	int tag;
	int64_t deadline; /* 0: 10 s from start */
	int rc;
	int group;        /* readers expected to hold it together with this one */
};

static atomic_int readers_in, max_readers_in, writer_overlap;

static void rw_holder(void *arg)
{
	struct rw_req *r = arg;
	int64_t d = r->deadline ? r->deadline : rt_deadline_ms(10000);

	r->rc = r->writer ? rt_rwmutex_lock(r->rw, d) : rt_rwmutex_rlock(r->rw, d);
	if (r->rc == 0) {
		record(r->tag);
		if (r->writer) {
			writer_overlap += atomic_load(&readers_in) != 0;
			yield_n(5);
			rt_rwmutex_unlock(r->rw);
		} else {
			int64_t until = rt_deadline_ms(2000);

			max_update(&max_readers_in, atomic_fetch_add(&readers_in, 1) + 1);
			while (atomic_load(&readers_in) < r->group && rt_now() < until)
				rt_yield();
			yield_n(5);
			atomic_fetch_sub(&readers_in, 1);
			rt_rwmutex_runlock(r->rw);
		}
	}
	rt_wg_done(&kids);
}

static void reset_order(void)
{
	rt_spin_lock(&order_lock);
	norder = 0;
	memset(order, -1, sizeof(order));
	rt_spin_unlock(&order_lock);
	atomic_store(&readers_in, 0);
	atomic_store(&max_readers_in, 0);
	atomic_store(&writer_overlap, 0);
}

/* A reader holds; a writer queues; then new readers must queue behind it. */
static void test_readers_queue_behind_writer(void)
{
	static struct rt_rwmutex rw;
	struct rw_req w = { .rw = &rw, .writer = true, .tag = 1, .rc = -1 };
	struct rw_req r = { .rw = &rw, .writer = false, .tag = 2, .rc = -1 };
	int64_t t0;

	reset_order();
	is(rt_rwmutex_rlock(&rw, 0), 0, "uncontended rlock with deadline 0");
	go_parked(rw_holder, &w, "a writer behind a reader");
	is_str(ename(rt_rwmutex_tryrlock(&rw)), "EBUSY",
	       "tryrlock is refused while a writer waits");
	t0 = rt_now();
	is_str(ename(rt_rwmutex_rlock(&rw, 0)), "ETIMEDOUT",
	       "rlock with deadline 0 does not barge past the writer");
	cmp_ok(rt_now() - t0, <, 1000 * MS, "and does not block");
	go_parked(rw_holder, &r, "a reader behind the writer");
	is(rt_rwmutex_runlock(&rw), 0, "the first reader leaves");
	join_kids("writer/reader queue");
	is(w.rc, 0, "the writer got it");
	is(r.rc, 0, "the queued reader got it");
	ok(order[0] == 1 && order[1] == 2, "writer first, then the reader (%d, %d)",
	   order[0], order[1]);
	is(writer_overlap, 0, "the writer was alone");
}

/* Phase-fair grants (Go's semantics; rwmutex.c): with main holding the
 * write lock, W1 R1 R2 W2 R3 queue. When main unlocks, the readers that
 * waited during its turn go in together {R1 R2 R3}, then the writers in
 * their order, W1 then W2. */
/* A reader whose wait is cancelled after the writer's unlock has already
 * let it in (and its wake failed): the reader count must come back to 0,
 * so a writer can lock again. (Found by review: the count went to 2^32-1.)
 * maxprocs 1 keeps the cancelled reader from running between the cancel
 * and the unlock. */
static void test_rw_cancelled_reader_let_in(void)
{
	static struct rt_rwmutex rw;
	static struct rw_req r;
	struct rt_gref ref;
	int prev = rt_maxprocs(1);

	reset_order();
	is(rt_rwmutex_lock(&rw, 0), 0, "main holds the write lock");
	r = (struct rw_req){ .rw = &rw, .writer = false, .tag = 1, .rc = -1, .group = 1 };
	ref = go_parked(rw_holder, &r, "a reader");
	is(rt_cancel(ref), 0, "the reader is cancelled");
	is(rt_rwmutex_unlock(&rw), 0, "main unlocks at once: the reader is let in, its wake fails");
	join_kids("cancelled reader");
	is_str(ename(r.rc), "ECANCELED", "the reader's rlock returned -ECANCELED");
	is(rt_rwmutex_trylock(&rw), 0, "a writer can lock again: no reader is left counted");
	is(rt_rwmutex_unlock(&rw), 0, "and unlock");
	rt_maxprocs(prev);
}

static void test_rw_fifo(void)
{
	static struct rt_rwmutex rw;
	static struct rw_req q[5];
	static const bool writer[5] = { true, false, false, true, false };
	static const int group[5] = { 0, 3, 3, 0, 3 };
	int i;

	reset_order();
	is(rt_rwmutex_lock(&rw, 0), 0, "main holds the write lock");
	for (i = 0; i < 5; i++) {
		q[i] = (struct rw_req){ .rw = &rw, .writer = writer[i], .tag = i + 1,
					.rc = -1, .group = group[i] };
		go_parked(rw_holder, &q[i], writer[i] ? "writer" : "reader");
	}
	is(rt_rwmutex_unlock(&rw), 0, "main unlocks");
	join_kids("rw fifo");
	is(recorded(), 5, "all five were granted");
	ok(order[0] + order[1] + order[2] == 2 + 3 + 5 && order[0] != 1 && order[1] != 1 &&
	   order[2] != 1 && order[0] != 4 && order[1] != 4 && order[2] != 4,
	   "the readers first: R1, R2 and R3 (%d, %d, %d)", order[0], order[1], order[2]);
	is(order[3], 1, "then W1");
	is(order[4], 4, "then W2");
	is(atomic_load(&max_readers_in), 3, "R1, R2 and R3 held it together");
	is(writer_overlap, 0, "no writer overlapped a reader");
}

/* ---- rt_mutex ----------------------------------------------------------- */

static struct {
	struct rt_mutex m;
	long value; /* guarded by m */
	atomic_int inside, overlap, failed;
} mx;

static void mx_worker(void *arg)
{
	long m = (long)arg, k, v;

	for (k = 0; k < m; k++) {
		if (rt_mutex_lock(&mx.m, rt_deadline_ms(30000)) != 0) {
			atomic_fetch_add(&mx.failed, 1);
			break;
		}
		if (atomic_fetch_add(&mx.inside, 1) != 0)
			atomic_fetch_add(&mx.overlap, 1);
		v = mx.value;
		if (k % 8 == 0)
			rt_yield();
		mx.value = v + 1;
		atomic_fetch_sub(&mx.inside, 1);
		rt_mutex_unlock(&mx.m);
	}
	rt_wg_done(&kids);
}

static void test_mutex_exclusion(void)
{
	long n = 20, m = tap_scale(5000, 500), i;

	memset(&mx, 0, sizeof(mx));
	for (i = 0; i < n; i++)
		go(mx_worker, (void *)m);
	join_kids("mutex workers");
	is(mx.value, n * m, "%ld goroutines x %ld increments: exact", n, m);
	is(atomic_load(&mx.overlap), 0, "never two inside");
	is(atomic_load(&mx.failed), 0, "no lock call failed");
}

struct mx_req {
	struct rt_mutex *m;
	int tag;
	int64_t deadline; /* 0: 10 s from start */
	int rc;
};

static void mx_holder(void *arg)
{
	struct mx_req *r = arg;
	int64_t d = r->deadline ? r->deadline : rt_deadline_ms(10000);

	r->rc = rt_mutex_lock(r->m, d);
	if (r->rc == 0) {
		record(r->tag);
		yield_n(3);
		rt_mutex_unlock(r->m);
	}
	rt_wg_done(&kids);
}

static void test_mutex_misc(void)
{
	static struct rt_mutex m;
	static struct mx_req q[5];
	int i;

	is_str(ename(rt_mutex_unlock(&m)), "ENOTLOCKED",
	       "unlock of an unlocked rt_mutex");
	is(rt_mutex_trylock(&m), 0, "trylock of a free mutex");
	is_str(ename(rt_mutex_trylock(&m)), "EBUSY", "trylock of a held mutex");
	reset_order();
	for (i = 0; i < 5; i++) {
		q[i] = (struct mx_req){ &m, i + 1, 0, -1 };
		go_parked(mx_holder, &q[i], "mutex waiter");
	}
	is(rt_mutex_unlock(&m), 0, "unlock with waiters");
	join_kids("mutex fifo");
	for (i = 0; i < 5; i++)
		is(order[i], i + 1, "mutex waiters served in arrival order (%d)", i);
	is_str(ename(rt_mutex_unlock(&m)), "ENOTLOCKED",
	       "unlock after everyone left: -ENOTLOCKED");
	is(rt_mutex_lock(&m, 0), 0, "and the mutex still works");
	is(rt_mutex_unlock(&m), 0, "unlock");
}

static void test_rwmutex_misuse(void)
{
	static struct rt_rwmutex rw;

	is_str(ename(rt_rwmutex_unlock(&rw)), "ENOTLOCKED",
	       "unlock of an unlocked rt_rwmutex");
	is_str(ename(rt_rwmutex_runlock(&rw)), "ENOTLOCKED",
	       "runlock of an unlocked rt_rwmutex");
	is(rt_rwmutex_rlock(&rw, 0), 0, "rlock");
	is_str(ename(rt_rwmutex_unlock(&rw)), "ENOTLOCKED",
	       "unlock of a read-locked rt_rwmutex");
	is(rt_rwmutex_tryrlock(&rw), 0, "a second reader joins");
	is_str(ename(rt_rwmutex_trylock(&rw)), "EBUSY", "trylock while read-locked");
	is(rt_rwmutex_runlock(&rw), 0, "runlock");
	is(rt_rwmutex_runlock(&rw), 0, "runlock");
	is(rt_rwmutex_trylock(&rw), 0, "trylock once free");
	is_str(ename(rt_rwmutex_runlock(&rw)), "ENOTLOCKED",
	       "runlock of a write-locked rt_rwmutex");
	is_str(ename(rt_rwmutex_tryrlock(&rw)), "EBUSY", "tryrlock while write-locked");
	is(rt_rwmutex_unlock(&rw), 0, "unlock");
	is(rt_rwmutex_lock(&rw, 0), 0, "and it still works");
	is(rt_rwmutex_unlock(&rw), 0, "unlock");
}

/* ---- rt_wg -------------------------------------------------------------- */

static struct rt_wg wwg;
static atomic_int wg_woken;

static void wg_waiter(void *arg)
{
	int *rc = arg;

	*rc = rt_wg_wait(&wwg, rt_deadline_ms(10000));
	atomic_fetch_add(&wg_woken, 1);
	rt_wg_done(&kids);
}

static void test_wg_counter(void)
{
	struct rt_wg wg = { 0 };
	int64_t t0 = rt_now();

	is(rt_wg_wait(&wg, RT_FOREVER), 0, "zero-value wait returns at once");
	is(rt_wg_wait(&wg, 0), 0, "zero-value wait with deadline 0 returns 0");
	cmp_ok(rt_now() - t0, <, 1000 * MS, "without blocking");
	is_str(ename(rt_wg_add(&wg, -1)), "ENEGATIVE", "add(-1) on zero is refused");
	is(rt_wg_count(&wg), 0, "and the counter stays 0");
	is(rt_wg_add(&wg, 3), 3, "add(3) returns the new count");
	is_str(ename(rt_wg_add(&wg, -4)), "ENEGATIVE", "add(-4) on 3 is refused");
	is(rt_wg_count(&wg), 3, "and the counter stays 3");
	is(rt_wg_done(&wg), 2, "done: 2");
	is(rt_wg_done(&wg), 1, "done: 1");
	is(rt_wg_done(&wg), 0, "done: 0");
	is_str(ename(rt_wg_done(&wg)), "ENEGATIVE", "done on zero is refused");
	is(rt_wg_count(&wg), 0, "and the counter stays 0");
	is(rt_wg_add(&wg, 1), 1, "add(1)");
	t0 = rt_now();
	is_str(ename(rt_wg_wait(&wg, rt_deadline_ms(20))), "ETIMEDOUT",
	       "wait with a 20 ms deadline times out");
	cmp_ok(rt_now() - t0, >=, 20 * MS, "not before the deadline");
	cmp_ok(rt_now() - t0, <, 5000 * MS, "and well within 5 s");
	is(rt_wg_count(&wg), 1, "the counter is unchanged by the timeout");
	is(rt_wg_done(&wg), 0, "done");
	is(rt_wg_wait(&wg, 0), 0, "wait at zero");
}

/* Whether the waiter is still parked and has not returned. */
static bool still_waiting(struct rt_gref ref)
{
	yield_n(10);
	return atomic_load(&wg_woken) == 0 && g_state(ref.id) == RT_G_WAITING;
}

static void test_wg_wakes_at_zero(void)
{
	static int rc[10];
	struct rt_gref ref;
	int i, bad = 0;

	atomic_store(&wg_woken, 0);
	is(rt_wg_add(&wwg, 3), 3, "add(3)");
	ref = go_parked(wg_waiter, &rc[0], "a wg waiter");
	rt_wg_done(&wwg);
	ok(still_waiting(ref), "count 2: the waiter still waits");
	rt_wg_done(&wwg);
	ok(still_waiting(ref), "count 1: the waiter still waits");
	rt_wg_done(&wwg);
	join_kids("wg waiter");
	is(rc[0], 0, "count 0: the waiter woke with 0");

	is(rt_wg_add(&wwg, 1), 1, "reused: add(1)");
	for (i = 0; i < 10; i++)
		go_parked(wg_waiter, &rc[i], "one of ten wg waiters");
	rt_wg_done(&wwg);
	join_kids("ten wg waiters");
	for (i = 0; i < 10; i++)
		bad += rc[i] != 0;
	is(bad, 0, "all ten waiters woke with 0");
}

/* Go's idiom: a WaitGroup on the waiter's stack, gone as soon as wait
 * returns. The last done() must not touch the group once it has woken the
 * waiter, which may run on another worker and reuse that stack at once.
 * A canary over the same stack area catches a late write; ASan and TSan
 * catch reads too. Probabilistic: the window is a few instructions wide. */
static void stack_wg_child(void *arg)
{
	rt_wg_done(arg);
	rt_wg_done(&kids);
}

static __attribute__((noinline)) int stack_wg_once(void)
{
	struct rt_wg wg = { 0 };

	rt_wg_add(&wg, 1);
	go(stack_wg_child, &wg);
	return rt_wg_wait(&wg, rt_deadline_ms(10000));
}

/* Fills the stack area the group used with a canary, lets the last done()
 * finish, and says whether the canary survived. */
static __attribute__((noinline)) bool stack_canary_survives(void)
{
	volatile unsigned char buf[256];
	size_t i;
	bool intact = true;

	memset((unsigned char *)buf, 0xa5, sizeof(buf));
	rt_wg_wait(&kids, rt_deadline_ms(10000));
	for (i = 0; i < sizeof(buf); i++)
		intact &= buf[i] == 0xa5;
	return intact;
}

static void test_wg_on_stack(void)
{
	long n = tap_scale(20000, 20000), i, failed = 0, scribbled = 0;

	for (i = 0; i < n; i++) {
		failed += stack_wg_once() != 0;
		scribbled += !stack_canary_survives();
	}
	is(failed, 0, "%ld waits on a WaitGroup on the waiter's stack", n);
	is(scribbled, 0, "the last done() never wrote to it after the wait returned");
}

/* ---- rt_sem ------------------------------------------------------------- */

struct sem_req {
	struct rt_sem *s;
	int64_t n;
	int tag;
	int64_t deadline; /* 0: 10 s from start */
	int rc;
};

static void sem_holder(void *arg)
{
	struct sem_req *r = arg;
	int64_t d = r->deadline ? r->deadline : rt_deadline_ms(10000);

	r->rc = rt_sem_acquire(r->s, r->n, d);
	if (r->rc == 0) {
		record(r->tag);
		yield_n(3);
		rt_sem_release(r->s, r->n);
	}
	rt_wg_done(&kids);
}

static void test_sem_errors(void)
{
	static struct rt_sem s;

	rt_sem_init(&s, 10);
	is_str(ename(rt_sem_acquire(&s, 11, 0)), "EINVAL", "acquire(n > capacity)");
	is_str(ename(rt_sem_acquire(&s, 11, RT_FOREVER)), "EINVAL",
	       "acquire(n > capacity) does not block forever");
	is_str(ename(rt_sem_release(&s, 1)), "ENOTHELD", "release without acquire");
	is(rt_sem_tryacquire(&s, 10), 0, "tryacquire(capacity)");
	is_str(ename(rt_sem_tryacquire(&s, 1)), "EBUSY", "tryacquire when full");
	is_str(ename(rt_sem_release(&s, 11)), "ENOTHELD", "release more than held");
	is(rt_sem_release(&s, 10), 0, "release(10)");
	is_str(ename(rt_sem_release(&s, 1)), "ENOTHELD", "release after all released");
	is(rt_sem_acquire(&s, 10, 0), 0, "the semaphore is whole again");
	is(rt_sem_release(&s, 10), 0, "release");
}

/* Main holds 8 of 10; B wants 10 and queues; small requests queue behind B
 * although 2 units are free, and are served after B. */
static void test_sem_weighted_fifo(void)
{
	static struct rt_sem s;
	static struct sem_req b, s1, s2;

	rt_sem_init(&s, 10);
	reset_order();
	is(rt_sem_acquire(&s, 8, 0), 0, "main takes 8 of 10");
	b = (struct sem_req){ &s, 10, 1, 0, -1 };
	go_parked(sem_holder, &b, "a request for 10");
	is_str(ename(rt_sem_tryacquire(&s, 1)), "EBUSY",
	       "tryacquire(1) does not overtake the waiting big request");
	s1 = (struct sem_req){ &s, 1, 2, 0, -1 };
	go_parked(sem_holder, &s1, "a request for 1 behind it (2 units free)");
	s2 = (struct sem_req){ &s, 2, 3, 0, -1 };
	go_parked(sem_holder, &s2, "a request for 2 behind it");
	is(rt_sem_release(&s, 8), 0, "main releases 8");
	join_kids("weighted fifo");
	is(b.rc, 0, "the big request got its 10");
	ok(s1.rc == 0 && s2.rc == 0, "the small ones got theirs");
	is(order[0], 1, "the big request at the head was served first");
	is(recorded(), 3, "all three served");
	is(rt_sem_acquire(&s, 10, 0), 0, "all 10 units are back");
	rt_sem_release(&s, 10);
}

static struct {
	struct rt_sem s;
	atomic_int held, max_held, failed;
} cap;

static void cap_worker(void *arg)
{
	long i = (long)arg, k;
	int w;

	for (k = 0; k < 200; k++) {
		w = 1 + (int)((i + k) % 4);
		if (rt_sem_acquire(&cap.s, w, rt_deadline_ms(30000)) != 0) {
			atomic_fetch_add(&cap.failed, 1);
			break;
		}
		max_update(&cap.max_held, atomic_fetch_add(&cap.held, w) + w);
		rt_yield();
		atomic_fetch_sub(&cap.held, w);
		rt_sem_release(&cap.s, w);
	}
	rt_wg_done(&kids);
}

static void test_sem_capacity(void)
{
	long i;

	memset(&cap, 0, sizeof(cap));
	rt_sem_init(&cap.s, 4);
	for (i = 0; i < 30; i++)
		go(cap_worker, (void *)i);
	join_kids("semaphore load");
	is(atomic_load(&cap.failed), 0, "no acquire failed");
	cmp_ok(atomic_load(&cap.max_held), <=, 4, "capacity 4 never exceeded");
	diag("most units held at once: %d", atomic_load(&cap.max_held));
	is(rt_sem_acquire(&cap.s, 4, 0), 0, "all units released at the end");
	rt_sem_release(&cap.s, 4);
}

/* ---- deadlines and cancellation of every blocking call ------------------ */

/* One blocking call, with what makes it block and what undoes it. */
struct prim {
	const char *name;
	void (*hold)(void);               /* makes attempt() block */
	void (*release)(void);            /* undoes hold() */
	int (*attempt)(int64_t deadline); /* the call under test */
	void (*undo)(void);               /* undoes a successful attempt() */
};

static struct rt_mutex pm;
static struct rt_rwmutex prw;
static struct rt_wg pwg;
static struct rt_sem psem;

static void pm_hold(void) { rt_mutex_lock(&pm, RT_FOREVER); }
static void pm_release(void) { rt_mutex_unlock(&pm); }
static int pm_attempt(int64_t d) { return rt_mutex_lock(&pm, d); }
static void prw_wlock(void) { rt_rwmutex_lock(&prw, RT_FOREVER); }
static void prw_wunlock(void) { rt_rwmutex_unlock(&prw); }
static void prw_rlock(void) { rt_rwmutex_rlock(&prw, RT_FOREVER); }
static void prw_runlock(void) { rt_rwmutex_runlock(&prw); }
static int prw_attempt_r(int64_t d) { return rt_rwmutex_rlock(&prw, d); }
static int prw_attempt_w(int64_t d) { return rt_rwmutex_lock(&prw, d); }
static void pwg_hold(void) { rt_wg_add(&pwg, 1); }
static void pwg_release(void) { rt_wg_done(&pwg); }
static int pwg_attempt(int64_t d) { return rt_wg_wait(&pwg, d); }
static void nop(void) { }
static void psem_hold(void) { rt_sem_acquire(&psem, 3, RT_FOREVER); }
static void psem_release(void) { rt_sem_release(&psem, 3); }
static int psem_attempt(int64_t d) { return rt_sem_acquire(&psem, 1, d); }
static void psem_undo(void) { rt_sem_release(&psem, 1); }

static const struct prim prims[] = {
	{ "mutex lock", pm_hold, pm_release, pm_attempt, pm_release },
	{ "rwmutex rlock vs writer", prw_wlock, prw_wunlock, prw_attempt_r, prw_runlock },
	{ "rwmutex lock vs reader", prw_rlock, prw_runlock, prw_attempt_w, prw_wunlock },
	{ "rwmutex lock vs writer", prw_wlock, prw_wunlock, prw_attempt_w, prw_wunlock },
	{ "wg wait", pwg_hold, pwg_release, pwg_attempt, nop },
	{ "sem acquire", psem_hold, psem_release, psem_attempt, psem_undo },
};

/* One attempt, in its own goroutine; the only one of `kids` while it runs. */
struct attempt {
	const struct prim *p;
	int64_t deadline;
	int rc;
	int64_t ended;
};

static void attempter(void *arg)
{
	struct attempt *a = arg;

	a->rc = a->p->attempt(a->deadline);
	a->ended = rt_now();
	if (a->rc == 0)
		a->p->undo();
	rt_wg_done(&kids);
}

/* Starts an attempt; *ref gets its handle. */
static void start_attempt(struct attempt *a, const struct prim *p,
			  int64_t deadline, struct rt_gref *ref)
{
	*a = (struct attempt){ .p = p, .deadline = deadline, .rc = 1 };
	*ref = go(attempter, a);
}

/* Joins the attempt; its result, or 1 if it did not end within 10 s. */
static int finish_attempt(struct attempt *a)
{
	if (rt_wg_wait(&kids, rt_deadline_ms(10000)) != 0)
		return 1;
	return a->rc;
}

/* With the primitive held: deadline 0, a past deadline, 20 ms. */
static void check_deadlines(const struct prim *p)
{
	struct attempt a;
	struct rt_gref ref;
	int64_t t0 = rt_now(), d;

	is_str(ename(p->attempt(0)), "ETIMEDOUT", "%s: deadline 0 when contended", p->name);
	is_str(ename(p->attempt(rt_now() - 1000 * MS)), "ETIMEDOUT",
	       "%s: a deadline in the past", p->name);
	cmp_ok(rt_now() - t0, <, 1000 * MS, "%s: neither blocked", p->name);
	d = rt_deadline_ms(20);
	start_attempt(&a, p, d, &ref);
	is_str(ename(finish_attempt(&a)), "ETIMEDOUT", "%s: a 20 ms deadline times out", p->name);
	cmp_ok(a.ended, >=, d, "%s: not before its deadline", p->name);
	cmp_ok(a.ended - d, <, 5000 * MS, "%s: and within 5 s of it", p->name);
}

static void check_cancel(const struct prim *p)
{
	struct attempt a;
	struct rt_gref ref;

	start_attempt(&a, p, RT_FOREVER, &ref);
	ok(wait_parked(ref), "%s: a waiter without deadline is parked", p->name);
	is(rt_cancel(ref), 0, "%s: rt_cancel", p->name);
	is_str(ename(finish_attempt(&a)), "ECANCELED", "%s: the park returns -ECANCELED",
	       p->name);
}

/* After waiters left by timeout and cancel, the next one is served. */
static void check_still_works(const struct prim *p)
{
	struct attempt a;
	struct rt_gref ref;

	start_attempt(&a, p, rt_deadline_ms(10000), &ref);
	ok(wait_parked(ref), "%s: a new waiter is parked", p->name);
	p->release();
	is_str(ename(finish_attempt(&a)), "0", "%s: it is served on release", p->name);
	is_str(ename(p->attempt(0)), "0", "%s: then free again", p->name);
	p->undo();
}

static void test_deadlines_and_cancel(void)
{
	size_t i;

	rt_sem_init(&psem, 3);
	for (i = 0; i < sizeof(prims) / sizeof(prims[0]); i++) {
		prims[i].hold();
		check_deadlines(&prims[i]);
		check_cancel(&prims[i]);
		check_still_works(&prims[i]);
	}
	join_kids("deadline attempts");
}

/* Goroutine only: yields until n grants were recorded, or 5 s. */
static bool wait_recorded(int n)
{
	int64_t deadline = rt_deadline_ms(5000);

	while (recorded() < n && rt_now() < deadline)
		rt_yield();
	return recorded() >= n;
}

/* The deadline for a waiter that should leave by timeout: long enough for
 * the ones behind it to queue first. */
static int64_t leaver_deadline(bool by_cancel)
{
	return rt_deadline_ms(by_cancel ? 10000 : 300);
}

/* A writer that leaves the queue (timeout or cancel) must not strand the
 * readers queued behind it while only readers hold the lock. */
static void check_rw_leaver(bool by_cancel)
{
	static struct rt_rwmutex rw;
	static struct rw_req w, r;
	const char *how = by_cancel ? "cancelled" : "timed out";
	struct rt_gref wref;

	reset_order();
	w = (struct rw_req){ .rw = &rw, .writer = true, .tag = 1,
			     .deadline = leaver_deadline(by_cancel), .rc = -1 };
	r = (struct rw_req){ .rw = &rw, .writer = false, .tag = 2, .rc = -1 };
	is(rt_rwmutex_rlock(&rw, 0), 0, "main holds a read lock");
	wref = go_parked(rw_holder, &w, "a writer");
	go_parked(rw_holder, &r, "a reader behind the writer");
	if (by_cancel)
		rt_cancel(wref);
	ok(wait_recorded(1) && order[0] == 2,
	   "writer %s: the reader queued behind it is granted", how);
	is(rt_rwmutex_runlock(&rw), 0, "main's runlock");
	join_kids("rw leaver");
	is_str(ename(w.rc), by_cancel ? "ECANCELED" : "ETIMEDOUT", "the writer %s", how);
	is(r.rc, 0, "the reader got it");
	is(rt_rwmutex_trylock(&rw), 0, "the rwmutex is free afterwards");
	rt_rwmutex_unlock(&rw);
}

/* A big semaphore request that leaves must not strand the small ones queued
 * behind it while units are free. */
static void check_sem_leaver(bool by_cancel)
{
	static struct rt_sem s;
	static struct sem_req b, small;
	const char *how = by_cancel ? "cancelled" : "timed out";
	struct rt_gref bref;

	rt_sem_init(&s, 10);
	reset_order();
	b = (struct sem_req){ &s, 10, 1, leaver_deadline(by_cancel), -1 };
	small = (struct sem_req){ &s, 1, 2, 0, -1 };
	is(rt_sem_acquire(&s, 8, 0), 0, "main takes 8 of 10");
	bref = go_parked(sem_holder, &b, "a request for 10");
	go_parked(sem_holder, &small, "a request for 1 behind it");
	if (by_cancel)
		rt_cancel(bref);
	ok(wait_recorded(1) && order[0] == 2,
	   "big request %s: the small one behind it is served", how);
	is(rt_sem_release(&s, 8), 0, "main releases its 8");
	join_kids("sem leaver");
	is_str(ename(b.rc), by_cancel ? "ECANCELED" : "ETIMEDOUT", "the big request %s", how);
	is(small.rc, 0, "the small request got its unit");
	is(rt_sem_acquire(&s, 10, 0), 0, "all 10 units are back");
	rt_sem_release(&s, 10);
}

/* Goroutine only: yields until goroutine `ref` has ended, or 10 s. */
static bool wait_ended(struct rt_gref ref)
{
	int64_t deadline = rt_deadline_ms(10000);

	while (g_state(ref.id) != RT_G_DEAD) {
		if (rt_now() >= deadline)
			return false;
		rt_yield();
	}
	return true;
}

/* A mutex waiter that leaves must not strand the one queued behind it. */
static void check_mutex_leaver(bool by_cancel)
{
	static struct rt_mutex m;
	static struct mx_req first, second;
	const char *how = by_cancel ? "cancelled" : "timed out";
	struct rt_gref fref;

	reset_order();
	first = (struct mx_req){ &m, 1, leaver_deadline(by_cancel), -1 };
	second = (struct mx_req){ &m, 2, 0, -1 };
	is(rt_mutex_lock(&m, 0), 0, "main holds the mutex");
	fref = go_parked(mx_holder, &first, "a mutex waiter");
	go_parked(mx_holder, &second, "a second mutex waiter");
	if (by_cancel)
		rt_cancel(fref);
	ok(wait_ended(fref), "the first waiter %s and left", how);
	is(rt_mutex_unlock(&m), 0, "main unlocks");
	ok(wait_recorded(1) && order[0] == 2,
	   "first waiter %s: the second one gets the mutex", how);
	join_kids("mutex leaver");
	is_str(ename(first.rc), by_cancel ? "ECANCELED" : "ETIMEDOUT",
	       "the first waiter %s", how);
	is(second.rc, 0, "the second waiter got it");
	is(rt_mutex_trylock(&m), 0, "the mutex is free afterwards");
	rt_mutex_unlock(&m);
}

static void test_leavers(void)
{
	check_rw_leaver(false);
	check_rw_leaver(true);
	check_sem_leaver(false);
	check_sem_leaver(true);
	check_mutex_leaver(false);
	check_mutex_leaver(true);
}

static void sync_main(void *arg)
{
	test_counter();
	test_lock_outside(false);
	test_lock_outside(true);
	test_writer_not_starved();
	test_readers_queue_behind_writer();
	test_rw_fifo();
	test_rw_cancelled_reader_let_in();
	test_mutex_exclusion();
	test_mutex_misc();
	test_rwmutex_misuse();
	test_wg_counter();
	test_wg_wakes_at_zero();
	test_sem_errors();
	test_sem_weighted_fifo();
	test_sem_capacity();
	test_deadlines_and_cancel();
	test_leavers();
	test_wg_on_stack(); /* last: a failure here tends to crash */
}

int main(void)
{
	static struct rt_stats st;

	no_plan();
	if (rt_init(&(struct rt_config){ .maxprocs = 2 }) != 0)
		bail_out("rt_init failed");
	is(rt_run(sync_main, NULL), 0, "rt_run");
	check_no_leaks(&st);
	return done_testing();
}
