/* test_quota.c: per-user limits and isolation, end to end (PROTOCOL.md,
 * "Per-user limits").
 *
 * One real gorod runs as root (the system gorod: it serves every user) with
 * small limits from a configuration file, so that SIGHUP can change them:
 * sessions-per-user 4, requests-per-user 6, tasks-per-user 3,
 * names-per-user 5, output-per-user 1280K. Clients of other users are
 * forked children that drop to uid A (65534, nobody) and uid B (65533),
 * each an *agent*: it runs the operations the parent sends over a pipe,
 * through libgoro, and sends back what it got. So the parent sees both
 * users at once and checks gorod's stats between steps.
 *
 * - each limit: A reaches it and gets EAGAIN with a sentence naming the
 *   setting; B, at that moment, is served; A frees something and goes on;
 *   A's counters go back to 0 in stats.
 * - sessions: the refused connection's `refused` notification and error
 *   reply, as raw bytes; goroctl's message names the limit.
 * - requests: what frees (unlock, wg done) is never refused.
 * - reload: SIGHUP applies new limits; 0 means none.
 * - socket: a user in the socket's group connects (and gorod sees its uid
 *   and gid), one who is not gets EACCES, and goroctl says what to do.
 * - flood: on a gorod of its own with the default limits, A floods from
 *   4 processes and 32 connections, each writing lock/unlock pairs and
 *   spawns as fast as gorod reads them, never waiting for an answer, while
 *   B measures its own lock+unlock round trip: the loaded median must stay
 *   within 2x of the unloaded one (each round measures both, the flooders
 *   stopped for the unloaded one; the best of up to 5 rounds in which the
 *   flood was heavy; see test_flood for why, and for what keeps the
 *   kernel's scheduling out of the measure). It prints the numbers of each
 *   round as a diag line.
 *
 * Needs root (to act as other users); otherwise the whole program is
 * skipped. No wait is a sleep: a reply, a byte on a pipe, a child's exit,
 * or (for what gorod has no event for: a session it noticed ended, a
 * reload) gorod's stats polled, each with a deadline. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define UID_A 65534 /* nobody */
#define UID_B 65533
#define UID_MEMBER 65532   /* in the socket's group */
#define UID_OUTSIDER 65531 /* not */
#define GID_SOCKET 65530   /* the group the test gives the socket */
#define WAIT_MS 10000
#define NSLOTS 80

static struct harness h;
static goro_client *c; /* root's: exempt, it watches */
static const char *goroctl;
static char confdir[256], conf[300];
/* Names charged to A that outlive their part: the WaitGroup of the names
 * part's spawn --wg, kept for the retention age once its round saw a task. */
static long long a_names_kept;

/* ---- the configuration file and reload -------------------------------------- */

#define CONF_BASE                                                                   \
	"sessions-per-user = 4\nrequests-per-user = 6\ntasks-per-user = 3\n"           \
	"names-per-user = 5\n"

/* Writes the configuration file: the base limits, then extra lines. */
static void write_conf(const char *extra)
{
	FILE *f = fopen(conf, "w");

	if (!f || fprintf(f, "%s%s", CONF_BASE, extra) < 0 || fclose(f) != 0)
		bail_out("writing %s: %s", conf, strerror(errno));
}

/* The integer `key` in the stats' quota section ("limits" or a user's
 * entry); *v 0 when the user has no entry (every count 0). */
static int quota_stat(uid_t uid, const char *key, long long *v)
{
	char *json = NULL, pat[64];
	const char *in;
	int r = goro_stats_json(c, &json);

	if (r < 0)
		return r;
	in = strstr(json, "\"quota\":{");
	if (in && uid != (uid_t)-1) {
		snprintf(pat, sizeof pat, "{\"uid\":%u,", (unsigned)uid);
		in = strstr(in, pat);
		if (!in) {
			*v = 0;
			free(json);
			return 0;
		}
	}
	r = in ? harness_json_int(in, key, v) : -ENOENT;
	free(json);
	return r;
}

/* Makes cl the client that quota_stat() asks, and back (the flood's gorod). */
static void cl_swap(goro_client *cl)
{
	static goro_client *saved;

	if (saved) {
		c = saved;
		saved = NULL;
	} else {
		saved = c;
		c = cl;
	}
}

/* Polls stats until the user's key (uid -1: the limit key) is want. */
static bool wait_quota(uid_t uid, const char *key, long long want, const char *what)
{
	int64_t deadline = harness_now_ms() + WAIT_MS;
	long long v = -1;
	int pause = 1;

	for (;;) {
		if (quota_stat(uid, key, &v) == 0 && v == want)
			return ok(1, "%s", what);
		if (harness_now_ms() > deadline)
			break;
		poll(NULL, 0, pause);
		if (pause < 20)
			pause *= 2;
	}
	ok(0, "%s", what);
	diag("stats: uid %d %s is %lld, not %lld", (int)uid, key, v, want);
	return false;
}

/* Rewrites the file, SIGHUPs gorod and waits until its stats show the
 * marker limit (the reload applies everything at once). */
static void reload(const char *extra, const char *marker, long long want, const char *what)
{
	write_conf(extra);
	if (kill(h.pid, SIGHUP) < 0)
		bail_out("kill -HUP: %s", strerror(errno));
	wait_quota((uid_t)-1, marker, want, what);
}

/* Other users may reach the socket (the test gives it mode 0666 unless a
 * part says otherwise). */
static void share_socket(struct harness *hh)
{
	if (chmod(hh->dir, 0711) < 0 || chown(hh->sock, 0, 0) < 0 || chmod(hh->sock, 0666) < 0)
		bail_out("chmod %s: %s", hh->sock, strerror(errno));
}

/* ---- agents: children acting as another user --------------------------------- */

enum op {
	OP_CONNECT,  /* slot: connect and say hello */
	OP_CLOSE,    /* slot */
	OP_LOCK,     /* slot name n=timeout_ms (0: try) */
	OP_UNLOCK,   /* slot name */
	OP_WG_ADD,   /* slot name n=delta */
	OP_WG_DONE,  /* slot name */
	OP_WG_WAITS, /* slot name n=how many wg.wait to send, pipelined */
	OP_PUMP,     /* slot n=replies to wait for: res v=ok, w=EAGAIN, x=other */
	OP_SPAWN,    /* slot text=command (sh -c), or func sleep n ms when text is empty;
		      * name: the wg option, if any */
	OP_KILL,     /* slot n=id */
	OP_WAIT,     /* slot n=id: res v=stdout_bytes, w=stdout_cut, x=state */
	OP_STATS,    /* slot */
	OP_CTL,      /* text: goroctl's arguments, \x1f-separated: rc=exit, msg=stderr */
	OP_RAW,      /* a raw connection: msg = what gorod sent first, then its reply */
	OP_MEASURE,  /* slot n=pairs: lock+unlock round trips, v=median ns, w=p90 ns */
	OP_EXIT,
};

