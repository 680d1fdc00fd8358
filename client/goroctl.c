/* goroctl.c: gorod from the shell.
 *
 *   goroctl [--json] [--socket PATH] COMMAND [ARGS]
 *
 * Built on libgoro's public API (goro/goro.h). From proto/ it takes only
 * the method table, whose summaries and signatures the help shows, so the
 * help cannot drift from the protocol.
 *
 * Each command is a row of commands[]: its words, operands, the options it
 * takes and the function that runs it. Options may come anywhere before a
 * `--`; what follows `--` is operands (for lock: the command to run). A
 * negative number is an operand, not an option (`wg add NAME -1`).
 *
 * Output is a line for a person on stdout, or with --json one JSON object.
 * A failure is a sentence on stderr that says what to do, and with --json
 * also {"error": CODE, "message": ...} on stdout. Each kind of outcome has
 * its own exit code (EXIT_*), for scripts. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include "goroctl.h"
#include "methods.h"

static const struct optdef {
	const char *name;
	char letter; /* its short form, or 0 */
	const char *arg; /* its value's name, or NULL */
	unsigned bit;
	const char *help;
} optdefs[] = {
	{ "json", 0, NULL, OPT_JSON, "machine-readable output: JSON on stdout (an object,\n"
	  "or an array for ps and leaks, or one object per line\n"
	  "for wait, kill and spawn --lines)" },
	{ "socket", 0, "PATH", OPT_SOCKET,
	  "gorod's socket; default: $GOROD_SOCKET, else\n"
	  "$XDG_RUNTIME_DIR/gorod.sock (not for root) if it\n"
	  "exists, else /run/gorod/gorod.sock" },
	{ "timeout", 0, "DUR", OPT_TIMEOUT,
	  "give up after DUR, with exit code 4 (lock: 0 is --try,\n"
	  "exit 6); spawn: the task's time limit (then TERM,\n"
	  "and KILL after --grace)" },
	{ "read", 0, NULL, OPT_READ, "lock for reading, shared with other readers" },
	{ "try", 0, NULL, OPT_TRY, "do not wait: exit 6 at once if it is held" },
	{ "name", 0, "N", OPT_NAME, "a label for the task, shown by ps" },
	{ "wg", 0, "NAME", OPT_WG,
	  "spawn: count the task in WaitGroup NAME (add 1 now,\n"
	  "done when it ends); wait: wait for the group" },
	{ "lock", 0, "NAME", OPT_LOCK, "hold mutex NAME (for writing) while the task runs,\n"
	  "requested now, so tasks get it in spawn order" },
	{ "rlock", 0, "NAME", OPT_RLOCK, "hold mutex NAME for reading while the task runs" },
	{ "sem", 0, "NAME[=CAP]", OPT_SEM,
	  "hold a unit of semaphore NAME (CAP units, default 1)\n"
	  "while the task runs: at most CAP such tasks at once" },
	{ "after", 0, "ID", OPT_AFTER,
	  "start once task ID has ended (repeat it, or ID,ID..)" },
	{ "key", 0, "K", OPT_KEY, "refused (exit 6) while another task with key K lives" },
	{ "grace", 0, "DUR", OPT_GRACE, "between TERM and KILL (timeout, kill); default 5s" },
	{ "expect", 0, "DUR", OPT_EXPECT,
	  "how long the task should live; the leak monitor\n"
	  "flags it after that" },
	{ "on-leak", 0, "POLICY", OPT_ON_LEAK,
	  "flag (default): the leak monitor reports the task if it\n"
	  "can never end; kill: also kills it (state leaked)" },
	{ "scope", 0, "SCOPE", OPT_SCOPE,
	  "detached (default): the task outlives goroctl; session:\n"
	  "goroctl waits for it, and gorod kills it if goroctl ends first" },
	{ "cwd", 0, "DIR", OPT_CWD, "the task's working directory; default: goroctl's" },
	{ "clean-env", 0, NULL, OPT_CLEAN_ENV,
	  "start the task with an empty environment, not goroctl's\n"
	  "(the program is still looked up in /usr/local/bin:/usr/bin:/bin)" },
	{ "stdin", 0, "FILE", OPT_STDIN,
	  "give the task FILE's bytes on stdin ('-': goroctl's\n"
	  "stdin; sent with the spawn, under 1 MiB)" },
	{ "output-max", 0, "BYTES", OPT_OUTPUT_MAX,
	  "how much of each of stdout and stderr gorod keeps (the\n"
	  "last BYTES; k, M suffixes); default gorod's (1 MiB)" },
	{ "func", 0, "NAME", OPT_FUNC, "run function NAME registered in gorod, not a command" },
	{ "lines", 0, NULL, OPT_LINES,
	  "spawn one task per line of stdin (see goroctl help spawn)" },
	{ "all", 0, NULL, OPT_ALL, "the finished tasks gorod still keeps too" },
	{ "stderr", 0, NULL, OPT_STDERR, "the task's stderr, not its stdout" },
	{ "follow", 0, NULL, OPT_FOLLOW, "keep writing what the task writes, until it ends" },
	{ "signal", 's', "SIG", OPT_SIGNAL, "the signal: a number or a name (TERM, KILL, HUP..)" },
	{ "help", 'h', NULL, OPT_HELP, "show this help; goroctl help COMMAND for one command" },
	{ "version", 'V', NULL, OPT_VERSION, "print goroctl's version" },
};

/* ---- output ---------------------------------------------------------------------- */

/* s as a JSON string. */
void ctl_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void newline(int depth)
{
	putchar('\n');
	for (int i = 0; i < depth; i++)
		fputs("  ", stdout);
}

/* Where the array starting at p ('[') ends, if it holds no array or
 * object (so that it fits on one line); else NULL. */
static const char *flat_array_end(const char *p)
{
	bool in_str = false;

	for (p++; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
		} else if (*p == '"') {
			in_str = true;
		} else if (*p == '[' || *p == '{') {
			return NULL;
		} else if (*p == ']') {
			return p;
		}
	}
	return NULL;
}

