/* func.c: the functions func tasks run: the registry, the built-ins, and
 * the values they take and give (msgpack objects <-> goro_value).
 *
 * Built-ins: `noop`; `sleep MS` (parks); `spin MS` (burns CPU, yielding
 * about every millisecond, so other goroutines keep running); `echo
 * ARGS..` (its result is its arguments). Modules add theirs through
 * goro_func_register() while they load (module.c), before gorod serves
 * anything, so the registry is read without a lock afterwards. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

static int fn_noop(struct goro_task *t, const struct goro_value *args, size_t nargs);
static int fn_sleep(struct goro_task *t, const struct goro_value *args, size_t nargs);
static int fn_spin(struct goro_task *t, const struct goro_value *args, size_t nargs);
static int fn_echo(struct goro_task *t, const struct goro_value *args, size_t nargs);

static const struct func builtins[] = {
	{ "noop", fn_noop, false },
	{ "sleep", fn_sleep, true },
	{ "spin", fn_spin, false },
	{ "echo", fn_echo, false },
};

static struct func *funcs; /* from modules; owned */
static size_t nfuncs;
static bool registry_closed; /* loading is over: funcs never moves again */

void func_registry_close(void)
{
	registry_closed = true;
}

const struct func *func_find(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
		if (proto_str_eq(name, len, builtins[i].name))
			return &builtins[i];
	for (size_t i = 0; i < nfuncs; i++)
		if (proto_str_eq(name, len, funcs[i].name))
			return &funcs[i];
	return NULL;
}

int goro_func_register(struct goro_module *m, const char *name, goro_func fn)
{
	size_t len = name ? strlen(name) : 0;
	struct func *f;
	char *copy;

	if (!m || !fn || len == 0 || len > PROTO_MAX_NAME)
		return -EINVAL;
	if (registry_closed) /* tasks point into funcs: it must not move */
		return -EPERM;
	if (func_find(name, len))
		return -EEXIST;
	if (!(f = realloc(funcs, (nfuncs + 1) * sizeof *f)))
		return -ENOMEM;
	funcs = f;
	if (!(copy = strdup(name)))
		return -ENOMEM;
	funcs[nfuncs++] = (struct func){ copy, fn, false };
	m->registered++;
	return 0;
}

int goro_module_api(void)
{
	return GORO_MODULE_API;
}

/* ---- built-ins ----------------------------------------------------------------- */

/* args must be exactly one integer from 0 to 2^31-1 milliseconds. */
static int one_ms(struct goro_task *t, const char *fn, const struct goro_value *args,
		  size_t nargs, int64_t *ms)
{
	if (nargs != 1 || args[0].type != GORO_INT || args[0].i < 0 ||
	    args[0].i > PROTO_MAX_TIMEOUT_MS)
		return goro_task_fail(t, -EINVAL,
				      "%s takes one argument: milliseconds, an integer from 0 to 2147483647",
				      fn);
	*ms = args[0].i;
	return 0;
}

static int fn_noop(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	return 0;
}

static int fn_sleep(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	int64_t ms = 0;
	int rc = one_ms(t, "sleep", args, nargs, &ms);

	return rc < 0 ? rc : goro_sleep(ms);
}

static int fn_spin(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	int64_t ms = 0, end, slice;
	int rc = one_ms(t, "spin", args, nargs, &ms);

	if (rc < 0)
		return rc;
	end = rt_now() + ms * 1000000;
	while (rt_now() < end) {
		slice = rt_now() + 1000000;
		while (rt_now() < slice)
			for (int i = 0; i < 1000; i++)
				__asm__ volatile("" ::: "memory"); /* work the compiler keeps */
		if ((rc = goro_yield()) < 0)
			return rc;
	}
	return 0;
}

static int fn_echo(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	struct goro_value v = { .type = GORO_ARRAY, .len = nargs, .items = args };

	return goro_task_result(t, &v);
}

/* ---- values ---------------------------------------------------------------------- */

/* The goro_values and bytes a copy of o needs. */
static void value_size(const msgpack_object *o, size_t *nvals, size_t *bytes)
{
	switch (o->type) {
	case MSGPACK_OBJECT_STR:
		*bytes += o->via.str.size;
		break;
	case MSGPACK_OBJECT_BIN:
		*bytes += o->via.bin.size;
		break;
	case MSGPACK_OBJECT_ARRAY:
		*nvals += o->via.array.size;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			value_size(&o->via.array.ptr[i], nvals, bytes);
		break;
	case MSGPACK_OBJECT_MAP:
		*nvals += 2 * (size_t)o->via.map.size;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			value_size(&o->via.map.ptr[i].key, nvals, bytes);
			value_size(&o->via.map.ptr[i].val, nvals, bytes);
		}
		break;
	default:
		break;
	}
}

