#!/usr/bin/env bash
# Installs (once) what a Kubernetes node needs besides the kube binaries
# (scripts/install-kube.sh): a CRI runtime and CNI networking.
#
#   containerd 2.x  built from the Go module proxy (Debian ships 1.6; kubelet 1.36
#                   needs 2.x): containerd, containerd-shim-runc-v2 and ctr, cached
#   runc 1.5        built from the Go module proxy with seccomp (cgo, Debian's
#                   libseccomp-dev): Debian's runc 1.1.5 fails on this kernel
#                   ("can't get final child's PID from pipe: EOF") for every pod
#   CNI             Debian package containernetworking-plugins (bridge,
#                   host-local, loopback, portmap in /usr/lib/cni)
#   iptables        Debian package, for kube-proxy's Service rules; conntrack for
#                   its stale-entry cleanup
#
# Usage:   NODE_DIR=$(bash scripts/install-node.sh | tail -1)
#          "$NODE_DIR"/containerd, "$NODE_DIR"/containerd-shim-runc-v2, "$NODE_DIR"/ctr,
#          "$NODE_DIR"/runc
#
# The last line of stdout is the directory holding the containerd binaries; logs
# go to stderr. A cold build takes about 3 minutes on 2 cores.
#
# Environment:
#   GOSIGHT_CACHE_DIR    cache root (default: $HOME/.cache/gosight)
#   CONTAINERD_VERSION   containerd release to build (default below)
#   RUNC_VERSION         runc release to build (default below)
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
CACHE=${GOSIGHT_CACHE_DIR:-$HOME/.cache/gosight}
DEST=$CACHE/containerd/$CONTAINERD_VERSION-runc-$RUNC_VERSION
BINARIES=(containerd containerd-shim-runc-v2 ctr runc)

log() { printf 'install-node: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
[[ -f /usr/include/seccomp.h ]] || need+=(libseccomp-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
if ((${#need[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing packages ${need[*]}: run as root or install them"
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

is_warm() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x $DEST/$b ]] || return 1; done
    "$DEST/containerd" --version >/dev/null 2>&1 && "$DEST/runc" --version >/dev/null 2>&1
}
if is_warm; then
    log "cached: $("$DEST/containerd" --version); $("$DEST/runc" --version | head -1)"
    printf '%s\n' "$DEST"
    exit 0
fi

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    PATH=/usr/local/go/bin:$PATH
fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build containerd)"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if is_warm; then
    printf '%s\n' "$DEST"
    exit 0
fi
WORK=$(mktemp -d "$DEST/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS
cd "$WORK"
# A wrapper module: containerd's commands built at the release, with its own
# dependency versions (its go.mod, read by `go mod tidy` through the require).
cat >go.mod <<EOF
module gosight.dev/containerd-build

go 1.24

require github.com/containerd/containerd/v2 $CONTAINERD_VERSION
EOF
cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
EOF
log "resolving containerd $CONTAINERD_VERSION (go mod tidy)"
GOFLAGS=-mod=mod go mod tidy >&2 || die "go mod tidy failed"
vpkg=github.com/containerd/containerd/v2/version
ldflags="-s -w -X $vpkg.Version=$CONTAINERD_VERSION -X $vpkg.Revision=gosight-build"
for b in containerd containerd-shim-runc-v2 ctr; do
    log "building $b"
    # No cgo: the btrfs/devmapper/zfs snapshotters (the only cgo users) are left out;
    # pods use overlayfs.
    CGO_ENABLED=0 go build -p 2 -trimpath -tags "no_btrfs no_devmapper no_zfs urfave_cli_no_docs" \
        -ldflags "$ldflags" -o "bin/$b" "github.com/containerd/containerd/v2/cmd/$b" >&2 ||
        die "building $b failed"
done
"bin/containerd" --version >&2 || die "the built containerd does not run"
# runc: its own module (its dependency versions), with cgo (nsenter is C) and
# the seccomp tag (the runtime's default seccomp profile needs it).
mkdir runc
cat >runc/go.mod <<EOF
module gosight.dev/runc-build

go 1.24

require github.com/opencontainers/runc $RUNC_VERSION
EOF
log "building runc $RUNC_VERSION"
(cd runc && GOFLAGS=-mod=mod go get "github.com/opencontainers/runc@$RUNC_VERSION" >&2 &&
    CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -tags seccomp -ldflags "-X main.version=${RUNC_VERSION#v}" \
        -o ../bin/runc github.com/opencontainers/runc >&2) || die "building runc failed"
bin/runc --version >&2 || die "the built runc does not run"
for b in "${BINARIES[@]}"; do
    cp "bin/$b" "$DEST/$b.tmp.$$"
    mv -f "$DEST/$b.tmp.$$" "$DEST/$b"
done
log "built in $((SECONDS - start))s: $DEST"
printf '%s\n' "$DEST"
