/* test_notify.c: what gorod tells systemd, its configuration file, reload.
 *
 * The harness binds a NOTIFY_SOCKET of its own, as systemd would, and
 * keeps it (harness_start_notify), so the test reads every datagram gorod
 * sends after READY=1:
 * - ready: READY=1 comes with STATUS= (the socket, goroutines, tasks,
 *   leaks) and MAINPID=;
 * - watchdog: with WATCHDOG_USEC set, WATCHDOG=1 arrives at least twice per
 *   WATCHDOG_USEC (no gap longer than half of it); with the only worker
 *   held by a goroutine that never yields (the sample module's hog), the
 *   kicks stop for longer than WATCHDOG_USEC (systemd would restart
 *   gorod), and come back once it lets go;
 * - reload: SIGHUP reads the file again: RELOADING=1, then READY=1; a new
 *   maxprocs applies; a broken file changes nothing and says why in
 *   STATUS=; flags win over the file, before and after a reload;
 * - config: a missing --config file, an unknown key, a bad value, a file
 *   others may write (root): gorod refuses to start (exit 2), naming the
 *   file and line;
 * - stopping: STOPPING=1 on SIGTERM;
 * - fdstore: with FDSTORE=1, gorod stores the socket it bound; after it
 *   stops the socket file stays and still takes connections; a client
 *   connects and sends its request while no gorod runs, and the gorod
 *   started with the stored socket (as systemd restarts it) answers it.
 *
 * $GOROD and $GORO_SAMPLE_MODULE name what to test. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000

static bool has_line(const char *msg, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = msg; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, prefix, n) == 0)
			return true;
	return false;
}

/* Reads datagrams until one has a line starting with prefix (into msg),
 * at most timeout_ms. */
static bool wait_line(struct harness *h, const char *prefix, char *msg, size_t size,
		      int timeout_ms)
{
	int64_t end = harness_now_ms() + timeout_ms;

	while (harness_now_ms() < end) {
		int left = (int)(end - harness_now_ms());
		if (harness_notify_recv(h, msg, size, left < 0 ? 0 : left) > 0 &&
		    has_line(msg, prefix))
			return true;
	}
	return false;
}

static long long stat_of(goro_client *c, const char *key)
{
	long long v = -1;

	harness_stat(c, key, &v);
	return v;
}

static void test_ready(void)
{
	struct harness h;
	char want[200];

	if (harness_start_notify(&h, NULL, WAIT_MS) < 0)
		bail_out("gorod did not start");
	snprintf(want, sizeof want, "STATUS=serving %s: ", h.sock);
	ok(has_line(h.ready, want), "READY=1 comes with STATUS= naming the socket");
	ok(strstr(h.ready, "goroutines") && strstr(h.ready, "tasks running") &&
	   strstr(h.ready, "leaks"), "STATUS= counts goroutines, tasks and leaks");
	snprintf(want, sizeof want, "MAINPID=%d", (int)h.pid);
	ok(has_line(h.ready, want), "and MAINPID= is gorod's pid");
	if (!ok(has_line(h.ready, "READY=1"), "READY=1"))
		diag("the datagram: %s", h.ready);

	char msg[1024];
	is(kill(h.pid, SIGTERM), 0, "SIGTERM");
	ok(wait_line(&h, "STOPPING=1", msg, sizeof msg, WAIT_MS), "STOPPING=1 on the way out");
	is(harness_wait_pid(h.pid, WAIT_MS, &h.status), 0, "gorod exits");
	h.pid = 0;
	ok(WIFEXITED(h.status) && WEXITSTATUS(h.status) == 0, "with 0");
	harness_cleanup(&h);
}

/* The gaps between WATCHDOG=1 kicks over ms milliseconds: how many, and the
 * longest (from the start and to the end too). */
static void kicks(struct harness *h, int ms, int *n, int64_t *longest)
{
	int64_t start = harness_now_ms(), end = start + ms, last = start;
	char msg[1024];

	*n = 0;
	*longest = 0;
	while (harness_now_ms() < end) {
		int left = (int)(end - harness_now_ms());
		if (harness_notify_recv(h, msg, sizeof msg, left) <= 0 ||
		    !has_line(msg, "WATCHDOG=1"))
			continue;
		int64_t now = harness_now_ms();
		if (now - last > *longest)
			*longest = now - last;
		last = now;
		(*n)++;
	}
	if (end - last > *longest)
		*longest = end - last;
}

