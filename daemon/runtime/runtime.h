/* runtime.h: the goroutine runtime's internal API.
 *
 * An M:N green-thread runtime: goroutines are scheduled onto GOMAXPROCS
 * worker threads. gorod, its tests and bench/ link it; it is never installed.
 * The design essay is at the top of sched.c.
 *
 * Conventions (libdill's):
 *   - Functions return 0 (or a non-negative value) on success and a negative
 *     errno-style code (include/goro/errors.h) on failure.
 *   - Every blocking call takes a deadline: an absolute rt_now() time in
 *     nanoseconds, RT_FOREVER (-1) to wait without limit, or 0 to not wait
 *     at all (the call then fails with -ETIMEDOUT instead of blocking).
 *   - Every blocking call can be cancelled: rt_cancel() makes the target's
 *     current and every later park return -ECANCELED.
 *   - Functions marked "goroutine only" must be called on a goroutine; they
 *     abort loudly otherwise.
 *
 * Thread-local state: a goroutine may resume on another worker thread after
 * any call that can park (every call below that takes a deadline, and
 * rt_yield). errno is saved and restored across parks, so its value is kept,
 * but code must not hold a pointer to thread-local storage (including the
 * address of errno, which the compiler may cache) across a park, nor hold a
 * pthread mutex across one. Between parks a goroutine runs uninterrupted on
 * one thread (scheduling is cooperative), so libc's own per-thread state
 * (malloc caches, stdio locks) is always used from one thread at a time. */
#ifndef GORO_RUNTIME_H
#define GORO_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "goro/errors.h"

#define RT_FOREVER ((int64_t)-1)
#define RT_MAXPROCS_LIMIT 256

typedef void (*rt_fn)(void *arg);

/* ---- lifecycle ---------------------------------------------------------- */

struct rt_config {
	int maxprocs;      /* 0: the CPUs this process may use (sched_getaffinity) */
	size_t stack_size; /* 0: RT_STACK_DEFAULT; rounded up to whole pages */
};

#define RT_STACK_DEFAULT (64 * 1024)

/* Starts the worker threads. Returns 0, -EALREADY, or -ENOMEM/-EAGAIN. */
int rt_init(const struct rt_config *cfg);

/* Runs fn(arg) as a goroutine and blocks the calling OS thread (which must
 * not be a worker) until that goroutine returns. */
int rt_run(rt_fn fn, void *arg);

/* Stops the workers and releases the runtime's memory. Fails with -EBUSY
 * while goroutines are still alive (none is ever abandoned silently). */
int rt_shutdown(void);

/* ---- goroutines --------------------------------------------------------- */

/* A goroutine handle that stays safe after the goroutine ended: goroutine
 * records are recycled, so a handle is a record plus the id it had. */
struct rt_gref {
	struct g *g;
	uint64_t id;
};

/* Starts fn(arg) as a new goroutine (`go fn(arg)`). Callable from any thread.
 * *ref, if not NULL, receives its handle. Ids count up from 1, never reused. */
int rt_go(rt_fn fn, void *arg, struct rt_gref *ref);

/* Goroutine only: lets other goroutines run, then continues. */
void rt_yield(void);

/* Goroutine only: rt_yield() for a goroutine that works through a backlog
 * for one client (a session's pipelined requests): first polls the
 * netpoller without waiting, unless an idle worker is blocked in it, so
 * that goroutines woken by I/O meanwhile (another client's request) run
 * next, before this one and before the others already queued. Costs a
 * non-blocking poll. */
void rt_yield_io(void);

/* Whether I/O may be waiting unnoticed: no worker waits in the netpoller
 * and none has polled for a while (10 us) before now (rt_now()). A
 * goroutine working through a backlog ends its turn early then
 * (rt_yield_io). Any thread. */
bool rt_poll_due(int64_t now);

/* Goroutine only: parks until the deadline. 0, or -ECANCELED. */
int rt_sleep(int64_t deadline);

/* Goroutine only: parks until the deadline (or a cancel) WITHOUT keeping
 * a stack, then the same goroutine (same id) starts over at fn(arg) on a
 * fresh stack. Never returns: everything on the stack is gone, so nothing
 * may point into it. A parked goroutine costs its record then, not a
 * stack page: what a million sleeping tasks need (Go's timers serve the
 * same end). fn learns of a cancel through rt_cancelled(). */
_Noreturn void rt_sleep_then(int64_t deadline, rt_fn fn, void *arg);

