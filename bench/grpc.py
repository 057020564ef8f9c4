#!/usr/bin/env python3
"""Benchmark: gRPC unary Check RPCs (tests/go-apps/grpc, grpc-go newest) driven by
the test client at full speed, without and with gosight attached to both sides,
measured side by side in interleaved rounds; plus uprobe hits per RPC on each side.
Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/grpc.py [--rounds 3] [--seconds 8] [--concurrency 8]
"""
import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, env_with_tools, hits, lines_with, prepare, start_collector, wait_for, write_section


def run_client(client, target, seconds, concurrency, work, tag, gosight_log=None):
    """Runs the load client; returns (rpcs, errors, pid)."""
    go = work / f"go-{tag}"
    out = open(work / f"client-{tag}.log", "w")
    p = subprocess.Popen([str(client), "-target", target, "-method", "check", "-duration", f"{seconds}s",
                          "-concurrency", str(concurrency), "-wait-file", str(go)], stdout=out, stderr=out)
    wait_for(work / f"client-{tag}.log", "ready")
    if gosight_log:
        wait_for(gosight_log, f"pid={p.pid} probe=\"grpc_client\"")
    go.write_text("")
    p.wait(timeout=seconds + 60)
    last = json.loads(Path(work / f"client-{tag}.log").read_text().strip().splitlines()[-1])
    return last["done"], last["errors"], p.pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-grpc-"))
    subprocess.run(["bash", "build.sh", "latest", str(work / "bin")], cwd=ROOT / "tests/go-apps/grpc",
                   env={**env, "GOTOOLCHAIN": "local"}, check=True)
    server_bin, client = work / "bin/server", work / "bin/client"
    procs = []
    try:
        endpoint = start_collector(work, env, procs)
        log = open(work / "server.log", "w")
        server = subprocess.Popen([str(server_bin), "-addr", "127.0.0.1:0"], stdout=log, stderr=log)
        procs.append(server)
        target = wait_for(work / "server.log", "listening on").split()[-1]
        run_client(client, target, 2, a.concurrency, work, "warmup")
        off, on, server_hits, client_hits = [], [], [], []
        for r in range(a.rounds):
            n, errors, _ = run_client(client, target, a.seconds, a.concurrency, work, f"off-{r}")
            off.append(n / a.seconds)
            glog = work / f"gosight-{r}.log"
            gs = subprocess.Popen([str(gosight), "--target-exe", str(work / "bin/*")], stdout=subprocess.DEVNULL,
                                  stderr=open(glog, "w"),
                                  env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "RUST_LOG": "info"})
            procs.append(gs)
            wait_for(glog, f"pid={server.pid} probe=\"grpc_server\"")
            n_on, errors_on, cpid = run_client(client, target, a.seconds, a.concurrency, work, f"on-{r}", glog)
            on.append(n_on / a.seconds)
            time.sleep(0.5)  # let gosight notice the client exited and log its hits
            gs.send_signal(signal.SIGTERM)
            gs.wait(timeout=30)
            sh = sum(hits(l) for l in lines_with(glog, "probe detached") if f"pid={server.pid} " in l)
            ch = sum(hits(l) for l in lines_with(glog, "probe detached") if f"pid={cpid} " in l)
            server_hits.append(sh / n_on)
            client_hits.append(ch / n_on)
            if errors or errors_on:
                raise SystemExit(f"bench: RPC errors under load ({errors}, {errors_on})")
            print(f"round {r + 1}: off {off[-1]:.0f} RPC/s, on {on[-1]:.0f} RPC/s ({on[-1] / off[-1]:.3f}); "
                  f"hits/RPC server {server_hits[-1]:.2f}, client {client_hits[-1]:.2f}", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    med = statistics.median
    cmd = f"python3 bench/grpc.py --rounds {a.rounds} --seconds {a.seconds} --concurrency {a.concurrency}"
    table = "\n".join([
        "## gRPC unary RPCs (grpc-go 1.85.0), without vs with gosight on client and server (spans + metadata propagation)",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM: the test "
        f"client (`tests/go-apps/grpc/client -method check -concurrency {a.concurrency}`, one ClientConn) against the "
        f"test server, {a.rounds} interleaved rounds of {a.seconds} s, medians; gosight exporting OTLP to a real "
        "collector, with in-kernel metadata propagation on (client: span probes + the two hand-off probes).",
        "",
        "| | without gosight | with gosight | ratio |",
        "|---|---|---|---|",
        f"| RPCs/s | {med(off):.0f} | {med(on):.0f} | {med(on) / med(off):.3f} |",
        f"| uprobe hits per RPC, server | 0 | {med(server_hits):.2f} | |",
        f"| uprobe hits per RPC, client | 0 | {med(client_hits):.2f} | |",
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('grpc', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