/* Prints JSON text (as libgoro writes it: no spaces) indented for a
 * person: a member per line, flat arrays on one. */
static void print_pretty(const char *s)
{
	const char *flat_end = NULL;
	int depth = 0;
	bool in_str = false;

	for (const char *p = s; *p; p++) {
		if (in_str) {
			putchar(*p);
			if (*p == '\\' && p[1])
				putchar(*++p);
			else if (*p == '"')
				in_str = false;
			continue;
		}
		switch (*p) {
		case '"':
			in_str = true;
			putchar('"');
			break;
		case '{':
		case '[':
			putchar(*p);
			if (p[1] == '}' || p[1] == ']') {
				putchar(*++p);
			} else if (*p == '[' && (flat_end = flat_array_end(p))) {
				/* printed as it comes, commas spaced */
			} else {
				newline(++depth);
			}
			break;
		case ']':
			if (p == flat_end) {
				putchar(']');
				flat_end = NULL;
				break;
			}
			/* fall through */
		case '}':
			newline(--depth);
			putchar(*p);
			break;
		case ',':
			putchar(',');
			if (flat_end)
				putchar(' ');
			else
				newline(depth);
			break;
		case ':':
			fputs(": ", stdout);
			break;
		default:
			putchar(*p);
		}
	}
	putchar('\n');
}

/* ---- errors ------------------------------------------------------------------------ */

int ctl_exit_code(int err)
{
	switch (err) {
	case -ETIMEDOUT: return EXIT_TIMEDOUT;
	case -EDEADLK: return EXIT_DEADLOCK;
	case -EBUSY: return EXIT_BUSY;
	default: return EXIT_FAILED;
	}
}

/* What a person can do about err, met by command x->cmd on name. */
static void print_hint(const struct ctl *x, int err, const char *name)
{
	bool wg = strncmp(x->cmd->words, "wg ", 3) == 0;

	if (ctl_task_hint(x, err, name))
		return;
	switch (err) {
	case -ETIMEDOUT:
		if (wg)
			fprintf(stderr, "goroctl: hint: the counter of %s did not reach 0 in "
				"time; wait longer (--timeout), or see what is counted with "
				"`goroctl stats`\n", name);
		else
			fprintf(stderr, "goroctl: hint: %s was not free in time; wait longer "
				"(--timeout), or see who holds it with `goroctl stats`\n", name);
		break;
	case -EDEADLK:
		fprintf(stderr, "goroctl: hint: waiting would never end (sessions waiting for "
			"each other in a cycle); release what is held first\n");
		break;
	case -EBUSY:
		fprintf(stderr, "goroctl: hint: %s is held by another session; drop --try to "
			"wait for it\n", name);
		break;
	case GORO_ENEGATIVE:
		fprintf(stderr, "goroctl: hint: there were more `wg done` than `wg add` counted; "
			"count the work first with `goroctl wg add %s N`\n", name);
		break;
	case GORO_ELOST:
		fprintf(stderr, "goroctl: hint: a session ended before its `wg done`, so the "
			"work it counted will not finish; start a new round with "
			"`goroctl wg add %s N`\n", name);
		break;
	case -EPERM:
		fprintf(stderr, "goroctl: hint: only gorod's own user or root may do this\n");
		break;
	case -ECONNRESET:
		fprintf(stderr, "goroctl: hint: did gorod stop or restart? Its log: "
			"`journalctl -u gorod` (or `journalctl --user -u gorod`)\n");
		break;
	case -EPROTO:
	case -ENOSYS:
		fprintf(stderr, "goroctl: hint: goroctl and gorod may be different versions "
			"(goroctl --version, gorod --version)\n");
		break;
	}
}

/* {"error": name, "message": msg} on stdout, with --json. */
void ctl_json_error(const struct ctl *x, int err, const char *msg)
{
	if (!x->json)
		return;
	fputs("{\"error\":", stdout);
	ctl_json_str(stdout, goro_err_name(err));
	fputs(",\"message\":", stdout);
	ctl_json_str(stdout, msg);
	fputs("}\n", stdout);
}

/* Reports that `what` failed with err: gorod's sentence (or libgoro's) on
 * stderr with a hint, and the JSON error. Returns the exit code. */
int ctl_fail(const struct ctl *x, int err, const char *what, const char *name)
{
	return ctl_fail_msg(x, err, what, name, x->c ? goro_last_error(x->c) : "");
}

int ctl_fail_msg(const struct ctl *x, int err, const char *what, const char *name,
		 const char *msg)
{
	if (!*msg)
		msg = goro_strerror(err);
	fprintf(stderr, "goroctl: %s: %s\n", what, msg);
	if (err == -EAGAIN && strstr(msg, "-per-user")) /* gorod's per-user limits */
		fprintf(stderr, "goroctl: hint: gorod limits what each user may have at once; "
			"`goroctl stats` (under the limit, or as root) shows every user's "
			"counts and the limits (quota)\n");
	else
		print_hint(x, err, name);
	ctl_json_error(x, err, msg);
	return ctl_exit_code(err);
}

/* ---- parsing ------------------------------------------------------------------------ */

/* "wg wait [--timeout DUR] NAME": the command's words, options, operands. */
static const char *usage_of(const struct command *c, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "%s", c->words);
	int nopts = __builtin_popcount(c->opts);

	if (nopts > 4) /* too many to list on one line: goroctl help COMMAND lists them */
		n += (size_t)snprintf(buf + n, size - n, " [OPTIONS]");
	for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0] && n < size && nopts <= 4; i++)
		if (optdefs[i].bit & c->opts)
			n += (size_t)snprintf(buf + n, size - n, " [--%s%s%s]", optdefs[i].name,
					      optdefs[i].arg ? " " : "",
					      optdefs[i].arg ? optdefs[i].arg : "");
	if (*c->args && n < size)
		snprintf(buf + n, size - n, " %s", c->args);
	return buf;
}

