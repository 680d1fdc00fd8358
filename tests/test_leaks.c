/* test_leaks.c: gorod's leak monitor, end to end (issue 5; PROTOCOL.md,
 * leaks).
 *
 * gorod has no event for "a finding appeared": each part polls `leaks`
 * (every POLL_MS) with a deadline, and checks the finding's kind, whom it
 * is about and its reason by substring. One part per kind:
 *
 * - none: a fresh gorod finds nothing; `goroctl leaks` exits 0, --json
 *   prints [], stats' leaks counts are 0.
 * - own: a task that waits on the WaitGroup it holds a count of (`spawn
 *   --wg G -- goroctl wg wait G`): definite within 1 s of its wait reaching
 *   gorod; `goroctl leaks` exits 1 and lists it; stats agree with the
 *   list; killed, the finding goes away.
 * - cycle: three tasks each waiting on what the next holds, through a
 *   group, a lock and a semaphore: A holds lock L and waits on group G, B
 *   holds semaphore S and waits for L, C holds G's count and is queued for
 *   S. While the test itself still holds a count of G (a live client: a
 *   root) none is definite; once it lets go, each of the three is.
 * - dead: a group whose count only a session that died without a lease
 *   held; a task waiting on it is definite; the test's done ends it.
 * - onleak: `spawn --on-leak kill` (and libgoro's on_leak_kill): the task
 *   is killed, ends `leaked`; goroctl wait exits 125, goro_outcome_status
 *   says 125.
 * - leftbehind: `sh -c 'sleep 30 & ...; exit 0'`: the sleep still runs
 *   after the task ended; killed, the finding goes away.
 * - suspected: --expect 500ms on a silent sleep (suspected), not on a task
 *   that keeps writing; a gorod of its own with --leak-after 1s flags a
 *   silent task without --expect, not one with a long --expect.
 * - hog: tests/modules/sample.c's sample.hog spins without yielding.
 * - nofalse: 10,000 goroutines waiting on a group a live session holds
 *   (wg.waits pipelined over 10 connections), 1,000 waiting for a lock
 *   held by a live, sleeping process (`goroctl lock m -- sleep`; a read
 *   lock asked by each of 1,000 sessions, as gorod refuses a session's
 *   second wait on one mutex with EDEADLK): no definite finding over four
 *   looks of the monitor (scaled down under the sanitizers).
 * - lockorder: session X takes A then B, session Y B then A, one after the
 *   other (no deadlock happens): a lock-order finding naming both. Last,
 *   as gorod may keep it for as long as it runs.
 *
 * The reason texts are gorod's sentences; the test matches the words that
 * say what kind of finding it is ("waits on", "never", "past its
 * expected", "still run", "without yielding", "both orders").
 *
 * $GOROD, $GOROCTL and $GORO_SAMPLE_MODULE name what to test (meson
 * passes the build's). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "goro/goro.h"
#include "harness.h"
#include "tap.h"

#define WAIT_MS 20000 /* for one event that should come soon */
#define FIND_MS 5000  /* the deadline for a finding (it should take < 1 s) */
#define FLAG_MS 1000  /* the issue: flagged within 1 s of becoming true */
#define POLL_MS 20    /* how often `leaks` is asked */
#define NLOOK 4       /* looks of the monitor (about 250 ms apart) that must see nothing */

static struct harness h;
static goro_client *c;
static const char *goroctl;
static char ctl_err[4096];

#define CTL(out, ...)                                                          \
	harness_ctl(h.sock, NULL, 0, out, sizeof(out), ctl_err, sizeof ctl_err, \
		    WAIT_MS, __VA_ARGS__, (const char *)NULL)

/* goroctl spawn ARGS..: the id it printed, or 0 having said why. */
#define CTL_SPAWN(...)                                                          \
	harness_ctl_spawn(h.sock, ctl_err, sizeof ctl_err, WAIT_MS, __VA_ARGS__, \
			  (const char *)NULL)

/* ---- findings ------------------------------------------------------------------ */

/* What a finding must be: its kind, the task it is about (0: any), and
 * words its reason must contain (NULL-terminated; up to 3). */
struct want {
	const char *kind;
	uint64_t task;
	const char *has[4];
};

static bool matches(const struct goro_leak *l, const struct want *w)
{
	if (strcmp(l->kind, w->kind) != 0 || (w->task && l->task != w->task))
		return false;
	for (int i = 0; i < 3 && w->has[i]; i++)
		if (!strstr(l->reason, w->has[i]))
			return false;
	return true;
}

/* Prints the findings as diag lines. */
static void diag_leaks(const struct goro_leak *l, size_t n)
{
	if (n == 0)
		diag("  (no findings)");
	for (size_t i = 0; i < n; i++) {
		diag("  finding %" PRIu64 ": %s, task %" PRIu64 ", session %" PRIu64 ": %s",
		     l[i].id, l[i].kind, l[i].task, l[i].session, l[i].reason);
		for (const char *const *p = l[i].history; p && *p; p++)
			diag("    %s", *p);
	}
}

