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
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "task.h"

struct options {
	int maxprocs;
	const char *socket;
	const char *module_dir;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gorod [--socket PATH] [--maxprocs N] [--module-dir DIR] [OPTIONS]\n"
		"\n"
		"The gorod daemon: a goroutine runtime shared by every process.\n"
		"\n"
		"  -s, --socket PATH  where to listen; default: $GOROD_SOCKET, else\n"
		"                     $XDG_RUNTIME_DIR/gorod.sock, else /run/gorod/gorod.sock\n"
		"  -p, --maxprocs N   worker threads (GOMAXPROCS); default: the CPUs\n"
		"                     this process may use\n"
		"  -m, --module-dir DIR  load the task functions of every *.so in DIR\n"
		"      --output-max BYTES  task output kept per stream (default 1M;\n"
		"                     suffixes K, M, G)\n"
		"      --keep-tasks N     finished tasks kept for wait and logs (10000)\n"
		"      --keep-age DUR     ... and for how long (1h; 250ms, 2s, 1m, 1h)\n"
		"      --keep-output BYTES  output kept over all finished tasks (256M)\n"
		"      --leak-after DUR   a task alive this long without progress is a\n"
		"                     suspected leak, unless it said otherwise (10m)\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop gorod; SIGUSR1 logs scheduler counters.\n");
}

/* A size like 4096, 64K, 1M, 2G into *v (at most max). */
static int parse_size(const char *s, const char *flag, long long max, int64_t *v)
{
	char *end;
	long long n = strtoll(s, &end, 10), mul = 1;

	if (*end == 'K' || *end == 'k')
		mul = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mul = 1024 * 1024 * 1024, end++;
	if (*s == '\0' || *end != '\0' || n < 0 || n > max / mul) {
		fprintf(stderr, "gorod: %s wants a number from 0 to %lld (suffixes K, M, G), not '%s'\n",
			flag, max, s);
		return -EINVAL;
	}
	*v = n * mul;
	return 0;
}

/* A duration like 250ms, 2s, 1m, 1h (a bare number is seconds) into ms. */
static int parse_duration(const char *s, const char *flag, int64_t *ms)
{
	char *end;
	long long n = strtoll(s, &end, 10), mul = 1000;

	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		mul = 0;
	if (*s == '\0' || mul == 0 || n < 0 || n > 10LL * 366 * 24 * 3600000 / mul) {
		fprintf(stderr, "gorod: %s wants a duration like 250ms, 2s, 1m or 1h "
			"(at most ten years), not '%s'\n", flag, s);
		return -EINVAL;
	}
	*ms = n * mul;
	return 0;
}

/* The listening socket systemd (or systemd-socket-activate) passed, if any:
 * with socket activation the first client's connection waits in that
 * socket while gorod starts, and the socket outlives a restart. Returns the
 * fd (non-blocking, close-on-exec; its path, for messages, in path), or
 * -ENOENT when none was passed, or another negative code having said why. */
static int activated_socket(char *path, size_t len)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), fd = -ENOENT;

	if (n < 0) {
		fprintf(stderr, "gorod: the sockets systemd passed: %s\n", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		int cand = SD_LISTEN_FDS_START + i;
		if (fd < 0 && sd_is_socket_unix(cand, SOCK_STREAM, 1, NULL, 0) > 0)
			fd = cand;
		else
			close(cand); /* not ours to serve */
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
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (getsockname(fd, (struct sockaddr *)&sa, &sl) == 0 && sa.sun_family == AF_UNIX &&
		    sa.sun_path[0])
			snprintf(path, len, "%s", sa.sun_path);
	}
	return fd;
}