int ctl_usage_error(const struct ctl *x, const char *fmt, ...)
{
	char usage[1024];
	va_list ap;

	fputs("goroctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (x->cmd)
		fprintf(stderr, "Usage: goroctl %s\n", usage_of(x->cmd, usage, sizeof usage));
	fprintf(stderr, "Try `goroctl %s%s--help`.\n",
		x->cmd ? x->cmd->words : "", x->cmd ? " " : "");
	return EXIT_USAGE;
}

/* Parses a duration: a number (digits, maybe a fraction) and a unit, ms,
 * s, m or h; no unit means seconds. Rounded up to whole milliseconds, at
 * most 2^31-1 (what gorod takes). Returns 0, or -1 with *why set. */
int ctl_parse_duration(const char *s, int *ms, const char **why)
{
	static const struct { const char *unit; double ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "", 1000 },
	};
	const char *p = s;
	size_t digits = 0;

	for (; isdigit((unsigned char)*p); p++)
		digits++;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++)
			digits++;
	if (digits == 0) {
		*why = "it must start with a number";
		return -1;
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		double v;

		if (strcmp(p, units[i].unit) != 0)
			continue;
		v = strtod(s, NULL) * units[i].ms;
		if (v > INT_MAX) {
			*why = "it is too long: at most 596h";
			return -1;
		}
		*ms = (int)v;
		if (*ms < v)
			(*ms)++;
		return 0;
	}
	*why = "the unit must be ms, s, m or h";
	return -1;
}

/* A whole decimal number in [min, max]. */
int ctl_parse_int(const char *s, int64_t min, int64_t max, int64_t *v)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || end == s || *end || n < min || n > max || isspace((unsigned char)*s))
		return -1;
	*v = n;
	return 0;
}

/* Whether the argument is a negative number, an operand. */
static bool is_negative_number(const char *a)
{
	return a[0] == '-' && isdigit((unsigned char)a[1]);
}

/* The option a names ("--name", "--name=value", "-h"); *value gets the
 * text after '=', if any. */
static const struct optdef *find_opt(const char *a, const char **value)
{
	*value = NULL;
	for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++) {
		const struct optdef *o = &optdefs[i];
		size_t n = strlen(o->name);

		if (a[1] != '-') {
			if (o->letter && a[1] == o->letter && a[2] == '\0')
				return o;
			continue;
		}
		if (strncmp(a + 2, o->name, n) != 0)
			continue;
		if (a[2 + n] == '=')
			*value = a + 3 + n;
		if (a[2 + n] == '=' || a[2 + n] == '\0')
			return o;
	}
	return NULL;
}

/* Applies option o with its value. Returns -1 to go on, or an exit code. */
static int apply_opt(struct ctl *x, const struct optdef *o, const char *value)
{
	const char *why;

	x->given |= o->bit;
	switch (o->bit) {
	case OPT_JSON:
		x->json = true;
		break;
	case OPT_SOCKET:
		if (!*value)
			return ctl_usage_error(x, "--socket needs a path");
		x->socket = value;
		break;
	case OPT_TIMEOUT:
		if (ctl_parse_duration(value, &x->timeout_ms, &why) < 0)
			return ctl_usage_error(x, "bad duration '%s' for --timeout: %s; write it like "
					   "250ms, 2s, 1m or 1h (a plain number is seconds)",
					   value, why);
		break;
	case OPT_HELP:
	case OPT_VERSION:
	case OPT_READ:
	case OPT_TRY:
		break;
	default:
		return ctl_task_opt(x, o->bit, value);
	}
	return -1;
}

/* ---- connecting ------------------------------------------------------------------------ */

/* What to do about EACCES at connect: the socket's group is who may
 * connect besides its owner (the system gorod's is goro). */
static void access_hint(const char *path)
{
	struct stat st;
	struct group *gr;
	char gname[64];

	if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || !(st.st_mode & S_IWGRP)) {
		fprintf(stderr, "goroctl: hint: the system gorod lets in root and the group "
			"goro (`usermod -aG goro $USER`, then log in again); or run your "
			"own: `systemctl --user start gorod.socket`\n");
		return;
	}
	if ((gr = getgrgid(st.st_gid)))
		snprintf(gname, sizeof gname, "%s", gr->gr_name);
	else
		snprintf(gname, sizeof gname, "%u", (unsigned)st.st_gid);
	fprintf(stderr, "goroctl: hint: %s lets in its owner and the members of group %s "
		"(mode %04o), and you are neither: ask to be added to %s (`usermod -aG %s "
		"$USER`, then log in again), or run your own gorod: `systemctl --user start "
		"gorod.socket`\n", path, gname, (unsigned)(st.st_mode & 07777), gname, gname);
}

/* Connects to gorod. Returns 0, or an exit code having said what is wrong
 * and what to do. */
int ctl_connect(struct ctl *x)
{
	char path[256], msg[512];
	int err = goro_connect(x->socket, &x->c);

	if (err == 0)
		return 0;
	if (goro_socket_path(x->socket, path, sizeof path) < 0)
		snprintf(path, sizeof path, "%s", x->socket ? x->socket : "?");
	if (err == -ENOENT || err == -ECONNREFUSED) {
		snprintf(msg, sizeof msg, "gorod is not running at %s", path);
		if (x->socket)
			fprintf(stderr, "goroctl: %s: start it with `gorod --socket %s`\n", msg, path);
		else if (strcmp(path, "/run/gorod/gorod.sock") == 0)
			fprintf(stderr, "goroctl: %s: start it with `gorod` or, as root, "
				"`systemctl start gorod.socket`\n", msg);
		else
			fprintf(stderr, "goroctl: %s: start it with `gorod` or "
				"`systemctl --user start gorod.socket`\n", msg);
		ctl_json_error(x, err, msg);
		return EXIT_NOT_RUNNING;
	}
	snprintf(msg, sizeof msg, "cannot connect to gorod at %s: %s", path, goro_strerror(err));
	fprintf(stderr, "goroctl: %s\n", msg);
	if (err == -EACCES)
		access_hint(path);
	else if (err == -ENAMETOOLONG)
		fprintf(stderr, "goroctl: hint: a socket path is at most 107 bytes\n");
	ctl_json_error(x, err, msg);
	return EXIT_FAILED;
}

