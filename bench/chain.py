#!/usr/bin/env python3
"""Benchmark: a chain of three Go services (tests/go-apps/chain, A -> B -> C) under
wrk, without and with gosight (server + client spans and in-kernel traceparent
insertion), measured side by side in interleaved rounds; plus uprobe hits per
request for each service. Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/chain.py [--rounds 3] [--seconds 8]
"""
import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, hits, lines_with, prepare, start_collector, start_go_app,
                    wait_for, wrk, write_section)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    app, go_version = build_go_app("chain", env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-chain-"))
    procs = []
    try:
        endpoint = start_collector(work, env, procs)
        c, c_addr = start_go_app(app, work, "C", procs, ["-name", "C"])
        b, b_addr = start_go_app(app, work, "B", procs, ["-name", "B", "-next", f"http://{c_addr}"])
        a_, a_addr = start_go_app(app, work, "A", procs, ["-name", "A", "-next", f"http://{b_addr}"])
        url = f"http://{a_addr}/hop"
        wrk(url, 2, a.connections)
        pids = {"A": a_.pid, "B": b.pid, "C": c.pid}
        off, on, per_service = [], [], {k: [] for k in pids}
        for r in range(a.rounds):
            off.append(wrk(url, a.seconds, a.connections))
            log = work / f"gosight-{r}.log"
            gs = subprocess.Popen([str(gosight), "--pid", ",".join(str(p) for p in pids.values())],
                                  stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                                  env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "RUST_LOG": "info"})
            procs.append(gs)
            for p in pids.values():
                wait_for(log, f"pid={p} probe=\"net_http_client\"")
            reqs, rps, p99 = wrk(url, a.seconds, a.connections)
            on.append((reqs, rps, p99))
            gs.send_signal(signal.SIGTERM)
            gs.wait(timeout=30)
            for name, pid in pids.items():
                total = sum(hits(l) for l in lines_with(log, "probe detached") if f"pid={pid} " in l)
                per_service[name].append(total / reqs)
            inserted = lines_with(log, "context propagation totals")
            print(f"round {r + 1}: off {off[-1][1]:.0f} req/s, on {rps:.0f} req/s ({rps / off[-1][1]:.3f}); "
                  + ", ".join(f"{k} {v[-1]:.2f} hits/req" for k, v in per_service.items()) + f"; {inserted}",
                  file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    med = statistics.median
    off_rps, on_rps = med(x[1] for x in off), med(x[1] for x in on)
    off_p99, on_p99 = med(x[2] for x in off), med(x[2] for x in on)
    cmd = f"python3 bench/chain.py --rounds {a.rounds} --seconds {a.seconds} --connections {a.connections}"
    table = "\n".join([
        "## net/http chain A → B → C: wrk against A, without vs with gosight (spans + in-kernel propagation)",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, {go_version}, "
        f"`wrk -t1 -c{a.connections}` on A's `GET /hop` (each request crosses A, B and C), {a.rounds} interleaved "
        f"rounds of {a.seconds} s, medians; gosight exporting OTLP to a real collector.",
        "",
        "| | without gosight | with gosight | ratio |",
        "|---|---|---|---|",
        f"| chain requests/s | {off_rps:.0f} | {on_rps:.0f} | {on_rps / off_rps:.3f} |",
        f"| p99 latency (ms) | {off_p99:.2f} | {on_p99:.2f} | {on_p99 / off_p99:.2f} |",
        *[f"| uprobe hits per chain request, service {k} | 0 | {med(v):.2f} | |" for k, v in per_service.items()],
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('chain', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
