//! RET sites of a function: Go has no usable uretprobes (goroutine stacks move), so
//! function exits are probed with a uprobe on every RET instruction instead.
//!
//! x86-64 is decoded with iced-x86 (variable-length instructions; a byte that does not
//! decode is skipped); arm64 has fixed 4-byte little-endian instructions.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

use crate::Arch;

/// File offsets of every (near) RET in `code`, the bytes of one function whose first
/// byte sits at file offset `file_offset`. Offsets are ascending.
pub fn return_offsets(arch: Arch, code: &[u8], file_offset: u64) -> Vec<u64> {
    let positions = match arch {
        Arch::X86_64 => x86_64_returns(code),
        Arch::Aarch64 => aarch64_returns(code),
    };
    positions.into_iter().map(|pos| file_offset + pos as u64).collect()
}

/// Positions of `RET` / `RET imm16` (not far returns) in x86-64 code.
fn x86_64_returns(code: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut pos = 0usize;
    while pos < code.len() {
        // Positions up to `code.len()` are always valid; stop rather than panic if not.
        if decoder.set_position(pos).is_err() {
            break;
        }
        decoder.set_ip(pos as u64);
        let instr = decoder.decode();
        if instr.is_invalid() || instr.len() == 0 {
            pos += 1;
            continue;
        }
        if instr.mnemonic() == Mnemonic::Ret {
            found.push(pos);
        }
        pos += instr.len();
    }
    found
}

/// The mask/value pair matching `RET Xn` (`RET` is `RET X30`).
const A64_RET_MASK: u32 = 0xffff_fc1f;
const A64_RET_BITS: u32 = 0xd65f_0000;

/// True when the little-endian word is an arm64 `RET`.
fn is_aarch64_ret(word: u32) -> bool {
    word & A64_RET_MASK == A64_RET_BITS
}

/// Positions of `RET` in arm64 code (a trailing partial word is ignored).
fn aarch64_returns(code: &[u8]) -> Vec<usize> {
    code.chunks_exact(4)
        .enumerate()
        .filter(|(_, w)| is_aarch64_ret(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .map(|(i, _)| i * 4)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_fixture, Build};
    use crate::GoBinary;

    #[test]
    fn x86_64_decoding() {
        // push rbp; mov rbp,rsp; ret; int3; ret 8; retf; (invalid in 64-bit: 06); ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0xc3, 0xcc, 0xc2, 0x08, 0x00, 0xcb, 0x06, 0xc3];
        assert_eq!(return_offsets(Arch::X86_64, &code, 0x1000), vec![0x1004, 0x1006, 0x100b]);
        // A C3 inside another instruction's immediate is not a RET.
        let code = [0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0x90];
        assert!(return_offsets(Arch::X86_64, &code, 0).is_empty());
        assert!(return_offsets(Arch::X86_64, &[], 0).is_empty());
        assert!(return_offsets(Arch::X86_64, &[0x48], 0).is_empty());
    }

    #[test]
    fn aarch64_decoding() {
        let ret = 0xd65f_03c0u32.to_le_bytes(); // ret
        let ret_x1 = 0xd65f_0020u32.to_le_bytes(); // ret x1
        let br = 0xd61f_0020u32.to_le_bytes(); // br x1
        let nop = 0xd503_201fu32.to_le_bytes();
        let code: Vec<u8> = [nop, ret, br, ret_x1, nop].concat();
        assert_eq!(return_offsets(Arch::Aarch64, &code, 100), vec![104, 112]);
        assert!(return_offsets(Arch::Aarch64, &ret[..3], 0).is_empty());
    }

    /// True when the file really holds a RET at `off` for `arch`.
    fn is_ret_at(data: &[u8], arch: Arch, off: u64) -> bool {
        let off = off as usize;
        match arch {
            Arch::X86_64 => matches!(data.get(off), Some(0xc3) | Some(0xc2)),
            Arch::Aarch64 => data
                .get(off..off + 4)
                .map(|w| is_aarch64_ret(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                .unwrap_or(false),
        }
    }

    #[test]
    fn go_function_returns_on_both_arches() {
        for (goarch, arch) in [("amd64", Arch::X86_64), ("arm64", Arch::Aarch64)] {
            let Some(path) = build_fixture(&Build::new("retprog").goarch(goarch)) else {
                return;
            };
            let bin = GoBinary::open(&path).expect("open retprog");
            assert_eq!(bin.arch, arch);
            let f = bin.function("main.classify").expect("main.classify");
            println!(
                "{goarch}: main.classify @ {:#x} size {} entry_offset {:#x} returns {:x?}",
                f.address, f.size, f.entry_offset, f.return_offsets
            );
            assert!(f.return_offsets.len() >= 2, "{goarch}: {f:?}");
            for &off in &f.return_offsets {
                assert!(off >= f.entry_offset && off < f.entry_offset + f.size, "{goarch}: {off:#x}");
                assert!(is_ret_at(bin.data(), arch, off), "{goarch}: no RET at {off:#x}");
            }
            let main = bin.function("main.main").expect("main.main");
            assert!(main.size > 0 && !main.return_offsets.is_empty());
            assert_eq!(bin.build.main_module.as_ref().unwrap().path, "example.com/retprog");
            assert_eq!(bin.build.setting("GOARCH"), Some(goarch));
        }
    }
}
