/* session.c: one client connection, from accept to close.
 *
 * Each session has a reader goroutine (session_serve) that reads what the
 * socket has, cuts it into messages with proto_frame_check (anything that
 * breaks the framing closes the connection), and handles each request
 * (dispatch.c). A request that must wait is queued at once, in arrival
 * order, and handed to a goroutine of its own (wait.c), so the reader goes
 * on: requests may be pipelined and answered out of order.
 *
 * Replies are packed into the session's output buffer under out_lock. The
 * reader answers a whole batch of pipelined requests with one write; a
 * waiting request's goroutine writes its reply at once. A long batch is
 * handled in turns (READ_SLICE_NS), answered and yielded between, so that
 * one client's flood does not hold up the others. A client that stops
 * reading makes writes wait (parked, no thread held); past OUT_MAX pending
 * bytes the session is closed.
 *
 * When the connection closes (or gorod stops), the session cancels its
 * waiting requests, waits for their goroutines, and releases everything it
 * holds: the next holder of a mutex or semaphore is told owner_died, and a
 * WaitGroup with lease-bound count from it becomes lost (holdings_release). */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "journal.h"
#include "quota.h"
#include "task.h"

#define IN_START (64 * 1024)
#define IN_MAX (PROTO_MAX_MESSAGE + 64 * 1024)
#define OUT_MAX (8u << 20)
#define OUT_FLUSH (256u << 10)
/* How long a reader handles pipelined requests in one turn; then it
 * answers them and lets the others run (rt_yield_io), so that a client
 * that pipelines without end keeps no worker from the other sessions: the
 * others' requests wait for a slice at most, not for a backlog
 * (tests/test_quota.c, flood). The clock is read from the second message
 * of a turn on, so a turn of one request (the usual) never reads it. */
#define READ_SLICE_NS (20 * 1000)
/* After a short read, how long the reader waits before it reads once more
 * to see whether the peer went away meanwhile (read_loop). */
#define CHECK_NS (1000 * 1000 * 1000LL)

/* A reader's turn: from a wakeup (or a yield) to the next. */
struct turn {
	unsigned handled;
	int64_t end; /* 0 until the first check */
};

struct session *sessions;
int nsessions;
static uint64_t nsessions_ever;  /* connections served (names_lock) */
static uint64_t ended_requests;  /* requests of the sessions that ended (names_lock) */
static uint64_t session_ids;
static struct rt_wg sessions_wg;
static bool closing_all; /* gorod is stopping (names_lock) */

/* out_lock held: writes the pending output, parking while the socket is
 * full. Returns 0, or a negative code once the peer is gone. */
static int out_flush_locked(struct session *s)
{
	/* Spawn replies wait for their journal records: nothing gorod has not
	 * recorded is acknowledged. If the journal broke, the connection is
	 * closed instead. */
	if (s->out_seq && !s->out_broken && journal_wait(s->out_seq) < 0)
		s->out_broken = true;
	s->out_seq = 0;
	while (!s->out_broken && s->out_off < s->out.size) {
		ssize_t n = send(s->fd, s->out.data + s->out_off, s->out.size - s->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			s->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			if (s->out.size > OUT_MAX ||
			    rt_pollfd_wait(s->pfd, RT_WRITE, RT_FOREVER) < 0)
				s->out_broken = true;
		} else {
			s->out_broken = true;
		}
	}
	if (s->out_broken) {
		shutdown(s->fd, SHUT_RDWR); /* the reader sees EOF and cleans up */
		return -EPIPE;
	}
	msgpack_sbuffer_clear(&s->out);
	s->out_off = 0;
	return 0;
}

