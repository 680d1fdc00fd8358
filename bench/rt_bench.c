/* rt_bench: micro-benchmarks of the goroutine runtime (daemon/runtime).
 *
 * The C half of a side-by-side comparison with Go: bench/go/rtbench is the
 * other half, with the same command line and the same output,
 *
 *	rt_bench WORKLOAD [key=value ...]
 *	spawn_join p=2 n=1000000 ns_per_op=123.4
 *
 * so that bench/run-runtime can run the two alternately and divide. Keep the
 * two programs doing the same work step for step: a change here needs the
 * same change there. Each run is one process (memory figures need a fresh
 * one): rt_init, one main goroutine that does the workload and prints its
 * line, rt_shutdown.
 *
 * Exit status: 0; 1 when the runtime returned an error or a wrong result
 * (the message on stderr says which); 2 on bad usage. */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "runtime.h"

/* The key=value arguments. Unset keys hold -1; each workload picks its own
 * defaults. `stack` (bytes) is ours alone: it sets rt_config.stack_size. */
struct params {
	long long p, n, g, reads, spawners, per, work, stack;
};

static const char *const param_keys[] = {
	"p", "n", "g", "reads", "spawners", "per", "work", "stack",
};

static long long *param_slot(struct params *ps, size_t i)
{
	long long *slots[] = { &ps->p, &ps->n, &ps->g, &ps->reads,
			       &ps->spawners, &ps->per, &ps->work, &ps->stack };
	return slots[i];
}

static long long param_or(long long v, long long def)
{
	return v < 0 ? def : v;
}

