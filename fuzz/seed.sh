#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets from real Go executables and prints the
# corpus directory as its last line: one sub-directory per target, plus full/ (the
# executables) and pclntab-full/ (their whole .gopclntab), inputs too big to mutate
# that run.sh runs once.
#
# Builds tests/go-apps/httpserver (plain, -s -w, PIE, GOARCH=arm64, and with Go 1.22
# and 1.27 when those toolchains are already in the module cache) and, when its
# modules are at hand, the gRPC test server; then fuzz/seedgen turns each into small
# seeds (see fuzz/seedgen/main.go) and a few hand-written inputs are added. Nothing is
# committed: the corpus is cached under $GOSIGHT_CACHE_DIR/fuzz-corpus (default
# ~/.cache/gosight) and rebuilt only when its sources, this script or the Go
# toolchain change.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || { echo "seed.sh: go not found (install Go or run scripts/install-deps.sh)" >&2; exit 1; }

cache=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}/fuzz-corpus
key=$( {
    go version
    cat fuzz/seed.sh fuzz/seedgen/main.go offsets-db/offsets.json
    cat tests/go-apps/httpserver/*.go tests/go-apps/httpserver/go.mod
    find tests/go-apps/grpc -name '*.go' -o -name go.mod -o -name go.sum | sort | xargs cat
    grep -rh 'const [A-Z_]*: &str\|_field(' uprobes
} | sha256sum | cut -c1-16)
out=$cache/$key
if [[ -f $out/.done ]]; then
    echo "$out"
    exit 0
fi
rm -rf "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$out"

# What the probes and the itab reader look up, as the sources name them: function
# symbols (`a|b` alternatives split) and the structs whose fields they read.
names=$( {
    grep -rhoE 'const [A-Z_]+: &str = "[^"]+' uprobes | sed 's/.*= "//' | tr '|' '\n'
    grep -rhoE '_field\("[^"]+", *"[^"]+"' uprobes | sed -E 's/.*, *"//; s/"$//'
    # The itab reader's runtime structs (`itabs::FIELDS`, (struct, field) pairs).
    sed -n '/^pub const FIELDS/,/^];/p' sidecar/goexe/src/itabs.rs | sed -nE 's/^ +\("([^"]+)", "[^"]+"\),$/\1/p'
    grep -rhoE 'strukt: *"[^"]+"' uprobes | sed -E 's/.*"(.*)"/\1/'
    printf '%s\n' main.main runtime.main runtime.g
} | grep -v '^$' | sort -u | paste -sd, -)

build() { # build NAME DIR [go build args...] (environment from the caller)
    local name=$1 dir=$2
    shift 2
    if (cd "$dir" && go build -buildvcs=false -o "$work/bin/$name" "$@" .) >"$work/$name.log" 2>&1; then
        echo "seed.sh: built $name ($(stat -c %s "$work/bin/$name") bytes)" >&2
    else
        echo "seed.sh: skipped $name: $(tail -1 "$work/$name.log")" >&2
        rm -f "$work/bin/$name"
    fi
}
app=tests/go-apps/httpserver
build http "$app"
build http-sw "$app" -ldflags='-s -w'
build http-pie-sw "$app" -buildmode=pie -ldflags='-s -w'
CGO_ENABLED=0 GOARCH=arm64 build http-arm64 "$app"
CGO_ENABLED=0 GOARCH=arm64 build http-arm64-sw "$app" -ldflags='-s -w'
# Other toolchains, only if already in the module cache: Go 1.22 (textStart set in
# the pclntab header) and Go 1.27 (itabs inline in the type section).
for toolchain in go1.22.12 go1.27.4; do
    if GOTOOLCHAIN=$toolchain GOPROXY=off go version >/dev/null 2>&1; then
        GOTOOLCHAIN=$toolchain GOPROXY=off build "http-${toolchain%.*}" "$app"
    fi
done
# gRPC: build info with dependencies, gRPC functions and structs. Only from the
# module cache (GOPROXY=off), so it never waits for the network.
GOPROXY=off GOFLAGS=-mod=mod build grpc-server tests/go-apps/grpc/server
[[ -f $work/bin/http ]] || { echo "seed.sh: cannot build $app" >&2; exit 1; }

(cd fuzz/seedgen && go build -o "$work/seedgen" .)
"$work/seedgen" -out "$out" -keep "$names" -structs "$names" "$work"/bin/*
# The executables themselves, too big to mutate: run.sh runs them once.
mkdir -p "$out/full"
cp "$work"/bin/* "$out/full/"

# Hand-written inputs: build info text and offsets databases.
printf 'go1.24.3 X:boringcrypto\npath\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgoogle.golang.org/grpc\tv1.60.1\th1:abc=\n=>\tgoogle.golang.org/grpc\tv1.61.0\t\ndep\tgolang.org/x/net\tv0.20.0\t\n=>\t../net\t\t\nbuild\t-compiler=gc\nbuild\tGOARCH=amd64\n' \
    >"$out/buildinfo/text-replaced"
printf 'devel go1.27-abcdef123 Tue Jan 6 10:00:00 2026 +0000\npath\tx\n' >"$out/buildinfo/text-devel"
mkdir -p "$out/offsets_db"
cp offsets-db/offsets.json "$out/offsets_db/embedded.json"
cat >"$out/offsets_db/sample.json" <<'EOF'
{
  "format": 1,
  "_about": "seed",
  "modules": {
    "std": {
      "versions": ["go1.22.0", "go1.22.1", "go1.23rc1", "go1.23.0", "go1.23.1"],
      "structs": {
        "net/http.Request": {
          "Method": [{"from": "go1.22.0", "to": "go1.23.1", "offset": 0}],
          "Pattern": [
            {"from": "go1.22.0", "to": "go1.22.1", "absent": true},
            {"from": "go1.23rc1", "to": "go1.23.1", "offset": 248}
          ]
        },
        "runtime.g": {"goid": [{"from": "go1.22.0", "to": "go1.23.1", "offset": 152}]}
      }
    },
    "google.golang.org/grpc": {
      "versions": ["v1.60.0", "v1.61.0-0.20240102030405-abcdef012345", "v1.62.0", "v2.0.0+incompatible"],
      "structs": {
        "google.golang.org/grpc.csAttempt": {
          "t": [{"from": "v1.60.0", "to": "v1.62.0", "offset": 16}, {"from": "v2.0.0+incompatible", "to": "v2.0.0+incompatible", "absent": true}]
        }
      }
    }
  }
}
EOF
printf '{"format": 1, "replace": true, "modules": {"std": {"versions": ["go1.21", "go1.26.8"], "structs": {}}}}\n' \
    >"$out/offsets_db/replace.json"
touch "$out/.done"
echo "$out"
