//! Trace context across processes: the bpffs directory where probes share maps
//! (in-process parenting and the hand-off of outgoing headers need it), and the
//! in-kernel `traceparent` inserter for the traced processes' outgoing requests.
//!
//! The mechanism is chosen once at start-up by a self-check on a connection of
//! gosight's own, and said in one log line with the outcome. gosight never writes
//! into an app's memory, so kernel lockdown (which refuses `bpf_probe_write_user`)
//! does not matter. Only the sockets of registered targets are touched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gosight_uprobes::bpffs::PinDir;
use gosight_uprobes::context_propagation::selfcheck::{self, CheckError};
use gosight_uprobes::context_propagation::{
    default_cgroup, user_memory_writes_allowed, Existing, KernelPropagation, Mode, TARGET_GRPC_CLIENT,
    TARGET_HTTP_CLIENT, TARGET_KAFKA_PRODUCER,
};

use crate::config::Config;
use crate::pod;

/// The Kafka producer probes: a target with one of them attached gets a
/// `traceparent` record header into the records its probe offers a context for.
const KAFKA_PRODUCER_PROBES: &[&str] = &["kafka_sarama_producer", "kafka_go_producer"];

/// What a target's connections may carry, from the client probes attached to it
/// (`TARGET_*`).
fn target_flags(probes: &[&str]) -> u32 {
    let mut flags = 0;
    if probes.contains(&"net_http_client") {
        flags |= TARGET_HTTP_CLIENT;
    }
    if probes.contains(&"grpc_client") {
        flags |= TARGET_GRPC_CLIENT;
    }
    if probes.iter().any(|p| KAFKA_PRODUCER_PROBES.contains(p)) {
        flags |= TARGET_KAFKA_PRODUCER;
    }
    flags
}

/// What is running for cross-process context.
pub struct Propagation {
    pin_dir: Option<PinDir>,
    inserter: Option<KernelPropagation>,
    /// Per target, connections held by another program already warned about.
    warned_held: HashMap<u32, u64>,
    /// Targets registered before their probes attached, with what enrolling their
    /// existing connections found.
    early: HashMap<u32, Existing>,
}

