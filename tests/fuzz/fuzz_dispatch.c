/* fuzz_dispatch.c: the bytes a client sends, to a real session of an
 * in-process gorod.
 *
 * The daemon's objects (all of gorod but main.c) are linked in and the
 * goroutine runtime is started once, GOMAXPROCS 1, with none of main.c's
 * background goroutines (accept loop, signals, sweeper, leak monitor: each
 * runs on a timer, not on input). Each input is one connection:
 *
 *   1. a socketpair; the input is written to the client's end, which is
 *      then shut for writing (as a client that sends and half-closes);
 *   2. a goroutine runs session_serve() on the other end, the very
 *      function the accept loop starts for a connection: it reads, cuts
 *      frames, dispatches, replies, and at the end of file closes the
 *      session, releasing what it held;
 *   3. this thread reads every reply until the session closes the socket,
 *      and checks each (below);
 *   4. the same goroutine then brings gorod back to the state it started
 *      in (reset()): tasks killed and waited for, finished ones forgotten,
 *      WaitGroup counts taken back, names swept as the sweeper would ten
 *      minutes later, task ids restarted, GOMAXPROCS back to 1. So every
 *      input starts from the same state, a crash replays from its input
 *      alone, and what one input leaves behind cannot pile up.
 *
 * Asserted, besides what ASan and UBSan catch:
 *   - every reply is a well-formed msgpack-RPC response within the
 *     protocol's limits (the frame check accepts it; it decodes), its
 *     error nil or [a known code, a message] with a nil result, and it
 *     answers a request of this input (msgid), no request twice;
 *   - every request of a method that never waits (PROTO_F_BLOCKS unset,
 *     or an unknown method) is answered before the connection closes;
 *   - the session ends and closes once the client has half-closed;
 *   - after the connection and its tasks are gone, no session, party,
 *     task or named primitive is left (PROTOCOL.md, Idle names: "each is
 *     forgotten, so memory does not grow"), and no goroutine lives on.
 *
 * Exec tasks go as far as the fork: the fuzzer is linked with ld
 * --wrap=vfork, so proc_start() does all its own work (the PATH search,
 * the child tickets) and then sees vfork fail with EAGAIN; the task ends
 * failed. No input can start a process: a fuzzer soon finds
 * {argv: ["/bin/sh", "-c", ...]}, and an empty PATH would not stop a
 * program named with a '/'. The spec handed to proc_start() is checked
 * on the way (--wrap=proc_start). Func tasks run for real (sleep, noop,
 * spin, echo), cut short when the connection ends or by reset(). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "task.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where failures are told: stderr as it was at start (libFuzzer's
 * -close_fd_mask=2 then silences gorod's own messages). */
static int fail_fd = 2;

static void __attribute__((noreturn, format(printf, 3, 4)))
fail(const char *file, int line, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof buf, "fuzz_dispatch: %s:%d: ", file, line);

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	if (write(fail_fd, buf, (size_t)n) < 0)
		abort();
	abort();
}

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond))                                                      \
			fail(__FILE__, __LINE__, "check failed: " #cond ": " __VA_ARGS__); \
	} while (0)

/* ---- no process is ever started ---------------------------------------------- */

int __real_proc_start(struct proc *p, const struct exec_spec *sp, const char **why);
int __wrap_proc_start(struct proc *p, const struct exec_spec *sp, const char **why);
pid_t __wrap_vfork(void);

/* What execve would be given must be whole: argv and envp NULL-terminated
 * arrays of strings (ASan checks every byte is the task's), argv[0] not
 * empty, argv no larger than the message it came in, every variable
 * NAME=value, cwd absolute. */
int __wrap_proc_start(struct proc *p, const struct exec_spec *sp, const char **why)
{
	size_t bytes = 0;

	CHECK(sp->argv && sp->argv[0] && sp->argv[0][0], "an empty program reached exec");
	for (char *const *a = sp->argv; *a; a++)
		bytes += strlen(*a) + 1;
	CHECK(bytes <= PROTO_MAX_MESSAGE, "argv of %zu bytes reached exec", bytes);
	for (char *const *e = sp->envp; e && *e; e++)
		CHECK(strchr(*e, '=') && **e != '=', "environment entry '%.40s'", *e);
	CHECK(sp->cwd && sp->cwd[0] == '/', "cwd '%.40s'", sp->cwd ? sp->cwd : "(null)");
	return __real_proc_start(p, sp, why);
}

