/* task.c: tasks, the goroutines that clients spawn.
 *
 * A task is one goroutine (task_main) that goes through its life in
 * order: it waits for the tasks named by `after`, then for the lock and
 * semaphore unit that were requested for it at spawn (queued then, in
 * submission order, so that "lock outside the goroutine" keeps its order),
 * runs (a process for exec, a function for func), and ends: it records the
 * outcome, releases what it held, does the WaitGroup's done, wakes those
 * waiting for it, and moves to the finished list, where retention keeps it
 * for `wait` and `logs` within count, age and output-memory limits.
 *
 * The task as a holder. Locks, semaphore units and WaitGroup counts are
 * held by sessions (gorod.h). A task that holds any gets a session of its
 * own without a connection (its party): the lock it asked for at spawn is
 * the party's, not the spawning client's, so the client may disconnect
 * meanwhile; the wait-for graph sees the party like any session. At the
 * end, a task that exited (whatever its code) releases its spawn grants
 * as a plain unlock; one that was killed, timed out or died of a signal
 * releases them as a dead owner (the next holder is told owner_died: what
 * the lock guards may be half-updated), and so is anything a module
 * function took and did not give back.
 *
 * Ending early. A kill of a queued task cancels its goroutine (every park
 * returns -ECANCELED); a kill of a running exec task sets kill_sig and
 * wakes the goroutine, which signals the process group and arms the grace
 * period after which SIGKILL follows; a func task is cancelled, children
 * included, and its function returns. A timeout is the same as a kill by
 * gorod itself, with state `timeout`.
 *
 * All fields under names_lock, except what only the task goroutine
 * touches while it runs (the process, the pipes) and the output
 * (output.c). A task record is freed when retention has let it go and no
 * reference is left (the goroutine, pumps, waiting requests: refs). */
#include <dirent.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"
#include "quota.h"
#include "task.h"

static void pid_table_add(struct task *t);
static void queued_add(struct task *t);
static void queued_drop(struct task *t);
static void g_table_add(struct task *t);
static void watch_push(struct task *t);

struct task_config task_config = {
	.output_max = 1 << 20,
	.output_limit = 64 << 20,
	.keep_count = 10000,
	.keep_age_ms = 3600 * 1000,
	.keep_output = 256 << 20,
	.leak_after_ms = 600 * 1000,
};

int64_t task_config_keep_age_ns(void)
{
	return task_config.keep_age_ms * 1000000;
}

static const char *const state_names[] = {
	[TS_QUEUED] = "queued",     [TS_RUNNING] = "running", [TS_PAUSED] = "paused",
	[TS_EXITED] = "exited",     [TS_SIGNALED] = "signaled", [TS_KILLED] = "killed",
	[TS_TIMEOUT] = "timeout",   [TS_FAILED] = "failed",   [TS_LOST] = "lost",
	[TS_LEAKED] = "leaked",
};

const char *task_state_name(enum task_state st)
{
	return st <= TS_LEAKED ? state_names[st] : "?";
}

/* ---- the registry: ids, and the live and finished lists ------------------------ */

struct keyent {
	struct task *t;
};

static uint64_t task_ids;
static struct task **ids;        /* hash by id, chained through hnext */
static size_t nids_buckets, nids;
static struct task *live_head, *live_tail, *fin_head, *fin_tail;
/* The live tasks in each state, kept as they change (task_set_state), so
 * that stats, the status line and metrics do not walk a million tasks
 * (names_lock). */
static uint64_t nlive_in[TS_COUNT];

static void task_set_state(struct task *t, enum task_state st)
{
	if (t->live) {
		nlive_in[t->state]--;
		nlive_in[st]++;
	}
	t->state = st;
}
static uint64_t nlive, nfin, nspawned, fin_output;
static uint64_t ended_by_state[TS_COUNT];

/* Every goroutine of every task (its own, pumps, stdin writers,
 * watchdogs), for a clean stop. */
struct rt_wg tasks_wg;

/* Tasks whose helper goroutines (output pumps, the stdin writer, the
 * grace killer) still run: these may outlive the task, even its retention,
 * so gorod's stop finds them here to cancel them. */
static struct task *linger_head;

static size_t id_bucket(uint64_t id, size_t nb)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ULL) >> 20) & (nb - 1);
}

static int ids_resize(size_t nb)
{
	struct task **b = calloc(nb, sizeof *b);

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < nids_buckets; i++) {
		for (struct task *t = ids[i], *next; t; t = next) {
			next = t->hnext;
			t->hnext = b[id_bucket(t->id, nb)];
			b[id_bucket(t->id, nb)] = t;
		}
	}
	free(ids);
	ids = b;
	nids_buckets = nb;
	return 0;
}

struct task *task_find(uint64_t id)
{
	if (!nids_buckets)
		return NULL;
	for (struct task *t = ids[id_bucket(id, nids_buckets)]; t; t = t->hnext)
		if (t->id == id)
			return t;
	return NULL;
}

static int ids_insert(struct task *t)
{
	if (nids + 1 > nids_buckets && ids_resize(nids_buckets ? nids_buckets * 2 : 1024) < 0)
		return -ENOMEM;
	struct task **b = &ids[id_bucket(t->id, nids_buckets)];
	t->hnext = *b;
	*b = t;
	nids++;
	return 0;
}

static void ids_remove(struct task *t)
{
	struct task **pp = &ids[id_bucket(t->id, nids_buckets)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == t) {
			*pp = t->hnext;
			nids--;
			break;
		}
	}
	if (nids_buckets > 1024 && nids < nids_buckets / 8)
		ids_resize(nids_buckets / 2);
}

