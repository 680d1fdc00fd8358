/* metrics.c: gorod's metrics for Prometheus, at http://ADDR/metrics.
 *
 * Off unless --metrics ADDR (or `metrics = ADDR` in the configuration
 * file) says where. The text exposition format, version 0.0.4; every
 * metric is listed in docs/METRICS.md.
 *
 * How it runs. The endpoint is libevent's evhttp on a thread of its own,
 * with an event_base of its own. It cannot be a goroutine on the runtime's
 * netpoller: evhttp needs a base it can run (event_base_dispatch), and
 * the runtime's base belongs to whichever worker polls at the moment. Being
 * a plain thread, the HTTP thread may not take names_lock (a goroutine
 * mutex) nor read what it guards. So each scrape asks for a snapshot: the
 * HTTP thread starts a short goroutine, collect() (rt_go may be called
 * from any thread), which copies the counters into a struct snap on its
 * own stack under names_lock, then hands the copy over under the server's
 * pthread mutex (held for a copy, never across a park). The HTTP thread
 * waits for it on a condition variable, at most SNAP_WAIT_MS (a gorod too
 * wedged to answer gets 503, and Prometheus marks the target down), and
 * formats the text from its own copy with no lock held. A scrape thus
 * sees one moment, costs the daemon one goroutine and one names_lock
 * section (like `stats`), and a gorod nobody scrapes does nothing at all.
 *
 * Rejected: a goroutine refreshing a snapshot every second (it would wake
 * an idle daemon forever, and serve values up to a second old, which makes
 * "did this counter move" tests and dashboards lag); every daemon counter
 * an atomic that the thread reads directly (it touches every module, when
 * names_lock is held where they change anyway); a hand-written HTTP
 * server in a goroutine on rt_pollfd (parsing HTTP from the network is
 * where bugs hide; evhttp already parses and bounds requests).
 *
 * The lock histograms. grant.c reports each grant (how long its request
 * waited: 0 for one granted at once) and each release (how long it was
 * held, whoever let go: an unlock, an unlock by token, the owner's death)
 * with names_lock held, so the histograms are plain counters under
 * names_lock: a bucket found by a few comparisons and two additions, no
 * atomic instruction, no allocation; the clock reads are grant.c's. collect
 * reads them under names_lock too, so every bucket agrees with _count.
 *
 * Stopping. metrics_stop (the main goroutine) marks the server stopping,
 * which wakes the HTTP thread if it waits for a snapshot, asks its loop to
 * end (event_base_loopexit from another thread works because libevent's
 * pthreads locking is on, which makes every base notifiable), joins it
 * (blocking its worker for the thread's last callback only), waits for the
 * collect goroutines still running, and frees. A reload to a new address
 * starts the new server before stopping the old, so a failure keeps the
 * old one (but for a new address on the same port, which may be the old
 * one spelled another way: there the old one lets go first, and comes
 * back if the new one fails).
 *
 * Bounds, so that a client cannot hold the thread or grow its memory: the
 * request line and headers at most MAX_HEADERS bytes, a body at most
 * MAX_BODY, and a connection idle or slow for CONN_TIMEOUT_S seconds is
 * closed. The endpoint has no authentication (like any exporter): bind it
 * to a loopback address unless the network is trusted. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "metrics.h"
#include "task.h"

/* Under ThreadSanitizer the HTTP thread runs libevent with its memory
 * accesses ignored, and only serve() is checked. libevent is not
 * instrumented, so all TSan sees of it is its system calls, and it still
 * touches a connection's fd after closing it (as freeing a connection's
 * events is finished later, in the loop). The kernel may meanwhile have
 * given that number to a goroutine, by a call TSan does not see
 * (opendir), and TSan took the goroutine's closedir for a race with this
 * thread (and crashed reporting it, the fd's creator being unknown). */
#if defined(GORO_TSAN)
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
#define LIBEVENT_ONLY() __tsan_ignore_thread_begin()
#define OURS_ONLY() __tsan_ignore_thread_end()
#else
#define LIBEVENT_ONLY() ((void)0)
#define OURS_ONLY() ((void)0)
#endif

