/* codec.c: decoding checked frames into messages, reading params, and
 * packing envelopes (proto.h). */
#include <errno.h>
#include <string.h>

#include "proto.h"

const struct proto_method_info proto_methods[PROTO_M_COUNT] = {
#define PROTO_M_ROW_(id, name, flags, params, result, summary) \
	{ name, flags, params, result, summary },
	PROTO_METHODS(PROTO_M_ROW_)
#undef PROTO_M_ROW_
};

int proto_method_find(const char *name, size_t len)
{
	for (int i = 0; i < PROTO_M_COUNT; i++)
		if (proto_str_eq(name, len, proto_methods[i].name))
			return i;
	return -1;
}

bool proto_str_eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

int proto_get_str(const msgpack_object *o, const char **s, size_t *len)
{
	if (o && o->type == MSGPACK_OBJECT_STR) {
		*s = o->via.str.ptr;
		*len = o->via.str.size;
		return 0;
	}
	if (o && o->type == MSGPACK_OBJECT_BIN) {
		*s = o->via.bin.ptr;
		*len = o->via.bin.size;
		return 0;
	}
	return -EINVAL;
}

int proto_get_i64(const msgpack_object *o, int64_t *v)
{
	if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > INT64_MAX)
			return -ERANGE;
		*v = (int64_t)o->via.u64;
		return 0;
	}
	if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 0;
	}
	return -EINVAL;
}

int proto_get_bool(const msgpack_object *o, bool *v)
{
	if (o && o->type == MSGPACK_OBJECT_BOOLEAN) {
		*v = o->via.boolean;
		return 0;
	}
	return -EINVAL;
}

int proto_decode(msgpack_unpacked *u, const char *frame, size_t len,
		 struct proto_msg *m, const char **why)
{
	size_t off = 0;
	const msgpack_object *a;
	uint32_t n;
	int64_t type, id;

	memset(m, 0, sizeof *m);
	if (msgpack_unpack_next(u, frame, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
		*why = "not a msgpack object";
		return -EPROTO;
	}
	if (u->data.type != MSGPACK_OBJECT_ARRAY) {
		*why = "a message must be an array";
		return -EPROTO;
	}
	a = u->data.via.array.ptr;
	n = u->data.via.array.size;
	if (n < 3 || proto_get_i64(&a[0], &type) < 0) {
		*why = "a message must start with its type (0, 1 or 2)";
		return -EPROTO;
	}
	m->type = (enum proto_type)type;
	switch (type) {
	case PROTO_REQUEST:
	case PROTO_RESPONSE:
		if (n != 4) {
			*why = "a request or response has 4 elements";
			return -EPROTO;
		}
		if (proto_get_i64(&a[1], &id) < 0 || id < 0 || id > UINT32_MAX) {
			*why = "msgid must be an unsigned 32-bit integer";
			return -EPROTO;
		}
		m->msgid = (uint32_t)id;
		if (type == PROTO_RESPONSE) {
			m->error = a[2];
			m->result = a[3];
			return 0;
		}
		a++;
		break;
	case PROTO_NOTIFY:
		if (n != 3) {
			*why = "a notification has 3 elements";
			return -EPROTO;
		}
		break;
	default:
		*why = "the message type must be 0 (request), 1 (response) or 2 (notification)";
		return -EPROTO;
	}
	if (proto_get_str(&a[1], &m->method, &m->method_len) < 0) {
		*why = "the method must be a string";
		return -EPROTO;
	}
	if (a[2].type != MSGPACK_OBJECT_ARRAY) {
		*why = "params must be an array";
		return -EPROTO;
	}
	m->params = a[2];
	return 0;
}

const msgpack_object *proto_param(const msgpack_object *params, uint32_t i)
{
	if (params->type != MSGPACK_OBJECT_ARRAY || i >= params->via.array.size)
		return NULL;
	return &params->via.array.ptr[i];
}

int proto_options(const msgpack_object *params, uint32_t first_opt,
		  const char *const *allowed, const msgpack_object **opts,
		  const char **why)
{
	uint32_t n = params->via.array.size;
	const msgpack_object *o;

	*opts = NULL;
	if (n <= first_opt)
		return 0;
	o = &params->via.array.ptr[n - 1];
	if (n - 1 != first_opt || o->type != MSGPACK_OBJECT_MAP) {
		*why = n - 1 > first_opt ? "too many params" : "options must be a map";
		return -EINVAL;
	}
	if (proto_keys_allowed(o, allowed) < 0) {
		*why = "unknown option (option names are strings; see PROTOCOL.md)";
		return -EINVAL;
	}
	*opts = o;
	return 0;
}

int proto_keys_allowed(const msgpack_object *map, const char *const *allowed)
{
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const char *k;
		size_t klen;
		bool known = false;

		if (proto_get_str(&map->via.map.ptr[i].key, &k, &klen) < 0)
			return -EINVAL;
		for (const char *const *a = allowed; *a && !known; a++)
			known = proto_str_eq(k, klen, *a);
		if (!known)
			return -EINVAL;
	}
	return 0;
}

