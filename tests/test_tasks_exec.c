/* test_tasks_exec.c: command (exec) tasks in a real gorod, one property at
 * a time, through libgoro and goroctl.
 *
 * - How a task ends: its exit code, a signal, and goroctl wait's exit
 *   status for each (the code, 128+N, 124 for a timeout, 127 for a
 *   program that does not exist, 126 for one that cannot run).
 * - What it gets: stdin bytes (all 256 byte values), the cwd ("/" by
 *   default), the environment (PATH only by default, the one given, the
 *   one goroctl passes, an empty one with --clean-env; PATH lookup in the
 *   task's own environment), argv and stdin copied at spawn (the client's
 *   buffer changed, gorod's request buffer overwritten by later requests
 *   while the task waits for a lock), a process group of its own.
 * - What comes out: stdout and stderr captured apart, `logs` and
 *   logs.read, output over output_max cut to its last bytes and the cut
 *   counted.
 * - Control: timeout (SIGTERM; SIGKILL after the grace period to a group
 *   that ignores SIGTERM, a background child included), kill (a signal of
 *   one's choice, a paused task, a queued one that never starts), pause
 *   and resume (the processes really stop and go on), ESRCH after the end.
 * - Bad input: an empty argv, no such program, a bad cwd, a huge
 *   environment near and over the message limit; gorod answers after each.
 * - At the end: no task left running, no name held, gorod stops cleanly.
 *
 * Every wait is for an event (a reply, a byte on a FIFO, a process's
 * exit) with a deadline; the few states nothing signals (a process the
 * kernel has stopped) are polled with a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000 /* for one event that should come soon */

static struct harness h;
static goro_client *c;
static char ctl_err[4096];

/* goroctl --socket h.sock ARGS..; stdout into out, stderr into ctl_err. */
#define CTL(out, ...)                                                          \
	harness_ctl(h.sock, NULL, 0, out, sizeof(out), ctl_err, sizeof ctl_err, \
		    WAIT_MS, __VA_ARGS__, (const char *)NULL)

/* ---- helpers ------------------------------------------------------------------- */

/* Spawns sp; returns its id, or 0 having failed an assertion. */
static uint64_t spawn_ok(const struct goro_spawn *sp, const char *what)
{
	uint64_t id = 0;
	int r = goro_spawn(c, sp, &id);

	if (!is(r, 0, "%s: spawn", what)) {
		diag("spawn: %s (%s): %s", goro_err_name(r), goro_strerror(r), goro_last_error(c));
		return 0;
	}
	return id;
}

/* Waits for task id's outcome into *o (zeroed on failure). */
static int wait_ok(uint64_t id, struct goro_outcome *o, const char *what)
{
	int r = goro_wait(c, id, WAIT_MS, o);

	if (!is(r, 0, "%s: wait", what)) {
		diag("wait %" PRIu64 ": %s: %s", id, goro_err_name(r), goro_last_error(c));
		memset(o, 0, sizeof *o);
	}
	return r;
}

/* Spawns argv (with the options in *opt, which may be NULL) and waits for
 * its outcome. Returns the id, or 0. */
static uint64_t run(const char *const *argv, const struct goro_spawn *opt,
		    struct goro_outcome *o, const char *what)
{
	struct goro_spawn sp = { 0 };
	uint64_t id;

	if (opt)
		sp = *opt;
	sp.argv = argv;
	memset(o, 0, sizeof *o);
	id = spawn_ok(&sp, what);
	if (id && wait_ok(id, o, what) < 0)
		return 0;
	return id;
}

/* All that gorod keeps of a task's stream, into buf. */
static ssize_t logs_of(uint64_t id, enum goro_stream s, char *buf, size_t size, uint64_t *cut)
{
	return harness_logs(c, id, s, buf, size, cut, WAIT_MS);
}

/* goroctl spawn ARGS.. : the id it printed, or 0 having said why. */
#define CTL_SPAWN(...)                                                          \
	harness_ctl_spawn(h.sock, ctl_err, sizeof ctl_err, WAIT_MS, __VA_ARGS__, \
			  (const char *)NULL)

