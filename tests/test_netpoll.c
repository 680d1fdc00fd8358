/* test_netpoll.c: waiting on file descriptors and child processes
 * (daemon/runtime/netpoll.c).
 *
 * Checks rt_wait_fd on non-blocking pipes and socketpairs: readable once
 * another goroutine writes, writable at once, a deadline gives -ETIMEDOUT,
 * rt_cancel gives -ECANCELED, and the fd (or a new one with the same number)
 * works again afterwards; a thousand goroutines parked on a socketpair each,
 * all released; that a parked goroutine holds no worker (GOMAXPROCS 1); and
 * child exit: rt_pidfd_open + rt_wait_pidfd on a child that waits on a pipe
 * (timeout and cancel while it runs, 0 once it exited, then waitpid without
 * blocking gives status 7). Registered fds: a peer's last bytes and its
 * end in one edge (shutdown, or a close with bytes unread), a writer parked
 * on a full socket; and deadlines racing
 * with readiness never report a timeout before the deadline (a stale
 * expiry of the timer heap claiming a later park would). Ends by checking
 * that no goroutine leaked. */
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "runtime.h"
#include "rt_test.h"
#include "tap.h"

#define MS (1000 * 1000LL)

extern char **environ;


/* ---- helpers ------------------------------------------------------------ */

/* A non-blocking socketpair (or pipe: fd[0] reads, fd[1] writes). */
static void make_pair(int fd[2], bool pipe)
{
	int rc = pipe ? pipe2(fd, O_NONBLOCK | O_CLOEXEC)
		      : socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				   0, fd);

	if (rc != 0)
		bail_out("%s: %m", pipe ? "pipe2" : "socketpair");
}

static void close_pair(int fd[2])
{
	close(fd[0]);
	close(fd[1]);
}

/* One goroutine waiting on one fd, then reading a byte if it is readable. */
struct fdwait {
	int fd;
	short events;
	int64_t deadline;
	int rc;
	char got;
	int64_t ended;
};

static void fd_waiter(void *arg)
{
	struct fdwait *w = arg;

	w->rc = rt_wait_fd(w->fd, w->events, w->deadline);
	w->ended = rt_now();
	if (w->rc > 0 && (w->rc & RT_READ) && read(w->fd, &w->got, 1) != 1)
		w->got = 0;
	rt_wg_done(&kids);
}

/* ---- readiness, timeout, cancel ----------------------------------------- */

/* A goroutine parks on the read side; main writes; it wakes readable. */
static void check_readable(int fd[2], const char *what)
{
	struct fdwait w = { fd[0], RT_READ, rt_deadline_ms(10000), 0, 0, 0 };
	struct rt_gref ref = go(fd_waiter, &w);

	ok(wait_parked(ref), "%s: a reader is parked on an empty fd", what);
	is(write(fd[1], "x", 1), 1, "%s: the other side writes", what);
	join_kids(what);
	ok(w.rc > 0 && (w.rc & RT_READ), "%s: rt_wait_fd reports RT_READ (%s)",
	   what, w.rc > 0 ? "ready" : ename(w.rc));
	is(w.got, 'x', "%s: and the byte is there", what);
}

static void check_timeout_cancel(int fd[2], const char *what)
{
	struct fdwait w = { fd[0], RT_READ, RT_FOREVER, 0, 0, 0 };
	struct rt_gref ref;
	int64_t d, t0 = rt_now();
	int rc;

	is_str(ename(rt_wait_fd(fd[0], RT_READ, 0)), "ETIMEDOUT",
	       "%s: deadline 0 on an empty fd", what);
	cmp_ok(rt_now() - t0, <, 1000 * MS, "%s: without blocking", what);
	d = rt_deadline_ms(20);
	rc = rt_wait_fd(fd[0], RT_READ, d);
	is_str(ename(rc), "ETIMEDOUT", "%s: a 20 ms deadline times out", what);
	cmp_ok(rt_now(), >=, d, "%s: not before the deadline", what);
	cmp_ok(rt_now() - d, <, 5000 * MS, "%s: within 5 s of it", what);

	ref = go(fd_waiter, &w);
	ok(wait_parked(ref), "%s: a reader without deadline is parked", what);
	is(rt_cancel(ref), 0, "%s: rt_cancel", what);
	join_kids(what);
	is_str(ename(w.rc), "ECANCELED", "%s: its rt_wait_fd returns -ECANCELED", what);
}

