/* task_bench: running commands through gorod's tasks against a posix_spawn
 * loop (the floor), and gorod's memory per parked task.
 *
 * One measurement per process, one line of key=value on stdout, so that
 * bench/run-tasks can start gorod once, run ours and the anchors
 * alternately (A B A B) and divide:
 *
 *	task_bench MODE [key=value ...]
 *	spawn_loop n=2000 par=2 secs=0.412 jobs_per_s=4854
 *
 * The modes:
 *
 *	spawn_loop              run n commands, par at a time: posix_spawn(3),
 *	                        then waitpid(-1) and start the next as soon as
 *	                        one ends. What any runner has to do at least.
 *	goro_spawn path=SOCK    the same n commands as gorod tasks, pipelined
 *	                        from one connection with goro_send_spawn(),
 *	                        each holding one unit of the semaphore
 *	                        "task_bench.<pid>" of capacity par and bound to
 *	                        the WaitGroup of the same name; then
 *	                        goro_wg_wait_status() until all have ended. The
 *	                        time runs from the first spawn to the wait's
 *	                        reply, and the WaitGroup's round must say
 *	                        n tasks, n done, none failed.
 *	goro_rss path=SOCK      gorod's memory per parked task: reads gorod's
 *	                        VmRSS (/proc/PID/status; PID from `stats`),
 *	                        spawns n `func sleep` tasks of ms milliseconds,
 *	                        pipelined, polls `wg.status` and `stats` until
 *	                        all n run and their goroutines are parked, reads
 *	                        VmRSS again and prints the growth per task;
 *	                        then kills them all and waits for each
 *	                        (goro_send_kill, goro_send_wait, pipelined;
 *	                        each must end `killed`). gorod should be
 *	                        fresh: the growth is what n tasks cost a gorod
 *	                        that had none.
 *
 * Keys: n=N (commands or tasks; default 2000, goro_rss 100000), par=P (at
 * most P commands at a time; default 2), cmd=PATH (the command, default
 * /bin/true; each run gets its index as its one argument, as xargs -n 1
 * gives it a line), window=W (goro_spawn, goro_rss: at most W requests
 * without a reply; default 4096), env=0|1 (goro_spawn: 1, the default,
 * gives each command our environment and working directory, as goroctl
 * does and as spawn_loop's children inherit them; 0 leaves gorod's
 * defaults, PATH only and /), ms=MS (goro_rss: each sleep, default
 * 600000), timeout=S (give up after S seconds, default 120).
 *
 * Lines printed:
 *
 *	spawn_loop n= par= secs= jobs_per_s=
 *	goro_spawn n= par= env= secs= jobs_per_s= spawn_secs=
 *	goro_rss n= rss_before= rss_parked= bytes_per_task= stats_rss=
 *	         stacks= stack_bytes= spawn_secs= spawns_per_s= park_secs=
 *	         kill_secs= rss_after_kill=
 *
 * secs is the measured time; spawn_secs (goro_spawn) how much of it went by
 * before the last spawn's reply. rss_* are bytes; stacks and stack_bytes
 * are gorod's goroutine stacks while the tasks are parked (`stats`).
 *
 * Exit status: 0; 1 when something failed (an error reply, a command that
 * did not exit 0, the timeout: stderr says which); 2 on bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "goro/goro.h"

extern char **environ;

const char bench_name[] = "task_bench";

/* ---- arguments ------------------------------------------------------------- */

struct params {
	const char *path; /* gorod's socket */
	const char *cmd;
	long n, par, window;
	long ms;
	long env; /* goro_spawn: send our environment and working directory */
	double timeout;
};

static void usage(void)
{
	fputs("usage: task_bench MODE [path=SOCK] [n=N] [par=P] [cmd=PATH] [window=W]\n"
	      "                  [ms=MS] [timeout=S]\n"
	      "modes: spawn_loop goro_spawn goro_rss (see the top of bench/task_bench.c)\n",
	      stderr);
	exit(2);
}

