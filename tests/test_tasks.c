/* test_tasks.c: tasks in a real gorod as shell scripts use them, through
 * goroctl (and libgoro to look at what gorod did).
 *
 * - The Go tutorial's "lock outside the goroutine" loop across processes:
 *   ten times `goroctl spawn --rlock m` a task that prints the counter
 *   file, then `goroctl spawn --lock m` one that sleeps a random moment
 *   and increments it. The printing tasks' logs read Hello #0 .. #9 in
 *   order, in every round.
 * - 50 tasks under --wg (spawn --lines): `goroctl wait --wg` returns after
 *   all 50 have ended, never before (10 of them are held back by a lock
 *   the test holds, and wait --wg is seen to block meanwhile); the round's
 *   figures; the status of the first failure when some fail.
 * - --sem NAME=2: never more than 2 running at once (each task logs its
 *   start and end to one file; the log's order is the real order).
 * - --after (order, an unknown id, after a failed task), --key (refused
 *   while the first is queued or running, free again after), --scope
 *   session (libgoro's session closed, goroctl killed: the task is killed;
 *   a detached one lives on), ps (queued with what it waits for, running
 *   with its pid, --all with the finished ones, --json).
 * - Ids: increasing across sessions, never reused; an unknown id is ENOENT.
 * - Ownership (as root; skipped otherwise): a uid that does not own a task
 *   gets EPERM from wait, kill, pause and logs; its own exec task runs as
 *   itself; a gorod running as another user refuses to run commands for
 *   root and runs them for its own user.
 * - At the end: no task left, no name held, gorod stops cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000 /* for one event that should come soon */
#define NOBODY 65534

static struct harness h;
static goro_client *c;
static const char *goroctl;
static char ctl_err[4096];

/* Every id spawned, in order: they must increase. */
static uint64_t ids_seen[1024];
static int nids;

#define CTL(out, ...)                                                          \
	harness_ctl(h.sock, NULL, 0, out, sizeof(out), ctl_err, sizeof ctl_err, \
		    WAIT_MS, __VA_ARGS__, (const char *)NULL)

/* ---- helpers ------------------------------------------------------------------- */

/* Notes id (0: none) in ids_seen; returns it. */
static uint64_t saw_id(uint64_t id)
{
	if (id && nids < (int)(sizeof ids_seen / sizeof ids_seen[0]))
		ids_seen[nids++] = id;
	return id;
}

/* goroctl spawn ARGS..: the id it printed (noted), or 0 having said why. */
#define CTL_SPAWN(...)                                                                  \
	saw_id(harness_ctl_spawn(h.sock, ctl_err, sizeof ctl_err, WAIT_MS, __VA_ARGS__, \
				 (const char *)NULL))

/* goroctl spawn --lines OPTS.. with lines on stdin; the ids go to ids[0..n).
 * Returns how many it printed. */
static int ctl_spawn_lines(const char *lines, uint64_t *ids, int n, const char *const *opts)
{
	const char *argv[40] = { goroctl, "--socket", h.sock, "spawn", "--lines" };
	static char out[16384];
	int k = 5, got = 0, r;

	for (; *opts && k < 39; opts++)
		argv[k++] = *opts;
	argv[k] = NULL;
	r = harness_run(argv, lines, strlen(lines), out, sizeof out, ctl_err, sizeof ctl_err,
			WAIT_MS);
	if (r != 0)
		diag("goroctl spawn --lines: exit %d: %s", r, ctl_err);
	for (char *p = out; *p && got < n; p = strchr(p, '\n') + 1) {
		ids[got] = strtoull(p, NULL, 10);
		saw_id(ids[got++]);
		if (!strchr(p, '\n'))
			break;
	}
	return got;
}

/* Starts goroctl --socket h.sock ARGS.. in the background, stdout into a
 * pipe whose read end goes to *out_fd (may be NULL: /dev/null). */
