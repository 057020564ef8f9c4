#!/bin/sh
# Builds tests/go-apps/redisapp against one go-redis release.
#
#   build.sh <old|new> <outfile> [go build flags...]
#
# The source is shared; the release is chosen with -modfile=versions/<set>/go.mod
# (its go.sum is versions/<set>/go.sum): `old` is go-redis v9.7.0 (the release in
# use in December 2024), `new` the newest (v9.24.0, which needs Go 1.26).
# go.mod at the top equals versions/new/go.mod, so a plain `go build .` builds
# the newest. The Go toolchain comes from the environment (GOTOOLCHAIN).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 <old|new> <outfile> [go build flags...]" >&2; exit 2; }
set_=$1 out=$2
shift 2
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")"
[ -f "versions/$set_/go.mod" ] || { echo "$0: no versions/$set_/go.mod" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
go build -modfile="versions/$set_/go.mod" -o "$out" "$@" .
