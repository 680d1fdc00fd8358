/* sample.c: a gorod module for the tests, and an example of goro/module.h.
 *
 * It uses every call of the module API, each where a test can see what it
 * did (tests/test_tasks_func.c runs them):
 *
 *   sample.work MS CHILDREN NAME
 *	sleeps MS (goro_sleep); takes the write lock NAME (goro_task_lock);
 *	starts CHILDREN child goroutines (goro_go) counted by the WaitGroup
 *	"NAME.wg" (goro_task_wg_add), each of which yields, prints
 *	"child I" to the task's stdout and says done; one more child writes a
 *	byte into a pipe that the task waits on (goro_wait_fd); the task
 *	waits for them all (goro_task_wg_wait), takes and gives back a unit of
 *	the semaphore "NAME.sem" (capacity 2), unlocks NAME, yields and
 *	returns {id, token, children, byte, sem_token} (goro_task_result).
 *   sample.values
 *	returns a map with one value of every msgpack type.
 *   sample.fail MESSAGE
 *	fails with EIO and MESSAGE (goro_task_fail); EINVAL when MESSAGE is
 *	not a string.
 *   sample.hold NAME
 *	write-locks NAME and returns holding it: gorod releases it, and its
 *	next holder is told the owner died.
 *   sample.block
 *	waits for ever on a pipe nobody writes (goro_wait_fd), until the task
 *	is killed or times out; then checks goro_task_cancelled() and prints
 *	to stderr.
 *   sample.selftest
 *	returns what goro_func_register() said at load time to a built-in's
 *	name, a name taken twice and an empty name, and goro_module_api().
 *   sample.hog MS
 *	keeps its worker thread busy for MS milliseconds without ever
 *	yielding (what module.h says not to do), then prints "hogged MS ms":
 *	the leak monitor's hog finding (tests/test_leaks.c).
 *
 * Every function checks its arguments' types first and refuses bad ones
 * with EINVAL: a test sends wrong ones on purpose.
 *
 * Children: a child goroutine may outlive the function's stack frame by a
 * few instructions (it returns after its last wg done), so what children
 * share with the function is one heap block with a reference count: the
 * last of them to let go frees it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "goro/module.h"

#define MAX_CHILDREN 64
#define WAIT_MS 30000 /* no wait in here should come near it */

int goro_module_init(struct goro_module *m);

/* What goro_func_register() said to names it must refuse (sample.selftest). */
static int reg_builtin = 1, reg_twice = 1, reg_empty = 1;

/* ---- values ---------------------------------------------------------------------- */

static struct goro_value v_int(int64_t i)
{
	return (struct goro_value){ .type = GORO_INT, .i = i };
}

static struct goro_value v_str(const char *s)
{
	return (struct goro_value){ .type = GORO_STR, .len = strlen(s), .str = s };
}

/* Whether v is an integer in lo..hi. */
static bool int_in(const struct goro_value *v, int64_t lo, int64_t hi)
{
	return v->type == GORO_INT && v->i >= lo && v->i <= hi;
}

static const char *type_name(enum goro_type t)
{
	static const char *const names[] = { "nil", "bool", "int", "uint", "float",
					     "str", "bin", "array", "map" };

	return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* ---- sample.work ------------------------------------------------------------------ */

struct work;

struct child {
	struct work *w;
	int index;
};

/* Shared by sample.work and its children; freed by the last reference. */
struct work {
	atomic_int refs;
	struct goro_task *t;
	char wg[300];
	int pipe_w;            /* the write end the pipe child writes to */
	atomic_int child_errors; /* calls that failed in children */
	struct child kids[MAX_CHILDREN];
};

static void work_unref(struct work *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		if (w->pipe_w >= 0)
			close(w->pipe_w);
		free(w);
	}
}

/* A child: yields, sleeps a little, prints its line, says done. */
static void work_child(void *arg)
{
	struct child *k = arg;
	struct work *w = k->w;

	if (goro_yield() < 0 || goro_sleep(1) < 0 ||
	    goro_task_print(w->t, false, "child %d\n", k->index) < 0)
		atomic_fetch_add(&w->child_errors, 1);
	if (goro_task_wg_done(w->t, w->wg) < 0)
		atomic_fetch_add(&w->child_errors, 1);
	work_unref(w);
}

/* The pipe child: after a little while, one byte for the task's wait_fd. */
static void pipe_child(void *arg)
{
	struct work *w = arg;

	if (goro_sleep(5) < 0 || write(w->pipe_w, "x", 1) != 1)
		atomic_fetch_add(&w->child_errors, 1);
	if (goro_task_wg_done(w->t, w->wg) < 0)
		atomic_fetch_add(&w->child_errors, 1);
	work_unref(w);
}

/* Starts n children and the pipe child; waits for a byte on the pipe and
 * for them all. Returns the byte (> 0) or a negative code, said why. */