/* The findings on cl now that match w (count), the first one's id into
 * *fid (may be NULL). Returns the count, or a negative code (said). */
static int count_leaks(goro_client *cl, const struct want *w, uint64_t *fid, bool show)
{
	struct goro_leak *l = NULL;
	size_t n = 0;
	int r = goro_leaks(cl, &l, &n), k = 0;

	if (r < 0) {
		diag("leaks: %s: %s", goro_err_name(r), goro_last_error(cl));
		return r;
	}
	for (size_t i = 0; i < n; i++)
		if (matches(&l[i], w) && k++ == 0 && fid)
			*fid = l[i].id;
	if (show)
		diag_leaks(l, n);
	free(l);
	return k;
}

static const char *want_str(const struct want *w, char *buf, size_t size)
{
	snprintf(buf, size, "%s about task %" PRIu64 " saying '%s'%s%s%s%s", w->kind, w->task,
		 w->has[0] ? w->has[0] : "", w->has[1] ? ", '" : "", w->has[1] ? w->has[1] : "",
		 w->has[1] ? "'" : "", w->has[2] ? " .." : "");
	return buf;
}

/* Polls leaks on cl until a finding matches w, at most timeout_ms.
 * Returns how long it took in ms (the finding's id in *fid), or a
 * negative code: -ETIMEDOUT having listed what there was instead. */
static int64_t wait_leak(goro_client *cl, const struct want *w, int timeout_ms, uint64_t *fid)
{
	int64_t t0 = harness_now_ms(), deadline = t0 + timeout_ms;
	char what[512];

	for (;;) {
		int k = count_leaks(cl, w, fid, false);

		if (k < 0)
			return k;
		if (k > 0)
			return harness_now_ms() - t0;
		if (harness_now_ms() >= deadline)
			break;
		usleep(POLL_MS * 1000);
	}
	diag("no finding %s in %d ms; there were:", want_str(w, what, sizeof what), timeout_ms);
	count_leaks(cl, w, NULL, true);
	return -ETIMEDOUT;
}

/* Polls leaks on cl until no finding matches w, at most timeout_ms.
 * Returns 0, or a negative code (-ETIMEDOUT having listed them). */
static int wait_no_leak(goro_client *cl, const struct want *w, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;
	char what[512];

	for (;;) {
		int k = count_leaks(cl, w, NULL, false);

		if (k <= 0)
			return k;
		if (harness_now_ms() >= deadline)
			break;
		usleep(POLL_MS * 1000);
	}
	diag("the finding %s stayed for %d ms:", want_str(w, what, sizeof what), timeout_ms);
	count_leaks(cl, w, NULL, true);
	return -ETIMEDOUT;
}

/* Asks leaks on cl for ms milliseconds (every POLL_MS): how many times it
 * saw a finding that matches w (0: never), or a negative code. */
static int never_leak(goro_client *cl, const struct want *w, int ms)
{
	int64_t deadline = harness_now_ms() + ms;
	int seen = 0, k;

	do {
		k = count_leaks(cl, w, NULL, false);
		if (k < 0)
			return k;
		if (k > 0 && seen++ == 0)
			count_leaks(cl, w, NULL, true);
		usleep(POLL_MS * 1000);
	} while (harness_now_ms() < deadline);
	return seen;
}

/* The JSON object of finding fid (goro_leaks_json), into buf; "" when it
 * is not there. */
static char *leak_json(uint64_t fid, char *buf, size_t size)
{
	char *json = NULL;

	buf[0] = '\0';
	if (goro_leaks_json(c, &json) == 0 && harness_json_object(json, fid, buf, size) < 0)
		buf[0] = '\0';
	free(json);
	return buf;
}

/* Whether finding fid's JSON has every field PROTOCOL.md says a finding
 * always has, and the fragments a and b (may be NULL). */
static bool leak_json_has(uint64_t fid, const char *a, const char *b)
{
	static const char *const always[] = { "\"id\":", "\"kind\":", "\"reason\":",
					      "\"age_ms\":", "\"since_ms\":", "\"owner\":{",
					      "\"history\":[" };
	char obj[8192];

	leak_json(fid, obj, sizeof obj);
	for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
		if (!strstr(obj, always[i])) {
			diag("finding %" PRIu64 " has no %s: %s", fid, always[i], obj);
			return false;
		}
	if ((a && !strstr(obj, a)) || (b && !strstr(obj, b))) {
		diag("finding %" PRIu64 " has no %s%s%s: %s", fid, a ? a : "", b ? " or " : "",
		     b ? b : "", obj);
		return false;
	}
	return true;
}

