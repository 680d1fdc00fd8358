/* tasks.c: the task methods as C functions (goro/goro.h, sections tasks
 * and the leak monitor).
 *
 * spawn, wait, kill, pause, resume, ps, logs, logs.read, wg.status and
 * leaks: their packers and parsers, which calls.c's table of methods
 * lists, and the public calls, which go through calls.c's requests like
 * every other (client_call_wait(), client_call_queue()).
 *
 * A spawn carries what a shell would give the command: its argv, the
 * whole environment (a msgpack map built from the "KEY=VALUE" strings),
 * the working directory and the bytes for its stdin. check_spawn() refuses
 * here what gorod would refuse, with a sentence, so that a mistake costs
 * no round trip; the options map holds only what differs from gorod's
 * defaults, and its size is counted before it is packed (msgpack needs the
 * count first), so a spawn is packed in one pass straight into the output
 * buffer, with no copy of its own.
 *
 * The results that hold variable-size data (an outcome, a piece of output,
 * a round, the task list) are parsed into malloc'd structs that struct
 * goro_reply points to; they belong to the reply (client_reply_free()) and
 * the blocking calls move them into the caller's out-parameters. Parsing
 * is strict on what PROTOCOL.md says is always there (a result of another
 * shape ends the connection with -EPROTO, as for every method) and liberal
 * on the rest: an optional field may be absent or nil, unknown keys are
 * ignored, and an outcome needs only its id and state. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_AFTER 64 /* PROTOCOL.md, spawn: `after` */
#define MAX_SIGNAL 64

static const char *const state_names[] = {
	[GORO_TASK_QUEUED] = "queued",
	[GORO_TASK_RUNNING] = "running",
	[GORO_TASK_PAUSED] = "paused",
	[GORO_TASK_EXITED] = "exited",
	[GORO_TASK_SIGNALED] = "signaled",
	[GORO_TASK_KILLED] = "killed",
	[GORO_TASK_TIMEOUT] = "timeout",
	[GORO_TASK_FAILED] = "failed",
	[GORO_TASK_LOST] = "lost",
	[GORO_TASK_LEAKED] = "leaked",
};
#define NSTATES (sizeof state_names / sizeof state_names[0])

/* ---- checking a spawn ------------------------------------------------------------ */

static size_t strv_len(const char *const *v)
{
	size_t n = 0;

	while (v && v[n])
		n++;
	return n;
}

/* Whether the caller's args_msgpack is one whole msgpack array. */
static bool is_one_array(const void *p, size_t len)
{
	const unsigned char *b = p;

	if (len == 0 || proto_frame_check(p, len, PROTO_MAX_MESSAGE) != (ssize_t)len)
		return false;
	return (b[0] >= 0x90 && b[0] <= 0x9f) || b[0] == 0xdc || b[0] == 0xdd;
}

/* The exec half of check_spawn(): argv, env, and that no func field is set. */
static int check_exec(goro_client *c, const struct goro_spawn *sp)
{
	if (!sp->argv[0] || !*sp->argv[0])
		return client_error(c, -EINVAL, "spawn: argv needs at least the program, "
				    "and argv[0] cannot be empty");
	if (sp->args || sp->args_msgpack)
		return client_error(c, -EINVAL, "spawn: args and args_msgpack are for a "
				    "func; a command takes its arguments in argv");
	for (const char *const *e = sp->env; e && *e; e++)
		if (!strchr(*e, '=') || **e == '=')
			return client_error(c, -EINVAL, "spawn: env entries are KEY=VALUE; "
					    "'%.64s' is not", *e);
	if (sp->stdin_len && !sp->stdin_data)
		return client_error(c, -EINVAL, "spawn: stdin_len is %zu but stdin_data is "
				    "NULL", sp->stdin_len);
	return 0;
}

/* The func half of check_spawn(). */
static int check_func(goro_client *c, const struct goro_spawn *sp)
{
	if (client_check_name(c, "spawn: func", sp->func) < 0)
		return -EINVAL;
	if (sp->env || sp->cwd || sp->stdin_data || sp->stdin_len)
		return client_error(c, -EINVAL, "spawn: env, cwd and stdin are for a command "
				    "(argv), not for a func");
	if (sp->args && sp->args_msgpack)
		return client_error(c, -EINVAL, "spawn: give a func's arguments as args or "
				    "as args_msgpack, not both");
	if ((sp->args_msgpack != NULL) != (sp->args_msgpack_len > 0) ||
	    (sp->args_msgpack && !is_one_array(sp->args_msgpack, sp->args_msgpack_len)))
		return client_error(c, -EINVAL, "spawn: args_msgpack must be one whole "
				    "msgpack array, args_msgpack_len its length");
	return 0;
}

/* Holds *sp against PROTOCOL.md's spawn. Returns 0, or -EINVAL with the
 * reason as c's last error. */
