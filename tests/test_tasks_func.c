/* test_tasks_func.c: function (func) tasks in a real gorod: the built-ins
 * and the functions of a module, tests/modules/sample.c.
 *
 * - Modules that must not load (an init that fails, no init at all):
 *   gorod exits non-zero before it is ready, and says which module.
 * - The built-ins: noop, sleep MS, spin MS, echo ARGS.. (its result is its
 *   arguments, scalars and nested values alike), from libgoro and from
 *   goroctl; wrong argument types end the task failed with EINVAL; an
 *   unknown function is ENOENT at spawn; pause is EINVAL for a func; kill
 *   and timeout cancel one.
 * - sample.work, which sleeps, takes a named lock (the test holds it
 *   first: the task waits inside the function), starts child goroutines
 *   that print to the task's output and count down a WaitGroup, waits on a
 *   pipe, takes a semaphore unit, and returns a map: its result and its
 *   output are checked, alone and ten at once on one lock under --wg.
 * - sample.values (every msgpack type in a result), sample.fail (its
 *   error and message, EINVAL for a bad argument), sample.hold (a lock a
 *   task ends holding: the next holder is told the owner died),
 *   sample.block (cancelled by kill and by timeout while it waits on an
 *   fd), sample.selftest (what goro_func_register refused at load).
 * - At the end: no task left, no name held, gorod stops cleanly.
 *
 * The modules are $GORO_SAMPLE_MODULE, $GORO_BAD_INIT_MODULE and
 * $GORO_BAD_NOINIT_MODULE (meson passes the build's); each gorod gets a
 * --module-dir of its own holding a link to one of them. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000 /* for one event that should come soon */
#define LOGS_MS 2000  /* for the end of the output of a task that has ended */

static struct harness h;
static goro_client *c;
static char ctl_err[4096];

#define CTL(out, ...)                                                          \
	harness_ctl(h.sock, NULL, 0, out, sizeof(out), ctl_err, sizeof ctl_err, \
		    WAIT_MS, __VA_ARGS__, (const char *)NULL)

/* ---- helpers ------------------------------------------------------------------- */

/* Spawns func with string args (NULL-terminated; decimal integers go as
 * integers) and the options in *opt (may be NULL). Returns the id, or 0
 * having failed an assertion. */