/* The running goroutine's id, 0 when not on a goroutine. */
uint64_t rt_self_id(void);

/* Cancels the goroutine: its current park (if any) and all later ones
 * return -ECANCELED. 0, or -ESRCH when it already ended. */
int rt_cancel(struct rt_gref ref);

/* Goroutine only: true once rt_cancel() was called for the running one. */
bool rt_cancelled(void);

/* Monotonic clock, nanoseconds. */
int64_t rt_now(void);

/* Convenience: a deadline `ms` milliseconds from now (RT_FOREVER if ms < 0). */
int64_t rt_deadline_ms(int64_t ms);

/* ---- netpoll ------------------------------------------------------------ */

#define RT_READ 0x02  /* same values as libevent's EV_READ / EV_WRITE */
#define RT_WRITE 0x04

/* Goroutine only: parks until fd is ready for `events` (RT_READ|RT_WRITE).
 * The fd should be non-blocking. Returns the events that are ready (> 0),
 * -ETIMEDOUT, or -ECANCELED. No thread is held while parked. */
int rt_wait_fd(int fd, short events, int64_t deadline);

/* An fd registered once with the netpoller (Go's pollDesc). Waiting on it
 * costs no system call of its own: the fd stays in epoll, edge-triggered,
 * and an event either wakes the goroutine waiting for it or is remembered
 * for the next wait. The rule that comes with edge triggering: wait only
 * after the fd said EAGAIN (a short read does not prove it empty: the
 * peer's last bytes and its close can come as one edge). One goroutine
 * may wait for reading and one for writing at a time. */
struct rt_pollfd;

/* Registers fd (non-blocking); 0 or a negative code. */
int rt_pollfd_open(int fd, struct rt_pollfd **out);

/* Goroutine only: parks until fd is ready for `events` (RT_READ, RT_WRITE
 * or both). Returns the ready events (> 0), -ETIMEDOUT, -ECANCELED, or
 * -EBUSY when another goroutine already waits for the same direction. */
int rt_pollfd_wait(struct rt_pollfd *pfd, short events, int64_t deadline);

/* Whether the peer has shut down its writing: a socket's EPOLLRDHUP was
 * seen (libevent's EV_CLOSED). Its last bytes and the shutdown may have
 * come as one edge, so once this says true, read until the end of file
 * before waiting. (A reset, a close that left bytes unread, comes as an
 * error, which libevent reports as plain readiness: this does not say.) */
bool rt_pollfd_hup(struct rt_pollfd *pfd);

/* Unregisters and frees (NULL is fine). No goroutine may be waiting on it.
 * Does not close the fd. */
void rt_pollfd_close(struct rt_pollfd *pfd);

/* Returns a pidfd for child `pid` (close it when done), or a negative code. */
int rt_pidfd_open(pid_t pid);

/* Goroutine only: parks until the process behind pidfd has exited (it can
 * then be reaped with waitid(P_PIDFD) or waitpid without blocking).
 * 0, -ETIMEDOUT or -ECANCELED. */
int rt_wait_pidfd(int pidfd, int64_t deadline);

/* ---- the park/ready primitive: wait queues ------------------------------ */

/* A spin lock for very short critical sections (a few instructions). Never
 * held across a park, except by rt_waitq_park(), which releases it after the
 * goroutine has left its stack. */
typedef struct {
	atomic_int v;
} rt_spin;

void rt_spin_lock(rt_spin *l);
void rt_spin_unlock(rt_spin *l);

/* One goroutine waiting on a queue. Lives on the waiting goroutine's stack
 * (stacks never move). `data` and `flags` belong to the primitive. */
struct rt_waiter {
	struct rt_waiter *next, *prev;
	struct g *g;
	bool linked;      /* on its queue (q->lock) */
	int64_t since;    /* rt_now() when it started waiting */
	uintptr_t data;   /* the primitive's own (mode, weight, ...) */
};

/* A FIFO of waiters protected by its own spin lock. Zero-initialized is valid. */
struct rt_waitq {
	rt_spin lock;
	struct rt_waiter *head, *tail;
};

/* Goroutine only, called with q->lock held: appends w to q (at the front
 * with RT_WQ_FRONT), parks, and releases q->lock once the goroutine is off its stack.
 * Returns the result the waker gave rt_waitq_wake() (q->lock NOT held), or
 * -ETIMEDOUT / -ECANCELED with q->lock HELD and w already removed from q, so
 * that the primitive can repair its own state (a waiter flag, a grant that
 * is now possible) before unlocking. A waiter is never both woken and timed
 * out. `reason` is a static string for stats and the leak monitor
 * ("mutex", "waitgroup", ...); `obj` is what it waits on. */
