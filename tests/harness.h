/* harness.h: a real gorod for the end-to-end tests.
 *
 *	struct harness h;
 *	if (harness_start(&h, NULL, 10000) < 0)
 *		bail_out("gorod did not start");
 *	goro_connect(h.sock, &c); ...
 *	is(harness_stop(&h, 10000), 0, "gorod stops cleanly on SIGTERM");
 *	harness_cleanup(&h);
 *
 * harness_start() makes a temporary directory, binds a NOTIFY_SOCKET of
 * its own there and starts the gorod named by $GOROD (meson passes the
 * build's) with --socket in that directory, its stdout and stderr going to
 * a log file beside it. gorod is ready when it says READY=1 on the notify
 * socket, as systemd would see it: no log line is parsed, no sleep guessed.
 *
 * Besides, small helpers every end-to-end test needs: waiting for a child
 * process or a byte on a pipe with a deadline, reading a number out of
 * gorod's stats, and polling the stats or a WaitGroup's status until gorod
 * reaches a state that it has no event for (a session it has noticed
 * ended, a wg.wait that has reached it); for the task tests, running
 * goroctl with its output captured (and a spawn's id), a task's whole
 * output, its ps entry, the checks that end each test. Every wait here has
 * a timeout; none is a sleep standing in for an event.
 *
 * The harness prints through tap.h's diag(), so only the test's main
 * process may call it (not its forked children). */
#ifndef GORO_TESTS_HARNESS_H
#define GORO_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "goro/goro.h"

/* One gorod started by harness_start(). Owns its temporary directory and
 * the process until harness_cleanup(). */
struct harness {
	pid_t pid;      /* gorod's, or 0 once reaped */
	int status;     /* its wait status once reaped */
	char dir[256];  /* the temporary directory */
	char sock[108]; /* dir/gorod.sock: pass to goro_connect() */
	char log[300];  /* dir/log: gorod's stdout and stderr */
	int notify;     /* the NOTIFY_SOCKET, when harness_start_notify() keeps
			 * it open (-1 otherwise) */
	char ready[1024]; /* the datagram that said READY=1 */
	int stored;     /* a socket gorod put in the fd store (FDSTORE=1), or -1 */
};

/* gorod's argv up to its own name: the words of $GOROD_WRAPPER (split on
 * white space; none when unset), then bin; at most max - 1 words, NULL-ended.
 * Returns the number of words. The words live in a static buffer until
 * the next call. */
int harness_gorod_argv(const char **argv, int max, const char *bin);

/* timeout_ms times $GORO_TIMEOUT_SCALE (when above 1): for waits on gorod
 * itself, slower under a $GOROD_WRAPPER such as valgrind. */
int harness_timeout(int timeout_ms);

/* Starts gorod with extra arguments args (NULL-terminated, or NULL) and
 * waits at most timeout_ms for its READY=1. Returns 0, or a negative errno
 * having said why with diag() and removed what it made: -ETIMEDOUT when
 * gorod said nothing in time, -ECHILD when it exited first, -ENOENT when
 * $GOROD is not set. */
int harness_start(struct harness *h, const char *const *args, int timeout_ms);

/* harness_start() with gorod running as user uid, group gid (no
 * supplementary groups); the test must be root. The temporary directory
 * and the notify socket are handed to that user, so that gorod can make
 * its socket and say READY=1. */
int harness_start_as(struct harness *h, const char *const *args, int timeout_ms,
		     uid_t uid, gid_t gid);

/* harness_start() that keeps the notify socket open in h->notify (its
 * datagrams after READY=1 unread), for a test of what gorod tells systemd.
 * gorod gets the test's environment (WATCHDOG_USEC, FDSTORE, ...). */
int harness_start_notify(struct harness *h, const char *const *args, int timeout_ms);

/* Starts gorod again in h's directory after it stopped, with args, handing
 * it the socket it stored (h->stored) as systemd would: LISTEN_FDS=1,
 * LISTEN_FDNAMES=gorod-listen. Waits for READY=1 like harness_start. */
int harness_restart(struct harness *h, const char *const *args, int timeout_ms);

/* The next datagram gorod sends to the kept notify socket, waiting at most
 * timeout_ms, into msg (NUL-terminated). Returns its length, or -1. */
ssize_t harness_notify_recv(struct harness *h, char *msg, size_t size, int timeout_ms);

/* A temporary directory holding one link, NAME -> target: a --module-dir
 * with one module in it. Bails out when it cannot be made. */
