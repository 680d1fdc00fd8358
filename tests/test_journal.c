/* test_journal.c: durable task records (--state-dir).
 *
 * - restart: tasks that ended before a clean stop answer wait, logs and ps
 *   after gorod starts again, as they did; ids go on increasing;
 * - lost: gorod killed with SIGKILL while tasks ran: afterwards they are
 *   `lost`, and wait says why;
 * - load: a client pipelines spawns as fast as gorod acknowledges them, and
 *   gorod is killed with SIGKILL in the middle: every spawn that was
 *   acknowledged has a record afterwards (wait answers for each id);
 * - torn: a record cut short at the end of the file (a crash mid-write) is
 *   dropped with a message, the file as it was kept beside, and the
 *   records before it are restored;
 * - compact: with --keep-tasks 5, the journal holds what retention keeps:
 *   rewritten at each start, and while gorod runs once it has grown past
 *   16 MiB (tasks with 1 MiB of output each).
 *
 * $GOROD and $GOROCTL name what to test. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 30000

static char state[] = "/tmp/gorod-state-XXXXXX";
static char journal[128];

static void start(struct harness *h, const char *const *extra)
{
	const char *args[16] = { "--state-dir", state };
	int n = 2;

	for (; extra && *extra && n < 15; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	if (harness_start(h, args, WAIT_MS) < 0)
		bail_out("gorod did not start with --state-dir %s", state);
}

/* SIGKILL: no clean stop, as in a crash. */
static void crash(struct harness *h)
{
	int status = 0;

	kill(h->pid, SIGKILL);
	is(harness_wait_pid(h->pid, WAIT_MS, &status), 0, "gorod killed with SIGKILL");
	h->pid = 0;
	harness_cleanup(h);
}

static uint64_t spawn_argv(goro_client *c, const char *const *argv)
{
	struct goro_spawn sp = { .argv = argv };
	uint64_t id = 0;

	if (goro_spawn(c, &sp, &id) < 0)
		return 0;
	return id;
}

static bool log_says(const struct harness *h, const char *what)
{
	FILE *f = fopen(h->log, "re");
	char line[1024];
	bool found = false;

	while (f && fgets(line, sizeof line, f))
		found |= strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return found;
}

static void test_restart(void)
{
	struct harness h;
	goro_client *c = NULL;
	struct goro_outcome out;
	const char *a_argv[] = { "sh", "-c", "echo hello; echo oops >&2; exit 3", NULL };
	const char *f_args[] = { "hi", "42", NULL };
	struct goro_spawn fsp = { .func = "echo", .args = f_args };
	uint64_t a, f = 0, n;
	char buf[256];

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "connect");
	a = spawn_argv(c, a_argv);
	ok(a > 0, "restart: spawn sh -c '... exit 3' (id %llu)", (unsigned long long)a);
	is(goro_spawn(c, &fsp, &f), 0, "restart: spawn func echo hi 42");
	is(goro_wait(c, a, WAIT_MS, &out), 0, "restart: wait");
	goro_outcome_clear(&out);
	is(goro_wait(c, f, WAIT_MS, &out), 0, "restart: wait for the func");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "restart: gorod stops cleanly");
	harness_cleanup(&h);

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "restart: connect to the new gorod");
	is(goro_wait(c, a, WAIT_MS, &out), 0, "restart: wait on a task of the last run answers");
	ok(out.state == GORO_TASK_EXITED && out.code == 3, "it exited with code 3 (state %s, %d)",
	   goro_task_state_name(out.state), out.code);
	goro_outcome_clear(&out);
	ok(harness_logs(c, a, GORO_STDOUT, buf, sizeof buf, NULL, WAIT_MS) >= 0 &&
	   strcmp(buf, "hello\n") == 0, "its stdout is kept: hello");
	ok(harness_logs(c, a, GORO_STDERR, buf, sizeof buf, NULL, WAIT_MS) >= 0 &&
	   strcmp(buf, "oops\n") == 0, "and its stderr: oops");
	is(goro_wait(c, f, WAIT_MS, &out), 0, "the func task too");
	ok(out.state == GORO_TASK_EXITED && out.func, "exited, a func task");
	goro_outcome_clear(&out);
	ok(harness_ps_entry(c, a, buf, sizeof buf) == 0 && strstr(buf, "\"exited\"") &&
	   strstr(buf, "exit 3"), "ps --all shows it with its command");
	n = spawn_argv(c, (const char *const[]){ "true", NULL });
	ok(n > f, "restart: ids go on: the next is %llu > %llu", (unsigned long long)n,
	   (unsigned long long)f);
	is(goro_wait(c, n, WAIT_MS, &out), 0, "and it runs");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "restart: gorod stops cleanly");
	harness_cleanup(&h);
}

