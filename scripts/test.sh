#!/usr/bin/env bash
# The whole test suite: unit tests and the end-to-end tests (real Go apps, real
# uprobes, a real OpenTelemetry Collector, real PostgreSQL and MariaDB servers, a real Kafka broker, a
# real kube-apiserver for the injector,
# and a real single-node Kubernetes for the injected sidecar), then the fuzz
# targets for a bounded time. Installs what it needs first.
# Run as root (uprobes need it). With CI=true a missing prerequisite fails loudly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH
export GOSIGHT_CACHE_DIR=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}

bash scripts/install-deps.sh
# PostgreSQL and MariaDB for the SQL tests, which start servers of their own
# (tests/e2e/src/databases.rs); Debian's services stay stopped.
bash scripts/install-databases.sh
GOSIGHT_OTELCOL=$(bash scripts/install-collector.sh | tail -1)
# Apache Kafka (jars from Maven Central, run with Java 17 in KRaft mode) for the
# Kafka tests, which start a private broker each (tests/e2e/src/kafka.rs).
GOSIGHT_KAFKA_DIR=$(bash scripts/install-kafka.sh | tail -1)
export GOSIGHT_KAFKA_DIR
export GOSIGHT_OTELCOL
# Kubernetes from the Go module proxy (built once, cached): kube-apiserver, etcd
# and kubectl for the injector's integration tests, and with the controller-manager,
# scheduler, kubelet, kube-proxy, containerd and runc a whole node for
# tests/e2e/tests/kube_pods.rs (scripts/kube-node.sh starts it).
GOSIGHT_KUBE_DIR=$(bash scripts/install-kube.sh | tail -1)
export GOSIGHT_KUBE_DIR
bash scripts/install-node.sh >/dev/null
cargo build --release -p gosight
export GOSIGHT_BIN=$PWD/target/release/gosight

# The tree stays formatted and lint-free: a diff or a clippy warning fails the run
# (after the tests, which still run).
lint=0
if [[ $# -eq 0 ]]; then
    cargo fmt --all --check || { echo "test.sh: cargo fmt --check found unformatted code (run cargo fmt)"; lint=1; }
    cargo fmt --manifest-path fuzz/Cargo.toml --check || { echo "test.sh: the fuzz crate is not formatted"; lint=1; }
    cargo clippy --workspace --all-targets --release -- -D warnings || { echo "test.sh: clippy warnings"; lint=1; }
fi

# End-to-end tests start collectors, apps and gosight: one test at a time.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --workspace --release --no-fail-fast -- --test-threads=1 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
((lint)) && status=1
# Fuzz targets for the binary readers, bounded: no input may panic them. First the
# fuzz crate's unit tests (its own workspace, so not in --workspace above): the
# regression inputs and real binaries through every entry.
if [[ $# -eq 0 ]]; then
    cargo test --release --manifest-path fuzz/Cargo.toml --target-dir "$GOSIGHT_CACHE_DIR/fuzz-target" --lib 2>&1 |
        tee -a "$out"
    ((PIPESTATUS[0] == 0)) || status=1
    GOSIGHT_FUZZ_TARGET_DIR=$GOSIGHT_CACHE_DIR/fuzz-target bash fuzz/run.sh "${GOSIGHT_FUZZ_SECS:-30}" || status=1
fi
set -e
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
