/* test_goroctl.c: goroctl against a real gorod, as a shell script uses it.
 *
 * - The Go tutorial's counter across processes: many processes each run
 *   `goroctl lock counter -- sh -c 'read n < F; echo $((n+1)) > F'` many
 *   times at once; the file ends exactly at their total.
 * - Each exit code of goroctl --help: usage 2, gorod not running 3, timed
 *   out 4, busy 6, CMD's own status for lock (and 128+N for a signal).
 * - lock runs CMD holding the lock, with GOROD_LOCK_TOKEN and GOROD_SOCKET
 *   set; --read shares it.
 * - --json output is one JSON object (checked with python3's json module
 *   when there is a python3, and by its keys).
 * - wg add, done and wait work together across processes.
 * - At the end gorod has forgotten every name and stops cleanly.
 *
 * goroctl is $GOROCTL (meson passes the build's). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 10000 /* for one goroctl run that should not wait */

static struct harness h;
static const char *goroctl;

/* ---- running goroctl --------------------------------------------------------- */

/* Starts argv[0] with argv, stdin from /dev/null, stdout into a pipe whose
 * read end goes to *out_fd (or to /dev/null when out_fd is NULL), stderr
 * inherited (it lands in the test log). Returns the pid. Safe in a forked
 * child (no TAP output). */
static pid_t start(const char *const *argv, int *out_fd)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	if (out_fd && pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(out_fd ? p[1] : null, STDOUT_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = pid < 0 ? -1 : p[0];
		if (pid < 0)
			close(p[0]);
	}
	return pid;
}

/* Reads fd to its end into out[0..size) (NUL-terminated, the rest dropped)
 * and reaps pid, within timeout_ms. Returns the exit code, 128+N for signal
 * N, or -ETIMEDOUT (pid is killed). Closes fd. */
static int finish(pid_t pid, int fd, char *out, size_t size, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	size_t len = 0;
	int st, r;

	for (;;) {
		int64_t left = deadline - harness_now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[1024];
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) == 0)
			break;
		n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && len + 1 < size; i++)
			out[len++] = buf[i];
	}
	out[len] = '\0';
	close(fd);
	r = harness_wait_pid(pid, (int)(deadline - harness_now_ms() > 0 ? deadline - harness_now_ms() : 0), &st);
	if (r < 0) {
		harness_kill_all(&pid, 1);
		return -ETIMEDOUT;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs goroctl [--socket sock] ARGS.. (NULL-terminated), its stdout into
 * out. Returns as finish(). */
static int ctl_v(char *out, size_t size, const char *sock, va_list ap)
{
	const char *argv[32] = { goroctl };
	int n = 1, fd;
	const char *a;
	pid_t pid;

	if (sock) {
		argv[n++] = "--socket";
		argv[n++] = sock;
	}
	while ((a = va_arg(ap, const char *)) && n < 31)
		argv[n++] = a;
	argv[n] = NULL;
	pid = start(argv, &fd);
	if (pid < 0)
		bail_out("cannot start %s: %s", goroctl, strerror(errno));
	return finish(pid, fd, out, size, WAIT_MS);
}

/* goroctl --socket h.sock ARGS.. */
static int ctl(char *out, size_t size, ...)
{
	va_list ap;
	int r;

	va_start(ap, size);
	r = ctl_v(out, size, h.sock, ap);
	va_end(ap);
	return r;
}

/* goroctl ARGS.. with no --socket added. */
static int ctl_bare(char *out, size_t size, ...)
{
	va_list ap;
	int r;

	va_start(ap, size);
	r = ctl_v(out, size, NULL, ap);
	va_end(ap);
	return r;
}

#define CTL(out, ...) ctl(out, sizeof(out), __VA_ARGS__, (const char *)NULL)
#define CTL_BARE(out, ...) ctl_bare(out, sizeof(out), __VA_ARGS__, (const char *)NULL)

/* Whether python3 is there to check JSON with; decided once. */
static int have_python = -1;

/* Checks that text is one JSON object: with python3's json module when
 * there is one, and by its shape: one line, {..}. */
static void json_ok(const char *text, const char *what)
{
	size_t len = strlen(text);
	char out[64];
	bool pass;
	int r = -1;

	pass = ok(len >= 3 && text[0] == '{' && strchr(text, '\n') == text + len - 1 &&
		  text[len - 2] == '}', "%s: one line, one object", what);
	if (have_python != 0) {
		const char *argv[] = { "python3", "-c",
				       "import json, sys\n"
				       "v = json.loads(sys.argv[1])\n"
				       "sys.exit(0 if isinstance(v, dict) else 1)\n",
				       text, NULL };
		int fd;
		pid_t pid = start(argv, &fd);

		r = pid < 0 ? 127 : finish(pid, fd, out, sizeof out, 30000);
		if (have_python < 0)
			have_python = r != 127;
	}
	if (have_python)
		pass &= is(r, 0, "%s: python3's json.loads takes it", what);
	else
		skip(1, "no python3 to parse JSON with");
	if (!pass)
		diag("the text: %s", text);
}

/* ---- the counter -------------------------------------------------------------- */

struct counter_shared {
	atomic_int failed;
	int first_status;
};

static int counter_child(struct counter_shared *sh, const char *file, int times)
{
	const char *argv[] = { goroctl, "--socket", h.sock, "lock", "counter", "--",
			       "sh", "-c", "read n < \"$1\"; echo $((n+1)) > \"$1\"",
			       "sh", file, NULL };

	for (int i = 0; i < times; i++) {
		pid_t pid = start(argv, NULL);
		int st = -1;

		while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (atomic_fetch_add(&sh->failed, 1) == 0)
				sh->first_status = st;
		}
	}
	return 0;
}

