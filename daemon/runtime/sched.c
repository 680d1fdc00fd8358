/* sched.c: the goroutine scheduler.
 *
 * ---- Concepts ---------------------------------------------------------------
 *
 * A goroutine (struct g) is a function with its own stack. A worker (struct
 * p) is an OS thread with a local run queue; there are GOMAXPROCS of them.
 * Go separates the thread (M) from the right to run Go code (P) so that a
 * thread blocked in a system call can hand its P over. gorod's goroutines
 * never block in the kernel while holding a worker (everything that waits,
 * waits by parking: netpoll for fds and child processes, timers for time),
 * so here one thread is one P for its whole life, and the machinery of
 * handing Ps between threads is not needed.
 *
 * Scheduling is cooperative: a goroutine runs until it parks, yields or
 * returns. Between those points it never moves, which is what makes libc's
 * thread-local state safe to use (runtime.h says what is not). sysmon.c
 * measures how long each goroutine keeps its worker without yielding, so a
 * goroutine that hogs a worker is reported rather than preempted.
 *
 * ---- Where a goroutine is ---------------------------------------------------
 *
 *   RUNNABLE  in exactly one run queue: a worker's runnext slot, its ring, or
 *             the global queue (runq.c). Whoever takes it from the queue
 *             owns it.
 *   RUNNING   on exactly one worker (p->curg), on its own stack.
 *   WAITING   parked: off every queue and every CPU; some waker (a wait
 *             queue, a timer, the netpoller, a canceller) holds a way to it,
 *             and the first to claim it (below) makes it RUNNABLE again.
 *   FREE      a recycled record on a free list, with no stack.
 *
 * Stacks are lazy: a new goroutine gets its stack when it first runs, from
 * the worker's cache of recently freed (warm) stacks. So spawning a million
 * goroutines that finish quickly touches a handful of stacks, not a million.
 * Who owns a stack: the goroutine, from its first run until it returns; then
 * the worker that ran it (in its cache); then the global pool (stack.c).
 *
 * ---- Switching --------------------------------------------------------------
 *
 * A goroutine that parks switches directly to the next goroutine of its
 * worker's local queue when there is one, and only otherwise to the worker's
 * own thread stack (g0), where findrunnable() looks further afield (global
 * queue, netpoll, stealing) and finally sleeps. A switch is one call to
 * rt_ctx_jump (ctx_*.S): six registers and the FPU control words.
 *
 * The trouble with switching from a goroutine that is parking: until its
 * registers are saved it is still running on its stack, yet the moment it is
 * in a wait queue another thread may wake it and resume it. Go solves this
 * by switching to g0 first and releasing the lock there (park_m's unlockf).
 * We do the same without the extra switch: before switching, the parking
 * goroutine leaves an "after-switch" note in its worker (p->after), and
 * every place where a context resumes runs that note first
 * (after_switch_run). The note releases the wait queue's lock, arms a timer,
 * or frees a dead goroutine's stack, always once the previous goroutine is
 * off its stack.
 *
 * ---- Parking and claiming ---------------------------------------------------
 *
 * One primitive: sched_park(). Every park may have several would-be wakers
 * (the primitive it waits on, its deadline's timer, the netpoller, a
 * canceller). The goroutine's park_state decides: it reads PARKED(gen) once
 * the goroutine is off its stack (set by the after-switch note), and a waker
 * must win the compare-and-swap PARKED(gen) -> CLAIMED to make it runnable
 * (sched_claim). Losers do nothing. A waker that found the goroutine through
 * a wait queue holds the queue's lock, so the goroutine cannot meanwhile
 * leave for another park; the timer and netpoll event are removed (and any
 * running callback waited for) before a park returns, so no callback
 * outlives its park. Cancellation is a sticky flag plus a claim; a claim
 * that would arrive before PARKED is published is caught by the note, which
 * checks the flag after publishing (a Dekker pair with sequentially
 * consistent atomics on both sides).
 *
 * ---- Idle workers -----------------------------------------------------------
 *
 * An idle runtime uses no CPU. A worker with nothing to run joins the idle
 * list, checks every queue once more (so a goroutine queued meanwhile is not
 * missed; another Dekker pair: queue-then-check-idle versus
 * go-idle-then-check-queues) and sleeps: one idle worker blocks in the
 * netpoller (libevent) if any goroutine waits on an fd or a timer, the others
 * on a futex. Making a goroutine ready wakes one idle worker only when no
 * worker is already spinning (looking for work), as Go's wakep() does, so a
 * burst of readies wakes one thread, which wakes the next if it finds
 * plenty. The readied goroutine itself goes to the waker's own runnext: if
 * the waker parks right after (a handoff), the readied goroutine runs on the
 * same thread with no cross-CPU wakeup at all.
 *
 * ---- I/O under load ---------------------------------------------------------
 *
 * findrunnable polls when the queues are empty; an idle worker blocks in
 * the poller. When no worker is idle and the queues never empty (one
 * client's flood of pipelined requests, the tasks it spawns), a ready fd
 * would wait for sysmon's backup poll, 10 ms. So a busy worker polls
 * (without waiting) when it switches and nobody has polled for
 * POLL_DUE_NS, and a goroutine working through a backlog ends its turn
 * then and yields with rt_yield_io, which polls too (session.c's readers
 * do). What such a poll makes ready runs before the queues (p->prio):
 * what is queued has had its turn, and another client's request that just
 * arrived waits for nobody's backlog. After such a poll, a worker that
 * went idle meanwhile is woken to block in the poller itself
 * (poller_handoff). An idle or lightly loaded gorod never takes this
 * path: a worker in the poller sees everything at once.
 *
 * ---- GOMAXPROCS ------------------------------------------------------------
 *
 * Raising it starts workers. Lowering it marks the surplus workers as
 * retiring: a retiring worker stops taking goroutines from its queue, lets
 * its current goroutine run to its next switch, then moves everything in its
 * queue to the global queue and exits. Only the owner pushes to a local
 * queue, so nothing can be queued behind the drain. No goroutine is lost,
 * duplicated or stranded; tests/test_maxprocs.c checks it under load.
 *
 * ---- What protects what -----------------------------------------------------
 *
 *   sched.lock          the global queue, the idle list, p->onidle,
 *                       p->wake_spinning, p->polling
 *   sched.procs_lock    allp[], maxprocs changes, shutdown
 *   owner only          p->curg, p->after, p->gfree, p->stackcache, the
 *                       ring's tail, the g's saved context while it runs
 *   atomics             ring head/tail/slots, runnext, park_state, status,
 *                       counters (owner writes, anyone reads)
 *
 * ---- Rejected designs -------------------------------------------------------
 *
 *   - A dedicated netpoll thread: every I/O wakeup would cost a hop from
 *     that thread to a worker (~20 us across CPUs on the target machines).
 *     Here an idle worker polls and runs what it finds itself.
 *   - One mapping (with a guard page) per stack: a million goroutines would
 *     need two million mappings; vm.max_map_count is 65530. See stack.c.
 *   - Switching to g0 on every park (Go's mcall): doubles the cost of a
 *     handoff; the after-switch note gives the same safety.
 *   - Preemption by signals: a goroutine interrupted inside libc (malloc,
 *     stdio) and resumed on another thread would corrupt libc's per-thread
 *     state. Cooperative scheduling plus hog reports instead. */
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(GORO_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

struct sched sched;

/* The worker this thread is, NULL on other threads. Not static, and read
 * through a call that is not inlined, so that the compiler reloads it after
 * every switch: a goroutine may resume on another thread. */
__thread struct p *rt_tls_p __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) struct p *sched_current_p(void)
{
	struct p *p = rt_tls_p;
	__asm__ __volatile__("" : "+r"(p) : : "memory");
	return p;
}

