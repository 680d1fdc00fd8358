/* main.c: gorod's entry point.
 *
 * Today gorod hosts the goroutine runtime and manages its own life: it
 * starts GOMAXPROCS workers, tells systemd it is ready, and waits in a
 * goroutine for signals (read from a signalfd through the netpoller, so no
 * thread is held while it waits): SIGTERM/SIGINT stop it cleanly, SIGUSR1
 * logs the scheduler's counters. The socket server that serves tasks and
 * named primitives is built on this (docs/ARCHITECTURE.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "error.h"
#include "runtime.h"

#define GOROD_VERSION "0.1.0"

struct options {
	int maxprocs;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: gorod [--maxprocs N]\n"
		"\n"
		"The gorod daemon: a goroutine runtime shared by every process.\n"
		"\n"
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
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "p:Vh", longopts, NULL)) != -1) {
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

/* The main goroutine: waits for signals until told to stop. */
static void signal_loop(void *arg)
{
	int sfd = *(int *)arg;
	struct signalfd_siginfo si;

	sd_notifyf(0, "READY=1\nSTATUS=serving, GOMAXPROCS=%d\nMAINPID=%d",
		   rt_maxprocs(0), (int)getpid());
	fprintf(stderr, "gorod %s: ready, GOMAXPROCS=%d\n", GOROD_VERSION, rt_maxprocs(0));
	for (;;) {
		int r = rt_wait_fd(sfd, RT_READ, RT_FOREVER);
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
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	sigset_t mask;
	int sfd, r;

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
	r = rt_init(&(struct rt_config){ .maxprocs = opt.maxprocs });
	if (r < 0) {
		fprintf(stderr, "gorod: cannot start the runtime: %s\n", proto_strerror(r));
		return 1;
	}
	rt_run(signal_loop, &sfd);
	r = rt_shutdown();
	if (r < 0)
		fprintf(stderr, "gorod: shutdown: %s\n", proto_strerror(r));
	close(sfd);
	return r < 0 ? 1 : 0;
}