static void test_watchdog(void)
{
	const char *sample = getenv("GORO_SAMPLE_MODULE");
	char dir[256];
	struct harness h;
	goro_client *c = NULL;
	int n;
	int64_t longest;

	if (!sample)
		bail_out("$GORO_SAMPLE_MODULE must name the sample module");
	harness_module_dir(dir, sizeof dir, sample, "sample.so");
	const char *args[] = { "--maxprocs", "1", "--module-dir", dir, NULL };
	setenv("WATCHDOG_USEC", "1000000", 1);
	if (harness_start_notify(&h, args, WAIT_MS) < 0)
		bail_out("gorod did not start");
	unsetenv("WATCHDOG_USEC");

	kicks(&h, 3000, &n, &longest);
	ok(n >= 6, "WATCHDOG=1 %d times in 3 s with WATCHDOG_USEC=1s (at least 6)", n);
	ok(longest <= 500, "never more than half of WATCHDOG_USEC apart (longest gap %lld ms)",
	   (long long)longest);

	/* The only worker held for 3 s by a goroutine that never yields. */
	const char *hog[] = { "3000", NULL };
	struct goro_spawn sp = { .func = "sample.hog", .args = hog };
	struct goro_outcome out;
	uint64_t id = 0;

	is(goro_connect(h.sock, &c), 0, "connect");
	is(goro_spawn(c, &sp, &id), 0, "spawn sample.hog 3000 on GOMAXPROCS=1");
	kicks(&h, 2500, &n, &longest);
	ok(longest >= 1200, "while it holds the worker, no kick for over WATCHDOG_USEC "
	   "(longest gap %lld ms, %d kicks): systemd would restart gorod", (long long)longest, n);
	is(goro_wait(c, id, WAIT_MS, &out), 0, "the hog ends");
	char msg[1024];
	ok(wait_line(&h, "WATCHDOG=1", msg, sizeof msg, 2000), "and the kicks come back");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "gorod stops cleanly");
	harness_cleanup(&h);
	harness_module_dir_remove(dir, "sample.so");
}

static bool write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0 && chmod(path, 0644) == 0;
}

static void test_reload(void)
{
	char conf[] = "/tmp/gorod-conf-XXXXXX", path[128], msg[2048];
	struct harness h;
	goro_client *c = NULL;

	if (!mkdtemp(conf))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/gorod.conf", conf);
	ok(write_file(path, "# gorod's settings\nmaxprocs = 1\n\nleak-after = 5m\n"),
	   "a configuration file with maxprocs = 1");
	const char *args[] = { "--config", path, NULL };
	if (harness_start_notify(&h, args, WAIT_MS) < 0)
		bail_out("gorod did not start");
	is(goro_connect(h.sock, &c), 0, "connect");
	is(stat_of(c, "maxprocs"), 1, "GOMAXPROCS is the file's 1");

	ok(write_file(path, "maxprocs = 2\n"), "the file now says maxprocs = 2");
	is(kill(h.pid, SIGHUP), 0, "SIGHUP");
	ok(wait_line(&h, "RELOADING=1", msg, sizeof msg, WAIT_MS), "RELOADING=1");
	ok(has_line(msg, "MONOTONIC_USEC="), "with MONOTONIC_USEC=");
	ok(wait_line(&h, "READY=1", msg, sizeof msg, WAIT_MS), "then READY=1");
	ok(has_line(msg, "STATUS=reloaded"), "STATUS= says it reloaded");
	is(stat_of(c, "maxprocs"), 2, "GOMAXPROCS is now 2");

	ok(write_file(path, "maxprocs = 1\nmaxprocs = lots\n"), "a broken file");
	is(kill(h.pid, SIGHUP), 0, "SIGHUP");
	ok(wait_line(&h, "READY=1", msg, sizeof msg, WAIT_MS), "READY=1 after the attempt");
	ok(strstr(msg, "STATUS=reload failed") && strstr(msg, "gorod.conf:2: maxprocs") &&
	   strstr(msg, "'lots'"), "STATUS= says the reload failed, where and why");
	is(stat_of(c, "maxprocs"), 2, "nothing changed: GOMAXPROCS is still 2");
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "gorod stops cleanly");
	harness_cleanup(&h);

	/* Flags win over the file, also at a reload. */
	ok(write_file(path, "maxprocs = 2\n"), "the file says maxprocs = 2");
	const char *flag[] = { "--config", path, "--maxprocs", "1", NULL };
	if (harness_start_notify(&h, flag, WAIT_MS) < 0)
		bail_out("gorod did not start");
	is(goro_connect(h.sock, &c), 0, "connect");
	is(stat_of(c, "maxprocs"), 1, "--maxprocs 1 wins over the file");
	is(kill(h.pid, SIGHUP), 0, "SIGHUP");
	ok(wait_line(&h, "READY=1", msg, sizeof msg, WAIT_MS), "reloaded");
	is(stat_of(c, "maxprocs"), 1, "and still wins after the reload");
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "gorod stops cleanly");
	harness_cleanup(&h);
	unlink(path);
	rmdir(conf);
}