static pid_t ctl_start(int *out_fd, ...)
{
	const char *argv[32] = { goroctl, "--socket", h.sock };
	int n = 3, p[2] = { -1, -1 };
	const char *a;
	va_list ap;
	pid_t pid;

	va_start(ap, out_fd);
	while ((a = va_arg(ap, const char *)) && n < 31)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	if (out_fd && pipe2(p, O_CLOEXEC) < 0)
		bail_out("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(out_fd ? p[1] : null, STDOUT_FILENO);
		execv(goroctl, (char *const *)argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

static int exit_status(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int wait_ok(uint64_t id, struct goro_outcome *o, const char *what)
{
	int r = goro_wait(c, id, WAIT_MS, o);

	if (!is(r, 0, "%s: wait %" PRIu64, what, id)) {
		diag("wait: %s: %s", goro_err_name(r), goro_last_error(c));
		memset(o, 0, sizeof *o);
	}
	return r;
}

/* Waits for each of ids[0..n); returns how many did not exit 0. */
static int wait_all(const uint64_t *ids, int n)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		struct goro_outcome o;
		int r = goro_wait(c, ids[i], WAIT_MS, &o);

		if (r < 0 || o.state != GORO_TASK_EXITED || o.code != 0) {
			if (bad++ == 0)
				diag("task %" PRIu64 ": %s, %s %d %s", ids[i], goro_err_name(r),
				     r ? "" : goro_task_state_name(o.state), o.code, o.message);
		}
		if (r == 0)
			goro_outcome_clear(&o);
	}
	return bad;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		bail_out("%s: %s", path, strerror(errno));
}

/* The file's text (NUL-terminated, cut to size), or "" when it is missing. */
static char *read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, size - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static int count_lines(const char *text)
{
	int n = 0;

	for (; *text; text++)
		n += *text == '\n';
	return n;
}

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* ---- the tutorial ---------------------------------------------------------------- */

/* One round: 10 printers under --rlock, each followed by an incrementer
 * under --lock. Returns whether the printers printed #0 .. #9 in order. */
static bool tutorial_round(const char *file, uint32_t *seed, bool with_ctl_logs)
{
	uint64_t printers[10], incs[10];
	char got[256], want[64], delay[16];
	bool in_order = true;

	write_file(file, "0\n");
	for (int i = 0; i < 10; i++) {
		printers[i] = CTL_SPAWN("--rlock", "tutorial", "--", "sh", "-c",
					"echo \"Hello #$(cat \"$1\")\"", "sh", file);
		snprintf(delay, sizeof delay, "0.0%u", 1 + xorshift(seed) % 5);
		incs[i] = CTL_SPAWN("--lock", "tutorial", "--", "sh", "-c",
				    "sleep \"$2\"; n=$(cat \"$1\"); echo $((n + 1)) > \"$1\"",
				    "sh", file, delay);
	}
	if (wait_all(incs, 10) + wait_all(printers, 10) != 0)
		return false;
	for (int i = 0; i < 10; i++) {
		snprintf(want, sizeof want, "Hello #%d\n", i);
		if (with_ctl_logs) {
			char ids[32];

			snprintf(ids, sizeof ids, "%" PRIu64, printers[i]);
			if (CTL(got, "logs", ids) != 0)
				got[0] = '\0';
		} else {
			harness_logs(c, printers[i], GORO_STDOUT, got, sizeof got, NULL, WAIT_MS);
		}
		if (strcmp(got, want) != 0) {
			if (in_order)
				diag("printer %d said '%s', not '%s'", i, got, want);
			in_order = false;
		}
	}
	return in_order && strcmp(read_file(file, got, sizeof got), "10\n") == 0;
}

static void test_tutorial(int rounds)
{
	char file[300];
	uint32_t seed = (uint32_t)getpid() | 1;
	int good = 0;

	snprintf(file, sizeof file, "%s/counter", h.dir);
	for (int r = 0; r < rounds; r++)
		good += tutorial_round(file, &seed, r == 0);
	is(good, rounds, "tutorial: Hello #0 .. #9 in order, in %d rounds out of %d", good,
	   rounds);
}

/* ---- WaitGroups ---------------------------------------------------------------------- */

/* A line per number 0..n-1 (from from). */
static void number_lines(char *buf, size_t size, int from, int n)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = from; i < from + n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%d\n", i);
}

/* Whether the lines of text are the numbers 0..n-1, in any order. */
static bool has_numbers(const char *text, int n)
{
	char seen[256] = { 0 };
	int k, lines = 0;

	for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
		if (sscanf(p, "%d", &k) != 1 || k < 0 || k >= n || seen[k]++)
			return false;
		lines++;
		if (!strchr(p, '\n'))
			break;
	}
	return lines == n;
}

