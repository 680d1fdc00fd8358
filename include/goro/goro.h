/* goro/goro.h: libgoro, the C client of gorod.
 *
 * gorod serves named WaitGroups, RWMutexes and semaphores to every process
 * on the machine, over msgpack-RPC on a Unix socket (the protocol is
 * proto/PROTOCOL.md in gorod's sources). This library speaks it for C.
 * Link with `pkg-config --cflags --libs goro`.
 *
 * Errors. Every function that can fail returns 0 (or a count) on success
 * and a negative code on failure: an errno value (-ETIMEDOUT, -EDEADLK,
 * -EBUSY, -ECONNREFUSED, ...) or one of gorod's own codes (GORO_ENEGATIVE,
 * GORO_ELOST, ...), all listed in goro/errors.h. goro_strerror() says what
 * a code means; goro_last_error() gives the sentence gorod sent with it.
 * Out-parameters are written only on success.
 *
 * Sessions. One goro_client is one connection, and one session in gorod:
 * what the session holds (locks, semaphore units, lease-bound WaitGroup
 * counts) is released when the connection closes, for whatever reason, and
 * the next holder is told the previous owner died.
 *
 * Two ways to use a client, which may be mixed:
 *
 * - Blocking calls (goro_wg_add(), goro_mutex_lock(), ...): each sends its
 *   request and waits for its reply. Timeouts are gorod's: a call with
 *   timeout_ms >= 0 gets -ETIMEDOUT from gorod when it passes; -1 waits for
 *   ever. A signal does not cut the wait short (the library retries after
 *   EINTR): to be able to give up early, use the non-blocking calls.
 *   Replies to other requests that arrive meanwhile are handled on the way
 *   (their callbacks run, deferred failures are recorded).
 *
 * - Non-blocking calls for a program with its own event loop: the
 *   goro_send_*() functions queue a request with a callback; goro_flush()
 *   writes what is queued, goro_process() reads what is readable and runs
 *   the callbacks. Poll goro_fd() for POLLIN, and for POLLOUT while
 *   goro_want_write() is true:
 *
 *       goro_connect_nb(NULL, &c);
 *       goro_send_mutex_lock(c, "db", GORO_WRITE, 5000, 0, on_locked, ctx);
 *       goro_flush(c);                    // -EAGAIN: wait for POLLOUT
 *       ... when goro_fd(c) is readable:
 *       if (goro_process(c) < 0) ...      // the connection is gone
 *
 * Deferred releases (GORO_DEFER). goro_mutex_unlock() and goro_sem_release()
 * with GORO_DEFER queue the release and return 0 at once; it is written
 * together with the next request (one write), so that a loop of lock and
 * unlock costs one round trip per cycle. Its reply is read whenever it
 * arrives. A deferred release that fails is never lost: its error is kept
 * until goro_sync() (which sends what is queued and waits for every reply
 * outstanding) or goro_deferred_error() (which does not wait) returns it.
 * The blocking calls do not return deferred errors: they report their own
 * outcome only. Until it is written, a deferred release is not done: call
 * goro_sync() or goro_flush() when nothing else follows soon.
 * goro_close() writes what is still queued, but cannot report failures:
 * call goro_sync() first to learn them.
 *
 * Threads. The library creates no threads and keeps no global state. A
 * goro_client must not be used by two threads at once: use one client per
 * thread (each is its own session), or a lock of your own around one. Do not
 * use a client in both processes after fork(); the socket is close-on-exec.
 *
 * Callbacks run inside goro_process(), goro_sync(), goro_flush() (when the
 * connection fails) and the blocking calls. A callback may queue requests
 * (goro_send_*) and call goro_flush() and goro_close(); the blocking calls,
 * goro_sync() and goro_process() refuse to run inside one (-EDEADLK), and
 * goro_close() there takes effect when the outer call returns. */
#ifndef GORO_GORO_H
#define GORO_GORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "goro/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define GORO_EXPORT __attribute__((visibility("default")))
#else
#define GORO_EXPORT
#endif

/* A connection to gorod. Opaque; freed by goro_close(). */
typedef struct goro_client goro_client;

/* How a lock is taken (goro_mutex_lock). */
enum goro_mode {
	GORO_WRITE = 0, /* exclusive */
	GORO_READ = 1,  /* shared with other readers */
};

