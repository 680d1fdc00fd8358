/* libgoro.c: the connection to gorod (goro/goro.h).
 *
 * A client is a socket and four things around it:
 *
 * - an output buffer of packed requests not yet written. Requests are
 *   packed straight into it; goro_flush() and the blocking calls write it
 *   out, so whatever was queued before (deferred releases, goro_send_*()
 *   requests) leaves in the same write as the request that follows it;
 * - an input buffer of bytes read and not yet dispatched. Every message
 *   is framed by proto_frame_check() and decoded by proto_decode(), the
 *   daemon's own discipline for untrusted input: anything malformed (bad
 *   framing, a reply to no request, a result of the wrong shape) ends the
 *   connection with -EPROTO;
 * - the requests in flight, each with where its reply goes: a blocking
 *   call waiting on its stack (struct client_wait), a callback, or nowhere
 *   (a deferred release: only a failure is kept);
 * - the first deferred failure, until goro_sync() or goro_deferred_error()
 *   hands it over.
 *
 * Replies may come in any order (gorod answers a wg.wait when the group is
 * done, and the requests behind it meanwhile), so they are matched by
 * msgid. A blocking call writes, then reads until its own reply arrives,
 * dispatching every other reply on the way: it never leaves a complete
 * message in the input buffer, because a program polling the socket would
 * not be woken for it.
 *
 * I/O never blocks outside the blocking calls: send and recv use
 * MSG_DONTWAIT (so the two interfaces may be mixed on any client) and
 * MSG_NOSIGNAL (no SIGPIPE, which would be process-wide state). The
 * blocking calls wait in recv(2), or in poll(2) when the socket is
 * non-blocking or the output does not fit; they carry no deadline of their
 * own: gorod answers every request and enforces the timeout it carries.
 *
 * A failed connection fails everything in flight with its error at once
 * (callbacks run, waiters wake, deferred releases count as failed) and
 * keeps failing later calls; the fd stays open until goro_close(), so the
 * caller's event loop never sees its number reused under it. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define IN_CHUNK 16384                         /* room for one read */
#define IN_MAX (PROTO_MAX_MESSAGE + IN_CHUNK)  /* a partial message + a read */
#define OUT_COMPACT 65536     /* move unwritten output to the front past this */
#define CLOSE_DRAIN_MS 1000   /* goro_close() waits this long to write */
#define SYSTEM_SOCKET "/run/gorod/gorod.sock"