/* gorod with args refuses to start: exit 2, its stderr holding want. */
static void refuses(const char *const *args, const char *want, const char *what)
{
	const char *argv[48];
	char err[2048] = "";
	int n = harness_gorod_argv(argv, 32, getenv("GOROD")), rc;

	for (; *args && n < 47; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	rc = harness_run(argv, NULL, 0, NULL, 0, err, sizeof err, harness_timeout(WAIT_MS));
	ok(rc == 2 && strstr(err, want), "%s: exit 2 (%d), saying \"%s\"", what, rc, want);
	if (rc != 2 || !strstr(err, want))
		diag("stderr: %s", err);
}

static void test_config(void)
{
	char conf[] = "/tmp/gorod-conf-XXXXXX", path[128], want[200];

	if (!mkdtemp(conf))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof path, "%s/gorod.conf", conf);
	const char *args[] = { "--config", path, "--socket", "/nonexistent/gorod.sock", NULL };

	snprintf(want, sizeof want, "cannot read %s", path);
	refuses(args, want, "a --config file that is missing");
	write_file(path, "maxprocs = 2\nmaxproc = 3\n");
	snprintf(want, sizeof want, "%s:2: unknown key 'maxproc'", path);
	refuses(args, want, "an unknown key");
	write_file(path, "keep-age = soon\n");
	refuses(args, "keep-age wants a duration", "a bad duration");
	write_file(path, "just words\n");
	refuses(args, "expected `key = value`", "a line without =");
	if (geteuid() == 0) {
		write_file(path, "maxprocs = 2\n");
		chmod(path, 0666);
		refuses(args, "may be written by others than root", "a file anyone may write");
	} else {
		skip(1, "the others-may-write check is for a root gorod");
	}
	unlink(path);
	rmdir(conf);
}

static void test_fdstore(void)
{
	struct harness h;
	struct stat st;
	goro_client *c = NULL;

	setenv("FDSTORE", "1", 1);
	if (harness_start_notify(&h, NULL, WAIT_MS) < 0)
		bail_out("gorod did not start");
	unsetenv("FDSTORE");
	ok(h.stored >= 0, "gorod put its listening socket in the fd store (FDSTORE=1)");
	is(harness_stop(&h, WAIT_MS), 0, "gorod stops cleanly");
	ok(stat(h.sock, &st) == 0 && S_ISSOCK(st.st_mode),
	   "the socket file stays: the stored socket still listens on it");

	/* No gorod runs: the connection waits in the socket's backlog. */
	is(goro_connect(h.sock, &c), 0, "a client connects while no gorod runs");
	if (h.stored < 0 || !c)
		bail_out("nothing to restart with");
	is(goro_send_hello(c, "fdstore", NULL, NULL), 0, "and sends its request");
	is(goro_flush(c), 0, "written");

	is(harness_restart(&h, NULL, WAIT_MS), 0, "gorod starts again with the stored socket");
	struct goro_hello hi;
	is(goro_hello(c, "fdstore-2", &hi), 0,
	   "the client that connected meanwhile is served: no ECONNREFUSED across the restart");
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "gorod stops cleanly");
	harness_cleanup(&h);
}

static const struct harness_part parts[] = {
	{ "ready", test_ready },   { "watchdog", test_watchdog }, { "reload", test_reload },
	{ "config", test_config }, { "fdstore", test_fdstore },
};

int main(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (harness_wanted(parts[i].name, argc, argv))
			parts[i].fn();
	return done_testing();
}
