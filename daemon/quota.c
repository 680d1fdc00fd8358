/* quota.c: per-user limits, so that one user of a shared gorod cannot take
 * what the others need.
 *
 * What is counted, per uid (the peer's, from SO_PEERCRED):
 *
 *   sessions  connections. Counted at accept, under names_lock, where the
 *             session is linked; one past the limit is refused (below).
 *   requests  requests that may wait (PROTO_F_BLOCKS: mutex.lock,
 *             sem.acquire, wg.wait, wait, logs.read), from when the reader
 *             takes one until it is answered; a parked one counts until its
 *             goroutine has written the reply. Every other method is
 *             answered at once by the reader and is never refused here: an
 *             unlock, a release, a done or a kill frees things, and
 *             refusing it could leave a user's own waiters waiting forever.
 *             Atomics: dispatch does not hold names_lock.
 *   tasks     live tasks (queued, running, paused), from spawn to end.
 *   names     named primitives (WaitGroups, mutexes, semaphores) charged to
 *             the uid that created them, until names.c forgets them. A
 *             mutex nobody holds is forgotten, so a lock and its unlock
 *             charge and give back one name each time: a compare, an
 *             increment and a decrement under names_lock, which that path
 *             holds anyway.
 *   output    bytes of the output rings of the uid's tasks, live and kept,
 *             charged as a ring grows and given back when the task record
 *             is freed. Atomics: rings grow under their stream's lock.
 *             Past the limit a ring stops growing; the task goes on and what
 *             does not fit is cut and counted, as past output_max. The first
 *             4 KiB ring of a stream is always given (the tail of a log is
 *             what explains a failure).
 *
 * Who is refused: a client past a limit gets EAGAIN and a sentence naming
 * the setting; nobody else is affected. Root (uid 0) and gorod's own uid
 * are counted and shown but never refused: root may raise the limits
 * anyway (gorod.conf, SIGHUP), refusing it would stop the system's own
 * services at the worst moment, and gorod's own uid is the only one a
 * per-user gorod serves, where a per-user limit would isolate nobody.
 *
 * A session past sessions-per-user. There is no request to answer yet, so
 * gorod sends a notification at once, [2, "refused", [code, message]],
 * then answers each request that arrives within a second with that error,
 * and closes. libgoro fails the connection with the notification's code
 * and message; a client that ignores notifications (as msgpack-RPC allows)
 * still reads the error as the reply to its first call. At most
 * REFUSE_ANSWERING refused connections wait for requests at once; past
 * that they get the notification and are closed, so a user that connects
 * in a loop costs gorod little.
 *
 * Entries: a hash table by uid (names_lock), entries made on first use
 * and freed once no session, task record or name points to them (the
 * counters that do not hold a pointer, requests and output, are then 0
 * too: only sessions have requests, only task records have rings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "quota.h"
#include "task.h"

/* The defaults, for a small shared machine (2 cores, 24 GB, the 1024
 * file descriptors a service gets from systemd by default):
 *
 *   sessions-per-user 64: a client needs one connection per thread, and a
 *       build's -j on two cores a handful; each costs gorod a file
 *       descriptor, a reader goroutine (64 KiB of stack at most) and a
 *       64 KiB input buffer, so 64 of them are ~8 MiB and one user cannot
 *       take more than a sixteenth of gorod's default descriptors.
 *   requests-per-user 4096: each waiting request is a goroutine (stack)
 *       and a ~0.5 KiB record: at most ~256 MiB in the worst case, usually
 *       a few MiB as stacks are touched lightly. Four sessions' worth of
 *       the 1024 a single connection may have waiting.
 *   tasks-per-user 1024: a queue of work gated by a semaphore (spawn --sem)
 *       is the common case for many tasks; a queued task is a record, its
 *       spec and a parked goroutine (tens of KiB), a running command also a
 *       process and two descriptors. Two cores run a few at a time.
 *   names-per-user 10000: a name costs at most ~0.5 KiB (its record and a
 *       name of up to 255 bytes): ~5 MiB per user.
 *   output-per-user 64M: 32 tasks' worth of full stdout and stderr rings at
 *       the default output-max (1M); twenty busy users stay near 1 GiB. */
