//! The in-kernel propagation programs (`uprobes/context_propagation/`) against real
//! connections, through the crate's public API (no sidecar): which sockets they take
//! and what the apps on them still see.
//!
//! - `bystander_sockets_are_never_enrolled`: a Python client that is not registered
//!   (while another pid is) makes 200 connections to a server that greets with 1000
//!   bytes and echoes: FIONREAD after the wake-up counts exactly what arrived, the
//!   bytes are right, nothing is enrolled and the socket map holds none of them.
//! - `registered_process_sockets_are_enrolled_and_released`: the same client,
//!   registered (TARGET_HTTP_CLIENT) before it connects: all 200 connections
//!   enrolled (their cookies in the socket map), FIONREAD and bytes right while
//!   enrolled; a first message that is not HTTP ("hello\n") releases every one at
//!   the next ACK, with the echo right; after the release FIONREAD and bytes are
//!   still right and the map holds none of them.
//! - `ownership_over_veth_between_namespaces`: a server in namespace B, a registered
//!   and an unregistered client side by side in namespace A, joined by a veth pair:
//!   the registered one's 100 connections are enrolled, the bystander's none,
//!   although the SYN-ACKs that establish them are processed in softirq on
//!   whichever task runs (ownership is decided at connect(), in the connecting
//!   task).
//!
//! The stream verdict (`add_stream_verdict`) is added before the checks, as the
//! sidecar's self-check chooses on the kernels whose sockmap FIONREAD counts only
//! psock-queued bytes.
//!
//! Needs root, BTF, a cgroup v2 mount, a BPF filesystem at /sys/fs/bpf, python3,
//! and for the veth test ip (iproute2); otherwise prints `SKIPPED: <why>` (panics
//! when CI=true). Run with `--test-threads=1`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, MapInfo, SockHash};
use gosight_uprobes::context_propagation::{Counters, KernelPropagation, Mode, TARGET_HTTP_CLIENT};

/// The tests share the kernel hooks and the process's fds: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

mod common;
use common::{require, runs};

/// The mount point of the cgroup v2 hierarchy (its root).
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split_whitespace().nth(4)?;
        post.starts_with("cgroup2 ").then(|| PathBuf::from(mount_point))
    })
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: valid C string and out-pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == 0xcafe4a11 }
}

fn require_kernel() -> bool {
    // SAFETY: geteuid has no preconditions.
    require("root (BPF programs on kernel hooks)", unsafe { libc::geteuid() } == 0)
        && require("BTF at /sys/kernel/btf/vmlinux", Path::new("/sys/kernel/btf/vmlinux").exists())
        && require("a cgroup v2 mount", cgroup2_root().is_some())
        && require("a BPF filesystem at /sys/fs/bpf", is_bpffs(Path::new("/sys/fs/bpf")))
        && require("python3 on PATH", runs("python3", "--version"))
}

fn require_netns() -> bool {
    require("ip (iproute2) on PATH", runs("ip", "-V"))
}

/// The programs loaded and attached to the cgroup v2 root, in [`Mode::Verdict`];
/// the pin directory is removed on drop.
struct Propagation {
    kp: KernelPropagation,
    pin_dir: PathBuf,
}

impl Propagation {
    fn start() -> Propagation {
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/gosight-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pin_dir);
        std::fs::create_dir_all(&pin_dir).unwrap_or_else(|e| panic!("{}: {e}", pin_dir.display()));
        let cgroup = cgroup2_root().expect("cgroup2 mount");
        let mut kp = match KernelPropagation::start(&pin_dir, &cgroup) {
            Ok(kp) => kp,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pin_dir);
                panic!("KernelPropagation::start({}, {}): {e}", pin_dir.display(), cgroup.display());
            }
        };
        kp.add_stream_verdict().expect("add_stream_verdict");
        assert_eq!(kp.mode(), Mode::Verdict);
        Propagation { kp, pin_dir }
    }
}

