/* netpoll.c: parking goroutines on file descriptors and deadlines, on
 * libevent.
 *
 * One event_base serves the whole runtime. There is no poller thread: a
 * worker with nothing to run takes ownership of the base (netpoll_try_own)
 * and blocks in event_base_loop; the goroutines its callbacks make ready
 * are collected, and it runs the first itself, with no hop to another
 * thread (sched.c, collected_take). Workers with work poll without blocking
 * now and then, and sysmon polls when nobody has for a while, so events are
 * not starved by busy workers. libevent's pthreads locking (evthread) lets
 * any worker add and delete events while another blocks in the loop; the
 * loop is told.
 *
 * Each goroutine has one struct event, allocated on its first wait on an
 * fd and kept with its record. A park arms it after the goroutine is off
 * its stack (sched.c "Parking and claiming"), and the park disarms it
 * before returning; event_del waits for a callback that is running in
 * another thread, so no callback outlives its park.
 *
 * Deadlines are not libevent's: they are kept in one heap here, ordered by
 * deadline, with a timerfd set (absolute, CLOCK_MONOTONIC: never early by
 * rt_now()) for the earliest. libevent's own timers would cost a
 * timerfd_settime on every pass of its loop, that is on every request,
 * even with no timer due (its precise mode; its coarse clock can be 4 ms
 * behind rt_now() and fire deadlines out of order). The timerfd is set
 * only when a new earliest deadline comes; one that leaves early leaves
 * the timerfd set, and its expiry finds nothing due and sets the next. The
 * expiry callback claims the due goroutines under the heap's lock, in
 * deadline order, and a park's disarm takes that lock, so no expiry
 * outlives its park either.
 *
 * netpoll_break() interrupts a blocked poll through an eventfd that stays
 * readable until drained, so a break sent just before the poll starts is
 * not lost (libevent's loopbreak would be). */
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "internal.h"

static struct event_base *base;
static struct event *break_ev;
static int break_fd = -1;
static atomic_bool break_pending;
static atomic_bool owned;
static atomic_int nwaiters;
static _Atomic int64_t last_poll_ns;

/* The deadlines of the parked goroutines: a binary min-heap on
 * g->deadline, each g knowing its place (g->theap_i). All under
 * theap_lock, with timer_set, the deadline the timerfd is set for. */
static rt_spin theap_lock;
static struct g **theap;
static unsigned theap_len, theap_cap;
static int64_t timer_set = INT64_MAX;
static int timer_fd = -1;
static struct event *timer_ev;

static void timer_cb(evutil_socket_t fd, short what, void *arg);

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
	pthread_once(&threads_once, threads_init);
	if (threads_ok < 0)
		return -ENOSYS;
	/* No flags: the base keeps no timers (see the top), so neither its
	 * clock nor its precise mode matters. */
	base = event_base_new();
	if (!base)
		return -ENOMEM;
	break_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (break_fd < 0)
		goto fail;
	break_ev = event_new(base, break_fd, EV_READ | EV_PERSIST, break_cb, NULL);
	if (!break_ev || event_add(break_ev, NULL) < 0)
		goto fail;
	timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (timer_fd < 0) {
		int e = -errno;
		netpoll_shutdown();
		return e;
	}
	timer_ev = event_new(base, timer_fd, EV_READ | EV_PERSIST, timer_cb, NULL);
	if (!timer_ev || event_add(timer_ev, NULL) < 0)
		goto fail;
	timer_set = INT64_MAX;
	theap_len = 0;
	atomic_store(&nwaiters, 0);
	atomic_store(&owned, false);
	atomic_store(&break_pending, false);
	return 0;
fail:
	netpoll_shutdown();
	return -ENOMEM;
}

