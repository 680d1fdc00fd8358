/* netpoll.c: parking goroutines on file descriptors and deadlines, on
 * libevent.
 *
 * One event_base serves the whole runtime. There is no poller thread: a
 * worker with nothing to run takes ownership of the base (netpoll_try_own)
 * and blocks in event_base_loop; the goroutines its callbacks make ready
 * are collected, and it runs the first itself, with no hop to another
 * thread (sched.c, collected_take). Workers with work poll without blocking now and then, and sysmon
 * polls when nobody has for a while, so events are not starved by busy
 * workers. libevent's pthreads locking (evthread) lets any worker add and
 * delete events while another blocks in the loop; the loop is told, and
 * recomputes its timeout.
 *
 * Each goroutine has one struct event, allocated on its first wait and kept
 * with its record. A park arms it after the goroutine is off its stack
 * (sched.c "Parking and claiming"), and the park disarms it before
 * returning; event_del waits for a callback that is running in another
 * thread, so no callback outlives its park.
 *
 * netpoll_break() interrupts a blocked poll through an eventfd that stays
 * readable until drained, so a break sent just before the poll starts is
 * not lost (libevent's loopbreak would be). */
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static struct event_base *base;
static struct event *break_ev;
static int break_fd = -1;
static atomic_bool break_pending;
static atomic_bool owned;
static atomic_int nwaiters;
static _Atomic int64_t last_poll_ns;

static void break_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	atomic_store(&break_pending, false);
	while (read(fd, &v, sizeof v) > 0)
		;
}

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_ok;

static void threads_init(void)
{
	threads_ok = evthread_use_pthreads();
}

int netpoll_init(void)
{
	struct event_config *cfg;

	pthread_once(&threads_once, threads_init);
	if (threads_ok < 0)
		return -ENOSYS;
	cfg = event_config_new();
	if (!cfg)
		return -ENOMEM;
	/* Timers must not fire early, nor out of order: libevent's default
	 * clock is the coarse monotonic one, up to 4 ms behind rt_now(), so
	 * two deadlines 2 ms apart could fire in the wrong order. The precise
	 * clock costs a timerfd_settime per poll (about 0.5 us a request
	 * here). Nor may the loop's cached "now" be used for a timeout added
	 * from another worker while callbacks run: it can be ms old. */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!base)
		return -ENOMEM;
	break_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (break_fd < 0)
		goto fail;
	break_ev = event_new(base, break_fd, EV_READ | EV_PERSIST, break_cb, NULL);
	if (!break_ev || event_add(break_ev, NULL) < 0)
		goto fail;
	atomic_store(&nwaiters, 0);
	atomic_store(&owned, false);
	atomic_store(&break_pending, false);
	return 0;
fail:
	netpoll_shutdown();
	return -ENOMEM;
}

void netpoll_shutdown(void)
{
	if (break_ev)
		event_free(break_ev);
	break_ev = NULL;
	if (break_fd >= 0)
		close(break_fd);
	break_fd = -1;
	if (base)
		event_base_free(base);
	base = NULL;
}

bool netpoll_try_own(void)
{
	bool f = false;
	return atomic_compare_exchange_strong(&owned, &f, true);
}

bool netpoll_owned(void)
{
	return atomic_load(&owned);
}

void netpoll_disown(void)
{
	atomic_store(&owned, false);
}

bool netpoll_has_waiters(void)
{
	return atomic_load_explicit(&nwaiters, memory_order_relaxed) > 0;
}

int64_t netpoll_last_poll(void)
{
	return atomic_load_explicit(&last_poll_ns, memory_order_relaxed);
}

/* Runs the event loop once, blocking until an event if `block`. The caller
 * owns the base. p is the worker polling, NULL for sysmon. */
void netpoll_poll(struct p *p, bool block)
{
	if (p)
		p->collecting = true;
	event_base_loop(base, block ? EVLOOP_ONCE : EVLOOP_NONBLOCK);
	if (p)
		p->collecting = false;
	atomic_store_explicit(&last_poll_ns, rt_now(), memory_order_relaxed);
}

