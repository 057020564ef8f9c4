//! The kernel socket probe (`uprobes/socket/`) against real connections.
//!
//! - `http_servers_ipv4_ipv6`: a Python `http.server` and the Go test server
//!   (`tests/go-apps/httpserver`), each on 127.0.0.1 and ::1, driven by curl with a
//!   POST of known size: both ends recorded with the right process, role, tuple
//!   (each end's local is the other's remote), family, byte counts (what curl
//!   reports it wrote and read, and the server's counts mirror them), times, RTT,
//!   and an OPEN record before each CLOSE.
//! - `burst_of_10000_connections`: 10,000 connect/send/recv/close as fast as a
//!   Python client goes, in a network namespace of their own (so the probe's
//!   counters are theirs alone): CLOSE records received + counted loss = 20,000
//!   connection ends exactly, byte counts of every one right; prints each
//!   program's run time.
//! - `ring_buffer_loss_is_counted_exactly`: the same with a 64 KiB ring buffer and
//!   a stalled reader: thousands of records lost, each one counted.
//! - `full_connection_map_is_counted`: 100 live connections, a map of 64: the rest
//!   counted as untracked.
//! - `half_closed_client_and_peek`: bytes read after the socket reached TCP CLOSE
//!   count; a MSG_PEEK does not.
//! - `failed_connect_is_flagged`: a refused connect is a CLOSE record with `failed`.
//! - `other_network_namespace_not_reported`: the client/server of an `ip netns`
//!   namespace is ignored by a probe scoped to the test's namespace (and counted as
//!   such), while the same run in the test's namespace is seen.
//! - `decoder_on_hand_made_records`: the public decoder on records laid out byte by
//!   byte as `struct conn_record` (probe.bpf.c) is.
//!
//! Needs root, BTF, python3, and for some tests curl, go and ip (iproute2);
//! otherwise prints `SKIPPED: <why>` (panics when CI=true). Run with
//! `--test-threads=1`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gosight_uprobes::socket::{
    self, ConnEvent, ConnEventReader, ConnKind, ConnRole, SocketCounters, SocketLimits, SocketProbe,
};

mod common;
use common::{require, runs};

fn go_bin() -> Option<&'static str> {
    ["go", "/usr/local/go/bin/go"].into_iter().find(|g| runs(g, "version"))
}

fn require_kernel() -> bool {
    // SAFETY: geteuid has no preconditions.
    require("root (BPF programs on kernel hooks)", unsafe { libc::geteuid() } == 0)
        && require("BTF at /sys/kernel/btf/vmlinux", Path::new("/sys/kernel/btf/vmlinux").exists())
        && require("python3 on PATH", runs("python3", "--version"))
}

fn require_netns() -> bool {
    require("ip (iproute2) on PATH", runs("ip", "-V"))
}

/// The probe with a reader task draining its ring buffer into `events`.
struct Recorder {
    probe: SocketProbe,
    events: Arc<Mutex<Vec<ConnEvent>>>,
    reader: Option<ConnEventReader>,
    rt: tokio::runtime::Runtime,
}

impl Recorder {
    fn start(netns_ino: u64) -> Recorder {
        let mut rec = Recorder::paused(netns_ino, SocketLimits::default());
        rec.resume();
        rec
    }

    /// The probe running, its records piling up unread until [`resume`].
    fn paused(netns_ino: u64, limits: SocketLimits) -> Recorder {
        let mut probe = SocketProbe::start_with(netns_ino, limits)
            .unwrap_or_else(|e| panic!("the socket probe did not start: {e}"));
        assert!(probe.counts_bytes(), "this kernel has sock_send_length/sock_recv_length");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let reader = {
            let _ctx = rt.enter();
            probe.take_events().expect("take_events")
        };
        Recorder { probe, events: Arc::new(Mutex::new(Vec::new())), reader: Some(reader), rt }
    }

    fn resume(&mut self) {
        let mut reader = self.reader.take().expect("reader already running");
        let sink = self.events.clone();
        self.rt.spawn(async move { while reader.next_batch(|ev| sink.lock().unwrap().push(ev)).await.is_ok() {} });
    }