/* Frees an fd's event, then closes the fd (either may be unset). */
static void fd_event_close(struct event **ev, int *fd)
{
	if (*ev)
		event_free(*ev);
	*ev = NULL;
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void netpoll_shutdown(void)
{
	fd_event_close(&timer_ev, &timer_fd);
	free(theap);
	theap = NULL;
	theap_len = theap_cap = 0;
	fd_event_close(&break_ev, &break_fd);
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

/* Records what woke g (the first of its events: an fd event and its
 * deadline may both come) and claims it. */
static void g_fire(struct g *g, int what)
{
	int none = 0;

	atomic_compare_exchange_strong(&g->ev_what, &none, what);
	sched_claim(g, netpoll_result(g));
}

static void g_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	g_fire(arg, what & (EV_READ | EV_WRITE));
}

/* ---- the timer heap ------------------------------------------------------ */

static void theap_place(unsigned i, struct g *g)
{
	theap[i] = g;
	g->theap_i = i + 1;
}

static void theap_up(unsigned i)
{
	struct g *g = theap[i];

	while (i > 0) {
		unsigned parent = (i - 1) / 2;
		if (theap[parent]->deadline <= g->deadline)
			break;
		theap_place(i, theap[parent]);
		i = parent;
	}
	theap_place(i, g);
}

static void theap_down(unsigned i)
{
	struct g *g = theap[i];

	for (;;) {
		unsigned c = 2 * i + 1;
		if (c >= theap_len)
			break;
		if (c + 1 < theap_len && theap[c + 1]->deadline < theap[c]->deadline)
			c++;
		if (g->deadline <= theap[c]->deadline)
			break;
		theap_place(i, theap[c]);
		i = c;
	}
	theap_place(i, g);
}

/* theap_lock held: takes g out of the heap. */
static void theap_remove(struct g *g)
{
	unsigned i = g->theap_i - 1;
	struct g *last = theap[--theap_len];

	g->theap_i = 0;
	if (i == theap_len)
		return;
	theap_place(i, last);
	if (i > 0 && theap[(i - 1) / 2]->deadline > last->deadline)
		theap_up(i);
	else
		theap_down(i);
}

/* theap_lock held: sets the timerfd for `deadline` if that is earlier
 * than what it is set for. */
static void timer_program(int64_t deadline)
{
	struct itimerspec its = { 0 };

	if (deadline >= timer_set)
		return;
	timer_set = deadline;
	if (deadline <= 0)
		deadline = 1; /* a zero it_value would disarm it */
	its.it_value.tv_sec = deadline / 1000000000;
	its.it_value.tv_nsec = deadline % 1000000000;
	if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		rt_throw("timerfd_settime: %s", strerror(errno));
}

static int timer_add(struct g *g, int64_t deadline)
{
	rt_spin_lock(&theap_lock);
	g->deadline = deadline;
	if (theap_len == theap_cap) {
		unsigned ncap = theap_cap ? 2 * theap_cap : 64;
		struct g **n = realloc(theap, ncap * sizeof *n);
		if (!n) {
			rt_spin_unlock(&theap_lock);
			return -ENOMEM;
		}
		theap = n;
		theap_cap = ncap;
	}
	theap[theap_len++] = g;
	theap_up(theap_len - 1);
	timer_program(deadline);
	rt_spin_unlock(&theap_lock);
	return 0;
}

static void timer_del(struct g *g)
{
	rt_spin_lock(&theap_lock);
	if (g->theap_i)
		theap_remove(g);
	/* Emptied after a crowd of timed waits: give the array back. */
	if (theap_cap > 1024 && theap_len < theap_cap / 8) {
		struct g **n = realloc(theap, theap_cap / 2 * sizeof *n);
		if (n) {
			theap = n;
			theap_cap /= 2;
		}
	}
	rt_spin_unlock(&theap_lock);
}

/* The timerfd expired: claims every goroutine whose deadline has come, in
 * deadline order, and sets the timerfd for the next. Each claim happens
 * under theap_lock, which a park's disarm takes: none reaches a goroutine
 * that has moved on to another park. (The lock is let go between batches;
 * a deadline armed meanwhile that is due already is claimed in the same
 * pass, one that is not sets the timerfd itself.) */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t expirations;
	int64_t now;
	unsigned claimed = 0;

	if (read(fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
		rt_throw("timerfd read: %s", strerror(errno));
	rt_spin_lock(&theap_lock);
	timer_set = INT64_MAX;
	now = rt_now();
	while (theap_len > 0 && theap[0]->deadline <= now) {
		struct g *g = theap[0];
		theap_remove(g);
		g_fire(g, EV_TIMEOUT);
		/* A crowd of deadlines due at once is claimed in batches:
		 * parkers arming a deadline spin on this lock meanwhile. */
		if (++claimed % 256 == 0) {
			rt_spin_unlock(&theap_lock);
			rt_spin_lock(&theap_lock);
		}
	}
	if (theap_len > 0)
		timer_program(theap[0]->deadline);
	rt_spin_unlock(&theap_lock);
}

/* Called by park_commit once g is off its stack: adds g's event for fd
 * (none when fd < 0) and its deadline. 0 or -errno. */
int netpoll_arm(struct g *g, int fd, short events, int64_t deadline)
{
	g->ev_added = false;
	g->deadline = RT_FOREVER;
	if (fd >= 0) {
		if (!g->ev) {
			g->ev = event_new(base, -1, 0, g_ev_cb, g);
			if (!g->ev)
				return -ENOMEM;
		}
		if (event_assign(g->ev, base, fd, events, g_ev_cb, g) < 0)
			return -EINVAL;
		if (event_add(g->ev, NULL) < 0)
			return -EBADF;
		g->ev_added = true;
	}
	if (deadline != RT_FOREVER && timer_add(g, deadline) < 0) {
		if (g->ev_added)
			event_del(g->ev);
		g->ev_added = false;
		g->deadline = RT_FOREVER;
		return -ENOMEM;
	}
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
	if (g->ev_added)
		event_del(g->ev);
	g->ev_added = false;
	/* Under the lock even if the expiry took it out already: an expiry
	 * claiming g right now must be over before g parks again. */
	if (g->deadline != RT_FOREVER)
		timer_del(g);
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
	struct event *ev;    /* reading and the peer's shutdown: always added */
	struct event *wev;   /* writing: added only while a writer waits */
	rt_spin lock;
	short ready;         /* events seen while nobody waited (lock) */
	struct g *rg, *wg;   /* the goroutines waiting to read / write (lock) */
	atomic_bool hup;     /* the peer has shut down its writing (EPOLLRDHUP) */
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

	if (what & EV_CLOSED)
		atomic_store(&pfd->hup, true); /* before the reader is woken */
	rt_spin_lock(&pfd->lock);
	if (what & (EV_READ | EV_CLOSED))
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
	/* Writability is not watched all along: on a socket, every time the
	 * peer reads, the kernel would wake the poller to say "writable"
	 * again, which on a request-reply connection is a second wakeup of
	 * gorod per request (a whole one when the poller sleeps on another
	 * CPU). A writer registers it when the socket is full (below). */
	pfd->ev = event_new(base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, pfd_cb, pfd);
	pfd->wev = event_new(base, fd, EV_WRITE | EV_PERSIST | EV_ET, pfd_cb, pfd);
	if (!pfd->ev || !pfd->wev) {
		if (pfd->ev)
			event_free(pfd->ev);
		if (pfd->wev)
			event_free(pfd->wev);
		free(pfd);
		return -ENOMEM;
	}
	if (event_add(pfd->ev, NULL) < 0) {
		event_free(pfd->ev);
		event_free(pfd->wev);
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
	event_free(pfd->wev); /* deleted by its last writer */
	rt_assert(!pfd->rg && !pfd->wg);
	free(pfd);
}

bool rt_pollfd_hup(struct rt_pollfd *pfd)
{
	return atomic_load(&pfd->hup);
}

/* A writer is done waiting: stops watching writability, unless another
 * writer has started waiting meanwhile (its event_add found the event
 * added already, and this event_del would leave it unwatched): then it is
 * added again, and the kernel reports the socket's writability anew. */
static void write_interest_drop(struct rt_pollfd *pfd)
{
	bool again;

	event_del(pfd->wev); /* waits for its callback, if running */
	rt_spin_lock(&pfd->lock);
	again = pfd->wg != NULL;
	rt_spin_unlock(&pfd->lock);
	if (again)
		event_add(pfd->wev, NULL);
}

/* pfd->lock held: g waits no more. */
static void pollfd_unwait(struct rt_pollfd *pfd, struct g *g)
{
	if (pfd->rg == g)
		pfd->rg = NULL;
	if (pfd->wg == g)
		pfd->wg = NULL;
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
	if (events & RT_WRITE) {
		/* Watch writability while we wait (see rt_pollfd_open). Adding
		 * it reports a socket that became writable since the EAGAIN:
		 * the kernel checks when the interest is added, and the
		 * callback leaves it in `ready` (g is not parked yet). */
		pfd->wg = g;
		rt_spin_unlock(&pfd->lock);
		int added = event_add(pfd->wev, NULL);
		rt_spin_lock(&pfd->lock);
		r = pfd->ready & events;
		if (added < 0 || r) {
			pfd->ready &= (short)~r;
			pollfd_unwait(pfd, g);
			rt_spin_unlock(&pfd->lock);
			write_interest_drop(pfd);
			return added < 0 ? -EBADF : r;
		}
	}
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
	/* Woken for one direction while waiting for both: the other is
	 * not ready yet, nothing to keep. */
	pollfd_unwait(pfd, g);
	rt_spin_unlock(&pfd->lock);
	if (events & RT_WRITE)
		write_interest_drop(pfd);
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