#define DEFAULT_SESSIONS 64
#define DEFAULT_REQUESTS 4096
#define DEFAULT_TASKS 1024
#define DEFAULT_NAMES 10000
#define DEFAULT_OUTPUT (64 << 20)

const struct quota_limits quota_defaults = {
	.sessions = DEFAULT_SESSIONS,
	.requests = DEFAULT_REQUESTS,
	.tasks = DEFAULT_TASKS,
	.names = DEFAULT_NAMES,
	.output = DEFAULT_OUTPUT,
};

static const char *const setting[QUOTA_KINDS] = {
	[QUOTA_SESSIONS] = "sessions-per-user", [QUOTA_REQUESTS] = "requests-per-user",
	[QUOTA_TASKS] = "tasks-per-user",	[QUOTA_NAMES] = "names-per-user",
	[QUOTA_OUTPUT] = "output-per-user",
};

/* Read without names_lock (dispatch, output): atomics. */
static _Atomic int64_t limit[QUOTA_KINDS] = {
	[QUOTA_SESSIONS] = DEFAULT_SESSIONS, [QUOTA_REQUESTS] = DEFAULT_REQUESTS,
	[QUOTA_TASKS] = DEFAULT_TASKS,	     [QUOTA_NAMES] = DEFAULT_NAMES,
	[QUOTA_OUTPUT] = DEFAULT_OUTPUT,
};

#define REFUSE_WAIT_MS 1000        /* a refused connection's requests, answered */
#define REFUSE_ANSWERING 64        /* refused connections waiting at once */
#define REFUSE_READ_MAX (64 * 1024) /* what one refused connection may send */

static struct quota **table; /* by uid, chained (names_lock) */
static size_t nbuckets, nusers;
static _Atomic int refusing;

void quota_set_limits(const struct quota_limits *l)
{
	atomic_store_explicit(&limit[QUOTA_SESSIONS], l->sessions, memory_order_relaxed);
	atomic_store_explicit(&limit[QUOTA_REQUESTS], l->requests, memory_order_relaxed);
	atomic_store_explicit(&limit[QUOTA_TASKS], l->tasks, memory_order_relaxed);
	atomic_store_explicit(&limit[QUOTA_NAMES], l->names, memory_order_relaxed);
	atomic_store_explicit(&limit[QUOTA_OUTPUT], l->output, memory_order_relaxed);
}

static int64_t limit_of(enum quota_kind k)
{
	return atomic_load_explicit(&limit[k], memory_order_relaxed);
}

/* Whether q may have n of kind k (n counting the new one). */
static bool within(const struct quota *q, enum quota_kind k, int64_t n)
{
	int64_t max = limit_of(k);

	return q->exempt || max == 0 || n <= max;
}

/* The sentence for q refused by kind k at count n. */
static void say(struct quota *q, enum quota_kind k, int64_t n, char *why, size_t len)
{
	static const char *const what[QUOTA_KINDS][2] = {
		[QUOTA_SESSIONS] = { "session", "sessions" },
		[QUOTA_REQUESTS] = { "request in flight (waiting or being answered)",
				     "requests in flight (waiting or being answered)" },
		[QUOTA_TASKS] = { "live task (queued, running or paused)",
				  "live tasks (queued, running or paused)" },
		[QUOTA_NAMES] = { "named primitive (WaitGroup, mutex, semaphore)",
				  "named primitives (WaitGroups, mutexes, semaphores)" },
		[QUOTA_OUTPUT] = { "byte of task output kept", "bytes of task output kept" },
	};
	static const char *const remedy[QUOTA_KINDS] = {
		[QUOTA_SESSIONS] = "close some",
		[QUOTA_REQUESTS] = "let some be answered",
		[QUOTA_TASKS] = "let some end",
		[QUOTA_NAMES] = "release some",
		[QUOTA_OUTPUT] = "let some tasks go",
	};

	atomic_fetch_add_explicit(&q->refused[k], 1, memory_order_relaxed);
	snprintf(why, len, "uid %u has %lld %s, the most gorod allows per user (limit %s); "
		 "%s or raise it in gorod.conf", (unsigned)q->uid, (long long)n, what[k][n != 1],
		 setting[k], remedy[k]);
}

