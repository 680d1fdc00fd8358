/* soak.c: gorod under load with faults, for a bounded time (issue 7).
 *
 * SOAK_CLIENTS client processes (default 200) do random operations for
 * SOAK_SECONDS (default 60): write and read locks, waiting for ever, with
 * a timeout, or not at all (try); semaphores likewise; WaitGroup add (with
 * and without a lease), done, wait and status; spawns of func tasks (sleep,
 * noop, echo, spin) and exec tasks (/bin/true, /bin/sleep 0.0N,
 * sh -c 'exit N', a program that does not exist), some bound to a
 * WaitGroup, a lock or a semaphore, some with a timeout, some scoped to
 * the session; waits on them and kills of them. Between operations a
 * client thinks a random 0..SOAK_THINK_MS ms (the load's shape). Meanwhile
 * the chaos SIGKILLs SOAK_KILL_PERCENT percent of the clients (default 10:
 * 20 of 200 over the run) at random moments, half of them picked among the
 * clients that hold a write lock right then, so that owner death is
 * exercised, and starts a replacement in each one's place. The observer
 * (this process) checks the invariants throughout and at the end, and
 * prints the operation counts and one TAP line per invariant.
 *
 * Before that run, a warm-up of the same load without kills
 * (SOAK_WARMUP_MS, default a tenth of the run, at least 2 s) fills gorod's
 * pools; the memory baseline is taken after it (see "Memory" below).
 * Other knobs: SOAK_SEED (the run's choices; printed, so a run can be
 * repeated as far as timing allows), SOAK_RELEASE_MS (the bound on owner
 * death and on a dead session's end: 5 s, 15 s under a sanitizer).
 *
 * How each invariant is seen (clients never print TAP: they count in
 * shared memory, mmap'd MAP_SHARED before the forks, and the observer
 * reads it):
 *
 * - Locks. A client marks each grant it holds in shared memory, one word
 *   per (lock, client slot): token << 1 | write, set right after the grant,
 *   cleared right before the unlock. Right after marking, it scans the
 *   lock's other slots: a writer must see no other mark, a reader no
 *   writer's. That check is exact, not statistical: a mark seen means its
 *   client was granted and has not yet sent its unlock, and a mark cleared
 *   before an unlock that led (through gorod) to this grant is seen
 *   cleared. The observer checks every 20 ms too, from two snapshots of
 *   the marks: a mark with the same token in both was held all the time
 *   between the two, so the marks common to both were held at one moment.
 *   Semaphores the same way (token << 8 | units; the units held at one
 *   moment are at most the capacity), the client's check also from two
 *   snapshots, since a sum is not a pairwise property.
 *
 * - A victim is stopped (SIGSTOP, and waitpid until it is) before it is
 *   killed. While it is stopped its marks cannot change and its session
 *   still holds what it holds, so the observer can read them, compare
 *   them with gorod's own view (stats: the session's `held`, within what
 *   its requests in flight may add), clear them, and only then SIGKILL it:
 *   the next holder's check never sees a dead client's mark.
 *
 * - Owner death. A victim that held a lock for writing makes a *death*
 *   record (lock, its grant's token, the kill's time). Each client that is
 *   granted that lock with a later token lowers the record's "first grant
 *   after it" (token, owner_died, time; one atomic word), so that at the
 *   end the first grant after each death is known: it must have said
 *   owner_died, within SOAK_RELEASE_MS of the kill. And owner_died must
 *   never come without a death before it. Some cases cannot be decided and
 *   are counted apart (inconclusive): a victim stopped with a lock request
 *   in flight may have been granted the next grant and died with it
 *   unrecorded. Task locks use other names, so a killed task's owner death
 *   does not mix in. At the end the observer takes every lock itself, which
 *   settles the deaths no client came after.
 *
 * - WaitGroups. Each client has a private group (soak.wp.SLOT.GEN) that
 *   only it touches, so every answer is known in advance: the count after
 *   an add or a done, ENEGATIVE exactly when done finds 0, wait and status.
 *   Its state (count, leased part, the request in flight) is one atomic
 *   word, so the observer knows a victim's group to within that request
 *   and checks at the end what gorod made of it: the leased part taken
 *   off, the group lost when there was one. Shared groups (soak.ws.N) may
 *   meet ENEGATIVE at any time; every count any answer shows must be >= 0.
 *   Groups bound to tasks (spawn wg, soak.tw.N) are back at 0 at the end.
 *
 * - Tasks. A client records each acknowledged spawn id in shared memory
 *   before its next operation, and what a wait told it. At the end the
 *   observer waits on every id gorod ever gave (ids are dense, 1..stats
 *   tasks.spawned; --keep-tasks is large, so every outcome is kept): each
 *   must be in a terminal state, no id missing, no id recorded twice; a
 *   client's earlier wait saw the same state (exactly one outcome); the
 *   states counted match stats tasks.ended; a kill that gorod acknowledged
 *   ended in `killed` (or `timeout`, when the task's own timeout came
 *   first); ids acknowledged but not recorded are at most one per kill.
 *
 * - The end. Nothing held (the observer's session holds nothing, no
 *   mutex, semaphore or waiter left), gorod's goroutines back to the count
 *   measured at the start with only the observer connected (polled from
 *   stats with a deadline), and memory.
 *
 * - Memory. The baseline is gorod's RSS after the warm-up: gorod keeps
 *   what it recycles (goroutine records, stacks, session buffers, malloc's
 *   arenas), so a baseline taken cold would count that once-only growth
 *   as a leak; after a warm-up of the same load with the same number of
 *   clients those pools are at the size this load needs. Both measures are
 *   taken in the same quiet state: no client, no task running, goroutines
 *   back to the start's count, and retention emptied (--keep-tasks, which
 *   is large so that every outcome can be checked, is lowered to 1 by a
 *   SIGHUP reload, then raised again after the baseline): kept outcomes
 *   are state by configuration, not a leak, and the RSS with them is
 *   printed too. What stays is what a leak would show. The observer
 *   prints how many bytes per operation a leak must exceed to break 10%.
 *   Under a sanitizer RSS says nothing (shadow memory, quarantine): skipped.
 *   gorod gives back the heap that pruning frees (malloc_trim after a
 *   large prune and at its sweeps), so the RSS is read again until it is
 *   down, for at most END_MS; both measures wait for its stack scavenger
 *   (rss_at_rest). Unreachable leaks are caught by the ASan
 *   build (LeakSanitizer at gorod's exit fails harness_stop). gorod runs
 *   without glibc's per-thread malloc cache, which no call can empty
 *   (see soak_malloc_env).
 *
 * No wait here is a sleep standing in for an event: the observer waits for
 * replies, for children with pidfds, for gorod's READY=1 after a reload,
 * and polls stats (with a deadline) only for what gorod has no event for.
 * The only sleeps are the clients' think times and the observer's tick. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "soak.h"
#include "tap.h"

struct shared *sh;
struct slot *slots;
_Atomic uint64_t *lockmark;
_Atomic uint64_t *semmark;
struct task_rec *trec;
int nslots;
int think_max;
struct harness h;

static void *shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bail_out("mmap %zu bytes: %s", size, strerror(errno));
	return p;
}

/* ---- owner death --------------------------------------------------------------------- */

