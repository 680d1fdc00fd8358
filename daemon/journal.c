/* journal.c: durable task records, so that a spawn gorod acknowledged
 * survives gorod.
 *
 * The file, STATE_DIR/tasks.journal: an 8-byte header, then records, each
 * a little-endian u32 length, the CRC-32C of the payload, and the payload:
 * one msgpack map. Three kinds:
 *   {t: "spawn", id, uid, gid, kind, argv | func, name, created_ms}
 *   {t: "end", id, state, code, signal, error: [name, msg], result, pid,
 *    started_ms, ended_ms, stdout: [total, bytes], stderr: [total, bytes]}
 *   {t: "ids", last}   the highest id given, at the top of a compacted file
 * A record that does not check out (a torn write at the end, after a
 * crash) ends the file: gorod keeps what came before and says what it
 * dropped; the file as it was is kept beside as tasks.journal.bad.
 *
 * Group commit. A spawn appends its record to `pending` (under j.lock, a
 * plain mutex held only for a copy) and gets a sequence number; its reply
 * is packed at once but not written until the record is on disk
 * (session.c waits in journal_wait before it writes a batch). One writer
 * thread takes everything pending, writes it, fdatasyncs once, publishes
 * how far it got, and signals an eventfd; the waker goroutine wakes the
 * waiting goroutines. So a burst of pipelined spawns, from one client or
 * many, costs one sync, and no worker thread ever blocks on the disk. End
 * records are appended the same way and not waited for.
 *
 * Restart. journal_open reads the file back: tasks with an end record are
 * kept again as they were (wait, logs and ps answer for them, owners
 * checked as before), tasks without one were running when gorod stopped
 * and are now `lost`; ids go on from the highest one seen. Then the file
 * is rewritten with what retention keeps, and the same compaction runs
 * whenever the file has grown to twice its last compacted size (and at
 * least COMPACT_MIN): the waker goroutine takes the ids still kept (under
 * names_lock) and the writer rewrites the file without the rest, then
 * renames it into place.
 *
 * When a write or a sync fails, the journal is broken: the spawns waiting
 * for it get no acknowledgement (their connections are closed), and later
 * spawns are refused with EIO until gorod restarts; tasks already running
 * go on. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "task.h"

#define MAGIC "GOROJL1\n"
#define HDR 8                          /* a record's length and CRC */
#define RECORD_MAX (4u << 20)          /* two streams' output and the rest */
#define COMPACT_MIN (16u << 20)

static struct {
	bool on;
	char path[4096], tmp[4096], bad[4096];
	int fd, dirfd, evfd;

	/* Between appenders and the writer (lock). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	msgpack_sbuffer pending;
	uint64_t appended;            /* the last record's sequence number */
	bool stop;
	uint64_t *keep;               /* a compaction asked for: ids kept, ... */
	size_t nkeep;
	uint64_t keep_last;           /* ... and the highest id given then */
	bool compacting;              /* asked for and not done */

	/* The writer's. */
	pthread_t writer;
	bool writer_running;
	off_t size, compacted_size;

	_Atomic uint64_t durable;     /* the last record on disk */
	_Atomic int error;            /* negative errno once broken */
	_Atomic bool want_compact;    /* the writer asks the waker for ids */