/* ---- the table ------------------------------------------------------------------ */

static size_t bucket(uid_t uid, size_t nb)
{
	return (size_t)(((uint64_t)uid * 0x9e3779b97f4a7c15ULL) >> 32) & (nb - 1);
}

static void rehash(size_t nb)
{
	struct quota **b = calloc(nb, sizeof *b);

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < nbuckets; i++) {
		for (struct quota *q = table[i], *next; q; q = next) {
			next = q->next;
			q->next = b[bucket(q->uid, nb)];
			b[bucket(q->uid, nb)] = q;
		}
	}
	free(table);
	table = b;
	nbuckets = nb;
}

struct quota *quota_find(uid_t uid)
{
	if (!nbuckets)
		return NULL;
	for (struct quota *q = table[bucket(uid, nbuckets)]; q; q = q->next)
		if (q->uid == uid)
			return q;
	return NULL;
}

/* names_lock held: uid's entry, made if absent; NULL when out of memory. */
static struct quota *get(uid_t uid)
{
	struct quota *q = quota_find(uid);

	if (q)
		return q;
	if (nusers + 1 > nbuckets)
		rehash(nbuckets ? nbuckets * 2 : 64);
	if (!nbuckets || !(q = calloc(1, sizeof *q)))
		return NULL;
	q->uid = uid;
	q->exempt = uid == 0 || uid == gorod_euid;
	q->next = table[bucket(uid, nbuckets)];
	table[bucket(uid, nbuckets)] = q;
	nusers++;
	return q;
}

/* names_lock held: frees q once nothing points to it. */
static void maybe_free(struct quota *q)
{
	struct quota **pp;

	if (q->sessions || q->records || q->names)
		return;
	for (pp = &table[bucket(q->uid, nbuckets)]; *pp != q; pp = &(*pp)->next)
		;
	*pp = q->next;
	nusers--;
	free(q);
}

/* ---- sessions ------------------------------------------------------------------ */

int quota_session_open(struct session *s, char *why, size_t len)
{
	struct quota *q = get(s->uid);

	if (!q) {
		snprintf(why, len, "gorod is out of memory");
		return -ENOMEM;
	}
	if (!within(q, QUOTA_SESSIONS, q->sessions + 1)) {
		say(q, QUOTA_SESSIONS, q->sessions, why, len);
		maybe_free(q);
		return -EAGAIN;
	}
	q->sessions++;
	s->quota = q;
	return 0;
}

void quota_session_close(struct session *s)
{
	struct quota *q = s->quota;

	if (!q)
		return;
	s->quota = NULL;
	q->sessions--;
	maybe_free(q);
}

/* Writes what out holds, without waiting: a refused peer that does not
 * read loses the rest. */