static bool key_is(const char *arg, size_t klen, const char *key)
{
	return klen == strlen(key) && !strncmp(arg, key, klen);
}

static void parse_params(int argc, char **argv, bool rss, struct params *p)
{
	*p = (struct params){ .cmd = "/bin/true", .n = rss ? 100000 : 2000, .par = 2,
			      .window = 4096, .ms = 600000, .timeout = 120, .env = 1 };
	for (int i = 0; i < argc; i++) {
		char *v = strchr(argv[i], '='), *end;
		size_t klen;

		if (!v)
			usage();
		klen = (size_t)(v - argv[i]);
		v++;
		errno = 0;
		if (key_is(argv[i], klen, "path")) {
			p->path = v;
			continue;
		}
		if (key_is(argv[i], klen, "cmd")) {
			p->cmd = v;
			continue;
		}
		if (key_is(argv[i], klen, "n"))
			p->n = strtol(v, &end, 10);
		else if (key_is(argv[i], klen, "par"))
			p->par = strtol(v, &end, 10);
		else if (key_is(argv[i], klen, "window"))
			p->window = strtol(v, &end, 10);
		else if (key_is(argv[i], klen, "env"))
			p->env = strtol(v, &end, 10);
		else if (key_is(argv[i], klen, "ms"))
			p->ms = strtol(v, &end, 10);
		else if (key_is(argv[i], klen, "timeout"))
			p->timeout = strtod(v, &end);
		else
			usage();
		if (errno || end == v || *end)
			usage();
	}
	if (p->n < 1 || p->n > 10000000 || p->par < 1 || p->par > 4096 || p->window < 1 ||
	    p->ms < 1 || p->ms > INT32_MAX || p->timeout <= 0 || p->cmd[0] != '/' ||
	    (p->env != 0 && p->env != 1)) {
		fputs("task_bench: n is 1..10000000, par 1..4096, window >= 1, ms 1..2^31-1, "
		      "timeout > 0, cmd an absolute path, env 0 or 1\n", stderr);
		exit(2);
	}
}

static const char *need_path(const struct params *p)
{
	if (!p->path) {
		fputs("task_bench: this mode needs path=\n", stderr);
		exit(2);
	}
	return p->path;
}

static double secs_since(int64_t t0)
{
	return (double)(bench_now_ns() - t0) / 1e9;
}

/* ---- the floor: a posix_spawn loop ------------------------------------------ */

/* Runs cmd n times, par at a time, each with its index as its argument;
 * every one must exit 0. Blocks in waitpid(). */
