/* wg.c: named WaitGroups (wg.add / wg.done / wg.wait).
 *
 * A name never used has a counter of 0 (Go's zero value). A change that
 * would take the counter below zero is refused and leaves it unchanged. At
 * zero, every waiter wakes. Count added with lease: true is remembered per
 * session (struct lease) until the session's own wg.done calls match it;
 * if the session ends first, that count is taken off and the group is
 * *lost*: its waiters wake with ELOST, and so does every wait that finds
 * the counter at zero, until a positive add starts a new round. A waiter
 * is never told "done" for work that did not finish. All under names_lock. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gorod.h"

#define LOST_KEEP_NS (600 * 1000000000LL) /* a lost group is kept 10 min */

/* Count added without a lease, by whom (the leak monitor's question: who
 * may still do the dones?). A done is counted against the session's own
 * adds first, else against the oldest. */
struct adder {
	uint64_t sid;
	pid_t pid;
	int64_t count;
};

struct nwg {
	int64_t count;
	bool lost;
	int64_t lost_ns;
	struct nwait *waiters;
	struct lease *leases;
	struct wg_round round;  /* tasks bound this round (spawn --wg) */
	int64_t round_ns;       /* when its last task ended */
	struct adder *adders;   /* owned */
	size_t nadders;
	struct task **bound;    /* live tasks bound to it (spawn --wg); owned */
	size_t nbound, bound_cap;
};

/* Forgets the group if it is back to its zero value. One whose round saw
 * tasks is kept (its failures must reach a late wg.wait) until the sweeper
 * finds it older than the retention age of finished tasks. */
static void maybe_drop(struct nwg *wg)
{
	if (wg->count == 0 && !wg->waiters && !wg->leases && !wg->lost && !wg->round.tasks &&
	    !wg->nbound) {
		free(wg->adders);
		free(wg->bound);
		names_drop(PRIM_WG, wg);
	}
}

static void adders_add(struct nwg *wg, struct session *s, int64_t n)
{
	for (size_t i = 0; i < wg->nadders; i++) {
		if (wg->adders[i].sid == s->id) {
			wg->adders[i].count += n;
			return;
		}
	}
	struct adder *v = realloc(wg->adders, (wg->nadders + 1) * sizeof *v);
	if (!v)
		return; /* unknown adders make the monitor assume someone alive */
	wg->adders = v;
	wg->adders[wg->nadders++] = (struct adder){ s->id, s->pid, n };
}

static void adders_sub(struct nwg *wg, struct session *s, int64_t n)
{
	for (size_t i = 0; n > 0 && i < wg->nadders; i++) {
		if (!s || wg->adders[i].sid != s->id)
			continue;
		int64_t k = wg->adders[i].count < n ? wg->adders[i].count : n;
		wg->adders[i].count -= k;
		n -= k;
	}
	for (size_t i = 0; n > 0 && i < wg->nadders; i++) {
		int64_t k = wg->adders[i].count < n ? wg->adders[i].count : n;
		wg->adders[i].count -= k;
		n -= k;
	}
	size_t j = 0;
	for (size_t i = 0; i < wg->nadders; i++)
		if (wg->adders[i].count > 0)
			wg->adders[j++] = wg->adders[i];
	wg->nadders = j;
}

static void lease_free(struct nwg *wg, struct lease *l)
{
	struct session *s = l->s;

	if (l->wprev)
		l->wprev->wnext = l->wnext;
	else
		wg->leases = l->wnext;
	if (l->wnext)
		l->wnext->wprev = l->wprev;
	if (l->sprev)
		l->sprev->snext = l->snext;
	else
		s->leases = l->snext;
	if (l->snext)
		l->snext->sprev = l->sprev;
	free(l);
}

static struct lease *lease_find(struct nwg *wg, struct session *s)
{
	for (struct lease *l = wg->leases; l; l = l->wnext)
		if (l->s == s)
			return l;
	return NULL;
}

static int lease_add(struct nwg *wg, struct session *s, int64_t n)
{
	struct lease *l = lease_find(wg, s);

	if (l) {
		l->count += n;
		return 0;
	}
	if (!(l = calloc(1, sizeof *l)))
		return -ENOMEM;
	l->s = s;
	l->wg = wg;
	l->count = n;
	l->wnext = wg->leases;
	if (wg->leases)
		wg->leases->wprev = l;
	wg->leases = l;
	l->snext = s->leases;
	if (s->leases)
		s->leases->sprev = l;
	s->leases = l;
	return 0;
}

