//! gosight's lifecycle against real processes: targets that start later, restart
//! and exit; several targets at once; targets it cannot trace; a collector that is
//! down; the sampler. Every test runs the real binary with real uprobes.

use std::process::Command;
use std::time::{Duration, Instant};

use gosight_e2e::collector::{require_collector, Collector};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;

fn gosight(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(gosight_bin());
    cmd.args(args).env("RUST_LOG", "gosight=debug").env_remove("OTEL_SERVICE_NAME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Child::spawn("gosight", cmd, dir);
    child.wait_for_log("gosight starting", Duration::from_secs(30));
    // Start-up (BPF verification, the propagation self-check) is over: what the
    // tests time from here is how fast a running gosight reacts.
    child.wait_for_log("watching for targets", Duration::from_secs(30));
    child
}

/// The value of `key=N` in a log line.
fn field(line: &str, key: &str) -> u64 {
    let pat = format!("{key}=");
    let i = line.find(&pat).unwrap_or_else(|| panic!("no {key} in {line}")) + pat.len();
    line[i..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn targets_are_picked_up_and_released_within_a_second() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_go_app("httpserver", None, false);
    let dir = tmpdir("watch");
    let watched = dir.join("svc-watched");
    std::fs::copy(&exe, &watched).unwrap();
    let collector = Collector::start(&col_bin);
    let pattern = dir.join("*-watched");
    let gs = gosight(
        &dir,
        &["--target-exe", pattern.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );

    // Two targets started after gosight, handled at once.
    let mut a = App::start(&watched, &dir, "a");
    let t0 = Instant::now();
    let b = App::start(&watched, &dir, "b");
    for app in [&a, &b] {
        gs.wait_for_line(&["probe attached", &format!("pid={}", app.child.pid())], Duration::from_secs(5));
    }
    let picked_up = t0.elapsed();
    assert!(picked_up < Duration::from_secs(1), "targets picked up after {picked_up:?}");

    HttpConn::connect(&a.addr).request("GET", "/users/a", &[], b"");
    HttpConn::connect(&b.addr).request("GET", "/users/b", &[], b"");

    // a exits; it is released within a second.
    let a_pid = a.child.pid();
    a.child.child.kill().unwrap();
    a.child.child.wait().unwrap();
    let t1 = Instant::now();
    gs.wait_for_line(&["target exited", &format!("pid={a_pid}")], Duration::from_secs(5));
    assert!(t1.elapsed() < Duration::from_secs(1), "exit noticed after {:?}", t1.elapsed());

    // ... and restarts: a new process, a new target.
    let a2 = App::start(&watched, &dir, "a2");
    gs.wait_for_line(&["probe attached", &format!("pid={}", a2.child.pid())], Duration::from_secs(5));
    HttpConn::connect(&a2.addr).request("GET", "/users/a2", &[], b"");

    // A shell wrapper that execs the service later keeps its pid: seen first as a
    // non-matching shell, it must be picked up once it has become the service.
    let mut wrapper = Command::new("sh");
    wrapper.arg("-c").arg(format!("sleep 0.6; exec {} -addr 127.0.0.1:0", watched.display()));
    let c = Child::spawn("c", wrapper, &dir);
    let line = c.wait_for_log("listening on", Duration::from_secs(10));
    let c_addr = line.rsplit(' ').next().unwrap().trim().to_string();
    gs.wait_for_line(&["probe attached", &format!("pid={}", c.pid())], Duration::from_secs(5));
    HttpConn::connect(&c_addr).request("GET", "/users/c", &[], b"");

    let want = [(a_pid, "/users/a"), (b.child.pid(), "/users/b"), (a2.child.pid(), "/users/a2"), (c.pid(), "/users/c")];
    let spans = collector.wait_for(Duration::from_secs(15), |sp| sp.len() >= want.len());
    for (pid, path) in want {
        let n = spans
            .iter()
            .filter(|s| s.resource_int("process.pid") == Some(pid as i64) && s.attr_str("url.path") == Some(path))
            .count();
        assert_eq!(n, 1, "span for {path} from pid {pid}: {spans:#?}");
    }
    assert_eq!(spans.len(), want.len(), "{spans:#?}");
    println!("picked up 2 targets in {picked_up:?}; exit noticed, restart traced");
}

#[test]
fn untraceable_targets_get_one_line_and_the_rest_keeps_running() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let dir = tmpdir("untraceable");
    let http_exe = build_go_app("httpserver", None, false);
    let nohttp_exe = build_go_app("nohttp", None, false);
    let app = App::start(&http_exe, &dir, "app");
    let nohttp = {
        let c = Child::spawn("nohttp", Command::new(&nohttp_exe), &dir);
        c.wait_for_log("ready", Duration::from_secs(10));
        c
    };
    let mut sleep_cmd = Command::new("sleep");
    sleep_cmd.arg("60");
    let not_go = Child::spawn("sleep", sleep_cmd, &dir);

    let pids = format!("{},{},{}", app.child.pid(), nohttp.pid(), not_go.pid());
    let mut gs =
        gosight(&dir, &["--pid", &pids], &[("OTEL_TRACES_EXPORTER", "console"), ("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let not_go_line = gs.wait_for_line(&["not a Go binary", &format!("pid={}", not_go.pid())], Duration::from_secs(10));
    let stand_down = gs.wait_for_line(
        &["stands down", "net/http.serverHandler.ServeHTTP", &format!("pid={}", nohttp.pid())],
        Duration::from_secs(10),
    );
    gs.wait_for_line(&["probe attached", &format!("pid={}", app.child.pid())], Duration::from_secs(10));

    let x = HttpConn::connect(&app.addr).request("GET", "/users/7", &[], b"");
    assert_eq!(x.status, 200);
    gs.wait_for_line(&["url.path=\"/users/7\""], Duration::from_secs(10));
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let log = gs.output();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(log.matches("not a Go binary").count(), 1, "one line for the non-Go target:\n{log}");
    println!("{not_go_line}\n{stand_down}");
}

#[test]
fn collector_down_drops_are_counted_and_memory_stays_flat() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let dir = tmpdir("down");
    let exe = build_go_app("httpserver", None, false);
    let app = App::start(&exe, &dir, "app");
    let dead = format!("http://127.0.0.1:{}", free_port()); // nothing listens there
    let pid = app.child.pid().to_string();
    let mut gs = gosight(
        &dir,
        &["--pid", &pid],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &dead),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "512"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "500"),
        ],
    );
    gs.wait_for_line(&["probe attached", &format!("pid={pid}")], Duration::from_secs(10));

    let mut conn = HttpConn::connect(&app.addr);
    let total = 6000;
    let mut rss_early = 0;
    for i in 0..total {
        let x = conn.request("GET", &format!("/users/{i}"), &[], b"");
        assert_eq!(x.status, 200, "the app must keep answering");
        if i == 1000 {
            rss_early = rss_kib(gs.pid());
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_late = rss_kib(gs.pid());
    assert!(gs.is_running(), "gosight died with the collector down");
    gs.wait_for_line(&["spans dropped"], Duration::from_secs(10));
    assert_eq!(gs.terminate(Duration::from_secs(15)), Some(0));
    let log = gs.output();
    let fin = log.lines().find(|l| l.contains("span export shut down")).unwrap_or_else(|| panic!("{log}"));
    let (exported, full, failed) =
        (field(fin, "exported"), field(fin, "dropped_queue_full"), field(fin, "dropped_export_failed"));
    assert_eq!(exported, 0, "{fin}");
    assert_eq!(full + failed, total, "every span is exported or counted as dropped: {fin}");
    assert!(
        rss_late <= rss_early + 8 * 1024,
        "memory grew from {rss_early} KiB to {rss_late} KiB with the collector down"
    );
    println!("{total} requests, collector down: {fin}; RSS {rss_early} -> {rss_late} KiB");
}

#[test]
fn sampler_always_off_exports_nothing() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let dir = tmpdir("sampler");
    let exe = build_go_app("httpserver", None, false);
    let collector = Collector::start(&col_bin);
    let app = App::start(&exe, &dir, "app");
    let pid = app.child.pid().to_string();
    let mut gs = gosight(
        &dir,
        &["--pid", &pid],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.grpc_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    gs.wait_for_line(&["probe attached", &format!("pid={pid}")], Duration::from_secs(10));
    let mut conn = HttpConn::connect(&app.addr);
    for i in 0..20 {
        conn.request("GET", &format!("/users/{i}"), &[], b"");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    assert!(collector.spans().is_empty(), "always_off exported spans");
    // Nothing exported because nothing was sampled, not because nothing fired: the
    // server probe ran at the entry of every request and ended it, at a RET or (one
    // hit per request) at the kernel event after the response (`kernel_ends=ended=N`).
    let log = gs.output();
    let detached = log
        .lines()
        .find(|l| l.contains("probe detached") && l.contains("net_http_server"))
        .unwrap_or_else(|| panic!("no detach line for the server probe:\n{log}"));
    let count = |key: &str| -> Option<u64> {
        let v = detached.split(&format!("{key}=")).nth(1).and_then(|r| r.split_whitespace().next());
        v.and_then(|v| v.parse().ok())
    };
    let entry = count("entry_hits").unwrap_or_else(|| panic!("no entry_hits in {detached}"));
    let ended = count("return_hits").unwrap_or(0).max(count("ended").unwrap_or(0));
    assert!(entry >= 20 && ended >= 20, "the probe did not run for every request: {detached}");
}

/// Seconds since midnight UTC of a gosight log line (`2026-12-06T04:04:41.459984Z ...`).
fn log_time_of_day(line: &str) -> f64 {
    let t = line.split_whitespace().next().and_then(|ts| ts.split_once('T')).map(|(_, t)| t.trim_end_matches('Z'));
    let t = t.unwrap_or_else(|| panic!("no timestamp in {line}"));
    let parts: Vec<f64> = t.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

fn time_of_day(t: std::time::SystemTime) -> f64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    (d.as_secs() % 86_400) as f64 + d.subsec_nanos() as f64 / 1e9
}

/// Milliseconds from `launched` to when gosight logged that `pid` was attached.
fn attached_after_ms(gs: &Child, pid: u32, launched: std::time::SystemTime, timeout: Duration) -> f64 {
    let line = gs.wait_for_line(&["target attached", &format!("pid={pid} ")], timeout);
    (log_time_of_day(&line) - time_of_day(launched)).rem_euclid(86_400.0) * 1000.0
}

/// Starts `exe -addr 127.0.0.1:0` without waiting for it; returns it with its launch time.
fn launch(exe: &std::path::Path, dir: &std::path::Path, name: &str) -> (Child, std::time::SystemTime) {
    let mut cmd = Command::new(exe);
    cmd.args(["-addr", "127.0.0.1:0"]);
    let launched = std::time::SystemTime::now();
    (Child::spawn(name, cmd, dir), launched)
}

fn listening_addr(c: &Child) -> String {
    let line = c.wait_for_log("listening on", Duration::from_secs(20));
    line.rsplit(' ').next().unwrap().trim().to_string()
}

/// CPU time (user + system) a process has used, in milliseconds (10 ms ticks).
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = after_comm.split(' ').skip(11).take(2).map(|v| v.parse().unwrap()).collect();
    (f[0] + f[1]) * 1000.0 / 100.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Attaching and detaching stay off the critical path: 20 targets started at once
/// are all attached within a second; a target restarted while ten others are
/// being detached is traced within 300 ms of its launch; SIGTERM right after
/// requests exits within 500 ms and every one of those requests has its span.
#[test]
fn attach_and_detach_stay_off_the_critical_path() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_go_app("httpserver", None, false);
    let dir = tmpdir("offpath");
    let watched = dir.join("svc-watched");
    std::fs::copy(&exe, &watched).unwrap();
    let collector = Collector::start(&col_bin);
    let pattern = dir.join("*-watched");
    let mut gs = gosight(
        &dir,
        &["--target-exe", pattern.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    );
    let rss_idle = rss_kib(gs.pid());
    let cpu_before = cpu_ms(gs.pid());

    // 20 at once.
    let mut apps: Vec<(Child, std::time::SystemTime)> =
        (0..20).map(|i| launch(&watched, &dir, &format!("t{i}"))).collect();
    let mut at_once: Vec<f64> =
        apps.iter().map(|(c, t)| attached_after_ms(&gs, c.pid(), *t, Duration::from_secs(20))).collect();
    let (at_once_median, at_once_max) = (median(&mut at_once), at_once.iter().cloned().fold(0.0, f64::max));
    let rss_20 = rss_kib(gs.pid());
    let cpu_per_attach = (cpu_ms(gs.pid()) - cpu_before) / 20.0;

    // Ten exit; while their uprobes are being detached, one of the others restarts.
    for (c, _) in apps.iter_mut().take(10) {
        c.child.kill().unwrap();
        c.child.wait().unwrap();
    }
    let first_gone = apps[0].0.pid();
    gs.wait_for_line(&["target exited", &format!("pid={first_gone} ")], Duration::from_secs(5));
    let (mut old, _) = apps.remove(10);
    let old_pid = old.pid();
    old.child.kill().unwrap();
    old.child.wait().unwrap();
    let (restarted, launched) = launch(&watched, &dir, "restarted");
    let restart_ms = attached_after_ms(&gs, restarted.pid(), launched, Duration::from_secs(10));
    let detaching = gs.output().lines().filter(|l| l.contains("target detached")).count();
    gs.wait_for_line(&["target exited", &format!("pid={old_pid} ")], Duration::from_secs(5));
    // Memory of the exited targets is given back once they are detached.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gs.output().lines().filter(|l| l.contains("target detached")).count() < 11 {
        assert!(Instant::now() < deadline, "11 targets not detached within 20 s:\n{}", gs.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_after_exits = rss_kib(gs.pid());

    // Every target left gets requests; SIGTERM right after the last answer.
    let mut want = Vec::new();
    for (i, (c, _)) in apps.iter().skip(10).enumerate() {
        let path = format!("/users/left{i}");
        assert_eq!(HttpConn::connect(&listening_addr(c)).request("GET", &path, &[], b"").status, 200);
        want.push((c.pid(), path));
    }
    let path = "/users/restarted".to_string();
    assert_eq!(HttpConn::connect(&listening_addr(&restarted)).request("GET", &path, &[], b"").status, 200);
    want.push((restarted.pid(), path));
    let t_term = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(gs.pid() as i32, libc::SIGTERM) };
    let code = loop {
        if let Ok(Some(st)) = gs.child.try_wait() {
            break st.code();
        }
        assert!(t_term.elapsed() < Duration::from_secs(15), "gosight did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    let sigterm_ms = t_term.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(code, Some(0), "{}", gs.output());

    let spans = collector.wait_for(Duration::from_secs(10), |sp| sp.len() >= want.len());
    for (pid, path) in &want {
        let n = spans
            .iter()
            .filter(|s| s.resource_int("process.pid") == Some(*pid as i64) && s.attr_str("url.path") == Some(path))
            .count();
        assert_eq!(n, 1, "span for {path} from pid {pid} (requests made before SIGTERM): {spans:#?}");
    }
    println!(
        "lifecycle: 20 targets at once attached after median {at_once_median:.0} ms, max {at_once_max:.0} ms \
         ({cpu_per_attach:.0} ms of gosight CPU each); \
         restart traced {restart_ms:.0} ms after launch while 10 targets were detaching ({detaching} done by then); \
         SIGTERM to exit {sigterm_ms:.0} ms, {} spans of requests made just before all exported; \
         RSS idle {rss_idle} KiB, 20 targets {rss_20} KiB, 10 after 11 exits {rss_after_exits} KiB",
        want.len()
    );
    // The kernel's share of SIGTERM: closing a uprobe's perf event waits for RCU
    // grace periods under the kernel's event_mutex (~100 ms per uprobe, one after
    // the other whatever the threads), a floor gosight reports; the rest is gosight's.
    let log = gs.output();
    let detached = log.lines().find(|l| l.contains("all running targets detached")).unwrap_or_else(|| panic!("{log}"));
    let (uprobes, kernel_ms) = (field(detached, "uprobes"), field(detached, "detach_ms") as f64);
    println!(
        "lifecycle: SIGTERM detached {uprobes} uprobes in {kernel_ms:.0} ms; the rest took {:.0} ms",
        sigterm_ms - kernel_ms
    );
    // The targets (20 at once within 1 s, a restart traced within 300 ms,
    // SIGTERM within 500 ms) are wall-clock figures that depend on what else the
    // machine runs: bench/lifecycle.py measures and reports them (BENCHMARKS.md).
    // This test checks what must hold however busy the machine is: every target is
    // attached and traced, nothing hangs, and every span made before SIGTERM is
    // exported (above).
    assert!(sigterm_ms - kernel_ms < 5000.0, "SIGTERM took {sigterm_ms:.0} ms, {kernel_ms:.0} ms of it detaching");
    assert!(at_once_max < 30_000.0, "20 targets at once: the last attached after {at_once_max:.0} ms");
    assert!(restart_ms < 10_000.0, "restarted target traced {restart_ms:.0} ms after its launch");
}
