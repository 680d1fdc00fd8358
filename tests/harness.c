/* harness.c: starts, watches and stops a real gorod for the end-to-end
 * tests (harness.h).
 *
 * Waiting on a child: a pidfd (pidfd_open, Linux 5.3) becomes readable
 * when the process exits, so poll() waits for "READY=1 or died" and for
 * "exited or deadline" without a sleep. A kernel without pidfds gets the
 * same waits in slices of 10 ms with waitpid(WNOHANG).
 *
 * $GOROD_WRAPPER (e.g. "valgrind --error-exitcode=99 ..."; scripts/test
 * memcheck) runs gorod under a tool: its words (split on white space) go
 * before gorod's argv, so a tool that finds something fails harness_stop's
 * exit status check. $GORO_TIMEOUT_SCALE (a number, default 1) then stretches
 * harness_start's wait for READY=1 and harness_stop's for the exit. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

int64_t harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, at least 0. */
static int ms_left(int64_t deadline)
{
	int64_t left = deadline - harness_now_ms();

	return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* A pidfd for child pid, or -1 when the kernel has none. */
static int pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

int harness_wait_pid(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int pfd = pidfd_of(pid), st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			if (pfd >= 0)
				close(pfd);
			if (status)
				*status = st;
			return 0;
		}
		if (r < 0 && errno != EINTR) {
			int e = errno;

			if (pfd >= 0)
				close(pfd);
			return -e;
		}
		if (ms_left(deadline) == 0) {
			if (pfd >= 0)
				close(pfd);
			return -ETIMEDOUT;
		}
		if (pfd >= 0) {
			struct pollfd p = { .fd = pfd, .events = POLLIN };

			poll(&p, 1, ms_left(deadline));
		} else {
			poll(NULL, 0, ms_left(deadline) < 10 ? ms_left(deadline) : 10);
		}
	}
}

void harness_kill_all(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++) {
		if (pids[i] <= 0)
			continue;
		kill(pids[i], SIGKILL);
		while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	}
}

void harness_signal_all(const pid_t *pids, int n, int sig)
{
	for (int i = 0; i < n; i++)
		if (pids[i] > 0)
			kill(pids[i], sig);
}

int harness_reap_all(pid_t *pids, int n, int timeout_ms, const char *what)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int bad = 0;

	for (int i = 0; i < n; i++) {
		int st = 0, r = harness_wait_pid(pids[i], ms_left(deadline), &st);

		if (r == -ETIMEDOUT) {
			diag("%s: child %d (pid %d) still runs after %d ms: killing the rest",
			     what, i, (int)pids[i], timeout_ms);
			harness_kill_all(pids + i, n - i);
			for (int j = i; j < n; j++)
				pids[j] = 0;
			return bad + n - i;
		}
		if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (bad++ == 0)
				diag("%s: child %d exited with wait status %#x (%s)", what, i,
				     r < 0 ? 0 : st, r < 0 ? strerror(-r) : "reaped");
		}
		pids[i] = 0;
	}
	return bad;
}

int harness_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	size_t off = 0;

	while (off < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r = poll(&p, 1, ms_left(deadline));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		off += (size_t)n;
	}
	return 0;
}

