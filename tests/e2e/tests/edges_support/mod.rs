//! Helpers of `propagation_edges.rs`: starting gosight and the chain apps, reading
//! gosight's key=value log lines, W3C traceparent checks, a child cgroup v2.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gosight_e2e::collector::Collector;
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const SERVER: i64 = 2;
pub const CLIENT: i64 = 3;
pub const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// `gosight --target-exe <target>` exporting to `collector` (or nothing), with
/// `env` on top. GOSIGHT_PROPAGATION is left to the caller's environment, so
/// `GOSIGHT_PROPAGATION=off cargo test ...` checks the harness alone.
/// With `cg`, gosight starts inside that cgroup v2 directory.
pub fn gosight_cmd(cg: Option<&Path>, target: &Path, collector: Option<&Collector>, env: &[(&str, &str)]) -> Command {
    let mut cmd = match cg {
        Some(cg) => in_cgroup(cg, &gosight_bin()),
        None => Command::new(gosight_bin()),
    };
    cmd.arg("--target-exe").arg(target).env("OTEL_BSP_SCHEDULE_DELAY", "100").env("RUST_LOG", "gosight=info");
    match collector {
        Some(c) => cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &c.http_endpoint),
        None => cmd.env("OTEL_TRACES_EXPORTER", "none"),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Spawns a gosight command and waits for it to start.
pub fn spawn_gosight(cmd: Command, dir: &Path, name: &str) -> Child {
    let gs = Child::spawn(name, cmd, dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));
    gs
}