static int check_spawn(goro_client *c, const struct goro_spawn *sp)
{
	static const char *const what[] = { "spawn: name", "spawn: key", "spawn: wg",
					    "spawn: lock", "spawn: rlock", "spawn: sem" };
	int err;

	if (!sp)
		return client_error(c, -EINVAL, "spawn: the spec is NULL");
	const char *names[] = { sp->name, sp->key, sp->wg, sp->lock, sp->rlock, sp->sem };
	if (!sp->argv == !sp->func)
		return client_error(c, -EINVAL, "spawn: set exactly one of argv (a command) "
				    "and func (a function registered in gorod)");
	err = sp->argv ? check_exec(c, sp) : check_func(c, sp);
	if (err < 0)
		return err;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (client_check_name(c, what[i], names[i]) < 0)
			return -EINVAL;
	if (sp->cwd && !*sp->cwd)
		return client_error(c, -EINVAL, "spawn: cwd is a directory or NULL, not \"\"");
	if (sp->sem_capacity < 0 || (sp->sem_capacity > 0 && !sp->sem))
		return client_error(c, -EINVAL, "spawn: sem_capacity is 0 (the default) or "
				    "more, and only with sem");
	if (sp->nafter > MAX_AFTER || (sp->nafter && !sp->after))
		return client_error(c, -EINVAL, "spawn: after holds up to %d task ids",
				    MAX_AFTER);
	for (size_t i = 0; i < sp->nafter; i++)
		if (sp->after[i] == 0)
			return client_error(c, -EINVAL, "spawn: task ids in after start at 1");
	if (sp->timeout_ms < 0 || sp->grace_ms < 0 || sp->expect_ms < 0 || sp->output_max < 0)
		return client_error(c, -EINVAL, "spawn: timeout_ms, grace_ms, expect_ms and "
				    "output_max are 0 (the default) or more");
	return 0;
}

/* ---- params ------------------------------------------------------------------------ */

/* Whether s is a decimal integer as printf("%lld") writes one (no '+', no
 * leading zeros, no "-0"), in the range of int64; then *v is its value.
 * Such a string survives the trip to an integer and back unchanged. */
static bool decimal_int(const char *s, int64_t *v)
{
	const char *d = s + (*s == '-');
	size_t n = strspn(d, "0123456789");
	char *end;
	long long x;

	if (n == 0 || d[n] != '\0' || (d[0] == '0' && (n > 1 || d != s)) || n > 19)
		return false;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno)
		return false;
	*v = x;
	return true;
}

/* The spec map: {argv: [..]} or {func, args?}. */
static void pack_spec(msgpack_packer *pk, const struct goro_spawn *sp)
{
	size_t n;

	if (sp->argv) {
		n = strv_len(sp->argv);
		msgpack_pack_map(pk, 1);
		proto_pack_str(pk, "argv");
		msgpack_pack_array(pk, (uint32_t)n);
		for (size_t i = 0; i < n; i++)
			proto_pack_str(pk, sp->argv[i]);
		return;
	}
	msgpack_pack_map(pk, sp->args || sp->args_msgpack ? 2 : 1);
	proto_pack_kv_str(pk, "func", sp->func);
	if (sp->args_msgpack) {
		proto_pack_str(pk, "args");
		pk->callback(pk->data, (const char *)sp->args_msgpack, sp->args_msgpack_len); /* as it is */
	} else if (sp->args) {
		n = strv_len(sp->args);
		proto_pack_str(pk, "args");
		msgpack_pack_array(pk, (uint32_t)n);
		for (size_t i = 0; i < n; i++) {
			int64_t v;

			if (decimal_int(sp->args[i], &v))
				msgpack_pack_int64(pk, v);
			else
				proto_pack_str(pk, sp->args[i]);
		}
	}
}

/* env as a map str -> str: each "KEY=VALUE" split at its first '='. */
static void pack_env(msgpack_packer *pk, const char *const *env)
{
	msgpack_pack_map(pk, (uint32_t)strv_len(env));
	for (const char *const *e = env; *e; e++) {
		const char *eq = strchr(*e, '=');

		proto_pack_strn(pk, *e, (size_t)(eq - *e));
		proto_pack_str(pk, eq + 1);
	}
}

/* How many options a spawn sends: those that differ from gorod's defaults. */
static uint32_t spawn_nopts(const struct goro_spawn *sp)
{
	return (uint32_t)(!!sp->cwd + !!sp->env + !!sp->stdin_len + !!sp->name + !!sp->wg +
			  !!sp->lock + !!sp->rlock + !!sp->sem + !!sp->nafter + !!sp->key +
			  !!sp->timeout_ms + !!sp->grace_ms + !!sp->expect_ms +
			  !!sp->output_max + sp->session_scope + sp->on_leak_kill);
}

/* [spec, {opts..}?] */
void client_pack_spawn(msgpack_packer *pk, const struct client_call *a)
{
	const struct goro_spawn *sp = a->spawn;
	uint32_t nopts = spawn_nopts(sp);

	msgpack_pack_array(pk, nopts ? 2 : 1);
	pack_spec(pk, sp);
	if (!nopts)
		return;
	msgpack_pack_map(pk, nopts);
	if (sp->cwd)
		proto_pack_kv_str(pk, "cwd", sp->cwd);
	if (sp->env) {
		proto_pack_str(pk, "env");
		pack_env(pk, sp->env);
	}
	if (sp->stdin_len) {
		proto_pack_str(pk, "stdin");
		msgpack_pack_bin(pk, sp->stdin_len);
		msgpack_pack_bin_body(pk, sp->stdin_data, sp->stdin_len);
	}
	if (sp->name)
		proto_pack_kv_str(pk, "name", sp->name);
	if (sp->wg)
		proto_pack_kv_str(pk, "wg", sp->wg);
	if (sp->lock)
		proto_pack_kv_str(pk, "lock", sp->lock);
	if (sp->rlock)
		proto_pack_kv_str(pk, "rlock", sp->rlock);
	if (sp->sem && sp->sem_capacity > 0) {
		proto_pack_str(pk, "sem");
		msgpack_pack_array(pk, 2);
		proto_pack_str(pk, sp->sem);
		msgpack_pack_int64(pk, sp->sem_capacity);
	} else if (sp->sem) {
		proto_pack_kv_str(pk, "sem", sp->sem);
	}
	if (sp->nafter) {
		proto_pack_str(pk, "after");
		msgpack_pack_array(pk, (uint32_t)sp->nafter);
		for (size_t i = 0; i < sp->nafter; i++)
			msgpack_pack_uint64(pk, sp->after[i]);
	}
	if (sp->key)
		proto_pack_kv_str(pk, "key", sp->key);
	if (sp->timeout_ms)
		proto_pack_kv_i64(pk, "timeout_ms", sp->timeout_ms);
	if (sp->grace_ms)
		proto_pack_kv_i64(pk, "grace_ms", sp->grace_ms);
	if (sp->expect_ms)
		proto_pack_kv_i64(pk, "expect_ms", sp->expect_ms);
	if (sp->output_max)
		proto_pack_kv_i64(pk, "output_max", sp->output_max);
	if (sp->session_scope)
		proto_pack_kv_str(pk, "scope", "session");
	if (sp->on_leak_kill)
		proto_pack_kv_str(pk, "on_leak", "kill");
}