static int client_fail(goro_client *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void client_free(goro_client *c);

/* ---- errors ------------------------------------------------------------------ */

GORO_EXPORT const char *goro_strerror(int code)
{
	const char *s;

	if (code == 0)
		return "success";
	if (strcmp(proto_err_name(code), "EUNKNOWN") != 0)
		return proto_strerror(code);
	/* An errno from the kernel that gorod never sends (-ENOTDIR from
	 * connect, say). */
	if (code < 0 && (s = strerrordesc_np(-code)))
		return s;
	return proto_strerror(code);
}

GORO_EXPORT const char *goro_err_name(int code)
{
	const char *s;

	if (code == 0)
		return "OK";
	if (strcmp(proto_err_name(code), "EUNKNOWN") != 0)
		return proto_err_name(code);
	if (code < 0 && (s = strerrorname_np(-code)))
		return s;
	return "EUNKNOWN";
}

GORO_EXPORT const char *goro_last_error(const goro_client *c)
{
	return c ? c->last_error : "";
}

int client_error(goro_client *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
	va_end(ap);
	return err;
}

void client_copy_msg(char *dst, const char *s, size_t len)
{
	size_t n = len;

	if (n > CLIENT_MSG_MAX - 1) {
		n = CLIENT_MSG_MAX - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
}

/* The connection's error, its message made the last error again. */
static int broken(goro_client *c)
{
	return client_error(c, c->broken, "%s", c->broken_msg);
}

/* Hands over the first deferred failure (0 if none) and forgets it. */
static int take_deferred(goro_client *c)
{
	int err = c->deferred_err;

	if (!err)
		return 0;
	if (c->deferred_more)
		client_error(c, err, "%s (and %u more deferred requests failed)",
			     c->deferred_msg, c->deferred_more);
	else
		client_error(c, err, "%s", c->deferred_msg);
	c->deferred_err = 0;
	c->deferred_more = 0;
	return err;
}

/* ---- connecting ---------------------------------------------------------------- */

GORO_EXPORT int goro_socket_path(const char *path, char *buf, size_t size)
{
	struct sockaddr_un sa;
	char tmp[sizeof sa.sun_path];
	const char *env;
	int n;

	if (!path && (env = getenv("GOROD_SOCKET")) && *env)
		path = env;
	if (path) {
		n = snprintf(tmp, sizeof tmp, "%s", path);
	} else if (geteuid() != 0 && (env = getenv("XDG_RUNTIME_DIR")) && *env) {
		/* The user's own gorod; the system one when the user runs none
		 * (a member of group goro reaches it with no setting at all). */
		n = snprintf(tmp, sizeof tmp, "%s/gorod.sock", env);
		if (n > 0 && (size_t)n < sizeof tmp && access(tmp, F_OK) < 0 &&
		    access(SYSTEM_SOCKET, F_OK) == 0)
			n = snprintf(tmp, sizeof tmp, "%s", SYSTEM_SOCKET);
	} else {
		n = snprintf(tmp, sizeof tmp, "%s", SYSTEM_SOCKET);
	}
	if (n < 0 || (size_t)n >= sizeof tmp || (size_t)n >= size)
		return -ENAMETOOLONG;
	memcpy(buf, tmp, (size_t)n + 1);
	return 0;
}

/* Opens a connection to path (NULL: the default). Returns 0 and *out, or
 * a negative errno. May block while gorod's listen queue is full, unless
 * nonblock. */
static int client_open(const char *path, bool nonblock, goro_client **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	goro_client *c;
	int fd, err;

	err = goro_socket_path(path, sa.sun_path, sizeof sa.sun_path);
	if (err < 0)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (errno == EINTR)
			continue;
		err = -errno;
		close(fd);
		return err;
	}
	c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->nonblock = nonblock;
	c->next_msgid = 1;
	msgpack_sbuffer_init(&c->out);
	msgpack_unpacked_init(&c->unp);
	*out = c;
	return 0;
}

GORO_EXPORT int goro_connect(const char *path, goro_client **out)
{
	return client_open(path, false, out);
}

GORO_EXPORT int goro_connect_nb(const char *path, goro_client **out)
{
	return client_open(path, true, out);
}

GORO_EXPORT int goro_fd(const goro_client *c)
{
	return c ? c->fd : -1;
}

/* ---- requests in flight -------------------------------------------------------- */

static ssize_t pending_find(const goro_client *c, uint32_t msgid)
{
	for (size_t i = 0; i < c->npend; i++)
		if (c->pend[i].msgid == msgid)
			return (ssize_t)i;
	return -1;
}

/* Removes entry i (order does not matter) and returns it. */
static struct client_pending pending_take(goro_client *c, size_t i)
{
	struct client_pending p = c->pend[i];

	c->pend[i] = c->pend[--c->npend];
	return p;
}

static int pending_reserve(goro_client *c)
{
	struct client_pending *p;
	size_t cap;

	if (c->npend < c->pend_cap)
		return 0;
	cap = c->pend_cap ? 2 * c->pend_cap : 16;
	p = realloc(c->pend, cap * sizeof *p);
	if (!p)
		return -ENOMEM;
	c->pend = p;
	c->pend_cap = cap;
	return 0;
}

/* A msgid no request in flight uses (they wrap after 2^32 requests). */
static uint32_t new_msgid(goro_client *c)
{
	uint32_t id;

	do
		id = c->next_msgid++;
	while (pending_find(c, id) >= 0);
	return id;
}

/* The packer's writer: appends to the output buffer, noting a failure. */
static int out_append(void *data, const char *buf, size_t len)
{
	goro_client *c = data;

	if (msgpack_sbuffer_write(&c->out, buf, len) < 0) {
		c->out_oom = true;
		return -1;
	}
	return 0;
}

int client_begin(goro_client *c, enum proto_method m, bool blocking,
		 msgpack_packer *pk, struct client_req *req)
{
	if (c->broken)
		return broken(c);
	if (blocking && c->dispatching)
		return client_error(c, -EDEADLK,
				    "a blocking call cannot run inside a reply callback");
	if (c->out_off >= OUT_COMPACT) {
		memmove(c->out.data, c->out.data + c->out_off, c->out.size - c->out_off);
		c->out.size -= c->out_off;
		c->out_off = 0;
	}
	req->msgid = new_msgid(c);
	req->method = m;
	req->mark = c->out.size;
	c->out_oom = false;
	msgpack_packer_init(pk, c, out_append);
	proto_pack_request_head(pk, req->msgid, proto_methods[m].name);
	return 0;
}

int client_end(goro_client *c, const struct client_req *req,
	       struct client_wait *w, goro_reply_fn cb, void *arg)
{
	if (c->out_oom || pending_reserve(c) < 0) {
		c->out.size = req->mark;
		return client_error(c, -ENOMEM, "out of memory queuing %s",
				    proto_methods[req->method].name);
	}
	if (w)
		memset(w, 0, sizeof *w);
	c->pend[c->npend++] = (struct client_pending){
		.msgid = req->msgid,
		.method = req->method,
		.seq = ++c->seq,
		.wait = w,
		.cb = cb,
		.arg = arg,
	};
	return 0;
}

/* Hands a reply (or a failure: err < 0, with msg) to where p says: fills
 * in the waiter (which then owns what r holds: r is emptied), runs the
 * callback, or keeps the failure as a deferred one. */
static void deliver(goro_client *c, const struct client_pending *p, int err,
		    struct goro_reply *r, const char *msg)
{
	if (p->wait) {
		p->wait->done = true;
		p->wait->err = err;
		p->wait->reply = *r;
		snprintf(p->wait->msg, sizeof p->wait->msg, "%s", msg);
		memset(r, 0, sizeof *r);
		return;
	}
	if (err < 0)
		snprintf(c->last_error, sizeof c->last_error, "%s", msg);
	if (p->cb) {
		r->message = err < 0 ? msg : NULL;
		c->dispatching++;
		p->cb(p->arg, err, r);
		c->dispatching--;
		return;
	}
	if (err == 0)
		return;
	if (c->deferred_err) {
		c->deferred_more++;
		return;
	}
	c->deferred_err = err;
	snprintf(c->deferred_msg, sizeof c->deferred_msg, "%s: %s",
		 proto_methods[p->method].name, msg);
}

/* Ends the connection after err (its message from fmt): everything in
 * flight fails with err, every later call returns it. Returns err (or the
 * error that ended it before). */
static int client_fail(goro_client *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->broken)
		return c->broken;
	va_start(ap, fmt);
	vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
	va_end(ap);
	c->broken = err;
	snprintf(c->last_error, sizeof c->last_error, "%s", c->broken_msg);
	shutdown(c->fd, SHUT_RDWR);
	c->out.size = 0;
	c->out_off = 0;
	c->in_off = 0;
	c->in_len = 0;
	while (c->npend > 0) {
		struct client_pending p = pending_take(c, c->npend - 1);
		struct goro_reply r;

		memset(&r, 0, sizeof r);
		deliver(c, &p, err, &r, c->broken_msg);
	}
	return err;
}

