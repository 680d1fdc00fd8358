/* dispatch.c: requests to handlers, driven by the method table of
 * proto/methods.h. Each handler checks its params (everything from the
 * socket is untrusted: a wrong type or an out-of-range value is an EINVAL
 * reply that says what was wrong), then acts under names_lock. A request
 * that must wait is queued there and then handed to its own goroutine
 * (wait.c); everything else is answered inline. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quota.h"

typedef void (*handler)(struct session *s, const struct proto_msg *m);

static const handler handlers[PROTO_M_COUNT] = {
#define HANDLER_ROW_(id, name, flags, params, result, summary) rpc_##id,
	PROTO_METHODS(HANDLER_ROW_)
#undef HANDLER_ROW_
};

void reply_err(struct session *s, const struct proto_msg *m, int code, const char *why)
{
	session_reply(s, m->msgid, code, why, NULL, NULL, false);
}

static void pack_count(msgpack_packer *pk, void *arg)
{
	msgpack_pack_map(pk, 1);
	proto_pack_kv_i64(pk, "count", *(int64_t *)arg);
}

static void pack_grant(msgpack_packer *pk, void *arg)
{
	struct nwait *nw = arg;

	msgpack_pack_map(pk, 2);
	proto_pack_kv_u64(pk, "token", nw->token);
	proto_pack_kv_bool(pk, "owner_died", nw->owner_died);
}

void dispatch(struct session *s, const struct proto_msg *m)
{
	int id = proto_method_find(m->method, m->method_len), rc;
	char why[PROTO_MAX_NAME + 64];

	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	if (id < 0) {
		int len = m->method_len > 64 ? 64 : (int)m->method_len;
		snprintf(why, sizeof why, "unknown method '%.*s'", len, m->method);
		reply_err(s, m, -ENOSYS, why);
		return;
	}
	/* A request that may wait counts for its user until answered; past
	 * requests-per-user it is refused (quota.c: the others never are). */
	if ((rc = quota_request_begin(s, id, why, sizeof why)) < 0) {
		reply_err(s, m, rc, why);
		return;
	}
	handlers[id](s, m);
	quota_request_end(s, id);
}

/* ---- params ------------------------------------------------------------------ */

/* Reads [name, ...] and the options map at index first_opt. Replies and
 * returns false on a bad param. */
static bool get_name_opts(struct session *s, const struct proto_msg *m, struct args *a,
			  uint32_t first_opt, const char *const *allowed,
			  const msgpack_object **opts)
{
	const char *why = NULL;

	memset(a, 0, sizeof *a);
	a->timeout_ms = -1;
	if (proto_get_name(proto_param(&m->params, 0), &a->name, &a->name_len, &why) < 0 ||
	    proto_options(&m->params, first_opt, allowed, opts, &why) < 0 ||
	    proto_get_timeout(*opts, &a->timeout_ms, &why) < 0) {
		reply_err(s, m, -EINVAL, why);
		return false;
	}
	return true;
}

static bool opt_bool(struct session *s, const struct proto_msg *m, const msgpack_object *opts,
		     const char *key, bool *v)
{
	const msgpack_object *o = proto_opt(opts, key);
	char why[80];

	*v = false;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return true;
	if (proto_get_bool(o, v) == 0)
		return true;
	snprintf(why, sizeof why, "option %s must be true or false", key);
	reply_err(s, m, -EINVAL, why);
	return false;
}

/* An optional integer option in [lo, hi]; `def` when absent. */
static bool opt_int(struct session *s, const struct proto_msg *m, const msgpack_object *opts,
		    const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *v)
{
	const msgpack_object *o = proto_opt(opts, key);
	char why[96];

	*v = def;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return true;
	if (proto_get_i64(o, v) == 0 && *v >= lo && *v <= hi)
		return true;
	snprintf(why, sizeof why, "option %s must be an integer from %lld to %lld", key,
		 (long long)lo, (long long)hi);
	reply_err(s, m, -EINVAL, why);
	return false;
}