/* [id] or [id, {nopts options}]: the caller packs the options. */
static void pack_id(msgpack_packer *pk, const struct client_call *a, uint32_t nopts)
{
	msgpack_pack_array(pk, nopts ? 2 : 1);
	msgpack_pack_uint64(pk, a->id);
	if (nopts)
		msgpack_pack_map(pk, nopts);
}

/* [id, {timeout_ms?}] */
void client_pack_wait(msgpack_packer *pk, const struct client_call *a)
{
	pack_id(pk, a, a->timeout_ms >= 0);
	if (a->timeout_ms >= 0)
		proto_pack_kv_i64(pk, "timeout_ms", a->timeout_ms);
}

/* [id, {signal?}] */
void client_pack_kill(msgpack_packer *pk, const struct client_call *a)
{
	pack_id(pk, a, a->sig != 0);
	if (a->sig)
		proto_pack_kv_i64(pk, "signal", a->sig);
}

/* [id] */
void client_pack_pause(msgpack_packer *pk, const struct client_call *a)
{
	pack_id(pk, a, 0);
}

void client_pack_resume(msgpack_packer *pk, const struct client_call *a)
{
	pack_id(pk, a, 0);
}

/* [{all?, after?}]: the id field holds `after` */
void client_pack_ps(msgpack_packer *pk, const struct client_call *a)
{
	uint32_t n = (uint32_t)a->all + (a->id != 0);

	if (!n) {
		msgpack_pack_array(pk, 0);
		return;
	}
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, n);
	if (a->all)
		proto_pack_kv_bool(pk, "all", true);
	if (a->id)
		proto_pack_kv_u64(pk, "after", a->id);
}

/* [id, {stream?}] */
void client_pack_logs(msgpack_packer *pk, const struct client_call *a)
{
	bool err = a->stream == GORO_STDERR;

	pack_id(pk, a, err);
	if (err)
		proto_pack_kv_str(pk, "stream", "stderr");
}

/* [id, {stream?, from?, wait_ms?}]; timeout_ms -1 (for ever) is sent as
 * the longest wait gorod takes. */
void client_pack_logs_read(msgpack_packer *pk, const struct client_call *a)
{
	bool err = a->stream == GORO_STDERR, from = a->from > 0, wait = a->timeout_ms != 0;

	pack_id(pk, a, (uint32_t)err + from + wait);
	if (err)
		proto_pack_kv_str(pk, "stream", "stderr");
	if (from)
		proto_pack_kv_u64(pk, "from", a->from);
	if (wait)
		proto_pack_kv_i64(pk, "wait_ms", a->timeout_ms < 0 ? PROTO_MAX_TIMEOUT_MS
								 : a->timeout_ms);
}

/* [name] */
void client_pack_wg_status(msgpack_packer *pk, const struct client_call *a)
{
	msgpack_pack_array(pk, 1);
	proto_pack_str(pk, a->name);
}

/* [] */
void client_pack_leaks(msgpack_packer *pk, const struct client_call *a)
{
	msgpack_pack_array(pk, 0);
}

/* ---- results ------------------------------------------------------------------------ */

static bool is_map(const msgpack_object *o)
{
	return o && o->type == MSGPACK_OBJECT_MAP;
}