/* goroctl wait ID: its exit status. */
static int ctl_wait(uint64_t id, const char *timeout)
{
	char out[4096], ids[32];

	snprintf(ids, sizeof ids, "%" PRIu64, id);
	return timeout ? CTL(out, "wait", "--timeout", timeout, ids) : CTL(out, "wait", ids);
}

/* One line (without its '\n') from fd, at most WAIT_MS. Returns 0 or a
 * negative code. */
static int read_line(int fd, char *buf, size_t size)
{
	size_t n = 0;

	for (;;) {
		char ch;
		int r = harness_read_full(fd, &ch, 1, WAIT_MS);

		if (r < 0)
			return r;
		if (ch == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = ch;
	}
	buf[n] = '\0';
	return 0;
}

/* The state letter of process pid (/proc/PID/stat), or 0 when it is gone. */
static char proc_state(pid_t pid)
{
	char path[64], text[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	p = strrchr(text, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Waits at most WAIT_MS until process pid is in a state of `states`
 * ("T", "Z0": 0 for gone). Nothing signals the test when the kernel has
 * stopped or killed a process it does not own, so this polls. */
static bool proc_state_becomes(pid_t pid, const char *states)
{
	int64_t deadline = harness_now_ms() + WAIT_MS;
	char st;

	for (;;) {
		st = proc_state(pid);
		if ((st == 0 && strchr(states, '0')) || (st && strchr(states, st)))
			return true;
		if (harness_now_ms() > deadline)
			break;
		usleep(2000);
	}
	diag("process %d stayed in state '%c', not one of \"%s\"", (int)pid, st ? st : '0',
	     states);
	return false;
}

/* Whether task id's ps entry says "state":"<state>". */
/* stats' counter `key` is `want` (the live tasks by state are counted as
 * they change, not by walking them). */
static void stat_is(const char *key, long long want, const char *what)
{
	long long v = -1;

	if (harness_stat(c, key, &v) < 0)
		diag("stats %s: not there", key);
	is(v, want, "%s (%s)", what, key);
}

static bool ps_state_is(uint64_t id, const char *state)
{
	char entry[4096], got[32] = "";

	if (harness_ps_entry(c, id, entry, sizeof entry) < 0)
		return false;
	harness_json_str(entry, "state", got, sizeof got);
	if (strcmp(got, state) != 0) {
		diag("ps says %s", entry);
		return false;
	}
	return true;
}

/* ---- how a task ends ---------------------------------------------------------------- */

static void test_endings(void)
{
	const char *exit7[] = { "sh", "-c", "exit 7", NULL };
	const char *sig9[] = { "sh", "-c", "kill -9 $$", NULL };
	struct goro_outcome o;
	char out[4096], ids[32];
	uint64_t id;

	id = run(exit7, NULL, &o, "exit 7");
	is(o.id, id, "exit 7: the outcome names the task");
	is(o.state, GORO_TASK_EXITED, "exit 7: state exited");
	is(o.code, 7, "exit 7: code 7");
	ok(!o.func, "exit 7: an exec task");
	cmp_ok(o.pid, >, 1, "exit 7: it had a pid");
	ok(o.started_ms > 1600000000000 && o.ended_ms >= o.started_ms,
	   "exit 7: started_ms and ended_ms are Unix times in order (%" PRId64 ", %" PRId64 ")",
	   o.started_ms, o.ended_ms);
	is(goro_outcome_status(&o), 7, "exit 7: a shell's status 7");
	goro_outcome_clear(&o);

	run(sig9, NULL, &o, "kill -9 $$");
	is(o.state, GORO_TASK_SIGNALED, "signal: state signaled");
	is(o.signal, SIGKILL, "signal: SIGKILL");
	is(goro_outcome_status(&o), 137, "signal: a shell's status 137");
	goro_outcome_clear(&o);

	id = CTL_SPAWN("--", "sh", "-c", "exit 7");
	ok(id > 0, "goroctl spawn prints the id");
	is(ctl_wait(id, NULL), 7, "goroctl wait: exits with the task's code (7)");
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(out, "--json", "wait", ids), 7,
	   "goroctl --json wait: still the task's code");
	ok(strstr(out, "\"state\":\"exited\"") && strstr(out, "\"code\":7"),
	   "goroctl --json wait: says state exited, code 7");
	id = CTL_SPAWN("--", "sh", "-c", "kill -9 $$");
	is(ctl_wait(id, NULL), 137, "goroctl wait: 128+9 for SIGKILL");
	id = CTL_SPAWN("--", "true");
	is(ctl_wait(id, NULL), 0, "goroctl wait: 0 for true");
	id = CTL_SPAWN("--", "sleep", "30");
	is(ctl_wait(id, "100ms"), 4, "goroctl wait --timeout 100ms on a longer task: exit 4");
	is(goro_kill(c, id, SIGKILL), 0, "and kill it");
	is(ctl_wait(id, NULL), 128 + SIGKILL, "goroctl wait: killed with 9: 137");
}

/* ---- what a task gets ------------------------------------------------------------------ */

static void test_stdin(void)
{
	const char *cat[] = { "cat", NULL };
	struct goro_spawn sp = { 0 };
	struct goro_outcome o;
	char data[3000], got[4000], out[256], file[300];
	ssize_t n;
	uint64_t id;
	FILE *f;

	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i * 7 + i / 256);
	sp.stdin_data = data;
	sp.stdin_len = sizeof data;
	id = run(cat, &sp, &o, "stdin");
	is(o.state, GORO_TASK_EXITED, "stdin: cat exited");
	is(o.stdout_bytes, sizeof data, "stdin: it wrote back all %zu bytes", sizeof data);
	n = logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	ok(n == (ssize_t)sizeof data && memcmp(got, data, sizeof data) == 0,
	   "stdin: every byte (NULs and all 256 values) came through");
	goro_outcome_clear(&o);

	id = run(cat, NULL, &o, "no stdin");
	is(o.state, GORO_TASK_EXITED, "no stdin: cat reads end of file at once");
	is(o.code, 0, "no stdin: and exits 0");
	is(o.stdout_bytes, 0, "no stdin: empty");
	goro_outcome_clear(&o);

	snprintf(file, sizeof file, "%s/stdin", h.dir);
	f = fopen(file, "w");
	if (!f)
		bail_out("%s: %s", file, strerror(errno));
	fwrite(data, 1, sizeof data, f);
	fclose(f);
	id = CTL_SPAWN("--stdin", file, "--", "wc", "-c");
	ok(id > 0, "goroctl spawn --stdin FILE");
	is(ctl_wait(id, NULL), 0, "goroctl spawn --stdin: wc exits 0");
	snprintf(got, sizeof got, "%" PRIu64, id);
	is(CTL(out, "logs", got), 0, "goroctl logs");
	is(atol(out), (long)sizeof data, "goroctl spawn --stdin: wc counted %zu bytes", sizeof data);
}

static void test_cwd(void)
{
	const char *pwd[] = { "pwd", NULL };
	struct goro_spawn sp = { 0 };
	struct goro_outcome o;
	char got[PATH_MAX + 2], want[PATH_MAX + 2], real[PATH_MAX];
	uint64_t id;

	id = run(pwd, NULL, &o, "cwd");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, "/\n", "cwd: / by default");
	if (!realpath(h.dir, real))
		bail_out("realpath %s: %s", h.dir, strerror(errno));
	snprintf(want, sizeof want, "%s\n", real);
	sp.cwd = real;
	id = run(pwd, &sp, &o, "cwd");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, want, "cwd: the one given");
	id = CTL_SPAWN("--cwd", real, "--", "pwd");
	is(ctl_wait(id, NULL), 0, "cwd: goroctl spawn --cwd");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, want, "cwd: goroctl spawn --cwd DIR: the task runs there");

	/* goroctl's help: the task gets goroctl's working directory. */
	if (!getcwd(real, sizeof real))
		bail_out("getcwd: %s", strerror(errno));
	snprintf(want, sizeof want, "%s\n", real);
	id = CTL_SPAWN("--", "pwd");
	is(ctl_wait(id, NULL), 0, "cwd: goroctl spawn without --cwd");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, want, "cwd: goroctl spawn: the task runs in goroctl's directory");

	sp.cwd = "/nonexistent-dir";
	run(pwd, &sp, &o, "bad cwd");
	is(o.state, GORO_TASK_FAILED, "bad cwd: state failed");
	is(o.error, -ENOENT, "bad cwd: ENOENT (%s)", o.message);
	is(o.pid, 0, "bad cwd: no pid (goro.h: 0 if it never started)");
}

