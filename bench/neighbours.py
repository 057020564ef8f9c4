#!/usr/bin/env python3
"""Benchmark: what gosight costs the processes it does *not* trace. nginx as a
reverse proxy in front of a Python http.server (each proxied request opens a new
upstream connection), and the Go chain A -> B -> C (tests/go-apps/chain) that
gosight does trace, both under wrk, without and with gosight (default settings:
spans + in-kernel traceparent insertion), measured side by side in interleaved
rounds. Also the sockets gosight enrolled for propagation (its `enrolled=` total).
Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/neighbours.py [--rounds 3] [--seconds 8]
              [--gosight target/release/gosight]   (a given binary: no cargo build)
"""
import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (ROOT, build_go_app, env_with_tools, free_port, lines_with, other_gosights, prepare, start_collector,
                    start_go_app, wait_for, wait_listening, write_section)


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# Python's http.server with a listen backlog that does not drop SYNs under wrk, and no request log.
BACKEND = """
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
Server(("127.0.0.1", int(sys.argv[1])), functools.partial(Handler, directory=sys.argv[2])).serve_forever()
"""


def start_nginx(work, procs):
    """A Python backend and nginx (own config, logs and temp paths in `work`) in
    front of it; returns the URL of a 256 KiB file through nginx (larger than
    nginx's upstream read buffer, so nginx asks FIONREAD how much is left)."""
    www = work / "www"
    www.mkdir()
    (www / "payload.bin").write_bytes(bytes((i * 2654435761 >> 13) & 0xFF for i in range(256 * 1024)))
    backend = free_port()
    procs.append(subprocess.Popen(["python3", "-c", BACKEND, str(backend), str(www)], cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_listening(backend, "the nginx backend")
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""daemon off;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://127.0.0.1:{backend}; }}
  }}
}}
""")
    procs.append(subprocess.Popen([nginx_bin(), "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_listening(port, "nginx")
    return f"http://127.0.0.1:{port}/payload.bin"


def ms(value, unit):
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url, seconds, connections):
    """{rps, p50, p99 (ms), requests, errors}: errors are wrk's socket errors
    (timeouts included) plus non-2xx answers. A proxy that answers nothing at all
    (every connection stalled) has no latency: p50 and p99 are then infinite."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for p in ("50", "99"):
        found = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        r[f"p{p}"] = ms(*found.groups()) if found and r["requests"] else float("inf")
    r["errors"] = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["errors"] += int(non2xx.group(1)) if non2xx else 0
    return r


def fmt(x, digits):
    return "no answer" if x == float("inf") else f"{x:.{digits}f}"


