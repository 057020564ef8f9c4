#!/usr/bin/env bash
# Build (once) and cache the Kubernetes control plane and node components, from the
# Go module proxy only (no container images, no release downloads): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
# kubectl. The injector's API-server test uses the first two; tests/e2e/tests/kube_pods.rs
# runs a whole single-node cluster from them (scripts/kube-node.sh).
#
# Usage:   KUBE_DIR=$(bash scripts/install-kube.sh | tail -1)
#          "$KUBE_DIR"/kube-apiserver, "$KUBE_DIR"/kubelet, ...
#
# The last line of stdout is the directory holding the binaries; all logs go to
# stderr. A warm cache answers at once; a binary already built is not rebuilt. A
# cold build compiles all seven from source: about 25 minutes on 2 shared cores
# (kube-apiserver alone ~11 min; the others share most of its packages through the
# Go build cache), most of it CPU; the Go module cache grows by several hundred MiB.
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
BINARIES=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf 'install-kube: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

runs() { # binary: does the cached one run?
    case $1 in
    etcd) "$DEST/etcd" --version >/dev/null 2>&1 ;;
    kubectl) "$DEST/kubectl" version --client >/dev/null 2>&1 ;;
    *) "$DEST/$1" --version >/dev/null 2>&1 ;;
    esac
}
is_warm() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x $DEST/$b ]] && runs "$b" || return 1; done
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
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
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
for b in "${BINARIES[@]}"; do
    if [[ -x $DEST/$b ]] && runs "$b"; then continue; fi
    case $b in
    etcd) build etcd ./cmd/etcd ;;
    *) build "$b" "k8s.io/kubernetes/cmd/$b" ;;
    esac
    # Install atomically: each binary appears only when complete and running.
    cp "$WORK/bin/$b" "$DEST/$b.tmp.$$"
    mv -f "$DEST/$b.tmp.$$" "$DEST/$b"
    runs "$b" || die "the built $b does not run"
done
log "built in $((SECONDS - start))s: $DEST"
printf '%s\n' "$DEST"
