/* goroctl.h: what goroctl's two files share. Never installed.
 *
 *   goroctl.c        the command line (options, commands, help), errors and
 *                    exit codes, and the commands of the named primitives
 *                    (wg, lock, stats, maxprocs)
 *   goroctl_tasks.c  the task commands: spawn, wait, kill, pause, resume,
 *                    logs, ps; and leaks (the leak monitor's findings)
 *
 * Both use libgoro's public API only (goro/goro.h). */
#ifndef GORO_GOROCTL_H
#define GORO_GOROCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "goro/goro.h"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,      /* the operation failed */
	EXIT_USAGE = 2,
	EXIT_NOT_RUNNING = 3, /* connecting failed: nobody at the socket */
	EXIT_TIMEDOUT = 4,
	EXIT_DEADLOCK = 5,    /* EDEADLK */
	EXIT_BUSY = 6,        /* --try found it held */
	EXIT_LEAKS_FOUND = 1, /* leaks: the monitor found something */
};

/* The options, one bit each (optdefs[] in goroctl.c describes them). */
enum {
	OPT_JSON = 1 << 0,
	OPT_SOCKET = 1 << 1,
	OPT_HELP = 1 << 2,
	OPT_VERSION = 1 << 3,
	OPT_TIMEOUT = 1 << 4,
	OPT_READ = 1 << 5,
	OPT_TRY = 1 << 6,
	/* the task commands' (goroctl_tasks.c reads their values) */
	OPT_NAME = 1 << 7,
	OPT_WG = 1 << 8,
	OPT_LOCK = 1 << 9,
	OPT_RLOCK = 1 << 10,
	OPT_SEM = 1 << 11,
	OPT_AFTER = 1 << 12,
	OPT_KEY = 1 << 13,
	OPT_GRACE = 1 << 14,
	OPT_EXPECT = 1 << 15,
	OPT_SCOPE = 1 << 16,
	OPT_CWD = 1 << 17,
	OPT_CLEAN_ENV = 1 << 18,
	OPT_STDIN = 1 << 19,
	OPT_OUTPUT_MAX = 1 << 20,
	OPT_FUNC = 1 << 21,
	OPT_LINES = 1 << 22,
	OPT_ALL = 1 << 23,
	OPT_STDERR = 1 << 24,
	OPT_FOLLOW = 1 << 25,
	OPT_SIGNAL = 1 << 26,
	OPT_ON_LEAK = 1 << 27,
};
#define OPT_GLOBAL (OPT_JSON | OPT_SOCKET | OPT_HELP | OPT_VERSION)

#define CTL_MAX_AFTER 64 /* PROTOCOL.md, spawn: `after` */

/* The values of the task options (what ctl_task_opt() parsed). */
struct ctl_task_opts {
	const char *name, *wg, *lock, *rlock, *sem, *key, *cwd, *func;
	const char *stdin_path;  /* --stdin FILE, "-" for goroctl's stdin */
	int64_t sem_capacity;    /* --sem NAME=CAP; 0: none given */
	uint64_t after[CTL_MAX_AFTER];
	size_t nafter;
	int grace_ms, expect_ms; /* 0: gorod's default */
	int64_t output_max;      /* 0: gorod's default */
	bool session_scope;      /* --scope session */
	bool on_leak_kill;       /* --on-leak kill */
	int sig;                 /* --signal; 0: TERM */
};

/* One run of goroctl: the parsed command line, and the connection. */
struct ctl {
	const struct command *cmd;
	unsigned given;     /* OPT_* seen */
	bool json;
	const char *socket; /* --socket, or NULL: libgoro's default */
	int timeout_ms;     /* --timeout, or -1 */
	char **ops;         /* operands after the command's words */
	int nops;
	char **ops_mem;     /* the array ops points into; owned */
	char **argv_cmd;    /* lock: CMD [ARG..], NULL-terminated (argv's) */
	char **rest;        /* REST_OWN: what followed `--` (argv's), or NULL */
	int nrest;
	struct ctl_task_opts t;
	goro_client *c;
};

/* What a command does with the arguments after `--`. */
enum ctl_rest {
	REST_OPS = 0,  /* they are more operands */
	REST_CMD = 1,  /* lock: NAME -- CMD [ARG..], both required */
	REST_OWN = 2,  /* the command reads x->rest itself (spawn) */
};

struct command {
	const char *words;   /* "wg add" */
	const char *method;  /* the method it sends, or NULL */
	const char *args;    /* its operands (its options come from opts) */
	const char *summary; /* NULL: the method's summary */
	const char *details; /* for goroctl help COMMAND, or NULL */
	unsigned opts;       /* OPT_* it takes besides the global ones */
	int min_ops, max_ops;
	enum ctl_rest rest;
	int (*run)(struct ctl *x);
};

/* ---- goroctl.c ----------------------------------------------------------------- */

/* s as a JSON string on f. */
void ctl_json_str(FILE *f, const char *s);

/* {"error": name, "message": msg} on stdout, with --json. */
void ctl_json_error(const struct ctl *x, int err, const char *msg);

/* The exit code for a failure with err (EXIT_TIMEDOUT for -ETIMEDOUT, ...). */
int ctl_exit_code(int err);

/* Reports that `what` failed with err: the last error's sentence on
 * stderr with a hint (name: what it was about), and the JSON error.
 * Returns the exit code. */
int ctl_fail(const struct ctl *x, int err, const char *what, const char *name);

/* ctl_fail() with the sentence msg instead of the last error's. */
int ctl_fail_msg(const struct ctl *x, int err, const char *what, const char *name,
		 const char *msg);

/* A usage error: the sentence, the command's usage. Returns EXIT_USAGE. */
int ctl_usage_error(const struct ctl *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "250ms", "2s", "1.5m", "1h" (a plain number is seconds) into *ms,
 * rounded up. Returns 0, or -1 with *why set. */
int ctl_parse_duration(const char *s, int *ms, const char **why);

/* A whole decimal number in [min, max]. Returns 0 or -1. */
int ctl_parse_int(const char *s, int64_t min, int64_t max, int64_t *v);

/* Connects to gorod (x->c). Returns 0, or an exit code having said what is
 * wrong and what to do. */
int ctl_connect(struct ctl *x);

/* Writes what is queued on x->c, then waits up to timeout_ms (-1: for
 * ever) for the socket and runs the callbacks of the replies that came.
 * Returns how many replies it handled (0 when the time passed), or the
 * connection's error. */
int ctl_pump(struct ctl *x, int timeout_ms);

/* ---- goroctl_tasks.c ------------------------------------------------------------ */

/* Applies a task option (bit, its value or NULL). Returns -1 to go on,
 * or an exit code (EXIT_USAGE). */
int ctl_task_opt(struct ctl *x, unsigned bit, const char *value);

/* Prints a hint for err met by a task command; false when x->cmd is not
 * one (then goroctl.c's hints apply). */
bool ctl_task_hint(const struct ctl *x, int err, const char *name);

/* The task commands. Each returns goroctl's exit code. */
int ctl_spawn(struct ctl *x);
int ctl_wait(struct ctl *x);
int ctl_kill(struct ctl *x);
/* A signal's number, from a number or a name (TERM, SIGTERM, term); -1. */
int ctl_signal_number(const char *s);
int ctl_pause(struct ctl *x);
int ctl_resume(struct ctl *x);
int ctl_logs(struct ctl *x);
int ctl_ps(struct ctl *x);
int ctl_leaks(struct ctl *x);

#endif /* GORO_GOROCTL_H */
