/* test_locks.c: gorod's named locks and WaitGroups, end to end, through
 * libgoro, across processes.
 *
 * One real gorod on a temporary socket (harness.c) serves every part:
 *
 * - load: many client processes (fork) lock and unlock ten RWMutexes, 70%
 *   for reading. Each records in shared memory how many readers and
 *   writers hold each name right after its grant and right before its
 *   unlock, so any overlap gorod allowed shows as a violation; and checks
 *   the fencing tokens: increasing per name for each client, and a grant's
 *   token above every token of the grants that must have ended before it.
 * - a holder killed with SIGKILL: the waiter next in line is told
 *   owner_died; a waiter killed: nothing is granted to it, the queue moves
 *   on to the one behind.
 * - two sessions crossing two locks: EDEADLK at once for one, the other
 *   proceeds when it lets go.
 * - a waiting lock does not hold up stats on the same connection.
 * - WaitGroups: the negative counter refused and left unchanged, the zero
 *   value, a lease-bound add whose process is killed (ELOST).
 * - semaphores: the capacity is never exceeded.
 * - at the end, gorod has forgotten every name and stops cleanly.
 *
 * Forked children never print TAP: they record what they saw in shared
 * memory, and the parent checks it. No wait is a sleep: the parent waits
 * for a byte on a pipe, a reply, a child's exit, or (for what gorod has no
 * event for) polls its stats, each with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define NNAMES 10
#define WAIT_MS 10000      /* for one event: a reply, a byte, an exit */
#define CHILD_LOCK_MS 120000 /* a load child's lock timeout */

static struct harness h;

/* ---- shared memory and children --------------------------------------------- */

/* What forked children report: the first failure, and how many. */
struct failures {
	atomic_int count;
	atomic_int first_taken;
	int first_err;
	char first_what[160];
};

static void *shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bail_out("mmap: %s", strerror(errno));
	return p;
}