struct cmd {
	int op, slot;
	int64_t n;
	char name[128];
	char text[512];
};

struct res {
	int rc;
	int64_t v, w, x;
	size_t len;
	char msg[2048];
};

struct agent {
	pid_t pid;
	uid_t uid;
	int cmd, res; /* the parent's ends */
	const char *sock;
	int nice;     /* its priority (set before it drops root) */
};

/* In the child: the replies of pipelined requests. */
static struct {
	int ok, eagain, other;
	char msg[512];
} got;

static void on_reply(void *arg, int err, const struct goro_reply *r)
{
	(void)arg;
	if (err == 0) {
		got.ok++;
		return;
	}
	if (err == -EAGAIN)
		got.eagain++;
	else
		got.other++;
	snprintf(got.msg, sizeof got.msg, "%s: %s", goro_err_name(err), r && r->message ? r->message : "");
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Runs goroctl (args \x1f-separated) as this process's user; its stderr
 * into msg. Returns the exit status, or -1. */
static int run_ctl(const char *sock, const char *args, char *msg, size_t size)
{
	char buf[512], *argv[24], *save = NULL;
	int n = 0, p[2], st;
	size_t len = 0;
	pid_t pid;

	snprintf(buf, sizeof buf, "%s", args);
	argv[n++] = (char *)goroctl;
	argv[n++] = "--socket";
	argv[n++] = (char *)sock;
	for (char *w = strtok_r(buf, "\x1f", &save); w && n < 23; w = strtok_r(NULL, "\x1f", &save))
		argv[n++] = w;
	argv[n] = NULL;
	if (pipe(p) < 0 || (pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(p[1], 2);
		execv(goroctl, argv);
		_exit(127);
	}
	close(p[1]);
	for (ssize_t r; len + 1 < size && (r = read(p[0], msg + len, size - 1 - len)) > 0;)
		len += (size_t)r;
	msg[len] = '\0';
	close(p[0]);
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Reads what fd gives within ms into buf at *len (one poll, then all). */
static void read_some(int fd, char *buf, size_t size, size_t *len, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t end = now_ns() + (int64_t)ms * 1000000;

	while (*len < size && poll(&p, 1, (int)((end - now_ns()) / 1000000)) > 0) {
		ssize_t n = read(fd, buf + *len, size - *len);
		if (n <= 0)
			break;
		*len += (size_t)n;
		p.events = POLLIN;
		if (poll(&p, 1, 50) <= 0) /* what follows at once, then stop */
			break;
	}
}

/* OP_RAW: connects with a plain socket, reads what gorod says unasked,
 * sends [0, 7, "stats", []] and reads the reply. */
static void raw_probe(const char *sock, struct res *r)
{
	static const char req[] = "\x94\x00\x07\xa5stats\x90";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		r->rc = -errno;
		return;
	}
	read_some(fd, r->msg, sizeof r->msg / 2, &r->len, 2000);
	r->v = (int64_t)r->len;
	if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
		r->rc = -errno;
	read_some(fd, r->msg, sizeof r->msg, &r->len, 2000);
	r->w = (int64_t)r->len - r->v;
	close(fd);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* OP_MEASURE: n lock+unlock round trips on cl, each timed. */
static void measure(goro_client *cl, int n, struct res *r)
{
	int64_t *t = calloc((size_t)n, sizeof *t);
	struct goro_grant g;

	if (!t) {
		r->rc = -ENOMEM;
		return;
	}
	for (int i = 0; i < n && r->rc == 0; i++) {
		int64_t t0 = now_ns();
		if ((r->rc = goro_mutex_lock(cl, "b-pair", GORO_WRITE, -1, 0, &g)) == 0)
			r->rc = goro_mutex_unlock(cl, "b-pair", 0, 0);
		t[i] = now_ns() - t0;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_i64);
	r->v = t[n / 2];
	r->w = t[n * 9 / 10];
	free(t);
}

static goro_client *slots[NSLOTS];

/* One operation in the child. */
static void agent_op(const struct agent *a, const struct cmd *k, struct res *r)
{
	goro_client **s = &slots[k->slot];
	struct goro_outcome o;
	struct goro_grant g;
	int64_t count;
	uint64_t id;

	memset(r, 0, sizeof *r);
	switch (k->op) {
	case OP_CONNECT:
		if ((r->rc = goro_connect(a->sock, s)) < 0) {
			*s = NULL;
			break;
		}
		r->rc = goro_hello(*s, "test_quota", NULL);
		break;
	case OP_CLOSE:
		goro_close(*s);
		*s = NULL;
		return;
	case OP_LOCK:
		r->rc = goro_mutex_lock(*s, k->name, GORO_WRITE, (int)k->n,
					k->n == 0 ? GORO_TRY : 0, &g);
		break;
	case OP_UNLOCK:
		r->rc = goro_mutex_unlock(*s, k->name, 0, 0);
		break;
	case OP_WG_ADD:
		r->rc = goro_wg_add(*s, k->name, k->n, 0, &count);
		break;
	case OP_WG_DONE:
		r->rc = goro_wg_done(*s, k->name, &count);
		break;
	case OP_WG_WAITS:
		memset(&got, 0, sizeof got);
		for (int i = 0; i < k->n && r->rc == 0; i++)
			r->rc = goro_send_wg_wait(*s, k->name, -1, on_reply, NULL);
		while (r->rc == 0 && (r->rc = goro_flush(*s)) == -EAGAIN)
			poll(&(struct pollfd){ .fd = goro_fd(*s), .events = POLLOUT }, 1, 100);
		return;
	case OP_PUMP: {
		int64_t end = now_ns() + (int64_t)WAIT_MS * 1000000;
		while (got.ok + got.eagain + got.other < k->n && now_ns() < end && r->rc >= 0) {
			poll(&(struct pollfd){ .fd = goro_fd(*s), .events = POLLIN }, 1, 100);
			r->rc = goro_process(*s);
		}
		r->rc = r->rc < 0 ? r->rc : 0;
		r->v = got.ok;
		r->w = got.eagain;
		r->x = got.other;
		snprintf(r->msg, sizeof r->msg, "%s", got.msg);
		memset(&got, 0, sizeof got);
		return;
	}
	case OP_SPAWN: {
		char ms[32];
		const char *args[] = { ms, NULL }, *argv[] = { "/bin/sh", "-c", k->text, NULL };
		struct goro_spawn sp = { .wg = k->name[0] ? k->name : NULL };
		snprintf(ms, sizeof ms, "%lld", (long long)k->n);
		if (k->text[0]) {
			sp.argv = argv;
		} else {
			sp.func = "sleep";
			sp.args = args;
		}
		r->rc = goro_spawn(*s, &sp, &id);
		r->v = (int64_t)id;
		break;
	}
	case OP_KILL:
		r->rc = goro_kill(*s, (uint64_t)k->n, SIGKILL);
		break;
	case OP_WAIT:
		r->rc = goro_wait(*s, (uint64_t)k->n, WAIT_MS, &o);
		if (r->rc == 0) {
			r->v = (int64_t)o.stdout_bytes;
			r->w = (int64_t)o.stdout_cut;
			r->x = o.state;
			goro_outcome_clear(&o);
		}
		break;
	case OP_STATS: {
		char *json = NULL;
		r->rc = goro_stats_json(*s, &json);
		free(json);
		break;
	}
	case OP_CTL:
		r->rc = run_ctl(a->sock, k->text, r->msg, sizeof r->msg);
		return;
	case OP_RAW:
		raw_probe(a->sock, r);
		return;
	case OP_MEASURE:
		measure(*s, (int)k->n, r);
		return;
	}
	if (r->rc < 0 && *s)
		snprintf(r->msg, sizeof r->msg, "%s", goro_last_error(*s));
}

/* The child: becomes uid (groups: ngroups of groups), serves commands. */
static _Noreturn void agent_main(const struct agent *a, int cmd, int res, const gid_t *groups,
				 int ngroups)
{
	struct cmd k;
	struct res r;

	if ((a->nice && setpriority(PRIO_PROCESS, 0, a->nice) < 0) ||
	    setgroups((size_t)ngroups, groups) < 0 || setgid(a->uid) < 0 || setuid(a->uid) < 0)
		_exit(2);
	while (harness_read_full(cmd, &k, sizeof k, 24 * 3600 * 1000) == 0 && k.op != OP_EXIT) {
		agent_op(a, &k, &r);
		if (harness_write_full(res, &r, sizeof r) < 0)
			break;
	}
	for (int i = 0; i < NSLOTS; i++)
		goro_close(slots[i]);
	_exit(0);
}

static void agent_start_nice(struct agent *a, uid_t uid, const char *sock, const gid_t *groups,
			     int ngroups, int nice)
{
	int cp[2], rp[2];

	memset(a, 0, sizeof *a);
	a->uid = uid;
	a->nice = nice;
	a->sock = sock;
	if (pipe(cp) < 0 || pipe(rp) < 0)
		bail_out("pipe: %s", strerror(errno));
	fflush(NULL);
	a->pid = fork();
	if (a->pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (a->pid == 0) {
		close(cp[1]);
		close(rp[0]);
		agent_main(a, cp[0], rp[1], groups, ngroups);
	}
	close(cp[0]);
	close(rp[1]);
	a->cmd = cp[1];
	a->res = rp[0];
}

static void agent_start_groups(struct agent *a, uid_t uid, const char *sock, const gid_t *groups,
			       int ngroups)
{
	agent_start_nice(a, uid, sock, groups, ngroups, 0);
}

static void agent_start(struct agent *a, uid_t uid)
{
	agent_start_groups(a, uid, h.sock, NULL, 0);
}

static struct res agent_do(struct agent *a, int op, int slot, int64_t n, const char *name,
			   const char *text)
{
	struct cmd k = { .op = op, .slot = slot, .n = n };
	struct res r;

	snprintf(k.name, sizeof k.name, "%s", name ? name : "");
	snprintf(k.text, sizeof k.text, "%s", text ? text : "");
	if (harness_write_full(a->cmd, &k, sizeof k) < 0 ||
	    harness_read_full(a->res, &r, sizeof r, harness_timeout(6 * WAIT_MS)) < 0)
		bail_out("the agent of uid %u does not answer", (unsigned)a->uid);
	r.msg[sizeof r.msg - 1] = '\0';
	return r;
}

static void agent_stop(struct agent *a)
{
	struct cmd k = { .op = OP_EXIT };
	int st = -1;

	harness_write_full(a->cmd, &k, sizeof k);
	if (harness_wait_pid(a->pid, WAIT_MS, &st) < 0)
		harness_kill_all(&a->pid, 1);
	close(a->cmd);
	close(a->res);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the agent of uid %u ends (status %#x)",
	   (unsigned)a->uid, st);
}

/* Shorthands. */
static int do_rc(struct agent *a, int op, int slot, int64_t n, const char *name)
{
	struct res r = agent_do(a, op, slot, n, name, NULL);

	if (r.rc < 0 && r.msg[0])
		diag("uid %u: %s: %s", (unsigned)a->uid, goro_err_name(r.rc), r.msg);
	return r.rc;
}

static bool says(const char *msg, const char *a, const char *b)
{
	bool yes = strstr(msg, a) && (!b || strstr(msg, b));

	if (!yes)
		diag("the message: %s", msg);
	return yes;
}

/* Every count of uid back to 0 (its entry may stay while finished tasks
 * are kept: their output counts). */
static void counts_zero(uid_t uid, const char *what, bool output_too)
{
	char w[160];
	static const char *const keys[] = { "sessions", "requests", "tasks", "names" };

	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		long long want = uid == UID_A && i == 3 ? a_names_kept : 0;
		snprintf(w, sizeof w, "%s: uid %u's %s count is back to %lld", what, (unsigned)uid,
			 keys[i], want);
		wait_quota(uid, keys[i], want, w);
	}
	if (output_too) {
		snprintf(w, sizeof w, "%s: uid %u's output count is back to 0", what, (unsigned)uid);
		wait_quota(uid, "output", 0, w);
	}
}

/* ---- sessions ------------------------------------------------------------------- */

static void test_sessions(void)
{
	struct agent a, b;
	struct res r;
	long long v = -1;

	share_socket(&h);
	agent_start(&a, UID_A);
	agent_start(&b, UID_B);
	for (int i = 0; i < 4; i++)
		is(do_rc(&a, OP_CONNECT, i, 0, NULL), 0, "sessions: A's session %d is served", i + 1);
	r = agent_do(&a, OP_CONNECT, 4, 0, NULL, NULL);
	is(r.rc, -EAGAIN, "sessions: A's fifth is refused with EAGAIN");
	ok(says(r.msg, "uid 65534 has 4 sessions", "(limit sessions-per-user)"),
	   "sessions: the message says who, how many and which limit");
	ok(says(r.msg, "gorod.conf", NULL), "sessions: and where to raise it");
	is(quota_stat(UID_A, "sessions", &v), 0, "sessions: stats");
	is(v, 4, "sessions: stats count A's 4 sessions");
	quota_stat(UID_A, "sessions-per-user", &v);
	is(v, 1, "sessions: and one refusal");

	/* B, at the same moment. */
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "sessions: B connects meanwhile");
	is(do_rc(&b, OP_LOCK, 0, -1, "b"), 0, "sessions: B locks");
	is(do_rc(&b, OP_UNLOCK, 0, 0, "b"), 0, "sessions: B unlocks");

	/* On the wire: the notification first, then the error reply. */
	r = agent_do(&a, OP_RAW, 0, 0, NULL, NULL);
	is(r.rc, 0, "sessions: a raw connection of A");
	ok(r.v > 0 && memmem(r.msg, (size_t)r.v, "\x93\x02\xa7refused\x92\xa6" "EAGAIN", 18),
	   "sessions: gorod sends [2, \"refused\", [\"EAGAIN\", ...]] at once");
	ok(r.v > 0 && memmem(r.msg, (size_t)r.v, "limit sessions-per-user", 23),
	   "sessions: naming the limit");
	ok(r.w > 0 && memmem(r.msg + r.v, (size_t)r.w, "\x94\x01\x07\x92\xa6" "EAGAIN", 11),
	   "sessions: and answers a request with that error");

	/* goroctl. */
	r = agent_do(&a, OP_CTL, 0, 0, NULL, "stats");
	is(r.rc, 1, "sessions: goroctl stats as A fails (exit 1)");
	ok(says(r.msg, "limit sessions-per-user", "hint:"), "sessions: goroctl names the limit, with a hint");

	/* A frees one and goes on. */
	agent_do(&a, OP_CLOSE, 3, 0, NULL, NULL);
	wait_quota(UID_A, "sessions", 3, "sessions: gorod notices A's session ended");
	is(do_rc(&a, OP_CONNECT, 4, 0, NULL), 0, "sessions: then A's next connection is served");
	is(do_rc(&a, OP_LOCK, 4, -1, "a"), 0, "sessions: and works");
	is(do_rc(&a, OP_UNLOCK, 4, 0, "a"), 0, "sessions: unlock");

	agent_stop(&a);
	agent_stop(&b);
	counts_zero(UID_A, "sessions", true);
	counts_zero(UID_B, "sessions", true);
}

/* ---- requests in flight ------------------------------------------------------------ */

static void test_requests(void)
{
	struct agent a, b;
	struct res r;
	int64_t count;
	long long v = -1;

	share_socket(&h);
	agent_start(&a, UID_A);
	agent_start(&b, UID_B);
	is(goro_wg_add(c, "gate", 1, 0, &count), 0, "requests: root closes the gate (wg add 1)");
	is(do_rc(&a, OP_CONNECT, 0, 0, NULL), 0, "requests: A connects");
	is(do_rc(&a, OP_CONNECT, 1, 0, NULL), 0, "requests: A connects again");
	is(do_rc(&a, OP_LOCK, 1, -1, "held"), 0, "requests: A holds a lock");
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "requests: B connects");

	is(do_rc(&a, OP_WG_WAITS, 0, 7, "gate"), 0, "requests: A sends 7 wg.wait, pipelined");
	r = agent_do(&a, OP_PUMP, 0, 1, NULL, NULL);
	ok(r.rc == 0 && r.w == 1 && r.v == 0 && r.x == 0, "requests: the 7th is refused at once "
	   "(ok %lld, EAGAIN %lld, other %lld)", (long long)r.v, (long long)r.w, (long long)r.x);
	ok(says(r.msg, "uid 65534 has 6 requests in flight", "(limit requests-per-user)"),
	   "requests: the message names the limit");
	is(quota_stat(UID_A, "requests", &v), 0, "requests: stats");
	is(v, 6, "requests: stats count A's 6 waiting");

	r = agent_do(&a, OP_LOCK, 1, -1, "other", NULL);
	is(r.rc, -EAGAIN, "requests: A's lock on another session is refused too (per user)");
	ok(says(r.msg, "limit requests-per-user", NULL), "requests: naming the limit");
	is(do_rc(&a, OP_UNLOCK, 1, 0, "held"), 0, "requests: A's unlock is never refused");
	is(do_rc(&a, OP_WG_ADD, 1, 1, "w"), 0, "requests: nor wg add");
	is(do_rc(&a, OP_WG_DONE, 1, 0, "w"), 0, "requests: nor wg done");
	is(do_rc(&a, OP_STATS, 1, 0, NULL), 0, "requests: nor stats");

	is(do_rc(&b, OP_LOCK, 0, -1, "b"), 0, "requests: B locks meanwhile");
	is(do_rc(&b, OP_UNLOCK, 0, 0, "b"), 0, "requests: B unlocks");
	is(do_rc(&b, OP_LOCK, 0, 0, "held-by-root"), 0, "requests: B's try lock");
	is(do_rc(&b, OP_UNLOCK, 0, 0, "held-by-root"), 0, "requests: and unlock");

	is(goro_wg_done(c, "gate", &count), 0, "requests: root opens the gate");
	r = agent_do(&a, OP_PUMP, 0, 6, NULL, NULL);
	ok(r.rc == 0 && r.v == 6, "requests: A's 6 waits are answered (ok %lld)", (long long)r.v);
	wait_quota(UID_A, "requests", 0, "requests: A has none in flight");
	is(do_rc(&a, OP_LOCK, 1, -1, "other"), 0, "requests: then A's lock is served");
	is(do_rc(&a, OP_UNLOCK, 1, 0, "other"), 0, "requests: unlock");
	agent_stop(&a);
	agent_stop(&b);
	counts_zero(UID_A, "requests", true);
}

/* ---- tasks ---------------------------------------------------------------------- */

static void test_tasks(void)
{
	struct agent a, b;
	struct res r;
	int64_t ids[3];
	long long v = -1;

	share_socket(&h);
	agent_start(&a, UID_A);
	agent_start(&b, UID_B);
	is(do_rc(&a, OP_CONNECT, 0, 0, NULL), 0, "tasks: A connects");
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "tasks: B connects");
	for (int i = 0; i < 3; i++) {
		r = agent_do(&a, OP_SPAWN, 0, 600000, NULL, NULL);
		is(r.rc, 0, "tasks: A spawns task %d (sleep)", i + 1);
		ids[i] = r.v;
	}
	r = agent_do(&a, OP_SPAWN, 0, 600000, NULL, NULL);
	is(r.rc, -EAGAIN, "tasks: A's fourth spawn is refused with EAGAIN");
	ok(says(r.msg, "uid 65534 has 3 live tasks", "(limit tasks-per-user)"),
	   "tasks: the message names the limit");
	r = agent_do(&a, OP_CTL, 0, 0, NULL, "spawn\x1f--\x1ftrue");
	is(r.rc, 1, "tasks: goroctl spawn as A fails (exit 1)");
	ok(says(r.msg, "limit tasks-per-user", "hint:"), "tasks: goroctl names the limit, with a hint");
	is(quota_stat(UID_A, "tasks", &v), 0, "tasks: stats");
	is(v, 3, "tasks: stats count A's 3 live tasks");

	r = agent_do(&b, OP_SPAWN, 0, 600000, NULL, NULL);
	is(r.rc, 0, "tasks: B spawns meanwhile");
	is(do_rc(&b, OP_KILL, 0, r.v, NULL), 0, "tasks: B kills its task");
	is(do_rc(&b, OP_WAIT, 0, r.v, NULL), 0, "tasks: which ends");

	is(do_rc(&a, OP_KILL, 0, ids[0], NULL), 0, "tasks: A kills one");
	is(do_rc(&a, OP_WAIT, 0, ids[0], NULL), 0, "tasks: it ends");
	r = agent_do(&a, OP_SPAWN, 0, 600000, NULL, NULL);
	is(r.rc, 0, "tasks: then A spawns again");
	ids[0] = r.v;
	for (int i = 0; i < 3; i++) {
		do_rc(&a, OP_KILL, 0, ids[i], NULL);
		do_rc(&a, OP_WAIT, 0, ids[i], NULL);
	}
	agent_stop(&a);
	agent_stop(&b);
	counts_zero(UID_A, "tasks", true);
}