int ctl_pump(struct ctl *x, int timeout_ms)
{
	struct pollfd p = { .fd = goro_fd(x->c), .events = POLLIN };
	int err = goro_flush(x->c);

	if (err < 0 && err != -EAGAIN)
		return err;
	if (goro_want_write(x->c))
		p.events |= POLLOUT;
	if (poll(&p, 1, timeout_ms) < 0)
		return errno == EINTR ? 0 : -errno;
	if (p.revents & POLLOUT && (err = goro_flush(x->c)) < 0 && err != -EAGAIN)
		return err;
	if (p.revents & (POLLIN | POLLHUP | POLLERR))
		return goro_process(x->c);
	return 0;
}

/* ---- commands ------------------------------------------------------------------------------ */

/* Prints a WaitGroup's counter after add or done. */
static void print_count(const struct ctl *x, const char *name, int64_t count)
{
	if (x->json)
		printf("{\"count\":%" PRId64 "}\n", count);
	else
		printf("%s: %" PRId64 "\n", name, count);
}

static int cmd_wg_add(struct ctl *x)
{
	const char *name = x->ops[0];
	int64_t delta = 1, count;
	char what[300];
	int err;

	if (x->nops > 1 && ctl_parse_int(x->ops[1], INT64_MIN, INT64_MAX, &delta) < 0)
		return ctl_usage_error(x, "N must be a whole number, like 3 or -1, not '%s'", x->ops[1]);
	if ((err = ctl_connect(x)))
		return err;
	err = goro_wg_add(x->c, name, delta, 0, &count);
	snprintf(what, sizeof what, "wg add %s", name);
	if (err < 0)
		return ctl_fail(x, err, what, name);
	print_count(x, name, count);
	return EXIT_OK;
}

static int cmd_wg_done(struct ctl *x)
{
	const char *name = x->ops[0];
	int64_t count;
	char what[300];
	int err;

	if ((err = ctl_connect(x)))
		return err;
	err = goro_wg_done(x->c, name, &count);
	snprintf(what, sizeof what, "wg done %s", name);
	if (err < 0)
		return ctl_fail(x, err, what, name);
	print_count(x, name, count);
	return EXIT_OK;
}

static int cmd_wg_wait(struct ctl *x)
{
	const char *name = x->ops[0];
	char what[300];
	int err;

	if ((err = ctl_connect(x)))
		return err;
	err = goro_wg_wait(x->c, name, x->timeout_ms);
	snprintf(what, sizeof what, "wg wait %s", name);
	if (err < 0)
		return ctl_fail(x, err, what, name);
	if (x->json)
		puts("{}");
	return EXIT_OK;
}

/* lock's child while it runs, for forward_signal(). */
static volatile sig_atomic_t child_pid;

/* Passes on to CMD a signal sent to goroctl by a process (kill, systemd),
 * so that goroctl outlives CMD and unlocks after it. One from the
 * terminal (SI_KERNEL) went to CMD too, as it is in the foreground group:
 * goroctl ignores it then, like system(3). */
static void forward_signal(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code <= 0 && child_pid > 0)
		kill(child_pid, sig);
}

/* Locks held by the goroctl processes that run this one, from
 * GOROD_LOCKS_HELD: entries "w:HEX" or "r:HEX" (the name in hex, so any
 * byte fits), separated by commas. A `goroctl lock` inside another's
 * command is a second session to gorod, which cannot know that the outer
 * one waits for it: without this, asking again for the same lock would
 * wait forever. Returns 'w', 'r', or 0. */