/* ---- requests that may wait ------------------------------------------------- */

static const char *wait_error(int method, int rc)
{
	switch (rc) {
	case -EBUSY:
		return method == PROTO_M_sem_acquire ? "the semaphore has no free units"
						      : "the mutex is held";
	case -EDEADLK:
		return "waiting would deadlock: a session this one waits for waits for it";
	case -ETIMEDOUT:
		return "timed out";
	case GORO_ELOST:
		return "the WaitGroup's counter was held by a session that ended: that work will not finish";
	default:
		return NULL;
	}
}

/* Runs op for a request that may wait: answers now, or queues it and
 * starts its goroutine (which answers later). */
static void run_waitable(struct session *s, const struct proto_msg *m, int method,
			 const struct args *a, int (*op)(struct req *))
{
	struct req *r = calloc(1, sizeof *r);
	char why[256];
	int rc;

	if (!r) {
		reply_err(s, m, -ENOMEM, NULL);
		return;
	}
	r->s = s;
	r->msgid = m->msgid;
	r->method = method;
	r->a = *a;
	memcpy(r->name, a->name, a->name_len);
	r->name[a->name_len] = '\0';
	r->a.name = r->name;
	r->deadline = a->timeout_ms < 0 ? RT_FOREVER : rt_deadline_ms(a->timeout_ms);

	rt_mutex_lock_nocancel(&names_lock);
	if (s->nreqs >= PROTO_MAX_INFLIGHT) {
		rt_mutex_unlock(&names_lock);
		free(r);
		reply_err(s, m, -EAGAIN, "too many requests waiting on this connection (limit 1024)");
		return;
	}
	if (method != PROTO_M_wg_wait &&
	    (rc = quota_name_check(s, method == PROTO_M_sem_acquire ? PRIM_SEM : PRIM_MUTEX,
				   a->name, a->name_len, why, sizeof why)) < 0) {
		rt_mutex_unlock(&names_lock);
		free(r);
		reply_err(s, m, rc, why);
		return;
	}
	rc = op(r);
	if (rc == 1) {
		rc = req_start_wait(r);
		rt_mutex_unlock(&names_lock);
		if (rc == 0)
			return; /* its goroutine owns r and answers */
	} else {
		rt_mutex_unlock(&names_lock);
	}
	if (rc < 0)
		reply_err(s, m, rc, wait_error(method, rc));
	else
		session_reply(s, m->msgid, 0, NULL,
			      method == PROTO_M_wg_wait ? nwg_pack_wait : pack_grant, &r->nw, false);
	free(r);
}

/* ---- handlers ----------------------------------------------------------------- */

static void pack_hello(msgpack_packer *pk, void *arg)
{
	struct session *s = arg;

	msgpack_pack_map(pk, 5);
	proto_pack_kv_str(pk, "version", GOROD_VERSION);
	proto_pack_kv_i64(pk, "protocol", PROTO_VERSION);
	proto_pack_kv_i64(pk, "max_message", PROTO_MAX_MESSAGE);
	proto_pack_kv_i64(pk, "maxprocs", rt_maxprocs(0));
	proto_pack_kv_u64(pk, "session", s->id);
}

void rpc_hello(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "client", NULL };
	const msgpack_object *opts, *c;
	const char *why = NULL, *name;
	size_t len;

	if (proto_options(&m->params, 0, allowed, &opts, &why) < 0) {
		reply_err(s, m, -EINVAL, why);
		return;
	}
	if ((c = proto_opt(opts, "client")) && c->type != MSGPACK_OBJECT_NIL) {
		if (proto_get_str(c, &name, &len) < 0) {
			reply_err(s, m, -EINVAL, "client must be a string");
			return;
		}
		rt_mutex_lock_nocancel(&names_lock);
		if (len >= sizeof s->client)
			len = sizeof s->client - 1;
		for (size_t i = 0; i < len; i++) /* printable, for logs and stats */
			s->client[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
		s->client[len] = '\0';
		rt_mutex_unlock(&names_lock);
	}
	session_reply(s, m->msgid, 0, NULL, pack_hello, s, false);
}

