/* goroctl_tasks.c: goroctl's task commands (goroctl.h).
 *
 *   spawn [OPTIONS] -- CMD [ARG..]     goro_spawn(): prints the id
 *   spawn [OPTIONS] --func NAME [ARG..]
 *   spawn [OPTIONS] --lines [-- PREFIX..]
 *   wait ID.. | wait --wg NAME          exits with the task's status
 *   kill [-s SIG] ID.., pause ID.., resume ID..
 *   logs ID [--stderr] [--follow]      the task's output, raw
 *   ps [--all]                          a table, or the JSON array
 *   leaks                               the leak monitor's findings; exits
 *                                       1 when there are any
 *
 * A spawned command gets what it would get typed in goroctl's shell: the
 * whole environment and the working directory, so `goroctl spawn -- make`
 * behaves like `make`; only its stdin differs (--stdin, or empty).
 *
 * spawn --lines and wait ID.. pipeline their requests on one connection
 * (goro_send_*): up to WINDOW in flight (gorod allows 1024 per session),
 * written in batches, so N tasks cost a few writes and reads, not N round
 * trips. Replies may come in any order; each request has a slot in a ring
 * of WINDOW, and the results are reported in input order from the oldest
 * slot as soon as it is answered. A slot is reused only once its result
 * was reported, so a new request waits for the oldest, not just for any
 * reply: the order of the output never needs more than the ring.
 *
 * wait --wg sends its wg.wait without blocking and polls the connection
 * with a timeout, asking wg.status (on the same connection: replies come
 * out of order) every PROGRESS_MS to redraw a progress line on a
 * terminal. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "goroctl.h"

#define WINDOW 512        /* requests in flight on one connection */
#define BATCH 64          /* spawns queued before they are written */
#define PROGRESS_MS 250   /* wait --wg: how often the progress line is redrawn */
#define FOLLOW_WAIT_MS 1000 /* logs --follow: one logs.read waits this long */
#define STDIN_MAX (1u << 20) /* gorod's largest message; the spawn must fit in it */
#define LINE_MAX_BYTES (1u << 20)

extern char **environ;

/* ---- options ---------------------------------------------------------------------------- */

/* A duration option's value into *ms. */
static int opt_duration(struct ctl *x, const char *opt, const char *value, int *ms)
{
	const char *why;

	if (ctl_parse_duration(value, ms, &why) < 0)
		return ctl_usage_error(x, "bad duration '%s' for %s: %s; write it like 250ms, "
				       "2s, 1m or 1h (a plain number is seconds)", value, opt, why);
	return -1;
}

/* A task id: a whole number from 1. */
static int parse_id(const char *s, uint64_t *id)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v == 0)
		return -1;
	*id = v;
	return 0;
}

/* --after ID[,ID..], added to what earlier --after gave. */
static int opt_after(struct ctl *x, const char *value)
{
	struct ctl_task_opts *t = &x->t;
	const char *p = value;
	char buf[32];

	do {
		size_t n = strcspn(p, ",");

		if (n >= sizeof buf || (memcpy(buf, p, n), buf[n] = '\0',
					parse_id(buf, &t->after[t->nafter])) < 0)
			return ctl_usage_error(x, "--after takes task ids (whole numbers from 1) "
					       "like 12 or 12,13; not '%s'", value);
		if (++t->nafter == CTL_MAX_AFTER && p[n])
			return ctl_usage_error(x, "--after: at most %d tasks", CTL_MAX_AFTER);
		p += n;
	} while (*p++ == ',');
	return -1;
}

/* --sem NAME or NAME=CAP. The name is copied, as it must end before '='. */
static int opt_sem(struct ctl *x, const char *value)
{
	static char name[256]; /* the longest name gorod takes, and its NUL */
	const char *eq = strrchr(value, '=');
	size_t n = strlen(value);
	int64_t cap;

	if (eq && eq[1] && strspn(eq + 1, "0123456789") == strlen(eq + 1)) {
		if (ctl_parse_int(eq + 1, 1, INT32_MAX, &cap) < 0)
			return ctl_usage_error(x, "--sem NAME=CAP: CAP is 1 to %d", INT32_MAX);
		n = (size_t)(eq - value);
		x->t.sem_capacity = cap;
	}
	if (n == 0 || n >= sizeof name)
		return ctl_usage_error(x, "--sem: a name is 1 to %d bytes long",
				       (int)sizeof name - 1);
	memcpy(name, value, n);
	name[n] = '\0';
	x->t.sem = name;
	return -1;
}

/* --output-max BYTES, with an optional k, M or G (powers of 1024). */
static int opt_size(struct ctl *x, const char *value, int64_t *bytes)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = isdigit((unsigned char)*value) ? strtoull(value, &end, 10) : 0;
	if (v && (*end == 'k' || *end == 'K'))
		shift = 10, end++;
	else if (v && (*end == 'm' || *end == 'M'))
		shift = 20, end++;
	else if (v && (*end == 'g' || *end == 'G'))
		shift = 30, end++;
	if (v == 0 || errno || *end || v > (unsigned long long)INT64_MAX >> shift)
		return ctl_usage_error(x, "--output-max takes a number of bytes from 1, like "
				       "65536, 64k or 16M; not '%s'", value);
	*bytes = (int64_t)(v << shift);
	return -1;
}

/* A signal's number, from a number or a name (TERM, SIGTERM, term). */
int ctl_signal_number(const char *s)
{
	int64_t n;

	if (ctl_parse_int(s, 1, 64, &n) == 0)
		return (int)n;
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (int sig = 1; sig < 65; sig++) {
		const char *name = sigabbrev_np(sig);

		if (name && strcasecmp(s, name) == 0)
			return sig;
	}
	return -1;
}

/* SIGTERM's "TERM", or "SIG34" for one without a name. */
static const char *signal_name(int sig, char *buf, size_t size)
{
	const char *name = sigabbrev_np(sig);

	if (name)
		snprintf(buf, size, "SIG%s", name);
	else
		snprintf(buf, size, "signal %d", sig);
	return buf;
}

