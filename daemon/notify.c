/* notify.c: what gorod tells its service manager (sd_notify).
 *
 *   READY=1      once the socket is served (and again after a reload);
 *   STATUS=      one line: goroutines, tasks, leaks; a goroutine refreshes
 *                it every STATUS_EVERY_MS when it changed;
 *   WATCHDOG=1   from the runtime's monitor thread, every quarter of
 *                WatchdogSec, and only while the scheduler is seen to run
 *                goroutines (rt_watchdog): a wedged scheduler falls silent
 *                and systemd restarts gorod;
 *   RELOADING=1  while SIGHUP's reload runs; STOPPING=1 on the way out;
 *   FDSTORE=1    the listening socket gorod bound itself, so that a
 *                restarted gorod gets it back (main.c) and clients queue
 *                in its backlog meanwhile instead of being refused.
 *
 * Without $NOTIFY_SOCKET every call is a no-op and no goroutine runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "task.h"

#define STATUS_EVERY_MS 5000

static const char *serving;     /* the socket's path, for STATUS */
static struct rt_gref status_g;
static struct rt_wg status_wg;
static bool status_running, watchdog_running;

/* The one-line summary, into buf. */
static void status_line(char *buf, size_t len)
{
	struct task_counts tc;
	struct rt_stats *st = malloc(sizeof *st);
	size_t leaks;

	rt_mutex_lock_nocancel(&names_lock);
	task_counts(&tc);
	leaks = leak_count();
	if (st)
		rt_stats_get(st);
	rt_mutex_unlock(&names_lock);
	snprintf(buf, len, "serving %s: %llu goroutines, %llu tasks running, %llu queued, "
		 "%zu leak%s, GOMAXPROCS=%d", serving,
		 st ? (unsigned long long)st->live : 0ULL,
		 (unsigned long long)(tc.running + tc.paused), /* a paused one runs still */
		 (unsigned long long)tc.queued, leaks, leaks == 1 ? "" : "s", rt_maxprocs(0));
	free(st);
}

static void status_loop(void *unused)
{
	char last[512] = "", now[512];

	while (rt_sleep(rt_deadline_ms(STATUS_EVERY_MS)) == 0) {
		status_line(now, sizeof now);
		if (strcmp(now, last) != 0) {
			sd_notifyf(0, "STATUS=%s", now);
			memcpy(last, now, sizeof last);
		}
	}
	rt_wg_done(&status_wg);
}

/* On sysmon's thread: the scheduler was seen running. */
static void watchdog_kick(void *unused)
{
	sd_notify(0, "WATCHDOG=1");
}

int notify_ready(const char *path)
{
	char line[512];
	uint64_t usec = 0;
	int r;

	serving = path;
	if (!getenv("NOTIFY_SOCKET"))
		return 0;
	/* The status goroutine first: whoever counts gorod's goroutines once
	 * it is ready (the tests) must find it already there. */
	rt_wg_add(&status_wg, 1);
	if ((r = rt_go(status_loop, NULL, &status_g)) < 0) {
		rt_wg_done(&status_wg);
		return r;
	}
	status_running = true;
	status_line(line, sizeof line);
	sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", line, (int)getpid());
	/* WatchdogSec= set (and for this process): kick at a quarter of it,
	 * so a late kick or two still arrives in time. */
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		int64_t period = (int64_t)(usec < 4000 ? 1000 : usec / 4) * 1000;
		if ((r = rt_watchdog(watchdog_kick, NULL, period)) < 0)
			return r;
		watchdog_running = true;
		fprintf(stderr, "gorod: watchdog: kicking every %lld ms while the scheduler runs\n",
			(long long)(period / 1000000));
	}
	return 0;
}

void notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void notify_reloaded(const char *outcome)
{
	char line[512];

	status_line(line, sizeof line);
	sd_notifyf(0, "READY=1\nSTATUS=%s%s%s", outcome ? outcome : "", outcome ? "; " : "", line);
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	if (watchdog_running)
		rt_watchdog(NULL, NULL, 0);
	watchdog_running = false;
	if (status_running) {
		rt_cancel(status_g);
		rt_wg_wait(&status_wg, RT_FOREVER);
	}
	status_running = false;
}

bool notify_store_listener(int fd)
{
	const char *slots = getenv("FDSTORE");

	/* $FDSTORE: how many fds the store keeps (systemd 254 sets it; our
	 * unit sets it for older ones). Without a store, the socket file must
	 * go when gorod stops, so it is not offered. */
	if (!getenv("NOTIFY_SOCKET") || !slots || atoi(slots) <= 0)
		return false;
	return sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" NOTIFY_FDNAME, &fd, 1) > 0;
}

void notify_forget_listener(void)
{
	sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" NOTIFY_FDNAME);
}
