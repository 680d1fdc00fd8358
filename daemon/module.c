/* module.c: loading modules, and the API their functions call
 * (include/goro/module.h).
 *
 * Modules are shared objects loaded at start from --module-dir, in name
 * order, each with RTLD_NOW (a missing symbol fails the load, not a later
 * call) and RTLD_LOCAL. They call back into gorod through the goro_*
 * functions below, which the gorod executable exports (and only those:
 * daemon/module.sym is the linker's dynamic list).
 *
 * A function runs on its task's goroutine; the waiting calls are the
 * runtime's parks, so a worker thread is never held. The named-primitive
 * calls act for the task as a party of its own (a session without a
 * connection, task_party()), so the wait-for graph, owner death and
 * fencing tokens work for tasks exactly as for clients. */
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

/* ---- loading ----------------------------------------------------------------------- */

static int module_load_dir_open(const char *dir);

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_one(const char *path)
{
	struct goro_module m = { .path = path };
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	int (*init)(struct goro_module *);
	int rc;

	if (!h) {
		fprintf(stderr, "gorod: module %s: cannot load it: %s\n", path, dlerror());
		return -ENOEXEC;
	}
	*(void **)&init = dlsym(h, "goro_module_init");
	if (!init) {
		fprintf(stderr, "gorod: module %s: it has no goro_module_init function\n", path);
		dlclose(h);
		return -ENOEXEC;
	}
	rc = init(&m);
	if (rc < 0) {
		fprintf(stderr, "gorod: module %s: goro_module_init failed: %s\n", path,
			proto_strerror(rc));
		return rc; /* not dlclose'd: it may have registered functions */
	}
	fprintf(stderr, "gorod: module %s: %d function%s\n", path, m.registered,
		m.registered == 1 ? "" : "s");
	return 0;
}

int module_load_dir(const char *dir)
{
	int rc = module_load_dir_open(dir);

	func_registry_close();
	return rc;
}

static int module_load_dir_open(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!d) {
		rc = -errno;
		fprintf(stderr, "gorod: --module-dir %s: %s\n", dir, strerror(-rc));
		return rc;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			char **v = realloc(names, cap * sizeof *v);
			if (!v) {
				rc = -ENOMEM;
				break;
			}
			names = v;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc == 0 && n > 1)
		qsort(names, n, sizeof *names, cmp_names);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		rc = load_one(path);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* ---- the task ------------------------------------------------------------------------- */

uint64_t goro_task_id(const struct goro_task *gt)
{
	return gt->t->id;
}

int goro_task_result(struct goro_task *gt, const struct goro_value *v)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct task *t = gt->t;

	if (!v)
		return -EINVAL;
	if (func_value_depth(v) > PROTO_MAX_DEPTH - 4)
		return -E2BIG;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	func_pack_value(&pk, v);
	if (sb.size > PROTO_MAX_MESSAGE / 2) {
		msgpack_sbuffer_destroy(&sb);
		return -E2BIG;
	}
	rt_mutex_lock_nocancel(&names_lock);
	free(t->result);
	/* the sbuffer's data, now owned by t, cut to size (it starts at 8 KiB) */
	t->result = realloc(sb.data, sb.size ? sb.size : 1);
	if (!t->result)
		t->result = sb.data;
	t->result_len = sb.size;
	rt_mutex_unlock(&names_lock);
	return 0;
}

int goro_task_fail(struct goro_task *gt, int code, const char *fmt, ...)
{
	struct task *t = gt->t;
	char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	rt_mutex_lock_nocancel(&names_lock);
	free(t->errmsg);
	t->errmsg = msg;
	rt_mutex_unlock(&names_lock);
	return code < 0 ? code : -EINVAL;
}

int goro_task_print(struct goro_task *gt, bool to_stderr, const char *fmt, ...)
{
	char *msg;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	outbuf_append(gt->t, &gt->t->out[to_stderr], msg, (size_t)n);
	free(msg);
	return 0;
}

bool goro_task_cancelled(const struct goro_task *gt)
{
	return rt_cancelled();
}

/* ---- waiting ------------------------------------------------------------------------------ */

int goro_yield(void)
{
	rt_yield();
	return rt_cancelled() ? -ECANCELED : 0;
}

int goro_sleep(int64_t ms)
{
	if (rt_cancelled())
		return -ECANCELED;
	if (ms <= 0)
		return 0;
	return rt_sleep(rt_deadline_ms(ms));
}

int goro_wait_fd(int fd, int events, int64_t timeout_ms)
{
	short ev = (short)((events & POLLIN ? RT_READ : 0) | (events & POLLOUT ? RT_WRITE : 0));
	int rc;

	if (fd < 0 || !ev)
		return -EINVAL;
	rc = rt_wait_fd(fd, ev, rt_deadline_ms(timeout_ms));
	if (rc < 0)
		return rc;
	return (rc & RT_READ ? POLLIN : 0) | (rc & RT_WRITE ? POLLOUT : 0);
}