/* In a child: counts a failed request, keeping the first one's story. */
static void record_failure(struct failures *f, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void record_failure(struct failures *f, int err, const char *fmt, ...)
{
	va_list ap;
	int zero = 0;

	atomic_fetch_add(&f->count, 1);
	if (!atomic_compare_exchange_strong(&f->first_taken, &zero, 1))
		return;
	f->first_err = err;
	va_start(ap, fmt);
	vsnprintf(f->first_what, sizeof f->first_what, fmt, ap);
	va_end(ap);
}

static void report_failures(const struct failures *f, const char *what)
{
	if (!is(f->count, 0, "%s: no request failed", what))
		diag("first: %s: %s (%s)", f->first_what, goro_strerror(f->first_err),
		     goro_err_name(f->first_err));
}

/* Forks a child that runs fn(arg) and _exits with its return value. */
static pid_t spawn(int (*fn)(void *), void *arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

/* A small deterministic generator for the children's choices. */
static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void atomic_max_u64(_Atomic uint64_t *p, uint64_t v)
{
	uint64_t cur = atomic_load(p);

	while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
		;
}

/* ---- the load ------------------------------------------------------------------ */

struct name_state {
	atomic_int readers, writers;
	_Atomic uint64_t max_token;        /* the largest token granted and seen */
	_Atomic uint64_t last_write_token; /* the latest writer's token */
};

struct load_shared {
	struct name_state names[NNAMES];
	atomic_int two_writers;      /* a writer saw another writer */
	atomic_int writer_readers;   /* a writer and readers at once */
	atomic_int token_zero;
	atomic_int token_not_increasing; /* a client's tokens on a name */
	atomic_int token_stale;          /* not above an ended grant's */
	atomic_long reads, writes;
	atomic_int max_readers;
	struct failures fail;
};

struct load_args {
	struct load_shared *sh;
	int idx, ops;
};

static void name_of(char *buf, size_t size, int n)
{
	snprintf(buf, size, "load.%d", n);
}

/* Right after a grant: joins the holders of name n and checks who else
 * holds it and the token. */
static void load_enter(struct load_shared *sh, int n, bool reader, uint64_t token)
{
	struct name_state *ns = &sh->names[n];

	if (token == 0)
		atomic_fetch_add(&sh->token_zero, 1);
	if (reader) {
		int r = atomic_fetch_add(&ns->readers, 1) + 1;
		int m = atomic_load(&sh->max_readers);

		while (r > m && !atomic_compare_exchange_weak(&sh->max_readers, &m, r))
			;
		if (atomic_load(&ns->writers) != 0)
			atomic_fetch_add(&sh->writer_readers, 1);
		/* The last writer unlocked before this grant. */
		if (token <= atomic_load(&ns->last_write_token))
			atomic_fetch_add(&sh->token_stale, 1);
		atomic_max_u64(&ns->max_token, token);
		atomic_fetch_add(&sh->reads, 1);
	} else {
		if (atomic_fetch_add(&ns->writers, 1) != 0)
			atomic_fetch_add(&sh->two_writers, 1);
		if (atomic_load(&ns->readers) != 0)
			atomic_fetch_add(&sh->writer_readers, 1);
		/* Every grant seen so far ended before this one. */
		if (token <= atomic_load(&ns->max_token))
			atomic_fetch_add(&sh->token_stale, 1);
		atomic_max_u64(&ns->max_token, token);
		atomic_store(&ns->last_write_token, token);
		atomic_fetch_add(&sh->writes, 1);
	}
}

/* Right before the unlock. */
static void load_leave(struct load_shared *sh, int n, bool reader)
{
	struct name_state *ns = &sh->names[n];

	if (reader) {
		atomic_fetch_sub(&ns->readers, 1);
	} else {
		if (atomic_load(&ns->readers) != 0)
			atomic_fetch_add(&sh->writer_readers, 1);
		atomic_fetch_sub(&ns->writers, 1);
	}
}

/* A load child: ops lock/unlock pairs over the names. Odd children defer
 * their unlocks (GORO_DEFER), and every other pair of children unlocks by
 * token, so that each way of releasing is under load. */
static int load_child(void *arg)
{
	struct load_args *a = arg;
	struct load_shared *sh = a->sh;
	uint64_t last[NNAMES] = { 0 };
	uint32_t rng = 2654435761u * (uint32_t)(a->idx + 1);
	unsigned uflags = a->idx & 1 ? GORO_DEFER : 0;
	bool by_token = a->idx & 2;
	goro_client *c;
	int r = goro_connect(h.sock, &c);

	if (r < 0) {
		record_failure(&sh->fail, r, "child %d: connect", a->idx);
		return 1;
	}
	for (int i = 0; i < a->ops; i++) {
		int n = (int)(xorshift(&rng) % NNAMES);
		bool reader = xorshift(&rng) % 100 < 70;
		struct goro_grant g;
		char name[32];

		name_of(name, sizeof name, n);
		r = goro_mutex_lock(c, name, reader ? GORO_READ : GORO_WRITE, CHILD_LOCK_MS, 0, &g);
		if (r < 0) {
			record_failure(&sh->fail, r, "child %d: %slock %s: %s", a->idx,
				       reader ? "r" : "", name, goro_last_error(c));
			continue;
		}
		load_enter(sh, n, reader, g.token);
		if (g.token <= last[n])
			atomic_fetch_add(&sh->token_not_increasing, 1);
		last[n] = g.token;
		if (i % 16 == 0)
			sched_yield(); /* widen the window for an overlap */
		load_leave(sh, n, reader);
		r = goro_mutex_unlock(c, name, by_token ? g.token : 0, uflags);
		if (r < 0)
			record_failure(&sh->fail, r, "child %d: unlock %s: %s", a->idx, name,
				       goro_last_error(c));
	}
	r = goro_sync(c);
	if (r < 0)
		record_failure(&sh->fail, r, "child %d: deferred unlocks: %s", a->idx,
			       goro_last_error(c));
	goro_close(c);
	return 0;
}

static void test_load(int procs, int ops)
{
	struct load_shared *sh = shared_alloc(sizeof *sh);
	struct load_args *args = calloc((size_t)procs, sizeof *args);
	pid_t *pids = calloc((size_t)procs, sizeof *pids);
	int64_t t0 = harness_now_ms();
	int bad;

	if (!args || !pids)
		bail_out("out of memory");
	diag("load: %d processes x %d lock/unlock pairs over %d names", procs, ops, NNAMES);
	for (int i = 0; i < procs; i++) {
		args[i] = (struct load_args){ .sh = sh, .idx = i, .ops = ops };
		pids[i] = spawn(load_child, &args[i]);
	}
	bad = harness_reap_all(pids, procs, 240000, "load");
	diag("load: %" PRId64 " ms, %ld read and %ld write grants, up to %d readers at once",
	     harness_now_ms() - t0, (long)sh->reads, (long)sh->writes, (int)sh->max_readers);
	is(bad, 0, "load: every client process exited 0");
	report_failures(&sh->fail, "load");
	is(sh->reads + sh->writes, (long)procs * ops, "load: every lock was granted");
	is(sh->two_writers, 0, "load: never two writers at once");
	is(sh->writer_readers, 0, "load: never a writer and readers at once");
	is(sh->token_zero, 0, "load: no token is 0");
	is(sh->token_not_increasing, 0,
	   "load: each client's tokens on a name strictly increase");
	is(sh->token_stale, 0,
	   "load: a grant's token is above the tokens of the grants that ended before it");
	if (procs > 1 && ops > 10)
		cmp_ok(sh->max_readers, >, 1, "load: readers did share the locks");
	munmap(sh, sizeof *sh);
	free(args);
	free(pids);
}

/* ---- single events ------------------------------------------------------------------ */

/* A reply to a goro_send_*() request. */
struct reply {
	bool done;
	int err;
	int order; /* 1, 2, ... in the order replies arrived */
	int64_t count;
	struct goro_grant grant;
	char msg[160];
};

static int replies_seen;

static void on_reply(void *arg, int err, const struct goro_reply *rep)
{
	struct reply *x = arg;

	x->done = true;
	x->err = err;
	x->order = ++replies_seen;
	if (rep) {
		x->count = rep->count;
		x->grant = rep->grant;
		if (err < 0 && rep->message)
			snprintf(x->msg, sizeof x->msg, "%s", rep->message);
	}
}

static goro_client *connect_or_bail(void)
{
	goro_client *c;
	int r = goro_connect(h.sock, &c);

	if (r < 0)
		bail_out("connect to %s: %s", h.sock, goro_strerror(r));
	return c;
}

/* Makes sure a request sent before on c has reached gorod and, if it must
 * wait, is queued: gorod's reader queues a waiting request before it
 * reads the next one (daemon/session.c), so once a stats sent after it is
 * answered, it is in line. */
static void barrier(goro_client *c)
{
	char *json;
	int r = goro_stats_json(c, &json);

	if (r < 0)
		bail_out("stats: %s", goro_strerror(r));
	free(json);
}

/* A child's end of a pipe to the parent: a byte (or a token) says it is
 * where the parent needs it. */
struct child_args {
	const char *name;
	int wfd;
};

/* Takes name for writing, tells the parent its token, and waits to be
 * killed. */
static int holder_child(void *arg)
{
	struct child_args *a = arg;
	struct goro_grant g;
	goro_client *c;

	if (goro_connect(h.sock, &c) < 0 || goro_mutex_lock(c, a->name, GORO_WRITE, WAIT_MS, 0, &g) < 0)
		return 1;
	harness_write_full(a->wfd, &g.token, sizeof g.token);
	for (;;)
		pause();
}

/* Asks for name for writing, tells the parent once the request is queued,
 * and waits to be killed. */
static int waiter_child(void *arg)
{
	struct child_args *a = arg;
	struct reply rep = { 0 };
	goro_client *c;
	char *json;

	if (goro_connect(h.sock, &c) < 0 ||
	    goro_send_mutex_lock(c, a->name, GORO_WRITE, -1, 0, on_reply, &rep) < 0)
		return 1;
	/* barrier(), without its bail_out (no TAP from a child). */
	if (goro_stats_json(c, &json) < 0)
		return 1;
	free(json);
	harness_write_full(a->wfd, "q", 1);
	for (;;)
		pause();
}

/* Adds 1 to the WaitGroup name, bound to its session, tells the parent,
 * and waits to be killed. */
static int lease_child(void *arg)
{
	struct child_args *a = arg;
	goro_client *c;

	if (goro_connect(h.sock, &c) < 0 || goro_wg_add(c, a->name, 1, GORO_LEASE, NULL) < 0)
		return 1;
	harness_write_full(a->wfd, "l", 1);
	for (;;)
		pause();
}

/* Starts fn in a child with a pipe back; reads len bytes of what it says
 * into buf. Returns its pid, or 0 having failed an assertion. */
static pid_t start_child(int (*fn)(void *), const char *name, void *buf, size_t len,
			 const char *what)
{
	struct child_args a = { .name = name };
	int p[2], r;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		bail_out("pipe: %s", strerror(errno));
	a.wfd = p[1];
	pid = spawn(fn, &a);
	close(p[1]);
	r = harness_read_full(p[0], buf, len, WAIT_MS);
	close(p[0]);
	if (!ok(r == 0, "%s", what)) {
		diag("the child said nothing: %s", strerror(-r));
		harness_kill_all(&pid, 1);
		return 0;
	}
	return pid;
}

/* SIGKILLs a child and reaps it. */
static void kill_child(pid_t pid)
{
	int st = 0;

	kill(pid, SIGKILL);
	if (harness_wait_pid(pid, WAIT_MS, &st) < 0)
		bail_out("pid %d did not die of SIGKILL", (int)pid);
}

static void test_holder_killed(void)
{
	goro_client *a = connect_or_bail();
	struct reply rep = { 0 };
	uint64_t token = 0;
	pid_t pid;

	pid = start_child(holder_child, "od", &token, sizeof token,
			  "owner died: a child process holds the lock");
	if (!pid)
		goto out;
	is(goro_send_mutex_lock(a, "od", GORO_WRITE, -1, 0, on_reply, &rep), 0,
	   "owner died: another session asks for it");
	barrier(a);
	ok(!rep.done, "owner died: and waits");
	kill_child(pid);
	is(harness_process_until(a, &rep.done, WAIT_MS), 0,
	   "owner died: the holder is killed: the waiter gets an answer");
	is(rep.err, 0, "owner died: the waiter is granted the lock");
	ok(rep.grant.owner_died, "owner died: and told the previous owner died");
	cmp_ok(rep.grant.token, >, token, "owner died: with a larger token");
	is(goro_mutex_unlock(a, "od", 0, 0), 0, "owner died: it unlocks");
	rep = (struct reply){ 0 };
	is(goro_mutex_lock(a, "od", GORO_WRITE, WAIT_MS, 0, &rep.grant), 0, "owner died: lock again");
	ok(!rep.grant.owner_died, "owner died: told once only, not to the next holder");
	goro_mutex_unlock(a, "od", 0, 0);
out:
	goro_close(a);
}

static void test_waiter_killed(void)
{
	goro_client *a = connect_or_bail(), *b = connect_or_bail();
	struct reply rep = { 0 };
	long long waiters = -1;
	char byte;
	pid_t pid;

	is(goro_mutex_lock(a, "kw", GORO_WRITE, WAIT_MS, 0, NULL), 0, "waiter killed: a holds kw");
	pid = start_child(waiter_child, "kw", &byte, 1, "waiter killed: a child process waits for kw");
	if (!pid)
		goto out;
	is(goro_send_mutex_lock(b, "kw", GORO_WRITE, -1, 0, on_reply, &rep), 0,
	   "waiter killed: b asks for it after the child");
	barrier(b);
	is(harness_stat(a, "waiters", &waiters), 0, "waiter killed: stats");
	is(waiters, 2, "waiter killed: two requests wait");
	kill_child(pid);
	/* gorod has no event for "noticed the session ended": poll. */
	is(harness_wait_stat(a, "waiters", 1, WAIT_MS), 0,
	   "waiter killed: gorod drops the dead session's request");
	ok(!rep.done, "waiter killed: b still waits");
	is(goro_mutex_unlock(a, "kw", 0, 0), 0, "waiter killed: a unlocks");
	is(harness_process_until(b, &rep.done, WAIT_MS), 0,
	   "waiter killed: the queue moves past the dead waiter");
	is(rep.err, 0, "waiter killed: b gets the lock");
	ok(!rep.grant.owner_died,
	   "waiter killed: not owner_died (nothing was granted to the dead waiter)");
	is(goro_mutex_unlock(b, "kw", 0, 0), 0, "waiter killed: b unlocks");
out:
	goro_close(a);
	goro_close(b);
}

static void test_deadlock(void)
{
	goro_client *a = connect_or_bail(), *b = connect_or_bail();
	struct reply rep = { 0 };
	long long waiters = -1;
	int64_t t0;

	is(goro_mutex_lock(a, "dx", GORO_WRITE, WAIT_MS, 0, NULL), 0, "deadlock: a holds dx");
	is(goro_mutex_lock(b, "dy", GORO_WRITE, WAIT_MS, 0, NULL), 0, "deadlock: b holds dy");
	is(goro_send_mutex_lock(a, "dy", GORO_WRITE, -1, 0, on_reply, &rep), 0,
	   "deadlock: a asks for dy");
	barrier(a);
	ok(!rep.done, "deadlock: and waits");
	t0 = harness_now_ms();
	is(goro_mutex_lock(b, "dx", GORO_WRITE, 30000, 0, NULL), -EDEADLK,
	   "deadlock: b asks for dx: EDEADLK");
	cmp_ok(harness_now_ms() - t0, <, 5000, "deadlock: at once, not after the timeout");
	is(harness_stat(b, "waiters", &waiters), 0, "deadlock: stats");
	is(waiters, 1, "deadlock: b's refused request is not left queued");
	is(goro_mutex_unlock(b, "dy", 0, 0), 0, "deadlock: b lets go of dy");
	is(harness_process_until(a, &rep.done, WAIT_MS), 0, "deadlock: a proceeds");
	is(rep.err, 0, "deadlock: a gets dy");
	is(goro_mutex_unlock(a, "dy", 0, 0), 0, "deadlock: a unlocks dy");
	is(goro_mutex_unlock(a, "dx", 0, 0), 0, "deadlock: a unlocks dx");
	is(goro_mutex_lock(a, "dself", GORO_WRITE, WAIT_MS, 0, NULL), 0, "deadlock: a holds dself");
	is(goro_mutex_lock(a, "dself", GORO_WRITE, 30000, 0, NULL), -EDEADLK,
	   "deadlock: write-locking it again from the same session: EDEADLK");
	is(goro_mutex_unlock(a, "dself", 0, 0), 0, "deadlock: a unlocks dself");
	goro_close(a);
	goro_close(b);
}

static void test_stats_not_held_up(void)
{
	goro_client *a = connect_or_bail(), *b = connect_or_bail();
	struct reply lock = { 0 }, stats = { 0 };

	is(goro_mutex_lock(a, "sq", GORO_WRITE, WAIT_MS, 0, NULL), 0, "pipelining: a holds sq");
	is(goro_send_mutex_lock(b, "sq", GORO_WRITE, -1, 0, on_reply, &lock), 0,
	   "pipelining: b sends a lock that must wait");
	is(goro_send_stats(b, on_reply, &stats), 0, "pipelining: then stats, on the same connection");
	is(harness_process_until(b, &stats.done, WAIT_MS), 0,
	   "pipelining: the stats reply arrives");
	is(stats.err, 0, "pipelining: stats succeeded");
	ok(!lock.done, "pipelining: while the lock still waits");
	is(goro_mutex_unlock(a, "sq", 0, 0), 0, "pipelining: a unlocks");
	is(harness_process_until(b, &lock.done, WAIT_MS), 0, "pipelining: the lock reply arrives");
	is(lock.err, 0, "pipelining: b is granted the lock");
	cmp_ok(lock.order, >, stats.order, "pipelining: after the stats reply");
	is(goro_mutex_unlock(b, "sq", 0, 0), 0, "pipelining: b unlocks");
	goro_close(a);
	goro_close(b);
}

static void test_waitgroups(void)
{
	goro_client *a = connect_or_bail(), *b = connect_or_bail();
	struct reply rep = { 0 };
	int64_t count = -1, t0 = harness_now_ms();
	char byte;
	pid_t pid;

	is(goro_wg_wait(a, "wg.never", 30000), 0, "wg: zero value: wait returns 0");
	cmp_ok(harness_now_ms() - t0, <, 5000, "wg: at once");
	is(goro_wg_add(a, "wg.n", 2, 0, &count), 0, "wg: add 2");
	is(count, 2, "wg: the counter is 2");
	count = -1;
	is(goro_wg_add(a, "wg.n", -3, 0, &count), GORO_ENEGATIVE, "wg: add -3: ENEGATIVE");
	is(count, -1, "wg: the count out-parameter is not written on failure");
	is(goro_wg_add(a, "wg.n", 0, 0, &count), 0, "wg: add 0");
	is(count, 2, "wg: the counter is unchanged");
	is(goro_wg_add(a, "wg.n", INT32_MAX - 1, 0, NULL), -ERANGE,
	   "wg: a counter over 2^31-1: ERANGE");
	is(goro_wg_add(a, "wg.n", 0, 0, &count), 0, "wg: add 0");
	is(count, 2, "wg: the counter is unchanged");
	is(goro_wg_wait(a, "wg.n", 50), -ETIMEDOUT, "wg: wait on 2 with a timeout times out");
	is(goro_send_wg_wait(b, "wg.n", -1, on_reply, &rep), 0, "wg: b waits");
	barrier(b);
	is(goro_wg_done(a, "wg.n", &count), 0, "wg: done");
	is(count, 1, "wg: the counter is 1");
	barrier(b);
	ok(!rep.done, "wg: b still waits at 1");
	is(goro_wg_done(a, "wg.n", &count), 0, "wg: done");
	is(count, 0, "wg: the counter is 0");
	is(harness_process_until(b, &rep.done, WAIT_MS), 0, "wg: the waiter wakes");
	is(rep.err, 0, "wg: and is told done");
	is(goro_wg_done(a, "wg.n", NULL), GORO_ENEGATIVE, "wg: done at 0: ENEGATIVE");
	is(goro_wg_add(a, "wg.n", 0, 0, &count), 0, "wg: add 0");
	is(count, 0, "wg: the counter stays 0");

	/* A lease-bound add whose process is killed. */
	pid = start_child(lease_child, "wg.lease", &byte, 1,
			  "wg: a child process adds 1, bound to its session");
	if (!pid)
		goto out;
	rep = (struct reply){ 0 };
	is(goro_send_wg_wait(b, "wg.lease", -1, on_reply, &rep), 0, "wg: b waits for it");
	barrier(b);
	ok(!rep.done, "wg: and waits");
	kill_child(pid);
	is(harness_process_until(b, &rep.done, WAIT_MS), 0, "wg: the child is killed: b wakes");
	is(rep.err, GORO_ELOST, "wg: with ELOST, not done");
	is(goro_wg_wait(a, "wg.lease", WAIT_MS), GORO_ELOST, "wg: a later wait is told ELOST too");
	is(goro_wg_add(a, "wg.lease", 0, 0, &count), 0, "wg: add 0");
	is(count, 0, "wg: the dead session's count was taken off");
	is(goro_wg_add(a, "wg.lease", 1, 0, &count), 0, "wg: a new round starts");
	is(goro_wg_done(a, "wg.lease", &count), 0, "wg: and ends");
	is(goro_wg_wait(a, "wg.lease", WAIT_MS), 0, "wg: then wait returns 0");
out:
	goro_close(a);
	goro_close(b);
}

/* ---- semaphores -------------------------------------------------------------------- */

#define SEM_CAPACITY 3

struct sem_shared {
	atomic_int holders, max_holders, over;
	atomic_long grants;
	struct failures fail;
};

struct sem_args {
	struct sem_shared *sh;
	int idx, ops;
};

static int sem_child(void *arg)
{
	struct sem_args *a = arg;
	struct sem_shared *sh = a->sh;
	unsigned rflags = a->idx & 1 ? GORO_DEFER : 0;
	goro_client *c;
	int r = goro_connect(h.sock, &c);

	if (r < 0) {
		record_failure(&sh->fail, r, "child %d: connect", a->idx);
		return 1;
	}
	for (int i = 0; i < a->ops; i++) {
		int n, m;

		r = goro_sem_acquire(c, "sem.load", SEM_CAPACITY, 1, CHILD_LOCK_MS, 0, NULL);
		if (r < 0) {
			record_failure(&sh->fail, r, "child %d: acquire: %s", a->idx,
				       goro_last_error(c));
			continue;
		}
		n = atomic_fetch_add(&sh->holders, 1) + 1;
		m = atomic_load(&sh->max_holders);
		while (n > m && !atomic_compare_exchange_weak(&sh->max_holders, &m, n))
			;
		if (n > SEM_CAPACITY)
			atomic_fetch_add(&sh->over, 1);
		atomic_fetch_add(&sh->grants, 1);
		if (i % 8 == 0)
			sched_yield();
		atomic_fetch_sub(&sh->holders, 1);
		r = goro_sem_release(c, "sem.load", 0, rflags);
		if (r < 0)
			record_failure(&sh->fail, r, "child %d: release: %s", a->idx,
				       goro_last_error(c));
	}
	if ((r = goro_sync(c)) < 0)
		record_failure(&sh->fail, r, "child %d: deferred releases: %s", a->idx,
			       goro_last_error(c));
	goro_close(c);
	return 0;
}

static void test_semaphore(int procs, int ops)
{
	struct sem_shared *sh = shared_alloc(sizeof *sh);
	struct sem_args *args = calloc((size_t)procs, sizeof *args);
	pid_t *pids = calloc((size_t)procs, sizeof *pids);

	if (!args || !pids)
		bail_out("out of memory");
	for (int i = 0; i < procs; i++) {
		args[i] = (struct sem_args){ .sh = sh, .idx = i, .ops = ops };
		pids[i] = spawn(sem_child, &args[i]);
	}
	is(harness_reap_all(pids, procs, 120000, "sem"), 0, "sem: every client process exited 0");
	report_failures(&sh->fail, "sem");
	is(sh->grants, (long)procs * ops, "sem: every acquire was granted");
	is(sh->over, 0, "sem: never more than %d holders", SEM_CAPACITY);
	cmp_ok(sh->max_holders, <=, SEM_CAPACITY, "sem: the most holders at once");
	diag("sem: %d processes x %d: up to %d holders at once", procs, ops, (int)sh->max_holders);
	munmap(sh, sizeof *sh);
	free(args);
	free(pids);
}

/* ---- the end ------------------------------------------------------------------------- */

static void check_nothing_left(void)
{
	goro_client *c = connect_or_bail();
	char *json = NULL;

	/* Sessions end asynchronously in gorod after their process exits. */
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0,
	   "the end: every other session has ended");
	is(goro_stats_json(c, &json), 0, "the end: stats");
	if (json) {
		if (!ok(strstr(json, "\"primitives\":{\"waitgroups\":0,\"mutexes\":0,"
				     "\"semaphores\":0,\"waiters\":0}") != NULL,
			"the end: every name was forgotten (no primitive left)"))
			diag("stats: %s", json);
	}
	free(json);
	goro_close(c);
}

int main(void)
{
	int procs = (int)tap_scale(100, 100), ops = (int)tap_scale(1000, 300);
	long rss0, rss1;

	signal(SIGPIPE, SIG_IGN);
	if (harness_start(&h, NULL, 30000) < 0)
		bail_out("gorod did not start");
	ok(1, "gorod started and said READY=1 (%s)", h.sock);
	rss0 = harness_rss_kb(&h);

	test_load(procs, ops);
	rss1 = harness_rss_kb(&h);
	diag("gorod's RSS: %ld kB at the start, %ld kB after the load", rss0, rss1);
	test_holder_killed();
	test_waiter_killed();
	test_deadlock();
	test_stats_not_held_up();
	test_waitgroups();
	test_semaphore((int)tap_scale(20, 20), (int)tap_scale(100, 100));
	check_nothing_left();

	/* A second, equal load: what gorod keeps must not grow with it (the
	 * first one made the sessions, goroutines and stacks it recycles). */
	test_load(procs, ops);
	if (tap_sanitized()) {
		skip(1, "RSS under a sanitizer says nothing (%ld kB -> %ld kB)", rss1,
		     harness_rss_kb(&h));
	} else {
		long rss2 = harness_rss_kb(&h);

		cmp_ok(rss2 - rss1, <, 8192, "gorod's RSS has not grown with a second load "
		       "(%ld kB -> %ld kB)", rss1, rss2);
	}
	check_nothing_left();

	is(harness_stop(&h, 30000), 0, "gorod stops cleanly on SIGTERM (exit 0)");
	ok(access(h.sock, F_OK) < 0, "and removes its socket");
	harness_cleanup(&h);
	return done_testing();
}
