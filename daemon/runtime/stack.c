/* stack.c: goroutine stacks: carved from large arenas, pooled, reused.
 *
 * Layout. Stacks are cut from arenas of STACKS_PER_ARENA stacks, each arena
 * one anonymous mapping with MAP_NORESERVE (virtual space is cheap; only the
 * pages a goroutine touches become resident). So a million stacks cost a few
 * thousand mappings, not a million: vm.max_map_count (65530) is never near.
 * Huge pages are turned off for arenas, so a parked goroutine costs the 4 KiB
 * page its frames are on, not 2 MiB.
 *
 * Overflow. Guard pages would need one mapping per stack (a PROT_NONE page
 * splits the mapping), so instead the lowest STACK_GUARD bytes of every
 * stack are a no-write zone: nothing legitimate ever writes there, so they
 * must read as zero. stack_check() verifies that the stack pointer is above
 * the zone at every park, samples the zone on one park in 64, and checks it
 * whole when the goroutine ends; a violation aborts with the goroutine's id. Reading untouched
 * memory maps the kernel's shared zero page, so the check costs no resident
 * memory. It catches an overflow after the fact, not at the faulting
 * instruction; the runtime then aborts rather than run on corrupt memory.
 *
 * Pools. Each worker caches up to 32 free stacks (no lock); beyond that they
 * go to a global pool under stack_lock. stack_scavenge() (from sysmon, about
 * once a second) returns the pages of the pool's stacks that no goroutine
 * took since its last call, like Go's scavenger returns what stayed unused:
 * a burst of a million goroutines does not keep its memory forever, and a
 * gorod gone quiet keeps no more than its workers' caches. The pool is a
 * stack (the most recently freed on top), so the stacks nobody took are
 * the ones below the pool's low-water mark since the last call; a steady
 * load keeps the stacks it uses warm. (An earlier rule kept the newest 256
 * free stacks dirty for ever: up to 256 x the pages a goroutine touched,
 * ~1.5 MB in the soak test, held by a gorod that had been idle for hours.)
 *
 * Valgrind. In a build with -Dvalgrind=true (GORO_VALGRIND), memcheck is
 * told what a stack's bytes mean, so it reports a goroutine that reads a
 * dead goroutine's frames: a stack handed out by stack_get() is undefined
 * above its no-write zone (the previous owner's frames are garbage to the
 * next one; the zone stays defined, as it must read zero); a free stack,
 * in a cache or the pool, is inaccessible, so memcheck reports whoever
 * still uses a waiter or a buffer on a stack that went back (scavenged
 * ones too: MADV_DONTNEED leaves the pool's marks as they are). ctx.c
 * registers each stack with valgrind while a goroutine owns it. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#if defined(GORO_VALGRIND)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_NOACCESS(a, n) ((void)0)
#define VALGRIND_MAKE_MEM_UNDEFINED(a, n) ((void)0)
#define VALGRIND_MAKE_MEM_DEFINED(a, n) ((void)0)
#endif

#define STACKS_PER_ARENA 256
#define STACK_GUARD 256
#define STACK_CACHE_MAX 32

struct arena {
	struct arena *next;
	char *base;
	size_t len;
};

static pthread_mutex_t stack_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t stack_size;
static struct arena *arenas;      /* stack_lock */
static char *carve_next, *carve_end; /* stack_lock */
static char **pool;                /* free stacks (stack_lock) */
static size_t npool, pool_cap, nclean; /* pool[0..nclean) were scavenged */
static size_t pool_low;            /* the least npool since the last scavenge */
static _Atomic uint64_t nstacks;

int stack_init(size_t size)
{
	long page = sysconf(_SC_PAGESIZE);

	if (size == 0)
		size = RT_STACK_DEFAULT;
	if (size < 16 * 1024)
		size = 16 * 1024;
	size = (size + (size_t)page - 1) & ~((size_t)page - 1);
	stack_size = size;
	return 0;
}

size_t stack_bytes(void)
{
	return stack_size;
}

/* stack_lock held: maps a new arena. */
static int arena_new(void)
{
	size_t len = stack_size * STACKS_PER_ARENA;
	char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct arena *a;

	if (base == MAP_FAILED)
		return -ENOMEM;
	madvise(base, len, MADV_NOHUGEPAGE);
	a = malloc(sizeof *a);
	if (!a) {
		munmap(base, len);
		return -ENOMEM;
	}
	a->base = base;
	a->len = len;
	a->next = arenas;
	arenas = a;
	carve_next = base;
	carve_end = base + len;
	return 0;
}

static bool pool_push(char *lo)
{
	if (npool == pool_cap) {
		size_t cap = pool_cap ? pool_cap * 2 : 1024;
		char **n = realloc(pool, cap * sizeof *n);
		if (!n)
			return false;
		pool = n;
		pool_cap = cap;
	}
	pool[npool++] = lo;
	return true;
}

