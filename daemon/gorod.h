/* gorod.h: the daemon's internals shared between its files: sessions,
 * requests that wait, and the named primitives' common parts.
 *
 * Locking. One goroutine mutex, names_lock, protects every named primitive,
 * every session's holdings (grants, leases, waits) and so the wait-for
 * graph: a decision such as "grant this, or would waiting close a cycle?"
 * needs all of them at once, and each takes well under a microsecond, far
 * below the cost of the socket round trip that brought the request. A
 * session's output has its own lock (out_lock). Order: out_lock, then
 * names_lock (the stats reply is packed under both); never the reverse:
 * replies are packed after names_lock is released. */
#ifndef GORO_DAEMON_H
#define GORO_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"
#include "runtime.h"

#define GOROD_VERSION "0.1.0"

extern struct rt_mutex names_lock;

/* ---- sessions (session.c) ----------------------------------------------- */

struct grant;
struct lease;
struct nwait;
struct quota;
struct req;

struct session {
	uint64_t id;
	int fd;
	struct rt_pollfd *pfd;   /* fd, registered with the netpoller once */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t *groups;           /* SO_PEERGROUPS, when gorod is root (owned) */
	int ngroups;
	struct task *tasks;      /* tasks of scope session it spawned (names_lock) */
	bool party;              /* a task acting as a holder, not a connection */
	struct task *party_task; /* party: its task */
	int leak_party;          /* leak.c's graph index (names_lock), */
	uint64_t leak_round;     /* ... made in this pass */
	uint64_t task_of;        /* leak.c: the task its peer acts for, once known */
	bool task_of_known;
	struct quota *quota;     /* its user's counts (quota.c; set while linked) */
	char client[64];         /* from hello (names_lock) */
	int64_t started_ns;

	/* Output: replies are packed into `out` and written by whoever
	 * packed them (out_lock). */
	struct rt_mutex out_lock;
	msgpack_sbuffer out;
	size_t out_off;          /* bytes of out already written */
	bool out_broken;         /* a write failed: the peer is gone */
	uint64_t out_seq;        /* the journal record out may not be written before */

	/* Requests that wait, each in a goroutine of its own (names_lock). */
	struct req *reqs;
	int nreqs;
	struct rt_wg reqs_wg;    /* counts those goroutines */

	/* Holdings (names_lock). */
	struct grant *grants;    /* oldest first */
	struct lease *leases;
	_Atomic uint64_t requests;
	bool closing;
	uint64_t dl_mark;        /* deadlock.c's visit mark */

	struct session *next, *prev; /* all sessions (names_lock) */
};

extern struct session *sessions;
extern int nsessions;

/* Serves one accepted connection until it closes (runs as a goroutine). */
void session_serve(void *fd_as_ptr);

/* Packs a reply under out_lock and writes what it can. `pack` packs the
 * result (called only when code == 0). */
void session_reply(struct session *s, uint32_t msgid, int code, const char *why,
		   void (*pack)(msgpack_packer *pk, void *arg), void *arg, bool flush);
/* The replies packed from now on are written only once journal record seq
 * is on disk (journal.c; 0: no wait). */
void session_wait_journal(struct session *s, uint64_t seq);

/* Asks every session to close; returns when all have. */
void sessions_close_all(void);

/* A session without a connection, through which a task holds locks,
 * semaphore units and WaitGroup counts (owner's credentials copied). */
struct session *session_party_new(uid_t uid, gid_t gid, pid_t pid);
void session_party_free(struct session *p);
/* The party sessions, linked by next (names_lock). */
struct session *session_parties(void);
void session_accepted(void);
void session_ended_early(void);

/* Counts for metrics (names_lock held): connections now and ever, the
 * requests they made (ended sessions' included), requests waiting now. */
struct session_counts {
	uint64_t connected, accepted, requests, waiting;
};
void session_counts(struct session_counts *c);

/* ---- requests (dispatch.c) ---------------------------------------------- */

/* A request's decoded params. */
struct args {
	const char *name;
	size_t name_len;
	int64_t delta, n, capacity, timeout_ms;
	uint64_t token;
	bool write, try_, lease;
	const char *client;
	size_t client_len;
};