static void test_wg(void)
{
	enum { N = 50, HELD = 10 };
	char file[300], script[300], lines[1024], text[1024];
	const char *free_opts[] = { "--wg", "wg50", "--", "sh", script, file, NULL };
	const char *held_opts[] = { "--wg", "wg50", "--rlock", "wg.gate", "--", "sh", script,
				    file, NULL };
	uint64_t ids[N];
	struct goro_wg_status st = { 0 };
	struct goro_grant g;
	bool increasing = true;
	pid_t waiter;
	int status = -1;

	snprintf(file, sizeof file, "%s/wg.lines", h.dir);
	snprintf(script, sizeof script, "%s/append.sh", h.dir);
	write_file(script, "echo \"$2\" >> \"$1\"\n");
	write_file(file, "");
	is(goro_mutex_lock(c, "wg.gate", GORO_WRITE, WAIT_MS, 0, &g), 0, "wg: the test holds a gate");
	/* The held ones first, so that the counter cannot reach 0 early. */
	number_lines(lines, sizeof lines, N - HELD, HELD);
	is(ctl_spawn_lines(lines, ids + N - HELD, HELD, held_opts), HELD,
	   "wg: spawn --lines --wg --rlock gate: %d ids", HELD);
	number_lines(lines, sizeof lines, 0, N - HELD);
	is(ctl_spawn_lines(lines, ids, N - HELD, free_opts), N - HELD,
	   "wg: spawn --lines --wg: %d ids", N - HELD);
	for (int i = 1; i < N - HELD; i++)
		increasing &= ids[i] > ids[i - 1];
	ok(increasing, "wg: the ids increase in input order");
	waiter = ctl_start(NULL, "wait", "--wg", "wg50", (const char *)NULL);
	is(wait_all(ids, N - HELD), 0, "wg: the %d free tasks exit 0", N - HELD);
	ok(harness_wait_waiters(c, "wg50", 1, WAIT_MS) == 0,
	   "wg: goroctl wait --wg waits in gorod");
	is(harness_wait_pid(waiter, 0, &status), -ETIMEDOUT,
	   "wg: wait --wg has not returned while %d are held back", HELD);
	is(count_lines(read_file(file, text, sizeof text)), N - HELD, "wg: %d lines so far",
	   N - HELD);
	is(goro_wg_status(c, "wg50", &st), 0, "wg: wg.status");
	is(st.count, HELD, "wg: the counter is %d", HELD);
	is(st.tasks, N, "wg: %d tasks in the round", N);
	is(st.done, N - HELD, "wg: %d done", N - HELD);
	is(goro_mutex_unlock(c, "wg.gate", g.token, 0), 0, "wg: the test lets the rest go");
	is(harness_wait_pid(waiter, WAIT_MS, &status), 0, "wg: wait --wg returns");
	read_file(file, text, sizeof text);
	is(count_lines(text), N, "wg: and when it does, all %d have written their line", N);
	ok(has_numbers(text, N), "wg: one line from each");
	is(exit_status(status), 0, "wg: wait --wg exits 0: all succeeded");
	is(goro_wg_status(c, "wg50", &st), 0, "wg: wg.status after");
	ok(st.count == 0 && st.tasks == N && st.done == N && st.failed == 0 && !st.has_failure,
	   "wg: count 0, %d tasks, %d done, 0 failed (%lld, %lld, %lld, %lld)", N, N,
	   (long long)st.count, (long long)st.tasks, (long long)st.done, (long long)st.failed);
}

static void test_wg_failure(void)
{
	char out[256], ids[32];
	struct goro_wg_status st = { 0 };
	uint64_t a;

	/* The test's own count keeps the round open while it spawns. */
	is(goro_wg_add(c, "wgfail", 1, 0, NULL), 0, "wg failure: the test adds 1");
	CTL_SPAWN("--wg", "wgfail", "--", "true");
	a = CTL_SPAWN("--wg", "wgfail", "--", "sh", "-c", "exit 3");
	snprintf(ids, sizeof ids, "%" PRIu64, a);
	CTL_SPAWN("--wg", "wgfail", "--after", ids, "--", "sh", "-c", "kill -9 $$");
	CTL_SPAWN("--wg", "wgfail", "--", "true");
	is(goro_wg_done(c, "wgfail", NULL), 0, "wg failure: the test says done");
	is(CTL(out, "wait", "--wg", "wgfail"), 3, "wg failure: wait --wg exits 3, the first failure's");
	is(goro_wg_status(c, "wgfail", &st), 0, "wg failure: wg.status");
	is(st.tasks, 4, "wg failure: 4 tasks");
	is(st.failed, 2, "wg failure: 2 failed");
	ok(st.has_failure && st.first_failure.id == a && st.first_failure.code == 3,
	   "wg failure: the first failure is the exit 3");
	if (st.has_failure)
		goro_outcome_clear(&st.first_failure);
}