static void check_writable(int fd[2], const char *what)
{
	int64_t t0 = rt_now();
	int rc = rt_wait_fd(fd[1], RT_WRITE, rt_deadline_ms(10000));

	ok(rc > 0 && (rc & RT_WRITE), "%s: writable at once (%s)", what,
	   rc > 0 ? "ready" : ename(rc));
	cmp_ok(rt_now() - t0, <, 1000 * MS, "%s: without waiting", what);
	rc = rt_wait_fd(fd[1], RT_READ | RT_WRITE, rt_deadline_ms(10000));
	ok(rc > 0 && (rc & RT_WRITE) && !(rc & RT_READ),
	   "%s: RT_READ|RT_WRITE reports only what is ready", what);
}

static void test_fd_basics(bool pipe)
{
	const char *what = pipe ? "pipe" : "socketpair";
	int fd[2];

	make_pair(fd, pipe);
	check_writable(fd, what);
	check_readable(fd, what);
	check_timeout_cancel(fd, what);
	check_readable(fd, pipe ? "pipe after timeout and cancel"
				: "socketpair after timeout and cancel");
	close_pair(fd);
	/* the same fd numbers again: no stale registration may linger */
	make_pair(fd, pipe);
	check_readable(fd, pipe ? "new pipe on reused fds" : "new socketpair on reused fds");
	close_pair(fd);
}

/* ---- a thousand parked on their own socketpairs ------------------------- */

/* Raises RLIMIT_NOFILE as far as allowed; returns how many pairs fit. */
static long pairs_that_fit(long want)
{
	struct rlimit rl;
	long fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 100;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	fit = ((long)rl.rlim_cur - 128) / 2;
	return want < fit ? want : fit;
}

/* How many of goroutines [first, last] are parked. */
static long count_parked(uint64_t first, uint64_t last)
{
	struct rt_stats st;
	struct rt_ginfo *gi;
	size_t n, i, cap;
	long parked = 0;

	rt_stats_get(&st);
	cap = st.live + 64;
	gi = calloc(cap, sizeof(*gi));
	if (!gi)
		bail_out("out of memory");
	n = rt_goroutines(gi, cap);
	for (i = 0; i < n && i < cap; i++)
		parked += gi[i].id >= first && gi[i].id <= last &&
			  gi[i].state == RT_G_WAITING && gi[i].wait_reason;
	free(gi);
	return parked;
}

static void test_many_parked(void)
{
	long n = pairs_that_fit(1000), i, parked, bad = 0;
	struct fdwait *w = calloc(n, sizeof(*w));
	int (*fd)[2] = calloc(n, sizeof(*fd));
	uint64_t first = 0, last = 0;
	int64_t deadline = rt_deadline_ms(30000);

	if (!w || !fd)
		bail_out("out of memory");
	for (i = 0; i < n; i++) {
		make_pair(fd[i], false);
		w[i] = (struct fdwait){ fd[i][0], RT_READ, rt_deadline_ms(60000), 0, 0, 0 };
		last = go(fd_waiter, &w[i]).id;
		first = first ? first : last;
	}
	while ((parked = count_parked(first, last)) < n && rt_now() < deadline)
		rt_yield();
	is(parked, n, "%ld goroutines parked on their own socketpair", n);
	for (i = 0; i < n; i++)
		bad += write(fd[i][1], "y", 1) != 1;
	is(bad, 0, "released all");
	join_kids("many parked");
	for (i = 0; i < n; i++) {
		bad += !(w[i].rc > 0 && (w[i].rc & RT_READ) && w[i].got == 'y');
		close_pair(fd[i]);
	}
	is(bad, 0, "each woke readable and read its byte");
	free(w);
	free(fd);
}

/* ---- a parked goroutine holds no worker --------------------------------- */

static void writer(void *arg)
{
	int *wfd = arg;

	if (write(*wfd, "z", 1) != 1)
		diag("write: %m");
	rt_wg_done(&kids);
}

static void test_parked_holds_no_worker(void)
{
	int fd[2];
	struct fdwait w;
	struct rt_gref ref;

	rt_maxprocs(1);
	make_pair(fd, true);
	w = (struct fdwait){ fd[0], RT_READ, rt_deadline_ms(10000), 0, 0, 0 };
	ref = go(fd_waiter, &w);
	ok(wait_parked(ref), "maxprocs 1: a reader is parked on a pipe");
	go(writer, &fd[1]);
	join_kids("reader and writer");
	ok(w.rc > 0 && (w.rc & RT_READ) && w.got == 'z',
	   "maxprocs 1: another goroutine ran and released it");
	close_pair(fd);
	rt_maxprocs(2);
}