/* Flags; each function says which it takes (others: -EINVAL). */
enum goro_flag {
	/* goro_wg_add: bind the added count to this session. If the session
	 * ends before its own goro_wg_done()s match it, gorod takes the count
	 * off and the group's waiters get GORO_ELOST. */
	GORO_LEASE = 1 << 0,
	/* goro_mutex_lock, goro_sem_acquire: -EBUSY instead of waiting. */
	GORO_TRY = 1 << 1,
	/* goro_mutex_unlock, goro_sem_release: queue it, see above. */
	GORO_DEFER = 1 << 2,
};

/* A grant of a lock or of semaphore units. */
struct goro_grant {
	/* The fencing token: increases with every grant of the same name, so
	 * a guarded resource can refuse a holder older than one it has seen.
	 * Never 0. Also what another session presents to release this grant. */
	uint64_t token;
	/* The session that held it before ended without releasing it (like
	 * EOWNERDEAD): what it guards may be half-updated. */
	bool owner_died;
};

/* What goro_hello() returns. */
struct goro_hello {
	char version[32];     /* gorod's version, NUL-terminated (cut if longer) */
	int protocol;         /* the protocol version, 1 */
	uint32_t max_message; /* the largest message gorod accepts, in bytes */
	int maxprocs;         /* GOMAXPROCS */
	uint64_t session;     /* this session's id, as `stats` shows it */
};

/* ---- connecting ---------------------------------------------------------- */

/* Writes the socket path goro_connect(path, ...) connects to into
 * buf[0..size): path itself if not NULL; else $GOROD_SOCKET; else, when not
 * root, $XDG_RUNTIME_DIR/gorod.sock if it exists (the user's own gorod);
 * else /run/gorod/gorod.sock (the system one). Returns 0,
 * or -ENAMETOOLONG when it does not fit in buf or in a socket address. */
GORO_EXPORT int goro_socket_path(const char *path, char *buf, size_t size);

/* Connects to gorod at path (NULL: the default, see goro_socket_path()).
 * Returns 0 and *out, or a negative errno from the kernel: -ENOENT (no
 * socket there) and -ECONNREFUSED (nobody listening) mean gorod is not
 * running; -EACCES, the socket is not yours. Does not send anything. */
GORO_EXPORT int goro_connect(const char *path, goro_client **out);

/* goro_connect() with the socket in non-blocking mode, for an event loop.
 * Returns -EAGAIN, instead of waiting, when gorod's listen queue is full:
 * try again later. (The library never blocks in read or write on either
 * kind of client except inside the blocking calls, where it polls.) */
GORO_EXPORT int goro_connect_nb(const char *path, goro_client **out);

/* Writes what is still queued (waiting at most a second), runs the
 * callbacks of requests still outstanding with -ECANCELED, closes the
 * connection (ending the session) and frees c. Accepts NULL. */
GORO_EXPORT void goro_close(goro_client *c);

/* The connection's socket, for poll(2) and friends; owned by c. */
GORO_EXPORT int goro_fd(const goro_client *c);

/* ---- errors -------------------------------------------------------------- */

/* A sentence for a code ("timed out"). Never NULL. */
GORO_EXPORT const char *goro_strerror(int code);

/* The code's name ("ETIMEDOUT", "ENEGATIVE"), as on the wire. Never NULL. */
GORO_EXPORT const char *goro_err_name(int code);

/* The message that came with the last error this client reported: gorod's
 * sentence for an error reply ("a name is 1 to 255 bytes long"), or the
 * library's for a local one. Meaningful right after a function returned
 * an error, like errno; valid until the next call on c. Never NULL. */
GORO_EXPORT const char *goro_last_error(const goro_client *c);

/* ---- blocking calls -------------------------------------------------------- */

/* Every name is 1 to 255 bytes. Every timeout_ms is -1 (wait for ever) or
 * 0 .. 2^31-1 milliseconds; 0 is the same as GORO_TRY. */

/* Greets gorod with this client's name (shown in `goroctl stats`; may be
 * NULL) and learns its limits into *out (may be NULL). Optional. */
GORO_EXPORT int goro_hello(goro_client *c, const char *client, struct goro_hello *out);

/* Adds delta (may be negative) to the named WaitGroup's counter; the new
 * value goes to *count (may be NULL). A name never used counts 0. Fails
 * with GORO_ENEGATIVE if the counter would go below 0, -ERANGE above
 * 2^31-1, leaving it unchanged. Flags: GORO_LEASE. */
