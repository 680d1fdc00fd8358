/* lock_bench: gorod's named mutexes against flock(2), Redis as a lock
 * server, and the raw Unix-socket round trip (the floor).
 *
 * One measurement per process, one line of key=value on stdout:
 *
 *	lock_bench MODE [key=value ...]
 *	gorod_pair clients=1 secs=2 ops=82468 ops_per_s=41234 min_client=... max_client=...
 *
 * so that bench/run-locks can start the servers once, run ours and the
 * anchors alternately (A B A B) and divide. The modes:
 *
 *	echo_server path=SOCK        the echo server: one thread, epoll, echoes
 *	                             what it reads until killed (the floor's
 *	                             server, shaped like redis-server's loop)
 *	echo path=SOCK               one op: write `size` bytes, read them back
 *	flock_pair dir=DIR           one op: flock(LOCK_EX) + flock(LOCK_UN) on
 *	                             a file of the client's own
 *	redis_pair path=SOCK         one op: SET k v NX PX 30000 + DEL k, with
 *	                             hiredis, on a key of the client's own
 *	gorod_pair path=SOCK         one op: goro_mutex_lock + goro_mutex_unlock
 *	                             on a name of the client's own, each waited for
 *	gorod_pair_defer path=SOCK   the same with goro_mutex_unlock(GORO_DEFER):
 *	                             the unlock rides with the next lock request;
 *	                             goro_sync at the end reports its errors
 *	flock_handoff dir=DIR        2 clients pass one lock back and forth;
 *	gorod_handoff path=SOCK      one op is one turn (see handoff_loop())
 *	gorod_handoff_defer path=SOCK
 *
 * Keys: clients=N (pair modes and echo; default 1; handoff is always 2),
 * secs=S (the measured window, default 2), warmup=S (run before the window
 * opens, default 0.2), size=B (echo's message, default 32 bytes: about a
 * mutex_lock request's size), yield=0|1 (handoff: sched_yield() after an
 * acquisition that was not the client's turn; default 1).
 *
 * Each client is a process of its own (fork), with its own connection or
 * open file. All connect first, then start together; each counts the ops
 * it completes inside the window [t0, t_end); ops_per_s is their sum over
 * the window's length, min_client and max_client show how evenly it was
 * shared. Handoff lines also carry spins=, the acquisitions that found it
 * was not their turn (wasted on an unfair lock).
 *
 * Exit status: 0; 1 when a client failed (an error reply, a lost
 * connection: the message on stderr says which); 2 on bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "goro/goro.h"

#ifdef LOCK_BENCH_REDIS
#include <hiredis/hiredis.h>
#endif

#define MAX_CLIENTS 64

const char bench_name[] = "lock_bench";

/* ---- arguments ------------------------------------------------------------- */

struct params {
	const char *path; /* a socket: gorod's, redis-server's, echo_server's */
	const char *dir;  /* where flock's files go */
	long clients;
	double secs, warmup;
	long size;
	long yield; /* handoff: sched_yield() after a spin */
};

static void usage(void)
{
	fputs("usage: lock_bench MODE [path=SOCK] [dir=DIR] [clients=N] [secs=S]\n"
	      "                  [warmup=S] [size=BYTES] [yield=0|1]\n"
	      "modes: echo_server echo flock_pair redis_pair gorod_pair gorod_pair_defer\n"
	      "       flock_handoff gorod_handoff gorod_handoff_defer\n"
	      "(see the top of bench/lock_bench.c)\n", stderr);
	exit(2);
}

