"""Shared pieces of gosight's benchmarks: building, starting processes, wrk, /proc
figures, and writing a section of BENCHMARKS.md between markers."""
import os
import re
import subprocess
import time
from pathlib import Path

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


def build_go_app(app, env):
    out = ROOT / "target/go-apps/bench" / app
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=ROOT / "tests/go-apps" / app,
                   env={**env, "GOTOOLCHAIN": "local"}, check=True)
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


def wrk(url, seconds, connections, headers=()):
    extra = [x for h in headers for x in ("-H", h)]
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
                         check=True, capture_output=True, text=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    if "Non-2xx" in out:
        raise SystemExit(f"bench: errors under load:\n{out}")
    return reqs, rps, float(p99.group(1)) * scale


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def hits(line):
    return int(re.search(r"entry_hits=(\d+)", line).group(1)) + int(re.search(r"return_hits=(\d+)", line).group(1))


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
