#!/usr/bin/env python3
"""Benchmark: what one uprobe hit costs by itself, by the instruction under the probe.

tests/go-apps/hitcost calls one non-inlined function in a tight loop and reports the
calling thread's CPU time (user + system: a uprobe's traps are system time of the
thread that hits them, so the figure does not depend on other load on the machine as
wall-clock time does). `hitcost` (uprobes/examples/hitcost.rs) lists each function's
instructions with their file offsets and the site gosight's entry probe uses, and
attaches a bare uprobe (uprobes/bare/probe.bpf.c: `return 0`) at one of them. Each
cell is a batch of calls with the probe on and a batch with it off, back to back, in
interleaved rounds; the cost per hit is the difference per call, median over rounds.

Then, per supported Go version (go1.22 ... go1.27, fetched through the module proxy by
GOTOOLCHAIN), the cost at the function's entry (the stack check, where entry probes sat)
against the site gosight now picks (`gosight_goexe::entry_probe_offset`: the jump after
the stack check, which Linux emulates instead of single-stepping).

`--profile KIND` instead records where the time of a hit goes: `perf record -a -g -e
cpu-clock` while the loop runs with the probe on the instruction KIND names (a prefix
of a row of the table, e.g. `ret`, `jbe`), then the app's own samples by symbol.

Run as root:  python3 bench/hit_cost.py [--rounds 3] [--calls 20000] [--versions go1.22.12,local]
              python3 bench/hit_cost.py --profile ret [--seconds 4]
Other scripts:  from hit_cost import bare_hit_cost; bare_hit_cost() -> {kind: ns per hit}
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests/go-apps/hitcost"
TOOL = ROOT / "target/release/examples/hitcost"

# (kind, function the loop calls, symbol, mnemonic of the probed instruction, which one)
SITES = [
    ("cmp rsp,[r14+0x10] (stack check: the entry)", "small", "main.small", "Cmp", 0),
    ("jbe after the stack check", "small", "main.small", "Jbe", 0),
    ("push rbp", "small", "main.small", "Push", 0),
    ("mov rbp,rsp", "small", "main.small", "Mov", 0),
    ("sub rsp,N", "small", "main.small", "Sub", 0),
    ("call (in the body)", "small", "main.small", "Call", 0),
    ("add rsp,N (epilogue)", "small", "main.small", "Add", 0),
    ("pop rbp (epilogue)", "small", "main.small", "Pop", 0),
    ("ret", "small", "main.small", "Ret", 0),
    ("lea r12,[rsp-N] (big-frame stack check: the entry)", "big", "main.big", "Lea", 0),
    ("jbe after lea r12 / cmp r12", "big", "main.big", "Jbe", 0),
    ("lea (frameless leaf: the entry)", "leaf", "main.leaf", "Lea", 0),
    ("ret (frameless leaf)", "leaf", "main.leaf", "Ret", 0),
    ("nop (0x90)", "asmNop", "main.asmNop.abi0", "Nop", 0),
    ("nop5 (0f 1f 44 00 00)", "asmNop5", "main.asmNop5.abi0", "Nop", 0),
    ("jmp rel8", "asmJmp", "main.asmJmp.abi0", "Jmp", 0),
    ("call rel32", "asmCall", "main.asmCall.abi0", "Call", 0),
    ("push rbp (alone)", "asmPush", "main.asmPush.abi0", "Push", 0),
    ("mov rbx,rax (alone)", "asmMov", "main.asmMov.abi0", "Mov", 0),
]

# Go versions whose prologues the per-version table compares ("local" = the go on PATH).
VERSIONS = ["go1.22.12", "go1.23.12", "go1.24.13", "go1.25.14", "local", "go1.27.4"]


def tools_env():
    env = dict(os.environ)
    env["PATH"] = f"/usr/local/go/bin:{Path.home()}/.cargo/bin:" + env["PATH"]
    return env


_built_tool = []


def build(toolchain="local", env=None):
    """Builds the Go app with `toolchain` and the hitcost tool; returns (app, go version)."""
    env = env or tools_env()
    if not _built_tool:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "gosight-uprobes", "--example", "hitcost"],
                       cwd=ROOT, env=env, check=True)
        _built_tool.append(TOOL)
    out = ROOT / "target/go-apps/bench" / f"hitcost-{toolchain}"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=APP, env={**env, "GOTOOLCHAIN": toolchain}, check=True)
    version = subprocess.run(["go", "version", str(out)], capture_output=True, text=True, env=env).stdout.split()[1]
    return out, version


def sites(app, symbols):
    """{symbol: {"entry", "entry_probe", "returns", "insns": [(offset, mnemonic)]}} from `hitcost sites`."""
    text = subprocess.run([str(TOOL), "sites", str(app), *symbols], capture_output=True, text=True,
                          check=True).stdout
    found, current = {}, None
    for line in text.splitlines():
        words = line.split()
        if words[0] == "FUNCTION":
            fields = dict(w.split("=", 1) for w in words[2:])
            current = found[words[1]] = {
                "entry": int(fields["entry"], 16), "entry_probe": int(fields["entry_probe"], 16),
                "returns": [int(r, 16) for r in fields["returns"].split(",") if r], "insns": []}
        elif words[0] == "INSN":
            current["insns"].append((int(words[1], 16), words[3]))
    return found


def offset_of(found, symbol, mnemonic, nth):
    matches = [off for off, m in found[symbol]["insns"] if m == mnemonic]
    if len(matches) <= nth:
        raise SystemExit(f"hit_cost: no {mnemonic} #{nth} in {symbol}: {found[symbol]['insns']}")
    return matches[nth]


class Line:
    """A child process spoken to one line at a time."""

    def __init__(self, argv, ready):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.p.stdout.readline()
        if not first.startswith(ready):
            raise SystemExit(f"hit_cost: {argv[0]} said {first!r}")

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        answer = self.p.stdout.readline().strip()
        if not answer or answer.startswith(("ERROR", "error")):
            raise SystemExit(f"hit_cost: {line!r} -> {answer!r}")
        return answer

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def measure(app, cells, rounds, calls):
    """cells: [(key, function to call, file offset)]. Returns {key: (ns per hit, wall ns per hit)},
    medians over rounds of (probe on - probe off) per call; on and off alternate order by round."""
    go = Line([str(app)], "ready")
    tool = Line([str(TOOL), "attach", str(go.p.pid)], "ready")
    added = {key: ([], []) for key, _, _ in cells}

    def batch(function):
        _, _, n, wall, cpu = go.ask(f"run {function} {calls}").split()
        return int(cpu) / int(n), int(wall) / int(n)

    try:
        for function in {c[1] for c in cells}:
            batch(function)  # warm up
        for r in range(rounds):
            for key, function, offset in cells:
                results = {}
                for state in (("on", "off") if r % 2 == 0 else ("off", "on")):
                    if state == "on":
                        tool.ask(f"on {offset:x}")
                    results[state] = batch(function)
                    if state == "on":
                        tool.ask("off")
                added[key][0].append(results["on"][0] - results["off"][0])
                added[key][1].append(results["on"][1] - results["off"][1])
    finally:
        tool.close()
        go.close()
    return {key: (statistics.median(cpu), statistics.median(wall)) for key, (cpu, wall) in added.items()}


def bare_hit_cost(rounds=3, calls=20000, toolchain="local"):
    """{instruction kind: added CPU ns per hit of a bare uprobe}, for the table in bench/cost.py."""
    app, _ = build(toolchain)
    found = sites(app, sorted({s[2] for s in SITES}))
    cells = [(kind, fn, offset_of(found, sym, mn, nth)) for kind, fn, sym, mn, nth in SITES]
    return {kind: cpu for kind, (cpu, _) in measure(app, cells, rounds, calls).items()}


def per_version(versions, rounds, calls):
    """Per Go version: hit cost at the entry vs at gosight's entry probe site, for main.small and main.big."""
    rows = []
    for toolchain in versions:
        app, version = build(toolchain)
        found = sites(app, ["main.small", "main.big"])
        cells = []
        for fn, sym in (("small", "main.small"), ("big", "main.big")):
            f = found[sym]
            cells.append(((sym, "entry"), fn, f["entry"]))
            cells.append(((sym, "probe site"), fn, f["entry_probe"]))
            cells.append(((sym, "ret"), fn, f["returns"][0]))
        got = measure(app, cells, rounds, calls)
        for sym in ("main.small", "main.big"):
            f = found[sym]
            site = dict(f["insns"]).get(f["entry_probe"], "?")
            entry, new, ret = (got[(sym, k)][0] for k in ("entry", "probe site", "ret"))
            rows.append((version, sym, f"{dict(f['insns'])[f['entry']]} -> {site} (+{f['entry_probe'] - f['entry']})",
                         entry, new, ret))
    return rows