/* Sorts the lines of text in place (env's order is not the point). */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sort_lines(char *text)
{
	char *lines[64], copy[4096], *save = NULL;
	size_t n = 0, off = 0;

	snprintf(copy, sizeof copy, "%s", text);
	for (char *l = strtok_r(copy, "\n", &save); l && n < 64; l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	qsort(lines, n, sizeof lines[0], cmp_str);
	for (size_t i = 0; i < n; i++)
		off += (size_t)sprintf(text + off, "%s\n", lines[i]);
	text[off] = '\0';
}

static void test_env(void)
{
	const char *env_cmd[] = { "/usr/bin/env", NULL };
	const char *env_ab[] = { "B=two words", "A=1", NULL };
	const char *env_nopath[] = { "PATH=/nonexistent", NULL };
	const char *sh_cmd[] = { "sh", "-c", "true", NULL };
	struct goro_spawn sp = { 0 };
	struct goro_outcome o;
	char got[4096];
	uint64_t id;

	id = run(env_cmd, NULL, &o, "env");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, "PATH=/usr/local/bin:/usr/bin:/bin\n", "env: PATH alone by default");
	sp.env = env_ab;
	id = run(env_cmd, &sp, &o, "env");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	sort_lines(got);
	is_str(got, "A=1\nB=two words\n", "env: exactly the one given");
	sp.env = env_nopath;
	run(sh_cmd, &sp, &o, "env PATH");
	is(o.state, GORO_TASK_FAILED, "env: argv[0] is looked up in the task's PATH, not gorod's");
	is(o.error, -ENOENT, "env: so sh is not found (ENOENT)");

	setenv("GORO_TEST_ENV", "from goroctl's environment", 1);
	id = CTL_SPAWN("--", "sh", "-c", "printf '%s' \"$GORO_TEST_ENV\"");
	is(ctl_wait(id, NULL), 0, "env: goroctl spawn");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, "from goroctl's environment", "env: goroctl passes its environment");
	/* The issue: "--clean-env for an empty one". */
	id = CTL_SPAWN("--clean-env", "--", "env");
	is(ctl_wait(id, NULL), 0, "env: goroctl spawn --clean-env (env found on the default PATH)");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, "", "env: --clean-env: an empty environment");
	unsetenv("GORO_TEST_ENV");
}