/* ---- child exit --------------------------------------------------------- */

/* Starts `sh -c 'read x; exit 7'` with stdin from a pipe; *release gets the
 * pipe's write end (write a line or close it to let the child exit). */
static pid_t spawn_child(int *release)
{
	char *argv[] = { "sh", "-c", "read x; exit 7", NULL };
	posix_spawn_file_actions_t fa;
	int p[2], rc;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) != 0)
		bail_out("pipe2: %m");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[0], 0);
	rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[0]);
	if (rc != 0)
		bail_out("posix_spawn: %s", strerror(rc));
	*release = p[1];
	return pid;
}

struct pidwait {
	int pidfd;
	int64_t deadline;
	int rc;
};

static void pid_waiter(void *arg)
{
	struct pidwait *w = arg;

	w->rc = rt_wait_pidfd(w->pidfd, w->deadline);
	rt_wg_done(&kids);
}

static void test_child_exit(void)
{
	int release, pidfd, status = 0;
	pid_t pid = spawn_child(&release);
	struct pidwait w;
	struct rt_gref ref;

	pidfd = rt_pidfd_open(pid);
	if (pidfd == -ENOSYS) {
		skip(13, "no pidfd_open on this kernel");
		close(release);
		waitpid(pid, &status, 0);
		return;
	}
	cmp_ok(pidfd, >=, 0, "rt_pidfd_open of a child");
	is_str(ename(rt_wait_pidfd(pidfd, rt_deadline_ms(20))), "ETIMEDOUT",
	       "rt_wait_pidfd with 20 ms on a running child times out");

	w = (struct pidwait){ pidfd, RT_FOREVER, 1 };
	ref = go(pid_waiter, &w);
	ok(wait_parked(ref), "a waiter without deadline is parked on the pidfd");
	is(rt_cancel(ref), 0, "rt_cancel");
	join_kids("cancelled pidfd waiter");
	is_str(ename(w.rc), "ECANCELED", "rt_wait_pidfd returns -ECANCELED");

	w = (struct pidwait){ pidfd, rt_deadline_ms(30000), 1 };
	ref = go(pid_waiter, &w);
	ok(wait_parked(ref), "a waiter is parked on the running child");
	is(write(release, "\n", 1), 1, "the child is told to exit");
	join_kids("pidfd waiter");
	is(w.rc, 0, "rt_wait_pidfd returns 0 once the child exited");
	is(waitpid(pid, &status, WNOHANG), pid, "waitpid reaps it without blocking");
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 7, "exit status 7 (0x%x)",
	   status);
	cmp_ok(rt_pidfd_open(pid), <, 0, "rt_pidfd_open of a reaped child fails");
	close(release);
	close(pidfd);
}

/* ---- registered fds: the end of file, deadlines against readiness ------ */

/* Reads like gorod's sessions: until EAGAIN, then waits. Returns the
 * bytes read before the end of file (or the connection's reset), or -1 if
 * neither is seen within 10 s. */
static long read_to_eof(struct rt_pollfd *pfd, int fd, bool *reset)
{
	int64_t deadline = rt_deadline_ms(10000);
	long total = 0;
	char buf[64];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n == 0)
			return total;
		if (n > 0) {
			total += n;
			continue;
		}
		if (errno == ECONNRESET) {
			*reset = true;
			return total;
		}
		if (errno != EAGAIN || rt_pollfd_wait(pfd, RT_READ, deadline) < 0)
			return -1;
	}
}

struct eof_reader {
	int fd;
	struct rt_pollfd *pfd;
	long got;
	bool reset;
};

static void eof_reader(void *arg)
{
	struct eof_reader *r = arg;

	r->got = read_to_eof(r->pfd, r->fd, &r->reset);
	rt_wg_done(&kids);
}

/* The peer's last bytes and its end in one edge, in the two ways a socket
 * can end: a shutdown (EPOLLRDHUP) and a close that leaves our bytes
 * unread (ECONNRESET, which libevent reports as plain readiness). A
 * reader that waited after a short read would hang in both. */
