#!/bin/sh
# Builds tests/go-apps/sqlapp against one set of driver releases.
#
#   build.sh <old|new> <outfile> [go build flags...]
#
# The source is shared; the releases are chosen with
# -modfile=versions/<set>/go.mod (its go.sum is versions/<set>/go.sum).
# go.mod at the top equals versions/new/go.mod, so a plain `go build .` builds
# the newest drivers. The Go toolchain comes from the environment (GOTOOLCHAIN;
# `old` builds with Go 1.22 and later, `new` needs Go 1.25 or later).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 <old|new> <outfile> [go build flags...]" >&2; exit 2; }
set_=$1 out=$2
shift 2
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")"
[ -f "versions/$set_/go.mod" ] || { echo "$0: no versions/$set_/go.mod" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
go build -modfile="versions/$set_/go.mod" -o "$out" "$@" .