static int held_by_parent(const char *name)
{
	const char *env = getenv("GOROD_LOCKS_HELD");
	size_t n = strlen(name);

	for (const char *p = env; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == 2 + 2 * n && p[1] == ':') {
			bool same = true;
			for (size_t i = 0; i < n && same; i++) {
				char hex[3];
				snprintf(hex, sizeof hex, "%02x", (unsigned char)name[i]);
				same = p[2 + 2 * i] == hex[0] && p[3 + 2 * i] == hex[1];
			}
			if (same)
				return p[0];
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

/* Adds NAME (mode w or r) to GOROD_LOCKS_HELD for CMD. */
static void export_held(const char *name, bool write)
{
	const char *old = getenv("GOROD_LOCKS_HELD");
	size_t n = strlen(name), olen = old ? strlen(old) : 0;
	char *v = malloc(olen + 4 + 2 * n);

	if (!v)
		return;
	char *q = v;
	if (olen) {
		memcpy(q, old, olen);
		q += olen;
		*q++ = ',';
	}
	*q++ = write ? 'w' : 'r';
	*q++ = ':';
	for (size_t i = 0; i < n; i++, q += 2)
		snprintf(q, 3, "%02x", (unsigned char)name[i]);
	*q = '\0';
	setenv("GOROD_LOCKS_HELD", v, 1);
	free(v);
}

/* In the child: CMD with GOROD_LOCK_TOKEN, GOROD_LOCKS_HELD (and
 * GOROD_SOCKET, if given), the signal mask goroctl had. Does not return. */
static void exec_cmd(const struct ctl *x, uint64_t token, const sigset_t *mask)
{
	char tok[32];
	int e;

	sigprocmask(SIG_SETMASK, mask, NULL);
	snprintf(tok, sizeof tok, "%" PRIu64, token);
	setenv("GOROD_LOCK_TOKEN", tok, 1);
	export_held(x->ops[0], !(x->given & OPT_READ));
	if (x->socket)
		setenv("GOROD_SOCKET", x->socket, 1);
	execvp(x->argv_cmd[0], x->argv_cmd);
	e = errno;
	fprintf(stderr, "goroctl: cannot run %s: %s\n", x->argv_cmd[0], strerror(e));
	_exit(e == ENOENT ? 127 : 126);
}

/* Runs CMD and waits for it. Returns its wait status, or -errno when it
 * could not be started. */
static int run_cmd(const struct ctl *x, uint64_t token)
{
	static const int sigs[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
	struct sigaction sa = { .sa_sigaction = forward_signal, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct sigaction old[sizeof sigs / sizeof sigs[0]];
	sigset_t block, prev;
	pid_t pid;
	int status, e;

	sigemptyset(&block);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaddset(&block, sigs[i]);
	sigemptyset(&sa.sa_mask);
	fflush(stdout);
	fflush(stderr);
	sigprocmask(SIG_BLOCK, &block, &prev); /* until the handlers know the child */
	pid = fork();
	if (pid == 0)
		exec_cmd(x, token, &prev);
	e = errno;
	if (pid > 0) {
		child_pid = pid;
		for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
			sigaction(sigs[i], &sa, &old[i]);
	}
	sigprocmask(SIG_SETMASK, &prev, NULL);
	if (pid < 0)
		return -e;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	child_pid = 0;
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &old[i], NULL);
	return status;
}

static int cmd_lock(struct ctl *x)
{
	const char *name = x->ops[0];
	struct goro_grant g;
	char what[300];
	int err, status, rc;

	int parent = held_by_parent(name);
	bool read = x->given & OPT_READ;

	if (!(x->given & OPT_TRY) && (parent == 'w' || (parent == 'r' && !read))) {
		fprintf(stderr, "goroctl: lock %s: deadlock: the goroctl that runs this command "
			"holds %s%s; it waits for you to end, you would wait for it\n", name,
			name, parent == 'w' ? "" : " for reading");
		if (x->json)
			puts("{\"error\":\"EDEADLK\",\"message\":\"held by the goroctl that runs this command\"}");
		return EXIT_DEADLOCK;
	}
	if ((err = ctl_connect(x)))
		return err;
	snprintf(what, sizeof what, "lock %s", name);
	/* Sharing a read lock with the goroctl that runs us is fine, unless a
	 * writer waits: then we would queue behind it, and it waits for the
	 * outer goroctl, which waits for us. So do not wait then. */
	err = goro_mutex_lock(x->c, name, read ? GORO_READ : GORO_WRITE, x->timeout_ms,
			      x->given & OPT_TRY || parent ? GORO_TRY : 0, &g);
	if (err == -EBUSY && parent && !(x->given & OPT_TRY)) {
		fprintf(stderr, "goroctl: lock %s: deadlock: a writer waits for %s, which the "
			"goroctl that runs this command holds for reading: you would queue "
			"behind the writer, which waits for it\n", name, name);
		if (x->json)
			puts("{\"error\":\"EDEADLK\",\"message\":\"a writer waits behind the goroctl that runs this command\"}");
		return EXIT_DEADLOCK;
	}
	if (err < 0)
		return ctl_fail(x, err, what, name);
	if (g.owner_died)
		fprintf(stderr, "goroctl: note: the previous holder of %s ended without "
			"unlocking it; what it guards may be half-updated\n", name);

	status = run_cmd(x, g.token);
	if (status < 0) {
		fprintf(stderr, "goroctl: cannot start %s: %s\n", x->argv_cmd[0], strerror(-status));
		rc = EXIT_FAILED;
	} else {
		rc = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	}

	err = goro_mutex_unlock(x->c, name, g.token, 0);
	snprintf(what, sizeof what, "unlock %s", name);
	if (err == GORO_ENOTLOCKED) {
		fprintf(stderr, "goroctl: note: %s was already unlocked (by its token)\n", name);
	} else if (err < 0) {
		/* CMD may not have been alone: say so, and fail if it did not. */
		int code = ctl_fail(x, err, what, name);

		fprintf(stderr, "goroctl: the lock was lost while %s ran\n", x->argv_cmd[0]);
		if (rc == 0)
			rc = code;
		return rc;
	}
	if (x->json) {
		printf("{\"token\":%" PRIu64 ",\"owner_died\":%s,\"status\":%d", g.token,
		       g.owner_died ? "true" : "false", rc);
		if (status >= 0 && WIFSIGNALED(status))
			printf(",\"signal\":%d", WTERMSIG(status));
		puts("}");
	}
	return rc;
}

static int cmd_stats(struct ctl *x)
{
	char *json;
	int err;

	if ((err = ctl_connect(x)))
		return err;
	err = goro_stats_json(x->c, &json);
	if (err < 0)
		return ctl_fail(x, err, "stats", "");
	if (x->json)
		puts(json);
	else
		print_pretty(json);
	free(json);
	return EXIT_OK;
}

static int cmd_maxprocs(struct ctl *x)
{
	int64_t n = 0;
	int now, before, err;

	if (x->nops > 0 && ctl_parse_int(x->ops[0], 1, 256, &n) < 0)
		return ctl_usage_error(x, "N must be a whole number from 1 to 256, not '%s'",
				       x->ops[0]);
	if ((err = ctl_connect(x)))
		return err;
	err = goro_maxprocs(x->c, (int)n, &now, &before);
	if (err < 0)
		return ctl_fail(x, err, "maxprocs", "");
	if (x->json)
		printf("{\"maxprocs\":%d,\"previous\":%d}\n", now, before);
	else if (n > 0)
		printf("maxprocs: %d (was %d)\n", now, before);
	else
		printf("maxprocs: %d\n", now);
	return EXIT_OK;
}

static const struct command commands[] = {
	{ "wg add", "wg.add", "NAME [N]",
	  "add N (default 1) to a named WaitGroup's counter",
	  "Prints the new counter. N may be negative. A name never used counts 0; a\n"
	  "counter that would go below 0 is refused and left as it was.\n",
	  0, 1, 2, false, cmd_wg_add },
	{ "wg done", "wg.done", "NAME", NULL,
	  "Prints the new counter. When it reaches 0, every `wg wait` on NAME returns.\n",
	  0, 1, 1, false, cmd_wg_done },
	{ "wg wait", "wg.wait", "NAME", NULL,
	  "Returns at once when the counter is 0. Fails (exit 1) when what held the\n"
	  "counter can no longer finish: a session that counted work ended first.\n",
	  OPT_TIMEOUT, 1, 1, false, cmd_wg_wait },
	{ "lock", "mutex.lock", "NAME -- CMD [ARG..]",
	  "run CMD holding a named RWMutex, like flock(1)",
	  "Waits for the lock (FIFO-fair; a waiting writer holds back new readers), runs\n"
	  "CMD with GOROD_LOCK_TOKEN set to the grant's fencing token, unlocks when it\n"
	  "ends, and exits with CMD's status (128+N when signal N killed it).\n"
	  "A note on stderr says when the previous holder died holding the lock.\n"
	  "Signals sent to goroctl itself are passed on to CMD. If goroctl is killed\n"
	  "outright, gorod releases the lock and tells the next holder its owner died.\n"
	  "With --json, {\"token\":..,\"owner_died\":..,\"status\":..} follows CMD's output.\n",
	  OPT_TIMEOUT | OPT_READ | OPT_TRY, 1, 1, true, cmd_lock },
	{ "spawn", "spawn", "-- CMD [ARG..]",
	  "start a task in gorod: a command, or (--func) a registered function",
	  "Or:    goroctl spawn [OPTIONS] --func NAME [ARG..]\n"
	  "       goroctl spawn [OPTIONS] --lines [-- PREFIX..] < FILE\n"
	  "\n"
	  "Prints the task's id. The task runs in gorod, like `go f()`: goroctl returns\n"
	  "at once (unless --scope session). A command gets goroctl's environment and\n"
	  "working directory (--clean-env, --cwd), and its output is kept for\n"
	  "`goroctl logs ID`. A func's arguments that are decimal integers are sent as\n"
	  "integers, the others as strings.\n"
	  "\n"
	  "--lines reads one command per line from stdin and spawns them all (empty lines\n"
	  "are skipped), printing one id per line in input order. Without PREFIX a line\n"
	  "runs as `/bin/sh -c LINE`; with PREFIX, as PREFIX.. LINE (one more argument,\n"
	  "like `xargs -d '\\n' -n1`). The other options apply to every task: e.g.\n"
	  "`--sem jobs=4 --wg build` runs 4 at a time, and `goroctl wait --wg build`\n"
	  "waits for them all. A line that cannot be spawned is reported on stderr with\n"
	  "its number; the others go on, and goroctl exits 1.\n"
	  "\n"
	  "--expect DUR and --on-leak POLICY tell gorod's leak monitor how long the task\n"
	  "should live and what to do when it is proven never to end (goroctl help leaks).\n"
	  "\n"
	  "Exit code 6 when --key is in use. With --json, {\"id\":N}; with --lines\n"
	  "{\"line\":L,\"id\":N} per line.\n",
	  OPT_TIMEOUT | OPT_NAME | OPT_WG | OPT_LOCK | OPT_RLOCK | OPT_SEM | OPT_AFTER |
	  OPT_KEY | OPT_GRACE | OPT_EXPECT | OPT_SCOPE | OPT_CWD | OPT_CLEAN_ENV |
	  OPT_STDIN | OPT_OUTPUT_MAX | OPT_FUNC | OPT_LINES | OPT_ON_LEAK,
	  0, INT_MAX, REST_OWN, ctl_spawn },
	{ "wait", "wait", "ID..", "wait until tasks end; exit with their status",
	  "Exits with the task's status as a shell gives it: its exit code, 128+N when\n"
	  "signal N ended it, 124 when its --timeout passed, 125 when the leak monitor\n"
	  "killed it (spawn --on-leak kill), 127 when the program was not found, 126\n"
	  "when it could not run, 1 for another failure. With several\n"
	  "IDs, the last one's (like the shell's wait); each one that did not succeed\n"
	  "gets a line on stderr. Exit 4 when goroctl's own --timeout passed first.\n"
	  "With --json, one outcome object per ID and line.\n"
	  "\n"
	  "--wg NAME waits until the WaitGroup's counter is 0, then exits 0 if every task\n"
	  "spawned with --wg NAME in this round succeeded, else with the status of the\n"
	  "first that failed. On a terminal, a progress line shows meanwhile.\n",
	  OPT_TIMEOUT | OPT_WG, 0, INT_MAX, REST_OPS, ctl_wait },
	{ "kill", "kill", "ID..", NULL,
	  "Sends SIGTERM (or -s SIG; `goroctl kill -9 ID` works too) to each task's\n"
	  "process group, and SIGKILL after its grace period if it has not ended; a\n"
	  "func task is cancelled. A queued task is dropped without starting.\n",
	  OPT_SIGNAL, 1, INT_MAX, REST_OPS, ctl_kill },
	{ "pause", "pause", "ID..", NULL, "Resume it with `goroctl resume ID`.\n",
	  0, 1, INT_MAX, REST_OPS, ctl_pause },
	{ "resume", "resume", "ID..", NULL, NULL, 0, 1, INT_MAX, REST_OPS, ctl_resume },
	{ "logs", "logs.read", "ID", "write what a task wrote to stdout (or --stderr)",
	  "Writes the bytes gorod keeps (the last --output-max of them) as they are.\n"
	  "A note on stderr says how many earlier bytes were not kept. --follow goes on\n"
	  "writing what the task writes until it has ended, like `tail -f`.\n",
	  OPT_STDERR | OPT_FOLLOW, 1, 1, REST_OPS, ctl_logs },
	{ "ps", "ps", "", "list the tasks queued or running (--all: finished ones too)",
	  "One line per task, oldest first: its id, state, kind, owner's uid, age, what\n"
	  "it waits for if it is queued, and its name or command. With --json, the\n"
	  "array gorod sends (PROTOCOL.md, ps).\n",
	  OPT_ALL, 0, 0, REST_OPS, ctl_ps },
	{ "leaks", "leaks", "", NULL,
	  "Lists what gorod's leak monitor finds now, oldest first: one line per finding\n"
	  "(its id, kind, age, who it is about and the owner's command[pid], and the\n"
	  "reason in one sentence), then the facts behind it, indented. Kinds:\n"
	  "  definite     blocked on something nothing alive can release: proven\n"
	  "  suspected    a task alive past its --expect (gorod's --leak-after) while\n"
	  "               blocked or making no progress\n"
	  "  left-behind  processes of a task still running after its main process ended\n"
	  "  hog          a func task that kept a worker thread over 100 ms\n"
	  "  lock-order   two mutexes taken in both orders: a deadlock waiting to happen\n"
	  "\n"
	  "Exits 0 when nothing is found and 1 when something is, so that a script can\n"
	  "test it: `goroctl leaks >/dev/null || alert`. With --json, the array gorod\n"
	  "sends (PROTOCOL.md, leaks).\n",
	  0, 0, 0, REST_OPS, ctl_leaks },
	{ "stats", "stats", "", NULL, NULL, 0, 0, 0, false, cmd_stats },
	{ "maxprocs", "maxprocs", "[N]", NULL,
	  "Without N, prints GOMAXPROCS; with N (1..256), sets it while goroutines run.\n"
	  "Setting it needs gorod's own user or root.\n",
	  0, 0, 1, false, cmd_maxprocs },
	{ "help", NULL, "[COMMAND]", "show help for goroctl, or for one command", NULL,
	  0, 0, 2, false, NULL },
};
static const size_t ncommands = sizeof commands / sizeof commands[0];

static const char *summary_of(const struct command *c)
{
	int m;

	if (c->summary)
		return c->summary;
	m = proto_method_find(c->method, strlen(c->method));
	return m >= 0 ? proto_methods[m].summary : "";
}

/* Prints an option's help: its name and value at column 2, the text at
 * column col + 4; which: and the commands that take it. */
static void print_opt(const struct optdef *o, int col, bool which)
{
	char head[64];

	snprintf(head, sizeof head, "%c%c%c --%s%s%s", o->letter ? '-' : ' ',
		 o->letter ? o->letter : ' ', o->letter ? ',' : ' ', o->name,
		 o->arg ? " " : "", o->arg ? o->arg : "");
	printf("  %-*s  ", col, head);
	for (const char *p = o->help; *p; p++) {
		putchar(*p);
		if (*p == '\n')
			printf("  %-*s  ", col, "");
	}
	for (size_t i = 0, n = 0; which && i < ncommands; i++)
		if (commands[i].opts & o->bit)
			printf("%s%s", n++ ? ", " : " (", commands[i].words);
	if (which && !(o->bit & OPT_GLOBAL))
		putchar(')');
	putchar('\n');
}

/* goroctl help COMMAND: usage, summary, details, options, and the method
 * it sends as the protocol's table gives it. */
static void print_command_help(const struct command *cmd)
{
	int m = cmd->method ? proto_method_find(cmd->method, strlen(cmd->method)) : -1;
	const char *s = summary_of(cmd);
	char usage[1024];

	printf("Usage: goroctl %s\n\n%c%s.\n", usage_of(cmd, usage, sizeof usage),
	       toupper((unsigned char)s[0]), s + 1);
	if (cmd->details)
		printf("\n%s", cmd->details);
	printf("\nOptions:\n");
	for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++)
		if (optdefs[i].bit & (cmd->opts | OPT_JSON | OPT_SOCKET))
			print_opt(&optdefs[i], 22, false);
	if (m >= 0)
		printf("\nSends %s %s, gets %s (gorod's PROTOCOL.md).\n",
		       proto_methods[m].name, proto_methods[m].params, proto_methods[m].result);
}

/* goroctl --help (cmd NULL), or goroctl help CMD. */
static void print_help(const struct command *cmd)
{
	int col = 0;

	if (cmd) {
		print_command_help(cmd);
		return;
	}
	for (size_t i = 0; i < ncommands; i++) {
		int n = (int)(strlen(commands[i].words) + 1 + strlen(commands[i].args));

		if (n > col)
			col = n;
	}
	printf("Usage: goroctl [--json] [--socket PATH] COMMAND [ARGS]\n"
	       "\n"
	       "Goroutines, named WaitGroups and RWMutexes that every process on the machine\n"
	       "shares, served by gorod: `go f()`, Go's sync.WaitGroup and sync.RWMutex\n"
	       "across processes.\n"
	       "\n"
	       "Commands:\n");
	for (size_t i = 0; i < ncommands; i++) {
		char words[128];

		snprintf(words, sizeof words, "%s %s", commands[i].words, commands[i].args);
		printf("  %-*s  %s\n", col, words, summary_of(&commands[i]));
	}
	printf("\nOptions:\n");
	for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++)
		if (optdefs[i].bit & OPT_GLOBAL)
			print_opt(&optdefs[i], 22, true);
	printf("\nEach command's own options: goroctl help COMMAND.\n"
	       "\n"
	       "Durations: 250ms, 2s, 1m, 1h; a plain number is seconds.\n"
	       "\n"
	       "Exit codes:\n"
	       "  0  done                    4  timed out (--timeout)\n"
	       "  1  the operation failed    5  deadlock: waiting would never end\n"
	       "  2  usage error             6  busy: --try found it held\n"
	       "  3  gorod is not running\n"
	       "lock exits with CMD's status once CMD ran (128+N when signal N killed it);\n"
	       "wait with the task's (goroctl help wait); leaks exits 1 when it finds any.\n"
	       "\n"
	       "With --json, the output is one JSON object on stdout, e.g. {\"count\":3}, and\n"
	       "a failure is {\"error\":\"ETIMEDOUT\",\"message\":\"...\"}.\n"
	       "\n"
	       "goroctl help COMMAND tells more about one command.\n");
}

/* ---- the command line ------------------------------------------------------------ */

/* How many of ops the words of a command match: all of them, or 0. */
static int match_words(const char *words, char **ops, int nops)
{
	int i = 0;

	for (const char *w = words; *w; i++) {
		size_t n = strcspn(w, " ");

		if (i >= nops || strlen(ops[i]) != n || strncmp(ops[i], w, n) != 0)
			return 0;
		w += n + (w[n] == ' ');
	}
	return i;
}

/* The command ops start with, having taken its words off ops. */
static const struct command *find_command(char ***ops, int *nops)
{
	for (size_t i = 0; i < ncommands; i++) {
		int k = match_words(commands[i].words, *ops, *nops);

		if (k > 0) {
			*ops += k;
			*nops -= k;
			return &commands[i];
		}
	}
	return NULL;
}

/* Says that ops name no command, listing the ones that start like it. */
static int unknown_command(const struct ctl *x, char **ops, int nops)
{
	size_t n = strlen(ops[0]);
	bool any = false;

	for (size_t i = 0; i < ncommands; i++) {
		if (strncmp(commands[i].words, ops[0], n) != 0 || commands[i].words[n] != ' ')
			continue;
		if (!any)
			fprintf(stderr, "goroctl: `goroctl %s` needs one of:", ops[0]);
		fprintf(stderr, " %s", commands[i].words + n + 1);
		any = true;
	}
	if (!any)
		fprintf(stderr, "goroctl: unknown command '%s'", ops[0]);
	fputs("\nTry `goroctl --help`.\n", stderr);
	return EXIT_USAGE;
}

/* Reads the options in argv[1..end) into *x and the operands into
 * ops[0..*nops). Returns -1 to go on, or an exit code. */
static int parse_options(char **argv, int end, struct ctl *x, char **ops, int *nops)
{
	for (int i = 1; i < end; i++) {
		const struct optdef *o;
		const char *value;
		int rc;

		/* kill's -HUP, like kill(1)'s, is its signal, not an option */
		if (argv[i][0] != '-' || argv[i][1] == '\0' || is_negative_number(argv[i]) ||
		    (*nops == 1 && strcmp(ops[0], "kill") == 0 && argv[i][1] != '-' &&
		     ctl_signal_number(argv[i] + 1) > 0)) {
			ops[(*nops)++] = argv[i];
			continue;
		}
		o = find_opt(argv[i], &value);
		if (!o)
			return ctl_usage_error(x, "unknown option %s", argv[i]);
		if (o->arg && !value) {
			if (i + 1 >= end)
				return ctl_usage_error(x, "--%s needs a value (%s)", o->name, o->arg);
			value = argv[++i];
		}
		if (!o->arg && value)
			return ctl_usage_error(x, "--%s takes no value", o->name);
		if ((rc = apply_opt(x, o, value)) >= 0)
			return rc;
	}
	return -1;
}

/* Checks what x->cmd was given: its options, its operands ops[0..nops)
 * and what followed `--`, rest[0..nrest). Returns -1 to go on, or
 * EXIT_USAGE. */
static int check_command(struct ctl *x, char **ops, int nops, char **rest, int nrest)
{
	const struct command *cmd = x->cmd;

	for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++)
		if (x->given & optdefs[i].bit & ~(OPT_GLOBAL | cmd->opts))
			return ctl_usage_error(x, "--%s is not an option of `goroctl %s`",
					   optdefs[i].name, cmd->words);
	if (cmd->rest == REST_CMD) {
		if (nops != 1 || nrest == 0)
			return ctl_usage_error(x, "give the name, then -- and the command to run");
		x->argv_cmd = rest;
	} else if (cmd->rest == REST_OWN) {
		x->rest = nrest ? rest : NULL;
		x->nrest = nrest;
	} else {
		for (int i = 0; i < nrest; i++)
			ops[nops++] = rest[i];
	}
	if (nops < cmd->min_ops)
		return ctl_usage_error(x, "too few arguments");
	if (nops > cmd->max_ops)
		return ctl_usage_error(x, "too many arguments ('%s')", ops[cmd->max_ops]);
	x->ops = ops;
	x->nops = nops;
	return -1;
}

