/* gosight — Go register ABI (Go >= 1.17) for uprobe programs.
 *
 * A uprobe program's context is the user register file. Go does not use the C
 * calling convention, so the PT_REGS_PARM* macros of bpf_tracing.h are wrong for Go
 * functions; these macros name the registers Go's internal ABI assigns.
 *   amd64: integer args RAX RBX RCX RDI RSI R8 R9 R10 R11; current goroutine g in R14.
 *   arm64: integer args X0..X15; current goroutine g in X28.
 */
#pragma once

#if defined(__TARGET_ARCH_x86)
/* Layout of struct pt_regs for x86-64 as the kernel hands it to uprobe programs. */
struct go_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#define GO_ARG1(r) ((r)->ax)
#define GO_ARG2(r) ((r)->bx)
#define GO_ARG3(r) ((r)->cx)
#define GO_ARG4(r) ((r)->di)
#define GO_ARG5(r) ((r)->si)
#define GO_ARG6(r) ((r)->r8)
#define GO_ARG7(r) ((r)->r9)
#define GO_ARG8(r) ((r)->r10)
#define GO_ARG9(r) ((r)->r11)
#define GO_G(r) ((r)->r14)
#elif defined(__TARGET_ARCH_arm64)
/* struct user_pt_regs, the uprobe context on arm64. */
struct go_regs {
	unsigned long long regs[31];
	unsigned long long sp, pc, pstate;
};
#define GO_ARG1(r) ((r)->regs[0])
#define GO_ARG2(r) ((r)->regs[1])
#define GO_ARG3(r) ((r)->regs[2])
#define GO_ARG4(r) ((r)->regs[3])
#define GO_ARG5(r) ((r)->regs[4])
#define GO_ARG6(r) ((r)->regs[5])
#define GO_ARG7(r) ((r)->regs[6])
#define GO_ARG8(r) ((r)->regs[7])
#define GO_ARG9(r) ((r)->regs[8])
#define GO_G(r) ((r)->regs[28])
#else
#error "gosight: define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif
