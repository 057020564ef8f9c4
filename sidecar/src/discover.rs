//! Stage 1 — find the Go processes to trace.
//!
//! [`Watcher::poll`] scans the proc filesystem, recognises Go executables by their
//! build info (each distinct executable file is inspected once), applies the
//! [`Selector`], and reports targets that appeared or went away since the last poll.
//! A process is identified by pid + start time, so a recycled pid or a restarted
//! service is a new target.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gosight_goexe::{GoBinary, InspectError};

use crate::config::Config;
use crate::pod::{Containers, Membership};

/// A running process as seen in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Start time in clock ticks after boot (field 22 of /proc/<pid>/stat).
    pub start_time: u64,
    /// The executable's path as the process sees it (readlink of /proc/<pid>/exe).
    pub exe: PathBuf,
    /// Device and inode of the executable: identifies the file across namespaces.
    pub exe_id: (u64, u64),
}

/// A Go process selected for tracing, with its inspected executable.
#[derive(Clone)]
pub struct Target {
    pub process: Process,
    pub binary: Arc<GoBinary>,
}

/// A change in the set of targets.
pub enum Change {
    Started(Target),
    Exited(Process),
}

/// Which processes to trace: the listed pids, the executables matching a path or
/// glob, or — when neither is given — every Go process except gosight itself.
#[derive(Debug, Clone)]
pub struct Selector {
    pids: HashSet<u32>,
    exe: Option<glob::Pattern>,
    /// A pattern without '/' matches the executable's file name.
    exe_by_name: bool,
    /// Only processes of these containers (empty: any).
    containers: HashSet<String>,
    self_pid: u32,
}

impl Selector {
    pub fn new(pids: &[u32], exe: Option<&str>) -> Result<Selector, glob::PatternError> {
        let exe_pattern = exe.map(|e| glob::Pattern::new(e.trim())).transpose()?;
        Ok(Selector {
            pids: pids.iter().copied().collect(),
            exe_by_name: exe.is_some_and(|e| !e.contains('/')),
            exe: exe_pattern,
            containers: HashSet::new(),
            self_pid: std::process::id(),
        })
    }

    /// Restricts the selection to the processes of these containers (names; empty
    /// or blank entries are ignored).
    pub fn in_containers(mut self, names: &[String]) -> Selector {
        self.containers = names.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
        self
    }

    pub fn from_config(c: &Config) -> Result<Selector, glob::PatternError> {
        Ok(Selector::new(&c.pids, c.target_exe.as_deref().filter(|s| !s.trim().is_empty()))?
            .in_containers(&c.target_containers))
    }

    /// True when the user named targets (then a non-Go match is worth a warning).
    pub fn is_explicit(&self) -> bool {
        !self.pids.is_empty() || self.exe.is_some()
    }

    pub fn matches(&self, p: &Process) -> bool {
        if p.pid == self.self_pid {
            return false;
        }
        if !self.is_explicit() {
            return true;
        }
        let by_pid = self.pids.contains(&p.pid);
        let by_exe = self.exe.as_ref().is_some_and(|pat| {
            if self.exe_by_name {
                p.exe.file_name().is_some_and(|n| pat.matches(&n.to_string_lossy()))
            } else {
                pat.matches_path(&p.exe)
            }
        });
        by_pid || by_exe
    }

    /// Human description for the start-up log.
    pub fn describe(&self) -> String {
        let mut containers: Vec<_> = self.containers.iter().map(String::as_str).collect();
        containers.sort();
        let scope = match containers.as_slice() {
            [] => String::new(),
            names => format!(" in containers {}", names.join(",")),
        };
        format!("{}{scope}", self.describe_processes())
    }

    fn describe_processes(&self) -> String {
        if !self.is_explicit() {
            return "all Go processes".into();
        }
        let mut parts = Vec::new();
        if !self.pids.is_empty() {
            let mut pids: Vec<_> = self.pids.iter().collect();
            pids.sort();
            parts.push(format!("pids {pids:?}"));
        }
        if let Some(p) = &self.exe {
            parts.push(format!("executables matching {:?}", p.as_str()));
        }
        parts.join(" or ")
    }
}

/// Reads one process from `<proc_root>/<pid>`; None for kernel threads, processes
/// that exited meanwhile, or ones we may not look at.
pub fn read_process(proc_root: &Path, pid: u32) -> Option<Process> {
    match try_read_process(proc_root, pid) {
        Seen::Process(p) => Some(p),
        _ => None,
    }
}

/// What a /proc entry gave.
enum Seen {
    Process(Process),
    /// A process whose executable gosight may not look at, with its command name
    /// and start time.
    Forbidden {
        comm: String,
        start_time: u64,
    },
    /// Gone, a kernel thread, or unreadable for another reason.
    Nothing,
}

