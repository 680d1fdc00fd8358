/* bench_util.c: what lock_bench, task_bench and leak_bench share
 * (bench_util.h). Everything that fails here ends the program with
 * bench_die(): a benchmark has no result to report after an error. */
#include "bench_util.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", bench_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

goro_client *bench_connect(const char *path)
{
	goro_client *c;
	int err = goro_connect(path, &c);

	if (err < 0)
		bench_die("connecting to gorod at %s: %s", path, goro_strerror(err));
	return c;
}

void bench_check(goro_client *c, int err, const char *what)
{
	if (err < 0)
		bench_die("%s: %s (%s): %s", what, goro_err_name(err), goro_strerror(err),
			  goro_last_error(c));
}

void bench_pump(goro_client *c, struct bench_batch *b, long want, int64_t deadline)
{
	while (b->answered < want) {
		int64_t left = deadline - bench_now_ns();
		struct pollfd pfd = { .fd = goro_fd(c), .events = POLLIN };
		int err = goro_flush(c);

		if (err < 0 && err != -EAGAIN)
			bench_check(c, err, "writing requests");
		if (goro_want_write(c))
			pfd.events |= POLLOUT;
		if (left <= 0)
			bench_die("timed out: %s, %ld of %ld replies", b->what, b->answered, want);
		if (poll(&pfd, 1, (int)(left / 1000000) + 1) < 0 && errno != EINTR)
			bench_die("poll: %s", strerror(errno));
		err = goro_process(c);
		if (err < 0)
			bench_check(c, err, "reading replies");
	}
}
