#!/usr/bin/env bash
# Build (once) and cache a real kube-apiserver, etcd and kubectl for the injector's
# integration test, from the Go module proxy only (no container images, no release
# downloads).
#
# Usage:   KUBE_DIR=$(bash scripts/install-kube.sh | tail -1)
#          "$KUBE_DIR"/kube-apiserver, "$KUBE_DIR"/etcd, "$KUBE_DIR"/kubectl
#
# The last line of stdout is the directory holding the three binaries; all logs go
# to stderr. A warm cache answers at once. A cold build compiles the three from
# source: about 15 minutes on 2 shared cores (kube-apiserver alone ~11 min with
# `go build -p 1`), most of it CPU; the Go module cache grows by several hundred MiB.
#
# How: k8s.io/kubernetes points its staging modules (k8s.io/api, k8s.io/apiserver,
# ...) at ./staging/src with replace directives, which `go install pkg@version`
# refuses. So we write a small wrapper module that requires k8s.io/kubernetes at
# KUBE_VERSION and replaces every staging module with its published v0.N.M twin
# (the list is read from kubernetes' own go.mod, so a version bump needs no edit
# here). In that module `go build k8s.io/kubernetes/cmd/kube-apiserver` and
# `.../cmd/kubectl` work as-is; etcd is a three-line main over
# go.etcd.io/etcd/server/v3/etcdmain at the version kubernetes itself pins.
#
# Environment:
#   GOSIGHT_CACHE_DIR   cache root (default: $HOME/.cache/gosight)
#   KUBE_VERSION        Kubernetes release to build (default below)
#   KUBE_BUILD_JOBS     `go build -p` value (default 1: the machine is shared)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
JOBS=${KUBE_BUILD_JOBS:-1}
CACHE=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}
DEST=$CACHE/kube/$KUBE_VERSION
BINARIES=(kube-apiserver etcd kubectl)

log() { printf 'install-kube: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_warm() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x $DEST/$b ]] || return 1; done
    "$DEST/kube-apiserver" --version >/dev/null 2>&1 &&
        "$DEST/etcd" --version >/dev/null 2>&1 &&
        "$DEST/kubectl" version --client >/dev/null 2>&1
}

if is_warm; then
    log "cached: $("$DEST/kube-apiserver" --version 2>/dev/null), etcd $("$DEST/etcd" --version 2>/dev/null | head -1 | awk '{print $NF}')"
    printf '%s\n' "$DEST"
    exit 0
fi

# --- cold path ----------------------------------------------------------------
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build kube-apiserver, etcd and kubectl)"

mkdir -p "$DEST"
# Serialise concurrent callers on one cache directory.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEST/.lock"
    if ! flock -n 9; then
        log "another build is running; waiting for $DEST/.lock"
        flock 9
    fi
    if is_warm; then
        printf '%s\n' "$DEST"
        exit 0
    fi
fi

WORK=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

# The staging modules and the etcd version come from kubernetes' own go.mod,
# fetched by go itself (so GOPROXY, GOFLAGS and GONOSUMDB settings apply).
kube_mod=$( (cd "$WORK" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" || true) | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $kube_mod ]] || die "k8s.io/kubernetes@$KUBE_VERSION not found on the module proxy"
cp "$kube_mod" "$WORK/kubernetes.mod"
staging_version=v0.${KUBE_VERSION#v1.}
mapfile -t staging < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { print $1 }' "$WORK/kubernetes.mod")
((${#staging[@]} > 10)) || die "could not read the staging modules from kubernetes' go.mod"
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$WORK/kubernetes.mod")
[[ -n $etcd_version ]] || die "kubernetes' go.mod does not pin go.etcd.io/etcd/server/v3"
go_version=$(awk '$1 == "go" { print $2; exit }' "$WORK/kubernetes.mod")
log "kubernetes $KUBE_VERSION (go $go_version): ${#staging[@]} staging modules at $staging_version, etcd $etcd_version"

{
    echo "module gosight.dev/kube-build"
    echo
    echo "go $go_version"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $KUBE_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
    echo ")"
} >"$WORK/go.mod"
mkdir -p "$WORK/cmd/etcd" "$WORK/bin"
cat >"$WORK/cmd/etcd/main.go" <<'EOF'
// etcd server, the same entry point as etcd's own binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
cat >"$WORK/tools.go" <<'EOF'
//go:build tools

// Keeps the kubernetes commands in the module graph for `go mod tidy`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF

cd "$WORK"
log "resolving modules (go mod tidy)"
GOFLAGS=-mod=mod go mod tidy >&2 || die "go mod tidy failed"

ldflags="-s -w"
# kube-apiserver/kubectl report their version from these variables.
vpkg=k8s.io/component-base/version
ldflags+=" -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
build() { # output package
    local t0=$SECONDS
    log "building $1 (go build -p $JOBS)"
    CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$WORK/bin/$1" "$2" >&2 ||
        die "building $1 failed"
    log "built $1 in $((SECONDS - t0))s"
}
build etcd ./cmd/etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kubectl k8s.io/kubernetes/cmd/kubectl

"$WORK/bin/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$WORK/bin/etcd" --version >&2 || die "the built etcd does not run"
"$WORK/bin/kubectl" version --client >&2 || die "the built kubectl does not run"

# Install atomically: each binary appears only when complete.
for b in "${BINARIES[@]}"; do
    cp "$WORK/bin/$b" "$DEST/$b.tmp.$$"
    mv -f "$DEST/$b.tmp.$$" "$DEST/$b"
done
log "built in $((SECONDS - start))s: $DEST"
printf '%s\n' "$DEST"