/* Observer: records a death on lock l (definite: the victim held it for
 * writing with token; else it may have). The latest death before it, if
 * nobody was granted the lock since, is left undecidable when the victim
 * may have been that grant, unrecorded. */
static void death_add(int l, uint64_t token, bool definite, int64_t kill_ms)
{
	int n = atomic_load(&sh->ndeaths);
	struct death *dd;

	if (n >= MAX_DEATHS) {
		soak_fail("more than %d deaths: not recorded", MAX_DEATHS);
		return;
	}
	dd = &sh->deaths[n];
	dd->lock = l;
	dd->definite = definite;
	dd->token = token;
	dd->kill_ms = kill_ms;
	atomic_store(&dd->next, NEXT_NONE);
	atomic_store(&sh->ndeaths, n + 1);
	atomic_store(&sh->pending_death[l], n + 1); /* published last */
}

/* Observer: a victim had a lock request on l in flight: it may have been
 * granted the first grant after the latest death and died unrecorded. */
static void death_unsettle(int l)
{
	int d = atomic_load(&sh->pending_death[l]);

	if (d && atomic_load(&sh->deaths[d - 1].next) == NEXT_NONE)
		atomic_store(&sh->deaths[d - 1].inconclusive, 1);
}

/* ---- the observer: clients and chaos ------------------------------------------------- */

static goro_client *obs;
static uint64_t obs_session;
static pid_t *pids;   /* [nslots] */
static int *gens;     /* [nslots] */
static uint64_t seed, orng;

static int orand(int n)
{
	orng ^= orng << 13;
	orng ^= orng >> 7;
	orng ^= orng << 17;
	return (int)(orng % (uint64_t)n);
}

/* A victim's private WaitGroup, as it was when it was killed. */
struct dead_wg {
	char name[64];
	uint64_t state;
};

/* A kill: when, and when gorod's stats stopped listing its session. */
struct kill_rec {
	uint64_t session;
	int64_t kill_ms, gone_ms;
};

static struct dead_wg *dead_wgs;
static struct kill_rec *kills;
static int ndead_wgs, nkills, kills_cap;

/* What the observer counts itself. */
static struct {
	long scans, two_writers, writer_readers, sem_over;
	int max_readers;
	long view_checked, view_bad, view_unconnected;
	long clients_started, client_bad_exits;
	long victims_write, deaths_maybe;
	long wg_status_seen, wg_status_negative;
	long max_rss_kb, max_goroutines;
} ob;

static void start_client(int s)
{
	pid_t pid;
	int gen = ++gens[s];

	atomic_store(&slots[s].session, 0);
	atomic_store(&slots[s].pending_lock, 0);
	atomic_store(&slots[s].pending_sem, 0);
	atomic_store(&slots[s].releasing, 0);
	atomic_store(&slots[s].deferred, 0);
	for (int l = 0; l < NLOCKS; l++)
		atomic_store(&slots[s].deferred_w[l], 0);
	atomic_store(&slots[s].wg, 0);
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		close(goro_fd(obs)); /* the observer's connection is not this process's */
		if (h.notify > STDERR_FILENO)
			close(h.notify);
		_exit(soak_client_main(s, gen, seed));
	}
	pids[s] = pid;
	ob.clients_started++;
}

/* Clears slot s's marks (its client is stopped or gone); returns how many
 * there were. */
static int clear_marks(int s)
{
	int n = 0;

	for (int l = 0; l < NLOCKS; l++)
		if (atomic_exchange(lock_mark(l, s), 0))
			n++;
	for (int k = 0; k < NSEMS; k++)
		if (atomic_exchange(sem_mark(k, s), 0))
			n++;
	return n;
}

/* The `held` of session sid in a stats JSON text. 0, or -ENOENT when the
 * session is not listed. */
static int session_held(const char *json, uint64_t sid, long long *held)
{
	const char *s = strstr(json, "\"sessions\":["), *e, *p;
	char pat[64];

	if (!s || !(e = harness_json_end(s + strlen("\"sessions\":"))))
		return -ENOENT;
	snprintf(pat, sizeof pat, "{\"id\":%" PRIu64 ",", sid);
	p = strstr(s, pat);
	if (!p || p > e)
		return -ENOENT;
	return harness_json_int(p, "held", held);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* Waits at most timeout_ms for child pid to stop (or end): its status in
 * *st. A stop has no pidfd event: waitpid(WUNTRACED) waits, and an alarm
 * cuts it short. Returns 0 or -ETIMEDOUT. */
static int wait_stopped(pid_t pid, int *st, int timeout_ms)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct itimerval it = { .it_value = { timeout_ms / 1000, timeout_ms % 1000 * 1000 } };
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	pid_t r;

	sigaction(SIGALRM, &sa, &old); /* no SA_RESTART: the alarm interrupts */
	setitimer(ITIMER_REAL, &it, NULL);
	r = waitpid(pid, st, WUNTRACED);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	return r == pid ? 0 : -ETIMEDOUT;
}

/* Stops the client in slot s, settles what it held, compares that with
 * gorod's view, kills it and starts a replacement. */
