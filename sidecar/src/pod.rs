//! What gosight learns about the pod it runs in, from inside its own container:
//! which container a process belongs to, and the pod's cgroup v2 directory.
//!
//! **Containers.** The injector gives every container of the pod the variable
//! `GOSIGHT_CONTAINER_NAME=<its name>`. A process's container is the value in its
//! initial environment (`/proc/<pid>/environ`, readable with `CAP_SYS_PTRACE`).
//! A process that cleared its environment is placed by its cgroup instead: every
//! process of a container shares the container's cgroup, so it belongs with any
//! marked process in the same one.
//!
//! **The pod's cgroup.** gosight sees the node's cgroup tree at the read-only mount
//! the injector adds (`/host/sys/fs/cgroup`); the pod's directory there is the one
//! named after the pod UID (`pod<uid>` under the cgroupfs driver,
//! `kubepods-…-pod<uid with _>.slice` under systemd). No launcher computes it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// The variable the injector sets in every container of an injected pod.
pub const CONTAINER_NAME_VAR: &str = "GOSIGHT_CONTAINER_NAME";

/// Which container a process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Named by its environment, or by a marked process in the same cgroup.
    Container(String),
    /// Readable, but nothing says which container (not one the injector marked).
    Unknown,
    /// Its environment cannot be read (gosight lacks `CAP_SYS_PTRACE`, or the
    /// process holds capabilities gosight does not).
    Unreadable(io::ErrorKind),
}

/// Finds processes' containers, remembering which cgroup holds which container.
#[derive(Debug, Default)]
pub struct Containers {
    by_cgroup: HashMap<String, String>,
}

impl Containers {
    pub fn membership(&mut self, proc_root: &Path, pid: u32) -> Membership {
        let dir = proc_root.join(pid.to_string());
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).ok().map(|c| unified_path(&c));
        match std::fs::read(dir.join("environ")) {
            Ok(env) => {
                if let Some(name) = marker(&env) {
                    if let Some(cg) = cgroup {
                        self.by_cgroup.insert(cg, name.clone());
                    }
                    return Membership::Container(name);
                }
                match cgroup.and_then(|cg| self.by_cgroup.get(&cg).cloned()) {
                    Some(name) => Membership::Container(name),
                    None => Membership::Unknown,
                }
            }
            Err(e) => Membership::Unreadable(e.kind()),
        }
    }
}

/// The value of GOSIGHT_CONTAINER_NAME in a NUL-separated environment block.
fn marker(environ: &[u8]) -> Option<String> {
    let prefix = format!("{CONTAINER_NAME_VAR}=");
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|v| !v.is_empty())
}

/// A process's identity among cgroups: its cgroup v2 path, or, on a host with
/// only v1 hierarchies, all of its lines (any of them tells containers apart).
fn unified_path(cgroup_file: &str) -> String {
    cgroup_file
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .unwrap_or_else(|| cgroup_file.to_string())
}

/// Where the injector mounts the node's cgroup tree in the sidecar.
pub const HOST_CGROUP_MOUNT: &str = "/host/sys/fs/cgroup";

/// The pod's cgroup v2 directory under `host_root` (the node's /sys/fs/cgroup):
/// the directory named after `pod_uid`, in the unified hierarchy (`host_root`
/// itself on a cgroup v2 node, `host_root/unified` on a hybrid one).
pub fn pod_cgroup(host_root: &Path, pod_uid: &str) -> Result<PathBuf, String> {
    let v2_root = [host_root.to_path_buf(), host_root.join("unified")]
        .into_iter()
        .find(|r| r.join("cgroup.controllers").exists())
        .ok_or_else(|| {
            format!("no cgroup v2 hierarchy at {} or {}/unified", host_root.display(), host_root.display())
        })?;
    let names = [format!("pod{pod_uid}"), format!("pod{}", pod_uid.replace('-', "_"))];
    let matches =
        |name: &str| names.iter().any(|n| name.ends_with(n.as_str()) || name.ends_with(&format!("-{n}.slice")));
    // Pod directories sit three levels down (kubepods[.slice]/<qos>/pod...); one
    // more level is searched for a kubelet with its own cgroup root.
    let mut level = vec![v2_root.clone()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for dir in level {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                if matches(&name) {
                    return Ok(e.path());
                }
                next.push(e.path());
            }
        }
        level = next;
    }
    Err(format!("no cgroup named after pod {pod_uid} under {}", v2_root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_read_from_the_environment_block() {
        assert_eq!(marker(b"A=1\0GOSIGHT_CONTAINER_NAME=app\0B=2\0").as_deref(), Some("app"));
        assert_eq!(marker(b"A=1\0XGOSIGHT_CONTAINER_NAME=app\0"), None);
        assert_eq!(marker(b"GOSIGHT_CONTAINER_NAME=\0"), None);
    }

    #[test]
    fn unmarked_process_joins_the_container_of_its_cgroup() {
        let root = std::env::temp_dir().join(format!("gosight-pod-test-{}", std::process::id()));
        for (pid, env, cg) in [
            (10, &b"GOSIGHT_CONTAINER_NAME=app\0"[..], "0::/kubepods/podX/c1\n"),
            (11, b"PATH=/bin\0", "0::/kubepods/podX/c1\n"),
            (12, b"PATH=/bin\0", "0::/kubepods/podX/c2\n"),
        ] {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("environ"), env).unwrap();
            std::fs::write(d.join("cgroup"), cg).unwrap();
        }
        let mut c = Containers::default();
        assert_eq!(c.membership(&root, 10), Membership::Container("app".into()));
        assert_eq!(c.membership(&root, 11), Membership::Container("app".into()));
        assert_eq!(c.membership(&root, 12), Membership::Unknown);
        assert!(matches!(c.membership(&root, 13), Membership::Unreadable(io::ErrorKind::NotFound)));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn pod_cgroup_by_uid_under_either_driver() {
        let root = std::env::temp_dir().join(format!("gosight-cg-test-{}", std::process::id()));
        let uid = "6f405c00-8b9e-47f9-a306-cff494cf6bfa";
        let cgroupfs = root.join("a/unified/kubepods/burstable").join(format!("pod{uid}"));
        let systemd = root
            .join("b/kubepods.slice/kubepods-besteffort.slice")
            .join(format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_")));
        std::fs::create_dir_all(&cgroupfs).unwrap();
        std::fs::create_dir_all(&systemd).unwrap();
        std::fs::write(root.join("a/unified/cgroup.controllers"), "").unwrap();
        std::fs::write(root.join("b/cgroup.controllers"), "").unwrap();
        assert_eq!(pod_cgroup(&root.join("a"), uid).unwrap(), cgroupfs);
        assert_eq!(pod_cgroup(&root.join("b"), uid).unwrap(), systemd);
        assert!(pod_cgroup(&root.join("b"), "other").unwrap_err().contains("no cgroup named after pod other"));
        std::fs::remove_dir_all(root).unwrap();
    }
}