const msgpack_object *proto_opt(const msgpack_object *opts, const char *key)
{
	if (!opts)
		return NULL;
	for (uint32_t i = 0; i < opts->via.map.size; i++) {
		const char *k;
		size_t klen;

		if (proto_get_str(&opts->via.map.ptr[i].key, &k, &klen) == 0 &&
		    proto_str_eq(k, klen, key))
			return &opts->via.map.ptr[i].val;
	}
	return NULL;
}

int proto_get_name(const msgpack_object *o, const char **s, size_t *len,
		   const char **why)
{
	if (proto_get_str(o, s, len) < 0) {
		*why = "the name must be a string";
		return -EINVAL;
	}
	if (*len == 0 || *len > PROTO_MAX_NAME) {
		*why = "a name is 1 to 255 bytes long";
		return -EINVAL;
	}
	if (memchr(*s, '\0', *len)) {
		*why = "a name cannot contain a NUL byte";
		return -EINVAL;
	}
	return 0;
}

int proto_get_timeout(const msgpack_object *opts, int64_t *ms, const char **why)
{
	const msgpack_object *o = proto_opt(opts, "timeout_ms");

	*ms = -1;
	if (!o || o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (proto_get_i64(o, ms) < 0 || *ms < 0 || *ms > PROTO_MAX_TIMEOUT_MS) {
		*why = "timeout_ms must be an integer from 0 to 2147483647";
		return -EINVAL;
	}
	return 0;
}

void proto_pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, s, len);
}

void proto_pack_str(msgpack_packer *pk, const char *s)
{
	proto_pack_strn(pk, s, strlen(s));
}

void proto_pack_kv_str(msgpack_packer *pk, const char *key, const char *val)
{
	proto_pack_str(pk, key);
	proto_pack_str(pk, val);
}

void proto_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v)
{
	proto_pack_str(pk, key);
	msgpack_pack_int64(pk, v);
}

void proto_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
	proto_pack_str(pk, key);
	msgpack_pack_uint64(pk, v);
}

void proto_pack_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
	proto_pack_str(pk, key);
	if (v)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

void proto_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, PROTO_REQUEST);
	msgpack_pack_uint32(pk, msgid);
	proto_pack_str(pk, method);
}

void proto_pack_response_ok(msgpack_packer *pk, uint32_t msgid)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, PROTO_RESPONSE);
	msgpack_pack_uint32(pk, msgid);
	msgpack_pack_nil(pk);
}

void proto_pack_response_err(msgpack_packer *pk, uint32_t msgid, int code,
			     const char *message)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, PROTO_RESPONSE);
	msgpack_pack_uint32(pk, msgid);
	msgpack_pack_array(pk, 2);
	proto_pack_str(pk, proto_err_name(code));
	proto_pack_str(pk, message ? message : proto_strerror(code));
	msgpack_pack_nil(pk);
}

int proto_read_error(const msgpack_object *err, const char **msg, size_t *msg_len)
{
	const char *name;
	size_t nlen;
	int code;

	*msg = "";
	*msg_len = 0;
	if (err->type != MSGPACK_OBJECT_ARRAY || err->via.array.size < 1 ||
	    proto_get_str(&err->via.array.ptr[0], &name, &nlen) < 0)
		return -EPROTO;
	if (err->via.array.size >= 2)
		proto_get_str(&err->via.array.ptr[1], msg, msg_len);
	code = proto_err_from_name(name, nlen);
	return code ? code : -EPROTO;
}