void harness_module_dir(char *dir, size_t size, const char *target, const char *name);
void harness_module_dir_remove(const char *dir, const char *name);

/* Sends gorod SIGTERM and waits at most timeout_ms for it to exit. Returns
 * its exit status (0..255), 128+N when signal N killed it, or -ETIMEDOUT
 * (it is then killed with SIGKILL and reaped). Prints the end of its log
 * when the outcome is not 0. */
int harness_stop(struct harness *h, int timeout_ms);

/* Whether gorod still runs; if it has exited, reaps it (h->status) and
 * prints the end of its log. A test checks between its parts, so that a
 * crash is reported as one, not as every assertion after it. */
bool harness_alive(struct harness *h);

/* gorod's resident memory from /proc/PID/status (VmRSS), in kB; -1 when
 * it cannot be read. */
long harness_rss_kb(const struct harness *h);

/* Prints the last `lines` lines of gorod's log as diag lines. */
void harness_dump_log(const struct harness *h, int lines);

/* Kills gorod if it still runs, reaps it, and removes the temporary
 * directory and what is in it. Accepts a harness that never started. */
void harness_cleanup(struct harness *h);

/* ---- helpers -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds. */
int64_t harness_now_ms(void);

/* Waits at most timeout_ms for child pid to exit and reaps it; its wait
 * status goes to *status (may be NULL). Returns 0 or -ETIMEDOUT (the child
 * is left as it is), or -errno from waitpid. */
int harness_wait_pid(pid_t pid, int timeout_ms, int *status);

/* Kills (SIGKILL) and reaps each of pids[0..n) still running; a 0 entry is
 * skipped. For a test's cleanup after a failure. */
void harness_kill_all(const pid_t *pids, int n);

/* Sends sig to each of pids[0..n); a 0 entry is skipped. */
void harness_signal_all(const pid_t *pids, int n, int sig);

/* Waits for children pids[0..n), at most timeout_ms in all, each entry
 * set to 0 once reaped; those still running at the deadline are killed.
 * Returns how many did not exit 0 (and says so with diag, naming what). */
int harness_reap_all(pid_t *pids, int n, int timeout_ms, const char *what);

/* Reads exactly len bytes from fd, waiting at most timeout_ms in all.
 * Returns 0, -ETIMEDOUT, -EPIPE at end of file, or -errno. */
int harness_read_full(int fd, void *buf, size_t len, int timeout_ms);

/* Writes all of buf[0..len) to fd. Returns 0 or -errno. Safe in a forked
 * child. */
int harness_write_full(int fd, const void *buf, size_t len);

/* Runs goro_process() (and goro_flush() while something is queued) on c
 * until *flag is true, waiting at most timeout_ms. Returns 0, -ETIMEDOUT,
 * or the connection's error. */
int harness_process_until(goro_client *c, const bool *flag, int timeout_ms);

/* The integer after the first "key": in json text (libgoro's stats, which
 * has no spaces); *v gets it. Returns 0 or -ENOENT. */
int harness_json_int(const char *json, const char *key, long long *v);

/* The stats value key (an integer, as for harness_json_int) over client
 * c; "section.key" names the key inside the object section (the first
 * one: "tasks.live", "goroutines.live"). Returns 0 or a negative code. */
int harness_stat(goro_client *c, const char *key, long long *v);

/* Asks c for gorod's stats until the integer key equals want, for at most
 * timeout_ms. For states gorod has no event for (that it has noticed a
 * session end); between asks it pauses briefly, growing to 20 ms. Returns
 * 0, or -ETIMEDOUT (having said with diag what the value was). */
int harness_wait_stat(goro_client *c, const char *key, long long want, int timeout_ms);

/* Asks c for the WaitGroup name's status until it has want waiters, for at
 * most timeout_ms, a pause of 2 ms between asks: nothing tells a test that
 * a wg.wait (a goroctl's, a task's) has reached gorod. Returns 0,
 * -ETIMEDOUT (having said with diag how many there were), or wg.status's
 * error. */
int harness_wait_waiters(goro_client *c, const char *name, int want, int timeout_ms);

/* Whether the part of a test program called name should run: it is one
 * of argv[1..argc), or no part is named (`test_tasks wg sem` runs those
 * two parts only, for debugging). */
bool harness_wanted(const char *name, int argc, char **argv);

/* One part of an end-to-end test program: `test_x NAME..` runs only the
 * parts named (all when none is). */
