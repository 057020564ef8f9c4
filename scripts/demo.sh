#!/usr/bin/env bash
# The main job, on this machine: builds gosight and the demo Go HTTP server
# (tests/go-apps/httpserver), starts the server, attaches gosight to it, sends a
# few requests and prints the spans gosight produced (console exporter).
# Set OTEL_TRACES_EXPORTER=otlp and OTEL_EXPORTER_OTLP_ENDPOINT to send them to
# a collector instead. Needs root (uprobes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (uprobes need CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)" >&2; exit 1; }

bash scripts/install-deps.sh
cargo build --release -p gosight
mkdir -p target/go-apps/demo
(cd tests/go-apps/httpserver && GOTOOLCHAIN=local go build -o ../../../target/go-apps/demo/demo-httpserver .)

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
./target/go-apps/demo/demo-httpserver -addr 127.0.0.1:0 >"$work/app.log" 2>&1 &
app=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/app.log" && break; sleep 0.1; done
addr=$(awk '/listening on/ {print $3}' "$work/app.log")
echo "demo: Go server pid $app on $addr" >&2

OTEL_TRACES_EXPORTER=${OTEL_TRACES_EXPORTER:-console} OTEL_METRICS_EXPORTER=${OTEL_METRICS_EXPORTER:-none} \
    OTEL_BSP_SCHEDULE_DELAY=${OTEL_BSP_SCHEDULE_DELAY:-500} \
    ./target/release/gosight --pid "$app" 2>"$work/gosight.log" &
gs=$!
for _ in $(seq 200); do grep -q "probe attached pid=$app" "$work/gosight.log" && break; sleep 0.1; done
cat "$work/gosight.log" >&2

for path in /users/42 /sleep/50 /missing /fail /deep/500 /health; do
    curl -s -o /dev/null -w "demo: GET $path -> %{http_code}\n" "http://$addr$path" >&2
done
sleep 1.5
kill -TERM "$gs"; wait "$gs" || true
tail -n +1 "$work/gosight.log" | grep -v 'probe attached\|gosight starting\|target found' >&2 || true