static void check_one_edge(bool reset, const char *what)
{
	struct eof_reader r = { 0 };
	int fd[2];

	make_pair(fd, false);
	is(write(fd[1], "abc", 3), 3, "%s: the peer writes 3 bytes", what);
	if (reset) {
		is(write(fd[0], "unread", 6), 6, "%s: and is sent bytes it will not read", what);
		close(fd[1]);
		fd[1] = -1;
	} else {
		is(shutdown(fd[1], SHUT_WR), 0, "%s: and shuts down its writing", what);
	}
	is(rt_pollfd_open(fd[0], &r.pfd), 0, "%s: rt_pollfd_open", what);
	r.fd = fd[0];
	ok(rt_pollfd_wait(r.pfd, RT_READ, rt_deadline_ms(10000)) & RT_READ, "%s: readable", what);
	if (!reset)
		ok(rt_pollfd_hup(r.pfd), "%s: rt_pollfd_hup says the peer shut down", what);
	is(read_to_eof(r.pfd, r.fd, &r.reset), 3, "%s: the 3 bytes, then the end", what);
	is(r.reset, reset, "%s: %s", what, reset ? "ECONNRESET" : "end of file");
	rt_pollfd_close(r.pfd);
	close(fd[0]);
	if (fd[1] >= 0)
		close(fd[1]);
}

static void test_pollfd_eof(void)
{
	struct eof_reader r = { 0 };
	struct rt_gref ref;
	int fd[2];

	check_one_edge(false, "one edge, shutdown");
	check_one_edge(true, "one edge, close with bytes unread");

	/* The bytes first; the shutdown later: an edge of its own. */
	make_pair(fd, false);
	r = (struct eof_reader){ .fd = fd[0] };
	is(rt_pollfd_open(fd[0], &r.pfd), 0, "rt_pollfd_open");
	ok(!rt_pollfd_hup(r.pfd), "two edges: no shutdown seen yet");
	is(write(fd[1], "ab", 2), 2, "two edges: the peer writes 2 bytes");
	ref = go(eof_reader, &r);
	ok(wait_parked(ref), "two edges: the reader read them and waits");
	is(shutdown(fd[1], SHUT_WR), 0, "two edges: the peer shuts down");
	join_kids("two edges");
	is(r.got, 2, "two edges: the reader saw 2 bytes and the end of file");
	rt_pollfd_close(r.pfd);
	close_pair(fd);
}

struct pfd_writer {
	int fd;
	struct rt_pollfd *pfd;
	long total, sent, waits;
	int rc;
};

/* Writes w->total bytes (a counting pattern), waiting on the pollfd for
 * room each time the socket is full. */
static void pfd_writer(void *arg)
{
	struct pfd_writer *w = arg;
	unsigned char buf[4096];

	w->rc = 0;
	while (w->sent < w->total) {
		size_t n = (size_t)(w->total - w->sent) < sizeof buf ? (size_t)(w->total - w->sent)
								      : sizeof buf;
		for (size_t i = 0; i < n; i++)
			buf[i] = (unsigned char)((w->sent + (long)i) % 251);
		ssize_t k = write(w->fd, buf, n);
		if (k > 0) {
			w->sent += k;
			continue;
		}
		if (k < 0 && errno != EAGAIN) {
			w->rc = -errno;
			break;
		}
		w->waits++;
		int rc = rt_pollfd_wait(w->pfd, RT_WRITE, rt_deadline_ms(10000));
		if (rc < 0) {
			w->rc = rc;
			break;
		}
	}
	rt_wg_done(&kids);
}

/* Writability is watched only while a writer waits: a writer on a full
 * socket parks, and wakes each time the reader makes room. */