static void list_append(struct task **head, struct task **tail, struct task *t)
{
	t->next = NULL;
	t->prev = *tail;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

static void list_remove(struct task **head, struct task **tail, struct task *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		*head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		*tail = t->prev;
	t->next = t->prev = NULL;
}

/* ---- records ------------------------------------------------------------------------ */

struct task *task_new(struct session *s)
{
	struct task *t = calloc(1, sizeof *t);

	if (!t)
		return NULL;
	t->uid = s->uid;
	t->gid = s->gid;
	t->client_pid = s->pid;
	t->stdin_fd = -1;
	t->created_ns = rt_now();
	t->grace_ms = 5000;
	t->expect_ms = -1;
	outbuf_init(&t->out[0], (size_t)task_config.output_max);
	outbuf_init(&t->out[1], (size_t)task_config.output_max);
	return t;
}

static void task_free(struct task *t)
{
	outbuf_destroy(&t->out[0]);
	outbuf_destroy(&t->out[1]);
	quota_task_free(t);
	free(t->groups);
	free(t->name);
	free(t->key);
	free(t->spec);
	free(t->stdin_data); /* a task refused at spawn still has it */
	free(t->args);
	free(t->wg);
	free(t->after);
	free(t->lockreq);
	free(t->semreq);
	free(t->later_lock);
	free(t->later_sem);
	free(t->errmsg);
	free(t->result);
	free(t->kids);
	free(t);
}

void task_discard(struct task *t)
{
	task_free(t);
}

void task_unref(struct task *t)
{
	if (--t->refs == 0 && t->pruned)
		task_free(t);
}

void task_helper_add(struct task *t)
{
	t->refs++;
	rt_wg_add(&tasks_wg, 1);
	if (t->helpers++ == 0) {
		t->lprev = NULL;
		t->lnext = linger_head;
		if (linger_head)
			linger_head->lprev = t;
		linger_head = t;
	}
}

void task_helper_done(struct task *t)
{
	if (--t->helpers == 0) {
		if (t->lprev)
			t->lprev->lnext = t->lnext;
		else
			linger_head = t->lnext;
		if (t->lnext)
			t->lnext->lprev = t->lprev;
		t->lnext = t->lprev = NULL;
	}
	task_unref(t);
	rt_wg_done(&tasks_wg);
}

/* names_lock held: cancels t's helper goroutines. */
static void helpers_cancel(struct task *t)
{
	for (int i = 0; i < 2; i++)
		if (t->out[i].pump.g)
			rt_cancel(t->out[i].pump);
	if (t->stdin_g.g)
		rt_cancel(t->stdin_g);
	if (t->grace_g.g)
		rt_cancel(t->grace_g);
}

bool task_allowed(const struct session *s, const struct task *t)
{
	return s->uid == 0 || s->uid == t->uid;
}

static int64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* names_lock held: the task's party, made on first use. */
struct session *task_party(struct task *t)
{
	if (!t->party && (t->party = session_party_new(t->uid, t->gid, t->client_pid)))
		t->party->party_task = t;
	return t->party;
}

/* ---- retention ------------------------------------------------------------------- */

/* Tasks forgotten since the heap was last trimmed (task_trim). */
static _Atomic uint64_t forgotten;

static void forget(struct task *t)
{
	atomic_fetch_add_explicit(&forgotten, 1, memory_order_relaxed);
	task_behind_drop(t);
	list_remove(&fin_head, &fin_tail, t);
	nfin--;
	fin_output -= t->accounted;
	ids_remove(t);
	t->pruned = true;
	if (t->refs == 0)
		task_free(t);
}

void task_trim(uint64_t at_least)
{
	/* glibc keeps freed chunks below live ones, so the memory that
	 * retention lets go would stay gorod's; Go's scavenger gives it back,
	 * and so does this, once enough was forgotten to be worth the walk. */
	if (atomic_load_explicit(&forgotten, memory_order_relaxed) >= at_least &&
	    atomic_exchange(&forgotten, 0) >= at_least)
		malloc_trim(0);
}

static void heap_compact(void);

void task_prune(int64_t now_ns)
{
	int64_t age = task_config.keep_age_ms * 1000000;

	heap_compact();
	while (fin_head && ((int64_t)nfin > task_config.keep_count ||
			    (int64_t)fin_output > task_config.keep_output ||
			    now_ns - fin_head->ended_ns > age))
		forget(fin_head);
}

/* ---- ending ------------------------------------------------------------------------- */

bool task_succeeded(const struct task *t)
{
	return t->state == TS_EXITED && t->code == 0;
}

void task_brief_of(const struct task *t, struct task_brief *b)
{
	*b = (struct task_brief){ t->id, t->state, t->code, t->sig, t->err };
}

/* names_lock held: gives back the grant a spawn request got: plainly when
 * the task exited, as a dead owner's otherwise (holdings_release). */
static void release_spawn_grant(struct task *t, struct req *r, bool clean)
{
	if (!r)
		return;
	if (!r->nw.done) { /* still queued: it ended before the grant */
		nwait_abandon(&r->nw, -ECANCELED);
		req_unlink(r);
		return;
	}
	if (r->nw.result == 0 && clean) {
		struct args a = { .name = r->name, .name_len = strlen(r->name), .token = r->nw.token };
		if (r->nw.kind == PRIM_SEM)
			nsem_release(t->party, &a);
		else
			nmutex_unlock(t->party, &a);
	}
}

/* names_lock held: once a task has ended, it keeps only what ps and wait
 * show: the first PS_ARGV_MAX arguments cut at PS_ARG_MAX bytes (not its
 * environment, its stdin or a function's arguments), so that what
 * retention keeps is bounded by its limits. */
static void shrink(struct task *t)
{
	size_t n = 0, bytes = 0;
	char **v, *s;

	free(t->args);
	t->args = NULL;
	t->nargs = 0;
	if (!t->stdin_g.g) { /* else the writer frees it when it ends */
		free(t->stdin_data);
		t->stdin_data = NULL;
	}
	if (t->func || !t->argv)
		return;
	while (t->argv[n] && n < PS_ARGV_MAX) {
		size_t len = strlen(t->argv[n]);
		bytes += (len > PS_ARG_MAX ? PS_ARG_MAX : len) + 1;
		n++;
	}
	if (!(v = malloc((n + 1) * sizeof *v + bytes)))
		return; /* keep the whole spec rather than nothing */
	s = (char *)(v + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(t->argv[i]);
		if (len > PS_ARG_MAX)
			len = PS_ARG_MAX;
		v[i] = memcpy(s, t->argv[i], len);
		s[len] = '\0';
		s += len + 1;
	}
	v[n] = NULL;
	free(t->spec);
	t->spec = v;
	t->spec_len = (n + 1) * sizeof *v + bytes;
	t->argv = v;
	t->envp = NULL;
	t->cwd = NULL;
}

/* names_lock held: the task has its outcome (state etc. set): everything
 * that follows from its end. */
static void task_ended(struct task *t)
{
	struct task_brief b;
	bool started = t->started_ns != 0;
	/* Nothing ran under the spawn grants of a task that never started,
	 * or whose command never ran: no owner died. */
	bool clean = t->state == TS_EXITED || !started || (!t->func && t->pid == 0);

	t->ended_ms = unix_ms();
	t->ended_ns = rt_now();
	if (!started)
		t->started_ms = 0;
	if (t->leaked)
		task_set_state(t, TS_LEAKED);
	ended_by_state[t->state]++;
	leak_changed();
	queued_drop(t);
	leak_forget_task(t);

	release_spawn_grant(t, t->lockreq, clean);
	release_spawn_grant(t, t->semreq, clean);
	if (t->party) {
		holdings_release(t->party);
		session_party_free(t->party);
		t->party = NULL;
	}
	if (t->wg) {
		struct args a = { .name = t->wg, .name_len = strlen(t->wg), .delta = -1 };
		int64_t count;
		task_brief_of(t, &b);
		nwg_task_ended(t->wg, a.name_len, started, task_succeeded(t), &b, t);
		nwg_add(NULL, &a, &count);
	}
	if (t->key) {
		struct keyent *k = names_get(PRIM_TASKKEY, t->key, strlen(t->key), sizeof *k, false);
		if (k && k->t == t)
			names_drop(PRIM_TASKKEY, k);
	}
	if (t->scope_s) {
		struct session *s = t->scope_s;
		if (t->sprev)
			t->sprev->snext = t->snext;
		else
			s->tasks = t->snext;
		if (t->snext)
			t->snext->sprev = t->sprev;
		t->scope_s = NULL;
	}
	while (t->waiters) {
		struct nwait *nw = t->waiters;
		nwait_unlink(&t->waiters, nw);
		nwait_complete(nw, 0);
	}
	/* Streams without a pump (a func's, or a command's that never ran)
	 * end with the task; a pump ends its own at the pipe's end of file. */
	for (int i = 0; i < 2; i++)
		if (!t->out[i].pumped)
			t->out[i].eof = true;
	if (t->stdin_g.g) /* what the process did not read by now, it will not */
		rt_cancel(t->stdin_g);
	while (t->log_waiters) {
		struct nwait *nw = t->log_waiters;
		nwait_unlink(&t->log_waiters, nw);
		nwait_complete(nw, 0);
	}
	list_remove(&live_head, &live_tail, t);
	nlive--;
	nlive_in[t->state]--;
	t->live = false;
	quota_task_ended(t);
	list_append(&fin_head, &fin_tail, t);
	nfin++;
	shrink(t);
	t->accounted = t->out[0].kept + t->out[1].kept + t->result_len + t->spec_len +
		       (t->errmsg ? strlen(t->errmsg) : 0);
	fin_output += t->accounted;
	task_prune(t->ended_ns);
}

/* names_lock held, by the task's goroutine, its outcome set: ends it,
 * records the end in the journal (which reads the output under its own
 * locks, so names_lock is let go meanwhile; the goroutine's reference
 * keeps t), and drops the goroutine's hold. Returns with names_lock
 * released. */
static void task_finish(struct task *t)
{
	task_ended(t);
	rt_mutex_unlock(&names_lock);
	journal_ended(t);
	task_trim(TRIM_AFTER);
	rt_mutex_lock_nocancel(&names_lock);
	task_unref(t);
	rt_mutex_unlock(&names_lock);
	rt_wg_done(&tasks_wg);
}

/* ---- waiting for events while the process runs ------------------------------------ */

/* Wakes the task goroutine waiting in proc_wait_ev (a kill, a pause). */
static void task_poke(struct task *t)
{
	rt_spin_lock(&t->proc.q.lock);
	t->ev_pending = true;
	struct rt_waiter *w = rt_waitq_pop(&t->proc.q);
	if (w)
		rt_waitq_wake(w, 1);
	rt_spin_unlock(&t->proc.q.lock);
}

/* Parks until the process exited, an event was poked, or the deadline.
 * Returns 0 (exited), 1 (an event), or -ETIMEDOUT. */
static int proc_wait_ev(struct task *t, int64_t deadline)
{
	struct proc *p = &t->proc;
	struct rt_waiter w = { 0 };
	int rc;

	rt_spin_lock(&p->q.lock);
	if (p->exited || t->ev_pending) {
		rc = p->exited ? 0 : 1;
		t->ev_pending = false;
		rt_spin_unlock(&p->q.lock);
		return rc;
	}
	rc = rt_waitq_park(&p->q, &w, RT_WQ_NOCANCEL, deadline, "child", p);
	if (rc < 0) {
		rt_spin_unlock(&p->q.lock);
		return rc;
	}
	/* Woken with 0 by the reaper (p->exited is set), 1 by task_poke. Not
	 * taking the lock again on the way out matters: the waker may still
	 * hold it while it wakes a thread to run us, and we would spin. */
	if (rc == 1) {
		rt_spin_lock(&p->q.lock);
		t->ev_pending = false;
		rc = p->exited ? 0 : 1;
		rt_spin_unlock(&p->q.lock);
	}
	return rc;
}

static int64_t min64(int64_t a, int64_t b)
{
	if (a == RT_FOREVER)
		return b;
	if (b == RT_FOREVER)
		return a;
	return a < b ? a : b;
}

/* names_lock held, or on the task goroutine (which alone sets pid). */
static void signal_group(struct task *t, int sig)
{
	if (t->pid > 0)
		kill(-t->pid, sig);
}

/* The exec task's main loop while its process runs: kills, pauses, the
 * timeout and the grace period, until the process exits. Returns when the
 * grace period of a kill or timeout ends (RT_FOREVER: none pending): the
 * rest of the process group gets SIGKILL then (grace_main). */
/* Starts the pumps of t's streams that have none (see output.c). */
static void start_pumps(struct task *t)
{
	for (int i = 0; i < 2; i++)
		if (!t->out[i].pumped && t->out[i].fd >= 0 && outbuf_pump_start(t, &t->out[i]) < 0)
			fprintf(stderr, "gorod: task %llu: cannot read its %s; it may block writing\n",
				(unsigned long long)t->id, i ? "stderr" : "stdout");
}

static int64_t supervise(struct task *t)
{
	int64_t tdl = t->timeout_ms > 0 ? t->started_ns + t->timeout_ms * 1000000 : RT_FOREVER;
	int64_t gdl = RT_FOREVER, pdl = rt_now() + PUMP_AFTER_NS;

	for (;;) {
		int rc = proc_wait_ev(t, min64(min64(tdl, gdl), pdl));
		int64_t now = rt_now();
		int sig;

		if (rc == 0)
			return gdl;
		if (pdl != RT_FOREVER && now >= pdl) {
			start_pumps(t);
			pdl = RT_FOREVER;
		}
		rt_mutex_lock_nocancel(&names_lock);
		sig = t->kill_sig;
		t->kill_sig = 0;
		rt_mutex_unlock(&names_lock);
		if (sig) {
			signal_group(t, sig);
			if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCONT && gdl == RT_FOREVER)
				gdl = now + t->grace_ms * 1000000;
			if (sig != SIGSTOP && sig != SIGCONT)
				signal_group(t, SIGCONT); /* a stopped group cannot die */
		}
		if (tdl != RT_FOREVER && now >= tdl) {
			t->timed_out = true;
			tdl = RT_FOREVER;
			signal_group(t, SIGTERM);
			signal_group(t, SIGCONT);
			gdl = now + t->grace_ms * 1000000;
		} else if (gdl != RT_FOREVER && now >= gdl) {
			signal_group(t, SIGKILL);
			gdl = RT_FOREVER;
		}
	}
}