/* The integer field key of finding fid's JSON, or -1. */
static long long leak_json_int(uint64_t fid, const char *key)
{
	char obj[8192];
	long long v = -1;

	if (harness_json_int(leak_json(fid, obj, sizeof obj), key, &v) < 0)
		diag("finding %" PRIu64 ": no %s in '%s'", fid, key, obj);
	return v;
}

/* Whether stats' leaks counts agree with the list. A look of the monitor
 * may come between the list and the stats: a list taken before and one
 * after must agree for the comparison to count (up to 20 tries). */
static bool stats_agree(const char *what)
{
	static const char *const kinds[] = { "definite", "suspected", "left-behind", "hog",
					     "lock-order" };
	static const char *const keys[] = { "leaks.definite", "leaks.suspected",
					    "leaks.left_behind", "leaks.hog",
					    "leaks.lock_order" };
	enum { NK = sizeof kinds / sizeof kinds[0] };
	long long before[NK], stat[NK], after[NK];

	for (int attempt = 0; attempt < 20; attempt++) {
		bool same = true, agree = true;

		for (size_t k = 0; k < NK; k++) {
			struct want w = { kinds[k], 0, { NULL } };

			before[k] = count_leaks(c, &w, NULL, false);
			if (before[k] < 0 || harness_stat(c, keys[k], &stat[k]) < 0) {
				diag("%s: leaks or stats %s failed", what, keys[k]);
				return false;
			}
		}
		for (size_t k = 0; k < NK; k++) {
			struct want w = { kinds[k], 0, { NULL } };

			after[k] = count_leaks(c, &w, NULL, false);
			same &= after[k] == before[k];
			agree &= stat[k] == before[k];
		}
		if (!same)
			continue;
		if (!agree)
			for (size_t k = 0; k < NK; k++)
				diag("%s: %s: stats %lld, the list %lld", what, keys[k], stat[k],
				     before[k]);
		return agree;
	}
	diag("%s: the list kept changing", what);
	return false;
}

/* ---- helpers --------------------------------------------------------------------- */

/* Polls ps until task id's entry has fragments a and b (may be NULL). */
static bool ps_becomes(uint64_t id, const char *a, const char *b)
{
	int64_t deadline = harness_now_ms() + WAIT_MS;
	char entry[4096] = "";

	while (harness_now_ms() < deadline) {
		if (harness_ps_entry(c, id, entry, sizeof entry) < 0)
			return false;
		if (strstr(entry, a) && (!b || strstr(entry, b)))
			return true;
		usleep(5000);
	}
	diag("ps: %s", entry);
	return false;
}

/* Waits for task id; its state, or -1 having said why. */
static int end_state(uint64_t id, struct goro_outcome *out)
{
	struct goro_outcome o;
	int r = goro_wait(c, id, WAIT_MS, &o);

	if (r < 0) {
		diag("wait %" PRIu64 ": %s: %s", id, goro_err_name(r), goro_last_error(c));
		return -1;
	}
	if (out)
		*out = o;
	else
		goro_outcome_clear(&o);
	return (int)o.state;
}

/* Kills task id (SIGKILL) and waits for it. */
static bool kill_task(uint64_t id)
{
	int r = goro_kill(c, id, SIGKILL);

	if (r < 0 && r != -ESRCH)
		diag("kill %" PRIu64 ": %s: %s", id, goro_err_name(r), goro_last_error(c));
	return end_state(id, NULL) >= 0 && (r == 0 || r == -ESRCH);
}

static char *u64s(uint64_t v, char *buf, size_t size)
{
	snprintf(buf, size, "%" PRIu64, v);
	return buf;
}

/* The most a finding may take once it became true: FLAG_MS, more under
 * a sanitizer (gorod runs some 5 to 20 times slower there). */
static int64_t flag_limit(void)
{
	return tap_sanitized() ? 3 * FLAG_MS : FLAG_MS;
}

/* ---- none ------------------------------------------------------------------------ */

static void test_none(void)
{
	static const char *const keys[] = { "leaks.definite", "leaks.suspected",
					    "leaks.left_behind", "leaks.hog",
					    "leaks.lock_order" };
	struct goro_leak *l = (void *)1;
	char out[4096];
	size_t n = 99;
	long long v;

	is(goro_leaks(c, &l, &n), 0, "none: leaks on a fresh gorod");
	ok(n == 0 && l == NULL, "none: nothing found (%zu findings)", n);
	is(CTL(out, "leaks"), 0, "none: goroctl leaks exits 0 when nothing is found");
	ok(strstr(out, "no leaks") != NULL, "none: and says so");
	if (!strstr(out, "no leaks"))
		diag("goroctl leaks: %s", out);
	is(CTL(out, "--json", "leaks"), 0, "none: goroctl --json leaks exits 0");
	is_str(out, "[]\n", "none: and prints []");
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		v = -1;
		is(harness_stat(c, keys[i], &v), 0, "none: stats has %s", keys[i]);
		is(v, 0, "none: %s is 0", keys[i]);
	}
}