	/* Goroutines waiting for durable (q.lock); the waker. */
	struct rt_waitq q;
	struct rt_gref waker;
	struct rt_wg waker_wg;
} j = { .fd = -1, .dirfd = -1, .evfd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

/* ---- CRC-32C ------------------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint32_t c = ~0u;

	while (n--)
		c = crc_table[(c ^ *b++) & 0xff] ^ (c >> 8);
	return ~c;
}

static void put_u32(char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (char)(v >> (8 * i));
}

static uint32_t get_u32(const char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)(unsigned char)p[i] << (8 * i);
	return v;
}

static int64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- appending --------------------------------------------------------------------------- */

/* Appends one record (payload packed in sb) to pending; its sequence
 * number. */
static uint64_t append(const msgpack_sbuffer *sb)
{
	char hdr[HDR];
	uint64_t seq;

	if (sb->size > RECORD_MAX)
		return 0; /* cannot happen with the caps below; never half a record */
	put_u32(hdr, (uint32_t)sb->size);
	put_u32(hdr + 4, crc32c(sb->data, sb->size));
	pthread_mutex_lock(&j.lock);
	msgpack_sbuffer_write(&j.pending, hdr, HDR);
	msgpack_sbuffer_write(&j.pending, sb->data, sb->size);
	seq = ++j.appended;
	pthread_cond_signal(&j.cond);
	pthread_mutex_unlock(&j.lock);
	return seq;
}

int journal_error(void)
{
	return atomic_load(&j.error);
}

static void pack_argv(msgpack_packer *pk, char *const *argv)
{
	size_t n = 0;

	while (argv && argv[n] && n < PS_ARGV_MAX)
		n++;
	msgpack_pack_array(pk, n);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(argv[i]);
		proto_pack_strn(pk, argv[i], len > PS_ARG_MAX ? PS_ARG_MAX : len);
	}
}

uint64_t journal_spawned(const struct task *t)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint64_t seq;

	if (!j.on)
		return 0;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7 + (t->name != NULL));
	proto_pack_kv_str(&pk, "t", "spawn");
	proto_pack_kv_u64(&pk, "id", t->id);
	proto_pack_kv_i64(&pk, "uid", t->uid);
	proto_pack_kv_i64(&pk, "gid", t->gid);
	proto_pack_kv_str(&pk, "kind", t->func ? "func" : "exec");
	if (t->func) {
		proto_pack_kv_str(&pk, "func", t->fn->name);
	} else {
		proto_pack_str(&pk, "argv");
		pack_argv(&pk, t->argv);
	}
	if (t->name)
		proto_pack_kv_str(&pk, "name", t->name);
	proto_pack_kv_i64(&pk, "created_ms", unix_ms());
	seq = append(&sb);
	msgpack_sbuffer_destroy(&sb);
	return seq;
}

/* Packs [total, the last JOURNAL_OUTPUT_MAX bytes kept] of one stream. */
static void pack_stream(msgpack_packer *pk, struct outbuf *o)
{
	char *data = NULL;
	size_t len = 0;
	uint64_t start, total;

	rt_mutex_lock_nocancel(&o->lock);
	total = o->total;
	if (outbuf_read(o, 0, JOURNAL_OUTPUT_MAX, true, &data, &len, &start) < 0)
		len = 0;
	rt_mutex_unlock(&o->lock);
	msgpack_pack_array(pk, 2);
	msgpack_pack_uint64(pk, total);
	msgpack_pack_bin(pk, len);
	msgpack_pack_bin_body(pk, data, len);
	free(data);
}

void journal_ended(struct task *t)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	bool err = t->err != 0, res = t->result != NULL;

	if (!j.on)
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 10 + err + res);
	proto_pack_kv_str(&pk, "t", "end");
	proto_pack_kv_u64(&pk, "id", t->id);
	proto_pack_kv_str(&pk, "state", task_state_name(t->state));
	proto_pack_kv_i64(&pk, "code", t->code);
	proto_pack_kv_i64(&pk, "signal", t->sig);
	if (err) {
		proto_pack_str(&pk, "error");
		msgpack_pack_array(&pk, 2);
		proto_pack_str(&pk, proto_err_name(t->err));
		proto_pack_str(&pk, t->errmsg ? t->errmsg : proto_strerror(t->err));
	}
	if (res) {
		proto_pack_str(&pk, "result");
		msgpack_pack_bin(&pk, t->result_len);
		msgpack_pack_bin_body(&pk, t->result, t->result_len);
	}
	proto_pack_kv_i64(&pk, "pid", t->pid);
	proto_pack_kv_i64(&pk, "started_ms", t->started_ms);
	proto_pack_kv_i64(&pk, "ended_ms", t->ended_ms);
	proto_pack_str(&pk, "stdout");
	pack_stream(&pk, &t->out[0]);
	proto_pack_str(&pk, "stderr");
	pack_stream(&pk, &t->out[1]);
	append(&sb);
	msgpack_sbuffer_destroy(&sb);
}

