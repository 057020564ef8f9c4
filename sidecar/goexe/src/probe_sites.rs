//! Where a function's entry probe sits: the first instruction that still sees the
//! entry state and that the kernel emulates instead of single-stepping.
//!
//! A uprobe hit on an instruction Linux (x86-64) cannot emulate takes two traps: the
//! breakpoint, then a single-step of the original instruction out of line. Jumps,
//! calls, conditional jumps, `push` and nops are emulated in the first trap
//! (`arch/x86/kernel/uprobes.c`: `branch_setup_xol_ops`, `push_setup_xol_ops`), which
//! `bench/hit_cost.py` measures at about half the cost. A Go function's first
//! instruction is its stack check (`cmp rsp, [r14+0x10]`, or `lea r12, [rsp-N]` and
//! `cmp r12, [r14+0x10]`; `mov r12, rsp`, `sub r12, N`, `jb` for huge frames), which
//! writes only the flags and R12 (a scratch register, never an argument); the
//! conditional jump to `morestack` right after it sees exactly the entry's argument
//! registers, `g` (R14) and SP, and runs on every call (and again when morestack
//! re-runs the function, like the entry). So the entry probe goes on that jump.
//! Anything else (a leaf without a stack check, an unexpected shape, arm64, where
//! today's behaviour is kept) keeps the entry.
//!
//! RETs stay where they are: the instructions before a RET (`add rsp, N`, `pop rbp`)
//! are single-stepped too, and the results are only all in place from the RET.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

use crate::Arch;

/// How many instructions a stack check may have before its jump.
const MAX_CHECK: usize = 4;

/// File offset of the instruction to probe for the entry of the function whose
/// bytes are `code`, first byte at file offset `file_offset`.
pub fn entry_probe_offset(arch: Arch, code: &[u8], file_offset: u64) -> u64 {
    match arch {
        Arch::X86_64 => file_offset + x86_64_stack_check_jump(code).unwrap_or(0) as u64,
        Arch::Aarch64 => file_offset,
    }
}

/// Position of the stack check's conditional jump, when the function starts with a
/// Go stack check whose instructions write nothing but the flags and R12.
fn x86_64_stack_check_jump(code: &[u8]) -> Option<usize> {
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    // The jump must follow what sets its flags: `jbe` the guard comparison, `jb`
    // (huge frames: did SP - framesize wrap?) the subtraction.
    let (mut compared, mut subtracted) = (false, false);
    for _ in 0..=MAX_CHECK {
        if !decoder.can_decode() {
            return None;
        }
        let instr = decoder.decode();
        match instr.mnemonic() {
            Mnemonic::Jbe if compared => return Some(instr.ip() as usize),
            Mnemonic::Jb if subtracted => return Some(instr.ip() as usize),
            Mnemonic::Cmp if reads_stack_guard(&instr) => compared = true,
            Mnemonic::Lea if writes_r12(&instr) && instr.memory_base() == Register::RSP => {}
            Mnemonic::Mov if writes_r12(&instr) && is_reg(&instr, 1, Register::RSP) => {}
            Mnemonic::Sub if writes_r12(&instr) && is_immediate(instr.op1_kind()) => subtracted = true,
            _ => return None,
        }
    }
    None
}

/// `cmp rsp|r12, [r14+disp]`: the comparison with `g.stackguard0`.
fn reads_stack_guard(instr: &Instruction) -> bool {
    (is_reg(instr, 0, Register::RSP) || is_reg(instr, 0, Register::R12))
        && instr.op1_kind() == OpKind::Memory
        && instr.memory_base() == Register::R14
        && instr.memory_index() == Register::None
}

fn writes_r12(instr: &Instruction) -> bool {
    is_reg(instr, 0, Register::R12)
}