/* ---- definite --------------------------------------------------------------------- */

static void test_own(void)
{
	const char *g = "own.wg";
	struct want w = { "definite", 0, { "waits on", "never", g } };
	char out[8192], text[256];
	uint64_t id, fid = 0;
	int64_t ms;
	int r;

	id = CTL_SPAWN("--wg", g, "--", goroctl, "wg", "wait", g);
	ok(id > 0, "own: spawn --wg %s -- goroctl wg wait %s", g, g);
	w.task = id;
	ok(harness_wait_waiters(c, g, 1, WAIT_MS) == 0,
	   "own: the task's goroctl waits on %s in gorod", g);
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "own: a definite finding about task %" PRIu64 " that says it waits on %s "
	   "and never ends", id, g);
	if (ms >= 0)
		cmp_ok(ms, <=, flag_limit(), "own: found %lld ms after the wait reached gorod",
		       (long long)ms);
	ok(fid && leak_json_has(fid, "\"kind\":\"definite\"", NULL),
	   "own: its JSON has every field PROTOCOL.md gives");
	is(leak_json_int(fid, "task"), (long long)id, "own: and \"task\": %" PRIu64, id);
	ok(stats_agree("own"), "own: stats' leaks counts agree with the list");

	r = CTL(out, "leaks");
	is(r, 1, "own: goroctl leaks exits 1 when something is found");
	snprintf(text, sizeof text, "task %" PRIu64, id);
	ok(strstr(out, "ID") && strstr(out, "KIND") && strstr(out, "REASON") &&
	   strstr(out, "definite") && strstr(out, text) && strstr(out, "waits on"),
	   "own: it lists the finding: kind, %s, the reason", text);
	if (!strstr(out, text))
		diag("goroctl leaks: %s", out);
	r = CTL(out, "--json", "leaks");
	is(r, 1, "own: goroctl --json leaks exits 1 too");
	ok(out[0] == '[' && strstr(out, "\"kind\":\"definite\""), "own: and prints the array");

	ok(kill_task(id), "own: kill the task");
	is(wait_no_leak(c, &w, FIND_MS), 0, "own: the finding goes away with the task");
}

static void test_cycle(void)
{
	const char *g = "cyc.G", *l = "cyc.L", *s = "cyc.S";
	struct want wa = { "definite", 0, { "waits on" } }, wb = wa, wc = wa;
	struct want any = { "definite", 0, { NULL } };
	uint64_t a, b, cc, fid;
	int64_t t0, ma, mb, mc;
	long long waiters0 = 0;
	char out[16384], text[64];

	harness_stat(c, "primitives.waiters", &waiters0);
	is(goro_wg_add(c, g, 1, 0, NULL), 0, "cycle: the test holds a count of %s for now", g);
	a = CTL_SPAWN("--name", "cycA", "--lock", l, "--", goroctl, "wg", "wait", g);
	ok(a > 0 && harness_wait_waiters(c, g, 1, WAIT_MS) == 0,
	   "cycle: A holds lock %s and waits on %s", l, g);
	b = CTL_SPAWN("--name", "cycB", "--sem", s, "--", goroctl, "lock", l, "--", "true");
	ok(b > 0 && harness_wait_stat(c, "primitives.waiters", waiters0 + 2, WAIT_MS) == 0,
	   "cycle: B holds semaphore %s and waits for lock %s", s, l);
	cc = CTL_SPAWN("--name", "cycC", "--wg", g, "--sem", s, "--", "true");
	ok(cc > 0 && ps_becomes(cc, "\"state\":\"queued\"", "\"blocked_on\":\"sem cyc.S\""),
	   "cycle: C holds a count of %s (spawn --wg) and is queued for %s", g, s);
	wa.task = a;
	wb.task = b;
	wc.task = cc;
	is(never_leak(c, &any, NLOOK * 250), 0,
	   "cycle: while the test (a live client) holds a count of %s, nothing is definite", g);

	is(goro_wg_done(c, g, NULL), 0, "cycle: the test lets go of %s: now only C holds it", g);
	t0 = harness_now_ms();
	ma = wait_leak(c, &wa, FIND_MS, &fid);
	mb = wait_leak(c, &wb, FIND_MS, &fid);
	mc = wait_leak(c, &wc, FIND_MS, &fid);
	ok(ma >= 0, "cycle: A (waits on %s, which C holds) is definite", g);
	ok(mb >= 0, "cycle: B (waits for %s, which A holds) is definite", l);
	ok(mc >= 0, "cycle: C (waits for %s, which B holds) is definite", s);
	if (ma >= 0 && mb >= 0 && mc >= 0)
		cmp_ok(harness_now_ms() - t0 - POLL_MS, <=, flag_limit(),
		       "cycle: all three found within %lld ms of the cycle closing",
		       (long long)flag_limit());
	ok(stats_agree("cycle"), "cycle: stats' leaks counts agree with the list");
	is(CTL(out, "leaks"), 1, "cycle: goroctl leaks exits 1");
	snprintf(text, sizeof text, "task %" PRIu64, cc);
	ok(strstr(out, text) != NULL, "cycle: and lists %s", text);

	/* C killed while queued: its count of G is done, A's wait returns, A
	 * ends and lets go of L, B gets it and ends. */
	ok(kill_task(cc), "cycle: kill C");
	is(end_state(a, NULL), GORO_TASK_EXITED, "cycle: A then ends");
	is(end_state(b, NULL), GORO_TASK_EXITED, "cycle: and B");
	ok(wait_no_leak(c, &wa, FIND_MS) == 0 && wait_no_leak(c, &wb, FIND_MS) == 0 &&
	   wait_no_leak(c, &wc, FIND_MS) == 0, "cycle: the three findings go away");
}

