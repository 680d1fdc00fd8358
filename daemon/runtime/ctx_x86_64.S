/* ctx_x86_64.S: the goroutine context switch for x86_64 (System V ABI).
 *
 * void rt_ctx_jump(void **save_sp, void *to_sp)
 *   Saves what the ABI says a callee must preserve (rbx, rbp, r12-r15, the
 *   MXCSR control bits and the x87 control word) on the current stack,
 *   stores the stack pointer in *save_sp, switches to to_sp and restores the
 *   same set from there. Nothing else: the caller-saved registers are dead
 *   across a call by definition.
 *
 * void rt_ctx_trampoline(void)
 *   Where a new goroutine's first switch "returns" to: it calls the entry
 *   function that ctx_make() left in r12 and never comes back. */
	.text
	.globl	rt_ctx_jump
	.hidden	rt_ctx_jump
	.type	rt_ctx_jump, @function
	.p2align 4
rt_ctx_jump:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.cfi_endproc
	.size	rt_ctx_jump, .-rt_ctx_jump

	.globl	rt_ctx_trampoline
	.hidden	rt_ctx_trampoline
	.type	rt_ctx_trampoline, @function
	.p2align 4
rt_ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip	/* the outermost frame: unwinders stop here */
	callq	*%r12
	ud2
	.cfi_endproc
	.size	rt_ctx_trampoline, .-rt_ctx_trampoline

	.section .note.GNU-stack,"",@progbits
