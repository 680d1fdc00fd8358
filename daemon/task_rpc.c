/* task_rpc.c: the task methods: spawn, wait, kill, pause, resume, ps,
 * logs, logs.read, and wg.status (PROTOCOL.md, Tasks).
 *
 * spawn checks everything it is given before anything happens (a bad
 * option is an EINVAL that names it) and copies the spec into the task
 * (one allocation for argv, envp and their strings), so that nothing the
 * client sends later can reach it. wait and logs.read may wait: such a
 * request is queued on the task and handed to a goroutine of its own, as
 * for the named primitives (wait.c), holding a reference to the task. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "task.h"

#define MAX_ARGV 65536
#define MAX_ENV 65536
#define MAX_AFTER 64
#define MSG_LEN 320 /* an error message built for one request */

/* ---- spawn ---------------------------------------------------------------------- */

static bool has_nul(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL;
}

/* Copies argv (an array of str), env (a map str -> str, or NULL) and cwd
 * into one allocation owned by t. */
static int copy_exec(struct task *t, const msgpack_object *argv, const msgpack_object *env,
		     const msgpack_object *cwd, const char **why)
{
	size_t nargv = argv->via.array.size, nenv = env ? env->via.map.size : 1;
	size_t bytes = 0, len;
	const char *p;
	char *s;

	if (nargv == 0 || nargv > MAX_ARGV) {
		*why = "argv must hold 1 to 65536 strings (the program, then its arguments)";
		return -EINVAL;
	}
	if (nenv > MAX_ENV) {
		*why = "env holds more than 65536 variables";
		return -EINVAL;
	}
	for (size_t i = 0; i < nargv; i++) {
		if (proto_get_str(&argv->via.array.ptr[i], &p, &len) < 0 || has_nul(p, len) ||
		    (i == 0 && len == 0)) {
			*why = i == 0 ? "argv[0], the program, must be a non-empty string"
				      : "argv must hold strings without NUL bytes";
			return -EINVAL;
		}
		bytes += len + 1;
	}
	if (env) {
		for (size_t i = 0; i < nenv; i++) {
			const char *k, *v;
			size_t klen, vlen;
			if (proto_get_str(&env->via.map.ptr[i].key, &k, &klen) < 0 ||
			    proto_get_str(&env->via.map.ptr[i].val, &v, &vlen) < 0 || klen == 0 ||
			    has_nul(k, klen) || has_nul(v, vlen) || memchr(k, '=', klen)) {
				*why = "env must map names (non-empty, without '=' or NUL) to strings";
				return -EINVAL;
			}
			bytes += klen + vlen + 2;
		}
	} else {
		bytes += sizeof "PATH=/usr/local/bin:/usr/bin:/bin";
	}
	if (cwd) {
		if (proto_get_str(cwd, &p, &len) < 0 || len == 0 || p[0] != '/' || has_nul(p, len) ||
		    len >= 4096) {
			*why = "cwd must be an absolute path";
			return -EINVAL;
		}
		bytes += len + 1;
	}
	t->spec = malloc((nargv + 1 + nenv + 1) * sizeof(char *) + bytes);
	if (!t->spec)
		return -ENOMEM;
	t->argv = t->spec;
	t->envp = t->argv + nargv + 1;
	s = (char *)(t->envp + nenv + 1);
	for (size_t i = 0; i < nargv; i++) {
		proto_get_str(&argv->via.array.ptr[i], &p, &len);
		t->argv[i] = s;
		memcpy(s, p, len);
		s[len] = '\0';
		s += len + 1;
	}
	t->argv[nargv] = NULL;
	if (env) {
		for (size_t i = 0; i < nenv; i++) {
			const char *k, *v;
			size_t klen, vlen;
			proto_get_str(&env->via.map.ptr[i].key, &k, &klen);
			proto_get_str(&env->via.map.ptr[i].val, &v, &vlen);
			t->envp[i] = s;
			memcpy(s, k, klen);
			s[klen] = '=';
			memcpy(s + klen + 1, v, vlen);
			s[klen + 1 + vlen] = '\0';
			s += klen + vlen + 2;
		}
	} else {
		t->envp[0] = strcpy(s, "PATH=/usr/local/bin:/usr/bin:/bin");
		s += strlen(s) + 1;
	}
	t->envp[nenv] = NULL;
	if (cwd) {
		proto_get_str(cwd, &p, &len);
		t->cwd = s;
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return 0;
}

static char *dup_n(const char *p, size_t len)
{
	char *s = malloc(len + 1);

	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* A name-like option (1..255 bytes, no NUL) into p and len. */
static int opt_name(const msgpack_object *opts, const char *key, const char **p, size_t *len,
		    const char **why, char *msg)
{
	const msgpack_object *o = proto_opt(opts, key);

	*p = NULL;
	*len = 0;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (proto_get_name(o, p, len, why) < 0) {
		snprintf(msg, MSG_LEN, "%s must be a name: 1 to 255 bytes, no NUL", key);
		*why = msg;
		return -EINVAL;
	}
	return 0;
}

static int opt_ms(const msgpack_object *opts, const char *key, int64_t *v, const char **why,
		  char *msg)
{
	const msgpack_object *o = proto_opt(opts, key);

	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (proto_get_i64(o, v) < 0 || *v < 0 || *v > PROTO_MAX_TIMEOUT_MS) {
		snprintf(msg, MSG_LEN, "%s must be an integer from 0 to 2147483647 (ms)", key);
		*why = msg;
		return -EINVAL;
	}
	return 0;
}

/* The options of a spawn, into t and sr. */
static int spawn_opts(struct session *s, const msgpack_object *opts, struct task *t,
		      struct spawn_req *sr, const char **why, char *msg)
{
	const msgpack_object *o;
	const char *p;
	size_t len;
	int64_t v;
	int rc;

	if ((rc = opt_name(opts, "name", &p, &len, why, msg)) < 0 ||
	    (p && !(t->name = dup_n(p, len))) ||
	    (rc = opt_name(opts, "key", &p, &len, why, msg)) < 0 ||
	    /* Keys are per user: one user cannot block another's spawns. */
	    (p && asprintf(&t->key, "%u:%.*s", (unsigned)s->uid, (int)len, p) < 0 &&
	     (t->key = NULL, true)) ||
	    (rc = opt_name(opts, "wg", &p, &len, why, msg)) < 0 || (p && !(t->wg = dup_n(p, len))) ||
	    (rc = opt_name(opts, "lock", &sr->lock, &sr->lock_len, why, msg)) < 0 ||
	    (rc = opt_name(opts, "rlock", &sr->rlock, &sr->rlock_len, why, msg)) < 0)
		return rc < 0 ? rc : -ENOMEM;
	if (sr->lock && sr->rlock) {
		*why = "lock and rlock: a task holds its mutex one way";
		return -EINVAL;
	}
	if ((o = proto_opt(opts, "sem")) && o->type != MSGPACK_OBJECT_NIL) {
		const msgpack_object *name = o;
		if (o->type == MSGPACK_OBJECT_ARRAY) {
			if (o->via.array.size != 2 ||
			    proto_get_i64(&o->via.array.ptr[1], &sr->sem_capacity) < 0 ||
			    sr->sem_capacity < 1 || sr->sem_capacity > INT32_MAX) {
				*why = "sem must be a name or [name, capacity from 1 to 2147483647]";
				return -EINVAL;
			}
			name = &o->via.array.ptr[0];
		}
		if (proto_get_name(name, &sr->sem, &sr->sem_len, why) < 0) {
			*why = "sem must be a name or [name, capacity]";
			return -EINVAL;
		}
	}
	if ((o = proto_opt(opts, "after")) && o->type != MSGPACK_OBJECT_NIL) {
		if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > MAX_AFTER) {
			*why = "after must be an array of up to 64 task ids";
			return -EINVAL;
		}
		t->nafter = (int)o->via.array.size;
		if (t->nafter && !(t->after = malloc(t->nafter * sizeof *t->after)))
			return -ENOMEM;
		for (int i = 0; i < t->nafter; i++) {
			if (proto_get_i64(&o->via.array.ptr[i], &v) < 0 || v < 1) {
				*why = "after must hold task ids (integers from 1)";
				return -EINVAL;
			}
			t->after[i] = (uint64_t)v;
		}
	}
	if ((rc = opt_ms(opts, "timeout_ms", &t->timeout_ms, why, msg)) < 0 ||
	    (rc = opt_ms(opts, "grace_ms", &t->grace_ms, why, msg)) < 0 ||
	    (rc = opt_ms(opts, "expect_ms", &t->expect_ms, why, msg)) < 0)
		return rc;
	if ((o = proto_opt(opts, "output_max")) && o->type != MSGPACK_OBJECT_NIL) {
		if (proto_get_i64(o, &v) < 0 || v < 0 || v > task_config.output_limit) {
			snprintf(msg, MSG_LEN, "output_max must be from 0 to %lld bytes",
				 (long long)task_config.output_limit);
			*why = msg;
			return -EINVAL;
		}
		t->out[0].max = t->out[1].max = (size_t)v;
	}
	if ((o = proto_opt(opts, "scope")) && o->type != MSGPACK_OBJECT_NIL) {
		if (proto_get_str(o, &p, &len) < 0 ||
		    !(proto_str_eq(p, len, "detached") || proto_str_eq(p, len, "session"))) {
			*why = "scope must be \"detached\" or \"session\"";
			return -EINVAL;
		}
		t->session_scope = proto_str_eq(p, len, "session");
	}
	if ((o = proto_opt(opts, "on_leak")) && o->type != MSGPACK_OBJECT_NIL) {
		if (proto_get_str(o, &p, &len) < 0 ||
		    !(proto_str_eq(p, len, "flag") || proto_str_eq(p, len, "kill"))) {
			*why = "on_leak must be \"flag\" or \"kill\"";
			return -EINVAL;
		}
		t->on_leak_kill = proto_str_eq(p, len, "kill");
	}
	(void)s;
	return 0;
}

static int spawn_exec(struct session *s, const msgpack_object *spec, const msgpack_object *opts,
		      struct task *t, const char **why, char *msg)
{
	const msgpack_object *argv = proto_opt(spec, "argv"), *env = proto_opt(opts, "env");
	const msgpack_object *in = proto_opt(opts, "stdin");
	int rc;

	if (gorod_euid != 0 && s->uid != gorod_euid) {
		snprintf(msg, MSG_LEN,
			 "gorod runs as uid %u and runs commands only for that user (uid %u asked); "
			 "a system gorod runs as root",
			 (unsigned)gorod_euid, (unsigned)s->uid);
		*why = msg;
		return -EPERM;
	}
	if (argv->type != MSGPACK_OBJECT_ARRAY) {
		*why = "argv must be an array of strings";
		return -EINVAL;
	}
	if (env && env->type == MSGPACK_OBJECT_NIL)
		env = NULL;
	if (env && env->type != MSGPACK_OBJECT_MAP) {
		*why = "env must be a map of names to strings";
		return -EINVAL;
	}
	const msgpack_object *cwd = proto_opt(opts, "cwd");
	if (cwd && cwd->type == MSGPACK_OBJECT_NIL)
		cwd = NULL;
	if ((rc = copy_exec(t, argv, env, cwd, why)) < 0)
		return rc;
	if (in && in->type != MSGPACK_OBJECT_NIL) {
		const char *p;
		size_t len;
		if (proto_get_str(in, &p, &len) < 0) {
			*why = "stdin must be bin or str";
			return -EINVAL;
		}
		if (len && !(t->stdin_data = dup_n(p, len)))
			return -ENOMEM;
		t->stdin_len = len;
	}
	if (gorod_euid == 0 && s->ngroups) {
		if (!(t->groups = malloc(s->ngroups * sizeof *t->groups)))
			return -ENOMEM;
		memcpy(t->groups, s->groups, s->ngroups * sizeof *t->groups);
		t->ngroups = s->ngroups;
	}
	return 0;
}

static int spawn_func(const msgpack_object *spec, const msgpack_object *opts, struct task *t,
		      const char **why, char *msg)
{
	const msgpack_object *fn = proto_opt(spec, "func"), *args = proto_opt(spec, "args");
	const char *p;
	int rc;
	size_t len;

	if (proto_opt(opts, "cwd") || proto_opt(opts, "env") || proto_opt(opts, "stdin")) {
		*why = "cwd, env and stdin are for commands (argv), not functions";
		return -EINVAL;
	}
	if (proto_get_str(fn, &p, &len) < 0 || len == 0 || len > PROTO_MAX_NAME) {
		*why = "func must be the name of a function";
		return -EINVAL;
	}
	if (!(t->fn = func_find(p, len))) {
		snprintf(msg, MSG_LEN,
			 "no function named '%.*s' (built-in: sleep, noop, spin, echo; others come from "
			 "gorod's --module-dir)",
			 (int)(len > 64 ? 64 : len), p);
		*why = msg;
		return -ENOENT;
	}
	if (args && args->type != MSGPACK_OBJECT_NIL && args->type != MSGPACK_OBJECT_ARRAY) {
		*why = "args must be an array";
		return -EINVAL;
	}
	t->func = true;
	rc = func_args_copy(args, &t->args, &t->nargs);
	if (rc == -E2BIG)
		*why = "args hold more than 65536 values in all";
	return rc;
}

static void pack_id(msgpack_packer *pk, void *arg)
{
	msgpack_pack_map(pk, 1);
	proto_pack_kv_u64(pk, "id", *(uint64_t *)arg);
}

void rpc_spawn(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "cwd", "env", "stdin", "name", "key", "wg", "lock",
					       "rlock", "sem", "after", "timeout_ms", "grace_ms",
					       "expect_ms", "output_max", "scope", "on_leak", NULL };
	static const char *const spec_keys[] = { "argv", "func", "args", NULL };
	const msgpack_object *spec = proto_param(&m->params, 0), *opts;
	struct spawn_req sr = { 0 };
	const char *why = NULL;
	struct task *t = NULL;
	char msg[MSG_LEN];
	uint64_t id;
	int rc;

	if (!spec || spec->type != MSGPACK_OBJECT_MAP) {
		reply_err(s, m, -EINVAL, "spawn takes [spec, {options}]: spec is {argv: [..]} or {func: name, args: [..]}");
		return;
	}
	if ((rc = proto_options(&m->params, 1, allowed, &opts, &why)) < 0 ||
	    (rc = proto_keys_allowed(spec, spec_keys)) < 0) {
		why = why ? why : "the spec's keys are argv, or func and args";
		goto fail;
	}
	if (!!proto_opt(spec, "argv") == !!proto_opt(spec, "func") ||
	    (proto_opt(spec, "args") && !proto_opt(spec, "func"))) {
		rc = -EINVAL;
		why = "the spec holds either argv (a command) or func (and args)";
		goto fail;
	}
	if (!(t = task_new(s))) {
		rc = -ENOMEM;
		goto fail;
	}
	sr.t = t;
	rc = proto_opt(spec, "argv") ? spawn_exec(s, spec, opts, t, &why, msg)
				      : spawn_func(spec, opts, t, &why, msg);
	if (rc == 0)
		rc = spawn_opts(s, opts, t, &sr, &why, msg);
	if (rc == 0)
		rc = task_spawn(s, &sr, &id, &why);
	if (rc < 0)
		goto fail;
	/* From here t is gorod's, and may be gone already: only id is ours.
	 * The reply is not written before the spawn's record is on disk. */
	session_wait_journal(s, sr.jseq);
	session_reply(s, m->msgid, 0, NULL, pack_id, &id, false);
	return;
fail:
	if (t)
		task_discard(t);
	reply_err(s, m, rc, why);
}

