/* calls.c: gorod's methods as C functions (goro/goro.h).
 *
 * Each method of proto/methods.h has a packer here (the C arguments as the
 * params array of PROTOCOL.md) and a parser (the result as struct
 * goro_reply), gathered in a table generated from PROTO_METHODS: a method
 * added to the protocol does not build until it has both. Options are
 * sent only when they differ from gorod's defaults, so most requests carry
 * no options map at all.
 *
 * The public functions are thin: each fills a struct call, which check()
 * holds against the method's rules (names, flags, ranges: refused here
 * with a sentence, before anything is sent), then waits for the reply
 * (call()) or queues the request (queue()). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One request's arguments, whatever the method. */
struct call {
	const char *name;    /* of the primitive; hello: of the client, or NULL */
	int64_t n;           /* wg.add: delta; sem.acquire: units; maxprocs: n */
	int64_t capacity;    /* sem.acquire; 0: gorod's default */
	int timeout_ms;      /* -1: none */
	enum goro_mode mode; /* mutex.lock */
	uint64_t token;      /* releases; 0: none */
	unsigned flags;      /* GORO_* */
};

/* What each method takes beyond its params; unlisted: nothing. */
static const struct rule {
	bool named;     /* a name, 1..PROTO_MAX_NAME bytes */
	unsigned flags; /* the GORO_* flags it takes */
} rules[PROTO_M_COUNT] = {
	[PROTO_M_wg_add] = { true, GORO_LEASE },
	[PROTO_M_wg_done] = { true, 0 },
	[PROTO_M_wg_wait] = { true, 0 },
	[PROTO_M_mutex_lock] = { true, GORO_TRY },
	[PROTO_M_mutex_unlock] = { true, GORO_DEFER },
	[PROTO_M_sem_acquire] = { true, GORO_TRY },
	[PROTO_M_sem_release] = { true, GORO_DEFER },
};

/* ---- params ------------------------------------------------------------------ */

/* [name] or [name, {nopts options}]: the caller packs the options. */
static void pack_named(msgpack_packer *pk, const struct call *a, uint32_t nopts)
{
	msgpack_pack_array(pk, nopts ? 2 : 1);
	proto_pack_str(pk, a->name);
	if (nopts)
		msgpack_pack_map(pk, nopts);
}

/* [{client}] or [] */
static void pack_hello(msgpack_packer *pk, const struct call *a)
{
	if (!a->name) {
		msgpack_pack_array(pk, 0);
		return;
	}
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 1);
	proto_pack_kv_str(pk, "client", a->name);
}

/* [name, delta, {lease?}] */
static void pack_wg_add(msgpack_packer *pk, const struct call *a)
{
	bool lease = a->flags & GORO_LEASE;

	msgpack_pack_array(pk, lease ? 3 : 2);
	proto_pack_str(pk, a->name);
	msgpack_pack_int64(pk, a->n);
	if (lease) {
		msgpack_pack_map(pk, 1);
		proto_pack_kv_bool(pk, "lease", true);
	}
}

/* [name] */
static void pack_wg_done(msgpack_packer *pk, const struct call *a)
{
	pack_named(pk, a, 0);
}

/* [name, {timeout_ms?}] */
static void pack_wg_wait(msgpack_packer *pk, const struct call *a)
{
	bool timeout = a->timeout_ms >= 0;

	pack_named(pk, a, timeout);
	if (timeout)
		proto_pack_kv_i64(pk, "timeout_ms", a->timeout_ms);
}

/* [name, {mode?, timeout_ms?, try?}] */
static void pack_mutex_lock(msgpack_packer *pk, const struct call *a)
{
	bool read = a->mode == GORO_READ, timeout = a->timeout_ms >= 0;
	bool try = a->flags & GORO_TRY;

	pack_named(pk, a, (uint32_t)read + timeout + try);
	if (read)
		proto_pack_kv_str(pk, "mode", "r");
	if (timeout)
		proto_pack_kv_i64(pk, "timeout_ms", a->timeout_ms);
	if (try)
		proto_pack_kv_bool(pk, "try", true);
}

/* [name, {token?}] */
static void pack_mutex_unlock(msgpack_packer *pk, const struct call *a)
{
	pack_named(pk, a, a->token != 0);
	if (a->token)
		proto_pack_kv_u64(pk, "token", a->token);
}

/* [name, {capacity?, n?, timeout_ms?, try?}] */
static void pack_sem_acquire(msgpack_packer *pk, const struct call *a)
{
	bool capacity = a->capacity > 0, n = a->n > 0, timeout = a->timeout_ms >= 0;
	bool try = a->flags & GORO_TRY;

	pack_named(pk, a, (uint32_t)capacity + n + timeout + try);
	if (capacity)
		proto_pack_kv_i64(pk, "capacity", a->capacity);
	if (n)
		proto_pack_kv_i64(pk, "n", a->n);
	if (timeout)
		proto_pack_kv_i64(pk, "timeout_ms", a->timeout_ms);
	if (try)
		proto_pack_kv_bool(pk, "try", true);
}

