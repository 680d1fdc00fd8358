/* internal.h: libgoro's insides, shared by its files. Never installed.
 *
 *   libgoro.c  the connection: socket path, buffers, reading and writing,
 *              framing, matching replies to requests, deferred errors
 *   calls.c    the methods: the table of packers and parsers, checking
 *              arguments, the calls of the named primitives (blocking and
 *              goro_send_*)
 *   tasks.c    the task methods (spawn, wait, kill, ps, logs, wg.status,
 *              leaks): their packers, parsers and public calls
 *   json.c     msgpack objects as JSON text (stats, ps, a func's result) */
#ifndef GORO_CLIENT_INTERNAL_H
#define GORO_CLIENT_INTERNAL_H

#include <msgpack.h>

#include "goro/goro.h"
#include "proto.h"

/* The longest message kept for goro_last_error(), with its NUL. */
#define CLIENT_MSG_MAX 256

/* A blocking call waiting for its reply: on the caller's stack, pointed to
 * by its pending entry until the reply (or the connection's failure)
 * fills it in. */
struct client_wait {
	bool done;
	int err;
	struct goro_reply reply; /* what it holds is the caller's: client_reply_free() */
	char msg[CLIENT_MSG_MAX];
};

/* One request's arguments, whatever the method. Each public call fills the
 * fields its method takes; check() in calls.c holds the generic ones
 * against the method's rules, the packers read them. */
struct client_call {
	const char *name;    /* of the primitive; hello: of the client, or NULL */
	int64_t n;           /* wg.add: delta; sem.acquire: units; maxprocs: n */
	int64_t capacity;    /* sem.acquire; 0: gorod's default */
	int timeout_ms;      /* -1: none; logs.read: wait_ms */
	enum goro_mode mode; /* mutex.lock */
	uint64_t token;      /* releases; 0: none */
	unsigned flags;      /* GORO_* */

	const struct goro_spawn *spawn; /* spawn, checked by tasks.c */
	uint64_t id;             /* the task: wait, kill, pause, resume, logs* */
	int sig;                 /* kill; 0: gorod's default (TERM) */
	bool all;                /* ps */
	enum goro_stream stream; /* logs, logs.read */
	uint64_t from;           /* logs.read */
};

/* A request sent (or queued) whose reply has not arrived. Exactly one of
 * wait and cb is set, or neither: then the reply is dropped and a failure
 * is kept as a deferred error. */
struct client_pending {
	uint32_t msgid;
	enum proto_method method;
	uint64_t seq; /* order of queuing, for goro_sync() */
	struct client_wait *wait;
	goro_reply_fn cb;
	void *arg;
};

struct goro_client {
	int fd;             /* owned */
	bool nonblock;      /* fd is O_NONBLOCK (goro_connect_nb) */
	int broken;         /* 0, or the error that ended the connection */
	char broken_msg[CLIENT_MSG_MAX]; /* and why */
	int dispatching;    /* callbacks running, nested */
	bool close_pending; /* goro_close() called from a callback */

	uint32_t next_msgid;
	uint64_t seq; /* of the last request queued */

	/* Requests packed, not yet written: out.data[out_off, out.size).
	 * Deferred releases wait here for the next flush. out_oom is set by
	 * the packer's writer when the buffer could not grow. */
	msgpack_sbuffer out;
	size_t out_off;
	bool out_oom;

	/* Bytes read, not yet dispatched: in[in_off, in_len); owned. unp holds
	 * the decoded message being dispatched. */
	char *in;
	size_t in_off, in_len, in_cap;
	msgpack_unpacked unp;

	/* In flight, in no order; owned. */
	struct client_pending *pend;
	size_t npend, pend_cap;

	/* The first failure of a reply nobody waits for, and how many followed. */
	int deferred_err;
	unsigned deferred_more;
	char deferred_msg[CLIENT_MSG_MAX];

	char last_error[CLIENT_MSG_MAX];
};

/* A request being built between client_begin() and client_end(). */
struct client_req {
	uint32_t msgid;
	enum proto_method method;
	size_t mark; /* out.size before it, to take it back */
};

/* ---- libgoro.c -------------------------------------------------------------- */