fn try_read_process(proc_root: &Path, pid: u32) -> Seen {
    let dir = proc_root.join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else { return Seen::Nothing };
    // Fields after the command name, which may itself contain ')' or spaces.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return Seen::Nothing };
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let Some(start_time) = fields.get(19).and_then(|s| s.parse().ok()) else { return Seen::Nothing };
    // Kernel threads (PF_KTHREAD in the flags, field 9) have no executable.
    const PF_KTHREAD: u64 = 0x0020_0000;
    if fields.get(6).and_then(|s| s.parse::<u64>().ok()).is_none_or(|flags| flags & PF_KTHREAD != 0) {
        return Seen::Nothing;
    }
    let exe = match std::fs::read_link(dir.join("exe")) {
        Ok(exe) => exe,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Seen::Forbidden { comm, start_time },
        Err(_) => return Seen::Nothing,
    };
    match std::fs::metadata(dir.join("exe")) {
        Ok(meta) => Seen::Process(Process { pid, start_time, exe, exe_id: (meta.dev(), meta.ino()) }),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Seen::Forbidden { comm, start_time },
        Err(_) => Seen::Nothing,
    }
}

/// Every process visible under `proc_root`.
pub fn scan(proc_root: &Path) -> Vec<Process> {
    scan_all(proc_root).0
}

/// Every process visible under `proc_root`, and those whose executable gosight
/// may not read (pid, command name, start time).
fn scan_all(proc_root: &Path) -> (Vec<Process>, Vec<(u32, String, u64)>) {
    let Ok(dir) = std::fs::read_dir(proc_root) else { return (Vec::new(), Vec::new()) };
    let mut seen = Vec::new();
    let mut forbidden = Vec::new();
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        match try_read_process(proc_root, pid) {
            Seen::Process(p) => seen.push(p),
            Seen::Forbidden { comm, start_time } => forbidden.push((pid, comm, start_time)),
            Seen::Nothing => {}
        }
    }
    (seen, forbidden)
}

/// Keeps the set of targets in step with /proc.
pub struct Watcher {
    proc_root: PathBuf,
    selector: Selector,
    /// Selected Go processes currently traced, by pid.
    targets: HashMap<u32, Process>,
    /// Processes looked at and passed over (not Go, not selected), by pid, with the
    /// start time and executable they had: an `exec` (a shell wrapper exec'ing the
    /// real service keeps its pid) makes the process worth another look.
    passed: HashMap<u32, (u64, (u64, u64))>,
    /// Executables known not to be Go (or not usable), by (dev, inode).
    not_go: HashSet<(u64, u64)>,
    warned_missing_pids: bool,
    containers: Containers,
    /// Processes gosight may not look at, already logged (pid, start time).
    warned_forbidden: HashSet<(u32, u64)>,
}

impl Watcher {
    pub fn new(proc_root: PathBuf, selector: Selector) -> Watcher {
        Watcher {
            proc_root,
            selector,
            targets: HashMap::new(),
            passed: HashMap::new(),
            not_go: HashSet::new(),
            warned_missing_pids: false,
            containers: Containers::default(),
            warned_forbidden: HashSet::new(),
        }
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Scans once and returns what changed since the previous poll.
    pub fn poll(&mut self) -> Vec<Change> {
        let (procs, forbidden) = scan_all(&self.proc_root);
        self.warn_forbidden(forbidden);
        let mut changes = Vec::new();
        let alive: HashMap<u32, (u64, (u64, u64))> = procs.iter().map(|p| (p.pid, (p.start_time, p.exe_id))).collect();

        // Gone, or the pid now belongs to another process (restart, pid reuse, exec).
        let gone: Vec<u32> = self
            .targets
            .iter()
            .filter(|(pid, old)| alive.get(pid) != Some(&(old.start_time, old.exe_id)))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            changes.push(Change::Exited(self.targets.remove(&pid).expect("listed above")));
        }
        self.passed.retain(|pid, seen| alive.get(pid) == Some(seen));

        for p in procs {
            if self.targets.contains_key(&p.pid) || self.passed.contains_key(&p.pid) {
                continue;
            }
            match self.consider(&p) {
                Some(binary) => {
                    self.targets.insert(p.pid, p.clone());
                    changes.push(Change::Started(Target { process: p, binary }));
                }
                None => {
                    self.passed.insert(p.pid, (p.start_time, p.exe_id));
                }
            }
        }

        if !self.warned_missing_pids && !self.selector.pids.is_empty() {
            let missing: Vec<_> = self.selector.pids.iter().filter(|p| !alive.contains_key(p)).collect();
            if !missing.is_empty() {
                tracing::warn!(?missing, "selected pids are not running (or not visible to gosight)");
            }
            self.warned_missing_pids = true;
        }
        changes
    }