int ctl_task_opt(struct ctl *x, unsigned bit, const char *value)
{
	struct ctl_task_opts *t = &x->t;

	switch (bit) {
	case OPT_NAME: t->name = value; break;
	case OPT_WG: t->wg = value; break;
	case OPT_LOCK: t->lock = value; break;
	case OPT_RLOCK: t->rlock = value; break;
	case OPT_KEY: t->key = value; break;
	case OPT_CWD: t->cwd = value; break;
	case OPT_FUNC: t->func = value; break;
	case OPT_STDIN: t->stdin_path = value; break;
	case OPT_SEM: return opt_sem(x, value);
	case OPT_AFTER: return opt_after(x, value);
	case OPT_GRACE: return opt_duration(x, "--grace", value, &t->grace_ms);
	case OPT_EXPECT: return opt_duration(x, "--expect", value, &t->expect_ms);
	case OPT_OUTPUT_MAX: return opt_size(x, value, &t->output_max);
	case OPT_ON_LEAK:
		if (strcmp(value, "kill") != 0 && strcmp(value, "flag") != 0)
			return ctl_usage_error(x, "--on-leak is flag or kill, not '%s'", value);
		t->on_leak_kill = value[0] == 'k';
		break;
	case OPT_SCOPE:
		if (strcmp(value, "session") != 0 && strcmp(value, "detached") != 0)
			return ctl_usage_error(x, "--scope is session or detached, not '%s'", value);
		t->session_scope = value[0] == 's';
		break;
	case OPT_SIGNAL:
		if ((t->sig = ctl_signal_number(value)) < 0)
			return ctl_usage_error(x, "unknown signal '%s': give a number (1 to 64) or "
					       "a name like TERM, KILL, HUP, INT, USR1", value);
		break;
	}
	return -1;
}

/* ---- errors ----------------------------------------------------------------------------- */

static bool is_task_command(const struct ctl *x)
{
	int (*run)(struct ctl *) = x->cmd->run;

	return run == ctl_spawn || run == ctl_wait || run == ctl_kill || run == ctl_pause ||
	       run == ctl_resume || run == ctl_logs || run == ctl_ps;
}

bool ctl_task_hint(const struct ctl *x, int err, const char *name)
{
	bool spawn = x->cmd->run == ctl_spawn, wg = x->t.wg && x->cmd->run == ctl_wait;

	if (!is_task_command(x))
		return false;
	switch (err) {
	case -ENOENT:
		if (spawn) /* an --after id or a --func: gorod's sentence says which */
			return true;
		fprintf(stderr, "goroctl: hint: gorod keeps a finished task for a while (up to "
			"an hour, 10,000 tasks); `goroctl ps --all` lists those it keeps\n");
		return true;
	case -ESRCH:
		fprintf(stderr, "goroctl: hint: the task is not running (it ended, or has not "
			"started); `goroctl wait %s` tells how it ended\n", name);
		return true;
	case -EPERM:
		if (spawn)
			fprintf(stderr, "goroctl: hint: a gorod that does not run as root runs "
				"commands only for its own user\n");
		else
			fprintf(stderr, "goroctl: hint: only the task's owner or root may do "
				"this\n");
		return true;
	case -EBUSY:
		if (!spawn || !*name)
			return false;
		fprintf(stderr, "goroctl: hint: another task with key %s is queued or running; "
			"wait for it, or use another --key\n", name);
		return true;
	case -ETIMEDOUT:
		if (wg)
			fprintf(stderr, "goroctl: hint: the counter of %s did not reach 0 in time; "
				"wait longer (--timeout), or see its tasks with `goroctl ps`\n", name);
		else
			fprintf(stderr, "goroctl: hint: the task had not ended in time; wait longer "
				"(--timeout), or see it with `goroctl ps`\n");
		return true;
	case -EMSGSIZE:
		fprintf(stderr, "goroctl: hint: a spawn must fit in one message to gorod (1 MiB): "
			"give the task a file to read instead of --stdin, or a smaller "
			"environment (--clean-env)\n");
		return true;
	case -EAGAIN:
		fprintf(stderr, "goroctl: hint: too many requests in flight on one connection\n");
		return true;
	}
	return false;
}

/* ---- outcomes --------------------------------------------------------------------------- */

/* How the task ended, for a person: "exited with code 3". */
static const char *describe(const struct goro_outcome *o, char *buf, size_t size)
{
	char sig[32];

	switch (o->state) {
	case GORO_TASK_EXITED:
		snprintf(buf, size, "exited with code %d", o->code);
		break;
	case GORO_TASK_SIGNALED:
		snprintf(buf, size, "was killed by %s", signal_name(o->signal, sig, sizeof sig));
		break;
	case GORO_TASK_KILLED:
		if (o->signal)
			snprintf(buf, size, "was killed with %s (goroctl kill, or its session "
				 "ended)", signal_name(o->signal, sig, sizeof sig));
		else
			snprintf(buf, size, "was cancelled (goroctl kill, or its session ended)");
		break;
	case GORO_TASK_TIMEOUT:
		snprintf(buf, size, "ran past its --timeout and was stopped (%s)",
			 o->signal ? signal_name(o->signal, sig, sizeof sig) : "cancelled");
		break;
	case GORO_TASK_FAILED:
		snprintf(buf, size, "%s: %s", o->func ? "failed" : "could not start",
			 *o->message ? o->message : goro_strerror(o->error));
		break;
	case GORO_TASK_LOST:
		snprintf(buf, size, "was lost: %s",
			 *o->message ? o->message : goro_strerror(o->error));
		break;
	case GORO_TASK_LEAKED:
		snprintf(buf, size, "was killed by the leak monitor (--on-leak kill): it was "
			 "blocked on something nothing alive could release; gorod's log says "
			 "what");
		break;
	default:
		snprintf(buf, size, "is %s", goro_task_state_name(o->state));
	}
	return buf;
}

/* One line on stderr for a task that did not succeed. */
static void report_failure(const char *who, const struct goro_outcome *o)
{
	char how[400];

	fprintf(stderr, "goroctl: %s %s", who, describe(o, how, sizeof how));
	if (!o->func && o->stderr_bytes > 0)
		fprintf(stderr, " (its stderr: goroctl logs --stderr %" PRIu64 ")", o->id);
	fputc('\n', stderr);
}

/* The outcome as one JSON object (PROTOCOL.md's wait, plus its shell
 * status), without a newline. */
static void print_outcome_json(const struct goro_outcome *o)
{
	printf("{\"id\":%" PRIu64 ",\"state\":\"%s\",\"kind\":\"%s\",\"status\":%d",
	       o->id, goro_task_state_name(o->state), o->func ? "func" : "exec",
	       goro_outcome_status(o));
	if (o->state == GORO_TASK_EXITED)
		printf(",\"code\":%d", o->code);
	if (o->signal)
		printf(",\"signal\":%d", o->signal);
	if (o->state == GORO_TASK_FAILED || o->state == GORO_TASK_LOST) {
		printf(",\"error\":[");
		ctl_json_str(stdout, goro_err_name(o->error));
		putchar(',');
		ctl_json_str(stdout, o->message);
		putchar(']');
	}
	if (o->result_json)
		printf(",\"result\":%s", o->result_json);
	if (o->pid)
		printf(",\"pid\":%d", o->pid);
	printf(",\"started_ms\":%" PRId64 ",\"ended_ms\":%" PRId64 ",\"stdout_bytes\":%" PRIu64
	       ",\"stderr_bytes\":%" PRIu64 ",\"stdout_cut\":%" PRIu64 ",\"stderr_cut\":%" PRIu64
	       "}", o->started_ms, o->ended_ms, o->stdout_bytes, o->stderr_bytes,
	       o->stdout_cut, o->stderr_cut);
}

