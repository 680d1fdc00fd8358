/* internal.h: libgoro's insides, shared by its files. Never installed.
 *
 *   libgoro.c  the connection: socket path, buffers, reading and writing,
 *              framing, matching replies to requests, deferred errors
 *   calls.c    the methods: checking arguments, packing params, reading
 *              results, the public calls (blocking and goro_send_*)
 *   json.c     msgpack objects as JSON text (stats) */
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
	struct goro_reply reply; /* reply.json, if set, is the caller's to free */
	char msg[CLIENT_MSG_MAX];
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

/* Reads the result of method m into *r. Returns 0, -EPROTO when it does
 * not have the shape PROTOCOL.md gives (proto_methods[m].result), or
 * -ENOMEM. On success r->json may be a malloc'd string the caller owns. */
int client_parse(enum proto_method m, const msgpack_object *result,
		 struct goro_reply *r);

/* ---- json.c ------------------------------------------------------------------- */

/* o as JSON text, malloc'd; NULL when out of memory. */
char *client_json(const msgpack_object *o);

#endif /* GORO_CLIENT_INTERNAL_H */
