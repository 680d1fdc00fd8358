/* goro/module.h: functions that run inside gorod, as goroutines.
 *
 * A module is a shared object in the directory gorod's administrator names
 * with --module-dir; gorod loads every *.so there at start (a module that
 * fails to load stops gorod with a message that says why). It defines
 *
 *     int goro_module_init(struct goro_module *m);
 *
 * which registers its functions with goro_func_register() and returns 0
 * (or a negative code: gorod then refuses to start). A client then runs a
 * function as a task: `goroctl spawn --func NAME ARG..`, or the spawn
 * method with {func: NAME, args: [..]}.
 *
 * A function runs on its task's goroutine, on one of gorod's worker
 * threads, alongside every other goroutine. So it must never block its
 * thread: no sleep(3), no blocking read(2), no pthread_mutex held across a
 * wait. It waits through the calls below instead, which park the goroutine
 * and let the thread run others. A long computation calls goro_yield()
 * now and then (gorod reports a goroutine that keeps its thread over 100
 * ms). Every call that may wait returns -ECANCELED once the task is
 * killed or timed out: return then.
 *
 * Arguments arrive as goro_values, valid until the function returns (copy
 * what a child goroutine needs). A function returns 0, having set its
 * result with goro_task_result() (none: nil), or a negative code, having
 * said why with goro_task_fail(); a code from goro/errors.h. A bad argument
 * is the function's to refuse: check types before use.
 *
 * Named WaitGroups, mutexes and semaphores are the same ones clients use;
 * the task is their holder. What a task still holds when it ends is
 * released, and the next holder is told the owner died, as when a client
 * session ends. */
#ifndef GORO_MODULE_H
#define GORO_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "goro/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GORO_MODULE_API 1

/* A module being loaded; opaque. */
struct goro_module;

/* The task a function runs for; opaque, valid until the function returns. */
struct goro_task;

/* A msgpack value, as arguments arrive and results leave. */
enum goro_type {
	GORO_NIL,
	GORO_BOOL,
	GORO_INT,   /* i: any integer that fits int64 */
	GORO_UINT,  /* u: above INT64_MAX */
	GORO_FLOAT,
	GORO_STR,   /* str, len: not NUL-terminated */
	GORO_BIN,
	GORO_ARRAY, /* items, len */
	GORO_MAP,   /* items, len: 2*len items, key then value */
};

struct goro_value {
	enum goro_type type;
	size_t len;
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double f;
		const char *str;
		const struct goro_value *items;
	};
};

/* A function of a module: args[0..nargs) are the spawn's args. */
typedef int (*goro_func)(struct goro_task *t, const struct goro_value *args, size_t nargs);

/* Registers fn as `name` (1..255 bytes; not one of the built-ins sleep,
 * noop, spin, echo; unique across modules: -EEXIST). Only in
 * goro_module_init() (later: -EPERM). */
int goro_func_register(struct goro_module *m, const char *name, goro_func fn);

/* The module's API version gorod implements (GORO_MODULE_API). */
int goro_module_api(void);

/* ---- the task ---------------------------------------------------------------- */

uint64_t goro_task_id(const struct goro_task *t);

/* Sets the result `wait` returns (copied; a later call replaces it). */
int goro_task_result(struct goro_task *t, const struct goro_value *v);

/* Says why the function fails (printf-style; shown as the outcome's
 * message) and returns code, for `return goro_task_fail(t, -EINVAL, ..)`. */
int goro_task_fail(struct goro_task *t, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Appends to the task's stdout (or stderr), as `logs` shows it. */
int goro_task_print(struct goro_task *t, bool to_stderr, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Whether the task was killed or timed out (its waits return -ECANCELED). */
bool goro_task_cancelled(const struct goro_task *t);

/* ---- waiting, without blocking the thread --------------------------------------- */

/* Lets other goroutines run. 0, or -ECANCELED. */
int goro_yield(void);

/* Parks for ms milliseconds. 0, or -ECANCELED. */
int goro_sleep(int64_t ms);

/* Waits until fd is ready for events (POLLIN, POLLOUT) or timeout_ms
 * passes (-1: no timeout). Returns the ready events (> 0), -ETIMEDOUT or
 * -ECANCELED. fd stays the caller's. */
int goro_wait_fd(int fd, int events, int64_t timeout_ms);

/* Starts fn(arg) as a child goroutine of the task. The task ends only
 * after its children have returned; killing it cancels them too (their
 * waits return -ECANCELED). 0, or -ENOMEM. */
int goro_go(struct goro_task *t, void (*fn)(void *arg), void *arg);

/* ---- named primitives, held by the task -------------------------------------- */

/* As the protocol's wg.add / wg.done / wg.wait. A positive add is bound to
 * the task (like wg.add with lease: true): if the task ends before its own
 * dones match it, the group's waiters get ELOST. */
int goro_task_wg_add(struct goro_task *t, const char *name, int64_t delta);
int goro_task_wg_done(struct goro_task *t, const char *name);
int goro_task_wg_wait(struct goro_task *t, const char *name, int64_t timeout_ms);

/* As mutex.lock (write, or read when read) / mutex.unlock; *token (may be
 * NULL) gets the fencing token. -1 timeout: wait for ever, 0: try. */
int goro_task_lock(struct goro_task *t, const char *name, bool read, int64_t timeout_ms,
		   uint64_t *token);
int goro_task_unlock(struct goro_task *t, const char *name, uint64_t token);

/* As sem.acquire (capacity 0: the default) / sem.release. */
int goro_task_sem_acquire(struct goro_task *t, const char *name, int64_t capacity,
			  int64_t n, int64_t timeout_ms, uint64_t *token);
int goro_task_sem_release(struct goro_task *t, const char *name, uint64_t token);

#ifdef __cplusplus
}
#endif

#endif /* GORO_MODULE_H */