#define SNAP_WAIT_MS 5000
#define MAX_HEADERS 8192
#define MAX_BODY 4096
#define CONN_TIMEOUT_S 10
#define ADDR_MAX 320

/* ---- the lock histograms ------------------------------------------------------- */

/* The buckets' upper bounds, inclusive: 10 us to 100 s, a decade apart, and
 * their le labels. */
static const int64_t bucket_ns[] = { 10000LL,	    100000LL,	    1000000LL,
				     10000000LL,    100000000LL,    1000000000LL,
				     10000000000LL, 100000000000LL };
static const char *const bucket_le[] = { "1e-05", "0.0001", "0.001", "0.01",
					 "0.1",	  "1",	    "10",    "100" };
#define NBUCKETS (sizeof bucket_ns / sizeof bucket_ns[0])

/* Observations per bucket (n[NBUCKETS]: above the last bound), not
 * cumulative, and their sum in seconds. */
struct hist {
	uint64_t n[NBUCKETS + 1];
	double sum;
};

static struct hist lock_wait[METRICS_LOCK_KINDS]; /* names_lock */
static struct hist lock_hold[METRICS_LOCK_KINDS]; /* names_lock */

static const char *const lock_kind_names[METRICS_LOCK_KINDS] = { "mutex", "rwmutex_read",
								 "sem" };

static void observe(struct hist *h, int64_t ns)
{
	size_t i = 0;

	if (ns < 0)
		ns = 0;
	while (i < NBUCKETS && ns > bucket_ns[i])
		i++;
	h->n[i]++;
	h->sum += (double)ns * 1e-9;
}

void metrics_lock_waited(enum metrics_lock_kind kind, int64_t wait_ns)
{
	observe(&lock_wait[kind], wait_ns);
}

void metrics_lock_held(enum metrics_lock_kind kind, int64_t hold_ns)
{
	observe(&lock_hold[kind], hold_ns);
}

/* ---- the snapshot -------------------------------------------------------------- */

/* Everything a scrape shows, copied at one moment. */
struct snap {
	int64_t uptime_ns;
	struct rt_stats rt;
	struct task_counts tasks;
	uint64_t left_behind_reaped;
	struct session_counts sessions;
	uint64_t waitgroups, mutexes, semaphores;
	struct leak_counts leaks, leaks_found;
	struct hist wait[METRICS_LOCK_KINDS], hold[METRICS_LOCK_KINDS];
};

/* One listening endpoint and its thread. Made and freed by the main
 * goroutine; between, the HTTP thread owns base, http and out. */
struct server {
	char addr[ADDR_MAX];     /* as configured */
	char url[ADDR_MAX + 32]; /* http://HOST:PORT/metrics as bound */
	int port;                /* as bound */
	struct event_base *base;
	struct evhttp *http;
	pthread_t thread;
	bool thread_started;

	/* The handoff (lock): the HTTP thread asks for generation `asked`;
	 * a collect goroutine started after that answers with snap. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t asked, answered;
	bool stopping;
	struct snap snap;

	struct snap out;         /* the HTTP thread's copy, formatted from */
	struct rt_wg collects;   /* collect goroutines not yet ended */
};

static struct server *serving; /* the main goroutine's */

/* A goroutine, one per scrape: copies the counters under names_lock and
 * hands them to srv's HTTP thread. srv outlives it (server_free waits). */
