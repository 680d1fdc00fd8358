/* main.c: gorod's entry point.
 *
 * Parses the command line, binds the socket (server.c), starts the
 * goroutine runtime, and runs the main goroutine: it starts the accept
 * loop, tells systemd it is ready once the socket is served, and waits for
 * signals (read from a signalfd through the netpoller, so no thread is held
 * while it waits). SIGTERM/SIGINT stop gorod cleanly: no new connections,
 * every session closed (releasing what it holds), the socket removed.
 * SIGUSR1 logs the scheduler's counters. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "journal.h"
#include "metrics.h"
#include "notify.h"

/* The listening socket systemd (or systemd-socket-activate) passed, if any:
 * with socket activation the first client's connection waits in that
 * socket while gorod starts, and the socket outlives a restart. The same
 * holds for the socket gorod bound itself and put in systemd's fd store
 * (NOTIFY_FDNAME), unless the configured path changed meanwhile. Returns
 * the fd (non-blocking, close-on-exec; its path, for messages, in path;
 * *stored when it came from the fd store), or -ENOENT when none was
 * passed, or another negative code having said why. */
static int activated_socket(char *path, size_t len, bool *stored)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), fd = -ENOENT;

	if (n < 0) {
		fprintf(stderr, "gorod: the sockets systemd passed: %s\n", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		int cand = SD_LISTEN_FDS_START + i;
		if (fd < 0 && sd_is_socket_unix(cand, SOCK_STREAM, 1, NULL, 0) > 0) {
			fd = cand;
			*stored = names && names[i] && strcmp(names[i], NOTIFY_FDNAME) == 0;
		} else {
			close(cand); /* not ours to serve */
		}
	}
	for (int i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
	if (n > 0 && fd < 0) {
		fprintf(stderr, "gorod: systemd passed %d socket%s, none a listening Unix stream "
			"socket; check ListenStream= in gorod.socket\n", n, n == 1 ? "" : "s");
		return -EINVAL;
	}
	if (fd >= 0) {
		struct sockaddr_un sa;
		socklen_t sl = sizeof sa;
		bool named = getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 &&
			     sa.sun_family == AF_UNIX && sa.sun_path[0];

		if (*stored && (!named || strcmp(sa.sun_path, path) != 0)) {
			fprintf(stderr, "gorod: the socket kept from the last run listens on %s, "
				"not on %s: binding the new path\n", named ? sa.sun_path : "?", path);
			close(fd);
			notify_forget_listener();
			*stored = false;
			return -ENOENT;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (named)
			snprintf(path, len, "%s", sa.sun_path);
	}
	return fd;
}

static void log_stats(void)
{
	struct rt_stats st;

	rt_stats_get(&st);
	fprintf(stderr,
		"gorod: maxprocs=%d goroutines=%llu (running %llu, runnable %llu, waiting %llu) "
		"spawned=%llu ctxsw=%llu steals=%llu stacks=%llu\n",
		st.maxprocs, (unsigned long long)st.live, (unsigned long long)st.running,
		(unsigned long long)st.runnable, (unsigned long long)st.waiting,
		(unsigned long long)st.spawned, (unsigned long long)st.ctxsw,
		(unsigned long long)st.steals, (unsigned long long)st.stacks);
}

/* Forgets lost WaitGroups, and mutexes and semaphores whose owner died,
 * that nobody asked about for 10 minutes (wg.c, rwmutex.c, sem.c). */
static struct rt_gref sweeper_g;
static struct rt_wg sweeper_wg;

static void sweeper(void *unused)
{
	while (rt_sleep(rt_deadline_ms(10000)) == 0) {
		rt_mutex_lock_nocancel(&names_lock);
		int64_t now = rt_now();
		names_sweep(PRIM_WG, nwg_expired, now);
		names_sweep(PRIM_MUTEX, nmutex_expired, now);
		names_sweep(PRIM_SEM, nsem_expired, now);
		task_prune(now);
		rt_mutex_unlock(&names_lock);
		task_trim(1);
	}
	rt_wg_done(&sweeper_wg);
}

static int sweeper_start(void)
{
	rt_wg_add(&sweeper_wg, 1);
	return rt_go(sweeper, NULL, &sweeper_g);
}

static void sweeper_stop(void)
{
	rt_cancel(sweeper_g);
	rt_wg_wait(&sweeper_wg, RT_FOREVER);
}

/* How long tasks have between SIGTERM and SIGKILL when gorod stops (less
 * than gorod.service's TimeoutStopSec). */
#define STOP_GRACE_MS 3000

struct main_args {
	int sfd, lfd;
	const char *path;
	struct config *cf;
	int rc;
};

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* SIGHUP: reads the configuration file again and applies what can change
 * while gorod runs; the socket and the modules need a restart, and the
 * log says so. On an error nothing changes. */
static void reload(struct config *cf)
{
	struct config next;
	char err[1024], outcome[1200];
	int r;

	notify_reloading();
	if (config_reload(&next, err, sizeof err) < 0) {
		fprintf(stderr, "gorod: reload: %s; keeping the settings in use\n", err);
		snprintf(outcome, sizeof outcome, "reload failed: %s", err);
		notify_reloaded(outcome);
		return;
	}
	if (!same(next.socket, cf->socket))
		fprintf(stderr, "gorod: reload: socket changed; it takes effect at the next start\n");
	if (!same(next.module_dir, cf->module_dir))
		fprintf(stderr, "gorod: reload: module-dir changed; it takes effect at the next start\n");
	if (!same(next.state_dir, cf->state_dir))
		fprintf(stderr, "gorod: reload: state-dir changed; it takes effect at the next start\n");
	if (next.maxprocs != cf->maxprocs) {
		int n = next.maxprocs ? next.maxprocs : rt_cpus();
		if ((r = rt_maxprocs(n)) < 0)
			fprintf(stderr, "gorod: reload: maxprocs %d: %s\n", n, proto_strerror(r));
	}
	metrics_reload(next.metrics); /* on failure the old endpoint stays */
	rt_mutex_lock_nocancel(&names_lock);
	task_config = next.task;
	quota_set_limits(&next.quota);
	rt_mutex_unlock(&names_lock);
	/* What needs a restart stays as it runs. */
	free(next.socket);
	free(next.module_dir);
	free(next.state_dir);
	next.socket = cf->socket;
	next.module_dir = cf->module_dir;
	next.state_dir = cf->state_dir;
	cf->socket = cf->module_dir = cf->state_dir = NULL;
	config_free(cf);
	*cf = next;
	fprintf(stderr, "gorod: reloaded %s: maxprocs=%d leak-after=%lldms output-max=%lld "
		"keep-tasks=%lld keep-age=%lldms keep-output=%lld\n",
		config_path ? config_path : "(no configuration file)", rt_maxprocs(0),
		(long long)cf->task.leak_after_ms, (long long)cf->task.output_max,
		(long long)cf->task.keep_count, (long long)cf->task.keep_age_ms,
		(long long)cf->task.keep_output);
	notify_reloaded("reloaded");
}

/* The main goroutine: serves the socket and waits for signals until told
 * to stop. */
static void main_goroutine(void *arg)
{
	struct main_args *ma = arg;
	int sfd = ma->sfd;
	struct signalfd_siginfo si;
	int r;

	/* First, so that a bad --metrics address stops gorod before it serves
	 * anything (metrics_start said why). */
	if (metrics_start(ma->cf->metrics) < 0) {
		ma->rc = 1;
		return;
	}
	/* The tasks of the last run, before any client can ask for them. */
	if (journal_open(ma->cf->state_dir) < 0) {
		metrics_stop();
		ma->rc = 1;
		return;
	}
	if ((r = server_start(ma->lfd)) < 0 || (r = sweeper_start()) < 0 || (r = leak_start()) < 0 ||
	    (r = notify_ready(ma->path)) < 0) {
		fprintf(stderr, "gorod: cannot start serving: %s\n", proto_strerror(r));
		journal_close();
		metrics_stop();
		ma->rc = 1;
		return;
	}
	fprintf(stderr, "gorod %s: ready on %s, GOMAXPROCS=%d\n", GOROD_VERSION, ma->path,
		rt_maxprocs(0));
	for (;;) {
		r = rt_wait_fd(sfd, RT_READ, RT_FOREVER);
		if (r < 0) {
			fprintf(stderr, "gorod: waiting for signals: %s\n", proto_strerror(r));
			break;
		}
		if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
			continue;
		if (si.ssi_signo == SIGCHLD) {
			proc_reap();
			continue;
		}
		if (si.ssi_signo == SIGUSR1) {
			log_stats();
			continue;
		}
		if (si.ssi_signo == SIGHUP) {
			reload(ma->cf);
			continue;
		}
		fprintf(stderr, "gorod: %s, stopping\n", strsignal((int)si.ssi_signo));
		break;
	}
	notify_stopping();
	metrics_stop();
	server_stop();
	leak_stop();
	sessions_close_all();
	/* Tasks end with gorod: their process groups get SIGTERM, and SIGKILL
	 * STOP_GRACE_MS later (a service manager's stop would kill them
	 * anyway; see README). Reaping goes on meanwhile, from here. */
	int64_t kill_at = rt_deadline_ms(STOP_GRACE_MS);
	bool killed = false;
	tasks_stop_signal(SIGTERM);
	for (;;) {
		proc_reap();
		if (tasks_stop_wait(rt_deadline_ms(50)) == 0)
			break;
		if (!killed && rt_now() >= kill_at) {
			tasks_stop_start();
			killed = true;
		}
	}
	sweeper_stop();
	journal_close(); /* after the tasks' ends: they are on disk too */
}

/* Lets the workers' malloc arenas give their free top back. A per-thread
 * arena returns the free memory at its top only from free(), when the
 * chunk freed reaches the top and the top is past the trim threshold:
 * malloc_trim() trims the main arena's top alone (it only madvises the
 * free chunks inside the others). Two glibc defaults defeat that:
 *   - the trim threshold rises on its own to twice the largest mmap'd
 *     block freed so far (a big reply, a table that grew): after one
 *     512 KiB reply, up to 1 MiB of free top per arena stays resident.
 *     Pinned at its default, 128 KiB (blocks of 128 KiB and more then
 *     stay mmap'd, given back when freed);
 *   - small chunks freed go to fastbins, and malloc_trim() merges them
 *     into the top without trimming it: 1.2 MB after the soak test's
 *     prune. Without fastbins a free merges at once, and trims.
 * Small frees are served by glibc's per-thread cache first, so the
 * fastbins' speed is seldom missed. */
static void malloc_setup(void)
{
	mallopt(M_TRIM_THRESHOLD, 128 * 1024);
	mallopt(M_MXFAST, 0);
}

int main(int argc, char **argv)
{
	struct config cf = { 0 };
	struct main_args ma = { 0 };
	char path[256];
	bool activated = false, stored = false;
	sigset_t mask;
	int sfd = -1, lfd, r, rc = 1;

	malloc_setup();
	/* Tasks get their pipes as fds 0-2: those must not be free here, or
	 * a pipe would land on one of them. */
	for (int fd; (fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0;) {
		if (fd > 2) {
			close(fd);
			break;
		}
		fcntl(fd, F_SETFD, 0);
	}
	r = config_load(argc, argv, &cf);
	if (r != 0) {
		rc = r > 0 ? 0 : 2;
		goto out;
	}
	task_config = cf.task;

	/* Block the signals in every thread before any starts, and read
	 * them from a signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		perror("gorod: signalfd");
		goto out;
	}
	if (server_socket_path(cf.socket, path, sizeof path) < 0) {
		fprintf(stderr, "gorod: the socket path is too long\n");
		rc = 2;
		goto out;
	}
	if ((r = proc_init()) < 0 || (r = tasks_init()) < 0) {
		fprintf(stderr, "gorod: cannot set up tasks: %s\n", strerror(-r));
		goto out;
	}
	if (cf.module_dir && module_load_dir(cf.module_dir) < 0)
		goto out;
	lfd = activated_socket(path, sizeof path, &stored);
	if (lfd == -ENOENT) {
		lfd = server_listen(path);
		/* Kept by systemd across a restart, when it keeps an fd store. */
		stored = lfd >= 0 && notify_store_listener(lfd);
	} else {
		activated = lfd >= 0;
	}
	if (lfd < 0)
		goto out;
	gorod_started_ns = rt_now();
	r = rt_init(&(struct rt_config){ .maxprocs = cf.maxprocs });
	if (r < 0) {
		fprintf(stderr, "gorod: cannot start the runtime: %s\n", proto_strerror(r));
		if (!activated && !stored)
			unlink(path);
		goto out;
	}
	ma = (struct main_args){ .sfd = sfd, .lfd = lfd, .path = path, .cf = &cf };
	rt_run(main_goroutine, &ma);
	close(lfd);
	/* A socket that systemd keeps (its socket unit's, or gorod's own in the
	 * fd store) stays, for the next start. */
	if (!activated && !stored)
		unlink(path);
	r = rt_shutdown();
	if (r < 0)
		fprintf(stderr, "gorod: shutdown: %s\n", proto_strerror(r));
	rc = r < 0 || ma.rc ? 1 : 0;
out:
	if (sfd >= 0)
		close(sfd);
	config_free(&cf);
	return rc;
}