/* ---- finding a task ------------------------------------------------------------------ */

/* Reads the id param and finds the task the session may act on, taking a
 * reference (names_lock held on success, on return). Replies and returns
 * NULL when there is none. */
static struct task *get_task(struct session *s, const struct proto_msg *m,
			     const char *const *allowed, const msgpack_object **opts)
{
	const char *why = NULL;
	char msg[128];
	int64_t id;
	struct task *t;

	if (proto_get_i64(proto_param(&m->params, 0), &id) < 0 || id < 1) {
		reply_err(s, m, -EINVAL, "the first param must be a task id (an integer from 1)");
		return NULL;
	}
	if (proto_options(&m->params, 1, allowed, opts, &why) < 0) {
		reply_err(s, m, -EINVAL, why);
		return NULL;
	}
	rt_mutex_lock_nocancel(&names_lock);
	task_prune(rt_now()); /* --keep-age holds to the moment */
	t = task_find((uint64_t)id);
	if (!t || !task_allowed(s, t)) {
		rt_mutex_unlock(&names_lock);
		if (!t)
			snprintf(msg, sizeof msg,
				 "no task %lld: never spawned, or its outcome is no longer kept", (long long)id);
		else
			snprintf(msg, sizeof msg, "task %lld belongs to uid %u: only it or root may do that",
				 (long long)id, (unsigned)t->uid);
		reply_err(s, m, t ? -EPERM : -ENOENT, msg);
		return NULL;
	}
	return t;
}

