/* calls.c: gorod's methods as C functions (goro/goro.h).
 *
 * Each method of proto/methods.h has a packer here (the C arguments as the
 * params array of PROTOCOL.md) and a parser (the result as struct
 * goro_reply), gathered in a table generated from PROTO_METHODS: a method
 * added to the protocol does not build until it has both. Options are
 * sent only when they differ from gorod's defaults, so most requests carry
 * no options map at all.
 *
 * The public functions are thin: each fills a struct client_call, which
 * check() holds against the method's rules (names, flags, ranges: refused
 * here with a sentence, before anything is sent), then waits for the reply
 * (client_call_wait()) or queues the request (client_call_queue()). A
 * request that would not fit in one message (PROTO_MAX_MESSAGE) is
 * refused here too, since gorod would close the connection for it.
 *
 * The task methods' packers, parsers and public calls (leaks among them)
 * are in tasks.c; they use the table and the requests of this file. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* What each method takes beyond its params; unlisted: nothing. */
static const struct rule {
	bool named;     /* a name, 1..PROTO_MAX_NAME bytes */
	bool task;      /* a task id, 1 or more */
	unsigned flags; /* the GORO_* flags it takes */
} rules[PROTO_M_COUNT] = {
	[PROTO_M_wg_add] = { true, false, GORO_LEASE },
	[PROTO_M_wg_done] = { true, false, 0 },
	[PROTO_M_wg_wait] = { true, false, 0 },
	[PROTO_M_mutex_lock] = { true, false, GORO_TRY },
	[PROTO_M_mutex_unlock] = { true, false, GORO_DEFER },
	[PROTO_M_sem_acquire] = { true, false, GORO_TRY },
	[PROTO_M_sem_release] = { true, false, GORO_DEFER },
	[PROTO_M_wg_status] = { true, false, 0 },
	[PROTO_M_wait] = { false, true, 0 },
	[PROTO_M_kill] = { false, true, 0 },
	[PROTO_M_pause] = { false, true, 0 },
	[PROTO_M_resume] = { false, true, 0 },
	[PROTO_M_logs] = { false, true, 0 },
	[PROTO_M_logs_read] = { false, true, 0 },
};

/* ---- params ------------------------------------------------------------------ */

/* [name] or [name, {nopts options}]: the caller packs the options. */
static void pack_named(msgpack_packer *pk, const struct client_call *a, uint32_t nopts)
{
	msgpack_pack_array(pk, nopts ? 2 : 1);
	proto_pack_str(pk, a->name);
	if (nopts)
		msgpack_pack_map(pk, nopts);
}

/* [{client}] or [] */
void client_pack_hello(msgpack_packer *pk, const struct client_call *a)
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
void client_pack_wg_add(msgpack_packer *pk, const struct client_call *a)
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
void client_pack_wg_done(msgpack_packer *pk, const struct client_call *a)
{
	pack_named(pk, a, 0);
}

/* [name, {timeout_ms?}] */
void client_pack_wg_wait(msgpack_packer *pk, const struct client_call *a)
{
	bool timeout = a->timeout_ms >= 0;

	pack_named(pk, a, timeout);
	if (timeout)
		proto_pack_kv_i64(pk, "timeout_ms", a->timeout_ms);
}

/* [name, {mode?, timeout_ms?, try?}] */
void client_pack_mutex_lock(msgpack_packer *pk, const struct client_call *a)
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
void client_pack_mutex_unlock(msgpack_packer *pk, const struct client_call *a)
{
	pack_named(pk, a, a->token != 0);
	if (a->token)
		proto_pack_kv_u64(pk, "token", a->token);
}

/* [name, {capacity?, n?, timeout_ms?, try?}] */
void client_pack_sem_acquire(msgpack_packer *pk, const struct client_call *a)
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
void client_pack_sem_release(msgpack_packer *pk, const struct client_call *a)
{
	client_pack_mutex_unlock(pk, a);
}

/* [] */
void client_pack_stats(msgpack_packer *pk, const struct client_call *a)
{
	msgpack_pack_array(pk, 0);
}

/* [n?] */
void client_pack_maxprocs(msgpack_packer *pk, const struct client_call *a)
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
int client_parse_hello(const msgpack_object *res, struct goro_reply *r)
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
int client_parse_wg_add(const msgpack_object *res, struct goro_reply *r)
{
	if (!is_map(res) || get_int(res, "count", 0, INT64_MAX, &r->count) < 0)
		return -EPROTO;
	return 0;
}

int client_parse_wg_done(const msgpack_object *res, struct goro_reply *r)
{
	return client_parse_wg_add(res, r);
}

/* {round?}: the round's figures in r->wg (a gorod older than tasks sends
 * {}: then they are 0). */