/* ---- writing and reading --------------------------------------------------------- */

static ssize_t in_read(goro_client *c, bool wait);
static int in_dispatch(goro_client *c);

/* gorod closed the connection: dispatches what it sent before, which may
 * say why (a `refused` notification) and so become the connection's error. */
static void read_last_words(goro_client *c)
{
	while (!c->broken && in_read(c, false) > 0)
		in_dispatch(c);
}

/* Writes what is queued, without blocking. Returns 0 when all is written,
 * -EAGAIN when the socket takes no more, or the connection's error. */
static int out_write(goro_client *c)
{
	while (c->out_off < c->out.size) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.size - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		int e = errno;

		if (n >= 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return -EAGAIN;
		if (e == EPIPE || e == ECONNRESET) {
			read_last_words(c);
			return client_fail(c, -ECONNRESET, "gorod closed the connection");
		}
		return client_fail(c, -e, "writing to gorod: %s", goro_strerror(-e));
	}
	c->out.size = 0;
	c->out_off = 0;
	return 0;
}

/* Makes room for IN_CHUNK bytes after the input: drops what was
 * dispatched, grows the buffer. Returns 0, -ENOMEM, or -EMSGSIZE when the
 * partial message left would not fit in IN_MAX (framing refuses a message
 * over PROTO_MAX_MESSAGE, so this is a second line of defense). */