/* ---- named primitives -------------------------------------------------------------- */

static void test_names(void)
{
	struct agent a, b;
	struct res r;
	char name[16];
	long long v = -1;

	share_socket(&h);
	agent_start(&a, UID_A);
	agent_start(&b, UID_B);
	is(do_rc(&a, OP_CONNECT, 0, 0, NULL), 0, "names: A connects");
	is(do_rc(&a, OP_CONNECT, 1, 0, NULL), 0, "names: A connects again");
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "names: B connects");
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof name, "n%d", i);
		is(do_rc(&a, OP_LOCK, 0, -1, name), 0, "names: A locks %s", name);
	}
	r = agent_do(&a, OP_LOCK, 0, -1, "n5", NULL);
	is(r.rc, -EAGAIN, "names: A's sixth name is refused with EAGAIN");
	ok(says(r.msg, "uid 65534 has 5 named primitives", "(limit names-per-user)"),
	   "names: the message names the limit");
	is(agent_do(&a, OP_WG_ADD, 1, 1, "w", NULL).rc, -EAGAIN, "names: so is a new WaitGroup");
	is(agent_do(&a, OP_SPAWN, 1, 1, "w", NULL).rc, -EAGAIN, "names: and a spawn whose wg is new");
	is(do_rc(&a, OP_WG_ADD, 1, -1, "w"), GORO_ENEGATIVE, "names: a negative add is not refused "
	   "by the limit (ENEGATIVE)");
	is(do_rc(&a, OP_LOCK, 1, 0, "n0"), -EBUSY, "names: a name that exists is no new name (EBUSY)");
	is(quota_stat(UID_A, "names", &v), 0, "names: stats");
	is(v, 5, "names: stats count A's 5 names");
	is(do_rc(&b, OP_LOCK, 0, -1, "n5"), 0, "names: B locks that name meanwhile");
	is(do_rc(&b, OP_UNLOCK, 0, 0, "n5"), 0, "names: B unlocks");

	is(do_rc(&a, OP_UNLOCK, 0, 0, "n4"), 0, "names: A unlocks one (gorod forgets the name)");
	is(do_rc(&a, OP_LOCK, 0, -1, "n5"), 0, "names: then A's new name is served");
	is(do_rc(&a, OP_UNLOCK, 0, 0, "n5"), 0, "names: unlock");
	r = agent_do(&a, OP_SPAWN, 1, 1, "w", NULL); /* a 1 ms sleep bound to wg w */
	is(r.rc, 0, "names: and a spawn with a new wg");
	is(do_rc(&a, OP_WAIT, 1, r.v, NULL), 0, "names: which ends");
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "n%d", i);
		do_rc(&a, OP_UNLOCK, 0, 0, name);
	}
	agent_stop(&a);
	agent_stop(&b);
	/* The group of a spawn --wg is kept for the retention age once its
	 * round saw tasks; it stays charged to A until forgotten. */
	a_names_kept = 1;
	counts_zero(UID_A, "names: only the spawn's WaitGroup stays charged to A;", false);
	counts_zero(UID_B, "names", false);
}

