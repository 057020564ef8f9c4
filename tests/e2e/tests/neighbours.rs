//! Neighbours are left alone: while gosight (default settings, so in-kernel
//! propagation is on) traces a Go chain A → B → C that keeps serving requests,
//! processes it does not trace see their sockets exactly as the kernel made them:
//! a Python client (edge-triggered epoll wakes, FIONREAD is right, a blocking recv
//! never gets EAGAIN, the bytes are right), a Java NIO client (Selector wakes,
//! `available()` is right, the bytes are right), and nginx as a reverse proxy in
//! front of a Python backend (no request slower than 3× the median measured before
//! gosight started). Only the traced processes' sockets are enrolled for
//! propagation: gosight's `enrolled=` total is the sum over its targets and stays
//! far below the neighbours' connection count.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gosight_e2e::collector::{require_collector, Collector};
use gosight_e2e::process::{App, Child};
use gosight_e2e::*;
use serde_json::Value;

const PY_CONNECTIONS: u64 = 1000;
const JAVA_CONNECTIONS: u64 = 500;
const NGINX_REQUESTS: usize = 40;
/// How long a request through nginx may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The size of the file fetched through nginx.
const PAYLOAD: usize = 256 * 1024;
/// A request through nginx with gosight may take 3× the baseline median plus this.
const NGINX_FLOOR: Duration = Duration::from_millis(20);
/// Sockets gosight may enrol in all (the chain's own, a handful).
const ENROLLED_MAX: u64 = 100;

fn found(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success())
}

fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "nginx"].iter().map(PathBuf::from).find(|p| found(&p.to_string_lossy(), "-v"))
}

/// Pids of gosight processes not started by this test: their sockops programs
/// would touch the neighbours' sockets too, before and after ours starts.
fn other_gosights() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "gosight"))
        .filter(|pid| {
            // Not a zombie (state Z): it holds no programs any more.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| st.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        })
        .collect()
}

/// Polls until something accepts connections at `addr`.
fn wait_listening(addr: &str, child: &Child) {
    for _ in 0..200 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} does not listen on {addr}: {}", child.name, child.output());
}

/// nginx (its own config, logs and temp paths in `dir`, not a daemon) proxying
/// to a Python http.server that serves `payload.bin`.
struct Nginx {
    child: Child,
    _backend: Child,
    addr: String,
    body: Vec<u8>,
}

impl Nginx {
    fn start(bin: &Path, dir: &Path) -> Nginx {
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        // Larger than nginx's upstream read buffer: the recv that fills it asks FIONREAD how much is left.
        let body: Vec<u8> = (0..PAYLOAD as u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(www.join("payload.bin"), &body).unwrap();
        let backend_port = free_port();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "http.server", &backend_port.to_string(), "--bind", "127.0.0.1", "--directory"]).arg(&www);
        let backend = Child::spawn("nginx-backend", cmd, dir);
        wait_listening(&format!("127.0.0.1:{backend_port}"), &backend);

        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nuser root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/nginx-access.log;\n  client_body_temp_path {d}/nginx-body;\n  \
             proxy_temp_path {d}/nginx-proxy;\n  fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  \
             scgi_temp_path {d}/nginx-scgi;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://127.0.0.1:{backend_port}; }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-p").arg(dir).arg("-e").arg(dir.join("nginx-error.log")).arg("-c").arg(&conf_path);
        let child = Child::spawn("nginx", cmd, dir);
        let addr = format!("127.0.0.1:{port}");
        wait_listening(&addr, &child);
        for _ in 0..3 {
            let _ = get_close(&addr, "/payload.bin", REQUEST_TIMEOUT); // warm-up
        }
        Nginx { child, _backend: backend, addr, body }
    }

    /// `n` sequential GETs of the file, each on a new connection (and a new one
    /// from nginx to the backend); returns the latencies of the good ones and a
    /// description of each bad one. Gives up after 3 bad ones.
    fn round(&self, n: usize) -> (Vec<Duration>, Vec<String>) {
        let (mut times, mut bad) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            match get_close(&self.addr, "/payload.bin", REQUEST_TIMEOUT) {
                Ok((200, body)) if body == self.body => times.push(t.elapsed()),
                Ok((status, body)) => bad.push(format!("request {i}: status {status}, {} body bytes", body.len())),
                Err(e) => bad.push(format!("request {i}: {e} after {:?}", t.elapsed())),
            }
            if bad.len() >= 3 {
                bad.push(format!("gave up after request {i}"));
                break;
            }
        }
        (times, bad)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.terminate(Duration::from_secs(5)); // the master stops its worker
    }
}