int rt_waitq_park(struct rt_waitq *q, struct rt_waiter *w, unsigned flags,
		  int64_t deadline, const char *reason, const void *obj);

#define RT_WQ_FRONT 1u    /* queue at the front (a waiter that lost a race) */
#define RT_WQ_NOCANCEL 2u /* rt_cancel does not end this wait (see rt_mutex_lock_nocancel) */

/* As rt_waitq_park, for a queue guarded by `lock` instead of q->lock
 * (several queues under one lock). */
int rt_waitq_park_under(struct rt_waitq *q, rt_spin *lock, struct rt_waiter *w,
			unsigned flags, int64_t deadline, const char *reason,
			const void *obj);

/* With q->lock held: removes and returns the first waiter, or NULL. */
struct rt_waiter *rt_waitq_pop(struct rt_waitq *q);

/* With q->lock held: removes w from q. */
void rt_waitq_remove(struct rt_waitq *q, struct rt_waiter *w);

/* With q->lock held, w already removed from q: wakes w's goroutine, whose
 * rt_waitq_park() then returns `result`. Returns false when the waiter had
 * already given up (its deadline passed or it was cancelled, and it is
 * about to remove itself): the caller must then treat it as gone and, if it
 * was granting something, grant it to the next waiter instead. */
bool rt_waitq_wake(struct rt_waiter *w, int result);

static inline bool rt_waitq_empty(const struct rt_waitq *q)
{
	return q->head == NULL;
}

/* ---- goroutine-level sync (sync.c) -------------------------------------- */

/* sync.Mutex: uncontended lock/unlock are one atomic operation each; waiters
 * spin briefly, then park; a waiter that waited over 1 ms gets the lock
 * handed to it directly (Go's starvation mode). Zero-initialized is valid. */
struct rt_mutex {
	atomic_uint state;
	struct rt_waitq q;
};

int rt_mutex_lock(struct rt_mutex *m, int64_t deadline); /* 0/-ETIMEDOUT/-ECANCELED */

/* Locks m, waiting as long as it takes, even in a goroutine that was
 * cancelled: for short critical sections that cleanup must still enter
 * (cancellation is sticky, so a cancelled goroutine could otherwise never
 * take a contended lock again). */
void rt_mutex_lock_nocancel(struct rt_mutex *m);
int rt_mutex_trylock(struct rt_mutex *m);                /* 0 or -EBUSY */
int rt_mutex_unlock(struct rt_mutex *m);                 /* 0 or -ENOTLOCKED */

/* sync.RWMutex: any number of readers or one writer. Writers are served
 * in arrival order; a writer waiting for readers blocks new readers (no
 * writer starvation), and when a writer unlocks, the readers that waited
 * during its turn go in together before the next writer (no reader
 * starvation): Go's semantics (rwmutex.c says why not strict FIFO).
 * Zero-initialized is valid. */
struct rt_rwmutex {
	atomic_ullong state;
	struct rt_waitq q;  /* writers; q.lock guards rq and nrq too */
	struct rt_waitq rq; /* readers */
	uint32_t nrq;       /* readers in rq */
	uint32_t nretry;    /* writers woken to try again (see rwmutex.c) */
};

int rt_rwmutex_rlock(struct rt_rwmutex *rw, int64_t deadline);
int rt_rwmutex_lock(struct rt_rwmutex *rw, int64_t deadline);
int rt_rwmutex_tryrlock(struct rt_rwmutex *rw); /* 0 or -EBUSY */
int rt_rwmutex_trylock(struct rt_rwmutex *rw);  /* 0 or -EBUSY */
int rt_rwmutex_runlock(struct rt_rwmutex *rw);  /* 0 or -ENOTLOCKED */
int rt_rwmutex_unlock(struct rt_rwmutex *rw);   /* 0 or -ENOTLOCKED */

/* sync.WaitGroup. add() refuses a counter that would go negative
 * (-ENEGATIVE, counter unchanged: Go panics, a daemon must not) or past
 * INT32_MAX (-ERANGE). wait() returns 0 once the counter is zero (at once
 * for a zero-value group). Go's other misuse, reusing a group while its
 * waiters are being released, is made safe instead of detected: the step to
 * zero and the release of the waiters queued until then are one atomic step
 * under the queue's lock, so a waiter that comes after a new add() is never
 * released by the old zero. Zero-initialized is valid. */