struct g *sched_current_g(void)
{
	struct p *p = sched_current_p();
	return p ? p->curg : NULL;
}

/* errno is reached through a function the compiler may treat as constant,
 * so saving and restoring it across a switch happens in functions of their
 * own: each looks up the errno of the thread it runs on. */
__attribute__((noinline)) static void errno_save(struct g *g)
{
	g->saved_errno = errno;
}

__attribute__((noinline)) static void errno_restore(struct g *g)
{
	errno = g->saved_errno;
}

static inline void counter_inc(_Atomic uint64_t *c)
{
	/* Owner-only counter: a plain load and store, atomic for readers. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static int64_t coarse_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t rt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t rt_deadline_ms(int64_t ms)
{
	return ms < 0 ? RT_FOREVER : rt_now() + ms * 1000000LL;
}

static void futex_wait(atomic_uint *addr, unsigned val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_uint *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- goroutine records ------------------------------------------------------ */

#define GSLAB_BYTES (2u << 20) /* one huge page of records */
#define GSLAB_N ((int)(GSLAB_BYTES / sizeof(struct g)))
#define GCACHE_MAX 64

/* Records are carved from 2 MiB huge-page slabs: a million goroutines then
 * cost ~80 page faults instead of ~40,000 (spawning is dominated by them
 * otherwise). */
struct gslab {
	struct gslab *next;
	struct g *gs;      /* GSLAB_N records, 2 MiB aligned */
};

static pthread_mutex_t gslab_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct gslab *) gslabs;   /* append-only list of all records */
static struct g *gfree_global;           /* gslab_lock */

/* Maps 2 MiB aligned to 2 MiB, asking for a huge page. */
static void *gslab_map(void)
{
	char *m = mmap(NULL, 2 * GSLAB_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (m == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)m + GSLAB_BYTES - 1) & ~(uintptr_t)(GSLAB_BYTES - 1));
	if (a > m)
		munmap(m, (size_t)(a - m));
	if (a + GSLAB_BYTES < m + 2 * GSLAB_BYTES)
		munmap(a + GSLAB_BYTES, (size_t)(m + 2 * GSLAB_BYTES - (a + GSLAB_BYTES)));
	madvise(a, GSLAB_BYTES, MADV_HUGEPAGE);
	return a;
}

/* gslab_lock held: allocates a slab and puts its records on the free list. */
static int gslab_new(void)
{
	struct gslab *s = malloc(sizeof *s);

	if (!s)
		return -ENOMEM;
	s->gs = gslab_map();
	if (!s->gs) {
		free(s);
		return -ENOMEM;
	}
#if defined(GORO_ASAN)
	/* Records hold malloc'd memory (a parked goroutine's libevent
	 * event): LeakSanitizer must scan them, or it reports that memory
	 * as leaked while the runtime runs. */
	__lsan_register_root_region(s->gs, GSLAB_BYTES);
#endif
	for (int i = GSLAB_N - 1; i >= 0; i--) {
		s->gs[i].schedlink = gfree_global;
		gfree_global = &s->gs[i];
	}
	s->next = atomic_load(&gslabs);
	atomic_store(&gslabs, s);
	return 0;
}

/* A free goroutine record, from p's cache (p may be NULL), or NULL. */
static struct g *g_get(struct p *p)
{
	struct g *g;

	if (p && p->gfree) {
		g = p->gfree;
		p->gfree = g->schedlink;
		p->ngfree--;
		return g;
	}
	pthread_mutex_lock(&gslab_lock);
	if (!gfree_global && gslab_new() < 0) {
		pthread_mutex_unlock(&gslab_lock);
		return NULL;
	}
	/* Take a batch for the cache while the lock is held. */
	g = gfree_global;
	gfree_global = g->schedlink;
	while (p && p->ngfree < GCACHE_MAX / 2 && gfree_global) {
		struct g *x = gfree_global;
		gfree_global = x->schedlink;
		x->schedlink = p->gfree;
		p->gfree = x;
		p->ngfree++;
	}
	pthread_mutex_unlock(&gslab_lock);
	return g;
}

static void g_put(struct p *p, struct g *g)
{
	if (p && p->ngfree < GCACHE_MAX) {
		g->schedlink = p->gfree;
		p->gfree = g;
		p->ngfree++;
		return;
	}
	pthread_mutex_lock(&gslab_lock);
	g->schedlink = gfree_global;
	gfree_global = g;
	while (p && p->ngfree > GCACHE_MAX / 2) {
		struct g *x = p->gfree;
		p->gfree = x->schedlink;
		p->ngfree--;
		x->schedlink = gfree_global;
		gfree_global = x;
	}
	pthread_mutex_unlock(&gslab_lock);
}

/* ---- switching -------------------------------------------------------------- */

static void g_entry(void);

/* Runs the note the previous context left (see "Switching"). */
static void after_switch_run(void)
{
	struct p *p = sched_current_p();
	struct after_switch a = p->after;

	p->after.fn = NULL;
	if (a.fn)
		a.fn(a.prev, a.arg);
}

/* Switches from the running context `from` to g on worker p. */
static void switch_to(struct p *p, struct ctx *from, struct g *g, bool dying)
{
	if (!g->ctx.lo) {
		char *lo = stack_get(p);
		if (!lo)
			rt_throw("out of memory for goroutine stacks");
		ctx_make(&g->ctx, lo, stack_bytes(), g_entry);
	}
	atomic_store_explicit(&g->status, RT_G_RUNNING, memory_order_relaxed);
	p->curg = g;
	atomic_store_explicit(&p->cur_atomic, g, memory_order_relaxed);
	p->schedtick++;
	atomic_store_explicit(&p->schedtick_pub, p->schedtick, memory_order_relaxed);
	counter_inc(&p->nctxsw);
	ctx_switch(from, &g->ctx, dying);
}

