/* output.c: what tasks write to stdout and stderr, kept in bounded rings.
 *
 * Each stream of an exec task is a pipe whose read end a pump goroutine
 * reads (registered once with the netpoller, edge-triggered) into a ring
 * that grows by doubling up to the task's output_max and then keeps the
 * last output_max bytes: the end of a log is what explains a failure.
 * Everything written is counted (total), so what was cut is known exactly
 * and a reader that follows the stream (logs.read) addresses bytes by
 * their offset in everything ever written.
 *
 * Pumps start late: most commands end within milliseconds, and then the
 * task goroutine reads the pipe itself once the process has exited (all
 * it wrote is in the pipe by then, and a pipe holds 64 KiB), with no
 * goroutine, no netpoller registration and no wakeups of its own. A
 * command still running after PUMP_AFTER_NS, or a pipe that is still open
 * when it exits (something it left behind holds it), gets its pump.
 *
 * A read from the pipe and its append happen under the stream's own lock,
 * so the pump and the task goroutine's final drain (when the process has
 * exited: all it wrote before is in the pipe) never reorder bytes. The
 * pump goes on until end of file, which comes when every process holding
 * the pipe (the main one and whatever it left behind) has closed it. The
 * counters, and the wakeup of logs.read requests waiting for bytes, are
 * published under names_lock. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quota.h"
#include "task.h"

#define RING_MIN 4096
#define READ_CHUNK 65536

void outbuf_init(struct outbuf *o, size_t max)
{
	memset(o, 0, sizeof *o);
	o->max = max;
	o->fd = -1;
}

void outbuf_destroy(struct outbuf *o)
{
	rt_pollfd_close(o->pfd);
	o->pfd = NULL;
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	free(o->ring);
	quota_output_free(o->quota, o->cap);
	o->ring = NULL;
	o->cap = o->len = o->head = 0;
}

/* o->lock held: makes room for n more bytes, growing up to max. */
static void ring_grow(struct outbuf *o, size_t n)
{
	size_t want = o->len + n, cap = o->cap ? o->cap : RING_MIN;
	char *r;

	if (want <= o->cap || o->cap >= o->max)
		return;
	while (cap < want && cap < o->max)
		cap *= 2;
	if (cap > o->max)
		cap = o->max;
	/* Past the user's output-per-user the ring stops growing, as at max;
	 * a stream's first ring is given whatever the limit (quota.c). */
	if (!quota_output_grow(o->quota, cap - o->cap)) {
		if (o->cap)
			return;
		cap = RING_MIN < o->max ? RING_MIN : o->max;
		quota_output_force(o->quota, cap);
	}
	if (!(r = malloc(cap))) {
		quota_output_free(o->quota, cap - o->cap);
		return; /* keep what fits: the rest counts as cut */
	}
	/* Unwrap the old ring into the start of the new one. */
	size_t first = o->cap - o->head < o->len ? o->cap - o->head : o->len;
	if (o->len) {
		memcpy(r, o->ring + o->head, first);
		memcpy(r + first, o->ring, o->len - first);
	}
	free(o->ring);
	o->ring = r;
	o->cap = cap;
	o->head = 0;
}

/* o->lock held: appends, overwriting the oldest bytes when full. Returns
 * nothing: the counters are published by the caller. */
static void ring_put(struct outbuf *o, const char *p, size_t n)
{
	ring_grow(o, n);
	if (o->cap == 0)
		return;
	if (n >= o->cap) { /* only the last cap bytes survive */
		memcpy(o->ring, p + n - o->cap, o->cap);
		o->head = 0;
		o->len = o->cap;
		return;
	}
	size_t tail = (o->head + o->len) % o->cap;
	size_t first = o->cap - tail < n ? o->cap - tail : n;
	memcpy(o->ring + tail, p, first);
	memcpy(o->ring, p + first, n - first);
	if (o->len + n > o->cap) {
		o->head = (o->head + o->len + n - o->cap) % o->cap;
		o->len = o->cap;
	} else {
		o->len += n;
	}
}

/* Wakes logs.read requests waiting on t's output (names_lock held). */
static void wake_readers(struct task *t)
{
	while (t->log_waiters) {
		struct nwait *nw = t->log_waiters;
		nwait_unlink(&t->log_waiters, nw);
		nwait_complete(nw, 0);
	}
}

/* o->lock held: publishes n new bytes (and eof) under names_lock. */
static void publish(struct task *t, struct outbuf *o, size_t n, bool eof)
{
	rt_mutex_lock_nocancel(&names_lock);
	o->total += n;
	o->kept = o->len;
	if (eof)
		o->eof = true;
	wake_readers(t);
	rt_mutex_unlock(&names_lock);
}

