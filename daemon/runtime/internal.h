/* internal.h: the runtime's shared internals: goroutine records (struct g),
 * workers (struct p, one OS thread each) and the global scheduler state.
 * Only daemon/runtime/ includes this; everyone else uses runtime.h.
 * What protects each field is written next to it; the design essay is at the
 * top of sched.c. */
#ifndef GORO_RT_INTERNAL_H
#define GORO_RT_INTERNAL_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* A broken invariant: dump what we know and abort (Go's throw). */
#define rt_throw(...)                                                        \
	do {                                                                 \
		fprintf(stderr, "gorod runtime: fatal: " __VA_ARGS__);       \
		fprintf(stderr, " (%s:%d)\n", __FILE__, __LINE__);           \
		rt_dump_state();                                             \
		abort();                                                     \
	} while (0)

#define rt_assert(cond)                                                      \
	do {                                                                 \
		if (unlikely(!(cond)))                                       \
			rt_throw("assertion failed: %s", #cond);             \
	} while (0)

struct event;
struct gbatch;

/* A saved execution context: a goroutine's, or a worker's own thread stack
 * (its "g0"). What the sanitizers need to follow a switch lives here too. */
struct ctx {
	void *sp;        /* saved stack pointer while not running */
	char *lo;        /* lowest address of the stack */
	size_t size;     /* stack bytes */
#if defined(GORO_ASAN)
	void *asan_fake;
#endif
#if defined(GORO_TSAN)
	void *tsan_fiber;
#endif
#if defined(GORO_VALGRIND)
	unsigned vg_stack; /* valgrind's id for [lo, lo + size), 0: none */
#endif
#if defined(GORO_CTX_UCONTEXT)
	void *uctx;
#endif
};

/* A goroutine. Records live in slabs that are never returned to the OS and
 * are recycled through free lists, so a stale pointer always points at some
 * struct g (type-stable memory): rt_gref compares the id to know it is the
 * same goroutine. */
struct g {
	struct ctx ctx;        /* ctx.lo is NULL until it first runs (stacks are lazy) */
	rt_fn fn;
	void *arg;
	_Atomic uint64_t id;   /* 0 while free */
	atomic_int status;     /* RT_G_* */
	struct g *schedlink;   /* free list link (owner: whoever holds that list) */

	/* Parking (sched.c "Parking and claiming"). park_state is PS_RUNNING
	 * while the goroutine runs, PS_PARKED(id) once it is off its stack,
	 * and whoever wakes it must win the CAS PS_PARKED(id) -> PS_CLAIMED. */
	_Atomic uint64_t park_state;
	int wake_result;            /* written by the claimer before rt_ready */
	atomic_int ev_what;         /* netpoll: what woke it (first event wins) */
	bool ev_armed;              /* owner only: netpoll_arm succeeded for this park */
	bool ev_added;              /* owner only: g->ev is added for this park */
	int64_t deadline;           /* of this park (netpoll.c's timer heap) */
	unsigned theap_i;           /* 1 + its index in the timer heap, 0 if not in it */
	struct event *ev;           /* its libevent event, lazily allocated (netpoll.c) */
	_Atomic uint64_t cancel_id; /* == id once cancelled (so a recycled record is not) */
	_Atomic(const char *) wait_reason; /* static string while waiting */
	_Atomic(const void *) wait_obj;
	int saved_errno;            /* errno across a park */
	_Atomic int64_t created_ns;
	/* Hog accounting (sysmon.c): longest time it held a worker without yielding. */
	_Atomic int64_t max_hold_ns;
};

/* After-switch work: what the context that was just switched to must do
 * once the previous goroutine is off its stack (release the lock it parked
 * under, arm its timer, free it). See sched.c. */
struct after_switch {
	void (*fn)(struct g *prev, void *arg);
	struct g *prev;
	void *arg;
};

#define RUNQ_SIZE 256

/* A worker: one OS thread and its local run queue (Go's P and M together).
 * Workers are allocated once and never freed; a retired one is kept for
 * reuse. */
struct p {
	int id;                       /* slot in sched.allp */
	pthread_t thread;
	struct ctx g0;                /* the worker's own thread stack, saved while a goroutine runs */
	struct g *curg;               /* goroutine running now (owner only; sysmon reads racily via atomics) */
	_Atomic(struct g *) cur_atomic; /* curg, for sysmon and stats */

	/* Local run queue: a ring that only the owner pushes to and that
	 * anyone may steal from (Go's runq). */
	_Atomic uint32_t runq_head;
	_Atomic uint32_t runq_tail;
	_Atomic(struct g *) runq[RUNQ_SIZE];
	_Atomic(struct g *) runnext;

	/* Free goroutine records and stacks cached by this worker (owner only). */
	struct g *gfree;
	int ngfree;
	char *stackcache[32];
	int nstackcache;

	struct after_switch after;    /* owner only */
	uint64_t idnext, idend;       /* goroutine ids reserved by this worker (owner only) */
	_Atomic uint64_t nspawned, nfinished; /* owner writes, anyone reads */
	uint32_t schedtick;           /* owner only */
	_Atomic uint32_t schedtick_pub; /* schedtick, published for sysmon */
	bool spinning;                /* owner only */
	int64_t spin_ns;              /* the next idle spin's length (owner only; sched.c) */
	unsigned nidle_spins;         /* idle spins so far (owner only) */
	bool collecting;              /* polling: readies go to collect[] (owner only) */
	int ncollect;
	struct g *collect[64];
	bool poll_first;              /* poll before the queues (owner only; sched.c) */
	int nprio, prio_pos;          /* what that poll made ready, run before the queues */
	struct g *prio[64];           /* (owner only) */

	/* Idle and wakeup. */
	atomic_uint wakeword;         /* futex: set to 1 to wake it */
	atomic_bool sleeping;         /* in (or about to enter) futex_wait */
	struct p *idlenext;           /* sched.idle list link (sched.lock) */
	bool onidle;                  /* on sched.idle (sched.lock) */
	bool wake_spinning;           /* popped by wakep: counted in nspinning (sched.lock) */
	atomic_bool polling;          /* blocked in netpoll */
	atomic_bool retire;           /* asked to stop (GOMAXPROCS lowered) */
	atomic_int state;             /* P_* */

	/* Counters: owner writes, anyone reads relaxed. */
	_Atomic uint64_t nctxsw, nsteals;
};

enum { P_UNUSED, P_RUNNING, P_RETIRING, P_DEAD };

struct sched {
	bool initialized;
	size_t stack_size;

	/* allp[0..maxprocs) are the active workers; stealers read it. */
	_Atomic(struct p *) allp[RT_MAXPROCS_LIMIT];
	atomic_int maxprocs;
	pthread_mutex_t procs_lock;   /* serializes rt_maxprocs and shutdown */

	pthread_mutex_t lock;         /* protects the global queue and the idle list */
	struct gbatch *globq_head, *globq_tail;
	atomic_uint globq_len;
	struct p *idle;
	atomic_int nidle;
	atomic_int nspinning;

	atomic_bool stopping;
	_Atomic uint64_t next_id;
	_Atomic uint64_t spawned_ext;  /* rt_go from threads that are not workers */
	_Atomic uint64_t hog_events;

};

extern struct sched sched;

void rt_dump_state(void);

/* sched.c */
struct p *sched_current_p(void);
struct g *sched_current_g(void);
void sched_ready(struct g *g, bool next);
void sched_wakep(void);

/* How a goroutine parks: filled on its stack, read by park_commit() on the
 * next context once the goroutine is off its stack. */
struct park {
	rt_spin *unlock;      /* released after the switch, or NULL */
	int fd;               /* netpoll: fd to wait on, or -1 */
	short events;         /* netpoll: RT_READ|RT_WRITE, 0 for a pure timer */
	int64_t deadline;     /* RT_FOREVER, or when to give up with -ETIMEDOUT */
	bool nocancel;        /* rt_cancel does not end it */
	const char *reason;
	const void *obj;
};

/* Parks the running goroutine as *pk describes; returns the wake result
 * (what the claimer passed to sched_claim()). */
int sched_park(struct park *pk);

#define PS_RUNNING 0ULL
#define PS_CLAIMED 1ULL
/* ids start at 1, so these are never 0 or 1; a canceller CASes from
 * PS_PARKED(id) only, so an uncancellable park is out of its reach. */
#define PS_PARKED(id) (((uint64_t)(id) << 2) | 2)
#define PS_PARKED_NOCANCEL(id) (((uint64_t)(id) << 2) | 3)

static inline bool g_cancelled(struct g *g)
{
	return atomic_load(&g->cancel_id) == atomic_load_explicit(&g->id, memory_order_relaxed);
}

/* Wakes g from the park it is in if this caller wins it; false if someone
 * else already did (or g is not parked). */
bool sched_claim(struct g *g, int result);

/* runq.c: the local ring and the global queue. */
bool runq_put(struct p *p, struct g *g, bool next);
struct g *runq_get(struct p *p);
struct g *runq_steal(struct p *thief, struct p *victim, bool steal_next);
bool runq_empty(struct p *p);
uint32_t runq_len(struct p *p);
void globq_put_locked(struct g *g);
struct g *globq_get_locked(struct p *p, int max);
void globq_free_all(void);

/* stack.c */
int stack_init(size_t stack_size);
char *stack_get(struct p *p);
void stack_put(struct p *p, char *lo);
void stack_release_all(void);
void stack_scavenge(void);
size_t stack_bytes(void);
uint64_t stack_count(void);
void stack_check(struct g *g, void *sp, bool deep);

/* ctx.c: switching stacks, with the sanitizers told. */
void ctx_init_thread(struct ctx *g0);
void ctx_make(struct ctx *c, char *lo, size_t size, void (*entry)(void));
void ctx_switch(struct ctx *from, struct ctx *to, bool from_dying);
void ctx_entered(void);
void ctx_release(struct ctx *c);

/* netpoll.c */
int netpoll_init(void);
void netpoll_shutdown(void);
void netpoll_poll(struct p *p, bool block);
bool netpoll_try_own(void);
bool netpoll_owned(void);
void netpoll_disown(void);
void netpoll_break(void);
bool netpoll_has_waiters(void);
int64_t netpoll_last_poll(void);
int netpoll_arm(struct g *g, int fd, short events, int64_t deadline);
int netpoll_result(struct g *g);
void netpoll_disarm(struct g *g);
void netpoll_g_free(struct g *g);

/* mutex.c: spin a little more before parking? (Go's sync_runtime_canSpin:
 * several CPUs, and nothing else to run here.) */
bool rt_can_spin(int spins);

/* sysmon.c */
int sysmon_start(void);
void sysmon_stop(void);
void sysmon_kick(void);
extern atomic_bool sysmon_sleeping;


#endif /* GORO_RT_INTERNAL_H */