/* ---- waiting for the disk ------------------------------------------------------------------ */

int journal_wait(uint64_t seq)
{
	struct rt_waiter w = { .data = (uintptr_t)seq };
	int r;

	if (!j.on || seq == 0)
		return 0;
	for (;;) {
		if (atomic_load(&j.durable) >= seq)
			return 0;
		if (atomic_load(&j.error))
			return -EIO;
		rt_spin_lock(&j.q.lock);
		if (atomic_load(&j.durable) >= seq || atomic_load(&j.error)) {
			rt_spin_unlock(&j.q.lock);
			continue;
		}
		r = rt_waitq_park(&j.q, &w, RT_WQ_NOCANCEL, RT_FOREVER, "journal", &j);
		if (r <= 0)
			return r < 0 ? -EIO : 0;
	}
}

/* The ids retention keeps now (names_lock): what a compaction keeps. */
static void ask_compaction(void)
{
	uint64_t *ids = NULL, last = 0;
	size_t n = 0;

	rt_mutex_lock_nocancel(&names_lock);
	task_kept_ids(&ids, &n, &last);
	rt_mutex_unlock(&names_lock);
	if (!ids && n)
		return; /* no memory now: the next signal asks again */
	pthread_mutex_lock(&j.lock);
	free(j.keep);
	j.keep = ids;
	j.nkeep = n;
	j.keep_last = last;
	pthread_cond_signal(&j.cond);
	pthread_mutex_unlock(&j.lock);
}

/* The waker: wakes those waiting for records now on disk (or all, once the
 * journal broke), and passes the writer's wish to compact on. */
static void waker_main(void *unused)
{
	uint64_t v;

	while (rt_wait_fd(j.evfd, RT_READ, RT_FOREVER) > 0) {
		if (read(j.evfd, &v, sizeof v) < 0 && errno != EAGAIN)
			break;
		uint64_t durable = atomic_load(&j.durable);
		int err = atomic_load(&j.error);

		rt_spin_lock(&j.q.lock);
		for (struct rt_waiter *w = j.q.head, *next; w; w = next) {
			next = w->next;
			if (w->data <= durable || err) {
				rt_waitq_remove(&j.q, w);
				rt_waitq_wake(w, w->data <= durable ? 1 : -EIO);
			}
		}
		rt_spin_unlock(&j.q.lock);
		if (atomic_exchange(&j.want_compact, false))
			ask_compaction();
	}
	rt_wg_done(&j.waker_wg);
}

/* ---- the writer ---------------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void signal_waker(void)
{
	uint64_t one = 1;

	if (write(j.evfd, &one, sizeof one) < 0 && errno != EAGAIN)
		fprintf(stderr, "gorod: journal: eventfd: %s\n", strerror(errno));
}

static void broke(int err, const char *what)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&j.error, &none, err))
		fprintf(stderr, "gorod: the task journal %s: %s: %s; spawns are refused until "
			"gorod restarts (free space or fix the state directory)\n",
			j.path, what, strerror(-err));
	signal_waker();
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The id of a valid record's payload, and its kind ('s', 'e', 'i'). */
static int record_id(const char *p, size_t len, uint64_t *id, char *kind);

/* Writes the records of the file in buf[0..len) whose ids are kept (or
 * newer than last) into a new file, then puts it in place. j.fd is then
 * the new file. 0 or a negative errno. */