/// One `Connection: close` GET read to EOF: (status, body).
fn get_close(addr: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: neighbours\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("stalled: no byte for {timeout:?} after {} bytes of the answer", answer.len())
        }
        _ => format!("read ({} bytes so far): {e}", answer.len()),
    })?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, answer[split + 4..].to_vec()))
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn max(v: &[Duration]) -> Duration {
    v.iter().max().copied().unwrap_or_default()
}

/// What the background /hop client saw.
#[derive(Default)]
struct Hops {
    ok: u64,
    /// Answers where a hop got no well-formed traceparent.
    bad_traceparent: Vec<String>,
    errors: Vec<String>,
}

fn well_formed(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

/// One keep-alive GET /hop: the answer's JSON.
fn hop(conn: &mut BufReader<TcpStream>) -> Result<Value, String> {
    conn.get_mut().write_all(b"GET /hop HTTP/1.1\r\nHost: a\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut len = None;
    let mut status = String::new();
    conn.read_line(&mut status).map_err(|e| format!("read status: {e}"))?;
    if !status.contains(" 200 ") {
        return Err(format!("status line {status:?}"));
    }
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).map_err(|e| format!("read header: {e}"))?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; len.ok_or("no content-length")?];
    conn.read_exact(&mut body).map_err(|e| format!("read body: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("json: {e}"))
}

/// GET /hop to A on a keep-alive connection every 20 ms until `stop`.
fn hop_loop(addr: String, stop: Arc<AtomicBool>) -> Hops {
    let mut hops = Hops::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) && hops.errors.len() < 20 {
        if conn.is_none() {
            match TcpStream::connect(&addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    conn = Some(BufReader::new(s));
                }
                Err(e) => hops.errors.push(format!("connect: {e}")),
            }
        }
        if let Some(c) = conn.as_mut() {
            match hop(c) {
                Ok(v) => {
                    let b = v["downstream"]["traceparent"].as_str().unwrap_or_default();
                    let c = v["downstream"]["downstream"]["traceparent"].as_str().unwrap_or_default();
                    if well_formed(b) && well_formed(c) && b[3..35] == c[3..35] {
                        hops.ok += 1;
                    } else {
                        hops.bad_traceparent.push(format!("B got {b:?}, C got {c:?}"));
                    }
                }
                Err(e) => {
                    hops.errors.push(e);
                    conn = None;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    hops
}

/// Runs a neighbour to completion (killed after `limit`); returns its JSON line.
fn run_json(name: &str, cmd: Command, dir: &Path, limit: Duration) -> Value {
    let mut child = Child::spawn(name, cmd, dir);
    let deadline = Instant::now() + limit;
    while child.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.output();
    let line = out.lines().rev().find(|l| l.starts_with('{'));
    line.and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{name} printed no result within {limit:?} (killed):\n{out}"))
}

/// `key=<n>` of a log line (not `other_key=`), ANSI colours ignored.
fn field(line: &str, key: &str) -> Option<u64> {
    let mut plain = String::new();
    let mut esc = false;
    for ch in line.chars() {
        match (esc, ch) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => plain.push(c),
        }
    }
    plain.split_whitespace().find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.trim_matches('"').parse().ok())
}

/// Checks that a neighbour made at least `min` connections and that every count
/// in `zero` is 0; adds what is wrong to `failures`.
fn check_counts(name: &str, v: &Value, min: u64, zero: &[&str], failures: &mut Vec<String>) {
    let made = v["connections"].as_u64().unwrap_or(0);
    if made < min {
        failures.push(format!("{name}: only {made} connections of {min} in time: {v}"));
    }
    let bad: Vec<String> =
        zero.iter().filter(|k| v[**k].as_u64() != Some(0)).map(|k| format!("{k}={}", v[*k])).collect();
    if !bad.is_empty() {
        failures.push(format!("{name}: {} (of {made} connections): {v}", bad.join(" ")));
    }
}

#[test]
fn neighbours_of_traced_go_services_are_left_alone() {
    if !require_all() || !require("python3", found("python3", "-V")) {
        return;
    }
    let nginx = nginx_bin();
    if !require("nginx (scripts/install-deps.sh)", nginx.is_some())
        || !require("java and javac (JDK 17)", found("java", "-version") && found("javac", "-version"))
    {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else {
        return;
    };
    let started = Instant::now();
    let collector = Collector::start(&col);
    let dir = tmpdir("neighbours");
    let svc = dir.join("neighbours-chain");
    std::fs::copy(build_go_app("chain", None, false), &svc).unwrap();
    let classes = dir.join("java");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(repo_root().join("tests/e2e/java/Neighbours.java"))
        .status()
        .expect("javac");
    assert!(javac.success(), "javac Neighbours.java failed");
    let mut failures: Vec<String> = Vec::new();

    // nginx before gosight: the baseline.
    let proxy = Nginx::start(nginx.as_deref().unwrap(), &dir);
    let others = other_gosights();
    if !others.is_empty() {
        eprintln!("WARNING: other gosight processes run (pids {others:?}): they may touch the neighbours' sockets too");
    }
    let (base, base_bad) = proxy.round(NGINX_REQUESTS);
    assert!(
        base_bad.is_empty(),
        "nginx without gosight (other gosight processes: {others:?}): {base_bad:?}\n{}",
        proxy.child.output()
    );

    // gosight with its default settings, tracing the chain, which keeps serving.
    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe")
        .arg(&svc)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=debug");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));
    let mechanism = gs.wait_for_log("context propagation", Duration::from_secs(10));
    assert!(mechanism.contains("in-kernel"), "propagation is on by default: {mechanism}");
    let c = App::start_with(&svc, &dir, "C", &["-name".into(), "C".into()]);
    let b =
        App::start_with(&svc, &dir, "B", &["-name".into(), "B".into(), "-next".into(), format!("http://{}", c.addr)]);
    let a =
        App::start_with(&svc, &dir, "A", &["-name".into(), "A".into(), "-next".into(), format!("http://{}", b.addr)]);
    for app in [&a, &b, &c] {
        for probe in ["net_http_server", "net_http_client"] {
            gs.wait_for_line(&["probe attached", &format!("pid={}", app.child.pid()), probe], Duration::from_secs(10));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let hops = std::thread::spawn({
        let (addr, stop) = (a.addr.clone(), stop.clone());
        move || hop_loop(addr, stop)
    });
    std::thread::sleep(Duration::from_millis(300));

    // nginx with gosight.
    let (with, with_bad) = proxy.round(NGINX_REQUESTS);
    let limit = median(&base) * 3 + NGINX_FLOOR;
    println!(
        "nginx proxy, {NGINX_REQUESTS} requests each on a new connection: without gosight median {:?} max {:?}; \
         with gosight median {:?} max {:?} ({} ok; limit {limit:?})",
        median(&base),
        max(&base),
        median(&with),
        max(&with),
        with.len()
    );
    if !with_bad.is_empty() {
        failures.push(format!("nginx with gosight: failed requests: {with_bad:?}"));
    }
    let slow: Vec<String> = with.iter().filter(|t| **t > limit).map(|t| format!("{t:?}")).collect();
    if !slow.is_empty() {
        failures.push(format!(
            "nginx with gosight: {} of {} requests slower than {limit:?}: {slow:?}",
            slow.len(),
            with.len()
        ));
    }

    // Python: epoll, FIONREAD, blocking recv.
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/e2e/py/neighbours.py")).args([
        "--connections",
        &PY_CONNECTIONS.to_string(),
        "--deadline",
        "20",
    ]);
    let py = run_json("python-neighbour", cmd, &dir, Duration::from_secs(30));
    println!("python neighbour: {py}");
    let py_zero = ["missed_wakeups", "wrong_fionread", "eagain", "wrong_bytes", "stalls", "server_errors"];
    check_counts("python", &py, PY_CONNECTIONS, &py_zero, &mut failures);

    // Java NIO: Selector, available() (FIONREAD), bytes.
    let mut cmd = Command::new("java");
    cmd.arg("-cp").arg(&classes).args(["Neighbours", &JAVA_CONNECTIONS.to_string(), "15"]);
    let java = run_json("java-neighbour", cmd, &dir, Duration::from_secs(25));
    println!("java neighbour: {java}");
    let java_zero = ["missed_wakeups", "wrong_available", "wrong_bytes", "stalls", "errors", "server_errors"];
    check_counts("java", &java, JAVA_CONNECTIONS, &java_zero, &mut failures);

    // The chain kept getting its trace context all along.
    stop.store(true, Ordering::Relaxed);
    let hops = hops.join().expect("hop thread");
    println!("chain: {} /hop requests with well-formed traceparents at B and C", hops.ok);
    if hops.ok < 20 || !hops.bad_traceparent.is_empty() || !hops.errors.is_empty() {
        failures.push(format!(
            "chain: {} good /hop answers, bad traceparents {:?}, errors {:?}",
            hops.ok,
            &hops.bad_traceparent[..hops.bad_traceparent.len().min(5)],
            hops.errors
        ));
    }

    // Only the targets' sockets were enrolled.
    assert!(gs.is_running(), "gosight exited early:\n{}", gs.output());
    let code = gs.terminate(Duration::from_secs(20));
    let log = gs.output();
    assert!(!log.contains("panicked"), "gosight panicked:\n{log}");
    if code != Some(0) {
        failures.push(format!("gosight exit code {code:?} after SIGTERM"));
    }
    let totals = log.lines().find(|l| l.contains("context propagation totals")).unwrap_or_default();
    let per_target: Vec<&str> = log.lines().filter(|l| l.contains("context propagation for target")).collect();
    println!("{}", totals.trim());
    for l in &per_target {
        println!("{}", l.trim());
    }
    let neighbour_conns =
        py["connections"].as_u64().unwrap_or(0) + java["connections"].as_u64().unwrap_or(0) + 2 * with.len() as u64;
    let sum: u64 = per_target.iter().filter_map(|l| field(l, "enrolled")).sum();
    match field(totals, "enrolled") {
        None => failures.push(format!(
            "no `enrolled=` in the `context propagation totals` line ({} sockets by the older `sockets=` counter, \
             {neighbour_conns} neighbour connections): {totals:?}",
            field(totals, "sockets").map_or("?".into(), |n| n.to_string())
        )),
        Some(enrolled) => {
            if enrolled != sum {
                failures.push(format!(
                    "enrolled={enrolled} in the totals, but {sum} summed over {} targets",
                    per_target.len()
                ));
            }
            if enrolled >= ENROLLED_MAX || enrolled == 0 {
                failures.push(format!(
                    "enrolled={enrolled}: want 1..{ENROLLED_MAX} (the chain's sockets) while neighbours made {neighbour_conns} connections"
                ));
            }
        }
    }
    for app in [&a, &b, &c] {
        if !per_target.iter().any(|l| field(l, "pid") == Some(app.child.pid() as u64)) {
            failures.push(format!("no `context propagation for target` line for pid {}", app.child.pid()));
        }
    }
    println!("neighbours test took {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "gosight harmed its neighbours:\n  {}\ngosight log: {}",
        failures.join("\n  "),
        gs.log.display()
    );
}