static void wg_change(struct session *s, const struct proto_msg *m, struct args *a)
{
	char why[256];
	int64_t count = 0;
	int rc;

	rt_mutex_lock_nocancel(&names_lock);
	/* Only a count added may make a name: done is never refused. */
	rc = a->delta > 0 ? quota_name_check(s, PRIM_WG, a->name, a->name_len, why, sizeof why) : 0;
	if (rc == 0)
		rc = nwg_add(s, a, &count);
	rt_mutex_unlock(&names_lock);
	if (rc == -EAGAIN) {
		reply_err(s, m, rc, why);
		return;
	}
	if (rc == GORO_ENEGATIVE)
		reply_err(s, m, rc, "sync: negative WaitGroup counter (the counter is unchanged)");
	else if (rc == -ERANGE)
		reply_err(s, m, rc, "the WaitGroup counter would pass 2147483647");
	else if (rc < 0)
		reply_err(s, m, rc, NULL);
	else
		session_reply(s, m->msgid, 0, NULL, pack_count, &count, false);
}

void rpc_wg_add(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "lease", NULL };
	const msgpack_object *opts;
	struct args a;

	if (!get_name_opts(s, m, &a, 2, allowed, &opts) || !opt_bool(s, m, opts, "lease", &a.lease))
		return;
	if (proto_get_i64(proto_param(&m->params, 1), &a.delta) < 0 ||
	    a.delta < -(int64_t)INT32_MAX || a.delta > INT32_MAX) {
		reply_err(s, m, -EINVAL, "delta must be an integer from -2147483647 to 2147483647");
		return;
	}
	wg_change(s, m, &a);
}

void rpc_wg_done(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { NULL };
	const msgpack_object *opts;
	struct args a;

	if (!get_name_opts(s, m, &a, 1, allowed, &opts))
		return;
	a.delta = -1;
	wg_change(s, m, &a);
}

void rpc_wg_wait(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "timeout_ms", NULL };
	const msgpack_object *opts;
	struct args a;

	if (get_name_opts(s, m, &a, 1, allowed, &opts))
		run_waitable(s, m, PROTO_M_wg_wait, &a, nwg_wait);
}

void rpc_mutex_lock(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "mode", "timeout_ms", "try", NULL };
	const msgpack_object *opts, *mode;
	struct args a;
	const char *ms;
	size_t mlen;

	if (!get_name_opts(s, m, &a, 1, allowed, &opts) || !opt_bool(s, m, opts, "try", &a.try_))
		return;
	a.write = true;
	if ((mode = proto_opt(opts, "mode")) && mode->type != MSGPACK_OBJECT_NIL) {
		if (proto_get_str(mode, &ms, &mlen) < 0 ||
		    !(proto_str_eq(ms, mlen, "w") || proto_str_eq(ms, mlen, "r"))) {
			reply_err(s, m, -EINVAL, "mode must be \"w\" (write) or \"r\" (read)");
			return;
		}
		a.write = ms[0] == 'w';
	}
	run_waitable(s, m, PROTO_M_mutex_lock, &a, nmutex_lock);
}

static bool get_token(struct session *s, const struct proto_msg *m, const msgpack_object *opts,
		      struct args *a)
{
	int64_t t;

	if (!opt_int(s, m, opts, "token", 0, INT64_MAX, 0, &t))
		return false;
	a->token = (uint64_t)t;
	return true;
}

/* mutex.unlock and sem.release: [name, {token?}], the release itself under
 * names_lock; `what` names the primitive in the error message. */