    /// One line for the processes gosight newly finds it cannot look at (their
    /// executable is not readable): any of them could be a target, and would
    /// otherwise silently never be found.
    fn warn_forbidden(&mut self, forbidden: Vec<(u32, String, u64)>) {
        let alive: HashSet<(u32, u64)> = forbidden.iter().map(|(pid, _, start)| (*pid, *start)).collect();
        self.warned_forbidden.retain(|k| alive.contains(k));
        let new: Vec<String> = forbidden
            .into_iter()
            .filter(|(pid, _, start)| *pid != self.selector.self_pid && self.warned_forbidden.insert((*pid, *start)))
            .map(|(pid, comm, _)| format!("{pid} ({comm})"))
            .collect();
        if new.is_empty() {
            return;
        }
        const SHOWN: usize = 10;
        let more = new.len().saturating_sub(SHOWN);
        let listed = new.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        tracing::warn!(
            processes = new.len(),
            "cannot inspect {listed}{more}: /proc/<pid>/exe: permission denied (gosight needs CAP_SYS_PTRACE, and every \
             capability those processes hold); not traced"
        );
    }

    /// Whether the process is in one of the selected containers (always, when none
    /// are named). Logs why a process is left out when it cannot be told.
    fn in_selected_container(&mut self, p: &Process) -> bool {
        if self.selector.containers.is_empty() {
            return true;
        }
        match self.containers.membership(&self.proc_root, p.pid) {
            Membership::Container(name) => {
                let selected = self.selector.containers.contains(&name);
                if !selected {
                    tracing::debug!(pid = p.pid, container = %name, "not tracing: container not selected");
                }
                selected
            }
            Membership::Unknown => {
                tracing::debug!(pid = p.pid, exe = %p.exe.display(), "not tracing: not in a selected container");
                false
            }
            Membership::Unreadable(kind) => {
                tracing::warn!(
                    pid = p.pid,
                    exe = %p.exe.display(),
                    "not tracing: cannot tell its container: /proc/{}/environ: {kind} (gosight needs CAP_SYS_PTRACE, \
                     and every capability the process holds)",
                    p.pid
                );
                false
            }
        }
    }

    /// Decides whether a newly seen process becomes a target.
    fn consider(&mut self, p: &Process) -> Option<Arc<GoBinary>> {
        if !self.selector.matches(p) || self.not_go.contains(&p.exe_id) || !self.in_selected_container(p) {
            return None;
        }
        let path = self.proc_root.join(p.pid.to_string()).join("exe");
        match GoBinary::open(&path) {
            Ok(bin) => Some(Arc::new(bin)),
            Err(err) => {
                let permanent = !matches!(err, InspectError::Io { .. });
                if permanent {
                    self.not_go.insert(p.exe_id);
                }
                let exe = p.exe.display();
                if self.selector.is_explicit() {
                    tracing::warn!(pid = p.pid, "not tracing {exe}: {err}");
                } else {
                    tracing::debug!(pid = p.pid, "not tracing {exe}: {err}");
                }
                None
            }
        }
    }

    /// Pids currently traced.
    pub fn target_pids(&self) -> Vec<u32> {
        self.targets.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, exe: &str) -> Process {
        Process { pid, start_time: 1, exe: exe.into(), exe_id: (1, pid as u64) }
    }

    #[test]
    fn default_selects_everything_but_itself() {
        let s = Selector::new(&[], None).unwrap();
        assert!(s.matches(&proc(1, "/bin/app")));
        assert!(!s.matches(&proc(std::process::id(), "/gosight")));
        assert!(!s.is_explicit());
    }

    #[test]
    fn exe_by_path_glob_and_name() {
        let s = Selector::new(&[], Some("/srv/*/server")).unwrap();
        assert!(s.matches(&proc(1, "/srv/a/server")));
        assert!(!s.matches(&proc(1, "/srv/a/client")));
        let s = Selector::new(&[], Some("server*")).unwrap();
        assert!(s.matches(&proc(1, "/anywhere/server-v2")));
        assert!(!s.matches(&proc(1, "/anywhere/client")));
    }

    #[test]
    fn pids_or_exe() {
        let s = Selector::new(&[7], Some("/bin/x")).unwrap();
        assert!(s.matches(&proc(7, "/bin/y")));
        assert!(s.matches(&proc(8, "/bin/x")));
        assert!(!s.matches(&proc(9, "/bin/y")));
    }

    #[test]
    fn reads_this_process() {
        let me = read_process(Path::new("/proc"), std::process::id()).expect("own /proc entry");
        assert!(me.start_time > 0);
        assert_eq!(me.exe, std::env::current_exe().unwrap());
    }
}