static uint64_t spawn_func(const char *func, const char *const *args,
			   const struct goro_spawn *opt, const char *what)
{
	struct goro_spawn sp = { 0 };
	uint64_t id = 0;
	int r;

	if (opt)
		sp = *opt;
	sp.func = func;
	sp.args = args;
	r = goro_spawn(c, &sp, &id);
	if (!is(r, 0, "%s: spawn %s", what, func)) {
		diag("spawn: %s: %s", goro_err_name(r), goro_last_error(c));
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

/* spawn_func() and wait_ok(). */
static uint64_t run(const char *func, const char *const *args, const struct goro_spawn *opt,
		    struct goro_outcome *o, const char *what)
{
	uint64_t id = spawn_func(func, args, opt, what);

	memset(o, 0, sizeof *o);
	if (id)
		wait_ok(id, o, what);
	return id;
}

static const char *result_of(const struct goro_outcome *o)
{
	return o->result_json ? o->result_json : "(none)";
}

/* Whether gorod still answers, over a new connection. */
static bool still_serves(const char *what)
{
	goro_client *c2 = NULL;
	bool pass = goro_connect(h.sock, &c2) == 0 && goro_hello(c2, "test", NULL) == 0;

	goro_close(c2);
	return ok(pass, "%s: gorod still answers", what);
}

/* ---- modules that must not load ---------------------------------------------------- */

/* gorod with module (a link named name in a --module-dir) must exit
 * non-zero before it is ready, and say why, naming it. */
static void bad_module(const char *env, const char *name, const char *why)
{
	const char *target = getenv(env), *gorod = getenv("GOROD");
	char dir[64], sock[128], out[4096], err[8192];
	const char *argv[] = { gorod, "--socket", sock, "--module-dir", dir, NULL };
	bool pass;
	int r;

	if (!target || !gorod) {
		skip(4, "$%s or $GOROD is not set", env);
		return;
	}
	harness_module_dir(dir, sizeof dir, target, name);
	snprintf(sock, sizeof sock, "%s/gorod.sock", dir);
	r = harness_run(argv, NULL, 0, out, sizeof out, err, sizeof err, WAIT_MS);
	pass = ok(r > 0 && r < 128, "%s: gorod refuses to start (exit %d)", name, r);
	pass &= ok(strstr(err, name) != NULL, "%s: and names the module", name);
	pass &= ok(strstr(err, why) != NULL, "%s: and says '%s'", name, why);
	pass &= ok(!strstr(err, "Sanitizer"), "%s: with no sanitizer report", name);
	if (!pass)
		diag("gorod said: %s%s", err, out);
	unlink(sock);
	harness_module_dir_remove(dir, name);
}

/* ---- built-ins ------------------------------------------------------------------------ */

static void test_builtins(void)
{
	const char *echo_args[] = { "a", "1", "x y", NULL };
	const char *sleep_args[] = { "100", NULL };
	const char *spin_args[] = { "50", NULL };
	const char *bad_args[] = { "abc", NULL };
	/* [{"k": [true, nil, -1]}, 1.5] */
	static const unsigned char packed[] = { 0x92, 0x81, 0xa1, 'k', 0x93, 0xc3, 0xc0, 0xff,
						0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0 };
	struct goro_spawn sp = { 0 };
	struct goro_outcome o;
	uint64_t id;

	id = run("noop", NULL, NULL, &o, "noop");
	is(o.state, GORO_TASK_EXITED, "noop: exited");
	is(o.code, 0, "noop: code 0");
	ok(o.func, "noop: a func task");
	ok(!o.result_json || strcmp(o.result_json, "null") == 0, "noop: no result (%s)",
	   result_of(&o));
	is(o.id, id, "noop: the outcome names it");
	goro_outcome_clear(&o);

	run("echo", echo_args, NULL, &o, "echo");
	is(o.state, GORO_TASK_EXITED, "echo: exited");
	is_str(result_of(&o), "[\"a\",1,\"x y\"]", "echo: the result is its arguments");
	goro_outcome_clear(&o);
	sp.args_msgpack = packed;
	sp.args_msgpack_len = sizeof packed;
	run("echo", NULL, &sp, &o, "echo nested");
	is_str(result_of(&o), "[{\"k\":[true,null,-1]},1.5]",
	       "echo: nested values come back as they went");
	goro_outcome_clear(&o);

	run("sleep", sleep_args, NULL, &o, "sleep");
	is(o.state, GORO_TASK_EXITED, "sleep 100: exited");
	cmp_ok(o.ended_ms - o.started_ms, >=, 100, "sleep 100: took 100 ms or more");
	run("spin", spin_args, NULL, &o, "spin");
	is(o.state, GORO_TASK_EXITED, "spin 50: exited");
	cmp_ok(o.ended_ms - o.started_ms, >=, 50, "spin 50: took 50 ms or more");

	run("sleep", bad_args, NULL, &o, "sleep abc");
	is(o.state, GORO_TASK_FAILED, "sleep abc: failed");
	is(o.error, -EINVAL, "sleep abc: EINVAL (%s)", o.message);
	run("spin", echo_args, NULL, &o, "spin a 1 'x y'");
	is(o.state, GORO_TASK_FAILED, "spin with 3 arguments: failed");
	is(o.error, -EINVAL, "spin with 3 arguments: EINVAL (%s)", o.message);
	run("sleep", NULL, &sp, &o, "sleep {..} 1.5");
	is(o.error, -EINVAL, "sleep with a map: EINVAL (%s)", o.message);
	still_serves("wrong argument types");

	sp = (struct goro_spawn){ .func = "no.such.function" };
	is(goro_spawn(c, &sp, &id), -ENOENT, "an unknown function: ENOENT at spawn");
	still_serves("an unknown function");
}

static void test_builtins_ctl(void)
{
	char out[4096], ids[32];
	uint64_t id;
	int r;

	r = CTL(out, "spawn", "--func", "echo", "hello", "42");
	is(r, 0, "goroctl spawn --func echo hello 42");
	id = strtoull(out, NULL, 10);
	ok(id > 0, "goroctl spawn --func prints the id");
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(out, "--json", "wait", ids), 0, "goroctl --json wait: exit 0");
	ok(strstr(out, "\"result\":[\"hello\",42]") != NULL,
	   "goroctl --json wait: the result is [\"hello\",42]");
	if (!strstr(out, "\"result\":[\"hello\",42]"))
		diag("goroctl said: %s", out);
	r = CTL(out, "--json", "spawn", "--func", "no.such.function");
	ok(r != 0 && strstr(out, "\"error\":\"ENOENT\""),
	   "goroctl spawn --func no.such.function: fails with ENOENT (exit %d)", r);
	is(CTL(out, "spawn", "--func", "sleep", "abc"), 0, "goroctl spawn --func sleep abc");
	id = strtoull(out, NULL, 10);
	snprintf(ids, sizeof ids, "%" PRIu64, id);
	is(CTL(out, "wait", ids), 1, "goroctl wait: a failed func: exit 1");
}

static void test_builtins_control(void)
{
	const char *long_args[] = { "20000", NULL };
	struct goro_spawn sp = { .timeout_ms = 100 };
	struct goro_outcome o;
	uint64_t id;

	id = spawn_func("sleep", long_args, NULL, "func kill");
	is(goro_pause(c, id), -EINVAL, "func: pause is EINVAL");
	is(goro_kill(c, id, SIGTERM), 0, "func: kill");
	wait_ok(id, &o, "func kill");
	is(o.state, GORO_TASK_KILLED, "func: killed");
	is(o.signal, 0, "func: no signal in the outcome");
	cmp_ok(o.ended_ms - o.started_ms, <, 10000, "func: kill ended it long before 20 s");

	run("sleep", long_args, &sp, &o, "func timeout");
	is(o.state, GORO_TASK_TIMEOUT, "func: timeout_ms 100: state timeout");
	cmp_ok(o.ended_ms - o.started_ms, >=, 100, "func: not before 100 ms");
	cmp_ok(o.ended_ms - o.started_ms, <, 10000, "func: long before 20 s");
	run("spin", long_args, &sp, &o, "spin timeout");
	is(o.state, GORO_TASK_TIMEOUT, "spin: timeout_ms 100 stops a spinning func too");
}

/* ---- the sample module ------------------------------------------------------------------ */

/* Whether text has each line "child 0" .. "child n-1" once, and "done" last. */
static bool children_printed(const char *text, int n)
{
	int seen[64] = { 0 };
	const char *p = text;
	int k;

	while (sscanf(p, "child %d\n", &k) == 1 && k >= 0 && k < 64) {
		seen[k]++;
		p = strchr(p, '\n') + 1;
	}
	for (int i = 0; i < 64; i++)
		if (seen[i] != (i < n))
			return false;
	return strcmp(p, "done\n") == 0;
}

static void test_sample_work(void)
{
	const char *args[] = { "20", "8", "sw", NULL };
	char out[4096], entry[4096], want[64];
	struct goro_outcome o;
	struct goro_logs l = { 0 };
	struct goro_grant g;
	long long v = -1;
	uint64_t id;

	is(goro_mutex_lock(c, "sw", GORO_WRITE, WAIT_MS, 0, &g), 0, "work: the test holds sw");
	id = spawn_func("sample.work", args, NULL, "work");
	is(goro_wait(c, id, 300, &o), -ETIMEDOUT, "work: it waits for sw inside the function");
	if (harness_ps_entry(c, id, entry, sizeof entry) == 0) {
		ok(strstr(entry, "\"kind\":\"func\"") && strstr(entry, "\"func\":\"sample.work\""),
		   "work: ps shows a func task running sample.work");
		ok(strstr(entry, "\"state\":\"running\""), "work: and running (not queued)");
	}
	is(goro_mutex_unlock(c, "sw", g.token, 0), 0, "work: the test lets go");
	wait_ok(id, &o, "work");
	is(o.state, GORO_TASK_EXITED, "work: exited (%s)", o.message);
	is(o.code, 0, "work: code 0");
	if (o.result_json) {
		is(harness_json_int(o.result_json, "id", &v), 0, "work: result has id");
		is(v, id, "work: goro_task_id() is the task's id");
		is(harness_json_int(o.result_json, "token", &v), 0, "work: result has token");
		cmp_ok(v, >, g.token, "work: its lock came after the test's (fencing token)");
		is(harness_json_int(o.result_json, "children", &v), 0, "work: result has children");
		is(v, 8, "work: 8 children");
		ok(strstr(o.result_json, "\"byte\":\"x\""), "work: goro_wait_fd saw the byte");
		is(harness_json_int(o.result_json, "sem_token", &v), 0, "work: result has sem_token");
		cmp_ok(v, >, 0, "work: it took a semaphore unit");
	} else {
		ok(0, "work: a result (got none)");
	}
	is(goro_logs_read(c, id, GORO_STDOUT, 0, 0, &l), 0, "work: logs.read");
	ok(l.eof, "work: the task has ended: logs.read says eof");
	free(l.data);
	harness_logs(c, id, GORO_STDOUT, out, sizeof out, NULL, LOGS_MS);
	if (!ok(children_printed(out, 8), "work: each child printed its line once, then done"))
		diag("stdout: %s", out);
	harness_logs(c, id, GORO_STDERR, out, sizeof out, NULL, LOGS_MS);
	snprintf(want, sizeof want, "sample.work: 8 children\n");
	is_str(out, want, "work: stderr");
	is(o.stdout_bytes, 8 * 8 + 5, "work: stdout_bytes");
	goro_outcome_clear(&o);
}

/* n sample.works at once, all on one lock, bound to a WaitGroup. */
static void test_sample_many(int n)
{
	const char *args[] = { "1", "4", "swm", NULL };
	struct goro_spawn sp = { .wg = "swm.all" };
	struct goro_wg_status st = { 0 };
	struct goro_grant g = { 0 };
	int failed = 0;

	/* Holding swm, so that none ends (and closes the round) before the
	 * last is spawned, however slow gorod is (valgrind). */
	is(goro_mutex_lock(c, "swm", GORO_WRITE, WAIT_MS, 0, &g), 0, "many: the test holds swm");
	for (int i = 0; i < n; i++)
		spawn_func("sample.work", args, &sp, "many");
	is(goro_mutex_unlock(c, "swm", g.token, 0), 0, "many: the test lets go");
	is(goro_wg_wait_status(c, "swm.all", WAIT_MS, &st), 0, "many: wg wait for them all");
	is(st.tasks, n, "many: %d tasks in the round", n);
	is(st.done, n, "many: all done");
	is(st.failed, 0, "many: none failed");
	if (st.has_failure) {
		failed++;
		diag("first failure: %s: %s", goro_task_state_name(st.first_failure.state),
		     st.first_failure.message);
		goro_outcome_clear(&st.first_failure);
	}
	is(failed, 0, "many: no first_failure");
}

static void test_sample_small(void)
{
	const char *fail_args[] = { "disk on fire", NULL };
	const char *int_args[] = { "42", NULL };
	const char *hold_args[] = { "held", NULL };
	const char *work_str[] = { "x", "1", "n", NULL };
	const char *work_range[] = { "1", "1000", "n", NULL };
	struct goro_outcome o;
	struct goro_grant g = { 0 };
	long long v = 0;

	run("sample.values", NULL, NULL, &o, "values");
	is_str(result_of(&o),
	       "{\"nil\":null,\"bool\":true,\"int\":-5,\"uint\":18446744073709551615,"
	       "\"float\":1.5,\"str\":\"s\",\"bin\":\"Yg==\",\"array\":[1,2],\"map\":{\"k\":\"v\"}}",
	       "values: a result with every type");
	goro_outcome_clear(&o);

	run("sample.fail", fail_args, NULL, &o, "fail");
	is(o.state, GORO_TASK_FAILED, "fail: failed");
	is(o.error, -EIO, "fail: with the function's code, EIO");
	is_str(o.message, "disk on fire", "fail: and its message");
	is(goro_outcome_status(&o), 1, "fail: a shell's status 1");
	run("sample.fail", int_args, NULL, &o, "fail 42");
	is(o.error, -EINVAL, "fail 42: an int where a string goes: EINVAL (%s)", o.message);
	run("sample.work", work_str, NULL, &o, "work x");
	is(o.error, -EINVAL, "work x 1 n: EINVAL (%s)", o.message);
	run("sample.work", NULL, NULL, &o, "work");
	is(o.error, -EINVAL, "work with no arguments: EINVAL");
	run("sample.work", work_range, NULL, &o, "work 1000 children");
	is(o.error, -EINVAL, "work with 1000 children: EINVAL");
	run("sample.values", int_args, NULL, &o, "values 42");
	is(o.error, -EINVAL, "values 42: EINVAL");
	still_serves("wrong arguments to module functions");

	run("sample.hold", hold_args, NULL, &o, "hold");
	is(o.state, GORO_TASK_EXITED, "hold: returned holding the lock");
	is(goro_mutex_lock(c, "held", GORO_WRITE, WAIT_MS, 0, &g), 0, "hold: gorod released it");
	ok(g.owner_died, "hold: the next holder is told the owner died");
	is(goro_mutex_unlock(c, "held", g.token, 0), 0, "hold: unlock");

	run("sample.selftest", NULL, NULL, &o, "selftest");
	if (o.result_json) {
		harness_json_int(o.result_json, "builtin", &v);
		cmp_ok(v, <, 0, "register: a built-in's name is refused");
		harness_json_int(o.result_json, "twice", &v);
		is(v, -EEXIST, "register: a name taken twice: EEXIST");
		harness_json_int(o.result_json, "empty", &v);
		is(v, -EINVAL, "register: an empty name: EINVAL");
		harness_json_int(o.result_json, "api", &v);
		is(v, 1, "goro_module_api() is 1");
	} else {
		skip(4, "sample.selftest gave no result");
	}
	goro_outcome_clear(&o);
}

static void test_sample_block(void)
{
	struct goro_spawn sp = { .timeout_ms = 100 };
	struct goro_outcome o;
	struct goro_logs l = { 0 };
	char err[256];
	uint64_t id;

	id = spawn_func("sample.block", NULL, NULL, "block");
	/* Its "blocking" line says it is about to wait. */
	is(goro_logs_read(c, id, GORO_STDOUT, 0, WAIT_MS, &l), 0, "block: it says it waits");
	ok(l.len == 9 && memcmp(l.data, "blocking\n", 9) == 0, "block: \"blocking\"");
	free(l.data);
	is(goro_kill(c, id, 0), 0, "block: kill");
	wait_ok(id, &o, "block");
	is(o.state, GORO_TASK_KILLED, "block: killed");
	harness_logs(c, id, GORO_STDERR, err, sizeof err, NULL, LOGS_MS);
	is_str(err, "cancelled\n", "block: goro_wait_fd returned ECANCELED, goro_task_cancelled");

	id = run("sample.block", NULL, &sp, &o, "block timeout");
	is(o.state, GORO_TASK_TIMEOUT, "block: timeout_ms 100: state timeout");
	harness_logs(c, id, GORO_STDERR, err, sizeof err, NULL, LOGS_MS);
	is_str(err, "cancelled\n", "block: cancelled by the timeout");
}


static void test_sample_many_scaled(void)
{
	test_sample_many((int)tap_scale(10, 5));
}

/* The parts after the bad modules, in order; `test_tasks_func NAME..`
 * runs only those named. */
static const struct harness_part parts[] = {
	{ "builtins", test_builtins },	       { "builtins_ctl", test_builtins_ctl },
	{ "control", test_builtins_control },   { "work", test_sample_work },
	{ "many", test_sample_many_scaled },   { "small", test_sample_small },
	{ "block", test_sample_block },
};

int main(int argc, char **argv)
{
	const char *sample = getenv("GORO_SAMPLE_MODULE");
	char dir[64];
	const char *args[] = { "--module-dir", dir, NULL };

	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	unsetenv("NOTIFY_SOCKET");
	if (!sample || !getenv("GOROCTL"))
		bail_out("$GORO_SAMPLE_MODULE and $GOROCTL must name what to test");
	if (harness_wanted("bad", argc, argv)) {
		bad_module("GORO_BAD_INIT_MODULE", "bad_init.so", "goro_module_init");
		bad_module("GORO_BAD_NOINIT_MODULE", "bad_noinit.so", "goro_module_init");
	}

	harness_module_dir(dir, sizeof dir, sample, "sample.so");
	harness_run_parts(&h, &c, args, "with the sample module", parts,
			  sizeof parts / sizeof parts[0], argc, argv, WAIT_MS);
	harness_cleanup(&h);
	harness_module_dir_remove(dir, "sample.so");
	return done_testing();
}