/* Handles one request from s (the reader goroutine). Replies inline, or
 * hands a waiting request to a goroutine of its own. */
void dispatch(struct session *s, const struct proto_msg *m);

/* The handler of each method of proto/methods.h: rpc_<id>, in dispatch.c
 * for the named primitives, task_rpc.c for tasks. */
#define RPC_DECL_(id, name, flags, params, result, summary) \
	void rpc_##id(struct session *s, const struct proto_msg *m);
PROTO_METHODS(RPC_DECL_)
#undef RPC_DECL_

/* Replies with an error: code and a sentence (NULL: the code's own). */
void reply_err(struct session *s, const struct proto_msg *m, int code, const char *why);

/* ---- waiting on a named primitive (wait.c) ------------------------------ */

/* The registry's kinds (names.c keeps one table each), then the kinds of
 * waits that are not on a named primitive. */
enum prim_kind {
	PRIM_WG,
	PRIM_MUTEX,
	PRIM_SEM,
	PRIM_TASKID,  /* tasks by id (8 bytes), task.c */
	PRIM_TASKKEY, /* tasks queued or running, by key */
	PRIM_KINDS,
	PRIM_TASK = PRIM_KINDS, /* a wait request on a task */
	PRIM_LOGS,              /* a logs.read waiting for output */
};

/* A task's outcome in brief (a WaitGroup's first failure). */
struct task_brief {
	uint64_t id;
	int state; /* enum task_state */
	int code, sig, err;
};

/* The tasks bound to a WaitGroup in its current round (wg.status). */
struct wg_round {
	int64_t tasks, running, done, failed;
	bool has_failure;
	struct task_brief first_failure;
};

/* A request waiting on a named primitive. Lives in its struct req (heap),
 * queued on the primitive in arrival order (names_lock). */
struct nwait {
	struct nwait *next, *prev;   /* the primitive's queue */
	struct req *req;
	struct session *s;
	enum prim_kind kind;
	void *prim;
	bool write;                  /* mutex: mode */
	int64_t n;                   /* sem: units */
	int64_t since;               /* mutex, sem: rt_now() when queued */
	/* Filled by whoever completes it (names_lock). */
	bool done;
	int result;
	uint64_t token;
	bool owner_died;
	struct wg_round round;       /* wg.wait: the round as it ended */
	struct rt_waitq q;           /* the request's goroutine parks here */
};

struct req {
	struct session *s;
	uint32_t msgid;
	int method;
	int64_t deadline;
	char name[PROTO_MAX_NAME + 1];
	struct args a;
	struct nwait nw;
	struct rt_gref g;
	struct req *next, *prev;     /* s->reqs (names_lock) */
};

/* names_lock held: completes a waiting request with result (and, for
 * grants, token/owner_died already set in nw) and wakes its goroutine. */
void nwait_complete(struct nwait *nw, int result);

/* names_lock held: links nw at the tail of a primitive's queue. */
void nwait_enqueue(struct nwait **head, struct nwait *nw);
void nwait_unlink(struct nwait **head, struct nwait *nw);

/* names_lock held: starts the goroutine that waits for r. The reply is
 * sent when it completes. */
int req_start_wait(struct req *r);

/* names_lock held: links r to (unlinks it from) its session's requests,
 * where session_end cancels them and deadlock.c sees them. */
void req_link(struct req *r);
void req_unlink(struct req *r);

/* names_lock held (released while parked): parks the calling goroutine
 * until nw is done, or gives up at the deadline or when cancelled (leaving
 * the queue). Returns nw's result. */
int nwait_park(struct nwait *nw, int64_t deadline);

/* names_lock held: waits on the calling goroutine for a request that was
 * queued (its op returned 1), linked to its session meanwhile. */
int req_wait_here(struct req *r);

/* Replies to a waiting request on a task (wait, logs.read), and drops
 * what it held (task_rpc.c). */