void netpoll_break(void)
{
	uint64_t one = 1;

	if (break_fd < 0 || atomic_exchange(&break_pending, true))
		return;
	if (write(break_fd, &one, sizeof one) < 0)
		atomic_store(&break_pending, false);
}

int netpoll_result(struct g *g)
{
	int what = atomic_load(&g->ev_what);

	if (what & EV_TIMEOUT)
		return -ETIMEDOUT;
	return what & (EV_READ | EV_WRITE);
}

static struct timeval tv_until(int64_t deadline)
{
	int64_t left = deadline - rt_now();
	struct timeval tv;

	if (left < 0)
		left = 0;
	left = (left + 999) / 1000; /* microseconds, rounded up */
	tv.tv_sec = left / 1000000;
	tv.tv_usec = left % 1000000;
	return tv;
}

static void g_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct g *g = arg;

	/* Never report a deadline early, whatever the loop's clock said. */
	if ((what & EV_TIMEOUT) && rt_now() < g->deadline) {
		struct timeval tv = tv_until(g->deadline);
		if (event_add(g->ev, &tv) == 0)
			return;
	}

	atomic_store(&g->ev_what, what ? what : EV_TIMEOUT);
	sched_claim(g, netpoll_result(g));
}

/* Called by park_commit once g is off its stack: adds g's event for fd
 * (or a pure timer when fd < 0) with the deadline. 0 or -errno. */
int netpoll_arm(struct g *g, int fd, short events, int64_t deadline)
{
	struct timeval tv, *tvp = NULL;

	if (!g->ev) {
		g->ev = event_new(base, -1, 0, g_ev_cb, g);
		if (!g->ev)
			return -ENOMEM;
	}
	if (event_assign(g->ev, base, fd, fd >= 0 ? events : 0, g_ev_cb, g) < 0)
		return -EINVAL;
	g->deadline = deadline;
	if (deadline != RT_FOREVER) {
		tv = tv_until(deadline);
		tvp = &tv;
	}
	if (event_add(g->ev, tvp) < 0)
		return fd >= 0 ? -EBADF : -ENOMEM;
	atomic_fetch_add(&nwaiters, 1);
	/* Someone must poll. This worker will, once its queue is empty; if
	 * it has other goroutines to run first, an idle worker is woken to
	 * take up polling. (Waking one on every park would put a futex call
	 * on every request's path.) */
	struct p *p = sched_current_p();
	if (!atomic_load(&owned) && (!p || !runq_empty(p)))
		sched_wakep();
	return 0;
}

void netpoll_disarm(struct g *g)
{
	event_del(g->ev);
	atomic_fetch_sub(&nwaiters, 1);
}

void netpoll_g_free(struct g *g)
{
	if (g->ev)
		event_free(g->ev);
	g->ev = NULL;
}

/* ---- the public waits ---------------------------------------------------- */

static int wait_fd(int fd, short events, int64_t deadline, const char *reason)
{
	struct g *g = sched_current_g();

	if (!g)
		rt_throw("rt_wait_fd called outside a goroutine");
	if (fd < 0)
		return -EBADF;
	if (!events || (events & ~(RT_READ | RT_WRITE)))
		return -EINVAL;
	if (g_cancelled(g))
		return -ECANCELED;
	if (deadline == 0 || (deadline > 0 && deadline <= rt_now())) {
		struct pollfd pfd = { .fd = fd, .events = 0 };
		if (events & RT_READ)
			pfd.events |= POLLIN;
		if (events & RT_WRITE)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 0) <= 0 || (pfd.revents & POLLNVAL))
			return pfd.revents & POLLNVAL ? -EBADF : -ETIMEDOUT;
		int r = 0;
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
			r |= RT_READ & events;
		if (pfd.revents & (POLLOUT | POLLERR))
			r |= RT_WRITE & events;
		return r ? r : -ETIMEDOUT;
	}
	struct park pk = {
		.fd = fd,
		.events = events,
		.deadline = deadline,
		.reason = reason,
		.obj = (const void *)(intptr_t)fd,
	};
	return sched_park(&pk);
}

int rt_wait_fd(int fd, short events, int64_t deadline)
{
	return wait_fd(fd, events, deadline, "fd");
}