int harness_write_full(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

/* ---- gorod ------------------------------------------------------------------- */

int harness_timeout(int timeout_ms)
{
	const char *env = getenv("GORO_TIMEOUT_SCALE");
	double f = env ? strtod(env, NULL) : 1.0, ms = timeout_ms * (f > 1 ? f : 1);

	return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int harness_gorod_argv(const char **argv, int max, const char *bin)
{
	static char words[512];
	const char *w = getenv("GOROD_WRAPPER");
	int n = 0;

	if (w && *w) {
		snprintf(words, sizeof words, "%s", w);
		for (char *save, *t = strtok_r(words, " \t\n", &save); t && n < max - 2;
		     t = strtok_r(NULL, " \t\n", &save))
			argv[n++] = t;
	}
	argv[n++] = bin;
	argv[n] = NULL;
	return n;
}

/* Removes dir and the files in it (gorod makes no subdirectories). */
static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char p[512];

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* In the child: gorod with NOTIFY_SOCKET=notify, output to the log, a
 * clean signal state, as user uid (unless it is -1). Does not return. */
static void exec_gorod(const struct harness *h, const char *bin, const char *notify,
		       const char *const *args, uid_t uid, gid_t gid, int listen_fd)
{
	const char *argv[64];
	int n = harness_gorod_argv(argv, 32, bin), fd;
	sigset_t none;

	argv[n++] = "--socket";
	argv[n++] = h->sock;
	for (; args && *args && n < 63; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		if (fd > STDIN_FILENO)
			close(fd);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setenv("NOTIFY_SOCKET", notify, 1);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	if (listen_fd >= 0) {
		char pid[32];
		if (listen_fd != 3 && (dup2(listen_fd, 3) < 0 || close(listen_fd) < 0))
			_exit(126);
		fcntl(3, F_SETFD, 0);
		snprintf(pid, sizeof pid, "%d", (int)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", pid, 1);
		setenv("LISTEN_FDNAMES", "gorod-listen", 1);
	}
	if (uid != (uid_t)-1 &&
	    (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)) {
		fprintf(stderr, "harness: cannot become uid %d: %s\n", (int)uid, strerror(errno));
		_exit(126);
	}
	execvp(argv[0], (char *const *)argv);
	fprintf(stderr, "harness: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Whether a notify datagram says line (one of its lines, whole). */
static bool says(const char *msg, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = msg; (p = strstr(p, line)); p += n)
		if ((p == msg || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/* One datagram from the notify socket into msg (NUL-terminated); an fd
 * that comes with FDSTORE=1 is kept in h->stored, as systemd's fd store
 * would keep it. Returns its length, or -1. */
static ssize_t notify_recv(struct harness *h, int nfd, char *msg, size_t size)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} ctl;
	struct iovec iov = { msg, size - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof ctl.buf };
	ssize_t n = recvmsg(nfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return -1;
	msg[n] = '\0';
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		int nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fds[4];
		memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
		for (int i = 0; i < nfds; i++) {
			if (says(msg, "FDSTORE=1") && h->stored < 0 && i == 0)
				h->stored = fds[i];
			else
				close(fds[i]);
		}
	}
	return n;
}

ssize_t harness_notify_recv(struct harness *h, char *msg, size_t size, int timeout_ms)
{
	struct pollfd p = { .fd = h->notify, .events = POLLIN };

	if (h->notify < 0 || poll(&p, 1, timeout_ms) <= 0)
		return -1;
	return notify_recv(h, h->notify, msg, size);
}

/* Waits at most timeout_ms for READY=1 on nfd while gorod lives. Returns
 * 0, -ETIMEDOUT or -ECHILD (it exited: reaped into h->status). */
static int wait_ready(struct harness *h, int nfd, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + harness_timeout(timeout_ms);
	int pfd = pidfd_of(h->pid);
	int r = -ETIMEDOUT;

	for (;;) {
		struct pollfd p[2] = { { .fd = nfd, .events = POLLIN },
				       { .fd = pfd, .events = POLLIN } };
		int slice = pfd >= 0 ? ms_left(deadline) : 10;

		if (poll(p, pfd >= 0 ? 2 : 1, slice) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			char msg[sizeof h->ready];

			if (notify_recv(h, nfd, msg, sizeof msg) > 0 && says(msg, "READY=1")) {
				snprintf(h->ready, sizeof h->ready, "%s", msg);
				r = 0;
				break;
			}
		}
		if (waitpid(h->pid, &h->status, WNOHANG) == h->pid) {
			h->pid = 0;
			r = -ECHILD;
			break;
		}
		if (ms_left(deadline) == 0)
			break;
	}
	if (pfd >= 0)
		close(pfd);
	return r;
}

static int start(struct harness *h, const char *const *args, int timeout_ms, uid_t uid,
		 gid_t gid, bool keep_notify);

int harness_start(struct harness *h, const char *const *args, int timeout_ms)
{
	return start(h, args, timeout_ms, (uid_t)-1, (gid_t)-1, false);
}

int harness_start_as(struct harness *h, const char *const *args, int timeout_ms,
		     uid_t uid, gid_t gid)
{
	return start(h, args, timeout_ms, uid, gid, false);
}

int harness_start_notify(struct harness *h, const char *const *args, int timeout_ms)
{
	return start(h, args, timeout_ms, (uid_t)-1, (gid_t)-1, true);
}

static int start(struct harness *h, const char *const *args, int timeout_ms, uid_t uid,
		 gid_t gid, bool keep_notify)
{
	const char *bin = getenv("GOROD"), *tmp = getenv("TMPDIR");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int nfd = -1, r;

	memset(h, 0, sizeof *h);
	h->notify = h->stored = -1;
	if (!bin || !*bin) {
		diag("harness: $GOROD must name the gorod to test");
		return -ENOENT;
	}
	/* The socket paths in it must fit a sockaddr_un (108 bytes). */
	if (!tmp || !*tmp || strlen(tmp) > 60)
		tmp = "/tmp";
	snprintf(h->dir, sizeof h->dir, "%s/gorod-test-XXXXXX", tmp);
	if (!mkdtemp(h->dir)) {
		r = -errno;
		diag("harness: mkdtemp %s: %s", h->dir, strerror(errno));
		h->dir[0] = '\0';
		return r;
	}
	if (snprintf(h->sock, sizeof h->sock, "%s/gorod.sock", h->dir) >= (int)sizeof h->sock ||
	    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", h->dir) >=
		    (int)sizeof sa.sun_path) {
		r = -ENAMETOOLONG;
		diag("harness: %s is too long a directory for a socket", h->dir);
		goto fail;
	}
	snprintf(h->log, sizeof h->log, "%s/log", h->dir);
	nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (nfd < 0 || bind(nfd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		r = -errno;
		diag("harness: the notify socket %s: %s", sa.sun_path, strerror(errno));
		goto fail;
	}
	if (uid != (uid_t)-1 &&
	    (chown(h->dir, uid, gid) < 0 || chown(sa.sun_path, uid, gid) < 0)) {
		r = -errno;
		diag("harness: chown %s to uid %d: %s", h->dir, (int)uid, strerror(errno));
		goto fail;
	}
	fflush(NULL);
	h->pid = fork();
	if (h->pid < 0) {
		r = -errno;
		h->pid = 0;
		diag("harness: fork: %s", strerror(errno));
		goto fail;
	}
	if (h->pid == 0)
		exec_gorod(h, bin, sa.sun_path, args, uid, gid, -1);
	r = wait_ready(h, nfd, timeout_ms);
	if (r == 0 && keep_notify) {
		h->notify = nfd;
		return 0;
	}
	close(nfd);
	nfd = -1;
	if (r == 0)
		return 0;
	diag("harness: gorod %s", r == -ECHILD ? "exited before it was ready"
					       : "did not say READY=1 in time");
fail:
	if (nfd >= 0)
		close(nfd);
	harness_dump_log(h, 40);
	harness_cleanup(h);
	return r;
}

int harness_restart(struct harness *h, const char *const *args, int timeout_ms)
{
	const char *bin = getenv("GOROD");
	char notify[300];
	int r;

	if (!bin || h->pid > 0 || h->notify < 0) {
		diag("harness: restart wants a gorod started with harness_start_notify, stopped");
		return -EINVAL;
	}
	snprintf(notify, sizeof notify, "%s/notify", h->dir);
	fflush(NULL);
	h->pid = fork();
	if (h->pid < 0) {
		r = -errno;
		h->pid = 0;
		return r;
	}
	if (h->pid == 0)
		exec_gorod(h, bin, notify, args, (uid_t)-1, (gid_t)-1, h->stored);
	r = wait_ready(h, h->notify, timeout_ms);
	if (r < 0) {
		diag("harness: the restarted gorod %s", r == -ECHILD ? "exited before it was ready"
								     : "did not say READY=1 in time");
		harness_dump_log(h, 40);
	}
	return r;
}

int harness_stop(struct harness *h, int timeout_ms)
{
	int r;

	if (h->pid <= 0)
		return -ECHILD;
	kill(h->pid, SIGTERM);
	timeout_ms = harness_timeout(timeout_ms);
	r = harness_wait_pid(h->pid, timeout_ms, &h->status);
	if (r == -ETIMEDOUT) {
		diag("harness: gorod did not exit %d ms after SIGTERM; killing it", timeout_ms);
		kill(h->pid, SIGKILL);
		harness_wait_pid(h->pid, 10000, &h->status);
		h->pid = 0;
		harness_dump_log(h, 60);
		return -ETIMEDOUT;
	}
	if (r < 0)
		return r;
	h->pid = 0;
	r = WIFEXITED(h->status) ? WEXITSTATUS(h->status) : 128 + WTERMSIG(h->status);
	if (r != 0)
		harness_dump_log(h, 60);
	return r;
}

bool harness_alive(struct harness *h)
{
	if (h->pid <= 0)
		return false;
	if (waitpid(h->pid, &h->status, WNOHANG) != h->pid)
		return true;
	h->pid = 0;
	diag("harness: gorod exited (wait status %#x)", h->status);
	harness_dump_log(h, 120);
	return false;
}

long harness_rss_kb(const struct harness *h)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)h->pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

void harness_dump_log(const struct harness *h, int lines)
{
	char *text = NULL, *start;
	size_t size = 0;
	FILE *f = h->log[0] ? fopen(h->log, "r") : NULL;
	FILE *m;
	int seen = 0;

	if (!f)
		return;
	m = open_memstream(&text, &size);
	if (m) {
		char buf[4096];
		size_t n;

		while ((n = fread(buf, 1, sizeof buf, f)) > 0)
			fwrite(buf, 1, n, m);
		fclose(m);
	}
	fclose(f);
	if (!text)
		return;
	/* Back up to the start of the last `lines` lines. */
	start = text + size;
	if (start > text && start[-1] == '\n')
		start--;
	while (start > text && !(start[-1] == '\n' && ++seen == lines))
		start--;
	diag("---- the end of gorod's log (%s) ----", h->log);
	for (char *line = strtok(start, "\n"); line; line = strtok(NULL, "\n"))
		diag("%s", line);
	free(text);
}

void harness_cleanup(struct harness *h)
{
	if (h->pid > 0) {
		kill(h->pid, SIGKILL);
		while (waitpid(h->pid, &h->status, 0) < 0 && errno == EINTR)
			;
		h->pid = 0;
	}
	/* (0..2 are the test's own stdio, never one of these: a harness
	 * that never started has them 0.) */
	if (h->notify > STDERR_FILENO)
		close(h->notify);
	if (h->stored > STDERR_FILENO)
		close(h->stored);
	h->notify = h->stored = -1;
	if (h->dir[0])
		remove_dir(h->dir);
	h->dir[0] = '\0';
}

void harness_module_dir(char *dir, size_t size, const char *target, const char *name)
{
	char link[512];

	snprintf(dir, size, "/tmp/gorod-modules-XXXXXX");
	if (!mkdtemp(dir))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(link, sizeof link, "%s/%s", dir, name);
	if (symlink(target, link) < 0)
		bail_out("symlink %s: %s", link, strerror(errno));
}

void harness_module_dir_remove(const char *dir, const char *name)
{
	char link[512];

	snprintf(link, sizeof link, "%s/%s", dir, name);
	unlink(link);
	rmdir(dir);
}

/* ---- gorod's state ------------------------------------------------------------- */

int harness_process_until(goro_client *c, const bool *flag, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (!*flag) {
		struct pollfd p = { .fd = goro_fd(c), .events = POLLIN };
		int r;

		if (goro_want_write(c)) {
			r = goro_flush(c);
			if (r < 0 && r != -EAGAIN)
				return r;
			if (goro_want_write(c))
				p.events |= POLLOUT;
		}
		if (ms_left(deadline) == 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, ms_left(deadline));
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0)
			continue;
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			r = goro_process(c);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int harness_json_int(const char *json, const char *key, long long *v)
{
	char pat[128];
	const char *p;
	char *end;
	long long n;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	n = strtoll(p, &end, 10);
	if (end == p)
		return -ENOENT;
	*v = n;
	return 0;
}

int harness_stat(goro_client *c, const char *key, long long *v)
{
	const char *dot = strchr(key, '.'), *in;
	char *json, section[64];
	int r = goro_stats_json(c, &json);

	if (r < 0)
		return r;
	in = json;
	if (dot) { /* "tasks.live": the key inside the object "tasks" */
		snprintf(section, sizeof section, "\"%.*s\":{", (int)(dot - key), key);
		in = strstr(json, section);
		key = dot + 1;
	}
	r = in ? harness_json_int(in, key, v) : -ENOENT;
	free(json);
	return r;
}

int harness_wait_stat(goro_client *c, const char *key, long long want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	long long v = -1;
	int pause = 1, r;

	for (;;) {
		r = harness_stat(c, key, &v);
		if (r < 0) {
			diag("harness: stats: %s", goro_strerror(r));
			return r;
		}
		if (v == want)
			return 0;
		if (ms_left(deadline) == 0)
			break;
		poll(NULL, 0, pause < ms_left(deadline) ? pause : ms_left(deadline));
		if (pause < 20)
			pause *= 2;
	}
	diag("harness: stats %s stayed %lld, not %lld, for %d ms", key, v, want, timeout_ms);
	return -ETIMEDOUT;
}

int harness_wait_waiters(goro_client *c, const char *name, int want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	struct goro_wg_status st = { 0 };
	int r;

	while (harness_now_ms() < deadline) {
		r = goro_wg_status(c, name, &st);
		if (r < 0)
			return r;
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
		if (st.waiters == want)
			return 0;
		usleep(2000);
	}
	diag("%s: %lld waiters, not %d", name, (long long)st.waiters, want);
	return -ETIMEDOUT;
}

bool harness_wanted(const char *name, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return argc < 2;
}

/* ---- tasks --------------------------------------------------------------------------- */

ssize_t harness_logs(goro_client *c, uint64_t id, enum goro_stream stream, char *buf,
		     size_t size, uint64_t *cut, int timeout_ms)
{
	uint64_t from = 0, skipped = 0;
	size_t len = 0;
	bool eof = false;

	if (size)
		buf[0] = '\0';
	while (!eof) {
		struct goro_logs l = { 0 };
		int r = goro_logs_read(c, id, stream, from, timeout_ms, &l);

		if (r < 0) {
			diag("harness: logs.read %llu: %s: %s", (unsigned long long)id,
			     goro_err_name(r), goro_last_error(c));
			return r;
		}
		skipped += l.cut;
		for (size_t j = 0; j < l.len && len + 1 < size; j++)
			buf[len++] = ((char *)l.data)[j];
		if (size)
			buf[len] = '\0';
		free(l.data);
		if (l.len == 0 && !l.eof && l.next == from) {
			diag("harness: logs.read %llu: nothing new in %d ms", (unsigned long long)id,
			     timeout_ms);
			return -ETIMEDOUT;
		}
		from = l.next;
		eof = l.eof;
	}
	if (cut)
		*cut = skipped;
	return (ssize_t)len;
}

int harness_ps_entry(goro_client *c, uint64_t id, char *buf, size_t size)
{
	char *json = NULL;
	int r = goro_ps_json(c, true, id - 1, &json);

	if (r < 0) {
		diag("harness: ps: %s: %s", goro_err_name(r), goro_last_error(c));
		return r;
	}
	r = harness_json_object(json, id, buf, size);
	if (r < 0)
		diag("harness: task %llu is not in ps: %.2000s", (unsigned long long)id, json);
	free(json);
	return r;
}

bool harness_ps_has(goro_client *c, uint64_t id, const char *a, const char *b)
{
	char entry[4096];

	if (harness_ps_entry(c, id, entry, sizeof entry) < 0)
		return false;
	if (strstr(entry, a) && (!b || strstr(entry, b)))
		return true;
	diag("ps: %s", entry);
	return false;
}

void harness_check_nothing_left(goro_client *c, long long goroutines, int timeout_ms)
{
	char *json = NULL;
	long long v = -1;

	is(goro_ps_json(c, false, 0, &json), 0, "the end: ps");
	if (json && !is_str(json, "[]", "the end: no task is queued or running"))
		diag("ps: %.2000s", json);
	free(json);
	is(harness_wait_stat(c, "tasks.live", 0, timeout_ms), 0, "the end: stats: no task lives");
	is(harness_wait_stat(c, "sessions_count", 1, timeout_ms), 0,
	   "the end: every other session has ended");
	is(harness_wait_stat(c, "goroutines.live", goroutines, timeout_ms), 0,
	   "the end: gorod is back to its %lld goroutines", goroutines);
	is(harness_stat(c, "primitives.mutexes", &v), 0, "the end: stats");
	is(v, 0, "the end: no mutex is held or remembered");
	is(harness_stat(c, "primitives.semaphores", &v), 0, "the end: stats");
	is(v, 0, "the end: no semaphore either");
}

/* ---- running a command ------------------------------------------------------------ */

/* In the child of harness_run(): the pipes onto 0, 1, 2 (/dev/null for
 * a missing stdin or stdout, the test's stderr for a missing stderr),
 * then argv. */
static _Noreturn void exec_cmd(const char *const *argv, int in, int out, int err)
{
	int null = open("/dev/null", O_RDWR);

	dup2(in >= 0 ? in : null, STDIN_FILENO);
	dup2(out >= 0 ? out : null, STDOUT_FILENO); /* never into the TAP stream */
	if (err >= 0)
		dup2(err, STDERR_FILENO);
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

/* Appends what fd has to buf[*len..size-1) (the rest is read and dropped).
 * Returns false once fd is at its end (or broken). */
static bool drain(int fd, char *buf, size_t size, size_t *len)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof tmp);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n && *len + 1 < size; i++)
		buf[(*len)++] = tmp[i];
	return true;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int harness_run(const char *const *argv, const void *in, size_t inlen, char *out,
		size_t size, char *err, size_t esize, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
	size_t olen = 0, elen = 0, inoff = 0;
	int st = 0, r;
	pid_t pid;

	if ((in && pipe2(pin, O_CLOEXEC) < 0) || (out && pipe2(pout, O_CLOEXEC) < 0) ||
	    (err && pipe2(perr, O_CLOEXEC) < 0)) {
		r = -errno;
		goto out;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0)
		exec_cmd(argv, pin[0], pout[1], perr[1]);
	close_fd(&pin[0]);
	close_fd(&pout[1]);
	close_fd(&perr[1]);
	if (pin[1] >= 0) {
		fcntl(pin[1], F_SETFL, O_NONBLOCK);
		if (inlen == 0)
			close_fd(&pin[1]);
	}
	/* Feed stdin and read stdout and stderr until both are at their end. */
	while (pin[1] >= 0 || pout[0] >= 0 || perr[0] >= 0) {
		struct pollfd p[3] = { { .fd = pin[1], .events = POLLOUT },
				       { .fd = pout[0], .events = POLLIN },
				       { .fd = perr[0], .events = POLLIN } };
		int n = poll(p, 3, ms_left(deadline));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (p[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
			ssize_t w = write(pin[1], (const char *)in + inoff, inlen - inoff);

			if (w > 0)
				inoff += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || inoff == inlen)
				close_fd(&pin[1]);
		}
		if ((p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    !drain(pout[0], out, size, &olen))
			close_fd(&pout[0]);
		if ((p[2].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    !drain(perr[0], err, esize, &elen))
			close_fd(&perr[0]);
	}
	r = harness_wait_pid(pid, ms_left(deadline), &st);
	if (r == -ETIMEDOUT) {
		harness_kill_all(&pid, 1);
		goto out;
	}
	if (r == 0)
		r = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
out:
	if (out && size)
		out[olen] = '\0';
	if (err && esize)
		err[elen] = '\0';
	close_fd(&pin[0]);
	close_fd(&pin[1]);
	close_fd(&pout[0]);
	close_fd(&pout[1]);
	close_fd(&perr[0]);
	close_fd(&perr[1]);
	return r;
}

/* argv (64 entries) for $GOROCTL --socket sock, then verb unless it is
 * NULL, then the words of ap up to its NULL (at most 63 entries in all),
 * NULL-terminated. Returns false when $GOROCTL is not set. */
static bool ctl_argv(const char **argv, const char *sock, const char *verb, va_list ap)
{
	const char *a;
	int n = 3;

	argv[0] = getenv("GOROCTL");
	argv[1] = "--socket";
	argv[2] = sock;
	if (!argv[0] || !*argv[0])
		return false;
	if (verb)
		argv[n++] = verb;
	while ((a = va_arg(ap, const char *)) && n < 63)
		argv[n++] = a;
	argv[n] = NULL;
	return true;
}

int harness_ctl(const char *sock, const void *in, size_t inlen, char *out, size_t size,
		char *err, size_t esize, int timeout_ms, ...)
{
	const char *argv[64];
	va_list ap;
	bool found;

	va_start(ap, timeout_ms);
	found = ctl_argv(argv, sock, NULL, ap);
	va_end(ap);
	if (!found)
		return -ENOENT;
	return harness_run(argv, in, inlen, out, size, err, esize, timeout_ms);
}

uint64_t harness_spawned_id(const char *out)
{
	char *end;
	unsigned long long v = strtoull(out, &end, 10);

	return end != out && (*end == '\n' || *end == '\0') ? v : 0;
}

uint64_t harness_ctl_spawn(const char *sock, char *err, size_t esize, int timeout_ms, ...)
{
	const char *argv[64];
	char out[256] = "";
	uint64_t id = 0;
	va_list ap;
	bool found;
	int r = -ENOENT;

	va_start(ap, timeout_ms);
	found = ctl_argv(argv, sock, "spawn", ap);
	va_end(ap);
	if (found)
		r = harness_run(argv, NULL, 0, out, sizeof out, err, esize, timeout_ms);
	if (r == 0)
		id = harness_spawned_id(out);
	if (!id)
		diag("goroctl spawn: exit %d, out '%s', err '%s'", r, out, err ? err : "");
	return id;
}

/* ---- reading JSON text ------------------------------------------------------------- */

int harness_json_str(const char *json, const char *key, char *buf, size_t size)
{
	char pat[128];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof pat, "\"%s\":\"", key);
	p = strstr(json, pat);
	if (!p || size == 0)
		return -ENOENT;
	for (p += strlen(pat); *p && *p != '"'; p++) {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < size)
			buf[n++] = *p;
	}
	buf[n] = '\0';
	return *p == '"' ? 0 : -ENOENT;
}

const char *harness_json_end(const char *p)
{
	int depth = 0;
	bool in_str = false;

	for (; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
		} else if (*p == '"') {
			in_str = true;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

/* Whether p (at a '"' outside strings) is the key "id" with value id. */
static bool is_id_key(const char *p, unsigned long long id)
{
	char *end;

	if (strncmp(p, "\"id\":", 5) != 0)
		return false;
	errno = 0;
	if (strtoull(p + 5, &end, 10) != id || errno || end == p + 5)
		return false;
	return *end == ',' || *end == '}';
}

int harness_json_object(const char *json, unsigned long long id, char *buf, size_t size)
{
	const char *open[64];
	int depth = 0;
	bool in_str = false;

	for (const char *p = json; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
		} else if (*p == '"') {
			if (depth > 0 && open[depth - 1][0] == '{' && is_id_key(p, id)) {
				const char *end = harness_json_end(open[depth - 1]);

				if (!end || size == 0)
					return -ENOENT;
				snprintf(buf, size, "%.*s", (int)(end - open[depth - 1]),
					 open[depth - 1]);
				return 0;
			}
			in_str = true;
		} else if (*p == '{' || *p == '[') {
			if (depth == 64)
				return -ENOENT;
			open[depth++] = p;
		} else if ((*p == '}' || *p == ']') && depth > 0) {
			depth--;
		}
	}
	return -ENOENT;
}

void harness_run_parts(struct harness *h, goro_client **c, const char *const *args,
		       const char *what, const struct harness_part *parts, size_t nparts,
		       int argc, char **argv, int wait_ms)
{
	long long goroutines = 0;

	if (harness_start(h, args, 30000) < 0)
		bail_out("gorod (%s) did not start", what);
	ok(1, "gorod (%s) started and said READY=1 (%s)", what, h->sock);
	if (goro_connect(h->sock, c) < 0 || harness_stat(*c, "goroutines.live", &goroutines) < 0)
		bail_out("connect to %s", h->sock);
	for (size_t i = 0; i < nparts; i++) {
		if (!harness_wanted(parts[i].name, argc, argv))
			continue;
		parts[i].fn();
		if (!harness_alive(h))
			bail_out("gorod died during the part '%s'", parts[i].name);
	}
	harness_check_nothing_left(*c, goroutines, wait_ms);
	goro_close(*c);
	*c = NULL;
	is(harness_stop(h, 30000), 0, "gorod stops cleanly on SIGTERM (exit 0)");
}