/* argv and stdin are the task's own from the spawn on: the client changes
 * its buffers, and later requests go through gorod's buffers, while the
 * task waits for a lock the test holds. */
static void test_copied(void)
{
	enum { LATER = 20 };
	char arg[200], in[100], got[512], want[512];
	const char *argv[] = { "sh", "-c", "printf '%s:' \"$1\"; cat", "sh", arg, NULL };
	struct goro_spawn sp = { .argv = argv, .lock = "copied.gate", .stdin_data = in,
				 .stdin_len = sizeof in };
	struct goro_outcome o;
	uint64_t first, later[LATER];
	struct goro_grant g;

	is(goro_mutex_lock(c, "copied.gate", GORO_WRITE, WAIT_MS, 0, &g), 0,
	   "copied: the test holds the gate");
	memset(arg, 'A', sizeof arg - 1);
	arg[sizeof arg - 1] = '\0';
	memset(in, 'a', sizeof in);
	first = spawn_ok(&sp, "copied: the first");
	memset(arg, 'B', sizeof arg - 1);
	memset(in, 'b', sizeof in);
	for (int i = 0; i < LATER; i++)
		later[i] = spawn_ok(&sp, "copied: a later one");
	ok(first && ps_state_is(first, "queued"), "copied: the first waits for the gate");
	is(goro_mutex_unlock(c, "copied.gate", g.token, 0), 0, "copied: the test lets go");
	wait_ok(first, &o, "copied");
	logs_of(first, GORO_STDOUT, got, sizeof got, NULL);
	memset(want, 'A', sizeof arg - 1);
	want[sizeof arg - 1] = ':';
	memset(want + sizeof arg, 'a', sizeof in);
	want[sizeof arg + sizeof in] = '\0';
	is_str(got, want, "copied: the first task got the argv and stdin of its spawn");
	for (int i = 0; i < LATER; i++)
		if (later[i])
			goro_wait(c, later[i], WAIT_MS, &o);
}