static void parse_params(int argc, char **argv, struct params *p)
{
	*p = (struct params){ .clients = 1, .secs = 2.0, .warmup = 0.2, .size = 32,
			      .yield = 1 };
	for (int i = 0; i < argc; i++) {
		char *v = strchr(argv[i], '='), *end;
		size_t klen;

		if (!v)
			usage();
		klen = (size_t)(v - argv[i]);
		v++;
		errno = 0;
		if (klen == 4 && !strncmp(argv[i], "path", 4)) {
			p->path = v;
			continue;
		}
		if (klen == 3 && !strncmp(argv[i], "dir", 3)) {
			p->dir = v;
			continue;
		}
		if (klen == 7 && !strncmp(argv[i], "clients", 7))
			p->clients = strtol(v, &end, 10);
		else if (klen == 4 && !strncmp(argv[i], "size", 4))
			p->size = strtol(v, &end, 10);
		else if (klen == 5 && !strncmp(argv[i], "yield", 5))
			p->yield = strtol(v, &end, 10);
		else if (klen == 4 && !strncmp(argv[i], "secs", 4))
			p->secs = strtod(v, &end);
		else if (klen == 6 && !strncmp(argv[i], "warmup", 6))
			p->warmup = strtod(v, &end);
		else
			usage();
		if (errno || end == v || *end)
			usage();
	}
	if (p->clients < 1 || p->clients > MAX_CLIENTS || p->secs <= 0 || p->warmup < 0 ||
	    p->size < 1 || p->size > 65536 || (p->yield != 0 && p->yield != 1)) {
		fprintf(stderr, "lock_bench: clients is 1..%d, secs > 0, warmup >= 0, "
			"size 1..65536, yield 0 or 1\n", MAX_CLIENTS);
		exit(2);
	}
}

static const char *need(const char *v, const char *key)
{
	if (!v) {
		fprintf(stderr, "lock_bench: this mode needs %s=\n", key);
		exit(2);
	}
	return v;
}

/* ---- the clients: processes that start together ------------------------------ */

/* Shared by the parent and its clients (MAP_SHARED, made before fork). */
struct shared {
	int64_t t0, t_end;       /* the measured window, CLOCK_MONOTONIC ns */
	uint64_t turn;           /* handoff: turn % 2 is whose turn it is */
	int holder;              /* handoff: who holds the lock, -1: nobody */
	int stop;                /* handoff: the window is over, leave */
	struct {
		uint64_t ops, spins;
	} c[MAX_CLIENTS];
};

static struct shared *sh;
static int ready_w = -1, start_r = -1; /* a client's ends of the two pipes */

/* Called by a client once it is connected: tells the parent, then waits
 * for everyone to be (the parent closes the start pipe). */
static void client_ready(void)
{
	char b = 1;

	if (write(ready_w, &b, 1) != 1)
		bench_die("ready pipe: %s", strerror(errno));
	close(ready_w);
	while (read(start_r, &b, 1) < 0 && errno == EINTR)
		;
	close(start_r);
}

/* Counts an op completed now; returns false once the window is over. */
static inline bool tick(int id)
{
	int64_t t = bench_now_ns();

	if (t >= sh->t_end)
		return false;
	if (t >= sh->t0)
		sh->c[id].ops++;
	return true;
}

typedef void (*client_fn)(int id, const struct params *p);

/* Forks n clients running fn(id, p), starts them together once all are
 * ready, waits for them, and prints the line for mode (with spins= for a
 * handoff). Exits 1 if any client failed. */
static void run_clients(const char *mode, int n, client_fn fn, const struct params *p,
			bool handoff)
{
	int ready[2], start[2], failed = 0;
	pid_t pids[MAX_CLIENTS];
	uint64_t sum = 0, spins = 0, lo = UINT64_MAX, hi = 0;
	char b;
	int got = 0;

	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	sh->t0 = sh->t_end = INT64_MAX;
	sh->holder = -1;
	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(start, O_CLOEXEC) < 0)
		bench_die("pipe: %s", strerror(errno));
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			bench_die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			close(ready[0]);
			close(start[1]);
			ready_w = ready[1];
			start_r = start[0];
			fn(i, p);
			_exit(0);
		}
	}
	close(ready[1]);
	close(start[0]);
	/* A client that dies before it is ready closes its end unwritten: the
	 * read then sees end of file once the others have written theirs. */
	while (got < n) {
		ssize_t r = read(ready[0], &b, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got++;
	}
	sh->t0 = bench_now_ns() + (int64_t)(p->warmup * 1e9);
	sh->t_end = sh->t0 + (int64_t)(p->secs * 1e9);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	close(start[1]);
	for (int i = 0; i < n; i++) {
		int st;

		while (waitpid(pids[i], &st, 0) < 0)
			if (errno != EINTR)
				bench_die("waitpid: %s", strerror(errno));
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			failed = 1;
			if (WIFSIGNALED(st))
				fprintf(stderr, "lock_bench: client %d killed by signal %d\n", i,
					WTERMSIG(st));
		}
	}
	if (failed || got < n)
		exit(1);
	for (int i = 0; i < n; i++) {
		sum += sh->c[i].ops;
		spins += sh->c[i].spins;
		lo = sh->c[i].ops < lo ? sh->c[i].ops : lo;
		hi = sh->c[i].ops > hi ? sh->c[i].ops : hi;
	}
	printf("%s clients=%d secs=%g ops=%" PRIu64 " ops_per_s=%.0f min_client=%" PRIu64
	       " max_client=%" PRIu64, mode, n, p->secs, sum, (double)sum / p->secs, lo, hi);
	if (handoff)
		printf(" yield=%ld spins=%" PRIu64, p->yield, spins);
	printf("\n");
}