impl Drop for Propagation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// Cookies of the sockets in the propagation programs' socket map (`sockets`, the
/// only SOCKHASH this process holds), found through the process's own map fds.
fn enrolled_cookies() -> HashSet<u64> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir("/proc/self/fdinfo").expect("/proc/self/fdinfo").flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else { continue };
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u32>().ok());
        // 18: BPF_MAP_TYPE_SOCKHASH
        if let (Some(18), Some(id)) = (field("map_type:"), field("map_id:")) {
            if MapInfo::from_id(id).is_ok_and(|i| i.name_as_str() == Some("sockets")) && !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    assert_eq!(ids.len(), 1, "SOCKHASH maps named `sockets` held by this process: {ids:?}");
    let map = Map::from_map_data(MapData::from_id(ids[0]).expect("map by id")).expect("map");
    let hash: SockHash<_, u64> = SockHash::try_from(map).expect("a SOCKHASH");
    hash.keys().map(|k| k.expect("socket map key")).collect()
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Greets each connection with 1000 known bytes, then echoes what it receives.
/// Prints "listening on <port>".
const PY_SERVER: &str = r#"
import socket, socketserver, sys
GREETING = bytes((i * 31 + 7) % 256 for i in range(1000))
class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.sendall(GREETING)
        while True:
            b = s.recv(65536)
            if not b:
                return
            s.sendall(b)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024
server = Server((sys.argv[1], 0), Handler)
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
"#;

/// `<host> <port> <n> <hello>`: prints "ready <pid>", waits for a line on stdin,
/// then makes n connections (all kept open), one after the other. On each: waits
/// until it is readable, checks that FIONREAD counts the 1000-byte greeting
/// exactly and that recv returns it; with hello=1 then sends "hello\n" and checks
/// the echo the same way. Prints "result k=v ...", "cookies ..." (SO_COOKIE of
/// each socket) and "examples ..." (some wrong FIONREAD values). Then, per line on
/// stdin: "again" sends a line on every socket and checks its echo (prints
/// "again k=v ..."); "close" (or EOF) closes everything and exits.
const PY_CLIENT: &str = r#"
import fcntl, os, select, socket, struct, sys, termios
host, port, n, hello = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
GREETING = bytes((i * 31 + 7) % 256 for i in range(1000))
SO_COOKIE = 57
examples = []

def fionread(s):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]

def recv_exact(s, k):
    buf = b""
    while len(buf) < k:
        b = s.recv(k - len(buf))
        if not b:
            break
        buf += b
    return buf

def expect(s, want, stats, what):
    r, _, _ = select.select([s], [], [], 5)
    if not r:
        stats[what + "_timeout"] += 1
        return
    v = fionread(s)
    if v != len(want):
        stats[what + "_fionread_wrong"] += 1
        if len(examples) < 8:
            examples.append("%s:%d" % (what, v))
    if recv_exact(s, len(want)) != want:
        stats[what + "_bytes_wrong"] += 1

def report(tag, stats):
    print(tag, " ".join("%s=%d" % kv for kv in stats.items()), flush=True)

print("ready", os.getpid(), flush=True)
sys.stdin.readline()
keys = ["connected", "errors", "greeting_timeout", "greeting_fionread_wrong", "greeting_bytes_wrong"]
if hello:
    keys += ["echo_timeout", "echo_fionread_wrong", "echo_bytes_wrong"]
stats = dict.fromkeys(keys, 0)
socks, cookies = [], []
for i in range(n):
    try:
        s = socket.create_connection((host, port), timeout=5)
        socks.append(s)
        stats["connected"] += 1
        cookies.append(struct.unpack("Q", s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0])
        expect(s, GREETING, stats, "greeting")
        if hello:
            s.sendall(b"hello\n")
            expect(s, b"hello\n", stats, "echo")
    except Exception as e:
        stats["errors"] += 1
        print("error", repr(e), file=sys.stderr, flush=True)
report("result", stats)
print("cookies", " ".join(map(str, cookies)), flush=True)
print("examples", " ".join(examples), flush=True)
for line in sys.stdin:
    if line.strip() != "again":
        break
    stats = dict.fromkeys(["errors", "again_timeout", "again_fionread_wrong", "again_bytes_wrong"], 0)
    for i, s in enumerate(socks):
        try:
            msg = b"again %05d\n" % i
            s.sendall(msg)
            expect(s, msg, stats, "again")
        except Exception as e:
            stats["errors"] += 1
            print("error", repr(e), file=sys.stderr, flush=True)
    report("again", stats)
for s in socks:
    s.close()
"#;

/// Starts the server (in `netns` when given) on `host`; returns it with its port.
fn start_server(netns: Option<&Netns>, host: &str) -> (Proc, u16) {
    let mut cmd = python(netns);
    cmd.args(["-c", PY_SERVER, host]);
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("server output");
    let port = line.trim().rsplit(' ').next().and_then(|p| p.parse().ok());
    let port = port.unwrap_or_else(|| panic!("no port in the server's line {line:?}"));
    (Proc(child), port)
}

fn python(netns: Option<&Netns>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.0, "python3"]);
            c
        }
        None => Command::new("python3"),
    }
}