static void pack_outcome(msgpack_packer *pk, void *arg)
{
	rt_mutex_lock_nocancel(&names_lock);
	task_pack_outcome(pk, arg);
	rt_mutex_unlock(&names_lock);
}

/* names_lock held, t referenced by the caller's lookup: queues a request
 * that waits on t (wait, logs.read) and starts its goroutine. Replies on
 * failure. Releases names_lock. */
static void wait_on(struct session *s, const struct proto_msg *m, struct task *t, int method,
		    enum prim_kind kind, const struct args *a)
{
	struct req *r;
	int rc;

	if (s->nreqs >= PROTO_MAX_INFLIGHT || !(r = calloc(1, sizeof *r))) {
		rt_mutex_unlock(&names_lock);
		reply_err(s, m, -EAGAIN, "too many requests waiting on this connection (limit 1024)");
		return;
	}
	r->s = s;
	r->msgid = m->msgid;
	r->method = method;
	r->a = *a;
	r->deadline = rt_deadline_ms(a->timeout_ms);
	r->nw.kind = kind;
	r->nw.prim = t;
	r->nw.s = s;
	t->refs++;
	nwait_enqueue(kind == PRIM_TASK ? &t->waiters : &t->log_waiters, &r->nw);
	rc = req_start_wait(r);
	if (rc < 0) {
		task_unref(t);
		rt_mutex_unlock(&names_lock);
		free(r);
		reply_err(s, m, rc, NULL);
		return;
	}
	rt_mutex_unlock(&names_lock);
}