/* [name, {token?}] */
static void pack_sem_release(msgpack_packer *pk, const struct call *a)
{
	pack_mutex_unlock(pk, a);
}

/* [] */
static void pack_stats(msgpack_packer *pk, const struct call *a)
{
	msgpack_pack_array(pk, 0);
}

/* [n?] */
static void pack_maxprocs(msgpack_packer *pk, const struct call *a)
{
	if (a->n <= 0) {
		msgpack_pack_array(pk, 0);
		return;
	}
	msgpack_pack_array(pk, 1);
	msgpack_pack_int64(pk, a->n);
}

/* ---- results ------------------------------------------------------------------- */

/* Each parser returns 0, -EPROTO when the result does not have the shape
 * PROTOCOL.md gives (keys it does not know are ignored), or -ENOMEM. */

static bool is_map(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_MAP;
}

/* The integer at key in the map res, in [min, max]. */
static int get_int(const msgpack_object *res, const char *key, int64_t min, int64_t max,
		   int64_t *v)
{
	int64_t x;

	if (proto_get_i64(proto_opt(res, key), &x) < 0 || x < min || x > max)
		return -EPROTO;
	*v = x;
	return 0;
}

/* {version, protocol, max_message, maxprocs, session} */
static int parse_hello(const msgpack_object *res, struct goro_reply *r)
{
	struct goro_hello *h = &r->hello;
	int64_t protocol, max_message, maxprocs, session;
	const char *v;
	size_t len;

	if (!is_map(res) || proto_get_str(proto_opt(res, "version"), &v, &len) < 0 ||
	    get_int(res, "protocol", 0, INT_MAX, &protocol) < 0 ||
	    get_int(res, "max_message", 0, UINT32_MAX, &max_message) < 0 ||
	    get_int(res, "maxprocs", 0, INT_MAX, &maxprocs) < 0 ||
	    get_int(res, "session", 0, INT64_MAX, &session) < 0)
		return -EPROTO;
	if (len > sizeof h->version - 1)
		len = sizeof h->version - 1;
	memcpy(h->version, v, len);
	h->version[len] = '\0';
	h->protocol = (int)protocol;
	h->max_message = (uint32_t)max_message;
	h->maxprocs = (int)maxprocs;
	h->session = (uint64_t)session;
	return 0;
}

/* {count} */
static int parse_wg_add(const msgpack_object *res, struct goro_reply *r)
{
	if (!is_map(res) || get_int(res, "count", 0, INT64_MAX, &r->count) < 0)
		return -EPROTO;
	return 0;
}

static int parse_wg_done(const msgpack_object *res, struct goro_reply *r)
{
	return parse_wg_add(res, r);
}