static void test_pollfd_write(void)
{
	struct pfd_writer w = { .total = 1 << 20 };
	struct rt_pollfd *pfd;
	long got = 0, wrong = 0;
	int small = 4096, fd[2];
	unsigned char buf[8192];

	make_pair(fd, false);
	setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	is(rt_pollfd_open(fd[0], &pfd), 0, "write waits: rt_pollfd_open");
	w.fd = fd[0];
	w.pfd = pfd;
	struct rt_gref ref = go(pfd_writer, &w);
	ok(wait_parked(ref), "write waits: the writer filled the socket and parked");
	int64_t deadline = rt_deadline_ms(30000);
	while (got < w.total && rt_now() < deadline) {
		ssize_t n = read(fd[1], buf, sizeof buf);
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				wrong += buf[i] != (unsigned char)((got + i) % 251);
			got += n;
		} else if (rt_wait_fd(fd[1], RT_READ, rt_deadline_ms(1000)) < 0 && w.rc) {
			break;
		}
	}
	join_kids("write waits");
	is(w.rc, 0, "write waits: every wait for room succeeded (%s)", w.rc ? ename(w.rc) : "0");
	is(got, w.total, "write waits: the reader got all %ld bytes", w.total);
	is(wrong, 0, "write waits: in order");
	cmp_ok(w.waits, >=, 1, "write waits: the writer waited for room (%ld times)", w.waits);

	/* Full again, and nobody reads: the deadline ends the wait. */
	while (write(fd[0], buf, sizeof buf) > 0)
		;
	int rc = rt_pollfd_wait(pfd, RT_WRITE, rt_deadline_ms(20));
	is_str(ename(rc), "ETIMEDOUT", "write waits: a full socket nobody reads times out");
	/* Reading still works on the same pollfd. */
	is(write(fd[1], "r", 1), 1, "write waits: the other side writes a byte");
	ok(rt_pollfd_wait(pfd, RT_READ, rt_deadline_ms(10000)) & RT_READ,
	   "write waits: and the pollfd reports it readable");
	rt_pollfd_close(pfd);
	close_pair(fd);
}

#define RACERS 16
#define RACE_ROUNDS 300

struct racer {
	int fd[2];
	struct rt_pollfd *pfd;
	int i;
	long reads, timeouts, early;
};

static atomic_bool racing;

/* Waits on its fd with deadlines 1-2 ms away, while the feeder writes at
 * about the same pace: readiness and expiry race, round after round. */
static void racer(void *arg)
{
	struct racer *r = arg;
	char buf[64];

	for (int round = 0; round < RACE_ROUNDS; round++) {
		int64_t deadline = rt_now() + (1 + (round + r->i) % 2) * MS;
		int rc = rt_pollfd_wait(r->pfd, RT_READ, deadline);

		if (rc == -ETIMEDOUT) {
			r->timeouts++;
			r->early += rt_now() < deadline;
		} else if (rc > 0) {
			r->reads++;
		}
		while (read(r->fd[0], buf, sizeof buf) > 0)
			;
	}
	rt_wg_done(&kids);
}

static void feeder(void *arg)
{
	struct racer *rs = arg;
	unsigned k = 0;

	while (atomic_load(&racing)) {
		for (int i = 0; i < RACERS; i++)
			if ((k + (unsigned)i) % 3 == 0 && write(rs[i].fd[1], "f", 1) != 1)
				diag("feeder: write: %m");
		k++;
		rt_sleep(rt_now() + MS);
	}
	rt_wg_done(&kids);
}

static void test_deadline_races(void)
{
	struct racer rs[RACERS] = { 0 };
	long reads = 0, timeouts = 0, early = 0;

	atomic_store(&racing, true);
	for (int i = 0; i < RACERS; i++) {
		make_pair(rs[i].fd, false);
		rs[i].i = i;
		if (rt_pollfd_open(rs[i].fd[0], &rs[i].pfd) != 0)
			bail_out("rt_pollfd_open");
	}
	go(feeder, rs);
	for (int i = 0; i < RACERS; i++)
		go(racer, &rs[i]);
	/* The racers end on their own; then the feeder is stopped. */
	while (rt_wg_count(&kids) > 1)
		rt_sleep(rt_now() + 5 * MS);
	atomic_store(&racing, false);
	join_kids("deadline races");
	for (int i = 0; i < RACERS; i++) {
		reads += rs[i].reads;
		timeouts += rs[i].timeouts;
		early += rs[i].early;
		rt_pollfd_close(rs[i].pfd);
		close_pair(rs[i].fd);
	}
	ok(reads > 0 && timeouts > 0, "deadlines raced with readiness (%ld reads, %ld timeouts)",
	   reads, timeouts);
	is(early, 0, "no timeout reported before its deadline (%d waits)", RACERS * RACE_ROUNDS);
}

static void netpoll_main(void *arg)
{
	test_fd_basics(true);
	test_fd_basics(false);
	test_many_parked();
	test_pollfd_eof();
	test_pollfd_write();
	test_deadline_races();
	test_parked_holds_no_worker();
	test_child_exit();
}

int main(void)
{
	static struct rt_stats st;

	no_plan();
	if (rt_init(&(struct rt_config){ .maxprocs = 2 }) != 0)
		bail_out("rt_init failed");
	is(rt_run(netpoll_main, NULL), 0, "rt_run");
	check_no_leaks(&st);
	return done_testing();
}