static void wake_all(struct nwg *wg, int result)
{
	while (wg->waiters) {
		struct nwait *nw = wg->waiters;
		nwait_unlink(&wg->waiters, nw);
		nw->round = wg->round;
		nwait_complete(nw, result);
	}
}

/* The counter reached zero: waiters wake, leases have nothing left. */
static void at_zero(struct nwg *wg)
{
	wg->nadders = 0;
	while (wg->leases)
		lease_free(wg, wg->leases);
	wake_all(wg, wg->lost ? GORO_ELOST : 0);
}

int nwg_add(struct session *s, const struct args *a, int64_t *count)
{
	struct nwg *wg = a->delta ? names_make(PRIM_WG, a->name, a->name_len, sizeof *wg, s)
				  : names_get(PRIM_WG, a->name, a->name_len, sizeof *wg, false);
	int64_t n;

	if (!wg) {
		if (a->delta != 0)
			return -ENOMEM;
		*count = 0; /* add 0 to a name never used */
		return 0;
	}
	n = wg->count + a->delta;
	if (n < 0 || n > INT32_MAX) {
		maybe_drop(wg);
		return n < 0 ? GORO_ENEGATIVE : -ERANGE;
	}
	if (a->delta > 0 && a->lease && lease_add(wg, s, a->delta) < 0) {
		maybe_drop(wg);
		return -ENOMEM;
	}
	leak_changed();
	if (a->delta > 0 && !a->lease && s && !s->party)
		adders_add(wg, s, a->delta);
	if (a->delta < 0 && !(s && s->party))
		adders_sub(wg, s, -a->delta);
	if (a->delta < 0) {
		/* This session's own leased count is matched first. */
		struct lease *l = lease_find(wg, s);
		if (l) {
			l->count += a->delta;
			if (l->count <= 0)
				lease_free(wg, l);
		}
	}
	if (a->delta > 0 && wg->count == 0) { /* a new round */
		wg->lost = false;
		memset(&wg->round, 0, sizeof wg->round);
	}
	wg->count = n;
	if (n == 0)
		at_zero(wg);
	*count = n;
	maybe_drop(wg);
	return 0;
}

int nwg_wait(struct req *r)
{
	struct nwg *wg = names_get(PRIM_WG, r->a.name, r->a.name_len, sizeof *wg, false);

	if (!wg)
		return 0; /* the zero value: nothing to wait for */
	if (wg->count == 0) {
		r->nw.round = wg->round;
		return wg->lost ? GORO_ELOST : 0;
	}
	if (r->a.timeout_ms == 0)
		return -ETIMEDOUT;
	r->nw.kind = PRIM_WG;
	r->nw.prim = wg;
	r->nw.s = r->s;
	nwait_enqueue(&wg->waiters, &r->nw);
	return 1;
}

void nwg_abandon(struct nwait *nw)
{
	struct nwg *wg = nw->prim;

	nwait_unlink(&wg->waiters, nw);
	maybe_drop(wg);
}

/* The session of l ended with count still leased: that count can no
 * longer be done. */
void nwg_lease_lost(struct lease *l)
{
	struct nwg *wg = l->wg;

	wg->count -= l->count;
	if (wg->count < 0)
		wg->count = 0;
	lease_free(wg, l);
	wg->lost = true;
	wg->lost_ns = rt_now();
	wake_all(wg, GORO_ELOST);
	if (wg->count == 0)
		at_zero(wg);
}

/* Forgets a lost group nobody waits on after LOST_KEEP_NS, and a group
 * kept for its round's tasks after the retention age. */
bool nwg_expired(void *prim, int64_t now)
{
	struct nwg *wg = prim;

	if (wg->count != 0 || wg->waiters || wg->leases)
		return false;
	if (wg->lost && now - wg->lost_ns <= LOST_KEEP_NS)
		return false;
	if (wg->round.tasks && now - wg->round_ns <= task_config_keep_age_ns())
		return false;
	if (!(wg->lost || wg->round.tasks) || wg->nbound)
		return false;
	free(wg->adders);
	free(wg->bound);
	return true;
}

void wg_pack_round(msgpack_packer *pk, const struct wg_round *r)
{
	msgpack_pack_map(pk, 4 + r->has_failure);
	proto_pack_kv_i64(pk, "tasks", r->tasks);
	proto_pack_kv_i64(pk, "running", r->running);
	proto_pack_kv_i64(pk, "done", r->done);
	proto_pack_kv_i64(pk, "failed", r->failed);
	if (r->has_failure) {
		proto_pack_str(pk, "first_failure");
		task_pack_brief(pk, &r->first_failure);
	}
}

