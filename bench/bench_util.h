/* bench_util.h: what the benchmark programs that talk to gorod share
 * (lock_bench, task_bench, leak_bench; each compiles bench_util.c in, see
 * bench/meson.build): the failure that ends a run, the clock, a connection
 * to gorod, and pumping a batch of pipelined requests to their replies.
 * rt_bench talks to no gorod, does not link libgoro, and keeps its own. */
#ifndef GORO_BENCH_UTIL_H
#define GORO_BENCH_UTIL_H

#include <stdint.h>

#include "goro/goro.h"

/* The program's name, which its messages start with ("task_bench"):
 * each program defines it. */
extern const char bench_name[];

/* Prints "<bench_name>: <message>" on stderr and exits 1: a result the
 * program cannot report. */
__attribute__((format(printf, 1, 2), noreturn))
void bench_die(const char *fmt, ...);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* A connection to the gorod at path; dies when there is none. */
goro_client *bench_connect(const char *path);

/* Dies, with c's last error, when err (what a call on c returned, for
 * what) is an error. */
void bench_check(goro_client *c, int err, const char *what);

/* The requests of one batch sent with goro_send_*(): how many were sent
 * and answered. ids, unless NULL, gets the ids that spawn replies give, as
 * the program's reply callback stores them; the caller owns it. */
struct bench_batch {
	const char *what;
	long sent, answered;
	uint64_t *ids;
};

/* Writes what is queued on c and reads replies until b->answered reaches
 * want, or dies at the deadline (bench_now_ns()). Blocks in poll(). */
void bench_pump(goro_client *c, struct bench_batch *b, long want, int64_t deadline);

#endif /* GORO_BENCH_UTIL_H */
