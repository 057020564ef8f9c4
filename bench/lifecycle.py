"""Lifecycle figures (issue 14, item 2): 20 targets started at once, a target
restarted while ten others are being detached, SIGTERM right after requests.

Runs the end-to-end test that measures them against the real gosight, real Go
processes and a real collector (tests/e2e/tests/lifecycle.rs,
`attach_and_detach_stay_off_the_critical_path`) ROUNDS times and prints its
figures with their medians. Wall-clock figures: the machine's load is printed
beside them. Writes the medians into BENCHMARKS.md with the command that made them
(`--no-write`: print only).

    sudo python3 bench/lifecycle.py [ROUNDS] [--no-write]
"""
import re
import statistics
import subprocess
import sys
import time

from common import ROOT, env_with_tools, prepare, write_section

FIGURES = {
    "20 at once, median attach (ms)": r"attached after median (\d+) ms",
    "20 at once, last attach (ms)": r"max (\d+) ms",
    "gosight CPU per attach (ms)": r"\((\d+) ms of gosight CPU each\)",
    "restart traced after launch, 10 detaching (ms)": r"restart traced (\d+) ms",
    "SIGTERM to exit (ms)": r"SIGTERM to exit (\d+) ms",
    "SIGTERM: kernel detach floor (ms)": r"uprobes in (\d+) ms",
    "SIGTERM: uprobes detached": r"detached (\d+) uprobes",
    "RSS idle (KiB)": r"RSS idle (\d+) KiB",
    "RSS 20 targets (KiB)": r"20 targets (\d+) KiB",
    "RSS 10 targets after 11 exits (KiB)": r"after 11 exits (\d+) KiB",
}


def main():
    args = [a for a in sys.argv[1:] if a != "--no-write"]
    rounds = int(args[0]) if args else 3
    loads = []
    env = env_with_tools()
    _, collector = prepare(env)
    env.update({"CI": "true", "GOSIGHT_OTELCOL": collector})
    seen = {k: [] for k in FIGURES}
    for r in range(rounds):
        load = open("/proc/loadavg").read().split()[0]
        loads.append(load)
        out = subprocess.run(
            ["cargo", "test", "--release", "-q", "-p", "gosight-e2e", "--test", "lifecycle", "--",
             "--test-threads=1", "--nocapture", "attach_and_detach_stay_off_the_critical_path"],
            cwd=ROOT, env=env, capture_output=True, text=True)
        text = "\n".join(l for l in out.stdout.splitlines() if l.startswith("lifecycle:"))
        print(f"round {r + 1} (load {load}, test {'passed' if out.returncode == 0 else 'FAILED'}):\n{text}")
        for k, pat in FIGURES.items():
            m = re.search(pat, text)
            if m:
                seen[k].append(float(m.group(1)))
    print("\nmedians over rounds:")
    rows = []
    for k, v in seen.items():
        if v:
            print(f"  {k}: {statistics.median(v):.0f}  ({', '.join(f'{x:.0f}' for x in v)})")
            rows.append(f"| {k} | {statistics.median(v):.0f} | {', '.join(f'{x:.0f}' for x in v)} |")
    if "--no-write" in sys.argv or not rows:
        return
    table = "\n".join([
        "## Lifecycle: attaching and detaching targets, SIGTERM",
        "",
        f"Command: `python3 bench/lifecycle.py {rounds}` (as root). Measured {time.strftime('%Y-%m-%d')} on this "
        "project's 2-core VM: tests/e2e/tests/lifecycle.rs `attach_and_detach_stay_off_the_critical_path` (real "
        "gosight, real httpserver processes, a real collector) run once per round; wall-clock figures, load average "
        f"at each round's start {', '.join(loads)}. A uprobe's detach costs ~100 ms in the kernel (ARCHITECTURE.md, "
        "Lifecycle), the floor of every figure that detaches.",
        "",
        "| figure | median | rounds |",
        "|---|---|---|",
        *rows,
    ])
    print(f"bench: wrote {write_section('lifecycle', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