/// The kernel lockdown mode, if securityfs shows it (`none`, `integrity`, ...);
/// securityfs is mounted first when it is not and gosight may. In a container,
/// where neither works, the verifier is asked whether BPF may write user memory
/// (what lockdown forbids), which needs CAP_SYS_ADMIN.
fn lockdown_mode() -> String {
    let path = "/sys/kernel/security/lockdown";
    if !std::path::Path::new(path).exists() {
        // SAFETY: constant C strings; mounting securityfs at its usual place.
        unsafe {
            libc::mount(
                c"securityfs".as_ptr(),
                c"/sys/kernel/security".as_ptr(),
                c"securityfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
    }
    if let Some(mode) = std::fs::read_to_string(path).ok().and_then(|text| {
        let start = text.find('[')? + 1;
        let end = text[start..].find(']')? + start;
        Some(text[start..end].to_string())
    }) {
        return mode;
    }
    if !has_cap_sys_admin() {
        return "unknown (securityfs not readable, no CAP_SYS_ADMIN to ask the verifier)".into();
    }
    match user_memory_writes_allowed() {
        Some(false) => "integrity or confidentiality (bpf_probe_write_user refused by the verifier)".into(),
        Some(true) => "none (bpf_probe_write_user allowed by the verifier)".into(),
        None => "unknown (securityfs not readable, the verifier probe failed)".into(),
    }
}

/// Whether gosight's effective capabilities include CAP_SYS_ADMIN.
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The cgroup whose connections are watched: the configured one; in a pod, the
/// pod's own directory in the node's cgroup tree (found by its UID at the mount the
/// injector adds); else the parent of gosight's own cgroup, or the cgroup root.
fn target_cgroup(config: &Config) -> Option<PathBuf> {
    if let Some(cg) = &config.propagation_cgroup {
        return Some(cg.clone());
    }
    let host = Path::new(pod::HOST_CGROUP_MOUNT);
    if let (Some(uid), true) = (config.pod_uid.as_deref().filter(|u| !u.is_empty()), host.exists()) {
        match pod::pod_cgroup(host, uid) {
            Ok(cg) => return Some(cg),
            Err(e) => tracing::warn!("context propagation: the pod's cgroup: {e}; using gosight's own cgroup's parent"),
        }
    }
    default_cgroup()
}

/// The outcome of choosing a mode: the mode and what the self-check said.
struct Chosen {
    mode: Mode,
    self_check: &'static str,
    note: String,
}

/// Runs the self-check in the modes `wanted` allows, switching to the verdict
/// mode when needed. Err: why no mode behaves.
fn choose_mode(kp: &mut KernelPropagation, wanted: &str) -> Result<Chosen, String> {
    let mut note = String::new();
    if wanted != "verdict" {
        match selfcheck::run(kp) {
            Ok(()) => return Ok(Chosen { mode: Mode::Plain, self_check: "passed", note }),
            Err(CheckError::NotEnrolled(why)) => {
                // Nothing could be checked: use the mode that is right on every
                // kernel we know (the verdict costs little), and say so.
                if wanted == "plain" {
                    return Ok(Chosen { mode: Mode::Plain, self_check: "skipped", note: why });
                }
                kp.add_stream_verdict().map_err(|e| e.to_string())?;
                return Ok(Chosen { mode: Mode::Verdict, self_check: "skipped", note: why });
            }
            Err(CheckError::Failed(why)) if wanted == "plain" => return Err(format!("sk_msg alone: {why}")),
            Err(CheckError::Failed(why)) => note = format!("sk_msg alone failed: {why}"),
        }
    }
    kp.add_stream_verdict().map_err(|e| format!("{}: {e}", Mode::Verdict.describe()))?;
    match selfcheck::run(kp) {
        Ok(()) => Ok(Chosen { mode: Mode::Verdict, self_check: "passed", note }),
        Err(CheckError::NotEnrolled(why)) => Ok(Chosen { mode: Mode::Verdict, self_check: "skipped", note: why }),
        Err(CheckError::Failed(why)) => {
            let also = if note.is_empty() { String::new() } else { format!("; {note}") };
            Err(format!("{}: {why}{also}", Mode::Verdict.describe()))
        }
    }
}

impl Propagation {
    pub fn start(config: &Config) -> Propagation {
        let pin_dir = match PinDir::create(&config.bpffs) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!("in-process parenting and context propagation are off: {e}");
                None
            }
        };
        let inserter = if !config.propagation {
            tracing::info!("context propagation: off (GOSIGHT_PROPAGATION=off / --propagation off)");
            None
        } else {
            pin_dir.as_ref().and_then(|dir| Self::start_inserter(config, dir))
        };
        Propagation { pin_dir, inserter, warned_held: HashMap::new(), early: HashMap::new() }
    }

    fn start_inserter(config: &Config, dir: &PinDir) -> Option<KernelPropagation> {
        let lockdown = lockdown_mode();
        let kernel = kernel_release();
        let Some(cg) = target_cgroup(config) else {
            tracing::warn!("context propagation: off: no cgroup v2 hierarchy found");
            return None;
        };
        let mut kp = match KernelPropagation::start(&dir.path, &cg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(kernel = %kernel, "context propagation: off: {e}");
                return None;
            }
        };
        match choose_mode(&mut kp, &config.propagation_mode) {
            Ok(chosen) => {
                let splice = if chosen.mode == Mode::Verdict {
                    "; splice(2) from an enrolled socket does not work in this mode, so only connections carrying \
                     net/http or gRPC stay enrolled"
                } else {
                    ""
                };
                tracing::info!(
                    cgroup = %cg.display(),
                    lockdown = %lockdown,
                    kernel = %kernel,
                    mode = %format!("\"{}\"", chosen.mode.describe()),
                    self_check = chosen.self_check,
                    "context propagation: in-kernel traceparent insertion into the traced processes' outgoing plaintext \
                     HTTP/1 requests and h2c (gRPC) HEADERS frames, and as a record header into the records of their \
                     uncompressed Kafka Produce requests; the apps' memory is never written, so kernel lockdown \
                     does not stop it; other processes' sockets are never touched{}{splice}",
                    if chosen.note.is_empty() { String::new() } else { format!(" ({})", chosen.note) },
                );
                Some(kp)
            }
            Err(why) => {
                tracing::warn!(
                    kernel = %kernel,
                    "context propagation: off: self-check failed: an enrolled socket misbehaves on this kernel ({why}); \
                     spans are still exported, without traceparent on outgoing requests"
                );
                None
            }
        }
    }

    pub fn pin_dir(&self) -> Option<PathBuf> {
        self.pin_dir.as_ref().map(|d| d.path.clone())
    }

    /// Whether outgoing requests get a traceparent.
    pub fn inserting(&self) -> bool {
        self.inserter.is_some()
    }

    /// Starts propagation for a target about to get its probes: its connect()s
    /// are tagged from now on, and its idle connections enrolled. [`register`]
    /// settles it once the probes are attached.
    ///
    /// [`register`]: Self::register
    pub fn register_early(&mut self, pid: u32) {
        let Some(kp) = self.inserter.as_mut() else { return };
        match kp.register(pid, TARGET_HTTP_CLIENT | TARGET_GRPC_CLIENT | TARGET_KAFKA_PRODUCER) {
            Ok(existing) => {
                self.early.insert(pid, existing);
            }
            Err(e) => tracing::warn!(pid, "context propagation: target not registered, it gets no traceparent: {e}"),
        }
    }

    /// Settles a target registered early: keeps it with the client probes in
    /// `probes` that attached, or ends it when none did.
    pub fn register(&mut self, pid: u32, probes: &[&str]) {
        let Some(kp) = self.inserter.as_mut() else { return };
        let Some(existing) = self.early.remove(&pid) else { return };
        let flags = target_flags(probes);
        if flags == 0 {
            kp.unregister(pid);
            return;
        }
        match kp.set_flags(pid, flags) {
            Ok(()) => tracing::info!(
                pid,
                existing_enrolled = existing.enrolled,
                existing_busy = existing.busy,
                existing_unreachable = existing.unreachable,
                "context propagation: target registered"
            ),
            Err(e) => tracing::warn!(pid, "context propagation: target not registered, it gets no traceparent: {e}"),
        }
    }

    /// Ends propagation for a target that exited; logs its counters.
    pub fn unregister(&mut self, pid: u32) {
        let Some(kp) = self.inserter.as_mut() else { return };
        self.early.remove(&pid);
        if !kp.targets().contains(&pid) {
            return;
        }
        let c = kp.unregister(pid);
        self.warned_held.remove(&pid);
        tracing::info!("context propagation for target pid={pid} {}", c.fields());
    }

    /// Says (again only when it grows) which targets' connections are held by
    /// another program's socket map: this instance stands down for them.
    pub fn check(&mut self) {
        let Some(kp) = &self.inserter else { return };
        for pid in kp.targets() {
            let held = kp.target_counters(pid).held_by_other();
            let warned = self.warned_held.entry(pid).or_insert(0);
            if held > *warned {
                tracing::warn!(
                    pid,
                    connections = held,
                    "context propagation stood down for these connections: their sockets are held by another \
                     program's socket map (another gosight tracing the same process?), which propagates instead"
                );
                *warned = held;
            }
        }
    }

    /// Logs what the inserter did: per target, then in all.
    pub fn report(&mut self) {
        self.check();
        let Some(kp) = self.inserter.as_mut() else { return };
        for pid in kp.targets() {
            let c = kp.unregister(pid);
            tracing::info!("context propagation for target pid={pid} {}", c.fields());
        }
        let totals = kp.totals();
        let sum = kp.sum_over_targets();
        if totals.enrolled() != sum.enrolled() {
            tracing::warn!(
                enrolled = totals.enrolled(),
                over_targets = sum.enrolled(),
                "context propagation: the socket count differs from the sum over targets"
            );
        }
        tracing::info!("context propagation totals {} mode=\"{}\"", totals.fields(), kp.mode().describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_flags_follow_the_attached_client_probes() {
        assert_eq!(target_flags(&[]), 0);
        assert_eq!(target_flags(&["net_http_server"]), 0);
        assert_eq!(target_flags(&["net_http_client", "grpc_client"]), TARGET_HTTP_CLIENT | TARGET_GRPC_CLIENT);
        assert_eq!(target_flags(&["kafka_sarama_producer"]), TARGET_KAFKA_PRODUCER);
        assert_eq!(target_flags(&["kafka_go_producer", "net_http_client"]), TARGET_KAFKA_PRODUCER | TARGET_HTTP_CLIENT);
        assert_eq!(target_flags(&["kafka_consumer"]), 0);
    }
}
