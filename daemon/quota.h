/* quota.h: per-user limits (quota.c): sessions, requests in flight, live
 * tasks, named primitives, captured output. PROTOCOL.md, "Per-user limits",
 * says what a client sees. */
#ifndef GORO_DAEMON_QUOTA_H
#define GORO_DAEMON_QUOTA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gorod.h"

enum quota_kind {
	QUOTA_SESSIONS,
	QUOTA_REQUESTS,
	QUOTA_TASKS,
	QUOTA_NAMES,
	QUOTA_OUTPUT,
	QUOTA_KINDS,
};

/* The limits, one per kind; 0: none. Settings sessions-per-user, ...
 * (config.c); the defaults and why are in quota.c. */
struct quota_limits {
	int64_t sessions, requests, tasks, names, output;
};

extern const struct quota_limits quota_defaults;

/* Applies new limits (at start and on SIGHUP's reload; any thread). What
 * is over a lowered limit stays; only what comes next is refused. */
void quota_set_limits(const struct quota_limits *l);

/* One user's counts. Found by uid in quota.c's table; sessions, names,
 * task records and parties point here, and the entry is freed once no
 * session, task record or name is left to count (names_lock). */
struct quota {
	uid_t uid;
	bool exempt;             /* root or gorod's own uid: counted, never refused */
	int64_t sessions;        /* connections (names_lock) */
	int64_t tasks;           /* live tasks: queued, running, paused (names_lock) */
	int64_t records;         /* task records, live or kept, pointing here (names_lock) */
	int64_t names;           /* named primitives charged here (names_lock) */
	_Atomic int64_t requests; /* requests that may wait, read and not yet answered */
	_Atomic int64_t output;   /* bytes of its tasks' output rings */
	_Atomic uint64_t refused[QUOTA_KINDS]; /* times a limit said no */
	struct quota *next;      /* the table's chain (names_lock) */
};

/* ---- sessions (session.c) ---- */

/* names_lock held: counts connection s for its uid (s->quota set), or
 * refuses it past sessions-per-user: -EAGAIN, the sentence in why. */
int quota_session_open(struct session *s, char *why, size_t len);
/* names_lock held: the session ended. */
void quota_session_close(struct session *s);
/* Tells a refused connection why (a `refused` notification, then an error
 * reply to each request it sends within a second) and returns; the caller
 * closes fd. May park (reading, never writing). */
void quota_refuse(int fd, struct rt_pollfd *pfd, int code, const char *why);
/* names_lock held: the entry of uid, or NULL (a task's party points to
 * the entry its task's record keeps). */
struct quota *quota_find(uid_t uid);

/* ---- requests in flight (dispatch.c, wait.c; any thread) ---- */

/* A request of method `method` from s is read: counts it if it may wait
 * (PROTO_F_BLOCKS), or refuses it past requests-per-user (-EAGAIN, the
 * sentence in why). Methods that never wait are neither counted nor
 * refused. quota_request_end() after the handler, with the same method. */
int quota_request_begin(struct session *s, int method, char *why, size_t len);
void quota_request_end(struct session *s, int method);
/* A request handed to a goroutine of its own (wait.c) counts until its
 * reply is written. */
void quota_request_park(struct session *s);
void quota_request_unpark(struct session *s);

/* ---- named primitives (names.c, dispatch.c, task.c; names_lock) ---- */

/* Whether a name that does not exist yet may be created for s: 0, or
 * -EAGAIN past names-per-user (the sentence in why). */
int quota_name_check(struct session *s, enum prim_kind kind, const char *name, size_t nlen,
		     char *why, size_t len);
/* names.c: a name was created for q (NULL: nobody), or is forgotten. */
void quota_name_charge(struct quota *q);
void quota_name_uncharge(struct quota *q);

/* ---- tasks (task.c; names_lock) ---- */

struct task;
struct spawn_req;

/* Before a spawn by s takes effect: 0, or -EAGAIN past tasks-per-user
 * (or past names-per-user for a new name its wg, lock or sem would
 * create), the sentence in why. */
int quota_task_check(struct session *s, const struct task *t, const struct spawn_req *sr,
		     char *why, size_t len);
/* The spawn took effect: t counts as live and points here (its output
 * rings too); the WaitGroup it created, if any, is charged to s's uid. */
void quota_task_charge(struct task *t, struct session *s);
/* t ended (it is no longer live). */
void quota_task_ended(struct task *t);
/* t's record is freed (after its output rings). */
void quota_task_free(struct task *t);

/* ---- output (output.c; the stream's lock, not names_lock) ---- */

/* A ring grows by `more` bytes: true when q's uid may have them (they are
 * charged), false past output-per-user. */
bool quota_output_grow(struct quota *q, size_t more);
/* Charges bytes whatever the limit (the first small ring of a stream). */
void quota_output_force(struct quota *q, size_t bytes);
void quota_output_free(struct quota *q, size_t bytes);

/* ---- stats (stats.c; names_lock held) ---- */

/* "quota": {limits: {...}, users: [{uid, exempt, sessions, ...}, ..]} */
void quota_pack(msgpack_packer *pk);

#endif /* GORO_DAEMON_QUOTA_H */
