/* methods.h: the protocol's methods, declared once (Redis's command table).
 *
 * This table drives the daemon's dispatch (daemon/dispatch.c), the client
 * library's calls (client/calls.c), goroctl's help, and the test that
 * checks it against proto/PROTOCOL.md (tests/test_proto.c). Adding a method
 * means adding a row here and a section in PROTOCOL.md; the build and the
 * test then say what else is missing.
 *
 * Columns: X(ID, "wire name", flags, "params", "result", "summary")
 *   ID       the C identifier: PROTO_M_<ID>, handler h_<ID> in the daemon
 *   flags    PROTO_F_BLOCKS: may wait, so the daemon runs it in a goroutine
 *            of its own and answers later requests meanwhile */
#ifndef GORO_PROTO_METHODS_H
#define GORO_PROTO_METHODS_H

#define PROTO_F_BLOCKS 1

#define PROTO_METHODS(X)                                                        \
	X(hello, "hello", 0, "[{client?}]",                                     \
	  "{version, protocol, max_message, maxprocs, session}",               \
	  "greet gorod and learn its limits")                                   \
	X(wg_add, "wg.add", 0, "[name, delta, {lease?}]", "{count}",          \
	  "add delta to a named WaitGroup's counter")                           \
	X(wg_done, "wg.done", 0, "[name]", "{count}",                          \
	  "decrement a named WaitGroup's counter")                              \
	X(wg_wait, "wg.wait", PROTO_F_BLOCKS, "[name, {timeout_ms?}]", "{}",   \
	  "wait until a named WaitGroup's counter is zero")                     \
	X(mutex_lock, "mutex.lock", PROTO_F_BLOCKS,                             \
	  "[name, {mode?, timeout_ms?, try?}]", "{token, owner_died}",          \
	  "lock a named RWMutex for writing (mode w) or reading (mode r)")     \
	X(mutex_unlock, "mutex.unlock", 0, "[name, {token?}]", "{}",           \
	  "release a named RWMutex")                                            \
	X(sem_acquire, "sem.acquire", PROTO_F_BLOCKS,                           \
	  "[name, {capacity?, n?, timeout_ms?, try?}]", "{token, owner_died}",  \
	  "take n units of a named semaphore")                                  \
	X(sem_release, "sem.release", 0, "[name, {token?}]", "{}",             \
	  "give back what a sem.acquire took")                                  \
	X(wg_status, "wg.status", 0, "[name]",                                  \
	  "{count, waiters, round}",                                            \
	  "a named WaitGroup's counter and its tasks this round")               \
	X(spawn, "spawn", 0, "[{argv} or {func, args?}, {opts..}]", "{id}",     \
	  "start a task: a command or a registered function, as a goroutine")   \
	X(wait, "wait", PROTO_F_BLOCKS, "[id, {timeout_ms?}]",                  \
	  "{id, state, ...}", "wait until a task ends; its outcome")            \
	X(kill, "kill", 0, "[id, {signal?}]", "{}",                             \
	  "send a signal to a task (its process group), or cancel a function") \
	X(pause, "pause", 0, "[id]", "{}",                                      \
	  "stop a command task's process group (SIGSTOP)")                      \
	X(resume, "resume", 0, "[id]", "{}",                                    \
	  "continue a paused task (SIGCONT)")                                   \
	X(ps, "ps", 0, "[{all?, after?, limit?}]", "[{id, state, kind, ...}, ..]", \
	  "the tasks queued or running (all: finished ones too)")               \
	X(logs, "logs", 0, "[id, {stream?}]", "bin",                            \
	  "what a task wrote to stdout (or stderr), as kept")                   \
	X(logs_read, "logs.read", PROTO_F_BLOCKS,                               \
	  "[id, {stream?, from?, wait_ms?}]", "{data, from, next, cut, eof}",   \
	  "read a task's output from an offset, waiting for more (follow)")     \
	X(leaks, "leaks", 0, "[]", "[{id, kind, reason, ...}, ..]",             \
	  "goroutines that will never end, and why (the leak monitor)")         \
	X(stats, "stats", 0, "[]", "{...}",                                     \
	  "runtime, session and primitive counters")                            \
	X(maxprocs, "maxprocs", 0, "[n?]", "{maxprocs, previous}",             \
	  "read or set GOMAXPROCS")

enum proto_method {
#define PROTO_M_ENUM_(id, name, flags, params, result, summary) PROTO_M_##id,
	PROTO_METHODS(PROTO_M_ENUM_)
#undef PROTO_M_ENUM_
	PROTO_M_COUNT
};

struct proto_method_info {
	const char *name;
	int flags;
	const char *params, *result, *summary;
};

extern const struct proto_method_info proto_methods[PROTO_M_COUNT];

/* The method with this wire name, or -1. */
int proto_method_find(const char *name, size_t len);

#endif /* GORO_PROTO_METHODS_H */