/* ---- sem, after, key ------------------------------------------------------------------ */

static void test_sem(int n)
{
	char log[300], script[300], lines[512], text[4096];
	const char *opts[] = { "--sem", "s2=2", "--wg", "semwg", "--", "sh", script, log, NULL };
	uint64_t ids[64];
	int running = 0, most = 0, starts = 0, k;

	snprintf(log, sizeof log, "%s/sem.log", h.dir);
	snprintf(script, sizeof script, "%s/sem.sh", h.dir);
	write_file(script, "echo \"start $2\" >> \"$1\"; sleep 0.1; echo \"end $2\" >> \"$1\"\n");
	write_file(log, "");
	number_lines(lines, sizeof lines, 0, n);
	is(ctl_spawn_lines(lines, ids, n, opts), n, "sem: spawn --lines --sem s2=2: %d ids", n);
	is(goro_wg_wait(c, "semwg", WAIT_MS), 0, "sem: all ended");
	is(wait_all(ids, n), 0, "sem: all exited 0");
	read_file(log, text, sizeof text);
	for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
		if (sscanf(p, "start %d", &k) == 1) {
			starts++;
			if (++running > most)
				most = running;
		} else if (sscanf(p, "end %d", &k) == 1) {
			running--;
		}
		if (!strchr(p, '\n'))
			break;
	}
	is(starts, n, "sem: every task started once");
	cmp_ok(most, <=, 2, "sem: never more than 2 running at once");
	is(most, 2, "sem: and 2 did run at once");
}

static void test_after(void)
{
	char file[300], text[64], out[256], a_id[32], b_id[32];
	struct goro_outcome oa, ob;
	uint64_t a, b, d, x;
	struct goro_grant g;

	snprintf(file, sizeof file, "%s/after", h.dir);
	write_file(file, "");
	is(goro_mutex_lock(c, "after.gate", GORO_WRITE, WAIT_MS, 0, &g), 0, "after: gate");
	a = CTL_SPAWN("--lock", "after.gate", "--", "sh", "-c", "sleep 0.05; echo A >> \"$1\"",
		      "sh", file);
	snprintf(a_id, sizeof a_id, "%" PRIu64, a);
	b = CTL_SPAWN("--after", a_id, "--", "sh", "-c", "echo B >> \"$1\"", "sh", file);
	snprintf(b_id, sizeof b_id, "%" PRIu64, b);
	snprintf(text, sizeof text, "\"blocked_on\":\"after %s\"", a_id);
	ok(harness_ps_has(c, b, "\"state\":\"queued\"", text), "after: B is queued, blocked on A");
	ok(harness_ps_has(c, a, "\"blocked_on\":\"lock after.gate\"", NULL),
	   "after: A waits for the gate");
	is(goro_mutex_unlock(c, "after.gate", g.token, 0), 0, "after: the test lets go");
	is(CTL(out, "wait", a_id, b_id), 0, "after: goroctl wait A B: exit 0");
	is_str(read_file(file, text, sizeof text), "A\nB\n", "after: B ran after A");
	if (wait_ok(a, &oa, "after") == 0 && wait_ok(b, &ob, "after") == 0)
		cmp_ok(ob.started_ms, >=, oa.ended_ms, "after: B started once A had ended");

	x = CTL_SPAWN("--", "/nonexistent/program");
	snprintf(a_id, sizeof a_id, "%" PRIu64, x);
	d = CTL_SPAWN("--after", a_id, "--", "true");
	snprintf(b_id, sizeof b_id, "%" PRIu64, d);
	is(CTL(out, "wait", b_id), 0, "after: a task after a failed one still runs");
	ok(CTL(out, "--json", "spawn", "--after", "99999999", "--", "true") != 0 &&
	   strstr(out, "\"error\":\"ENOENT\""), "after: an unknown id: ENOENT");
}