void task_req_reply(struct req *r);
void task_req_done(struct req *r);
/* names_lock held: a wait on a task gives up: off the task's list. */
void task_nwait_abandon(struct nwait *nw);
/* The retention age of finished tasks, in ns (task.c). */
int64_t task_config_keep_age_ns(void);
void task_pack_brief(msgpack_packer *pk, const struct task_brief *b);

/* ---- the named primitives ------------------------------------------------
 *
 * The seam for another backend (DESIGN.md section 8): dispatch.c calls only
 * these, with names_lock held. Each returns 0 when done (the result filled
 * in), 1 when the request was queued and will complete through its nwait,
 * or a negative code. */

struct grant {
	struct grant *next, *prev;   /* the primitive's holders */
	struct grant *snext, *sprev; /* the session's grants */
	struct session *s;
	enum prim_kind kind;
	void *prim;
	uint64_t token;
	bool write;
	int64_t n;
	int64_t granted_ns;          /* rt_now() at the grant (metrics.c's hold time) */
};

/* Count a session added to a WaitGroup with lease: true and has not yet
 * matched with its own wg.done. */
struct lease {
	struct lease *snext, *sprev; /* the session's leases */
	struct lease *wnext, *wprev; /* the group's leases */
	struct session *s;
	void *wg;
	int64_t count;
};

int nwg_add(struct session *s, const struct args *a, int64_t *count);
/* The wg.wait result: {round: {...}} of nw (a struct nwait). */
void nwg_pack_wait(msgpack_packer *pk, void *nw);
/* names_lock held: a task bound to the group (spawn --wg) was added,
 * started, ended. */
void nwg_task_bound(const char *name, size_t len, struct task *t);
void nwg_task_started(const char *name, size_t len);
void nwg_task_ended(const char *name, size_t len, bool started, bool ok,
		    const struct task_brief *b, struct task *t);
uint64_t task_id_of(const struct task *t);
/* Where task t sits among its WaitGroup's bound tasks (wg.c). */
size_t *task_bound_slot(struct task *t);
/* names_lock held: the group's counter, waiters and round; false when the
 * name is not in use. */
bool nwg_status(const char *name, size_t len, int64_t *count, int64_t *waiters,
		struct wg_round *round);
void wg_pack_round(msgpack_packer *pk, const struct wg_round *r);
int nwg_wait(struct req *r);
int nmutex_lock(struct req *r);
int nmutex_unlock(struct session *s, const struct args *a);
int nsem_acquire(struct req *r);
int nsem_release(struct session *s, const struct args *a);

/* A request that was queued gives up (timeout, cancel): names_lock held. */
void nwait_abandon(struct nwait *nw, int result);
void nmutex_abandon(struct nwait *nw);
void nsem_abandon(struct nwait *nw);
void nwg_abandon(struct nwait *nw);

/* A session ends: releases its grants (marking owner_died), its leases
 * (marking groups lost). names_lock held. */
void holdings_release(struct session *s);
void nmutex_release_dead(struct grant *g);
void nsem_release_dead(struct grant *g);
void nwg_lease_lost(struct lease *l);
bool nwg_expired(void *prim, int64_t now);
bool nmutex_expired(void *prim, int64_t now);
bool nsem_expired(void *prim, int64_t now);

/* How long a mutex or semaphore whose holder died keeps that mark for its
 * next user when nobody comes (then it is forgotten like any idle name). */
#define OWNER_DIED_KEEP_NS (600 * 1000000000LL)
int64_t nsem_capacity(const char *name, size_t len);
size_t nmutex_waiters(void *prim);

/* Calls fn for each session a request on mutex prim waits for (the
 * holders, then the requests queued ahead of nw; all of the queue when nw
 * is not queued); stops and returns true when fn does. */
bool nmutex_each_blocker(void *prim, struct nwait *nw,
			 bool (*fn)(struct session *, void *), void *arg);

/* Grants (grant.c), names_lock held. asked_ns: when a request that
 * waited was queued (its nwait's since), 0 for one granted at once. */
struct grant *grant_new(struct session *s, enum prim_kind kind, void *prim,
			struct grant **holders, bool write, int64_t n, int64_t asked_ns);