/* ---- output --------------------------------------------------------------------------- */

#define MIB_CMD "head -c 1048576 /dev/zero"

static void test_output(void)
{
	struct agent a, b;
	struct res r;
	long long v = -1;

	share_socket(&h);
	agent_start(&a, UID_A);
	agent_start(&b, UID_B);
	is(do_rc(&a, OP_CONNECT, 0, 0, NULL), 0, "output: A connects");
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "output: B connects");
	r = agent_do(&a, OP_SPAWN, 0, 0, NULL, MIB_CMD);
	is(r.rc, 0, "output: A spawns a task writing 1 MiB");
	r = agent_do(&a, OP_WAIT, 0, r.v, NULL, NULL);
	ok(r.rc == 0 && r.x == GORO_TASK_EXITED && r.v == 1048576 && r.w == 0,
	   "output: all of it is kept (bytes %lld, cut %lld)", (long long)r.v, (long long)r.w);
	r = agent_do(&a, OP_SPAWN, 0, 0, NULL, MIB_CMD);
	is(r.rc, 0, "output: A spawns another");
	r = agent_do(&a, OP_WAIT, 0, r.v, NULL, NULL);
	ok(r.rc == 0 && r.x == GORO_TASK_EXITED && r.v == 1048576,
	   "output: past output-per-user the task still runs and exits");
	ok(r.w >= 1048576 - 512 * 1024, "output: its ring stopped growing: %lld bytes cut", (long long)r.w);
	quota_stat(UID_A, "output", &v);
	ok(v > 1048576 && v <= 1280 * 1024, "output: stats count A's kept output (%lld)", v);
	quota_stat(UID_A, "output-per-user", &v);
	ok(v >= 1, "output: and refusals to grow (%lld)", v);

	r = agent_do(&b, OP_SPAWN, 0, 0, NULL, MIB_CMD);
	is(r.rc, 0, "output: B spawns a task writing 1 MiB meanwhile");
	r = agent_do(&b, OP_WAIT, 0, r.v, NULL, NULL);
	ok(r.rc == 0 && r.v == 1048576 && r.w == 0, "output: B keeps all of it (cut %lld)", (long long)r.w);

	/* A's finished tasks go (retention), and with them the charge. */
	reload("output-per-user = 1281K\nkeep-tasks = 0\n", "output-per-user", 1281 * 1024,
	       "output: reloaded with keep-tasks 0");
	r = agent_do(&a, OP_SPAWN, 0, 1, NULL, NULL);
	is(r.rc, 0, "output: A's next task ends and retention lets the old ones go");
	wait_quota(UID_A, "output", 0, "output: A's output count is back to 0");
	reload("output-per-user = 1280K\n", "output-per-user", 1280 * 1024,
	       "output: reloaded with keep-tasks back");
	r = agent_do(&a, OP_SPAWN, 0, 0, NULL, MIB_CMD);
	r = agent_do(&a, OP_WAIT, 0, r.v, NULL, NULL);
	ok(r.rc == 0 && r.v == 1048576 && r.w == 0, "output: then A keeps all of 1 MiB again "
	   "(cut %lld)", (long long)r.w);
	agent_stop(&a);
	agent_stop(&b);
	counts_zero(UID_A, "output", false);
}