static void test_counter(int procs, int times)
{
	struct counter_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t *pids = calloc((size_t)procs, sizeof *pids);
	int64_t t0 = harness_now_ms();
	char file[300], text[64] = "";
	FILE *f;

	if (sh == MAP_FAILED || !pids)
		bail_out("out of memory");
	snprintf(file, sizeof file, "%s/counter", h.dir);
	f = fopen(file, "w");
	if (!f)
		bail_out("%s: %s", file, strerror(errno));
	fputs("0\n", f);
	fclose(f);
	for (int i = 0; i < procs; i++) {
		fflush(NULL);
		pids[i] = fork();
		if (pids[i] < 0)
			bail_out("fork: %s", strerror(errno));
		if (pids[i] == 0)
			_exit(counter_child(sh, file, times));
	}
	is(harness_reap_all(pids, procs, 240000, "counter"), 0,
	   "counter: every process exited 0");
	if (!is(sh->failed, 0, "counter: every goroctl lock exited 0"))
		diag("the first failure's wait status: %#x", sh->first_status);
	f = fopen(file, "r");
	if (f) {
		if (!fgets(text, sizeof text, f))
			text[0] = '\0';
		fclose(f);
	}
	is(atol(text), (long)procs * times,
	   "counter: %d processes x %d increments under `goroctl lock`: the file is exact",
	   procs, times);
	diag("counter: %lld ms", (long long)(harness_now_ms() - t0));
	munmap(sh, sizeof *sh);
	free(pids);
}

/* ---- exit codes ------------------------------------------------------------------- */

static void test_usage(void)
{
	char out[4096];

	is(CTL_BARE(out, "--bogus", "stats"), 2, "usage: an unknown option: exit 2");
	is(ctl_bare(out, sizeof out, (const char *)NULL), 2, "usage: no command: exit 2");
	is(CTL(out, "frobnicate"), 2, "usage: an unknown command: exit 2");
	is(CTL(out, "wg", "add"), 2, "usage: wg add without a name: exit 2");
	is(CTL(out, "wg", "add", "x", "lots"), 2, "usage: wg add with a bad N: exit 2");
	is(CTL(out, "lock", "x"), 2, "usage: lock without -- CMD: exit 2");
	is(CTL(out, "wg", "wait", "x", "--timeout", "5parsecs"), 2, "usage: a bad duration: exit 2");
	is(CTL(out, "stats", "--try"), 2, "usage: an option of another command: exit 2");
	is(CTL_BARE(out, "--help"), 0, "usage: --help: exit 0");
	ok(strstr(out, "Exit codes:") != NULL, "usage: --help lists the exit codes");
}

