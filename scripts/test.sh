#!/usr/bin/env bash
# The whole test suite: unit tests and the end-to-end tests (real Go apps, real
# uprobes, a real OpenTelemetry Collector). Installs what it needs first.
# Run as root (uprobes need it). With CI=true a missing prerequisite fails loudly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH
export GOSIGHT_CACHE_DIR=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}

bash scripts/install-deps.sh
GOSIGHT_OTELCOL=$(bash scripts/install-collector.sh | tail -1)
export GOSIGHT_OTELCOL
cargo build --release -p gosight
export GOSIGHT_BIN=$PWD/target/release/gosight

# End-to-end tests start collectors, apps and gosight: one test at a time.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --workspace --release -- --test-threads=1 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
