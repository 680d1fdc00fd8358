/* ctx.c: switching between goroutine stacks, and telling the sanitizers.
 *
 * The switch itself is rt_ctx_jump (ctx_x86_64.S, ctx_aarch64.S): it saves
 * only the callee-saved registers on the old stack and loads them from the
 * new one, so a switch costs a few nanoseconds. Elsewhere, ucontext's
 * swapcontext is the portable (slower) fallback.
 *
 * AddressSanitizer and ThreadSanitizer both need to know that the stack
 * changed under them, or they report nonsense (ASan: a "stack" access far
 * from the thread's stack; TSan: races between two goroutines that the
 * runtime ordered). So every switch goes through ctx_switch(), which calls
 * __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber and
 * __tsan_switch_to_fiber around the jump.
 *
 * Valgrind (a build with -Dvalgrind=true, GORO_VALGRIND) needs no call at
 * the switch, but it must know where each stack is: memcheck takes a jump
 * of the stack pointer within one stack for frames pushed or popped, and
 * marks the memory between undefined or inaccessible, which would make
 * every parked goroutine's frames "invalid". So ctx_make registers a
 * goroutine's stack (VALGRIND_STACK_REGISTER) and ctx_release deregisters
 * it; a worker registers its own thread stack, in case an arena lies
 * within --max-stackframe of it. Then a jump into another registered stack
 * is a switch, and changes nothing. (stack.c marks the stacks free in the
 * pools inaccessible.) Outside valgrind the client requests are a few
 * no-op instructions; other builds have none. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

#if defined(GORO_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(GORO_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(GORO_VALGRIND)
#include <valgrind/valgrind.h>
#endif

#if defined(GORO_CTX_UCONTEXT)
#include <ucontext.h>
#else
void rt_ctx_jump(void **save_sp, void *to_sp);
void rt_ctx_trampoline(void);
#endif

/* Records the bounds of the calling thread's own stack as its g0 context. */
void ctx_init_thread(struct ctx *g0)
{
	pthread_attr_t attr;
	void *addr = NULL;
	size_t size = 0;

#if defined(GORO_VALGRIND)
	/* The worker record, and so g0, outlives its thread: forget the
	 * stack of the thread that used it before. */
	if (g0->vg_stack)
		VALGRIND_STACK_DEREGISTER(g0->vg_stack);
#endif
	memset(g0, 0, sizeof *g0);
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		pthread_attr_getstack(&attr, &addr, &size);
		pthread_attr_destroy(&attr);
	}
	g0->lo = addr;
	g0->size = size;
#if defined(GORO_VALGRIND)
	if (addr)
		g0->vg_stack = VALGRIND_STACK_REGISTER(addr, (char *)addr + size);
#endif
#if defined(GORO_TSAN)
	g0->tsan_fiber = __tsan_get_current_fiber();
#endif
#if defined(GORO_CTX_UCONTEXT)
	g0->uctx = calloc(1, sizeof(ucontext_t));
	if (!g0->uctx)
		rt_throw("out of memory for a worker context");
#endif
}

/* Prepares c so that the first switch to it runs entry() on the stack
 * [lo, lo + size). entry must never return. */
void ctx_make(struct ctx *c, char *lo, size_t size, void (*entry)(void))
{
	c->lo = lo;
	c->size = size;
#if defined(GORO_ASAN)
	/* Frames of the previous goroutine on this stack never returned:
	 * clear their redzones. */
	ASAN_UNPOISON_MEMORY_REGION(lo, size);
	c->asan_fake = NULL;
#endif
#if defined(GORO_TSAN)
	c->tsan_fiber = __tsan_create_fiber(0);
#endif
#if defined(GORO_VALGRIND)
	c->vg_stack = VALGRIND_STACK_REGISTER(lo, lo + size);
#endif
#if defined(GORO_CTX_UCONTEXT)
	if (!c->uctx && !(c->uctx = calloc(1, sizeof(ucontext_t))))
		rt_throw("out of memory for a goroutine context");
	ucontext_t *uc = c->uctx;
	getcontext(uc);
	uc->uc_stack.ss_sp = lo;
	uc->uc_stack.ss_size = size;
	uc->uc_link = NULL;
	makecontext(uc, entry, 0);
#else
	uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
	void **sp;
#if defined(__x86_64__)
	/* [mxcsr|fpucw] r15 r14 r13 r12 rbx rbp ret: after `ret`, rsp == top,
	 * 16-byte aligned, as the trampoline's call needs. */
	sp = (void **)(top - 8 * sizeof(void *));
	((uint32_t *)sp)[0] = 0x1f80;       /* MXCSR: all exceptions masked */
	((uint32_t *)sp)[1] = 0x037f;       /* x87 control word default */
	sp[1] = NULL;                       /* r15 */
	sp[2] = NULL;                       /* r14 */
	sp[3] = NULL;                       /* r13 */
	sp[4] = (void *)entry;              /* r12: called by the trampoline */
	sp[5] = NULL;                       /* rbx */
	sp[6] = NULL;                       /* rbp */
	sp[7] = (void *)rt_ctx_trampoline;  /* return address */
#elif defined(__aarch64__)
	sp = (void **)(top - 160);
	memset(sp, 0, 160);
	sp[0] = (void *)entry;              /* x19 */
	sp[11] = (void *)rt_ctx_trampoline; /* x30 */
#else
#error "no context switch for this CPU: configure with the ucontext fallback"
#endif
	c->sp = sp;
#endif
}

/* Switches from the running context to `to`. Returns when something later
 * switches back to `from`. If from_dying, `from` will never run again and
 * ASan may free its fake stack. */
void ctx_switch(struct ctx *from, struct ctx *to, bool from_dying)
{
#if defined(GORO_ASAN)
	__sanitizer_start_switch_fiber(from_dying ? NULL : &from->asan_fake,
				       to->lo, to->size);
#endif
#if defined(GORO_TSAN)
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#if defined(GORO_CTX_UCONTEXT)
	swapcontext(from->uctx, to->uctx);
#else
	rt_ctx_jump(&from->sp, to->sp);
#endif
#if defined(GORO_ASAN)
	__sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
	(void)from_dying;
}

/* First thing a new goroutine does: completes the sanitizer's switch. */
void ctx_entered(void)
{
#if defined(GORO_ASAN)
	__sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

/* Releases what a dead goroutine's context held for the sanitizers. Called
 * from another context once the goroutine is off its stack. */
void ctx_release(struct ctx *c)
{
#if defined(GORO_TSAN)
	if (c->tsan_fiber)
		__tsan_destroy_fiber(c->tsan_fiber);
	c->tsan_fiber = NULL;
#endif
#if defined(GORO_VALGRIND)
	if (c->vg_stack)
		VALGRIND_STACK_DEREGISTER(c->vg_stack);
	c->vg_stack = 0;
#endif
	(void)c;
}