static void chaos_kill(int s)
{
	struct slot *sl = &slots[s];
	pid_t pid = pids[s];
	int st = 0, marks = 0, slack, pl;
	bool has_write = false, marked[NLOCKS] = { false };
	uint64_t sid;
	int64_t ms;
	char *json = NULL;

	kill(pid, SIGSTOP);
	if (wait_stopped(pid, &st, 10000) < 0)
		bail_out("chaos: client pid %d did not stop in 10 s", (int)pid);
	if (!WIFSTOPPED(st)) {
		ob.client_bad_exits++;
		diag("chaos: client %d (pid %d) had already exited (status %#x)", s, (int)pid, st);
		clear_marks(s);
		start_client(s);
		return;
	}
	ms = since_start();
	for (int l = 0; l < NLOCKS; l++)
		if (atomic_load(lock_mark(l, s)))
			marked[l] = true;
	/* A lock request in flight may have been granted (unrecorded): the
	 * latest death on that lock may not know its first grant after. */
	pl = atomic_load(&sl->pending_lock);
	if (pl && marked[(pl - 1) & 255])
		pl = 0; /* answered and marked, not cleared yet */
	if (pl)
		death_unsettle((pl - 1) & 255);
	/* Deaths it may have been: a write request in flight, a deferred
	 * unlock of a write grant not answered (unless the lock was granted to
	 * it again since, so the unlock was handled). Then the sure ones, its
	 * write marks, last, so that each is its lock's latest death. */
	for (int l = 0; l < NLOCKS; l++) {
		uint64_t t = atomic_load(&sl->deferred_w[l]);

		if (t && !marked[l]) {
			death_add(l, t, false, ms);
			ob.deaths_maybe++;
		}
	}
	if (pl & 256) {
		death_add((pl - 1) & 255, atomic_load(&sh->max_token[(pl - 1) & 255]), false, ms);
		ob.deaths_maybe++;
	}
	for (int l = 0; l < NLOCKS; l++) {
		uint64_t v = atomic_load(lock_mark(l, s));

		if (!v)
			continue;
		marks++;
		if (v & 1) {
			has_write = true;
			death_add(l, v >> 1, true, ms);
		}
	}
	for (int k = 0; k < NSEMS; k++)
		if (atomic_load(sem_mark(k, s)))
			marks++;
	if (has_write)
		ob.victims_write++;
	slack = (atomic_load(&sl->pending_lock) ? 1 : 0) + (atomic_load(&sl->pending_sem) ? 1 : 0) +
		atomic_load(&sl->releasing) + atomic_load(&sl->deferred);
	/* gorod's view of what its session holds. */
	sid = atomic_load(&sl->session);
	if (!sid) {
		ob.view_unconnected++;
	} else if (goro_stats_json(obs, &json) == 0) {
		long long held = -1;

		if (session_held(json, sid, &held) < 0 || held < marks || held > marks + slack) {
			ob.view_bad++;
			soak_fail("chaos: client %d (session %" PRIu64 "): gorod says it holds %lld "
				  "grants; its marks say %d, with %d more in flight", s, sid, held, marks,
				  slack);
		}
		ob.view_checked++;
		free(json);
	} else {
		bail_out("stats: %s", goro_last_error(obs));
	}
	clear_marks(s);
	if (ndead_wgs < kills_cap) {
		snprintf(dead_wgs[ndead_wgs].name, sizeof dead_wgs[0].name, "soak.wp.%d.%d", s,
			 gens[s]);
		dead_wgs[ndead_wgs++].state = atomic_load(&sl->wg);
	}
	kill(pid, SIGKILL);
	if (harness_wait_pid(pid, 10000, NULL) < 0)
		bail_out("client pid %d did not die of SIGKILL", (int)pid);
	if (nkills < kills_cap)
		kills[nkills++] = (struct kill_rec){ sid, since_start(), 0 };
	start_client(s);
}

/* A victim: half the time one that holds a write lock now, if any. */
static int pick_victim(void)
{
	if (orand(2) == 0) {
		int *w = calloc((size_t)nslots, sizeof *w), n = 0, s;

		for (s = 0; s < nslots && w; s++)
			for (int l = 0; l < NLOCKS; l++)
				if (atomic_load(lock_mark(l, s)) & 1) {
					w[n++] = s;
					break;
				}
		s = n ? w[orand(n)] : -1;
		free(w);
		if (s >= 0)
			return s;
	}
	return orand(nslots);
}

/* The observer's look at the marks: those in two snapshots in a row were
 * held at one moment. */
static void observer_scan(void)
{
	static uint64_t *a, *b;

	if (!a) {
		a = calloc((size_t)nslots, sizeof *a);
		b = calloc((size_t)nslots, sizeof *b);
		if (!a || !b)
			bail_out("out of memory");
	}
	for (int l = 0; l < NLOCKS; l++) {
		int w = 0, r = 0;

		for (int s = 0; s < nslots; s++)
			a[s] = atomic_load(lock_mark(l, s));
		for (int s = 0; s < nslots; s++)
			b[s] = atomic_load(lock_mark(l, s));
		for (int s = 0; s < nslots; s++)
			if (a[s] && a[s] == b[s] && (a[s] & 1))
				w++;
			else if (a[s] && a[s] == b[s])
				r++;
		if (w > 1 && ob.two_writers++ == 0)
			soak_fail("observer: soak.m.%d held by %d writers at once", l, w);
		if (w && r && ob.writer_readers++ == 0)
			soak_fail("observer: soak.m.%d held by a writer and %d readers at once", l, r);
		if (r > ob.max_readers)
			ob.max_readers = r;
	}
	for (int k = 0; k < NSEMS; k++) {
		long units = soak_sem_units(k, a, b);

		if (units > sem_cap[k] && ob.sem_over++ == 0)
			soak_fail("observer: soak.s.%d: %ld units held at once (capacity %d)", k, units,
				  sem_cap[k]);
	}
	ob.scans++;
}

/* The observer's look at gorod: sessions of killed clients gone, memory,
 * goroutines, the shared WaitGroups' counts. Returns whether a killed
 * session is still listed. */
static bool stats_poll(void)
{
	char *json = NULL;
	bool pending = false;
	long long v;

	if (goro_stats_json(obs, &json) < 0)
		bail_out("stats: %s", goro_last_error(obs));
	for (int i = 0; i < nkills; i++) {
		long long held;

		if (kills[i].gone_ms || !kills[i].session)
			continue;
		if (session_held(json, kills[i].session, &held) < 0)
			kills[i].gone_ms = since_start();
		else
			pending = true;
	}
	if (harness_json_int(json, "rss", &v) == 0 && v / 1024 > ob.max_rss_kb)
		ob.max_rss_kb = (long)(v / 1024);
	{
		const char *g = strstr(json, "\"goroutines\":{");

		if (g && harness_json_int(g, "live", &v) == 0 && v > ob.max_goroutines)
			ob.max_goroutines = (long)v;
	}
	free(json);
	for (int k = 0; k < NSWG; k++) {
		struct goro_wg_status st;
		char name[32];

		snprintf(name, sizeof name, "soak.ws.%d", k);
		if (goro_wg_status(obs, name, &st) < 0)
			bail_out("wg.status %s: %s", name, goro_last_error(obs));
		ob.wg_status_seen++;
		if (st.count < 0 || st.waiters < 0)
			ob.wg_status_negative++;
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
	}
	return pending;
}

/* Reaps clients that exited on their own during the run (a failure: they
 * run until told to stop), and starts replacements. */