/* ---- running an exec task ------------------------------------------------------------ */

static int devnull = -1;

/* The writer of stdin bytes: a helper goroutine, so a process that reads
 * slowly does not hold up the task. It owns stdin_fd and, from its start,
 * stdin_data; the task's end cancels it (what the process did not read by
 * then, it will not). */
static void stdin_main(void *arg)
{
	struct task *t = arg;
	size_t off = 0;

	while (off < t->stdin_len) {
		ssize_t n = write(t->stdin_fd, t->stdin_data + off, t->stdin_len - off);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN) {
			if (rt_wait_fd(t->stdin_fd, RT_WRITE, RT_FOREVER) < 0)
				break;
		} else
			break; /* EPIPE: the process does not read it */
	}
	close(t->stdin_fd);
	t->stdin_fd = -1;
	rt_mutex_lock_nocancel(&names_lock);
	t->stdin_g = (struct rt_gref){ 0 };
	if (t->ended_ns) { /* shrink() left it to us */
		free(t->stdin_data);
		t->stdin_data = NULL;
	}
	task_helper_done(t);
	rt_mutex_unlock(&names_lock);
}

/* The grace killer: the main process of a killed or timed-out command is
 * gone, but others of its group may live on (they ignored SIGTERM); when
 * the grace period ends, or gorod stops, they get SIGKILL. */
static void grace_main(void *arg)
{
	struct task *t = arg;

	rt_sleep(t->grace_until);
	if (kill(-t->pid, 0) == 0)
		kill(-t->pid, SIGKILL);
	rt_mutex_lock_nocancel(&names_lock);
	t->grace_g = (struct rt_gref){ 0 };
	task_helper_done(t);
	rt_mutex_unlock(&names_lock);
}

/* A new pipe end has no other status flags: set O_NONBLOCK alone. */
static int nonblock(int fd)
{
	return fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ? -errno : 0;
}

/* Sets the failed outcome for an error of gorod's own (names_lock not held). */
static void fail(struct task *t, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct task *t, int err, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	rt_mutex_lock_nocancel(&names_lock);
	if (t->killed) { /* a kill was accepted first: that is its outcome */
		task_set_state(t, TS_KILLED);
		free(msg);
	} else {
		task_set_state(t, TS_FAILED);
		t->err = err;
		free(t->errmsg);
		t->errmsg = msg;
	}
	rt_mutex_unlock(&names_lock);
}

