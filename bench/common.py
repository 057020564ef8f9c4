"""Shared pieces of gosight's benchmarks: building, starting processes, wrk, /proc
figures, and writing a section of BENCHMARKS.md between markers."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

# bench/socket.py would shadow the standard library's socket module for the scripts run from bench/:
# import the real one with bench/ off the path (later `import socket`s then find it in sys.modules).
_bench = str(Path(__file__).resolve().parent)
_path, sys.path[:] = sys.path[:], [p for p in sys.path if str(Path(p or ".").resolve()) != _bench]
import socket  # noqa: E402
sys.path[:] = _path

ROOT = Path(__file__).resolve().parent.parent


def env_with_tools():
    env = dict(os.environ)
    env["PATH"] = f"/usr/local/go/bin:{Path.home()}/.cargo/bin:" + env["PATH"]
    return env


def prepare(env):
    """Installs what the benchmarks need; returns (gosight binary, collector binary)."""
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (uprobes)")
    subprocess.run(["bash", str(ROOT / "scripts/install-deps.sh")], check=True, env=env)
    collector = subprocess.run(["bash", str(ROOT / "scripts/install-collector.sh")], check=True,
                               capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "gosight"], cwd=ROOT, env=env, check=True)
    return ROOT / "target/release/gosight", collector


def build_go_app(app, env, tags=None):
    out = ROOT / "target/go-apps/bench" / (f"{app}-{tags}" if tags else app)
    subprocess.run(["go", "build", *([f"-tags={tags}"] if tags else []), "-o", str(out), "."],
                   cwd=ROOT / "tests/go-apps" / app, env={**env, "GOTOOLCHAIN": "local"}, check=True)
    version = subprocess.run(["go", "version", str(out)], capture_output=True, text=True, env=env).stdout.split()[1]
    return out, version


def wait_for(path, needle, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        time.sleep(0.05)
    raise SystemExit(f"bench: no '{needle}' in {path} after {timeout}s:\n{Path(path).read_text()}")


def lines_with(path, needle):
    return [l for l in Path(path).read_text(errors="replace").splitlines() if needle in l]


def start_collector(work, env, procs):
    col_env = {**env, "GRPC_ENDPOINT": "127.0.0.1:24317", "HTTP_ENDPOINT": "127.0.0.1:24318",
               "OUTPUT_FILE": str(work / "traces.jsonl"), "METRICS_FILE": str(work / "metrics.jsonl")}
    log = open(work / "collector.log", "w")
    procs.append(subprocess.Popen([env["GOSIGHT_COLLECTOR"], "--config", str(ROOT / "tests/collector/config.yaml")],
                                  env=col_env, stdout=log, stderr=log))
    wait_for(work / "collector.log", "Everything is ready")
    return "http://127.0.0.1:24318"


def start_go_app(binary, work, name, procs, args=()):
    log = open(work / f"{name}.log", "w")
    p = subprocess.Popen([str(binary), "-addr", "127.0.0.1:0", *args], stdout=log, stderr=log)
    procs.append(p)
    return p, wait_for(work / f"{name}.log", "listening on").split()[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {what} does not listen on 127.0.0.1:{port}")


def launch_gosight(gosight, args, log, env, endpoint, procs):
    """gosight with its defaults and `args`, exporting OTLP http/protobuf to `endpoint`, its log in
    `log`; returns at once."""
    gs = subprocess.Popen([str(gosight), *args], stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                          env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "RUST_LOG": "info"})
    procs.append(gs)
    return gs


def start_gosight(gosight, pids, log, env, endpoint, procs, wait=("net_http_server",)):
    """gosight with its defaults on `pids` (see launch_gosight); returns once every probe named in
    `wait` is attached to every pid."""
    gs = launch_gosight(gosight, ["--pid", ",".join(str(p) for p in pids)], log, env, endpoint, procs)
    for pid in pids:
        for probe in wait:
            wait_for(log, f"pid={pid} probe=\"{probe}\" uprobes", timeout=60)
    return gs


def stop_gosight(gs):
    """SIGTERM: gosight detaches (logging each probe's hits) and exits."""
    gs.send_signal(signal.SIGTERM)
    gs.wait(timeout=30)


def wrk(url, seconds, connections, headers=()):
    """wrk's figures: (requests, requests/s, p99 ms)."""
    reqs, rps, _, p99 = wrk_latency(url, seconds, connections, headers)
    return reqs, rps, p99


def wrk_latency(url, seconds, connections, headers=()):
    """wrk's figures: (requests, requests/s, p50 ms, p99 ms)."""
    extra = [x for h in headers for x in ("-H", h)]
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
                         check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"bench: errors under load:\n{out}")

    def ms(pct):
        m = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    return reqs, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), ms(50), ms(99)


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def proc_hwm_kib(pid):
    """Peak resident memory (VmHWM)."""
    return proc_status_kib(pid, "VmHWM")


def proc_rss_kib(pid):
    return proc_status_kib(pid, "VmRSS")


def other_gosights():
    """Pids of gosight processes already running: their sockops programs would
    touch this benchmark's sockets too, with and without ours."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            stat = (comm.parent / "stat").read_text()
            if comm.read_text().strip() == "gosight" and stat.rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(comm.parent.name))
        except OSError:
            pass
    return pids


def hit_counts(line):
    """(entry hits, RET hits) of one "probe detached" line."""
    return int(re.search(r"entry_hits=(\d+)", line).group(1)), int(re.search(r"return_hits=(\d+)", line).group(1))


def hits(line):
    return sum(hit_counts(line))


def probe_hits_by_kind(log):
    """(entry hits, RET hits) summed over gosight's "probe detached" lines in `log`."""
    counts = [hit_counts(l) for l in lines_with(log, "probe detached")]
    return sum(e for e, _ in counts), sum(r for _, r in counts)


def probe_hits(log, probe=None):
    """Uprobe hits (entry + return) of gosight's "probe detached" lines in `log`: all, or one probe's."""
    return sum(hits(l) for l in lines_with(log, "probe detached") if probe is None or f'probe="{probe}"' in l)


def write_section(name, table):
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{table}\n{end}"
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else (
        "# Benchmarks\n\nEvery figure here is written by a script under `bench/`, with the command that "
        "made it. Ratios are measured side by side in one run.\n")
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return path