/* Records msg (printf-style) as c's last error and returns err. */
int client_error(goro_client *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Starts a request for method m: packs its envelope into the output buffer
 * and points *pk at it, for the caller to pack the params array. blocking:
 * the caller will wait for the reply (refused inside a callback).
 * Returns 0, or the connection's error, or -EDEADLK. */
int client_begin(goro_client *c, enum proto_method m, bool blocking,
		 msgpack_packer *pk, struct client_req *req);

/* Copies a message from the wire into dst (CLIENT_MSG_MAX bytes), cut at a
 * character boundary to fit, control characters replaced: safe to print. */
void client_copy_msg(char *dst, const char *s, size_t len);

/* Finishes a request: registers where its reply goes (see struct
 * client_pending). Returns 0, or -ENOMEM having taken the request back. */
int client_end(goro_client *c, const struct client_req *req,
	       struct client_wait *w, goro_reply_fn cb, void *arg);

/* Writes what is queued and reads and dispatches replies until w is
 * filled in; blocks in poll(2) or recv(2). Returns w's error (its message
 * becomes the last error), or -ECANCELED when a callback closed c (then c
 * is freed). */
int client_wait(goro_client *c, struct client_wait *w);

/* ---- calls.c ------------------------------------------------------------------ */

/* Each method ID of proto/methods.h has a packer, client_pack_ID(), that
 * packs its params array from a struct client_call, and a parser,
 * client_parse_ID(), that reads its result into a struct goro_reply and
 * returns 0, -EPROTO when the result does not have the shape PROTOCOL.md
 * gives (keys it does not know are ignored), or -ENOMEM. A parser that
 * fails has allocated nothing. calls.c holds those of the named
 * primitives, tasks.c those of the tasks; calls.c's table of them is
 * generated from PROTO_METHODS, so a method without both does not link. */
#define CLIENT_OPS_DECL_(id, name, flags, params, result, summary)                \
	void client_pack_##id(msgpack_packer *pk, const struct client_call *a);  \
	int client_parse_##id(const msgpack_object *res, struct goro_reply *r);
PROTO_METHODS(CLIENT_OPS_DECL_)
#undef CLIENT_OPS_DECL_

/* Reads the result of method m into *r. Returns 0, -EPROTO when it does
 * not have the shape PROTOCOL.md gives (proto_methods[m].result), or
 * -ENOMEM. On success *r may hold malloc'd parts (json, outcome, logs,
 * wg, tasks, leaks): the caller owns them and frees them with client_reply_free(). */
int client_parse(enum proto_method m, const msgpack_object *result,
		 struct goro_reply *r);

/* Frees what a parser put in *r, and zeroes those fields. */
void client_reply_free(struct goro_reply *r);

/* Sends request m with arguments a (checked first) and waits for its
 * reply, into *r, which the caller then owns (client_reply_free()).
 * Blocks: see client_wait(). Returns 0 or a negative code, with a
 * sentence as c's last error. */
int client_call_wait(goro_client *c, enum proto_method m, const struct client_call *a,
		     struct goro_reply *r);

/* Queues request m with arguments a (checked first), its reply for cb
 * (NULL: kept only if it fails, as a deferred error). Does not block. */
int client_call_queue(goro_client *c, enum proto_method m, const struct client_call *a,
		      goro_reply_fn cb, void *arg);

/* Records "<what>: a name is 1 to 255 bytes long" as c's last error and
 * returns -EINVAL, unless s is NULL or a valid name (then 0). For the
 * optional names of a spawn. */
int client_check_name(goro_client *c, const char *what, const char *s);

/* ---- tasks.c ------------------------------------------------------------------ */

/* Reads the `round` map of wg.status and wg.wait ({tasks, running, done,
 * failed, first_failure?}) into *st's round fields. Returns 0, -EPROTO or
 * -ENOMEM; on failure *st holds nothing that needs freeing. */
int client_parse_round(const msgpack_object *round, struct goro_wg_status *st);

/* ---- json.c ------------------------------------------------------------------- */

/* o as JSON text, malloc'd; NULL when out of memory. */
char *client_json(const msgpack_object *o);

#endif /* GORO_CLIENT_INTERNAL_H */