static void test_dead(void)
{
	const char *g = "dead.wg";
	struct want w = { "definite", 0, { "waits on", g } };
	goro_client *c2;
	struct goro_outcome o = { 0 };
	uint64_t id, fid = 0;
	int64_t ms;

	if (goro_connect(h.sock, &c2) < 0)
		bail_out("connect");
	is(goro_wg_add(c2, g, 1, 0, NULL), 0, "dead: a session adds 1 to %s, without a lease",
	   g);
	goro_close(c2);
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0, "dead: and ends");
	id = CTL_SPAWN("--", goroctl, "wg", "wait", g);
	ok(id > 0 && harness_wait_waiters(c, g, 1, WAIT_MS) == 0, "dead: a task waits on %s", g);
	w.task = id;
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "dead: it is definite: only a dead session held the count");
	if (ms >= 0)
		cmp_ok(ms, <=, flag_limit(), "dead: found %lld ms after the wait reached gorod",
		       (long long)ms);
	ok(fid && leak_json_has(fid, "\"kind\":\"definite\"", NULL), "dead: its JSON");

	is(goro_wg_done(c, g, NULL), 0, "dead: the test says done for it");
	is(end_state(id, &o), GORO_TASK_EXITED, "dead: the task's wait returns");
	is(o.code, 0, "dead: and it exits 0");
	goro_outcome_clear(&o);
	is(wait_no_leak(c, &w, FIND_MS), 0, "dead: the finding goes away");
}

/* ---- on_leak kill ------------------------------------------------------------------ */

static void test_onleak(void)
{
	const char *argv[] = { goroctl, "--socket", h.sock, "wg", "wait", "onleak.lib", NULL };
	struct goro_spawn sp = { .argv = argv, .wg = "onleak.lib", .on_leak_kill = true };
	struct want w = { "definite", 0, { NULL } };
	struct goro_outcome o = { 0 };
	char out[4096], ids[32];
	uint64_t id, id2 = 0;
	int r;

	id = CTL_SPAWN("--on-leak", "kill", "--wg", "onleak.ctl", "--", goroctl, "wg", "wait",
		       "onleak.ctl");
	ok(id > 0, "onleak: spawn --on-leak kill a task that waits on its own group");
	r = CTL(out, "--json", "wait", u64s(id, ids, sizeof ids));
	is(r, 125, "onleak: goroctl wait exits 125: the leak monitor killed it");
	ok(strstr(out, "\"state\":\"leaked\"") && strstr(out, "\"status\":125"),
	   "onleak: its outcome says state leaked, status 125");
	if (!strstr(out, "\"state\":\"leaked\""))
		diag("goroctl --json wait: %s", out);
	is(end_state(id, &o), GORO_TASK_LEAKED, "onleak: libgoro: GORO_TASK_LEAKED");
	is_str(goro_task_state_name(o.state), "leaked", "onleak: named leaked");
	is(goro_outcome_status(&o), 125, "onleak: goro_outcome_status: 125");
	goro_outcome_clear(&o);
	ok(harness_ps_has(c, id, "\"state\":\"leaked\"", NULL), "onleak: ps --all shows it leaked");

	is(goro_spawn(c, &sp, &id2), 0, "onleak: goro_spawn with on_leak_kill");
	is(end_state(id2, &o), GORO_TASK_LEAKED, "onleak: that one ends leaked too");
	goro_outcome_clear(&o);
	w.task = id;
	is(wait_no_leak(c, &w, FIND_MS), 0, "onleak: no finding stays about the first");
	w.task = id2;
	is(wait_no_leak(c, &w, FIND_MS), 0, "onleak: nor about the second");
}

/* ---- left-behind ------------------------------------------------------------------- */