static void reap_unexpected(void)
{
	for (int s = 0; s < nslots; s++) {
		int st;

		if (pids[s] <= 0 || waitpid(pids[s], &st, WNOHANG) != pids[s])
			continue;
		ob.client_bad_exits++;
		soak_fail("client %d (pid %d) exited on its own (status %#x)", s, (int)pids[s], st);
		clear_marks(s);
		start_client(s);
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* Runs the load for `seconds` with `nkill` kills at random moments, then
 * tells the clients to stop and reaps them. */
static void run_phase(const char *what, double seconds, int nkill)
{
	int64_t start = harness_now_ms(), end = start + (int64_t)(seconds * 1000);
	int64_t *at = calloc((size_t)nkill + 1, sizeof *at), next_scan, next_stats;
	long ops0 = 0, ops1 = 0;
	int ki = 0, bad;

	for (int i = 0; i < OP_COUNT; i++)
		ops0 += atomic_load(&sh->ops[i][0]);
	for (int i = 0; i < nkill; i++) /* between 5% and 95% of the phase */
		at[i] = start + (int64_t)((end - start) * (0.05 + 0.9 * orand(1000000) / 1e6));
	qsort(at, (size_t)nkill, sizeof *at, cmp_i64);
	atomic_store(&sh->stop, 0);
	for (int s = 0; s < nslots; s++)
		start_client(s);
	diag("%s: %d clients for %.1f s, %d kills", what, nslots, seconds, nkill);
	next_scan = next_stats = start;
	for (int64_t now = start; now < end; now = harness_now_ms()) {
		int64_t wake;

		if (!harness_alive(&h))
			bail_out("gorod died during the %s", what);
		reap_unexpected();
		for (; ki < nkill && at[ki] <= now; ki++)
			chaos_kill(pick_victim());
		if (now >= next_scan) {
			observer_scan();
			next_scan = now + SCAN_MS;
		}
		if (now >= next_stats)
			next_stats = now + (stats_poll() ? 20 : 250);
		wake = next_scan < next_stats ? next_scan : next_stats;
		if (ki < nkill && at[ki] < wake)
			wake = at[ki];
		if (end < wake)
			wake = end;
		now = harness_now_ms();
		if (wake > now) /* the observer's tick */
			poll(NULL, 0, (int)(wake - now));
	}
	atomic_store(&sh->stop, 1);
	bad = harness_reap_all(pids, nslots, 120000, what);
	ob.client_bad_exits += bad;
	for (int s = 0; s < nslots; s++)
		clear_marks(s); /* a clean exit left none; one reaped by force might */
	for (int i = 0; i < OP_COUNT; i++)
		ops1 += atomic_load(&sh->ops[i][0]);
	diag("%s: %ld operations in %.1f s (%.0f/s), then every client stopped in %" PRId64 " ms",
	     what, ops1 - ops0, seconds, (ops1 - ops0) / seconds, harness_now_ms() - end);
	free(at);
}

/* ---- the observer: after a phase ----------------------------------------------------- */

/* Locks every lock name and takes every semaphore's units, once the
 * clients are gone: settles the deaths nobody came after (and consumes the
 * owner-died marks, so that gorod can forget the names). */
static void take_everything(void)
{
	char name[32];
	struct goro_grant g;
	int r;

	for (int l = 0; l < NLOCKS + NTLOCKS; l++) {
		if (l < NLOCKS)
			lock_name(name, sizeof name, l);
		else
			snprintf(name, sizeof name, "soak.tm.%d", l - NLOCKS);
		r = goro_mutex_lock(obs, name, GORO_WRITE, END_MS, 0, &g);
		if (r < 0) {
			soak_fail("the end: lock %s: %s: %s", name, goro_err_name(r), goro_last_error(obs));
			continue;
		}
		if (l < NLOCKS)
			soak_note_grant(l, g.token, g.owner_died, true);
		if ((r = goro_mutex_unlock(obs, name, 0, 0)) < 0)
			soak_fail("the end: unlock %s: %s", name, goro_err_name(r));
	}
	for (int k = 0; k <= NSEMS; k++) {
		int cap = k < NSEMS ? sem_cap[k] : TSEM_CAP;

		if (k < NSEMS)
			sem_name(name, sizeof name, k);
		else
			snprintf(name, sizeof name, "soak.ts");
		r = goro_sem_acquire(obs, name, cap, cap, END_MS, 0, &g);
		if (r < 0) {
			soak_fail("the end: sem %s: %s: %s", name, goro_err_name(r), goro_last_error(obs));
			continue;
		}
		if ((r = goro_sem_release(obs, name, 0, 0)) < 0)
			soak_fail("the end: release %s: %s", name, goro_err_name(r));
	}
}

/* The deaths' verdicts. */
static struct {
	long definite, verified, failed, inconclusive, unresolved, by_observer;
	int64_t max_latency, sum_latency;
	long latency_n, over_bound;
} dv;

static int release_bound_ms;

static void judge_deaths(void)
{
	int n = atomic_load(&sh->ndeaths);

	memset(&dv, 0, sizeof dv);
	for (int i = 0; i < n; i++) {
		struct death *dd = &sh->deaths[i];
		uint64_t next = atomic_load(&dd->next);
		int64_t lat;

		if (!dd->definite)
			continue;
		dv.definite++;
		if (atomic_load(&dd->inconclusive)) {
			dv.inconclusive++;
			continue;
		}
		if (next == NEXT_NONE) {
			dv.unresolved++;
			soak_fail("death on soak.m.%d (token %" PRIu64 "): no grant after it", dd->lock,
				  dd->token);
			continue;
		}
		if (!((next >> 21) & 1)) {
			dv.failed++;
			soak_fail("death on soak.m.%d (token %" PRIu64 ", killed at %" PRId64 " ms): "
				  "the next grant (token %" PRIu64 ") was not told owner_died", dd->lock,
				  dd->token, dd->kill_ms, next >> 22);
			continue;
		}
		dv.verified++;
		if (atomic_load(&dd->by_observer)) {
			dv.by_observer++;
			continue;
		}
		lat = (int64_t)(next & ((1 << 21) - 1)) - dd->kill_ms;
		dv.sum_latency += lat;
		dv.latency_n++;
		if (lat > dv.max_latency)
			dv.max_latency = lat;
		if (lat > release_bound_ms)
			dv.over_bound++;
	}
}

/* The WaitGroups at the end: victims' private groups as their deaths left
 * them (then back to 0), shared ones >= 0 (then back to 0), task ones 0. */
static struct {
	long dead_checked, dead_bad, task_nonzero, shared_negative;
} wv;

static void zero_wg(const char *name, int64_t count)
{
	int64_t now = -1;
	int r;

	if (count <= 0)
		return;
	r = goro_wg_add(obs, name, -count, 0, &now);
	if (r < 0 || now != 0)
		soak_fail("the end: %s: add -%" PRId64 ": %s, count %" PRId64, name, count,
			  goro_err_name(r), now);
}

static void judge_wgs(void)
{
	struct goro_wg_status st;
	char name[32];

	for (int i = 0; i < ndead_wgs; i++) {
		uint64_t w = dead_wgs[i].state;
		long c = WG_COUNT(w), l = WG_LEASED(w), c1 = c, l1 = l;
		int pend = WG_PEND(w), r;
		long e0, e1;
		bool lost0, lost1;

		if (pend == 1 && c > 0) { /* a done in flight */
			c1 = c - 1;
			l1 = c1 == 0 ? 0 : l > 0 ? l - 1 : 0;
		} else if (pend & 2) {    /* an add in flight */
			c1 = c + (pend >> 3);
			l1 = l + (pend & 4 ? pend >> 3 : 0);
		}
		e0 = c - l;
		e1 = c1 - l1;
		lost0 = l > 0;
		lost1 = l1 > 0;
		r = goro_wg_status(obs, dead_wgs[i].name, &st);
		wv.dead_checked++;
		if (r < 0 || (st.count != e0 && st.count != e1)) {
			wv.dead_bad++;
			soak_fail("the end: a victim's group %s (count %ld, leased %ld, in flight %#x): "
				  "%s, count %" PRId64 ", not %ld or %ld", dead_wgs[i].name, c, l, pend,
				  goro_err_name(r), r < 0 ? -1 : st.count, e0, e1);
			continue;
		}
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
		/* At 0, wait says whether the group is lost: when every
		 * branch that gives this count agrees on it. */
		if (st.count == 0 && (st.count != e0 || st.count != e1 || lost0 == lost1)) {
			bool lost = st.count == e0 ? lost0 : lost1;

			r = goro_wg_wait(obs, dead_wgs[i].name, 0);
			if (r != (lost ? GORO_ELOST : 0)) {
				wv.dead_bad++;
				soak_fail("the end: a victim's group %s at 0: wait gave %s, not %s",
					  dead_wgs[i].name, goro_err_name(r), lost ? "ELOST" : "0");
			}
		}
		zero_wg(dead_wgs[i].name, st.count);
	}
	ndead_wgs = 0;
	for (int k = 0; k < NSWG + NTWG; k++) {
		if (k < NSWG)
			snprintf(name, sizeof name, "soak.ws.%d", k);
		else
			snprintf(name, sizeof name, "soak.tw.%d", k - NSWG);
		if (goro_wg_status(obs, name, &st) < 0)
			bail_out("wg.status %s: %s", name, goro_last_error(obs));
		if (st.has_failure)
			goro_outcome_clear(&st.first_failure);
		if (st.count < 0)
			wv.shared_negative++;
		if (k >= NSWG && st.count != 0) {
			wv.task_nonzero++;
			soak_fail("the end: %s, bound to tasks that all ended, counts %" PRId64, name,
				  st.count);
		}
		if (k < NSWG)
			zero_wg(name, st.count);
	}
}

/* Every task id: waited on from the observer's connection, pipelined. */
struct wres {
	int err, state;
	bool done;
};

static long waits_out;

static void on_wait(void *arg, int err, const struct goro_reply *rep)
{
	struct wres *w = arg;

	w->err = err;
	if (err == 0 && rep && rep->outcome)
		w->state = (int)rep->outcome->state;
	w->done = true;
	waits_out--;
}

/* Runs obs's replies until at most `most` waits are outstanding. */
static void drain_waits(long most)
{
	int64_t deadline = harness_now_ms() + END_MS;

	while (waits_out > most) {
		struct pollfd p = { .fd = goro_fd(obs), .events = POLLIN };
		int r;

		if (goro_want_write(obs)) {
			r = goro_flush(obs);
			if (r < 0 && r != -EAGAIN)
				bail_out("flush: %s", goro_strerror(r));
			if (goro_want_write(obs))
				p.events |= POLLOUT;
		}
		if (harness_now_ms() > deadline)
			bail_out("waits on the tasks: %ld replies missing after %d ms", waits_out, END_MS);
		if (poll(&p, 1, 1000) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) &&
		    (r = goro_process(obs)) < 0)
			bail_out("the observer's connection: %s", goro_strerror(r));
	}
}

static struct {
	long ids, terminal, missing, other_err, dup_records, beyond, unrecorded, recorded;
	long seen_same, seen_differ, kills_acked, kills_not_killed, kills_failed_nostart;
	long by_state[GORO_TASK_LEAKED + 1];
	uint64_t checked_to; /* ids 1..checked_to are checked */
} tv;

static void check_tasks(uint64_t to)
{
	uint64_t from = tv.checked_to + 1;
	size_t n = to >= from ? (size_t)(to - from + 1) : 0;
	long *rec = malloc((n + 1) * sizeof *rec), nrec = atomic_load(&sh->ntasks);
	struct wres *w = calloc(n + 1, sizeof *w);

	if (!rec || !w)
		bail_out("out of memory");
	for (size_t i = 0; i < n; i++)
		rec[i] = -1;
	if (nrec > MAX_TASKS)
		nrec = MAX_TASKS;
	for (long i = 0; i < nrec; i++) {
		uint64_t id = atomic_load(&trec[i].id);

		if (id < from)
			continue; /* a client killed before it wrote the id; or checked before */
		if (id > to) {
			tv.beyond++;
			soak_fail("task record %ld: id %" PRIu64 " beyond the %" PRIu64 " gorod spawned", i,
				  id, to);
			continue;
		}
		if (rec[id - from] >= 0) {
			tv.dup_records++;
			soak_fail("task id %" PRIu64 " acknowledged twice", id);
			continue;
		}
		rec[id - from] = i;
	}
	for (size_t i = 0; i < n; i++) {
		int r = goro_send_wait(obs, from + i, END_MS, on_wait, &w[i]);

		if (r < 0)
			bail_out("wait %" PRIu64 ": %s", from + i, goro_strerror(r));
		waits_out++;
		drain_waits(256);
	}
	drain_waits(0);
	for (size_t i = 0; i < n; i++) {
		uint64_t id = from + i;

		tv.ids++;
		if (w[i].err == -ENOENT) {
			tv.missing++;
			soak_fail("task %" PRIu64 ": wait says ENOENT (its outcome is gone)", id);
			continue;
		}
		if (w[i].err < 0) {
			tv.other_err++;
			soak_fail("task %" PRIu64 ": wait: %s", id, goro_err_name(w[i].err));
			continue;
		}
		if (w[i].state < GORO_TASK_EXITED || w[i].state > GORO_TASK_LEAKED) {
			soak_fail("task %" PRIu64 ": wait gave state %s", id,
				  goro_task_state_name((enum goro_task_state)w[i].state));
			continue;
		}
		tv.terminal++;
		tv.by_state[w[i].state]++;
		if (rec[i] < 0) {
			tv.unrecorded++;
			continue;
		}
		tv.recorded++;
		{
			struct task_rec *t = &trec[rec[i]];
			int seen = atomic_load(&t->seen), flags = atomic_load(&t->flags);

			if (seen && seen - 1 == w[i].state) {
				tv.seen_same++;
			} else if (seen) {
				tv.seen_differ++;
				soak_fail("task %" PRIu64 ": its client was told %s, now %s", id,
					  goro_task_state_name((enum goro_task_state)(seen - 1)),
					  goro_task_state_name((enum goro_task_state)w[i].state));
			}
			if (atomic_load(&t->killed)) {
				tv.kills_acked++;
				/* A command that cannot start, killed while it starts,
				 * ends `killed` too (it once ended `failed`). */
				if (w[i].state == GORO_TASK_FAILED && (flags & T_NOSTART))
					tv.kills_failed_nostart++;
				if (w[i].state != GORO_TASK_KILLED &&
				    !(w[i].state == GORO_TASK_TIMEOUT && (flags & T_TIMEOUT))) {
					tv.kills_not_killed++;
					soak_fail("task %" PRIu64 " (%s%s): its kill was acknowledged, "
						  "but it ended %s", id, flags & T_EXEC ? "exec" : "func",
						  flags & T_TIMEOUT ? ", with a timeout" : "",
						  goro_task_state_name((enum goro_task_state)w[i].state));
				}
			}
		}
	}
	tv.checked_to = to;
	free(rec);
	free(w);
}

/* After a phase: gorod quiet again (no other session, no task, no
 * waiter), the locks taken once by the observer, the groups and tasks
 * checked. */
static void settle(const char *what)
{
	long long spawned = 0;

	if (harness_wait_stat(obs, "sessions_count", 1, END_MS) < 0)
		soak_fail("%s: the clients' sessions did not all end", what);
	if (harness_wait_stat(obs, "tasks.live", 0, END_MS) < 0)
		soak_fail("%s: tasks still live", what);
	if (harness_wait_stat(obs, "waiters", 0, END_MS) < 0)
		soak_fail("%s: requests still waiting", what);
	stats_poll();
	for (int i = 0; i < nkills; i++)
		if (kills[i].session && !kills[i].gone_ms)
			kills[i].gone_ms = since_start(); /* cannot be listed now */
	take_everything();
	judge_wgs();
	if (harness_stat(obs, "tasks.spawned", &spawned) < 0)
		bail_out("stats");
	check_tasks((uint64_t)spawned);
}

/* ---- the observer: memory ------------------------------------------------------------ */

static char conf[64];

/* Sets gorod's --keep-tasks through its configuration file and a SIGHUP
 * reload; waits for the READY=1 that ends the reload. */
static void set_keep_tasks(long n)
{
	int64_t deadline = harness_now_ms() + END_MS;
	FILE *f = fopen(conf, "w");
	char msg[1024];

	if (!f || fprintf(f, "keep-tasks = %ld\nkeep-age = 1h\n", n) < 0 || fclose(f) != 0)
		bail_out("writing %s: %s", conf, strerror(errno));
	kill(h.pid, SIGHUP);
	for (;;) {
		int64_t left = deadline - harness_now_ms();

		if (left <= 0 || harness_notify_recv(&h, msg, sizeof msg, (int)left) < 0)
			bail_out("gorod did not say READY=1 after the reload");
		if (strstr(msg, "READY=1")) {
			if (strstr(msg, "reload failed"))
				bail_out("gorod's reload failed: %s", msg);
			return;
		}
	}
}

/* gorod's RSS in kB once it stopped going down for REST_MS: its scavenger
 * gives back the pages of the stacks nobody took for a second, about two
 * seconds after the work stopped (sysmon.c), and that has no event to wait
 * for. Both measures are taken at rest, so that neither counts stacks the
 * other does not. Under a sanitizer the RSS is not checked: read once. */
#define REST_MS 3000
static long rss_at_rest(void)
{
	int64_t now = harness_now_ms(), end = now + END_MS, since = now;
	long rss = harness_rss_kb(&h), r;

	if (tap_sanitized())
		return rss;
	while ((now = harness_now_ms()) - since < REST_MS && now < end) {
		poll(NULL, 0, 100);
		if ((r = harness_rss_kb(&h)) < rss) {
			rss = r;
			since = harness_now_ms();
		}
	}
	return rss;
}

/* gorod's RSS in kB with retention emptied (keep-tasks 1, and a task's end
 * to prune the rest), once its goroutines are back to `goroutines`. Also
 * gives the RSS with what was kept before. */
static long rss_settled(long long goroutines, long *with_kept, long long *kept)
{
	struct goro_spawn sp = { .func = "noop" };
	struct goro_outcome out;
	uint64_t id;
	long rss;

	if (harness_wait_stat(obs, "goroutines.live", goroutines, END_MS) < 0)
		soak_fail("gorod's goroutines did not come back to %lld before the RSS", goroutines);
	*with_kept = harness_rss_kb(&h);
	harness_stat(obs, "tasks.kept", kept);
	set_keep_tasks(1);
	if (goro_spawn(obs, &sp, &id) < 0 || goro_wait(obs, id, END_MS, &out) < 0)
		bail_out("the pruning task: %s", goro_last_error(obs));
	goro_outcome_clear(&out);
	soak_record_spawn(id, T_OBSERVER);
	if (harness_wait_stat(obs, "tasks.kept", 1, END_MS) < 0)
		soak_fail("retention was not emptied");
	tv.checked_to = id; /* its outcome is gone now, with the others' */
	tv.ids++;
	tv.terminal++;
	tv.recorded++;
	tv.by_state[GORO_TASK_EXITED]++;
	if (harness_wait_stat(obs, "goroutines.live", goroutines, END_MS) < 0)
		soak_fail("gorod's goroutines did not come back to %lld", goroutines);
	rss = rss_at_rest();
	{
		long long stack_bytes = -1, stacks = -1;

		harness_stat(obs, "memory.stack_bytes", &stack_bytes);
		harness_stat(obs, "memory.stacks", &stacks);
		diag("gorod's memory, quiet, retention emptied: RSS %ld kB, %lld stacks, %lld kB "
		     "of stacks", rss, stacks, stack_bytes / 1024);
	}
	set_keep_tasks(KEEP_TASKS);
	return rss;
}

/* gorod's memory is measured without glibc's per-thread malloc cache
 * (tcache): each thread keeps up to 7 freed chunks of each of 64 sizes (up
 * to 1 KiB) for itself, which malloc_trim() never touches and nothing but
 * the thread's exit gives back. After the run, whose kept outcomes spread
 * gorod's heap over ~60 MB (the warm-up's over ~20), the few hundred chunks
 * in each worker's cache sat on as many pages otherwise free: 1-2 MB that
 * came and went from run to run, not growing with the operations, yet over
 * the 10% this check allows (a leak of a few bytes per operation). Without
 * the cache, malloc_trim gives back every free page, and what stays is what
 * gorod holds. gorod's systemd units run it so too. (This process read
 * its own tunables when it started.) */
static void soak_malloc_env(void)
{
	const char *old = getenv("GLIBC_TUNABLES");
	char *v;

	if (asprintf(&v, "%s%sglibc.malloc.tcache_count=0", old ? old : "",
		     old && *old ? ":" : "") < 0 || setenv("GLIBC_TUNABLES", v, 1) < 0)
		bail_out("GLIBC_TUNABLES: out of memory");
	free(v);
}

/* ---- the report ---------------------------------------------------------------------- */

static void print_counts(void)
{
	diag("operations (attempted: ok, errors by kind; cut: the client was killed "
	     "before the answer):");
	for (int i = 0; i < OP_COUNT; i++) {
		long att = atomic_load(&sh->ops[i][0]), sum = 0;
		char line[512];
		int len;

		len = snprintf(line, sizeof line, "  %-20s %9ld:", op_name[i], att);
		for (int c = 0; c < NCOLS; c++) {
			long v = atomic_load(&sh->ops[i][1 + c]);

			sum += v;
			if (v || c == C_OK)
				len += snprintf(line + len, sizeof line - (size_t)len, " %s %ld",
						col_name[c], v);
		}
		if (att - sum)
			snprintf(line + len, sizeof line - (size_t)len, " cut %ld", att - sum);
		diag("%s", line);
	}
}

static long env_long(const char *name, long def, long lo, long hi)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (!v || !*v)
		return def;
	n = strtol(v, &end, 10);
	if (*end || n < lo || n > hi)
		bail_out("%s=%s: want a number from %ld to %ld", name, v, lo, hi);
	return n;
}