/* Prints "rt_bench: <message>" and exits 1: a result we cannot report. */
__attribute__((format(printf, 1, 2), noreturn))
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("rt_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Dies with the runtime's own name for `code` when a call failed. */
static void check(int code, const char *what)
{
	if (code < 0)
		die("%s: %s (%s)", what, proto_strerror(code),
		    proto_err_name(code));
}

__attribute__((noreturn))
static void usage(void)
{
	fputs("usage: rt_bench WORKLOAD [key=value ...]\n"
	      "  spawn_join p=P n=N            spawn N goroutines that each wg_done, join; ns per goroutine\n"
	      "  ctxsw n=N                     N round trips between two goroutines, p=1; ns per one-way handoff\n"
	      "  rss n=N [p=P]                 VmRSS growth per parked goroutine; bytes per goroutine\n"
	      "  mutex g=G n=N [p=P]           G goroutines share N lock+unlock ops; ns per op\n"
	      "  rwmutex g=G n=N reads=R [p=P] same, R% read locks; ns per op\n"
	      "  sweep p=P spawners=S per=K work=W\n"
	      "                                S spawners each spawn and join K goroutines that\n"
	      "                                do W rounds of arithmetic; goroutines per second\n"
	      "  any workload: stack=BYTES     goroutine stack size (rt_config.stack_size)\n",
	      stderr);
	exit(2);
}

/* Fills *ps from argv's key=value words; bad usage exits 2. */
static void parse_params(int argc, char **argv, struct params *ps)
{
	for (size_t i = 0; i < sizeof(param_keys) / sizeof(param_keys[0]); i++)
		*param_slot(ps, i) = -1;
	for (int a = 0; a < argc; a++) {
		const char *eq = strchr(argv[a], '=');
		char *end;
		size_t i;

		for (i = 0; i < sizeof(param_keys) / sizeof(param_keys[0]); i++)
			if (eq && strlen(param_keys[i]) == (size_t)(eq - argv[a]) &&
			    !strncmp(argv[a], param_keys[i], eq - argv[a]))
				break;
		if (i == sizeof(param_keys) / sizeof(param_keys[0])) {
			fprintf(stderr, "rt_bench: bad argument \"%s\"\n", argv[a]);
			usage();
		}
		*param_slot(ps, i) = strtoll(eq + 1, &end, 10);
		if (eq[1] == '\0' || *end != '\0' || *param_slot(ps, i) < 0) {
			fprintf(stderr, "rt_bench: \"%s\": want a non-negative integer\n", argv[a]);
			usage();
		}
	}
}

/* The CPUs this process may use: Go's runtime.NumCPU(). */
static long long ncpu(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	return CPU_COUNT(&set);
}

/* ---- a. spawn + join ---------------------------------------------------- */

struct spawn_join {
	struct rt_wg wg;
	long long p, n;
};

static void spawn_join_child(void *arg)
{
	check(rt_wg_done(arg), "rt_wg_done");
}

/* The cost of `go f()` from spawn to exit, with an empty body: spawn n
 * goroutines that each mark a WaitGroup done, and wait for it. */
static void spawn_join_main(void *arg)
{
	struct spawn_join *b = arg;
	int64_t t0 = rt_now(), el;

	check(rt_wg_add(&b->wg, b->n), "rt_wg_add");
	for (long long i = 0; i < b->n; i++)
		check(rt_go(spawn_join_child, &b->wg, NULL), "rt_go");
	check(rt_wg_wait(&b->wg, RT_FOREVER), "rt_wg_wait");
	el = rt_now() - t0;
	printf("spawn_join p=%lld n=%lld ns_per_op=%.1f\n", b->p, b->n,
	       (double)el / (double)b->n);
}

/* ---- b. context switch ------------------------------------------------- */

/* Two goroutines hand a token back and forth; each waits on its own
 * semaphore (capacity 1, starts fully acquired) and releases the other's.
 * Go does the same over two unbuffered channels. */
struct ctxsw {
	struct rt_sem a, b;
	struct rt_wg wg;
	long long n;
};

static void ctxsw_ping(void *arg)
{
	struct ctxsw *b = arg;

	for (long long i = 0; i < b->n; i++) {
		check(rt_sem_release(&b->b, 1), "rt_sem_release");
		check(rt_sem_acquire(&b->a, 1, RT_FOREVER), "rt_sem_acquire");
	}
	check(rt_wg_done(&b->wg), "rt_wg_done");
}

static void ctxsw_pong(void *arg)
{
	struct ctxsw *b = arg;

	for (long long i = 0; i < b->n; i++) {
		check(rt_sem_acquire(&b->b, 1, RT_FOREVER), "rt_sem_acquire");
		check(rt_sem_release(&b->a, 1), "rt_sem_release");
	}
	check(rt_wg_done(&b->wg), "rt_wg_done");
}

/* n round trips are 2n one-way handoffs; we report ns per handoff. */
static void ctxsw_main(void *arg)
{
	struct ctxsw *b = arg;
	int64_t t0, el;

	rt_sem_init(&b->a, 1);
	rt_sem_init(&b->b, 1);
	check(rt_sem_tryacquire(&b->a, 1), "rt_sem_tryacquire");
	check(rt_sem_tryacquire(&b->b, 1), "rt_sem_tryacquire");
	t0 = rt_now();
	check(rt_wg_add(&b->wg, 2), "rt_wg_add");
	check(rt_go(ctxsw_ping, b, NULL), "rt_go");
	check(rt_go(ctxsw_pong, b, NULL), "rt_go");
	check(rt_wg_wait(&b->wg, RT_FOREVER), "rt_wg_wait");
	el = rt_now() - t0;
	printf("ctxsw p=1 n=%lld ns_per_op=%.1f\n", b->n,
	       (double)el / (double)(2 * b->n));
}

/* ---- c. memory per parked goroutine ------------------------------------- */

/* This process's resident set in kB, from /proc/self/status. stdio here is
 * safe: only the main goroutine calls it, and it does not park inside. */
static long long vm_rss_kb(void)
{
	char line[256];
	long long kb = -1;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		die("/proc/self/status: %m");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
			break;
	fclose(f);
	if (kb < 0)
		die("no VmRSS line in /proc/self/status");
	return kb;
}

struct rss {
	struct rt_wg gate, done;
	atomic_llong parked;
	long long p, n;
};

/* Counts itself right before it parks on the gate, then waits there. */
static void rss_child(void *arg)
{
	struct rss *b = arg;

	atomic_fetch_add(&b->parked, 1);
	check(rt_wg_wait(&b->gate, RT_FOREVER), "rt_wg_wait");
	check(rt_wg_done(&b->done), "rt_wg_done");
}

/* Reads VmRSS, parks n goroutines on a WaitGroup, waits until all of them
 * counted themselves (plus 20 ms so the last ones are off their stacks),
 * reads VmRSS again, then releases and joins them. */
static void rss_main(void *arg)
{
	struct rss *b = arg;
	long long before, after;

	before = vm_rss_kb();
	check(rt_wg_add(&b->gate, 1), "rt_wg_add");
	check(rt_wg_add(&b->done, b->n), "rt_wg_add");
	for (long long i = 0; i < b->n; i++)
		check(rt_go(rss_child, b, NULL), "rt_go");
	while (atomic_load(&b->parked) < b->n)
		rt_yield();
	check(rt_sleep(rt_deadline_ms(20)), "rt_sleep");
	after = vm_rss_kb();
	check(rt_wg_done(&b->gate), "rt_wg_done");
	check(rt_wg_wait(&b->done, RT_FOREVER), "rt_wg_wait");
	printf("rss p=%lld n=%lld rss_before_kb=%lld rss_after_kb=%lld bytes_per_g=%.1f\n",
	       b->p, b->n, before, after,
	       (double)(after - before) * 1024 / (double)b->n);
}

/* ---- d. contended Mutex and RWMutex ------------------------------------- */

/* g goroutines share n operations on one lock around a trivial critical
 * section: a shared counter. With `rw`, reads% of the operations take the
 * read lock and read the counter; the rest take the write lock. */
struct locks {
	struct rt_mutex mu;
	struct rt_rwmutex rw;
	struct rt_wg wg;
	long long counter; /* protected by mu or rw */
	atomic_llong next_id, writes, sink;
	long long p, g, per, reads;
	bool use_rw;
};

/* One operation of the RWMutex load: read unless (i+id)*37 % 100 lands in
 * the top (100 - reads)%; the *37 spreads the writes out. */
static bool locks_op_rw(struct locks *b, long long i, long long id, long long *seen)
{
	if ((i + id) * 37 % 100 >= b->reads) {
		check(rt_rwmutex_lock(&b->rw, RT_FOREVER), "rt_rwmutex_lock");
		b->counter++;
		check(rt_rwmutex_unlock(&b->rw), "rt_rwmutex_unlock");
		return true;
	}
	check(rt_rwmutex_rlock(&b->rw, RT_FOREVER), "rt_rwmutex_rlock");
	*seen += b->counter;
	check(rt_rwmutex_runlock(&b->rw), "rt_rwmutex_runlock");
	return false;
}

static void locks_worker(void *arg)
{
	struct locks *b = arg;
	long long id = atomic_fetch_add(&b->next_id, 1), seen = 0, wrote = 0;

	for (long long i = 0; i < b->per; i++) {
		if (b->use_rw) {
			wrote += locks_op_rw(b, i, id, &seen);
			continue;
		}
		check(rt_mutex_lock(&b->mu, RT_FOREVER), "rt_mutex_lock");
		b->counter++;
		check(rt_mutex_unlock(&b->mu), "rt_mutex_unlock");
	}
	atomic_fetch_add(&b->sink, seen);
	atomic_fetch_add(&b->writes, wrote);
	check(rt_wg_done(&b->wg), "rt_wg_done");
}

/* Goroutine switches so far (rt_stats.ctxsw): printed next to the lock
 * figures, where they tell spinning from parking. Ours only; the driver
 * ignores keys it does not know. */
static unsigned long long switches(void)
{
	static struct rt_stats st; /* big: not on a goroutine stack */

	rt_stats_get(&st);
	return (unsigned long long)st.ctxsw;
}

static void locks_main(void *arg)
{
	struct locks *b = arg;
	const char *name = b->use_rw ? "rwmutex" : "mutex";
	long long total = b->per * b->g, want;
	unsigned long long sw0 = switches();
	int64_t t0 = rt_now(), el;

	check(rt_wg_add(&b->wg, b->g), "rt_wg_add");
	for (long long j = 0; j < b->g; j++)
		check(rt_go(locks_worker, b, NULL), "rt_go");
	check(rt_wg_wait(&b->wg, RT_FOREVER), "rt_wg_wait");
	el = rt_now() - t0;
	want = b->use_rw ? atomic_load(&b->writes) : total;
	if (b->counter != want)
		die("%s: counter is %lld, want %lld: the lock let two writers in",
		    name, b->counter, want);
	printf("%s p=%lld g=%lld n=%lld", name, b->p, b->g, total);
	if (b->use_rw)
		printf(" reads=%lld", b->reads);
	printf(" ns_per_op=%.1f switches=%llu\n", (double)el / (double)total,
	       switches() - sw0);
}

/* ---- e. spawn-heavy load for a GOMAXPROCS sweep ------------------------- */

static atomic_ullong work_sink;

/* `rounds` rounds of xorshift64: a dependent chain the compiler can neither
 * vectorize nor fold (~6 cycles a round); the same as rtbench's work(). */
static uint64_t work(uint64_t x, long long rounds)
{
	for (long long i = 0; i < rounds; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

struct sweep;

/* One spawner: joins its own `per` children. */
struct spawner {
	struct sweep *b;
	struct rt_wg wg;
	uint64_t seed;
};

struct sweep {
	struct rt_wg all;
	struct spawner *spawners; /* owned by sweep_main */
	long long p, s, per, work;
};

static void sweep_child(void *arg)
{
	struct spawner *sp = arg;

	if (work(sp->seed, sp->b->work) == 0)
		atomic_fetch_add(&work_sink, 1);
	check(rt_wg_done(&sp->wg), "rt_wg_done");
}

static void sweep_spawner(void *arg)
{
	struct spawner *sp = arg;

	check(rt_wg_add(&sp->wg, sp->b->per), "rt_wg_add");
	for (long long i = 0; i < sp->b->per; i++)
		check(rt_go(sweep_child, sp, NULL), "rt_go");
	check(rt_wg_wait(&sp->wg, RT_FOREVER), "rt_wg_wait");
	check(rt_wg_done(&sp->b->all), "rt_wg_done");
}

static void sweep_main(void *arg)
{
	struct sweep *b = arg;
	int64_t t0, el;

	b->spawners = calloc(b->s, sizeof(*b->spawners));
	if (!b->spawners)
		die("out of memory");
	t0 = rt_now();
	check(rt_wg_add(&b->all, b->s), "rt_wg_add");
	for (long long j = 0; j < b->s; j++) {
		b->spawners[j].b = b;
		b->spawners[j].seed = (uint64_t)j * 0x9E3779B97F4A7C15ull + 1;
		check(rt_go(sweep_spawner, &b->spawners[j], NULL), "rt_go");
	}
	check(rt_wg_wait(&b->all, RT_FOREVER), "rt_wg_wait");
	el = rt_now() - t0;
	printf("sweep p=%lld spawners=%lld per=%lld work=%lld gor_per_s=%.0f\n",
	       b->p, b->s, b->per, b->work,
	       (double)(b->s * b->per) * 1e9 / (double)el);
	free(b->spawners);
}

/* ---- driver ------------------------------------------------------------- */

/* Runs fn(arg) as the main goroutine on `maxprocs` workers, then shuts the
 * runtime down. Joined goroutines may still be on their way out when the
 * main one returns (wg_done comes before the return), so -EBUSY from
 * rt_shutdown is retried for up to 5 s before it counts as a leak. */
static void run(const struct params *ps, long long maxprocs, rt_fn fn, void *arg)
{
	struct rt_config cfg = {
		.maxprocs = (int)maxprocs,
		.stack_size = (size_t)param_or(ps->stack, 0),
	};
	int r;

	if (maxprocs < 1 || maxprocs > RT_MAXPROCS_LIMIT)
		die("p=%lld: want 1..%d", maxprocs, RT_MAXPROCS_LIMIT);
	check(rt_init(&cfg), "rt_init");
	check(rt_run(fn, arg), "rt_run");
	fflush(stdout);
	for (int i = 0; (r = rt_shutdown()) == -EBUSY && i < 5000; i++)
		usleep(1000);
	if (r == -EBUSY) {
		struct rt_stats st;

		rt_stats_get(&st);
		die("rt_shutdown: still busy after 5 s: %llu goroutines live "
		    "(%llu running, %llu runnable, %llu waiting)",
		    (unsigned long long)st.live, (unsigned long long)st.running,
		    (unsigned long long)st.runnable, (unsigned long long)st.waiting);
	}
	check(r, "rt_shutdown");
}

int main(int argc, char **argv)
{
	struct params ps;
	const char *w;

	if (argc < 2)
		usage();
	w = argv[1];
	parse_params(argc - 2, argv + 2, &ps);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(w, "spawn_join")) {
		static struct spawn_join b;

		b.p = param_or(ps.p, 1);
		b.n = param_or(ps.n, 1000000);
		run(&ps, b.p, spawn_join_main, &b);
	} else if (!strcmp(w, "ctxsw")) {
		static struct ctxsw b;

		b.n = param_or(ps.n, 1000000);
		run(&ps, 1, ctxsw_main, &b);
	} else if (!strcmp(w, "rss")) {
		static struct rss b;

		b.p = param_or(ps.p, ncpu());
		b.n = param_or(ps.n, 100000);
		run(&ps, b.p, rss_main, &b);
	} else if (!strcmp(w, "mutex") || !strcmp(w, "rwmutex")) {
		static struct locks b;

		b.use_rw = !strcmp(w, "rwmutex");
		b.p = param_or(ps.p, ncpu());
		b.g = param_or(ps.g, 4);
		b.reads = param_or(ps.reads, 90);
		if (b.g < 1 || b.reads > 100)
			usage();
		b.per = param_or(ps.n, 10000000) / b.g;
		run(&ps, b.p, locks_main, &b);
	} else if (!strcmp(w, "sweep")) {
		static struct sweep b;

		b.p = param_or(ps.p, 1);
		b.s = param_or(ps.spawners, 100);
		b.per = param_or(ps.per, 2000);
		b.work = param_or(ps.work, 200);
		run(&ps, b.p, sweep_main, &b);
	} else {
		fprintf(stderr, "rt_bench: unknown workload \"%s\"\n", w);
		usage();
	}
	return 0;
}
