#!/bin/sh
# Builds tests/go-apps/grpc's server and client against one grpc-go release.
#
#   build.sh <1.59|1.60|1.69|1.77|latest> <outdir> [go build flags...]
#
# writes <outdir>/server and <outdir>/client. The source tree is shared; the
# release is chosen with -modfile=versions/<release>/go.mod (its go.sum is
# versions/<release>/go.sum). go.mod at the top is the same as
# versions/latest/go.mod, so a plain `go build ./server ./client` builds latest.
# Releases without grpc.NewClient (1.59, 1.60) build with -tags grpc_dial. The Go
# toolchain comes from the environment (GOTOOLCHAIN; e.g. go1.22.12 works for
# 1.60 and 1.69 only, whose go.mod says go 1.22).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 <1.60|1.69|1.77|latest> <outdir> [go build flags...]" >&2; exit 2; }
rel=$1 out=$2
shift 2
cd "$(dirname "$0")"
[ -f "versions/$rel/go.mod" ] || { echo "$0: no versions/$rel/go.mod" >&2; exit 2; }
tags=
case $rel in 1.59|1.60) tags="-tags=grpc_dial" ;; esac
mkdir -p "$out"
case $out in /*) ;; *) out="$OLDPWD/$out" ;; esac
for app in server client; do
	go build -modfile="versions/$rel/go.mod" $tags -o "$out/$app" "$@" "./$app"
done