static void run_exec(struct task *t)
{
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, in[2] = { -1, -1 };
	struct exec_spec sp = {
		.argv = t->argv, .envp = t->envp, .cwd = t->cwd ? t->cwd : "/",
		.as_client = gorod_euid == 0 && t->uid != 0,
		.uid = t->uid, .gid = t->gid, .groups = t->groups, .ngroups = t->ngroups,
	};
	const char *why;
	int rc;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    (t->stdin_len && pipe2(in, O_CLOEXEC) < 0)) {
		rc = -errno;
		fail(t, rc, "cannot make the pipes for its output: %s", strerror(-rc));
		goto out;
	}
	nonblock(out[0]);
	nonblock(err[0]);
	sp.fd_in = t->stdin_len ? in[0] : devnull;
	sp.fd_out = out[1];
	sp.fd_err = err[1];
	rc = proc_start(&t->proc, &sp, &why);
	close(out[1]);
	close(err[1]);
	out[1] = err[1] = -1;
	if (in[0] >= 0)
		close(in[0]);
	in[0] = -1;
	if (rc == 0) {
		/* Now kill and pause may signal it; a pause that came while it
		 * was starting takes effect here. */
		rt_mutex_lock_nocancel(&names_lock);
		t->pid = t->proc.pid;
		pid_table_add(t);
		if (t->state == TS_PAUSED)
			signal_group(t, SIGSTOP);
		rt_mutex_unlock(&names_lock);
	}
	if (t->proc.pid > 0) { /* the streams' read ends are theirs now */
		t->out[0].fd = out[0];
		t->out[1].fd = err[0];
		out[0] = err[0] = -1;
	}
	if (rc < 0) {
		bool chdir_failed = why && strstr(why, "directory");
		fail(t, rc, "%s '%.200s': %s", why ? why : "starting",
		     chdir_failed ? sp.cwd : t->argv[0], strerror(-rc));
	} else if (in[1] >= 0) {
		nonblock(in[1]);
		t->stdin_fd = in[1];
		in[1] = -1;
		rt_mutex_lock_nocancel(&names_lock);
		task_helper_add(t);
		if (rt_go(stdin_main, t, &t->stdin_g) < 0) {
			close(t->stdin_fd);
			t->stdin_fd = -1;
			task_helper_done(t);
		}
		rt_mutex_unlock(&names_lock);
	}
	if (t->proc.pid > 0) {
		/* supervise returns once the process exited; a process whose
		 * exec failed exits at once. */
		int64_t grace = rc == 0 ? supervise(t) : RT_FOREVER;
		if (rc != 0)
			while (proc_wait(&t->proc, RT_FOREVER) < 0)
				;
		/* All it wrote is in the pipes now. A pipe that is not at its
		 * end is held by something the command left behind: a pump
		 * reads on until that ends. */
		bool end0 = outbuf_drain(t, &t->out[0]), end1 = outbuf_drain(t, &t->out[1]);
		if (!end0 || !end1)
			start_pumps(t);
		if (grace != RT_FOREVER && kill(-t->pid, 0) == 0) {
			rt_mutex_lock_nocancel(&names_lock);
			t->grace_until = grace;
			task_helper_add(t);
			if (rt_go(grace_main, t, &t->grace_g) < 0) {
				kill(-t->pid, SIGKILL);
				task_helper_done(t);
			}
			rt_mutex_unlock(&names_lock);
		}
	}
	if (rc == 0) {
		int st = t->proc.status;
		rt_mutex_lock_nocancel(&names_lock);
		if (WIFSIGNALED(st))
			t->sig = WTERMSIG(st);
		else
			t->code = WEXITSTATUS(st);
		task_set_state(t, t->timed_out ? TS_TIMEOUT
				  : t->killed ? TS_KILLED
				  : WIFSIGNALED(st) ? TS_SIGNALED : TS_EXITED);
		rt_mutex_unlock(&names_lock);
	}
out:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (err[i] >= 0)
			close(err[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
}

/* ---- running a func task --------------------------------------------------------------- */

struct kid {
	struct task *t;
	void (*fn)(void *);
	void *arg;
};

static void kid_main(void *arg)
{
	struct kid k = *(struct kid *)arg;
	struct task *t = k.t;

	free(arg);
	k.fn(k.arg);
	rt_spin_lock(&t->kids_q.lock);
	if (--t->nkids == 0) {
		struct rt_waiter *w = rt_waitq_pop(&t->kids_q);
		if (w)
			rt_waitq_wake(w, 0);
	}
	rt_spin_unlock(&t->kids_q.lock);
}

int task_go_child(struct task *t, void (*fn)(void *), void *arg)
{
	struct kid *k = malloc(sizeof *k);
	struct rt_gref g;
	int rc;

	if (!k)
		return -ENOMEM;
	*k = (struct kid){ t, fn, arg };
	rt_spin_lock(&t->kids_q.lock);
	t->nkids++;
	rt_spin_unlock(&t->kids_q.lock);
	rc = rt_go(kid_main, k, &g);
	if (rc < 0) {
		free(k);
		rt_spin_lock(&t->kids_q.lock);
		t->nkids--;
		rt_spin_unlock(&t->kids_q.lock);
		return rc;
	}
	rt_mutex_lock_nocancel(&names_lock);
	if (t->kids_len == t->kids_cap) {
		size_t cap = t->kids_cap ? t->kids_cap * 2 : 4;
		struct rt_gref *v = realloc(t->kids, cap * sizeof *v);
		if (v) {
			t->kids = v;
			t->kids_cap = cap;
		}
	}
	if (t->kids_len < t->kids_cap)
		t->kids[t->kids_len++] = g;
	if (t->cancelled)
		rt_cancel(g);
	rt_mutex_unlock(&names_lock);
	return 0;
}

/* names_lock held: cancels a func task's goroutine and its children. */
static void cancel_func(struct task *t)
{
	t->cancelled = true;
	rt_cancel(t->g);
	for (size_t i = 0; i < t->kids_len; i++)
		rt_cancel(t->kids[i]);
}

/* The func timeout: a goroutine that cancels the task when it passes. */
static void watchdog_main(void *arg)
{
	struct task *t = arg;
	int rc = rt_sleep(t->started_ns + t->timeout_ms * 1000000);

	rt_mutex_lock_nocancel(&names_lock);
	if (rc == 0 && !TS_ENDED(t->state) && !t->cancelled) {
		t->timed_out = true;
		cancel_func(t);
	}
	task_unref(t);
	rt_mutex_unlock(&names_lock);
	rt_wg_done(&tasks_wg);
}

static void run_func(struct task *t)
{
	struct goro_task gt = { t };
	struct rt_gref watchdog = { 0 };
	int rc;

	if (t->timeout_ms > 0) {
		rt_mutex_lock_nocancel(&names_lock);
		t->refs++;
		rt_wg_add(&tasks_wg, 1);
		if (rt_go(watchdog_main, t, &watchdog) < 0) {
			t->refs--;
			rt_wg_done(&tasks_wg);
		}
		rt_mutex_unlock(&names_lock);
	}
	rt_mutex_lock_nocancel(&names_lock);
	g_table_add(t);
	rt_mutex_unlock(&names_lock);
	rc = t->fn->fn(&gt, t->args, t->nargs);

	/* Its children end before it does. */
	rt_spin_lock(&t->kids_q.lock);
	while (t->nkids > 0) {
		struct rt_waiter w = { 0 };
		rt_waitq_park(&t->kids_q, &w, RT_WQ_NOCANCEL, RT_FOREVER, "children", t);
		rt_spin_lock(&t->kids_q.lock);
	}
	rt_spin_unlock(&t->kids_q.lock);

	rt_mutex_lock_nocancel(&names_lock);
	if (watchdog.g && !t->timed_out)
		rt_cancel(watchdog);
	if (t->timed_out) {
		task_set_state(t, TS_TIMEOUT);
	} else if (t->cancelled) {
		task_set_state(t, TS_KILLED);
	} else if (rc < 0) {
		task_set_state(t, TS_FAILED);
		t->err = rc;
		if (!t->errmsg && (t->errmsg = malloc(128)))
			snprintf(t->errmsg, 128, "%s failed: %s", t->fn->name, proto_strerror(rc));
	} else {
		task_set_state(t, TS_EXITED);
		t->code = 0;
	}
	rt_mutex_unlock(&names_lock);
}

/* ---- the leak monitor's tables --------------------------------------------------------- */

#define SMALL_TABLE 4096 /* buckets: pid and goroutine lookups, chained */

static struct task *pid_table[SMALL_TABLE], *g_table[SMALL_TABLE];
static struct task *behind_head;

uint64_t task_id_of(const struct task *t)
{
	return t->id;
}

size_t *task_bound_slot(struct task *t)
{
	return &t->wg_slot;
}

struct task *task_live_head(void)
{
	return live_head;
}

static struct task *queued_head;

struct task *task_queued_head(void)
{
	return queued_head;
}

static void queued_add(struct task *t)
{
	t->queued = true;
	t->qprev = NULL;
	t->qnext = queued_head;
	if (queued_head)
		queued_head->qprev = t;
	queued_head = t;
}

static void queued_drop(struct task *t)
{
	if (!t->queued)
		return;
	if (t->qprev)
		t->qprev->qnext = t->qnext;
	else
		queued_head = t->qnext;
	if (t->qnext)
		t->qnext->qprev = t->qprev;
	t->queued = false;
}

static void pid_table_add(struct task *t)
{
	struct task **b = &pid_table[(unsigned)t->pid % SMALL_TABLE];
	t->pnext = *b;
	*b = t;
}

static struct task *task_of_pid(pid_t pid)
{
	for (struct task *t = pid_table[(unsigned)pid % SMALL_TABLE]; t; t = t->pnext)
		if (t->pid == pid)
			return t;
	return NULL;
}

static void g_table_add(struct task *t)
{
	struct task **b = &g_table[t->g.id % SMALL_TABLE];
	t->gnext = *b;
	*b = t;
}

struct task *task_of_goroutine(uint64_t id)
{
	for (struct task *t = g_table[id % SMALL_TABLE]; t; t = t->gnext)
		if (t->g.id == id)
			return t;
	return NULL;
}

static void table_remove(struct task **b, struct task *t, bool by_pid)
{
	for (; *b; b = by_pid ? &(*b)->pnext : &(*b)->gnext) {
		if (*b == t) {
			*b = by_pid ? t->pnext : t->gnext;
			return;
		}
	}
}

/* The suspected-leak deadlines: a binary heap of (when, task id) over every
 * live task, so that a look touches only the tasks that are due. */
struct due {
	int64_t at;
	uint64_t id;
};
static struct due *heap;
static size_t nheap, heap_cap;

static void heap_push(int64_t at, uint64_t id);

static void watch_push(struct task *t)
{
	int64_t expect = t->expect_ms >= 0 ? t->expect_ms : task_config.leak_after_ms;

	heap_push(t->created_ns + expect * 1000000, t->id);
}

void task_watch_again(struct task *t, int64_t at)
{
	heap_push(at, t->id);
}

static void heap_push(int64_t at, uint64_t id)
{
	size_t i;

	if (nheap == heap_cap) {
		size_t cap = heap_cap ? heap_cap * 2 : 1024;
		struct due *v = realloc(heap, cap * sizeof *v);
		if (!v)
			return; /* this task is never suspected: no false finding either */
		heap = v;
		heap_cap = cap;
	}
	for (i = nheap++; i > 0 && heap[(i - 1) / 2].at > at; i = (i - 1) / 2)
		heap[i] = heap[(i - 1) / 2];
	heap[i] = (struct due){ at, id };
}

static struct due heap_pop(void)
{
	struct due top = heap[0], last = heap[--nheap];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= nheap)
			break;
		if (c + 1 < nheap && heap[c + 1].at < heap[c].at)
			c++;
		if (heap[c].at >= last.at)
			break;
		heap[i] = heap[c];
		i = c;
	}
	if (nheap)
		heap[i] = last;
	return top;
}