/* ---- reload ---------------------------------------------------------------------------- */

static void test_reload(void)
{
	struct agent a;
	struct res r;
	char name[16];

	share_socket(&h);
	agent_start(&a, UID_A);
	reload("output-per-user = 1280K\nsessions-per-user = 2\nnames-per-user = 0\n",
	       "sessions-per-user", 2, "reload: SIGHUP lowers sessions-per-user to 2");
	is(do_rc(&a, OP_CONNECT, 0, 0, NULL), 0, "reload: A's first session");
	is(do_rc(&a, OP_CONNECT, 1, 0, NULL), 0, "reload: A's second");
	r = agent_do(&a, OP_CONNECT, 2, 0, NULL, NULL);
	ok(r.rc == -EAGAIN && says(r.msg, "has 2 sessions", NULL), "reload: the third is refused");
	for (int i = 0; i < 7; i++) {
		snprintf(name, sizeof name, "r%d", i);
		if (do_rc(&a, OP_LOCK, 0, -1, name) != 0)
			break;
	}
	is(do_rc(&a, OP_LOCK, 0, -1, "r7"), 0, "reload: names-per-user 0 is no limit (8 names)");
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof name, "r%d", i);
		do_rc(&a, OP_UNLOCK, 0, 0, name);
	}
	reload("output-per-user = 1280K\n", "sessions-per-user", 4,
	       "reload: SIGHUP raises it to 4 again");
	is(do_rc(&a, OP_CONNECT, 2, 0, NULL), 0, "reload: then the third is served");
	agent_stop(&a);
	counts_zero(UID_A, "reload", false);
}