int client_parse_wg_wait(const msgpack_object *res, struct goro_reply *r)
{
	const msgpack_object *round;
	struct goro_wg_status *st;
	int err;

	if (!is_map(res))
		return -EPROTO;
	st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	round = proto_opt(res, "round");
	if (round && (err = client_parse_round(round, st)) < 0) {
		free(st);
		return err;
	}
	r->wg = st;
	return 0;
}

/* {token, owner_died} */
int client_parse_mutex_lock(const msgpack_object *res, struct goro_reply *r)
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

int client_parse_mutex_unlock(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

int client_parse_sem_acquire(const msgpack_object *res, struct goro_reply *r)
{
	return client_parse_mutex_lock(res, r);
}

int client_parse_sem_release(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

/* a map, handed over as JSON text */
int client_parse_stats(const msgpack_object *res, struct goro_reply *r)
{
	if (!is_map(res))
		return -EPROTO;
	r->json = client_json(res);
	return r->json ? 0 : -ENOMEM;
}

/* {maxprocs, previous} */
int client_parse_maxprocs(const msgpack_object *res, struct goro_reply *r)
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
	void (*pack)(msgpack_packer *pk, const struct client_call *a);
	int (*parse)(const msgpack_object *res, struct goro_reply *r);
} ops[PROTO_M_COUNT] = {
#define OPS_ROW_(id, name, flags, params, result, summary) \
	[PROTO_M_##id] = { client_pack_##id, client_parse_##id },
	PROTO_METHODS(OPS_ROW_)
#undef OPS_ROW_
};

int client_parse(enum proto_method m, const msgpack_object *result, struct goro_reply *r)
{
	return ops[m].parse(result, r);
}

void client_reply_free(struct goro_reply *r)
{
	free((char *)r->json);
	if (r->outcome)
		goro_outcome_clear(r->outcome);
	free(r->outcome);
	if (r->logs)
		free(r->logs->data);
	free(r->logs);
	if (r->wg)
		goro_outcome_clear(&r->wg->first_failure);
	free(r->wg);
	free((void *)r->tasks);
	free((void *)r->leaks);
	r->json = NULL;
	r->outcome = NULL;
	r->logs = NULL;
	r->wg = NULL;
	r->tasks = NULL;
	r->ntasks = 0;
	r->leaks = NULL;
	r->nleaks = 0;
}

/* ---- requests --------------------------------------------------------------------- */

/* Holds a against the rules of method m. Returns 0, or -EINVAL with the
 * reason as c's last error. */
static int check(goro_client *c, enum proto_method m, const struct client_call *a)
{
	const char *what = proto_methods[m].name;

	if (rules[m].named && !a->name)
		return client_error(c, -EINVAL, "%s: a name is 1 to %d bytes long",
				    what, PROTO_MAX_NAME);
	if (rules[m].named && client_check_name(c, what, a->name) < 0)
		return -EINVAL;
	if (rules[m].task && a->id == 0)
		return client_error(c, -EINVAL, "%s: task ids start at 1", what);
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

int client_check_name(goro_client *c, const char *what, const char *s)
{
	size_t len = s ? strlen(s) : 1;

	if (len == 0 || len > PROTO_MAX_NAME)
		return client_error(c, -EINVAL, "%s: a name is 1 to %d bytes long",
				    what, PROTO_MAX_NAME);
	return 0;
}

/* Whether the request just packed, out.data[mark, out.size), is one that
 * gorod takes: at most PROTO_MAX_MESSAGE bytes, and (when it carries
 * msgpack of the caller's: a func's args_msgpack) nesting no deeper than
 * PROTO_MAX_DEPTH. Returns 0, or -EMSGSIZE / -EINVAL with a sentence. */
static int check_packed(goro_client *c, enum proto_method m, const struct client_call *a,
			size_t mark)
{
	size_t len = c->out.size - mark;

	if (len > PROTO_MAX_MESSAGE)
		return client_error(c, -EMSGSIZE, "%s: the request would be %zu bytes; gorod "
				    "takes at most %u in one message", proto_methods[m].name,
				    len, PROTO_MAX_MESSAGE);
	if (a->spawn && a->spawn->args_msgpack &&
	    proto_frame_check(c->out.data + mark, len, PROTO_MAX_MESSAGE) != (ssize_t)len)
		return client_error(c, -EINVAL, "spawn: args_msgpack nests deeper than gorod "
				    "takes (%d levels in all, the request's own 4 included)",
				    PROTO_MAX_DEPTH);
	return 0;
}

/* Packs request m and registers where its reply goes. */
static int submit(goro_client *c, enum proto_method m, const struct client_call *a, bool blocking,
		  struct client_wait *w, goro_reply_fn cb, void *arg)
{
	struct client_req req;
	msgpack_packer pk;
	int err;

	err = client_begin(c, m, blocking, &pk, &req);
	if (err < 0)
		return err;
	ops[m].pack(&pk, a);
	if (!c->out_oom && (err = check_packed(c, m, a, req.mark)) < 0) {
		c->out.size = req.mark; /* taken back: never sent */
		return err;
	}
	return client_end(c, &req, w, cb, arg);
}

int client_call_wait(goro_client *c, enum proto_method m, const struct client_call *a,
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

int client_call_queue(goro_client *c, enum proto_method m, const struct client_call *a,
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
	struct client_call a = { .name = client, .timeout_ms = -1 };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_hello, &a, &r);

	if (err == 0 && out)
		*out = r.hello;
	return err;
}

GORO_EXPORT int goro_wg_add(goro_client *c, const char *name, int64_t delta,
			    unsigned flags, int64_t *count)
{
	struct client_call a = { .name = name, .n = delta, .timeout_ms = -1, .flags = flags };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wg_add, &a, &r);

	if (err == 0 && count)
		*count = r.count;
	return err;
}

GORO_EXPORT int goro_wg_done(goro_client *c, const char *name, int64_t *count)
{
	struct client_call a = { .name = name, .timeout_ms = -1 };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wg_done, &a, &r);

	if (err == 0 && count)
		*count = r.count;
	return err;
}

GORO_EXPORT int goro_wg_wait(goro_client *c, const char *name, int timeout_ms)
{
	struct client_call a = { .name = name, .timeout_ms = timeout_ms };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wg_wait, &a, &r);

	if (err == 0)
		client_reply_free(&r); /* the round: goro_wg_wait_status() */
	return err;
}