static int rewrite(const char *buf, size_t len, const uint64_t *keep, size_t nkeep,
		   uint64_t last)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char hdr[HDR];
	int fd, r = 0;
	size_t off = sizeof MAGIC - 1;

	fd = open(j.tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	msgpack_sbuffer_init(&sb);
	msgpack_sbuffer_write(&sb, MAGIC, sizeof MAGIC - 1);
	/* The highest id given, so that ids go on from it even when every
	 * task that had it is forgotten. */
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	{
		msgpack_sbuffer rec;
		msgpack_packer rpk;
		msgpack_sbuffer_init(&rec);
		msgpack_packer_init(&rpk, &rec, msgpack_sbuffer_write);
		msgpack_pack_map(&rpk, 2);
		proto_pack_kv_str(&rpk, "t", "ids");
		proto_pack_kv_u64(&rpk, "last", last);
		put_u32(hdr, (uint32_t)rec.size);
		put_u32(hdr + 4, crc32c(rec.data, rec.size));
		msgpack_sbuffer_write(&sb, hdr, HDR);
		msgpack_sbuffer_write(&sb, rec.data, rec.size);
		msgpack_sbuffer_destroy(&rec);
	}
	while (r == 0 && off + HDR <= len) {
		uint32_t n = get_u32(buf + off);
		uint64_t id;
		char kind;

		if (n > len - off - HDR || record_id(buf + off + HDR, n, &id, &kind) < 0)
			break; /* read back as written: cannot happen */
		if (kind != 'i' && (id > last || bsearch(&id, keep, nkeep, sizeof *keep, cmp_u64)))
			msgpack_sbuffer_write(&sb, buf + off, HDR + n);
		off += HDR + n;
		if (sb.size > (8u << 20)) {
			r = write_all(fd, sb.data, sb.size);
			msgpack_sbuffer_clear(&sb);
		}
	}
	if (r == 0)
		r = write_all(fd, sb.data, sb.size);
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(j.tmp, j.path) < 0)
		r = -errno;
	if (r == 0 && fsync(j.dirfd) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		unlink(j.tmp);
	} else {
		struct stat st;
		if (j.fd >= 0)
			close(j.fd);
		j.fd = fd; /* go on appending to the new file */
		j.size = j.compacted_size = fstat(fd, &st) == 0 ? st.st_size : 0;
	}
	msgpack_sbuffer_destroy(&sb);
	return r;
}

/* Rewrites the file now, keeping only keep[] (sorted here). */
static int compact(uint64_t *keep, size_t nkeep, uint64_t last)
{
	struct stat st;
	char *buf;
	int r;

	qsort(keep, nkeep, sizeof *keep, cmp_u64);
	if (fstat(j.fd, &st) < 0)
		return -errno;
	if (st.st_size == 0)
		return rewrite("", 0, keep, nkeep, last);
	buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, j.fd, 0);
	if (buf == MAP_FAILED)
		return -errno;
	r = rewrite(buf, (size_t)st.st_size, keep, nkeep, last);
	munmap(buf, (size_t)st.st_size);
	return r;
}

