/* fuzz_frame.c: the frame check and the decoder (proto/), on any bytes.
 *
 * The input is what a peer could send on the socket: any number of
 * messages, any garbage. It goes through proto/ the way session.c uses it,
 * twice, and both ways must agree:
 *
 *   - at once: the whole input in one buffer, cut into frames by
 *     proto_frame_check() and each frame decoded by proto_decode() with one
 *     msgpack_unpacked for the connection (as handle_input does);
 *   - as a stream: the same bytes arriving in chunks cut at points drawn
 *     from the input's hash, with the session's buffering (append, check,
 *     consume, keep the rest for the next read).
 *
 * Both must see the same frames, the same decode results and the same end
 * (need more bytes, or the same error). On each frame the check accepted,
 * what PROTOCOL.md's Limits promise is asserted, not assumed:
 *
 *   - the frame is at most max_message bytes, and it is one msgpack object
 *     that msgpack-c itself reads to exactly that length;
 *   - no array or map nests deeper than PROTO_MAX_DEPTH, and none
 *     announces more elements than the frame holds bytes;
 *   - decoding it allocates at most ALLOC_PER_BYTE bytes per frame byte
 *     (plus a zone chunk): counted by a malloc hook, so a header that
 *     would make msgpack-c allocate for elements that never arrive (five
 *     bytes asking for ~96 GB) is caught even when ASan's own
 *     allocation-size limit is not reached;
 *   - the check is the same function under a smaller max_message: a frame
 *     accepted under 1 MiB is accepted with the same length under any
 *     limit it fits in, and refused with -EMSGSIZE under one it does not.
 *
 * Frames that decode are also read with the param helpers the handlers
 * use (proto_param, proto_options, proto_get_name, ...), so their bounds
 * are fuzzed too. Any failed assertion aborts: libFuzzer saves the input. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sanitizer/allocator_interface.h>

#include "proto.h"

/* A msgpack_object is 24 bytes on 64-bit, a map entry two of them, and
 * each element takes at least one byte of the frame (a map entry two): 24
 * bytes of objects per frame byte at most. The zone allocates in chunks of
 * 8 KiB and adds a chunk header to allocations larger than that. */
#define ALLOC_PER_BYTE 32
#define ALLOC_SLACK (64 * 1024)

#define FAIL(...)                                                                 \
	do {                                                                      \
		fprintf(stderr, "fuzz_frame: %s:%d: ", __FILE__, __LINE__);        \
		fprintf(stderr, __VA_ARGS__);                                     \
		fputc('\n', stderr);                                              \
		abort();                                                          \
	} while (0)

#define CHECK(cond, ...)                                                          \
	do {                                                                      \
		if (!(cond))                                                      \
			FAIL("check failed: " #cond ": " __VA_ARGS__);              \
	} while (0)

/* ---- counting what the decoder allocates ----------------------------------- */

static bool counting;
static size_t counted;

static void on_malloc(const volatile void *p, size_t n)
{
	if (counting)
		counted += n;
}

static void on_free(const volatile void *p)
{
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (!__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free))
		FAIL("cannot install the malloc hooks (build with -fsanitize=address)");
	return 0;
}

/* ---- what one pass saw ------------------------------------------------------- */

/* One step of cutting the input: a frame (len > 0) and how it decoded, or
 * the end: 0 (more bytes needed) or the check's error. */
struct step {
	ssize_t len;
	int rc;             /* proto_decode's */
	int type;
	uint32_t msgid;
	size_t method_len;
};

#define MAX_STEPS 4096

struct trace {
	struct step s[MAX_STEPS];
	size_t n;
	bool full;          /* more steps than MAX_STEPS: compare no further */
};

static void trace_add(struct trace *t, const struct step *s)
{
	if (t->n < MAX_STEPS)
		t->s[t->n++] = *s;
	else
		t->full = true;
}

/* ---- the limits, checked on what msgpack-c made of a frame ------------------- */

/* Walks o (at nesting level `level`, the message itself being 1): no
 * non-empty container deeper than PROTO_MAX_DEPTH. Counts the objects. */
static void walk(const msgpack_object *o, int level, size_t *objects)
{
	++*objects;
	if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size) {
		CHECK(level <= PROTO_MAX_DEPTH, "an array nested %d deep passed the check", level);
		for (uint32_t i = 0; i < o->via.array.size; i++)
			walk(&o->via.array.ptr[i], level + 1, objects);
	} else if (o->type == MSGPACK_OBJECT_MAP && o->via.map.size) {
		CHECK(level <= PROTO_MAX_DEPTH, "a map nested %d deep passed the check", level);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			walk(&o->via.map.ptr[i].key, level + 1, objects);
			walk(&o->via.map.ptr[i].val, level + 1, objects);
		}
	}
}

