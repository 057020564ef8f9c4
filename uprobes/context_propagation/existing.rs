//! A target's connections from before gosight attached (a gosight restart, or a
//! sidecar that starts after the app): found in /proc, then enrolled by the
//! `enrol_existing` iter/tcp program with the same ownership rule as new ones.
//!
//! Only outgoing connections count (established, local port not a listening one),
//! and only idle ones join (the program checks nothing is unread or unacknowledged);
//! busy ones are counted. The iterator walks the sockets of the network namespace
//! it is created in, so it is created from a thread that entered the target's.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use aya::maps::HashMap as BpfHashMap;
use aya::programs::Iter;
use aya::Ebpf;

/// Enrols `pid`'s idle outgoing connections; returns how many could not be reached.
pub(super) fn enrol(ebpf: &mut Ebpf, pid: u32) -> u64 {
    let inodes = match outgoing_inodes(pid) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(pid, "existing connections not listed: {e}");
            return 0;
        }
    };
    if inodes.is_empty() {
        return 0;
    }
    if let Err(e) = set_inodes(ebpf, &inodes, Some(pid)) {
        tracing::warn!(pid, "existing connections not enrolled: {e}");
        return inodes.len() as u64;
    }
    let result = run_in_netns(ebpf, pid);
    // Whatever the iterator did not reach is left over: count and clear it.
    let left = set_inodes(ebpf, &inodes, None).unwrap_or(0);
    match result {
        Ok(()) => left,
        Err(e) => {
            tracing::warn!(pid, connections = inodes.len(), "existing connections not enrolled: {e}");
            left
        }
    }
}

/// Inserts (`Some(pid)`) or removes (`None`) the inodes; on removal returns how
/// many were still there.
fn set_inodes(ebpf: &mut Ebpf, inodes: &[u64], pid: Option<u32>) -> Result<u64, String> {
    let map = ebpf.map_mut("existing_inodes").ok_or("no existing_inodes map")?;
    let mut m: BpfHashMap<_, u64, u32> = BpfHashMap::try_from(map).map_err(|e| e.to_string())?;
    let mut left = 0;
    for ino in inodes {
        match pid {
            Some(p) => m.insert(*ino, p, 0).map_err(|e| e.to_string())?,
            None => {
                if m.remove(ino).is_ok() {
                    left += 1;
                }
            }
        }
    }
    Ok(left)
}

fn run_iter(ebpf: &mut Ebpf) -> std::io::Result<()> {
    let err = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let prog = ebpf.program_mut("enrol_existing").ok_or_else(|| err(&"no enrol_existing program"))?;
    let iter: &mut Iter = prog.try_into().map_err(|e| err(&e))?;
    let id = iter.attach().map_err(|e| err(&e))?;
    let link = iter.take_link(id).map_err(|e| err(&e))?;
    let mut file = link.into_file().map_err(|e| err(&e))?;
    let mut sink = Vec::new();
    file.read_to_end(&mut sink)?;
    Ok(())
}

/// Runs the iterator in `pid`'s network namespace (entered from a thread of its
/// own when it is not gosight's).
fn run_in_netns(ebpf: &mut Ebpf, pid: u32) -> std::io::Result<()> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino();
    let ours = std::fs::metadata("/proc/self/ns/net")?.ino();
    if theirs == ours {
        return run_iter(ebpf);
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with an open namespace fd.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            run_iter(ebpf)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("iterator thread panicked")))
    })
}

/// Socket inodes of `pid`'s established outgoing TCP connections.
fn outgoing_inodes(pid: u32) -> std::io::Result<Vec<u64>> {
    let mut fds = HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            if let Some(ino) =
                target.to_str().and_then(|t| t.strip_prefix("socket:[")).and_then(|t| t.strip_suffix(']'))
            {
                if let Ok(ino) = ino.parse::<u64>() {
                    fds.insert(ino);
                }
            }
        }
    }
    if fds.is_empty() {
        // A process found as it starts has no socket yet: the namespace's TCP
        // tables (thousands of rows on a busy host) need not be read.
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for f in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")) {
            rows.extend(parse_proc_net_tcp(&text));
        }
    }
    Ok(outgoing(&rows, &fds))
}

/// One row of /proc/net/tcp: local port, state, inode.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    local_port: u16,
    state: u8,
    inode: u64,
}

fn parse_proc_net_tcp(text: &str) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let inode = f.get(9)?.parse().ok()?;
            Some(Row { local_port, state, inode })
        })
        .collect()
}

const ESTABLISHED: u8 = 0x01;
const LISTEN: u8 = 0x0A;

fn outgoing(rows: &[Row], fds: &HashSet<u64>) -> Vec<u64> {
    let listening: HashSet<u16> = rows.iter().filter(|r| r.state == LISTEN).map(|r| r.local_port).collect();
    rows.iter()
        .filter(|r| {
            r.state == ESTABLISHED && r.inode != 0 && fds.contains(&r.inode) && !listening.contains(&r.local_port)
        })
        .map(|r| r.inode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_connections_are_established_and_not_on_a_listening_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 20 4 30 10 -1\n\
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0 20 4 30 10 -1\n\
   3: 0100007F:C351 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 103 1 0 20 4 30 10 -1\n\
   4: 0100007F:C352 0100007F:1F92 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1\n";
        let rows = parse_proc_net_tcp(text);
        assert_eq!(rows.len(), 5);
        let fds: HashSet<u64> = [100, 101, 102].into_iter().collect();
        // 101 is a server-side connection (local port 8080 listens), 103 is not
        // this process's, 104 is TIME_WAIT.
        assert_eq!(outgoing(&rows, &fds), vec![102]);
    }
}