static int in_room(goro_client *c)
{
	size_t cap;
	char *p;

	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_cap - c->in_len >= IN_CHUNK)
		return 0;
	cap = c->in_cap ? 2 * c->in_cap : 4 * IN_CHUNK;
	if (cap > IN_MAX)
		cap = IN_MAX;
	if (cap - c->in_len < IN_CHUNK)
		return -EMSGSIZE;
	p = realloc(c->in, cap);
	if (!p)
		return -ENOMEM;
	c->in = p;
	c->in_cap = cap;
	return 0;
}

/* Reads once into the input buffer; wait: block until something comes
 * (unless the socket is non-blocking). Returns the bytes read, -EAGAIN,
 * or the connection's error (-ECONNRESET at end of file). */
static ssize_t in_read(goro_client *c, bool wait)
{
	ssize_t n;
	int e;

	e = in_room(c);
	if (e == -EMSGSIZE)
		return client_fail(c, -EPROTO, "gorod sent a message over %u bytes",
				   PROTO_MAX_MESSAGE);
	if (e < 0)
		return client_fail(c, -ENOMEM, "out of memory reading from gorod");
	do
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
			 wait ? 0 : MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0) {
		c->in_len += (size_t)n;
		return n;
	}
	if (n == 0)
		return client_fail(c, -ECONNRESET, "gorod closed the connection");
	e = errno;
	if (e == EAGAIN || e == EWOULDBLOCK)
		return -EAGAIN;
	if (e == ECONNRESET)
		return client_fail(c, -ECONNRESET, "gorod closed the connection");
	return client_fail(c, -e, "reading from gorod: %s", goro_strerror(-e));
}

/* Reads an error object [code, message]: returns the code, with the
 * message in msg; 0 when it is malformed. A code this library does not
 * know (from a newer gorod) becomes -EPROTO, its name kept in msg. */
static int reply_error(const msgpack_object *e, char *msg)
{
	const char *name, *text;
	size_t nlen, tlen, mlen;
	char code_name[CLIENT_MSG_MAX];
	int code;

	if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
	    proto_get_str(&e->via.array.ptr[0], &name, &nlen) < 0 ||
	    proto_get_str(&e->via.array.ptr[1], &text, &tlen) < 0)
		return 0;
	client_copy_msg(msg, text, tlen);
	code = proto_err_from_name(name, nlen);
	if (code < 0)
		return code;
	client_copy_msg(code_name, name, nlen < 32 ? nlen : 32);
	mlen = strlen(msg);
	snprintf(msg + mlen, CLIENT_MSG_MAX - mlen, " (gorod's code %.32s)", code_name);
	return -EPROTO;
}

/* A notification from gorod. The one defined, [2, "refused", [code,
 * message]], comes first on a connection gorod will not serve (a per-user
 * limit): the connection fails with that code and message. Others are
 * ignored, as the spec says. Returns 0 or the connection's error. */