GORO_EXPORT int goro_wg_add(goro_client *c, const char *name, int64_t delta,
			    unsigned flags, int64_t *count);

/* goro_wg_add() with delta -1 (counted against this session's lease-bound
 * count first, if it holds some). */
GORO_EXPORT int goro_wg_done(goro_client *c, const char *name, int64_t *count);

/* Waits until the named WaitGroup's counter is 0 (at once if it is).
 * -ETIMEDOUT; GORO_ELOST when what held the counter can no longer finish. */
GORO_EXPORT int goro_wg_wait(goro_client *c, const char *name, int timeout_ms);

/* Locks the named RWMutex in mode, FIFO-fair (a waiting writer holds back
 * new readers). The grant goes to *out (may be NULL, but then the token is
 * lost; goro_mutex_unlock() with token 0 still works). -EBUSY with
 * GORO_TRY or timeout_ms 0 when it would wait; -ETIMEDOUT; -EDEADLK at
 * once when waiting would close a cycle of sessions waiting for each
 * other, or when this session already holds it for writing.
 * Flags: GORO_TRY. */
GORO_EXPORT int goro_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				int timeout_ms, unsigned flags, struct goro_grant *out);

/* Releases a grant of the named mutex: token 0 means this session's oldest
 * grant of it; a token releases that grant whoever holds it (a handoff
 * between processes). GORO_ENOTLOCKED when there is no such grant.
 * Flags: GORO_DEFER (returns 0 at once; see the top of this file). */
GORO_EXPORT int goro_mutex_unlock(goro_client *c, const char *name, uint64_t token,
				  unsigned flags);

/* Takes n units (0: 1) of the named semaphore, which has capacity units
 * (0: 1; set by its first user, a different one later is -EINVAL), waiting
 * in strict arrival order. The grant goes to *out (may be NULL). -EINVAL
 * when n > capacity; otherwise as goro_mutex_lock(). Flags: GORO_TRY. */
GORO_EXPORT int goro_sem_acquire(goro_client *c, const char *name, int64_t capacity,
				 int64_t n, int timeout_ms, unsigned flags,
				 struct goro_grant *out);

/* Gives back the units of a grant: token 0 means this session's oldest.
 * GORO_ENOTLOCKED when there is none. Flags: GORO_DEFER. */
GORO_EXPORT int goro_sem_release(goro_client *c, const char *name, uint64_t token,
				 unsigned flags);

/* Reads GOMAXPROCS (n <= 0) or sets it to n (1..256; needs gorod's own uid
 * or root, else -EPERM). *maxprocs gets the value now, *previous the one
 * before (either may be NULL). */
GORO_EXPORT int goro_maxprocs(goro_client *c, int n, int *maxprocs, int *previous);

/* gorod's stats as one line of JSON text, in *json: a string the caller
 * frees with free(). The fields are PROTOCOL.md's `stats`; the conversion
 * is generic (msgpack bin becomes a base64 string, as Go's encoding/json
 * does for []byte; invalid UTF-8 becomes U+FFFD). */
GORO_EXPORT int goro_stats_json(goro_client *c, char **json);

/* ---- tasks ------------------------------------------------------------------ */

/* A task to spawn (goro_spawn). Zero-initialise it and set what you need:
 * every field left 0 or NULL means gorod's default. Exactly one of argv
 * and func is set. Everything is copied into the request: the caller may
 * reuse its memory as soon as the call returns. */
struct goro_spawn {
	/* exec: the command, NULL-terminated; argv[0] without a '/' is looked
	 * up in the PATH of env. */
	const char *const *argv;
	const char *const *env;  /* "KEY=VALUE", NULL-terminated; NULL: PATH only */
	const char *cwd;         /* NULL: "/" */
	const void *stdin_data;  /* bytes on its stdin, then end of file */
	size_t stdin_len;

	/* func: a function registered in gorod, and its arguments: args (each
	 * sent as an integer if it is a decimal integer, else as a string), or
	 * args_msgpack, one packed msgpack array (then args must be NULL). */
	const char *func;
	const char *const *args;
	const void *args_msgpack;
	size_t args_msgpack_len;