/* ---- the socket's permissions and the peer's credentials ---------------------------------- */

static void test_socket(void)
{
	gid_t g = GID_SOCKET;
	struct agent m, o;
	struct res r;
	char *json = NULL, pat[64];

	if (chmod(h.dir, 0711) < 0 || chown(h.sock, 0, GID_SOCKET) < 0 || chmod(h.sock, 0660) < 0)
		bail_out("chgrp %s: %s", h.sock, strerror(errno));
	agent_start_groups(&m, UID_MEMBER, h.sock, &g, 1);
	agent_start(&o, UID_OUTSIDER);
	is(do_rc(&m, OP_CONNECT, 0, 0, NULL), 0, "socket: a member of the socket's group connects");
	is(goro_stats_json(c, &json), 0, "socket: stats");
	snprintf(pat, sizeof pat, "\"uid\":%u,\"gid\":%u,", UID_MEMBER, UID_MEMBER);
	ok(json && strstr(json, pat), "socket: gorod has its uid and gid from SO_PEERCRED");
	snprintf(pat, sizeof pat, "{\"uid\":%u,", UID_MEMBER);
	ok(json && strstr(json, pat), "socket: and counts it as that user");
	free(json);
	is(do_rc(&m, OP_LOCK, 0, -1, "m"), 0, "socket: it locks");
	is(do_rc(&m, OP_UNLOCK, 0, 0, "m"), 0, "socket: and unlocks");

	is(do_rc(&o, OP_CONNECT, 0, 0, NULL), -EACCES, "socket: another user gets EACCES at connect");
	r = agent_do(&o, OP_CTL, 0, 0, NULL, "stats");
	is(r.rc, 1, "socket: goroctl as that user fails (exit 1)");
	ok(says(r.msg, "permission denied", "hint:"), "socket: saying why, with a hint");
	snprintf(pat, sizeof pat, "group ");
	ok(says(r.msg, pat, "usermod -aG"), "socket: which names the socket's group and how to join it");
	agent_stop(&m);
	agent_stop(&o);
	share_socket(&h);
	counts_zero(UID_MEMBER, "socket", true);
}

/* ---- the flood ------------------------------------------------------------------------------ */

#define FLOOD_PROCS 4
#define FLOOD_SESSIONS 8     /* per process: 32 in all, within sessions-per-user */
#define FLOOD_CHUNK_PAIRS 256 /* lock+unlock pairs per pre-packed chunk */
#define FLOOD_SPAWN_EVERY 16  /* pairs per spawn (func noop) */
#define FLOOD_BUSY 30          /* percent of gorod's 2 CPUs that makes a flood heavy */
#define FLOOD_ROUNDS 5        /* measurements of B under the flood, at most */

/* What the flooders report. */
struct flood {
	atomic_int stop;
	atomic_int ready;
	_Atomic uint64_t sent, received; /* bytes */
	atomic_int failed;               /* a connection gorod closed */
};

/* msgpack, by hand: the flood's requests are packed once. */
static size_t mp_str(char *p, const char *s)
{
	size_t n = strlen(s);

	p[0] = (char)(0xa0 | n); /* fixstr: n < 32 */
	memcpy(p + 1, s, n);
	return n + 1;
}

/* [0, 0, method, [name]] */
static size_t mp_req(char *p, const char *method, const char *name)
{
	size_t n = 0;

	p[n++] = (char)0x94;
	p[n++] = 0;
	p[n++] = 0;
	n += mp_str(p + n, method);
	p[n++] = (char)0x91;
	n += mp_str(p + n, name);
	return n;
}

/* [0, 0, "spawn", [{func: "noop"}]] */
static size_t mp_spawn(char *p)
{
	size_t n = 0;

	p[n++] = (char)0x94;
	p[n++] = 0;
	p[n++] = 0;
	n += mp_str(p + n, "spawn");
	p[n++] = (char)0x91;
	p[n++] = (char)0x81;
	n += mp_str(p + n, "func");
	n += mp_str(p + n, "noop");
	return n;
}

/* A process that keeps a CPU busy at SCHED_IDLE (it runs only when nothing
 * else wants the CPU) until killed: for B's unloaded measurement, so that
 * the CPUs are as awake as under the flood. */
static pid_t spinner_start(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		if (sched_setscheduler(0, SCHED_IDLE, &(struct sched_param){ 0 }) < 0)
			_exit(2);
		for (volatile unsigned long n = 0;; n++)
			;
	}
	return pid;
}

/* One flooding connection: a raw socket that is written the chunk over and
 * over, as fast as gorod reads it, and read (and the replies dropped) as
 * fast as gorod answers: no window, no parsing, so that a few client
 * processes can keep gorod busy however fast it is. */
struct flooder {
	int fd;
	char chunk[FLOOD_CHUNK_PAIRS * 64];
	size_t len, off;
};