void session_reply(struct session *s, uint32_t msgid, int code, const char *why,
		   void (*pack)(msgpack_packer *pk, void *arg), void *arg, bool flush)
{
	msgpack_packer pk;

	rt_mutex_lock_nocancel(&s->out_lock);
	if (!s->out_broken) {
		msgpack_packer_init(&pk, &s->out, msgpack_sbuffer_write);
		if (code < 0) {
			proto_pack_response_err(&pk, msgid, code, why);
		} else {
			proto_pack_response_ok(&pk, msgid);
			if (pack)
				pack(&pk, arg);
			else
				msgpack_pack_map(&pk, 0);
		}
		/* A batch of replies is written when the reader runs out of
		 * input, or once it holds OUT_FLUSH bytes: a few bytes of
		 * pipelined requests (logs, ps) may ask for megabytes of
		 * replies, and the writes park the reader meanwhile. */
		if (flush || s->out.size - s->out_off > OUT_FLUSH)
			out_flush_locked(s);
	}
	rt_mutex_unlock(&s->out_lock);
}

void session_wait_journal(struct session *s, uint64_t seq)
{
	if (!seq)
		return;
	rt_mutex_lock_nocancel(&s->out_lock);
	if (seq > s->out_seq)
		s->out_seq = seq;
	rt_mutex_unlock(&s->out_lock);
}

static void session_flush(struct session *s)
{
	rt_mutex_lock_nocancel(&s->out_lock);
	if (s->out.size > s->out_off)
		out_flush_locked(s);
	rt_mutex_unlock(&s->out_lock);
}

/* Whether the turn is over, after one more message: it has run its
 * slice, or the netpoller is overdue (another session's request may be
 * waiting to be seen: the yield polls). */
static bool turn_over(struct turn *t)
{
	int64_t now;

	if (++t->handled < 2)
		return false;
	now = rt_now();
	if (!t->end)
		t->end = now + READ_SLICE_NS;
	return now >= t->end || rt_poll_due(now);
}

/* Handles the complete messages at the front of buf until the turn is
 * over (*over). Returns the bytes consumed, or -1 when the connection must
 * close (broken framing). */
static ssize_t handle_input(struct session *s, msgpack_unpacked *u, const char *buf,
			    size_t len, struct turn *t, bool *over)
{
	size_t off = 0;

	while (off < len && !*over) {
		ssize_t fl = proto_frame_check(buf + off, len - off, PROTO_MAX_MESSAGE);
		struct proto_msg m;
		const char *why = NULL;

		if (fl == 0)
			break;
		if (fl < 0) {
			fprintf(stderr, "gorod: session %llu (pid %d): %s; closing it\n",
				(unsigned long long)s->id, (int)s->pid,
				fl == -EMSGSIZE ? "message over the size limit"
						: "bytes that are not a msgpack-RPC message");
			return -1;
		}
		if (proto_decode(u, buf + off, (size_t)fl, &m, &why) < 0) {
			fprintf(stderr, "gorod: session %llu (pid %d): %s; closing it\n",
				(unsigned long long)s->id, (int)s->pid, why);
			return -1;
		}
		if (m.type == PROTO_REQUEST)
			dispatch(s, &m);
		/* Notifications are accepted and, being unknown, ignored (the
		 * msgpack-RPC spec); so are responses, as gorod asks nothing. */
		off += (size_t)fl;
		*over = turn_over(t);
	}
	return (ssize_t)off;
}

/* Handles every complete message in in[0..*len) and moves what is left (a
 * part of a message) to the front. Each time the turn is over it answers
 * what it handled and yields, so that a request another session just sent
 * runs first. Returns 0, or -1 when the connection must close. */
static int handle_all(struct session *s, msgpack_unpacked *u, char *in, size_t *len,
		      struct turn *t)
{
	size_t off = 0;

	for (;;) {
		bool over = false;
		ssize_t used = handle_input(s, u, in + off, *len - off, t, &over);
		if (used < 0)
			return -1;
		off += (size_t)used;
		if (!over)
			break; /* no complete message left */
		session_flush(s);
		rt_yield_io();
		*t = (struct turn){ 0 };
	}
	memmove(in, in + off, *len - off);
	*len -= off;
	return 0;
}

/* Reads and handles until the peer closes, breaks the framing, or the
 * session is cancelled. */