/// Waits up to `timeout` for `child` to exit; its status (panics on a timeout).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.child.try_wait() {
            return st;
        }
        assert!(Instant::now() < deadline, "{} still runs after {timeout:?}:\n{}", child.name, child.output());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The integer value of `key=` in a tracing fmt line (`key` not part of a longer
/// name: `enrolled` does not match `existing_enrolled=`).
pub fn field(line: &str, key: &str) -> Option<i64> {
    let pat = format!("{key}=");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let at = from + i;
        let before = line[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            let digits: String = line[at + pat.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
            return digits.parse().ok();
        }
        from = at + pat.len();
    }
    None
}

/// The first line of `child`'s output for which `pred` holds, waiting up to
/// `timeout`; None if there is none by then.
pub fn try_line(child: &Child, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = child.output().lines().find(|l| pred(l)) {
            return Some(l.to_string());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A line with `needle` and exactly `pid=<pid>`.
pub fn pid_line(child: &Child, needle: &str, pid: u32, timeout: Duration) -> Option<String> {
    try_line(child, timeout, |l| l.contains(needle) && field(l, "pid") == Some(pid as i64))
}

/// Waits until gosight says every probe in `probes` is attached to `pid`.
pub fn wait_attached(gs: &Child, pid: u32, probes: &[&str]) {
    for probe in probes {
        let line = try_line(gs, Duration::from_secs(15), |l| {
            l.contains("probe attached") && l.contains(probe) && field(l, "pid") == Some(pid as i64)
        });
        assert!(line.is_some(), "{}: {probe} not attached to pid {pid}:\n{}", gs.name, gs.output());
    }
}

pub const HTTP_PROBES: &[&str] = &["net_http_server", "net_http_client"];

/// `context propagation: target registered` for `pid` (None: not logged in 10 s).
pub fn registered(gs: &Child, pid: u32) -> Option<String> {
    pid_line(gs, "context propagation: target registered", pid, Duration::from_secs(10))
}

/// The per-target counters line for `pid` (logged when it exits or at SIGTERM).
pub fn target_counters(gs: &Child, pid: u32) -> Option<String> {
    pid_line(gs, "context propagation for target", pid, Duration::from_secs(3))
}

/// The totals line logged at shutdown.
pub fn totals(gs: &Child) -> Option<String> {
    gs.output().lines().find(|l| l.contains("context propagation totals")).map(str::to_string)
}

/// W3C trace-context level 1, version 00: lowercase hex, non-zero ids.
pub fn valid_traceparent(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    let hex = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    s.len() == 55
        && p.len() == 4
        && p[0] == "00"
        && hex(p[1], 32)
        && hex(p[2], 16)
        && hex(p[3], 2)
        && p[1].bytes().any(|b| b != b'0')
        && p[2].bytes().any(|b| b != b'0')
}

/// Trace id and span id of a traceparent.
pub fn ids(tp: &str) -> (&str, &str) {
    (&tp[3..35], &tp[36..52])
}

/// Starts one chain service (`-name`, `-next http://<next>`).
pub fn start_app(exe: &Path, dir: &Path, name: &str, next: Option<&str>) -> App {
    let mut args = vec!["-name".to_string(), name.to_string()];
    if let Some(n) = next {
        args.push("-next".into());
        args.push(format!("http://{n}"));
    }
    App::start_with(exe, dir, name, &args)
}

/// Like [`start_app`], but the process starts inside cgroup v2 directory `cg`.
pub fn start_app_in(cg: &Path, exe: &Path, dir: &Path, name: &str, next: Option<&str>) -> App {
    let mut cmd = in_cgroup(cg, exe);
    cmd.args(["-addr", "127.0.0.1:0", "-name", name]);
    if let Some(n) = next {
        cmd.arg("-next").arg(format!("http://{n}"));
    }
    let child = Child::spawn(name, cmd, dir);
    let line = child.wait_for_log("listening on", Duration::from_secs(20));
    let addr = line.rsplit(' ').next().unwrap().trim().to_string();
    App { child, addr, exe: exe.to_path_buf() }
}

/// The chain's binary built with the machine's Go, copied to `<dir>/chain-svc`
/// (gosight's `--target-exe`).
pub fn chain_exe(dir: &Path) -> PathBuf {
    let exe = build_go_app("chain", None, false);
    let svc = dir.join("chain-svc");
    std::fs::copy(&exe, &svc).unwrap();
    svc
}

/// A → B → C, started in that order from the leaf up.
pub fn start_chain(svc: &Path, dir: &Path, cg: Option<&Path>) -> (App, App, App) {
    let start = |name: &str, next: Option<&str>| match cg {
        Some(cg) => start_app_in(cg, svc, dir, name, next),
        None => start_app(svc, dir, name, next),
    };
    let c = start("C", None);
    let b = start("B", Some(&c.addr));
    let a = start("A", Some(&b.addr));
    (a, b, c)
}

/// One request on `conn` that must answer 200 with JSON.
pub fn json_on(conn: &mut HttpConn, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    let x = conn.request(method, path, headers, body);
    assert_eq!(x.status, 200, "{method} {path}: {}", String::from_utf8_lossy(&x.body));
    serde_json::from_slice(&x.body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&x.body)))
}

/// GET on a fresh connection.
pub fn get_json(addr: &str, path: &str) -> Value {
    json_on(&mut HttpConn::connect(addr), "GET", path, &[], b"")
}

/// A chain service's `/stats` dial count.
pub fn dials(addr: &str) -> i64 {
    get_json(addr, "/stats")["dials"].as_i64().expect("dials")
}

/// The strings of a JSON array (a /leaf-echo answer or /leaf-body's list).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}")).iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A small xorshift generator: random bodies without another dependency.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        Rng(gosight_e2e::process::wall_ns() as u64 | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A command that moves itself into cgroup `cg` and then execs `exe` (same pid).
pub fn in_cgroup(cg: &Path, exe: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#).arg(cg).arg(exe);
    cmd
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid host), from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount = pre.split_whitespace().nth(4)?;
        (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
    })
}

/// A child cgroup v2 directory, removed on drop (its processes moved back to the
/// mount's root first).
pub struct Cgroup {
    pub path: PathBuf,
    root: PathBuf,
}

impl Cgroup {
    pub fn create(tag: &str) -> Option<Cgroup> {
        let root = cgroup2_mount()?;
        let path = root.join(format!("gosight-e2e-{tag}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir(&path).ok()?;
        Some(Cgroup { path, root })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.path.display());
    }
}

/// The names under `dir` starting with `gosight-` (gosight's pin directories).
pub fn pin_dirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gosight-"))
        .collect();
    v.sort();
    v
}
