#!/usr/bin/env python3
"""Benchmark: the kernel socket probe's cost. wrk against the Go HTTP test server
without gosight and with gosight running only its socket probe (no uprobes, no
propagation), measured side by side in one run (interleaved rounds), for keep-alive
connections (per send/receive cost) and for a new connection per request
(per-connection cost). Also: connection records received and lost, gosight's CPU per
request. Writes its figures into BENCHMARKS.md with the command that made them.

Run as root:  python3 bench/socket.py [--rounds 3] [--seconds 8]
"""
import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, prepare, proc_cpu_seconds, start_collector, start_go_app,
                    wait_for, wrk, write_section)

WORKLOADS = [("keep-alive", ()), ("new connection per request", ("Connection: close",))]


def totals(log):
    line = next((l for l in Path(log).read_text().splitlines() if "socket probe totals" in l), "")
    get = lambda k: int(re.search(rf"{k}=(\d+)", line).group(1)) if re.search(rf"{k}=(\d+)", line) else 0
    return get("closed"), get("lost_records") + get("untracked")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    app_bin, go_version = build_go_app("httpserver", env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-"))
    procs = []
    results = {name: {"off": [], "on": [], "cpu": [], "closed": [], "lost": []} for name, _ in WORKLOADS}
    try:
        endpoint = start_collector(work, env, procs)
        app, addr = start_go_app(app_bin, work, "app", procs)
        url = f"http://{addr}/users/42"
        wrk(url, 2, a.connections)  # warm-up
        for r in range(a.rounds):
            for name, headers in WORKLOADS:
                res = results[name]
                reqs, rps, _ = wrk(url, a.seconds, a.connections, headers)
                res["off"].append(rps)
                log = work / f"gosight-{r}-{len(res['on'])}-{name.split()[0]}.log"
                gs = subprocess.Popen([str(gosight), "--target-exe", "/nonexistent/none"], stdout=subprocess.DEVNULL,
                                      stderr=open(log, "w"),
                                      env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                           "GOSIGHT_PROPAGATION": "off", "OTEL_METRIC_EXPORT_INTERVAL": "5000",
                                           "RUST_LOG": "info"})
                procs.append(gs)
                wait_for(log, "socket probe attached")
                cpu0 = proc_cpu_seconds(gs.pid)
                reqs, rps, _ = wrk(url, a.seconds, a.connections, headers)
                cpu1 = proc_cpu_seconds(gs.pid)
                res["on"].append(rps)
                res["cpu"].append((cpu1 - cpu0) / reqs * 1e6)
                gs.send_signal(signal.SIGTERM)
                gs.wait(timeout=30)
                closed, lost = totals(log)
                res["closed"].append(closed)
                res["lost"].append(lost)
                print(f"round {r + 1} {name}: off {res['off'][-1]:.0f} req/s, on {rps:.0f} req/s "
                      f"({rps / res['off'][-1]:.3f}), records {closed}, lost {lost}", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()

    med = statistics.median
    cmd = "python3 bench/socket.py" + "".join(
        f" --{k} {v}" for k, v in [("rounds", a.rounds), ("seconds", a.seconds), ("connections", a.connections)])
    rows = []
    for name, _ in WORKLOADS:
        res = results[name]
        off, on = med(res["off"]), med(res["on"])
        rows.append(f"| {name} | {off:.0f} | {on:.0f} | {on / off:.3f} | {med(res['cpu']):.2f} | "
                    f"{sum(res['closed'])} | {sum(res['lost'])} |")
    table = "\n".join([
        "## Kernel socket probe: wrk against `tests/go-apps/httpserver`, without vs with the socket probe",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, "
        f"{go_version}, `wrk -t1 -c{a.connections}` on `GET /users/42`, {a.rounds} interleaved rounds of "
        f"{a.seconds} s per workload, medians. \"With\": gosight running only its socket probe (tracepoints "
        "`inet_sock_set_state`, `sock_send_length`, `sock_recv_length`, `tcp_destroy_sock`; no uprobes, no "
        "propagation), exporting connection metrics to a real collector. Records = CLOSE records received "
        "over all rounds (two per connection: client and server end); lost = counted loss.",
        "",
        "| workload | requests/s without | requests/s with | ratio | gosight CPU per request (us) | records | lost |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('socket', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
