/* test_activation.c: gorod started by socket activation.
 *
 * systemd-socket-activate (from systemd) binds the socket, waits, and on
 * the first client's connection execs gorod with the socket passed as
 * LISTEN_FDS, as a gorod.socket unit would. The test checks that this
 * first connection is served, that gorod reports the socket it was given,
 * that it stops cleanly, and that it leaves the socket file in place (it
 * is systemd's, for the next start). Skipped where the tool is missing. */
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

#define WAIT_MS 20000

static const char *tool(void)
{
	static const char *const where[] = { "/usr/bin/systemd-socket-activate",
					     "/bin/systemd-socket-activate", NULL };

	for (int i = 0; where[i]; i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

int main(void)
{
	const char *activate = tool(), *gorod = getenv("GOROD");
	char dir[] = "/tmp/gorod-activation-XXXXXX", sock[128], log[160];
	struct goro_hello hi;
	goro_client *c = NULL;
	char *json = NULL;
	struct stat st;
	int status = 0;
	pid_t pid;

	if (!activate)
		skip_all("systemd-socket-activate is not installed (package systemd)");
	if (!gorod)
		bail_out("$GOROD must name the gorod to test");
	if (!mkdtemp(dir))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(sock, sizeof sock, "%s/gorod.sock", dir);
	snprintf(log, sizeof log, "%s/log", dir);

	pid = fork();
	if (pid == 0) {
		const char *argv[40] = { activate, "-l", sock };
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("NOTIFY_SOCKET");
		harness_gorod_argv(argv + 3, 37, gorod); /* $GOROD_WRAPPER too */
		execv(activate, (char *const *)argv);
		_exit(127);
	}
	ok(pid > 0, "systemd-socket-activate started");

	/* It binds the socket before anything else: wait for the file. */
	int64_t end = harness_now_ms() + WAIT_MS;
	while (stat(sock, &st) < 0 && harness_now_ms() < end)
		poll(NULL, 0, 5);
	ok(stat(sock, &st) == 0 && S_ISSOCK(st.st_mode), "the socket exists before gorod runs");

	/* The first connection starts gorod, and is served. */
	is(goro_connect(sock, &c), 0, "the first client connects");
	is(goro_hello(c, "activation", &hi), 0, "and is answered: gorod started for it");
	ok(hi.maxprocs >= 1, "hello reports GOMAXPROCS (%d)", hi.maxprocs);
	is(goro_stats_json(c, &json), 0, "stats");
	long long gpid = 0;
	ok(json && harness_json_int(json, "pid", &gpid) == 0 && gpid == pid,
	   "gorod runs in the process systemd-socket-activate started (pid %lld)", gpid);
	free(json);
	goro_close(c);

	is(kill(pid, SIGTERM), 0, "SIGTERM");
	is(harness_wait_pid(pid, harness_timeout(WAIT_MS), &status), 0, "gorod stops");
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "with exit 0 (status 0x%x)", status);
	ok(stat(sock, &st) == 0, "the socket file stays: it is systemd's, for the next start");

	FILE *f = fopen(log, "re");
	char line[512];
	bool said = false;
	while (f && fgets(line, sizeof line, f))
		said |= strstr(line, "ready on") && strstr(line, sock);
	if (f)
		fclose(f);
	ok(said, "gorod's log names the socket it was given");

	unlink(sock);
	unlink(log);
	rmdir(dir);
	return done_testing();
}
