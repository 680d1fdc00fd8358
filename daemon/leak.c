/* leak.c: the leak monitor: goroutines that will never end, and why.
 *
 * A goroutine, the monitor (leak_main), looks about every 250 ms, like Go's
 * sysmon, and keeps a list of findings, each logged once when made and kept
 * while it holds. What it finds:
 *
 * Definite leaks: waits that nothing alive can end. The wait-for graph's
 * nodes are parties: a task (its goroutine, its party session, and every
 * client session whose peer process belongs to its process tree, which
 * acts for it) and a client session outside any task. Its edges go from a
 * waiting party to those that could end the wait: the holders of a mutex
 * or semaphore, the holders of a WaitGroup's count (lease holders, the
 * tasks bound to it by spawn --wg, the sessions that added to it), the
 * task waited for. As in Go's goroutine-leak profile, a party that can
 * still make progress is a root: a client outside any task (gorod cannot
 * see what else it does), a running task that is not blocked on gorod; a
 * blocked party is reached when one of its waits has a reached party that
 * could end it. A wait none of whose enders is reached is a definite leak:
 * they are all blocked on each other, or gone. A task counts as blocked
 * when its goroutine is queued (after, lock, sem), when its function waits
 * on a primitive, or when every process of its command waits either on
 * gorod (a session with a waiting request) or for its own children; that
 * way the graph never guesses, and a finding is a proof. The analysis runs
 * only when the graph changed (gen, bumped by every wait, grant and end),
 * and costs in proportion to the parties and primitives in waits, not to
 * the goroutines.
 *
 * Suspected leaks: tasks alive past their expected lifetime (expect_ms,
 * else --leak-after) that made no progress (CPU, output) since the last
 * look. A heap by deadline holds every live task, so a look touches only
 * the tasks that are due.
 *
 * Left-behind processes: an exec task whose main process has ended while
 * others of its process group still run. Hogs: func tasks whose goroutine
 * kept a worker over 100 ms (sysmon's hog events, rt_hogs_take). Lock-order
 * inversions: lockorder.c.
 *
 * All under names_lock, like the state it reads. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "task.h"

#define LEAK_PERIOD_MS 250
#define MAX_FINDINGS 4096

enum leak_kind { LK_DEFINITE, LK_SUSPECTED, LK_LEFT_BEHIND, LK_HOG, LK_LOCK_ORDER, LK_KINDS };

static const char *const kind_names[LK_KINDS] = { "definite", "suspected", "left-behind", "hog",
						  "lock-order" };

struct finding {
	uint64_t id;
	enum leak_kind kind;
	uint64_t key;          /* who it is about, per kind: its identity */
	uint64_t task, goroutine, session;
	pid_t pid;
	uid_t uid;
	char comm[32];
	int64_t born_ns;       /* the goroutine's or process's start (monotonic) */
	int64_t since_ms;      /* when it was made (Unix ms) */
	char *blocked_on, *reason;
	char *history;         /* lines separated by '\n' */
	bool seen;             /* found again in the latest pass of its kind */
	struct finding *next;
};

static struct finding *findings;
static size_t nfindings;
static uint64_t finding_ids;
static uint64_t counts[LK_KINDS];
static uint64_t leak_gen, analysed_gen;
static struct rt_gref monitor_g;
static struct rt_wg monitor_wg;

void leak_changed(void)
{
	leak_gen++;
}

/* ---- findings ------------------------------------------------------------------ */

static int64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The command name of pid, from /proc (empty when it is gone). */
static void comm_of(pid_t pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	buf[0] = '\0';
	if (pid <= 0)
		return;
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	if ((f = fopen(path, "re"))) {
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, "\n")] = '\0';
		fclose(f);
	}
}

static void mark_kind(enum leak_kind kind)
{
	for (struct finding *f = findings; f; f = f->next)
		if (f->kind == kind)
			f->seen = false;
}

static void free_finding(struct finding *f)
{
	free(f->blocked_on);
	free(f->reason);
	free(f->history);
	free(f);
}

