#!/usr/bin/env bash
# Build (once) and cache an OpenTelemetry Collector for gosight's end-to-end
# tests, using the official OpenTelemetry Collector Builder (ocb) and the
# manifest in tests/collector/builder-config.yaml.
#
# Usage:   COL=$(bash scripts/install-collector.sh | tail -1)
#
# The last line of stdout is the path of the collector binary; all logs go to
# stderr. A warm cache answers in well under a second; a cold build downloads
# modules from the Go module proxy and takes about two minutes on 2 cores
# (seconds if the Go module and build caches are already warm).
#
# Environment:
#   GOSIGHT_CACHE_DIR   cache root (default: $HOME/.cache/gosight)
set -euo pipefail

# Collector release series. Must match the component versions in the manifest.
OTELCOL_VERSION=v0.159.0
BUILDER_MODULE=go.opentelemetry.io/collector/cmd/builder

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MANIFEST=$REPO_ROOT/tests/collector/builder-config.yaml
CACHE=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}
DEST=$CACHE/otelcol/$OTELCOL_VERSION
BIN=$DEST/otelcol-gosight
# Hash of the manifest the cached binary was built from, so that editing the
# manifest (e.g. adding a component) triggers a rebuild.
STAMP=$BIN.manifest.sha256

log() { printf 'install-collector: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -f $MANIFEST ]] || die "manifest not found: $MANIFEST"
want_sum=$(sha256sum "$MANIFEST" | cut -d' ' -f1)

is_warm() {
    [[ -x $BIN && -f $STAMP && "$(cat "$STAMP")" == "$want_sum" ]] &&
        "$BIN" --version >/dev/null 2>&1
}

if is_warm; then
    log "cached: $("$BIN" --version 2>/dev/null | head -1)"
    printf '%s\n' "$BIN"
    exit 0
fi

# --- cold path ----------------------------------------------------------------
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build the collector)"

# Every component in the manifest must be of the same release series.
bad=$(grep -E '^[[:space:]]*-?[[:space:]]*gomod:' "$MANIFEST" | grep -vE "[[:space:]]${OTELCOL_VERSION//./\\.}[[:space:]]*\$" || true)
[[ -z $bad ]] || die "manifest components not at $OTELCOL_VERSION (update the manifest or OTELCOL_VERSION):
$bad"

mkdir -p "$DEST"
# Serialise concurrent callers (parallel test jobs) on one cache directory.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEST/.lock"
    if ! flock -n 9; then
        log "another build is running; waiting for $DEST/.lock"
        flock 9
    fi
    if is_warm; then # someone else built it while we waited
        printf '%s\n' "$BIN"
        exit 0
    fi
fi

WORK=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Check the version exists on the module proxy, so a bad bump fails clearly.
if ! (cd "$WORK" && go list -m "$BUILDER_MODULE@$OTELCOL_VERSION" >/dev/null 2>&1); then
    newest=$(cd "$WORK"; go list -m -versions "$BUILDER_MODULE" 2>/dev/null | tr ' ' '\n' | tail -1) || true
    die "$BUILDER_MODULE@$OTELCOL_VERSION not found on the module proxy (newest: ${newest:-unknown})"
fi

start=$SECONDS
BUILDER=$DEST/bin/builder
if ! [[ -x $BUILDER ]] || ! "$BUILDER" version 2>/dev/null | grep -qF "$OTELCOL_VERSION"; then
    log "installing $BUILDER_MODULE@$OTELCOL_VERSION into $DEST/bin"
    (cd "$WORK" && GOBIN=$DEST/bin go install "$BUILDER_MODULE@$OTELCOL_VERSION") >&2
fi

# The builder takes the output directory only from the manifest: write a copy
# with dist.output_path pointing into our scratch directory.
GEN=$WORK/builder-config.yaml
awk -v out="$WORK/dist" '
    { print }
    /^dist:[[:space:]]*$/ { printf "  output_path: %s\n", out }
' "$MANIFEST" >"$GEN"
grep -q '^  output_path:' "$GEN" || die "could not set dist.output_path (no top-level dist: in manifest?)"

log "building collector (this takes a few minutes on a cold Go cache)"
# ocb strips the binary (-s -w) unless dist.debug_compilation is set.
(cd "$WORK" && "$BUILDER" --config="$GEN") >&2 || die "ocb build failed"

built=$WORK/dist/otelcol-gosight
[[ -x $built ]] || die "ocb did not produce $built"
"$built" --version >&2 || die "built collector does not run"

# Install atomically: the binary appears only when complete.
cp "$built" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
printf '%s\n' "$want_sum" >"$STAMP"
log "built in $((SECONDS - start))s: $BIN"
printf '%s\n' "$BIN"
