/* soak.h: what the soak test's processes share: the shared memory's
 * layout, what is counted, and the calls between the observer (soak.c,
 * where the design comment is) and the client processes (soak_client.c).
 * The shared memory is mapped MAP_SHARED before the forks; every field a
 * client and the observer both touch is atomic. */
#ifndef GORO_TESTS_SOAK_H
#define GORO_TESTS_SOAK_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "goro/goro.h"
#include "harness.h"

#define NLOCKS 8        /* the clients' RWMutexes, soak.m.N */
#define NSEMS 2         /* their semaphores, soak.s.N (capacities: sem_cap) */
#define NSWG 4          /* WaitGroups every client shares, soak.ws.N */
#define NTWG 3          /* WaitGroups tasks are bound to (spawn wg), soak.tw.N */
#define NTLOCKS 3       /* RWMutexes tasks hold (spawn lock/rlock), soak.tm.N */
#define TSEM_CAP 2      /* the tasks' semaphore, soak.ts */
#define MAX_CLIENTS 1024
#define MAX_DEATHS 8192
#define MAX_TASKS (1L << 21)
#define NRECENT 16      /* a client's last spawns, for wait and kill */
#define NFAIL 12        /* failures whose story is kept */
#define KEEP_TASKS 10000000
#define END_MS 60000    /* for one thing at the end: a reply, a state */
#define SCAN_MS 20      /* the observer's look at the marks */

static const int sem_cap[NSEMS] = { 2, 4 }; /* the clients' semaphores */

/* ---- what is counted ------------------------------------------------------------ */

#define OPS(X)                                                                          \
	X(LOCK_W, "lock w") X(LOCK_W_TIMEOUT, "lock w timeout") X(LOCK_W_TRY, "lock w try") \
	X(LOCK_R, "lock r") X(LOCK_R_TIMEOUT, "lock r timeout") X(LOCK_R_TRY, "lock r try") \
	X(UNLOCK, "unlock") X(SEM, "sem acquire") X(SEM_TIMEOUT, "sem acquire timeout")     \
	X(SEM_TRY, "sem acquire try") X(SEM_RELEASE, "sem release") X(WG_ADD, "wg add")     \
	X(WG_ADD_LEASE, "wg add lease") X(WG_DONE, "wg done") X(WG_WAIT, "wg wait")         \
	X(WG_STATUS, "wg status") X(SPAWN_FUNC, "spawn func") X(SPAWN_EXEC, "spawn exec")   \
	X(WAIT, "wait") X(KILL, "kill") X(RECONNECT, "reconnect")

enum op {
#define OP_ENUM_(id, name) OP_##id,
	OPS(OP_ENUM_)
#undef OP_ENUM_
	OP_COUNT
};

static const char *const op_name[OP_COUNT] = {
#define OP_NAME_(id, name) name,
	OPS(OP_NAME_)
#undef OP_NAME_
};

/* The columns an answer is counted in; OTHER is anything else. */
enum col { C_OK, C_EBUSY, C_ETIMEDOUT, C_EDEADLK, C_ENEGATIVE, C_ELOST, C_ESRCH,
	   C_ENOTLOCKED, C_OTHER, NCOLS };

static const char *const col_name[NCOLS] = { "ok", "EBUSY", "ETIMEDOUT", "EDEADLK",
					     "ENEGATIVE", "ELOST", "ESRCH", "ENOTLOCKED",
					     "other" };
#define M(c) (1u << (c))

/* ---- shared memory -------------------------------------------------------------- */

/* A client that died holding a lock for writing (definite), or that may
 * have (a request or a deferred unlock in flight). */
struct death {
	int lock;
	bool definite;
	uint64_t token;          /* the dead grant's; a maybe: the largest seen on the lock */
	int64_t kill_ms;         /* since the start */
	_Atomic uint64_t next;   /* the first grant after it: token << 22 | owner_died << 21 | ms */
	atomic_int inconclusive; /* the first grant after it may have gone unrecorded */
	atomic_int by_observer;  /* settled by the observer's own lock at the end */
};

/* One client process's place; a replacement takes the slot over. Written by
 * its client; read by the observer while the client is stopped or gone. */
struct slot {
	_Atomic uint64_t session;     /* its session id (hello), 0 before */
	atomic_int pending_lock;      /* a lock request in flight: 1 + lock (+ 256: write) */
	atomic_int pending_sem;       /* a semaphore request in flight: 1 + sem */
	atomic_int releasing;         /* an unlock or release in flight, not deferred */
	atomic_int deferred;          /* GORO_DEFER releases not answered yet */
	_Atomic uint64_t deferred_w[NLOCKS]; /* ... of write grants: their tokens */
	_Atomic uint64_t wg;          /* the private WaitGroup: see WG_PACK */
};

