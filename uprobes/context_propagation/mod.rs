//! In-kernel insertion of `traceparent` into the outgoing requests of the processes
//! gosight traces, and of nobody else (C programs: `probe.bpf.c` with
//! `sock_state.h`, `http1.h`, `h2.h` and the Kafka record-header insertion,
//! `kafka*.h`, beside this file). One instance per gosight,
//! its sockops attached to the cgroup whose connections it watches; it never writes
//! the apps' memory, so it works on kernels in lockdown.
//!
//! Targets are registered by pid ([`KernelPropagation::register`]); only sockets
//! they connect from then on, and their idle connections from before
//! ([`existing`]), enter the socket map. [`selfcheck`] decides at start-up whether
//! an enrolled socket still behaves on this kernel, and with which mechanism.

#[path = "counters.rs"]
pub mod counters;
#[path = "existing.rs"]
mod existing;
#[path = "selfcheck.rs"]
pub mod selfcheck;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap as BpfHashMap, PerCpuArray, SockHash};
use aya::programs::{BtfTracePoint, CgroupAttachMode, Iter, SkMsg, SkSkb, SockOps};
use aya::{Btf, Ebpf, EbpfLoader};

pub use counters::Counters;

use crate::ProbeError;

const PROBE: &str = "context_propagation";
static OBJECT: &[u8] = crate::bpf_object!("context_propagation");

/// Target flags (`TARGET_*` in `sock_state.h`).
pub const TARGET_HTTP_CLIENT: u32 = 1;
pub const TARGET_GRPC_CLIENT: u32 = 2;
const TARGET_SELF: u32 = 4;
pub const TARGET_KAFKA_PRODUCER: u32 = 8;

/// How enrolled sockets are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// sk_msg alone on the socket map.
    Plain,
    /// sk_msg plus a stream verdict that passes every arrival unchanged.
    Verdict,
}

impl Mode {
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Plain => "sk_msg",
            Mode::Verdict => "sk_msg + pass-through stream verdict",
        }
    }
}

/// What enrolling a target's connections from before attach found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Existing {
    pub enrolled: u64,
    pub busy: u64,
    /// Connections that could not be reached (another network namespace that
    /// could not be entered, an unreadable /proc): they get no traceparent.
    pub unreachable: u64,
}

/// The loaded, attached programs; dropping it detaches them.
pub struct KernelPropagation {
    ebpf: Ebpf,
    pub cgroup: PathBuf,
    mode: Mode,
    /// What the start-up self-check's own connections counted (left out of totals).
    self_counts: Counters,
    /// Counters of targets no longer registered.
    ended: Counters,
    registered: HashMap<u32, u32>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |e| ProbeError::Map { probe: PROBE, map, reason: e.to_string() }
}