/* Drops the findings of kind not seen in the pass that just ended. */
static void sweep_kind(enum leak_kind kind)
{
	for (struct finding **pp = &findings; *pp;) {
		struct finding *f = *pp;
		if (f->kind == kind && !f->seen) {
			*pp = f->next;
			nfindings--;
			free_finding(f);
		} else {
			pp = &f->next;
		}
	}
}

/* Logs a new finding once: to the journal with fields when gorod runs
 * under journald, else as a line on stderr. */
static void log_finding(const struct finding *f)
{
	if (getenv("JOURNAL_STREAM")) {
		sd_journal_send("MESSAGE=gorod: %s leak: %s", kind_names[f->kind], f->reason,
				"PRIORITY=4", "GORO_LEAK_KIND=%s", kind_names[f->kind],
				"GORO_LEAK_ID=%llu", (unsigned long long)f->id,
				"GORO_TASK_ID=%llu", (unsigned long long)f->task,
				"GORO_SESSION_ID=%llu", (unsigned long long)f->session,
				"GORO_PID=%d", (int)f->pid, "GORO_UID=%u", (unsigned)f->uid,
				"GORO_BLOCKED_ON=%s", f->blocked_on ? f->blocked_on : "",
				"GORO_HISTORY=%s", f->history ? f->history : "", NULL);
		return;
	}
	fprintf(stderr, "gorod: %s leak #%llu: %s\n", kind_names[f->kind],
		(unsigned long long)f->id, f->reason);
}

/* Finds the finding of kind about key, or makes one (the caller fills in
 * what is new: reason etc., when *fresh). Returns NULL when the list is
 * full. */
static struct finding *finding_get(enum leak_kind kind, uint64_t key, bool *fresh)
{
	struct finding *f;

	*fresh = false;
	for (f = findings; f; f = f->next) {
		if (f->kind == kind && f->key == key) {
			f->seen = true;
			return f;
		}
	}
	if (nfindings >= MAX_FINDINGS || !(f = calloc(1, sizeof *f)))
		return NULL;
	f->id = ++finding_ids;
	f->kind = kind;
	f->key = key;
	f->seen = true;
	f->since_ms = unix_ms();
	f->next = NULL;
	/* Appended: the list stays oldest first. */
	struct finding **pp = &findings;
	while (*pp)
		pp = &(*pp)->next;
	*pp = f;
	nfindings++;
	counts[kind]++;
	*fresh = true;
	return f;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* A growing text buffer for reasons and histories. */
struct text {
	char buf[1024];
	size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;