static void collect(void *arg)
{
	struct server *srv = arg;
	struct snap sn;
	uint64_t gen;

	pthread_mutex_lock(&srv->lock);
	gen = srv->asked; /* asked before this goroutine started, or later */
	pthread_mutex_unlock(&srv->lock);

	memset(&sn, 0, sizeof sn);
	rt_stats_get(&sn.rt); /* thread-safe on its own */
	rt_mutex_lock_nocancel(&names_lock);
	sn.uptime_ns = rt_now() - gorod_started_ns;
	task_counts(&sn.tasks);
	sn.left_behind_reaped = proc_orphans_reaped();
	session_counts(&sn.sessions);
	sn.waitgroups = names_count(PRIM_WG);
	sn.mutexes = names_count(PRIM_MUTEX);
	sn.semaphores = names_count(PRIM_SEM);
	leak_counts(&sn.leaks, &sn.leaks_found);
	memcpy(sn.wait, lock_wait, sizeof sn.wait);
	memcpy(sn.hold, lock_hold, sizeof sn.hold);
	rt_mutex_unlock(&names_lock);

	pthread_mutex_lock(&srv->lock);
	if (gen > srv->answered) {
		srv->snap = sn;
		srv->answered = gen;
		pthread_cond_broadcast(&srv->cond);
	}
	pthread_mutex_unlock(&srv->lock);
	rt_wg_done(&srv->collects); /* srv may be gone from here on */
}

/* The HTTP thread: a fresh snapshot into srv->out. Blocks at most
 * SNAP_WAIT_MS; false when none came (gorod stopping, too busy, or out of
 * memory for the goroutine). */