/* ---- the floor: a Unix-socket echo ------------------------------------------ */

static int unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof a.sun_path)
		bench_die("socket path too long: %s", path);
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		bench_die("connecting to %s: %s", path, strerror(errno));
	return fd;
}

/* Serves echo round trips on path until killed: one thread, one epoll
 * loop, one read and one write per readable connection, as redis-server's
 * event loop does. Prints "echo_server ready" once it listens. */
static void echo_server(const struct params *p)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct epoll_event ev[64];
	char buf[65536];
	int lfd, ep;

	if (strlen(p->path) >= sizeof a.sun_path)
		bench_die("socket path too long: %s", p->path);
	strcpy(a.sun_path, p->path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 128) < 0)
		bench_die("listening on %s: %s", p->path, strerror(errno));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		bench_die("epoll_create1: %s", strerror(errno));
	ev[0] = (struct epoll_event){ .events = EPOLLIN, .data.fd = lfd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev[0]) < 0)
		bench_die("epoll_ctl: %s", strerror(errno));
	printf("echo_server ready path=%s\n", p->path);
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, ev, 64, -1);

		if (n < 0 && errno != EINTR)
			bench_die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;
			ssize_t r;

			if (fd == lfd) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
				struct epoll_event e = { .events = EPOLLIN };

				if (c < 0)
					continue;
				e.data.fd = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) < 0)
					close(c);
				continue;
			}
			r = read(fd, buf, sizeof buf);
			if (r <= 0) {
				close(fd); /* also leaves the epoll set */
				continue;
			}
			/* Blocking writes: a client reads its reply before it
			 * sends again, so the socket has room. */
			for (ssize_t off = 0; off < r;) {
				ssize_t w = write(fd, buf + off, (size_t)(r - off));

				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0) {
					close(fd);
					break;
				}
				off += w;
			}
		}
	}
}

static void echo_client(int id, const struct params *p)
{
	int fd = unix_connect(p->path);
	size_t size = (size_t)p->size;
	char *msg = malloc(size), *back = malloc(size);

	if (!msg || !back)
		bench_die("out of memory");
	memset(msg, 'a' + id % 26, size);
	client_ready();
	do {
		size_t got = 0;

		if (write(fd, msg, size) != (ssize_t)size)
			bench_die("echo write: %s", strerror(errno));
		while (got < size) {
			ssize_t r = read(fd, back + got, size - got);

			if (r <= 0)
				bench_die("echo read: %s", r ? strerror(errno) : "end of file");
			got += (size_t)r;
		}
		if (back[0] != msg[0])
			bench_die("echo: got back something else");
	} while (tick(id));
	close(fd);
	free(msg);
	free(back);
}

/* ---- flock(2) ------------------------------------------------------------------ */

static int flock_open(const struct params *p, const char *name)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof path, "%s/%s", need(p->dir, "dir"), name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		bench_die("open %s: %s", path, strerror(errno));
	return fd;
}

static void flock_do(int fd, int op)
{
	while (flock(fd, op) < 0)
		if (errno != EINTR)
			bench_die("flock: %s", strerror(errno));
}

static void flock_pair_client(int id, const struct params *p)
{
	char name[64];
	int fd;

	snprintf(name, sizeof name, "pair-%d", id);
	fd = flock_open(p, name);
	client_ready();
	do {
		flock_do(fd, LOCK_EX);
		flock_do(fd, LOCK_UN);
	} while (tick(id));
	close(fd);
}

/* ---- Redis, with hiredis ------------------------------------------------------ */