/* names_lock held: drops the entries of tasks that ended (each waits for
 * its time otherwise: minutes after a burst of short tasks) once they are
 * most of the heap, and gives back the room, so that a burst leaves no
 * high-water mark behind. */
static void heap_compact(void)
{
	size_t k = 0, cap;

	if (nheap < 2 * nlive + 1024)
		return;
	for (size_t i = 0; i < nheap; i++) {
		struct task *t = task_find(heap[i].id);
		if (t && !TS_ENDED(t->state))
			heap[k++] = heap[i];
	}
	nheap = k;
	for (size_t i = nheap / 2; i-- > 0;) { /* heapify: sift each parent down */
		struct due d = heap[i];
		size_t j = i;
		for (;;) {
			size_t c = 2 * j + 1;
			if (c >= nheap)
				break;
			if (c + 1 < nheap && heap[c + 1].at < heap[c].at)
				c++;
			if (heap[c].at >= d.at)
				break;
			heap[j] = heap[c];
			j = c;
		}
		heap[j] = d;
	}
	for (cap = 1024; cap < 2 * nheap; cap *= 2)
		;
	if (cap < heap_cap) {
		struct due *v = realloc(heap, cap * sizeof *v);
		if (v) {
			heap = v;
			heap_cap = cap;
		}
	}
}

size_t task_watch_due(int64_t now, struct task **out, size_t n)
{
	size_t k = 0;

	while (nheap && heap[0].at <= now && k < n) {
		struct due d = heap_pop();
		struct task *t = task_find(d.id);
		if (t && !t->ended_ns)
			out[k++] = t;
	}
	return k;
}

/* The CPU ticks of process pid (utime + stime), 0 when it is gone. */
static uint64_t cpu_of(pid_t pid)
{
	char path[64], buf[512];
	unsigned long long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return 0;
	if (fgets(buf, sizeof buf, f)) {
		char *p = strrchr(buf, ')');
		if (p)
			sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st);
	}
	fclose(f);
	return ut + st;
}

bool task_progressed(struct task *t)
{
	uint64_t out = t->out[0].total + t->out[1].total;
	uint64_t cpu = !t->func && t->pid > 0 ? cpu_of(t->pid) : 0;
	bool moved = out != t->seen_output || cpu != t->seen_cpu;

	t->seen_output = out;
	t->seen_cpu = cpu;
	if (t->func && t->state == TS_RUNNING && !t->party && t->nkids == 0 && !t->fn->is_sleep)
		moved = true; /* a function that runs, not waiting on gorod: progress unknown */
	return moved;
}

/* names_lock held: t ends: off the leak monitor's tables; an exec task
 * whose group lives on goes on the left-behind list. */
void leak_forget_task(struct task *t)
{
	if (t->pid > 0)
		table_remove(&pid_table[(unsigned)t->pid % SMALL_TABLE], t, true);
	if (t->func)
		table_remove(&g_table[t->g.id % SMALL_TABLE], t, false);
	if (!t->func && t->pid > 0 && kill(-t->pid, 0) == 0) {
		t->behind = true;
		t->bprev = NULL;
		t->bnext = behind_head;
		if (behind_head)
			behind_head->bprev = t;
		behind_head = t;
	}
}

struct task *task_behind_first(void)
{
	return behind_head;
}

void task_behind_drop(struct task *t)
{
	if (!t->behind)
		return;
	if (t->bprev)
		t->bprev->bnext = t->bnext;
	else
		behind_head = t->bnext;
	if (t->bnext)
		t->bnext->bprev = t->bprev;
	t->behind = false;
}

/* /proc/PID/stat's process group and parent of pid; false when gone. */
static bool stat_of(pid_t pid, pid_t *pgrp, pid_t *ppid, char *state)
{
	char path[64], buf[512];
	bool ok = false;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return false;
	if (fgets(buf, sizeof buf, f)) {
		char *p = strrchr(buf, ')');
		int pp = 0, pg = 0;
		char st = '?';
		ok = p && sscanf(p + 2, "%c %d %d", &st, &pp, &pg) == 3;
		*ppid = pp;
		*pgrp = pg;
		*state = st;
	}
	fclose(f);
	return ok;
}

struct task *session_task(struct session *s)
{
	pid_t pid = s->pid, pgrp, ppid;
	char st;

	if (s->party)
		return s->party_task;
	if (s->task_of_known) {
		struct task *t = s->task_of ? task_find(s->task_of) : NULL;
		return t && !t->ended_ns ? t : NULL;
	}
	s->task_of_known = true;
	s->task_of = 0;
	/* Its process group first (a task's processes keep the task's), then
	 * its ancestors (one that made a group of its own). */
	for (int depth = 0; depth < 32 && pid > 1; depth++) {
		struct task *t = task_of_pid(pid);
		if (t && !t->ended_ns) {
			s->task_of = t->id;
			return t;
		}
		if (!stat_of(pid, &pgrp, &ppid, &st))
			break;
		if (depth == 0 && (t = task_of_pid(pgrp)) && !t->ended_ns) {
			s->task_of = t->id;
			return t;
		}
		pid = ppid;
	}
	return NULL;
}

/* Whether process pid sleeps waiting for its children (wait4, waitid). */
static bool waits_for_children(pid_t pid)
{
	char path[64], buf[64] = "";
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
	if (!(f = fopen(path, "re")))
		return false;
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	return strcmp(buf, "do_wait") == 0 || strcmp(buf, "kernel_wait4") == 0;
}

/* Whether pid is the peer of a session acting for t that has a request
 * waiting. */
static bool waits_on_gorod(struct task *t, pid_t pid)
{
	for (struct session *s = sessions; s; s = s->next) {
		if (s->pid != pid || session_task(s) != t)
			continue;
		for (struct req *r = s->reqs; r; r = r->next)
			if (!r->nw.done)
				return true;
	}
	return false;
}

