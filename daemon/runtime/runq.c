/* runq.c: run queues: each worker's local ring, and the global queue.
 *
 * The local queue is Go's runq: a 256-slot ring with a head and a tail.
 * Only the owning worker pushes (at the tail) and anyone may take from the
 * head, claiming slots with a compare-and-swap on head, so stealing needs no
 * lock. `runnext` holds one goroutine that runs before the ring: what a
 * goroutine just made ready (the other side of a handoff, a new goroutine)
 * runs next on the same thread, where its data is warm, instead of hopping
 * to another CPU (a wakeup across CPUs costs ~20 us on the target machines).
 *
 * When the ring is full, half of it moves to the global queue, a linked
 * list under sched.lock that every worker checks now and then. */
#include "internal.h"

static inline struct g *slot_load(struct p *p, uint32_t i)
{
	return atomic_load_explicit(&p->runq[i % RUNQ_SIZE], memory_order_relaxed);
}

static inline void slot_store(struct p *p, uint32_t i, struct g *g)
{
	atomic_store_explicit(&p->runq[i % RUNQ_SIZE], g, memory_order_relaxed);
}

/* The global queue is a list of batches (arrays of goroutines), not of
 * goroutines: moving a batch between a ring and the global queue copies
 * pointers and never touches the goroutine records, which are cold by
 * then (a linked list through them costs one dependent cache miss each). */
struct gbatch {
	struct gbatch *next;
	uint32_t head, n, cap;
	struct g *gs[];
};

static struct gbatch *gbatch_new(uint32_t cap)
{
	struct gbatch *b = malloc(sizeof *b + cap * sizeof b->gs[0]);

	if (!b)
		rt_throw("out of memory for the global run queue");
	b->next = NULL;
	b->head = b->n = 0;
	b->cap = cap;
	return b;
}

/* sched.lock held: appends a filled batch. */
static void globq_link_locked(struct gbatch *b)
{
	if (sched.globq_tail)
		sched.globq_tail->next = b;
	else
		sched.globq_head = b;
	sched.globq_tail = b;
	atomic_fetch_add_explicit(&sched.globq_len, b->n - b->head, memory_order_release);
}

/* Moves half of a full local queue, plus g, to the global queue. Returns
 * false if a thief took some in the meantime (then the ring has room). */
static bool runq_put_slow(struct p *p, struct g *g, uint32_t h, uint32_t t)
{
	uint32_t n = (t - h) / 2;
	struct gbatch *b = gbatch_new(n + 1);

	for (uint32_t i = 0; i < n; i++)
		b->gs[i] = slot_load(p, h + i);
	if (!atomic_compare_exchange_strong_explicit(&p->runq_head, &h, h + n,
						     memory_order_release,
						     memory_order_relaxed)) {
		free(b);
		return false;
	}
	b->gs[n] = g;
	b->n = n + 1;
	pthread_mutex_lock(&sched.lock);
	globq_link_locked(b);
	pthread_mutex_unlock(&sched.lock);
	return true;
}

/* Owner only: queues g on p; with `next`, g goes to runnext and what was
 * there moves to the ring. Always succeeds (overflow goes global); returns
 * true if anything went to the global queue. */
bool runq_put(struct p *p, struct g *g, bool next)
{
	if (next) {
		g = atomic_exchange_explicit(&p->runnext, g, memory_order_seq_cst);
		if (!g)
			return false;
	}
	for (;;) {
		uint32_t h = atomic_load_explicit(&p->runq_head, memory_order_acquire);
		uint32_t t = atomic_load_explicit(&p->runq_tail, memory_order_relaxed);

		if (t - h < RUNQ_SIZE) {
			slot_store(p, t, g);
			atomic_store_explicit(&p->runq_tail, t + 1, memory_order_release);
			return false;
		}
		if (runq_put_slow(p, g, h, t))
			return true;
	}
}

/* Owner only: the next goroutine to run from p's own queue, or NULL. */
struct g *runq_get(struct p *p)
{
	struct g *g = atomic_load_explicit(&p->runnext, memory_order_relaxed);

	if (g && atomic_compare_exchange_strong_explicit(&p->runnext, &g, NULL,
							 memory_order_acquire,
							 memory_order_relaxed))
		return g;
	for (;;) {
		uint32_t h = atomic_load_explicit(&p->runq_head, memory_order_acquire);
		uint32_t t = atomic_load_explicit(&p->runq_tail, memory_order_acquire);

		if (t == h)
			return NULL;
		g = slot_load(p, h);
		if (atomic_compare_exchange_strong_explicit(&p->runq_head, &h, h + 1,
							    memory_order_release,
							    memory_order_relaxed))
			return g;
	}
}