#ifdef LOCK_BENCH_REDIS
/* Checks a reply: a status equal to status, or an integer equal to n. */
static void redis_check(redisContext *rc, redisReply *r, const char *what,
			const char *status, long long n)
{
	if (!r)
		bench_die("redis %s: %s", what, rc->errstr);
	if (status ? r->type != REDIS_REPLY_STATUS || strcmp(r->str, status)
		   : r->type != REDIS_REPLY_INTEGER || r->integer != n)
		bench_die("redis %s: unexpected reply (type %d%s%s)", what, r->type,
			  r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ?
			  ": " : "",
			  r->type == REDIS_REPLY_ERROR || r->type == REDIS_REPLY_STATUS ?
			  r->str : "");
	freeReplyObject(r);
}

/* SET k v NX PX 30000 then DEL k, each waited for: the usual single-node
 * Redis lock. The commands are prepared once (redisCommandArgv), the
 * fastest way hiredis has to send them. */
static void redis_pair_client(int id, const struct params *p)
{
	char key[64], val[64];
	redisContext *rc = redisConnectUnix(p->path);
	const char *set[] = { "SET", key, val, "NX", "PX", "30000" };
	const char *del[] = { "DEL", key };
	size_t setl[6], dell[2];

	if (!rc || rc->err)
		bench_die("connecting to redis at %s: %s", p->path,
			  rc ? rc->errstr : "out of memory");
	snprintf(key, sizeof key, "lock_bench:%d:%d", (int)getppid(), id);
	snprintf(val, sizeof val, "%d-%d", (int)getpid(), id);
	for (int i = 0; i < 6; i++)
		setl[i] = strlen(set[i]);
	for (int i = 0; i < 2; i++)
		dell[i] = strlen(del[i]);
	redis_check(rc, redisCommand(rc, "DEL %s", key), "DEL", NULL, 0);
	client_ready();
	do {
		redis_check(rc, redisCommandArgv(rc, 6, set, setl), "SET NX", "OK", 0);
		redis_check(rc, redisCommandArgv(rc, 2, del, dell), "DEL", NULL, 1);
	} while (tick(id));
	redisFree(rc);
}
#endif

/* ---- gorod ---------------------------------------------------------------------- */

static void gorod_pair(int id, const struct params *p, unsigned unlock_flags)
{
	goro_client *c = bench_connect(need(p->path, "path"));
	char name[64];

	snprintf(name, sizeof name, "lock_bench.%d.%d", (int)getppid(), id);
	client_ready();
	do {
		struct goro_grant g;

		bench_check(c, goro_mutex_lock(c, name, GORO_WRITE, -1, 0, &g), "mutex_lock");
		bench_check(c, goro_mutex_unlock(c, name, g.token, unlock_flags), "mutex_unlock");
	} while (tick(id));
	bench_check(c, goro_sync(c), "a deferred mutex_unlock");
	goro_close(c);
}

static void gorod_pair_strict_client(int id, const struct params *p)
{
	gorod_pair(id, p, 0);
}

static void gorod_pair_defer_client(int id, const struct params *p)
{
	gorod_pair(id, p, GORO_DEFER);
}

/* ---- handoff: 2 clients alternate on one lock ------------------------------------ */

/* The lock under test, as the handoff loop sees it. */
struct lock_ops {
	void (*lock)(void *l);
	void (*unlock)(void *l);
};

/* Strict alternation through the lock itself: holding it, a client looks
 * at the shared turn counter; on its turn (turn % 2 == id) it takes the
 * turn (turn++, one op), else it counts a spin; then it unlocks and locks
 * again. A FIFO lock hands over to the waiting peer on every unlock and
 * never spins; an unfair one may let the unlocker take it back, which
 * costs spins, not correctness. A grant while the peer holds the lock is
 * an error (exit 1): the run checks mutual exclusion too. With yield, a client that found it was not
 * its turn calls sched_yield() after unlocking, so that on one CPU the peer
 * it just woke runs instead of losing the lock to it again (flock's best
 * case; gorod never gets there). Whoever takes the last turn of the window
 * sets stop; the peer sees it on its next acquisition. */