static void test_key(void)
{
	char out[256], ids[32];
	struct goro_spawn sp = { 0 };
	const char *argv[] = { "true", NULL };
	struct goro_grant g;
	uint64_t k1, k2 = 0;

	is(goro_mutex_lock(c, "key.gate", GORO_WRITE, WAIT_MS, 0, &g), 0, "key: gate");
	k1 = CTL_SPAWN("--key", "k1", "--lock", "key.gate", "--", "true");
	ok(k1 > 0, "key: the first task with key k1 (queued)");
	is(CTL(out, "spawn", "--key", "k1", "--", "true"), 6, "key: another with k1: exit 6 (busy)");
	sp.argv = argv;
	sp.key = "k1";
	is(goro_spawn(c, &sp, &k2), -EBUSY, "key: libgoro: EBUSY");
	is(goro_mutex_unlock(c, "key.gate", g.token, 0), 0, "key: the test lets go");
	snprintf(ids, sizeof ids, "%" PRIu64, k1);
	is(CTL(out, "wait", ids), 0, "key: the first ends");
	k2 = CTL_SPAWN("--key", "k1", "--", "true");
	ok(k2 > k1, "key: then k1 is free again");
	snprintf(ids, sizeof ids, "%" PRIu64, k2);
	is(CTL(out, "wait", ids), 0, "key: and that one runs");
}

/* ---- scope, ps, ids ----------------------------------------------------------------------- */

static void test_scope(void)
{
	const char *argv[] = { "sleep", "30", NULL };
	struct goro_spawn sp = { .argv = argv, .session_scope = true };
	struct goro_outcome o;
	goro_client *c2;
	uint64_t s = 0, d = 0, g = 0;
	char line[64] = "";
	pid_t pid;
	int fd;

	if (goro_connect(h.sock, &c2) < 0)
		bail_out("connect");
	is(goro_spawn(c2, &sp, &s), 0, "scope: a session-scoped task");
	sp.session_scope = false;
	is(goro_spawn(c2, &sp, &d), 0, "scope: a detached one");
	saw_id(s);
	saw_id(d);
	goro_close(c2);
	wait_ok(s, &o, "scope");
	is(o.state, GORO_TASK_KILLED, "scope: the session ended: its scoped task was killed");
	ok(harness_ps_has(c, d, "\"state\":\"running\"", NULL), "scope: the detached one runs on");
	is(goro_kill(c, d, SIGKILL), 0, "scope: kill it");
	wait_ok(d, &o, "scope");

	pid = ctl_start(&fd, "spawn", "--scope", "session", "--", "sleep", "30",
			(const char *)NULL);
	for (size_t n = 0; n + 1 < sizeof line; n++) {
		if (harness_read_full(fd, line + n, 1, WAIT_MS) < 0 || line[n] == '\n') {
			line[n] = '\0';
			break;
		}
	}
	close(fd);
	g = harness_spawned_id(line);
	ok(g > 0, "scope: goroctl spawn --scope session prints the id (%s)", line);
	saw_id(g);
	ok(g && harness_ps_has(c, g, "\"state\":\"running\"", NULL), "scope: the task runs");
	ok(harness_wait_pid(pid, 0, NULL) == -ETIMEDOUT, "scope: goroctl waits for it");
	kill(pid, SIGKILL);
	harness_wait_pid(pid, WAIT_MS, NULL);
	if (g && wait_ok(g, &o, "scope goroctl") == 0)
		is(o.state, GORO_TASK_KILLED, "scope: goroctl killed: its task was killed");
}