/* The private WaitGroup: count, the part added with a lease, the request
 * in flight (0: none; 1: done; 2 | lease << 2 | delta << 3: add). */
#define WG_PACK(count, leased, pend)                                            \
	((uint64_t)(count) | (uint64_t)(leased) << 24 | (uint64_t)(pend) << 48)
#define WG_COUNT(w) ((long)((w) & 0xffffff))
#define WG_LEASED(w) ((long)(((w) >> 24) & 0xffffff))
#define WG_PEND(w) ((int)((w) >> 48))

/* What a task record says of its task: a command (else a function), with
 * a timeout, spawned by the observer, a program that cannot start. */
enum { T_EXEC = 1, T_TIMEOUT = 2, T_OBSERVER = 4, T_NOSTART = 8 };

/* A spawn that gorod acknowledged. */
struct task_rec {
	_Atomic uint64_t id;
	atomic_int flags;  /* T_* */
	atomic_int seen;   /* 1 + the state a wait told its client, 0: none */
	atomic_int killed; /* a kill of it was acknowledged */
};

struct shared {
	atomic_int stop;
	int64_t t0; /* harness_now_ms() at the start */
	atomic_long ops[OP_COUNT][1 + NCOLS]; /* attempted, then the columns */
	/* locks and semaphores, as the clients check at their grants */
	atomic_long lock_checks, two_writers, writer_readers;
	atomic_long sem_checks, sem_over;
	atomic_int max_readers, max_units[NSEMS];
	_Atomic uint64_t max_token[NLOCKS];
	/* owner death */
	atomic_int pending_death[NLOCKS]; /* 1 + the latest death on the lock, 0: none */
	atomic_long od_grants, od_unexplained;
	atomic_int ndeaths;
	struct death deaths[MAX_DEATHS];
	/* WaitGroups */
	atomic_long wg_counts_seen, wg_below_zero, wg_private_checks, wg_private_bad,
		wg_enegative_right;
	/* tasks */
	atomic_long ntasks, task_recs_full, outcome_twice, not_terminal;
	/* what failed, and the first few stories */
	atomic_long nfailures;
	char fail[NFAIL][256];
};

/* The shared memory and the settings; the observer (soak.c) sets them
 * before it forks the first client. */
extern struct shared *sh;
extern struct slot *slots;
extern _Atomic uint64_t *lockmark; /* [NLOCKS][nslots]: token << 1 | write */
extern _Atomic uint64_t *semmark;  /* [NSEMS][nslots]: token << 8 | units */
extern struct task_rec *trec;      /* [MAX_TASKS] */
extern int nslots;
extern int think_max;
extern struct harness h;

#define NEXT_NONE UINT64_MAX /* a death's `next` before any grant after it */

static inline int64_t since_start(void)
{
	return harness_now_ms() - sh->t0;
}

static inline _Atomic uint64_t *lock_mark(int l, int s)
{
	return &lockmark[(size_t)l * (size_t)nslots + (size_t)s];
}

static inline _Atomic uint64_t *sem_mark(int k, int s)
{
	return &semmark[(size_t)k * (size_t)nslots + (size_t)s];
}

static inline void lock_name(char *buf, size_t size, int l)
{
	snprintf(buf, size, "soak.m.%d", l);
}

static inline void sem_name(char *buf, size_t size, int k)
{
	snprintf(buf, size, "soak.s.%d", k);
}

/* Counts a failure (in a client or the observer), keeping the first few
 * stories for the observer to print. */
void soak_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A grant of lock l (token, owner_died) that a client (or, at the end, the
 * observer) was given: checks that owner_died has a death before it, and
 * lowers the latest death's "first grant after it". */
void soak_note_grant(int l, uint64_t token, bool od, bool observer);

/* The units of semaphore k held at one moment, from two snapshots of the
 * marks into a[0..nslots) and b[0..nslots). */
long soak_sem_units(int k, uint64_t *a, uint64_t *b);

/* Records an acknowledged spawn (flags: T_*); returns its index in trec,
 * or -1 when trec is full. */
long soak_record_spawn(uint64_t id, int flags);

/* A client process's life in slot `slot` (its gen-th client): operations
 * until sh->stop, then a clean end. Returns its exit status. */
int soak_client_main(int slot, int gen, uint64_t seed);

#endif /* GORO_TESTS_SOAK_H */