/* Parses the command line into *x. Returns -1 to go on and run x->cmd, or
 * an exit code: 0 when help or the version was printed, EXIT_USAGE. */
static int parse_args(int argc, char **argv, struct ctl *x)
{
	int dashdash = argc, nops = 0, rc;
	bool help;
	char **ops;

	for (int i = 1; i < argc && dashdash == argc; i++)
		if (strcmp(argv[i], "--") == 0)
			dashdash = i;
	x->ops_mem = ops = calloc((size_t)argc + 1, sizeof *ops);
	if (!ops) {
		fprintf(stderr, "goroctl: out of memory\n");
		return EXIT_FAILED;
	}
	if ((rc = parse_options(argv, dashdash, x, ops, &nops)) >= 0)
		return rc;
	if (x->given & OPT_VERSION) {
		printf("goroctl %s\n", GOROCTL_VERSION);
		return EXIT_OK;
	}
	help = x->given & OPT_HELP;
	x->cmd = nops ? find_command(&ops, &nops) : NULL;
	if (x->cmd && !x->cmd->run) { /* goroctl help [COMMAND] */
		help = true;
		x->cmd = nops ? find_command(&ops, &nops) : NULL;
	} else if (!help && !x->cmd && !nops) {
		fprintf(stderr, "goroctl: no command given\n"
			"Usage: goroctl [--json] [--socket PATH] COMMAND [ARGS]\n"
			"Try `goroctl --help`.\n");
		return EXIT_USAGE;
	}
	if (!x->cmd && nops)
		return unknown_command(x, ops, nops);
	if (help) {
		print_help(x->cmd);
		return EXIT_OK;
	}
	return check_command(x, ops, nops, argv + dashdash + 1,
			     dashdash < argc ? argc - dashdash - 1 : 0);
}

int main(int argc, char **argv)
{
	struct ctl x = { .timeout_ms = -1 };
	int rc = parse_args(argc, argv, &x);

	if (rc < 0)
		rc = x.cmd->run(&x);
	goro_close(x.c);
	free(x.ops_mem);
	if (fflush(stdout) != 0 && rc == EXIT_OK) {
		fprintf(stderr, "goroctl: writing the output: %s\n", strerror(errno));
		rc = EXIT_FAILED;
	}
	return rc;
}