static void test_leftbehind(void)
{
	struct want w = { "left-behind", 0, { "still run" } };
	struct goro_logs lr = { 0 };
	char text[256];
	uint64_t id, fid = 0;
	long pid = 0;
	int64_t ms;

	id = CTL_SPAWN("--", "sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!; exit 0");
	ok(id > 0, "leftbehind: a task that leaves a sleep behind");
	is(end_state(id, NULL), GORO_TASK_EXITED, "leftbehind: it ends (its main process exits)");
	if (goro_logs_read(c, id, GORO_STDOUT, 0, WAIT_MS, &lr) == 0 && lr.len > 0 &&
	    lr.len < sizeof text) {
		memcpy(text, lr.data, lr.len);
		text[lr.len] = '\0';
		pid = strtol(text, NULL, 10);
	}
	free(lr.data);
	ok(pid > 1 && kill((pid_t)pid, 0) == 0, "leftbehind: the sleep (pid %ld) still runs",
	   pid);
	w.task = id;
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "leftbehind: a left-behind finding about task %" PRIu64 " says it "
	   "still runs", id);
	if (ms >= 0)
		cmp_ok(ms, <=, flag_limit(), "leftbehind: found %lld ms after the task ended",
		       (long long)ms);
	ok(fid && leak_json_has(fid, "\"kind\":\"left-behind\"", NULL), "leftbehind: its JSON");
	if (pid > 1)
		kill((pid_t)pid, SIGKILL);
	is(wait_no_leak(c, &w, FIND_MS), 0, "leftbehind: killed, the finding goes away");
}

/* ---- suspected ------------------------------------------------------------------- */

/* A gorod of its own with --leak-after 1s: a silent task without
 * --expect is suspected, one with a long --expect is not. */
static void suspected_default(void)
{
	const char *args[] = { "--leak-after", "1s", NULL };
	const char *argv[] = { "sleep", "100", NULL };
	struct goro_spawn quiet = { .argv = argv }, expected = { .argv = argv,
								 .expect_ms = 3600000 };
	struct want w = { "suspected", 0, { "past its expected" } };
	uint64_t id = 0, id2 = 0, fid = 0;
	struct harness h2;
	goro_client *c2;
	int64_t t0, ms;

	if (harness_start(&h2, args, 30000) < 0 || goro_connect(h2.sock, &c2) < 0) {
		ok(0, "suspected: a gorod with --leak-after 1s starts");
		harness_cleanup(&h2);
		return;
	}
	t0 = harness_now_ms();
	is(goro_spawn(c2, &quiet, &id), 0, "suspected: --leak-after 1s: a silent sleep");
	is(goro_spawn(c2, &expected, &id2), 0, "suspected: and one with expect 1h");
	w.task = id;
	ms = wait_leak(c2, &w, FIND_MS, &fid);
	ok(ms >= 0, "suspected: the first is suspected: past its expected lifetime");
	if (ms >= 0)
		cmp_ok(harness_now_ms() - t0, <=, 1000 + 2 * 250 + flag_limit(),
		       "suspected: found %lld ms after its spawn (1 s expected)",
		       (long long)(harness_now_ms() - t0));
	w.task = id2;
	is(count_leaks(c2, &w, NULL, false), 0, "suspected: the one expected for 1h is not");
	is(goro_kill(c2, id, SIGKILL), 0, "suspected: kill them");
	is(goro_kill(c2, id2, SIGKILL), 0, "suspected: both");
	w.task = 0;
	is(wait_no_leak(c2, &w, FIND_MS), 0, "suspected: the finding goes away");
	goro_close(c2);
	is(harness_stop(&h2, 30000), 0, "suspected: that gorod stops cleanly");
	harness_cleanup(&h2);
}

static void test_suspected(void)
{
	struct want w = { "suspected", 0, { "past its expected" } }, wbusy = w;
	uint64_t quiet, busy, fid = 0;
	int64_t ms;

	quiet = CTL_SPAWN("--expect", "500ms", "--", "sleep", "100");
	busy = CTL_SPAWN("--expect", "500ms", "--", "sh", "-c",
			 "while :; do echo still busy; sleep 0.05; done");
	ok(quiet > 0 && busy > 0, "suspected: two tasks with --expect 500ms");
	w.task = quiet;
	wbusy.task = busy;
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "suspected: the silent sleep is suspected: past its expected lifetime");
	if (ms >= 0)
		cmp_ok(ms, <=, 500 + 2 * 250 + flag_limit(),
		       "suspected: found %lld ms after the spawn", (long long)ms);
	ok(fid && leak_json_has(fid, "\"kind\":\"suspected\"", NULL), "suspected: its JSON");
	is(never_leak(c, &wbusy, NLOOK * 250), 0,
	   "suspected: the one that keeps writing is not (it makes progress)");
	ok(kill_task(quiet) && kill_task(busy), "suspected: kill both");
	is(wait_no_leak(c, &w, FIND_MS), 0, "suspected: the finding goes away");
	suspected_default();
}

