/* proc.c: starting the processes of exec tasks, and reaping them.
 *
 * Starting. gorod is a large multi-threaded process; fork() would copy its
 * page tables (milliseconds for a big heap) and is unsafe to follow with
 * anything but async-signal-safe calls anyway. So a process starts with
 * vfork(): the child borrows gorod's memory and the calling thread's stack
 * until it calls execve (or _exit), and the calling thread is suspended
 * that long, which is the cost of the exec itself, nothing more (glibc's
 * posix_spawn does the same with clone(CLONE_VM|CLONE_VFORK); we cannot
 * use it because a root gorod must switch the child to the client's uid,
 * gid and groups, which posix_spawn cannot do). The child calls nothing but
 * raw system calls: it shares memory with a multi-threaded process, so no
 * lock, no malloc, no glibc wrapper that talks to other threads (setuid()
 * would signal gorod's threads). Everything it needs (the candidate paths
 * of argv[0] along PATH, the argv and envp arrays) is prepared before.
 * If exec fails, the child writes errno into the parent's memory (which it
 * shares until it exits) and exits 127; the parent reads it after vfork
 * returns. (Under ThreadSanitizer and valgrind, GORO_TSAN and
 * GORO_VALGRIND, vfork is a fork, so there the report goes through a
 * close-on-exec pipe instead: end of file means exec succeeded.)
 *
 * Reaping. gorod is a child subreaper (PR_SET_CHILD_SUBREAPER), so the
 * processes a task leaves behind when its main process exits become
 * gorod's children when their parent dies, and stay visible. All reaping
 * is proc_reap(): waitid(P_ALL) in a loop, on SIGCHLD (main.c reads it
 * from the signalfd). Each status goes to the proc with that pid in a
 * table, which wakes the task's goroutine; a pid not in the table is a
 * left-behind process, counted.
 *
 * The one race: a child may exit, and be reaped, between vfork's return
 * and the insertion of its pid into the table. So each start takes a
 * ticket before vfork and gives it back after inserting; a status whose
 * pid is unknown is kept aside ("unclaimed") with the newest ticket taken
 * at that time, and a start that finds its pid there takes its status.
 * An unclaimed status is known to be a left-behind process's once no
 * start that was in flight when it was reaped is still in flight. At most
 * one start per worker thread is ever in flight (no goroutine parks
 * between the ticket and the insertion), so the bookkeeping is tiny.
 * The table and tickets are under procs_lock, a spin lock held for a few
 * instructions. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "task.h"

#define TABLE_SIZE 1024 /* buckets; chains grow beyond */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

struct unclaimed {
	pid_t pid;
	int status;
	uint64_t seen; /* the newest ticket taken when it was reaped */
};

static rt_spin procs_lock;
static struct proc *table[TABLE_SIZE];
static uint64_t tickets;               /* taken so far */
static uint64_t inflight[RT_MAXPROCS_LIMIT + 8];
static int ninflight;
static struct unclaimed *unclaimed;
static size_t nunclaimed, unclaimed_cap;
static _Atomic uint64_t orphans_reaped;

/* The signals gorod ignores (SIGPIPE, and any it inherited ignored, as a
 * shell's background job inherits SIGINT and SIGQUIT): an ignored signal
 * stays ignored across exec, so the child sets each back to default. */
static int ignored[64];
static int nignored;

int proc_init(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		return -errno;
	for (int sig = 1; sig < 65 && nignored < 64; sig++) {
		struct sigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0)
			continue;
		if (sa.sa_handler == SIG_IGN || sig == SIGPIPE)
			ignored[nignored++] = sig;
	}
	return 0;
}

uint64_t proc_orphans_reaped(void)
{
	return atomic_load(&orphans_reaped);
}

static struct proc **bucket(pid_t pid)
{
	return &table[(unsigned)pid % TABLE_SIZE];
}

/* procs_lock held: forgets unclaimed statuses that no start in flight can
 * claim any more: they were left-behind processes. */
static void unclaimed_purge(void)
{
	uint64_t oldest = UINT64_MAX;
	size_t j = 0;

	for (int i = 0; i < ninflight; i++)
		if (inflight[i] < oldest)
			oldest = inflight[i];
	for (size_t i = 0; i < nunclaimed; i++) {
		if (unclaimed[i].seen < oldest)
			atomic_fetch_add(&orphans_reaped, 1);
		else
			unclaimed[j++] = unclaimed[i];
	}
	nunclaimed = j;
}

/* procs_lock held: takes the proc of pid out of the table (its status
 * set), or keeps the status aside; returns the proc to wake, or NULL. The
 * wake happens after procs_lock is released (a wake may be a system call,
 * and starts on the spawn path would spin meanwhile); the proc cannot go
 * away before it: its task waits for exited. */
static struct proc *deliver(pid_t pid, int status)
{
	struct proc **pp = bucket(pid);

