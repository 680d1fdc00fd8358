/* metrics.h: the Prometheus endpoint (metrics.c; docs/METRICS.md lists
 * what it serves). */
#ifndef GORO_DAEMON_METRICS_H
#define GORO_DAEMON_METRICS_H

#include <stdint.h>

/* Starts serving http://ADDR/metrics. addr is "HOST:PORT", "[IPv6]:PORT"
 * or ":PORT" (every address); HOST may be a name; PORT 0 picks a free
 * port (the log line says which). NULL or "" leaves metrics off. Returns
 * 0, or a negative errno having printed why (gorod then exits 1). Goroutine
 * only, as are metrics_reload and metrics_stop: the main goroutine calls
 * all three, one at a time. */
int metrics_start(const char *addr);

/* A new address from a reload: when it differs from the one served, the
 * new listener is started and then the old one stopped; NULL or "" stops
 * serving. When the new one cannot start, the old one stays (and the
 * message says so). Returns 0 or a negative errno. */
int metrics_reload(const char *addr);

/* Stops serving and waits for the HTTP thread to end; nothing when not
 * serving. */
void metrics_stop(void);

/* The lock histograms' kinds (label kind=). */
enum metrics_lock_kind {
	METRICS_MUTEX,        /* a write lock of a named mutex */
	METRICS_RWMUTEX_READ, /* a read lock of one */
	METRICS_SEM,          /* semaphore units */
	METRICS_LOCK_KINDS,
};

/* names_lock held (grant.c): a grant was made after its request waited
 * wait_ns (0: granted at once); a grant held hold_ns was released. A few
 * additions each: no allocation, no system call. */
void metrics_lock_waited(enum metrics_lock_kind kind, int64_t wait_ns);
void metrics_lock_held(enum metrics_lock_kind kind, int64_t hold_ns);

#endif /* GORO_DAEMON_METRICS_H */