def prepare_with(gosight, env):
    """Like common.prepare, but with a given gosight binary (no cargo build)."""
    if gosight is None:
        return prepare(env)
    subprocess.run(["bash", str(ROOT / "scripts/install-deps.sh")], check=True, env=env)
    collector = subprocess.run(["bash", str(ROOT / "scripts/install-collector.sh")], check=True,
                               capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    return Path(gosight).resolve(), collector


def enrolled(log):
    totals = lines_with(log, "context propagation totals")
    m = re.search(r"(?<![\w])enrolled=(\d+)", totals[-1]) if totals else None
    return int(m.group(1)) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--gosight", help="this gosight binary instead of a fresh release build")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare_with(a.gosight, env)
    app, go_version = build_go_app("chain", env)
    nginx_version = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    if other_gosights():
        print(f"bench: WARNING: gosight already runs (pids {other_gosights()}): its programs see these sockets too",
              file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-neighbours-"))
    procs = []
    try:
        endpoint = start_collector(work, env, procs)
        c, c_addr = start_go_app(app, work, "C", procs, ["-name", "C"])
        b, b_addr = start_go_app(app, work, "B", procs, ["-name", "B", "-next", f"http://{c_addr}"])
        a_, a_addr = start_go_app(app, work, "A", procs, ["-name", "A", "-next", f"http://{b_addr}"])
        chain_url = f"http://{a_addr}/hop"
        nginx_url = start_nginx(work, procs)
        wrk(chain_url, 2, a.connections)
        wrk(nginx_url, 2, a.connections)
        pids = [a_.pid, b.pid, c.pid]
        rows = {k: [] for k in ("nginx_off", "nginx_on", "chain_off", "chain_on")}
        sockets = []
        for r in range(a.rounds):
            rows["nginx_off"].append(wrk(nginx_url, a.seconds, a.connections))
            rows["chain_off"].append(wrk(chain_url, a.seconds, a.connections))
            log = work / f"gosight-{r}.log"
            gs = subprocess.Popen([str(gosight), "--pid", ",".join(str(p) for p in pids)],
                                  stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                                  env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "RUST_LOG": "info"})
            procs.append(gs)
            for p in pids:
                wait_for(log, f"pid={p} probe=\"net_http_client\"")
            rows["nginx_on"].append(wrk(nginx_url, a.seconds, a.connections))
            rows["chain_on"].append(wrk(chain_url, a.seconds, a.connections))
            gs.send_signal(signal.SIGTERM)
            gs.wait(timeout=30)
            sockets.append(enrolled(log))
            no, yes, chain_no, chain_yes = (rows[k][-1] for k in ("nginx_off", "nginx_on", "chain_off", "chain_on"))
            print(f"round {r + 1}: nginx off {no['rps']:.0f} req/s p99 {fmt(no['p99'], 2)} ms, on {yes['rps']:.0f} req/s "
                  f"p99 {fmt(yes['p99'], 2)} ms ({yes['requests']} answered, {yes['errors']} errors); chain off "
                  f"{chain_no['rps']:.0f} req/s, on {chain_yes['rps']:.0f} req/s; enrolled={sockets[-1]}; "
                  f"{lines_with(log, 'context propagation totals')}", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()  # nginx's master stops its worker on SIGTERM
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    med = statistics.median

    def m(key, field):
        return med(x[field] for x in rows[key])

    def row(label, what, field, digits):
        off, on = m(f"{what}_off", field), m(f"{what}_on", field)
        ratio = f"{on / off:.3f}" if off and off != float("inf") and on != float("inf") else "n/a"
        return f"| {label} | {fmt(off, digits)} | {fmt(on, digits)} | {ratio} |"

    def total(key, field):
        return sum(x[field] for x in rows[key])

    cmd = f"python3 bench/neighbours.py --rounds {a.rounds} --seconds {a.seconds} --connections {a.connections}"
    lines = [
        "## Neighbours: nginx reverse proxy (not traced) next to a traced Go chain, without vs with gosight",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, "
        f"nginx {nginx_version} (Debian, 1 worker, default proxy settings) proxying a 256 KiB file from Python's "
        f"http.server (a new upstream connection per request), and the chain ({go_version}, A → B → C) that "
        f"gosight traces (default settings: spans + in-kernel traceparent insertion); `wrk -t1 -c{a.connections}` "
        f"on each in turn, {a.rounds} interleaved rounds of {a.seconds} s, medians.",
        "",
        "| | without gosight | with gosight | ratio |",
        "|---|---|---|---|",
        row("nginx proxy requests/s", "nginx", "rps", 0),
        row("nginx proxy p50 latency (ms)", "nginx", "p50", 2),
        row("nginx proxy p99 latency (ms)", "nginx", "p99", 2),
        f"| nginx proxy requests answered / errors and timeouts (all rounds) | {total('nginx_off', 'requests')} / "
        f"{total('nginx_off', 'errors')} | {total('nginx_on', 'requests')} / {total('nginx_on', 'errors')} | |",
        row("chain requests/s", "chain", "rps", 0),
        row("chain p99 latency (ms)", "chain", "p99", 2),
        f"| sockets enrolled for propagation (gosight's `enrolled=` total, per round) | | "
        f"{', '.join('?' if s is None else str(s) for s in sockets)} | |",
    ]
    table = "\n".join(lines)
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('neighbours', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