static void test_process_group(void)
{
	const char *argv[] = { "sh", "-c",
			       "echo $$; cut -d' ' -f5 /proc/$$/stat; cut -d' ' -f6 /proc/$$/stat",
			       NULL };
	struct goro_outcome o;
	char got[256];
	long pid = 0, pgid = 0, sid = 0;
	uint64_t id;

	id = run(argv, NULL, &o, "pgroup");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	if (!ok(sscanf(got, "%ld %ld %ld", &pid, &pgid, &sid) == 3, "pgroup: read pid, pgid, sid"))
		diag("got '%s'", got);
	is(pid, o.pid, "pgroup: the outcome's pid is the process's");
	is(pgid, pid, "pgroup: the task leads a process group of its own");
	ok(pgid != getpgrp() && pgid != getpgid(h.pid), "pgroup: not the test's nor gorod's");
}

/* ---- what comes out ----------------------------------------------------------------- */

static void test_output(void)
{
	const char *both[] = { "sh", "-c", "echo out; echo err >&2; printf 'no newline'", NULL };
	const char *seq[] = { "seq", "1", "2000", NULL };
	struct goro_spawn sp = { .output_max = 1000 };
	static char all[16384], got[16384];
	struct goro_outcome o;
	size_t total = 0;
	uint64_t id, cut;
	char ids[32];

	id = run(both, NULL, &o, "output");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is_str(got, "out\nno newline", "output: stdout on its own");
	logs_of(id, GORO_STDERR, got, sizeof got, NULL);
	is_str(got, "err\n", "output: stderr on its own");
	is(o.stdout_bytes, 14, "output: stdout_bytes");
	is(o.stderr_bytes, 4, "output: stderr_bytes");
	is(o.stdout_cut + o.stderr_cut, 0, "output: nothing cut");
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(got, "logs", ids), 0, "output: goroctl logs ID");
	is_str(got, "out\nno newline", "output: goroctl logs prints stdout");
	is(CTL(got, "logs", "--stderr", ids), 0, "output: goroctl logs --stderr ID");
	is_str(got, "err\n", "output: goroctl logs --stderr prints stderr");

	/* --follow writes what comes later too, and ends with the task. */
	id = CTL_SPAWN("--", "sh", "-c", "echo one; sleep 0.2; echo two");
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(got, "logs", "--follow", ids), 0, "output: goroctl logs --follow ID");
	is_str(got, "one\ntwo\n", "output: --follow wrote the output to the task's end");

	for (int i = 1; i <= 2000; i++)
		total += (size_t)sprintf(all + total, "%d\n", i);
	id = run(seq, &sp, &o, "output_max");
	is(o.stdout_bytes, total, "output_max: stdout_bytes counts all %zu", total);
	is(o.stdout_cut, total - 1000, "output_max: stdout_cut counts what was cut");
	is(logs_of(id, GORO_STDOUT, got, sizeof got, &cut), 1000, "output_max: 1000 bytes kept");
	is(cut, total - 1000, "output_max: logs.read says how much was cut");
	is_str(got, all + total - 1000, "output_max: the last 1000 bytes");
	id = CTL_SPAWN("--output-max", "1000", "--", "seq", "1", "2000");
	is(ctl_wait(id, NULL), 0, "output_max: goroctl spawn --output-max 1000");
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(got, "logs", ids), 0, "output_max: goroctl logs");
	is_str(got, all + total - 1000, "output_max: goroctl logs prints the last 1000 bytes");
}

/* ---- control -------------------------------------------------------------------------- */