/* ---- wait ------------------------------------------------------------------------------ */

void rpc_wait(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "timeout_ms", NULL };
	const msgpack_object *opts;
	struct args a = { 0 };
	const char *why = NULL;
	struct task *t = get_task(s, m, allowed, &opts);

	if (!t)
		return;
	if (proto_get_timeout(opts, &a.timeout_ms, &why) < 0) {
		rt_mutex_unlock(&names_lock);
		reply_err(s, m, -EINVAL, why);
		return;
	}
	if (t->ended_ns || a.timeout_ms == 0) {
		bool ended = t->ended_ns != 0;
		t->refs++;
		rt_mutex_unlock(&names_lock);
		if (ended)
			session_reply(s, m->msgid, 0, NULL, pack_outcome, t, false);
		else
			reply_err(s, m, -ETIMEDOUT, "the task has not ended");
		rt_mutex_lock_nocancel(&names_lock);
		task_unref(t);
		rt_mutex_unlock(&names_lock);
		return;
	}
	wait_on(s, m, t, PROTO_M_wait, PRIM_TASK, &a);
}

/* ---- logs -------------------------------------------------------------------------------- */

struct logs_result {
	char *data;
	size_t len;
	uint64_t from, next, cut;
	bool eof;
};

/* Reads stream o of t from offset from (t referenced, no lock held). */
static int read_logs(struct task *t, struct outbuf *o, uint64_t from, bool tail,
		     struct logs_result *lr)
{
	int rc;

