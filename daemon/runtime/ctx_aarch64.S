/* ctx_aarch64.S: the goroutine context switch for aarch64 (AAPCS64).
 *
 * void rt_ctx_jump(void **save_sp, void *to_sp)
 *   Saves the callee-saved registers the ABI names (x19-x28, the frame
 *   pointer x29, the link register x30, and the low halves d8-d15 of v8-v15)
 *   in a 160-byte frame, stores sp in *save_sp, loads to_sp and restores the
 *   same frame from there, returning through the restored x30.
 *
 * void rt_ctx_trampoline(void)
 *   A new goroutine's first x30: calls the entry function left in x19. */
	.text
	.globl	rt_ctx_jump
	.hidden	rt_ctx_jump
	.type	rt_ctx_jump, %function
	.p2align 4
rt_ctx_jump:
	sub	sp, sp, #160
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mov	x9, sp
	str	x9, [x0]
	mov	sp, x1
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	add	sp, sp, #160
	ret
	.size	rt_ctx_jump, .-rt_ctx_jump

	.globl	rt_ctx_trampoline
	.hidden	rt_ctx_trampoline
	.type	rt_ctx_trampoline, %function
	.p2align 4
rt_ctx_trampoline:
	blr	x19
	brk	#0
	.size	rt_ctx_trampoline, .-rt_ctx_trampoline

	.section .note.GNU-stack,"",%progbits