static void spawn_loop(const struct params *p)
{
	long started = 0, ended = 0;
	int64_t t0 = bench_now_ns(), deadline = t0 + (int64_t)(p->timeout * 1e9);
	double secs;

	while (ended < p->n) {
		int st;
		pid_t pid;

		while (started < p->n && started - ended < p->par) {
			char arg[24];
			char *argv[] = { (char *)p->cmd, arg, NULL };
			int err;

			snprintf(arg, sizeof arg, "%ld", started);
			err = posix_spawn(&pid, p->cmd, NULL, NULL, argv, environ);
			if (err)
				bench_die("posix_spawn %s: %s", p->cmd, strerror(err));
			started++;
		}
		pid = waitpid(-1, &st, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			bench_die("waitpid: %s", strerror(errno));
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bench_die("%s (pid %d) ended with status 0x%x", p->cmd, (int)pid, st);
		ended++;
		if (bench_now_ns() > deadline)
			bench_die("timed out after %g s with %ld of %ld ended", p->timeout, ended,
				  p->n);
	}
	secs = secs_since(t0);
	printf("spawn_loop n=%ld par=%ld secs=%.4f jobs_per_s=%.0f\n", p->n, p->par, secs,
	       (double)p->n / secs);
}

/* ---- gorod: pipelined requests ---------------------------------------------- */

/* What a reply's callback gets: request i of batch b. */
struct req {
	struct bench_batch *b;
	long i;
};

/* Counts a reply; a spawn's id goes to b->ids[i] for request i. */
static void on_reply(void *arg, int err, const struct goro_reply *r)
{
	struct req *q = arg;

	if (err < 0)
		bench_die("%s %ld: %s (%s): %s", q->b->what, q->i, goro_err_name(err),
			  goro_strerror(err), r && r->message ? r->message : "");
	if (q->b->ids)
		q->b->ids[q->i] = r->id;
	q->b->answered++;
}

/* Sends n requests, one send(c, i, q) each, keeping at most window without
 * a reply, and reads every reply. q is what the callback gets. */
static void send_all(goro_client *c, struct bench_batch *b, long n, long window,
		     int (*send)(goro_client *c, long i, struct req *q, void *ctx),
		     void *ctx, int64_t deadline)
{
	struct req *qs = calloc((size_t)n, sizeof *qs);

	if (!qs)
		bench_die("out of memory");
	for (long i = 0; i < n; i++) {
		if (b->sent - b->answered >= window)
			bench_pump(c, b, b->sent - window + 1, deadline);
		qs[i] = (struct req){ b, i };
		bench_check(c, send(c, i, &qs[i], ctx), b->what);
		b->sent++;
	}
	bench_pump(c, b, b->sent, deadline);
	free(qs);
}

/* ---- goro_spawn: n commands through gorod ----------------------------------- */

struct spawn_ctx {
	const struct params *p;
	char name[64]; /* the semaphore's and the WaitGroup's */
	const char *const *env; /* NULL: gorod's default (PATH only) */
	char cwd[4096];
};

static int send_exec(goro_client *c, long i, struct req *q, void *arg)
{
	struct spawn_ctx *x = arg;
	char idx[24];
	const char *argv[] = { x->p->cmd, idx, NULL };
	struct goro_spawn s = { .argv = argv, .env = x->env, .cwd = x->env ? x->cwd : NULL,
				.sem = x->name, .sem_capacity = x->p->par, .wg = x->name };

	snprintf(idx, sizeof idx, "%ld", i);
	return goro_send_spawn(c, &s, on_reply, q);
}

static void goro_spawn_run(const struct params *p)
{
	goro_client *c = bench_connect(need_path(p));
	struct spawn_ctx x = { .p = p };
	struct bench_batch b = { .what = "spawn" };
	struct goro_wg_status st;
	int64_t t0, deadline;
	double spawn_secs, secs;

	snprintf(x.name, sizeof x.name, "task_bench.%d", (int)getpid());
	if (p->env) {
		x.env = (const char *const *)environ;
		if (!getcwd(x.cwd, sizeof x.cwd))
			bench_die("getcwd: %s", strerror(errno));
	}
	bench_check(c, goro_hello(c, "task_bench", NULL), "hello");
	t0 = bench_now_ns();
	deadline = t0 + (int64_t)(p->timeout * 1e9);
	/* Held open while spawning (Go's wg.Add before the loop), so that the
	 * counter cannot reach zero between spawns: one round holds all n. */
	bench_check(c, goro_wg_add(c, x.name, 1, 0, NULL), "wg.add");
	send_all(c, &b, p->n, p->window, send_exec, &x, deadline);
	bench_check(c, goro_wg_done(c, x.name, NULL), "wg.done");
	spawn_secs = secs_since(t0);
	bench_check(c, goro_wg_wait_status(c, x.name, (int)(p->timeout * 1000), &st), "wg.wait");
	secs = secs_since(t0);
	if (st.has_failure) {
		fprintf(stderr, "task_bench: %" PRId64 " of %ld tasks failed; the first: %s "
			"code %d signal %d %s\n", st.failed, p->n,
			goro_task_state_name(st.first_failure.state), st.first_failure.code,
			st.first_failure.signal, st.first_failure.message);
		goro_outcome_clear(&st.first_failure);
		exit(1);
	}
	if (st.tasks != p->n || st.done != p->n || st.failed != 0)
		bench_die("the WaitGroup's round says tasks=%" PRId64 " done=%" PRId64 " failed=%"
			  PRId64 ", not %ld done", st.tasks, st.done, st.failed, p->n);
	printf("goro_spawn n=%ld par=%ld env=%ld secs=%.4f jobs_per_s=%.0f spawn_secs=%.4f\n",
	       p->n, p->par, p->env, secs, (double)p->n / secs, spawn_secs);
	goro_close(c);
}

/* ---- goro_rss: gorod's memory per parked task ---------------------------------- */

/* The integer after "key": in json at or after from (NULL: the whole
 * text), or dies. Good enough for `stats`, whose keys we know. */
static long long json_int(const char *json, const char *from, const char *key)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	at = strstr(from ? from : json, pat);
	if (!at)
		bench_die("no %s in gorod's stats: %.200s", key, json);
	return strtoll(at + strlen(pat), NULL, 10);
}

struct gorod_stats {
	long long pid, rss, stacks, stack_bytes, waiting;
};

static void get_stats(goro_client *c, struct gorod_stats *s)
{
	char *json;
	const char *g;

	bench_check(c, goro_stats_json(c, &json), "stats");
	g = strstr(json, "\"goroutines\":");
	if (!g)
		bench_die("no goroutines in gorod's stats: %.200s", json);
	s->pid = json_int(json, NULL, "pid");
	s->waiting = json_int(json, g, "waiting");
	s->rss = json_int(json, strstr(json, "\"memory\":"), "rss");
	s->stacks = json_int(json, strstr(json, "\"memory\":"), "stacks");
	s->stack_bytes = json_int(json, strstr(json, "\"memory\":"), "stack_bytes");
	free(json);
}

/* A process's VmRSS, in bytes. */
static long long vm_rss(long long pid)
{
	char path[64], line[256];
	long long kib = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%lld/status", pid);
	f = fopen(path, "r");
	if (!f)
		bench_die("%s: %s (gorod must run on this machine)", path, strerror(errno));
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %lld kB", &kib) == 1)
			break;
	fclose(f);
	if (kib < 0)
		bench_die("no VmRSS in %s", path);
	return kib * 1024;
}

/* Dies unless process pid is a gorod (the pid `stats` gave). */
static void check_comm(long long pid)
{
	char path[64], comm[64] = "";
	FILE *f;

	snprintf(path, sizeof path, "/proc/%lld/comm", pid);
	f = fopen(path, "r");
	if (!f || !fgets(comm, sizeof comm, f) || strncmp(comm, "gorod", 5))
		bench_die("process %lld (from gorod's stats) is not a gorod here: %s", pid,
			  f ? comm : strerror(errno));
	fclose(f);
}

struct rss_ctx {
	const struct params *p;
	char wg[64];
	char ms[24];
	uint64_t *ids;
};

static int send_sleep(goro_client *c, long i, struct req *q, void *arg)
{
	struct rss_ctx *x = arg;
	const char *args[] = { x->ms, NULL };
	/* expect_ms: long-lived on purpose, not leaks for the monitor. */
	struct goro_spawn s = { .func = "sleep", .args = args, .wg = x->wg,
				.expect_ms = (int)(x->p->ms < INT32_MAX - 60000 ? x->p->ms + 60000
										 : INT32_MAX) };

	(void)i;
	return goro_send_spawn(c, &s, on_reply, q);
}

/* A wait's reply: the task must have ended killed. */
static void on_killed(void *arg, int err, const struct goro_reply *r)
{
	if (err == 0 && r->outcome->state != GORO_TASK_KILLED)
		bench_die("task %" PRIu64 " ended %s, not killed", r->outcome->id,
			  goro_task_state_name(r->outcome->state));
	on_reply(arg, err, r);
}

/* Request 2k kills task k, request 2k+1 waits for it: a wait soon after
 * its kill, before gorod's retention limit (10,000 finished tasks by
 * default) can forget the outcome. */