	rt_mutex_lock_nocancel(&o->lock);
	rc = outbuf_read(o, from, OUTPUT_REPLY_MAX, tail, &lr->data, &lr->len, &lr->from);
	rt_mutex_unlock(&o->lock);
	if (rc < 0)
		return rc;
	rt_mutex_lock_nocancel(&names_lock);
	lr->cut = lr->from > from ? lr->from - from : 0;
	lr->next = lr->from + lr->len;
	lr->eof = o->eof && lr->next == o->total;
	rt_mutex_unlock(&names_lock);
	return 0;
}

static void pack_bin(msgpack_packer *pk, void *arg)
{
	struct logs_result *lr = arg;

	msgpack_pack_bin_with_body(pk, lr->data, lr->len);
}

static void pack_logs(msgpack_packer *pk, void *arg)
{
	struct logs_result *lr = arg;

	msgpack_pack_map(pk, 5);
	proto_pack_str(pk, "data");
	msgpack_pack_bin_with_body(pk, lr->data, lr->len);
	proto_pack_kv_u64(pk, "from", lr->from);
	proto_pack_kv_u64(pk, "next", lr->next);
	proto_pack_kv_u64(pk, "cut", lr->cut);
	proto_pack_kv_bool(pk, "eof", lr->eof);
}

