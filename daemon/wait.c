/* wait.c: requests that wait on a named primitive.
 *
 * A request that cannot be answered at once (a lock held by someone else,
 * a WaitGroup above zero) is queued on its primitive by the session's
 * reader, in arrival order, with names_lock held, and gets a goroutine of
 * its own that parks until the request completes. The reader goes on
 * reading, so later requests on the same connection are answered meanwhile
 * (responses out of order).
 *
 * Completion and waiting meet under names_lock: whoever completes the
 * request (a grant, the counter reaching zero, the session dying) sets
 * nw->done and wakes the goroutine through the request's own wait queue.
 * The goroutine checks nw->done under names_lock before parking and holds
 * the queue's spin lock from then until it is off its stack, so a wake
 * cannot fall between the check and the park. If the deadline passes or
 * the request is cancelled, the goroutine takes names_lock again: a grant
 * that won the race stands (the request succeeded), otherwise it leaves
 * the queue (nwait_abandon). */
#include <stdlib.h>
#include <string.h>

#include "quota.h"

void nwait_enqueue(struct nwait **head, struct nwait *nw)
{
	leak_changed();
	nw->next = NULL;
	if (!*head) {
		nw->prev = nw; /* the head's prev is the tail */
		*head = nw;
		return;
	}
	struct nwait *tail = (*head)->prev;
	tail->next = nw;
	nw->prev = tail;
	(*head)->prev = nw;
}

void nwait_unlink(struct nwait **head, struct nwait *nw)
{
	leak_changed();
	if (nw == *head) {
		*head = nw->next;
		if (*head)
			(*head)->prev = nw->prev;
	} else {
		nw->prev->next = nw->next;
		if (nw->next)
			nw->next->prev = nw->prev;
		else
			(*head)->prev = nw->prev;
	}
	nw->next = nw->prev = NULL;
}

void nwait_complete(struct nwait *nw, int result)
{
	struct rt_waiter *w;

	nw->done = true;
	nw->result = result;
	rt_spin_lock(&nw->q.lock);
	w = rt_waitq_pop(&nw->q);
	if (w)
		rt_waitq_wake(w, 0);
	rt_spin_unlock(&nw->q.lock);
}

void req_link(struct req *r)
{
	struct session *s = r->s;

	leak_changed();
	r->prev = NULL;
	r->next = s->reqs;
	if (s->reqs)
		s->reqs->prev = r;
	s->reqs = r;
	s->nreqs++;
}

void req_unlink(struct req *r)
{
	struct session *s = r->s;

	if (r->prev)
		r->prev->next = r->next;
	else
		s->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
	s->nreqs--;
}

int nwait_park(struct nwait *nw, int64_t deadline)
{
	while (!nw->done) {
		struct rt_waiter w = { 0 };
		int rc;

		rt_spin_lock(&nw->q.lock);
		rt_mutex_unlock(&names_lock);
		rc = rt_waitq_park(&nw->q, &w, false, deadline, "request", nw);
		if (rc < 0)
			rt_spin_unlock(&nw->q.lock);
		rt_mutex_lock_nocancel(&names_lock);
		if (rc < 0 && !nw->done)
			nwait_abandon(nw, rc);
	}
	return nw->result;
}

int req_wait_here(struct req *r)
{
	int rc;

	req_link(r);
	rc = nwait_park(&r->nw, r->deadline);
	req_unlink(r);
	return rc;
}

static void pack_grant(msgpack_packer *pk, void *arg)
{
	struct nwait *nw = arg;

	msgpack_pack_map(pk, 2);
	proto_pack_kv_u64(pk, "token", nw->token);
	proto_pack_kv_bool(pk, "owner_died", nw->owner_died);
}

/* The goroutine of a waiting request: parks until done, replies, frees. */
static void req_wait_main(void *arg)
{
	struct req *r = arg;
	struct session *s = r->s;
	struct nwait *nw = &r->nw;

	rt_mutex_lock_nocancel(&names_lock);
	nwait_park(nw, r->deadline);
	/* Granted to a session that is closing: nobody will use it, so it is
	 * released as a plain unlock, not as a dead owner's (which would tell
	 * the next holder owner_died for a lock no client ever had). */
	bool closing = s->closing;
	if (closing && nw->done && nw->result == 0 &&
	    (nw->kind == PRIM_MUTEX || nw->kind == PRIM_SEM)) {
		struct args a = { .name = r->name, .name_len = strlen(r->name), .token = nw->token };
		if (nw->kind == PRIM_MUTEX)
			nmutex_unlock(s, &a);
		else
			nsem_release(s, &a);
	}
	req_unlink(r);
	rt_mutex_unlock(&names_lock);

	if (!closing) {
		switch (nw->kind) {
		case PRIM_MUTEX:
		case PRIM_SEM:
			session_reply(s, r->msgid, nw->result, NULL, pack_grant, nw, true);
			break;
		case PRIM_WG:
			session_reply(s, r->msgid, nw->result, NULL, nwg_pack_wait, nw, true);
			break;
		default:
			task_req_reply(r);
			break;
		}
	}
	if (nw->kind == PRIM_TASK || nw->kind == PRIM_LOGS)
		task_req_done(r);
	free(r);
	quota_request_unpark(s); /* answered */
	rt_wg_done(&s->reqs_wg);
}

int req_start_wait(struct req *r)
{
	struct session *s = r->s;
	int rc;

	rt_wg_add(&s->reqs_wg, 1);
	req_link(r);
	quota_request_park(s);
	rc = rt_go(req_wait_main, r, &r->g);
	if (rc < 0) {
		/* Cannot wait: leave the queue and fail the request. */
		req_unlink(r);
		nwait_abandon(&r->nw, rc);
		quota_request_unpark(s);
		rt_wg_done(&s->reqs_wg);
	}
	return rc;
}
