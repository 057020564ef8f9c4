//! Trace context across processes: the bpffs directory where probes share maps
//! (in-process parenting and the hand-off of outgoing headers need it), and the
//! in-kernel `traceparent` inserter for outgoing plaintext HTTP/1 requests.
//!
//! The mechanism is chosen once at start-up and said in one log line, with why.
//! gosight never writes into an app's memory; on this path it does not need to, so
//! kernel lockdown (which refuses `bpf_probe_write_user`) does not matter.

use std::path::PathBuf;

use gosight_uprobes::bpffs::PinDir;
use gosight_uprobes::context_propagation::{default_cgroup, KernelPropagation};

use crate::config::Config;

/// What is running for cross-process context.
pub struct Propagation {
    pin_dir: Option<PinDir>,
    inserter: Option<KernelPropagation>,
    warned_sockets: std::cell::Cell<u64>,
}

/// The kernel lockdown mode, if securityfs shows it (`none`, `integrity`, ...);
/// securityfs is mounted first when it is not and gosight may.
fn lockdown_mode() -> Option<String> {
    let path = "/sys/kernel/security/lockdown";
    if !std::path::Path::new(path).exists() {
        // SAFETY: constant C strings; mounting securityfs at its usual place.
        unsafe {
            libc::mount(c"securityfs".as_ptr(), c"/sys/kernel/security".as_ptr(), c"securityfs".as_ptr(), 0, std::ptr::null())
        };
    }
    let text = std::fs::read_to_string(path).ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_string())
}

/// The cgroup whose connections are watched: the configured one, else the pod
/// (parent of gosight's own cgroup), else the cgroup root.
fn target_cgroup(config: &Config) -> Option<PathBuf> {
    config.propagation_cgroup.clone().or_else(default_cgroup)
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
        let lockdown = lockdown_mode().unwrap_or_else(|| "unknown".into());
        let inserter = match (&pin_dir, config.propagation) {
            (_, false) => {
                tracing::info!("context propagation: off (GOSIGHT_PROPAGATION=off / --propagation off)");
                None
            }
            (None, true) => None,
            (Some(dir), true) => match target_cgroup(config) {
                None => {
                    tracing::warn!("context propagation: off: no cgroup v2 hierarchy found");
                    None
                }
                Some(cg) => match KernelPropagation::start(&dir.path, &cg) {
                    Ok(p) => {
                        tracing::info!(
                            cgroup = %cg.display(),
                            lockdown = %lockdown,
                            "context propagation: in-kernel traceparent insertion into outgoing plaintext HTTP/1 requests and h2c (gRPC) \
                             HEADERS frames (sockops + sk_msg); the apps' memory is never written, so kernel lockdown \
                             does not stop it; TLS traffic is left alone"
                        );
                        Some(p)
                    }
                    Err(e) => {
                        tracing::warn!("context propagation: off: {e}");
                        None
                    }
                },
            },
        };
        Propagation { pin_dir, inserter, warned_sockets: std::cell::Cell::new(0) }
    }

    pub fn pin_dir(&self) -> Option<PathBuf> {
        self.pin_dir.as_ref().map(|d| d.path.clone())
    }

    /// Whether outgoing requests get a traceparent.
    pub fn inserting(&self) -> bool {
        self.inserter.is_some()
    }

    /// Warns (again only when it grows) when connections could not be tracked: a
    /// socket already in another program's socket map (another gosight on the same
    /// cgroup tree) gets no header from this one.
    pub fn check(&self) {
        let Some(p) = &self.inserter else { return };
        let failed = p.counters().socket_add_failed;
        if failed > self.warned_sockets.get() {
            tracing::warn!(
                sockets = failed,
                "connections not tracked for context propagation: their sockets are held by another \
                 sockops/sk_msg program (another gosight watching the same cgroup?); they get no traceparent"
            );
            self.warned_sockets.set(failed);
        }
    }

    /// Logs what the inserter did.
    pub fn report(&self) {
        if let Some(p) = &self.inserter {
            let c = p.counters();
            tracing::info!(
                inserted = c.inserted,
                insert_failed = c.insert_failed,
                not_plaintext_http1 = c.not_request,
                stale = c.stale,
                h2_inserted = c.h2_inserted,
                h2_skipped = c.h2_skipped,
                h2_lost_connections = c.h2_lost,
                sockets = c.sockets_added,
                socket_add_failed = c.socket_add_failed,
                "context propagation totals"
            );
        }
    }
}