static void test_ps(void)
{
	static char out[1 << 18]; /* ps --all lists every task so far */
	char ids[3][32], want[4096];
	struct goro_logs l = { 0 };
	struct goro_grant g;
	uint64_t q, r, f;

	is(goro_mutex_lock(c, "ps.gate", GORO_WRITE, WAIT_MS, 0, &g), 0, "ps: gate");
	q = CTL_SPAWN("--name", "psq", "--lock", "ps.gate", "--", "true");
	r = CTL_SPAWN("--name", "psr", "--", "sh", "-c", "echo started; exec sleep 30");
	f = CTL_SPAWN("--name", "psf", "--", "true");
	snprintf(ids[0], sizeof ids[0], "%" PRIu64, q);
	snprintf(ids[1], sizeof ids[1], "%" PRIu64, r);
	snprintf(ids[2], sizeof ids[2], "%" PRIu64, f);
	is(CTL(out, "wait", ids[2]), 0, "ps: psf ran");
	is(goro_logs_read(c, r, GORO_STDOUT, 0, WAIT_MS, &l), 0, "ps: psr has started");
	free(l.data);

	is(CTL(out, "--json", "ps"), 0, "ps: goroctl --json ps");
	ok(harness_json_object(out, f, want, sizeof want) < 0, "ps: without --all, no finished task");
	ok(harness_ps_has(c, q, "\"state\":\"queued\"", "\"blocked_on\":\"lock ps.gate\""),
	   "ps: psq queued, blocked on the lock");
	ok(harness_ps_has(c, q, "\"name\":\"psq\"", "\"kind\":\"exec\""), "ps: its name and kind");
	ok(harness_ps_has(c, q, "\"argv\":[\"true\"]", NULL), "ps: its argv");
	ok(harness_ps_has(c, r, "\"state\":\"running\"", "\"pid\":"),
	   "ps: psr running, with its pid");
	ok(harness_ps_has(c, r, "\"uid\":", "\"age_ms\":"), "ps: uid and age");
	{
		char entry[4096];

		ok(harness_json_object(out, q, entry, sizeof entry) == 0 &&
		   harness_json_object(out, r, entry, sizeof entry) == 0,
		   "ps: goroctl --json ps lists psq and psr");
	}
	is(CTL(out, "--json", "ps", "--all"), 0, "ps: goroctl --json ps --all");
	ok(harness_json_object(out, f, want, sizeof want) == 0 && strstr(want, "\"exited\""),
	   "ps: --all lists psf, exited");
	is(CTL(out, "ps"), 0, "ps: goroctl ps");
	ok(strstr(out, "psq") && strstr(out, "psr") && !strstr(out, "psf"),
	   "ps: the plain listing names psq and psr, not psf");
	is(goro_kill(c, r, 0), 0, "ps: kill psr");
	is(goro_mutex_unlock(c, "ps.gate", g.token, 0), 0, "ps: let psq go");
	is(CTL(out, "wait", ids[0]), 0, "ps: psq ran");
}

static void test_ids(void)
{
	struct goro_outcome o;
	char out[256];
	bool increasing = true;
	int r;

	for (int i = 1; i < nids; i++)
		increasing &= ids_seen[i] > ids_seen[i - 1];
	ok(increasing, "ids: the %d ids seen increase, across sessions", nids);
	r = goro_wait(c, (nids ? ids_seen[nids - 1] : 0) + 1000, 0, &o);
	is(r, -ENOENT, "ids: wait on an id never given: ENOENT");
	r = CTL(out, "--json", "wait", "99999999");
	ok(r != 0 && strstr(out, "\"error\":\"ENOENT\""),
	   "ids: goroctl wait on an unknown id fails with ENOENT (exit %d)", r);
	r = goro_kill(c, 99999999, 0);
	is(r, -ENOENT, "ids: kill an unknown id: ENOENT");
}

/* ---- retention ------------------------------------------------------------------------- */

/* Spawns on c3 and waits for the end; returns the id (0 on failure). */
static uint64_t run_on(goro_client *c3, const struct goro_spawn *sp)
{
	struct goro_outcome o;
	uint64_t id = 0;

	if (goro_spawn(c3, sp, &id) < 0 || goro_wait(c3, id, WAIT_MS, &o) < 0)
		return 0;
	goro_outcome_clear(&o);
	return id;
}

/* wait on c3 for task id, not waiting: 0 while it is kept, else -ENOENT. */
static int kept_code(goro_client *c3, uint64_t id)
{
	struct goro_outcome o;
	int r = goro_wait(c3, id, 0, &o);

	if (r == 0)
		goro_outcome_clear(&o);
	return r;
}

/* Whether wait on c3 still knows each of ids[0..n) (want true) or none. */
static bool kept(goro_client *c3, const uint64_t *ids, int n, bool want)
{
	for (int i = 0; i < n; i++) {
		int r = kept_code(c3, ids[i]);

		if ((r == 0) != want || (r < 0 && r != -ENOENT)) {
			diag("task %" PRIu64 ": %s", ids[i], r ? goro_err_name(r) : "kept");
			return false;
		}
	}
	return true;
}

