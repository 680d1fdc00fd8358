/* soak_client.c: the soak test's client processes (soak.c says what the
 * test is and how each invariant is seen).
 *
 * A client does one random operation after another, with a random think
 * time between them, until the observer sets sh->stop. It never prints: it
 * counts every attempt and every answer in shared memory, marks what it
 * holds there (right after a grant, cleared right before the release),
 * checks at each grant who else holds the lock or semaphore, and records
 * each acknowledged spawn and what its waits were told. Anything it did not
 * expect goes to soak_fail(). Everything a client keeps in shared memory is
 * in a state the observer can read while the client is stopped: one
 * atomic word per fact, written so that a stop between two writes leaves
 * no lie (a request in flight is said before it is sent). */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "soak.h"

static const int col_code[NCOLS - 1] = { 0, -EBUSY, -ETIMEDOUT, -EDEADLK, GORO_ENEGATIVE,
					 GORO_ELOST, -ESRCH, GORO_ENOTLOCKED };

void soak_fail(const char *fmt, ...)
{
	long n = atomic_fetch_add(&sh->nfailures, 1);
	va_list ap;

	if (n >= NFAIL)
		return;
	va_start(ap, fmt);
	vsnprintf(sh->fail[n], sizeof sh->fail[n], fmt, ap);
	va_end(ap);
}

static void atomic_max_int(atomic_int *p, int v)
{
	int cur = atomic_load(p);

	while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
		;
}

static void atomic_max_u64(_Atomic uint64_t *p, uint64_t v)
{
	uint64_t cur = atomic_load(p);

	while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
		;
}

/* Lowers *p to v; returns whether it did. */
static bool atomic_min_u64(_Atomic uint64_t *p, uint64_t v)
{
	uint64_t cur = atomic_load(p);

	while (v < cur)
		if (atomic_compare_exchange_weak(p, &cur, v))
			return true;
	return false;
}

/* A grant of lock l (token, owner_died) that a client (or, at the end, the
 * observer) was given: whether owner_died is explained by a death before
 * it, and whether it is the first grant after the latest death. */
void soak_note_grant(int l, uint64_t token, bool od, bool observer)
{
	int d = atomic_load(&sh->pending_death[l]);
	struct death *dd = d ? &sh->deaths[d - 1] : NULL;
	bool after = dd && dd->token < token;

	if (od) {
		atomic_fetch_add(&sh->od_grants, 1);
		if (!after) {
			atomic_fetch_add(&sh->od_unexplained, 1);
			soak_fail("lock soak.m.%d: grant %" PRIu64 " told owner_died with no death before it",
				  l, token);
		}
	}
	if (after) {
		int64_t ms = since_start();
		uint64_t v = token << 22 | (uint64_t)od << 21 |
			     (uint64_t)(ms < (1 << 21) ? ms : (1 << 21) - 1);

		if (atomic_min_u64(&dd->next, v) && observer)
			atomic_store(&dd->by_observer, 1);
	}
}

/* ---- a client ------------------------------------------------------------------------ */

struct recent {
	uint64_t id;
	long rec; /* its index in trec, -1: none */
	bool ended;
};

struct cl {
	goro_client *c;
	int slot;
	struct slot *sl;
	uint64_t rng;
	char wg[64];          /* the private WaitGroup's name */
	long wg_count, wg_leased;
	struct recent recent[NRECENT];
	int rpos;
	uint64_t *snap1, *snap2; /* [nslots] */
};

