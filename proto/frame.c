/* frame.c: finding where a msgpack message ends, within limits, before
 * anything is allocated for it (see proto.h for why msgpack-c's unpacker
 * cannot be given untrusted bytes directly).
 *
 * The walk is iterative: a small stack holds, per open array or map, how
 * many elements are still to come. Every length read from the input is
 * checked against what the message may still hold (max_message minus what
 * was read), so a header that claims gigabytes is refused at once, not
 * after the peer sent them. Each element takes at least one byte, so an
 * array or map may announce no more elements than bytes remain. */
#include <errno.h>
#include <string.h>

#include "proto.h"

static uint64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* What one header byte says: `head` bytes of header after the type byte
 * (a length field, or the value itself), then either a payload of `fixed`
 * bytes, or of the length in the header (`len_payload`), or `nelem`
 * elements (`container`, from the header or the type byte). */
struct shape {
	int head;         /* bytes after the type byte holding a length */
	uint64_t fixed;   /* payload bytes when there is no length */
	bool len_payload; /* the length counts payload bytes (str, bin, ext) */
	bool ext;         /* ext: one type byte before the payload */
	int container;    /* 0, 1 array, 2 map */
	uint64_t nelem;   /* fixarray/fixmap count */
};

static int shape_of(unsigned char c, struct shape *s)
{
	memset(s, 0, sizeof *s);
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return 0;
	if (c >= 0x80 && c <= 0x8f) {
		s->container = 2;
		s->nelem = c & 0x0f;
		return 0;
	}
	if (c >= 0x90 && c <= 0x9f) {
		s->container = 1;
		s->nelem = c & 0x0f;
		return 0;
	}
	if (c >= 0xa0 && c <= 0xbf) {
		s->fixed = c & 0x1f;
		return 0;
	}
	switch (c) {
	case 0xc4: case 0xd9: s->head = 1; s->len_payload = true; return 0; /* bin8 str8 */
	case 0xc5: case 0xda: s->head = 2; s->len_payload = true; return 0;
	case 0xc6: case 0xdb: s->head = 4; s->len_payload = true; return 0;
	case 0xc7: s->head = 1; s->len_payload = true; s->ext = true; return 0;
	case 0xc8: s->head = 2; s->len_payload = true; s->ext = true; return 0;
	case 0xc9: s->head = 4; s->len_payload = true; s->ext = true; return 0;
	case 0xca: s->fixed = 4; return 0;
	case 0xcb: s->fixed = 8; return 0;
	case 0xcc: case 0xd0: s->fixed = 1; return 0;
	case 0xcd: case 0xd1: s->fixed = 2; return 0;
	case 0xce: case 0xd2: s->fixed = 4; return 0;
	case 0xcf: case 0xd3: s->fixed = 8; return 0;
	case 0xd4: s->fixed = 2; return 0; /* fixext: type + data */
	case 0xd5: s->fixed = 3; return 0;
	case 0xd6: s->fixed = 5; return 0;
	case 0xd7: s->fixed = 9; return 0;
	case 0xd8: s->fixed = 17; return 0;
	case 0xdc: s->head = 2; s->container = 1; return 0;
	case 0xdd: s->head = 4; s->container = 1; return 0;
	case 0xde: s->head = 2; s->container = 2; return 0;
	case 0xdf: s->head = 4; s->container = 2; return 0;
	default: return -EPROTO; /* 0xc1: never used */
	}
}

ssize_t proto_frame_check(const char *buf, size_t len, size_t max_message)
{
	const unsigned char *p = (const unsigned char *)buf;
	uint64_t left[PROTO_MAX_DEPTH + 1]; /* elements still to come per level */
	int depth = 0;
	size_t pos = 0;

	left[0] = 1; /* the message itself */
	while (depth >= 0) {
		struct shape s;
		uint64_t n;

		if (left[depth] == 0) {
			depth--;
			continue;
		}
		left[depth]--;
		if (pos >= max_message)
			return -EMSGSIZE;
		if (pos >= len)
			return 0;
		if (shape_of(p[pos], &s) < 0)
			return -EPROTO;
		pos++;
		if (pos + (size_t)s.head > max_message)
			return -EMSGSIZE;
		if (pos + (size_t)s.head > len)
			return 0;
		n = s.head ? be(p + pos, s.head) : (s.container ? s.nelem : s.fixed);
		pos += (size_t)s.head; /* pos <= max_message from here on */
		if (s.container) {
			uint64_t elems = s.container == 2 ? 2 * n : n;
			if (elems > max_message - pos)
				return -EMSGSIZE;
			if (elems == 0)
				continue;
			if (depth == PROTO_MAX_DEPTH)
				return -EPROTO;
			left[++depth] = elems;
			continue;
		}
		if (s.ext)
			n += 1; /* the ext type byte */
		if (n > max_message - pos)
			return -EMSGSIZE;
		if (pos + n > len)
			return 0;
		pos += (size_t)n;
	}
	return (ssize_t)pos;
}