static void test_timeout(void)
{
	char fifo[300], line[64];
	const char *sleeper[] = { "sleep", "30", NULL };
	const char *stubborn[] = { "sh", "-c",
				   "trap '' TERM; sleep 30 & echo $! > \"$1\"; wait; exec sleep 30",
				   "sh", fifo, NULL };
	struct goro_spawn sp = { .timeout_ms = 100 };
	struct goro_outcome o;
	pid_t bg;
	uint64_t id;
	int fd;

	run(sleeper, &sp, &o, "timeout");
	is(o.state, GORO_TASK_TIMEOUT, "timeout: state timeout");
	is(o.signal, SIGTERM, "timeout: SIGTERM ended it");
	cmp_ok(o.ended_ms - o.started_ms, >=, 100, "timeout: not before 100 ms");
	cmp_ok(o.ended_ms - o.started_ms, <, 4000, "timeout: long before the grace period");
	is(goro_outcome_status(&o), 124, "timeout: a shell's status 124");

	snprintf(fifo, sizeof fifo, "%s/timeout.fifo", h.dir);
	if (mkfifo(fifo, 0600) < 0 || (fd = open(fifo, O_RDWR | O_CLOEXEC)) < 0)
		bail_out("%s: %s", fifo, strerror(errno));
	sp.grace_ms = 300;
	run(stubborn, &sp, &o, "timeout, TERM ignored");
	is(o.state, GORO_TASK_TIMEOUT, "timeout, TERM ignored: state timeout");
	is(o.signal, SIGKILL, "timeout, TERM ignored: SIGKILL after the grace period");
	cmp_ok(o.ended_ms - o.started_ms, >=, 400, "timeout, TERM ignored: after 100 + 300 ms");
	if (is(read_line(fd, line, sizeof line), 0, "timeout: the background child's pid")) {
		bg = (pid_t)atoi(line);
		ok(bg > 1 && proc_state_becomes(bg, "Z0"),
		   "timeout: the background child in its group was killed too");
	}
	close(fd);
	unlink(fifo);

	id = CTL_SPAWN("--timeout", "100ms", "--grace", "200ms", "--", "sleep", "30");
	is(ctl_wait(id, NULL), 124, "timeout: goroctl spawn --timeout; wait: exit 124");
}