void grant_free(struct grant **holders, struct grant *g);
/* The grant with this token, or else (token 0) s's oldest, among holders. */
struct grant *grant_find(struct grant *holders, struct session *s, uint64_t token);

/* names_lock held: would session s, waiting for mutex m (queued as nw, or
 * about to be), close a wait-for cycle? (deadlock.c) */
bool deadlock_would_cycle(struct session *s, void *m, struct nwait *nw);

/* ---- the registry (names.c) ------------------------------------------------ */

/* names_lock held: the primitive of this kind and name, created (zeroed,
 * `size` bytes, with the name copied after it) if absent and create. */
void *names_get(enum prim_kind kind, const char *name, size_t len, size_t size,
		bool create);

/* names_get() with create, a name made now charged to s's user (s NULL:
 * nobody), and names_charge(): charges an existing name nobody is charged
 * for to q (quota.c). names_lock held. */
void *names_make(enum prim_kind kind, const char *name, size_t len, size_t size,
		 struct session *s);
void names_charge(enum prim_kind kind, const char *name, size_t len, struct quota *q);

/* names_lock held: forgets a primitive that is back to its zero value. */
void names_drop(enum prim_kind kind, void *prim);

const char *names_name(void *prim);
size_t names_count(enum prim_kind kind);

/* names_lock held: drops every primitive of kind for which expired() says
 * so (it must then be back to its zero value). */
void names_sweep(enum prim_kind kind, bool (*expired)(void *prim, int64_t now), int64_t now);

/* Global fencing-token counter: tokens increase across all names, so they
 * also increase per name even when an idle name is forgotten. */
uint64_t token_next(void);

/* ---- the socket (server.c) ---------------------------------------------- */

/* Resolves the socket path (--socket, $GOROD_SOCKET, $XDG_RUNTIME_DIR or
 * /run/gorod) into buf. */
int server_socket_path(const char *opt, char *buf, size_t len);

/* Binds and listens on path; refuses when a live gorod serves it, replaces
 * a stale socket file. Returns the fd or a negative code, with a message
 * printed. */
int server_listen(const char *path);

/* Serves the listening socket until server_stop(): a goroutine. */
void server_accept_loop(void *lfd_as_ptr);
int server_start(int lfd);
void server_stop(void);

/* ---- the leak monitor (leak.c, lockorder.c) --------------------------------- */

/* names_lock held: the wait-for graph changed (a wait, a grant, an end). */
void leak_changed(void);
int leak_start(void);
void leak_stop(void);
void leak_pack_counts(msgpack_packer *pk);
size_t leak_count(void); /* findings now (names_lock) */
/* Findings now and found since gorod started, by kind (names_lock held). */
struct leak_counts {
	uint64_t definite, suspected, left_behind, hog, lock_order;
};
void leak_counts(struct leak_counts *now, struct leak_counts *found);
/* names_lock held: a lock-order inversion of mutexes a and b was seen. */
void leak_lock_order(const char *a, const char *b, const char *first, const char *second);
/* names_lock held: s was granted mutex g while holding its other grants. */
void lockorder_acquired(struct session *s, struct grant *g);

/* The holders of a mutex / semaphore (names_lock held). */
struct grant *nmutex_holders(void *prim);
struct grant *nsem_holders(void *prim);

/* names_lock held: calls fn for each party that holds count on WaitGroup
 * prim: a session holding leased count (s), a task bound to it (t), or
 * a session that added without a lease (sid, pid: it may have ended);
 * stops when fn returns true, and returns that. */
typedef bool (*nwg_holder_fn)(void *arg, struct session *s, struct task *t, uint64_t sid,
			      pid_t pid);
bool nwg_each_holder(void *prim, nwg_holder_fn fn, void *arg);
/* How much count the group has, and whose, as history lines. */
void nwg_describe(void *prim, char *buf, size_t len);

/* ---- stats (stats.c) --------------------------------------------------------- */

void stats_pack(msgpack_packer *pk, void *unused);
/* gorod's resident set size in bytes (any thread; 0 when unknown). */
int64_t stats_rss_bytes(void);
extern int64_t gorod_started_ns;

#endif /* GORO_DAEMON_H */