fn is_reg(instr: &Instruction, operand: u32, reg: Register) -> bool {
    instr.op_kind(operand) == OpKind::Register && instr.op_register(operand) == reg
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(kind, OpKind::Immediate8 | OpKind::Immediate32 | OpKind::Immediate8to64 | OpKind::Immediate32to64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_fixture, Build};
    use crate::GoBinary;

    fn site(code: &[u8]) -> u64 {
        entry_probe_offset(Arch::X86_64, code, 0x1000) - 0x1000
    }

    #[test]
    fn stack_check_shapes() {
        // cmp rsp,[r14+0x10]; jbe +0x16; push rbp
        assert_eq!(site(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x16, 0x55]), 4);
        // lea r12,[rsp-0x290]; cmp r12,[r14+0x10]; jbe +0x60
        let lea = [0x4c, 0x8d, 0xa4, 0x24, 0x70, 0xfd, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x60];
        assert_eq!(site(&lea), 12);
        // cmp rsp,[r14+0x10]; jbe rel32
        assert_eq!(site(&[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0, 1, 0, 0]), 4);
        // mov r12,rsp; sub r12,0x11000; jb rel32: the first jump already sees the entry state
        let huge = [0x49, 0x89, 0xe4, 0x49, 0x81, 0xec, 0, 0x10, 1, 0, 0x0f, 0x82, 0, 1, 0, 0];
        assert_eq!(site(&huge), 10);
        // Anything else keeps the entry: a leaf (lea rax,[rax+rax*2]; ...), a jump
        // not preceded by the guard comparison, a comparison with something else,
        // a write to another register, truncated code.
        assert_eq!(site(&[0x48, 0x8d, 0x04, 0x40, 0x48, 0x8d, 0x40, 0x01, 0xc3]), 0);
        assert_eq!(site(&[0x76, 0x16, 0x55]), 0);
        assert_eq!(site(&[0x72, 0x16, 0x55]), 0);
        assert_eq!(site(&[0x49, 0x3b, 0x66, 0x10, 0x72, 0x16]), 0); // jb after the comparison
        assert_eq!(site(&[0x48, 0x3b, 0x43, 0x10, 0x76, 0x16]), 0); // cmp rax,[rbx+0x10]
        assert_eq!(site(&[0x4c, 0x8d, 0x5c, 0x24, 0xf0, 0x4d, 0x3b, 0x5e, 0x10, 0x76, 0x10]), 0); // r11
        assert_eq!(site(&[0x49, 0x3b, 0x66]), 0);
        assert_eq!(site(&[]), 0);
        assert_eq!(entry_probe_offset(Arch::Aarch64, &[0; 16], 0x1000), 0x1000);
    }

    /// On compiled Go code, for the Go versions the probes support: a stack check by
    /// `cmp rsp` (main.small), `lea r12` (main.bigframe) or `mov r12, rsp` / `sub`
    /// (main.huge) gets the first conditional jump after it, a frameless leaf
    /// (main.leaf) keeps its entry, and so does arm64.
    #[test]
    fn real_functions() {
        for toolchain in ["local", "go1.22.12", "go1.24.13"] {
            let Some(built) = build_fixture(&Build::new("prologues").toolchain(toolchain)) else {
                return;
            };
            let bin = GoBinary::open(&built).expect("open prologues");
            let data = bin.data();
            for (name, first, jump, jcc) in [
                ("main.small", &[0x49, 0x3b, 0x66][..], 4, 0x76), // cmp rsp, [r14+…]; jbe
                ("main.bigframe", &[0x4c, 0x8d, 0xa4, 0x24][..], 12, 0x76), // lea r12, [rsp-N]; cmp; jbe
                ("main.huge", &[0x49, 0x89, 0xe4][..], 10, 0x72), // mov r12, rsp; sub; jb
                ("main.leaf", &[][..], 0, 0),
            ] {
                let f = bin.function(name).expect(name);
                let at = f.entry_offset as usize;
                println!(
                    "{toolchain}: {name} entry {at:#x} probe {:#x} {:02x?}",
                    f.entry_probe_offset,
                    &data[at..at + 8]
                );
                assert!(data[at..].starts_with(first), "{toolchain}: {name} starts {:02x?}", &data[at..at + 8]);
                assert_eq!(f.entry_probe_offset - f.entry_offset, jump, "{toolchain}: {name}");
                if jump > 0 {
                    assert_eq!(data[at + jump as usize], jcc, "{toolchain}: {name}");
                }
            }
            // The server probe's function, from the standard library.
            let Some(http) = build_fixture(&Build::new("httpprog").toolchain(toolchain)) else {
                return;
            };
            let bin = GoBinary::open(&http).expect("open httpprog");
            let f = bin.function("net/http.serverHandler.ServeHTTP").expect("ServeHTTP");
            assert!(f.entry_probe_offset > f.entry_offset, "{toolchain}: {f:x?}");
        }
        let Some(arm) = build_fixture(&Build::new("prologues").goarch("arm64")) else {
            return;
        };
        let bin = GoBinary::open(&arm).expect("open arm64 prologues");
        let small = bin.function("main.small").expect("main.small");
        assert_eq!(small.entry_probe_offset, small.entry_offset);
    }
}