struct rt_wg {
	atomic_ullong state;
	struct rt_waitq q;
};

int rt_wg_add(struct rt_wg *wg, int64_t delta); /* returns the new count */
int rt_wg_done(struct rt_wg *wg);               /* rt_wg_add(wg, -1) */
int rt_wg_wait(struct rt_wg *wg, int64_t deadline);
int64_t rt_wg_count(struct rt_wg *wg);

/* A weighted semaphore (x/sync/semaphore): acquire(n) waits until n units
 * are free; waiters are served strictly in arrival order, so a large request
 * at the head is never overtaken by small ones. */
struct rt_sem {
	int64_t capacity, used; /* q.lock */
	struct rt_waitq q;
};

void rt_sem_init(struct rt_sem *s, int64_t capacity);
int rt_sem_acquire(struct rt_sem *s, int64_t n, int64_t deadline); /* -EINVAL if n > capacity */
int rt_sem_tryacquire(struct rt_sem *s, int64_t n);               /* 0 or -EBUSY */
int rt_sem_release(struct rt_sem *s, int64_t n);                  /* 0 or -ENOTHELD */

/* ---- runtime control and stats ------------------------------------------ */

/* runtime.GOMAXPROCS: n > 0 sets it (1..RT_MAXPROCS_LIMIT) while goroutines
 * run; no goroutine is lost, duplicated or stranded. Returns the previous
 * value (n <= 0 only reads it), or -EINVAL. */
/* The CPUs this process may run on (GOMAXPROCS's default). */
int rt_cpus(void);
int rt_maxprocs(int n);

struct rt_stats {
	int maxprocs;
	uint64_t live;          /* goroutines spawned and not yet ended */
	uint64_t running;       /* on a worker now */
	uint64_t runnable;      /* in a run queue */
	uint64_t waiting;       /* parked (live - running - runnable, sampled) */
	uint64_t spawned, finished;
	uint64_t ctxsw;         /* switches between goroutines */
	uint64_t steals;        /* goroutines taken from another worker's queue */
	uint64_t global_runq;   /* length of the global run queue */
	uint64_t local_runq[RT_MAXPROCS_LIMIT]; /* per worker, maxprocs entries */
	uint64_t idle_workers;
	uint64_t stacks;        /* stacks allocated (in use + cached) */
	uint64_t stack_bytes;   /* virtual bytes reserved for stacks */
	uint64_t hog_events;    /* times a goroutine held a worker > RT_HOG_NS */
};

#define RT_HOG_NS (100 * 1000 * 1000LL)

/* A goroutine that kept its worker over RT_HOG_NS without yielding: its id
 * and how long it had held it when sysmon noticed. */
struct rt_hog {
	uint64_t id;
	int64_t held_ns;
};

/* Takes up to n hog events not taken yet (the last 64 are kept), oldest
 * first. Any thread. */
size_t rt_hogs_take(struct rt_hog *out, size_t n);

/* The watchdog: sysmon calls fn(arg) from its thread about every period_ns,
 * but only while the scheduler is seen to run goroutines (a probe
 * goroutine's timer fired and it ran since the last call), idle or not.
 * period_ns <= 0 stops it. Goroutine only (the probe is started and
 * stopped from here); stop it before rt_shutdown. */
int rt_watchdog(void (*fn)(void *), void *arg, int64_t period_ns);

void rt_stats_get(struct rt_stats *st);

/* What one live goroutine is doing; filled by rt_goroutines(). */
struct rt_ginfo {
	uint64_t id;
	int state;               /* RT_G_RUNNABLE, RT_G_RUNNING, RT_G_WAITING */
	const char *wait_reason; /* static string, NULL unless waiting */
	const void *wait_obj;
	int64_t created_ns;
	int64_t max_hold_ns;     /* longest time it held a worker without yielding */
};

enum { RT_G_FREE, RT_G_RUNNABLE, RT_G_RUNNING, RT_G_WAITING, RT_G_DEAD };

/* Copies up to n live goroutines' info into out; returns how many are live
 * (may be > n). A snapshot: each entry is consistent, the set is not. */
size_t rt_goroutines(struct rt_ginfo *out, size_t n);

#endif /* GORO_RUNTIME_H */