bool task_tree_blocked(struct task *t)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool blocked = true;
	int members = 0;

	if (!d || t->pid <= 0) {
		if (d)
			closedir(d);
		return false;
	}
	while (blocked && (e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name), pgrp, ppid;
		char st;
		if (pid <= 0 || !stat_of(pid, &pgrp, &ppid, &st) || pgrp != t->pid || st == 'Z')
			continue;
		members++;
		if (st == 'T' || st == 't')
			continue; /* stopped: moves only when someone continues it */
		if (!waits_on_gorod(t, pid) && !waits_for_children(pid))
			blocked = false;
	}
	closedir(d);
	return blocked && members > 0;
}

int group_pids(pid_t pgid, char *buf, size_t len)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t off = 0;
	int n = 0;

	buf[0] = '\0';
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		pid_t pid = (pid_t)atoi(e->d_name), pgrp, ppid;
		char st;
		if (pid <= 0 || !stat_of(pid, &pgrp, &ppid, &st) || pgrp != pgid || st == 'Z')
			continue;
		int k = snprintf(buf + off, len - off, "%s%d", n ? ", " : "", (int)pid);
		if (k > 0 && (size_t)k < len - off)
			off += (size_t)k;
		n++;
	}
	closedir(d);
	return n;
}

void task_kill_leaked(struct task *t)
{
	if (t->ended_ns || t->leaked)
		return;
	t->leaked = true;
	task_kill(t, SIGKILL);
}

/* ---- the built-in sleep, without a stack -------------------------------------------------- */

/* The end of a `sleep` task: the goroutine starts over here, on a fresh
 * stack, when its deadline passes or it is cancelled. */
static void sleep_end(void *arg)
{
	struct task *t = arg;

	rt_mutex_lock_nocancel(&names_lock);
	if (t->cancelled)
		task_set_state(t, t->timed_out ? TS_TIMEOUT : TS_KILLED);
	else if (rt_now() < t->sleep_until)
		task_set_state(t, TS_TIMEOUT); /* its timeout came first */
	else
		task_set_state(t, TS_EXITED);
	task_finish(t);
}

/* A func task running the built-in sleep with a good argument parks with
 * no stack at all (rt_sleep_then): a sleeping task then costs its records
 * (about 1 KiB), not a stack page, so 100,000 of them fit in ~100 MiB
 * less than they would otherwise. Returns only when the argument is bad
 * (the function itself then says why). */
static void maybe_sleep_stackless(struct task *t)
{
	int64_t dl;

	if (!t->fn->is_sleep || t->nargs != 1 || t->args[0].type != GORO_INT ||
	    t->args[0].i < 0 || t->args[0].i > PROTO_MAX_TIMEOUT_MS)
		return;
	t->sleep_until = t->started_ns + t->args[0].i * 1000000;
	dl = t->sleep_until;
	if (t->timeout_ms > 0 && t->started_ns + t->timeout_ms * 1000000 < dl)
		dl = t->started_ns + t->timeout_ms * 1000000;
	rt_sleep_then(dl, sleep_end, t);
}

/* ---- the task goroutine ---------------------------------------------------------------- */

static int request_grants(struct task *t, const char *lock, size_t lock_len, bool write,
			  const char *sem, size_t sem_len, int64_t capacity);

/* names_lock held: waits for the after-tasks, the lock and the semaphore.
 * Returns 0, or -ECANCELED when killed meanwhile. */