struct copier {
	struct goro_value *vals; /* the next free ones */
	char *bytes;
};

static void value_copy(struct copier *c, const msgpack_object *o, struct goro_value *v)
{
	memset(v, 0, sizeof *v);
	switch (o->type) {
	case MSGPACK_OBJECT_BOOLEAN:
		v->type = GORO_BOOL;
		v->b = o->via.boolean;
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX) {
			v->type = GORO_UINT;
			v->u = o->via.u64;
		} else {
			v->type = GORO_INT;
			v->i = (int64_t)o->via.u64;
		}
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v->type = GORO_INT;
		v->i = o->via.i64;
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v->type = GORO_FLOAT;
		v->f = o->via.f64;
		break;
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN: {
		const char *p = o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : o->via.bin.ptr;
		v->type = o->type == MSGPACK_OBJECT_STR ? GORO_STR : GORO_BIN;
		v->len = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : o->via.bin.size;
		if (v->len)
			memcpy(c->bytes, p, v->len);
		v->str = c->bytes;
		c->bytes += v->len;
		break;
	}
	case MSGPACK_OBJECT_ARRAY: {
		struct goro_value *items = c->vals;
		v->type = GORO_ARRAY;
		v->len = o->via.array.size;
		v->items = items;
		c->vals += v->len;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			value_copy(c, &o->via.array.ptr[i], &items[i]);
		break;
	}
	case MSGPACK_OBJECT_MAP: {
		struct goro_value *items = c->vals;
		v->type = GORO_MAP;
		v->len = o->via.map.size;
		v->items = items;
		c->vals += 2 * v->len;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			value_copy(c, &o->via.map.ptr[i].key, &items[2 * i]);
			value_copy(c, &o->via.map.ptr[i].val, &items[2 * i + 1]);
		}
		break;
	}
	default: /* nil, and extension types, which no function takes */
		v->type = GORO_NIL;
		break;
	}
}

/* A bound on one spawn's argument values, which cost far more in memory
 * than on the wire. */
#define FUNC_ARGS_MAX_VALUES 65536

int func_args_copy(const msgpack_object *arr, struct goro_value **out, size_t *n)
{
	size_t nvals = 0, bytes = 0;
	struct copier c;
	struct goro_value *vals;

	if (!arr || arr->type != MSGPACK_OBJECT_ARRAY) {
		*out = NULL;
		*n = 0;
		return 0;
	}
	value_size(arr, &nvals, &bytes);
	if (nvals > FUNC_ARGS_MAX_VALUES)
		return -E2BIG; /* each value costs a goro_value: 24 bytes per byte sent */
	vals = malloc(nvals * sizeof *vals + bytes + 1);
	if (!vals)
		return -ENOMEM;
	c.vals = vals + arr->via.array.size;
	c.bytes = (char *)(vals + nvals);
	for (uint32_t i = 0; i < arr->via.array.size; i++)
		value_copy(&c, &arr->via.array.ptr[i], &vals[i]);
	*out = vals;
	*n = arr->via.array.size;
	return 0;
}

void func_pack_value(msgpack_packer *pk, const struct goro_value *v)
{
	switch (v->type) {
	case GORO_BOOL:
		if (v->b)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		break;
	case GORO_INT:
		msgpack_pack_int64(pk, v->i);
		break;
	case GORO_UINT:
		msgpack_pack_uint64(pk, v->u);
		break;
	case GORO_FLOAT:
		msgpack_pack_double(pk, v->f);
		break;
	case GORO_STR:
		msgpack_pack_str_with_body(pk, v->str, v->len);
		break;
	case GORO_BIN:
		msgpack_pack_bin_with_body(pk, v->str, v->len);
		break;
	case GORO_ARRAY:
		msgpack_pack_array(pk, v->len);
		for (size_t i = 0; i < v->len; i++)
			func_pack_value(pk, &v->items[i]);
		break;
	case GORO_MAP:
		msgpack_pack_map(pk, v->len);
		for (size_t i = 0; i < 2 * v->len; i++)
			func_pack_value(pk, &v->items[i]);
		break;
	default:
		msgpack_pack_nil(pk);
		break;
	}
}

/* A value's depth, to refuse one too deep to pass PROTO_MAX_DEPTH once
 * packed in a reply. */
int func_value_depth(const struct goro_value *v)
{
	int d = 0;

	if (v->type != GORO_ARRAY && v->type != GORO_MAP)
		return 1;
	for (size_t i = 0; i < (v->type == GORO_MAP ? 2 * v->len : v->len); i++) {
		int x = func_value_depth(&v->items[i]);
		if (x > d)
			d = x;
		if (d > PROTO_MAX_DEPTH)
			break;
	}
	return d + 1;
}