	if (t->len >= sizeof t->buf - 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(t->buf + t->len, sizeof t->buf - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < sizeof t->buf - t->len ? (size_t)n : sizeof t->buf - t->len - 1;
}

/* ---- the wait-for graph: definite leaks ------------------------------------------ */

/* A party of the graph: a task, or a client session outside any task. */
struct party {
	struct task *t;        /* or NULL */
	struct session *s;     /* when t is NULL */
	bool blocked;          /* waits on gorod, or on its children */
	bool reached;          /* can still make progress */
};

/* A wait: a goroutine of party `waiter` parked on something. */
struct waitrec {
	int waiter;            /* index into parties */
	enum prim_kind kind;   /* PRIM_WG, PRIM_MUTEX, PRIM_SEM, PRIM_TASK */
	void *prim;            /* the primitive, or the task waited for */
	struct session *s;     /* the session whose request it is, or NULL (a task's own) */
	uint64_t goroutine;
};

struct graph {
	struct party *p;
	size_t np, pcap;
	struct waitrec *w;
	size_t nw, wcap;
	bool oom;
};

static int party_add(struct graph *g, struct task *t, struct session *s)
{
	if (g->np == g->pcap) {
		size_t cap = g->pcap ? g->pcap * 2 : 64;
		struct party *v = realloc(g->p, cap * sizeof *v);
		if (!v) {
			g->oom = true;
			return -1;
		}
		g->p = v;
		g->pcap = cap;
	}
	g->p[g->np] = (struct party){ t, s, false, false };
	return (int)g->np++;
}

static void wait_add(struct graph *g, int waiter, enum prim_kind kind, void *prim,
		     struct session *s, uint64_t gid)
{
	if (g->nw == g->wcap) {
		size_t cap = g->wcap ? g->wcap * 2 : 64;
		struct waitrec *v = realloc(g->w, cap * sizeof *v);
		if (!v) {
			g->oom = true;
			return;
		}
		g->w = v;
		g->wcap = cap;
	}
	g->w[g->nw++] = (struct waitrec){ waiter, kind, prim, s, gid };
}

/* The graph holds only the parties that wait on something: a party that
 * waits on nothing is not blocked, so it needs no node, and the cost of a
 * pass follows the waits, not the number of tasks. The round stamps tell
 * a node made this pass from a stale index. */
#define OUTSIDE (-2) /* a live party outside the graph: it can move */
#define GONE (-1)    /* an ended party */

static uint64_t round_no;

static int task_index(struct graph *g, struct task *t, bool add)
{
	if (t->ended_ns)
		return GONE;
	if (t->leak_round == round_no)
		return t->leak_party;
	if (!add)
		return OUTSIDE;
	t->leak_round = round_no;
	return t->leak_party = party_add(g, t, NULL);
}

/* The party of session s: its task's (a party session's, or that of the
 * task its peer's process belongs to), else its own. */
static int session_index(struct graph *g, struct session *s, bool add)
{
	struct task *t = s->party ? s->party_task : session_task(s);

	if (t)
		return task_index(g, t, add);
	if (s->leak_round == round_no)
		return s->leak_party;
	if (!add)
		return OUTSIDE;
	s->leak_round = round_no;
	return s->leak_party = party_add(g, NULL, s);
}

static int party_of_session(struct graph *g, struct session *s)
{
	return session_index(g, s, false);
}

/* Adds the waits of session s (its requests not yet done), as its party's. */
static void add_session_waits(struct graph *g, struct session *s)
{
	for (struct req *r = s->reqs; r && !g->oom; r = r->next) {
		struct nwait *nw = &r->nw;
		if (nw->done || !(nw->kind == PRIM_WG || nw->kind == PRIM_MUTEX ||
				  nw->kind == PRIM_SEM || nw->kind == PRIM_TASK))
			continue;
		int i = session_index(g, s, true);
		if (i >= 0)
			wait_add(g, i, nw->kind, nw->prim, s, r->g.id);
	}
}

/* Builds the graph from the waits: the sessions' requests (clients', and
 * tasks' parties), and the queued tasks' own waits. */
static void graph_build(struct graph *g)
{
	round_no++;
	for (struct task *t = task_queued_head(); t && !g->oom; t = t->qnext) {
		struct task *dep = t->waiting_for ? task_find(t->waiting_for) : NULL;
		enum prim_kind kind = PRIM_TASK;
		void *prim = dep;
		if (!dep && t->lockreq && !t->lockreq->nw.done)
			kind = PRIM_MUTEX, prim = t->lockreq->nw.prim;
		else if (!dep && t->semreq && !t->semreq->nw.done)
			kind = PRIM_SEM, prim = t->semreq->nw.prim;
		else if (!dep)
			continue;
		int i = task_index(g, t, true);
		if (i >= 0)
			wait_add(g, i, kind, prim, NULL, t->g.id);
	}
	for (struct session *s = sessions; s && !g->oom; s = s->next)
		add_session_waits(g, s);
	for (struct session *s = session_parties(); s && !g->oom; s = s->next)
		add_session_waits(g, s);
}

/* Whether party i is blocked: nothing it does can move without one of its
 * waits ending. */
static bool party_blocked(struct graph *g, int i, size_t nwaits_of_i)
{
	struct party *p = &g->p[i];
	struct task *t = p->t;

	if (!t)
		return false; /* a client outside any task: gorod cannot see it all */
	if (t->state == TS_QUEUED)
		return nwaits_of_i > 0;
	if (t->state == TS_PAUSED || nwaits_of_i == 0)
		return false;
	if (t->func)
		return t->nkids == 0; /* its one goroutine waits */
	return task_tree_blocked(t);
}

/* Calls fn for each party that could end wait w; stops when fn returns
 * true, and returns that. Dead enders are reported with index -1 (and,
 * for a WaitGroup's adder that ended, its session id and pid in dead). */
struct dead_session {
	uint64_t id;
	pid_t pid;
};

typedef bool (*ender_fn)(struct graph *g, int party, const struct dead_session *dead, void *arg);

struct wg_adapt {
	struct graph *g;
	ender_fn fn;
	void *arg;
};

/* A live session with this id, or NULL (the sessions list is short next to
 * everything else the analysis touches). */
static struct session *live_session(uint64_t id)
{
	for (struct session *s = sessions; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static bool wg_holder(void *arg, struct session *s, struct task *t, uint64_t sid, pid_t pid)
{
	struct wg_adapt *a = arg;

	if (s)
		return a->fn(a->g, party_of_session(a->g, s), NULL, a->arg);
	if (t)
		return a->fn(a->g, task_index(a->g, t, false), NULL, a->arg);
	struct session *x = live_session(sid);
	if (x)
		return a->fn(a->g, party_of_session(a->g, x), NULL, a->arg);
	struct dead_session d = { sid, pid };
	return a->fn(a->g, -1, &d, a->arg);
}

static bool each_ender(struct graph *g, const struct waitrec *w, ender_fn fn, void *arg)
{
	switch (w->kind) {
	case PRIM_MUTEX:
	case PRIM_SEM: {
		struct grant *h = w->kind == PRIM_MUTEX ? nmutex_holders(w->prim) : nsem_holders(w->prim);
		for (; h; h = h->next)
			if (fn(g, party_of_session(g, h->s), NULL, arg))
				return true;
		return false;
	}
	case PRIM_WG: {
		struct wg_adapt a = { g, fn, arg };
		return nwg_each_holder(w->prim, wg_holder, &a);
	}
	case PRIM_TASK:
		return fn(g, task_index(g, w->prim, false), NULL, arg);
	default:
		return true; /* unknown: assume it can end (never a false positive) */
	}
}

static bool ender_reached(struct graph *g, int party, const struct dead_session *dead,
			  void *arg)
{
	return party == OUTSIDE || (party >= 0 && g->p[party].reached);
}

/* Marks what can make progress: the unblocked parties, then, until nothing
 * changes, each blocked party one of whose waits a reached party can end. */
static void graph_reach(struct graph *g)
{
	size_t *nwaits = calloc(g->np ? g->np : 1, sizeof *nwaits);
	bool changed = true;

	if (!nwaits) {
		g->oom = true;
		return;
	}
	for (size_t k = 0; k < g->nw; k++)
		nwaits[g->w[k].waiter]++;
	for (size_t i = 0; i < g->np; i++) {
		g->p[i].blocked = party_blocked(g, (int)i, nwaits[i]);
		g->p[i].reached = !g->p[i].blocked;
	}
	free(nwaits);
	while (changed) {
		changed = false;
		for (size_t k = 0; k < g->nw; k++) {
			struct waitrec *w = &g->w[k];
			if (g->p[w->waiter].reached)
				continue;
			if (each_ender(g, w, ender_reached, NULL)) {
				g->p[w->waiter].reached = true;
				changed = true;
			}
		}
	}
}

static void describe_party(struct text *x, struct graph *g, int i)
{
	struct party *p = &g->p[i];
	char comm[32];

	if (p->t) {
		text_add(x, "task %llu", (unsigned long long)p->t->id);
		return;
	}
	comm_of(p->s->pid, comm, sizeof comm);
	text_add(x, "session %llu (pid %d%s%s)", (unsigned long long)p->s->id, (int)p->s->pid,
		 comm[0] ? ", " : "", comm);
}

static void describe_wait(struct text *x, const struct waitrec *w)
{
	switch (w->kind) {
	case PRIM_WG:
		text_add(x, "WaitGroup %s", names_name(w->prim));
		break;
	case PRIM_MUTEX:
		text_add(x, "lock %s", names_name(w->prim));
		break;
	case PRIM_SEM:
		text_add(x, "semaphore %s", names_name(w->prim));
		break;
	case PRIM_TASK:
		text_add(x, "task %llu", (unsigned long long)((struct task *)w->prim)->id);
		break;
	default:
		text_add(x, "something");
	}
}

struct enders {
	struct graph *g;
	int self;
	int n, nself, ndead;
	int live[16];          /* the enders that are parties, for the history */
	int nlive;
	struct text list;      /* the enders, described */
	struct text *history;
};

static bool ender_collect(struct graph *g, int party, const struct dead_session *dead,
			  void *arg)
{
	struct enders *e = arg;

	e->n++;
	if (e->n > 1 && e->list.len)
		text_add(&e->list, ", ");
	if (party == OUTSIDE) {
		text_add(&e->list, "a party that runs");
		return false;
	}
	if (party < 0) {
		e->ndead++;
		if (dead)
			text_add(&e->list, "session %llu (pid %d), which ended without a lease",
				 (unsigned long long)dead->id, (int)dead->pid);
		else
			text_add(&e->list, "a party that ended");
		return false;
	}
	if (party == e->self)
		e->nself++;
	else if (e->nlive < 16)
		e->live[e->nlive++] = party;
	describe_party(&e->list, g, party);
	return false;
}

/* The text of a definite finding about wait w. */
static void explain(struct graph *g, const struct waitrec *w, struct text *reason,
		    struct text *history, struct text *blocked)
{
	struct enders e = { .g = g, .self = w->waiter, .history = history };

	describe_wait(blocked, w);
	each_ender(g, w, ender_collect, &e);
	describe_party(reason, g, w->waiter);
	text_add(reason, " waits on %s, ", blocked->buf);
	if (e.n == 0)
		text_add(reason, "which nobody alive holds or could release: it never will end");
	else if (e.n == e.nself)
		text_add(reason, "which only it can release: it never will");
	else if (e.n == e.ndead)
		text_add(reason, "whose holders all ended without releasing it (%s): it never will end",
			 e.list.buf);
	else
		text_add(reason,
			 "which only %s could release, and they are blocked in turn or gone: a "
			 "deadlock, it never will end",
			 e.list.buf);
	/* The history: what holds it, and what those holders wait on. */
	for (size_t k = 0; k < g->nw && history->len < 800; k++) {
		const struct waitrec *o = &g->w[k];
		bool ender = false;
		for (int i = 0; i < e.nlive; i++)
			ender |= e.live[i] == o->waiter;
		if (!ender)
			continue;
		describe_party(history, g, o->waiter);
		text_add(history, " waits on ");
		describe_wait(history, o);
		text_add(history, "\n");
	}
	if (w->kind == PRIM_WG) {
		char buf[512];
		nwg_describe(w->prim, buf, sizeof buf);
		text_add(history, "%s\n", buf);
	}
}

/* One pass of the definite analysis (when the graph changed). */
static void find_definite(void)
{
	struct graph g = { 0 };

	graph_build(&g);
	if (!g.oom)
		graph_reach(&g);
	if (g.oom) { /* no analysis, so no change: keep what was found */
		free(g.p);
		free(g.w);
		return;
	}
	mark_kind(LK_DEFINITE);
	for (size_t k = 0; k < g.nw; k++) {
		struct waitrec *w = &g.w[k];
		struct party *p = &g.p[w->waiter];
		if (p->reached)
			continue;
		/* One finding per blocked party and what it waits on. */
		uint64_t key = p->t ? p->t->id : (1ULL << 63) | p->s->id;
		key = key * 31 + (uint64_t)(uintptr_t)w->prim;
		bool fresh;
		struct finding *f = finding_get(LK_DEFINITE, key, &fresh);
		if (!f || !fresh)
			continue;
		struct text reason = { 0 }, history = { 0 }, blocked = { 0 };
		explain(&g, w, &reason, &history, &blocked);
		f->task = p->t ? p->t->id : 0;
		f->session = w->s ? w->s->id : p->s ? p->s->id : 0;
		f->goroutine = w->goroutine;
		f->pid = p->t ? (p->t->pid ? p->t->pid : p->t->client_pid) : p->s->pid;
		f->uid = p->t ? p->t->uid : p->s->uid;
		comm_of(f->pid, f->comm, sizeof f->comm);
		f->born_ns = p->t ? p->t->created_ns : p->s->started_ns;
		f->reason = strdup(reason.buf);
		f->history = history.len ? strdup(history.buf) : NULL;
		f->blocked_on = strdup(blocked.buf);
		log_finding(f);
		if (p->t && p->t->on_leak_kill)
			task_kill_leaked(p->t);
	}
	sweep_kind(LK_DEFINITE);
	free(g.p);
	free(g.w);
}

/* ---- suspected, left behind, hogs ----------------------------------------------------- */

/* Looks at the tasks due (expected lifetime passed): one that made no
 * progress since its last look is a suspected leak until it does; each is
 * looked at again a second later. Only due tasks are touched. */
#define SUSPECT_RELOOK_NS 1000000000LL

static void find_suspected(int64_t now)
{
	struct task *due[256];
	size_t n = task_watch_due(now, due, sizeof due / sizeof due[0]);

	for (size_t i = 0; i < n; i++) {
		struct task *t = due[i];
		bool fresh, moved = task_progressed(t);
		task_watch_again(t, now + SUSPECT_RELOOK_NS);
		if (moved) {
			for (struct finding *f = findings; f; f = f->next)
				if (f->kind == LK_SUSPECTED && f->key == t->id)
					f->seen = false;
			continue;
		}
		struct finding *f = finding_get(LK_SUSPECTED, t->id, &fresh);
		if (!f || !fresh)
			continue;
		int64_t age = (now - t->created_ns) / 1000000;
		int64_t expect = t->expect_ms >= 0 ? t->expect_ms : task_config.leak_after_ms;
		char blocked[PROTO_MAX_NAME + 32];
		const char *b = task_blocked_on(t, blocked, sizeof blocked);
		f->task = t->id;
		f->goroutine = t->g.id;
		f->pid = t->pid ? t->pid : t->client_pid;
		f->uid = t->uid;
		comm_of(f->pid, f->comm, sizeof f->comm);
		f->born_ns = t->created_ns;
		f->blocked_on = b ? strdup(b) : NULL;
		if (b)
			f->reason = xprintf("task %llu has lived %lld ms, past its expected %lld ms, blocked "
					    "on %s",
					    (unsigned long long)t->id, (long long)age, (long long)expect, b);
		else
			f->reason = xprintf("task %llu has lived %lld ms, past its expected %lld ms, and made "
					    "no progress (no CPU time, no output) in the last second",
					    (unsigned long long)t->id, (long long)age, (long long)expect);
		log_finding(f);
	}
	/* A finding lasts while its task lives without progress. */
	for (struct finding *f = findings; f; f = f->next) {
		if (f->kind != LK_SUSPECTED || !f->seen)
			continue;
		struct task *t = task_find(f->task);
		f->seen = t && !t->ended_ns;
	}
	sweep_kind(LK_SUSPECTED);
}

static void find_left_behind(void)
{
	mark_kind(LK_LEFT_BEHIND);
	for (struct task *t = task_behind_first(), *next; t; t = next) {
		next = t->bnext;
		if (kill(-t->pid, 0) < 0) { /* the group is gone: nothing left behind */
			task_behind_drop(t);
			continue;
		}
		bool fresh;
		struct finding *f = finding_get(LK_LEFT_BEHIND, t->id, &fresh);
		if (!f || !fresh)
			continue;
		char pids[256];
		int np = group_pids(t->pid, pids, sizeof pids);
		f->task = t->id;
		f->pid = t->pid;
		f->uid = t->uid;
		f->born_ns = t->created_ns;
		f->reason = xprintf("task %llu's main process (pid %d) ended, but %d process%s of its "
				    "group still run%s (pids %s): kill them, or wait for them in the task",
				    (unsigned long long)t->id, (int)t->pid, np, np == 1 ? "" : "es",
				    np == 1 ? "s" : "", pids);
		log_finding(f);
	}
	sweep_kind(LK_LEFT_BEHIND);
}

static void find_hogs(void)
{
	struct rt_hog h[64];
	size_t n = rt_hogs_take(h, sizeof h / sizeof h[0]);

	for (size_t i = 0; i < n; i++) {
		struct task *t = task_of_goroutine(h[i].id);
		bool fresh;
		if (!t)
			continue;
		struct finding *f = finding_get(LK_HOG, t->id, &fresh);
		if (!f || !fresh)
			continue;
		f->task = t->id;
		f->goroutine = h[i].id;
		f->pid = t->client_pid;
		f->uid = t->uid;
		comm_of(f->pid, f->comm, sizeof f->comm);
		f->born_ns = t->created_ns;
		f->reason = xprintf("task %llu's function %s kept a worker thread for %lld ms without "
				    "yielding (over 100 ms): other goroutines waited; call goro_yield() in "
				    "long loops",
				    (unsigned long long)t->id, t->fn ? t->fn->name : "?",
				    (long long)(h[i].held_ns / 1000000));
		log_finding(f);
	}
	/* A hog finding stays while its task lives. */
	for (struct finding *f = findings; f; f = f->next)
		if (f->kind == LK_HOG)
			f->seen = task_find(f->task) && !task_find(f->task)->ended_ns;
	sweep_kind(LK_HOG);
}

void leak_lock_order(const char *a, const char *b, const char *first, const char *second)
{
	uint64_t key = 1469598103934665603ULL;
	bool fresh;

	for (const char *p = a; *p; p++)
		key = (key ^ (unsigned char)*p) * 1099511628211ULL;
	key ^= 0x5bd1e995;
	for (const char *p = b; *p; p++)
		key = (key ^ (unsigned char)*p) * 1099511628211ULL;
	struct finding *f = finding_get(LK_LOCK_ORDER, key, &fresh);
	if (!f || !fresh)
		return;
	f->born_ns = rt_now();
	f->reason = xprintf("locks %s and %s are taken in both orders (%s; %s): two such holders at "
			    "once would deadlock; take them in one order everywhere",
			    a, b, first, second);
	f->history = xprintf("%s\n%s", first, second);
	log_finding(f);
}

/* ---- the monitor ------------------------------------------------------------------------- */

static void leak_main(void *unused)
{
	while (rt_sleep(rt_deadline_ms(LEAK_PERIOD_MS)) == 0) {
		int64_t now = rt_now();
		rt_mutex_lock_nocancel(&names_lock);
		if (leak_gen != analysed_gen) {
			analysed_gen = leak_gen;
			find_definite();
		}
		find_suspected(now);
		find_left_behind();
		find_hogs();
		rt_mutex_unlock(&names_lock);
	}
	rt_wg_done(&monitor_wg);
}

int leak_start(void)
{
	rt_wg_add(&monitor_wg, 1);
	return rt_go(leak_main, NULL, &monitor_g);
}

void leak_stop(void)
{
	rt_cancel(monitor_g);
	rt_wg_wait(&monitor_wg, RT_FOREVER);
	while (findings) {
		struct finding *f = findings;
		findings = f->next;
		free_finding(f);
	}
	nfindings = 0;
}

/* ---- what clients see ---------------------------------------------------------------------- */

static void pack_finding(msgpack_packer *pk, const struct finding *f, int64_t now)
{
	int n = 7 + !!f->task + !!f->goroutine + !!f->session + !!f->blocked_on;

	msgpack_pack_map(pk, n);
	proto_pack_kv_u64(pk, "id", f->id);
	proto_pack_kv_str(pk, "kind", kind_names[f->kind]);
	proto_pack_kv_str(pk, "reason", f->reason ? f->reason : "");
	proto_pack_kv_i64(pk, "age_ms", (now - f->born_ns) / 1000000);
	proto_pack_kv_i64(pk, "since_ms", f->since_ms);
	if (f->task)
		proto_pack_kv_u64(pk, "task", f->task);
	if (f->goroutine)
		proto_pack_kv_u64(pk, "goroutine", f->goroutine);
	if (f->session)
		proto_pack_kv_u64(pk, "session", f->session);
	if (f->blocked_on)
		proto_pack_kv_str(pk, "blocked_on", f->blocked_on);
	proto_pack_str(pk, "owner");
	msgpack_pack_map(pk, 3);
	proto_pack_kv_i64(pk, "pid", f->pid);
	proto_pack_kv_i64(pk, "uid", f->uid);
	proto_pack_kv_str(pk, "comm", f->comm);
	proto_pack_str(pk, "history");
	size_t lines = 0;
	for (const char *p = f->history; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : "")
		lines++;
	msgpack_pack_array(pk, lines);
	for (const char *p = f->history; p && *p;) {
		const char *e = strchrnul(p, '\n');
		proto_pack_strn(pk, p, (size_t)(e - p));
		p = *e ? e + 1 : e;
	}
}

/* The reply lists the oldest findings that fit in about LEAKS_REPLY_BYTES
 * (a reply must fit in a message); stats counts them all. */
#define LEAKS_REPLY_BYTES (768 * 1024)

static void pack_leaks(msgpack_packer *pk, void *unused)
{
	msgpack_sbuffer sb;
	msgpack_packer tpk;
	int64_t now = rt_now();
	size_t n = 0;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&tpk, &sb, msgpack_sbuffer_write);
	rt_mutex_lock_nocancel(&names_lock);
	for (struct finding *f = findings; f && sb.size < LEAKS_REPLY_BYTES; f = f->next, n++)
		pack_finding(&tpk, f, now);
	rt_mutex_unlock(&names_lock);
	msgpack_pack_array(pk, n);
	if (sb.size)
		pk->callback(pk->data, sb.data, sb.size);
	msgpack_sbuffer_destroy(&sb);
}

void rpc_leaks(struct session *s, const struct proto_msg *m)
{
	if (m->params.via.array.size != 0) {
		reply_err(s, m, -EINVAL, "leaks takes no params");
		return;
	}
	session_reply(s, m->msgid, 0, NULL, pack_leaks, NULL, false);
}

size_t leak_count(void)
{
	size_t n = 0;

	for (struct finding *f = findings; f; f = f->next)
		n++;
	return n;
}

void leak_pack_counts(msgpack_packer *pk)
{
	size_t now[LK_KINDS] = { 0 };

	for (struct finding *f = findings; f; f = f->next)
		now[f->kind]++;
	msgpack_pack_map(pk, LK_KINDS);
	proto_pack_kv_u64(pk, "definite", now[LK_DEFINITE]);
	proto_pack_kv_u64(pk, "suspected", now[LK_SUSPECTED]);
	proto_pack_kv_u64(pk, "left_behind", now[LK_LEFT_BEHIND]);
	proto_pack_kv_u64(pk, "hog", now[LK_HOG]);
	proto_pack_kv_u64(pk, "lock_order", now[LK_LOCK_ORDER]);
}

void leak_counts(struct leak_counts *now, struct leak_counts *found)
{
	uint64_t n[LK_KINDS] = { 0 };

	for (struct finding *f = findings; f; f = f->next)
		n[f->kind]++;
	*now = (struct leak_counts){ n[LK_DEFINITE], n[LK_SUSPECTED], n[LK_LEFT_BEHIND],
				     n[LK_HOG], n[LK_LOCK_ORDER] };
	*found = (struct leak_counts){ counts[LK_DEFINITE], counts[LK_SUSPECTED],
				       counts[LK_LEFT_BEHIND], counts[LK_HOG],
				       counts[LK_LOCK_ORDER] };
}