static void handoff_loop(int id, struct lock_ops *o, void *l, bool yield)
{
	int64_t give_up = sh->t_end + 10 * (int64_t)1000000000;

	for (;;) {
		int64_t t;
		bool mine;

		o->lock(l);
		/* The benchmark checks the lock it measures: */
		if (sh->holder != -1) {
			__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
			bench_die("handoff: granted while client %d holds the lock", sh->holder);
		}
		sh->holder = id;
		if (__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
			sh->holder = -1;
			o->unlock(l);
			return;
		}
		t = bench_now_ns();
		mine = sh->turn % 2 == (uint64_t)id;
		if (mine) {
			sh->turn++;
			if (t >= sh->t_end)
				__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
			else if (t >= sh->t0)
				sh->c[id].ops++;
		} else {
			if (t >= sh->t0 && t < sh->t_end)
				sh->c[id].spins++;
			if (t > give_up) {
				__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
				bench_die("handoff: the other client stopped taking its turns");
			}
		}
		sh->holder = -1;
		o->unlock(l);
		if (!mine && yield)
			sched_yield();
	}
}

static void flock_lock(void *l)
{
	flock_do(*(int *)l, LOCK_EX);
}

static void flock_unlock(void *l)
{
	flock_do(*(int *)l, LOCK_UN);
}

static void flock_handoff_client(int id, const struct params *p)
{
	/* Its own open file description: flock(2) locks belong to those. */
	int fd = flock_open(p, "handoff");
	struct lock_ops o = { flock_lock, flock_unlock };

	client_ready();
	handoff_loop(id, &o, &fd, p->yield);
	close(fd);
}

struct gorod_lock {
	goro_client *c;
	char name[64];
	uint64_t token;
	unsigned unlock_flags;
};

static void gorod_lock(void *l)
{
	struct gorod_lock *g = l;
	struct goro_grant gr;

	bench_check(g->c, goro_mutex_lock(g->c, g->name, GORO_WRITE, -1, 0, &gr), "mutex_lock");
	g->token = gr.token;
}

static void gorod_unlock(void *l)
{
	struct gorod_lock *g = l;

	bench_check(g->c, goro_mutex_unlock(g->c, g->name, g->token, g->unlock_flags),
		    "mutex_unlock");
}

static void gorod_handoff(int id, const struct params *p, unsigned unlock_flags)
{
	struct gorod_lock g = { .c = bench_connect(need(p->path, "path")),
				.unlock_flags = unlock_flags };
	struct lock_ops o = { gorod_lock, gorod_unlock };

	snprintf(g.name, sizeof g.name, "lock_bench.%d.handoff", (int)getppid());
	client_ready();
	handoff_loop(id, &o, &g, p->yield);
	bench_check(g.c, goro_sync(g.c), "a deferred mutex_unlock");
	goro_close(g.c);
}

static void gorod_handoff_strict_client(int id, const struct params *p)
{
	gorod_handoff(id, p, 0);
}

static void gorod_handoff_defer_client(int id, const struct params *p)
{
	gorod_handoff(id, p, GORO_DEFER);
}

/* ---- main --------------------------------------------------------------------------- */

static const struct mode {
	const char *name;
	client_fn fn;
	bool handoff; /* always 2 clients */
	bool needs_dir;
} modes[] = {
	{ "echo", echo_client, false, false },
	{ "flock_pair", flock_pair_client, false, true },
#ifdef LOCK_BENCH_REDIS
	{ "redis_pair", redis_pair_client, false, false },
#endif
	{ "gorod_pair", gorod_pair_strict_client, false, false },
	{ "gorod_pair_defer", gorod_pair_defer_client, false, false },
	{ "flock_handoff", flock_handoff_client, true, true },
	{ "gorod_handoff", gorod_handoff_strict_client, true, false },
	{ "gorod_handoff_defer", gorod_handoff_defer_client, true, false },
};

int main(int argc, char **argv)
{
	struct params p;

	if (argc < 2)
		usage();
	parse_params(argc - 2, argv + 2, &p);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "echo_server")) {
		need(p.path, "path");
		echo_server(&p);
		return 0;
	}
#ifndef LOCK_BENCH_REDIS
	if (!strcmp(argv[1], "redis_pair")) {
		fprintf(stderr, "lock_bench: built without hiredis: no redis_pair\n");
		return 77;
	}
#endif
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		const struct mode *m = &modes[i];

		if (strcmp(argv[1], m->name))
			continue;
		if (m->needs_dir)
			need(p.dir, "dir");
		else
			need(p.path, "path");
		run_clients(m->name, m->handoff ? 2 : (int)p.clients, m->fn, &p, m->handoff);
		return 0;
	}
	usage();
}
