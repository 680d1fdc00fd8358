/* stats.c: the stats method's map (proto/PROTOCOL.md "stats"). */
#include <stdio.h>
#include <unistd.h>

#include "quota.h"
#include "task.h"

int64_t gorod_started_ns;

/* Resident set size in bytes, from /proc/self/statm. */
int64_t stats_rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

static void pack_sessions(msgpack_packer *pk)
{
	proto_pack_str(pk, "sessions");
	msgpack_pack_array(pk, (size_t)nsessions);
	for (struct session *s = sessions; s; s = s->next) {
		size_t held = 0;
		for (struct grant *g = s->grants; g; g = g->snext)
			held++;
		msgpack_pack_map(pk, 8);
		proto_pack_kv_u64(pk, "id", s->id);
		proto_pack_kv_i64(pk, "pid", s->pid);
		proto_pack_kv_i64(pk, "uid", s->uid);
		proto_pack_kv_i64(pk, "gid", s->gid);
		proto_pack_kv_str(pk, "client", s->client);
		proto_pack_kv_u64(pk, "requests", atomic_load(&s->requests));
		proto_pack_kv_u64(pk, "held", held);
		proto_pack_kv_i64(pk, "waiting", s->nreqs);
	}
}

/* tasks: {spawned, live, queued, running, paused, kept, ended: {state: n},
 * left_behind_reaped} */
static void pack_tasks(msgpack_packer *pk)
{
	struct task_counts c;

	task_counts(&c);
	proto_pack_str(pk, "tasks");
	msgpack_pack_map(pk, 8);
	proto_pack_kv_u64(pk, "spawned", c.spawned);
	proto_pack_kv_u64(pk, "live", c.live);
	proto_pack_kv_u64(pk, "queued", c.queued);
	proto_pack_kv_u64(pk, "running", c.running);
	proto_pack_kv_u64(pk, "paused", c.paused);
	proto_pack_kv_u64(pk, "kept", c.kept);
	proto_pack_str(pk, "ended");
	msgpack_pack_map(pk, TS_COUNT - TS_EXITED);
	for (int i = TS_EXITED; i < TS_COUNT; i++)
		proto_pack_kv_u64(pk, task_state_name(i), c.by_state[i]);
	proto_pack_kv_u64(pk, "left_behind_reaped", proc_orphans_reaped());
}

void stats_pack(msgpack_packer *pk, void *unused)
{
	static struct rt_stats st; /* large; names_lock serializes its use */
	int waiters = 0;

	rt_mutex_lock_nocancel(&names_lock);
	rt_stats_get(&st);
	for (struct session *s = sessions; s; s = s->next)
		waiters += s->nreqs;

	msgpack_pack_map(pk, 19);
	proto_pack_kv_str(pk, "version", GOROD_VERSION);
	proto_pack_kv_i64(pk, "uptime_ms", (rt_now() - gorod_started_ns) / 1000000);
	proto_pack_kv_i64(pk, "pid", getpid());
	proto_pack_kv_i64(pk, "maxprocs", st.maxprocs);

	proto_pack_str(pk, "goroutines");
	msgpack_pack_map(pk, 4);
	proto_pack_kv_u64(pk, "live", st.live);
	proto_pack_kv_u64(pk, "running", st.running);
	proto_pack_kv_u64(pk, "runnable", st.runnable);
	proto_pack_kv_u64(pk, "waiting", st.waiting);

	proto_pack_kv_u64(pk, "spawned", st.spawned);
	proto_pack_kv_u64(pk, "finished", st.finished);
	proto_pack_kv_u64(pk, "ctxsw", st.ctxsw);
	proto_pack_kv_u64(pk, "steals", st.steals);
	proto_pack_kv_u64(pk, "hog_events", st.hog_events);
	proto_pack_kv_u64(pk, "idle_workers", st.idle_workers);

	proto_pack_str(pk, "runq");
	msgpack_pack_map(pk, 2);
	proto_pack_kv_u64(pk, "global", st.global_runq);
	proto_pack_str(pk, "local");
	msgpack_pack_array(pk, (size_t)st.maxprocs);
	for (int i = 0; i < st.maxprocs; i++)
		msgpack_pack_uint64(pk, st.local_runq[i]);

	pack_sessions(pk);

	proto_pack_str(pk, "primitives");
	msgpack_pack_map(pk, 4);
	proto_pack_kv_u64(pk, "waitgroups", names_count(PRIM_WG));
	proto_pack_kv_u64(pk, "mutexes", names_count(PRIM_MUTEX));
	proto_pack_kv_u64(pk, "semaphores", names_count(PRIM_SEM));
	proto_pack_kv_i64(pk, "waiters", waiters);

	proto_pack_str(pk, "memory");
	msgpack_pack_map(pk, 3);
	proto_pack_kv_i64(pk, "rss", stats_rss_bytes());
	proto_pack_kv_u64(pk, "stack_bytes", st.stack_bytes);
	proto_pack_kv_u64(pk, "stacks", st.stacks);

	proto_pack_kv_i64(pk, "sessions_count", nsessions);
	pack_tasks(pk);
	proto_pack_str(pk, "leaks");
	leak_pack_counts(pk);
	quota_pack(pk); /* last: its users' keys are not the sections above */
	rt_mutex_unlock(&names_lock);
}