static bool snapshot(struct server *srv)
{
	struct timespec deadline;
	uint64_t gen;
	bool ok;
	int r = 0;

	pthread_mutex_lock(&srv->lock);
	gen = ++srv->asked;
	ok = !srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	if (!ok)
		return false;
	rt_wg_add(&srv->collects, 1);
	if (rt_go(collect, srv, NULL) < 0) {
		rt_wg_done(&srv->collects);
		return false;
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SNAP_WAIT_MS / 1000;
	pthread_mutex_lock(&srv->lock);
	while (srv->answered < gen && !srv->stopping && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&srv->cond, &srv->lock, &deadline);
	ok = srv->answered >= gen;
	if (ok)
		srv->out = srv->snap;
	pthread_mutex_unlock(&srv->lock);
	return ok;
}

/* ---- the exposition ------------------------------------------------------------ */

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{labels} v; labels is "" for none. */
static void sample(struct evbuffer *b, const char *name, const char *labels, uint64_t v)
{
	evbuffer_add_printf(b, "%s%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
			    *labels ? "}" : "", v);
}

/* A family of one sample without labels. */
static void single(struct evbuffer *b, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	family(b, name, type, help);
	sample(b, name, "", v);
}

/* A family with one label: n samples, label="names[i]" values[i]. */
static void labelled(struct evbuffer *b, const char *name, const char *type, const char *help,
		     const char *label, const char *const *names, const uint64_t *values,
		     size_t n)
{
	char l[96];

	family(b, name, type, help);
	for (size_t i = 0; i < n; i++) {
		snprintf(l, sizeof l, "%s=\"%s\"", label, names[i]);
		sample(b, name, l, values[i]);
	}
}

/* A histogram family with the label kind: cumulative buckets, +Inf,
 * _sum, _count. */
static void histogram(struct evbuffer *b, const char *name, const char *help,
		      const struct hist *h)
{
	family(b, name, "histogram", help);
	for (int k = 0; k < METRICS_LOCK_KINDS; k++) {
		const char *kind = lock_kind_names[k];
		uint64_t cum = 0;

		for (size_t i = 0; i < NBUCKETS; i++) {
			cum += h[k].n[i];
			evbuffer_add_printf(b, "%s_bucket{kind=\"%s\",le=\"%s\"} %" PRIu64 "\n",
					    name, kind, bucket_le[i], cum);
		}
		cum += h[k].n[NBUCKETS];
		evbuffer_add_printf(b, "%s_bucket{kind=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name,
				    kind, cum);
		evbuffer_add_printf(b, "%s_sum{kind=\"%s\"} %.9f\n", name, kind, h[k].sum);
		evbuffer_add_printf(b, "%s_count{kind=\"%s\"} %" PRIu64 "\n", name, kind, cum);
	}
}

static void format_runtime(struct evbuffer *b, const struct snap *sn)
{
	const struct rt_stats *rt = &sn->rt;
	static const char *const states[] = { "running", "runnable", "waiting" };
	const uint64_t by_state[] = { rt->running, rt->runnable, rt->waiting };
	char l[32];

	family(b, "gorod_build_info", "gauge", "gorod's version, as a label (the value is 1).");
	evbuffer_add_printf(b, "gorod_build_info{version=\"%s\"} 1\n", GOROD_VERSION);
	family(b, "gorod_uptime_seconds", "gauge", "Seconds since gorod started.");
	evbuffer_add_printf(b, "gorod_uptime_seconds %.3f\n", (double)sn->uptime_ns * 1e-9);
	single(b, "gorod_resident_memory_bytes", "gauge", "gorod's resident set size.",
	       (uint64_t)stats_rss_bytes());
	single(b, "gorod_maxprocs", "gauge", "GOMAXPROCS: the worker threads running goroutines.",
	       (uint64_t)rt->maxprocs);
	single(b, "gorod_idle_workers", "gauge", "Workers with nothing to run.", rt->idle_workers);
	labelled(b, "gorod_goroutines", "gauge",
		 "Live goroutines by state: on a worker, in a run queue, parked.", "state", states,
		 by_state, 3);
	single(b, "gorod_goroutines_spawned_total", "counter", "Goroutines started.", rt->spawned);
	single(b, "gorod_goroutines_finished_total", "counter", "Goroutines that ended.",
	       rt->finished);
	single(b, "gorod_context_switches_total", "counter", "Switches between goroutines.",
	       rt->ctxsw);
	single(b, "gorod_steals_total", "counter",
	       "Goroutines a worker took from another worker's run queue.", rt->steals);
	family(b, "gorod_runqueue_length", "gauge",
	       "Runnable goroutines queued: the global queue, and each worker's (p0 ..).");
	sample(b, "gorod_runqueue_length", "queue=\"global\"", rt->global_runq);
	for (int i = 0; i < rt->maxprocs && i < RT_MAXPROCS_LIMIT; i++) {
		snprintf(l, sizeof l, "queue=\"p%d\"", i);
		sample(b, "gorod_runqueue_length", l, rt->local_runq[i]);
	}
	single(b, "gorod_stacks", "gauge", "Goroutine stacks allocated, in use or cached.",
	       rt->stacks);
	single(b, "gorod_stack_bytes", "gauge", "Virtual memory reserved for goroutine stacks.",
	       rt->stack_bytes);
	single(b, "gorod_hog_events_total", "counter",
	       "Times a goroutine kept its worker over 100 ms without yielding.", rt->hog_events);
}

static void format_daemon(struct evbuffer *b, const struct snap *sn)
{
	static const char *const prims[] = { "waitgroup", "mutex", "semaphore" };
	const uint64_t nprims[] = { sn->waitgroups, sn->mutexes, sn->semaphores };
	static const char *const live[] = { "queued", "running", "paused" };
	const uint64_t nlive[] = { sn->tasks.by_state[TS_QUEUED], sn->tasks.by_state[TS_RUNNING],
				   sn->tasks.by_state[TS_PAUSED] };
	const char *outcomes[TS_COUNT - TS_EXITED];
	static const char *const kinds[] = { "definite", "suspected", "left_behind", "hog",
					     "lock_order" };
	const uint64_t now[] = { sn->leaks.definite, sn->leaks.suspected, sn->leaks.left_behind,
				 sn->leaks.hog, sn->leaks.lock_order };
	const uint64_t found[] = { sn->leaks_found.definite, sn->leaks_found.suspected,
				   sn->leaks_found.left_behind, sn->leaks_found.hog,
				   sn->leaks_found.lock_order };

	for (int i = TS_EXITED; i < TS_COUNT; i++)
		outcomes[i - TS_EXITED] = task_state_name(i);

	single(b, "gorod_sessions", "gauge", "Client connections open.", sn->sessions.connected);
	single(b, "gorod_sessions_accepted_total", "counter", "Client connections served.",
	       sn->sessions.accepted);
	single(b, "gorod_requests_total", "counter", "Requests received from clients.",
	       sn->sessions.requests);
	single(b, "gorod_requests_waiting", "gauge",
	       "Requests parked until they can be answered (a lock, a group, a task).",
	       sn->sessions.waiting);
	labelled(b, "gorod_primitives", "gauge", "Named primitives in use (idle ones are forgotten).",
		 "kind", prims, nprims, 3);

	single(b, "gorod_tasks_spawned_total", "counter", "Tasks spawned.", sn->tasks.spawned);
	labelled(b, "gorod_tasks_finished_total", "counter", "Tasks that ended, by outcome.",
		 "outcome", outcomes, &sn->tasks.by_state[TS_EXITED], TS_COUNT - TS_EXITED);
	labelled(b, "gorod_tasks", "gauge", "Live tasks by state.", "state", live, nlive, 3);
	single(b, "gorod_tasks_kept", "gauge", "Finished tasks kept for wait and logs.",
	       sn->tasks.kept);
	single(b, "gorod_left_behind_reaped_total", "counter",
	       "Processes that tasks left behind, reaped by gorod.", sn->left_behind_reaped);

	histogram(b, "gorod_lock_wait_seconds",
		  "From a lock or acquire request to its grant (0 when granted at once).", sn->wait);
	histogram(b, "gorod_lock_hold_seconds",
		  "From a grant to its release (unlock, or the holder's end).", sn->hold);

	labelled(b, "gorod_leaks", "gauge", "Leak monitor findings that hold now, by kind.", "kind",
		 kinds, now, 5);
	labelled(b, "gorod_leaks_found_total", "counter", "Leak monitor findings made, by kind.",
		 "kind", kinds, found, 5);
}

/* ---- HTTP ---------------------------------------------------------------------- */

static void reply_text(struct evhttp_request *req, int code, const char *reason,
		       const char *text)
{
	struct evbuffer *body = evbuffer_new();

	if (!body) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evbuffer_add(body, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; charset=utf-8");
	evhttp_send_reply(req, code, reason, body);
	evbuffer_free(body);
}

/* Every request (the HTTP thread): GET /metrics, or 404, 405, 503. */
static void serve_checked(struct evhttp_request *req, void *arg)
{
	struct server *srv = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *body;

	if (!path || strcmp(path, "/metrics") != 0) {
		reply_text(req, HTTP_NOTFOUND, "Not Found", "404 page not found: try /metrics\n");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
		reply_text(req, 405, "Method Not Allowed", "405 method not allowed: only GET\n");
		return;
	}
	if (!snapshot(srv)) {
		reply_text(req, 503, "Service Unavailable", "gorod did not answer in time\n");
		return;
	}
	if (!(body = evbuffer_new())) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	format_runtime(body, &srv->out);
	format_daemon(body, &srv->out);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void serve(struct evhttp_request *req, void *arg)
{
	OURS_ONLY();
	serve_checked(req, arg);
	LIBEVENT_ONLY();
}

static void *http_main(void *arg)
{
	struct server *srv = arg;
	int r;

	LIBEVENT_ONLY();
	r = event_base_dispatch(srv->base);
	OURS_ONLY();
	if (r < 0)
		fprintf(stderr, "gorod: metrics: the HTTP loop failed; %s no longer served\n",
			srv->url);
	return NULL;
}

/* Splits addr into host (empty: every address) and port; *bracketed for
 * [IPv6]. 0, or -EINVAL with why. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen,
		      bool *bracketed, char *why, size_t wlen)
{
	const char *h = addr, *colon;
	size_t n, pn;
	char *end;

	*bracketed = addr[0] == '[';
	if (*bracketed) {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			goto bad;
		h = addr + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		/* A bare IPv6 address has colons of its own: it wants brackets. */
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			goto bad;
		n = (size_t)(colon - addr);
	}
	pn = strlen(colon + 1);
	if (n >= hlen || pn == 0 || pn >= plen || strspn(colon + 1, "0123456789") != pn ||
	    strtol(colon + 1, &end, 10) > 65535)
		goto bad;
	memcpy(host, h, n);
	host[n] = '\0';
	memcpy(port, colon + 1, pn + 1);
	return 0;
bad:
	snprintf(why, wlen, "'%s' is not an address to listen on: want HOST:PORT, "
		 "[IPv6]:PORT or :PORT, PORT from 0 to 65535", addr);
	return -EINVAL;
}

/* http://HOST:PORT/metrics for the socket fd is bound to, and the port. */
static int bound_url(int fd, char *url, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl = sizeof ss;
	char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "0";

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(url, len, ss.ss_family == AF_INET6 ? "http://[%s]:%s/metrics"
						    : "http://%s:%s/metrics", host, port);
	return atoi(port);
}

/* A listening socket on ai (dual: an IPv6 one that takes IPv4 too), or -1
 * with *err set. */
static int listen_ai(const struct addrinfo *ai, bool dual, int *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	int one = 1, zero = 0;

	if (fd < 0) {
		*err = errno;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if ((dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

/* Binds and listens on addr: the first of its addresses that works (for
 * ":PORT", "::" taking IPv4 too if the host has IPv6, as Go does, else
 * 0.0.0.0). Returns the fd (non-blocking, close-on-exec) with its URL in
 * url and its port in *bound, or a negative errno with why. */
static int listen_on(const char *addr, char *url, size_t ulen, int *bound, char *why,
		     size_t wlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res, *ai;
	char host[256], port[8];
	bool bracketed;
	int fd = -1, err = EADDRNOTAVAIL, r;

	if (split_addr(addr, host, sizeof host, port, sizeof port, &bracketed, why, wlen) < 0)
		return -EINVAL;
	hints.ai_flags = AI_NUMERICSERV | (host[0] ? 0 : AI_PASSIVE) |
			 (bracketed ? AI_NUMERICHOST : 0);
	r = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (r != 0) {
		snprintf(why, wlen, "cannot resolve '%s': %s", host,
			 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -EADDRNOTAVAIL;
	}
	for (int pass = host[0] ? 1 : 0; pass < 2 && fd < 0; pass++)
		for (ai = res; ai && fd < 0; ai = ai->ai_next)
			if (pass == 1 || ai->ai_family == AF_INET6)
				fd = listen_ai(ai, pass == 0, &err);
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(why, wlen, "cannot listen on %s: %s", addr, strerror(err));
		return -err;
	}
	*bound = bound_url(fd, url, ulen);
	return fd;
}

/* Stops srv's thread (if it runs), waits for its collect goroutines, and
 * frees it. Goroutine only. */
static void server_free(struct server *srv)
{
	if (srv->thread_started) {
		pthread_mutex_lock(&srv->lock);
		srv->stopping = true;
		pthread_cond_broadcast(&srv->cond);
		pthread_mutex_unlock(&srv->lock);
		/* An event of the base, so it holds even when the loop has not
		 * started yet (a loopbreak would then be forgotten). */
		event_base_loopexit(srv->base, NULL);
		pthread_join(srv->thread, NULL);
	}
	rt_wg_wait(&srv->collects, RT_FOREVER);
	if (srv->http)
		evhttp_free(srv->http); /* closes the listener and the connections */
	if (srv->base)
		event_base_free(srv->base);
	pthread_cond_destroy(&srv->cond);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

/* Listens on addr and starts the HTTP thread: *out, or a negative errno
 * with why. */
static int server_new(const char *addr, struct server **out, char *why, size_t wlen)
{
	struct server *srv = calloc(1, sizeof *srv);
	pthread_condattr_t ca;
	int fd, r;

	if (!srv) {
		snprintf(why, wlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(srv->addr, sizeof srv->addr, "%s", addr);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (strlen(addr) >= sizeof srv->addr) {
		snprintf(why, wlen, "the address is too long");
		r = -EINVAL;
		goto fail;
	}
	if ((fd = listen_on(addr, srv->url, sizeof srv->url, &srv->port, why, wlen)) < 0) {
		r = fd;
		goto fail;
	}
	/* The runtime turned libevent's locking on already; this is a no-op
	 * then, and makes sure of it before the base is made. */
	if (evthread_use_pthreads() < 0 || !(srv->base = event_base_new()) ||
	    !(srv->http = evhttp_new(srv->base))) {
		close(fd);
		snprintf(why, wlen, "cannot set up libevent's HTTP server");
		r = -ENOMEM;
		goto fail;
	}
	evhttp_set_max_headers_size(srv->http, MAX_HEADERS);
	evhttp_set_max_body_size(srv->http, MAX_BODY);
	evhttp_set_timeout(srv->http, CONN_TIMEOUT_S);
	/* Every method reaches serve(), which answers 405 to all but GET. */
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
				   EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(srv->http, serve, srv);
	if (!evhttp_accept_socket_with_handle(srv->http, fd)) {
		close(fd);
		snprintf(why, wlen, "cannot set up libevent's HTTP server");
		r = -ENOMEM;
		goto fail;
	}
	if ((r = pthread_create(&srv->thread, NULL, http_main, srv)) != 0) {
		snprintf(why, wlen, "cannot start its thread: %s", strerror(r));
		r = -r;
		goto fail;
	}
	srv->thread_started = true;
	*out = srv;
	return 0;
fail:
	server_free(srv);
	return r;
}

/* ---- start, reload, stop ------------------------------------------------------- */

int metrics_start(const char *addr)
{
	char why[512];
	int r;

	if (serving)
		return metrics_reload(addr);
	if (!addr || !*addr)
		return 0;
	if ((r = server_new(addr, &serving, why, sizeof why)) < 0) {
		fprintf(stderr, "gorod: metrics: %s\n", why);
		return r;
	}
	fprintf(stderr, "gorod: metrics on %s\n", serving->url);
	return 0;
}

/* The reload's retry when the new address, on the port served, is in
 * use: it may overlap the one served (another spelling of it, or a
 * wildcard), so the old server lets go and the new one tries again; if it
 * still cannot listen, the old one comes back. */
static int reload_in_place(const char *addr, struct server **srv, char *why, size_t wlen)
{
	char old[ADDR_MAX], why2[512];
	int r;

	snprintf(old, sizeof old, "%s", serving->addr);
	server_free(serving);
	serving = NULL;
	if ((r = server_new(addr, srv, why, wlen)) == 0)
		return 0;
	if (server_new(old, &serving, why2, sizeof why2) < 0)
		fprintf(stderr, "gorod: reload: metrics: cannot take %s back: %s\n", old, why2);
	return r;
}

int metrics_reload(const char *addr)
{
	struct server *srv;
	const char *port;
	char why[512];
	int r;

	if (!addr || !*addr) {
		if (serving)
			fprintf(stderr, "gorod: metrics off (were on %s)\n", serving->url);
		metrics_stop();
		return 0;
	}
	if (serving && strcmp(serving->addr, addr) == 0)
		return 0;
	r = server_new(addr, &srv, why, sizeof why);
	port = strrchr(addr, ':');
	if (r == -EADDRINUSE && serving && port && atoi(port + 1) == serving->port)
		r = reload_in_place(addr, &srv, why, sizeof why);
	if (r < 0) {
		if (serving)
			fprintf(stderr, "gorod: reload: metrics: %s; still serving %s\n", why,
				serving->url);
		else
			fprintf(stderr, "gorod: reload: metrics: %s; metrics are off\n", why);
		return r;
	}
	if (serving)
		server_free(serving);
	serving = srv;
	fprintf(stderr, "gorod: metrics on %s\n", srv->url);
	return 0;
}

void metrics_stop(void)
{
	if (serving)
		server_free(serving);
	serving = NULL;
}
