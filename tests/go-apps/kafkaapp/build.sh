#!/bin/sh
# Builds tests/go-apps/kafkaapp against one set of sarama and kafka-go releases.
#
#   build.sh <old|new> <outfile> [go build flags...]
#
# The source is shared; the release is chosen with -modfile=versions/<set>/go.mod
# (its go.sum is versions/<set>/go.sum): `old` is sarama v1.45.0 (January
# 2025, the first of the last two years) with kafka-go v0.4.47 (the release in
# use in December 2024), `new` the newest (sarama v1.62.0, kafka-go v0.4.51).
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