/* Reports a task's outcome (a line on stderr unless it succeeded; with
 * --json the object) and returns its shell status. */
static int report_outcome(const struct ctl *x, const struct goro_outcome *o)
{
	char who[48];
	int status = goro_outcome_status(o);

	snprintf(who, sizeof who, "task %" PRIu64, o->id);
	if (status != 0)
		report_failure(who, o);
	if (x->json) {
		print_outcome_json(o);
		putchar('\n');
	}
	return status;
}

/* Reports that the request about task id failed with err (message msg):
 * a line on stderr with a hint, and with --json {"id", "error",
 * "message"}. Returns the exit code. */
static int report_error(const struct ctl *x, const char *what, uint64_t id, int err,
			const char *msg)
{
	char name[32];

	snprintf(name, sizeof name, "%" PRIu64, id);
	fprintf(stderr, "goroctl: %s %s: %s\n", what, name, *msg ? msg : goro_strerror(err));
	if (!ctl_task_hint(x, err, name) && err == -ECONNRESET)
		fprintf(stderr, "goroctl: hint: did gorod stop or restart?\n");
	if (x->json) {
		printf("{\"id\":%s,\"error\":", name);
		ctl_json_str(stdout, goro_err_name(err));
		fputs(",\"message\":", stdout);
		ctl_json_str(stdout, *msg ? msg : goro_strerror(err));
		puts("}");
	}
	return ctl_exit_code(err);
}

/* ---- spawn ------------------------------------------------------------------------------ */

/* What a spawn's spec points to, owned here. */
struct spawn_mem {
	const char **env; /* the array only; its strings are environ's */
	char *cwd;
	char *stdin_data;
	const char **args; /* func: the array only */
	char sockvar[300]; /* GOROD_SOCKET=... */
};

static void spawn_mem_free(struct spawn_mem *m)
{
	free(m->env);
	free(m->cwd);
	free(m->stdin_data);
	free(m->args);
}

/* The environment a command gets: goroctl's, with GOROD_SOCKET set to
 * --socket if it was given, so that a goroctl inside the task reaches the
 * same gorod. Entries without '=' are left out. Returns 0 or -ENOMEM. */
static int task_env(const struct ctl *x, struct spawn_mem *m)
{
	size_t n = 0, k = 0;

	while (environ[n])
		n++;
	m->env = malloc((n + 2) * sizeof *m->env);
	if (!m->env)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *e = environ[i];

		if (!strchr(e, '=') || e[0] == '=' ||
		    (x->socket && strncmp(e, "GOROD_SOCKET=", 13) == 0))
			continue;
		m->env[k++] = e;
	}
	if (x->socket) {
		snprintf(m->sockvar, sizeof m->sockvar, "GOROD_SOCKET=%s", x->socket);
		m->env[k++] = m->sockvar;
	}
	m->env[k] = NULL;
	return 0;
}

/* Reads all of fd, up to STDIN_MAX bytes, into *data and *len. Returns 0,
 * -EFBIG when there is more, or -errno. */
static int read_all(int fd, char **data, size_t *len)
{
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap), *p;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			if (cap > STDIN_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			if (!(p = realloc(buf, cap))) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;

			free(buf);
			return e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > STDIN_MAX) {
		free(buf);
		return -EFBIG;
	}
	*data = buf;
	*len = n;
	return 0;
}

/* --stdin FILE (or '-') into the spec. Returns -1 to go on, or an exit code. */
static int load_stdin(const struct ctl *x, struct goro_spawn *sp, struct spawn_mem *m)
{
	const char *path = x->t.stdin_path;
	int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	int err;

	if (fd < 0) {
		fprintf(stderr, "goroctl: --stdin %s: %s\n", path, strerror(errno));
		return EXIT_FAILED;
	}
	err = read_all(fd, &m->stdin_data, &sp->stdin_len);
	if (fd != STDIN_FILENO)
		close(fd);
	if (err == -EFBIG) {
		fprintf(stderr, "goroctl: --stdin %s: more than 1 MiB, which is all one spawn can "
			"carry; give the task a file to read instead\n", path);
		return EXIT_FAILED;
	}
	if (err < 0) {
		fprintf(stderr, "goroctl: --stdin %s: %s\n", path, strerror(-err));
		return EXIT_FAILED;
	}
	sp->stdin_data = m->stdin_data;
	return -1;
}

/* Checks spawn's combination of options and operands. Returns -1 to go
 * on, or EXIT_USAGE. */
static int check_spawn_usage(struct ctl *x)
{
	bool lines = x->given & OPT_LINES, func = x->t.func != NULL;

	if (func && lines)
		return ctl_usage_error(x, "--func and --lines do not go together");
	if (func && (x->given & (OPT_CWD | OPT_CLEAN_ENV | OPT_STDIN)))
		return ctl_usage_error(x, "--cwd, --clean-env and --stdin are for commands, "
				       "not for a --func");
	if (lines && x->nops > 0)
		return ctl_usage_error(x, "with --lines, a PREFIX goes after --: goroctl spawn "
				       "--lines -- %s", x->ops[0]);
	if (lines && x->t.stdin_path && strcmp(x->t.stdin_path, "-") == 0)
		return ctl_usage_error(x, "--lines reads the commands from stdin, so --stdin - "
				       "cannot read it too");
	if (lines && x->t.session_scope)
		return ctl_usage_error(x, "--scope session waits for one task; for many, spawn "
				       "them with --wg NAME and `goroctl wait --wg NAME`");
	if (!func && !lines && x->nops > 0)
		return ctl_usage_error(x, "put -- before the command: goroctl spawn [OPTIONS] -- "
				       "%s ..", x->ops[0]);
	if (!func && !lines && x->nrest == 0)
		return ctl_usage_error(x, "give the command to run after --, or a function with "
				       "--func NAME");
	return -1;
}

/* The spec of what every option says (not argv or func's args). Returns
 * -1 to go on, or an exit code. */