pid_t __wrap_vfork(void)
{
	errno = EAGAIN;
	return -1;
}

/* ---- the replies --------------------------------------------------------------- */

/* The requests of the input, as the session will cut them: msgids, each
 * to be answered at most once per time it was asked; `must` when the
 * method never waits (an unknown one included), so that gorod answers it
 * at once, and so before the connection closes. */
struct request {
	uint32_t msgid;
	bool must;
	int method; /* -1: unknown */
};

struct asked {
	struct request *r;
	size_t n, cap;
};

static void asked_add(struct asked *a, const struct proto_msg *m)
{
	int id = proto_method_find(m->method, m->method_len);

	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->r = realloc(a->r, a->cap * sizeof *a->r);
		CHECK(a->r, "out of memory");
	}
	a->r[a->n++] = (struct request){ m->msgid, id < 0 || !(proto_methods[id].flags & PROTO_F_BLOCKS),
					 id };
}

/* Takes a request with msgid off the list (one that must be answered
 * first); false when there is none. */
static bool asked_take(struct asked *a, uint32_t msgid)
{
	size_t found = a->n;

	for (size_t i = 0; i < a->n; i++) {
		if (a->r[i].msgid == msgid && (found == a->n || a->r[i].must))
			found = i;
	}
	if (found == a->n)
		return false;
	a->r[found] = a->r[--a->n];
	return true;
}

/* The msgids of the requests in data, cut as session.c's handle_input
 * cuts them: up to the first frame that breaks the framing or does not
 * decode (the session closes there). */
static void requests_of(const uint8_t *data, size_t size, struct asked *a)
{
	msgpack_unpacked u;
	size_t off = 0;

	msgpack_unpacked_init(&u);
	while (off < size) {
		ssize_t fl = proto_frame_check((const char *)data + off, size - off, PROTO_MAX_MESSAGE);
		struct proto_msg m;
		const char *why;

		if (fl <= 0 || proto_decode(&u, (const char *)data + off, (size_t)fl, &m, &why) < 0)
			break;
		if (m.type == PROTO_REQUEST)
			asked_add(a, &m);
		off += (size_t)fl;
	}
	msgpack_unpacked_destroy(&u);
}

/* Checks the complete replies at the front of buf; returns the bytes
 * they take. */
static size_t check_replies(msgpack_unpacked *u, const char *buf, size_t len, struct asked *a)
{
	size_t off = 0;

	while (off < len) {
		ssize_t fl = proto_frame_check(buf + off, len - off, PROTO_MAX_MESSAGE);
		struct proto_msg m;
		const char *why = NULL, *msg;
		size_t mlen;

		CHECK(fl >= 0, "gorod sent bytes that are not a message within the limits (%zd)", fl);
		if (fl == 0)
			break;
		CHECK(proto_decode(u, buf + off, (size_t)fl, &m, &why) == 0, "gorod sent a bad reply: %s",
		      why);
		CHECK(m.type == PROTO_RESPONSE, "gorod sent a message of type %d", m.type);
		CHECK(asked_take(a, m.msgid), "a reply to msgid %u, not asked (or answered twice)",
		      m.msgid);
		if (m.error.type != MSGPACK_OBJECT_NIL) {
			const char *name;
			size_t nlen;
			CHECK(m.error.type == MSGPACK_OBJECT_ARRAY && m.error.via.array.size == 2 &&
			      proto_get_str(&m.error.via.array.ptr[0], &name, &nlen) == 0 &&
			      proto_err_from_name(name, nlen) != 0,
			      "msgid %u: an error that is not [known code, message]", m.msgid);
			CHECK(m.error.via.array.ptr[1].type == MSGPACK_OBJECT_STR,
			      "msgid %u: an error message that is not a str", m.msgid);
			proto_read_error(&m.error, &msg, &mlen);
			CHECK(m.result.type == MSGPACK_OBJECT_NIL, "msgid %u: an error with a result",
			      m.msgid);
		}
		off += (size_t)fl;
	}
	return off;
}

