/* tap.h: a small Test Anything Protocol producer for gorod's tests.
 *
 *	plan(3);                    or no_plan();
 *	ok(x > 0, "x is positive");
 *	is(got, 42, "answer");          integers: prints got and expected
 *	is_str(s, "abc", "name");
 *	cmp_ok(elapsed, <, limit, "fast enough");  compared as long long
 *	diag("seen %d", n);             a "# " comment line
 *	skip(2, "no pidfd");            two "ok N # skip" lines
 *	return done_testing();          0, or 1 when anything failed
 *
 * A failing assertion prints its file:line as a diag. skip_all() ends the
 * program as skipped: "1..0 # SKIP why" and exit status 77 (the status can
 * be overridden with env TAP_SKIP_EXIT, because meson's TAP protocol treats
 * any nonzero status as an error and reads the skip from the plan line).
 * bail_out() aborts the whole run ("Bail out!", status 255).
 *
 * Every function may be called from several threads (and from goroutines:
 * none of them parks); a mutex serialises the counters and the output, which
 * is flushed after each line so that a crash or a timeout keeps it.
 *
 * tap_scale() sizes heavy tests: the normal count, or the smaller one in
 * sanitizer builds (GORO_ASAN / GORO_TSAN) and valgrind builds
 * (GORO_VALGRIND, whose gorod runs under memcheck), multiplied by env
 * GORO_TEST_SCALE (a float, default 1), never below 1. */
#ifndef GORO_TESTS_TAP_H
#define GORO_TESTS_TAP_H

#include <stdbool.h>
#include <stdint.h>

#define TAP_PRINTF(a, b) __attribute__((format(printf, a, b)))

void plan(int n);
void no_plan(void);
void skip(int n, const char *fmt, ...) TAP_PRINTF(2, 3);
void diag(const char *fmt, ...) TAP_PRINTF(1, 2);
_Noreturn void skip_all(const char *fmt, ...) TAP_PRINTF(1, 2);
_Noreturn void bail_out(const char *fmt, ...) TAP_PRINTF(1, 2);
int done_testing(void);

/* Whether every assertion so far passed. */
bool tap_passing(void);

long tap_scale(long normal, long sanitized);
bool tap_sanitized(void);

/* The implementations behind the macros below; each returns whether the
 * assertion passed. */
bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
	TAP_PRINTF(4, 5);
bool tap_is(long long got, long long expected, const char *file, int line,
	    const char *fmt, ...) TAP_PRINTF(5, 6);
bool tap_is_str(const char *got, const char *expected, const char *file,
		int line, const char *fmt, ...) TAP_PRINTF(5, 6);
bool tap_cmp(bool pass, long long a, const char *op, long long b,
	     const char *file, int line, const char *fmt, ...) TAP_PRINTF(7, 8);

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is(got, expected, ...)                                               \
	tap_is((long long)(got), (long long)(expected), __FILE__, __LINE__,    \
	       __VA_ARGS__)
#define is_str(got, expected, ...)                                           \
	tap_is_str((got), (expected), __FILE__, __LINE__, __VA_ARGS__)
#define cmp_ok(a, op, b, ...)                                                \
	({                                                                     \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		tap_cmp(a_ op b_, a_, #op, b_, __FILE__, __LINE__,             \
			__VA_ARGS__);                                          \
	})

#endif /* GORO_TESTS_TAP_H */
