"""Memory in real pods: the injected sidecar (steady and peak resident memory, in a
real pod on the node scripts/kube-node.sh starts) and the injector under 6,000
stalled connections. Runs the two tests that measure them and writes their figures
into BENCHMARKS.md.

    python3 bench/kube_memory.py [--no-write]     (as root)
"""
import argparse
import re
import subprocess
import sys
import time

from common import ROOT, env_with_tools, write_section


def run(env, args):
    out = subprocess.run(["cargo", "test", "--release", *args, "--", "--nocapture"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        sys.stderr.write(text[-5000:])
        raise SystemExit(f"bench: cargo test {' '.join(args)} failed")
    return text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    env = env_with_tools()
    env["CI"] = "true"
    collector = subprocess.run(["bash", str(ROOT / "scripts/install-collector.sh")], check=True,
                               capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    env["GOSIGHT_OTELCOL"] = collector
    pods = run(env, ["-p", "gosight-e2e", "--test", "kube_pods"])
    injector = run(env, ["-p", "injector", "--test", "stalled_clients"])

    mib = lambda b: int(b) / (1 << 20)  # noqa: E731
    rows = []
    for m in re.finditer(r"sidecar memory: pod=(\S+) steady_resident_bytes=(\d+) peak_resident_bytes=(\d+) "
                         r"cgroup_peak_with_page_cache_bytes=(\d+)", pods):
        pod, steady, peak, cgroup = m.groups()
        rows.append(f"| {pod} | {mib(steady):.1f} | {mib(peak):.1f} | {mib(cgroup):.1f} |")
    if not rows:
        raise SystemExit("bench: the kube test printed no memory figures")
    inj = re.search(r"stalled connections opened: (\d+) plain \+ (\d+) after TLS; reviews answered (\d+), "
                    r"failed (\d+); injector peak RSS ([\d.]+) MiB", injector)
    table = "\n".join([
        "## Memory in real pods: the injected sidecar, and the injector under stalled clients",
        "",
        "Command: `python3 bench/kube_memory.py` (as root; runs `tests/e2e/tests/kube_pods.rs` and "
        f"`injector/tests/stalled_clients.rs`). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM: "
        "Kubernetes 1.36.3, containerd 2.4.2, runc 1.5.3, kernel 6.18. Sidecar: gosight in each pod of the test "
        "(web: grpc-go HTTP bridge + client, greeter: gRPC server; all four Go probes, propagation and the socket "
        "probe on), after 20 traced requests. Steady = the container's memory cgroup `total_rss + "
        "total_mapped_file`; peak = gosight's VmHWM (attach included); the cgroup peak also counts the page cache "
        "of the files gosight read (the targets' executables, BTF), which the kernel reclaims under the limit.",
        "",
        "| pod | sidecar steady (MiB) | sidecar peak resident (MiB) | cgroup peak incl. page cache (MiB) |",
        "|---|---|---|---|",
        *rows,
        "",
        "The injector's defaults for the sidecar (deploy/deployment.yaml, `GOSIGHT_SIDECAR_MEMORY_REQUEST`/`_LIMIT`) "
        "are set from these: request 64Mi (about 1.4× steady), limit 256Mi (over 2× the peak resident).",
        "",
        f"Injector (its limit in deploy/: 128Mi): {inj.group(1)} connections stalled before and {inj.group(2)} after "
        f"the TLS handshake while reviews keep coming: {inj.group(3)} reviews answered, {inj.group(4)} failed, "
        f"peak RSS {inj.group(5)} MiB.",
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('kube_memory', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