static void test_not_running(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char none[300], dead[300], out[4096];
	int fd;

	snprintf(none, sizeof none, "%s/nothing.sock", h.dir);
	is(CTL_BARE(out, "--socket", none, "stats"), 3, "not running: no socket there: exit 3");
	is(CTL_BARE(out, "--socket", none, "--json", "wg", "add", "x"), 3,
	   "not running: --json: exit 3");
	ok(strstr(out, "\"error\":\"ENOENT\"") != NULL, "not running: --json says ENOENT");
	json_ok(out, "not running: --json");
	/* A socket file nobody listens on: ECONNREFUSED. */
	snprintf(dead, sizeof dead, "%s/dead.sock", h.dir);
	if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s", dead) >= (int)sizeof sa.sun_path)
		bail_out("%s is too long for a socket", dead);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		bail_out("bind %s: %s", dead, strerror(errno));
	close(fd);
	is(CTL_BARE(out, "--socket", dead, "lock", "x", "--", "true"), 3,
	   "not running: a socket nobody listens on: exit 3");
	unlink(dead);
}

static void test_exit_codes(void)
{
	goro_client *c;
	char out[4096];
	int64_t t0;

	if (goro_connect(h.sock, &c) < 0)
		bail_out("connect to %s", h.sock);

	is(CTL(out, "wg", "add", "ww", "1"), 0, "timeout: wg add ww 1");
	t0 = harness_now_ms();
	is(CTL(out, "wg", "wait", "ww", "--timeout", "100ms"), 4,
	   "timeout: wg wait --timeout 100ms on a counter of 1: exit 4");
	cmp_ok(harness_now_ms() - t0, >=, 100, "timeout: after the 100 ms");
	is(CTL(out, "--json", "wg", "wait", "ww", "--timeout", "50ms"), 4,
	   "timeout: --json: exit 4");
	ok(strstr(out, "{\"error\":\"ETIMEDOUT\",\"message\":\"") == out,
	   "timeout: --json says {\"error\":\"ETIMEDOUT\",\"message\":...}");
	json_ok(out, "timeout: --json");
	is(CTL(out, "wg", "done", "ww"), 0, "timeout: wg done ww");

	is(goro_mutex_lock(c, "held", GORO_WRITE, WAIT_MS, 0, NULL), 0, "busy: the test holds 'held'");
	is(CTL(out, "lock", "--try", "held", "--", "true"), 6, "busy: lock --try on it: exit 6");
	is(CTL(out, "lock", "--timeout", "100ms", "held", "--", "true"), 4,
	   "busy: lock --timeout 100ms on it: exit 4");
	is(goro_mutex_unlock(c, "held", 0, 0), 0, "busy: the test unlocks it");
	is(CTL(out, "lock", "--try", "held", "--", "true"), 0, "busy: now lock --try: exit 0");

	is(CTL(out, "lock", "l7", "--", "sh", "-c", "exit 7"), 7,
	   "lock: exits with CMD's status (7)");
	is(CTL(out, "lock", "l9", "--", "sh", "-c", "kill -9 $$"), 137,
	   "lock: CMD killed by signal 9: exit 137");
	is(CTL(out, "lock", "l127", "--", "/nonexistent/command"), 127,
	   "lock: a CMD that does not exist: exit 127");
	is(CTL(out, "lock", "lenv", "--", "sh", "-c",
	       "test -n \"$GOROD_LOCK_TOKEN\" && test \"$GOROD_SOCKET\" = \"$0\"", h.sock), 0,
	   "lock: CMD gets GOROD_LOCK_TOKEN and GOROD_SOCKET");
	/* The inner goroctl finds gorod through GOROD_SOCKET. */
	is(CTL(out, "lock", "lheld", "--", goroctl, "lock", "--try", "lheld", "--", "true"), 6,
	   "lock: CMD runs holding the lock (a --try inside: exit 6)");
	is(CTL(out, "lock", "--read", "lread", "--", goroctl, "lock", "--read", "--try", "lread",
	       "--", "true"), 0, "lock --read: a reader inside shares it (exit 0)");
	is(CTL(out, "lock", "--read", "lrw", "--", goroctl, "lock", "--try", "lrw", "--", "true"), 6,
	   "lock --read: a writer inside is refused (exit 6)");
	/* Without --try, the same lock asked for inside would wait forever
	 * for the goroctl that waits for it: refused as a deadlock. */
	is(CTL(out, "lock", "lnest", "--", goroctl, "lock", "lnest", "--", "true"), 5,
	   "lock: the same lock asked for inside its CMD: deadlock, exit 5");
	is(CTL(out, "lock", "--read", "lnest", "--", goroctl, "lock", "lnest", "--", "true"), 5,
	   "lock --read: a write lock asked for inside: deadlock, exit 5");
	is(CTL(out, "lock", "--read", "lnest", "--", goroctl, "lock", "--read", "lnest", "--",
	       "true"), 0, "lock --read: a read lock inside shares it, no wait (exit 0)");
	is(CTL(out, "lock", "lnest", "--", goroctl, "lock", "lother", "--", "true"), 0,
	   "lock: another lock inside is fine (exit 0)");
	goro_close(c);
}