/* Writes data to fd, shuts it for writing, and reads and checks replies
 * until gorod closes its end. Both at once: a session parks writing
 * replies when the client does not read them. */
static void exchange(int fd, const uint8_t *data, size_t size, size_t sent, struct asked *a)
{
	static char *buf;
	static size_t cap;
	size_t have = 0;
	msgpack_unpacked u;
	bool open_w = true;

	if (!buf) {
		cap = 1 << 20;
		buf = malloc(cap);
		CHECK(buf, "out of memory");
	}
	msgpack_unpacked_init(&u);
	for (;;) {
		struct pollfd p = { fd, POLLIN | (open_w ? POLLOUT : 0), 0 };

		if (open_w && sent == size) {
			shutdown(fd, SHUT_WR);
			open_w = false;
			continue;
		}
		if (poll(&p, 1, -1) < 0) {
			CHECK(errno == EINTR, "poll: %s", strerror(errno));
			continue;
		}
		if (open_w && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				sent = size; /* the session closed: nothing more to say */
		}
		if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
			if (have == cap) { /* a reply larger than the buffer */
				cap *= 2;
				CHECK(cap <= 4 * PROTO_MAX_MESSAGE, "a reply over the size limit");
				buf = realloc(buf, cap);
				CHECK(buf, "out of memory");
			}
			ssize_t n = recv(fd, buf + have, cap - have, MSG_DONTWAIT);
			if (n == 0)
				break;
			if (n < 0) {
				CHECK(errno == EAGAIN || errno == EINTR || errno == ECONNRESET,
				      "recv: %s", strerror(errno));
				if (errno == ECONNRESET)
					break;
				continue;
			}
			have += (size_t)n;
			size_t used = check_replies(&u, buf, have, a);
			memmove(buf, buf + used, have - used);
			have -= used;
		}
	}
	CHECK(have == 0, "gorod closed the connection within a reply (%zu bytes of it)", have);
	msgpack_unpacked_destroy(&u);
	for (size_t i = 0; i < a->n; i++)
		CHECK(!a->r[i].must, "request %u (%s) got no reply before the connection closed",
		      a->r[i].msgid, a->r[i].method < 0 ? "unknown method" : proto_methods[a->r[i].method].name);
}

/* ---- back to the state gorod started in ---------------------------------------- */

#define MAX_NAMES 4096

static char *wg_names[MAX_NAMES];
static size_t nwg_names;

/* names_sweep's visitor that only collects the names (it drops nothing). */
static bool collect_wg(void *prim, int64_t now)
{
	if (nwg_names < MAX_NAMES)
		wg_names[nwg_names++] = strdup(names_name(prim));
	return false;
}

/* names_lock held: takes back what WaitGroups still count (adds without
 * a lease that no done matched: the one thing a session leaves behind by
 * design), so that the groups are idle and forgotten. */
static void wg_zero_all(void)
{
	nwg_names = 0;
	names_sweep(PRIM_WG, collect_wg, 0);
	for (size_t i = 0; i < nwg_names; i++) {
		struct wg_round round;
		int64_t count, waiters, now;
		struct args a = { .name = wg_names[i] };

		CHECK(a.name, "out of memory");
		a.name_len = strlen(a.name);
		if (nwg_status(a.name, a.name_len, &count, &waiters, &round) && count > 0) {
			CHECK(waiters == 0, "WaitGroup %s has %lld waiters after its session ended",
			      a.name, (long long)waiters);
			a.delta = -count;
			CHECK(nwg_add(NULL, &a, &now) == 0 && now == 0, "WaitGroup %s: cannot take back %lld",
			      a.name, (long long)count);
		}
		free(wg_names[i]);
	}
}