/* Switches from the running goroutine g to p's own thread stack. */
static void switch_to_g0(struct p *p, struct g *g, bool dying)
{
	p->curg = NULL;
	atomic_store_explicit(&p->cur_atomic, NULL, memory_order_relaxed);
	ctx_switch(&g->ctx, &p->g0, dying);
}

/* The next of what a poll_first poll made ready (they run before the
 * queues, in order), or NULL. */
static struct g *prio_take(struct p *p)
{
	struct g *g;

	if (p->prio_pos == p->nprio)
		return NULL;
	g = p->prio[p->prio_pos++];
	if (p->prio_pos == p->nprio)
		p->nprio = p->prio_pos = 0;
	return g;
}

/* What p should run next without leaving the goroutine's stack: its local
 * queue (and, for fairness, now and then the global queue), or NULL. */
static struct g *next_local(struct p *p)
{
	struct g *g;

	if (unlikely(atomic_load_explicit(&p->retire, memory_order_relaxed) ||
		     atomic_load_explicit(&sched.stopping, memory_order_relaxed)))
		return NULL;
	if ((g = prio_take(p)))
		return g;
	if (p->schedtick % 61 == 0 &&
	    atomic_load_explicit(&sched.globq_len, memory_order_relaxed)) {
		pthread_mutex_lock(&sched.lock);
		g = globq_get_locked(p, 1);
		pthread_mutex_unlock(&sched.lock);
		if (g)
			return g;
	}
	return runq_get(p);
}

/* Whether p, busy with its queue, should poll before running the next:
 * findrunnable polls only when the queues are empty, so while a stream of
 * goroutines keeps them full (a flood of pipelined requests, the tasks it
 * spawns), an fd that became ready waits for sysmon's backup poll, 10 ms
 * later. Here a worker that switches polls first (through g0, poll_first)
 * once nobody has for POLL_DUE_NS, unless a worker waits in the poller.
 * The clock is read only then: a busy worker (more is queued) while no
 * worker is idle in the poller; an idle gorod never pays for it. */
#define POLL_DUE_NS (10 * 1000LL)

static bool poll_due(struct p *p)
{
	if (runq_empty(p) || !rt_poll_due(rt_now()))
		return false;
	p->poll_first = true;
	return true;
}

bool rt_poll_due(int64_t now)
{
	return netpoll_has_waiters() && !netpoll_owned() &&
	       now - netpoll_last_poll() >= POLL_DUE_NS;
}

/* Leaves the running goroutine g for the next one, or g0. */
static void switch_away(struct p *p, struct g *g, bool dying)
{
	struct g *next = poll_due(p) ? NULL : next_local(p);

	if (next)
		switch_to(p, &g->ctx, next, dying);
	else
		switch_to_g0(p, g, dying);
}

/* ---- goroutines --------------------------------------------------------------- */

static void g_free_after(struct g *g, void *unused)
{
	struct p *p = sched_current_p();

	ctx_release(&g->ctx);
	stack_put(p, g->ctx.lo);
	g->ctx.lo = NULL;
	atomic_store_explicit(&g->id, 0, memory_order_relaxed);
	atomic_store_explicit(&g->status, RT_G_FREE, memory_order_release);
	g_put(p, g);
}

static _Noreturn void goexit(struct g *g)
{
	struct p *p = sched_current_p();

	stack_check(g, NULL, true);
	counter_inc(&p->nfinished);
	atomic_store_explicit(&g->status, RT_G_DEAD, memory_order_relaxed);
	p->after = (struct after_switch){ g_free_after, g, NULL };
	switch_away(p, g, true);
	rt_throw("dead goroutine %llu resumed", (unsigned long long)g->id);
}

/* Where every goroutine starts (through the trampoline of ctx_*.S), and
 * where one that slept without a stack starts over (rt_sleep_then). */
static void g_entry(void)
{
	ctx_entered();
	after_switch_run();
	struct g *g = sched_current_g();
	if (atomic_load_explicit(&g->park_state, memory_order_relaxed) != PS_RUNNING) {
		/* Woken from rt_sleep_then: what sched_park does after a park. */
		atomic_store_explicit(&g->park_state, PS_RUNNING, memory_order_relaxed);
		if (g->ev_armed)
			netpoll_disarm(g);
		atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
	}
	g->fn(g->arg);
	goexit(sched_current_g());
}

static uint64_t id_next(struct p *p)
{
	if (!p)
		return atomic_fetch_add(&sched.next_id, 1);
	if (p->idnext == p->idend) {
		p->idnext = atomic_fetch_add(&sched.next_id, 64);
		p->idend = p->idnext + 64;
	}
	return p->idnext++;
}

