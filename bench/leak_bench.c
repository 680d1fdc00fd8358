/* leak_bench: what gorod's leak monitor costs, and how soon it reports.
 *
 * One measurement per process, one line of key=value on stdout, so that
 * bench/run-leaks can start gorod and build the table:
 *
 *	leak_bench MODE path=SOCK [key=value ...]
 *	idle n=1000000 secs=10 cpu_ms=31.2 cpu_pct=0.312 ...
 *
 * The modes:
 *
 *	idle      gorod's CPU time while nothing is asked of it, with n `func
 *	          sleep` tasks parked (n may be 0: the floor). Spawns them
 *	          pipelined on one connection, each bound to one WaitGroup and
 *	          expected to live longer than it sleeps (so none is suspected),
 *	          polls wg.status and stats until all n run and their goroutines
 *	          are parked, lets gorod settle for settle= seconds, then reads
 *	          gorod's CPU clock (clock_getcpuclockid: every thread, to the
 *	          nanosecond), sleeps secs= seconds without a request, and reads
 *	          it again. /proc/PID/stat's utime+stime (clock ticks) says the
 *	          same coarsely, and /proc/PID/task/TID/schedstat which threads
 *	          used it. With lat=R, then measures R leak-to-report latencies of
 *	          kind own (below) while the n tasks stay parked. Then kills the
 *	          n tasks (pipelined) and waits on their group: its round must
 *	          say n done.
 *	latency   R times (reps=), the time from a leak becoming true to the
 *	          first `leaks` reply that reports it (asked every poll= ms,
 *	          default 5). kind=own: a task `goroctl wg wait G` spawned with
 *	          --wg G (it waits on its own group): it becomes true when the
 *	          task's wait reaches gorod, which wg.status shows (asked every
 *	          millisecond, so the figure is late by up to 1 ms plus a round
 *	          trip); then the task is killed. kind=dead: a session adds 1 to
 *	          G without a lease while a task `goroctl wg wait G` waits on
 *	          it; it becomes true when that session closes its connection;
 *	          then our own done lets the task end.
 *
 * Keys: path=SOCK (gorod's socket), n=N (idle: tasks parked; default
 * 1000000), secs=S (idle: the quiet window, default 10), settle=S
 * (default 1), ms=MS (each sleep, default 3600000), window=W (requests
 * without a reply, default 4096), reps=R (latency; default 9), lat=R
 * (idle: latencies measured while parked; default 0), kind=own|dead,
 * poll=MS, goroctl=PATH (the goroctl the tasks run), timeout=S (give up
 * after S seconds, default 300).
 *
 * Lines printed:
 *
 *	idle n= secs= cpu_ms= cpu_pct= ticks= tick_pct= threads= spawn_secs=
 *	     park_secs= kill_secs= rss= gorod_pid=
 *	latency kind= parked= reps= median_ms= min_ms= max_ms= all_ms=
 *
 * cpu_pct is the share of one CPU (100 = one core busy); threads lists the
 * busiest of gorod's threads as comm/tid:ms.
 *
 * Exit status: 0; 1 when something failed (an error reply, a finding that
 * did not come within the timeout, a task that did not end as expected:
 * stderr says which); 2 on bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "bench_util.h"
#include "goro/goro.h"

#define MAX_THREADS 1024
#define LATENCY_GIVE_UP_MS 10000 /* a finding that takes longer is a failure */

const char bench_name[] = "leak_bench";

/* ---- arguments ------------------------------------------------------------- */

struct params {
	const char *path, *goroctl, *kind;
	long n, reps, lat, window, ms, poll_ms;
	double secs, settle, timeout;
};

static void usage(void)
{
	fputs("usage: leak_bench idle path=SOCK [n=N] [secs=S] [settle=S] [lat=R goroctl=PATH]\n"
	      "       leak_bench latency path=SOCK goroctl=PATH [kind=own|dead] [reps=R] "
	      "[poll=MS]\n"
	      "(see the top of bench/leak_bench.c)\n", stderr);
	exit(2);
}

