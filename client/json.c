/* json.c: msgpack objects as JSON text (goro_stats_json()).
 *
 * Generic, so that a field gorod adds to `stats` shows up without a change
 * here: map -> object, array -> array, str -> string (escaped; invalid
 * UTF-8 becomes U+FFFD, as Go's encoding/json does), bin -> base64 string
 * (Go's encoding for []byte), integers as they are, floats with 17
 * digits (NaN and infinities, which JSON lacks, -> null), nil -> null,
 * ext -> {"ext": type, "data": base64}. A map key that is not a string is
 * written as a string holding its JSON text. The input passed
 * proto_frame_check(), so its depth is bounded and the recursion with it. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A growing string; after a failed allocation every append is ignored and
 * oom stays set. */
struct jbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct jbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap - b->len < n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct jbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

static bool cont(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

/* The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && cont(s[1]) ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || !cont(s[1]) || !cont(s[2]))
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || !cont(s[1]) || !cont(s[2]) || !cont(s[3]))
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/* s[0..n) as a JSON string. */
static void put_str(struct jbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	put(b, "\"", 1);
	while (i < n) {
		size_t run = i, k;
		char esc[8];

		/* the longest run that needs no escaping, copied at once */
		while (run < n && u[run] >= 0x20 && u[run] != '"' && u[run] != '\\' &&
		       (k = utf8_len(u + run, n - run)) > 0)
			run += k;
		put(b, s + i, run - i);
		if ((i = run) == n)
			break;
		switch (u[i]) {
		case '"': puts_(b, "\\\""); break;
		case '\\': puts_(b, "\\\\"); break;
		case '\n': puts_(b, "\\n"); break;
		case '\r': puts_(b, "\\r"); break;
		case '\t': puts_(b, "\\t"); break;
		case '\b': puts_(b, "\\b"); break;
		case '\f': puts_(b, "\\f"); break;
		default:
			if (u[i] < 0x20) {
				snprintf(esc, sizeof esc, "\\u%04x", u[i]);
				puts_(b, esc);
			} else {
				puts_(b, "\\ufffd"); /* not UTF-8 */
			}
		}
		i++;
	}
	put(b, "\"", 1);
}

/* s[0..n) as a JSON string of its base64 (RFC 4648, padded). */
static void put_base64(struct jbuf *b, const char *s, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *u = (const unsigned char *)s;

	put(b, "\"", 1);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)u[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (uint32_t)u[i + 1] << 8;
		if (i + 2 < n)
			v |= u[i + 2];
		q[0] = tab[v >> 18 & 63];
		q[1] = tab[v >> 12 & 63];
		q[2] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		put(b, q, 4);
	}
	put(b, "\"", 1);
}

static void put_obj(struct jbuf *b, const msgpack_object *o);

/* A map key: a string as itself, anything else as its JSON text, quoted. */
static void put_key(struct jbuf *b, const msgpack_object *k)
{
	struct jbuf t = { 0 };

	if (k->type == MSGPACK_OBJECT_STR) {
		put_str(b, k->via.str.ptr, k->via.str.size);
		return;
	}
	put_obj(&t, k);
	if (t.oom)
		b->oom = true;
	else
		put_str(b, t.p, t.len);
	free(t.p);
}

static void put_obj(struct jbuf *b, const msgpack_object *o)
{
	char num[32];

	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		puts_(b, "null");
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		puts_(b, o->via.boolean ? "true" : "false");
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		snprintf(num, sizeof num, "%" PRIu64, o->via.u64);
		puts_(b, num);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		snprintf(num, sizeof num, "%" PRId64, o->via.i64);
		puts_(b, num);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64)) {
			puts_(b, "null");
			break;
		}
		snprintf(num, sizeof num, "%.*g",
			 o->type == MSGPACK_OBJECT_FLOAT32 ? 9 : 17, o->via.f64);
		puts_(b, num);
		break;
	case MSGPACK_OBJECT_STR:
		put_str(b, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		put_base64(b, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		snprintf(num, sizeof num, "{\"ext\":%d,\"data\":", (int)o->via.ext.type);
		puts_(b, num);
		put_base64(b, o->via.ext.ptr, o->via.ext.size);
		puts_(b, "}");
		break;
	case MSGPACK_OBJECT_ARRAY:
		puts_(b, "[");
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				puts_(b, ",");
			put_obj(b, &o->via.array.ptr[i]);
		}
		puts_(b, "]");
		break;
	case MSGPACK_OBJECT_MAP:
		puts_(b, "{");
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			if (i)
				puts_(b, ",");
			put_key(b, &o->via.map.ptr[i].key);
			puts_(b, ":");
			put_obj(b, &o->via.map.ptr[i].val);
		}
		puts_(b, "}");
		break;
	default:
		puts_(b, "null");
	}
}

char *client_json(const msgpack_object *o)
{
	struct jbuf b = { 0 };

	put_obj(&b, o);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