/* Takes half of victim's queue into thief's ring (thief must be the caller
 * and its ring empty); with steal_next, victim's runnext too when the ring
 * is empty. Returns one goroutine to run now, or NULL. */
struct g *runq_steal(struct p *thief, struct p *victim, bool steal_next)
{
	uint32_t tt = atomic_load_explicit(&thief->runq_tail, memory_order_relaxed);
	uint32_t n;

	for (;;) {
		uint32_t h = atomic_load_explicit(&victim->runq_head, memory_order_acquire);
		uint32_t t = atomic_load_explicit(&victim->runq_tail, memory_order_acquire);

		n = t - h;
		n -= n / 2;
		if (n == 0) {
			if (!steal_next)
				return NULL;
			struct g *g = atomic_load_explicit(&victim->runnext,
							   memory_order_relaxed);
			if (g && atomic_compare_exchange_strong_explicit(
					 &victim->runnext, &g, NULL,
					 memory_order_acquire, memory_order_relaxed)) {
				atomic_fetch_add_explicit(&thief->nsteals, 1,
							  memory_order_relaxed);
				return g;
			}
			return NULL;
		}
		if (n > RUNQ_SIZE / 2) /* read an inconsistent h/t: retry */
			continue;
		for (uint32_t i = 0; i < n; i++)
			slot_store(thief, tt + i, slot_load(victim, h + i));
		if (atomic_compare_exchange_strong_explicit(&victim->runq_head, &h, h + n,
							    memory_order_acq_rel,
							    memory_order_relaxed))
			break;
	}
	atomic_fetch_add_explicit(&thief->nsteals, n, memory_order_relaxed);
	n--;
	struct g *g = slot_load(thief, tt + n);
	if (n)
		atomic_store_explicit(&thief->runq_tail, tt + n, memory_order_release);
	return g;
}

bool runq_empty(struct p *p)
{
	uint32_t h = atomic_load_explicit(&p->runq_head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&p->runq_tail, memory_order_acquire);

	return h == t && !atomic_load_explicit(&p->runnext, memory_order_acquire);
}

uint32_t runq_len(struct p *p)
{
	uint32_t h = atomic_load_explicit(&p->runq_head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&p->runq_tail, memory_order_relaxed);

	return (t - h) + (atomic_load_explicit(&p->runnext, memory_order_relaxed) != NULL);
}

/* sched.lock held: queues one goroutine at the global queue's tail. */
void globq_put_locked(struct g *g)
{
	struct gbatch *b = sched.globq_tail;

	if (!b || b->n == b->cap) {
		b = gbatch_new(64);
		b->gs[b->n++] = g;
		globq_link_locked(b);
		return;
	}
	b->gs[b->n++] = g;
	atomic_fetch_add_explicit(&sched.globq_len, 1, memory_order_release);
}

/* sched.lock held: takes a fair share of the global queue (at most max,
 * if max > 0) for p: returns one and puts the rest on p's ring. */
struct g *globq_get_locked(struct p *p, int max)
{
	uint32_t len = atomic_load_explicit(&sched.globq_len, memory_order_relaxed);
	int nprocs = atomic_load_explicit(&sched.maxprocs, memory_order_relaxed);
	uint32_t n;

	if (len == 0)
		return NULL;
	n = len / (uint32_t)(nprocs > 0 ? nprocs : 1) + 1;
	if (n > len)
		n = len;
	if (max > 0 && n > (uint32_t)max)
		n = (uint32_t)max;
	if (n > RUNQ_SIZE / 2)
		n = RUNQ_SIZE / 2;
	if (!runq_empty(p)) /* the ring must take the rest without overflowing */
		n = 1;
	atomic_fetch_sub_explicit(&sched.globq_len, n, memory_order_relaxed);

	struct g *first = NULL;
	while (n > 0) {
		struct gbatch *b = sched.globq_head;
		while (n > 0 && b->head < b->n) {
			struct g *g = b->gs[b->head++];
			n--;
			if (!first)
				first = g;
			else
				runq_put(p, g, false);
		}
		if (b->head == b->n) {
			sched.globq_head = b->next;
			if (!sched.globq_head)
				sched.globq_tail = NULL;
			free(b);
		}
	}
	return first;
}

/* At shutdown: frees the (empty) batches. */
void globq_free_all(void)
{
	while (sched.globq_head) {
		struct gbatch *b = sched.globq_head;
		sched.globq_head = b->next;
		free(b);
	}
	sched.globq_tail = NULL;
}