int rt_go(rt_fn fn, void *arg, struct rt_gref *ref)
{
	struct p *p = sched_current_p();
	struct g *g;

	if (!sched.initialized)
		return -EINVAL;
	g = g_get(p);
	if (!g)
		return -ENOMEM;
	g->fn = fn;
	g->arg = arg;
	atomic_store_explicit(&g->created_ns, coarse_now(), memory_order_relaxed);
	atomic_store_explicit(&g->park_state, PS_RUNNING, memory_order_relaxed);
	atomic_store_explicit(&g->max_hold_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
	uint64_t id = id_next(p);
	atomic_store_explicit(&g->id, id, memory_order_relaxed);
	atomic_store_explicit(&g->status, RT_G_RUNNABLE, memory_order_release);
	if (ref)
		*ref = (struct rt_gref){ g, id };
	if (p) {
		counter_inc(&p->nspawned);
	} else {
		atomic_fetch_add(&sched.spawned_ext, 1);
	}
	sched_ready(g, true);
	return 0;
}

uint64_t rt_self_id(void)
{
	struct g *g = sched_current_g();
	return g ? atomic_load_explicit(&g->id, memory_order_relaxed) : 0;
}

/* Makes g runnable: on this worker's queue, or on the global queue from a
 * thread that is not a worker (or is retiring). With `next`, and when a
 * goroutine is doing the readying (a handoff), g goes to runnext, to run
 * right after the waker; readies from the netpoller (on g0) keep their
 * order at the tail, so timers run in deadline order. */
void sched_ready(struct g *g, bool next)
{
	struct p *p = sched_current_p();

	atomic_store_explicit(&g->status, RT_G_RUNNABLE, memory_order_relaxed);
	if (p && p->collecting && p->ncollect < (int)(sizeof p->collect / sizeof p->collect[0])) {
		p->collect[p->ncollect++] = g; /* see collected_take() */
		return;
	}
	if (p && !atomic_load_explicit(&p->retire, memory_order_relaxed)) {
		bool to_next = next && p->curg;

		/* wakep's loads must not pass the put (a Dekker pair with a
		 * worker going idle). Putting to runnext is a seq_cst
		 * exchange, which orders them already; a put to the ring is
		 * a release store and needs the fence. */
		runq_put(p, g, to_next);
		if (!to_next)
			atomic_thread_fence(memory_order_seq_cst);
	} else {
		pthread_mutex_lock(&sched.lock);
		globq_put_locked(g);
		pthread_mutex_unlock(&sched.lock);
		atomic_thread_fence(memory_order_seq_cst);
	}
	sched_wakep();
}

bool sched_claim(struct g *g, int result)
{
	uint64_t s = atomic_load(&g->park_state);

	if (s == PS_RUNNING || s == PS_CLAIMED)
		return false;
	if (!atomic_compare_exchange_strong(&g->park_state, &s, PS_CLAIMED))
		return false;
	g->wake_result = result;
	sched_ready(g, true);
	return true;
}

/* The after-switch note of a park: publishes PARKED, arms the timer or fd
 * event, releases the wait queue's lock, and catches a cancel or an event
 * that came before PARKED was published. */
static void park_commit(struct g *g, void *arg)
{
	struct park *pk = arg;
	rt_spin *unlock = pk->unlock;
	int fd = pk->fd;
	short events = pk->events;
	int64_t deadline = pk->deadline;
	bool arm = fd >= 0 || deadline != RT_FOREVER;
	bool nocancel = pk->nocancel;
	uint64_t id = atomic_load_explicit(&g->id, memory_order_relaxed);
	int r = 0;

	/* pk lives on g's stack: nothing of it is read below this point. */
	g->ev_armed = false;
	if (arm) {
		r = netpoll_arm(g, fd, events, deadline);
		g->ev_armed = r == 0;
	}
	atomic_store(&g->park_state, nocancel ? PS_PARKED_NOCANCEL(id) : PS_PARKED(id));
	if (unlock)
		rt_spin_unlock(unlock);
	if (r < 0)
		sched_claim(g, r);
	else if (!nocancel && g_cancelled(g))
		sched_claim(g, -ECANCELED);
	else if (arm && atomic_load(&g->ev_what))
		sched_claim(g, netpoll_result(g));
}

int sched_park(struct park *pk)
{
	struct p *p = sched_current_p();
	struct g *g = p ? p->curg : NULL;
	int r;

	if (!g)
		rt_throw("park outside a goroutine");
	stack_check(g, __builtin_frame_address(0), (p->schedtick & 63) == 0);
	errno_save(g);
	atomic_store_explicit(&g->ev_what, 0, memory_order_relaxed);
	atomic_store_explicit(&g->wait_reason, pk->reason, memory_order_relaxed);
	atomic_store_explicit(&g->wait_obj, pk->obj, memory_order_relaxed);
	atomic_store_explicit(&g->status, RT_G_WAITING, memory_order_relaxed);
	p->after = (struct after_switch){ park_commit, g, pk };
	switch_away(p, g, false);

	after_switch_run();
	atomic_store_explicit(&g->park_state, PS_RUNNING, memory_order_relaxed);
	if (g->ev_armed)
		netpoll_disarm(g);
	atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
	r = g->wake_result;
	errno_restore(g);
	return r;
}

/* The after-switch note of rt_sleep_then: g is off its stack for good, so
 * the stack goes back to the pool (the park, which lived on it, is read
 * first), then the park is committed as any other; the wake starts g over
 * in g_entry on a fresh stack. */
static void park_restart_commit(struct g *g, void *arg)
{
	struct park pk = *(struct park *)arg;
	struct p *p = sched_current_p();

	ctx_release(&g->ctx);
	stack_put(p, g->ctx.lo);
	g->ctx.lo = NULL;
	park_commit(g, &pk);
}

_Noreturn void rt_sleep_then(int64_t deadline, rt_fn fn, void *arg)
{
	struct p *p = sched_current_p();
	struct g *g = p ? p->curg : NULL;
	struct park pk = { .fd = -1, .deadline = deadline, .reason = "sleep" };

	if (!g)
		rt_throw("rt_sleep_then called outside a goroutine");
	stack_check(g, NULL, true);
	g->fn = fn;
	g->arg = arg;
	atomic_store_explicit(&g->ev_what, 0, memory_order_relaxed);
	atomic_store_explicit(&g->wait_reason, pk.reason, memory_order_relaxed);
	atomic_store_explicit(&g->wait_obj, NULL, memory_order_relaxed);
	atomic_store_explicit(&g->status, RT_G_WAITING, memory_order_relaxed);
	p->after = (struct after_switch){ park_restart_commit, g, &pk };
	switch_away(p, g, true);
	rt_throw("goroutine %llu resumed a stack it gave up", (unsigned long long)g->id);
}

/* The after-switch note of a yield: g is off its stack, queue it. */
static void yield_commit(struct g *g, void *unused)
{
	sched_ready(g, false);
}

void rt_yield(void)
{
	struct p *p = sched_current_p();
	struct g *g = p ? p->curg : NULL;
	struct g *next;

	if (!g)
		rt_throw("rt_yield outside a goroutine");
	next = next_local(p);
	if (!next && !atomic_load_explicit(&sched.globq_len, memory_order_relaxed) &&
	    !atomic_load_explicit(&p->retire, memory_order_relaxed)) {
		/* Nothing else to run here; still, it yielded (sysmon.c). */
		atomic_store_explicit(&p->schedtick_pub, ++p->schedtick,
				      memory_order_relaxed);
		return;
	}
	stack_check(g, __builtin_frame_address(0), (p->schedtick & 63) == 0);
	errno_save(g);
	atomic_store_explicit(&g->status, RT_G_RUNNABLE, memory_order_relaxed);
	p->after = (struct after_switch){ yield_commit, g, NULL };
	if (next)
		switch_to(p, &g->ctx, next, false);
	else
		switch_to_g0(p, g, false);
	after_switch_run();
	errno_restore(g);
}

/* A goroutine that yields again and again keeps its worker's queues full,
 * and findrunnable polls only when they are empty: I/O would then be seen
 * only by sysmon's backup poll, every 10 ms. This yield goes through g0
 * with poll_first set, so findrunnable polls first and runs what the poll
 * made ready before anything queued (yielded goroutines included). */
void rt_yield_io(void)
{
	struct p *p = sched_current_p();
	struct g *g = p ? p->curg : NULL;

	if (!g)
		rt_throw("rt_yield_io outside a goroutine");
	if (!netpoll_has_waiters() || netpoll_owned() ||
	    atomic_load_explicit(&p->retire, memory_order_relaxed)) {
		rt_yield(); /* an idle worker polls, or there is nothing to poll */
		return;
	}
	stack_check(g, __builtin_frame_address(0), (p->schedtick & 63) == 0);
	errno_save(g);
	atomic_store_explicit(&g->status, RT_G_RUNNABLE, memory_order_relaxed);
	p->poll_first = true;
	p->after = (struct after_switch){ yield_commit, g, NULL };
	switch_to_g0(p, g, false);
	after_switch_run();
	errno_restore(g);
}

/* Cancels by id: the flag first, then a claim that succeeds only while that
 * very goroutine is parked (its id is in park_state), so a record that was
 * recycled meanwhile is never touched. */
int rt_cancel(struct rt_gref ref)
{
	struct g *g = ref.g;
	uint64_t parked = PS_PARKED(ref.id);

	if (!g || ref.id == 0 ||
	    atomic_load_explicit(&g->id, memory_order_acquire) != ref.id)
		return -ESRCH;
	atomic_store(&g->cancel_id, ref.id);
	if (atomic_compare_exchange_strong(&g->park_state, &parked, PS_CLAIMED)) {
		g->wake_result = -ECANCELED;
		sched_ready(g, true);
	}
	return 0;
}

bool rt_cancelled(void)
{
	struct g *g = sched_current_g();
	return g && g_cancelled(g);
}

/* Workers asked to retire that have not stopped yet; rt_maxprocs waits for
 * them, so that once it returns no more than n goroutines run at once. */
static struct rt_wg retiring;

/* ---- idle workers and wakeups ------------------------------------------------ */

/* sched.lock held: takes an idle worker off the list, preferring one that
 * sleeps on its futex over the one blocked in netpoll (which keeps polling). */
static struct p *idle_pop_locked(void)
{
	struct p **pp, **pick = NULL;

	for (pp = &sched.idle; *pp; pp = &(*pp)->idlenext) {
		pick = pp;
		if (!atomic_load_explicit(&(*pp)->polling, memory_order_relaxed))
			break;
	}
	if (!pick)
		return NULL;
	struct p *p = *pick;
	*pick = p->idlenext;
	p->idlenext = NULL;
	p->onidle = false;
	atomic_fetch_sub(&sched.nidle, 1);
	return p;
}

/* sched.lock held: removes p from the idle list if it is there. */
static bool idle_remove_locked(struct p *p)
{
	if (!p->onidle)
		return false;
	for (struct p **pp = &sched.idle; *pp; pp = &(*pp)->idlenext) {
		if (*pp == p) {
			*pp = p->idlenext;
			break;
		}
	}
	p->idlenext = NULL;
	p->onidle = false;
	atomic_fetch_sub(&sched.nidle, 1);
	return true;
}

/* Wakes p, which was just taken off the idle list. */
static void p_wake(struct p *p)
{
	if (atomic_load(&p->polling)) {
		netpoll_break();
	} else {
		atomic_store(&p->wakeword, 1);
		if (atomic_load(&p->sleeping))
			futex_wake(&p->wakeword);
	}
}

/* Go's wakep: if some worker is idle and none is already looking for work,
 * wakes one to look (it starts "spinning"). */
void sched_wakep(void)
{
	int zero = 0;

	if (atomic_load(&sched.nidle) == 0 || atomic_load(&sched.nspinning) != 0)
		return;
	if (!atomic_compare_exchange_strong(&sched.nspinning, &zero, 1))
		return;
	pthread_mutex_lock(&sched.lock);
	struct p *p = idle_pop_locked();
	if (p)
		p->wake_spinning = true;
	pthread_mutex_unlock(&sched.lock);
	if (!p) {
		atomic_fetch_sub(&sched.nspinning, 1);
		return;
	}
	sysmon_kick();
	p_wake(p);
}

/* A spinning worker found work: it stops spinning, and if it was the last
 * spinner, wakes another, since there may be more work (Go's resetspinning). */
static void spinning_done(struct p *p)
{
	if (!p->spinning)
		return;
	p->spinning = false;
	if (atomic_fetch_sub(&sched.nspinning, 1) == 1)
		sched_wakep();
}

static bool any_work(void)
{
	if (atomic_load(&sched.globq_len))
		return true;
	int n = atomic_load(&sched.maxprocs);
	for (int i = 0; i < n; i++) {
		struct p *v = atomic_load(&sched.allp[i]);
		if (v && !runq_empty(v))
			return true;
	}
	return false;
}

static struct g *steal_work(struct p *p)
{
	int n = atomic_load(&sched.maxprocs);

	for (int round = 0; round < 4; round++) {
		int start = (int)(p->schedtick + (uint32_t)round) % (n > 0 ? n : 1);
		for (int i = 0; i < n; i++) {
			struct p *v = atomic_load(&sched.allp[(start + i) % n]);
			if (!v || v == p)
				continue;
			struct g *g = runq_steal(p, v, round == 3);
			if (g)
				return g;
		}
	}
	return NULL;
}

/* A spinning worker that found nothing keeps looking for a short while
 * before it sleeps: on the target machines waking a sleeping thread on the
 * other CPU costs ~20 us, so a producer that queues work every few
 * microseconds should find this worker awake rather than pay a futex wake
 * (and its latency) each time. Returns true if work appeared.
 *
 * The spin adapts, per worker: one that found nothing halves the next (down
 * to none), one that found work restores the full length, and every 32nd
 * idle spins in full to find out whether spinning pays again. When work
 * comes a millisecond apart (tasks that each run a command), spinning only
 * burns a CPU that the commands need; when it comes microseconds apart (a
 * client's lock requests), it saves a wakeup each time. */
#define IDLE_SPIN_NS (50 * 1000LL)

static bool spin_for_work(struct p *p)
{
	int64_t end, budget;

	if (atomic_load_explicit(&sched.maxprocs, memory_order_relaxed) < 2)
		return false;
	/* Work that arrives through the netpoller is only seen by polling:
	 * if nobody polls now, this worker should, not spin. */
	if (netpoll_has_waiters() && !netpoll_owned())
		return false;
	budget = (++p->nidle_spins & 31) == 0 ? IDLE_SPIN_NS : p->spin_ns;
	if (budget <= 0)
		return false;
	end = rt_now() + budget;
	do {
		for (int i = 0; i < 50; i++)
			cpu_relax();
		if (any_work() || atomic_load(&sched.stopping) || atomic_load(&p->retire)) {
			p->spin_ns = IDLE_SPIN_NS;
			return true;
		}
	} while (rt_now() < end);
	p->spin_ns = budget / 2 < 1000 ? 0 : budget / 2;
	return false;
}

/* After a poll that did not block, by a worker that has more to run: a
 * worker that went idle while the poller was taken sleeps on its futex,
 * and then nobody waits in the poller, so I/O is seen only at the busy
 * worker's next poll. Such a worker is woken to block in the poller
 * instead, and I/O is seen at once. (A worker with nothing more to run
 * will block in the poller itself.) */
static void poller_handoff(struct p *p)
{
	if (!runq_empty(p) && atomic_load(&sched.nidle) > 0 && netpoll_has_waiters() &&
	    !netpoll_owned())
		sched_wakep();
}

/* What a poll by p made ready is collected (sched_ready) instead of queued:
 * p runs the first itself, with no wakeup of another worker that could
 * steal it and answer on the other CPU (~20 us here), and queues the rest,
 * in order, waking help only for those (Go's findrunnable does the same
 * with netpoll's list). */
static struct g *collected_take(struct p *p)
{
	struct g *g;

	if (p->ncollect == 0)
		return NULL;
	g = p->collect[0];
	for (int i = 1; i < p->ncollect; i++)
		runq_put(p, p->collect[i], false);
	if (p->ncollect > 1) {
		atomic_thread_fence(memory_order_seq_cst);
		sched_wakep();
	}
	p->ncollect = 0;
	return g;
}

/* Sleeps until woken: in netpoll if anything waits on it and nobody else
 * polls, else on the futex. Returns with p off the idle list. */
static void p_sleep(struct p *p)
{
	bool poll = false;

	pthread_mutex_lock(&sched.lock);
	if (p->onidle && netpoll_has_waiters() && netpoll_try_own()) {
		atomic_store(&p->polling, true);
		poll = true;
	}
	pthread_mutex_unlock(&sched.lock);
	if (poll) {
		netpoll_poll(p, true);
		netpoll_disown();
	} else {
		/* Whoever takes p off the idle list sets wakeword, and
		 * makes the futex call only if p announced it sleeps. */
		atomic_store(&p->sleeping, true);
		while (atomic_exchange(&p->wakeword, 0) == 0)
			futex_wait(&p->wakeword, 0);
		atomic_store(&p->sleeping, false);
	}
	pthread_mutex_lock(&sched.lock);
	atomic_store(&p->polling, false);
	if (!idle_remove_locked(p))
		p->spinning = p->wake_spinning; /* wakep counted us as spinning */
	p->wake_spinning = false;
	pthread_mutex_unlock(&sched.lock);
}

/* Finds a goroutine for p to run, sleeping until there is one. Returns NULL
 * when p must stop (retiring, or the runtime is shutting down). Runs on
 * p's own thread stack (g0). */
static struct g *findrunnable(struct p *p)
{
	struct g *g;

top:
	if ((g = prio_take(p)) || (g = collected_take(p)))
		goto found;
	if (p->poll_first) { /* rt_yield_io, poll_due */
		p->poll_first = false;
		if (netpoll_has_waiters() && netpoll_try_own()) {
			netpoll_poll(p, false);
			netpoll_disown();
			poller_handoff(p);
			/* What woke on I/O runs before the queues, which hold
			 * goroutines that have had their turn: a request that
			 * just arrived waits for no backlog. */
			memcpy(p->prio, p->collect, (size_t)p->ncollect * sizeof *p->prio);
			p->nprio = p->ncollect;
			p->prio_pos = 0;
			p->ncollect = 0;
			if ((g = prio_take(p)))
				goto found;
		}
	}
	if (atomic_load(&p->retire) || atomic_load(&sched.stopping)) {
		if (p->spinning) {
			p->spinning = false;
			atomic_fetch_sub(&sched.nspinning, 1);
		}
		return NULL;
	}
	if ((g = runq_get(p)))
		goto found;
	if (atomic_load_explicit(&sched.globq_len, memory_order_relaxed)) {
		pthread_mutex_lock(&sched.lock);
		g = globq_get_locked(p, 0);
		pthread_mutex_unlock(&sched.lock);
		if (g)
			goto found;
	}
	/* Goroutines ready on I/O come before stealing, but when every other
	 * worker is idle this one is about to block in the poller anyway:
	 * a non-blocking poll first would be one more system call per
	 * request served. */
	if (netpoll_has_waiters() &&
	    atomic_load(&sched.nidle) < atomic_load(&sched.maxprocs) - 1 &&
	    netpoll_try_own()) {
		netpoll_poll(p, false);
		netpoll_disown();
		if ((g = collected_take(p)))
			goto found;
	}

	/* Steal, unless half the busy workers already spin (Go's limit:
	 * spinning workers burn CPU, and two on two CPUs find nothing more). */
	int nprocs = atomic_load(&sched.maxprocs);
	if (!p->spinning &&
	    2 * atomic_load(&sched.nspinning) < nprocs - atomic_load(&sched.nidle)) {
		p->spinning = true;
		atomic_fetch_add(&sched.nspinning, 1);
	}
	if (p->spinning && (g = steal_work(p)))
		goto found;
	if (p->spinning && spin_for_work(p))
		goto top;

	/* Nothing: go idle. */
	pthread_mutex_lock(&sched.lock);
	if ((g = globq_get_locked(p, 0))) {
		pthread_mutex_unlock(&sched.lock);
		goto found;
	}
	p->onidle = true;
	p->idlenext = sched.idle;
	sched.idle = p;
	atomic_fetch_add(&sched.nidle, 1);
	pthread_mutex_unlock(&sched.lock);
	if (p->spinning) {
		p->spinning = false;
		atomic_fetch_sub(&sched.nspinning, 1);
	}
	/* Work queued by a worker that saw nidle == 0 before we joined the
	 * idle list is found here (seq_cst: the Dekker pair with wakep). */
	atomic_thread_fence(memory_order_seq_cst);
	if (any_work() || atomic_load(&sched.stopping) || atomic_load(&p->retire)) {
		pthread_mutex_lock(&sched.lock);
		if (!idle_remove_locked(p))
			p->spinning = p->wake_spinning;
		p->wake_spinning = false;
		pthread_mutex_unlock(&sched.lock);
		goto top;
	}
	p_sleep(p);
	goto top;

found:
	if (unlikely(atomic_load(&p->retire))) {
		/* Retired while looking: not one more goroutine starts here
		 * (rt_maxprocs promises that); g goes back for another. */
		pthread_mutex_lock(&sched.lock);
		globq_put_locked(g);
		pthread_mutex_unlock(&sched.lock);
		goto top;
	}
	spinning_done(p);
	if (atomic_load_explicit(&sysmon_sleeping, memory_order_relaxed))
		sysmon_kick();
	return g;
}

/* p is retiring: hands its queue and caches to the global pools. */
static void p_drain(struct p *p)
{
	struct g *g;

	pthread_mutex_lock(&sched.lock);
	while ((g = runq_get(p)))
		globq_put_locked(g);
	pthread_mutex_unlock(&sched.lock);
	while (p->nstackcache > 0)
		stack_put(NULL, p->stackcache[--p->nstackcache]);
	while ((g = p->gfree)) {
		p->gfree = g->schedlink;
		p->ngfree--;
		g_put(NULL, g);
	}
	sched_wakep();
}

static void *worker_main(void *arg)
{
	struct p *p = arg;
	struct g *g;

	rt_tls_p = p;
	ctx_init_thread(&p->g0);
	while ((g = findrunnable(p))) {
		switch_to(p, &p->g0, g, false);
		after_switch_run();
	}
	p_drain(p);
	atomic_store(&p->state, P_DEAD);
	if (atomic_load(&p->retire))
		rt_wg_done(&retiring); /* does not park: safe on g0 */
	rt_tls_p = NULL;
	return NULL;
}

/* ---- workers, GOMAXPROCS, lifecycle ------------------------------------------ */

#define PALL_MAX (RT_MAXPROCS_LIMIT * 2)

static struct p *pall[PALL_MAX];   /* every worker ever made (procs_lock) */
static int npall;

/* procs_lock held: a worker record for slot id: a retired one whose thread
 * has ended (its counters carry on), or a new one. */
static struct p *p_alloc(int id)
{
	struct p *p = NULL;

	for (int i = 0; i < npall && !p; i++) {
		struct p *q = pall[i];
		if (atomic_load(&q->state) == P_DEAD) {
			pthread_join(q->thread, NULL);
			atomic_store(&q->state, P_UNUSED);
		}
		if (atomic_load(&q->state) == P_UNUSED)
			p = q;
	}
	if (!p) {
		if (npall == PALL_MAX)
			return NULL;
		p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63);
		if (!p)
			return NULL;
		memset(p, 0, sizeof *p);
		pall[npall++] = p;
	}
	p->id = id;
	p->spinning = false;
	p->spin_ns = IDLE_SPIN_NS;
	p->onidle = false;
	p->wake_spinning = false;
	atomic_store(&p->retire, false);
	atomic_store(&p->polling, false);
	atomic_store(&p->wakeword, 0);
	return p;
}

