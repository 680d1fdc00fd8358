/* proto.h: the msgpack-RPC codec shared by gorod and its clients.
 *
 * Receiving: bytes from the socket go to proto_frame_check() first, a
 * bounded walk of our own that finds where the next message ends and
 * enforces the limits (size, depth, element counts, string lengths)
 * before msgpack-c sees a byte: msgpack-c's unpacker allocates for an
 * array or map header before any element arrives (five bytes can ask for
 * ~96 GB) and reports deep nesting as out-of-memory. Only a frame that
 * passed is given to proto_decode(), which unpacks it and checks that it
 * is a request, response or notification of the right shape.
 *
 * Sending: a msgpack_packer over a msgpack_sbuffer, with the helpers
 * below for the envelopes. The spec is proto/PROTOCOL.md. */
#ifndef GORO_PROTO_H
#define GORO_PROTO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "methods.h"

#define PROTO_VERSION 1
#define PROTO_MAX_MESSAGE (1u << 20)
#define PROTO_MAX_DEPTH 16
#define PROTO_MAX_NAME 255
#define PROTO_MAX_INFLIGHT 1024
#define PROTO_MAX_TIMEOUT_MS 2147483647LL

enum proto_type {
	PROTO_REQUEST = 0,
	PROTO_RESPONSE = 1,
	PROTO_NOTIFY = 2,
};

/* Finds the end of the first message in buf[0..len). Returns its length
 * (> 0), 0 if more bytes are needed, -EMSGSIZE if it would exceed
 * max_message, or -EPROTO if the bytes are not valid msgpack or nest deeper
 * than PROTO_MAX_DEPTH. Reads nothing past buf + len. */
ssize_t proto_frame_check(const char *buf, size_t len, size_t max_message);

/* A decoded message. Pointers point into the msgpack zone (and the frame,
 * for str/bin): valid while both live. */
struct proto_msg {
	enum proto_type type;
	uint32_t msgid;           /* request, response */
	const char *method;       /* request, notification */
	size_t method_len;
	msgpack_object params;    /* request, notification: an array */
	msgpack_object error;     /* response */
	msgpack_object result;    /* response */
};

/* Decodes one frame that proto_frame_check() accepted. Returns 0, or
 * -EPROTO with *why set to a sentence when it is not a well-formed message
 * (the connection should then be closed). */
int proto_decode(msgpack_unpacked *u, const char *frame, size_t len,
		 struct proto_msg *m, const char **why);

/* ---- reading params ------------------------------------------------------- */

/* Each returns 0, or a negative code with *why set to a sentence that names
 * what was wrong ("name must be a string"). */

/* The i-th element of the params array, or NULL if there are fewer. */
const msgpack_object *proto_param(const msgpack_object *params, uint32_t i);

/* The trailing options map (the last param if it is a map, else NULL),
 * checked against the allowed keys (a NULL-terminated list): an unknown
 * key is -EINVAL. first_opt is the index where options may start. */
int proto_options(const msgpack_object *params, uint32_t first_opt,
		  const char *const *allowed, const msgpack_object **opts,
		  const char **why);

/* 0 when every key of map is a string among allowed (NULL-terminated),
 * else -EINVAL. */
int proto_keys_allowed(const msgpack_object *map, const char *const *allowed);

/* The value of key in an options map (NULL map or absent key: NULL). */
const msgpack_object *proto_opt(const msgpack_object *opts, const char *key);

/* A str (or bin) as pointer and length. */
int proto_get_str(const msgpack_object *o, const char **s, size_t *len);

/* A name of a primitive: 1..PROTO_MAX_NAME bytes, no NUL. */
int proto_get_name(const msgpack_object *o, const char **s, size_t *len,
		   const char **why);

int proto_get_i64(const msgpack_object *o, int64_t *v);
int proto_get_bool(const msgpack_object *o, bool *v);

/* An optional timeout_ms option: -1 when absent, else 0..PROTO_MAX_TIMEOUT_MS. */
int proto_get_timeout(const msgpack_object *opts, int64_t *ms, const char **why);

bool proto_str_eq(const char *s, size_t len, const char *lit);

/* ---- writing -------------------------------------------------------------- */

void proto_pack_str(msgpack_packer *pk, const char *s);
void proto_pack_strn(msgpack_packer *pk, const char *s, size_t len);
void proto_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
void proto_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v);
void proto_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
void proto_pack_kv_bool(msgpack_packer *pk, const char *key, bool v);

/* [0, msgid, method, ...]: the caller then packs the params array. */
void proto_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method);

/* [1, msgid, nil, ...]: the caller then packs the result. */
void proto_pack_response_ok(msgpack_packer *pk, uint32_t msgid);

/* [1, msgid, [code, message], nil] for a negative code. */
void proto_pack_response_err(msgpack_packer *pk, uint32_t msgid, int code,
			     const char *message);

/* Reads an error object [code, message]: the code as a negative number
 * (-EPROTO if the name is unknown), and the message. */
int proto_read_error(const msgpack_object *err, const char **msg, size_t *msg_len);

#endif /* GORO_PROTO_H */