/* On a goroutine, once the session has ended: kills what the input
 * started and makes gorod forget everything it made. */
static void reset(void)
{
	int64_t give_up = rt_now() + 10 * 1000000000LL;
	static const char *const kinds[] = { "WaitGroup", "mutex", "semaphore", "task id",
					     "task key" };

	tasks_stop_start();
	while (tasks_stop_wait(rt_deadline_ms(100)) < 0) {
		CHECK(rt_now() < give_up, "tasks still run 10 s after being killed");
		tasks_stop_start();
	}

	rt_mutex_lock_nocancel(&names_lock);
	CHECK(!task_live_head(), "a task lives on after every task was killed and waited for");
	int64_t keep = task_config.keep_count;
	task_config.keep_count = 0;
	task_prune(rt_now());
	task_config.keep_count = keep;
	wg_zero_all();
	/* As the sweeper would, once the marks (lost groups, owner died, a
	 * round's failures) are past their keeping time. */
	int64_t later = rt_now() + 2 * (OWNER_DIED_KEEP_NS + task_config_keep_age_ns());
	names_sweep(PRIM_WG, nwg_expired, later);
	names_sweep(PRIM_MUTEX, nmutex_expired, later);
	names_sweep(PRIM_SEM, nsem_expired, later);
	for (int k = 0; k < PRIM_KINDS; k++)
		CHECK(names_count(k) == 0, "%zu %s name(s) left with nobody to use them",
		      names_count(k), kinds[k]);
	CHECK(nsessions == 0, "%d sessions after the only one ended", nsessions);
	CHECK(!session_parties(), "a task's party session outlived its task");
	CHECK(tasks_restart_ids(), "a task record is still referenced");
	rt_mutex_unlock(&names_lock);

	leak_stop(); /* forgets the findings (lock-order ones stay otherwise) */
	if (rt_maxprocs(0) != 1)
		rt_maxprocs(1);
}

/* ---- one connection ------------------------------------------------------------ */

struct conn {
	int fd;      /* the session's end */
	sem_t done;  /* posted once the session ended and reset() is done */
};

static void conn_main(void *arg)
{
	struct conn *c = arg;

	session_serve((void *)(intptr_t)c->fd);
	reset();
	sem_post(&c->done);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int r;

	fail_fd = dup(2);
	if (fail_fd < 0)
		fail_fd = 2;
	signal(SIGPIPE, SIG_IGN);
	if ((r = tasks_init()) < 0)
		fail(__FILE__, __LINE__, "tasks_init: %s", strerror(-r));
	gorod_started_ns = rt_now();
	if ((r = rt_init(&(struct rt_config){ .maxprocs = 1 })) < 0)
		fail(__FILE__, __LINE__, "rt_init: %s", strerror(-r));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct asked asked = { 0 };
	struct conn c;
	struct rt_stats *st = malloc(sizeof *st);
	int sv[2];

	CHECK(st, "out of memory");
	requests_of(data, size, &asked);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
	      strerror(errno));
	/* As accept4(SOCK_NONBLOCK) gives it to the session. */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	c.fd = sv[0];
	sem_init(&c.done, 0, 0);
	/* The input is in the socket before the session starts (all of it,
	 * unless it is larger than the socket's buffer): then the session
	 * reads it as it comes, not as this thread happens to keep up, and
	 * the same input takes the same paths every run. */
	ssize_t sent = send(sv[1], data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent < 0)
		sent = 0;
	session_accepted();
	CHECK(rt_go(conn_main, &c, NULL) == 0, "rt_go");

	exchange(sv[1], data, size, (size_t)sent, &asked);
	close(sv[1]);
	while (sem_wait(&c.done) < 0)
		CHECK(errno == EINTR, "sem_wait: %s", strerror(errno));
	sem_destroy(&c.done);

	/* conn_main returns right after its post: then nothing runs. */
	for (;;) {
		rt_stats_get(st);
		if (st->live == 0)
			break;
		sched_yield();
	}
	free(st);
	free(asked.r);
	return 0;
}