static uint64_t rnd64(struct cl *cl)
{
	uint64_t x = cl->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	cl->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static int rnd(struct cl *cl, int n)
{
	return (int)(rnd64(cl) % (uint64_t)n);
}

/* The load's shape, not a wait for anything. */
static void think(int ms)
{
	if (ms > 0)
		poll(NULL, 0, ms);
}

static int col_of(int r)
{
	for (int i = 0; i < NCOLS - 1; i++)
		if (r == col_code[i])
			return i;
	return C_OTHER;
}

static bool conn_error(int r)
{
	return r == -ECONNRESET || r == -EPIPE || r == -EPROTO || r == -ENOTCONN ||
	       r == -ECONNREFUSED;
}

static void attempt(enum op op)
{
	atomic_fetch_add(&sh->ops[op][0], 1);
}

static void clear_deferred(struct cl *cl)
{
	for (int l = 0; l < NLOCKS; l++)
		atomic_store(&cl->sl->deferred_w[l], 0);
	atomic_store(&cl->sl->deferred, 0);
}

/* Counts the answer r to op; one outside `allowed` is a failure. replied:
 * gorod answered (a deferred release returns before that); every release
 * deferred before it was then handled. A broken connection ends the
 * client (exit 2): the observer notices. */
static int result(struct cl *cl, enum op op, int r, unsigned allowed, bool replied)
{
	int col = col_of(r);

	atomic_fetch_add(&sh->ops[op][1 + col], 1);
	if (!(allowed & M(col)))
		soak_fail("client %d (pid %d): %s: %s: %s", cl->slot, (int)getpid(), op_name[op],
			  goro_err_name(r), goro_last_error(cl->c));
	if (conn_error(r)) { /* the session is gone, and what it held */
		for (int l = 0; l < NLOCKS; l++)
			atomic_store(lock_mark(l, cl->slot), 0);
		for (int k = 0; k < NSEMS; k++)
			atomic_store(sem_mark(k, cl->slot), 0);
		_exit(2);
	}
	if (replied)
		clear_deferred(cl);
	return r;
}

static void wg_seen(int64_t count)
{
	atomic_fetch_add(&sh->wg_counts_seen, 1);
	if (count < 0) {
		atomic_fetch_add(&sh->wg_below_zero, 1);
		soak_fail("a WaitGroup count of %" PRId64, count);
	}
}

/* Right after a grant of lock l: the death bookkeeping, the mark, and the
 * check of who else holds l now, as their clients see it. */
static void lock_granted(struct cl *cl, int l, const struct goro_grant *g, bool write)
{
	int readers = write ? 0 : 1;

	atomic_max_u64(&sh->max_token[l], g->token);
	soak_note_grant(l, g->token, g->owner_died, false);
	atomic_store(lock_mark(l, cl->slot), g->token << 1 | (write ? 1 : 0));
	for (int s = 0; s < nslots; s++) {
		uint64_t v = s == cl->slot ? 0 : atomic_load(lock_mark(l, s));

		if (!v)
			continue;
		if (write && (v & 1)) {
			atomic_fetch_add(&sh->two_writers, 1);
			soak_fail("lock soak.m.%d: client %d granted it for writing (token %" PRIu64
				  ") while client %d holds it for writing (token %" PRIu64 ")",
				  l, cl->slot, g->token, s, v >> 1);
		} else if (write || (v & 1)) {
			atomic_fetch_add(&sh->writer_readers, 1);
			soak_fail("lock soak.m.%d: client %d granted it (%s, token %" PRIu64
				  ") while client %d holds it (%s, token %" PRIu64 ")",
				  l, cl->slot, write ? "w" : "r", g->token, s, v & 1 ? "w" : "r", v >> 1);
		} else {
			readers++;
		}
	}
	atomic_max_int(&sh->max_readers, readers);
	atomic_fetch_add(&sh->lock_checks, 1);
}

struct held {
	int lock;
	uint64_t token;
	bool write;
};

/* Asks for lock l in a random mode and way of waiting. Returns 0 when
 * granted (then *out), else the error. */
static int take_lock(struct cl *cl, int l, struct held *out)
{
	bool write = rnd(cl, 100) < 40;
	int kind = rnd(cl, 10), timeout = -1, r;
	unsigned flags = 0, allowed;
	struct goro_grant g;
	enum op op;
	char name[32];

	if (kind < 3) {
		op = write ? OP_LOCK_W : OP_LOCK_R;
		allowed = M(C_OK) | M(C_EDEADLK);
	} else if (kind < 7) {
		op = write ? OP_LOCK_W_TIMEOUT : OP_LOCK_R_TIMEOUT;
		timeout = 1 + rnd(cl, 300);
		allowed = M(C_OK) | M(C_ETIMEDOUT) | M(C_EDEADLK);
	} else {
		op = write ? OP_LOCK_W_TRY : OP_LOCK_R_TRY;
		if (rnd(cl, 2))
			flags = GORO_TRY;
		else
			timeout = 0;
		allowed = M(C_OK) | M(C_EBUSY);
	}
	lock_name(name, sizeof name, l);
	atomic_store(&cl->sl->pending_lock, 1 + l + (write ? 256 : 0));
	attempt(op);
	r = goro_mutex_lock(cl->c, name, write ? GORO_WRITE : GORO_READ, timeout, flags, &g);
	if (r == 0)
		lock_granted(cl, l, &g, write);
	atomic_store(&cl->sl->pending_lock, 0);
	result(cl, op, r, allowed, true);
	if (r == 0)
		*out = (struct held){ l, g.token, write };
	return r;
}

/* Unmarks and releases a held lock: by token or not, deferred or not. */
static void release_lock(struct cl *cl, const struct held *hd)
{
	int how = rnd(cl, 4), r;
	bool defer = how == 1 || how == 2, by_token = how == 0 || how == 2;
	char name[32];

	lock_name(name, sizeof name, hd->lock);
	atomic_store(lock_mark(hd->lock, cl->slot), 0);
	if (defer) {
		if (hd->write)
			atomic_store(&cl->sl->deferred_w[hd->lock], hd->token);
		atomic_fetch_add(&cl->sl->deferred, 1);
	} else {
		atomic_store(&cl->sl->releasing, 1);
	}
	attempt(OP_UNLOCK);
	r = goro_mutex_unlock(cl->c, name, by_token ? hd->token : 0, defer ? GORO_DEFER : 0);
	atomic_store(&cl->sl->releasing, 0);
	result(cl, OP_UNLOCK, r, M(C_OK), !defer);
}

/* One lock, sometimes a second one while holding the first (so that
 * wait-for cycles, EDEADLK, happen), held a moment, released. */
static void lock_txn(struct cl *cl)
{
	struct held hd[2];
	int n = 0, l1 = rnd(cl, NLOCKS);

	if (take_lock(cl, l1, &hd[n]) < 0)
		return;
	n++;
	if (rnd(cl, 4) == 0 && take_lock(cl, (l1 + 1 + rnd(cl, NLOCKS - 1)) % NLOCKS, &hd[n]) == 0)
		n++;
	think(rnd(cl, 3));
	if (n == 2 && rnd(cl, 2)) {
		struct held t = hd[0];
		hd[0] = hd[1];
		hd[1] = t;
	}
	for (int i = 0; i < n; i++)
		release_lock(cl, &hd[i]);
}

/* The units of semaphore k held at one moment, from two snapshots of the
 * marks (a mark in both was held all the time between them). */
long soak_sem_units(int k, uint64_t *a, uint64_t *b)
{
	long units = 0;

	for (int s = 0; s < nslots; s++)
		a[s] = atomic_load(sem_mark(k, s));
	for (int s = 0; s < nslots; s++)
		b[s] = atomic_load(sem_mark(k, s));
	for (int s = 0; s < nslots; s++)
		if (a[s] && a[s] == b[s])
			units += (long)(a[s] & 0xff);
	return units;
}

static void sem_txn(struct cl *cl)
{
	int k = rnd(cl, NSEMS), cap = sem_cap[k], n = 1 + rnd(cl, cap), kind = rnd(cl, 10);
	int timeout = -1, how, r;
	unsigned flags = 0, allowed;
	struct goro_grant g;
	bool defer, by_token;
	enum op op;
	char name[32];

	if (kind < 3) {
		op = OP_SEM;
		allowed = M(C_OK);
	} else if (kind < 7) {
		op = OP_SEM_TIMEOUT;
		timeout = 1 + rnd(cl, 300);
		allowed = M(C_OK) | M(C_ETIMEDOUT);
	} else {
		op = OP_SEM_TRY;
		if (rnd(cl, 2))
			flags = GORO_TRY;
		else
			timeout = 0;
		allowed = M(C_OK) | M(C_EBUSY);
	}
	sem_name(name, sizeof name, k);
	atomic_store(&cl->sl->pending_sem, 1 + k);
	attempt(op);
	r = goro_sem_acquire(cl->c, name, cap, n, timeout, flags, &g);
	if (r == 0) {
		long units;

		atomic_store(sem_mark(k, cl->slot), g.token << 8 | (uint64_t)n);
		units = soak_sem_units(k, cl->snap1, cl->snap2);
		atomic_max_int(&sh->max_units[k], (int)units);
		atomic_fetch_add(&sh->sem_checks, 1);
		if (units > cap) {
			atomic_fetch_add(&sh->sem_over, 1);
			soak_fail("semaphore %s (capacity %d): %ld units held at once", name, cap, units);
		}
	}
	atomic_store(&cl->sl->pending_sem, 0);
	result(cl, op, r, allowed, true);
	if (r < 0)
		return;
	think(rnd(cl, 3));
	how = rnd(cl, 4);
	defer = how == 1 || how == 2;
	by_token = how == 0 || how == 2;
	atomic_store(sem_mark(k, cl->slot), 0);
	if (defer)
		atomic_fetch_add(&cl->sl->deferred, 1);
	else
		atomic_store(&cl->sl->releasing, 1);
	attempt(OP_SEM_RELEASE);
	r = goro_sem_release(cl->c, name, by_token ? g.token : 0, defer ? GORO_DEFER : 0);
	atomic_store(&cl->sl->releasing, 0);
	result(cl, OP_SEM_RELEASE, r, M(C_OK), !defer);
}

/* ---- WaitGroups ---------------------------------------------------------------------- */

static void private_bad(struct cl *cl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void private_bad(struct cl *cl, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	atomic_fetch_add(&sh->wg_private_bad, 1);
	soak_fail("client %d: private WaitGroup %s: %s", cl->slot, cl->wg, what);
}

static void private_store(struct cl *cl, int pend)
{
	atomic_store(&cl->sl->wg, WG_PACK(cl->wg_count, cl->wg_leased, pend));
}

static void private_add(struct cl *cl, bool lease)
{
	int d = 1 + rnd(cl, 3), r;
	enum op op = lease ? OP_WG_ADD_LEASE : OP_WG_ADD;
	long c0 = cl->wg_count;
	int64_t count = -1;

	private_store(cl, 2 | (lease ? 4 : 0) | d << 3);
	attempt(op);
	r = goro_wg_add(cl->c, cl->wg, d, lease ? GORO_LEASE : 0, &count);
	atomic_fetch_add(&sh->wg_private_checks, 1);
	if (r == 0) {
		wg_seen(count);
		if (count != c0 + d)
			private_bad(cl, "add %d to %ld gave %" PRId64, d, c0, count);
		cl->wg_count = c0 + d;
		if (lease)
			cl->wg_leased += d;
	}
	private_store(cl, 0);
	result(cl, op, r, M(C_OK), true);
}

static void private_done(struct cl *cl)
{
	long c0 = cl->wg_count;
	int64_t count = -1;
	int r;

	private_store(cl, 1);
	attempt(OP_WG_DONE);
	r = goro_wg_done(cl->c, cl->wg, &count);
	atomic_fetch_add(&sh->wg_private_checks, 1);
	if (c0 == 0) {
		if (r == GORO_ENEGATIVE)
			atomic_fetch_add(&sh->wg_enegative_right, 1);
		else
			private_bad(cl, "done at 0 gave %s (count %" PRId64 "), not ENEGATIVE",
				    goro_err_name(r), count);
	} else if (r == 0) {
		wg_seen(count);
		if (count != c0 - 1)
			private_bad(cl, "done at %ld gave %" PRId64, c0, count);
		cl->wg_count = c0 - 1;
		cl->wg_leased = cl->wg_leased > 0 ? cl->wg_leased - 1 : 0;
		if (cl->wg_count == 0)
			cl->wg_leased = 0;
	} else {
		private_bad(cl, "done at %ld gave %s", c0, goro_err_name(r));
	}
	private_store(cl, 0);
	result(cl, OP_WG_DONE, r, M(C_OK) | M(C_ENEGATIVE), true);
}

static void private_wait(struct cl *cl)
{
	int r;

	attempt(OP_WG_WAIT);
	r = goro_wg_wait(cl->c, cl->wg, 0);
	atomic_fetch_add(&sh->wg_private_checks, 1);
	if (r != (cl->wg_count == 0 ? 0 : -ETIMEDOUT))
		private_bad(cl, "wait (timeout 0) at %ld gave %s", cl->wg_count, goro_err_name(r));
	result(cl, OP_WG_WAIT, r, M(C_OK) | M(C_ETIMEDOUT), true);
}

static void private_status(struct cl *cl)
{
	struct goro_wg_status st;
	int r;

	attempt(OP_WG_STATUS);
	r = goro_wg_status(cl->c, cl->wg, &st);
	atomic_fetch_add(&sh->wg_private_checks, 1);
	if (r == 0) {
		wg_seen(st.count);
		if (st.count != cl->wg_count || st.waiters != 0)
			private_bad(cl, "status: count %" PRId64 " waiters %" PRId64 ", not %ld and 0",
				    st.count, st.waiters, cl->wg_count);
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
	}
	result(cl, OP_WG_STATUS, r, M(C_OK), true);
}

/* The groups every client shares: any count seen must be >= 0. */
static void shared_wg(struct cl *cl, int what)
{
	char name[32];
	int64_t count = -1;
	int r;

	snprintf(name, sizeof name, "soak.ws.%d", rnd(cl, NSWG));
	switch (what) {
	case 0:
	case 1:
		attempt(what ? OP_WG_ADD_LEASE : OP_WG_ADD);
		r = goro_wg_add(cl->c, name, 1, what ? GORO_LEASE : 0, &count);
		if (r == 0) {
			wg_seen(count);
			if (count < 1)
				soak_fail("WaitGroup %s: add 1 gave %" PRId64, name, count);
		}
		result(cl, what ? OP_WG_ADD_LEASE : OP_WG_ADD, r, M(C_OK), true);
		break;
	case 2:
		attempt(OP_WG_DONE);
		r = goro_wg_done(cl->c, name, &count);
		if (r == 0)
			wg_seen(count);
		result(cl, OP_WG_DONE, r, M(C_OK) | M(C_ENEGATIVE), true);
		break;
	case 3:
		attempt(OP_WG_WAIT);
		r = goro_wg_wait(cl->c, name, rnd(cl, 51));
		result(cl, OP_WG_WAIT, r, M(C_OK) | M(C_ETIMEDOUT) | M(C_ELOST), true);
		break;
	default: {
		struct goro_wg_status st;

		attempt(OP_WG_STATUS);
		r = goro_wg_status(cl->c, name, &st);
		if (r == 0) {
			wg_seen(st.count);
			if (st.has_failure)
				goro_outcome_clear(&st.first_failure);
		}
		result(cl, OP_WG_STATUS, r, M(C_OK), true);
	}
	}
}

/* ---- tasks --------------------------------------------------------------------------- */

/* Records an acknowledged spawn; returns its record's index, or -1. */
long soak_record_spawn(uint64_t id, int flags)
{
	long i = atomic_fetch_add(&sh->ntasks, 1);

	if (i >= MAX_TASKS) {
		atomic_fetch_add(&sh->task_recs_full, 1);
		return -1;
	}
	atomic_store(&trec[i].flags, flags);
	atomic_store(&trec[i].id, id);
	return i;
}

static void spawn_txn(struct cl *cl, bool exec)
{
	const char *argv[4] = { NULL }, *args[3] = { NULL };
	char a0[32], a1[32], wg[32], lk[32];
	struct goro_spawn sp = { 0 };
	enum op op = exec ? OP_SPAWN_EXEC : OP_SPAWN_FUNC;
	int flags = exec ? T_EXEC : 0, r, v;
	uint64_t id = 0;

	if (exec) {
		v = rnd(cl, 50);
		if (v < 16) {
			argv[0] = "/bin/true";
		} else if (v < 32) {
			snprintf(a0, sizeof a0, "0.0%d", 1 + rnd(cl, 9));
			argv[0] = "/bin/sleep";
			argv[1] = a0;
		} else if (v < 49) {
			snprintf(a0, sizeof a0, "exit %d", rnd(cl, 4));
			argv[0] = "/bin/sh";
			argv[1] = "-c";
			argv[2] = a0;
		} else {
			argv[0] = "/nonexistent/soak-no-such-program"; /* failed, ENOENT */
			flags |= T_NOSTART;
		}
		sp.argv = argv;
	} else {
		v = rnd(cl, 4);
		if (v == 0) {
			sp.func = "sleep";
			snprintf(a0, sizeof a0, "%d", rnd(cl, 4) ? rnd(cl, 31) : rnd(cl, 201));
			args[0] = a0;
		} else if (v == 1) {
			sp.func = "noop";
		} else if (v == 2) {
			sp.func = "echo";
			snprintf(a1, sizeof a1, "%d", rnd(cl, 1000));
			args[0] = "soak";
			args[1] = a1;
		} else {
			sp.func = "spin";
			snprintf(a0, sizeof a0, "%d", rnd(cl, 3));
			args[0] = a0;
		}
		if (args[0])
			sp.args = args;
	}
	if (rnd(cl, 5) == 0) {
		sp.timeout_ms = 5 + rnd(cl, 36);
		flags |= T_TIMEOUT;
	}
	if (rnd(cl, 5) == 0) {
		snprintf(wg, sizeof wg, "soak.tw.%d", rnd(cl, NTWG));
		sp.wg = wg;
	}
	v = rnd(cl, 10);
	if (v < 2) {
		snprintf(lk, sizeof lk, "soak.tm.%d", rnd(cl, NTLOCKS));
		if (v == 0)
			sp.lock = lk;
		else
			sp.rlock = lk;
	} else if (v == 2) {
		sp.sem = "soak.ts";
		sp.sem_capacity = TSEM_CAP;
	}
	sp.session_scope = rnd(cl, 7) == 0;
	attempt(op);
	r = goro_spawn(cl->c, &sp, &id);
	if (r == 0) {
		long i = soak_record_spawn(id, flags);
		struct recent *re = &cl->recent[cl->rpos++ % NRECENT];

		*re = (struct recent){ id, i, false };
	}
	result(cl, op, r, M(C_OK), true);
}

/* One of the client's recent tasks not known to have ended (often the
 * latest), or NULL. */
static struct recent *pick_task(struct cl *cl)
{
	int start = rnd(cl, 2) ? (cl->rpos + NRECENT - 1) % NRECENT : rnd(cl, NRECENT);

	for (int i = 0; i < NRECENT; i++) {
		struct recent *re = &cl->recent[(start + i) % NRECENT];

		if (re->id && !re->ended)
			return re;
	}
	return NULL;
}

static void wait_txn(struct cl *cl)
{
	struct recent *re = pick_task(cl);
	struct goro_outcome out;
	int r;

	if (!re)
		return;
	attempt(OP_WAIT);
	r = goro_wait(cl->c, re->id, rnd(cl, 10) < 3 ? -1 : rnd(cl, 101), &out);
	if (r == 0) {
		int seen = 0;

		re->ended = true;
		if (out.state < GORO_TASK_EXITED) {
			atomic_fetch_add(&sh->not_terminal, 1);
			soak_fail("wait %" PRIu64 ": state %s", re->id, goro_task_state_name(out.state));
		}
		if (re->rec >= 0 &&
		    !atomic_compare_exchange_strong(&trec[re->rec].seen, &seen, 1 + (int)out.state) &&
		    seen != 1 + (int)out.state) {
			atomic_fetch_add(&sh->outcome_twice, 1);
			soak_fail("task %" PRIu64 ": a wait said %s, an earlier one %s", re->id,
				  goro_task_state_name(out.state),
				  goro_task_state_name((enum goro_task_state)(seen - 1)));
		}
		goro_outcome_clear(&out);
	}
	result(cl, OP_WAIT, r, M(C_OK) | M(C_ETIMEDOUT), true);
}

static void kill_txn(struct cl *cl)
{
	struct recent *re = pick_task(cl);
	int r;

	if (!re)
		return;
	attempt(OP_KILL);
	r = goro_kill(cl->c, re->id, rnd(cl, 4) == 0 ? SIGKILL : 0);
	if (r == 0 && re->rec >= 0)
		atomic_store(&trec[re->rec].killed, 1);
	if (r == -ESRCH)
		re->ended = true;
	result(cl, OP_KILL, r, M(C_OK) | M(C_ESRCH), true);
}

/* ---- the client's life --------------------------------------------------------------- */

static int client_connect(struct cl *cl)
{
	struct goro_hello hi;
	int r = goro_connect(h.sock, &cl->c);

	if (r < 0) {
		soak_fail("client %d: connect: %s", cl->slot, goro_strerror(r));
		return r;
	}
	r = goro_hello(cl->c, "soak", &hi);
	if (r < 0) {
		soak_fail("client %d: hello: %s", cl->slot, goro_strerror(r));
		return r;
	}
	atomic_store(&cl->sl->session, hi.session);
	return 0;
}

/* A new session, when nothing would be lost by the old one's end. */
static void reconnect(struct cl *cl)
{
	int r;

	if (cl->wg_leased)
		return;
	attempt(OP_RECONNECT);
	r = goro_sync(cl->c);
	if (r < 0)
		soak_fail("client %d: deferred releases before a reconnect: %s: %s", cl->slot,
			  goro_err_name(r), goro_last_error(cl->c));
	clear_deferred(cl);
	goro_close(cl->c);
	cl->c = NULL;
	atomic_store(&cl->sl->session, 0);
	r = client_connect(cl);
	atomic_fetch_add(&sh->ops[OP_RECONNECT][1 + col_of(r)], 1);
	if (r < 0)
		_exit(2);
}

static void one_op(struct cl *cl)
{
	int v = rnd(cl, 1000);

	if (v < 330)
		lock_txn(cl);
	else if (v < 420)
		sem_txn(cl);
	else if (v < 450)
		private_add(cl, false);
	else if (v < 480)
		private_add(cl, true);
	else if (v < 520)
		private_done(cl);
	else if (v < 530)
		private_wait(cl);
	else if (v < 540)
		private_status(cl);
	else if (v < 640)
		shared_wg(cl, v < 560 ? 0 : v < 580 ? 1 : v < 620 ? 2 : v < 635 ? 3 : 4);
	else if (v < 780)
		spawn_txn(cl, false);
	else if (v < 830)
		spawn_txn(cl, true);
	else if (v < 950)
		wait_txn(cl);
	else if (v < 990)
		kill_txn(cl);
	else
		reconnect(cl);
}

/* A client process: operations until told to stop, then its private group
 * back to 0 and every deferred release answered. Exit 0, or 1 when it
 * could not start, 2 when its connection broke. */
int soak_client_main(int slot, int gen, uint64_t seed)
{
	struct cl cl = { .slot = slot, .sl = &slots[slot] };
	int r;

	cl.rng = seed ^ (uint64_t)(slot + 1) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)gen << 40;
	if (!cl.rng)
		cl.rng = 1;
	snprintf(cl.wg, sizeof cl.wg, "soak.wp.%d.%d", slot, gen);
	cl.snap1 = calloc((size_t)nslots, sizeof *cl.snap1);
	cl.snap2 = calloc((size_t)nslots, sizeof *cl.snap2);
	if (!cl.snap1 || !cl.snap2 || client_connect(&cl) < 0)
		return 1;
	while (!atomic_load(&sh->stop)) {
		think(rnd(&cl, think_max + 1));
		one_op(&cl);
		if ((r = goro_deferred_error(cl.c)) < 0)
			soak_fail("client %d: a deferred release failed: %s: %s", slot, goro_err_name(r),
				  goro_last_error(cl.c));
	}
	while (cl.wg_count > 0)
		private_done(&cl);
	if ((r = goro_sync(cl.c)) < 0)
		soak_fail("client %d: deferred releases at the end: %s: %s", slot, goro_err_name(r),
			  goro_last_error(cl.c));
	clear_deferred(&cl);
	goro_close(cl.c);
	free(cl.snap1);
	free(cl.snap2);
	return 0;
}