static bool key_is(const char *arg, size_t klen, const char *key)
{
	return klen == strlen(key) && !strncmp(arg, key, klen);
}

/* The numeric key=value arguments. */
static const struct numkey {
	const char *key;
	size_t off;
	bool dbl;
} numkeys[] = {
	{ "n", offsetof(struct params, n), false },
	{ "reps", offsetof(struct params, reps), false },
	{ "lat", offsetof(struct params, lat), false },
	{ "window", offsetof(struct params, window), false },
	{ "ms", offsetof(struct params, ms), false },
	{ "poll", offsetof(struct params, poll_ms), false },
	{ "secs", offsetof(struct params, secs), true },
	{ "settle", offsetof(struct params, settle), true },
	{ "timeout", offsetof(struct params, timeout), true },
};

/* Sets the numeric key (klen bytes of arg) to v; false when unknown or bad. */
static bool set_num(struct params *p, const char *arg, size_t klen, const char *v)
{
	for (size_t i = 0; i < sizeof numkeys / sizeof numkeys[0]; i++) {
		char *end;

		if (!key_is(arg, klen, numkeys[i].key))
			continue;
		errno = 0;
		if (numkeys[i].dbl)
			*(double *)((char *)p + numkeys[i].off) = strtod(v, &end);
		else
			*(long *)((char *)p + numkeys[i].off) = strtol(v, &end, 10);
		return !errno && end != v && !*end;
	}
	return false;
}

static void parse_params(int argc, char **argv, struct params *p)
{
	*p = (struct params){ .kind = "own", .n = 1000000, .reps = 9, .window = 4096,
			      .ms = 3600000, .poll_ms = 5, .secs = 10, .settle = 1,
			      .timeout = 300 };
	for (int i = 0; i < argc; i++) {
		char *v = strchr(argv[i], '=');
		size_t klen;

		if (!v)
			usage();
		klen = (size_t)(v - argv[i]);
		v++;
		if (key_is(argv[i], klen, "path"))
			p->path = v;
		else if (key_is(argv[i], klen, "goroctl"))
			p->goroctl = v;
		else if (key_is(argv[i], klen, "kind"))
			p->kind = v;
		else if (!set_num(p, argv[i], klen, v))
			usage();
	}
	if (!p->path || p->n < 0 || p->n > 10000000 || p->reps < 1 || p->lat < 0 ||
	    p->window < 1 || p->ms < 1 || p->ms > INT32_MAX - 3600000 || p->poll_ms < 1 ||
	    p->secs <= 0 || p->settle < 0 || p->timeout <= 0 ||
	    (strcmp(p->kind, "own") && strcmp(p->kind, "dead"))) {
		fputs("leak_bench: path= is needed; n is 0..10000000, reps >= 1, lat >= 0, "
		      "window >= 1, ms 1..2^31-1-3600000, poll >= 1, secs > 0, settle >= 0, "
		      "timeout > 0, kind own or dead\n", stderr);
		exit(2);
	}
}

static void sleep_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (double)(long)(ms / 1000) * 1000) *
							   1e6) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- gorod: pipelined requests ---------------------------------------------- */

/* Counts a reply of batch arg; a spawn's id goes to ids[k] for the k-th
 * reply, in the order they came. */
static void on_reply(void *arg, int err, const struct goro_reply *r)
{
	struct bench_batch *b = arg;

	if (err < 0)
		bench_die("%s: %s (%s): %s", b->what, goro_err_name(err), goro_strerror(err),
			  r && r->message ? r->message : "");
	if (b->ids)
		b->ids[b->answered] = r->id;
	b->answered++;
}

/* ---- gorod's process ----------------------------------------------------------- */

/* The integer after "key": at or after `from` in json (NULL: not there). */
static long long json_int(const char *from, const char *key)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	at = from ? strstr(from, pat) : NULL;
	return at ? strtoll(at + strlen(pat), NULL, 10) : 0;
}

