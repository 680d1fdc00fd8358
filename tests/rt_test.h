/* rt_test.h: helpers the runtime's TAP tests share (tests/rt_test.c).
 * Each test program's goroutines are counted in `kids`: added before they
 * start (go()), done as their last act. */
#ifndef GORO_RT_TEST_H
#define GORO_RT_TEST_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

extern struct rt_wg kids;

/* The state of goroutine `id` (RT_G_RUNNABLE, RT_G_RUNNING, RT_G_WAITING),
 * or RT_G_DEAD when it is not live. WAITING only once it has a wait reason. */
int g_state(uint64_t id);

/* Goroutine only: yields until goroutine `ref` is parked (true), has ended
 * or 10 s passed (false). */
bool wait_parked(struct rt_gref ref);

/* Starts fn(arg) as one of `kids`. */
struct rt_gref go(rt_fn fn, void *arg);

/* Goroutine only: waits (60 s, or ms, at most) until every kid has ended,
 * and says so as a TAP check. */
void join_kids(const char *what);
void join_kids_within(const char *what, int64_t ms);

/* Off the runtime, at the end of a test program: waits (spinning on
 * sched_yield, 10 s at most) until the goroutines that just signalled
 * their end have returned, checks that none is left alive, leaves the last
 * stats in *st for the caller's own checks, and shuts the runtime down. */
void check_no_leaks(struct rt_stats *st);

/* "0", or the name of an error code ("ETIMEDOUT"). */
const char *ename(int rc);

#endif