static void test_lost(void)
{
	struct harness h;
	goro_client *c = NULL;
	struct goro_outcome out;
	const char *sleep_args[] = { "600000", NULL };
	struct goro_spawn fsp = { .func = "sleep", .args = sleep_args };
	uint64_t e, f = 0;
	long long pid = 0;
	char buf[512];

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "connect");
	ok((e = spawn_argv(c, (const char *const[]){ "sleep", "600", NULL })) > 0,
	   "lost: spawn sleep 600");
	is(goro_spawn(c, &fsp, &f), 0, "lost: spawn func sleep 600000");
	/* Its process outlives gorod: the test ends it by its pid. */
	for (int64_t end = harness_now_ms() + WAIT_MS; harness_now_ms() < end;) {
		if (harness_ps_entry(c, e, buf, sizeof buf) == 0 &&
		    harness_json_int(buf, "pid", &pid) == 0 && pid > 0)
			break;
		poll(NULL, 0, 10);
	}
	ok(pid > 0, "lost: its process runs (pid %lld)", pid);
	goro_close(c);
	crash(&h);

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "lost: connect to the new gorod");
	is(goro_wait(c, e, WAIT_MS, &out), 0, "lost: wait on the command answers at once");
	ok(out.state == GORO_TASK_LOST, "its state is lost (%s)", goro_task_state_name(out.state));
	ok(strstr(out.message, "gorod stopped while the task ran") != NULL,
	   "and wait says why: %s", out.message);
	goro_outcome_clear(&out);
	is(goro_wait(c, f, WAIT_MS, &out), 0, "lost: the func task too");
	ok(out.state == GORO_TASK_LOST, "is lost");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "lost: gorod stops cleanly");
	ok(log_says(&h, "2 lost: running when gorod stopped") ||
	   log_says(&h, "lost: running when gorod stopped"), "its log counted them lost");
	harness_cleanup(&h);
	if (pid > 0)
		kill((pid_t)pid, SIGKILL);
}

/* The load part's client: pipelines spawns of func noop, and writes each
 * acknowledged id to fd, until gorod goes away. */
struct acks {
	int fd;
	int inflight;
};

static void on_spawned(void *arg, int err, const struct goro_reply *reply)
{
	struct acks *a = arg;

	a->inflight--;
	if (err == 0)
		harness_write_full(a->fd, &reply->id, sizeof reply->id);
}

static void spawner(const char *sock, int fd)
{
	struct goro_spawn sp = { .func = "noop" };
	struct acks a = { .fd = fd };
	goro_client *c = NULL;

	if (goro_connect(sock, &c) < 0)
		_exit(1);
	for (;;) {
		while (a.inflight < 64) {
			if (goro_send_spawn(c, &sp, on_spawned, &a) < 0)
				_exit(0);
			a.inflight++;
		}
		if (goro_flush(c) < 0 && !goro_want_write(c))
			_exit(0);
		struct pollfd p = { .fd = goro_fd(c), .events = POLLIN };
		if (goro_want_write(c))
			p.events |= POLLOUT;
		if (poll(&p, 1, 10000) < 0 || goro_process(c) < 0)
			_exit(0);
	}
}

static void test_load(void)
{
	struct harness h;
	goro_client *c = NULL;
	int fds[2], bad = 0, waited = 0;
	uint64_t id, max = 0, *ids = NULL;
	size_t n = 0, cap = 0;
	pid_t kid;

	start(&h, NULL);
	if (pipe(fds) < 0)
		bail_out("pipe: %s", strerror(errno));
	fflush(NULL);
	kid = fork();
	if (kid == 0) {
		close(fds[0]);
		spawner(h.sock, fds[1]);
	}
	close(fds[1]);
	/* Read acknowledgements until 2000 have come, then kill gorod while
	 * the client still pipelines more. */
	while (n < 2000 && harness_read_full(fds[0], &id, sizeof id, WAIT_MS) == 0) {
		if (n == cap && !(ids = realloc(ids, (cap = cap ? cap * 2 : 4096) * sizeof *ids)))
			bail_out("no memory");
		ids[n++] = id;
	}
	ok(n == 2000, "load: 2000 spawns acknowledged while more are in flight");
	crash(&h);
	while (harness_read_full(fds[0], &id, sizeof id, WAIT_MS) == 0) {
		if (n == cap && !(ids = realloc(ids, (cap = cap * 2) * sizeof *ids)))
			bail_out("no memory");
		ids[n++] = id;
	}
	close(fds[0]);
	harness_wait_pid(kid, WAIT_MS, NULL);
	diag("load: %zu spawns acknowledged before gorod died", n);

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "load: connect to the new gorod");
	for (size_t i = 0; i < n; i++) {
		struct goro_outcome out;
		int r = goro_wait(c, ids[i], 0, &out);
		if (r == 0 && (out.state == GORO_TASK_EXITED || out.state == GORO_TASK_LOST))
			waited++;
		else if (bad++ < 5)
			diag("task %llu: %s", (unsigned long long)ids[i], goro_strerror(r));
		if (r == 0)
			goro_outcome_clear(&out);
		if (ids[i] > max)
			max = ids[i];
	}
	is(waited, (int)n, "load: every acknowledged spawn has a record after the crash "
	   "(exited or lost): %d of %zu", waited, n);
	id = spawn_argv(c, (const char *const[]){ "true", NULL });
	ok(id > max, "load: the next id, %llu, is above every acknowledged one (%llu)",
	   (unsigned long long)id, (unsigned long long)max);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "load: gorod stops cleanly");
	harness_cleanup(&h);
	free(ids);
}

