#!/usr/bin/env python3
"""Benchmark: what gosight costs in memory and CPU, with its defaults (socket probe on,
propagation on, OTLP export to a real collector).

- one target (tests/go-apps/httpserver): gosight's CPU per span under
  `wrk -t1 -c8 -d8s /users/42` (gosight utime+stime from just before wrk until 2 s
  after it, divided by the requests; every request is one span, and the spans
  exported are printed against the requests), then steady RSS (idle 2 s after the
  load) and peak RSS (VmHWM, attach included); then the CPU per span again with a
  new connection per request (`Connection: close`: connection records, metrics and
  the span-to-connection join on every request);
- 20 targets: 20 copies of httpserver started at once under a running gosight, each
  taking a few requests: steady and peak RSS, the cost per further target, and RSS
  again once all 20 have exited (memory of exited targets given back).

CPU time is used rather than wall-clock: the machine is shared. Prints the figures;
`cost_figures()` returns them for bench/cost.py.

Run as root:  python3 bench/memory.py [--seconds 8] [--targets 20]
"""
import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (build_go_app, env_with_tools, launch_gosight, lines_with, prepare, proc_cpu_seconds,
                    proc_hwm_kib, proc_rss_kib, start_collector, start_go_app, stop_gosight, wait_for, wrk)
import urllib.request  # noqa: E402  (after common: bench/socket.py must not shadow socket)


def rss_mib(pid):
    return proc_rss_kib(pid) / 1024


def hwm_mib(pid):
    return proc_hwm_kib(pid) / 1024


def exported_spans(log):
    line = next(iter(lines_with(log, "span export shut down")), "")
    m = re.search(r"exported=(\d+)", line)
    return int(m.group(1)) if m else 0


def wait_count(log, needle, count, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(lines_with(log, needle)) >= count:
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: fewer than {count} '{needle}' in {log} after {timeout}s")


def one_target(gosight, app_bin, work, env, endpoint, seconds, connections):
    procs = []
    try:
        app, addr = start_go_app(app_bin, work, "app-one", procs)
        log = work / "gosight-one.log"
        gs = launch_gosight(gosight, ["--pid", str(app.pid)], log, env, endpoint, procs)
        wait_for(log, f"pid={app.pid} probe=\"net_http_server\" uprobes", timeout=60)
        cpu0 = proc_cpu_seconds(gs.pid)
        reqs, rps, _ = wrk(f"http://{addr}/users/42", seconds, connections)
        time.sleep(2)
        cpu1 = proc_cpu_seconds(gs.pid)
        steady, peak = rss_mib(gs.pid), hwm_mib(gs.pid)
        # The same with a new connection per request: connection records, metrics, the join.
        reqs_c, rps_c, _ = wrk(f"http://{addr}/users/42", seconds, connections, ("Connection: close",))
        time.sleep(2)
        cpu2 = proc_cpu_seconds(gs.pid)
        stop_gosight(gs)
        spans = exported_spans(log)
        return {"requests": reqs, "rps": rps, "spans": spans, "cpu_s": cpu1 - cpu0,
                "cpu_us_per_span": (cpu1 - cpu0) / max(reqs, 1) * 1e6, "steady_mib": steady, "peak_mib": peak,
                "close_requests": reqs_c, "close_rps": rps_c,
                "close_cpu_us_per_span": (cpu2 - cpu1) / max(reqs_c, 1) * 1e6}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def many_targets(gosight, app_bin, work, env, endpoint, n):
    procs = []
    try:
        log = work / "gosight-many.log"
        gs = launch_gosight(gosight, ["--target-exe", str(app_bin)], log, env, endpoint, procs)
        wait_for(log, "watching for targets")
        time.sleep(1)
        idle = rss_mib(gs.pid)
        apps = []
        for i in range(n):  # all at once: started before any is waited for
            log_i = open(work / f"app-many-{i}.log", "w")
            p = subprocess.Popen([str(app_bin), "-addr", "127.0.0.1:0"], stdout=log_i, stderr=log_i)
            procs.append(p)
            apps.append(p)
        addrs = [wait_for(work / f"app-many-{i}.log", "listening on").split()[-1] for i in range(n)]
        wait_count(log, "probe=\"net_http_server\" uprobes", n)
        for addr in addrs:
            for _ in range(5):
                urllib.request.urlopen(f"http://{addr}/users/42", timeout=5).read()
        time.sleep(2)
        steady, peak = rss_mib(gs.pid), hwm_mib(gs.pid)
        for p in apps:
            p.kill()
            p.wait()
        wait_count(log, "target exited", n)
        time.sleep(2)
        after_exit = rss_mib(gs.pid)
        stop_gosight(gs)
        return {"idle_mib": idle, "steady_mib": steady, "peak_mib": peak, "after_exit_mib": after_exit}
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cost_figures(seconds=8, connections=8, targets=20, env=None, gosight=None, collector=None):
    """The figures as a dict (for bench/cost.py): one target's CPU per span and RSS, many targets' RSS."""
    env = env or env_with_tools()
    if gosight is None:
        gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
        gosight = env.get("GOSIGHT_BENCH_BINARY", gosight)  # e.g. an older build, to compare
    elif collector:
        env["GOSIGHT_COLLECTOR"] = collector
    app_bin, go_version = build_go_app("httpserver", env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-mem-"))
    procs = []
    try:
        endpoint = start_collector(work, env, procs)
        one = one_target(gosight, app_bin, work, env, endpoint, seconds, connections)
        many = many_targets(gosight, app_bin, work, env, endpoint, targets)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    many["per_extra_target_mib"] = (many["steady_mib"] - one["steady_mib"]) / max(targets - 1, 1)
    return {"go": go_version, "targets": targets, "one": one, "many": many}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--targets", type=int, default=20)
    a = ap.parse_args()
    f = cost_figures(a.seconds, a.connections, a.targets)
    one, many = f["one"], f["many"]
    print(f"httpserver ({f['go']}), gosight defaults (socket probe, propagation, OTLP export)")
    print(f"one target: wrk -t1 -c{a.connections} -d{a.seconds}s /users/42 (keep-alive): {one['requests']} requests "
          f"({one['rps']:.0f} req/s), gosight CPU {one['cpu_s']:.3f} s = {one['cpu_us_per_span']:.2f} us per span")
    print(f"one target: the same with 'Connection: close': {one['close_requests']} requests ({one['close_rps']:.0f} "
          f"req/s), gosight CPU {one['close_cpu_us_per_span']:.2f} us per span (and per connection)")
    print(f"one target: spans exported {one['spans']} of {one['requests'] + one['close_requests']} requests")
    print(f"one target: steady RSS {one['steady_mib']:.1f} MiB, peak (VmHWM) {one['peak_mib']:.1f} MiB")
    print(f"{f['targets']} targets started at once: RSS idle before {many['idle_mib']:.1f} MiB, steady "
          f"{many['steady_mib']:.1f} MiB, peak {many['peak_mib']:.1f} MiB, per further target "
          f"{many['per_extra_target_mib']:.2f} MiB; after all exited {many['after_exit_mib']:.1f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