/* From `stats`: gorod's pid, its RSS, and its goroutines waiting. */
static void gorod_stats(goro_client *c, long long *pid, long long *rss, long long *waiting)
{
	char *json;

	bench_check(c, goro_stats_json(c, &json), "stats");
	*pid = json_int(json, "pid"); /* the top-level one comes first */
	*rss = json_int(strstr(json, "\"memory\":"), "rss");
	*waiting = json_int(strstr(json, "\"goroutines\":"), "waiting");
	free(json);
	if (*pid <= 0)
		bench_die("no pid in gorod's stats");
}

/* One of gorod's threads: its comm and the CPU time it has run, in ns
 * (/proc/PID/task/TID/schedstat; its stat's ticks are too coarse for a
 * thread that wakes for microseconds). */
struct thread_cpu {
	int tid;
	char comm[32];
	long long ns;
};

/* utime + stime of /proc/PID[/task/TID]/stat, and the comm; -1 when gone. */
static long long stat_ticks(const char *path, char *comm, size_t size)
{
	char buf[1024], *open_paren, *close_paren;
	unsigned long long ut, st;
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (!open_paren || !close_paren ||
	    sscanf(close_paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
		   &st) != 2)
		return -1;
	if (comm)
		snprintf(comm, size, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
	return (long long)(ut + st);
}

/* The CPU time thread tid of pid has run, in ns, and its comm; -1 when
 * it is gone. */
static long long thread_ns(const char *dir, const char *tid, char *comm, size_t size)
{
	char path[384];
	long long ns = -1;
	FILE *f;

	snprintf(path, sizeof path, "%s/%s/schedstat", dir, tid);
	if (!(f = fopen(path, "r")))
		return -1;
	if (fscanf(f, "%lld", &ns) != 1)
		ns = -1;
	fclose(f);
	snprintf(path, sizeof path, "%s/%s/stat", dir, tid);
	if (stat_ticks(path, comm, size) < 0)
		return -1;
	return ns;
}

/* Every thread of pid with its CPU time; returns how many (at most max). */
static int threads_of(long long pid, struct thread_cpu *t, int max)
{
	char dir[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof dir, "/proc/%lld/task", pid);
	if (!(d = opendir(dir)))
		return 0;
	while ((e = readdir(d)) && n < max) {
		if (e->d_name[0] == '.')
			continue;
		t[n].tid = atoi(e->d_name);
		t[n].ns = thread_ns(dir, e->d_name, t[n].comm, sizeof t[n].comm);
		if (t[n].ns >= 0)
			n++;
	}
	closedir(d);
	return n;
}

/* The busiest threads between before and after, as "comm/tid:ms,..". */
static void busiest(const struct thread_cpu *before, int nb, const struct thread_cpu *after,
		    int na, char *out, size_t size)
{
	size_t off = 0;
	bool used[MAX_THREADS] = { false };

	out[0] = '\0';
	for (int k = 0; k < 4; k++) {
		int best = -1;
		long long best_d = 0;

		for (int i = 0; i < na; i++) {
			long long d = after[i].ns;

			for (int j = 0; j < nb; j++)
				if (before[j].tid == after[i].tid)
					d -= before[j].ns;
			if (!used[i] && d > best_d) {
				best = i;
				best_d = d;
			}
		}
		if (best < 0)
			break;
		used[best] = true;
		off += (size_t)snprintf(out + off, size - off, "%s%s/%d:%.2f", off ? "," : "",
					after[best].comm, after[best].tid, (double)best_d / 1e6);
		if (off >= size)
			break;
	}
	if (!out[0])
		snprintf(out, size, "none");
}

/* gorod's CPU clock, every thread, in ns. */
static int64_t cpu_ns(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts) < 0)
		bench_die("clock_gettime(gorod's CPU clock): %s", strerror(errno));
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- latency ------------------------------------------------------------------ */