	for (; *pp; pp = &(*pp)->hnext) {
		struct proc *p = *pp;
		if (p->pid != pid)
			continue;
		*pp = p->hnext;
		p->hnext = NULL;
		p->status = status;
		return p;
	}
	if (ninflight == 0) {
		atomic_fetch_add(&orphans_reaped, 1);
		return NULL;
	}
	if (nunclaimed == unclaimed_cap) {
		size_t cap = unclaimed_cap ? unclaimed_cap * 2 : 16;
		struct unclaimed *u = realloc(unclaimed, cap * sizeof *u);
		if (!u) { /* cannot keep it: the start will report it lost */
			atomic_fetch_add(&orphans_reaped, 1);
			return NULL;
		}
		unclaimed = u;
		unclaimed_cap = cap;
	}
	unclaimed[nunclaimed++] = (struct unclaimed){ pid, status, tickets };
	return NULL;
}

static void wake_exited(struct proc *p)
{
	rt_spin_lock(&p->q.lock);
	p->exited = true;
	struct rt_waiter *w = rt_waitq_pop(&p->q);
	if (w)
		rt_waitq_wake(w, 0);
	rt_spin_unlock(&p->q.lock);
}

void proc_reap(void)
{
	for (;;) {
		siginfo_t si;
		int status;

		si.si_pid = 0;
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
			break;
		status = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0)
						  : si.si_status & 0x7f;
		rt_spin_lock(&procs_lock);
		struct proc *p = deliver(si.si_pid, status);
		rt_spin_unlock(&procs_lock);
		if (p)
			wake_exited(p);
	}
}

int proc_wait(struct proc *p, int64_t deadline)
{
	for (;;) {
		struct rt_waiter w = { 0 };
		int rc;

		rt_spin_lock(&p->q.lock);
		if (p->exited) {
			rt_spin_unlock(&p->q.lock);
			return 0;
		}
		/* Woken by the reaper, or by a kill or pause (task.c): only
		 * p->exited says the process is gone. */
		rc = rt_waitq_park(&p->q, &w, 0, deadline, "child", p);
		if (rc < 0) {
			rt_spin_unlock(&p->q.lock);
			return rc;
		}
		if (rc == 0) /* the reaper's wake: p->exited is set */
			return 0;
	}
}

/* ---- the child ------------------------------------------------------------------ */

/* The kernel's struct sigaction, for a raw rt_sigaction. */
struct ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

struct child_err {
	int err;
	int step;
};

enum { STEP_SETUP, STEP_CHDIR, STEP_CREDS, STEP_EXEC };

static const char *const step_names[] = { "setting up the process", "changing to the working directory",
					   "switching to the client's user", "running the program" };

/* How the child tells the parent that exec failed. Under vfork it shares
 * the parent's memory and writes the parent's struct; under
 * ThreadSanitizer, whose vfork is a fork, it writes into a pipe. */
struct child_report {
	volatile struct child_err *ce; /* the parent's */
	int fd;                        /* the pipe's write end, or -1 */
};

/* Runs in the vfork child: raw system calls only (see the top). */
static __attribute__((noreturn)) void child(const struct exec_spec *sp, char *const *paths,
					    const struct child_report *rep)
{
	struct ksigaction dfl = { .handler = SIG_DFL };
	uint64_t none = 0;
	struct child_err ce = { 0, STEP_SETUP };
	bool eacces = false;
	int fds[3] = { sp->fd_in, sp->fd_out, sp->fd_err };

	for (int i = 0; i < nignored; i++)
		syscall(SYS_rt_sigaction, ignored[i], &dfl, NULL, sizeof none);
	if (syscall(SYS_setpgid, 0, 0) < 0)
		goto fail;
	for (int i = 0; i < 3; i++)
		if (syscall(SYS_dup3, fds[i], i, 0) < 0)
			goto fail;
	/* The client's credentials first, so that the kernel checks the
	 * working directory (and then the program) as the client. */
	ce.step = STEP_CREDS;
	if (sp->as_client &&
	    (syscall(SYS_setgroups, sp->ngroups, sp->groups) < 0 ||
	     syscall(SYS_setresgid, sp->gid, sp->gid, sp->gid) < 0 ||
	     syscall(SYS_setresuid, sp->uid, sp->uid, sp->uid) < 0))
		goto fail;
	ce.step = STEP_CHDIR;
	if (syscall(SYS_chdir, sp->cwd) < 0)
		goto fail;
	/* gorod blocks the signals it reads from its signalfd; the mask
	 * survives exec, so clear it last (nothing can arrive before exec
	 * that the child would handle: its dispositions are the defaults). */
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
	ce.step = STEP_EXEC;
	errno = ENOENT;
	for (int i = 0; paths[i]; i++) {
		syscall(SYS_execve, paths[i], sp->argv, sp->envp);
		if (errno == EACCES)
			eacces = true;
		else if (errno != ENOENT && errno != ENOTDIR)
			break;
	}
	if (eacces && (errno == ENOENT || errno == ENOTDIR))
		errno = EACCES;
fail:
	ce.err = errno;
	rep->ce->step = ce.step;
	rep->ce->err = ce.err;
	if (rep->fd >= 0)
		syscall(SYS_write, rep->fd, &ce, sizeof ce);
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}

