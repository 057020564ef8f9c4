"""Lifecycle figures (issue 14, item 2): 20 targets started at once, a target
restarted while ten others are being detached, SIGTERM right after requests.

Runs the end-to-end test that measures them against the real gosight, real Go
processes and a real collector (tests/e2e/tests/lifecycle.rs,
`attach_and_detach_stay_off_the_critical_path`) ROUNDS times and prints its
figures with their medians. Wall-clock figures: the machine's load is printed
beside them. Does not write BENCHMARKS.md.

    sudo python3 bench/lifecycle.py [ROUNDS]
"""
import re
import statistics
import subprocess
import sys

from common import ROOT, env_with_tools, prepare

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
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    env = env_with_tools()
    _, collector = prepare(env)
    env.update({"CI": "true", "GOSIGHT_OTELCOL": collector})
    seen = {k: [] for k in FIGURES}
    for r in range(rounds):
        load = open("/proc/loadavg").read().split()[0]
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
    for k, v in seen.items():
        if v:
            print(f"  {k}: {statistics.median(v):.0f}  ({', '.join(f'{x:.0f}' for x in v)})")


if __name__ == "__main__":
    main()