int goro_go(struct goro_task *gt, void (*fn)(void *arg), void *arg)
{
	if (!fn)
		return -EINVAL;
	return task_go_child(gt->t, fn, arg);
}

/* ---- named primitives ------------------------------------------------------------------------ */

/* A request of the task's on the calling goroutine's stack. Returns 0, or
 * -EINVAL for a bad name. */
static int task_req(struct req *r, struct task *t, const char *name, int64_t timeout_ms)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > PROTO_MAX_NAME)
		return -EINVAL;
	memset(r, 0, sizeof *r);
	memcpy(r->name, name, len);
	r->a.name = r->name;
	r->a.name_len = len;
	r->a.timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
	r->deadline = rt_deadline_ms(timeout_ms);
	r->g.id = rt_self_id();
	(void)t;
	return 0;
}

/* names_lock held: runs op for r as the task's party, waiting here if it
 * queues. Returns 0 or a negative code. */
static int task_op(struct task *t, struct req *r, int (*op)(struct req *))
{
	int rc;

	if (!(r->s = task_party(t)))
		return -ENOMEM;
	rc = op(r);
	if (rc == 1)
		rc = req_wait_here(r);
	return rc;
}

static int wg_change(struct task *t, const char *name, int64_t delta)
{
	struct req r;
	int64_t count;
	int rc = task_req(&r, t, name, -1);

	if (rc < 0)
		return rc;
	if (delta < -(int64_t)INT32_MAX || delta > INT32_MAX)
		return -ERANGE;
	r.a.delta = delta;
	/* The count is the task's (its party's, lease-bound): if the task
	 * ends before its dones match it, the group's waiters are told the
	 * work was lost, never that it finished. */
	r.a.lease = delta > 0;
	rt_mutex_lock_nocancel(&names_lock);
	struct session *party = task_party(t);
	rc = party ? nwg_add(party, &r.a, &count) : -ENOMEM;
	rt_mutex_unlock(&names_lock);
	return rc;
}

int goro_task_wg_add(struct goro_task *gt, const char *name, int64_t delta)
{
	return wg_change(gt->t, name, delta);
}

int goro_task_wg_done(struct goro_task *gt, const char *name)
{
	return wg_change(gt->t, name, -1);
}

int goro_task_wg_wait(struct goro_task *gt, const char *name, int64_t timeout_ms)
{
	struct req r;
	int rc = task_req(&r, gt->t, name, timeout_ms);

	if (rc < 0)
		return rc;
	rt_mutex_lock_nocancel(&names_lock);
	rc = task_op(gt->t, &r, nwg_wait);
	rt_mutex_unlock(&names_lock);
	return rc;
}

int goro_task_lock(struct goro_task *gt, const char *name, bool read, int64_t timeout_ms,
		   uint64_t *token)
{
	struct req r;
	int rc = task_req(&r, gt->t, name, timeout_ms);

	if (rc < 0)
		return rc;
	r.a.write = !read;
	rt_mutex_lock_nocancel(&names_lock);
	rc = task_op(gt->t, &r, nmutex_lock);
	rt_mutex_unlock(&names_lock);
	if (rc == 0 && token)
		*token = r.nw.token;
	return rc;
}

static int release(struct task *t, const char *name, uint64_t token,
		   int (*op)(struct session *, const struct args *))
{
	struct req r;
	int rc = task_req(&r, t, name, -1);

	if (rc < 0)
		return rc;
	r.a.token = token;
	rt_mutex_lock_nocancel(&names_lock);
	rc = t->party ? op(t->party, &r.a) : GORO_ENOTLOCKED;
	rt_mutex_unlock(&names_lock);
	return rc;
}

int goro_task_unlock(struct goro_task *gt, const char *name, uint64_t token)
{
	return release(gt->t, name, token, nmutex_unlock);
}

int goro_task_sem_acquire(struct goro_task *gt, const char *name, int64_t capacity,
			  int64_t n, int64_t timeout_ms, uint64_t *token)
{
	struct req r;
	int rc = task_req(&r, gt->t, name, timeout_ms);
	int64_t cap;

	if (rc < 0)
		return rc;
	if (capacity < 0 || capacity > INT32_MAX || n < 0 || n > INT32_MAX)
		return -EINVAL;
	r.a.capacity = capacity;
	r.a.n = n ? n : 1;
	rt_mutex_lock_nocancel(&names_lock);
	cap = nsem_capacity(r.a.name, r.a.name_len);
	if ((cap && capacity && capacity != cap) ||
	    r.a.n > (cap ? cap : capacity ? capacity : 1))
		rc = -EINVAL;
	else
		rc = task_op(gt->t, &r, nsem_acquire);
	rt_mutex_unlock(&names_lock);
	if (rc == 0 && token)
		*token = r.nw.token;
	return rc;
}

int goro_task_sem_release(struct goro_task *gt, const char *name, uint64_t token)
{
	return release(gt->t, name, token, nsem_release);
}