static void *writer_main(void *unused)
{
	msgpack_sbuffer take;

	msgpack_sbuffer_init(&take);
	pthread_mutex_lock(&j.lock);
	for (;;) {
		while (!j.stop && j.pending.size == 0 && !j.keep)
			pthread_cond_wait(&j.cond, &j.lock);
		if (j.stop && j.pending.size == 0)
			break;
		msgpack_sbuffer swap = j.pending;
		uint64_t upto = j.appended, *keep = j.keep, last = j.keep_last;
		size_t nkeep = j.nkeep;
		j.pending = take;
		take = swap;
		j.keep = NULL;
		pthread_mutex_unlock(&j.lock);

		if (take.size && !atomic_load(&j.error)) {
			int r = write_all(j.fd, take.data, take.size);
			if (r == 0 && fdatasync(j.fd) < 0)
				r = -errno;
			if (r < 0) {
				broke(r, "writing");
			} else {
				j.size += (off_t)take.size;
				atomic_store(&j.durable, upto);
				signal_waker();
			}
		}
		msgpack_sbuffer_clear(&take);
		if (keep) {
			int r = compact(keep, nkeep, last);
			if (r < 0)
				broke(r, "compacting");
			free(keep);
			j.compacting = false;
		} else if (!j.compacting && j.size > 2 * j.compacted_size && j.size > COMPACT_MIN) {
			j.compacting = true;
			atomic_store(&j.want_compact, true);
			signal_waker();
		}
		pthread_mutex_lock(&j.lock);
	}
	free(j.keep);
	j.keep = NULL;
	pthread_mutex_unlock(&j.lock);
	msgpack_sbuffer_destroy(&take);
	return NULL;
}

/* ---- reading back ------------------------------------------------------------------------- */

static const msgpack_object *get(const msgpack_object *map, const char *key)
{
	size_t n = strlen(key);

	if (map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
		    memcmp(kv->key.via.str.ptr, key, n) == 0)
			return &kv->val;
	}
	return NULL;
}

static int64_t get_int(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = get(map, key);

	if (!o)
		return 0;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (int64_t)o->via.u64;
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		return o->via.i64;
	return 0;
}

/* A string value as a NUL-terminated copy in zone memory (NULL if none). */
static const char *get_str(msgpack_zone *z, const msgpack_object *map, const char *key)
{
	const msgpack_object *o = get(map, key);
	char *s;

	if (!o || o->type != MSGPACK_OBJECT_STR || !(s = msgpack_zone_malloc(z, o->via.str.size + 1)))
		return NULL;
	memcpy(s, o->via.str.ptr, o->via.str.size);
	s[o->via.str.size] = '\0';
	return s;
}

/* Unpacks a payload (bounded: we wrote it, but a disk may not return it
 * as written: proto's frame check comes first). */
