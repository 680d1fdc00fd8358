/* task.h: tasks, the goroutines clients spawn (task.c), their processes
 * (proc.c), their output (output.c), the functions they may run (func.c,
 * module.c) and the methods that reach them (task_rpc.c).
 *
 * Locking: a task's fields are under names_lock unless a comment says
 * otherwise, like everything a request can see (gorod.h). Its output has a
 * lock of its own per stream (output.c), taken before names_lock. */
#ifndef GORO_DAEMON_TASK_H
#define GORO_DAEMON_TASK_H

#include <signal.h>

#include "gorod.h"
#include "goro/module.h"

enum task_state {
	TS_QUEUED,
	TS_RUNNING,
	TS_PAUSED,
	/* ended: */
	TS_EXITED,
	TS_SIGNALED,
	TS_KILLED,
	TS_TIMEOUT,
	TS_FAILED,
	TS_LOST,
	TS_LEAKED, /* killed for a definite leak (on_leak: kill) */
};

#define TS_ENDED(st) ((st) >= TS_EXITED)
#define TS_COUNT (TS_LEAKED + 1)

const char *task_state_name(enum task_state st);

/* Daemon-wide settings (main.c's flags). */
struct task_config {
	int64_t output_max;    /* default bytes kept per stream */
	int64_t output_limit;  /* the most a spawn may ask for */
	int64_t keep_count;    /* finished tasks kept */
	int64_t keep_age_ms;
	int64_t keep_output;   /* bytes of output kept over all finished tasks */
	int64_t leak_after_ms; /* expect_ms's default (the leak monitor) */
};

extern struct task_config task_config;

/* ---- output (output.c) ------------------------------------------------------- */

/* One captured stream: the last `max` bytes of what the task wrote, in a
 * ring that grows as needed up to max. The pump goroutine reads the pipe
 * into it; `lock` covers a read from the pipe together with its append,
 * so whoever drains the pipe keeps the order. The counters are read under
 * names_lock too (appends take it briefly to publish them). */
struct outbuf {
	struct rt_mutex lock;
	char *ring;            /* cap bytes, or NULL */
	size_t cap, max;
	size_t head;           /* ring index of the oldest kept byte */
	size_t len;            /* bytes kept */
	uint64_t total;        /* bytes written ever (lock, and names_lock to change) */
	size_t kept;           /* len, as published under names_lock */
	bool eof;              /* the pipe is closed (names_lock) */
	int fd;                /* the pipe's read end, -1 once closed */
	struct rt_pollfd *pfd;
	struct rt_gref pump;   /* its pump goroutine (names_lock) */
	bool pumped;           /* a pump was started: it sets eof (names_lock) */
	struct quota *quota;   /* who its ring's bytes are charged to (quota.c) */
};

struct task;

void outbuf_init(struct outbuf *o, size_t max);
/* Frees the ring, closes the pipe. */
void outbuf_destroy(struct outbuf *o);
/* A stream of a task read back from the journal (not yet seen by anyone):
 * its last n bytes, of total written. */
void outbuf_restore(struct outbuf *o, const void *p, size_t n, uint64_t total);
/* Appends bytes (a func's goro_task_print), names_lock NOT held. */
void outbuf_append(struct task *t, struct outbuf *o, const void *p, size_t n);
/* Starts the goroutine that reads o->fd (the pipe's read end, non-blocking,
 * set by the caller and from then the pump's) into o until end of file; it
 * holds a reference to t. */
int outbuf_pump_start(struct task *t, struct outbuf *o);
/* Reads what the pipe holds now, without waiting (after the process
 * exited: all it wrote before exiting is then kept). Returns true at the
 * end of file (the fd is then closed, if no pump has it). */
bool outbuf_drain(struct task *t, struct outbuf *o);

/* How long a command runs before its output gets pumps (output.c). */
#define PUMP_AFTER_NS (10 * 1000000LL)
/* o->lock held (not names_lock): copies the kept bytes from offset `from`
 * (clamped to what is kept), at most max of them (tail: the last max), into
 * a malloc'd buffer; *start gets the offset of its first byte. */
int outbuf_read(const struct outbuf *o, uint64_t from, size_t max, bool tail, char **data,
		size_t *len, uint64_t *start);

/* The most output one reply carries (a reply must fit in a message). */
#define OUTPUT_REPLY_MAX (960 * 1024)
/* Bytes no longer kept. */
static inline uint64_t outbuf_cut(const struct outbuf *o)
{
	return o->total - o->kept;
}

/* ---- processes (proc.c) ------------------------------------------------------- */