void nwg_pack_wait(msgpack_packer *pk, void *arg)
{
	struct nwait *nw = arg;

	msgpack_pack_map(pk, 1);
	proto_pack_str(pk, "round");
	wg_pack_round(pk, &nw->round);
}

static struct nwg *find(const char *name, size_t len)
{
	return names_get(PRIM_WG, name, len, sizeof(struct nwg), false);
}

void nwg_task_bound(const char *name, size_t len, struct task *t)
{
	struct nwg *wg = find(name, len);

	if (!wg)
		return;
	wg->round.tasks++;
	if (wg->nbound == wg->bound_cap) {
		size_t cap = wg->bound_cap ? wg->bound_cap * 2 : 4;
		struct task **v = realloc(wg->bound, cap * sizeof *v);
		if (!v)
			return;
		wg->bound = v;
		wg->bound_cap = cap;
	}
	*task_bound_slot(t) = wg->nbound;
	wg->bound[wg->nbound++] = t;
}

/* Takes t off the bound tasks in O(1): each knows its slot. */
static void unbind(struct nwg *wg, struct task *t)
{
	size_t i = *task_bound_slot(t);

	if (i >= wg->nbound || wg->bound[i] != t)
		return; /* never bound (out of memory then) */
	wg->bound[i] = wg->bound[--wg->nbound];
	*task_bound_slot(wg->bound[i]) = i;
}

bool nwg_each_holder(void *prim, nwg_holder_fn fn, void *arg)
{
	struct nwg *wg = prim;

	for (struct lease *l = wg->leases; l; l = l->wnext)
		if (fn(arg, l->s, NULL, 0, 0))
			return true;
	for (size_t i = 0; i < wg->nbound; i++)
		if (fn(arg, NULL, wg->bound[i], 0, 0))
			return true;
	for (size_t i = 0; i < wg->nadders; i++)
		if (fn(arg, NULL, NULL, wg->adders[i].sid, wg->adders[i].pid))
			return true;
	return false;
}

void nwg_describe(void *prim, char *buf, size_t len)
{
	struct nwg *wg = prim;
	size_t off = 0;
	int n;

	n = snprintf(buf, len, "WaitGroup %s counts %lld", names_name(wg), (long long)wg->count);
	off = n > 0 && (size_t)n < len ? (size_t)n : len - 1;
	for (size_t i = 0; i < wg->nbound && off < len - 1; i++) {
		n = snprintf(buf + off, len - off, "; task %llu holds 1 (spawn --wg)",
			     (unsigned long long)task_id_of(wg->bound[i]));
		off += n > 0 && (size_t)n < len - off ? (size_t)n : len - off - 1;
	}
	for (size_t i = 0; i < wg->nadders && off < len - 1; i++) {
		n = snprintf(buf + off, len - off, "; session %llu (pid %d) added %lld without a lease",
			     (unsigned long long)wg->adders[i].sid, (int)wg->adders[i].pid,
			     (long long)wg->adders[i].count);
		off += n > 0 && (size_t)n < len - off ? (size_t)n : len - off - 1;
	}
	for (struct lease *l = wg->leases; l && off < len - 1; l = l->wnext) {
		n = snprintf(buf + off, len - off, "; session %llu holds %lld (lease)",
			     (unsigned long long)l->s->id, (long long)l->count);
		off += n > 0 && (size_t)n < len - off ? (size_t)n : len - off - 1;
	}
}

void nwg_task_started(const char *name, size_t len)
{
	struct nwg *wg = find(name, len);

	if (wg)
		wg->round.running++;
}

void nwg_task_ended(const char *name, size_t len, bool started, bool ok,
		    const struct task_brief *b, struct task *t)
{
	struct nwg *wg = find(name, len);

	if (!wg)
		return;
	unbind(wg, t);
	if (started && wg->round.running > 0)
		wg->round.running--;
	wg->round.done++;
	if (!ok) {
		wg->round.failed++;
		if (!wg->round.has_failure) {
			wg->round.has_failure = true;
			wg->round.first_failure = *b;
		}
	}
	wg->round_ns = rt_now();
}

bool nwg_status(const char *name, size_t len, int64_t *count, int64_t *waiters,
		struct wg_round *round)
{
	struct nwg *wg = find(name, len);

	if (!wg)
		return false;
	*count = wg->count;
	*waiters = 0;
	for (struct nwait *w = wg->waiters; w; w = w->next)
		++*waiters;
	*round = wg->round;
	return true;
}
