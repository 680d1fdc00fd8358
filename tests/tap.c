/* tap.c: the TAP producer behind tap.h.
 *
 * All state is behind one mutex; every line is written and flushed under it,
 * so lines from several threads never interleave. */
#include "tap.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t tap_lock = PTHREAD_MUTEX_INITIALIZER;
static int tap_planned = -1; /* -1: no plan printed yet */
static int tap_run;
static int tap_failed;

static void tap_vline(const char *prefix, const char *fmt, va_list ap)
{
	fputs(prefix, stdout);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
}

void plan(int n)
{
	pthread_mutex_lock(&tap_lock);
	tap_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
}

void no_plan(void)
{
	pthread_mutex_lock(&tap_lock);
	tap_planned = -1;
	pthread_mutex_unlock(&tap_lock);
}

void diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_vline("# ", fmt, ap);
	pthread_mutex_unlock(&tap_lock);
	va_end(ap);
}

void skip(int n, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&tap_lock);
	while (n-- > 0)
		printf("ok %d # skip %s\n", ++tap_run, why);
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
}

_Noreturn void skip_all(const char *fmt, ...)
{
	const char *status = getenv("TAP_SKIP_EXIT");
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_vline("1..0 # SKIP ", fmt, ap);
	va_end(ap);
	exit(status ? atoi(status) : 77);
}

_Noreturn void bail_out(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_vline("Bail out! ", fmt, ap);
	va_end(ap);
	exit(255);
}

/* Prints one "ok"/"not ok" line, and where a failure happened. Called with
 * tap_lock held. */
static void tap_result(bool pass, const char *file, int line, const char *fmt,
		       va_list ap)
{
	char name[512];

	vsnprintf(name, sizeof(name), fmt, ap);
	tap_run++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - %s\n", pass ? "" : "not ", tap_run, name);
	if (!pass)
		printf("#   Failed test '%s'\n#   at %s:%d.\n", name, file, line);
	fflush(stdout);
}

bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_result(pass, file, line, fmt, ap);
	pthread_mutex_unlock(&tap_lock);
	va_end(ap);
	return pass;
}

bool tap_is(long long got, long long expected, const char *file, int line,
	    const char *fmt, ...)
{
	bool pass = got == expected;
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_result(pass, file, line, fmt, ap);
	if (!pass)
		printf("#          got: %lld\n#     expected: %lld\n", got,
		       expected);
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
	va_end(ap);
	return pass;
}

bool tap_is_str(const char *got, const char *expected, const char *file,
		int line, const char *fmt, ...)
{
	bool pass;
	va_list ap;

	if (got == NULL || expected == NULL)
		pass = got == expected;
	else
		pass = strcmp(got, expected) == 0;
	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_result(pass, file, line, fmt, ap);
	if (!pass)
		printf("#          got: %s%s%s\n#     expected: %s%s%s\n",
		       got ? "'" : "", got ? got : "NULL", got ? "'" : "",
		       expected ? "'" : "", expected ? expected : "NULL",
		       expected ? "'" : "");
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
	va_end(ap);
	return pass;
}

bool tap_cmp(bool pass, long long a, const char *op, long long b,
	     const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&tap_lock);
	tap_result(pass, file, line, fmt, ap);
	if (!pass)
		printf("#     %lld\n#         %s\n#     %lld\n", a, op, b);
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
	va_end(ap);
	return pass;
}

bool tap_passing(void)
{
	bool pass;

	pthread_mutex_lock(&tap_lock);
	pass = tap_failed == 0;
	pthread_mutex_unlock(&tap_lock);
	return pass;
}

int done_testing(void)
{
	int rc;

	pthread_mutex_lock(&tap_lock);
	if (tap_planned < 0)
		printf("1..%d\n", tap_run);
	else if (tap_planned != tap_run)
		printf("# Looks like you planned %d tests but ran %d.\n",
		       tap_planned, tap_run);
	if (tap_failed)
		printf("# Looks like you failed %d test%s of %d.\n", tap_failed,
		       tap_failed == 1 ? "" : "s", tap_run);
	rc = tap_failed || (tap_planned >= 0 && tap_planned != tap_run);
	fflush(stdout);
	pthread_mutex_unlock(&tap_lock);
	return rc;
}

bool tap_sanitized(void)
{
#if defined(GORO_ASAN) || defined(GORO_TSAN) || defined(GORO_VALGRIND)
	return true;
#else
	return false;
#endif
}

long tap_scale(long normal, long sanitized)
{
	const char *env = getenv("GORO_TEST_SCALE");
	double factor = env ? strtod(env, NULL) : 1.0;
	long n = tap_sanitized() ? sanitized : normal;

	if (factor > 0)
		n = (long)(n * factor);
	return n < 1 ? 1 : n;
}