/* What an exec task runs, prepared before the process starts. */
struct exec_spec {
	char **argv;           /* NULL-terminated */
	char **envp;           /* NULL-terminated */
	const char *cwd;
	bool as_client;        /* switch to uid/gid/groups below */
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	int ngroups;
	int fd_in, fd_out, fd_err; /* become 0, 1, 2 */
};

/* A started process; its exit status arrives through the reaper. */
struct proc {
	pid_t pid;
	bool exited;           /* status is valid (procs' lock) */
	int status;            /* as waitpid's */
	struct rt_waitq q;     /* the task goroutine waits here for exited */
	struct proc *hnext;    /* the reaper's table */
};

/* Starts spec as a process in a new process group (vfork-style: no copy of
 * gorod's address space). Returns 0 with p->pid set, or the negative errno
 * that made exec fail (ENOENT for no such program, ...), with *why set to
 * a static phrase naming the step ("exec", "chdir", ...). */
int proc_start(struct proc *p, const struct exec_spec *spec, const char **why);

/* Goroutine: parks until p exited or the deadline. 0, -ETIMEDOUT, -ECANCELED. */
int proc_wait(struct proc *p, int64_t deadline);

/* Reaps every child that exited, hands each status to its proc (waking
 * its goroutine); counts the rest as left-behind processes. Any thread. */
void proc_reap(void);

/* How many processes left behind by tasks (not a task's own) were reaped. */
uint64_t proc_orphans_reaped(void);

/* Makes gorod a child subreaper. */
int proc_init(void);

/* ---- functions (func.c, module.c) ------------------------------------------- */

struct func {
	const char *name;
	goro_func fn;
	/* Built-in sleep: parked without a goroutine stack (see func.c). */
	bool is_sleep;
};

/* The function registered as name, or NULL. */
const struct func *func_find(const char *name, size_t len);

/* Loads every *.so of dir and runs its goro_module_init. Returns 0, or a
 * negative code having printed why. Registration closes afterwards. */
int module_load_dir(const char *dir);

/* No function may be registered any more (tasks point into the table). */
void func_registry_close(void);

/* A module while it loads (module.c, func.c). */
struct goro_module {
	const char *path;
	int registered;
};

/* The struct goro_task of a running func task (what module.h calls it):
 * on the task goroutine's stack while the function runs. */
struct goro_task {
	struct task *t;
};

/* Copies the msgpack array arr (NULL: none) into one allocation of
 * goro_values, *out (free() it), *n of them. */
int func_args_copy(const msgpack_object *arr, struct goro_value **out, size_t *n);
void func_pack_value(msgpack_packer *pk, const struct goro_value *v);
int func_value_depth(const struct goro_value *v);

/* ---- tasks (task.c) ------------------------------------------------------------ */

struct task {
	uint64_t id;
	enum task_state state;  /* task.c sets it with task_set_state() */
	bool live;              /* in the live list, counted by state */
	bool func;
	uid_t uid;
	gid_t gid;
	pid_t client_pid;
	gid_t *groups;           /* the client's, when gorod is root (owned) */
	int ngroups;
	char *name, *key;        /* owned, or NULL */

	/* What it runs: one allocation (`spec`) holds the strings and the
	 * pointer arrays; func args are a goro_value tree in it too. */
	void *spec;
	size_t spec_len;         /* once ended: the summary's bytes */
	char **argv, **envp;
	char *cwd;
	char *stdin_data;
	size_t stdin_len;
	const struct func *fn;
	struct goro_value *args;
	size_t nargs;

	/* Options. */
	char *wg;                /* owned */
	uint64_t *after;         /* owned */
	int nafter;
	int64_t timeout_ms, grace_ms, expect_ms;
	bool session_scope;
	struct session *scope_s; /* while it lives (names_lock) */
	struct task *snext, *sprev; /* scope_s's tasks */

	/* Grants requested at spawn, held while it runs (the requests live on
	 * the heap, owned; the party holds the grants). */
	struct req *lockreq, *semreq;
	struct session *party;   /* the task as a holder; NULL until needed */

	/* Running. */
	struct rt_gref g;
	struct proc proc;        /* the task goroutine's */
	pid_t pid;               /* proc.pid, published (names_lock) */
	struct outbuf out[2];    /* stdout, stderr */
	int stdin_fd;            /* the pipe's write end while feeding it */
	struct rt_gref stdin_g;  /* the stdin writer, while it runs (names_lock) */
	struct rt_gref grace_g;  /* the grace killer, while it runs (names_lock) */
	int64_t grace_until;
	int helpers;             /* helper goroutines running (names_lock) */
	struct task *lnext, *lprev; /* the linger list, while helpers > 0 */
	/* A task with `after`: its grants, asked for when its turn comes. */
	char *later_lock, *later_sem;
	bool later_write;
	int64_t later_cap;
	int kill_sig;            /* a signal to send, asked for by kill (names_lock) */
	bool killed;             /* kill asked for it to end */
	bool cancelled;          /* func: its goroutines were cancelled */
	bool timed_out, cancelled_by_scope;
	bool ev_pending;         /* kill_sig is new (proc.q.lock) */
	uint64_t waiting_for;    /* queued: the after-task it waits for */
	/* func: the goroutines it started with goro_go, which end before it
	 * does (nkids under kids_q.lock; kids, to cancel them, names_lock). */
	struct rt_waitq kids_q;
	int64_t nkids;
	struct rt_gref *kids;
	size_t kids_len, kids_cap;