	const char *name;        /* a label for ps */
	const char *key;         /* refused (-EBUSY) while another task with it lives */
	const char *wg;          /* add 1 now, done when the task ends */
	const char *lock;        /* held (write) while it runs, requested now */
	const char *rlock;       /* held (read) while it runs, requested now */
	const char *sem;         /* one unit held while it runs, requested now */
	int64_t sem_capacity;    /* 0: gorod's default (1, or the semaphore's) */
	const uint64_t *after;   /* start once these have ended */
	size_t nafter;
	int timeout_ms;          /* 0: none */
	int grace_ms;            /* 0: 5000 */
	int expect_ms;           /* 0: gorod's --leak-after */
	int64_t output_max;      /* bytes kept per stream; 0: gorod's default */
	bool session_scope;      /* killed when this session ends */
	/* What the leak monitor does when it proves the task can never end
	 * (a definite finding about it): false (gorod's `flag`) only reports
	 * it; true (`kill`) also kills the task, which then ends in state
	 * GORO_TASK_LEAKED. */
	bool on_leak_kill;
};

/* A task's state (PROTOCOL.md, Tasks). */
enum goro_task_state {
	GORO_TASK_QUEUED,
	GORO_TASK_RUNNING,
	GORO_TASK_PAUSED,
	GORO_TASK_EXITED,
	GORO_TASK_SIGNALED,
	GORO_TASK_KILLED,
	GORO_TASK_TIMEOUT,
	GORO_TASK_FAILED,
	GORO_TASK_LOST,
	GORO_TASK_LEAKED, /* killed by the leak monitor (on_leak_kill) */
};

/* The state's name on the wire ("exited"); never NULL. */
GORO_EXPORT const char *goro_task_state_name(enum goro_task_state state);

/* How a task ended (goro_wait). Free with goro_outcome_clear(). */
struct goro_outcome {
	uint64_t id;
	enum goro_task_state state;
	bool func;               /* a func task (else exec) */
	int code;                /* exited: the exit code */
	int signal;              /* signaled, killed, timeout: the signal (0: none) */
	int error;               /* failed, lost: the negative code */
	char message[256];       /* failed, lost: gorod's sentence */
	char *result_json;       /* exited func: its result as JSON text, or NULL */
	int pid;                 /* exec: the process, 0 if it never started */
	int64_t started_ms, ended_ms; /* Unix times; started_ms 0: never started */
	uint64_t stdout_bytes, stderr_bytes, stdout_cut, stderr_cut;
};

/* Frees what o holds (result_json); accepts NULL. */
GORO_EXPORT void goro_outcome_clear(struct goro_outcome *o);

/* The exit status a shell would give this outcome: the code for exited,
 * 128 + signal for signaled and killed, 124 for timeout (as timeout(1)),
 * 125 for leaked (killed by the leak monitor), 127 for a program that does
 * not exist, 126 for one that cannot run, 1 for any other failure. */
GORO_EXPORT int goro_outcome_status(const struct goro_outcome *o);

/* Starts a task; its id goes to *id. */
GORO_EXPORT int goro_spawn(goro_client *c, const struct goro_spawn *spec, uint64_t *id);

/* Waits until task id has ended (timeout_ms as elsewhere) and writes its
 * outcome to *out. -ENOENT: no such task, or no longer kept. */
GORO_EXPORT int goro_wait(goro_client *c, uint64_t id, int timeout_ms,
			  struct goro_outcome *out);

/* Sends sig (0: SIGTERM) to the task, SIGKILL after its grace period;
 * a func task is cancelled. -ESRCH when it has ended. */
GORO_EXPORT int goro_kill(goro_client *c, uint64_t id, int sig);

/* SIGSTOP / SIGCONT to a running exec task's process group. */
GORO_EXPORT int goro_pause(goro_client *c, uint64_t id);
GORO_EXPORT int goro_resume(goro_client *c, uint64_t id);

/* The tasks (all: the finished ones kept too) with ids above `after`, in
 * id order, as JSON text (an array of PROTOCOL.md's ps entries) in *json,
 * which the caller frees. One call returns one page (up to 1000 tasks): to
 * list them all, call again with after = the last id, until the array is
 * empty. */
GORO_EXPORT int goro_ps_json(goro_client *c, bool all, uint64_t after, char **json);

/* One task as ps shows it (goro_ps). Strings are NUL-terminated (a NUL
 * byte from gorod ends them early). */
struct goro_task_info {
	uint64_t id;
	enum goro_task_state state;
	const char *name;        /* its label, or NULL */
	const char *const *argv; /* exec: the command, NULL-terminated; else NULL */
	const char *func;        /* func: the function's name; else NULL */
	uint32_t uid;            /* its owner */
	int pid;                 /* exec: the process, 0 if it has not started */
	int64_t age_ms;          /* since it was spawned */
	const char *blocked_on;  /* queued: what it waits for ("lock db"), or NULL */
};

