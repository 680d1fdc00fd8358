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
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "gorod.h"

struct options {
	int maxprocs;
	const char *socket;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gorod [--socket PATH] [--maxprocs N]\n"
		"\n"
		"The gorod daemon: a goroutine runtime shared by every process.\n"
		"\n"
		"  -s, --socket PATH  where to listen; default: $GOROD_SOCKET, else\n"
		"                     $XDG_RUNTIME_DIR/gorod.sock, else /run/gorod/gorod.sock\n"
		"  -p, --maxprocs N   worker threads (GOMAXPROCS); default: the CPUs\n"
		"                     this process may use\n"
		"  -V, --version      print the version and exit\n"
		"  -h, --help         print this help and exit\n"
		"\n"
		"Signals: SIGTERM or SIGINT stop gorod; SIGUSR1 logs scheduler counters.\n");
}

/* Parses argv into *opt. Returns 0, 1 when gorod should exit 0 at once
 * (--help, --version), or -EINVAL after printing what is wrong. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "maxprocs", required_argument, NULL, 'p' },
		{ "socket", required_argument, NULL, 's' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "p:s:Vh", longopts, NULL)) != -1) {
		switch (c) {
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

	if ((r = server_start(ma->lfd)) < 0 || (r = sweeper_start()) < 0) {
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
		if (si.ssi_signo == SIGUSR1) {
			log_stats();
			continue;
		}
		fprintf(stderr, "gorod: %s, stopping\n", strsignal((int)si.ssi_signo));
		sd_notify(0, "STOPPING=1");
		break;
	}
	server_stop();
	sessions_close_all();
	sweeper_stop();
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct main_args ma = { 0 };
	char path[256];
	sigset_t mask;
	int sfd, lfd, r;

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
	lfd = server_listen(path);
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
	unlink(path);
	r = rt_shutdown();
	if (r < 0)
		fprintf(stderr, "gorod: shutdown: %s\n", proto_strerror(r));
	close(sfd);
	return r < 0 || ma.rc ? 1 : 0;
}