/* The stream option: 0 stdout, 1 stderr, -1 bad. */
static int get_stream(const msgpack_object *opts)
{
	const msgpack_object *o = proto_opt(opts, "stream");
	const char *p;
	size_t len;

	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (proto_get_str(o, &p, &len) < 0)
		return -1;
	return proto_str_eq(p, len, "stdout") ? 0 : proto_str_eq(p, len, "stderr") ? 1 : -1;
}

/* A logs or logs.read reply for t (referenced; names_lock not held). */
static void reply_logs(struct session *s, uint32_t msgid, struct task *t, int stream,
		       uint64_t from, bool full, bool flush)
{
	struct logs_result lr = { 0 };
	int rc = read_logs(t, &t->out[stream], from, !full, &lr);

	if (rc < 0)
		session_reply(s, msgid, rc, NULL, NULL, NULL, flush);
	else
		session_reply(s, msgid, 0, NULL, full ? pack_logs : pack_bin, &lr, flush);
	free(lr.data);
}

void rpc_logs(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "stream", NULL };
	const msgpack_object *opts;
	struct task *t = get_task(s, m, allowed, &opts);
	int stream;

	if (!t)
		return;
	if ((stream = get_stream(opts)) < 0) {
		rt_mutex_unlock(&names_lock);
		reply_err(s, m, -EINVAL, "stream must be \"stdout\" or \"stderr\"");
		return;
	}
	t->refs++;
	rt_mutex_unlock(&names_lock);
	reply_logs(s, m->msgid, t, stream, 0, false, false);
	rt_mutex_lock_nocancel(&names_lock);
	task_unref(t);
	rt_mutex_unlock(&names_lock);
}

