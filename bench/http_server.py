#!/usr/bin/env python3
"""Benchmark: the Go HTTP test server under wrk, without and with gosight attached,
measured side by side in one run (interleaved rounds), plus uprobe hits per request,
gosight's CPU per request and its peak memory. Writes its figures into
BENCHMARKS.md (between the markers of this benchmark) with the command that made them.

Run as root:  python3 bench/http_server.py [--rounds 3] [--seconds 8]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, prepare, probe_hits, proc_cpu_seconds, proc_hwm_kib, start_collector,
                    start_go_app, start_gosight, stop_gosight, wrk, write_section)


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
    try:
        endpoint = start_collector(work, env, procs)
        app, addr = start_go_app(app_bin, work, "app", procs)
        url = f"http://{addr}/users/42"
        wrk(url, 2, a.connections)  # warm-up

        off, on, hits_per_req, cpu_us_per_req, hwm = [], [], [], [], []
        for r in range(a.rounds):
            reqs, rps, p99 = wrk(url, a.seconds, a.connections)
            off.append((rps, p99))
            log = work / f"gosight-{r}.log"
            gs = start_gosight(gosight, [app.pid], log, env, endpoint, procs)
            cpu0 = proc_cpu_seconds(gs.pid)
            reqs, rps, p99 = wrk(url, a.seconds, a.connections)
            cpu1 = proc_cpu_seconds(gs.pid)
            hwm.append(proc_hwm_kib(gs.pid))
            on.append((rps, p99))
            stop_gosight(gs)
            hits_per_req.append(probe_hits(log) / reqs)
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
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('http_server', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