static int notice(goro_client *c, const struct proto_msg *m)
{
	char msg[CLIENT_MSG_MAX];
	int err;

	if (!proto_str_eq(m->method, m->method_len, "refused") ||
	    m->params.via.array.size != 2)
		return 0;
	err = reply_error(&m->params, msg);
	if (err == 0)
		return 0;
	return client_fail(c, err, "%s", msg);
}

/* Handles one message from gorod. Returns 1 for a reply handled, 0 for a
 * message ignored (a notification), or the connection's error. */
static int dispatch_one(goro_client *c, const char *frame, size_t len)
{
	struct proto_msg m;
	struct goro_reply r;
	struct client_pending p;
	char msg[CLIENT_MSG_MAX] = "";
	const char *why;
	ssize_t i;
	int err = 0;

	if (proto_decode(&c->unp, frame, len, &m, &why) < 0)
		return client_fail(c, -EPROTO, "gorod sent a malformed message: %s", why);
	if (m.type == PROTO_NOTIFY)
		return notice(c, &m);
	if (m.type == PROTO_REQUEST)
		return client_fail(c, -EPROTO, "gorod sent a request, which clients do not serve");
	i = pending_find(c, m.msgid);
	if (i < 0)
		return client_fail(c, -EPROTO, "gorod answered msgid %" PRIu32
				   ", which is not in flight", m.msgid);
	memset(&r, 0, sizeof r);
	if (m.error.type != MSGPACK_OBJECT_NIL) {
		err = reply_error(&m.error, msg);
		if (err == 0)
			return client_fail(c, -EPROTO, "gorod sent a malformed error for %s: "
					   "it must be [code, message]",
					   proto_methods[c->pend[i].method].name);
	} else if ((err = client_parse(c->pend[i].method, &m.result, &r)) == -EPROTO) {
		return client_fail(c, -EPROTO, "gorod sent a malformed result for %s: "
				   "it must be %s", proto_methods[c->pend[i].method].name,
				   proto_methods[c->pend[i].method].result);
	} else if (err < 0) {
		snprintf(msg, sizeof msg, "out of memory reading the result");
	}
	p = pending_take(c, (size_t)i);
	deliver(c, &p, err, &r, msg);
	client_reply_free(&r);
	return 1;
}

/* Dispatches every complete message in the input buffer. Returns how many
 * replies it handled, or the connection's error. */
static int in_dispatch(goro_client *c)
{
	int handled = 0;

	while (!c->broken && !c->close_pending && c->in_off < c->in_len) {
		const char *frame = c->in + c->in_off;
		ssize_t n = proto_frame_check(frame, c->in_len - c->in_off, PROTO_MAX_MESSAGE);
		int r;

		if (n == 0)
			break;
		if (n == -EMSGSIZE)
			return client_fail(c, -EPROTO, "gorod sent a message over %u bytes",
					   PROTO_MAX_MESSAGE);
		if (n < 0)
			return client_fail(c, -EPROTO, "gorod sent bytes that are not msgpack, "
					   "or nest deeper than %d", PROTO_MAX_DEPTH);
		c->in_off += (size_t)n;
		r = dispatch_one(c, frame, (size_t)n);
		if (r < 0)
			return r;
		handled += r;
	}
	return c->broken ? c->broken : handled;
}

/* Waits until the socket is readable, or writable while output is queued. */
static int wait_fd(goro_client *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	if (c->out_off < c->out.size)
		p.events |= POLLOUT;
	while (poll(&p, 1, -1) < 0) {
		int e = errno;

		if (e != EINTR)
			return client_fail(c, -e, "poll: %s", goro_strerror(-e));
	}
	return 0;
}

/* Writes what is queued and reads and dispatches replies until done(c,
 * arg) holds (checked first), the connection fails (its error) or a
 * callback closes c (-ECANCELED). Blocks in recv(2) or poll(2); see the
 * top of this file for why there is no deadline here. */