/* The same check under a smaller limit must give the answer PROTOCOL.md's
 * limit implies (see the comment at the top). */
static void check_smaller_limit(const char *buf, size_t len, ssize_t full, size_t limit)
{
	ssize_t r = proto_frame_check(buf, len, limit);

	if (full > 0 && (size_t)full <= limit)
		CHECK(r == full, "limit %zu: %zd, but %zd under 1 MiB", limit, r, full);
	else if (full > 0 || full == -EMSGSIZE)
		CHECK(r == -EMSGSIZE, "limit %zu: %zd for a %zd-byte frame", limit, r, full);
	else if (full == 0)
		CHECK(r == 0 || r == -EMSGSIZE, "limit %zu: %zd, but more bytes needed", limit, r);
	else
		CHECK(r == -EPROTO || r == -EMSGSIZE, "limit %zu: %zd, but %zd", limit, r, full);
}

/* Reads a decoded message the way the handlers do, so that the helpers'
 * bounds are exercised. Nothing here may fail other than by its return. */
static void read_params(const struct proto_msg *m)
{
	static const char *const allowed[] = { "timeout_ms", "mode", "try", "capacity", "n",
					       "token", "lease", "client", NULL };
	const msgpack_object *opts = NULL, *p;
	const char *why = NULL, *s;
	size_t len;
	int64_t v;
	bool b;

	if (m->type == PROTO_RESPONSE) {
		if (m->error.type != MSGPACK_OBJECT_NIL) {
			int code = proto_read_error(&m->error, &s, &len);
			CHECK(code < 0, "proto_read_error gave %d", code);
			CHECK(len == 0 || s != NULL, "an error message without bytes");
			(void)proto_strerror(code);
			(void)proto_err_name(code);
		}
		return;
	}
	CHECK(m->params.type == MSGPACK_OBJECT_ARRAY, "params that are not an array decoded");
	(void)proto_method_find(m->method, m->method_len);
	for (uint32_t i = 0; i < 3; i++) {
		p = proto_param(&m->params, i);
		CHECK(!p == (i >= m->params.via.array.size), "proto_param(%u) of %u", i,
		      m->params.via.array.size);
		if (proto_get_name(p, &s, &len, &why) == 0)
			CHECK(len >= 1 && len <= PROTO_MAX_NAME && !memchr(s, 0, len), "a bad name passed");
		(void)proto_get_i64(p, &v);
		(void)proto_get_bool(p, &b);
	}
	for (uint32_t first = 0; first < 3; first++) {
		if (proto_options(&m->params, first, allowed, &opts, &why) < 0) {
			CHECK(why != NULL, "proto_options failed without saying why");
			continue;
		}
		if (opts)
			CHECK(opts->type == MSGPACK_OBJECT_MAP, "options that are not a map");
		for (const char *const *k = allowed; *k; k++)
			(void)proto_opt(opts, *k);
		if (proto_get_timeout(opts, &v, &why) == 0)
			CHECK(v == -1 || (v >= 0 && v <= PROTO_MAX_TIMEOUT_MS), "timeout %lld",
			      (long long)v);
	}
}

/* One frame the check accepted: the limits (`limits`: in the first pass
 * only, the second sees the same frames), then the decoder as the session
 * runs it (u is the connection's msgpack_unpacked). */
static void frame(msgpack_unpacked *u, const char *f, size_t len, struct step *st, bool limits)
{
	msgpack_unpacked own;
	struct proto_msg m;
	const char *why = NULL;
	size_t off = 0, objects = 0;

	CHECK(len <= PROTO_MAX_MESSAGE, "a %zu-byte frame passed", len);

	/* msgpack-c must agree on where the message ends. */
	if (!limits)
		goto decode;
	msgpack_unpacked_init(&own);
	counting = true;
	counted = 0;
	int ur = msgpack_unpack_next(&own, f, len, &off);
	counting = false;
	CHECK(ur == MSGPACK_UNPACK_SUCCESS && off == len,
	      "msgpack-c says %d at %zu of a %zu-byte frame the check accepted", ur, off, len);
	CHECK(counted <= ALLOC_PER_BYTE * len + ALLOC_SLACK,
	      "unpacking a %zu-byte frame allocated %zu bytes", len, counted);
	walk(&own.data, 1, &objects);
	CHECK(objects <= len, "%zu objects in %zu bytes", objects, len);
	msgpack_unpacked_destroy(&own);

decode:
	counting = true;
	counted = 0;
	st->rc = proto_decode(u, f, len, &m, &why);
	counting = false;
	CHECK(counted <= ALLOC_PER_BYTE * len + ALLOC_SLACK,
	      "decoding a %zu-byte frame allocated %zu bytes", len, counted);
	if (st->rc < 0) {
		CHECK(st->rc == -EPROTO && why, "proto_decode: %d", st->rc);
		/* msgpack-c read the frame above: only the shape may be wrong. */
		CHECK(strcmp(why, "not a msgpack object") != 0, "a checked frame is not msgpack");
		return;
	}
	st->type = m.type;
	st->msgid = m.msgid;
	st->method_len = m.method_len;
	CHECK(m.type == PROTO_REQUEST || m.type == PROTO_RESPONSE || m.type == PROTO_NOTIFY,
	      "type %d", m.type);
	if (m.type != PROTO_RESPONSE)
		CHECK(m.method_len == 0 || (m.method >= f && m.method + m.method_len <= f + len),
		      "the method is not in the frame");
	read_params(&m);
}