static int work_children(struct goro_task *t, struct work *w, int n)
{
	int p[2], r, i;
	bool started = false;
	char byte = 0;

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return goro_task_fail(t, -errno, "sample.work: pipe: %s", strerror(errno));
	w->pipe_w = p[1];
	r = goro_task_wg_add(t, w->wg, n + 1);
	if (r < 0) {
		close(p[0]);
		return goro_task_fail(t, r, "sample.work: wg add %s: %d", w->wg, r);
	}
	for (i = 0; i < n; i++) {
		w->kids[i] = (struct child){ .w = w, .index = i };
		atomic_fetch_add(&w->refs, 1);
		if (goro_go(t, work_child, &w->kids[i]) < 0) {
			atomic_fetch_sub(&w->refs, 1);
			break;
		}
	}
	if (i == n) {
		atomic_fetch_add(&w->refs, 1);
		if (goro_go(t, pipe_child, w) == 0)
			started = true;
		else
			atomic_fetch_sub(&w->refs, 1);
	}
	if (!started) {
		/* What never started says done for itself. */
		for (int j = i; j <= n; j++)
			goro_task_wg_done(t, w->wg);
		close(p[0]);
		goro_task_wg_wait(t, w->wg, WAIT_MS);
		return goro_task_fail(t, -ENOMEM, "sample.work: goro_go failed");
	}
	r = goro_wait_fd(p[0], POLLIN, WAIT_MS);
	if (r > 0 && read(p[0], &byte, 1) != 1)
		r = -EIO;
	close(p[0]);
	if (r < 0) {
		goro_task_wg_wait(t, w->wg, WAIT_MS);
		return goro_task_fail(t, r, "sample.work: waiting for the pipe: %d", r);
	}
	r = goro_task_wg_wait(t, w->wg, WAIT_MS);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: wg wait %s: %d", w->wg, r);
	if (atomic_load(&w->child_errors))
		return goro_task_fail(t, -EIO, "sample.work: %d calls failed in children",
				      atomic_load(&w->child_errors));
	return byte;
}

/* Returns {id, token, children, byte, sem_token} as the result. */
static int work_result(struct goro_task *t, uint64_t token, int n, char byte,
		       uint64_t sem_token)
{
	char b[2] = { byte, '\0' };
	struct goro_value kv[10] = {
		v_str("id"),	     v_int((int64_t)goro_task_id(t)),
		v_str("token"),	     v_int((int64_t)token),
		v_str("children"),   v_int(n),
		v_str("byte"),	     v_str(b),
		v_str("sem_token"),  v_int((int64_t)sem_token),
	};
	struct goro_value map = { .type = GORO_MAP, .len = 5, .items = kv };

	return goro_task_result(t, &map);
}

/* Takes a unit of the semaphore NAME.sem (capacity 2) and gives it back;
 * its token goes to *token. Returns 0 or a code, said why. */
static int work_sem(struct goro_task *t, const char *name, uint64_t *token)
{
	char sem[300];
	int r;

	snprintf(sem, sizeof sem, "%s.sem", name);
	r = goro_task_sem_acquire(t, sem, 2, 1, WAIT_MS, token);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: sem %s: %d", sem, r);
	r = goro_task_sem_release(t, sem, *token);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: sem release %s: %d", sem, r);
	return 0;
}

static int sample_work(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	char name[256];
	uint64_t token = 0, sem_token = 0;
	struct work *w;
	int n, r, byte;

	if (nargs != 3 || !int_in(&args[0], 0, 60000) || !int_in(&args[1], 0, MAX_CHILDREN) ||
	    args[2].type != GORO_STR || args[2].len < 1 || args[2].len > 200)
		return goro_task_fail(t, -EINVAL, "sample.work wants MS (0..60000), CHILDREN "
				      "(0..%d) and a NAME (1..200 bytes); got %zu args, the "
				      "first a%s %s", MAX_CHILDREN, nargs,
				      nargs && args[0].type == GORO_INT ? "n" : "",
				      nargs ? type_name(args[0].type) : "nothing");
	n = (int)args[1].i;
	snprintf(name, sizeof name, "%.*s", (int)args[2].len, args[2].str);
	r = goro_sleep(args[0].i);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: sleep: %d", r);
	r = goro_task_lock(t, name, false, -1, &token);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: lock %s: %d", name, r);
	w = calloc(1, sizeof *w);
	if (!w)
		return goro_task_fail(t, -ENOMEM, "sample.work: out of memory");
	atomic_init(&w->refs, 1);
	w->t = t;
	w->pipe_w = -1;
	snprintf(w->wg, sizeof w->wg, "%s.wg", name);
	byte = work_children(t, w, n);
	work_unref(w);
	if (byte < 0)
		return byte;
	r = work_sem(t, name, &sem_token);
	if (r < 0)
		return r;
	r = goro_task_unlock(t, name, token);
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: unlock %s: %d", name, r);
	r = goro_yield();
	if (r < 0)
		return goro_task_fail(t, r, "sample.work: yield: %d", r);
	goro_task_print(t, false, "done\n");
	goro_task_print(t, true, "sample.work: %d children\n", n);
	return work_result(t, token, n, (char)byte, sem_token);
}

/* ---- the small ones ----------------------------------------------------------------- */