static int send_kill_wait(goro_client *c, long i, struct req *q, void *arg)
{
	struct rss_ctx *x = arg;
	uint64_t id = x->ids[i / 2];

	if (i % 2 == 0)
		return goro_send_kill(c, id, SIGKILL, on_reply, q);
	return goro_send_wait(c, id, (int)(x->p->timeout * 1000), on_killed, q);
}

/* Polls wg.status and stats (a millisecond apart) until n tasks run and at
 * least n goroutines are parked, or dies at the deadline. */
static void wait_parked(goro_client *c, const char *wg, long n, int64_t deadline,
			struct gorod_stats *s)
{
	for (;;) {
		struct goro_wg_status st;
		struct timespec ms1 = { 0, 1000000 };

		bench_check(c, goro_wg_status(c, wg, &st), "wg.status");
		if (st.has_failure)
			bench_die("a sleeping task failed: %s %s",
				  goro_task_state_name(st.first_failure.state),
				  st.first_failure.message);
		if (st.running == n) {
			get_stats(c, s);
			if (s->waiting >= n)
				return;
		}
		if (bench_now_ns() > deadline)
			bench_die("timed out: %" PRId64 " of %ld tasks running", st.running, n);
		nanosleep(&ms1, NULL);
	}
}

static void goro_rss_run(const struct params *p)
{
	goro_client *c = bench_connect(need_path(p));
	struct rss_ctx x = { .p = p };
	struct bench_batch spawns = { .what = "spawn" }, kills = { .what = "kill or wait" };
	struct gorod_stats s0, s1;
	long long before, parked, after;
	int64_t t0, t1, t2, deadline;
	double kill_secs;

	x.ids = calloc((size_t)p->n, sizeof *x.ids);
	if (!x.ids)
		bench_die("out of memory");
	spawns.ids = x.ids;
	snprintf(x.wg, sizeof x.wg, "task_bench.%d", (int)getpid());
	snprintf(x.ms, sizeof x.ms, "%ld", p->ms);
	bench_check(c, goro_hello(c, "task_bench", NULL), "hello");
	get_stats(c, &s0);
	check_comm(s0.pid);
	before = vm_rss(s0.pid);

	t0 = bench_now_ns();
	deadline = t0 + (int64_t)(p->timeout * 1e9);
	send_all(c, &spawns, p->n, p->window, send_sleep, &x, deadline);
	t1 = bench_now_ns();
	wait_parked(c, x.wg, p->n, deadline, &s1);
	t2 = bench_now_ns();
	parked = vm_rss(s0.pid);

	/* gorod lets a connection have 1024 requests waiting (the waits). */
	send_all(c, &kills, 2 * p->n, p->window < 1024 ? p->window : 1024, send_kill_wait, &x,
		 deadline);
	kill_secs = secs_since(t2);
	after = vm_rss(s0.pid);

	printf("goro_rss n=%ld rss_before=%lld rss_parked=%lld bytes_per_task=%.0f "
	       "stats_rss=%lld stacks=%lld stack_bytes=%lld spawn_secs=%.3f spawns_per_s=%.0f "
	       "park_secs=%.3f kill_secs=%.3f rss_after_kill=%lld\n",
	       p->n, before, parked, (double)(parked - before) / (double)p->n, s1.rss,
	       s1.stacks, s1.stack_bytes, (double)(t1 - t0) / 1e9,
	       (double)p->n * 1e9 / (double)(t1 - t0), (double)(t2 - t1) / 1e9, kill_secs,
	       after);
	free(x.ids);
	goro_close(c);
}

int main(int argc, char **argv)
{
	struct params p;

	if (argc < 2)
		usage();
	parse_params(argc - 2, argv + 2, !strcmp(argv[1], "goro_rss"), &p);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "spawn_loop"))
		spawn_loop(&p);
	else if (!strcmp(argv[1], "goro_spawn"))
		goro_spawn_run(&p);
	else if (!strcmp(argv[1], "goro_rss"))
		goro_rss_run(&p);
	else
		usage();
	return 0;
}
