//! A wake-up for discovery: the kernel says when a process of gosight's pid
//! namespace calls execve(2) (raw tracepoint `sched_process_exec`, no BTF or tracefs
//! needed), so a new target is seen at once instead of at the next `/proc` scan.
//! Only a hint: `/proc` stays what decides; without this hook discovery scans on
//! its interval alone.

use std::os::unix::fs::MetadataExt;

use aya::maps::{MapData, RingBuf};
use aya::programs::RawTracePoint;
use aya::{Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::ProbeError;

const PROBE: &str = "exec_watch";
static OBJECT: &[u8] = crate::bpf_object!("exec_watch");

/// Execs of gosight's pid namespace, as an async wake-up.
pub struct ExecWatch {
    ring: AsyncFd<RingBuf<MapData>>,
    _ebpf: Ebpf,
}

impl ExecWatch {
    /// Loads and attaches the hook; must run inside a tokio runtime.
    pub fn start() -> Result<ExecWatch, ProbeError> {
        let ns = std::fs::metadata("/proc/self/ns/pid").map_err(|e| ProbeError::Map {
            probe: PROBE,
            map: "pidns",
            reason: format!("/proc/self/ns/pid: {e}"),
        })?;
        let (dev, ino) = (ns.dev(), ns.ino());
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global("pidns_dev", &dev, true)
            .override_global("pidns_ino", &ino, true)
            .load(OBJECT)
            .map_err(|source| ProbeError::Load { probe: PROBE, source })?;
        let err = |source| ProbeError::Program { probe: PROBE, program: "on_exec", source };
        let prog: &mut RawTracePoint = ebpf
            .program_mut("on_exec")
            .ok_or(ProbeError::Map { probe: PROBE, map: "on_exec", reason: "program not in the object".into() })?
            .try_into()
            .map_err(err)?;
        prog.load().map_err(err)?;
        prog.attach("sched_process_exec").map_err(err)?;
        let map_err = |reason: String| ProbeError::Map { probe: PROBE, map: "execs", reason };
        let ring = ebpf.take_map("execs").ok_or_else(|| map_err("not in the object".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| map_err(e.to_string()))?;
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let ring =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| map_err(e.to_string()))?;
        Ok(ExecWatch { ring, _ebpf: ebpf })
    }

    /// Waits until at least one process has exec'd since the last call; returns
    /// how many did (the records are consumed).
    pub async fn next(&mut self) -> std::io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        guard.clear_ready();
        let rb = guard.get_inner_mut();
        let mut n = 0;
        while rb.next().is_some() {
            n += 1;
        }
        Ok(n)
    }
}