    fn snapshot(&self) -> Vec<ConnEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `done` to hold on the events so far; the last
    /// snapshot either way.
    fn wait_for(&self, timeout: Duration, done: impl Fn(&[ConnEvent]) -> bool) -> Vec<ConnEvent> {
        let start = Instant::now();
        loop {
            let evs = self.snapshot();
            if done(&evs) || start.elapsed() > timeout {
                return evs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn counters(&self) -> SocketCounters {
        self.probe.counters()
    }
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("gosight-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns(name);
        let ok = ns.exec(&["ip", "link", "set", "lo", "up"]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip link set lo up in {} failed", ns.0);
        ns
    }

    fn exec(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).args(argv);
        cmd
    }

    fn ino(&self) -> u64 {
        socket::netns_ino_of(&Path::new("/run/netns").join(&self.0)).expect("netns inode")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// An HTTP/1.0 server from Python's `http.server`: POST echoes the body with 201.
/// Prints its port.
const PY_SERVER: &str = r#"
import http.server, socket, socketserver, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.TCPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    allow_reuse_address = True
server = Server((sys.argv[1], 0), Echo)
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
"#;

/// N connections, one after the other, from a client loop to a server thread of
/// the same process: the client sends REQ bytes and reads until EOF, the server
/// reads REQ bytes, answers RESP bytes and closes. Prints "<port> <ok>".
const PY_BURST: &str = r#"
import socket, sys, threading
n, REQ, RESP = int(sys.argv[1]), b"q" * 100, b"r" * 200
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(4096)
port = srv.getsockname()[1]
def serve():
    while True:
        c, _ = srv.accept()
        got = 0
        while got < len(REQ):
            b = c.recv(65536)
            if not b:
                break
            got += len(b)
        c.sendall(RESP)
        c.close()
threading.Thread(target=serve, daemon=True).start()
ok = 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(REQ)
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    s.close()
    ok += got == len(RESP)
print(port, ok, flush=True)
"#;

/// M connections open at once (client and server ends all live), one byte each
/// way, then closed. Prints "<port> <m>".
const PY_HOLD: &str = r#"
import socket, sys, threading
m = int(sys.argv[1])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(4096)
port = srv.getsockname()[1]
accepted = []
def serve():
    for _ in range(m):
        accepted.append(srv.accept()[0])
t = threading.Thread(target=serve)
t.start()
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(m)]
t.join()
for s in clients:
    s.sendall(b"x")
for c in accepted:
    assert c.recv(1) == b"x"
for s in clients:
    s.close()
for c in accepted:
    c.recv(1)
    c.close()
print(port, m, flush=True)
"#;

/// A half-closing client: sends REQ, shuts its sending side, waits until the
/// server has answered and closed (so the client's socket reaches TCP CLOSE with
/// the answer still unread), peeks, then reads the answer. Prints
/// "<port> <peeked> <read>".
const PY_HALF_CLOSE: &str = r#"
import socket, threading, time
REQ, RESP = b"h" * 300, b"k" * 5000
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()
    while c.recv(65536):
        pass
    c.sendall(RESP)
    c.close()
t = threading.Thread(target=serve)
t.start()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(REQ)
s.shutdown(socket.SHUT_WR)
t.join()
time.sleep(0.2)
peeked = len(s.recv(100, socket.MSG_PEEK))
got = 0
while True:
    b = s.recv(65536)
    if not b:
        break
    got += len(b)
s.close()
print(port, peeked, got, flush=True)
"#;

const BURST_REQ: u64 = 100;
const BURST_RESP: u64 = 200;

/// Starts a server command that prints a line containing its port; returns it
/// with the port.
fn start_server(mut cmd: Command) -> (Proc, u16) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("server output");
    let port = line.trim().rsplit([' ', ':']).next().and_then(|p| p.parse().ok());
    let port = port.unwrap_or_else(|| panic!("no port in the server's line {line:?}"));
    (Proc(child), port)
}

fn build_go_httpserver(go: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/go-apps/httpserver");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("socket-test/httpserver");
    let ok = Command::new(go)
        .current_dir(&src)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .env("GOFLAGS", "-mod=mod")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "go build of tests/go-apps/httpserver failed");
    out
}

/// What curl says it did: (pid, bytes written, bytes read, HTTP status).
fn curl_post(url: &str, body_len: usize) -> (u32, u64, u64, u32) {
    let body = "b".repeat(body_len);
    let child = Command::new("curl")
        .args(["-sS", "-g", "--http1.1", "-o", "/dev/null", "-X", "POST", "--data-binary", &body])
        .args(["-w", "%{size_request} %{size_header} %{size_download} %{http_code}", url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl");
    assert!(out.status.success(), "curl {url} failed");
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|s| s.parse().unwrap()).collect();
    (pid, v[0], v[1] + v[2], v[3] as u32)
}

fn closes(evs: &[ConnEvent]) -> impl Iterator<Item = &ConnEvent> {
    evs.iter().filter(|e| e.kind == ConnKind::Close)
}

#[test]
fn http_servers_ipv4_ipv6() {
    if !require_kernel()
        || !require("curl on PATH", runs("curl", "--version"))
        || !require("go on PATH", go_bin().is_some())
    {
        return;
    }
    let go_server = build_go_httpserver(go_bin().unwrap());
    let rec = Recorder::start(socket::own_netns_ino().unwrap());
    const BODY: usize = 1000;

    for (server, host) in [("python", "127.0.0.1"), ("python", "::1"), ("go", "127.0.0.1"), ("go", "::1")] {
        let cmd = match server {
            "python" => {
                let mut c = Command::new("python3");
                c.args(["-c", PY_SERVER, host]);
                c
            }
            _ => {
                let mut c = Command::new(&go_server);
                c.arg("-addr").arg(if host.contains(':') { format!("[{host}]:0") } else { format!("{host}:0") });
                c
            }
        };
        let (srv, port) = start_server(cmd);
        let srv_pid = srv.0.id();
        let srv_comm = std::fs::read_to_string(format!("/proc/{srv_pid}/comm")).unwrap().trim().to_string();
        let url = if host.contains(':') {
            format!("http://[{host}]:{port}/echo")
        } else {
            format!("http://{host}:{port}/echo")
        };
        let (curl_pid, wrote, read, status) = curl_post(&url, BODY);
        assert_eq!(status, 201, "{server} {host}: HTTP status");

        let is_client = |e: &ConnEvent| e.role == ConnRole::Client && e.pid == curl_pid && e.remote.port() == port;
        let is_server = |e: &ConnEvent| e.role == ConnRole::Server && e.pid == srv_pid && e.local.port() == port;
        let evs = rec.wait_for(Duration::from_secs(10), |evs| closes(evs).any(is_client) && closes(evs).any(is_server));
        drop(srv);
        let client: Vec<&ConnEvent> = closes(&evs).filter(|e| is_client(e)).collect();
        let srv_ev: Vec<&ConnEvent> = closes(&evs).filter(|e| is_server(e)).collect();
        assert_eq!(
            client.len(),
            1,
            "{server} {host}: curl's CLOSE records: {client:#?} (counters {:?})",
            rec.counters()
        );
        assert_eq!(
            srv_ev.len(),
            1,
            "{server} {host}: the server's CLOSE records: {srv_ev:#?} (counters {:?})",
            rec.counters()
        );
        let (c, s) = (client[0], srv_ev[0]);
        println!(
            "{server} on {host}:{port}: curl wrote {wrote} read {read}; client {} -> {} sent {} received {} srtt {} us; \
             server {} ({}) sent {} received {} srtt {} us",
            c.local, c.remote, c.bytes_sent, c.bytes_received, c.srtt_us, s.comm, s.pid, s.bytes_sent, s.bytes_received, s.srtt_us
        );

        let want_ip: std::net::IpAddr = host.parse().unwrap();
        assert_eq!(c.remote, SocketAddr::new(want_ip, port), "{server} {host}: client remote");
        assert_eq!(c.local, s.remote, "{server} {host}: client local == server remote");
        assert_eq!(c.remote, s.local, "{server} {host}: client remote == server local");
        assert_eq!(c.local.is_ipv6(), want_ip.is_ipv6(), "{server} {host}: family");
        assert_eq!(c.comm, "curl");
        assert_eq!(s.comm, srv_comm);
        assert_eq!((c.bytes_sent, c.bytes_received), (wrote, read), "{server} {host}: client bytes vs curl's counts");
        assert_eq!(
            (s.bytes_received, s.bytes_sent),
            (wrote, read),
            "{server} {host}: server bytes mirror the client's"
        );
        assert!(wrote > BODY as u64 && read > BODY as u64);
        for e in [c, s] {
            assert!(e.open_ns > 0 && e.open_ns <= e.close_ns, "{server} {host}: times {e:?}");
            assert!(e.srtt_us > 0, "{server} {host}: srtt {e:?}");
            assert!(!e.failed);
            let open = evs.iter().find(|o| o.kind == ConnKind::Open && o.id == e.id);
            let open = open.unwrap_or_else(|| panic!("{server} {host}: no OPEN record for {e:?}"));
            assert_eq!(
                (open.pid, open.role, open.local, open.remote, open.open_ns),
                (e.pid, e.role, e.local, e.remote, e.open_ns)
            );
            assert_eq!((open.bytes_sent, open.bytes_received, open.close_ns), (0, 0, 0));
        }
    }
    let n = rec.counters();
    println!("counters: {n:?}");
    assert_eq!(n.lost_records + n.lost_open + n.untracked, 0);
}

#[test]
fn failed_connect_is_flagged() {
    if !require_kernel() {
        return;
    }
    let rec = Recorder::start(socket::own_netns_ino().unwrap());
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let me = std::process::id();
    let evs = rec.wait_for(Duration::from_secs(5), |evs| closes(evs).any(|e| e.pid == me && e.remote.port() == port));
    let e = closes(&evs).find(|e| e.pid == me && e.remote.port() == port).expect("CLOSE record of the refused connect");
    println!("refused connect: {e:?}");
    assert!(e.failed && e.role == ConnRole::Client && e.bytes_sent == 0 && e.bytes_received == 0);
    assert!(rec.counters().failed_connects >= 1);
}

#[test]
fn burst_of_10000_connections() {
    if !require_kernel() || !require_netns() {
        return;
    }
    const N: u64 = 10_000;
    let ns = Netns::create("burst");
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let rec = Recorder::start(ns.ino());
    let start = Instant::now();
    let out = ns.exec(&["python3", "-c", PY_BURST, &N.to_string()]).output().expect("run the burst");
    assert!(out.status.success(), "burst client failed: {}", String::from_utf8_lossy(&out.stderr));
    let elapsed = start.elapsed();
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = line.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (port, ok) = (v[0] as u16, v[1]);
    assert_eq!(ok, N, "the client's own count of complete exchanges");

    // Everything in this namespace is the burst's: wait until every submitted
    // CLOSE record has been read and no connection is left open.
    let evs = rec.wait_for(Duration::from_secs(30), |evs| {
        let n = rec.counters();
        n.tracked == 2 * N && closes(evs).count() as u64 == n.closed && n.closed + n.close_records_missing() >= 2 * N
    });
    let n = rec.counters();
    let client: Vec<&ConnEvent> =
        closes(&evs).filter(|e| e.role == ConnRole::Client && e.remote.port() == port).collect();
    let server: Vec<&ConnEvent> =
        closes(&evs).filter(|e| e.role == ConnRole::Server && e.local.port() == port).collect();
    let recorded = (client.len() + server.len()) as u64;
    let lost = n.close_records_missing();
    println!(
        "burst: {N} connections in {:.2}s; CLOSE records: {} client + {} server = {recorded} of {} ends; \
         counted loss {lost} (lost {} untracked {}); OPEN records lost {}; counters {n:?}",
        elapsed.as_secs_f64(),
        client.len(),
        server.len(),
        2 * N,
        n.lost_records,
        n.untracked,
        n.lost_open
    );
    assert_eq!(recorded, closes(&evs).count() as u64, "records of other connections in the burst's namespace");
    assert_eq!(recorded + lost, 2 * N, "recorded + counted loss");
    let bad: Vec<&&ConnEvent> = client
        .iter()
        .filter(|e| (e.bytes_sent, e.bytes_received) != (BURST_REQ, BURST_RESP))
        .chain(server.iter().filter(|e| (e.bytes_sent, e.bytes_received) != (BURST_RESP, BURST_REQ)))
        .collect();
    assert!(bad.is_empty(), "{} records with wrong byte counts, e.g. {:?}", bad.len(), bad.first());
    let ids: std::collections::HashSet<u64> = client.iter().chain(&server).map(|e| e.id).collect();
    assert_eq!(ids.len() as u64, recorded, "connection ids are unique");
    assert_eq!(n.failed_connects, 0);
    assert_eq!(rec.probe.live_connections(), 0, "entries left in the connection map");
    for p in rec.probe.program_stats() {
        let avg = p.run_time_ns.checked_div(p.run_count).unwrap_or(0);
        println!("  {:<11} {:<20} {:>7} runs, {avg} ns each", p.program, p.tracepoint, p.run_count);
    }
}

/// A reader that falls behind a small ring buffer loses records, and the probe
/// counts each one: received + lost is exact.
#[test]
fn ring_buffer_loss_is_counted_exactly() {
    if !require_kernel() || !require_netns() {
        return;
    }
    const N: u64 = 2_000;
    let ns = Netns::create("loss");
    // 64 KiB: 546 records, for 4 * N (OPEN and CLOSE of both ends).
    let mut rec = Recorder::paused(ns.ino(), SocketLimits { ring_buffer_bytes: 64 << 10, ..SocketLimits::default() });
    let out = ns.exec(&["python3", "-c", PY_BURST, &N.to_string()]).output().expect("run the burst");
    assert!(out.status.success(), "burst client failed: {}", String::from_utf8_lossy(&out.stderr));
    rec.resume();
    let evs = rec.wait_for(Duration::from_secs(10), |evs| {
        let n = rec.counters();
        evs.len() as u64 == n.closed + (n.tracked - n.lost_open) && n.closed + n.lost_records == 2 * N
    });
    let n = rec.counters();
    let opens = evs.iter().filter(|e| e.kind == ConnKind::Open).count() as u64;
    let close_count = closes(&evs).count() as u64;
    println!(
        "stalled reader, 64 KiB ring: OPEN {opens} received + {} lost; CLOSE {close_count} received + {} lost; {n:?}",
        n.lost_open, n.lost_records
    );
    assert!(n.lost_records > 0 && n.lost_open > 0, "the ring buffer was meant to overflow");
    assert_eq!(n.tracked, 2 * N);
    assert_eq!(opens + n.lost_open, 2 * N, "OPEN received + lost");
    assert_eq!(close_count + n.lost_records + n.untracked, 2 * N, "CLOSE received + lost");
    assert_eq!(close_count, n.closed);
}

/// A full connection map leaves connections untracked, counted: every end is
/// either recorded or counted.
#[test]
fn full_connection_map_is_counted() {
    if !require_kernel() || !require_netns() {
        return;
    }
    const M: u64 = 100;
    const MAP: u32 = 64;
    let ns = Netns::create("full");
    let mut rec = Recorder::paused(ns.ino(), SocketLimits { max_connections: MAP, ..SocketLimits::default() });
    rec.resume();
    let out = ns.exec(&["python3", "-c", PY_HOLD, &M.to_string()]).output().expect("run the client");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let evs = rec.wait_for(Duration::from_secs(10), |evs| closes(evs).count() as u64 == MAP as u64);
    let n = rec.counters();
    let close_count = closes(&evs).count() as u64;
    println!("{M} live connections, map of {MAP}: {close_count} CLOSE records, {} untracked; {n:?}", n.untracked);
    assert_eq!(n.tracked, MAP as u64);
    assert_eq!(close_count, MAP as u64);
    assert_eq!(close_count + n.untracked + n.lost_records, 2 * M);
    assert_eq!(rec.probe.live_connections(), 0);
}

/// Bytes read after the socket reached TCP CLOSE still count (the record is
/// emitted at the socket's release), and a peek is not counted.
#[test]
fn half_closed_client_and_peek() {
    if !require_kernel() {
        return;
    }
    let rec = Recorder::start(socket::own_netns_ino().unwrap());
    let child = Command::new("python3").args(["-c", PY_HALF_CLOSE]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (port, peeked, read) = (v[0] as u16, v[1], v[2]);
    let mine = |e: &&ConnEvent| e.pid == pid && (e.local.port() == port || e.remote.port() == port);
    let evs = rec.wait_for(Duration::from_secs(5), |evs| closes(evs).filter(mine).count() == 2);
    let ends: Vec<&ConnEvent> = closes(&evs).filter(mine).collect();
    println!("half-closed client peeked {peeked} and read {read} after its socket closed: {ends:#?}");
    assert_eq!(ends.len(), 2);
    let client = ends.iter().find(|e| e.role == ConnRole::Client).unwrap();
    let server = ends.iter().find(|e| e.role == ConnRole::Server).unwrap();
    assert_eq!((peeked, read), (100, 5000));
    assert_eq!((client.bytes_sent, client.bytes_received), (300, 5000));
    assert_eq!((server.bytes_sent, server.bytes_received), (5000, 300));
}

#[test]
fn other_network_namespace_not_reported() {
    if !require_kernel() || !require_netns() {
        return;
    }
    const N: &str = "50";
    let rec = Recorder::start(socket::own_netns_ino().unwrap());
    let ns = Netns::create("test");

    // Inside the other namespace: nothing recorded, but seen and counted.
    let before = rec.counters().other_netns;
    let child = ns.exec(&["python3", "-c", PY_BURST, N]).stdout(Stdio::piped()).spawn().unwrap();
    let pid_outside = child.id(); // `ip netns exec` execs python in place: same pid
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "client/server in {} failed", ns.0);
    let port_outside: u16 = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap();
    // Control: the same script in the test's own namespace is recorded.
    let control = Command::new("python3").args(["-c", PY_BURST, N]).stdout(Stdio::piped()).spawn().unwrap();
    let pid_inside = control.id();
    assert!(control.wait_with_output().unwrap().status.success());

    let evs = rec.wait_for(Duration::from_secs(10), |evs| closes(evs).filter(|e| e.pid == pid_inside).count() >= 100);
    let from_outside = |e: &ConnEvent| {
        e.pid == pid_outside
            || (e.comm.starts_with("python") && [e.local.port(), e.remote.port()].contains(&port_outside))
    };
    let seen_outside = evs.iter().filter(|e| e.pid != pid_inside && from_outside(e)).count();
    let seen_inside = closes(&evs).filter(|e| e.pid == pid_inside).count();
    let ignored = rec.counters().other_netns - before;
    println!(
        "netns {}: records from it {seen_outside}, connection ends ignored {ignored}; control in own netns: {seen_inside} CLOSE records",
        ns.0
    );
    assert_eq!(seen_outside, 0, "records from the other namespace");
    assert!(ignored >= 100, "the other namespace's 100 connection ends were seen and ignored");
    assert_eq!(seen_inside, 100, "control run in the test's namespace");
}

#[test]
fn decoder_on_hand_made_records() {
    // struct conn_record, byte by byte (little-endian host order).
    fn record(family: u16, local: [u8; 16], remote: [u8; 16], kind: u8, role: u8) -> Vec<u8> {
        let mut b = vec![0u8; 112];
        b[0..8].copy_from_slice(&9u64.to_le_bytes()); // id
        b[8..16].copy_from_slice(&1_000u64.to_le_bytes()); // open_ns
        b[16..24].copy_from_slice(&2_000u64.to_le_bytes()); // close_ns
        b[24..32].copy_from_slice(&321u64.to_le_bytes()); // bytes_sent
        b[32..40].copy_from_slice(&654u64.to_le_bytes()); // bytes_received
        b[40..56].copy_from_slice(&local);
        b[56..72].copy_from_slice(&remote);
        b[72..76].copy_from_slice(&77u32.to_le_bytes()); // pid
        b[76..80].copy_from_slice(&42u32.to_le_bytes()); // srtt_us
        b[80..82].copy_from_slice(&51000u16.to_le_bytes()); // local_port
        b[82..84].copy_from_slice(&443u16.to_le_bytes()); // remote_port
        b[84..86].copy_from_slice(&family.to_le_bytes());
        b[86] = kind;
        b[87] = role;
        b[88] = 0; // failed
        b[92..98].copy_from_slice(b"python");
        b
    }
    let v4 = |a: [u8; 4]| {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    };
    let e = socket::decode(&record(2, v4([127, 0, 0, 1]), v4([10, 0, 0, 2]), 2, 2)).unwrap();
    assert_eq!((e.kind, e.role, e.id, e.pid, e.comm.as_str()), (ConnKind::Close, ConnRole::Server, 9, 77, "python"));
    assert_eq!((e.local, e.remote), ("127.0.0.1:51000".parse().unwrap(), "10.0.0.2:443".parse().unwrap()));
    assert_eq!(
        (e.open_ns, e.close_ns, e.bytes_sent, e.bytes_received, e.srtt_us, e.failed),
        (1000, 2000, 321, 654, 42, false)
    );

    let six: std::net::Ipv6Addr = "fd00::1:2".parse().unwrap();
    let e = socket::decode(&record(10, six.octets(), std::net::Ipv6Addr::LOCALHOST.octets(), 1, 1)).unwrap();
    assert_eq!((e.kind, e.role), (ConnKind::Open, ConnRole::Client));
    assert_eq!((e.local, e.remote), ("[fd00::1:2]:51000".parse().unwrap(), "[::1]:443".parse().unwrap()));

    let mapped: std::net::Ipv6Addr = "::ffff:10.9.8.7".parse().unwrap();
    let e = socket::decode(&record(10, mapped.octets(), six.octets(), 2, 1)).unwrap();
    assert_eq!(e.local, "10.9.8.7:51000".parse().unwrap(), "IPv4-mapped shown as IPv4");
    assert!(e.remote.is_ipv6());

    assert!(socket::decode(&record(2, [0; 16], [0; 16], 3, 1)).is_none(), "unknown kind");
    assert!(socket::decode(&record(2, [0; 16], [0; 16], 2, 1)[..100]).is_none(), "short record");
}