/* ---- registered fds ------------------------------------------------------ */

struct rt_pollfd {
	int fd;
	struct event *ev;
	rt_spin lock;
	short ready;         /* events seen while nobody waited (lock) */
	struct g *rg, *wg;   /* the goroutines waiting to read / write (lock) */
};

/* Wakes the goroutine waiting for `bit`, or remembers the event. Called
 * with pfd->lock held. */
static void pfd_fire(struct rt_pollfd *pfd, struct g **waiter, short bit)
{
	struct g *g = *waiter;

	*waiter = NULL;
	if (g && sched_claim(g, bit))
		return;
	pfd->ready |= bit; /* nobody waits, or the waiter is leaving */
}

static void pfd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rt_pollfd *pfd = arg;

	rt_spin_lock(&pfd->lock);
	if (what & EV_READ)
		pfd_fire(pfd, &pfd->rg, RT_READ);
	if (what & EV_WRITE)
		pfd_fire(pfd, &pfd->wg, RT_WRITE);
	rt_spin_unlock(&pfd->lock);
}

int rt_pollfd_open(int fd, struct rt_pollfd **out)
{
	struct rt_pollfd *pfd;

	if (fd < 0)
		return -EBADF;
	pfd = calloc(1, sizeof *pfd);
	if (!pfd)
		return -ENOMEM;
	pfd->fd = fd;
	pfd->ev = event_new(base, fd, EV_READ | EV_WRITE | EV_PERSIST | EV_ET, pfd_cb, pfd);
	if (!pfd->ev) {
		free(pfd);
		return -ENOMEM;
	}
	if (event_add(pfd->ev, NULL) < 0) {
		event_free(pfd->ev);
		free(pfd);
		return -EBADF;
	}
	*out = pfd;
	return 0;
}

void rt_pollfd_close(struct rt_pollfd *pfd)
{
	if (!pfd)
		return;
	event_del(pfd->ev); /* waits for a callback running in another thread */
	event_free(pfd->ev);
	rt_assert(!pfd->rg && !pfd->wg);
	free(pfd);
}

int rt_pollfd_wait(struct rt_pollfd *pfd, short events, int64_t deadline)
{
	struct g *g = sched_current_g();
	short r;

	if (!g)
		rt_throw("rt_pollfd_wait called outside a goroutine");
	if (!events || (events & ~(RT_READ | RT_WRITE)))
		return -EINVAL;
	if (g_cancelled(g))
		return -ECANCELED;
	rt_spin_lock(&pfd->lock);
	if ((r = pfd->ready & events)) {
		pfd->ready &= (short)~r;
		rt_spin_unlock(&pfd->lock);
		return r;
	}
	if (deadline == 0 || (deadline > 0 && deadline <= rt_now())) {
		rt_spin_unlock(&pfd->lock);
		return -ETIMEDOUT;
	}
	if (((events & RT_READ) && pfd->rg) || ((events & RT_WRITE) && pfd->wg)) {
		rt_spin_unlock(&pfd->lock);
		return -EBUSY;
	}
	if (events & RT_READ)
		pfd->rg = g;
	if (events & RT_WRITE)
		pfd->wg = g;
	atomic_fetch_add(&nwaiters, 1);

	struct park pk = {
		.unlock = &pfd->lock,
		.fd = -1,
		.deadline = deadline,
		.reason = "fd",
		.obj = (const void *)(intptr_t)pfd->fd,
	};
	int rc = sched_park(&pk);

	atomic_fetch_sub(&nwaiters, 1);
	rt_spin_lock(&pfd->lock);
	if (pfd->rg == g)
		pfd->rg = NULL;
	if (pfd->wg == g)
		pfd->wg = NULL;
	/* Woken for one direction while waiting for both: the other is
	 * not ready yet, nothing to keep. */
	rt_spin_unlock(&pfd->lock);
	return rc;
}

int rt_pidfd_open(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : (int)fd;
}

int rt_wait_pidfd(int pidfd, int64_t deadline)
{
	int r = wait_fd(pidfd, RT_READ, deadline, "child");
	return r > 0 ? 0 : r;
}