/* ---- hog ----------------------------------------------------------------------------- */

static void test_hog(void)
{
	const char *args[] = { "1500", NULL };
	struct goro_spawn sp = { .func = "sample.hog", .args = args };
	struct want w = { "hog", 0, { "without yielding" } };
	struct goro_outcome o = { 0 };
	uint64_t id = 0, fid = 0;
	int64_t ms;

	is(goro_spawn(c, &sp, &id), 0, "hog: sample.hog 1500: spins 1.5 s without yielding");
	w.task = id;
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "hog: a hog finding about task %" PRIu64 " says it ran without yielding",
	   id);
	ok(fid && leak_json_has(fid, "\"kind\":\"hog\"", NULL), "hog: its JSON");
	is(end_state(id, &o), GORO_TASK_EXITED, "hog: the function returns");
	goro_outcome_clear(&o);
}

/* ---- no false positive ------------------------------------------------------------- */

struct replies {
	long ok, failed;
	int first_err;
};

static void on_reply(void *arg, int err, const struct goro_reply *r)
{
	struct replies *rp = arg;

	if (err == 0) {
		rp->ok++;
		return;
	}
	if (rp->failed++ == 0)
		rp->first_err = err;
}

/* Runs goro_process() on each of cs[0..n) until rp has `want` replies, at
 * most timeout_ms. */
static bool pump_all(goro_client **cs, int n, struct replies *rp, long want, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (rp->ok + rp->failed < want && harness_now_ms() < deadline) {
		for (int i = 0; i < n; i++) {
			int e = goro_flush(cs[i]);

			if ((e < 0 && e != -EAGAIN) || goro_process(cs[i]) < 0)
				return false;
		}
		usleep(1000);
	}
	return rp->ok + rp->failed >= want;
}

/* Starts goroctl --socket h.sock lock NAME -- sh -c 'echo locked; exec
 * sleep 60', in a process group of its own, and waits until it says it
 * holds the lock. Returns its pid (and its group's). */