static void send_now(int fd, msgpack_sbuffer *out)
{
	size_t off = 0;

	while (off < out->size) {
		ssize_t n = send(fd, out->data + off, out->size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			off += (size_t)n;
		else if (!(n < 0 && errno == EINTR))
			break;
	}
	msgpack_sbuffer_clear(out);
}

/* Answers each whole request at the front of in[0..len) with the error;
 * returns the bytes used, or -1 when the framing breaks. */
static ssize_t refuse_requests(msgpack_unpacked *u, msgpack_packer *pk, const char *in,
			       size_t len, int code, const char *why)
{
	size_t off = 0;

	while (off < len) {
		ssize_t fl = proto_frame_check(in + off, len - off, PROTO_MAX_MESSAGE);
		struct proto_msg m;
		const char *bad;

		if (fl == 0)
			break;
		if (fl < 0 || proto_decode(u, in + off, (size_t)fl, &m, &bad) < 0)
			return -1;
		if (m.type == PROTO_REQUEST)
			proto_pack_response_err(pk, m.msgid, code, why);
		off += (size_t)fl;
	}
	return (ssize_t)off;
}

void quota_refuse(int fd, struct rt_pollfd *pfd, int code, const char *why)
{
	int64_t deadline = rt_deadline_ms(REFUSE_WAIT_MS);
	msgpack_sbuffer out;
	msgpack_packer pk;
	msgpack_unpacked u;
	size_t len = 0, used = 0;
	char *in = NULL;

	msgpack_sbuffer_init(&out);
	msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, PROTO_NOTIFY);
	proto_pack_str(&pk, "refused");
	msgpack_pack_array(&pk, 2);
	proto_pack_str(&pk, proto_err_name(code));
	proto_pack_str(&pk, why);
	send_now(fd, &out);

	if (atomic_fetch_add(&refusing, 1) < REFUSE_ANSWERING && (in = malloc(REFUSE_READ_MAX))) {
		msgpack_unpacked_init(&u);
		while (len < REFUSE_READ_MAX) {
			ssize_t n = read(fd, in + len, REFUSE_READ_MAX - len), k;

			if (n > 0) {
				len += (size_t)n;
				k = refuse_requests(&u, &pk, in + used, len - used, code, why);
				if (k < 0)
					break;
				used += (size_t)k;
				send_now(fd, &out);
				continue;
			}
			if (n == 0 || (errno != EINTR && errno != EAGAIN))
				break;
			if (errno == EAGAIN && rt_pollfd_wait(pfd, RT_READ, deadline) < 0)
				break;
		}
		msgpack_unpacked_destroy(&u);
	}
	atomic_fetch_sub(&refusing, 1);
	free(in);
	msgpack_sbuffer_destroy(&out);
	/* Closed with what it sent unread: its next read still gets what was
	 * written before the end. */
	shutdown(fd, SHUT_WR);
}

/* ---- requests in flight --------------------------------------------------------- */

static bool may_wait(int method)
{
	return method >= 0 && method < PROTO_M_COUNT && (proto_methods[method].flags & PROTO_F_BLOCKS);
}

int quota_request_begin(struct session *s, int method, char *why, size_t len)
{
	struct quota *q = s->quota;
	int64_t n;

	if (!q || !may_wait(method))
		return 0;
	n = atomic_fetch_add_explicit(&q->requests, 1, memory_order_relaxed) + 1;
	if (within(q, QUOTA_REQUESTS, n))
		return 0;
	atomic_fetch_sub_explicit(&q->requests, 1, memory_order_relaxed);
	say(q, QUOTA_REQUESTS, n - 1, why, len);
	return -EAGAIN;
}

void quota_request_end(struct session *s, int method)
{
	if (s->quota && may_wait(method))
		atomic_fetch_sub_explicit(&s->quota->requests, 1, memory_order_relaxed);
}

void quota_request_park(struct session *s)
{
	if (s->quota)
		atomic_fetch_add_explicit(&s->quota->requests, 1, memory_order_relaxed);
}

void quota_request_unpark(struct session *s)
{
	if (s->quota)
		atomic_fetch_sub_explicit(&s->quota->requests, 1, memory_order_relaxed);
}

/* ---- named primitives ------------------------------------------------------------- */

int quota_name_check(struct session *s, enum prim_kind kind, const char *name, size_t nlen,
		     char *why, size_t len)
{
	struct quota *q = s->quota;

	if (!q || within(q, QUOTA_NAMES, q->names + 1) || names_get(kind, name, nlen, 0, false))
		return 0;
	say(q, QUOTA_NAMES, q->names, why, len);
	return -EAGAIN;
}

void quota_name_charge(struct quota *q)
{
	if (q)
		q->names++;
}

void quota_name_uncharge(struct quota *q)
{
	if (q && --q->names == 0)
		maybe_free(q);
}

/* ---- tasks -------------------------------------------------------------------------- */