static int unpack(const char *p, size_t len, msgpack_unpacked *u)
{
	size_t off = 0;

	if (proto_frame_check(p, len, RECORD_MAX) != (ssize_t)len)
		return -EINVAL;
	if (msgpack_unpack_next(u, p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    u->data.type != MSGPACK_OBJECT_MAP)
		return -EINVAL;
	return 0;
}

static int record_id(const char *p, size_t len, uint64_t *id, char *kind)
{
	msgpack_unpacked u;
	int r;

	msgpack_unpacked_init(&u);
	r = unpack(p, len, &u);
	if (r == 0) {
		const msgpack_object *t = get(&u.data, "t");
		*id = (uint64_t)get_int(&u.data, "id");
		*kind = t && t->type == MSGPACK_OBJECT_STR && t->via.str.size ? t->via.str.ptr[0] : '?';
	}
	msgpack_unpacked_destroy(&u);
	return r;
}

/* The record of one task, as read (spawn and end are offsets into the
 * file, or 0). */
struct found {
	uint64_t id;
	size_t spawn, end;
};

static int cmp_found(const void *a, const void *b)
{
	return cmp_u64(&((const struct found *)a)->id, &((const struct found *)b)->id);
}

/* Fills r from a spawn payload and an end payload (NULL: lost). */
static int restore_one(const char *buf, const struct found *f, uint64_t restart_ms)
{
	msgpack_unpacked us, ue;
	msgpack_zone z;
	struct task_record r = { .id = f->id };
	char *argv[PS_ARGV_MAX + 1] = { 0 }, lost[160];
	int rc;

	msgpack_unpacked_init(&us);
	msgpack_unpacked_init(&ue);
	msgpack_zone_init(&z, 4096);
	rc = unpack(buf + f->spawn + HDR, get_u32(buf + f->spawn), &us);
	if (rc == 0 && f->end)
		rc = unpack(buf + f->end + HDR, get_u32(buf + f->end), &ue);
	if (rc < 0)
		goto out;
	const msgpack_object *s = &us.data, *e = f->end ? &ue.data : NULL, *o;
	const char *kind = get_str(&z, s, "kind");

	r.uid = (uid_t)get_int(s, "uid");
	r.gid = (gid_t)get_int(s, "gid");
	r.func = kind && strcmp(kind, "func") == 0;
	r.name = get_str(&z, s, "name");
	if (r.func) {
		argv[0] = (char *)get_str(&z, s, "func");
	} else if ((o = get(s, "argv")) && o->type == MSGPACK_OBJECT_ARRAY) {
		for (uint32_t i = 0, k = 0; i < o->via.array.size && k < PS_ARGV_MAX; i++) {
			const msgpack_object *a = &o->via.array.ptr[i];
			char *c;
			if (a->type != MSGPACK_OBJECT_STR ||
			    !(c = msgpack_zone_malloc(&z, a->via.str.size + 1)))
				continue;
			memcpy(c, a->via.str.ptr, a->via.str.size);
			c[a->via.str.size] = '\0';
			argv[k++] = c;
		}
	}
	r.argv = argv;
	if (!e) {
		r.state = TS_LOST;
		r.err = -ENOTRECOVERABLE;
		time_t at = (time_t)(restart_ms / 1000);
		struct tm tm;
		char when[64] = "?";
		if (gmtime_r(&at, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
		snprintf(lost, sizeof lost, "gorod stopped while the task ran, and how it ended is "
			 "unknown (gorod started again at %s)", when);
		r.errmsg = lost;
		r.ended_ms = (int64_t)restart_ms;
		r.started_ms = get_int(s, "created_ms");
	} else {
		const char *st = get_str(&z, e, "state");
		r.state = TS_FAILED;
		for (int i = TS_EXITED; i < TS_COUNT; i++)
			if (st && strcmp(st, task_state_name(i)) == 0)
				r.state = i;
		r.code = (int)get_int(e, "code");
		r.sig = (int)get_int(e, "signal");
		if ((o = get(e, "error")) && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 2 &&
		    o->via.array.ptr[0].type == MSGPACK_OBJECT_STR &&
		    o->via.array.ptr[1].type == MSGPACK_OBJECT_STR) {
			char *msg;
			uint32_t n = o->via.array.ptr[0].via.str.size;
			r.err = proto_err_from_name(o->via.array.ptr[0].via.str.ptr, n);
			if (!r.err)
				r.err = -EIO;
			n = o->via.array.ptr[1].via.str.size;
			if ((msg = msgpack_zone_malloc(&z, n + 1))) {
				memcpy(msg, o->via.array.ptr[1].via.str.ptr, n);
				msg[n] = '\0';
				r.errmsg = msg;
			}
		}
		if ((o = get(e, "result")) && o->type == MSGPACK_OBJECT_BIN) {
			r.result = o->via.bin.ptr;
			r.result_len = o->via.bin.size;
		}
		r.pid = (pid_t)get_int(e, "pid");
		r.started_ms = get_int(e, "started_ms");
		r.ended_ms = get_int(e, "ended_ms");
		const char *names[2] = { "stdout", "stderr" };
		for (int i = 0; i < 2; i++) {
			o = get(e, names[i]);
			if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
			    o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
			    o->via.array.ptr[1].type != MSGPACK_OBJECT_BIN)
				continue;
			r.out[i] = o->via.array.ptr[1].via.bin.ptr;
			r.out_len[i] = o->via.array.ptr[1].via.bin.size;
			r.out_total[i] = o->via.array.ptr[0].via.u64;
		}
	}
	rt_mutex_lock_nocancel(&names_lock);
	rc = task_restore(&r);
	rt_mutex_unlock(&names_lock);
out:
	msgpack_unpacked_destroy(&us);
	msgpack_unpacked_destroy(&ue);
	msgpack_zone_destroy(&z);
	return rc;
}

/* Reads the file back into tasks. Returns the highest id seen (or a
 * negative code). The records of lost tasks are appended to pending. */
static int64_t load(void)
{
	struct stat st;
	char *buf;
	size_t off, len, nf = 0, cap = 0;
	struct found *f = NULL;
	uint64_t last = 0, lost = 0;
	int64_t now = unix_ms();
	int restored = 0;

	if (fstat(j.fd, &st) < 0)
		return -errno;
	len = (size_t)st.st_size;
	if (len == 0)
		return 0;
	buf = mmap(NULL, len, PROT_READ, MAP_PRIVATE, j.fd, 0);
	if (buf == MAP_FAILED)
		return -errno;
	if (len < sizeof MAGIC - 1 || memcmp(buf, MAGIC, sizeof MAGIC - 1) != 0) {
		fprintf(stderr, "gorod: %s is not a gorod task journal (or of another version): "
			"move it away to start afresh\n", j.path);
		munmap(buf, len);
		return -EINVAL;
	}
	for (off = sizeof MAGIC - 1; off < len;) {
		uint32_t n = len - off >= HDR ? get_u32(buf + off) : 0;
		uint64_t id;
		char kind;

		if (len - off < HDR || n > RECORD_MAX || n > len - off - HDR ||
		    crc32c(buf + off + HDR, n) != get_u32(buf + off + 4) ||
		    record_id(buf + off + HDR, n, &id, &kind) < 0) {
			int fd = open(j.bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd >= 0) {
				if (write_all(fd, buf, len) < 0)
					unlink(j.bad);
				close(fd);
			}
			fprintf(stderr, "gorod: %s: the record at byte %zu does not check out "
				"(a write cut short by a crash?): the %zu bytes from there are "
				"dropped; the file as it was is in %s\n", j.path, off, len - off, j.bad);
			break;
		}
		if (kind == 'i') {
			uint64_t l = 0;
			msgpack_unpacked u;
			msgpack_unpacked_init(&u);
			if (unpack(buf + off + HDR, n, &u) == 0)
				l = (uint64_t)get_int(&u.data, "last");
			msgpack_unpacked_destroy(&u);
			if (l > last)
				last = l;
		} else if (id && (kind == 's' || kind == 'e')) {
			if (nf == cap) {
				struct found *g = realloc(f, (cap = cap ? cap * 2 : 1024) * sizeof *f);
				if (!g) {
					free(f);
					munmap(buf, len);
					return -ENOMEM;
				}
				f = g;
			}
			f[nf++] = (struct found){ id, kind == 's' ? off : 0, kind == 'e' ? off : 0 };
			if (id > last)
				last = id;
		}
		off += HDR + n;
	}
	/* One entry per id: its spawn and its (last) end. */
	qsort(f, nf, sizeof *f, cmp_found);
	size_t k = 0;
	for (size_t i = 0; i < nf; i++) {
		if (k && f[k - 1].id == f[i].id) {
			if (f[i].spawn)
				f[k - 1].spawn = f[i].spawn;
			if (f[i].end)
				f[k - 1].end = f[i].end;
		} else {
			f[k++] = f[i];
		}
	}
	for (size_t i = 0; i < k; i++) {
		if (!f[i].spawn)
			continue; /* an end whose spawn was compacted away: forgotten */
		if (restore_one(buf, &f[i], (uint64_t)now) < 0)
			continue;
		restored++;
		if (!f[i].end) {
			struct task *t;
			lost++;
			rt_mutex_lock_nocancel(&names_lock);
			t = task_find(f[i].id);
			rt_mutex_unlock(&names_lock);
			if (t)
				journal_ended(t);
		}
	}
	if (restored)
		fprintf(stderr, "gorod: %s: %d task%s restored (%llu lost: running when gorod "
			"stopped), ids go on after %llu\n", j.path, restored, restored == 1 ? "" : "s",
			(unsigned long long)lost, (unsigned long long)last);
	free(f);
	munmap(buf, len);
	return (int64_t)last;
}

int journal_open(const char *dir)
{
	int64_t last;
	int r;

	if (!dir || !*dir)
		return 0;
	crc_init();
	if (snprintf(j.path, sizeof j.path, "%s/tasks.journal", dir) >= (int)sizeof j.path ||
	    snprintf(j.tmp, sizeof j.tmp, "%s/tasks.journal.new", dir) >= (int)sizeof j.tmp ||
	    snprintf(j.bad, sizeof j.bad, "%s/tasks.journal.bad", dir) >= (int)sizeof j.bad) {
		fprintf(stderr, "gorod: the state directory's path is too long: %s\n", dir);
		return -ENAMETOOLONG;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		fprintf(stderr, "gorod: cannot make the state directory %s: %s\n", dir, strerror(errno));
		return r;
	}
	j.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	j.fd = open(j.path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	j.evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (j.dirfd < 0 || j.fd < 0 || j.evfd < 0) {
		r = -errno;
		fprintf(stderr, "gorod: cannot open the task journal %s: %s\n", j.path, strerror(errno));
		journal_close();
		return r;
	}
	msgpack_sbuffer_init(&j.pending);
	pthread_cond_init(&j.cond, NULL);
	j.on = true;
	last = load();
	if (last < 0) {
		journal_close();
		return (int)last;
	}
	task_ids_from(last);

	/* What was read, and the ends of lost tasks, compacted into a new
	 * file before anything else is written. */
	uint64_t *ids = NULL, hw = 0;
	size_t n = 0;
	rt_mutex_lock_nocancel(&names_lock);
	task_kept_ids(&ids, &n, &hw);
	rt_mutex_unlock(&names_lock);
	{
		msgpack_sbuffer lost = j.pending;
		r = write_all(j.fd, lost.data, lost.size);
		msgpack_sbuffer_clear(&j.pending);
	}
	if (r == 0)
		r = compact(ids, n, hw);
	free(ids);
	if (r < 0) {
		fprintf(stderr, "gorod: cannot rewrite the task journal %s: %s\n", j.path,
			strerror(-r));
		journal_close();
		return r;
	}
	atomic_store(&j.durable, j.appended);
	rt_wg_add(&j.waker_wg, 1);
	if ((r = rt_go(waker_main, NULL, &j.waker)) < 0) {
		rt_wg_done(&j.waker_wg);
		journal_close();
		return r;
	}
	if (pthread_create(&j.writer, NULL, writer_main, NULL) != 0) {
		fprintf(stderr, "gorod: cannot start the journal's writer thread\n");
		journal_close();
		return -EAGAIN;
	}
	j.writer_running = true;
	fprintf(stderr, "gorod: task journal %s (%lld bytes)\n", j.path, (long long)j.size);
	return 0;
}

void journal_close(void)
{
	if (j.writer_running) {
		pthread_mutex_lock(&j.lock);
		j.stop = true;
		pthread_cond_signal(&j.cond);
		pthread_mutex_unlock(&j.lock);
		pthread_join(j.writer, NULL);
		j.writer_running = false;
	}
	if (j.waker.g) {
		rt_cancel(j.waker);
		rt_wg_wait(&j.waker_wg, RT_FOREVER);
		j.waker.g = NULL;
	}
	if (j.on) {
		msgpack_sbuffer_destroy(&j.pending);
		pthread_cond_destroy(&j.cond);
	}
	j.on = false;
	if (j.fd >= 0)
		close(j.fd);
	if (j.dirfd >= 0)
		close(j.dirfd);
	if (j.evfd >= 0)
		close(j.evfd);
	j.fd = j.dirfd = j.evfd = -1;
}