/* Parses argv into *opt. Returns 0, 1 when gorod should exit 0 at once
 * (--help, --version), or -EINVAL after printing what is wrong. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "maxprocs", required_argument, NULL, 'p' },
		{ "module-dir", required_argument, NULL, 'm' },
		{ "output-max", required_argument, NULL, 'O' },
		{ "keep-tasks", required_argument, NULL, 'K' },
		{ "keep-age", required_argument, NULL, 'A' },
		{ "keep-output", required_argument, NULL, 'B' },
		{ "leak-after", required_argument, NULL, 'L' },
		{ "socket", required_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "p:s:m:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			opt->module_dir = optarg;
			break;
		case 'O':
			if (parse_size(optarg, "--output-max", 1LL << 30, &task_config.output_max) < 0)
				return -EINVAL;
			if (task_config.output_max > task_config.output_limit)
				task_config.output_limit = task_config.output_max;
			break;
		case 'K':
			if (parse_size(optarg, "--keep-tasks", 100000000, &task_config.keep_count) < 0)
				return -EINVAL;
			break;
		case 'A':
			if (parse_duration(optarg, "--keep-age", &task_config.keep_age_ms) < 0)
				return -EINVAL;
			break;
		case 'L':
			if (parse_duration(optarg, "--leak-after", &task_config.leak_after_ms) < 0)
				return -EINVAL;
			break;
		case 'B':
			if (parse_size(optarg, "--keep-output", 1LL << 40, &task_config.keep_output) < 0)
				return -EINVAL;
			break;
		case 'p': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || n < 1 || n > RT_MAXPROCS_LIMIT) {
				fprintf(stderr, "gorod: --maxprocs wants a number from 1 to %d, not '%s'\n",
					RT_MAXPROCS_LIMIT, optarg);
				return -EINVAL;
			}
			opt->maxprocs = (int)n;
			break;
		}
		case 's':
			opt->socket = optarg;
			break;
		case 'V':
			printf("gorod %s\n", GOROD_VERSION);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			fprintf(stderr, "Try 'gorod --help'.\n");
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "gorod: unexpected argument '%s'. Try 'gorod --help'.\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
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

struct main_args {
	int sfd, lfd;
	const char *path;
	int rc;
};

/* The main goroutine: serves the socket and waits for signals until told
 * to stop. */
static void main_goroutine(void *arg)
{
	struct main_args *ma = arg;
	int sfd = ma->sfd;
	struct signalfd_siginfo si;
	int r;

	if ((r = server_start(ma->lfd)) < 0 || (r = sweeper_start()) < 0 || (r = leak_start()) < 0) {
		fprintf(stderr, "gorod: cannot start serving: %s\n", proto_strerror(r));
		ma->rc = 1;
		return;
	}
	sd_notifyf(0, "READY=1\nSTATUS=serving %s, GOMAXPROCS=%d\nMAINPID=%d",
		   ma->path, rt_maxprocs(0), (int)getpid());
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
		fprintf(stderr, "gorod: %s, stopping\n", strsignal((int)si.ssi_signo));
		sd_notify(0, "STOPPING=1");
		break;
	}
	server_stop();
	leak_stop();
	sessions_close_all();
	/* Tasks end with gorod: their process groups are killed (a service
	 * manager's stop would kill them anyway; see README). Reaping goes on
	 * meanwhile, from this goroutine. */
	tasks_stop_start();
	for (;;) {
		proc_reap();
		if (tasks_stop_wait(rt_deadline_ms(50)) == 0)
			break;
	}
	sweeper_stop();
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct main_args ma = { 0 };
	char path[256];
	bool activated = false;
	sigset_t mask;
	int sfd, lfd, r;

	/* Tasks get their pipes as fds 0-2: those must not be free here, or
	 * a pipe would land on one of them. */
	for (int fd; (fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0;) {
		if (fd > 2) {
			close(fd);
			break;
		}
		fcntl(fd, F_SETFD, 0);
	}
	r = parse_args(argc, argv, &opt);
	if (r != 0)
		return r > 0 ? 0 : 2;

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
		return 1;
	}
	if (server_socket_path(opt.socket, path, sizeof path) < 0) {
		fprintf(stderr, "gorod: the socket path is too long\n");
		return 2;
	}
	if ((r = proc_init()) < 0 || (r = tasks_init()) < 0) {
		fprintf(stderr, "gorod: cannot set up tasks: %s\n", strerror(-r));
		return 1;
	}
	if (opt.module_dir && module_load_dir(opt.module_dir) < 0)
		return 1;
	lfd = activated_socket(path, sizeof path);
	if (lfd == -ENOENT)
		lfd = server_listen(path);
	else
		activated = lfd >= 0;
	if (lfd < 0)
		return 1;
	gorod_started_ns = rt_now();
	r = rt_init(&(struct rt_config){ .maxprocs = opt.maxprocs });
	if (r < 0) {
		fprintf(stderr, "gorod: cannot start the runtime: %s\n", proto_strerror(r));
		unlink(path);
		return 1;
	}
	ma = (struct main_args){ .sfd = sfd, .lfd = lfd, .path = path };
	rt_run(main_goroutine, &ma);
	close(lfd);
	if (!activated) /* systemd's socket stays, for the next start */
		unlink(path);
	r = rt_shutdown();
	if (r < 0)
		fprintf(stderr, "gorod: shutdown: %s\n", proto_strerror(r));
	close(sfd);
	return r < 0 || ma.rc ? 1 : 0;
}