GORO_EXPORT int goro_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				int timeout_ms, unsigned flags, struct goro_grant *out)
{
	struct client_call a = { .name = name, .mode = mode, .timeout_ms = timeout_ms, .flags = flags };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_mutex_lock, &a, &r);

	if (err == 0 && out)
		*out = r.grant;
	return err;
}

/* mutex.unlock or sem.release: waited for, or with GORO_DEFER queued with
 * no one to hear its reply but the deferred error. */
static int release(goro_client *c, enum proto_method m, const char *name, uint64_t token,
		   unsigned flags)
{
	struct client_call a = { .name = name, .token = token, .timeout_ms = -1, .flags = flags };
	struct goro_reply r;

	if (flags & GORO_DEFER)
		return client_call_queue(c, m, &a, NULL, NULL);
	return client_call_wait(c, m, &a, &r);
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
	struct client_call a = { .name = name, .n = n, .capacity = capacity,
			  .timeout_ms = timeout_ms, .flags = flags };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_sem_acquire, &a, &r);

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
	struct client_call a = { .n = n, .timeout_ms = -1 };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_maxprocs, &a, &r);

	if (err == 0 && maxprocs)
		*maxprocs = r.maxprocs;
	if (err == 0 && previous)
		*previous = r.previous;
	return err;
}

GORO_EXPORT int goro_stats_json(goro_client *c, char **json)
{
	struct client_call a = { .timeout_ms = -1 };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_stats, &a, &r);

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
	struct client_call a = { .name = client, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_hello, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_add(goro_client *c, const char *name, int64_t delta,
				 unsigned flags, goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .n = delta, .timeout_ms = -1, .flags = flags };

	return client_call_queue(c, PROTO_M_wg_add, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_done(goro_client *c, const char *name,
				  goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_wg_done, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_wait(goro_client *c, const char *name, int timeout_ms,
				  goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .timeout_ms = timeout_ms };

	return client_call_queue(c, PROTO_M_wg_wait, &a, cb, arg);
}

GORO_EXPORT int goro_send_mutex_lock(goro_client *c, const char *name, enum goro_mode mode,
				     int timeout_ms, unsigned flags,
				     goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .mode = mode, .timeout_ms = timeout_ms, .flags = flags };

	return client_call_queue(c, PROTO_M_mutex_lock, &a, cb, arg);
}

GORO_EXPORT int goro_send_mutex_unlock(goro_client *c, const char *name, uint64_t token,
				       goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .token = token, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_mutex_unlock, &a, cb, arg);
}

GORO_EXPORT int goro_send_sem_acquire(goro_client *c, const char *name, int64_t capacity,
				      int64_t n, int timeout_ms, unsigned flags,
				      goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .n = n, .capacity = capacity,
			  .timeout_ms = timeout_ms, .flags = flags };

	return client_call_queue(c, PROTO_M_sem_acquire, &a, cb, arg);
}

GORO_EXPORT int goro_send_sem_release(goro_client *c, const char *name, uint64_t token,
				      goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .token = token, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_sem_release, &a, cb, arg);
}

GORO_EXPORT int goro_send_maxprocs(goro_client *c, int n, goro_reply_fn cb, void *arg)
{
	struct client_call a = { .n = n, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_maxprocs, &a, cb, arg);
}

GORO_EXPORT int goro_send_stats(goro_client *c, goro_reply_fn cb, void *arg)
{
	struct client_call a = { .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_stats, &a, cb, arg);
}