static int wait_turn(struct task *t)
{
	for (int i = 0; i < t->nafter; i++) {
		struct task *dep = task_find(t->after[i]);
		struct nwait nw = { 0 };

		if (!dep || dep->ended_ns)
			continue;
		nw.kind = PRIM_TASK;
		nw.prim = dep;
		t->waiting_for = dep->id;
		nwait_enqueue(&dep->waiters, &nw);
		int rc = nwait_park(&nw, RT_FOREVER);
		t->waiting_for = 0;
		if (rc < 0)
			return rc;
	}
	if (t->later_lock || t->later_sem) {
		int rc = request_grants(t, t->later_lock, t->later_lock ? strlen(t->later_lock) : 0,
					t->later_write, t->later_sem,
					t->later_sem ? strlen(t->later_sem) : 0, t->later_cap);
		if (rc < 0)
			return rc;
	}
	struct req *rs[2] = { t->lockreq, t->semreq };
	for (int i = 0; i < 2; i++) {
		struct req *r = rs[i];
		if (!r || r->nw.done)
			continue;
		int rc = nwait_park(&r->nw, RT_FOREVER);
		req_unlink(r);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void task_main(void *arg)
{
	struct task *t = arg;
	int rc;

	rt_mutex_lock_nocancel(&names_lock);
	rc = wait_turn(t);
	if (rc == 0 && (t->lockreq && t->lockreq->nw.result < 0))
		rc = t->lockreq->nw.result;
	if (rc == 0 && (t->semreq && t->semreq->nw.result < 0))
		rc = t->semreq->nw.result;
	if (rc < 0 || t->killed) {
		task_set_state(t, t->killed || rc == -ECANCELED ? TS_KILLED : TS_FAILED);
		t->err = t->state == TS_FAILED ? rc : 0;
		task_finish(t);
		return;
	}
	task_set_state(t, TS_RUNNING);
	queued_drop(t);
	leak_changed();
	t->started_ns = rt_now();
	t->started_ms = unix_ms();
	if (t->wg)
		nwg_task_started(t->wg, strlen(t->wg));
	rt_mutex_unlock(&names_lock);

	if (t->func) {
		maybe_sleep_stackless(t);
		run_func(t);
	} else {
		run_exec(t);
	}

	rt_mutex_lock_nocancel(&names_lock);
	task_finish(t);
}

/* ---- spawning ------------------------------------------------------------------------------- */

/* names_lock held: requests the task's lock (lock: its name, or NULL) and
 * semaphore unit (sem, or NULL). */
static int request_grant(struct task *t, struct req **out, enum prim_kind kind,
			 const char *name, size_t len, bool write, int64_t capacity);

static int request_grants(struct task *t, const char *lock, size_t lock_len, bool write,
			  const char *sem, size_t sem_len, int64_t capacity)
{
	int rc = 0;

	if (lock)
		rc = request_grant(t, &t->lockreq, PRIM_MUTEX, lock, lock_len, write, 0);
	if (rc == 0 && sem)
		rc = request_grant(t, &t->semreq, PRIM_SEM, sem, sem_len, false, capacity);
	return rc;
}

/* A task with `after` keeps the names of its grants (the request's
 * params die with the request) to ask for them once its turn comes. */
static int save_grant_requests(struct task *t, const struct spawn_req *sr)
{
	if (sr->lock || sr->rlock) {
		const char *n = sr->lock ? sr->lock : sr->rlock;
		size_t len = sr->lock ? sr->lock_len : sr->rlock_len;
		if (!(t->later_lock = strndup(n, len)))
			return -ENOMEM;
		t->later_write = sr->lock != NULL;
	}
	if (sr->sem) {
		if (!(t->later_sem = strndup(sr->sem, sr->sem_len)))
			return -ENOMEM;
		t->later_cap = sr->sem_capacity;
	}
	return 0;
}

/* names_lock held: requests the lock or semaphore unit for the task's party. */
static int request_grant(struct task *t, struct req **out, enum prim_kind kind,
			 const char *name, size_t len, bool write, int64_t capacity)
{
	struct req *r = calloc(1, sizeof *r);
	int rc;

	if (!r)
		return -ENOMEM;
	if (!task_party(t)) {
		free(r);
		return -ENOMEM;
	}
	r->s = t->party;
	memcpy(r->name, name, len);
	r->a.name = r->name;
	r->a.name_len = len;
	r->a.write = write;
	r->a.n = 1;
	r->a.capacity = capacity;
	r->a.timeout_ms = -1;
	r->deadline = RT_FOREVER;
	rc = kind == PRIM_SEM ? nsem_acquire(r) : nmutex_lock(r);
	if (rc == 0) {
		r->nw.kind = kind;
		r->nw.done = true;
	} else if (rc == 1) {
		req_link(r);
		rc = 0;
	} else {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int task_spawn(struct session *s, struct spawn_req *sr, uint64_t *id, const char **why)
{
	struct task *t = sr->t;
	struct keyent *k = NULL;
	int rc = 0;

	*why = NULL;
	rt_mutex_lock_nocancel(&names_lock);
	if ((rc = journal_error()) < 0) {
		*why = "the task journal cannot be written (gorod's log says why)";
		goto refuse;
	}
	if (t->key) {
		k = names_get(PRIM_TASKKEY, t->key, strlen(t->key), sizeof *k, false);
		if (k) {
			rc = -EBUSY;
			*why = "a task with this key is queued or running";
			goto refuse;
		}
	}
	for (int i = 0; i < t->nafter; i++) {
		if (!task_find(t->after[i]) && t->after[i] > task_ids) {
			rc = -ENOENT;
			*why = "after: no task has that id";
			goto refuse;
		}
	}
	if (sr->sem) {
		int64_t cap = nsem_capacity(sr->sem, sr->sem_len);
		if (cap && sr->sem_capacity && cap != sr->sem_capacity) {
			rc = -EINVAL;
			*why = "sem: the semaphore has another capacity";
			goto refuse;
		}
	}
	if (nids + 1 > nids_buckets && ids_resize(nids_buckets ? nids_buckets * 2 : 1024) < 0) {
		rc = -ENOMEM;
		goto refuse;
	}
	if ((rc = quota_task_check(s, t, sr, sr->why, sizeof sr->why)) < 0) {
		*why = sr->why;
		goto refuse;
	}
	if (t->wg) {
		struct args a = { .name = t->wg, .name_len = strlen(t->wg), .delta = 1 };
		int64_t count;
		if ((rc = nwg_add(NULL, &a, &count)) < 0) {
			*why = rc == -ERANGE ? "wg: the WaitGroup counter would pass 2147483647" : NULL;
			goto refuse;
		}
		nwg_task_bound(a.name, a.name_len, t);
	}
	if (t->key) {
		k = names_get(PRIM_TASKKEY, t->key, strlen(t->key), sizeof *k, true);
		if (k)
			k->t = t;
	}
	t->id = ++task_ids;
	*id = t->id; /* t may end and be freed once names_lock is released */
	ids_insert(t); /* room was made above: cannot fail */
	sr->jseq = journal_spawned(t);
	watch_push(t);
	queued_add(t);
	rt_wg_add(&tasks_wg, 1);
	list_append(&live_head, &live_tail, t);
	nlive++;
	nlive_in[t->state]++;
	t->live = true;
	nspawned++;
	quota_task_charge(t, s);
	t->refs = 1; /* the goroutine's */
	if (t->session_scope) {
		t->scope_s = s;
		t->sprev = NULL;
		t->snext = s->tasks;
		if (s->tasks)
			s->tasks->sprev = t;
		s->tasks = t;
	}
	/* From here on a failure is the task's outcome, not the spawn's.
	 * The lock and the semaphore unit are requested now, in submission
	 * order; a task with `after` asks for them once those tasks have
	 * ended (holding a lock while it waits for a task that may need the
	 * same lock would be a deadlock nothing can see). */
	if (t->nafter) {
		rc = save_grant_requests(t, sr);
	} else {
		rc = request_grants(t, sr->lock ? sr->lock : sr->rlock,
				    sr->lock ? sr->lock_len : sr->rlock_len, sr->lock != NULL,
				    sr->sem, sr->sem_len, sr->sem_capacity);
	}
	if (rc == 0)
		rc = rt_go(task_main, t, &t->g);
	if (rc < 0) { /* ended before it began: the goroutine's part, done here */
		task_set_state(t, TS_FAILED);
		t->err = rc;
		task_finish(t);
		return 0;
	}
	rt_mutex_unlock(&names_lock);
	return 0;

refuse:
	rt_mutex_unlock(&names_lock);
	return rc;
}

/* ---- control ------------------------------------------------------------------------------------ */

int task_kill(struct task *t, int sig)
{
	if (TS_ENDED(t->state))
		return -ESRCH;
	if (!sig)
		sig = SIGTERM;
	if (t->state == TS_QUEUED) {
		t->killed = true;
		rt_cancel(t->g);
		return 0;
	}
	if (t->func) {
		if (!t->cancelled)
			cancel_func(t);
		return 0;
	}
	t->killed = true;
	t->kill_sig = sig;
	task_poke(t);
	return 0;
}

int task_pause(struct task *t, bool pause)
{
	if (TS_ENDED(t->state) || t->state == TS_QUEUED)
		return -ESRCH;
	if (t->func)
		return -EINVAL;
	if (pause == (t->state == TS_PAUSED))
		return 0;
	signal_group(t, pause ? SIGSTOP : SIGCONT);
	task_set_state(t, pause ? TS_PAUSED : TS_RUNNING);
	return 0;
}

void task_session_ended(struct session *s)
{
	/* The session is about to be freed: its tasks forget it now. */
	while (s->tasks) {
		struct task *t = s->tasks;
		s->tasks = t->snext;
		t->snext = t->sprev = NULL;
		t->scope_s = NULL;
		t->cancelled_by_scope = true;
		task_kill(t, SIGTERM);
	}
}

void tasks_stop_signal(int sig)
{
	rt_mutex_lock_nocancel(&names_lock);
	for (struct task *t = live_head; t; t = t->next)
		task_kill(t, sig);
	rt_mutex_unlock(&names_lock);
}

void tasks_stop_start(void)
{
	tasks_stop_signal(SIGKILL);
}

int tasks_stop_wait(int64_t deadline)
{
	/* The pumps of streams that left-behind processes still hold end
	 * too: cancelled (again, for any started since). */
	rt_mutex_lock_nocancel(&names_lock);
	for (struct task *t = linger_head; t; t = t->lnext)
		helpers_cancel(t);
	rt_mutex_unlock(&names_lock);
	return rt_wg_wait(&tasks_wg, deadline);
}

/* ---- ps ------------------------------------------------------------------------------------------ */

/* What a queued task waits for, into buf. */
const char *task_blocked_on(const struct task *t, char *buf, size_t len)
{
	if (t->state != TS_QUEUED)
		return NULL;
	if (t->waiting_for)
		snprintf(buf, len, "after %llu", (unsigned long long)t->waiting_for);
	else if (t->lockreq && !t->lockreq->nw.done)
		snprintf(buf, len, "%s %s", t->lockreq->a.write ? "lock" : "rlock", t->lockreq->name);
	else if (t->semreq && !t->semreq->nw.done)
		snprintf(buf, len, "sem %s", t->semreq->name);
	else
		return NULL;
	return buf;
}

static void pack_ps_entry(msgpack_packer *pk, const struct task *t, int64_t now)
{
	char buf[PROTO_MAX_NAME + 16];
	const char *blocked = task_blocked_on(t, buf, sizeof buf);
	bool pid = t->pid > 0;

	msgpack_pack_map(pk, 6 + (t->name != NULL) + pid + (blocked != NULL));
	proto_pack_kv_u64(pk, "id", t->id);
	proto_pack_kv_str(pk, "state", task_state_name(t->state));
	proto_pack_kv_str(pk, "kind", t->func ? "func" : "exec");
	if (t->name)
		proto_pack_kv_str(pk, "name", t->name);
	if (t->func) { /* one read back from the journal has its name only */
		proto_pack_kv_str(pk, "func", t->fn ? t->fn->name : t->argv ? t->argv[0] : "?");
	} else {
		size_t n = 0;
		while (t->argv[n])
			n++;
		/* A summary: ps is for people; wait and the spawner have it all. */
		size_t shown = n > PS_ARGV_MAX ? PS_ARGV_MAX : n;
		proto_pack_str(pk, "argv");
		msgpack_pack_array(pk, shown);
		for (size_t i = 0; i < shown; i++) {
			size_t len = strlen(t->argv[i]);
			proto_pack_strn(pk, t->argv[i], len > PS_ARG_MAX ? PS_ARG_MAX : len);
		}
	}
	proto_pack_kv_i64(pk, "uid", t->uid);
	if (pid)
		proto_pack_kv_i64(pk, "pid", t->pid);
	proto_pack_kv_i64(pk, "age_ms", (now - t->created_ns) / 1000000);
	if (blocked)
		proto_pack_kv_str(pk, "blocked_on", blocked);
}

/* The next task after id `after` in id order (live ones only, unless all),
 * or NULL. The live list is in id order (cur, when not NULL, is the live
 * task with id `after`: the walk goes on from it); finished tasks are
 * found by id. */
static struct task *ps_next(struct task *cur, uint64_t after, bool all)
{
	if (!all) {
		struct task *t = cur ? cur->next : live_head;
		while (t && t->id <= after)
			t = t->next;
		return t;
	}
	for (uint64_t id = after + 1; id <= task_ids; id++) {
		struct task *t = task_find(id);
		if (t)
			return t;
	}
	return NULL;
}

void task_pack_ps(msgpack_packer *pk, bool all, uint64_t after, size_t limit)
{
	msgpack_sbuffer sb;
	msgpack_packer tpk;
	int64_t now = rt_now();
	size_t n = 0;

	/* Packed aside first, to stop at the size a reply may have and then
	 * put the count in front. */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&tpk, &sb, msgpack_sbuffer_write);
	for (struct task *t = ps_next(NULL, after, all); t && n < limit && sb.size < PS_REPLY_BYTES;
	     t = ps_next(t, t->id, all)) {
		pack_ps_entry(&tpk, t, now);
		n++;
	}
	msgpack_pack_array(pk, n);
	if (sb.size)
		pk->callback(pk->data, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

void task_counts(struct task_counts *c)
{
	memset(c, 0, sizeof *c);
	c->spawned = nspawned;
	c->live = nlive;
	c->kept = nfin;
	for (int i = 0; i < TS_EXITED; i++)
		c->by_state[i] = nlive_in[i];
	c->queued = c->by_state[TS_QUEUED];
	c->running = c->by_state[TS_RUNNING];
	c->paused = c->by_state[TS_PAUSED];
	for (int i = TS_EXITED; i < TS_COUNT; i++)
		c->by_state[i] = ended_by_state[i];
}

uid_t gorod_euid;

int tasks_init(void)
{
	gorod_euid = geteuid();
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	return devnull < 0 ? -errno : 0;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int task_restore(const struct task_record *r)
{
	struct task *t = calloc(1, sizeof *t);
	size_t n = 0, bytes = 0;
	char *p;

	if (!t || (nids + 1 > nids_buckets && ids_resize(nids_buckets ? nids_buckets * 2 : 1024) < 0)) {
		free(t);
		return -ENOMEM;
	}
	while (r->argv && r->argv[n])
		bytes += strlen(r->argv[n++]) + 1;
	t->spec = malloc((n + 1) * sizeof(char *) + bytes);
	if (!t->spec) {
		free(t);
		return -ENOMEM;
	}
	t->argv = t->spec;
	p = (char *)(t->argv + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(r->argv[i]) + 1;
		t->argv[i] = memcpy(p, r->argv[i], len);
		p += len;
	}
	t->argv[n] = NULL;
	t->spec_len = (n + 1) * sizeof(char *) + bytes;
	t->id = r->id;
	t->uid = r->uid;
	t->gid = r->gid;
	t->func = r->func;
	t->name = dup_or_null(r->name);
	t->state = r->state;
	t->code = r->code;
	t->sig = r->sig;
	t->err = r->err;
	t->errmsg = dup_or_null(r->errmsg);
	if (r->result && (t->result = malloc(r->result_len))) {
		memcpy(t->result, r->result, r->result_len);
		t->result_len = r->result_len;
	}
	t->pid = r->pid;
	t->stdin_fd = -1;
	t->started_ms = r->started_ms;
	t->ended_ms = r->ended_ms;
	/* Its monotonic times, as far back as its wall-clock ones: retention
	 * by age counts from its real end. */
	int64_t now_ms = unix_ms(), now_ns = rt_now();
	t->ended_ns = now_ns - (now_ms - r->ended_ms) * 1000000;
	t->started_ns = r->started_ms ? now_ns - (now_ms - r->started_ms) * 1000000 : t->ended_ns;
	t->created_ns = t->started_ns;
	for (int i = 0; i < 2; i++) {
		outbuf_init(&t->out[i], (size_t)task_config.output_max);
		outbuf_restore(&t->out[i], r->out[i], r->out_len[i], r->out_total[i]);
	}
	if (r->id > task_ids)
		task_ids = r->id;
	ids_insert(t);
	list_append(&fin_head, &fin_tail, t);
	nfin++;
	t->accounted = t->out[0].kept + t->out[1].kept + t->result_len + t->spec_len +
		       (t->errmsg ? strlen(t->errmsg) : 0);
	fin_output += t->accounted;
	task_prune(rt_now());
	return 0;
}

void task_ids_from(uint64_t last)
{
	if (last > task_ids)
		task_ids = last;
}

void task_kept_ids(uint64_t **out, size_t *n, uint64_t *last)
{
	size_t k = 0;

	*n = nlive + nfin;
	*last = task_ids;
	*out = malloc((*n ? *n : 1) * sizeof **out);
	if (!*out)
		return;
	for (struct task *t = live_head; t && k < *n; t = t->next)
		(*out)[k++] = t->id;
	for (struct task *t = fin_head; t && k < *n; t = t->next)
		(*out)[k++] = t->id;
	*n = k;
}

bool tasks_restart_ids(void)
{
	if (live_head || fin_head || nids)
		return false;
	task_ids = 0;
	return true;
}

/* ---- waiting requests on tasks -------------------------------------------------------------------- */

void task_nwait_abandon(struct nwait *nw)
{
	struct task *t = nw->prim;

	if (nw->kind == PRIM_TASK)
		nwait_unlink(&t->waiters, nw);
	else
		nwait_unlink(&t->log_waiters, nw);
}

/* ---- what clients see ---------------------------------------------------------------------------- */

void task_pack_brief(msgpack_packer *pk, const struct task_brief *b)
{
	bool code = b->state == TS_EXITED, sig = b->sig != 0, err = b->err != 0;

	msgpack_pack_map(pk, 2 + code + sig + err);
	proto_pack_kv_u64(pk, "id", b->id);
	proto_pack_kv_str(pk, "state", task_state_name(b->state));
	if (code)
		proto_pack_kv_i64(pk, "code", b->code);
	if (sig)
		proto_pack_kv_i64(pk, "signal", b->sig);
	if (err)
		proto_pack_kv_str(pk, "error", proto_err_name(b->err));
}

void task_pack_outcome(msgpack_packer *pk, const struct task *t)
{
	bool ended = TS_ENDED(t->state);
	bool code = t->state == TS_EXITED || (ended && !t->sig && !t->func && t->started_ns &&
					       t->state != TS_FAILED && t->state != TS_LOST);
	bool sig = t->sig != 0, res = t->result != NULL, err = t->err != 0;
	bool name = t->name != NULL, pid = t->pid > 0;

	msgpack_pack_map(pk, 9 + code + sig + res + err + name + pid);
	proto_pack_kv_u64(pk, "id", t->id);
	proto_pack_kv_str(pk, "state", task_state_name(t->state));
	proto_pack_kv_str(pk, "kind", t->func ? "func" : "exec");
	if (name)
		proto_pack_kv_str(pk, "name", t->name);
	if (code)
		proto_pack_kv_i64(pk, "code", t->code);
	if (sig)
		proto_pack_kv_i64(pk, "signal", t->sig);
	if (res) { /* packed by goro_task_result: append it as it is */
		proto_pack_str(pk, "result");
		pk->callback(pk->data, t->result, t->result_len);
	}
	if (err) {
		proto_pack_str(pk, "error");
		msgpack_pack_array(pk, 2);
		proto_pack_str(pk, proto_err_name(t->err));
		proto_pack_str(pk, t->errmsg ? t->errmsg : proto_strerror(t->err));
	}
	if (pid)
		proto_pack_kv_i64(pk, "pid", t->pid);
	proto_pack_kv_i64(pk, "started_ms", t->started_ms);
	proto_pack_kv_i64(pk, "ended_ms", t->ended_ms);
	proto_pack_kv_u64(pk, "stdout_bytes", t->out[0].total);
	proto_pack_kv_u64(pk, "stderr_bytes", t->out[1].total);
	proto_pack_kv_u64(pk, "stdout_cut", outbuf_cut(&t->out[0]));
	proto_pack_kv_u64(pk, "stderr_cut", outbuf_cut(&t->out[1]));
}