static int build_spec(struct ctl *x, struct goro_spawn *sp, struct spawn_mem *m)
{
	const struct ctl_task_opts *t = &x->t;
	bool exec = !t->func;
	int rc;

	*sp = (struct goro_spawn){
		.name = t->name, .key = t->key, .wg = t->wg, .lock = t->lock,
		.rlock = t->rlock, .sem = t->sem, .sem_capacity = t->sem_capacity,
		.after = t->nafter ? t->after : NULL, .nafter = t->nafter,
		.timeout_ms = x->timeout_ms > 0 ? x->timeout_ms : 0,
		.grace_ms = t->grace_ms, .expect_ms = t->expect_ms,
		.output_max = t->output_max, .session_scope = t->session_scope,
		.on_leak_kill = t->on_leak_kill,
	};
	if (!exec)
		return -1;
	if (t->cwd) {
		sp->cwd = t->cwd;
	} else if (!(m->cwd = getcwd(NULL, 0))) {
		fprintf(stderr, "goroctl: cannot tell the working directory (%s); give the task "
			"one with --cwd DIR\n", strerror(errno));
		return EXIT_FAILED;
	} else {
		sp->cwd = m->cwd;
	}
	if (!(x->given & OPT_CLEAN_ENV)) {
		if (task_env(x, m) < 0) {
			fprintf(stderr, "goroctl: out of memory\n");
			return EXIT_FAILED;
		}
		sp->env = m->env;
	} else {
		static const char *const empty[] = { NULL };
		sp->env = empty; /* an empty environment (NULL would be gorod's PATH) */
	}
	if (t->stdin_path && (rc = load_stdin(x, sp, m)) >= 0)
		return rc;
	return -1;
}