static int p_start(struct p *p)
{
	atomic_store(&p->state, P_RUNNING);
	if (pthread_create(&p->thread, NULL, worker_main, p) != 0) {
		atomic_store(&p->state, P_UNUSED);
		return -EAGAIN;
	}
	return 0;
}

/* procs_lock held: asks p to stop and wakes it if it sleeps. */
static void p_retire(struct p *p)
{
	bool was_idle;

	atomic_store(&p->retire, true);
	pthread_mutex_lock(&sched.lock);
	was_idle = idle_remove_locked(p);
	pthread_mutex_unlock(&sched.lock);
	if (was_idle)
		p_wake(p);
}

/* Waits until every retiring worker has stopped running goroutines. On a
 * goroutine it parks (after moving off its own worker, if that one is
 * retiring); on another thread it polls. A goroutine that hogs a retiring
 * worker delays this until it yields. */
static void retire_wait(void)
{
	struct p *p = sched_current_p();

	if (p && p->curg) {
		if (atomic_load(&p->retire))
			rt_yield(); /* resumes on a worker that stays */
		rt_wg_wait(&retiring, RT_FOREVER);
		return;
	}
	while (rt_wg_count(&retiring) > 0) {
		struct timespec ts = { 0, 100 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int rt_maxprocs(int n)
{
	int old, r = 0;

	if (!sched.initialized)
		return -EINVAL;
	if (n <= 0)
		return atomic_load(&sched.maxprocs);
	if (n > RT_MAXPROCS_LIMIT)
		return -EINVAL;
	pthread_mutex_lock(&sched.procs_lock);
	old = atomic_load(&sched.maxprocs);
	for (int i = old; i < n; i++) {
		struct p *p = p_alloc(i);
		if (!p || (r = p_start(p)) < 0) {
			n = i; /* keep what started */
			r = r < 0 ? r : -ENOMEM;
			break;
		}
		atomic_store(&sched.allp[i], p);
	}
	if (n < old) {
		rt_wg_add(&retiring, old - n);
		atomic_store(&sched.maxprocs, n);
		for (int i = n; i < old; i++) {
			struct p *p = atomic_load(&sched.allp[i]);
			atomic_store(&sched.allp[i], NULL);
			p_retire(p);
		}
	} else {
		atomic_store(&sched.maxprocs, n);
	}
	pthread_mutex_unlock(&sched.procs_lock);
	if (n > old)
		sched_wakep();
	else if (n < old)
		retire_wait();
	return r < 0 && n == old ? r : old;
}

int rt_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int rt_init(const struct rt_config *cfg)
{
	int n, r;

	if (sched.initialized)
		return -EALREADY;
	memset(&sched, 0, sizeof sched);
	retiring = (struct rt_wg){ 0 };
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	/* Held for a few list operations: spin a little before sleeping. */
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&sched.lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_mutex_init(&sched.procs_lock, NULL);
	atomic_store(&sched.next_id, 1);
	if ((r = stack_init(cfg ? cfg->stack_size : 0)) < 0)
		return r;
	if ((r = netpoll_init()) < 0)
		return r;
	n = cfg && cfg->maxprocs > 0 ? cfg->maxprocs : rt_cpus();
	if (n > RT_MAXPROCS_LIMIT)
		n = RT_MAXPROCS_LIMIT;
	sched.initialized = true;
	if ((r = rt_maxprocs(n)) < 0 || (r = sysmon_start()) < 0) {
		rt_shutdown();
		return r;
	}
	return 0;
}

static uint64_t live_count(void)
{
	uint64_t spawned = atomic_load(&sched.spawned_ext), finished = 0;

	for (int i = 0; i < npall; i++) {
		spawned += atomic_load_explicit(&pall[i]->nspawned, memory_order_relaxed);
		finished += atomic_load_explicit(&pall[i]->nfinished, memory_order_relaxed);
	}
	return spawned - finished;
}

int rt_shutdown(void)
{
	if (!sched.initialized)
		return -EINVAL;
	/* Goroutines that are on their way out (they signalled their end,
	 * as rt_run's does, and are now returning) are waited for; parked
	 * ones would wait forever, so they make it fail at once. */
	for (int64_t end = rt_now() + 5000 * 1000000LL;;) {
		struct rt_stats *st = malloc(sizeof *st);
		uint64_t live, busy;

		if (!st)
			return -ENOMEM;
		rt_stats_get(st);
		live = st->live;
		busy = st->running + st->runnable;
		free(st);
		if (live == 0)
			break;
		if (busy == 0 || rt_now() > end)
			return -EBUSY;
		struct timespec ts = { 0, 100 * 1000 };
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&sched.procs_lock);
	if (live_count() != 0) {
		pthread_mutex_unlock(&sched.procs_lock);
		return -EBUSY;
	}
	atomic_store(&sched.stopping, true);
	pthread_mutex_lock(&sched.lock);
	struct p *p;
	while ((p = idle_pop_locked()))
		p_wake(p);
	pthread_mutex_unlock(&sched.lock);
	netpoll_break();
	/* Every thread that may read a worker record ends before any is
	 * freed: the workers (which steal from each other) and sysmon. */
	for (int i = 0; i < npall; i++)
		if (atomic_load(&pall[i]->state) != P_UNUSED)
			pthread_join(pall[i]->thread, NULL);
	sysmon_stop();
	for (int i = 0; i < RT_MAXPROCS_LIMIT; i++)
		atomic_store(&sched.allp[i], NULL);
	for (int i = 0; i < npall; i++) {
		free(pall[i]);
		pall[i] = NULL;
	}
	npall = 0;
	pthread_mutex_unlock(&sched.procs_lock);

	struct gslab *s = atomic_load(&gslabs);
	while (s) {
		struct gslab *next = s->next;
		for (int i = 0; i < GSLAB_N; i++)
			netpoll_g_free(&s->gs[i]);
#if defined(GORO_ASAN)
		__lsan_unregister_root_region(s->gs, GSLAB_BYTES);
#endif
		munmap(s->gs, GSLAB_BYTES);
		free(s);
		s = next;
	}
	atomic_store(&gslabs, NULL);
	gfree_global = NULL;
	globq_free_all();
	netpoll_shutdown();
	stack_release_all();
	pthread_mutex_destroy(&sched.lock);
	pthread_mutex_destroy(&sched.procs_lock);
	sched.initialized = false;
	return 0;
}

struct run_state {
	rt_fn fn;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void run_main(void *arg)
{
	struct run_state *rs = arg;

	rs->fn(rs->arg);
	pthread_mutex_lock(&rs->mu);
	rs->done = true;
	pthread_cond_signal(&rs->cv);
	pthread_mutex_unlock(&rs->mu);
}

int rt_run(rt_fn fn, void *arg)
{
	struct run_state rs = { .fn = fn, .arg = arg };
	int r;

	if (sched_current_p())
		return -EDEADLK; /* would block a worker on itself */
	pthread_mutex_init(&rs.mu, NULL);
	pthread_cond_init(&rs.cv, NULL);
	if ((r = rt_go(run_main, &rs, NULL)) == 0) {
		pthread_mutex_lock(&rs.mu);
		while (!rs.done)
			pthread_cond_wait(&rs.cv, &rs.mu);
		pthread_mutex_unlock(&rs.mu);
	}
	pthread_mutex_destroy(&rs.mu);
	pthread_cond_destroy(&rs.cv);
	return r;
}

/* ---- stats ------------------------------------------------------------------- */

void rt_stats_get(struct rt_stats *st)
{
	memset(st, 0, sizeof *st);
	if (!sched.initialized)
		return;
	pthread_mutex_lock(&sched.procs_lock);
	int n = atomic_load(&sched.maxprocs);
	st->maxprocs = n;
	st->spawned = atomic_load(&sched.spawned_ext);
	for (int i = 0; i < npall; i++) {
		struct p *p = pall[i];
		st->spawned += atomic_load_explicit(&p->nspawned, memory_order_relaxed);
		st->finished += atomic_load_explicit(&p->nfinished, memory_order_relaxed);
		st->ctxsw += atomic_load_explicit(&p->nctxsw, memory_order_relaxed);
		st->steals += atomic_load_explicit(&p->nsteals, memory_order_relaxed);
		if (atomic_load_explicit(&p->cur_atomic, memory_order_relaxed))
			st->running++;
	}
	for (int i = 0; i < n; i++) {
		struct p *p = atomic_load(&sched.allp[i]);
		st->local_runq[i] = p ? runq_len(p) : 0;
		st->runnable += st->local_runq[i];
	}
	pthread_mutex_unlock(&sched.procs_lock);
	st->global_runq = atomic_load(&sched.globq_len);
	st->runnable += st->global_runq;
	st->live = st->spawned - st->finished;
	uint64_t busy = st->running + st->runnable;
	st->waiting = st->live > busy ? st->live - busy : 0;
	st->idle_workers = (uint64_t)atomic_load(&sched.nidle);
	st->stacks = stack_count();
	st->stack_bytes = st->stacks * stack_bytes();
	st->hog_events = atomic_load(&sched.hog_events);
}

size_t rt_goroutines(struct rt_ginfo *out, size_t n)
{
	size_t live = 0;

	for (struct gslab *s = atomic_load(&gslabs); s; s = s->next) {
		for (int i = 0; i < GSLAB_N; i++) {
			struct g *g = &s->gs[i];
			int st = atomic_load_explicit(&g->status, memory_order_acquire);
			uint64_t id = atomic_load_explicit(&g->id, memory_order_relaxed);
			if (id == 0 || st == RT_G_FREE || st == RT_G_DEAD)
				continue;
			if (live < n) {
				struct rt_ginfo *gi = &out[live];
				gi->id = id;
				gi->state = st;
				gi->wait_reason = st == RT_G_WAITING ? atomic_load(&g->wait_reason) : NULL;
				gi->wait_obj = atomic_load(&g->wait_obj);
				gi->created_ns = atomic_load_explicit(&g->created_ns, memory_order_relaxed);
				gi->max_hold_ns = atomic_load(&g->max_hold_ns);
			}
			live++;
		}
	}
	return live;
}

void rt_dump_state(void)
{
	int n = atomic_load(&sched.maxprocs);

	fprintf(stderr, "gorod runtime: maxprocs=%d idle=%d spinning=%d globq=%u\n",
		n, atomic_load(&sched.nidle), atomic_load(&sched.nspinning),
		atomic_load(&sched.globq_len));
	for (int i = 0; i < n; i++) {
		struct p *p = atomic_load(&sched.allp[i]);
		if (!p)
			continue;
		struct g *g = atomic_load(&p->cur_atomic);
		fprintf(stderr, "  worker %d: runq=%u curg=%llu%s\n", i, runq_len(p),
			g ? (unsigned long long)atomic_load(&g->id) : 0ULL,
			atomic_load(&p->retire) ? " retiring" : "");
	}
}