void outbuf_append(struct task *t, struct outbuf *o, const void *p, size_t n)
{
	rt_mutex_lock_nocancel(&o->lock);
	ring_put(o, p, n);
	publish(t, o, n, false);
	rt_mutex_unlock(&o->lock);
}

/* o->lock held: reads the pipe until it would block. Returns 1 at end of
 * file (or an error), else 0. */
static int drain_locked(struct task *t, struct outbuf *o, char *buf)
{
	size_t got = 0;
	int end = 0;

	while (o->fd >= 0) {
		ssize_t n = read(o->fd, buf, READ_CHUNK);
		if (n > 0) {
			/* Read on until EAGAIN, even after a short read: the
			 * writer may have closed before this read, and that
			 * raised no edge of its own to wait for. */
			ring_put(o, buf, (size_t)n);
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		end = 1;
		break;
	}
	if (got || end)
		publish(t, o, got, end);
	return end;
}

bool outbuf_drain(struct task *t, struct outbuf *o)
{
	char *buf = malloc(READ_CHUNK);
	int end = 0;

	if (!buf)
		return false;
	rt_mutex_lock_nocancel(&o->lock);
	end = drain_locked(t, o, buf);
	if (end && !o->pfd && o->fd >= 0) { /* no pump: the fd ends here */
		close(o->fd);
		o->fd = -1;
	}
	rt_mutex_unlock(&o->lock);
	free(buf);
	return end;
}

struct pump {
	struct task *t;
	struct outbuf *o;
};

/* The pump goroutine: reads until end of file, then closes the pipe. */
static void pump_main(void *arg)
{
	struct pump pu = *(struct pump *)arg;
	struct outbuf *o = pu.o;
	char *buf = malloc(READ_CHUNK);
	int end = !buf;

	free(arg);
	while (!end) {
		rt_mutex_lock_nocancel(&o->lock);
		end = drain_locked(pu.t, o, buf);
		rt_mutex_unlock(&o->lock);
		if (!end && rt_pollfd_wait(o->pfd, RT_READ, RT_FOREVER) < 0)
			end = 1; /* cancelled: gorod stops */
	}
	free(buf);
	rt_mutex_lock_nocancel(&o->lock);
	rt_pollfd_close(o->pfd);
	o->pfd = NULL;
	close(o->fd);
	o->fd = -1;
	rt_mutex_unlock(&o->lock);

	rt_mutex_lock_nocancel(&names_lock);
	if (!o->eof) {
		o->eof = true;
		wake_readers(pu.t);
	}
	o->pump = (struct rt_gref){ 0 };
	task_helper_done(pu.t);
	rt_mutex_unlock(&names_lock);
}

int outbuf_pump_start(struct task *t, struct outbuf *o)
{
	struct pump *pu = malloc(sizeof *pu);
	int rc;

	if (!pu)
		return -ENOMEM;
	if ((rc = rt_pollfd_open(o->fd, &o->pfd)) < 0) {
		free(pu);
		return rc;
	}
	pu->t = t;
	pu->o = o;
	rt_mutex_lock_nocancel(&names_lock);
	task_helper_add(t);
	o->pumped = true;
	if ((rc = rt_go(pump_main, pu, &o->pump)) < 0) {
		free(pu);
		o->pumped = false;
		task_helper_done(t);
		rt_pollfd_close(o->pfd);
		o->pfd = NULL;
	}
	rt_mutex_unlock(&names_lock);
	return rc;
}

int outbuf_read(const struct outbuf *o, uint64_t from, size_t max, bool tail, char **data,
		size_t *len, uint64_t *start)
{
	uint64_t first = o->total - o->len;
	size_t skip, n;
	char *d;

	if (tail && o->total - from > max)
		from = o->total - max;
	if (from < first)
		from = first;
	if (from > o->total)
		from = o->total;
	skip = (size_t)(from - first);
	n = o->len - skip;
	if (n > max)
		n = max;
	d = n ? malloc(n) : NULL;
	if (n && !d)
		return -ENOMEM;
	if (n) { /* the ring may wrap: copy in two runs */
		size_t pos = (o->head + skip) % o->cap;
		size_t a = o->cap - pos < n ? o->cap - pos : n;
		memcpy(d, o->ring + pos, a);
		memcpy(d + a, o->ring, n - a);
	}
	*data = d;
	*len = n;
	*start = from;
	return 0;
}

void outbuf_restore(struct outbuf *o, const void *p, size_t n, uint64_t total)
{
	if (n > o->max)
		o->max = n;
	ring_put(o, p, n);
	o->total = total > o->len ? total : o->len;
	o->kept = o->len;
	o->eof = true;
}