static void test_kill_pause(void)
{
	char fifo[300], line[64], ids[32], out[256], entry[4096] = "";
	const char *argv[] = { "sh", "-c", "echo $$ > \"$1\"; exec sleep 30", "sh", fifo, NULL };
	struct goro_spawn sp = { .argv = argv };
	struct goro_outcome o;
	pid_t pid = 0;
	uint64_t id;
	int fd;

	snprintf(fifo, sizeof fifo, "%s/kill.fifo", h.dir);
	if (mkfifo(fifo, 0600) < 0 || (fd = open(fifo, O_RDWR | O_CLOEXEC)) < 0)
		bail_out("%s: %s", fifo, strerror(errno));
	id = spawn_ok(&sp, "pause");
	if (is(read_line(fd, line, sizeof line), 0, "pause: the task runs"))
		pid = (pid_t)atoi(line);
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	ok(ps_state_is(id, "running"), "pause: ps says running");
	/* The process may run (and write the fifo) before gorod's thread,
	 * suspended by vfork until the exec, has recorded its pid: gorod has
	 * no event to wait for here, so ask until ps shows it. */
	snprintf(line, sizeof line, "\"pid\":%d", (int)pid);
	bool shown = false;
	for (int64_t end = harness_now_ms() + WAIT_MS; !shown && harness_now_ms() < end;) {
		shown = harness_ps_entry(c, id, entry, sizeof entry) == 0 && strstr(entry, line);
		if (!shown)
			poll(NULL, 0, 2);
	}
	if (!ok(shown, "pause: ps shows the pid the process reported (%d)", (int)pid))
		diag("ps: %s", entry);
	is(goro_pause(c, id), 0, "pause: goro_pause");
	ok(ps_state_is(id, "paused"), "pause: ps says paused");
	stat_is("tasks.paused", 1, "pause: stats counts it paused");
	stat_is("tasks.running", 0, "pause: and not running");
	ok(pid > 1 && proc_state_becomes(pid, "T"), "pause: the process is stopped");
	is(goro_resume(c, id), 0, "resume: goro_resume");
	ok(ps_state_is(id, "running"), "resume: ps says running");
	stat_is("tasks.running", 1, "resume: stats counts it running");
	stat_is("tasks.paused", 0, "resume: and not paused");
	ok(pid > 1 && proc_state_becomes(pid, "SR"), "resume: the process goes on");
	is(CTL(out, "pause", ids), 0, "pause: goroctl pause ID");
	ok(pid > 1 && proc_state_becomes(pid, "T"), "pause: goroctl paused it");
	is(CTL(out, "resume", ids), 0, "resume: goroctl resume ID");
	ok(pid > 1 && proc_state_becomes(pid, "SR"), "resume: goroctl resumed it");
	is(CTL(out, "kill", "-s", "USR1", ids), 0, "kill: goroctl kill -s USR1 ID");
	wait_ok(id, &o, "kill");
	is(o.state, GORO_TASK_KILLED, "kill: state killed");
	is(o.signal, SIGUSR1, "kill: by SIGUSR1");
	is(ctl_wait(id, NULL), 128 + SIGUSR1, "kill: goroctl wait: 128+SIGUSR1");
	is(goro_kill(c, id, 0), -ESRCH, "kill: after the end: ESRCH");
	is(goro_pause(c, id), -ESRCH, "pause: after the end: ESRCH");
	ok(CTL(out, "kill", ids) != 0, "kill: goroctl kill after the end fails");

	/* A paused task can be killed. (A stopped process keeps a SIGTERM
	 * pending until it is continued; the grace period's SIGKILL ends it
	 * at the latest.) */
	sp.grace_ms = 500;
	id = spawn_ok(&sp, "kill paused");
	read_line(fd, line, sizeof line);
	is(goro_pause(c, id), 0, "kill paused: paused");
	is(goro_kill(c, id, SIGTERM), 0, "kill paused: SIGTERM");
	wait_ok(id, &o, "kill paused");
	is(o.state, GORO_TASK_KILLED, "kill paused: state killed");
	diag("kill paused: it took %" PRId64 " ms", o.ended_ms - o.started_ms);
	sp.grace_ms = 0;

	/* A queued task is removed without starting. */
	sp.lock = "kill.gate";
	is(goro_mutex_lock(c, "kill.gate", GORO_WRITE, WAIT_MS, 0, NULL), 0, "kill queued: gate");
	id = spawn_ok(&sp, "kill queued");
	ok(ps_state_is(id, "queued"), "kill queued: queued behind the gate");
	stat_is("tasks.queued", 1, "kill queued: stats counts it queued");
	is(goro_kill(c, id, 0), 0, "kill queued: kill");
	wait_ok(id, &o, "kill queued");
	is(o.state, GORO_TASK_KILLED, "kill queued: state killed");
	is(o.started_ms, 0, "kill queued: it never started");
	is(o.pid, 0, "kill queued: no process");
	is(goro_mutex_unlock(c, "kill.gate", 0, 0), 0, "kill queued: the gate is the test's");
	close(fd);
	unlink(fifo);
}

/* ---- bad input ------------------------------------------------------------------------- */

/* Whether gorod still answers, over a new connection. */
static bool still_serves(const char *what)
{
	goro_client *c2 = NULL;
	struct goro_hello hi;
	bool pass = goro_connect(h.sock, &c2) == 0 && goro_hello(c2, "test", &hi) == 0;

	goro_close(c2);
	return ok(pass, "%s: gorod still answers", what);
}

/* An environment of n variables of len bytes each, the first of them
 * PATH. Freed by the caller with free_env(). */
static char **big_env(int n, size_t len)
{
	char **env = calloc((size_t)n + 1, sizeof *env);

	if (!env)
		bail_out("out of memory");
	for (int i = 0; i < n; i++) {
		int k;

		env[i] = malloc(len + 1);
		if (!env[i])
			bail_out("out of memory");
		k = snprintf(env[i], len + 1, i ? "V%06d=" : "PATH=/usr/bin:/bin", i);
		if (i)
			memset(env[i] + k, 'v', len - (size_t)k);
		env[i][i ? len : (size_t)k] = '\0';
	}
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; *e; e++)
		free(*e);
	free(env);
}