/* Polls wg.status until name has `want` waiters (every millisecond). */
static void wait_waiters(goro_client *c, const char *name, int64_t want, int64_t deadline)
{
	for (;;) {
		struct goro_wg_status st;

		bench_check(c, goro_wg_status(c, name, &st), "wg.status");
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
		if (st.waiters == want)
			return;
		if (bench_now_ns() > deadline)
			bench_die("timed out: %s has %" PRId64 " waiters, not %" PRId64, name,
				  st.waiters, want);
		sleep_ms(1);
	}
}

/* Whether leaks lists a definite finding about task id. */
static bool reported(goro_client *c, uint64_t id)
{
	struct goro_leak *l;
	size_t n;
	bool found = false;

	bench_check(c, goro_leaks(c, &l, &n), "leaks");
	for (size_t i = 0; i < n && !found; i++)
		found = l[i].task == id && strcmp(l[i].kind, "definite") == 0;
	free(l);
	return found;
}

/* Asks leaks every poll_ms until it reports task id: the time since t0,
 * in ms. */
static double time_to_report(const struct params *p, goro_client *c, uint64_t id, int64_t t0)
{
	int64_t give_up = t0 + (int64_t)LATENCY_GIVE_UP_MS * 1000000;

	while (!reported(c, id)) {
		if (bench_now_ns() > give_up)
			bench_die("task %" PRIu64 ": no definite finding %d ms after its leak "
				  "became true", id, LATENCY_GIVE_UP_MS);
		sleep_ms((double)p->poll_ms);
	}
	return (double)(bench_now_ns() - t0) / 1e6;
}

/* Spawns `goroctl wg wait name` (bound to name when own). */
static uint64_t spawn_waiter(const struct params *p, goro_client *c, const char *name, bool own)
{
	const char *argv[] = { p->goroctl, "--socket", p->path, "wg", "wait", name, NULL };
	struct goro_spawn sp = { .argv = argv, .wg = own ? name : NULL };
	uint64_t id;

	bench_check(c, goro_spawn(c, &sp, &id), "spawn");
	return id;
}

/* Waits for task id, which must end in state want. */
static void expect_end(goro_client *c, uint64_t id, enum goro_task_state want)
{
	struct goro_outcome o;

	bench_check(c, goro_wait(c, id, 30000, &o), "wait");
	if (o.state != want)
		bench_die("task %" PRIu64 " ended %s, not %s", id, goro_task_state_name(o.state),
			  goro_task_state_name(want));
	goro_outcome_clear(&o);
}

/* One leak of kind own: the task waits on its own group. */
static double latency_own(const struct params *p, goro_client *c, const char *name)
{
	uint64_t id = spawn_waiter(p, c, name, true);
	int64_t t0;
	double ms;

	wait_waiters(c, name, 1, bench_now_ns() + 30 * (int64_t)1000000000);
	t0 = bench_now_ns();
	ms = time_to_report(p, c, id, t0);
	bench_check(c, goro_kill(c, id, SIGKILL), "kill");
	expect_end(c, id, GORO_TASK_KILLED);
	return ms;
}

