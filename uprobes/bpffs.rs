//! gosight's directory on a BPF filesystem, where maps shared between objects are
//! pinned (`SHARED_MAPS`). One directory per gosight process, removed when it ends;
//! directories left by gosight processes that no longer run are removed at start.

use std::path::{Path, PathBuf};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// A pin directory, removed on drop.
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

impl PinDir {
    /// Uses the bpffs at `root` (mounting one there if there is none and gosight may),
    /// and creates `gosight-<pid>` in it. Err is a one-line reason.
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
        let path = root.join(format!("gosight-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(PinDir { path })
    }
}

/// Removes directories of gosight processes that are gone.
fn remove_stale(root: &Path) {
    let Ok(dir) = std::fs::read_dir(root) else { return };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("gosight-")).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
