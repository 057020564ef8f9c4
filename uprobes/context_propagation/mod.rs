//! In-kernel insertion of `traceparent` into outgoing plaintext HTTP/1 requests
//! (sockops + sk_msg; C program: `probe.bpf.c` beside this file). One instance per
//! gosight, attached to the cgroup whose sockets it watches; it never writes the
//! apps' memory, so it works on kernels in lockdown.

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::maps::SockHash;
use aya::programs::{CgroupAttachMode, SkMsg, SockOps};
use aya::{Ebpf, EbpfLoader};

use crate::ProbeError;

const PROBE: &str = "context_propagation";
static OBJECT: &[u8] = crate::bpf_object!("context_propagation");

/// What the inserter did so far (from its per-CPU counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sockets_added: u64,
    pub socket_add_failed: u64,
    pub inserted: u64,
    pub insert_failed: u64,
    /// A request was handed over but the first message was not a plaintext
    /// HTTP/1 request line (TLS, HTTP/2...): nothing inserted.
    pub not_request: u64,
    pub stale: u64,
    /// gRPC (HTTP/2) HEADERS frames that got a traceparent field.
    pub h2_inserted: u64,
    /// Pending fields that could not go in (frame split across messages, size).
    pub h2_skipped: u64,
    /// HTTP/2 connections whose frame boundaries were lost (they get nothing more).
    pub h2_lost: u64,
}

/// The loaded, attached inserter; dropping it detaches both programs.
pub struct KernelPropagation {
    ebpf: Ebpf,
    pub cgroup: PathBuf,
}

impl KernelPropagation {
    /// Loads the programs (sharing `pending_headers` through `pin_dir`) and attaches
    /// sockops to `cgroup` (a cgroup v2 directory) and sk_msg to its socket map.
    pub fn start(pin_dir: &Path, cgroup: &Path) -> Result<KernelPropagation, ProbeError> {
        let err = |program: &'static str| move |source| ProbeError::Program { probe: PROBE, program, source };
        let pins: Vec<(&str, PathBuf)> = crate::SHARED_MAPS.iter().map(|m| (*m, pin_dir.join(m))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(OBJECT).map_err(|source| ProbeError::Load { probe: PROBE, source })?;

        let sockets = ebpf
            .map("sockets")
            .ok_or(ProbeError::Map { probe: PROBE, map: "sockets", reason: "not in the object".into() })?;
        let sockets: SockHash<_, u64> =
            SockHash::try_from(sockets).map_err(|e| ProbeError::Map { probe: PROBE, map: "sockets", reason: e.to_string() })?;
        let sockets_fd = sockets.fd().try_clone().map_err(|e| ProbeError::Map {
            probe: PROBE,
            map: "sockets",
            reason: e.to_string(),
        })?;

        let msg: &mut SkMsg = program(&mut ebpf, "insert_traceparent")?.try_into().map_err(err("insert_traceparent"))?;
        msg.load().map_err(err("insert_traceparent"))?;
        msg.attach(&sockets_fd).map_err(err("insert_traceparent"))?;

        let cg = File::open(cgroup).map_err(|e| ProbeError::Map {
            probe: PROBE,
            map: "cgroup",
            reason: format!("{}: {e}", cgroup.display()),
        })?;
        let ops: &mut SockOps = program(&mut ebpf, "track_sockets")?.try_into().map_err(err("track_sockets"))?;
        ops.load().map_err(err("track_sockets"))?;
        ops.attach(&cg, CgroupAttachMode::Single).map_err(err("track_sockets"))?;
        Ok(KernelPropagation { ebpf, cgroup: cgroup.to_path_buf() })
    }

    pub fn counters(&self) -> Counters {
        let get = |i: u32| crate::loader::percpu_sum(&self.ebpf, "counters", i);
        Counters {
            sockets_added: get(0),
            socket_add_failed: get(1),
            inserted: get(2),
            insert_failed: get(3),
            not_request: get(4),
            stale: get(5),
            h2_inserted: get(6),
            h2_skipped: get(7),
            h2_lost: get(8),
        }
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::programs::Program, ProbeError> {
    ebpf.program_mut(name).ok_or(ProbeError::Map { probe: PROBE, map: name, reason: "program not in the object".into() })
}

/// The default cgroup to watch: the parent of gosight's own cgroup v2 (in a pod,
/// gosight's container cgroup's parent is the pod), or the root of the cgroup2
/// mount when gosight is in the root.
pub fn default_cgroup() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split_whitespace().nth(4)?;
        post.starts_with("cgroup2 ").then(|| PathBuf::from(mount_point))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = Path::new(own.lines().find_map(|l| l.strip_prefix("0::"))?.trim());
    Some(match rel.parent() {
        Some(parent) => root.join(parent.strip_prefix("/").unwrap_or(parent)),
        None => root, // gosight is in the root cgroup
    })
}