static long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_torn(void)
{
	struct harness h;
	goro_client *c = NULL;
	struct goro_outcome out;
	char bad[160];
	uint64_t a;
	int fd;

	start(&h, NULL);
	is(goro_connect(h.sock, &c), 0, "connect");
	ok((a = spawn_argv(c, (const char *const[]){ "true", NULL })) > 0, "torn: spawn true");
	is(goro_wait(c, a, WAIT_MS, &out), 0, "torn: wait");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "torn: gorod stops cleanly");
	harness_cleanup(&h);

	/* Half a record: a length that promises more than follows. */
	fd = open(journal, O_WRONLY | O_APPEND);
	ok(fd >= 0 && write(fd, "\x40\x00\x00\x00\x12\x34\x56\x78\x82\xa1t", 11) == 11,
	   "torn: half a record appended to the journal");
	if (fd >= 0)
		close(fd);
	snprintf(bad, sizeof bad, "%s.bad", journal);
	unlink(bad);
	start(&h, NULL);
	ok(log_says(&h, "does not check out"), "torn: gorod says it dropped the torn record");
	ok(file_size(bad) > 0, "and keeps the file as it was in tasks.journal.bad");
	is(goro_connect(h.sock, &c), 0, "connect");
	is(goro_wait(c, a, WAIT_MS, &out), 0, "torn: the task before it is still there");
	ok(out.state == GORO_TASK_EXITED, "exited");
	goro_outcome_clear(&out);
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "torn: gorod stops cleanly");
	harness_cleanup(&h);
	unlink(bad);
}

static void test_compact(void)
{
	struct harness h;
	goro_client *c = NULL;
	const char *keep[] = { "--keep-tasks", "5", NULL };
	const char *big[] = { "head", "-c", "1048576", "/dev/zero", NULL };
	long peak = 0, size;
	uint64_t last = 0;

	start(&h, keep);
	size = file_size(journal);
	ok(size > 0 && size < 64 * 1024, "compact: at the start the journal holds at most "
	   "5 tasks (%ld bytes)", size);
	is(goro_connect(h.sock, &c), 0, "connect");
	long low_after_peak = -1;
	for (int i = 0; i < 24; i++) {
		struct goro_outcome out;
		uint64_t id = spawn_argv(c, big);
		if (!id || goro_wait(c, id, WAIT_MS, &out) < 0)
			break;
		goro_outcome_clear(&out);
		last = id;
		size = file_size(journal);
		if (size > peak)
			peak = size, low_after_peak = -1;
		else if (low_after_peak < 0 || size < low_after_peak)
			low_after_peak = size;
	}
	/* It is rewritten once past 16 MiB: seen between two tasks, the file
	 * is at most that big, and a good deal smaller right after. */
	ok(last > 0 && peak > 8L << 20, "compact: 24 tasks with 1 MiB of output each: the "
	   "journal grew to %ld bytes", peak);
	ok(low_after_peak >= 0 && low_after_peak < peak - (4L << 20),
	   "and was rewritten while gorod ran, without the tasks no longer kept: down to "
	   "%ld bytes", low_after_peak);
	char buf[64];
	ok(harness_logs(c, last, GORO_STDOUT, buf, 1, NULL, WAIT_MS) >= 0,
	   "the last task's output is still there");
	goro_close(c);
	is(harness_stop(&h, WAIT_MS), 0, "compact: gorod stops cleanly");
	harness_cleanup(&h);
}

static const struct harness_part parts[] = {
	{ "restart", test_restart }, { "lost", test_lost },	  { "load", test_load },
	{ "torn", test_torn },	     { "compact", test_compact },
};

int main(int argc, char **argv)
{
	if (!mkdtemp(state))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(journal, sizeof journal, "%s/tasks.journal", state);
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (harness_wanted(parts[i].name, argc, argv))
			parts[i].fn();
	unlink(journal);
	char bad[160];
	snprintf(bad, sizeof bad, "%s.bad", journal);
	unlink(bad);
	rmdir(state);
	return done_testing();
}