	/* Outcome. */
	int code, sig, err;
	char *errmsg;            /* owned, or NULL */
	char *result;            /* func: packed msgpack (owned), or NULL */
	size_t result_len;
	int64_t created_ns, started_ns, ended_ns; /* monotonic; 0: not yet */
	int64_t sleep_until;     /* the built-in sleep: when it ends */
	int64_t started_ms, ended_ms;   /* Unix time */

	/* Waiting for it (PRIM_TASK) or for its output (PRIM_LOGS). */
	struct nwait *waiters, *log_waiters;

	int refs;                /* names_lock: pumps, requests, itself */
	bool pruned;             /* retention let it go: free at refs 0 */
	uint64_t accounted;      /* its bytes in the retention total */
	struct task *next, *prev; /* the live list, then the finished list */
	struct task *hnext;      /* the id table */

	/* The leak monitor's (leak.c; names_lock). */
	int leak_party;          /* its index in the wait-for graph, */
	uint64_t leak_round;     /* ... made in this pass of it */
	bool queued;             /* on the queued list */
	struct task *qnext, *qprev;
	bool on_leak_kill;       /* spawn's on_leak: "kill" */
	size_t wg_slot;          /* its place among its WaitGroup's bound tasks */
	bool leaked;             /* killed for a definite leak */
	struct task *pnext;      /* the pid table */
	struct task *gnext;      /* the goroutine table (func tasks while they run) */
	uint64_t seen_output;    /* its output at the last look */
	uint64_t seen_cpu;       /* its process's CPU ticks at the last look */
	bool behind;             /* on the left-behind list */
	struct task *bnext, *bprev;
	struct quota *quota;     /* its user's counts, once spawned (quota.c) */
};

/* names_lock held: the task with this id (live or kept), or NULL. */
struct task *task_find(uint64_t id);

/* What a spawn asks for, parsed from the request (task_rpc.c) and taken
 * over by task_spawn. */
struct spawn_req {
	struct task *t;          /* filled in: spec, options */
	uint64_t jseq;           /* out: the journal record to wait for (journal.c) */
	const char *lock, *rlock, *sem;
	size_t lock_len, rlock_len, sem_len;
	int64_t sem_capacity;
	const char *wg;
	size_t wg_len;
	char why[256];           /* a refusal's sentence, when task_spawn makes one */
};

/* Allocates a task record for session s (owner, credentials). */
struct task *task_new(struct session *s);
/* Frees a task that never started (a refused spawn). */
void task_discard(struct task *t);

/* Starts the task: checks key and after, adds to the group, requests the
 * lock and semaphore, starts its goroutine. Returns 0 with *id set, or a
 * negative code with *why set (then the caller discards the task). After
 * a success t belongs to gorod and may be gone at any time: use *id. */
int task_spawn(struct session *s, struct spawn_req *sr, uint64_t *id, const char **why);

/* names_lock held: a helper goroutine of t (an output pump, the stdin
 * writer, the grace killer) starts / ends: it holds a reference, and is
 * found by gorod's stop while it runs. */
void task_helper_add(struct task *t);
void task_helper_done(struct task *t);

/* names_lock held: asks the task to end with sig (0: SIGTERM). 0, -ESRCH
 * when it has ended. */
int task_kill(struct task *t, int sig);
/* names_lock held: SIGSTOP / SIGCONT. */
int task_pause(struct task *t, bool pause);

/* names_lock held: may session s act on t? */
bool task_allowed(const struct session *s, const struct task *t);

/* names_lock held: a session ends: tasks of scope session are killed. */
void task_session_ended(struct session *s);

/* names_lock held: drops a reference; frees a finished task nobody needs
 * once retention let it go. */
void task_unref(struct task *t);

/* names_lock held: the retention limits, applied now. */
void task_prune(int64_t now_ns);
/* names_lock NOT held: gives the heap's free memory back to the system if
 * at least at_least tasks were forgotten since it last did. */
void task_trim(uint64_t at_least);
#define TRIM_AFTER 1000