static void read_loop(struct session *s)
{
	msgpack_unpacked u;
	size_t cap = IN_START, len = 0;
	char *in = malloc(cap);
	struct turn turn = { 0 };

	if (!in)
		return;
	msgpack_unpacked_init(&u);
	for (;;) {
		size_t room = cap - len;
		ssize_t n = read(s->fd, in + len, room);
		bool unsure = false; /* empty, unless it ended meanwhile */
		int64_t deadline = RT_FOREVER;

		if (n > 0) {
			len += (size_t)n;
			if (handle_all(s, &u, in, &len, &turn) < 0)
				break;
			if (len == cap && cap < IN_MAX) {
				/* A message larger than the buffer: grow (the
				 * frame check bounds it by PROTO_MAX_MESSAGE). */
				size_t ncap = cap * 2 < IN_MAX ? cap * 2 : IN_MAX;
				char *nin = realloc(in, ncap);
				if (!nin)
					break;
				in = nin;
				cap = ncap;
			}
			if ((size_t)n == room || rt_pollfd_hup(s->pfd))
				continue; /* more, or the end of file, to read */
			unsure = true;
		} else if (n == 0) {
			break;
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN) {
			break;
		}
		/* Nothing more to read now: answer the batch, then wait (the
		 * fd is edge-triggered: waiting is right after EAGAIN or a
		 * short read). */
		session_flush(s);
		if (len == 0 && cap > IN_START) {
			/* Idle: give back what a large message took. */
			char *nin = realloc(in, IN_START);
			if (nin) {
				in = nin;
				cap = IN_START;
			}
		}
		/* A short read proves the socket empty unless the peer's
		 * last bytes and its end came as one edge: then no edge will
		 * come to say it ended. A shutdown shows (rt_pollfd_hup, read
		 * on above), but a close that leaves replies unread is a
		 * reset, which libevent reports as plain readiness. Reading
		 * until EAGAIN costs a system call per request; instead, after
		 * a short read the wait has a deadline, CHECK_NS: the read
		 * then says EAGAIN (and the wait is forever) or shows the
		 * reset. Such a peer is noticed within CHECK_NS. The deadline
		 * is rarely the earliest one (the leak monitor's is at most
		 * 250 ms away), so arming it costs no system call. */
		if (unsure)
			deadline = rt_now() + CHECK_NS;
		int rc = rt_pollfd_wait(s->pfd, RT_READ, deadline);
		if (rc < 0 && rc != -ETIMEDOUT)
			break;
		turn = (struct turn){ 0 };
	}
	/* The replies to the last batch: a client that sends and then
	 * half-closes (shutdown(SHUT_WR), nc -N, socat) reads them. */
	session_flush(s);
	msgpack_unpacked_destroy(&u);
	free(in);
}