/* goro_ps_json() as C structs: *tasks gets an array of *n entries, in id
 * order, in one malloc'd block (the strings too) that the caller frees
 * with free(). *tasks is NULL when *n is 0 (the last page). */
GORO_EXPORT int goro_ps(goro_client *c, bool all, uint64_t after,
			struct goro_task_info **tasks, size_t *n);

/* Which output stream of a task. */
enum goro_stream {
	GORO_STDOUT = 0,
	GORO_STDERR = 1,
};

/* A piece of a task's output (goro_logs_read). */
struct goro_logs {
	void *data;     /* malloc'd, the caller frees; NULL when len is 0 */
	size_t len;
	uint64_t from;  /* the offset of data[0] in the stream */
	uint64_t next;  /* the offset to read from next */
	uint64_t cut;   /* bytes skipped before data: no longer kept */
	bool eof;       /* the stream is closed and read to its end */
};

/* Reads stream from offset `from`, waiting up to wait_ms (0: not at all,
 * -1: for ever) for bytes past it. See PROTOCOL.md, logs.read. */
GORO_EXPORT int goro_logs_read(goro_client *c, uint64_t id, enum goro_stream stream,
			       uint64_t from, int wait_ms, struct goro_logs *out);

/* What gorod keeps of the stream (the last output_max bytes), in *data
 * (malloc'd, the caller frees; NULL when *len is 0). It does not say
 * whether bytes were cut before it: goro_logs_read() does. */
GORO_EXPORT int goro_logs(goro_client *c, uint64_t id, enum goro_stream stream,
			  void **data, size_t *len);

/* A WaitGroup's counter and its tasks this round (PROTOCOL.md, wg.status). */
struct goro_wg_status {
	int64_t count, waiters;
	int64_t tasks, running, done, failed;
	bool has_failure;
	struct goro_outcome first_failure; /* when has_failure; clear it */
};

GORO_EXPORT int goro_wg_status(goro_client *c, const char *name, struct goro_wg_status *out);

/* goro_wg_wait() that also returns the round's figures (out may be NULL;
 * if not, clear out->first_failure afterwards). */
GORO_EXPORT int goro_wg_wait_status(goro_client *c, const char *name, int timeout_ms,
				    struct goro_wg_status *out);

/* ---- the leak monitor -------------------------------------------------------- */

/* One finding of gorod's leak monitor (PROTOCOL.md, leaks): a goroutine or
 * process that will never end, or a deadlock waiting to happen, and why.
 * Strings are NUL-terminated (a NUL byte from gorod ends them early). */
struct goro_leak {
	uint64_t id;             /* the finding's own number (increasing) */
	const char *kind;        /* "definite", "suspected", "left-behind", "hog",
				  * "lock-order" (a newer gorod may add kinds) */
	const char *reason;      /* one sentence a person can act on */
	int64_t age_ms;          /* how long the goroutine or process has lived */
	int64_t since_ms;        /* when the finding was made, Unix time */
	uint64_t task;           /* the task it is about, or 0 */
	uint64_t goroutine;      /* the goroutine it is about, or 0 */
	uint64_t session;        /* the session it is about, or 0 */
	int pid;                 /* the process behind it (the owner), or 0 */
	uint32_t uid;            /* the owner's uid, when pid is not 0 */
	const char *comm;        /* the owner's command name, or NULL */
	const char *blocked_on;  /* what it waits for ("wg g"), or NULL */
	const char *const *history; /* the facts behind it, NULL-terminated */
};

/* What the leak monitor finds now, oldest first, as JSON text (an array of
 * PROTOCOL.md's leaks entries) in *json, which the caller frees. */
GORO_EXPORT int goro_leaks_json(goro_client *c, char **json);

/* goro_leaks_json() as C structs: *leaks gets an array of *n findings in
 * one malloc'd block (the strings too) that the caller frees with free().
 * *leaks is NULL when *n is 0: nothing found. */
GORO_EXPORT int goro_leaks(goro_client *c, struct goro_leak **leaks, size_t *n);

/* ---- deferred releases ------------------------------------------------------ */

