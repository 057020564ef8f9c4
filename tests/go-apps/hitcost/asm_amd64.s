#include "textflag.h"

// nop (0x90); the assembler drops its own NOP pseudo-instruction, hence BYTE.
TEXT ·asmNop(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x90
	RET

// nop5 (0f 1f 44 00 00), the instruction Linux 6.18 can turn into a call to its
// uprobe trampoline (optimized uprobe) instead of a trap.
TEXT ·asmNop5(SB), NOSPLIT|NOFRAME, $0-0
	BYTE $0x0f; BYTE $0x1f; BYTE $0x44; BYTE $0x00; BYTE $0x00
	RET

// jmp rel8 to the next instruction.
TEXT ·asmJmp(SB), NOSPLIT|NOFRAME, $0-0
	JMP next
next:
	RET

// call rel32 to a function that returns at once.
TEXT ·asmCall(SB), NOSPLIT|NOFRAME, $0-0
	CALL ·asmRet(SB)
	RET

TEXT ·asmRet(SB), NOSPLIT|NOFRAME, $0-0
	RET

// push rbp, then pop it back.
TEXT ·asmPush(SB), NOSPLIT|NOFRAME, $0-0
	PUSHQ BP
	POPQ BP
	RET

// mov rbx, rax (both scratch in ABI0).
TEXT ·asmMov(SB), NOSPLIT|NOFRAME, $0-0
	MOVQ AX, BX
	RET
