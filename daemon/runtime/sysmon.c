/* sysmon.c: the runtime's monitor thread (Go's sysmon).
 *
 * Every 10 ms while any worker is busy it:
 *   - measures how long each worker's current goroutine has run without
 *     yielding: the worker's schedtick changes at every switch, so the same
 *     tick seen twice means the same goroutine has held the worker all
 *     along. The longest hold is kept per goroutine (max_hold_ns) and a hold
 *     past RT_HOG_NS is counted once, for the leak monitor to report. This
 *     costs the scheduler nothing on its fast path.
 *   - polls the netpoller without blocking when no worker has for 10 ms, so
 *     fd events and timers are not starved by workers that never go idle;
 *   - once a second, returns the pages of the free stacks that stayed
 *     unused since the last time (stack.c).
 * When every worker is idle it sleeps until a worker wakes up: an idle
 * runtime uses no CPU. Scavenging must not stop there, though: stack.c
 * releases what stayed unused between two of its calls, so a runtime that
 * went quiet right after a burst would otherwise keep the burst's stacks
 * for as long as it stays quiet (gorod's RSS at rest, after a load, was
 * ~1.5 MB over what it needed). So once a worker has run, sysmon owes
 * IDLE_SCAVENGES more scavenges, made at the usual pace while all are
 * idle; then it sleeps until the next wakeup.
 *
 * The watchdog (rt_watchdog): a service manager restarts gorod when it
 * stops hearing from it, and what it must not hear from is a wedged
 * scheduler, not merely a live thread. So a probe goroutine sleeps and
 * beats (a timer fired, the poller woke a worker, a worker ran it), and
 * sysmon calls the watchdog's function only when it saw a beat since the
 * last call: if either the probe's path or sysmon itself stops, the calls
 * stop. It costs one wakeup per half period. */
#include <string.h>
#include <time.h>

#include "internal.h"

#define SYSMON_TICK_NS (10 * 1000 * 1000LL)
#define SCAVENGE_NS (1000 * 1000 * 1000LL)
#define IDLE_SCAVENGES 2 /* the second releases what the first saw unused */

static pthread_t sysmon_thread;
static pthread_mutex_t sysmon_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sysmon_cond;
static bool sysmon_stop_flag;                /* sysmon_lock */
static bool sysmon_running;
atomic_bool sysmon_sleeping;

struct hold_sample {
	uint32_t tick;
	struct g *g;
	int64_t since;
	bool reported;
};

static struct hold_sample samples[RT_MAXPROCS_LIMIT];

/* The watchdog: its function (sysmon_lock), the probe's beats. */
static void (*wd_fn)(void *);
static void *wd_arg;
static int64_t wd_period, wd_due;          /* sysmon_lock */
static uint64_t wd_seen;                   /* sysmon only */
static atomic_uint_fast64_t wd_beat;
static struct rt_gref wd_probe;
static struct rt_wg wd_probe_wg;
static bool wd_probing;

void sysmon_kick(void)
{
	if (!atomic_exchange(&sysmon_sleeping, false))
		return;
	pthread_mutex_lock(&sysmon_lock);
	pthread_cond_signal(&sysmon_cond);
	pthread_mutex_unlock(&sysmon_lock);
}

/* The latest hog events, for whoever wants to know who (the leak monitor):
 * a ring that keeps the last HOG_RING, under its own mutex (sysmon is a
 * plain thread; the reader holds it for a copy). */
#define HOG_RING 64
static struct rt_hog hog_ring[HOG_RING];
static uint64_t hog_head, hog_tail;
static pthread_mutex_t hog_lock = PTHREAD_MUTEX_INITIALIZER;

static void hog_record(uint64_t id, int64_t held)
{
	pthread_mutex_lock(&hog_lock);
	hog_ring[hog_head++ % HOG_RING] = (struct rt_hog){ id, held };
	if (hog_head - hog_tail > HOG_RING)
		hog_tail = hog_head - HOG_RING;
	pthread_mutex_unlock(&hog_lock);
}

size_t rt_hogs_take(struct rt_hog *out, size_t n)
{
	size_t k = 0;

	pthread_mutex_lock(&hog_lock);
	while (hog_tail < hog_head && k < n)
		out[k++] = hog_ring[hog_tail++ % HOG_RING];
	pthread_mutex_unlock(&hog_lock);
	return k;
}

static void sample_holds(int64_t now)
{
	int n = atomic_load(&sched.maxprocs);

	for (int i = 0; i < n; i++) {
		struct p *p = atomic_load(&sched.allp[i]);
		struct hold_sample *s = &samples[i];
		if (!p)
			continue;
		uint32_t tick = atomic_load_explicit(&p->schedtick_pub, memory_order_relaxed);
		struct g *g = atomic_load_explicit(&p->cur_atomic, memory_order_relaxed);
		if (!g || tick != s->tick || g != s->g) {
			*s = (struct hold_sample){ tick, g, now, false };
			continue;
		}
		int64_t held = now - s->since;
		if (held > atomic_load_explicit(&g->max_hold_ns, memory_order_relaxed))
			atomic_store_explicit(&g->max_hold_ns, held, memory_order_relaxed);
		if (held >= RT_HOG_NS && !s->reported) {
			s->reported = true;
			atomic_fetch_add(&sched.hog_events, 1);
			hog_record(atomic_load_explicit(&g->id, memory_order_relaxed), held);
		}
	}
}

/* Due? Then call the watchdog's function if the probe beat since the
 * last call. Called with sysmon_lock held; the function runs without it. */
static void watchdog_check(int64_t now)
{
	uint64_t beat;

	if (!wd_fn || now < wd_due)
		return;
	wd_due = now + wd_period;
	beat = atomic_load(&wd_beat);
	if (beat == wd_seen)
		return;
	wd_seen = beat;
	void (*fn)(void *) = wd_fn;
	void *arg = wd_arg;
	pthread_mutex_unlock(&sysmon_lock);
	fn(arg);
	pthread_mutex_lock(&sysmon_lock);
}

static void watchdog_probe(void *period)
{
	int64_t half = *(int64_t *)period / 2;

	do
		atomic_fetch_add(&wd_beat, 1);
	while (rt_sleep(rt_now() + half) == 0);
	rt_wg_done(&wd_probe_wg);
}

int rt_watchdog(void (*fn)(void *), void *arg, int64_t period_ns)
{
	static int64_t probe_period;
	int r = 0;

	if (wd_probing) {
		rt_cancel(wd_probe);
		rt_wg_wait(&wd_probe_wg, RT_FOREVER);
		wd_probing = false;
	}
	pthread_mutex_lock(&sysmon_lock);
	wd_fn = period_ns > 0 ? fn : NULL;
	wd_arg = arg;
	wd_period = period_ns;
	wd_due = rt_now() + period_ns;
	pthread_mutex_unlock(&sysmon_lock);
	if (!wd_fn)
		return 0;
	probe_period = period_ns;
	rt_wg_add(&wd_probe_wg, 1);
	r = rt_go(watchdog_probe, &probe_period, &wd_probe);
	if (r < 0) {
		rt_wg_done(&wd_probe_wg);
		return r;
	}
	wd_probing = true;
	sysmon_kick();
	return 0;
}

/* Sleeps on sysmon_cond until kicked, or until the watchdog is due. */
static void sleep_until(int64_t deadline)
{
	struct timespec ts;

	if (deadline < 0) {
		pthread_cond_wait(&sysmon_cond, &sysmon_lock);
		return;
	}
	/* rt_now() is CLOCK_MONOTONIC, like the condition's clock. */
	ts.tv_sec = deadline / 1000000000LL;
	ts.tv_nsec = deadline % 1000000000LL;
	pthread_cond_timedwait(&sysmon_cond, &sysmon_lock, &ts);
}

static bool all_idle(void)
{
	return atomic_load(&sched.nidle) >= atomic_load(&sched.maxprocs) &&
	       !atomic_load(&sched.globq_len);
}

/* All workers idle: makes a scavenge if one is owed and due, and returns
 * when to wake for the next one (-1: none owed). Called with sysmon_lock
 * held; scavenges without it. */
static int64_t scavenge_idle(int64_t *last, int *owed)
{
	if (*owed == 0)
		return -1;
	if (rt_now() - *last >= SCAVENGE_NS) {
		pthread_mutex_unlock(&sysmon_lock);
		stack_scavenge();
		pthread_mutex_lock(&sysmon_lock);
		*last = rt_now();
		if (--*owed == 0)
			return -1;
	}
	return *last + SCAVENGE_NS;
}

static void *sysmon_main(void *arg)
{
	int64_t last_scavenge = rt_now(), wake;
	int owed = 0; /* scavenges owed to a runtime gone idle */

	pthread_mutex_lock(&sysmon_lock);
	while (!sysmon_stop_flag) {
		if (all_idle()) {
			wake = scavenge_idle(&last_scavenge, &owed);
			if (wd_fn && (wake < 0 || wd_due < wake))
				wake = wd_due;
			atomic_store(&sysmon_sleeping, true);
			/* Recheck after announcing: a worker that woke meanwhile
			 * either sees sleeping == true and kicks, or we see it. */
			if (all_idle())
				sleep_until(wake);
			/* Kicked (sleeping cleared): a worker found work. */
			if (!atomic_exchange(&sysmon_sleeping, false))
				owed = IDLE_SCAVENGES;
			watchdog_check(rt_now());
			continue;
		}
		owed = IDLE_SCAVENGES;
		sleep_until(rt_now() + SYSMON_TICK_NS);
		if (sysmon_stop_flag)
			break;
		int64_t now = rt_now();
		watchdog_check(now);
		pthread_mutex_unlock(&sysmon_lock);

		sample_holds(now);
		if (netpoll_has_waiters() && now - netpoll_last_poll() > SYSMON_TICK_NS &&
		    netpoll_try_own()) {
			netpoll_poll(NULL, false);
			netpoll_disown();
			/* A worker that went idle while this poll owned the
			 * poller slept on its futex instead of polling: if all
			 * did, nobody polls now. Wake one; it will. */
			if (netpoll_has_waiters() && all_idle())
				sched_wakep();
		}
		if (now - last_scavenge > SCAVENGE_NS) {
			stack_scavenge();
			last_scavenge = now;
		}
		pthread_mutex_lock(&sysmon_lock);
	}
	pthread_mutex_unlock(&sysmon_lock);
	return NULL;
}

int sysmon_start(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&sysmon_cond, &attr);
	pthread_condattr_destroy(&attr);
	memset(samples, 0, sizeof samples);
	sysmon_stop_flag = false;
	atomic_store(&sysmon_sleeping, false);
	if (pthread_create(&sysmon_thread, NULL, sysmon_main, NULL) != 0)
		return -EAGAIN;
	sysmon_running = true;
	return 0;
}

void sysmon_stop(void)
{
	if (!sysmon_running)
		return;
	pthread_mutex_lock(&sysmon_lock);
	sysmon_stop_flag = true;
	pthread_cond_signal(&sysmon_cond);
	pthread_mutex_unlock(&sysmon_lock);
	pthread_join(sysmon_thread, NULL);
	pthread_cond_destroy(&sysmon_cond);
	sysmon_running = false;
}