/* Refills p's cache with up to half its size: recently freed stacks first
 * (their pages are warm), then new ones. Returns the number added. */
static int stack_refill(struct p *p)
{
	int want = STACK_CACHE_MAX / 2;

	pthread_mutex_lock(&stack_lock);
	while (p->nstackcache < want && npool > 0) {
		p->stackcache[p->nstackcache++] = pool[--npool];
		if (nclean > npool)
			nclean = npool;
		if (pool_low > npool)
			pool_low = npool;
	}
	while (p->nstackcache < want) {
		if (carve_next == carve_end && arena_new() < 0)
			break;
		p->stackcache[p->nstackcache++] = carve_next;
		carve_next += stack_size;
		atomic_fetch_add_explicit(&nstacks, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&stack_lock);
	return p->nstackcache;
}

/* A free stack for a goroutine about to run on p, or NULL if memory is out.
 * Returns the stack's lowest address; its size is stack_bytes(). */
char *stack_get(struct p *p)
{
	char *lo;

	if (p->nstackcache == 0 && stack_refill(p) == 0)
		return NULL;
	lo = p->stackcache[--p->nstackcache];
	VALGRIND_MAKE_MEM_DEFINED(lo, STACK_GUARD);
	VALGRIND_MAKE_MEM_UNDEFINED(lo + STACK_GUARD, stack_size - STACK_GUARD);
	return lo;
}

/* Returns a dead goroutine's stack to p's cache (or the global pool). */
void stack_put(struct p *p, char *lo)
{
	VALGRIND_MAKE_MEM_NOACCESS(lo, stack_size);
	if (p && p->nstackcache < STACK_CACHE_MAX) {
		p->stackcache[p->nstackcache++] = lo;
		return;
	}
	pthread_mutex_lock(&stack_lock);
	if (p) {
		/* Keep the hottest half in the cache, move the rest out. */
		while (p->nstackcache > STACK_CACHE_MAX / 2)
			if (!pool_push(p->stackcache[--p->nstackcache]))
				break;
		p->stackcache[p->nstackcache++] = lo;
	} else if (!pool_push(lo)) {
		rt_throw("out of memory for the stack pool");
	}
	pthread_mutex_unlock(&stack_lock);
}

/* Gives back to the OS the pages of the free stacks that no goroutine took
 * since the last call: pool[nclean..pool_low), the part of the pool that
 * stayed below its low-water mark (see the top of this file). Called by
 * sysmon about once a second; a scavenged stack is taken like any other
 * (its pages fault in again, zeroed, as its next goroutine touches them). */
void stack_scavenge(void)
{
	pthread_mutex_lock(&stack_lock);
	for (; nclean < pool_low; nclean++)
		madvise(pool[nclean], stack_size, MADV_DONTNEED);
	pool_low = npool;
	pthread_mutex_unlock(&stack_lock);
}

/* Aborts if g's stack overflowed (see the top of this file). sp is the
 * current stack pointer when g is parking, else NULL (g is ending). A park
 * checks the stack pointer every time, and the zone's top word (which a
 * frame running down into the zone writes first) when `deep`: reading the
 * zero page costs ~15 ns on the target machines, a third of a switch, so
 * sched.c asks for it on one park in 64. An ending goroutine has its whole
 * zone sampled. */
void stack_check(struct g *g, void *sp, bool deep)
{
	const uint64_t *zone = (const uint64_t *)g->ctx.lo;

	if (sp) {
		if ((char *)sp < g->ctx.lo + STACK_GUARD ||
		    (deep && zone[STACK_GUARD / 8 - 1]))
			goto overflow;
		return;
	}
	/* A frame that ran through the zone wrote return addresses or saved
	 * registers somewhere in these words. */
	if ((zone[0] | zone[8] | zone[16] | zone[24] | zone[31]) != 0)
		goto overflow;
	return;
overflow:
	rt_throw("goroutine %llu overflowed its %zu-byte stack",
		 (unsigned long long)g->id, stack_size);
}

uint64_t stack_count(void)
{
	return atomic_load_explicit(&nstacks, memory_order_relaxed);
}

/* At shutdown, with every goroutine gone: unmaps all arenas. */
void stack_release_all(void)
{
	pthread_mutex_lock(&stack_lock);
	while (arenas) {
		struct arena *a = arenas;
		arenas = a->next;
		munmap(a->base, a->len);
		free(a);
	}
	free(pool);
	pool = NULL;
	npool = pool_cap = nclean = pool_low = 0;
	carve_next = carve_end = NULL;
	atomic_store(&nstacks, 0);
	pthread_mutex_unlock(&stack_lock);
}