int quota_task_check(struct session *s, const struct task *t, const struct spawn_req *sr,
		     char *why, size_t len)
{
	struct quota *q = s->quota;
	const char *lock = sr->lock ? sr->lock : sr->rlock;
	size_t lock_len = sr->lock ? sr->lock_len : sr->rlock_len;
	int rc = 0;

	if (!q)
		return 0;
	if (!within(q, QUOTA_TASKS, q->tasks + 1)) {
		say(q, QUOTA_TASKS, q->tasks, why, len);
		return -EAGAIN;
	}
	if (t->wg)
		rc = quota_name_check(s, PRIM_WG, t->wg, strlen(t->wg), why, len);
	if (rc == 0 && lock)
		rc = quota_name_check(s, PRIM_MUTEX, lock, lock_len, why, len);
	if (rc == 0 && sr->sem)
		rc = quota_name_check(s, PRIM_SEM, sr->sem, sr->sem_len, why, len);
	return rc;
}

void quota_task_charge(struct task *t, struct session *s)
{
	struct quota *q = s->quota;

	if (!q)
		return;
	q->tasks++;
	q->records++;
	t->quota = q;
	t->out[0].quota = t->out[1].quota = q;
	if (t->wg) /* spawn's wg.add acts for no session: its new group is this user's */
		names_charge(PRIM_WG, t->wg, strlen(t->wg), q);
}

void quota_task_ended(struct task *t)
{
	if (t->quota)
		t->quota->tasks--;
}

void quota_task_free(struct task *t)
{
	struct quota *q = t->quota;

	if (!q)
		return;
	t->quota = NULL;
	q->records--;
	maybe_free(q);
}

/* ---- output ---------------------------------------------------------------------------- */

bool quota_output_grow(struct quota *q, size_t more)
{
	int64_t n;

	if (!q)
		return true;
	n = atomic_fetch_add_explicit(&q->output, (int64_t)more, memory_order_relaxed) + (int64_t)more;
	if (within(q, QUOTA_OUTPUT, n))
		return true;
	atomic_fetch_sub_explicit(&q->output, (int64_t)more, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->refused[QUOTA_OUTPUT], 1, memory_order_relaxed);
	return false;
}

void quota_output_force(struct quota *q, size_t bytes)
{
	if (q)
		atomic_fetch_add_explicit(&q->output, (int64_t)bytes, memory_order_relaxed);
}

void quota_output_free(struct quota *q, size_t bytes)
{
	if (q && bytes)
		atomic_fetch_sub_explicit(&q->output, (int64_t)bytes, memory_order_relaxed);
}

/* ---- stats ------------------------------------------------------------------------------ */

static void pack_user(msgpack_packer *pk, const struct quota *q)
{
	msgpack_pack_map(pk, 8);
	proto_pack_kv_u64(pk, "uid", q->uid);
	proto_pack_kv_bool(pk, "exempt", q->exempt);
	proto_pack_kv_i64(pk, "sessions", q->sessions);
	proto_pack_kv_i64(pk, "requests", atomic_load_explicit(&q->requests, memory_order_relaxed));
	proto_pack_kv_i64(pk, "tasks", q->tasks);
	proto_pack_kv_i64(pk, "names", q->names);
	proto_pack_kv_i64(pk, "output", atomic_load_explicit(&q->output, memory_order_relaxed));
	proto_pack_str(pk, "refused");
	msgpack_pack_map(pk, QUOTA_KINDS);
	for (int k = 0; k < QUOTA_KINDS; k++)
		proto_pack_kv_u64(pk, setting[k],
				  atomic_load_explicit(&q->refused[k], memory_order_relaxed));
}

void quota_pack(msgpack_packer *pk)
{
	proto_pack_str(pk, "quota");
	msgpack_pack_map(pk, 2);
	proto_pack_str(pk, "limits");
	msgpack_pack_map(pk, QUOTA_KINDS);
	for (int k = 0; k < QUOTA_KINDS; k++)
		proto_pack_kv_i64(pk, setting[k], limit_of(k));
	proto_pack_str(pk, "users");
	msgpack_pack_array(pk, nusers);
	for (size_t i = 0; i < nbuckets; i++)
		for (const struct quota *q = table[i]; q; q = q->next)
			pack_user(pk, q);
}