fn prog_err(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> ProbeError {
    move |source| ProbeError::Program { probe: PROBE, program, source }
}

/// Device and inode of gosight's pid namespace.
fn own_pidns() -> Result<(u64, u64), ProbeError> {
    let m = std::fs::metadata("/proc/self/ns/pid").map_err(|e| ProbeError::Map {
        probe: PROBE,
        map: "pidns",
        reason: format!("/proc/self/ns/pid: {e}"),
    })?;
    Ok((m.dev(), m.ino()))
}

impl KernelPropagation {
    /// Loads the programs (sharing `pending_headers` through `pin_dir`), attaches
    /// sockops to `cgroup` (a cgroup v2 directory), sk_msg to the socket map and the
    /// connect() tag to its tracepoint. Starts in [`Mode::Plain`].
    pub fn start(pin_dir: &Path, cgroup: &Path) -> Result<KernelPropagation, ProbeError> {
        let (dev, ino) = own_pidns()?;
        let pins: Vec<(&str, PathBuf)> = crate::SHARED_MAPS.iter().map(|m| (*m, pin_dir.join(m))).collect();
        let mut loader = EbpfLoader::new();
        loader.override_global("pidns_dev", &dev, true).override_global("pidns_ino", &ino, true);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = crate::bpffs::while_pinned(pin_dir, || loader.load(OBJECT))
            .map_err(|source| ProbeError::Load { probe: PROBE, source })?;

        drop(loader);
        fill_crc32c_table(&mut ebpf)?;
        // Parsed once the loader's own copy is gone: one parsed kernel BTF at a time.
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load { probe: PROBE, source: e.into() })?;
        let sockets_fd = sockets_fd(&ebpf)?;
        let msg: &mut SkMsg =
            program(&mut ebpf, "insert_traceparent")?.try_into().map_err(prog_err("insert_traceparent"))?;
        msg.load().map_err(prog_err("insert_traceparent"))?;
        msg.attach(&sockets_fd).map_err(prog_err("insert_traceparent"))?;

        let tag: &mut BtfTracePoint = program(&mut ebpf, "tag_connect")?.try_into().map_err(prog_err("tag_connect"))?;
        tag.load("inet_sock_set_state", &btf).map_err(prog_err("tag_connect"))?;
        tag.attach().map_err(prog_err("tag_connect"))?;

        let iter: &mut Iter = program(&mut ebpf, "enrol_existing")?.try_into().map_err(prog_err("enrol_existing"))?;
        iter.load("tcp", &btf).map_err(prog_err("enrol_existing"))?;

        let cg = File::open(cgroup).map_err(|e| ProbeError::Map {
            probe: PROBE,
            map: "cgroup",
            reason: format!("{}: {e}", cgroup.display()),
        })?;
        let ops: &mut SockOps = program(&mut ebpf, "enrol_sockets")?.try_into().map_err(prog_err("enrol_sockets"))?;
        ops.load().map_err(prog_err("enrol_sockets"))?;
        // Several instances may watch nested cgroups: each enrols only its own
        // targets' sockets, so their programs can run side by side (a BPF link
        // attaches beside other links, as BPF_F_ALLOW_MULTI does).
        ops.attach(&cg, CgroupAttachMode::Single).map_err(prog_err("enrol_sockets"))?;
        Ok(KernelPropagation {
            ebpf,
            cgroup: cgroup.to_path_buf(),
            mode: Mode::Plain,
            self_counts: Counters::default(),
            ended: Counters::default(),
            registered: HashMap::new(),
        })
    }

    /// Adds the pass-through stream verdict ([`Mode::Verdict`]); sockets enrolled
    /// from then on get it.
    pub fn add_stream_verdict(&mut self) -> Result<(), ProbeError> {
        if self.mode == Mode::Verdict {
            return Ok(());
        }
        let sockets_fd = sockets_fd(&self.ebpf)?;
        let skb: &mut SkSkb = program(&mut self.ebpf, "pass_stream")?.try_into().map_err(prog_err("pass_stream"))?;
        skb.load().map_err(prog_err("pass_stream"))?;
        skb.attach(&sockets_fd).map_err(prog_err("pass_stream"))?;
        self.mode = Mode::Verdict;
        Ok(())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Starts propagating for `pid` (in gosight's pid namespace): its connect()s
    /// from now on, and its idle connections from before, which are enrolled now.
    pub fn register(&mut self, pid: u32, flags: u32) -> Result<Existing, ProbeError> {
        {
            let mut counts: BpfHashMap<_, u32, [u64; counters::SLOTS]> =
                BpfHashMap::try_from(self.ebpf.map_mut("target_counts").ok_or_else(|| missing("target_counts"))?)
                    .map_err(map_err("target_counts"))?;
            counts.insert(pid, [0u64; counters::SLOTS], 0).map_err(map_err("target_counts"))?;
            let mut targets: BpfHashMap<_, u32, [u32; 2]> =
                BpfHashMap::try_from(self.ebpf.map_mut("targets").ok_or_else(|| missing("targets"))?)
                    .map_err(map_err("targets"))?;
            targets.insert(pid, [flags, 0], 0).map_err(map_err("targets"))?;
        }
        self.registered.insert(pid, flags);
        if flags & TARGET_SELF != 0 {
            return Ok(Existing::default());
        }
        let unreachable = existing::enrol(&mut self.ebpf, pid);
        let c = self.target_counters(pid);
        Ok(Existing { enrolled: c.existing_enrolled(), busy: c.existing_busy(), unreachable })
    }

    /// Changes what a registered target's connections may carry (`TARGET_*`).
    pub fn set_flags(&mut self, pid: u32, flags: u32) -> Result<(), ProbeError> {
        let mut targets: BpfHashMap<_, u32, [u32; 2]> =
            BpfHashMap::try_from(self.ebpf.map_mut("targets").ok_or_else(|| missing("targets"))?)
                .map_err(map_err("targets"))?;
        targets.insert(pid, [flags, 0], 0).map_err(map_err("targets"))?;
        self.registered.insert(pid, flags);
        Ok(())
    }

    /// Stops propagating for `pid`; returns its counters. Its sockets already in the
    /// map stay until they close (a pid that exited has none).
    pub fn unregister(&mut self, pid: u32) -> Counters {
        let c = self.target_counters(pid);
        let was_self = self.registered.remove(&pid).is_some_and(|f| f & TARGET_SELF != 0);
        if let Some(m) = self.ebpf.map_mut("targets") {
            if let Ok(mut t) = BpfHashMap::<_, u32, [u32; 2]>::try_from(m) {
                let _ = t.remove(&pid);
            }
        }
        if let Some(m) = self.ebpf.map_mut("target_counts") {
            if let Ok(mut t) = BpfHashMap::<_, u32, [u64; counters::SLOTS]>::try_from(m) {
                let _ = t.remove(&pid);
            }
        }
        if was_self {
            self.self_counts.add(&c);
        } else {
            self.ended.add(&c);
        }
        c
    }

    /// The registered targets.
    pub fn targets(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.registered.iter().filter(|(_, f)| *f & TARGET_SELF == 0).map(|(p, _)| *p).collect();
        v.sort_unstable();
        v
    }

    /// Counters of one registered target (zero when unknown).
    pub fn target_counters(&self, pid: u32) -> Counters {
        let Some(m) = self.ebpf.map("target_counts") else { return Counters::default() };
        let Ok(t) = BpfHashMap::<_, u32, [u64; counters::SLOTS]>::try_from(m) else { return Counters::default() };
        t.get(&pid, 0).map(|s| Counters::from_slots(&s)).unwrap_or_default()
    }

    /// Everything counted, minus the self-check's own connections.
    pub fn totals(&self) -> Counters {
        let mut all = Counters::default();
        if let Some(m) = self.ebpf.map("counters") {
            if let Ok(arr) = PerCpuArray::<_, u64>::try_from(m) {
                for (i, slot) in all.0.iter_mut().enumerate() {
                    *slot = arr.get(&(i as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
                }
            }
        }
        all.saturating_sub(&self.self_counts)
    }

    /// Runs and run time (ns) of the sk_msg program that inserts, since BPF
    /// run-time statistics were enabled (`BPF_ENABLE_STATS`; zero otherwise).
    pub fn insert_stats(&self) -> (u64, u64) {
        let Some(info) = self.ebpf.program("insert_traceparent").and_then(|p| p.info().ok()) else { return (0, 0) };
        (info.run_count(), info.run_time().as_nanos() as u64)
    }

    /// Sum over registered and ended targets (what [`totals`](Self::totals) must equal).
    pub fn sum_over_targets(&self) -> Counters {
        let mut sum = self.ended;
        for pid in self.targets() {
            sum.add(&self.target_counters(pid));
        }
        sum
    }
}

/// The CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) byte table, with
/// which the Kafka record-batch rewrite (`kafka_batch.h`) checks and recomputes
/// batch CRCs. A map the sidecar fills rather than a table in the object: BPF C
/// has no usable `static const` table (see `traceparent.h`).
pub fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    for (i, e) in t.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
        }
        *e = c;
    }
    t
}

/// Fills `crc32c_table` (its one entry); until then no Kafka batch is changed.
fn fill_crc32c_table(ebpf: &mut Ebpf) -> Result<(), ProbeError> {
    let map = ebpf.map_mut("crc32c_table").ok_or_else(|| missing("crc32c_table"))?;
    let mut table: Array<_, [u32; 256]> = Array::try_from(map).map_err(map_err("crc32c_table"))?;
    table.set(0, crc32c_table(), 0).map_err(map_err("crc32c_table"))
}

fn missing(map: &'static str) -> ProbeError {
    ProbeError::Map { probe: PROBE, map, reason: "not in the object".into() }
}

fn sockets_fd(ebpf: &Ebpf) -> Result<aya::maps::sock::SockMapFd, ProbeError> {
    let sockets = ebpf.map("sockets").ok_or_else(|| missing("sockets"))?;
    let sockets: SockHash<_, u64> = SockHash::try_from(sockets).map_err(map_err("sockets"))?;
    sockets.fd().try_clone().map_err(|e| ProbeError::Map { probe: PROBE, map: "sockets", reason: e.to_string() })
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut aya::programs::Program, ProbeError> {
    ebpf.program_mut(name).ok_or(ProbeError::Map {
        probe: PROBE,
        map: name,
        reason: "program not in the object".into(),
    })
}

/// Whether this kernel lets BPF programs write user memory (`bpf_probe_write_user`),
/// asked of the verifier: `Some(false)` under kernel lockdown (integrity or
/// confidentiality). Only meaningful with CAP_SYS_ADMIN, which the helper needs
/// in any case; None when the probe itself fails.
pub fn user_memory_writes_allowed() -> Option<bool> {
    aya::sys::is_helper_supported(aya::programs::ProgramType::KProbe, aya::sys::BpfHelper::BPF_FUNC_probe_write_user)
        .ok()
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

#[cfg(test)]
mod tests {
    use super::crc32c_table;

    #[test]
    fn crc32c_table_is_castagnolis() {
        let t = crc32c_table();
        // CRC32C_T1 in kafka_wire.h: the kernel side checks the table by it.
        assert_eq!(t[1], 0xf26b_8303);
        let crc = b"123456789".iter().fold(!0u32, |c, &b| t[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8));
        assert_eq!(!crc, 0xe306_9283, "the CRC-32C check value");
    }
}