static int sample_values(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	static const struct goro_value pair[2] = { { .type = GORO_INT, .i = 1 },
						   { .type = GORO_INT, .i = 2 } };
	static const struct goro_value kv[2] = { { .type = GORO_STR, .len = 1, .str = "k" },
						 { .type = GORO_STR, .len = 1, .str = "v" } };
	struct goro_value items[18] = {
		v_str("nil"),	{ .type = GORO_NIL },
		v_str("bool"),	{ .type = GORO_BOOL, .b = true },
		v_str("int"),	v_int(-5),
		v_str("uint"),	{ .type = GORO_UINT, .u = UINT64_MAX },
		v_str("float"), { .type = GORO_FLOAT, .f = 1.5 },
		v_str("str"),	v_str("s"),
		v_str("bin"),	{ .type = GORO_BIN, .len = 1, .str = "b" },
		v_str("array"), { .type = GORO_ARRAY, .len = 2, .items = pair },
		v_str("map"),	{ .type = GORO_MAP, .len = 1, .items = kv },
	};
	struct goro_value map = { .type = GORO_MAP, .len = 9, .items = items };

	if (nargs != 0)
		return goro_task_fail(t, -EINVAL, "sample.values takes no arguments, not %zu",
				      nargs);
	return goro_task_result(t, &map);
}

static int sample_fail(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	if (nargs != 1 || args[0].type != GORO_STR)
		return goro_task_fail(t, -EINVAL, "sample.fail wants one string, not %s",
				      nargs ? type_name(args[0].type) : "nothing");
	return goro_task_fail(t, -EIO, "%.*s", (int)args[0].len, args[0].str);
}

static int sample_hold(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	char name[256];
	uint64_t token;
	int r;

	if (nargs != 1 || args[0].type != GORO_STR || args[0].len < 1 || args[0].len > 255)
		return goro_task_fail(t, -EINVAL, "sample.hold wants a NAME");
	snprintf(name, sizeof name, "%.*s", (int)args[0].len, args[0].str);
	r = goro_task_lock(t, name, false, WAIT_MS, &token);
	if (r < 0)
		return goro_task_fail(t, r, "sample.hold: lock %s: %d", name, r);
	/* Returns holding it, on purpose. */
	return 0;
}

static int sample_block(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	int p[2], r;

	if (nargs != 0)
		return goro_task_fail(t, -EINVAL, "sample.block takes no arguments");
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return goro_task_fail(t, -errno, "sample.block: pipe: %s", strerror(errno));
	goro_task_print(t, false, "blocking\n");
	r = goro_wait_fd(p[0], POLLIN, -1);
	close(p[0]);
	close(p[1]);
	if (r == -ECANCELED && goro_task_cancelled(t))
		goro_task_print(t, true, "cancelled\n");
	return r < 0 ? goro_task_fail(t, r, "sample.block: wait_fd: %d", r)
		     : goro_task_fail(t, -EIO, "sample.block: woke up with %d", r);
}

static int sample_selftest(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	struct goro_value kv[8] = {
		v_str("builtin"), v_int(reg_builtin),
		v_str("twice"),	  v_int(reg_twice),
		v_str("empty"),	  v_int(reg_empty),
		v_str("api"),	  v_int(goro_module_api()),
	};
	struct goro_value map = { .type = GORO_MAP, .len = 4, .items = kv };

	if (nargs != 0)
		return goro_task_fail(t, -EINVAL, "sample.selftest takes no arguments");
	return goro_task_result(t, &map);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sample_hog(struct goro_task *t, const struct goro_value *args, size_t nargs)
{
	volatile uint64_t spins = 0;
	int64_t end;

	if (nargs != 1 || !int_in(&args[0], 1, 60000))
		return goro_task_fail(t, -EINVAL, "sample.hog wants MS (1..60000)");
	end = mono_ms() + args[0].i;
	while (mono_ms() < end) /* no goro_yield(): on purpose */
		spins++;
	goro_task_print(t, false, "hogged %lld ms\n", (long long)args[0].i);
	return 0;
}

/* ---- loading ------------------------------------------------------------------------ */

int goro_module_init(struct goro_module *m)
{
	static const struct {
		const char *name;
		goro_func fn;
	} funcs[] = {
		{ "sample.work", sample_work },	    { "sample.values", sample_values },
		{ "sample.fail", sample_fail },	    { "sample.hold", sample_hold },
		{ "sample.block", sample_block },   { "sample.selftest", sample_selftest },
		{ "sample.hog", sample_hog },
	};

	if (goro_module_api() != GORO_MODULE_API)
		return -EINVAL;
	for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++) {
		int r = goro_func_register(m, funcs[i].name, funcs[i].fn);

		if (r < 0)
			return r;
	}
	/* Each of these must be refused (sample.selftest tells the test). */
	reg_builtin = goro_func_register(m, "sleep", sample_values);
	reg_twice = goro_func_register(m, "sample.work", sample_values);
	reg_empty = goro_func_register(m, "", sample_values);
	return 0;
}