static void release_req(struct session *s, const struct proto_msg *m,
			int (*release)(struct session *, const struct args *), const char *what)
{
	static const char *const allowed[] = { "token", NULL };
	const msgpack_object *opts;
	struct args a;
	char why[96];
	int rc;

	if (!get_name_opts(s, m, &a, 1, allowed, &opts) || !get_token(s, m, opts, &a))
		return;
	rt_mutex_lock_nocancel(&names_lock);
	rc = release(s, &a);
	rt_mutex_unlock(&names_lock);
	if (rc < 0) {
		if (a.token)
			snprintf(why, sizeof why, "no grant of this %s has that token", what);
		else
			snprintf(why, sizeof why, "this session holds no grant of the %s", what);
		reply_err(s, m, rc, why);
	} else {
		session_reply(s, m->msgid, 0, NULL, NULL, NULL, false);
	}
}

void rpc_mutex_unlock(struct session *s, const struct proto_msg *m)
{
	release_req(s, m, nmutex_unlock, "mutex");
}

void rpc_sem_acquire(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "capacity", "n", "timeout_ms", "try", NULL };
	const msgpack_object *opts;
	struct args a;
	int64_t cap;
	char why[160];

	if (!get_name_opts(s, m, &a, 1, allowed, &opts) || !opt_bool(s, m, opts, "try", &a.try_) ||
	    !opt_int(s, m, opts, "capacity", 1, INT32_MAX, 0, &a.capacity) ||
	    !opt_int(s, m, opts, "n", 1, INT32_MAX, 1, &a.n))
		return;
	rt_mutex_lock_nocancel(&names_lock);
	cap = nsem_capacity(a.name, a.name_len);
	rt_mutex_unlock(&names_lock);
	if (cap && a.capacity && a.capacity != cap) {
		snprintf(why, sizeof why, "semaphore '%.*s' has capacity %lld, not %lld",
			 (int)a.name_len, a.name, (long long)cap, (long long)a.capacity);
		reply_err(s, m, -EINVAL, why);
		return;
	}
	if (a.n > (cap ? cap : a.capacity ? a.capacity : 1)) {
		reply_err(s, m, -EINVAL, "n is larger than the semaphore's capacity");
		return;
	}
	run_waitable(s, m, PROTO_M_sem_acquire, &a, nsem_acquire);
}

void rpc_sem_release(struct session *s, const struct proto_msg *m)
{
	release_req(s, m, nsem_release, "semaphore");
}

void rpc_stats(struct session *s, const struct proto_msg *m)
{
	if (m->params.via.array.size != 0) {
		reply_err(s, m, -EINVAL, "stats takes no params");
		return;
	}
	session_reply(s, m->msgid, 0, NULL, stats_pack, NULL, false);
}

struct maxprocs_result {
	int now, previous;
};

static void pack_maxprocs(msgpack_packer *pk, void *arg)
{
	struct maxprocs_result *r = arg;

	msgpack_pack_map(pk, 2);
	proto_pack_kv_i64(pk, "maxprocs", r->now);
	proto_pack_kv_i64(pk, "previous", r->previous);
}

void rpc_maxprocs(struct session *s, const struct proto_msg *m)
{
	const msgpack_object *p = proto_param(&m->params, 0);
	struct maxprocs_result r;
	int64_t n = 0;

	if (m->params.via.array.size > 1 ||
	    (p && p->type != MSGPACK_OBJECT_NIL &&
	     (proto_get_i64(p, &n) < 0 || n < 1 || n > RT_MAXPROCS_LIMIT))) {
		reply_err(s, m, -EINVAL, "maxprocs takes one optional integer from 1 to 256");
		return;
	}
	if (n > 0 && s->uid != 0 && s->uid != geteuid()) {
		reply_err(s, m, -EPERM, "only root or gorod's own user may change maxprocs");
		return;
	}
	r.now = r.previous = rt_maxprocs(0);
	if (n > 0) {
		r.previous = rt_maxprocs((int)n);
		r.now = (int)n;
	}
	session_reply(s, m->msgid, 0, NULL, pack_maxprocs, &r, false);
}