/* {} */
static int parse_wg_wait(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

/* {token, owner_died} */
static int parse_mutex_lock(const msgpack_object *res, struct goro_reply *r)
{
	const msgpack_object *token;

	if (!is_map(res))
		return -EPROTO;
	token = proto_opt(res, "token");
	if (!token || token->type != MSGPACK_OBJECT_POSITIVE_INTEGER || token->via.u64 == 0 ||
	    proto_get_bool(proto_opt(res, "owner_died"), &r->grant.owner_died) < 0)
		return -EPROTO;
	r->grant.token = token->via.u64;
	return 0;
}

static int parse_mutex_unlock(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

static int parse_sem_acquire(const msgpack_object *res, struct goro_reply *r)
{
	return parse_mutex_lock(res, r);
}

static int parse_sem_release(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

/* a map, handed over as JSON text */
static int parse_stats(const msgpack_object *res, struct goro_reply *r)
{
	if (!is_map(res))
		return -EPROTO;
	r->json = client_json(res);
	return r->json ? 0 : -ENOMEM;
}

/* {maxprocs, previous} */
static int parse_maxprocs(const msgpack_object *res, struct goro_reply *r)
{
	int64_t now, before;

	if (!is_map(res) || get_int(res, "maxprocs", 0, INT_MAX, &now) < 0 ||
	    get_int(res, "previous", 0, INT_MAX, &before) < 0)
		return -EPROTO;
	r->maxprocs = (int)now;
	r->previous = (int)before;
	return 0;
}

static const struct method_ops {
	void (*pack)(msgpack_packer *pk, const struct call *a);
	int (*parse)(const msgpack_object *res, struct goro_reply *r);
} ops[PROTO_M_COUNT] = {
#define OPS_ROW_(id, name, flags, params, result, summary) \
	[PROTO_M_##id] = { pack_##id, parse_##id },
	PROTO_METHODS(OPS_ROW_)
#undef OPS_ROW_
};

int client_parse(enum proto_method m, const msgpack_object *result, struct goro_reply *r)
{
	return ops[m].parse(result, r);
}

/* ---- requests --------------------------------------------------------------------- */

/* Holds a against the rules of method m. Returns 0, or -EINVAL with the
 * reason as c's last error. */
static int check(goro_client *c, enum proto_method m, const struct call *a)
{
	const char *what = proto_methods[m].name;
	size_t len;

	if (rules[m].named) {
		len = a->name ? strlen(a->name) : 0;
		if (len == 0 || len > PROTO_MAX_NAME)
			return client_error(c, -EINVAL, "%s: a name is 1 to %d bytes long",
					    what, PROTO_MAX_NAME);
	}
	if (a->flags & ~rules[m].flags)
		return client_error(c, -EINVAL, "%s: flags %#x are not for this call",
				    what, a->flags & ~rules[m].flags);
	if (a->timeout_ms < -1)
		return client_error(c, -EINVAL, "%s: timeout_ms is -1 (none) or 0 to %d",
				    what, INT_MAX);
	if (a->mode != GORO_WRITE && a->mode != GORO_READ)
		return client_error(c, -EINVAL, "%s: mode is GORO_WRITE or GORO_READ", what);
	if (a->capacity < 0 || (m == PROTO_M_sem_acquire && a->n < 0))
		return client_error(c, -EINVAL, "%s: capacity and n are 0 (the default) or more",
				    what);
	return 0;
}

/* Packs request m and registers where its reply goes. */
static int submit(goro_client *c, enum proto_method m, const struct call *a, bool blocking,
		  struct client_wait *w, goro_reply_fn cb, void *arg)
{
	struct client_req req;
	msgpack_packer pk;
	int err;

	err = client_begin(c, m, blocking, &pk, &req);
	if (err < 0)
		return err;
	ops[m].pack(&pk, a);
	return client_end(c, &req, w, cb, arg);
}

/* Sends request m and waits for its reply, into *r (r->json is then the
 * caller's). Blocks: see client_wait(). */
static int call(goro_client *c, enum proto_method m, const struct call *a,
		struct goro_reply *r)
{
	struct client_wait w;
	int err;

	if (!c)
		return -EINVAL;
	err = check(c, m, a);
	if (err == 0)
		err = submit(c, m, a, true, &w, NULL, NULL);
	if (err == 0)
		err = client_wait(c, &w);
	if (err == 0)
		*r = w.reply;
	return err;
}

/* Queues request m, its reply for cb (NULL: kept only if it fails). */
static int queue(goro_client *c, enum proto_method m, const struct call *a,
		 goro_reply_fn cb, void *arg)
{
	int err;

	if (!c)
		return -EINVAL;
	err = check(c, m, a);
	if (err < 0)
		return err;
	return submit(c, m, a, false, NULL, cb, arg);
}

/* ---- goro.h: blocking calls ----------------------------------------------------- */

GORO_EXPORT int goro_hello(goro_client *c, const char *client, struct goro_hello *out)
{
	struct call a = { .name = client, .timeout_ms = -1 };
	struct goro_reply r;
	int err = call(c, PROTO_M_hello, &a, &r);

	if (err == 0 && out)
		*out = r.hello;
	return err;
}

GORO_EXPORT int goro_wg_add(goro_client *c, const char *name, int64_t delta,
			    unsigned flags, int64_t *count)
{
	struct call a = { .name = name, .n = delta, .timeout_ms = -1, .flags = flags };
	struct goro_reply r;
	int err = call(c, PROTO_M_wg_add, &a, &r);

	if (err == 0 && count)
		*count = r.count;
	return err;
}

GORO_EXPORT int goro_wg_done(goro_client *c, const char *name, int64_t *count)
{
	struct call a = { .name = name, .timeout_ms = -1 };
	struct goro_reply r;
	int err = call(c, PROTO_M_wg_done, &a, &r);

	if (err == 0 && count)
		*count = r.count;
	return err;
}

GORO_EXPORT int goro_wg_wait(goro_client *c, const char *name, int timeout_ms)
{
	struct call a = { .name = name, .timeout_ms = timeout_ms };
	struct goro_reply r;

	return call(c, PROTO_M_wg_wait, &a, &r);
}

GORO_EXPORT int goro_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				int timeout_ms, unsigned flags, struct goro_grant *out)
{
	struct call a = { .name = name, .mode = mode, .timeout_ms = timeout_ms, .flags = flags };
	struct goro_reply r;
	int err = call(c, PROTO_M_mutex_lock, &a, &r);

	if (err == 0 && out)
		*out = r.grant;
	return err;
}

/* mutex.unlock or sem.release: waited for, or with GORO_DEFER queued with
 * no one to hear its reply but the deferred error. */
static int release(goro_client *c, enum proto_method m, const char *name, uint64_t token,
		   unsigned flags)
{
	struct call a = { .name = name, .token = token, .timeout_ms = -1, .flags = flags };
	struct goro_reply r;

	if (flags & GORO_DEFER)
		return queue(c, m, &a, NULL, NULL);
	return call(c, m, &a, &r);
}

GORO_EXPORT int goro_mutex_unlock(goro_client *c, const char *name, uint64_t token,
				  unsigned flags)
{
	return release(c, PROTO_M_mutex_unlock, name, token, flags);
}

GORO_EXPORT int goro_sem_acquire(goro_client *c, const char *name, int64_t capacity,
				 int64_t n, int timeout_ms, unsigned flags,
				 struct goro_grant *out)
{
	struct call a = { .name = name, .n = n, .capacity = capacity,
			  .timeout_ms = timeout_ms, .flags = flags };
	struct goro_reply r;
	int err = call(c, PROTO_M_sem_acquire, &a, &r);

	if (err == 0 && out)
		*out = r.grant;
	return err;
}

GORO_EXPORT int goro_sem_release(goro_client *c, const char *name, uint64_t token,
				 unsigned flags)
{
	return release(c, PROTO_M_sem_release, name, token, flags);
}

GORO_EXPORT int goro_maxprocs(goro_client *c, int n, int *maxprocs, int *previous)
{
	struct call a = { .n = n, .timeout_ms = -1 };
	struct goro_reply r;
	int err = call(c, PROTO_M_maxprocs, &a, &r);

	if (err == 0 && maxprocs)
		*maxprocs = r.maxprocs;
	if (err == 0 && previous)
		*previous = r.previous;
	return err;
}

GORO_EXPORT int goro_stats_json(goro_client *c, char **json)
{
	struct call a = { .timeout_ms = -1 };
	struct goro_reply r;
	int err = call(c, PROTO_M_stats, &a, &r);

	if (err < 0)
		return err;
	if (json)
		*json = (char *)r.json;
	else
		free((char *)r.json);
	return 0;
}

/* ---- goro.h: non-blocking calls -------------------------------------------------- */

GORO_EXPORT int goro_send_hello(goro_client *c, const char *client,
				goro_reply_fn cb, void *arg)
{
	struct call a = { .name = client, .timeout_ms = -1 };

	return queue(c, PROTO_M_hello, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_add(goro_client *c, const char *name, int64_t delta,
				 unsigned flags, goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .n = delta, .timeout_ms = -1, .flags = flags };

	return queue(c, PROTO_M_wg_add, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_done(goro_client *c, const char *name,
				  goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .timeout_ms = -1 };

	return queue(c, PROTO_M_wg_done, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_wait(goro_client *c, const char *name, int timeout_ms,
				  goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .timeout_ms = timeout_ms };

	return queue(c, PROTO_M_wg_wait, &a, cb, arg);
}

GORO_EXPORT int goro_send_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				     int timeout_ms, unsigned flags,
				     goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .mode = mode, .timeout_ms = timeout_ms, .flags = flags };

	return queue(c, PROTO_M_mutex_lock, &a, cb, arg);
}

GORO_EXPORT int goro_send_mutex_unlock(goro_client *c, const char *name, uint64_t token,
				       goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .token = token, .timeout_ms = -1 };

	return queue(c, PROTO_M_mutex_unlock, &a, cb, arg);
}

GORO_EXPORT int goro_send_sem_acquire(goro_client *c, const char *name, int64_t capacity,
				      int64_t n, int timeout_ms, unsigned flags,
				      goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .n = n, .capacity = capacity,
			  .timeout_ms = timeout_ms, .flags = flags };

	return queue(c, PROTO_M_sem_acquire, &a, cb, arg);
}

GORO_EXPORT int goro_send_sem_release(goro_client *c, const char *name, uint64_t token,
				      goro_reply_fn cb, void *arg)
{
	struct call a = { .name = name, .token = token, .timeout_ms = -1 };

	return queue(c, PROTO_M_sem_release, &a, cb, arg);
}

GORO_EXPORT int goro_send_maxprocs(goro_client *c, int n, goro_reply_fn cb, void *arg)
{
	struct call a = { .n = n, .timeout_ms = -1 };

	return queue(c, PROTO_M_maxprocs, &a, cb, arg);
}

GORO_EXPORT int goro_send_stats(goro_client *c, goro_reply_fn cb, void *arg)
{
	struct call a = { .timeout_ms = -1 };

	return queue(c, PROTO_M_stats, &a, cb, arg);
}