/* A gorod that keeps 5 finished tasks and 3000 bytes of their output. */
static void test_retention(void)
{
	const char *args[] = { "--keep-tasks", "5", "--keep-output", "3000", "--output-max",
			       "1000", "--keep-age", "1s", NULL };
	const char *argv[] = { "head", "-c", "1500", "/dev/zero", NULL };
	const char *sleep_args[] = { "1100", NULL };
	struct goro_spawn ex = { .argv = argv }, fn = { .func = "noop" };
	uint64_t out[4], noop[8], last;
	struct harness h3;
	struct goro_outcome o;
	goro_client *c3;
	int64_t deadline;
	char buf[2048];

	if (harness_start(&h3, args, 30000) < 0 || goro_connect(h3.sock, &c3) < 0) {
		ok(0, "retention: a gorod with --keep-tasks 5 --keep-output 3000 starts");
		harness_cleanup(&h3);
		return;
	}
	for (int i = 0; i < 4; i++)
		out[i] = run_on(c3, &ex);
	ok(out[3] > 0, "retention: 4 tasks, each 1500 bytes of output");
	is(goro_wait(c3, out[3], 0, &o), 0, "retention: the last is kept");
	is(o.stdout_cut, 500, "retention: --output-max 1000 is gorod's default output_max");
	ok(kept(c3, out, 1, false), "retention: the first is pushed out by --keep-output 3000");
	is(harness_logs(c3, out[3], GORO_STDOUT, buf, sizeof buf, NULL, WAIT_MS), 1000,
	   "retention: the last one's 1000 bytes are kept");
	for (int i = 0; i < 8; i++)
		noop[i] = run_on(c3, &fn);
	ok(kept(c3, noop + 3, 5, true), "retention: the last 5 noops are kept");
	ok(kept(c3, noop, 3, false) && kept(c3, out + 3, 1, false),
	   "retention: the older ones are pushed out by --keep-tasks 5 (ENOENT)");
	last = run_on(c3, &fn);
	ok(last > noop[7], "retention: ids go on increasing, none is reused");
	/* --keep-age 1s: a task that ends 1.1 s later finds it too old (gorod
	 * also sweeps every few seconds; nothing signals either: poll). */
	fn = (struct goro_spawn){ .func = "sleep", .args = sleep_args };
	ok(run_on(c3, &fn) > last, "retention: a task of 1.1 s");
	deadline = harness_now_ms() + WAIT_MS;
	while (kept_code(c3, last) == 0 && harness_now_ms() < deadline)
		usleep(20000);
	ok(kept(c3, &last, 1, false), "retention: pushed out after --keep-age 1s");
	goro_close(c3);
	is(harness_stop(&h3, 30000), 0, "retention: that gorod stops cleanly");
	harness_cleanup(&h3);
}

/* ---- ownership --------------------------------------------------------------------------- */

/* What a child that became NOBODY saw (the parent checks it). */
struct as_nobody {
	int connect, wait, kill, pause, resume, logs, ps, ps_sees, spawn, own_wait, own_state;
	uint64_t own_id;
};

/* In a child, as NOBODY, against the gorod at sock: tries the root task
 * `theirs` (0: none) and spawns `id -u` of its own. Does not return. */
static _Noreturn void nobody_child(struct as_nobody *r, const char *sock, uint64_t theirs)
{
	const char *argv[] = { "id", "-u", NULL };
	struct goro_spawn sp = { .argv = argv };
	struct goro_outcome o;
	struct goro_logs l;
	goro_client *cn;
	char *json = NULL, pat[64];

	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		_exit(2);
	r->connect = goro_connect(sock, &cn);
	if (r->connect < 0)
		_exit(1);
	if (theirs) {
		r->wait = goro_wait(cn, theirs, 0, &o);
		r->kill = goro_kill(cn, theirs, SIGKILL);
		r->pause = goro_pause(cn, theirs);
		r->resume = goro_resume(cn, theirs);
		r->logs = goro_logs_read(cn, theirs, GORO_STDOUT, 0, 0, &l);
		r->ps = goro_ps_json(cn, false, 0, &json);
		snprintf(pat, sizeof pat, "\"id\":%" PRIu64 ",", theirs);
		r->ps_sees = json && strstr(json, pat);
		free(json);
	}
	r->spawn = goro_spawn(cn, &sp, &r->own_id);
	if (r->spawn == 0) {
		r->own_wait = goro_wait(cn, r->own_id, WAIT_MS, &o);
		r->own_state = o.state;
		if (r->own_wait == 0)
			goro_outcome_clear(&o);
	}
	goro_close(cn);
	_exit(0);
}

/* Runs nobody_child() and waits for it; *r gets what it saw. */
static bool as_nobody(struct as_nobody *r, const char *sock, uint64_t theirs)
{
	int st = -1;
	pid_t pid;

	memset(r, 0, sizeof *r);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0)
		nobody_child(r, sock, theirs);
	if (harness_wait_pid(pid, 2 * WAIT_MS, &st) < 0)
		harness_kill_all(&pid, 1);
	return ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "as nobody: the child ran (status %#x, "
		  "connect %s)", st, goro_err_name(r->connect));
}

