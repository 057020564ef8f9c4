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
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, lines_with, prepare, probe_hits, proc_cpu_seconds, proc_hwm_kib,
                    proc_rss_kib, start_collector, start_go_app, start_gosight, stop_gosight, wait_for, wrk_latency,
                    write_section)
import hit_cost

ROUTES = [("hello-world `GET /health`", "/health"), ("~1 ms of work `GET /work/1000`", "/work/1000")]


def exported(log):
    line = next(iter(lines_with(log, "span export shut down")), "")
    m = re.search(r"exported=(\d+)", line)
    return int(m.group(1)) if m else 0


def cell(app_bin, work, name, procs, url_path, a, gosight=None, env=None, endpoint=None):
    """One measurement on a fresh app: wrk figures, app CPU per request, and with gosight its
    CPU per span, hits per request and memory."""
    app, addr = start_go_app(app_bin, work, name, procs)
    url = f"http://{addr}{url_path}"
    wrk_latency(url, 1, a.connections)  # warm the app up (connections, heap) before it is measured
    gs = log = None
    if gosight:
        log = work / f"{name}.gosight.log"
        gs = start_gosight(gosight, [app.pid], log, env, endpoint, procs)
    app0 = proc_cpu_seconds(app.pid)
    gs0 = proc_cpu_seconds(gs.pid) if gs else 0
    reqs, rps, p50, p99 = wrk_latency(url, a.seconds, a.connections)
    out = {"rps": rps, "p50": p50, "p99": p99, "app_us": (proc_cpu_seconds(app.pid) - app0) / reqs * 1e6}
    if gs:
        time.sleep(2)  # idle: the batch is exported, memory settles
        out["rss_kib"] = proc_rss_kib(gs.pid)
        out["hwm_kib"] = proc_hwm_kib(gs.pid)
        gs_cpu = proc_cpu_seconds(gs.pid) - gs0
        stop_gosight(gs)
        spans = exported(log)
        out["hits"] = probe_hits(log) / reqs
        out["gs_us_per_span"] = gs_cpu / max(spans, 1) * 1e6
        out["spans_per_req"] = spans / reqs
    app.kill()
    app.wait()
    return out


def many_targets(app_bin, work, procs, gosight, env, endpoint, n):
    """gosight on n fresh copies of the app: steady RSS after a few requests each, and peak."""
    apps = [start_go_app(app_bin, work, f"many-{n}-{i}", procs) for i in range(n)]
    log = work / f"many-{n}.gosight.log"
    gs = start_gosight(gosight, [p.pid for p, _ in apps], log, env, endpoint, procs)
    for _, addr in apps:
        wrk_latency(f"http://{addr}/users/42", 1, 2)
    time.sleep(3)
    rss, hwm = proc_rss_kib(gs.pid), proc_hwm_kib(gs.pid)
    stop_gosight(gs)
    for p, _ in apps:
        p.kill()
        p.wait()
    return rss, hwm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    app_bin, go_version = build_go_app("httpserver", env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-"))
    procs = []
    try:
        hits = hit_cost.measure(env, work)
        endpoint = start_collector(work, env, procs)
        cells = {path: {"off": [], "on": []} for _, path in ROUTES}
        for r in range(a.rounds):
            for _, path in ROUTES:
                tag = path.strip("/").replace("/", "-")
                cells[path]["off"].append(cell(app_bin, work, f"off-{r}-{tag}", procs, path, a))
                cells[path]["on"].append(cell(app_bin, work, f"on-{r}-{tag}", procs, path, a, gosight, env, endpoint))
                on, off = cells[path]["on"][-1], cells[path]["off"][-1]
                print(f"round {r + 1} {path}: off {off['rps']:.0f} req/s, on {on['rps']:.0f} req/s, "
                      f"hits/req {on['hits']:.2f}, gosight {on['gs_us_per_span']:.1f} us/span", file=sys.stderr)
        one = many_targets(app_bin, work, procs, gosight, env, endpoint, 1)
        many = many_targets(app_bin, work, procs, gosight, env, endpoint, a.targets)
    finally:
        for p in procs:
            p.kill()
            p.wait()

    med = statistics.median
    probe_cost = hits.probe_site_us  # the bare cost of a hit at the sites gosight probes
    cmd = "python3 bench/cost.py" + "".join(
        f" --{k} {v}" for k, v in [("rounds", a.rounds), ("seconds", a.seconds), ("connections", a.connections),
                                   ("targets", a.targets)])
    lines = [
        "## Cost: one uprobe hit, requests without vs with gosight, gosight's CPU and memory",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM "
        f"(kernel {hits.kernel}), {go_version}; `wrk -t1 -c{a.connections}` for {a.seconds} s per cell, a fresh "
        f"`tests/go-apps/httpserver` per cell, {a.rounds} interleaved rounds, medians; gosight with its defaults "
        "(spans, in-kernel propagation, socket probe, connection metrics) exporting OTLP http/protobuf to a real "
        "collector.",
        "",
        "### One uprobe hit (bench/hit_cost.py: a Go loop calling a function, with and without a bare uprobe)",
        "",
        hits.table(),
        "",
        "### Requests",
        "",
        "| route | | without gosight | with gosight | ratio |",
        "|---|---|---|---|---|",
    ]
    added = {}
    for title, path in ROUTES:
        off, on = cells[path]["off"], cells[path]["on"]
        m = lambda cells, k: med(c[k] for c in cells)
        hits_req = m(on, "hits")
        added[path] = (m(on, "app_us") - m(off, "app_us"), hits_req)
        lines += [
            f"| {title} | requests/s | {m(off, 'rps'):.0f} | {m(on, 'rps'):.0f} | {m(on, 'rps') / m(off, 'rps'):.3f} |",
            f"| | p50 latency (ms) | {m(off, 'p50'):.3f} | {m(on, 'p50'):.3f} | {m(on, 'p50') / m(off, 'p50'):.2f} |",
            f"| | p99 latency (ms) | {m(off, 'p99'):.3f} | {m(on, 'p99'):.3f} | {m(on, 'p99') / m(off, 'p99'):.2f} |",
            f"| | uprobe hits per request | 0 | {hits_req:.2f} | |",
            f"| | app CPU per request (us) | {m(off, 'app_us'):.1f} | {m(on, 'app_us'):.1f} | "
            f"+{added[path][0]:.1f} us |",
            f"| | added app CPU ÷ (hits × bare hit cost {probe_cost:.1f} us) | | "
            f"{added[path][0] / max(hits_req * probe_cost, 1e-9):.2f} | |",
            f"| | gosight CPU per span (us) | | {m(on, 'gs_us_per_span'):.1f} | |",
        ]
    (rss1, hwm1), (rssn, hwmn) = one, many
    lines += [
        "",
        "### gosight's memory (VmRSS after the requests and 3 s idle; peak = VmHWM, attach included)",
        "",
        "| targets | steady RSS (MiB) | peak RSS (MiB) |",
        "|---|---|---|",
        f"| 1 | {rss1 / 1024:.1f} | {hwm1 / 1024:.1f} |",
        f"| {a.targets} | {rssn / 1024:.1f} | {hwmn / 1024:.1f} |",
        f"| each target after the first | {(rssn - rss1) / 1024 / (a.targets - 1):.2f} | |",
    ]
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('cost', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