static void test_json(void)
{
	char out[8192];

	is(CTL(out, "--json", "wg", "add", "j", "3"), 0, "json: wg add j 3");
	is_str(out, "{\"count\":3}\n", "json: {\"count\":3}");
	json_ok(out, "json: wg add");
	is(CTL(out, "--json", "wg", "add", "j", "-3"), 0, "json: wg add j -3");
	is_str(out, "{\"count\":0}\n", "json: {\"count\":0}");
	is(CTL(out, "--json", "wg", "done", "j"), 1, "json: wg done at 0: exit 1");
	ok(strstr(out, "{\"error\":\"ENEGATIVE\"") == out, "json: says ENEGATIVE");
	json_ok(out, "json: wg done error");
	is(CTL(out, "--json", "lock", "lj", "--", "true"), 0, "json: lock lj -- true");
	ok(strstr(out, "{\"token\":") == out && strstr(out, "\"owner_died\":false") &&
	   strstr(out, "\"status\":0}"), "json: lock says token, owner_died, status");
	json_ok(out, "json: lock");
	is(CTL(out, "--json", "stats"), 0, "json: stats");
	ok(strstr(out, "\"primitives\":{") && strstr(out, "\"sessions\":["),
	   "json: stats has primitives and sessions");
	json_ok(out, "json: stats");
	is(CTL(out, "--json", "maxprocs"), 0, "json: maxprocs");
	ok(strstr(out, "{\"maxprocs\":") == out, "json: maxprocs says maxprocs");
	json_ok(out, "json: maxprocs");
}

static void test_waitgroup(void)
{
	const char *wait_argv[] = { goroctl, "--socket", h.sock, "wg", "wait", "g", NULL };
	char out[4096];
	goro_client *c;
	int fd, st;
	pid_t pid;

	if (goro_connect(h.sock, &c) < 0)
		bail_out("connect to %s", h.sock);
	is(CTL(out, "wg", "add", "g", "2"), 0, "wg: add g 2");
	is_str(out, "g: 2\n", "wg: prints the counter");
	pid = start(wait_argv, &fd);
	ok(pid > 0, "wg: a goroctl wg wait g runs");
	is(harness_wait_stat(c, "waiters", 1, WAIT_MS), 0, "wg: it waits in gorod");
	is(CTL(out, "wg", "done", "g"), 0, "wg: done g");
	is_str(out, "g: 1\n", "wg: the counter is 1");
	is(harness_wait_stat(c, "waiters", 1, 0), 0, "wg: the waiter still waits at 1");
	ok(harness_wait_pid(pid, 0, &st) == -ETIMEDOUT, "wg: and goroctl has not exited");
	is(CTL(out, "wg", "done", "g"), 0, "wg: done g again");
	is_str(out, "g: 0\n", "wg: the counter is 0");
	is(finish(pid, fd, out, sizeof out, WAIT_MS), 0, "wg: the waiting goroctl exits 0");
	is(CTL(out, "wg", "done", "g"), 1, "wg: done below 0: exit 1");
	is(CTL(out, "wg", "wait", "g"), 0, "wg: wait at 0: exit 0 at once");
	goro_close(c);
}

static void check_nothing_left(void)
{
	goro_client *c;
	char *json = NULL;

	if (goro_connect(h.sock, &c) < 0)
		bail_out("connect to %s", h.sock);
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0,
	   "the end: every goroctl session has ended");
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
	goroctl = getenv("GOROCTL");
	if (!goroctl || !*goroctl)
		bail_out("$GOROCTL must name the goroctl to test");
	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	if (harness_start(&h, NULL, 30000) < 0)
		bail_out("gorod did not start");
	ok(1, "gorod started and said READY=1 (%s)", h.sock);

	test_usage();
	test_not_running();
	test_exit_codes();
	test_json();
	test_waitgroup();
	test_counter((int)tap_scale(20, 20), (int)tap_scale(50, 20));
	check_nothing_left();

	is(harness_stop(&h, 30000), 0, "gorod stops cleanly on SIGTERM (exit 0)");
	harness_cleanup(&h);
	return done_testing();
}