static void test_owner(void)
{
	const char *sleeper[] = { "sleep", "30", NULL };
	struct goro_spawn sp = { .argv = sleeper };
	struct as_nobody *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct harness h2;
	struct goro_outcome o;
	goro_client *c3;
	char out[64];
	uint64_t mine = 0, id;

	if (r == MAP_FAILED)
		bail_out("mmap: %s", strerror(errno));
	if (chmod(h.dir, 0711) < 0 || chmod(h.sock, 0666) < 0)
		bail_out("chmod %s: %s", h.sock, strerror(errno));
	is(goro_spawn(c, &sp, &mine), 0, "owner: root spawns a task");
	saw_id(mine);
	if (as_nobody(r, h.sock, mine)) {
		is(r->wait, -EPERM, "owner: another uid may not wait on it (EPERM)");
		is(r->kill, -EPERM, "owner: nor kill it");
		is(r->pause, -EPERM, "owner: nor pause it");
		is(r->resume, -EPERM, "owner: nor resume it");
		is(r->logs, -EPERM, "owner: nor read its logs");
		ok(r->ps == 0 && r->ps_sees, "owner: but ps shows it");
		is(r->spawn, 0, "owner: nobody spawns a command in root's gorod");
		is(r->own_wait, 0, "owner: and waits on its own task");
		is(r->own_state, GORO_TASK_EXITED, "owner: which exited");
		saw_id(r->own_id);
		harness_logs(c, r->own_id, GORO_STDOUT, out, sizeof out, NULL, WAIT_MS);
		is_str(out, "65534\n", "owner: it ran as nobody, not root (root reads its logs)");
		ok(harness_ps_has(c, r->own_id, "\"uid\":65534", NULL), "owner: ps says its uid");
	}
	ok(harness_ps_has(c, mine, "\"state\":\"running\"", NULL), "owner: root's task still runs");
	is(goro_kill(c, mine, SIGKILL), 0, "owner: root kills it");
	wait_ok(mine, &o, "owner");

	/* A gorod running as nobody runs commands for nobody only. */
	if (harness_start_as(&h2, NULL, 30000, NOBODY, NOBODY) < 0) {
		ok(0, "owner: a gorod running as nobody starts");
		munmap(r, sizeof *r);
		return;
	}
	if (goro_connect(h2.sock, &c3) < 0)
		bail_out("connect to %s", h2.sock);
	is(goro_spawn(c3, &sp, &id), -EPERM, "owner: nobody's gorod refuses root's command (EPERM)");
	goro_close(c3);
	if (as_nobody(r, h2.sock, 0)) {
		is(r->spawn, 0, "owner: nobody's gorod runs nobody's command");
		is(r->own_state, GORO_TASK_EXITED, "owner: which exited");
	}
	is(harness_stop(&h2, 30000), 0, "owner: nobody's gorod stops cleanly");
	harness_cleanup(&h2);
	munmap(r, sizeof *r);
}


static void test_tutorial_scaled(void)
{
	test_tutorial((int)tap_scale(5, 5));
}

static void test_sem_8(void)
{
	test_sem(8);
}

static void test_owner_if_root(void)
{
	if (geteuid() == 0)
		test_owner();
	else
		skip(1, "ownership: needs root, to act as another uid");
}

/* The parts, in order; `test_tasks NAME..` runs only those named. */
static const struct harness_part parts[] = {
	{ "tutorial", test_tutorial_scaled }, { "wg", test_wg },
	{ "wgfail", test_wg_failure },	      { "sem", test_sem_8 },
	{ "after", test_after },	      { "key", test_key },
	{ "scope", test_scope },	      { "ps", test_ps },
	{ "retention", test_retention },      { "owner", test_owner_if_root },
	{ "ids", test_ids },
};

int main(int argc, char **argv)
{
	goroctl = getenv("GOROCTL");
	if (!goroctl || !*goroctl)
		bail_out("$GOROCTL must name the goroctl to test");
	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	harness_run_parts(&h, &c, NULL, "plain", parts, sizeof parts / sizeof parts[0], argc, argv,
			  WAIT_MS);
	harness_cleanup(&h);
	return done_testing();
}