void rpc_logs_read(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "stream", "from", "wait_ms", NULL };
	const msgpack_object *opts, *o;
	struct args a = { 0 };
	int64_t from = 0, wait_ms = 0;
	struct task *t = get_task(s, m, allowed, &opts);
	int stream;

	if (!t)
		return;
	stream = get_stream(opts);
	if ((o = proto_opt(opts, "from")) && o->type != MSGPACK_OBJECT_NIL &&
	    (proto_get_i64(o, &from) < 0 || from < 0))
		stream = -2;
	if ((o = proto_opt(opts, "wait_ms")) && o->type != MSGPACK_OBJECT_NIL &&
	    (proto_get_i64(o, &wait_ms) < 0 || wait_ms < 0 || wait_ms > PROTO_MAX_TIMEOUT_MS))
		stream = -2;
	if (stream < 0) {
		rt_mutex_unlock(&names_lock);
		reply_err(s, m, -EINVAL, stream == -1 ? "stream must be \"stdout\" or \"stderr\""
						      : "from and wait_ms must be integers from 0");
		return;
	}
	struct outbuf *ob = &t->out[stream];
	if (wait_ms == 0 || (uint64_t)from < ob->total || ob->eof) {
		t->refs++;
		rt_mutex_unlock(&names_lock);
		reply_logs(s, m->msgid, t, stream, (uint64_t)from, true, false);
		rt_mutex_lock_nocancel(&names_lock);
		task_unref(t);
		rt_mutex_unlock(&names_lock);
		return;
	}
	a.timeout_ms = wait_ms;
	a.n = stream;
	a.delta = from;
	wait_on(s, m, t, PROTO_M_logs_read, PRIM_LOGS, &a);
}

/* ---- replies of waiting requests (wait.c) ---------------------------------------------- */

void task_req_reply(struct req *r)
{
	struct task *t = r->nw.prim;
	int rc = r->nw.result;

	if (r->method == PROTO_M_logs_read) {
		/* A timeout is not an error: the reply says there is nothing new. */
		if (rc == 0 || rc == -ETIMEDOUT)
			reply_logs(r->s, r->msgid, t, (int)r->a.n, (uint64_t)r->a.delta, true, true);
		else
			session_reply(r->s, r->msgid, rc, NULL, NULL, NULL, true);
		return;
	}
	if (rc < 0)
		session_reply(r->s, r->msgid, rc, rc == -ETIMEDOUT ? "the task has not ended" : NULL,
			      NULL, NULL, true);
	else
		session_reply(r->s, r->msgid, 0, NULL, pack_outcome, t, true);
}

void task_req_done(struct req *r)
{
	rt_mutex_lock_nocancel(&names_lock);
	task_unref(r->nw.prim);
	rt_mutex_unlock(&names_lock);
}

/* ---- kill, pause, resume ------------------------------------------------------------------ */

/* A signal given as a number (1..64) or a name ("TERM", "SIGTERM"). */
static int parse_signal(const msgpack_object *o)
{
	const char *p;
	size_t len;
	int64_t n;

	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return SIGTERM;
	if (proto_get_i64(o, &n) == 0)
		return n >= 1 && n <= 64 ? (int)n : -1;
	if (proto_get_str(o, &p, &len) < 0)
		return -1;
	if (len > 3 && strncmp(p, "SIG", 3) == 0) {
		p += 3;
		len -= 3;
	}
	for (int sig = 1; sig < 32; sig++) {
		const char *abbrev = sigabbrev_np(sig);
		if (abbrev && proto_str_eq(p, len, abbrev))
			return sig;
	}
	return -1;
}

static void reply_control(struct session *s, const struct proto_msg *m, struct task *t, int rc)
{
	uint64_t id = t->id;
	char msg[96];

	rt_mutex_unlock(&names_lock);
	if (rc == -ESRCH)
		snprintf(msg, sizeof msg, "task %llu is not running", (unsigned long long)id);
	else if (rc == -EINVAL)
		snprintf(msg, sizeof msg, "task %llu runs a function: only commands can be paused",
			 (unsigned long long)id);
	if (rc < 0)
		reply_err(s, m, rc, msg);
	else
		session_reply(s, m->msgid, 0, NULL, NULL, NULL, false);
}