/* Sends what is queued and waits until every request sent before the call
 * has its reply, including goro_send_*() ones (so it waits as long as any
 * of them). Returns the first failure of a deferred release (or of a
 * goro_send_*() request without callback) and forgets it, else 0, or the
 * connection's error. goro_last_error() then gives its message, which says
 * how many more failed after it. */
GORO_EXPORT int goro_sync(goro_client *c);

/* The first deferred failure recorded so far (forgotten once returned),
 * or 0. Does not wait: a release whose reply has not been read yet has
 * not failed yet. */
GORO_EXPORT int goro_deferred_error(goro_client *c);

/* ---- non-blocking calls --------------------------------------------------- */

/* The outcome of a request sent with goro_send_*(). Which field is set
 * depends on the method; message is set when err < 0. Pointers are valid
 * only during the callback. */
struct goro_reply {
	const char *message;       /* on error: gorod's sentence (or ours) */
	int64_t count;             /* wg_add, wg_done */
	struct goro_grant grant;   /* mutex_lock, sem_acquire */
	int maxprocs, previous;    /* maxprocs */
	const char *json;          /* stats, ps, leaks: the JSON text, as goro_stats_json() */
	struct goro_hello hello;   /* hello */
	uint64_t id;               /* spawn */
	struct goro_outcome *outcome; /* wait */
	struct goro_logs *logs;    /* logs_read; logs: data and len only */
	struct goro_wg_status *wg; /* wg_status, wg_wait (count and waiters 0) */
	const struct goro_task_info *tasks; /* ps, as goro_ps() */
	size_t ntasks;
	const struct goro_leak *leaks; /* leaks, as goro_leaks() */
	size_t nleaks;
};

/* Called once per request sent with goro_send_*(): with err 0 or the
 * request's error, -ECONNRESET/-EPROTO when the connection failed first,
 * -ECANCELED from goro_close(). */
typedef void (*goro_reply_fn)(void *arg, int err, const struct goro_reply *reply);

/* Each queues one request, with the arguments and flags of its blocking
 * twin (GORO_DEFER is not one of them: nothing is sent before goro_flush()).
 * cb may be NULL: the reply is then dropped, and a failure is kept as a
 * deferred one (goro_sync, goro_deferred_error). Returns 0, -EINVAL for
 * bad arguments, -ENOMEM, or the connection's error. */
GORO_EXPORT int goro_send_hello(goro_client *c, const char *client,
				goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_wg_add(goro_client *c, const char *name, int64_t delta,
				 unsigned flags, goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_wg_done(goro_client *c, const char *name,
				  goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_wg_wait(goro_client *c, const char *name, int timeout_ms,
				  goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				     int timeout_ms, unsigned flags,
				     goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_mutex_unlock(goro_client *c, const char *name, uint64_t token,
				       goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_sem_acquire(goro_client *c, const char *name, int64_t capacity,
				      int64_t n, int timeout_ms, unsigned flags,
				      goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_sem_release(goro_client *c, const char *name, uint64_t token,
				      goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_maxprocs(goro_client *c, int n, goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_stats(goro_client *c, goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_spawn(goro_client *c, const struct goro_spawn *spec,
				goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_wait(goro_client *c, uint64_t id, int timeout_ms,
			       goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_kill(goro_client *c, uint64_t id, int sig,
			       goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_wg_status(goro_client *c, const char *name,
				    goro_reply_fn cb, void *arg);
GORO_EXPORT int goro_send_logs_read(goro_client *c, uint64_t id, enum goro_stream stream,
				    uint64_t from, int wait_ms, goro_reply_fn cb, void *arg);

/* Writes as much of what is queued as the socket takes, without blocking.
 * Returns 0 when all is written, -EAGAIN when the rest must wait for
 * POLLOUT, or the connection's error. */
GORO_EXPORT int goro_flush(goro_client *c);

/* Whether something queued is not written yet (then poll for POLLOUT and
 * call goro_flush()). */
GORO_EXPORT bool goro_want_write(const goro_client *c);

/* Reads what is readable, without blocking, and runs the callbacks of the
 * replies it completes. Returns how many replies it handled (0 when
 * nothing was readable), or the connection's error: -ECONNRESET when gorod
 * closed it, -EPROTO when gorod sent something malformed (the connection
 * is then closed). After an error every outstanding callback has run, and
 * every later call fails with the same code: goro_close() the client. */
GORO_EXPORT int goro_process(goro_client *c);

#ifdef __cplusplus
}
#endif

#endif /* GORO_GORO_H */