static void session_end(struct session *s)
{
	rt_mutex_lock_nocancel(&names_lock);
	s->closing = true;
	for (struct req *r = s->reqs; r; r = r->next)
		rt_cancel(r->g);
	rt_mutex_unlock(&names_lock);
	/* A request goroutine may be parked writing its reply to a peer that
	 * does not read: make that write fail, so it ends too. */
	shutdown(s->fd, SHUT_RDWR);
	rt_wg_wait(&s->reqs_wg, RT_FOREVER);

	rt_mutex_lock_nocancel(&names_lock);
	holdings_release(s);
	task_session_ended(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	nsessions--;
	quota_session_close(s);
	ended_requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
	rt_mutex_unlock(&names_lock);

	rt_pollfd_close(s->pfd);
	close(s->fd);
	msgpack_sbuffer_destroy(&s->out);
	free(s->groups);
	free(s);
}

/* The supplementary groups of the peer, for running its commands as it
 * (only a root gorod does). */
static void peer_groups(struct session *s)
{
	gid_t buf[64], *g = buf;
	socklen_t len = sizeof buf;

	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		if (errno != ERANGE || !(g = malloc(len)) ||
		    getsockopt(s->fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
			if (g != buf)
				free(g);
			return;
		}
	}
	s->ngroups = (int)(len / sizeof(gid_t));
	if (g == buf) {
		s->groups = malloc(len ? len : 1);
		if (s->groups)
			memcpy(s->groups, buf, len);
		else
			s->ngroups = 0;
	} else {
		s->groups = g;
	}
}

static struct session *parties; /* party sessions (names_lock) */

struct session *session_parties(void)
{
	return parties;
}

struct session *session_party_new(uid_t uid, gid_t gid, pid_t pid)
{
	struct session *p = calloc(1, sizeof *p);

	if (!p)
		return NULL;
	p->next = parties;
	if (parties)
		parties->prev = p;
	parties = p;
	p->fd = -1;
	p->party = true;
	p->uid = uid;
	p->gid = gid;
	p->pid = pid;
	p->quota = quota_find(uid); /* kept by its task's record */
	p->id = ++session_ids; /* names_lock */
	p->started_ns = rt_now();
	return p;
}

void session_party_free(struct session *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		parties = p->next;
	if (p->next)
		p->next->prev = p->prev;
	free(p);
}

void session_serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	struct session *s = calloc(1, sizeof *s);
	struct ucred cred = { 0 };
	socklen_t clen = sizeof cred;
	char why[256];
	int rc;

	if (!s) {
		close(fd);
		rt_wg_done(&sessions_wg);
		return;
	}
	s->fd = fd;
	if (rt_pollfd_open(fd, &s->pfd) < 0) {
		close(fd);
		free(s);
		rt_wg_done(&sessions_wg);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		/* Who it is decides what it may do: unknown, it may do nothing. */
		rt_pollfd_close(s->pfd);
		close(fd);
		free(s);
		rt_wg_done(&sessions_wg);
		return;
	}
	s->pid = cred.pid;
	s->uid = cred.uid;
	s->gid = cred.gid;
	if (gorod_euid == 0 && s->uid != 0)
		peer_groups(s);
	s->started_ns = rt_now();
	msgpack_sbuffer_init(&s->out);

	rt_mutex_lock_nocancel(&names_lock);
	if ((rc = quota_session_open(s, why, sizeof why)) < 0) {
		/* Past sessions-per-user: told why, never served (quota.c). */
		rt_mutex_unlock(&names_lock);
		quota_refuse(fd, s->pfd, rc, why);
		rt_pollfd_close(s->pfd);
		close(fd);
		msgpack_sbuffer_destroy(&s->out);
		free(s->groups);
		free(s);
		rt_wg_done(&sessions_wg);
		return;
	}
	s->id = ++session_ids;
	s->next = sessions;
	if (sessions)
		sessions->prev = s;
	sessions = s;
	nsessions++;
	nsessions_ever++;
	if (closing_all) /* accepted just before gorod began to stop */
		shutdown(fd, SHUT_RDWR);
	rt_mutex_unlock(&names_lock);

	read_loop(s);
	session_end(s);
	rt_wg_done(&sessions_wg);
}

/* Called by the accept loop before it starts session_serve. */
void session_accepted(void)
{
	rt_wg_add(&sessions_wg, 1);
}

/* The session goroutine could not be started. */
void session_ended_early(void)
{
	rt_wg_done(&sessions_wg);
}

void session_counts(struct session_counts *c)
{
	*c = (struct session_counts){ .connected = (uint64_t)nsessions,
				      .accepted = nsessions_ever,
				      .requests = ended_requests };
	for (struct session *s = sessions; s; s = s->next) {
		c->requests += atomic_load_explicit(&s->requests, memory_order_relaxed);
		c->waiting += (uint64_t)s->nreqs;
	}
}

void sessions_close_all(void)
{
	rt_mutex_lock_nocancel(&names_lock);
	closing_all = true;
	for (struct session *s = sessions; s; s = s->next)
		shutdown(s->fd, SHUT_RDWR);
	rt_mutex_unlock(&names_lock);
	rt_wg_wait(&sessions_wg, RT_FOREVER);
}
