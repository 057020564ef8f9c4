//! The bare-hit-cost tool behind `bench/hit_cost.py`: where a uprobe can sit in a Go
//! function, and a probe that does nothing to put there.
//!
//! ```text
//! hitcost sites <binary> <function>...   # per function: the entry, the site gosight
//!                                        # probes for the entry, the RETs, and the
//!                                        # first instructions (file offset, length,
//!                                        # mnemonic)
//! hitcost attach <pid>                   # loads uprobes/bare/probe.bpf.c, then reads
//!                                        # commands on stdin: `on <file offset>...`
//!                                        # attaches it there (to /proc/<pid>/exe,
//!                                        # that process only), `off` detaches all;
//!                                        # each answered with one `ok` / `error` line
//! ```
//!
//! Run as root: `cargo run --release -p gosight-uprobes --example hitcost -- ...`.

use std::io::{BufRead, Write};
use std::num::NonZeroU32;

use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::UProbe;
use aya::Ebpf;
use gosight_goexe::GoBinary;
use iced_x86::{Decoder, DecoderOptions};

/// How many instructions of each function `sites` lists.
const LISTED: usize = 12;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("sites") if args.len() >= 3 => sites(&args[1], &args[2..]),
        Some("attach") if args.len() == 2 => attach(args[1].parse()?),
        _ => anyhow::bail!("usage: hitcost sites <binary> <function>... | hitcost attach <pid>"),
    }
}

fn sites(binary: &str, functions: &[String]) -> anyhow::Result<()> {
    let bin = GoBinary::open(binary)?;
    let mut out = std::io::stdout().lock();
    for name in functions {
        let f = bin.function(name)?;
        let rets: Vec<String> = f.return_offsets.iter().map(|o| format!("{o:#x}")).collect();
        writeln!(
            out,
            "FUNCTION {name} entry={:#x} entry_probe={:#x} returns={}",
            f.entry_offset,
            f.entry_probe_offset,
            rets.join(",")
        )?;
        let start = f.entry_offset as usize;
        let code = &bin.data()[start..start + f.size as usize];
        let mut decoder = Decoder::with_ip(64, code, f.entry_offset, DecoderOptions::NONE);
        for (i, instr) in decoder.iter().enumerate() {
            if i < LISTED || f.return_offsets.contains(&instr.ip()) {
                writeln!(out, "INSN {:#x} {} {:?}", instr.ip(), instr.len(), instr.mnemonic())?;
            }
        }
    }
    Ok(())
}

fn attach(pid: u32) -> anyhow::Result<()> {
    let mut ebpf = Ebpf::load(gosight_uprobes::bpf_object!("bare"))?;
    let prog: &mut UProbe = ebpf.program_mut("bare").expect("program bare").try_into()?;
    prog.load()?;
    let exe = format!("/proc/{pid}/exe");
    let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).ok_or_else(|| anyhow::anyhow!("pid 0"))?);
    let mut links: Vec<UProbeLinkId> = Vec::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let answer = match words.next() {
            Some("on") => words
                .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).map_err(anyhow::Error::from))
                .try_for_each(|off| {
                    let point =
                        UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(off?), cookie: None };
                    links.push(prog.attach(point, &exe, scope)?);
                    Ok(())
                })
                .map(|()| "ok".to_string()),
            Some("off") => links.drain(..).try_for_each(|l| prog.detach(l)).map(|()| "ok".into()).map_err(Into::into),
            _ => Err(anyhow::anyhow!("unknown command {line:?}")),
        };
        match answer {
            Ok(a) => writeln!(out, "{a}")?,
            Err(e) => writeln!(out, "error {e:#}")?,
        }
        out.flush()?;
    }
    Ok(())
}