/* Packs the outcome map of an ended task (PROTOCOL.md, wait). */
void task_pack_outcome(msgpack_packer *pk, const struct task *t);
void task_brief_of(const struct task *t, struct task_brief *b);
bool task_succeeded(const struct task *t);

/* names_lock held: packs ps's array: the tasks after id `after` in id
 * order, live ones only unless all, at most limit of them and about
 * PS_REPLY_BYTES (then the client asks again from the last id). */
void task_pack_ps(msgpack_packer *pk, bool all, uint64_t after, size_t limit);
#define PS_REPLY_BYTES (768 * 1024)
#define PS_LIMIT_DEFAULT 1000
#define PS_LIMIT_MAX 10000
#define PS_ARGV_MAX 16   /* arguments shown per task */
#define PS_ARG_MAX 256   /* bytes shown per argument */

/* Counts for stats (names_lock held). */
struct task_counts {
	uint64_t spawned, live, queued, running, paused, kept;
	uint64_t by_state[TS_COUNT];
};
void task_counts(struct task_counts *c);

/* Stopping gorod: kills every task (process groups with SIGKILL), then
 * waits until the deadline for all their goroutines to end (0, or
 * -ETIMEDOUT: call again, reaping meanwhile). */
void tasks_stop_start(void);
/* The same with sig: SIGTERM first gives commands a chance to clean up
 * (a func task is cancelled either way). */
void tasks_stop_signal(int sig);
int tasks_stop_wait(int64_t deadline);
int tasks_init(void);

/* A finished task read back from the journal (journal.c). */
struct task_record {
	uint64_t id;
	uid_t uid;
	gid_t gid;
	bool func;
	const char *name;
	char **argv;             /* exec: the summary; func: { its name } */
	enum task_state state;
	int code, sig, err;
	const char *errmsg;
	const char *result;      /* packed msgpack, or NULL */
	size_t result_len;
	pid_t pid;
	int64_t started_ms, ended_ms;
	const char *out[2];      /* the last bytes of stdout, stderr */
	size_t out_len[2];
	uint64_t out_total[2];
};

/* names_lock held: keeps a finished task again, as the journal recorded it
 * (retention applies). 0 or -ENOMEM. */
int task_restore(const struct task_record *r);
/* names_lock held: ids go on after last. */
void task_ids_from(uint64_t last);
/* names_lock held: the ids of the tasks kept now, live or finished, in a
 * malloc'd array (*ids NULL with *n > 0: no memory), and the last id given. */
void task_kept_ids(uint64_t **ids, size_t *n, uint64_t *last);
/* names_lock held: when no task record is left, ids start over at 1 (the
 * fuzzer's reset between inputs, tests/fuzz); false, and nothing changed,
 * while one is. */
bool tasks_restart_ids(void);

/* gorod's effective uid, read once at start (tasks_init). */
extern uid_t gorod_euid;
extern struct rt_wg tasks_wg;

/* names_lock held: the task as a holder (its party session), made on
 * first use; NULL when out of memory. */
struct session *task_party(struct task *t);

/* ---- for the leak monitor (task.c) ---- */

struct task *task_live_head(void);
/* The tasks still queued (after, lock, sem), linked by qnext. */
struct task *task_queued_head(void);
/* The live task a session's peer process belongs to (its process group, or
 * an ancestor), or NULL. */
struct task *session_task(struct session *s);
/* Whether every process of an exec task's group waits on gorod (a session
 * with a waiting request) or for its own children. */
bool task_tree_blocked(struct task *t);
/* The live tasks due for a look (their expected lifetime passed) by now,
 * at most n of them, into out; each leaves the heap: task_watch_again puts
 * it back for its next look. */
size_t task_watch_due(int64_t now, struct task **out, size_t n);
void task_watch_again(struct task *t, int64_t at);
/* Whether t used CPU time or wrote output since the last call. */
bool task_progressed(struct task *t);
const char *task_blocked_on(const struct task *t, char *buf, size_t len);
/* Ended exec tasks whose process group may still have processes. */
struct task *task_behind_first(void);
void task_behind_drop(struct task *t);
/* The func task running as goroutine id, or NULL. */
struct task *task_of_goroutine(uint64_t id);
/* Kills t for a definite leak: it ends in state leaked. */
void task_kill_leaked(struct task *t);
/* names_lock held: t ends: off the monitor's tables (task_ended). */
void leak_forget_task(struct task *t);
/* The pids of process group pgid, as text; returns how many. */
int group_pids(pid_t pgid, char *buf, size_t len);

/* Starts fn(arg) as a child goroutine of func task t (goro_go). */
int task_go_child(struct task *t, void (*fn)(void *), void *arg);

#endif /* GORO_DAEMON_TASK_H */