/* Cuts buf[0..len) into frames as handle_input does; returns the bytes
 * consumed. Appends a step per frame, and the end step when the bytes
 * left are not a whole frame (0) or break the framing (< 0; *broken). */
static size_t cut(msgpack_unpacked *u, const char *buf, size_t len, struct trace *t,
		  bool *broken, bool final, bool limits)
{
	size_t off = 0;

	while (off < len) {
		struct step st = { 0 };

		st.len = proto_frame_check(buf + off, len - off, PROTO_MAX_MESSAGE);
		CHECK(st.len < 0 || (size_t)st.len <= len - off, "%zd of %zu bytes", st.len, len - off);
		if (st.len < 0) {
			CHECK(st.len == -EPROTO || st.len == -EMSGSIZE, "frame check: %zd", st.len);
			*broken = true;
			trace_add(t, &st);
			return off;
		}
		if (st.len == 0) {
			if (final)
				trace_add(t, &st);
			return off;
		}
		frame(u, buf + off, (size_t)st.len, &st, limits);
		trace_add(t, &st);
		off += (size_t)st.len;
	}
	if (final) {
		struct step end = { 0 };
		trace_add(t, &end);
	}
	return off;
}

static uint64_t hash(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static struct trace whole, streamed;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	msgpack_unpacked u;
	bool broken = false;
	uint64_t rnd = hash(data, size) | 1;

	/* At once. */
	whole.n = 0;
	whole.full = false;
	msgpack_unpacked_init(&u);
	size_t used = cut(&u, in, size, &whole, &broken, true, true);
	msgpack_unpacked_destroy(&u);

	/* The first frame (or the end) under smaller limits. */
	ssize_t first = proto_frame_check(in, size, PROTO_MAX_MESSAGE);
	check_smaller_limit(in, size, first, next(&rnd) % 64);
	check_smaller_limit(in, size, first, 1 + next(&rnd) % (size + 8));
	if (first > 0)
		check_smaller_limit(in, size, first, (size_t)first);

	/* As a stream: chunks of 1 to 64 bytes, now and then a larger one. */
	char *buf = malloc(size ? size : 1);
	size_t have = 0, pos = 0;
	streamed.n = 0;
	streamed.full = false;
	broken = false;
	msgpack_unpacked_init(&u);
	while (!broken) {
		size_t chunk = next(&rnd) % 8 == 0 ? next(&rnd) % 4096 : 1 + next(&rnd) % 64;
		bool final;

		if (chunk > size - pos)
			chunk = size - pos;
		memcpy(buf + have, in + pos, chunk);
		have += chunk;
		pos += chunk;
		final = pos == size;
		size_t n = cut(&u, buf, have, &streamed, &broken, final, false);
		memmove(buf, buf + n, have - n);
		have -= n;
		if (final)
			break;
	}
	msgpack_unpacked_destroy(&u);
	free(buf);

	/* Both saw the same. */
	if (!whole.full && !streamed.full) {
		CHECK(whole.n == streamed.n, "%zu steps at once, %zu as a stream", whole.n, streamed.n);
		for (size_t i = 0; i < whole.n; i++) {
			const struct step *a = &whole.s[i], *b = &streamed.s[i];
			CHECK(a->len == b->len && a->rc == b->rc && a->type == b->type &&
			      a->msgid == b->msgid && a->method_len == b->method_len,
			      "step %zu: %zd/%d at once, %zd/%d as a stream", i, a->len, a->rc, b->len,
			      b->rc);
		}
	}
	(void)used;
	return 0;
}
