//! gosight's directory on a BPF filesystem, where the maps several objects share
//! (`SHARED_MAPS`) are pinned so that each object that declares them gets the same
//! map, and only while an object loads.
//!
//! The shared maps live in an object of their own (`shared_maps/probe.bpf.c`),
//! loaded once and held by file descriptor for the life of gosight. Around each
//! later load, [`while_pinned`] pins them in `gosight-<pidns>-<pid>`, lets the
//! loader open them by path, and removes the pins and the directory again. So a
//! gosight killed with SIGKILL leaves nothing under the BPF filesystem: its maps and
//! programs die with its file descriptors. Directories that older versions left
//! behind are removed at start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::{Ebpf, EbpfLoader};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
static OBJECT: &[u8] = crate::bpf_object!("shared_maps");

/// The held shared maps (one set per gosight process).
static HOLDER: Mutex<Option<Ebpf>> = Mutex::new(None);

/// Where shared maps are pinned while an object loads. Dropping it releases them.
#[derive(Debug)]
pub struct PinDir {
    pub path: PathBuf,
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

fn pidns_ino() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()).unwrap_or(0)
}

impl PinDir {
    /// Uses the bpffs at `root` (mounting one there if there is none and gosight
    /// may) and loads the shared maps. Err is a one-line reason.
    pub fn create(root: &Path) -> Result<PinDir, String> {
        if !is_bpffs(root) {
            std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
            let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: valid C strings; a plain mount of the bpf filesystem.
            let rc = unsafe { libc::mount(c"bpf".as_ptr(), c.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
            if rc != 0 || !is_bpffs(root) {
                return Err(format!(
                    "no BPF filesystem at {} and mounting one failed ({})",
                    root.display(),
                    std::io::Error::last_os_error()
                ));
            }
        }
        remove_stale(root);
        let path = root.join(format!("gosight-{}-{}", pidns_ino(), std::process::id()));
        let ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| format!("shared maps: {e}"))?;
        *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(ebpf);
        Ok(PinDir { path })
    }
}

/// Runs `load` with the shared maps pinned under `dir` (when they are held), and
/// removes the pins afterwards. Loads are serialised.
pub fn while_pinned<T>(dir: &Path, load: impl FnOnce() -> T) -> T {
    let holder = HOLDER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ebpf) = holder.as_ref() else { return load() };
    let _ = std::fs::create_dir_all(dir);
    for name in crate::SHARED_MAPS {
        if let Some(m) = ebpf.map(name) {
            if let Err(e) = m.pin(dir.join(name)) {
                tracing::debug!("pinning {name} in {}: {e}", dir.display());
            }
        }
    }
    let out = load();
    let _ = std::fs::remove_dir_all(dir);
    out
}

/// Removes directories of gosight processes that are gone (left by versions that
/// kept their pins for their whole life).
fn remove_stale(root: &Path) {
    let Ok(dir) = std::fs::read_dir(root) else { return };
    let own_ns = pidns_ino();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("gosight-")) else { continue };
        let (ns, pid) = match rest.split_once('-') {
            Some((ns, pid)) => (ns.parse::<u64>().ok(), pid.parse::<u32>().ok()),
            None => (Some(own_ns), rest.parse::<u32>().ok()),
        };
        let (Some(ns), Some(pid)) = (ns, pid) else { continue };
        if ns == own_ns && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