/* A func's arguments: the operands, then what followed `--`. */
static int func_args(struct ctl *x, struct goro_spawn *sp, struct spawn_mem *m)
{
	int n = x->nops + x->nrest, k = 0;

	sp->func = x->t.func;
	if (n == 0)
		return -1;
	m->args = malloc(((size_t)n + 1) * sizeof *m->args);
	if (!m->args) {
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	for (int i = 0; i < x->nops; i++)
		m->args[k++] = x->ops[i];
	for (int i = 0; i < x->nrest; i++)
		m->args[k++] = x->rest[i];
	m->args[k] = NULL;
	sp->args = m->args;
	return -1;
}

/* --scope session: waits for the task, as the session's end would kill
 * it, and exits with its status. */
static int wait_session_task(struct ctl *x, uint64_t id)
{
	struct goro_outcome o;
	char name[32];
	int err, status;

	err = goro_wait(x->c, id, -1, &o);
	snprintf(name, sizeof name, "wait %" PRIu64, id);
	if (err < 0)
		return ctl_fail(x, err, name, name + 5);
	status = report_outcome(x, &o);
	goro_outcome_clear(&o);
	return status;
}

static int spawn_lines(struct ctl *x, const struct goro_spawn *tmpl);

int ctl_spawn(struct ctl *x)
{
	struct spawn_mem m = { 0 };
	struct goro_spawn sp;
	uint64_t id;
	int rc, err;

	if ((rc = check_spawn_usage(x)) >= 0)
		return rc;
	if ((rc = build_spec(x, &sp, &m)) >= 0)
		goto out;
	if (x->t.func && (rc = func_args(x, &sp, &m)) >= 0)
		goto out;
	if ((rc = ctl_connect(x)))
		goto out;
	if (x->given & OPT_LINES) {
		rc = spawn_lines(x, &sp);
		goto out;
	}
	if (!x->t.func)
		sp.argv = (const char *const *)x->rest;
	err = goro_spawn(x->c, &sp, &id);
	if (err < 0) {
		rc = ctl_fail(x, err, "spawn", x->t.key ? x->t.key : "");
		goto out;
	}
	if (x->json)
		printf("{\"id\":%" PRIu64 "}\n", id);
	else
		printf("%" PRIu64 "\n", id);
	rc = EXIT_OK;
	if (x->t.session_scope) {
		fflush(stdout);
		rc = wait_session_task(x, id);
	}
out:
	spawn_mem_free(&m);
	return rc;
}

/* ---- spawn --lines ---------------------------------------------------------------------- */

struct lines_run;

/* One spawn of the ring: its line, and once answered its id or error. */
struct lines_slot {
	struct lines_run *run;
	unsigned long line;
	bool done;
	uint64_t id;
	int err;
	char msg[256];
};

struct lines_run {
	struct ctl *x;
	struct goro_spawn sp;    /* the options; sp.argv is argv */
	const char **argv;       /* PREFIX.. LINE, or /bin/sh -c LINE */
	size_t line_at;          /* where the line goes in argv */
	struct lines_slot slot[WINDOW];
	uint64_t sent, reported; /* requests queued; results reported, in order */
	unsigned long lineno;    /* lines read */
	unsigned long failed;
};

static void on_spawned(void *arg, int err, const struct goro_reply *r)
{
	struct lines_slot *s = arg;

	s->done = true;
	s->err = err;
	if (err < 0)
		snprintf(s->msg, sizeof s->msg, "%s", r->message ? r->message : "");
	else
		s->id = r->id;
}

/* Reports the answered results at the head of the ring, in input order. */
static void lines_report(struct lines_run *run)
{
	while (run->reported < run->sent) {
		struct lines_slot *s = &run->slot[run->reported % WINDOW];

		if (!s->done)
			break;
		if (s->err < 0) {
			run->failed++;
			fprintf(stderr, "goroctl: line %lu: spawn failed: %s\n", s->line,
				*s->msg ? s->msg : goro_strerror(s->err));
			if (run->x->json) {
				printf("{\"line\":%lu,\"error\":", s->line);
				ctl_json_str(stdout, goro_err_name(s->err));
				fputs(",\"message\":", stdout);
				ctl_json_str(stdout, s->msg);
				puts("}");
			}
		} else if (run->x->json) {
			printf("{\"line\":%lu,\"id\":%" PRIu64 "}\n", s->line, s->id);
		} else {
			printf("%" PRIu64 "\n", s->id);
		}
		s->done = false;
		run->reported++;
	}
}

/* Waits for replies and reports them until no more than `keep` requests
 * are unreported. Returns 0 or the connection's error. */
static int lines_drain(struct lines_run *run, uint64_t keep)
{
	for (lines_report(run); run->sent - run->reported > keep; lines_report(run)) {
		int n = ctl_pump(run->x, -1); /* the head slot is in flight: a reply will come */

		if (n < 0)
			return n;
	}
	return 0;
}

/* Queues the spawn of one line (a NUL-terminated string). Returns 0 (a
 * line that could not be queued was reported), or the connection's error. */
static int lines_spawn(struct lines_run *run, const char *line)
{
	struct lines_slot *s;
	int err;

	run->lineno++;
	if (!*line)
		return 0;
	if ((err = lines_drain(run, WINDOW - 1)) < 0)
		return err;
	s = &run->slot[run->sent % WINDOW];
	*s = (struct lines_slot){ .run = run, .line = run->lineno };
	run->argv[run->line_at] = line;
	err = goro_send_spawn(run->x->c, &run->sp, on_spawned, s);
	if (err == -EINVAL || err == -EMSGSIZE) {
		run->failed++;
		fprintf(stderr, "goroctl: line %lu: %s\n", run->lineno, goro_last_error(run->x->c));
		return 0;
	}
	if (err < 0)
		return err;
	if (++run->sent % BATCH == 0) {
		err = goro_flush(run->x->c);
		if (err < 0 && err != -EAGAIN)
			return err;
	}
	return 0;
}

/* Spawns the complete lines in buf[0, *len), moving what is left of an
 * unfinished line to the front. Returns 0 or the connection's error. */
static int lines_chunk(struct lines_run *run, char *buf, size_t *len)
{
	size_t start = 0;
	char *nl;
	int err;

	while ((nl = memchr(buf + start, '\n', *len - start))) {
		*nl = '\0';
		if ((err = lines_spawn(run, buf + start)) < 0)
			return err;
		start = (size_t)(nl - buf) + 1;
	}
	memmove(buf, buf + start, *len - start);
	*len -= start;
	return 0;
}

/* The argv of every line: PREFIX.. LINE, or /bin/sh -c LINE. */
static int lines_argv(struct lines_run *run)
{
	static const char *const sh[] = { "/bin/sh", "-c" };
	const struct ctl *x = run->x;
	size_t n = x->nrest ? (size_t)x->nrest : 2;

	run->argv = malloc((n + 2) * sizeof *run->argv);
	if (!run->argv)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		run->argv[i] = x->nrest ? x->rest[i] : sh[i];
	run->line_at = n;
	run->argv[n + 1] = NULL;
	run->sp.argv = run->argv;
	return 0;
}

/* Makes room for more of a line that does not fit in *buf yet. Returns
 * 0, or EXIT_FAILED having said why. */
static int lines_grow(struct lines_run *run, char **buf, size_t *cap)
{
	char *p;

	if (*cap > LINE_MAX_BYTES) {
		fprintf(stderr, "goroctl: line %lu is over 1 MiB: no spawn can carry it\n",
			run->lineno + 1);
		return EXIT_FAILED;
	}
	if (!(p = realloc(*buf, *cap * 2))) {
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	*buf = p;
	*cap *= 2;
	return 0;
}

/* Reads stdin, spawning each line as it comes; after each read, writes
 * what is queued and reports what was answered, so that a slow producer
 * (a pipe) gets its tasks started without waiting for the end. Returns 0,
 * the connection's error, or EXIT_FAILED when stdin failed (said). */
static int lines_read(struct lines_run *run)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	int err = 0;

	if (!buf) {
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	while (err == 0) {
		ssize_t r;

		if (len + 1 == cap && (err = lines_grow(run, &buf, &cap)) != 0)
			break;
		r = read(STDIN_FILENO, buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "goroctl: reading stdin: %s\n", strerror(errno));
			err = EXIT_FAILED;
		} else if (r == 0) { /* the end; maybe a last line without its newline */
			buf[len] = '\0';
			err = len ? lines_spawn(run, buf) : 0;
			break;
		} else {
			len += (size_t)r;
			err = lines_chunk(run, buf, &len);
			if (err == 0 && (err = goro_flush(run->x->c)) == -EAGAIN)
				err = 0;
			if (err == 0 && (err = goro_process(run->x->c)) > 0)
				err = 0;
			lines_report(run);
		}
	}
	free(buf);
	return err;
}

/* spawn --lines: tmpl holds the options, with the connection up. */
static int spawn_lines(struct ctl *x, const struct goro_spawn *tmpl)
{
	struct lines_run *run = calloc(1, sizeof *run);
	int err, rc = EXIT_OK;

	if (run) {
		run->x = x;
		run->sp = *tmpl;
	}
	if (!run || lines_argv(run) < 0) {
		free(run);
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	err = lines_read(run);
	if (err >= 0) { /* even after a failed read: report what was spawned */
		int e = lines_drain(run, 0);

		err = e < 0 ? e : err;
	}
	lines_report(run);
	if (err < 0) {
		fprintf(stderr, "goroctl: spawn --lines: %s; lines after %lu were not "
			"spawned\n", goro_last_error(x->c), run->lineno);
		rc = err == -ECONNRESET ? EXIT_FAILED : ctl_exit_code(err);
	} else if (err > 0 || run->failed) {
		rc = EXIT_FAILED;
	}
	if (run->failed)
		fprintf(stderr, "goroctl: %lu of the lines could not be spawned\n", run->failed);
	free(run->argv);
	free(run);
	return rc;
}

/* ---- wait ID.. ---------------------------------------------------------------------------- */

struct wait_run;

struct wait_slot {
	bool done;
	int err;
	char msg[256];
	struct goro_outcome o; /* its result_json is ours */
};

struct wait_run {
	struct ctl *x;
	uint64_t *ids;
	size_t n, sent, reported;
	struct wait_slot slot[WINDOW];
	int rc;        /* the exit code so far */
	bool errored;  /* a wait failed: its code stays the exit code */
};

static void on_waited(void *arg, int err, const struct goro_reply *r)
{
	struct wait_slot *s = arg;

	s->done = true;
	s->err = err;
	if (err < 0) {
		snprintf(s->msg, sizeof s->msg, "%s", r->message ? r->message : "");
		return;
	}
	s->o = *r->outcome;
	if (r->outcome->result_json && !(s->o.result_json = strdup(r->outcome->result_json)))
		s->o.result_json = NULL; /* out of memory: the result is left out */
}

/* Reports the answered waits at the head of the ring, in the order given. */
static void wait_report(struct wait_run *run)
{
	while (run->reported < run->sent) {
		struct wait_slot *s = &run->slot[run->reported % WINDOW];
		int code;

		if (!s->done)
			break;
		if (s->err < 0) {
			code = report_error(run->x, "wait", run->ids[run->reported], s->err, s->msg);
			if (!run->errored)
				run->rc = code;
			run->errored = true;
		} else {
			code = report_outcome(run->x, &s->o);
			goro_outcome_clear(&s->o);
			if (!run->errored)
				run->rc = code;
		}
		s->done = false;
		run->reported++;
	}
}

/* wait ID..: every wait in flight at once (up to WINDOW). */
static int wait_ids(struct ctl *x)
{
	struct wait_run *run = calloc(1, sizeof *run);
	int err = 0, rc;

	if (!run || !(run->ids = calloc((size_t)x->nops, sizeof *run->ids))) {
		free(run);
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	run->x = x;
	run->n = (size_t)x->nops;
	for (size_t i = 0; i < run->n; i++)
		if (parse_id(x->ops[i], &run->ids[i]) < 0) {
			rc = ctl_usage_error(x, "a task id is a whole number from 1, not '%s'",
					     x->ops[i]);
			goto out;
		}
	if ((rc = ctl_connect(x)))
		goto out;
	while (err >= 0 && run->reported < run->n) {
		while (run->sent < run->n && run->sent - run->reported < WINDOW) {
			struct wait_slot *s = &run->slot[run->sent % WINDOW];

			memset(s, 0, sizeof *s);
			err = goro_send_wait(x->c, run->ids[run->sent], x->timeout_ms, on_waited, s);
			if (err < 0)
				break;
			run->sent++;
		}
		if (err >= 0)
			err = ctl_pump(x, -1);
		wait_report(run);
	}
	rc = err < 0 ? ctl_fail(x, err, "wait", "") : run->rc;
out:
	for (size_t i = 0; i < WINDOW; i++)
		goro_outcome_clear(&run->slot[i].o);
	free(run->ids);
	free(run);
	return rc;
}

/* ---- wait --wg ---------------------------------------------------------------------------- */

/* What the replies of wait --wg leave for it. */
struct wg_watch {
	bool done;         /* wg.wait answered */
	int err;
	char msg[256];
	struct goro_wg_status st;   /* wg.wait's round; first_failure's result ours */
	bool asking;       /* a wg.status is in flight */
	bool fresh;        /* now holds an answer not drawn yet */
	struct goro_wg_status now;  /* the last wg.status (first_failure not kept) */
};

static void on_wg_waited(void *arg, int err, const struct goro_reply *r)
{
	struct wg_watch *w = arg;

	w->done = true;
	w->err = err;
	if (err < 0) {
		snprintf(w->msg, sizeof w->msg, "%s", r->message ? r->message : "");
		return;
	}
	w->st = *r->wg;
	if (r->wg->has_failure && r->wg->first_failure.result_json)
		w->st.first_failure.result_json = strdup(r->wg->first_failure.result_json);
}

static void on_wg_status(void *arg, int err, const struct goro_reply *r)
{
	struct wg_watch *w = arg;

	w->asking = false;
	if (err < 0)
		return; /* only the progress line misses it */
	w->now = *r->wg;
	w->now.first_failure.result_json = NULL;
	w->fresh = true;
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The progress line, redrawn in place on stderr (a terminal). */
static void draw_progress(const char *name, const struct goro_wg_status *s)
{
	fprintf(stderr, "\rgoroctl: wg %s: %" PRId64 "/%" PRId64 " done, %" PRId64 " running, %"
		PRId64 " failed (counter %" PRId64 ")\033[K", name, s->done, s->tasks,
		s->running, s->failed, s->count);
}

/* Waits for the group with a progress line: wg.wait in flight, a
 * wg.status every PROGRESS_MS meanwhile. Returns 0 with w filled in, or
 * the connection's error. */
static int watch_wg(struct ctl *x, const char *name, struct wg_watch *w)
{
	int64_t next = now_ms();
	bool drawn = false;
	int err;

	err = goro_send_wg_wait(x->c, name, x->timeout_ms, on_wg_waited, w);
	while (err >= 0 && !w->done) {
		int64_t t = now_ms();

		if (t >= next && !w->asking) {
			err = goro_send_wg_status(x->c, name, on_wg_status, w);
			w->asking = err >= 0;
			next = t + PROGRESS_MS;
		}
		if (err >= 0)
			err = ctl_pump(x, (int)(next > t ? next - t : 0));
		if (w->fresh && !w->done) {
			draw_progress(name, &w->now);
			drawn = true;
			w->fresh = false;
		}
	}
	if (drawn)
		fputs("\r\033[K", stderr);
	return err < 0 ? err : 0;
}

/* wait --wg NAME: returns when the counter is 0, with the round's verdict. */
static int wait_wg(struct ctl *x)
{
	const char *name = x->t.wg;
	struct wg_watch w = { 0 };
	char what[300], how[400];
	int err, rc = EXIT_OK;

	if ((rc = ctl_connect(x)))
		return rc;
	snprintf(what, sizeof what, "wait --wg %s", name);
	if (isatty(STDERR_FILENO) && !x->json) {
		err = watch_wg(x, name, &w);
		if (err == 0 && (err = w.err) < 0)
			return ctl_fail_msg(x, err, what, name, w.msg);
	} else {
		err = goro_wg_wait_status(x->c, name, x->timeout_ms, &w.st);
	}
	if (err < 0)
		return ctl_fail(x, err, what, name);
	if (w.st.failed > 0) {
		rc = w.st.has_failure ? goro_outcome_status(&w.st.first_failure) : EXIT_FAILED;
		rc = rc ? rc : EXIT_FAILED;
		fprintf(stderr, "goroctl: wg %s: %" PRId64 " of %" PRId64 " tasks failed", name,
			w.st.failed, w.st.tasks);
		if (w.st.has_failure)
			fprintf(stderr, "; the first, task %" PRIu64 ", %s", w.st.first_failure.id,
				describe(&w.st.first_failure, how, sizeof how));
		fputc('\n', stderr);
	}
	if (x->json) {
		printf("{\"tasks\":%" PRId64 ",\"done\":%" PRId64 ",\"failed\":%" PRId64
		       ",\"status\":%d", w.st.tasks, w.st.done, w.st.failed, rc);
		if (w.st.has_failure) {
			fputs(",\"first_failure\":", stdout);
			print_outcome_json(&w.st.first_failure);
		}
		puts("}");
	}
	goro_outcome_clear(&w.st.first_failure);
	return rc;
}

int ctl_wait(struct ctl *x)
{
	if (x->t.wg && x->nops > 0)
		return ctl_usage_error(x, "wait for task ids or for --wg NAME, not both");
	if (!x->t.wg && x->nops == 0)
		return ctl_usage_error(x, "give the ids of the tasks to wait for, or --wg NAME");
	return x->t.wg ? wait_wg(x) : wait_ids(x);
}

/* ---- kill, pause, resume -------------------------------------------------------------- */

/* Runs op on each task of ops[first..], reporting each failure. Returns
 * the exit code of the first failure, else EXIT_OK. */
static int each_task(struct ctl *x, int first, const char *what,
		     int (*op)(struct ctl *x, uint64_t id))
{
	int rc = EXIT_OK;

	if (first >= x->nops)
		return ctl_usage_error(x, "give the ids of the tasks to %s", what);
	for (int i = first; i < x->nops; i++) {
		uint64_t id;

		if (parse_id(x->ops[i], &id) < 0)
			return ctl_usage_error(x, "a task id is a whole number from 1, not '%s'",
					       x->ops[i]);
	}
	if ((rc = ctl_connect(x)))
		return rc;
	for (int i = first; i < x->nops; i++) {
		uint64_t id;
		int err, code;

		parse_id(x->ops[i], &id);
		err = op(x, id);
		if (err < 0) {
			code = report_error(x, what, id, err, goro_last_error(x->c));
			rc = rc ? rc : code;
		} else if (x->json) {
			printf("{\"id\":%" PRIu64 "}\n", id);
		}
	}
	return rc;
}

static int op_kill(struct ctl *x, uint64_t id)
{
	return goro_kill(x->c, id, x->t.sig);
}

static int op_pause(struct ctl *x, uint64_t id)
{
	return goro_pause(x->c, id);
}

static int op_resume(struct ctl *x, uint64_t id)
{
	return goro_resume(x->c, id);
}

int ctl_kill(struct ctl *x)
{
	int first = 0;

	/* kill(1)'s -9 and -HUP: operands here (parse_options) */
	if (x->nops > 0 && x->ops[0][0] == '-') {
		if (x->given & OPT_SIGNAL)
			return ctl_usage_error(x, "give the signal once (-s SIG or -N)");
		if ((x->t.sig = ctl_signal_number(x->ops[0] + 1)) < 0)
			return ctl_usage_error(x, "unknown signal '%s'", x->ops[0] + 1);
		first = 1;
	}
	return each_task(x, first, "kill", op_kill);
}

int ctl_pause(struct ctl *x)
{
	return each_task(x, 0, "pause", op_pause);
}

int ctl_resume(struct ctl *x)
{
	return each_task(x, 0, "resume", op_resume);
}

/* ---- logs --------------------------------------------------------------------------------- */

int ctl_logs(struct ctl *x)
{
	enum goro_stream stream = x->given & OPT_STDERR ? GORO_STDERR : GORO_STDOUT;
	const char *sname = stream == GORO_STDERR ? "stderr" : "stdout";
	bool follow = x->given & OPT_FOLLOW;
	uint64_t id, from = 0;
	int rc;

	if (parse_id(x->ops[0], &id) < 0)
		return ctl_usage_error(x, "a task id is a whole number from 1, not '%s'",
				       x->ops[0]);
	if ((rc = ctl_connect(x)))
		return rc;
	for (;;) {
		struct goro_logs l;
		int err = goro_logs_read(x->c, id, stream, from, follow ? FOLLOW_WAIT_MS : 0, &l);

		if (err < 0)
			return report_error(x, "logs", id, err, goro_last_error(x->c));
		if (l.cut)
			fprintf(stderr, "goroctl: %" PRIu64 " earlier bytes of task %" PRIu64 "'s %s "
				"were not kept\n", l.cut, id, sname);
		if (l.len && fwrite(l.data, 1, l.len, stdout) != l.len) {
			free(l.data);
			return EXIT_FAILED; /* main() says why */
		}
		free(l.data);
		if (follow)
			fflush(stdout);
		from = l.next;
		if (l.eof || (!follow && l.len == 0))
			break;
	}
	return EXIT_OK;
}

/* ---- ps ----------------------------------------------------------------------------------- */

/* An age for a person: 850ms, 12s, 3m05s, 2h03m, 4d02h. */
static const char *age_str(int64_t ms, char *buf, size_t size)
{
	int64_t s = ms / 1000;

	if (ms < 1000)
		snprintf(buf, size, "%" PRId64 "ms", ms);
	else if (s < 60)
		snprintf(buf, size, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600, s / 60 % 60);
	else
		snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400, s / 3600 % 24);
	return buf;
}

/* Appends s to the line, quoted as a shell would need it if it must be. */
static void put_word(char *line, size_t size, const char *s)
{
	size_t n = strlen(line);
	bool plain = *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789-_./=:,+@%") == strlen(s);

	if (n && n < size - 1)
		line[n++] = ' ';
	if (plain) {
		snprintf(line + n, size - n, "%s", s);
		return;
	}
	if (n < size - 1)
		line[n++] = '\'';
	for (; *s && n < size - 1; s++) {
		if (*s == '\'') {
			snprintf(line + n, size - n, "'\\''");
			n = strlen(line);
		} else {
			line[n++] = (unsigned char)*s < 0x20 ? '?' : *s;
		}
	}
	if (n < size - 1)
		line[n++] = '\'';
	line[n < size ? n : size - 1] = '\0';
}

/* What the task runs: "name: CMD ARG..", "func NAME". */
static const char *task_what(const struct goro_task_info *t, char *buf, size_t size)
{
	buf[0] = '\0';
	if (t->name)
		snprintf(buf, size, "%s:", t->name);
	if (t->func) {
		put_word(buf, size, "func");
		put_word(buf, size, t->func);
	}
	for (const char *const *a = t->argv; a && *a; a++)
		put_word(buf, size, *a);
	return buf;
}

/* The terminal's width for the last column, or 0 when stdout is not one. */
static int term_width(void)
{
	struct winsize ws;

	if (!isatty(STDOUT_FILENO) || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0)
		return 0;
	return ws.ws_col;
}

/* The table, its columns as wide as their widest cell. */
/* Prints one page of tasks as a table (its header first, when header). */
static void print_tasks(const struct goro_task_info *t, size_t n, bool header)
{
	int wid = 2, wstate = 5, wuid = 3, wage = 3, wblk = 0, width = term_width();
	char buf[32], what[1024];

	for (size_t i = 0; i < n; i++) {
		int k = snprintf(buf, sizeof buf, "%" PRIu64, t[i].id);

		wid = k > wid ? k : wid;
		k = (int)strlen(goro_task_state_name(t[i].state));
		wstate = k > wstate ? k : wstate;
		k = snprintf(buf, sizeof buf, "%" PRIu32, t[i].uid);
		wuid = k > wuid ? k : wuid;
		k = (int)strlen(age_str(t[i].age_ms, buf, sizeof buf));
		wage = k > wage ? k : wage;
		k = t[i].blocked_on ? (int)strlen(t[i].blocked_on) : 0;
		wblk = k > wblk ? (k > 30 ? 30 : k) : wblk;
	}
	if (wblk && wblk < 10)
		wblk = 10;
	if (header) {
		printf("%*s  %-*s  KIND  %*s  %*s  ", wid, "ID", wstate, "STATE", wuid, "UID", wage,
		       "AGE");
		if (wblk)
			printf("%-*s  ", wblk, "BLOCKED ON");
		puts("NAME/COMMAND");
	}
	for (size_t i = 0; i < n; i++) {
		int used = wid + wstate + 6 + wuid + wage + 8 + (wblk ? wblk + 2 : 0);

		printf("%*" PRIu64 "  %-*s  %-4s  %*" PRIu32 "  %*s  ", wid, t[i].id, wstate,
		       goro_task_state_name(t[i].state), t[i].func ? "func" : "exec", wuid,
		       t[i].uid, wage, age_str(t[i].age_ms, buf, sizeof buf));
		if (wblk)
			printf("%-*.*s  ", wblk, wblk, t[i].blocked_on ? t[i].blocked_on : "");
		task_what(&t[i], what, sizeof what);
		if (width > used + 4 && (int)strlen(what) > width - used)
			printf("%.*s..\n", width - used - 2, what);
		else
			puts(what);
	}
}

int ctl_ps(struct ctl *x)
{
	bool all = x->given & OPT_ALL;
	struct goro_task_info *t;
	char *json;
	size_t n;
	int rc, err;

	if ((rc = ctl_connect(x)))
		return rc;
	uint64_t after = 0;
	bool first = true;

	/* gorod answers a page at a time: ask from the last id until empty. */
	if (x->json) {
		fputs("[", stdout);
		for (;;) {
			err = goro_ps_json(x->c, all, after, &json);
			if (err < 0)
				return ctl_fail(x, err, "ps", "");
			size_t len = strlen(json);
			bool empty = len <= 2;
			if (!empty) {
				/* The page's entries, without its brackets. */
				printf("%s%.*s", first ? "" : ",", (int)(len - 2), json + 1);
				first = false;
				/* The last entry: `{"id":` cannot occur inside a
				 * string, where its quotes would be escaped. */
				const char *last = NULL;
				for (const char *p = json; (p = strstr(p, "{\"id\":")); p++)
					last = p;
				long long id;
				if (!last || sscanf(last, "{\"id\":%lld", &id) != 1) {
					free(json);
					return ctl_fail(x, -EPROTO, "ps", "");
				}
				after = (uint64_t)id;
			}
			free(json);
			if (empty)
				break;
		}
		puts("]");
		return EXIT_OK;
	}
	for (;;) {
		err = goro_ps(x->c, all, after, &t, &n);
		if (err < 0)
			return ctl_fail(x, err, "ps", "");
		if (n == 0)
			break;
		print_tasks(t, n, first);
		first = false;
		after = t[n - 1].id;
		free(t);
	}
	if (first)
		print_tasks(NULL, 0, true);
	return EXIT_OK;
}

/* ---- leaks -------------------------------------------------------------------------------- */

/* Who a finding is about, and the process behind it:
 * "task 12 (goroctl[4411], uid 1000)", or "(pid 4411, uid 1000)". */
static const char *leak_who(const struct goro_leak *l, char *buf, size_t size)
{
	int n;

	if (l->task)
		n = snprintf(buf, size, "task %" PRIu64, l->task);
	else if (l->session)
		n = snprintf(buf, size, "session %" PRIu64, l->session);
	else if (l->goroutine)
		n = snprintf(buf, size, "goroutine %" PRIu64, l->goroutine);
	else
		n = snprintf(buf, size, "-");
	if (!l->pid || n < 0 || (size_t)n >= size)
		return buf;
	if (l->comm && *l->comm) /* a process that has ended has no comm left */
		snprintf(buf + n, size - (size_t)n, " (%s[%d], uid %" PRIu32 ")", l->comm, l->pid,
			 l->uid);
	else
		snprintf(buf + n, size - (size_t)n, " (pid %d, uid %" PRIu32 ")", l->pid, l->uid);
	return buf;
}

/* s on stdout, its control characters (from gorod: not ours to trust)
 * shown as '?', then a newline. */
static void put_line(const char *s)
{
	for (; *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	putchar('\n');
}

/* The findings as a table: a line each, the facts behind it indented
 * below (what it is blocked on first). */
static void print_leaks(const struct goro_leak *l, size_t n)
{
	int wid = 2, wkind = 4, wage = 3, wwho = 3;
	char buf[32], who[512];

	for (size_t i = 0; i < n; i++) {
		int k = snprintf(buf, sizeof buf, "%" PRIu64, l[i].id);

		wid = k > wid ? k : wid;
		k = (int)strlen(l[i].kind);
		wkind = k > wkind ? k : wkind;
		k = (int)strlen(age_str(l[i].age_ms, buf, sizeof buf));
		wage = k > wage ? k : wage;
		k = (int)strlen(leak_who(&l[i], who, sizeof who));
		wwho = k > wwho ? k : wwho;
	}
	printf("%*s  %-*s  %*s  %-*s  REASON\n", wid, "ID", wkind, "KIND", wage, "AGE", wwho,
	       "WHO");
	for (size_t i = 0; i < n; i++) {
		printf("%*" PRIu64 "  %-*s  %*s  %-*s  ", wid, l[i].id, wkind, l[i].kind, wage,
		       age_str(l[i].age_ms, buf, sizeof buf), wwho, leak_who(&l[i], who, sizeof who));
		put_line(l[i].reason);
		if (l[i].blocked_on) {
			printf("%*s  blocked on: ", wid, "");
			put_line(l[i].blocked_on);
		}
		for (const char *const *h = l[i].history; h && *h; h++) {
			printf("%*s  ", wid, "");
			put_line(*h);
		}
	}
}

int ctl_leaks(struct ctl *x)
{
	struct goro_leak *l;
	char *json;
	size_t n;
	int rc, err;

	if ((rc = ctl_connect(x)))
		return rc;
	if (x->json) {
		err = goro_leaks_json(x->c, &json);
		if (err < 0)
			return ctl_fail(x, err, "leaks", "");
		puts(json);
		rc = strcmp(json, "[]") != 0 ? EXIT_LEAKS_FOUND : EXIT_OK;
		free(json);
		return rc;
	}
	err = goro_leaks(x->c, &l, &n);
	if (err < 0)
		return ctl_fail(x, err, "leaks", "");
	if (n == 0) {
		puts("no leaks found");
		return EXIT_OK;
	}
	print_leaks(l, n);
	free(l);
	return EXIT_LEAKS_FOUND;
}