static int client_run(goro_client *c, bool (*done)(const goro_client *, const void *),
		      const void *arg)
{
	for (;;) {
		ssize_t n;
		int w;

		if (c->close_pending)
			return -ECANCELED;
		if (done(c, arg))
			return 0;
		if (c->broken)
			return c->broken;
		w = out_write(c);
		if (w < 0 && w != -EAGAIN)
			continue;
		n = w == 0 && !c->nonblock ? in_read(c, true) : -EAGAIN;
		if (n == -EAGAIN) {
			if (wait_fd(c) < 0)
				continue;
			n = in_read(c, false);
		}
		if (n > 0)
			in_dispatch(c);
	}
}

/* If a callback asked to close c, closes it now that none runs. Returns ret. */
static int leave(goro_client *c, int ret)
{
	if (c->close_pending && c->dispatching == 0)
		client_free(c);
	return ret;
}

static bool wait_done(const goro_client *c, const void *arg)
{
	return ((const struct client_wait *)arg)->done;
}

int client_wait(goro_client *c, struct client_wait *w)
{
	client_run(c, wait_done, w);
	if (c->close_pending) {
		client_free(c); /* fails w with -ECANCELED unless it is done */
		return w->err;
	}
	if (w->err < 0)
		client_error(c, w->err, "%s", w->msg);
	return w->err;
}

/* ---- goro.h: deferred errors, the non-blocking interface, closing --------------- */

static bool synced(const goro_client *c, const void *arg)
{
	uint64_t seq = *(const uint64_t *)arg;

	for (size_t i = 0; i < c->npend; i++)
		if (c->pend[i].seq <= seq)
			return false;
	return true;
}

GORO_EXPORT int goro_sync(goro_client *c)
{
	uint64_t seq;

	if (!c)
		return -EINVAL;
	seq = c->seq;
	if (c->dispatching)
		return client_error(c, -EDEADLK, "goro_sync cannot run inside a reply callback");
	client_run(c, synced, &seq);
	if (c->close_pending) {
		client_free(c);
		return -ECANCELED;
	}
	if (c->deferred_err)
		return take_deferred(c);
	return c->broken ? broken(c) : 0;
}

GORO_EXPORT int goro_deferred_error(goro_client *c)
{
	return c ? take_deferred(c) : -EINVAL;
}

GORO_EXPORT int goro_flush(goro_client *c)
{
	if (!c)
		return -EINVAL;
	if (c->broken)
		return broken(c);
	return leave(c, out_write(c));
}

GORO_EXPORT bool goro_want_write(const goro_client *c)
{
	return c && !c->broken && c->out_off < c->out.size;
}

GORO_EXPORT int goro_process(goro_client *c)
{
	int handled = 0;

	if (!c)
		return -EINVAL;
	if (c->dispatching)
		return client_error(c, -EDEADLK, "goro_process cannot run inside a reply callback");
	if (c->broken)
		return broken(c);
	/* Until the socket is drained, so that edge-triggered loops work. */
	while (!c->close_pending) {
		ssize_t n = in_read(c, false);
		int r;

		if (n == -EAGAIN)
			break;
		if (n < 0)
			return leave(c, (int)n);
		r = in_dispatch(c);
		if (r < 0)
			return leave(c, r);
		handled += r;
	}
	return leave(c, handled);
}

/* Writes what is still queued (deferred releases above all: a session
 * that ends holding a lock marks its next owner's grant owner_died),
 * waiting at most CLOSE_DRAIN_MS for the socket. */
static void drain(goro_client *c)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!c->broken && out_write(c) == -EAGAIN) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		long left;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = CLOSE_DRAIN_MS - ((t.tv_sec - t0.tv_sec) * 1000 +
					 (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) == 0)
			break;
	}
}

static void client_free(goro_client *c)
{
	drain(c);
	client_fail(c, -ECANCELED, "the client was closed");
	close(c->fd);
	msgpack_sbuffer_destroy(&c->out);
	msgpack_unpacked_destroy(&c->unp);
	free(c->in);
	free(c->pend);
	free(c);
}

GORO_EXPORT void goro_close(goro_client *c)
{
	if (!c)
		return;
	if (c->dispatching) {
		c->close_pending = true;
		return;
	}
	client_free(c);
}