int main(void)
{
	long seconds = env_long("SOAK_SECONDS", 60, 1, 86400);
	long pct = env_long("SOAK_KILL_PERCENT", 10, 0, 1000);
	long warmup_ms = env_long("SOAK_WARMUP_MS", seconds * 100 < 2000 ? 2000 : seconds * 100,
				  0, 3600000);
	long long goroutines0 = 0, spawned = 0, v;
	long rss0 = 0, rss1 = 0, kept_rss0 = 0, kept_rss1 = 0, total_ops = 0;
	long long kept0 = 0, kept1 = 0;
	int kills_wanted, fd;
	char *json = NULL;
	struct goro_hello hi;

	nslots = (int)env_long("SOAK_CLIENTS", 200, 1, MAX_CLIENTS);
	think_max = (int)env_long("SOAK_THINK_MS", 20, 0, 10000);
	release_bound_ms = (int)env_long("SOAK_RELEASE_MS", tap_sanitized() ? 15000 : 5000, 1,
					 3600000);
	seed = (uint64_t)env_long("SOAK_SEED", (long)(harness_now_ms() ^ getpid()), 0, LONG_MAX);
	orng = seed * 0x9E3779B97F4A7C15ULL | 1;
	kills_wanted = (int)((nslots * pct + 50) / 100);
	signal(SIGPIPE, SIG_IGN);

	sh = shared_alloc(sizeof *sh);
	slots = shared_alloc((size_t)nslots * sizeof *slots);
	lockmark = shared_alloc((size_t)NLOCKS * (size_t)nslots * sizeof *lockmark);
	semmark = shared_alloc((size_t)NSEMS * (size_t)nslots * sizeof *semmark);
	trec = shared_alloc((size_t)MAX_TASKS * sizeof *trec);
	pids = calloc((size_t)nslots, sizeof *pids);
	gens = calloc((size_t)nslots, sizeof *gens);
	kills_cap = kills_wanted + 16;
	kills = calloc((size_t)kills_cap, sizeof *kills);
	dead_wgs = calloc((size_t)kills_cap, sizeof *dead_wgs);
	if (!pids || !gens || !kills || !dead_wgs)
		bail_out("out of memory");
	sh->t0 = harness_now_ms();

	/* gorod, with retention from a configuration file that a SIGHUP
	 * rereads (set_keep_tasks). */
	snprintf(conf, sizeof conf, "/tmp/soak-conf-XXXXXX");
	if ((fd = mkstemp(conf)) < 0)
		bail_out("mkstemp: %s", strerror(errno));
	close(fd);
	{
		FILE *f = fopen(conf, "w");

		if (!f || fprintf(f, "keep-tasks = %d\nkeep-age = 1h\n", KEEP_TASKS) < 0 ||
		    fclose(f) != 0)
			bail_out("writing %s", conf);
	}
	{
		const char *args[] = { "--config", conf, NULL };

		soak_malloc_env();
		if (harness_start_notify(&h, args, 30000) < 0) {
			unlink(conf);
			bail_out("gorod did not start");
		}
	}
	ok(1, "gorod started and said READY=1 (%s)", h.sock);
	if (goro_connect(h.sock, &obs) < 0 || goro_hello(obs, "soak-observer", &hi) < 0 ||
	    harness_stat(obs, "goroutines.live", &goroutines0) < 0)
		bail_out("the observer cannot talk to gorod");
	obs_session = hi.session;
	diag("seed %" PRIu64 " (SOAK_SEED), %d clients, %ld s, %d kills (%ld%%), think 0..%d ms, "
	     "warm-up %ld ms; gorod has %lld goroutines with only the observer connected",
	     seed, nslots, seconds, kills_wanted, pct, think_max, warmup_ms, goroutines0);

	/* The warm-up: the same load, no kills; then the memory baseline. */
	if (warmup_ms > 0) {
		run_phase("warm-up", warmup_ms / 1000.0, 0);
		settle("warm-up");
	}
	rss0 = rss_settled(goroutines0, &kept_rss0, &kept0);
	diag("gorod's RSS after the warm-up: %ld kB (%ld kB with its %lld finished tasks kept)",
	     rss0, kept_rss0, kept0);

	/* The run. */
	run_phase("run", (double)seconds, kills_wanted);
	settle("the end");
	if (harness_stat(obs, "tasks.spawned", &spawned) < 0)
		bail_out("stats");
	judge_deaths();

	/* ---- the report ---------------------------------------------------------------------- */
	for (int i = 0; i < OP_COUNT; i++)
		total_ops += atomic_load(&sh->ops[i][0]);
	print_counts();

	ok(sh->two_writers == 0 && sh->writer_readers == 0 && ob.two_writers == 0 &&
	   ob.writer_readers == 0,
	   "locks: never two writers, never a writer with readers (%ld grant-time checks: %ld "
	   "two writers, %ld writer+readers; %ld observer scans: %ld, %ld; up to %d readers "
	   "at once)", (long)sh->lock_checks, (long)sh->two_writers, (long)sh->writer_readers,
	   ob.scans, ob.two_writers, ob.writer_readers,
	   sh->max_readers > ob.max_readers ? (int)sh->max_readers : ob.max_readers);
	ok(sh->sem_over == 0 && ob.sem_over == 0,
	   "semaphores: never more units held than the capacity (%ld grant-time checks, %ld "
	   "over; observer %ld over; most held at once: %d of %d, %d of %d)",
	   (long)sh->sem_checks, (long)sh->sem_over, ob.sem_over, (int)sh->max_units[0],
	   sem_cap[0], (int)sh->max_units[1], sem_cap[1]);
	ok(ob.view_bad == 0 && ob.view_checked + ob.view_unconnected == nkills,
	   "gorod's view: each victim's session held what its marks said, within its requests "
	   "in flight (%ld victims compared, %ld differ, %ld not connected yet; %ld of the "
	   "victims held a write lock)", ob.view_checked, ob.view_bad, ob.view_unconnected,
	   ob.victims_write);
	ok(sh->wg_below_zero == 0 && ob.wg_status_negative == 0 && wv.shared_negative == 0,
	   "WaitGroups: no count below zero (%ld counts in answers, %ld wg.status by the "
	   "observer: %ld below zero)", (long)sh->wg_counts_seen, ob.wg_status_seen,
	   (long)sh->wg_below_zero + ob.wg_status_negative + wv.shared_negative);
	ok(sh->wg_private_bad == 0 && sh->wg_enegative_right > 0,
	   "WaitGroups: private groups answered exactly as expected (%ld answers checked, %ld "
	   "wrong; done at 0 refused with ENEGATIVE %ld times)", (long)sh->wg_private_checks,
	   (long)sh->wg_private_bad, (long)sh->wg_enegative_right);
	ok(wv.dead_bad == 0 && wv.task_nonzero == 0,
	   "WaitGroups: a victim's lease-bound count taken off at its death (%ld victims' groups "
	   "checked, %ld wrong); groups bound to tasks back to 0 (%ld not)", wv.dead_checked,
	   wv.dead_bad, wv.task_nonzero);
	ok(dv.failed == 0 && dv.unresolved == 0 && dv.over_bound == 0,
	   "owner death: the first grant after each victim's write lock said owner_died "
	   "(%ld write holders killed: %ld verified, %ld not, %ld undecidable; %ld settled by "
	   "the observer's lock at the end), within %d ms (%ld measured: max %" PRId64
	   " ms, mean %" PRId64 " ms, %ld over)", dv.definite, dv.verified,
	   dv.failed + dv.unresolved, dv.inconclusive, dv.by_observer, release_bound_ms,
	   dv.latency_n, dv.max_latency, dv.latency_n ? dv.sum_latency / dv.latency_n : 0,
	   dv.over_bound);
	ok(sh->od_unexplained == 0,
	   "owner death: owner_died never told without a dead writer before it (%ld grants "
	   "told owner_died, %ld unexplained; %ld maybe-writer deaths)", (long)sh->od_grants,
	   (long)sh->od_unexplained, ob.deaths_maybe);
	{
		int64_t max_gone = 0, sum_gone = 0;
		long n = 0, over = 0;

		for (int i = 0; i < nkills; i++) {
			int64_t d;

			if (!kills[i].session)
				continue;
			d = kills[i].gone_ms - kills[i].kill_ms;
			n++;
			sum_gone += d;
			if (d > max_gone)
				max_gone = d;
			if (d > release_bound_ms)
				over++;
		}
		ok(over == 0, "dead sessions: each victim's session (and what it held) was gone "
		   "within %d ms (%ld sessions: max %" PRId64 " ms, mean %" PRId64 " ms, polled "
		   "every 20 ms)", release_bound_ms, n, max_gone, n ? sum_gone / n : 0);
	}
	{
		long long ended[GORO_TASK_LEAKED + 1] = { 0 }, ended_sum = 0;
		bool same = true;
		char hist[512] = "";
		int len = 0;

		if (goro_stats_json(obs, &json) < 0)
			bail_out("stats");
		for (int s = GORO_TASK_EXITED; s <= GORO_TASK_LEAKED; s++) {
			const char *e = strstr(json, "\"ended\":{");

			if (!e || harness_json_int(e, goro_task_state_name((enum goro_task_state)s),
						   &ended[s]) < 0)
				ended[s] = -1;
			ended_sum += ended[s];
			if (ended[s] != tv.by_state[s])
				same = false;
			len += snprintf(hist + len, sizeof hist - (size_t)len, "%s%s %ld",
					len ? ", " : "",
					goro_task_state_name((enum goro_task_state)s), tv.by_state[s]);
		}
		free(json);
		json = NULL;
		ok(tv.ids == spawned && tv.terminal == spawned && tv.missing == 0 &&
		   tv.other_err == 0 && tv.dup_records == 0 && tv.beyond == 0 && same &&
		   ended_sum == spawned && tv.unrecorded <= nkills &&
		   sh->task_recs_full == 0,
		   "tasks: every one of the %lld spawned reached exactly one outcome (%ld waited "
		   "on, %ld terminal, %ld missing, %ld other errors, %ld recorded twice; by state "
		   "%s; stats tasks.ended agree: %s; %ld acknowledged but unrecorded, at most "
		   "one per kill: %d)", spawned, tv.ids, tv.terminal, tv.missing, tv.other_err,
		   tv.dup_records, hist, same && ended_sum == spawned ? "yes" : "NO",
		   tv.unrecorded, nkills);
	}
	ok(tv.seen_differ == 0 && sh->outcome_twice == 0 && sh->not_terminal == 0 &&
	   tv.kills_not_killed == 0,
	   "tasks: what a client's wait was told stayed the outcome (%ld same, %ld differ); "
	   "an acknowledged kill ended `killed`, or `timeout` when its own timeout came first "
	   "(%ld kills, %ld otherwise, of which %ld commands that could not start)", tv.seen_same, tv.seen_differ + (long)sh->outcome_twice,
	   tv.kills_acked, tv.kills_not_killed, tv.kills_failed_nostart);
	ok(ob.client_bad_exits == 0,
	   "clients: none died but those the chaos killed (%ld started, %d killed, %ld "
	   "failed or exited on their own)", ob.clients_started, nkills, ob.client_bad_exits);
	if (!ok(sh->nfailures == 0,
		"no request got an answer it should not have (%ld unexpected; per kind above)",
		(long)sh->nfailures))
		for (long i = 0; i < sh->nfailures && i < NFAIL; i++)
			diag("  %s", sh->fail[i]);

	/* Nothing held, nothing left. */
	{
		long long held = -1, mutexes = -1, sems = -1, waiters = -1, sessions = -1;

		if (goro_stats_json(obs, &json) < 0)
			bail_out("stats");
		session_held(json, obs_session, &held);
		harness_json_int(json, "mutexes", &mutexes);
		harness_json_int(json, "semaphores", &sems);
		harness_json_int(json, "waiters", &waiters);
		harness_json_int(json, "sessions_count", &sessions);
		free(json);
		json = NULL;
		ok(held == 0 && mutexes == 0 && sems == 0 && waiters == 0 && sessions == 1,
		   "the end: nothing held (sessions %lld, the observer's holds %lld grants; "
		   "mutexes %lld, semaphores %lld, waiters %lld)", sessions, held, mutexes, sems,
		   waiters);
	}
	ok(harness_wait_stat(obs, "goroutines.live", goroutines0, END_MS) == 0,
	   "the end: gorod is back to its %lld goroutines (the most seen: %ld)", goroutines0,
	   ob.max_goroutines);
	rss1 = rss_settled(goroutines0, &kept_rss1, &kept1);
	diag("gorod's RSS: %ld kB after the warm-up, %ld kB at the end (%ld kB with its %lld "
	     "finished tasks kept; %ld kB at most during the run)", rss0, rss1, kept_rss1, kept1,
	     ob.max_rss_kb);
	if (tap_sanitized()) {
		skip(1, "RSS under a sanitizer says nothing (%ld kB -> %ld kB)", rss0, rss1);
	} else {
		diag("a leak would have to exceed %.1f bytes per operation to pass 10%% "
		     "(%ld operations)", rss0 * 1024.0 * 0.1 / (total_ops ? total_ops : 1), total_ops);
		/* gorod gives the heap that retention freed back to the system
		 * (malloc_trim after a large prune, and at its sweeps); that has
		 * no event to wait for, so the RSS is read again until it is
		 * down or END_MS passed. */
		for (int64_t end = harness_now_ms() + END_MS;
		     rss1 > rss0 + rss0 / 10 && harness_now_ms() < end;) {
			poll(NULL, 0, 50);
			rss1 = harness_rss_kb(&h);
		}
		ok(rss1 <= rss0 + rss0 / 10,
		   "the end: gorod's RSS is within 10%% of its start (%ld kB -> %ld kB, %+.1f%%)",
		   rss0, rss1, 100.0 * (rss1 - rss0) / (rss0 ? rss0 : 1));
	}
	if (harness_stat(obs, "leaks.definite", &v) == 0)
		diag("leak monitor at the end: %lld definite findings", v);
	goro_close(obs);
	is(harness_stop(&h, 30000), 0, "gorod stops cleanly on SIGTERM (exit 0)");
	harness_cleanup(&h);
	unlink(conf);
	return done_testing();
}
