//! The private directories the harnesses of real servers (databases.rs, kafka.rs,
//! redis.rs) run their servers in: `<tmp>/<prefix>[<kind>-]<owner pid>-<port>`,
//! with the server's pid in `server.pid`. Removing one, and reaping those of test
//! processes that died without dropping their server.

use std::path::Path;
use std::time::Duration;

/// Removes a server's directory; a killed server's last children may still be
/// writing for a moment. `who` names the harness in the one line a failure gives.
pub fn remove_dir(dir: &Path, who: &str) {
    for _ in 0..20 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{who}: could not remove {}", dir.display());
}

/// Kills the servers (whose command name is one of `comms`) of earlier test
/// processes that died without dropping them, and removes their directories
/// (those under the temporary directory whose names start with `prefix`).
pub fn reap(prefix: &str, comms: &[&str], who: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let mut parts = rest.rsplitn(3, '-');
        let (Some(port), Some(pid)) = (parts.next(), parts.next()) else { continue };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), port.parse::<u16>()) else { continue };
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its owner is alive (or it is ours)
        }
        let dir = e.path();
        if let Some(spid) =
            std::fs::read_to_string(dir.join("server.pid")).ok().and_then(|s| s.trim().parse::<i32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{spid}/comm")).unwrap_or_default();
            if comms.contains(&comm.trim()) {
                eprintln!("{who}: killing leftover {} (pid {spid}) of {}", comm.trim(), dir.display());
                // SAFETY: a server this harness started in an earlier, dead run.
                unsafe { libc::kill(spid, libc::SIGKILL) };
                for _ in 0..100 {
                    if !Path::new(&format!("/proc/{spid}")).exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        remove_dir(&dir, who);
    }
}