static pid_t start_holder(const char *name)
{
	const char *argv[] = { goroctl, "--socket", h.sock, "lock", name, "--", "sh", "-c",
			       "echo locked; exec sleep 60", NULL };
	char line[8] = "";
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		bail_out("pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		bail_out("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		setpgid(0, 0);
		dup2(null, STDIN_FILENO);
		dup2(p[1], STDOUT_FILENO);
		execv(goroctl, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	if (harness_read_full(p[0], line, 7, WAIT_MS) < 0 || strcmp(line, "locked\n") != 0)
		diag("goroctl lock %s: said '%s'", name, line);
	close(p[0]);
	return pid;
}

static void test_nofalse(void)
{
	enum { NCONN = 10 };
	const char *g = "nfp.wg", *m = "nfp.mutex";
	long nw = tap_scale(10000, 1000), nl = tap_scale(1000, 200);
	struct want any = { "definite", 0, { NULL } };
	goro_client *wc[NCONN], **lc = calloc((size_t)nl, sizeof *lc);
	struct replies waits = { 0 }, locks = { 0 };
	long long waiters0 = 0;
	int st = -1, seen;
	bool all;
	pid_t holder;

	if (!lc)
		bail_out("out of memory");
	harness_stat(c, "primitives.waiters", &waiters0);
	for (int i = 0; i < NCONN; i++)
		if (goro_connect(h.sock, &wc[i]) < 0)
			bail_out("connect");
	for (long i = 0; i < nl; i++)
		if (goro_connect(h.sock, &lc[i]) < 0)
			bail_out("connect (%ld sessions)", i);
	is(goro_wg_add(c, g, 1, 0, NULL), 0, "nofalse: the test (a live session) holds %s", g);
	for (long i = 0; i < nw; i++)
		if (goro_send_wg_wait(wc[i % NCONN], g, -1, on_reply, &waits) < 0)
			bail_out("wg.wait %ld: %s", i, goro_last_error(wc[i % NCONN]));
	for (int i = 0; i < NCONN; i++)
		goro_flush(wc[i]);
	ok(harness_wait_waiters(c, g, (int)nw, WAIT_MS) == 0, "nofalse: %ld goroutines wait on %s",
	   nw, g);

	holder = start_holder(m);
	for (long i = 0; i < nl; i++) {
		if (goro_send_mutex_lock(lc[i], m, GORO_READ, -1, 0, on_reply, &locks) < 0)
			bail_out("mutex.lock %ld: %s", i, goro_last_error(lc[i]));
		goro_flush(lc[i]);
	}
	is(harness_wait_stat(c, "primitives.waiters", waiters0 + nw + nl, WAIT_MS), 0,
	   "nofalse: and %ld wait for %s, which a sleeping goroctl lock holds", nl, m);
	is(waits.ok + waits.failed + locks.ok + locks.failed, 0, "nofalse: none answered yet");

	seen = never_leak(c, &any, NLOOK * 250);
	is(seen, 0, "nofalse: no definite finding over %d looks of the monitor", NLOOK);

	is(goro_wg_done(c, g, NULL), 0, "nofalse: the test says done");
	all = pump_all(wc, NCONN, &waits, nw, WAIT_MS);
	ok(all && waits.ok == nw, "nofalse: all %ld waits return (%ld ok, %ld failed: %s)", nw,
	   waits.ok, waits.failed, waits.failed ? goro_err_name(waits.first_err) : "-");
	/* The sleep ends, then goroctl unlocks. (To the group: a goroctl built
	 * with TSan does not pass the signal on while it waits for its child.) */
	kill(-holder, SIGTERM);
	is(harness_wait_pid(holder, WAIT_MS, &st), 0, "nofalse: the holder ends");
	all = pump_all(lc, (int)nl, &locks, nl, WAIT_MS);
	ok(all && locks.ok == nl, "nofalse: all %ld readers get the lock (%ld ok, %ld failed: "
	   "%s)", nl, locks.ok, locks.failed, locks.failed ? goro_err_name(locks.first_err) : "-");
	for (int i = 0; i < NCONN; i++)
		goro_close(wc[i]);
	for (long i = 0; i < nl; i++)
		goro_close(lc[i]); /* lets go of its read grant */
	free(lc);
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0, "nofalse: the sessions end");
}

/* ---- lock order ------------------------------------------------------------------- */

/* On cl: lock first, then second, then unlock both. */
static bool lock_pair(goro_client *cl, const char *first, const char *second)
{
	return goro_mutex_lock(cl, first, GORO_WRITE, WAIT_MS, 0, NULL) == 0 &&
	       goro_mutex_lock(cl, second, GORO_WRITE, WAIT_MS, 0, NULL) == 0 &&
	       goro_mutex_unlock(cl, second, 0, 0) == 0 &&
	       goro_mutex_unlock(cl, first, 0, 0) == 0;
}

static void test_lockorder(void)
{
	const char *a = "lo.alpha", *b = "lo.beta";
	struct want w = { "lock-order", 0, { "both orders", a, b } };
	goro_client *x, *y;
	uint64_t fid = 0;
	int64_t ms;

	if (goro_connect(h.sock, &x) < 0 || goro_connect(h.sock, &y) < 0)
		bail_out("connect");
	ok(lock_pair(x, a, b), "lockorder: session X locks %s, then %s, and unlocks", a, b);
	ok(lock_pair(y, b, a), "lockorder: then session Y locks %s, then %s, and unlocks", b, a);
	ms = wait_leak(c, &w, FIND_MS, &fid);
	ok(ms >= 0, "lockorder: a lock-order finding names %s and %s, taken in both orders", a,
	   b);
	if (ms >= 0)
		cmp_ok(ms, <=, flag_limit(), "lockorder: found %lld ms after Y's locks",
		       (long long)ms);
	ok(fid && leak_json_has(fid, "\"kind\":\"lock-order\"", "\"history\":[\""),
	   "lockorder: its JSON, with a history");
	goro_close(x);
	goro_close(y);
	is(harness_wait_stat(c, "sessions_count", 1, WAIT_MS), 0, "lockorder: the sessions end");
}

/* ---- main -------------------------------------------------------------------------- */

/* The parts, in order; `test_leaks NAME..` runs only those named. */
static const struct harness_part parts[] = {
	{ "none", test_none },		   { "own", test_own },
	{ "cycle", test_cycle },	   { "dead", test_dead },
	{ "onleak", test_onleak },	   { "leftbehind", test_leftbehind },
	{ "suspected", test_suspected },   { "hog", test_hog },
	{ "nofalse", test_nofalse },	   { "lockorder", test_lockorder },
};

int main(int argc, char **argv)
{
	const char *sample = getenv("GORO_SAMPLE_MODULE");
	char dir[64];
	const char *args[] = { "--module-dir", dir, NULL };

	goroctl = getenv("GOROCTL");
	if (!goroctl || !*goroctl || !sample || !*sample)
		bail_out("$GOROCTL and $GORO_SAMPLE_MODULE must name what to test");
	signal(SIGPIPE, SIG_IGN);
	unsetenv("GOROD_SOCKET");
	unsetenv("GOROD_LOCKS_HELD");
	harness_module_dir(dir, sizeof dir, sample, "sample.so");
	harness_run_parts(&h, &c, args, "with the sample module", parts,
			  sizeof parts / sizeof parts[0], argc, argv, WAIT_MS);
	harness_cleanup(&h);
	harness_module_dir_remove(dir, "sample.so");
	return done_testing();
}