static _Noreturn void flooder_main(struct flood *f, const char *sock, int proc)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static struct flooder fl[FLOOD_SESSIONS];
	struct pollfd pf[FLOOD_SESSIONS];
	static char sink[256 * 1024];

	if (sched_setscheduler(0, SCHED_IDLE, &(struct sched_param){ 0 }) < 0 ||
	    setgroups(0, NULL) < 0 || setgid(UID_A) < 0 || setuid(UID_A) < 0)
		_exit(2);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
	for (int i = 0; i < FLOOD_SESSIONS; i++) {
		char name[32];
		struct flooder *x = &fl[i];

		snprintf(name, sizeof name, "flood-%d-%d", proc, i);
		for (int k = 0; k < FLOOD_CHUNK_PAIRS; k++) {
			x->len += mp_req(x->chunk + x->len, "mutex.lock", name);
			x->len += mp_req(x->chunk + x->len, "mutex.unlock", name);
			if (k % FLOOD_SPAWN_EVERY == 0)
				x->len += mp_spawn(x->chunk + x->len);
		}
		x->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (x->fd < 0 || connect(x->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
			_exit(3);
	}
	atomic_fetch_add(&f->ready, 1);
	while (!atomic_load(&f->stop)) {
		for (int i = 0; i < FLOOD_SESSIONS; i++)
			pf[i] = (struct pollfd){ .fd = fl[i].fd, .events = POLLIN | POLLOUT };
		if (poll(pf, FLOOD_SESSIONS, 100) <= 0)
			continue;
		for (int i = 0; i < FLOOD_SESSIONS; i++) {
			struct flooder *x = &fl[i];
			ssize_t n;

			if (pf[i].revents & (POLLHUP | POLLERR)) {
				atomic_store(&f->failed, 1);
				_exit(4);
			}
			while ((pf[i].revents & POLLIN) && (n = read(x->fd, sink, sizeof sink)) > 0)
				atomic_fetch_add_explicit(&f->received, (uint64_t)n, memory_order_relaxed);
			if (!(pf[i].revents & POLLOUT))
				continue;
			while ((n = write(x->fd, x->chunk + x->off, x->len - x->off)) > 0) {
				atomic_fetch_add_explicit(&f->sent, (uint64_t)n, memory_order_relaxed);
				x->off = (x->off + (size_t)n) % x->len;
			}
		}
	}
	_exit(0);
}

/* The requests uid A's sessions have made so far (stats: the sum over its
 * sessions), or -1. */
static long long requests_of(goro_client *cl, uid_t uid)
{
	char *json = NULL, pat[48];
	long long sum = 0, v;
	const char *p;

	if (goro_stats_json(cl, &json) < 0)
		return -1;
	snprintf(pat, sizeof pat, "\"uid\":%u,\"gid\"", (unsigned)uid);
	for (p = strstr(json, pat); p; p = strstr(p + 1, pat))
		if (harness_json_int(p, "requests", &v) == 0)
			sum += v;
	free(json);
	return sum;
}

/* The CPU time process pid used so far, in ms (-1: unknown). */
static long long cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return -1;
	p = fgets(buf, sizeof buf, f);
	fclose(f);
	if (!p || !(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st) * 1000 / sysconf(_SC_CLK_TCK);
}

/* The CPU time the machine spent on other processes than the flood's (the
 * flooders, B, its gorod, this test), in ms: /proc/stat's busy time minus
 * theirs. */
static long long others_cpu_ms(const pid_t *flooders, pid_t b, pid_t gorod)
{
	unsigned long long v[8] = { 0 };
	long long busy, ours = cpu_ms(b) + cpu_ms(gorod) + cpu_ms(getpid());
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return 0;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 8) {
		fclose(f);
		return 0;
	}
	fclose(f);
	busy = (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000 / sysconf(_SC_CLK_TCK);
	for (int i = 0; i < FLOOD_PROCS; i++)
		ours += flooders[i] ? cpu_ms(flooders[i]) : 0;
	return busy - ours;
}

/* Sets the priority of every thread of process pid. */
static int renice_all(pid_t pid, int prio)
{
	char dir[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
	if (!(d = opendir(dir)))
		return -errno;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' && setpriority(PRIO_PROCESS, (id_t)atoi(e->d_name), prio) == 0)
			n++;
	closedir(d);
	return n;
}

/* The flood. What is measured is gorod's fairness between sessions:
 * whether B's request waits inside gorod behind A's backlog. So the kernel
 * is kept out of it as far as it can be on two CPUs:
 *
 * - the flooders run at SCHED_IDLE: the kernel preempts them at once for
 *   gorod or B, and they get every cycle those do not ask for, so the
 *   flood is as heavy as the machine allows. At an ordinary priority a
 *   woken gorod worker or B waits up to a scheduler slice (EEVDF protects
 *   the running task's slice) behind a flooder, which no order inside
 *   gorod can help;
 * - gorod's threads and B's process run at nice -10 (the flooders' own
 *   share does not matter, and other processes of the machine matter
 *   less);
 * - B's unloaded median is measured while two SCHED_IDLE spinners keep
 *   the CPUs busy, as the flood does: on idle CPUs each wakeup pays for
 *   leaving a sleep state, and the unloaded baseline would be up to twice
 *   as slow as the loaded one for that alone;
 * - each round measures B unloaded (the flooders stopped with SIGSTOP, the
 *   spinners running) and then loaded (the spinners stopped, the flood
 *   back on), and compares the two: these machines pass work between
 *   their CPUs at one speed for minutes and then at a third of it, and a
 *   baseline taken once, at the other speed, made the ratio 0.7 or 3 for
 *   the same gorod. */
static void test_flood(void)
{
	struct flood *f = mmap(NULL, sizeof *f, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int pairs = (int)tap_scale(3000, 1000);
	pid_t pids[FLOOD_PROCS] = { 0 }, spinners[2];
	struct harness h2;
	struct agent b;
	struct res un, lo;
	int64_t t0, t1;
	goro_client *c2;
	long long goroutines = 0, cpu0, cpu1, r0, r1, rate = 0;
	double ratio;
	bool done = false;
	int heavy = 0;
	int64_t best = 0, best_un = 0;
	double best_ratio = 0;

	if (f == MAP_FAILED)
		bail_out("mmap: %s", strerror(errno));
	memset(f, 0, sizeof *f);
	if (harness_start(&h2, NULL, 30000) < 0) {
		ok(0, "flood: a gorod with the default limits starts");
		return;
	}
	share_socket(&h2);
	if (goro_connect(h2.sock, &c2) < 0 || harness_stat(c2, "goroutines.live", &goroutines) < 0)
		bail_out("connect to %s", h2.sock);
	if (renice_all(h2.pid, -10) < 1)
		bail_out("renice gorod: %s", strerror(errno));
	agent_start_nice(&b, UID_B, h2.sock, NULL, 0, -10);
	is(do_rc(&b, OP_CONNECT, 0, 0, NULL), 0, "flood: B connects");
	for (int i = 0; i < 2; i++)
		spinners[i] = spinner_start();
	agent_do(&b, OP_MEASURE, 0, pairs / 4, NULL, NULL); /* warm up */
	un = agent_do(&b, OP_MEASURE, 0, pairs, NULL, NULL);
	is(un.rc, 0, "flood: B's %d lock+unlock round trips, unloaded", pairs);

	for (int i = 0; i < FLOOD_PROCS; i++) {
		fflush(NULL);
		if ((pids[i] = fork()) < 0)
			bail_out("fork: %s", strerror(errno));
		if (pids[i] == 0)
			flooder_main(f, h2.sock, i);
	}
	/* Up to FLOOD_ROUNDS rounds, until one with a heavy flood is within
	 * 2x. A round's flood is heavy when it kept gorod busy for at least
	 * FLOOD_BUSY percent of its two CPUs (B's own part is a few percent)
	 * and A sent at least 5 requests in the time of one unloaded B round
	 * trip (B sends 2). Other processes on a shared machine can starve
	 * the flooders, which run at SCHED_IDLE, and take the CPUs for
	 * milliseconds at a time: each round says how much they took, and
	 * when no round had a heavy flood the comparison is skipped, saying
	 * so. A gorod that lets a flood keep B waiting fails every round:
	 * before the readers' turns and the polls of busy workers, B's loaded
	 * median was 50 to 60 times its unloaded one. */
	for (int round = 1; round <= FLOOD_ROUNDS && !done; round++) {
		long long others0, others1;

		if (round > 1) {
			/* Unloaded, at the machine's speed of the moment. */
			harness_signal_all(pids, FLOOD_PROCS, SIGSTOP);
			harness_signal_all(spinners, 2, SIGCONT);
			un = agent_do(&b, OP_MEASURE, 0, pairs, NULL, NULL);
			if (un.rc < 0)
				break;
			harness_signal_all(pids, FLOOD_PROCS, SIGCONT);
		}
		harness_signal_all(spinners, 2, SIGSTOP);
		/* The flood is on once every flooder is connected and gorod
		 * has answered a few MiB more. */
		uint64_t from = atomic_load(&f->received);
		t0 = harness_now_ms();
		while ((atomic_load(&f->ready) < FLOOD_PROCS ||
			atomic_load(&f->received) - from < (8u << 20)) &&
		       harness_now_ms() - t0 < 30000 && !atomic_load(&f->failed))
			poll(NULL, 0, 5);

		others0 = others_cpu_ms(pids, b.pid, h2.pid);
		r0 = requests_of(c2, UID_A);
		t0 = harness_now_ms();
		cpu0 = cpu_ms(h2.pid);
		lo = agent_do(&b, OP_MEASURE, 0, pairs, NULL, NULL);
		cpu1 = cpu_ms(h2.pid);
		t1 = harness_now_ms();
		r1 = requests_of(c2, UID_A);
		others1 = others_cpu_ms(pids, b.pid, h2.pid);
		if (lo.rc < 0)
			break;
		ratio = un.v > 0 ? (double)lo.v / (double)un.v : 0;
		rate = t1 > t0 ? (r1 - r0) * 1000 / (t1 - t0) : 0;
		diag("flood: round %d: B's lock+unlock median: unloaded %lld us, loaded %lld us, "
		     "ratio %.2f (p90 %lld us -> %lld us); A: %lld requests/s from %d sessions "
		     "meanwhile; gorod busy %lld%% of 2 CPUs, other processes %lld%%, for %lld ms",
		     round, (long long)un.v / 1000, (long long)lo.v / 1000, ratio,
		     (long long)un.w / 1000, (long long)lo.w / 1000, rate,
		     FLOOD_PROCS * FLOOD_SESSIONS, t1 > t0 ? (cpu1 - cpu0) * 100 / (t1 - t0) / 2 : 0,
		     t1 > t0 ? (others1 - others0) * 100 / (t1 - t0) / 2 : 0, (long long)(t1 - t0));
		if (t1 <= t0 || (cpu1 - cpu0) * 100 / (t1 - t0) / 2 < FLOOD_BUSY ||
		    rate * un.v / 1000000000LL < 5)
			continue; /* the flood was starved: no measure of gorod */
		heavy++;
		if (heavy == 1 || ratio < best_ratio) {
			best_ratio = ratio;
			best_un = un.v;
			best = lo.v;
		}
		done = lo.v <= 2 * un.v;
	}
	harness_kill_all(spinners, 2);
	harness_signal_all(pids, FLOOD_PROCS, SIGCONT); /* if a round broke off */
	atomic_store(&f->stop, 1);
	is(harness_reap_all(pids, FLOOD_PROCS, WAIT_MS, "flooder"), 0,
	   "flood: the flooders end, gorod having closed none of their connections");
	is(lo.rc, 0, "flood: B's %d round trips, while A floods", pairs);
	if (heavy)
		cmp_ok(best, <=, 2 * best_un, "flood: B's loaded median is within 2x of its "
		       "unloaded one (the best of %d rounds with a heavy flood)", heavy);
	else
		skip(1, "flood: other processes starved the flooders in every round (see the diag "
		     "lines): the machine is too busy to measure gorod's fairness");

	agent_stop(&b);
	/* gorod answers what the flooders sent before they closed. */
	cl_swap(c2);
	wait_quota(UID_A, "sessions", 0, "flood: A's sessions end");
	wait_quota(UID_A, "tasks", 0, "flood: and its tasks");
	cl_swap(c2);
	harness_check_nothing_left(c2, goroutines, 4 * WAIT_MS);
	goro_close(c2);
	is(harness_stop(&h2, 30000), 0, "flood: that gorod stops cleanly");
	harness_cleanup(&h2);
	munmap(f, sizeof *f);
}

/* ---- main ------------------------------------------------------------------------------------- */

static const struct harness_part parts[] = {
	{ "sessions", test_sessions }, { "requests", test_requests }, { "tasks", test_tasks },
	{ "names", test_names },       { "output", test_output },     { "reload", test_reload },
	{ "socket", test_socket },     { "flood", test_flood },
};

int main(int argc, char **argv)
{
	const char *args[] = { "--config", conf, NULL };

	if (geteuid() != 0)
		skip_all("acting as other users needs root");
	goroctl = getenv("GOROCTL");
	if (!goroctl || !*goroctl)
		bail_out("$GOROCTL must name the goroctl to test");
	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	snprintf(confdir, sizeof confdir, "%s/test_quota.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(confdir))
		bail_out("mkdtemp: %s", strerror(errno));
	snprintf(conf, sizeof conf, "%s/gorod.conf", confdir);
	write_conf("output-per-user = 1280K\n");
	harness_run_parts(&h, &c, args, "root, small per-user limits", parts,
			  sizeof parts / sizeof parts[0], argc, argv, WAIT_MS);
	harness_cleanup(&h);
	unlink(conf);
	rmdir(confdir);
	return done_testing();
}