void rpc_kill(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "signal", NULL };
	const msgpack_object *opts;
	struct task *t = get_task(s, m, allowed, &opts);
	int sig;

	if (!t)
		return;
	if ((sig = parse_signal(proto_opt(opts, "signal"))) < 0) {
		rt_mutex_unlock(&names_lock);
		reply_err(s, m, -EINVAL, "signal must be a number from 1 to 64 or a name like \"TERM\"");
		return;
	}
	reply_control(s, m, t, task_kill(t, sig));
}

void rpc_pause(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { NULL };
	const msgpack_object *opts;
	struct task *t = get_task(s, m, allowed, &opts);

	if (t)
		reply_control(s, m, t, task_pause(t, true));
}

void rpc_resume(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { NULL };
	const msgpack_object *opts;
	struct task *t = get_task(s, m, allowed, &opts);

	if (t)
		reply_control(s, m, t, task_pause(t, false));
}

/* ---- ps, wg.status ---------------------------------------------------------------------------- */

struct ps_args {
	bool all;
	int64_t after, limit;
};

static void pack_ps(msgpack_packer *pk, void *arg)
{
	struct ps_args *a = arg;

	rt_mutex_lock_nocancel(&names_lock);
	task_pack_ps(pk, a->all, (uint64_t)a->after, (size_t)a->limit);
	rt_mutex_unlock(&names_lock);
}

void rpc_ps(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { "all", "after", "limit", NULL };
	const msgpack_object *opts, *o;
	const char *why = NULL;
	struct ps_args a = { false, 0, PS_LIMIT_DEFAULT };

	if (proto_options(&m->params, 0, allowed, &opts, &why) < 0 ||
	    ((o = proto_opt(opts, "all")) && o->type != MSGPACK_OBJECT_NIL &&
	     proto_get_bool(o, &a.all) < 0) ||
	    ((o = proto_opt(opts, "after")) && o->type != MSGPACK_OBJECT_NIL &&
	     (proto_get_i64(o, &a.after) < 0 || a.after < 0)) ||
	    ((o = proto_opt(opts, "limit")) && o->type != MSGPACK_OBJECT_NIL &&
	     (proto_get_i64(o, &a.limit) < 0 || a.limit < 1 || a.limit > PS_LIMIT_MAX))) {
		reply_err(s, m, -EINVAL,
			  why ? why : "ps options: all (bool), after (a task id), limit (1 to 10000)");
		return;
	}
	session_reply(s, m->msgid, 0, NULL, pack_ps, &a, false);
}

struct wg_status {
	int64_t count, waiters;
	struct wg_round round;
};

static void pack_wg_status(msgpack_packer *pk, void *arg)
{
	struct wg_status *st = arg;

	msgpack_pack_map(pk, 3);
	proto_pack_kv_i64(pk, "count", st->count);
	proto_pack_kv_i64(pk, "waiters", st->waiters);
	proto_pack_str(pk, "round");
	wg_pack_round(pk, &st->round);
}

void rpc_wg_status(struct session *s, const struct proto_msg *m)
{
	static const char *const allowed[] = { NULL };
	const msgpack_object *opts;
	struct wg_status st = { 0 };
	const char *why = NULL, *name;
	size_t len;

	if (proto_get_name(proto_param(&m->params, 0), &name, &len, &why) < 0 ||
	    proto_options(&m->params, 1, allowed, &opts, &why) < 0) {
		reply_err(s, m, -EINVAL, why);
		return;
	}
	rt_mutex_lock_nocancel(&names_lock);
	nwg_status(name, len, &st.count, &st.waiters, &st.round);
	rt_mutex_unlock(&names_lock);
	session_reply(s, m->msgid, 0, NULL, pack_wg_status, &st, false);
}