/* The value at key in map m, or NULL when it is absent or nil. */
static const msgpack_object *opt(const msgpack_object *m, const char *key)
{
	const msgpack_object *o = proto_opt(m, key);

	return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

/* The integer o, in [min, max]. */
static int int_in(const msgpack_object *o, int64_t min, int64_t max, int64_t *v)
{
	int64_t x;

	if (proto_get_i64(o, &x) < 0 || x < min || x > max)
		return -EPROTO;
	*v = x;
	return 0;
}

/* The unsigned integer at key in map m (required). */
static int get_u64(const msgpack_object *m, const char *key, uint64_t *v)
{
	const msgpack_object *o = proto_opt(m, key);

	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EPROTO;
	*v = o->via.u64;
	return 0;
}

/* The integer at key in map m, in [min, max]; absent or nil: dflt. */
static int get_opt_int(const msgpack_object *m, const char *key, int64_t min, int64_t max,
		       int64_t dflt, int64_t *v)
{
	const msgpack_object *o = opt(m, key);

	if (!o) {
		*v = dflt;
		return 0;
	}
	return int_in(o, min, max, v);
}

/* A task state's name, as an enum. */
static int parse_state(const msgpack_object *o, enum goro_task_state *st)
{
	const char *s;
	size_t len;

	if (proto_get_str(o, &s, &len) < 0)
		return -EPROTO;
	for (size_t i = 0; i < NSTATES; i++)
		if (proto_str_eq(s, len, state_names[i])) {
			*st = (enum goro_task_state)i;
			return 0;
		}
	return -EPROTO;
}

/* "exec" or "func": *func says which. */
static int parse_kind(const msgpack_object *o, bool *func)
{
	const char *s;
	size_t len;

	if (proto_get_str(o, &s, &len) < 0)
		return -EPROTO;
	if (proto_str_eq(s, len, "exec") || proto_str_eq(s, len, "func")) {
		*func = s[0] == 'f';
		return 0;
	}
	return -EPROTO;
}

/* The code for an error name from gorod: one of its table's, else any
 * errno name (a failed exec reports the kernel's: ENOEXEC, ENOTDIR, ...),
 * else -EPROTO. */
static int code_of(const char *name, size_t len)
{
	int code = proto_err_from_name(name, len);

	if (code)
		return code;
	for (int e = 1; e < 256; e++) {
		const char *s = strerrorname_np(e);

		if (s && proto_str_eq(name, len, s))
			return -e;
	}
	return -EPROTO;
}

/* An outcome's error, [code, message] (or a bare code, as a round's
 * first_failure may carry it), into o->error and o->message. */
static int parse_outcome_error(const msgpack_object *e, struct goro_outcome *o)
{
	const char *name, *text = "";
	size_t nlen, tlen = 0;

	if (proto_get_str(e, &name, &nlen) < 0 &&
	    (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
	     proto_get_str(&e->via.array.ptr[0], &name, &nlen) < 0 ||
	     proto_get_str(&e->via.array.ptr[1], &text, &tlen) < 0))
		return -EPROTO;
	o->error = code_of(name, nlen);
	client_copy_msg(o->message, text, tlen);
	return 0;
}

/* The numbers of an outcome: code, signal, pid, times, output counts. */
static int parse_outcome_numbers(const msgpack_object *res, struct goro_outcome *o)
{
	int64_t code, sig, pid, started, ended;
	uint64_t *counts[] = { &o->stdout_bytes, &o->stderr_bytes, &o->stdout_cut,
			       &o->stderr_cut };
	static const char *const count_keys[] = { "stdout_bytes", "stderr_bytes",
						  "stdout_cut", "stderr_cut" };

	if (get_opt_int(res, "code", INT_MIN, INT_MAX, 0, &code) < 0 ||
	    get_opt_int(res, "signal", 0, INT_MAX, 0, &sig) < 0 ||
	    get_opt_int(res, "pid", 0, INT_MAX, 0, &pid) < 0 ||
	    get_opt_int(res, "started_ms", 0, INT64_MAX, 0, &started) < 0 ||
	    get_opt_int(res, "ended_ms", 0, INT64_MAX, 0, &ended) < 0)
		return -EPROTO;
	for (size_t i = 0; i < 4; i++) {
		const msgpack_object *c = opt(res, count_keys[i]);

		if (!c)
			continue;
		if (c->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return -EPROTO;
		*counts[i] = c->via.u64;
	}
	o->code = (int)code;
	o->signal = (int)sig;
	o->pid = (int)pid;
	o->started_ms = started;
	o->ended_ms = ended;
	return 0;
}

/* {id, state, kind, code?, signal?, result?, error?, pid?, started_ms,
 * ended_ms, stdout_bytes, stderr_bytes, stdout_cut, stderr_cut} into *out;
 * nothing is allocated unless it returns 0. Only id and state are
 * required: a round's first_failure may be a brief outcome (then the rest
 * is 0, the kind exec). */
static int parse_outcome(const msgpack_object *res, struct goro_outcome *out)
{
	struct goro_outcome o;
	const msgpack_object *e, *result, *kind;

	memset(&o, 0, sizeof o);
	if (!is_map(res) || get_u64(res, "id", &o.id) < 0 || o.id == 0 ||
	    parse_state(proto_opt(res, "state"), &o.state) < 0 ||
	    ((kind = opt(res, "kind")) && parse_kind(kind, &o.func) < 0) ||
	    parse_outcome_numbers(res, &o) < 0)
		return -EPROTO;
	if ((e = opt(res, "error")) && parse_outcome_error(e, &o) < 0)
		return -EPROTO;
	if ((result = proto_opt(res, "result")) && !(o.result_json = client_json(result)))
		return -ENOMEM;
	*out = o;
	return 0;
}

/* {id} */
int client_parse_spawn(const msgpack_object *res, struct goro_reply *r)
{
	if (!is_map(res) || get_u64(res, "id", &r->id) < 0 || r->id == 0)
		return -EPROTO;
	return 0;
}

/* the outcome, in r->outcome */
int client_parse_wait(const msgpack_object *res, struct goro_reply *r)
{
	struct goro_outcome *o = malloc(sizeof *o);
	int err;

	if (!o)
		return -ENOMEM;
	err = parse_outcome(res, o);
	if (err < 0) {
		free(o);
		return err;
	}
	r->outcome = o;
	return 0;
}

/* {} */
int client_parse_kill(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

int client_parse_pause(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

int client_parse_resume(const msgpack_object *res, struct goro_reply *r)
{
	return is_map(res) ? 0 : -EPROTO;
}

/* Parsed entries (goro_ps, goro_leaks) go in one malloc'd block: the
 * entries, then the string arrays' pointers, then the strings. One walk
 * over the reply's array does both jobs: with out NULL it checks each
 * entry and counts what the block needs; with out set it fills the block
 * (the checks then pass, as they passed before). */
struct block {
	void *out;             /* NULL: only count */
	const char **ptrs;     /* the next free pointer */
	char *chars;           /* the next free string byte */
	size_t nptr, nchar;    /* counted */
};

/* The optional string o (NULL, or absent: *dst NULL) into the block:
 * counted, or copied. Returns 0 or -EPROTO. */
static int block_str(const msgpack_object *o, struct block *b, const char **dst)
{
	const char *s;
	size_t len;

	if (!o)
		return 0;
	if (proto_get_str(o, &s, &len) < 0)
		return -EPROTO;
	if (!b->out) {
		b->nchar += len + 1;
		return 0;
	}
	memcpy(b->chars, s, len);
	b->chars[len] = '\0';
	*dst = b->chars;
	b->chars += len + 1;
	return 0;
}

/* The optional array of strings a into the block, NULL-terminated (absent:
 * *dst NULL, or an empty list when always). Returns 0 or -EPROTO. */
static int block_strv(const msgpack_object *a, struct block *b, bool always,
		      const char *const **dst)
{
	uint32_t n = a && a->type == MSGPACK_OBJECT_ARRAY ? a->via.array.size : 0;
	const char **v = b->ptrs;

	if (a && a->type != MSGPACK_OBJECT_ARRAY)
		return -EPROTO;
	if (!a && !always)
		return 0;
	if (!b->out) {
		b->nptr += n + 1;
	} else {
		b->ptrs += n + 1;
		*dst = v;
	}
	for (uint32_t i = 0; i < n; i++)
		if (block_str(&a->via.array.ptr[i], b, b->out ? &v[i] : NULL) < 0)
			return -EPROTO;
	if (b->out)
		v[n] = NULL;
	return 0;
}

/* Checks or fills one entry: entry is NULL when counting. */
typedef int (*block_entry_fn)(const msgpack_object *m, struct block *b, void *entry);

/* The reply's array as entries of entry_size in one block (*out NULL when
 * there are none). Returns 0, -EPROTO or -ENOMEM. */
static int parse_block(const msgpack_object *res, size_t entry_size, block_entry_fn fn,
		       void **out, size_t *n)
{
	uint32_t count = res->via.array.size;
	struct block b = { 0 };

	for (uint32_t i = 0; i < count; i++)
		if (fn(&res->via.array.ptr[i], &b, NULL) < 0)
			return -EPROTO;
	*out = NULL;
	*n = count;
	if (count == 0)
		return 0;
	b.out = malloc(count * entry_size + b.nptr * sizeof *b.ptrs + b.nchar);
	if (!b.out)
		return -ENOMEM;
	b.ptrs = (const char **)((char *)b.out + count * entry_size);
	b.chars = (char *)(b.ptrs + b.nptr);
	for (uint32_t i = 0; i < count; i++)
		fn(&res->via.array.ptr[i], &b, (char *)b.out + i * entry_size);
	*out = b.out;
	return 0;
}

/* A listing reply (ps, leaks): an array of entries, kept both as JSON text
 * in r->json and as the blocks fn fills, in *out (n of them). */
static int parse_listing(const msgpack_object *res, size_t entry_size, block_entry_fn fn,
			 void **out, size_t *n, struct goro_reply *r)
{
	void *v;
	size_t k;
	int err;

	if (res->type != MSGPACK_OBJECT_ARRAY)
		return -EPROTO;
	if ((err = parse_block(res, entry_size, fn, &v, &k)) < 0)
		return err;
	if (!(r->json = client_json(res))) {
		free(v);
		return -ENOMEM;
	}
	*out = v;
	*n = k;
	return 0;
}

/* One ps entry, {id, state, kind, name?, argv? | func?, uid, pid?, age_ms,
 * blocked_on?}: checked and counted into b, or filled into *entry. */
static int ps_entry(const msgpack_object *t, struct block *b, void *entry)
{
	struct goro_task_info x = { 0 };
	int64_t uid, pid;
	bool func;

	if (!is_map(t) || get_u64(t, "id", &x.id) < 0 ||
	    parse_state(proto_opt(t, "state"), &x.state) < 0 ||
	    parse_kind(proto_opt(t, "kind"), &func) < 0 ||
	    int_in(proto_opt(t, "uid"), 0, UINT32_MAX, &uid) < 0 ||
	    int_in(proto_opt(t, "age_ms"), 0, INT64_MAX, &x.age_ms) < 0 ||
	    get_opt_int(t, "pid", 0, INT_MAX, 0, &pid) < 0 ||
	    block_str(opt(t, "name"), b, &x.name) < 0 || block_str(opt(t, "func"), b, &x.func) < 0 ||
	    block_str(opt(t, "blocked_on"), b, &x.blocked_on) < 0 ||
	    block_strv(opt(t, "argv"), b, false, &x.argv) < 0)
		return -EPROTO;
	x.uid = (uint32_t)uid;
	x.pid = (int)pid;
	if (entry)
		*(struct goro_task_info *)entry = x;
	return 0;
}

/* [{id, state, kind, ...}, ..]: as JSON text in r->json and as structs in
 * r->tasks (a ps is small and rare: both forms are cheap). */
int client_parse_ps(const msgpack_object *res, struct goro_reply *r)
{
	return parse_listing(res, sizeof *r->tasks, ps_entry, (void **)&r->tasks, &r->ntasks, r);
}

/* A copy of s[0..len) in *data (NULL when len is 0). */
static int copy_bytes(const char *s, size_t len, void **data)
{
	*data = NULL;
	if (len == 0)
		return 0;
	*data = malloc(len);
	if (!*data)
		return -ENOMEM;
	memcpy(*data, s, len);
	return 0;
}

/* bin (or str): in r->logs, data and len only */
int client_parse_logs(const msgpack_object *res, struct goro_reply *r)
{
	struct goro_logs *l;
	const char *s;
	size_t len;

	if (proto_get_str(res, &s, &len) < 0)
		return -EPROTO;
	l = calloc(1, sizeof *l);
	if (!l || copy_bytes(s, len, &l->data) < 0) {
		free(l);
		return -ENOMEM;
	}
	l->len = len;
	r->logs = l;
	return 0;
}

/* {data, from, next, cut, eof} */
int client_parse_logs_read(const msgpack_object *res, struct goro_reply *r)
{
	struct goro_logs *l, x = { 0 };
	const char *s;
	size_t len;

	if (!is_map(res) || proto_get_str(proto_opt(res, "data"), &s, &len) < 0 ||
	    get_u64(res, "from", &x.from) < 0 || get_u64(res, "next", &x.next) < 0 ||
	    get_u64(res, "cut", &x.cut) < 0 || proto_get_bool(proto_opt(res, "eof"), &x.eof) < 0)
		return -EPROTO;
	l = malloc(sizeof *l);
	if (!l || copy_bytes(s, len, &x.data) < 0) {
		free(l);
		return -ENOMEM;
	}
	x.len = len;
	*l = x;
	r->logs = l;
	return 0;
}

int client_parse_round(const msgpack_object *round, struct goro_wg_status *st)
{
	const msgpack_object *ff;
	int64_t tasks, running, done, failed;
	int err;

	if (!is_map(round) || int_in(proto_opt(round, "tasks"), 0, INT64_MAX, &tasks) < 0 ||
	    int_in(proto_opt(round, "running"), 0, INT64_MAX, &running) < 0 ||
	    int_in(proto_opt(round, "done"), 0, INT64_MAX, &done) < 0 ||
	    int_in(proto_opt(round, "failed"), 0, INT64_MAX, &failed) < 0)
		return -EPROTO;
	ff = opt(round, "first_failure");
	if (ff && (err = parse_outcome(ff, &st->first_failure)) < 0)
		return err;
	st->has_failure = ff != NULL;
	st->tasks = tasks;
	st->running = running;
	st->done = done;
	st->failed = failed;
	return 0;
}

/* {count, waiters, round} */
int client_parse_wg_status(const msgpack_object *res, struct goro_reply *r)
{
	struct goro_wg_status *st;
	int64_t count, waiters;
	int err;

	if (!is_map(res) || int_in(proto_opt(res, "count"), 0, INT64_MAX, &count) < 0 ||
	    int_in(proto_opt(res, "waiters"), 0, INT64_MAX, &waiters) < 0)
		return -EPROTO;
	st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	err = client_parse_round(proto_opt(res, "round"), st);
	if (err < 0) {
		free(st);
		return err;
	}
	st->count = count;
	st->waiters = waiters;
	r->wg = st;
	return 0;
}

/* ---- leaks ------------------------------------------------------------------------- */

/* The optional unsigned integer at key in map m (absent or nil: 0). */
static int opt_u64(const msgpack_object *m, const char *key, uint64_t *v)
{
	const msgpack_object *o = opt(m, key);

	*v = 0;
	if (!o)
		return 0;
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -EPROTO;
	*v = o->via.u64;
	return 0;
}

/* A finding's owner, {pid, uid, comm}, each optional. */
static int leak_owner(const msgpack_object *m, struct block *b, struct goro_leak *l)
{
	const msgpack_object *owner = opt(m, "owner");
	int64_t pid, uid;

	if (!owner)
		return 0;
	if (!is_map(owner) || get_opt_int(owner, "pid", 0, INT_MAX, 0, &pid) < 0 ||
	    get_opt_int(owner, "uid", 0, UINT32_MAX, 0, &uid) < 0 ||
	    block_str(opt(owner, "comm"), b, &l->comm) < 0)
		return -EPROTO;
	l->pid = (int)pid;
	l->uid = (uint32_t)uid;
	return 0;
}

/* One finding, {id, kind, reason, age_ms, since_ms, task?, goroutine?,
 * session?, owner, blocked_on?, history}: counted into b, or filled into
 * *l. Strict on id, kind and reason, which say what the finding is;
 * liberal on the rest (absent or nil: 0 or NULL). */
static int leak_entry(const msgpack_object *m, struct block *b, void *entry)
{
	struct goro_leak x = { 0 };

	if (!is_map(m) || get_u64(m, "id", &x.id) < 0 || !opt(m, "kind") || !opt(m, "reason") ||
	    block_str(opt(m, "kind"), b, &x.kind) < 0 || block_str(opt(m, "reason"), b, &x.reason) < 0 ||
	    get_opt_int(m, "age_ms", 0, INT64_MAX, 0, &x.age_ms) < 0 ||
	    get_opt_int(m, "since_ms", 0, INT64_MAX, 0, &x.since_ms) < 0 ||
	    opt_u64(m, "task", &x.task) < 0 || opt_u64(m, "goroutine", &x.goroutine) < 0 ||
	    opt_u64(m, "session", &x.session) < 0 || leak_owner(m, b, &x) < 0 ||
	    block_str(opt(m, "blocked_on"), b, &x.blocked_on) < 0 ||
	    block_strv(opt(m, "history"), b, true, &x.history) < 0)
		return -EPROTO;
	if (entry)
		*(struct goro_leak *)entry = x;
	return 0;
}

/* [{id, kind, reason, ...}, ..]: as JSON text in r->json and as structs
 * in r->leaks. */
int client_parse_leaks(const msgpack_object *res, struct goro_reply *r)
{
	return parse_listing(res, sizeof *r->leaks, leak_entry, (void **)&r->leaks, &r->nleaks, r);
}

/* ---- goro.h: outcomes ------------------------------------------------------------------ */

GORO_EXPORT const char *goro_task_state_name(enum goro_task_state state)
{
	if ((unsigned)state >= NSTATES)
		return "unknown";
	return state_names[state];
}

GORO_EXPORT void goro_outcome_clear(struct goro_outcome *o)
{
	if (!o)
		return;
	free(o->result_json);
	o->result_json = NULL;
}

GORO_EXPORT int goro_outcome_status(const struct goro_outcome *o)
{
	if (!o)
		return 1;
	switch (o->state) {
	case GORO_TASK_EXITED:
		return o->code;
	case GORO_TASK_SIGNALED:
	case GORO_TASK_KILLED:
		return 128 + (o->signal > 0 ? o->signal : 15); /* a func: as by TERM */
	case GORO_TASK_TIMEOUT:
		return 124; /* as timeout(1) */
	case GORO_TASK_LEAKED:
		return 125; /* killed by the leak monitor: neither a code nor a signal of its own */
	case GORO_TASK_FAILED:
		if (o->error == -ENOENT)
			return 127; /* as a shell for a command not found */
		if (o->error == -EACCES || o->error == -ENOEXEC)
			return 126; /* found, but cannot run */
		return 1;
	default:
		return 1;
	}
}

/* ---- goro.h: blocking calls --------------------------------------------------------- */

GORO_EXPORT int goro_spawn(goro_client *c, const struct goro_spawn *spec, uint64_t *id)
{
	struct client_call a = { .spawn = spec, .timeout_ms = -1 };
	struct goro_reply r;
	int err;

	if (!c)
		return -EINVAL;
	err = check_spawn(c, spec);
	if (err == 0)
		err = client_call_wait(c, PROTO_M_spawn, &a, &r);
	if (err == 0 && id)
		*id = r.id;
	return err;
}

GORO_EXPORT int goro_wait(goro_client *c, uint64_t id, int timeout_ms,
			  struct goro_outcome *out)
{
	struct client_call a = { .id = id, .timeout_ms = timeout_ms };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wait, &a, &r);

	if (err < 0)
		return err;
	if (out) {
		*out = *r.outcome;
		r.outcome->result_json = NULL; /* moved to *out */
	}
	client_reply_free(&r);
	return 0;
}

/* Whether sig is one kill takes: 0 (gorod's default, TERM) or 1..64. */
static int check_signal(goro_client *c, int sig)
{
	if (sig < 0 || sig > MAX_SIGNAL)
		return client_error(c, -EINVAL, "kill: a signal is 1 to %d, or 0 for TERM",
				    MAX_SIGNAL);
	return 0;
}

GORO_EXPORT int goro_kill(goro_client *c, uint64_t id, int sig)
{
	struct client_call a = { .id = id, .sig = sig, .timeout_ms = -1 };
	struct goro_reply r;

	if (!c)
		return -EINVAL;
	if (check_signal(c, sig) < 0)
		return -EINVAL;
	return client_call_wait(c, PROTO_M_kill, &a, &r);
}

GORO_EXPORT int goro_pause(goro_client *c, uint64_t id)
{
	struct client_call a = { .id = id, .timeout_ms = -1 };
	struct goro_reply r;

	return client_call_wait(c, PROTO_M_pause, &a, &r);
}

GORO_EXPORT int goro_resume(goro_client *c, uint64_t id)
{
	struct client_call a = { .id = id, .timeout_ms = -1 };
	struct goro_reply r;

	return client_call_wait(c, PROTO_M_resume, &a, &r);
}

/* Sends listing method m (ps or leaks) and waits for it, then moves out of
 * the reply what the caller asks for: the JSON text to *json, the parsed
 * entries to *entries and their count to *n (each may be NULL). Returns 0
 * or a negative errno; nothing is written unless it returns 0. */
static int call_listing(goro_client *c, enum proto_method m, const struct client_call *a,
			char **json, void **entries, size_t *n)
{
	struct goro_reply r;
	int err = client_call_wait(c, m, a, &r);

	if (err < 0)
		return err;
	if (json) {
		*json = (char *)r.json;
		r.json = NULL; /* moved to *json */
	}
	/* client_parse_ps() fills tasks, client_parse_leaks() leaks */
	if (entries) {
		*entries = m == PROTO_M_ps ? (void *)r.tasks : (void *)r.leaks;
		r.tasks = NULL; /* moved to *entries */
		r.leaks = NULL;
	}
	if (n)
		*n = m == PROTO_M_ps ? r.ntasks : r.nleaks;
	client_reply_free(&r);
	return 0;
}

GORO_EXPORT int goro_ps_json(goro_client *c, bool all, uint64_t after, char **json)
{
	struct client_call a = { .all = all, .id = after, .timeout_ms = -1 };

	return call_listing(c, PROTO_M_ps, &a, json, NULL, NULL);
}

GORO_EXPORT int goro_ps(goro_client *c, bool all, uint64_t after,
		    struct goro_task_info **tasks, size_t *n)
{
	struct client_call a = { .all = all, .id = after, .timeout_ms = -1 };

	return call_listing(c, PROTO_M_ps, &a, NULL, (void **)tasks, n);
}

GORO_EXPORT int goro_leaks_json(goro_client *c, char **json)
{
	struct client_call a = { .timeout_ms = -1 };

	return call_listing(c, PROTO_M_leaks, &a, json, NULL, NULL);
}

GORO_EXPORT int goro_leaks(goro_client *c, struct goro_leak **leaks, size_t *n)
{
	struct client_call a = { .timeout_ms = -1 };

	return call_listing(c, PROTO_M_leaks, &a, NULL, (void **)leaks, n);
}

/* Whether stream is one of enum goro_stream. */
static int check_stream(goro_client *c, const char *what, enum goro_stream stream)
{
	if (stream != GORO_STDOUT && stream != GORO_STDERR)
		return client_error(c, -EINVAL, "%s: stream is GORO_STDOUT or GORO_STDERR",
				    what);
	return 0;
}

GORO_EXPORT int goro_logs(goro_client *c, uint64_t id, enum goro_stream stream,
			  void **data, size_t *len)
{
	struct client_call a = { .id = id, .stream = stream, .timeout_ms = -1 };
	struct goro_reply r;
	int err;

	if (!c)
		return -EINVAL;
	if (check_stream(c, "logs", stream) < 0)
		return -EINVAL;
	err = client_call_wait(c, PROTO_M_logs, &a, &r);
	if (err < 0)
		return err;
	if (len)
		*len = r.logs->len;
	if (data) {
		*data = r.logs->data;
		r.logs->data = NULL; /* moved to *data */
	}
	client_reply_free(&r);
	return 0;
}

/* The arguments of a logs.read, checked. */
static int logs_read_call(goro_client *c, uint64_t id, enum goro_stream stream,
			  uint64_t from, int wait_ms, struct client_call *a)
{
	if (!c)
		return -EINVAL;
	if (check_stream(c, "logs.read", stream) < 0)
		return -EINVAL;
	if (wait_ms < -1)
		return client_error(c, -EINVAL, "logs.read: wait_ms is -1 (for ever), 0 (not "
				    "at all) or up to %d", INT_MAX);
	*a = (struct client_call){ .id = id, .stream = stream, .from = from,
				   .timeout_ms = wait_ms };
	return 0;
}

GORO_EXPORT int goro_logs_read(goro_client *c, uint64_t id, enum goro_stream stream,
			       uint64_t from, int wait_ms, struct goro_logs *out)
{
	struct client_call a;
	struct goro_reply r;
	int err = logs_read_call(c, id, stream, from, wait_ms, &a);

	if (err == 0)
		err = client_call_wait(c, PROTO_M_logs_read, &a, &r);
	if (err < 0)
		return err;
	if (out) {
		*out = *r.logs;
		r.logs->data = NULL; /* moved to *out */
	}
	client_reply_free(&r);
	return 0;
}

/* Moves the status of a wg.status or wg.wait reply to *out (may be NULL). */
static void take_status(struct goro_reply *r, struct goro_wg_status *out)
{
	if (out) {
		*out = *r->wg;
		r->wg->first_failure.result_json = NULL; /* moved to *out */
	}
	client_reply_free(r);
}

GORO_EXPORT int goro_wg_status(goro_client *c, const char *name, struct goro_wg_status *out)
{
	struct client_call a = { .name = name, .timeout_ms = -1 };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wg_status, &a, &r);

	if (err == 0)
		take_status(&r, out);
	return err;
}

GORO_EXPORT int goro_wg_wait_status(goro_client *c, const char *name, int timeout_ms,
				    struct goro_wg_status *out)
{
	struct client_call a = { .name = name, .timeout_ms = timeout_ms };
	struct goro_reply r;
	int err = client_call_wait(c, PROTO_M_wg_wait, &a, &r);

	if (err == 0)
		take_status(&r, out);
	return err;
}

/* ---- goro.h: non-blocking calls ------------------------------------------------------ */

GORO_EXPORT int goro_send_spawn(goro_client *c, const struct goro_spawn *spec,
				goro_reply_fn cb, void *arg)
{
	struct client_call a = { .spawn = spec, .timeout_ms = -1 };

	if (!c)
		return -EINVAL;
	if (check_spawn(c, spec) < 0)
		return -EINVAL;
	return client_call_queue(c, PROTO_M_spawn, &a, cb, arg);
}

GORO_EXPORT int goro_send_wait(goro_client *c, uint64_t id, int timeout_ms,
			       goro_reply_fn cb, void *arg)
{
	struct client_call a = { .id = id, .timeout_ms = timeout_ms };

	return client_call_queue(c, PROTO_M_wait, &a, cb, arg);
}

GORO_EXPORT int goro_send_kill(goro_client *c, uint64_t id, int sig,
			       goro_reply_fn cb, void *arg)
{
	struct client_call a = { .id = id, .sig = sig, .timeout_ms = -1 };

	if (!c)
		return -EINVAL;
	if (check_signal(c, sig) < 0)
		return -EINVAL;
	return client_call_queue(c, PROTO_M_kill, &a, cb, arg);
}

GORO_EXPORT int goro_send_wg_status(goro_client *c, const char *name,
				    goro_reply_fn cb, void *arg)
{
	struct client_call a = { .name = name, .timeout_ms = -1 };

	return client_call_queue(c, PROTO_M_wg_status, &a, cb, arg);
}

GORO_EXPORT int goro_send_logs_read(goro_client *c, uint64_t id, enum goro_stream stream,
				    uint64_t from, int wait_ms, goro_reply_fn cb, void *arg)
{
	struct client_call a;
	int err = logs_read_call(c, id, stream, from, wait_ms, &a);

	if (err < 0)
		return err;
	return client_call_queue(c, PROTO_M_logs_read, &a, cb, arg);
}