/* The PATH in envp, or the default. */
static const char *env_path(char *const *envp)
{
	for (; envp && *envp; envp++)
		if (strncmp(*envp, "PATH=", 5) == 0)
			return *envp + 5;
	return DEFAULT_PATH;
}

/* The paths to try for argv0, as execvp(3) would, in one allocation:
 * argv0 itself when it has a '/', else each directory of PATH (an empty
 * entry meaning the working directory), at most PATH_DIRS_MAX of them, and
 * none longer than PATH_MAX (the kernel would refuse it anyway): what a
 * client sends cannot make this grow beyond PATH_DIRS_MAX * PATH_MAX.
 * NULL when out of memory, or (errno ENAMETOOLONG) when argv0 is longer
 * than a file name may be. */
#define PATH_DIRS_MAX 256

static char **candidate_paths(const char *argv0, char *const *envp)
{
	size_t alen = strlen(argv0), n = 0, bytes = 0;
	const char *path = env_path(envp), *p;
	char **v, *s;

	if (strchr(argv0, '/')) {
		v = malloc(2 * sizeof *v + alen + 1);
		if (!v)
			return NULL;
		v[0] = memcpy((char *)(v + 2), argv0, alen + 1);
		v[1] = NULL;
		return v;
	}
	if (alen > NAME_MAX) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	for (p = path;; p++) { /* count and size the entries kept, as below */
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		if (dlen + 1 + alen < PATH_MAX) {
			n++;
			bytes += (dlen ? dlen : 1) + 1 + alen + 1;
		}
		if (!*end || n == PATH_DIRS_MAX)
			break;
		p = end;
	}
	v = malloc((n + 1) * sizeof *v + bytes);
	if (!v)
		return NULL;
	s = (char *)(v + n + 1);
	n = 0;
	for (p = path; n < PATH_DIRS_MAX;) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		if (dlen + 1 + alen < PATH_MAX) {
			v[n++] = s;
			if (dlen == 0) {
				*s++ = '.';
			} else {
				memcpy(s, p, dlen);
				s += dlen;
			}
			*s++ = '/';
			memcpy(s, argv0, alen + 1);
			s += alen + 1;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	v[n] = NULL;
	return v;
}

/* vfork in a function of its own, so that no local of the caller lives
 * in a register the child could clobber. Returns the pid or -1 (errno). */
static __attribute__((noinline)) pid_t vfork_child(const struct exec_spec *sp, char *const *paths,
						   const struct child_report *rep)
{
	pid_t pid = vfork();

	if (pid == 0)
		child(sp, paths, rep);
	return pid;
}

int proc_start(struct proc *p, const struct exec_spec *sp, const char **why)
{
	char **paths = candidate_paths(sp->argv[0], sp->envp);
	volatile struct child_err ce = { 0, 0 };
	struct child_report rep = { &ce, -1 };
	int errp[2] = { -1, -1 }, slot;
	uint64_t ticket;
	pid_t pid;

	*why = NULL;
	if (!paths) {
		*why = step_names[STEP_EXEC];
		return errno == ENAMETOOLONG ? -ENAMETOOLONG : -ENOMEM;
	}
#if defined(GORO_TSAN) || defined(GORO_VALGRIND)
	if (pipe2(errp, O_CLOEXEC) < 0) {
		free(paths);
		*why = step_names[STEP_SETUP];
		return -errno;
	}
	rep.fd = errp[1];
#endif
	rt_spin_lock(&procs_lock);
	ticket = ++tickets;
	slot = ninflight++;
	inflight[slot] = ticket;
	rt_spin_unlock(&procs_lock);

	pid = vfork_child(sp, paths, &rep);
	int verr = errno;
	if (errp[1] >= 0)
		close(errp[1]);

	rt_spin_lock(&procs_lock);
	for (int i = 0; i < ninflight; i++) {
		if (inflight[i] == ticket) {
			inflight[i] = inflight[--ninflight];
			break;
		}
	}
	if (pid > 0) {
		p->pid = pid;
		p->exited = false;
		for (size_t i = 0; i < nunclaimed; i++) {
			if (unclaimed[i].pid == pid) {
				p->exited = true;
				p->status = unclaimed[i].status;
				unclaimed[i] = unclaimed[--nunclaimed];
				break;
			}
		}
		if (!p->exited) {
			p->hnext = *bucket(pid);
			*bucket(pid) = p;
		}
	}
	unclaimed_purge();
	rt_spin_unlock(&procs_lock);
	free(paths);

	if (errp[0] >= 0) {
		struct child_err pc = { 0, 0 };
		ssize_t n;
		if (pid > 0) {
			do
				n = read(errp[0], &pc, sizeof pc);
			while (n < 0 && errno == EINTR);
			if (n == (ssize_t)sizeof pc)
				ce = pc;
		}
		close(errp[0]);
	}
	if (pid < 0) {
		*why = step_names[STEP_SETUP];
		return -verr;
	}
	if (ce.err) {
		*why = step_names[ce.step <= STEP_EXEC ? ce.step : STEP_SETUP];
		return -ce.err;
	}
	return 0;
}