/* One leak of kind dead: the only holder of the group's count closes. */
static double latency_dead(const struct params *p, goro_client *c, const char *name)
{
	goro_client *holder = bench_connect(p->path);
	uint64_t id;
	int64_t t0;
	double ms;

	bench_check(holder, goro_wg_add(holder, name, 1, 0, NULL), "wg.add");
	id = spawn_waiter(p, c, name, false);
	wait_waiters(c, name, 1, bench_now_ns() + 30 * (int64_t)1000000000);
	if (reported(c, id))
		bench_die("task %" PRIu64 " is reported before its group's holder closed", id);
	t0 = bench_now_ns();
	goro_close(holder);
	ms = time_to_report(p, c, id, t0);
	bench_check(c, goro_wg_done(c, name, NULL), "wg.done");
	expect_end(c, id, GORO_TASK_EXITED);
	return ms;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* reps latencies of p->kind, printed as one line. */
static void latency_run(const struct params *p, goro_client *c, long parked)
{
	double *v = calloc((size_t)p->reps, sizeof *v), med;
	char all[4096];
	size_t off = 0;

	if (!v)
		bench_die("out of memory");
	if (!p->goroctl || p->goroctl[0] != '/')
		bench_die("latency needs goroctl=PATH, an absolute path (the tasks run it)");
	for (long r = 0; r < p->reps; r++) {
		char name[64];

		snprintf(name, sizeof name, "leak_bench.%d.%s.%ld", (int)getpid(), p->kind, r);
		v[r] = strcmp(p->kind, "own") == 0 ? latency_own(p, c, name)
						   : latency_dead(p, c, name);
		off += (size_t)snprintf(all + off, sizeof all - off, "%s%.1f", r ? "," : "", v[r]);
		if (off >= sizeof all)
			off = sizeof all - 1;
	}
	qsort(v, (size_t)p->reps, sizeof *v, cmp_double);
	med = p->reps % 2 ? v[p->reps / 2] : (v[p->reps / 2 - 1] + v[p->reps / 2]) / 2;
	printf("latency kind=%s parked=%ld reps=%ld median_ms=%.1f min_ms=%.1f max_ms=%.1f "
	       "all_ms=%s\n", p->kind, parked, p->reps, med, v[0], v[p->reps - 1], all);
	fflush(stdout);
	free(v);
}

/* ---- idle ------------------------------------------------------------------------ */

struct idle_ctx {
	const struct params *p;
	char wg[64];
	char ms[24];
	uint64_t *ids; /* the tasks spawned; owned */
};

/* Spawns the n sleeping tasks, pipelined. */
static void spawn_sleepers(goro_client *c, struct idle_ctx *x, int64_t deadline)
{
	const char *args[] = { x->ms, NULL };
	struct goro_spawn sp = { .func = "sleep", .args = args, .wg = x->wg,
				 .expect_ms = (int)(x->p->ms + 3600000) };
	struct bench_batch b = { .what = "spawn", .ids = x->ids };

	for (long i = 0; i < x->p->n; i++) {
		if (b.sent - b.answered >= x->p->window)
			bench_pump(c, &b, b.sent - x->p->window + 1, deadline);
		bench_check(c, goro_send_spawn(c, &sp, on_reply, &b), "spawn");
		b.sent++;
	}
	bench_pump(c, &b, b.sent, deadline);
}

/* Polls wg.status and stats until n tasks run and n goroutines are parked. */
static void wait_parked(goro_client *c, const char *wg, long n, int64_t deadline)
{
	for (;;) {
		struct goro_wg_status st;
		long long pid, rss, waiting;

		bench_check(c, goro_wg_status(c, wg, &st), "wg.status");
		if (st.has_failure)
			bench_die("a sleeping task failed: %s %s",
				  goro_task_state_name(st.first_failure.state),
				  st.first_failure.message);
		if (st.running == n) {
			gorod_stats(c, &pid, &rss, &waiting);
			if (waiting >= n)
				return;
		}
		if (bench_now_ns() > deadline)
			bench_die("timed out: %" PRId64 " of %ld tasks running", st.running, n);
		sleep_ms(2);
	}
}

/* Kills the n tasks (pipelined) and waits on their group. */
static void kill_sleepers(goro_client *c, struct idle_ctx *x, int64_t deadline)
{
	struct bench_batch b = { .what = "kill" };
	struct goro_wg_status st;

	for (long i = 0; i < x->p->n; i++) {
		if (b.sent - b.answered >= x->p->window)
			bench_pump(c, &b, b.sent - x->p->window + 1, deadline);
		bench_check(c, goro_send_kill(c, x->ids[i], SIGKILL, on_reply, &b), "kill");
		b.sent++;
	}
	bench_pump(c, &b, b.sent, deadline);
	bench_check(c, goro_wg_wait_status(c, x->wg, (int)(x->p->timeout * 1000), &st), "wg.wait");
	if (st.has_failure)
		goro_outcome_clear(&st.first_failure);
	if (st.done != x->p->n)
		bench_die("the group's round says %" PRId64 " tasks done, not %ld", st.done,
			  x->p->n);
}

static void idle_run(const struct params *p)
{
	static struct thread_cpu before[MAX_THREADS], after[MAX_THREADS];
	goro_client *c = bench_connect(p->path);
	struct idle_ctx x = { .p = p };
	long long pid, rss, waiting, t0_ticks, t1_ticks;
	int64_t t0, t1, t2, t3, c0, c1, deadline;
	double secs, kill_secs = 0;
	char path[64], busy[512];
	clockid_t clk;
	int nb, na;

	snprintf(x.wg, sizeof x.wg, "leak_bench.%d", (int)getpid());
	snprintf(x.ms, sizeof x.ms, "%ld", p->ms);
	x.ids = calloc((size_t)p->n + 1, sizeof *x.ids);
	if (!x.ids)
		bench_die("out of memory");
	bench_check(c, goro_hello(c, "leak_bench", NULL), "hello");
	gorod_stats(c, &pid, &rss, &waiting);
	if (clock_getcpuclockid((pid_t)pid, &clk) != 0)
		bench_die("clock_getcpuclockid(%lld): gorod must run on this machine, as us", pid);
	snprintf(path, sizeof path, "/proc/%lld/stat", pid);

	t0 = bench_now_ns();
	deadline = t0 + (int64_t)(p->timeout * 1e9);
	spawn_sleepers(c, &x, deadline);
	t1 = bench_now_ns();
	if (p->n)
		wait_parked(c, x.wg, p->n, deadline);
	t2 = bench_now_ns();
	sleep_ms(p->settle * 1000);

	/* The quiet window: no request of ours reaches gorod. */
	nb = threads_of(pid, before, MAX_THREADS);
	t0_ticks = stat_ticks(path, NULL, 0);
	c0 = cpu_ns(clk);
	t3 = bench_now_ns();
	sleep_ms(p->secs * 1000);
	c1 = cpu_ns(clk);
	secs = (double)(bench_now_ns() - t3) / 1e9;
	t1_ticks = stat_ticks(path, NULL, 0);
	na = threads_of(pid, after, MAX_THREADS);
	busiest(before, nb, after, na, busy, sizeof busy);
	gorod_stats(c, &pid, &rss, &waiting);

	printf("idle n=%ld secs=%.2f cpu_ms=%.1f cpu_pct=%.3f ticks=%lld tick_pct=%.2f "
	       "threads=%s spawn_secs=%.2f park_secs=%.2f rss=%lld gorod_pid=%lld\n",
	       p->n, secs, (double)(c1 - c0) / 1e6, (double)(c1 - c0) / 1e7 / secs,
	       t1_ticks - t0_ticks,
	       100.0 * (double)(t1_ticks - t0_ticks) / (double)sysconf(_SC_CLK_TCK) / secs, busy,
	       (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, rss, pid);
	fflush(stdout);

	if (p->lat > 0) {
		struct params q = *p;

		q.reps = p->lat;
		q.kind = "own";
		latency_run(&q, c, p->n);
	}
	if (p->n) {
		int64_t k0 = bench_now_ns();

		kill_sleepers(c, &x, bench_now_ns() + (int64_t)(p->timeout * 1e9));
		kill_secs = (double)(bench_now_ns() - k0) / 1e9;
		printf("killed n=%ld kill_secs=%.2f\n", p->n, kill_secs);
	}
	free(x.ids);
	goro_close(c);
}

int main(int argc, char **argv)
{
	struct params p;

	if (argc < 2)
		usage();
	parse_params(argc - 2, argv + 2, &p);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "idle")) {
		idle_run(&p);
	} else if (!strcmp(argv[1], "latency")) {
		goro_client *c = bench_connect(p.path);

		bench_check(c, goro_hello(c, "leak_bench", NULL), "hello");
		latency_run(&p, c, 0);
		goro_close(c);
	} else {
		usage();
	}
	return 0;
}
