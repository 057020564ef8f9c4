#!/usr/bin/env python3
"""Benchmark: what gosight costs, everything in one run, side by side.

- the bare cost of one uprobe hit on this machine, by the instruction under the probe
  (bench/hit_cost.py);
- wrk without and with gosight (its defaults: spans, propagation, socket probe, OTLP
  to a real collector) on a hello-world route (`GET /health`) and on a route doing
  ~1 ms of CPU work (`GET /work/1000`) of tests/go-apps/httpserver: requests/s, p50
  and p99 latency and their ratios, uprobe hits per request, the app's CPU per
  request and what gosight added to it divided by (hits x bare hit cost), gosight's
  own CPU per span;
- gosight's steady and peak memory with 1 target and with 20.

Each cell starts a fresh app; rounds interleave without/with. Writes the figures into
BENCHMARKS.md with the command that made them.

Run as root:  python3 bench/cost.py [--rounds 3] [--seconds 8] [--connections 8] [--targets 20]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, lines_with, prepare, probe_hits_by_kind, proc_cpu_seconds,
                    start_collector, start_go_app, start_gosight, stop_gosight, wrk_latency, write_section)
import hit_cost
import memory

ROUTES = [("hello-world `GET /health`", "/health"), ("~1 ms of work `GET /work/1000`", "/work/1000")]
ENTRY_SITE, RET_SITE = "jbe after the stack check", "ret"
# BPF program types as /proc/<pid>/fdinfo numbers them (enum bpf_prog_type).
PROG_TYPES = {"2": "uprobe programs", "26": "tracepoint (tp_btf) programs", "13": "sockops", "16": "sk_msg",
              "14": "sk_skb", "17": "raw tracepoint programs"}


def bpf_run_ns(pid):
    """{program type: (runs, ns)} of the BPF programs whose fds process `pid` holds
    (needs kernel.bpf_stats_enabled=1 for the counts to move)."""
    out = {}
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            info = dict(l.split(":", 1) for l in fd.read_text().splitlines() if ":" in l)
        except OSError:
            continue
        if "prog_type" in info and "run_cnt" in info:
            kind = PROG_TYPES.get(info["prog_type"].strip(), "type " + info["prog_type"].strip())
            runs, ns = out.get(kind, (0, 0))
            out[kind] = (runs + int(info["run_cnt"]), ns + int(info["run_time_ns"]))
    return out


def calibrate(app_bin, work, procs):
    """The app's rounds of /work per millisecond on this machine, measured once, so that every
    cell (a fresh app each) does the same work."""
    app, _ = start_go_app(app_bin, work, "calibrate", procs)
    rounds = int(next(l for l in lines_with(work / "calibrate.log", "work:")).split()[1])
    app.kill()
    app.wait()
    return rounds


def cell(app_bin, work, name, procs, url_path, a, gosight=None, env=None, endpoint=None):
    """One measurement on a fresh app: wrk figures and the app's CPU per request; with gosight
    also hits per request and (a second, short run with BPF statistics on) BPF run time per request."""
    app, addr = start_go_app(app_bin, work, name, procs, ("-work-rounds-per-ms", str(a.rounds_per_ms)))
    url = f"http://{addr}{url_path}"
    wrk_latency(url, 1, a.connections)  # warm the app up (connections, heap) before it is measured
    gs = log = None
    if gosight:
        log = work / f"{name}.gosight.log"
        gs = start_gosight(gosight, [app.pid], log, env, endpoint, procs)
    app0 = proc_cpu_seconds(app.pid)
    reqs, rps, p50, p99 = wrk_latency(url, a.seconds, a.connections)
    out = {"rps": rps, "p50": p50, "p99": p99, "app_us": (proc_cpu_seconds(app.pid) - app0) / reqs * 1e6}
    if gs:
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
        try:
            before = bpf_run_ns(gs.pid)
            reqs2, *_ = wrk_latency(url, 2, a.connections)
            after = bpf_run_ns(gs.pid)
        finally:
            subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
        out["bpf_us"] = {k: (after[k][1] - before.get(k, (0, 0))[1]) / reqs2 / 1e3 for k in after}
        stop_gosight(gs)
        entry, ret = probe_hits_by_kind(log)
        out["entry_hits"], out["ret_hits"] = entry / (reqs + reqs2), ret / (reqs + reqs2)
    app.kill()
    app.wait()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--versions", default=",".join(hit_cost.VERSIONS),
                    help="Go toolchains for the hit cost at the old and the new entry site ('' to skip)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    app_bin, go_version = build_go_app("httpserver", env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-"))
    procs = []
    try:
        bare = hit_cost.bare_hit_cost()
        versions = hit_cost.per_version([v for v in a.versions.split(",") if v], 3, 20000)
        endpoint = start_collector(work, env, procs)
        a.rounds_per_ms = calibrate(app_bin, work, procs)
        cells = {path: {"off": [], "on": []} for _, path in ROUTES}
        for r in range(a.rounds):
            for _, path in ROUTES:
                tag = path.strip("/").replace("/", "-")
                cells[path]["off"].append(cell(app_bin, work, f"off-{r}-{tag}", procs, path, a))
                cells[path]["on"].append(cell(app_bin, work, f"on-{r}-{tag}", procs, path, a, gosight, env, endpoint))
                on, off = cells[path]["on"][-1], cells[path]["off"][-1]
                print(f"round {r + 1} {path}: off {off['rps']:.0f} req/s, on {on['rps']:.0f} req/s, "
                      f"hits/req {on['entry_hits'] + on['ret_hits']:.2f}", file=sys.stderr)
        one = memory.one_target(gosight, app_bin, work, env, endpoint, a.seconds, a.connections)
        many = memory.many_targets(gosight, app_bin, work, env, endpoint, a.targets)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    print(render(a, go_version, bare, versions, cells, one, many))


def render(a, go_version, bare, versions, cells, one, many):
    med = statistics.median
    cmd = "python3 bench/cost.py" + "".join(
        f" --{k} {v}" for k, v in [("rounds", a.rounds), ("seconds", a.seconds), ("connections", a.connections),
                                   ("targets", a.targets)])
    kernel = os.uname().release
    lines = [
        "## Cost: one uprobe hit, requests without vs with gosight, gosight's CPU and memory",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM "
        f"(kernel {kernel}), {go_version}; `wrk -t1 -c{a.connections}` for {a.seconds} s per cell on a fresh "
        f"`tests/go-apps/httpserver`, {a.rounds} interleaved rounds, medians; gosight with its defaults "
        "(spans, in-kernel propagation, socket probe, connection metrics) exporting OTLP http/protobuf to a real "
        "collector.",
        "",
        "### One uprobe hit, by the instruction under the probe",
        "",
        "bench/hit_cost.py: tests/go-apps/hitcost calls a function in a loop, a bare uprobe (a BPF program that "
        "returns 0) on or off at one instruction; the calling thread's added CPU per call (user + system), "
        "median of 3 interleaved rounds. Linux emulates jumps, calls, `push` and nops inside the breakpoint trap; "
        "every other instruction is single-stepped out of line, a second trap.",
        "",
        "| instruction under the probe | CPU us per hit |",
        "|---|---|",
    ]
    lines += [f"| {kind} | {ns / 1000:.2f} |" for kind, ns in bare.items()]
    if versions:
        lines += ["", "Entry probes sit on the jump after the stack check (`gosight_goexe` probe sites) instead of "
                  "the function's first instruction; per Go version, CPU us per hit:", "",
                  "| Go | function | site chosen | at the entry | at the site | gain | at a RET |",
                  "|---|---|---|---|---|---|---|"]
        for version, sym, choice, entry, new, ret in versions:
            gain = 1 - new / entry if entry > 0 else 0
            lines.append(f"| {version} | {sym} | {choice} | {entry / 1000:.2f} | {new / 1000:.2f} | {gain:.0%} "
                         f"| {ret / 1000:.2f} |")
    lines += ["", "### Requests", "",
              "| route | | without gosight | with gosight | ratio |", "|---|---|---|---|---|"]
    for title, path in ROUTES:
        off, on = cells[path]["off"], cells[path]["on"]
        m = lambda cs, k: med(c[k] for c in cs)
        entry, ret = m(on, "entry_hits"), m(on, "ret_hits")
        hit_us = (entry * bare[ENTRY_SITE] + ret * bare[RET_SITE]) / 1000
        added = m(on, "app_us") - m(off, "app_us")
        bpf = {k: med(c["bpf_us"].get(k, 0) for c in on) for k in on[0]["bpf_us"]}
        bpf_txt = ", ".join(f"{k} {v:.2f}" for k, v in sorted(bpf.items()) if v >= 0.005)
        lines += [
            f"| {title} | requests/s | {m(off, 'rps'):.0f} | {m(on, 'rps'):.0f} | {m(on, 'rps') / m(off, 'rps'):.3f} |",
            f"| | p50 latency (ms) | {m(off, 'p50'):.3f} | {m(on, 'p50'):.3f} | {m(on, 'p50') / m(off, 'p50'):.2f} |",
            f"| | p99 latency (ms) | {m(off, 'p99'):.3f} | {m(on, 'p99'):.3f} | {m(on, 'p99') / m(off, 'p99'):.2f} |",
            f"| | uprobe hits per request (entry + RET) | 0 | {entry + ret:.2f} ({entry:.2f} + {ret:.2f}) | |",
            f"| | app CPU per request (us) | {m(off, 'app_us'):.1f} | {m(on, 'app_us'):.1f} | +{added:.1f} |",
            f"| | bare cost of those hits (us) | | {hit_us:.2f} | |",
            f"| | added app CPU ÷ bare cost of the hits | | {added / max(hit_us, 1e-9):.2f} | |",
            f"| | BPF programs' run time per request, in every process (us) | | {bpf_txt} | |",
            f"| | added app CPU ÷ (bare cost of the hits + BPF run time) | | "
            f"{added / max(hit_us + sum(bpf.values()), 1e-9):.2f} | |",
        ]
    lines += [
        "",
        "### gosight's own CPU and memory (bench/memory.py)",
        "",
        f"| | |",
        "|---|---|",
        f"| gosight CPU per span, keep-alive `GET /users/42` (us) | {one['cpu_us_per_span']:.2f} |",
        f"| gosight CPU per span, a new connection per request (us) | {one['close_cpu_us_per_span']:.2f} |",
        f"| spans exported / requests | {one['spans']} / {one['requests'] + one['close_requests']} |",
        f"| 1 target: steady RSS / peak RSS (MiB) | {one['steady_mib']:.1f} / {one['peak_mib']:.1f} |",
        f"| {a.targets} targets started at once: steady / peak RSS (MiB) | {many['steady_mib']:.1f} / "
        f"{many['peak_mib']:.1f} |",
        f"| each target after the first (MiB) | {(many['steady_mib'] - one['steady_mib']) / (a.targets - 1):.2f} |",
        f"| after all {a.targets} exited (MiB; idle before they started: {many['idle_mib']:.1f}) | "
        f"{many['after_exit_mib']:.1f} |",
    ]
    table = "\n".join(lines)
    if not a.no_write:
        print(f"bench: wrote {write_section('cost', table)}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