def profile(prefix, seconds):
    """perf profile of the Go loop with the bare probe on the first site whose kind starts with `prefix`."""
    app, version = build("local")
    kind, fn, sym, mn, nth = next(s for s in SITES if s[0].startswith(prefix))
    offset = offset_of(sites(app, [sym]), sym, mn, nth)
    data = Path(tempfile.mkdtemp(prefix="hitcost-")) / "perf.data"
    go = Line([str(app)], "ready")
    tool = Line([str(TOOL), "attach", str(go.p.pid)], "ready")
    try:
        tool.ask(f"on {offset:x}")
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", "20000", "-o",
                                 str(data), "--", "sleep", str(seconds)], stderr=subprocess.DEVNULL)
        while perf.poll() is None:
            go.ask(f"run {fn} 20000")
        tool.ask("off")
    finally:
        tool.close()
        go.close()
    print(f"\nWhere a hit's time goes: bare probe on {kind} ({version}); the app's samples, by symbol")
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--comm", app.name,
                             "--percentage", "relative", "--sort", "dso,sym", "-g", "none", "--stdio",
                             "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    print("\n".join(l for l in report.splitlines() if l.strip() and not l.startswith("#")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--versions", default=",".join(VERSIONS),
                    help="Go toolchains for the per-version table ('' to skip it)")
    ap.add_argument("--profile", metavar="KIND", help="profile one site instead (a prefix of a table row)")
    ap.add_argument("--seconds", type=float, default=4)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (uprobes)")
    if args.profile:
        return profile(args.profile, args.seconds)

    app, version = build("local")
    found = sites(app, sorted({s[2] for s in SITES}))
    cells = [(kind, fn, offset_of(found, sym, mn, nth)) for kind, fn, sym, mn, nth in SITES]
    got = measure(app, cells, args.rounds, args.calls)
    print(f"\nBare uprobe hit cost by instruction under the probe ({version}, {args.calls} calls per batch, "
          f"median of {args.rounds} interleaved rounds; added per call, probe on - off)")
    print(f"{'instruction under the probe':52} {'CPU us/hit':>10} {'wall us/hit':>11}")
    for kind, *_ in SITES:
        cpu, wall = got[kind]
        print(f"{kind:52} {cpu / 1000:10.2f} {wall / 1000:11.2f}")

    versions = [v for v in args.versions.split(",") if v]
    if versions:
        rows = per_version(versions, args.rounds, args.calls)
        print("\nEntry probe: hit cost at the entry (before) vs at gosight's entry probe site (now), "
              "and at a RET; CPU us per hit")
        print(f"{'go':10} {'function':11} {'site chosen':28} {'entry':>7} {'site':>7} {'gain':>6} {'ret':>7}")
        for version, sym, choice, entry, new, ret in rows:
            gain = 1 - new / entry if entry > 0 else 0
            print(f"{version:10} {sym:11} {choice:28} {entry / 1000:7.2f} {new / 1000:7.2f} {gain:6.0%} "
                  f"{ret / 1000:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
