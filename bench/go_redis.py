#!/usr/bin/env python3
"""Benchmark: uprobe hits per Redis command traced by gosight's go-redis probe (uprobes/go_redis).
tests/go-apps/redisapp (go-redis v9.7.0 `old` and v9.23.0 `new`) against a real redis-server
(Debian's, scripts/install-redis.sh; started here on a free port, no persistence, removed at the
end). Per route: the app warmed up (its connections and their set-up made) before gosight
attaches, then N sequential requests; gosight's `probe detached` line gives the go_redis_client
probe's entry and RET hits, divided by the Redis calls the route makes (a command, a pipeline or a
MULTI/EXEC each count one), and every probe's hits per request; the median request latency
without and with gosight (one client, sequential: the added latency of one request's hits).
Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/go_redis.py [--requests 2000]
"""
import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

# common first: it imports the real socket module, which bench/socket.py would shadow for http.client.
from common import (ROOT, env_with_tools, free_port, hit_counts, lines_with, prepare, probe_hits_by_kind,
                    start_collector, start_go_app, start_gosight, stop_gosight, wait_listening, write_section)
import http.client  # noqa: E402

PROBE = "go_redis_client"
# (route, Redis calls per request)
ROUTES = [("/get?key=bench", 1), ("/set?key=bench&value=v", 1), ("/pipeline?key=benchp", 1),
          ("/tx?key=bencht", 1), ("/wrongtype?key=benchw", 2)]


def build_redisapp(set_, env):
    out = ROOT / "target/go-apps/bench" / f"redisapp-{set_}"
    subprocess.run(["sh", "build.sh", set_, str(out)], cwd=ROOT / "tests/go-apps/redisapp",
                   env={**env, "GOTOOLCHAIN": "local"}, check=True)
    return out


def requests(addr, path, n):
    """n sequential GETs on one keep-alive connection; returns the latencies (µs)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        lat.append((time.perf_counter() - t) * 1e6)
        if r.status not in (200, 404, 500):
            raise SystemExit(f"bench: {path}: HTTP {r.status}")
    conn.close()
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    redis_server = subprocess.run(["bash", str(ROOT / "scripts/install-redis.sh")], check=True,
                                  capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    version = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout.split()[2].removeprefix("v=")
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-redis-"))
    procs = []
    rows = []
    try:
        port = free_port()
        procs.append(subprocess.Popen([redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                       "--appendonly", "no", "--dir", str(work)],
                                      stdout=open(work / "redis.log", "w"), stderr=subprocess.STDOUT))
        wait_listening(port, "redis-server")
        endpoint = start_collector(work, env, procs)
        for set_ in ("old", "new"):
            app, addr = start_go_app(build_redisapp(set_, env), work, f"redisapp-{set_}", procs,
                                     ["-redis", f"127.0.0.1:{port}"])
            for path, calls in ROUTES:
                requests(addr, path, 50)  # warm: connections made and set up
                base = statistics.median(requests(addr, path, args.requests))
                log = work / f"gosight-{set_}-{path.split('?')[0][1:]}.log"
                gs = start_gosight(gosight, [app.pid], log, env, endpoint, procs, wait=("net_http_server", PROBE))
                traced = statistics.median(requests(addr, path, args.requests))
                stop_gosight(gs)
                procs.remove(gs)
                entry, ret = map(sum, zip(*[hit_counts(l) for l in lines_with(log, "probe detached")
                                            if f'probe="{PROBE}"' in l]))
                all_entry, all_ret = probe_hits_by_kind(log)
                n = args.requests * calls
                rows.append(f"| {set_} | `{path.split('?')[0]}` | {calls} | {entry / n:.2f} | {ret / n:.2f} | "
                            f"{(all_entry + all_ret) / args.requests:.2f} | {base:.0f} | {traced:.0f} | "
                            f"{traced - base:+.0f} |")
                print(rows[-1], flush=True)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    go = subprocess.run(["go", "version"], capture_output=True, text=True, env=env).stdout.split()[2]
    table = (
        "## go-redis: uprobe hits per Redis command\n\n"
        f"Command: `python3 bench/go_redis.py --requests {args.requests}` (as root). Measured "
        f"{time.strftime('%Y-%m-%d')} on this project's 2-core VM, {go}, Redis {version} on loopback (started by "
        "the script, no persistence); tests/go-apps/redisapp built against go-redis v9.7.0 (`old`) and "
        "v9.23.0 (`new`), warmed up before gosight (defaults) attaches, then "
        f"{args.requests} sequential requests per route on one connection. Redis calls: the commands, "
        "pipelines and MULTI/EXEC transactions the route makes (`/wrongtype`: SET, then LPUSH). Hits from "
        "gosight's `probe detached` lines; latency = median of the sequential requests (one client: it "
        "includes every probe's hits, net_http_server's too, and gosight's reader waking; indicative only on "
        "a shared VM).\n\n"
        "| go-redis | route | Redis calls per request | go_redis_client entry hits per call | "
        "RET hits per call | all uprobe hits per request | median latency without (µs) | with (µs) | added (µs) |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(f"bench: wrote {write_section('go_redis', table)}")


if __name__ == "__main__":
    main()