static void test_bad_input(void)
{
	const char *empty[] = { NULL };
	const char *none[] = { "/nonexistent/program", NULL };
	const char *nopath[] = { "no-such-program-anywhere", NULL };
	const char *count[] = { "sh", "-c", "env | grep -c '^V'", NULL };
	char noexec[300], out[256], got[64];
	const char *noexec_argv[] = { noexec, NULL };
	struct goro_spawn sp = { .argv = empty };
	struct goro_outcome o;
	goro_client *c2;
	uint64_t id;
	char **env;
	int r, fd;

	is(goro_spawn(c, &sp, &id), -EINVAL, "bad: an empty argv: EINVAL");
	sp.argv = NULL;
	is(goro_spawn(c, &sp, &id), -EINVAL, "bad: neither argv nor func: EINVAL");
	ok(CTL(out, "spawn", "--") == 2, "bad: goroctl spawn -- with no command: usage, exit 2");
	still_serves("bad: empty argv");

	run(none, NULL, &o, "no such program");
	is(o.state, GORO_TASK_FAILED, "no such program: state failed");
	is(o.error, -ENOENT, "no such program: ENOENT (%s)", o.message);
	is(goro_outcome_status(&o), 127, "no such program: a shell's 127");
	is(o.pid, 0, "no such program: no pid (goro.h: 0 if it never started)");
	run(nopath, NULL, &o, "not in PATH");
	is(o.error, -ENOENT, "not in PATH: failed with ENOENT");
	id = CTL_SPAWN("--", "/nonexistent/program");
	is(ctl_wait(id, NULL), 127, "no such program: goroctl wait exits 127");
	snprintf(noexec, sizeof noexec, "%s/not-executable", h.dir);
	fd = open(noexec, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		bail_out("%s: %s", noexec, strerror(errno));
	close(fd);
	run(noexec_argv, NULL, &o, "not executable");
	is(o.state, GORO_TASK_FAILED, "not executable: state failed");
	is(goro_outcome_status(&o), 126, "not executable: a shell's 126 (%s)", o.message);

	/* 8,000 variables, ~900 kB: under the message limit, and execve's. */
	env = big_env(8000, 110);
	sp = (struct goro_spawn){ .env = (const char *const *)env };
	id = run(count, &sp, &o, "big env");
	logs_of(id, GORO_STDOUT, got, sizeof got, NULL);
	is(atol(got), 7999, "big env: the task sees all 8000 variables");
	free_env(env);
	/* One variable of 1,000,000 bytes: under the message limit, over
	 * execve's limit of one string (128 kB). A clear error either way. */
	env = big_env(2, 1000000);
	sp.env = (const char *const *)env;
	sp.argv = count;
	r = goro_spawn(c, &sp, &id);
	if (r == 0) {
		wait_ok(id, &o, "huge variable");
		ok(o.state == GORO_TASK_FAILED || o.state == GORO_TASK_EXITED,
		   "huge variable: spawned; the task failed or ran (%s: %s)",
		   goro_task_state_name(o.state), o.message);
	} else {
		ok(r == -EINVAL || r == -E2BIG || r == -EMSGSIZE,
		   "huge variable: refused with a clear error (%s: %s)", goro_err_name(r),
		   goro_last_error(c));
	}
	free_env(env);
	still_serves("huge variable");
	/* 1.5 MB: over the message limit. On a connection of its own, which
	 * gorod may close. */
	env = big_env(15, 100000);
	sp.env = (const char *const *)env;
	if (goro_connect(h.sock, &c2) < 0)
		bail_out("connect");
	r = goro_spawn(c2, &sp, &id);
	ok(r < 0, "over the message limit: refused (%s: %s)", goro_err_name(r),
	   goro_last_error(c2));
	goro_close(c2);
	free_env(env);
	still_serves("over the message limit");
}


/* The parts, in order; `test_tasks_exec NAME..` runs only those named. */
static const struct harness_part parts[] = {
	{ "endings", test_endings },	 { "stdin", test_stdin },
	{ "cwd", test_cwd },		 { "env", test_env },
	{ "copied", test_copied },	 { "pgroup", test_process_group },
	{ "output", test_output },	 { "timeout", test_timeout },
	{ "kill", test_kill_pause },	 { "bad", test_bad_input },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	if (!getenv("GOROCTL"))
		bail_out("$GOROCTL must name the goroctl to test");
	harness_run_parts(&h, &c, NULL, "plain", parts, sizeof parts / sizeof parts[0], argc, argv,
			  WAIT_MS);
	harness_cleanup(&h);
	return done_testing();
}