/// What a client reported after its connections.
#[derive(Debug, Default)]
struct Outcome {
    stats: HashMap<String, u64>,
    cookies: Vec<u64>,
    examples: String,
}

impl Outcome {
    fn get(&self, k: &str) -> u64 {
        self.stats.get(k).copied().unwrap_or(0)
    }

    /// Every count except `connected`: each one is a failure.
    fn failures(&self) -> u64 {
        self.stats.iter().filter(|(k, _)| k.as_str() != "connected").map(|(_, v)| v).sum()
    }
}

fn parse_stats(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// A running PY_CLIENT: its pid (reported by itself), stdin, and stdout lines.
struct Client {
    _proc: Proc,
    pid: u32,
    stdin: ChildStdin,
    lines: Receiver<String>,
    name: &'static str,
}

const LINE_TIMEOUT: Duration = Duration::from_secs(25);

impl Client {
    fn start(name: &'static str, netns: Option<&Netns>, host: &str, port: u16, n: u32, hello: bool) -> Client {
        let mut cmd = python(netns);
        cmd.args(["-c", PY_CLIENT, host, &port.to_string(), &n.to_string(), if hello { "1" } else { "0" }]);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start the client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let spawned = child.id();
        let mut c = Client { _proc: Proc(child), pid: 0, stdin, lines, name };
        let ready = c.line("ready");
        c.pid = ready.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("pid in the ready line");
        // `ip netns exec` execs python in place: the pid registered is python's own.
        assert_eq!(c.pid, spawned, "{name}: the client's own pid is the spawned process's");
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", c.pid)).unwrap_or_default();
        assert!(comm.trim().starts_with("python"), "{name}: pid {} is {comm:?}, not python", c.pid);
        c
    }

    /// The next line starting with `tag`.
    fn line(&self, tag: &str) -> String {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.split_whitespace().next() == Some(tag) => return l,
                Ok(l) => println!("{}: {l}", self.name),
                Err(RecvTimeoutError::Timeout) => panic!("{}: no `{tag}` line within {LINE_TIMEOUT:?}", self.name),
                Err(RecvTimeoutError::Disconnected) => panic!("{}: exited before its `{tag}` line", self.name),
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).expect("write to the client");
    }

    /// Lets it connect (after "go" was sent) and collects what it reports.
    fn outcome(&self) -> Outcome {
        let stats = parse_stats(&self.line("result"));
        let cookies =
            self.line("cookies").split_whitespace().skip(1).map(|c| c.parse().expect("cookie")).collect::<Vec<u64>>();
        let examples = self.line("examples").trim_start_matches("examples").trim().to_string();
        Outcome { stats, cookies, examples }
    }
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sleeper() -> Proc {
    Proc(Command::new("sleep").arg("60").spawn().expect("sleep"))
}

/// A target's counters that must stay zero whatever happens on plain sockets.
fn assert_no_anomalies(c: &Counters, who: &str) {
    let odd = [
        ("existing_busy", c.existing_busy()),
        ("kept_http1", c.kept_http1()),
        ("kept_h2", c.kept_h2()),
        ("tls", c.tls()),
        ("fastopen", c.fastopen()),
        ("inserted", c.inserted()),
        ("held_by_other", c.held_by_other()),
        ("insert_failed", c.insert_failed()),
        ("add_failed", c.add_failed()),
    ];
    let odd: Vec<_> = odd.iter().filter(|(_, v)| *v != 0).collect();
    assert!(odd.is_empty(), "{who}: unexpected counters {odd:?} ({})", c.fields());
}

#[test]
fn bystander_sockets_are_never_enrolled() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_kernel() {
        return;
    }
    const N: u32 = 200;
    let start = Instant::now();
    let mut p = Propagation::start();
    // Some other process is a target, so the targets map is not empty.
    let other = sleeper();
    p.kp.register(other.0.id(), TARGET_HTTP_CLIENT).expect("register");

    let (_server, port) = start_server(None, "127.0.0.1");
    let mut client = Client::start("bystander", None, "127.0.0.1", port, N, true);
    client.send("go");
    let out = client.outcome();
    let in_map = enrolled_cookies();
    let mine_in_map = out.cookies.iter().filter(|c| in_map.contains(c)).count();
    client.send("close");
    let totals = p.kp.totals();
    println!(
        "bystander pid {}: {} connections, client stats {:?} (wrong FIONREAD e.g. [{}]); its sockets in the map: {mine_in_map}; \
         totals: {}; {:.1}s",
        client.pid,
        out.get("connected"),
        out.stats,
        out.examples,
        totals.fields(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(out.get("connected"), N as u64, "connections made");
    assert_eq!(out.cookies.len(), N as usize);
    assert_eq!(out.failures(), 0, "the bystander's checks: {:?} (FIONREAD seen: {})", out.stats, out.examples);
    assert_eq!(mine_in_map, 0, "the bystander's sockets in the socket map");
    assert_eq!(totals.enrolled(), 0, "nothing enrolled: {}", totals.fields());
    assert_eq!(totals, Counters::default(), "nothing counted at all: {}", totals.fields());
    assert!(in_map.is_empty(), "socket map entries: {in_map:?}");
}

#[test]
fn registered_process_sockets_are_enrolled_and_released() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_kernel() {
        return;
    }
    const N: u32 = 200;
    let start = Instant::now();
    let mut p = Propagation::start();
    let (_server, port) = start_server(None, "127.0.0.1");
    let mut client = Client::start("target", None, "127.0.0.1", port, N, true);
    let existing = p.kp.register(client.pid, TARGET_HTTP_CLIENT).expect("register");
    assert_eq!((existing.enrolled, existing.busy, existing.unreachable), (0, 0, 0), "no connections before go");
    client.send("go");
    let out = client.outcome();
    let after_hello = p.kp.target_counters(client.pid);

    // Released at the next ACK after the "hello": wait, without sending anything more.
    let released_wait = Instant::now();
    let all_released = wait_until(Duration::from_secs(5), || p.kp.target_counters(client.pid).released() >= N as u64);
    let released_after = released_wait.elapsed();
    let c = p.kp.target_counters(client.pid);
    let in_map = enrolled_cookies();
    let mine_in_map = out.cookies.iter().filter(|k| in_map.contains(k)).count();

    // After the release: the sockets behave as any other.
    client.send("again");
    let again = parse_stats(&client.line("again"));
    client.send("close");
    let totals = p.kp.totals();
    println!(
        "target pid {}: {} connections, client stats {:?} (wrong FIONREAD e.g. [{}]); after the echoes: enrolled {} released {}; \
         all released {all_released} after {:.0} ms more; then: {}; its sockets still in the map: {mine_in_map}; \
         after the release: {again:?}; totals {}; {:.1}s",
        client.pid,
        out.get("connected"),
        out.stats,
        out.examples,
        after_hello.enrolled(),
        after_hello.released(),
        released_after.as_secs_f64() * 1000.0,
        c.fields(),
        totals.fields(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(out.get("connected"), N as u64, "connections made");
    assert_eq!(
        out.failures(),
        0,
        "the target's checks while enrolled: {:?} (FIONREAD seen: {})",
        out.stats,
        out.examples
    );
    assert_eq!(c.enrolled(), N as u64, "enrolled: {}", c.fields());
    assert_eq!(c.released(), N as u64, "released at the next ACK, within 5 s: {}", c.fields());
    assert_eq!(c.not_request(), 0);
    assert_no_anomalies(&c, "target");
    assert_eq!(mine_in_map, 0, "the target's sockets left in the map after their release");
    assert_eq!(again.values().sum::<u64>(), 0, "the target's checks after the release: {again:?}");
    assert_eq!(totals, p.kp.sum_over_targets(), "totals are the target's");
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("gosight-prop{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> <args>`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip").args(["-n", &self.0]).args(args).status().is_ok_and(|s| s.success());
        assert!(ok, "ip -n {} {} failed", self.0, args.join(" "));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn ownership_over_veth_between_namespaces() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_kernel() || !require_netns() {
        return;
    }
    const N: u32 = 100;
    let start = Instant::now();
    // B is created first so that it is deleted last (drops run in reverse).
    let b = Netns::create("b");
    let a = Netns::create("a");
    let tag = std::process::id() % 100_000;
    let (va, vb) = (format!("gpa{tag}"), format!("gpb{tag}"));
    a.ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", &b.0]);
    a.ip(&["addr", "add", "10.213.0.1/24", "dev", &va]);
    b.ip(&["addr", "add", "10.213.0.2/24", "dev", &vb]);
    a.ip(&["link", "set", &va, "up"]);
    b.ip(&["link", "set", &vb, "up"]);

    let mut p = Propagation::start();
    let (_server, port) = start_server(Some(&b), "10.213.0.2");
    let mut target = Client::start("target", Some(&a), "10.213.0.2", port, N, false);
    let mut bystander = Client::start("bystander", Some(&a), "10.213.0.2", port, N, false);
    p.kp.register(target.pid, TARGET_HTTP_CLIENT).expect("register");
    // Both connect at once, so that each one's SYN-ACKs may be processed while
    // the other runs.
    target.send("go");
    bystander.send("go");
    let t = target.outcome();
    let by = bystander.outcome();
    let c = p.kp.target_counters(target.pid);
    let totals = p.kp.totals();
    let in_map = enrolled_cookies();
    let target_in_map = t.cookies.iter().filter(|k| in_map.contains(k)).count();
    let bystander_in_map = by.cookies.iter().filter(|k| in_map.contains(k)).count();
    target.send("close");
    bystander.send("close");
    println!(
        "veth {va} ({}) -> {vb} ({}): target pid {}: {} connections {:?} (wrong FIONREAD e.g. [{}]), in the map {target_in_map}; \
         bystander pid {}: {} connections {:?} (wrong FIONREAD e.g. [{}]), in the map {bystander_in_map}; \
         target counters: {}; totals enrolled {}; {:.1}s",
        a.0,
        b.0,
        target.pid,
        t.get("connected"),
        t.stats,
        t.examples,
        bystander.pid,
        by.get("connected"),
        by.stats,
        by.examples,
        c.fields(),
        totals.enrolled(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!((t.get("connected"), by.get("connected")), (N as u64, N as u64), "connections made");
    assert_eq!(t.failures(), 0, "the target's checks: {:?} (FIONREAD seen: {})", t.stats, t.examples);
    assert_eq!(by.failures(), 0, "the bystander's checks: {:?} (FIONREAD seen: {})", by.stats, by.examples);
    assert_eq!(c.enrolled(), N as u64, "the target's connections enrolled: {}", c.fields());
    assert_no_anomalies(&c, "target");
    assert_eq!(totals.enrolled(), N as u64, "enrolled in all (the bystander's count here): {}", totals.fields());
    assert_eq!(target_in_map, N as usize, "the target's sockets in the socket map");
    assert_eq!(bystander_in_map, 0, "the bystander's sockets in the socket map");
    assert_eq!(in_map.len(), N as usize, "socket map entries");
}

/// Connections a process had before it was registered: the idle ones are enrolled
/// by the iterator, and released again after a first message that is not HTTP
/// (their RTT callback is switched on with TCP_BPF_SOCK_OPS_CB_FLAGS), with
/// FIONREAD and bytes right before and after.
#[test]
fn existing_connections_are_enrolled_and_released() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require_kernel() {
        return;
    }
    const N: u32 = 50;
    let mut p = Propagation::start();
    let (_server, port) = start_server(None, "127.0.0.1");
    let mut client = Client::start("existing", None, "127.0.0.1", port, N, false);
    client.send("go");
    let out = client.outcome();
    assert_eq!(out.get("connected"), N as u64, "connections made");
    assert_eq!(out.failures(), 0, "before registration: {:?}", out.stats);
    let existing = p.kp.register(client.pid, TARGET_HTTP_CLIENT).expect("register");
    let in_map = enrolled_cookies();
    let mine_in_map = out.cookies.iter().filter(|k| in_map.contains(k)).count();
    // A first message that is not HTTP: each is released at the next ACK.
    client.send("again");
    let first = parse_stats(&client.line("again"));
    let all_released = wait_until(Duration::from_secs(5), || p.kp.target_counters(client.pid).released() >= N as u64);
    let c = p.kp.target_counters(client.pid);
    let in_map = enrolled_cookies();
    let left_in_map = out.cookies.iter().filter(|k| in_map.contains(k)).count();
    client.send("again");
    let second = parse_stats(&client.line("again"));
    client.send("close");
    println!(
        "existing: register {existing:?}; in the map after registration {mine_in_map}; first messages {first:?}; \
         all released {all_released}: {}; left in the map {left_in_map}; after the release {second:?}",
        c.fields()
    );
    assert_eq!((existing.enrolled, existing.busy, existing.unreachable), (N as u64, 0, 0), "all idle, all enrolled");
    assert_eq!(mine_in_map, N as usize, "the existing connections are in the map");
    assert_eq!(first.values().sum::<u64>(), 0, "the first messages while enrolled: {first:?}");
    assert_eq!(c.released(), N as u64, "released after a non-HTTP first message: {}", c.fields());
    assert_eq!(left_in_map, 0, "none left in the map");
    assert_eq!(second.values().sum::<u64>(), 0, "after the release: {second:?}");
}
