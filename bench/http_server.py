#!/usr/bin/env python3
"""Benchmark: the Go HTTP test server under wrk, without and with gosight attached,
measured side by side in one run (interleaved rounds), plus uprobe hits per request,
gosight's CPU per request and its peak memory. Writes its figures into
BENCHMARKS.md (between the markers of this benchmark) with the command that made them.

Run as root:  python3 bench/http_server.py [--rounds 3] [--seconds 8]
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK_BEGIN = "<!-- bench:http_server:begin -->"
MARK_END = "<!-- bench:http_server:end -->"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def wait_for(path, needle, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise SystemExit(f"bench: no '{needle}' in {path} after {timeout}s:\n{Path(path).read_text()}")


def wrk(url, seconds, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True, capture_output=True, text=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return reqs, rps, float(p99.group(1)) * scale


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (uprobes)")
    env = dict(os.environ)
    env["PATH"] = f"/usr/local/go/bin:{Path.home()}/.cargo/bin:" + env["PATH"]
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        sh("apt-get", "install", "-y", "-qq", "wrk")
    sh("bash", str(ROOT / "scripts/install-deps.sh"), env=env)
    collector = subprocess.run(["bash", str(ROOT / "scripts/install-collector.sh")], check=True,
                               capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    sh("cargo", "build", "--release", "-q", "-p", "gosight", cwd=ROOT, env=env)
    gosight = ROOT / "target/release/gosight"
    app_bin = ROOT / "target/go-apps/bench/httpserver"
    sh("go", "build", "-o", str(app_bin), ".", cwd=ROOT / "tests/go-apps/httpserver", env={**env, "GOTOOLCHAIN": "local"})
    go_version = subprocess.run(["go", "version", str(app_bin)], capture_output=True, text=True, env=env).stdout.split()[1]

    work = Path(tempfile.mkdtemp(prefix="gosight-bench-"))
    procs = []
    try:
        col_env = {**env, "GRPC_ENDPOINT": "127.0.0.1:24317", "HTTP_ENDPOINT": "127.0.0.1:24318",
                   "OUTPUT_FILE": str(work / "traces.jsonl"), "METRICS_FILE": str(work / "metrics.jsonl")}
        col_log = open(work / "collector.log", "w")
        procs.append(subprocess.Popen([collector, "--config", str(ROOT / "tests/collector/config.yaml")],
                                      env=col_env, stdout=col_log, stderr=col_log))
        wait_for(work / "collector.log", "Everything is ready")
        app_log = open(work / "app.log", "w")
        app = subprocess.Popen([str(app_bin), "-addr", "127.0.0.1:0"], stdout=app_log, stderr=app_log)
        procs.append(app)
        addr = wait_for(work / "app.log", "listening on").split()[-1]
        url = f"http://{addr}/users/42"
        wrk(url, 2, a.connections)  # warm-up

        off, on, hits_per_req, cpu_us_per_req, hwm = [], [], [], [], []
        for r in range(a.rounds):
            reqs, rps, p99 = wrk(url, a.seconds, a.connections)
            off.append((rps, p99))
            log = work / f"gosight-{r}.log"
            gs = subprocess.Popen([str(gosight), "--pid", str(app.pid)], stdout=subprocess.DEVNULL,
                                  stderr=open(log, "w"),
                                  env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:24318",
                                       "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "RUST_LOG": "info"})
            wait_for(log, "probe attached")
            cpu0 = proc_cpu_seconds(gs.pid)
            reqs, rps, p99 = wrk(url, a.seconds, a.connections)
            cpu1 = proc_cpu_seconds(gs.pid)
            hwm.append(proc_hwm_kib(gs.pid))
            on.append((rps, p99))
            gs.send_signal(signal.SIGTERM)
            gs.wait(timeout=30)
            line = wait_for(log, "probe detached")
            entry = int(re.search(r"entry_hits=(\d+)", line).group(1))
            ret = int(re.search(r"return_hits=(\d+)", line).group(1))
            hits_per_req.append((entry + ret) / reqs)
            cpu_us_per_req.append((cpu1 - cpu0) / reqs * 1e6)
            print(f"round {r + 1}: off {off[-1][0]:.0f} req/s, on {rps:.0f} req/s "
                  f"({rps / off[-1][0]:.3f}), hits/req {hits_per_req[-1]:.2f}", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()

    med = statistics.median
    off_rps, on_rps = med(x[0] for x in off), med(x[0] for x in on)
    off_p99, on_p99 = med(x[1] for x in off), med(x[1] for x in on)
    cmd = "python3 bench/http_server.py" + "".join(
        f" --{k} {v}" for k, v in [("rounds", a.rounds), ("seconds", a.seconds), ("connections", a.connections)])
    table = "\n".join([
        MARK_BEGIN,
        "## net/http server: wrk against `tests/go-apps/httpserver`, without vs with gosight",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, "
        f"{go_version}, `wrk -t1 -c{a.connections}` on `GET /users/42`, {a.rounds} interleaved rounds of "
        f"{a.seconds} s each, medians; gosight exporting OTLP http/protobuf to a real collector.",
        "",
        "| | without gosight | with gosight | ratio |",
        "|---|---|---|---|",
        f"| requests/s | {off_rps:.0f} | {on_rps:.0f} | {on_rps / off_rps:.3f} |",
        f"| p99 latency (ms) | {off_p99:.2f} | {on_p99:.2f} | {on_p99 / off_p99:.2f} |",
        f"| uprobe hits per request | 0 | {med(hits_per_req):.2f} | |",
        f"| gosight CPU per request (us) | | {med(cpu_us_per_req):.1f} | |",
        f"| gosight peak RSS (MiB) | | {max(hwm) / 1024:.1f} | |",
        MARK_END,
    ])
    print(table)
    if not a.no_write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text() if path.exists() else (
            "# Benchmarks\n\nEvery figure here is written by a script under `bench/`, with the command that "
            "made it. Ratios are measured side by side in one run.\n")
        if MARK_BEGIN in text:
            text = re.sub(re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), lambda _: table, text, flags=re.S)
        else:
            text = text.rstrip("\n") + "\n\n" + table + "\n"
        path.write_text(text)
        print(f"bench: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