struct harness_part {
	const char *name;
	void (*fn)(void);
};

/* The body every program of parts shares: starts gorod with args (what
 * names it in messages) and waits for its readiness, connects *c, runs the
 * wanted parts in order (bailing out when gorod died during one), checks
 * that nothing is left (harness_check_nothing_left), closes *c, and stops
 * gorod, asserting it exits 0. The caller then calls harness_cleanup(). */
void harness_run_parts(struct harness *h, goro_client **c, const char *const *args,
		       const char *what, const struct harness_part *parts, size_t nparts,
		       int argc, char **argv, int wait_ms);

/* ---- tasks --------------------------------------------------------------------- */

/* Reads what gorod keeps of task id's stream, from its start to its end
 * (logs.read until eof, waiting at most timeout_ms for each piece), into
 * buf (NUL-terminated, cut to fit). *cut (may be NULL) gets how many bytes
 * at the start were no longer kept. Returns the length, or a negative code
 * (said with diag). */
ssize_t harness_logs(goro_client *c, uint64_t id, enum goro_stream stream, char *buf,
		     size_t size, uint64_t *cut, int timeout_ms);

/* Task id's entry in ps (with the finished ones; the page that starts at
 * id) as JSON text, into buf. Returns 0, or a negative code (said with
 * diag). */
int harness_ps_entry(goro_client *c, uint64_t id, char *buf, size_t size);

/* Whether task id's ps entry (as harness_ps_entry) has the JSON fragment a
 * and, unless it is NULL, b. When it has not, the entry is said with diag. */
bool harness_ps_has(goro_client *c, uint64_t id, const char *a, const char *b);

/* The end of a task test, as TAP assertions over c, the only session
 * left: no task queued or running (ps, stats tasks.live), the other
 * sessions gone, gorod's goroutines back to `goroutines` (stats
 * goroutines.live when the test began, with c connected), no mutex or
 * semaphore held or remembered. Waits (polling stats) at most timeout_ms
 * for what gorod finishes after the replies. */
void harness_check_nothing_left(goro_client *c, long long goroutines, int timeout_ms);

/* ---- running a command ------------------------------------------------------ */

/* Runs argv (argv[0] looked up in $PATH) with in[0..inlen) on its stdin
 * (in NULL: /dev/null), its stdout into out[0..size) (NULL: /dev/null, so
 * never into the TAP stream) and its stderr into err[0..esize) (NULL: the
 * test's stderr), each NUL-terminated and cut to fit, waiting at most
 * timeout_ms in all. Returns the exit code (127 when argv[0] cannot be
 * run), 128+N when signal N killed it, -ETIMEDOUT (it is then killed and
 * reaped), or -errno when a pipe or the fork failed. */
int harness_run(const char *const *argv, const void *in, size_t inlen, char *out,
		size_t size, char *err, size_t esize, int timeout_ms);

/* Runs $GOROCTL --socket sock ARGS.. (NULL-terminated, at most 60) as
 * harness_run() does. -ENOENT when $GOROCTL is not set. */
int harness_ctl(const char *sock, const void *in, size_t inlen, char *out, size_t size,
		char *err, size_t esize, int timeout_ms, ...);

/* The task id goroctl spawn printed in out (one line), or 0. */
uint64_t harness_spawned_id(const char *out);

/* Runs $GOROCTL --socket sock spawn ARGS.. (NULL-terminated) as
 * harness_ctl() does, its stdout read here and its stderr into
 * err[0..esize). Returns the id it printed, or 0 having said why with
 * diag (its exit status, stdout and stderr). */
uint64_t harness_ctl_spawn(const char *sock, char *err, size_t esize, int timeout_ms, ...);

/* ---- reading JSON text ----------------------------------------------------- */

/* The string after the first "key": in json (no escapes decoded but \"
 * and \\; cut to fit buf). Returns 0, or -ENOENT when there is no such
 * key or its value is not a string. */
int harness_json_str(const char *json, const char *key, char *buf, size_t size);

/* The end of the JSON value (an object or array) that starts at p: the
 * character after its closing bracket, or NULL when it does not close. */
const char *harness_json_end(const char *p);

/* Copies the JSON object (a {..} in json, at any depth) whose "id" is id,
 * to buf (cut to fit). For ps entries and outcomes. Returns 0 or -ENOENT. */
int harness_json_object(const char *json, unsigned long long id, char *buf, size_t size);

#endif /* GORO_TESTS_HARNESS_H */
