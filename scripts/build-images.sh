#!/usr/bin/env bash
# Builds container images as OCI archives without a container engine
# (scripts/oci-image.py), for scripts/kube-node.sh load.
#
#   build-images.sh pause     the pod sandbox (static C), registry.k8s.io/pause:3.10.1
#   build-images.sh gosight   the image the Dockerfile describes, gosight:0.1.0: its
#                             final stage's files, USER and ENTRYPOINT read from the
#                             Dockerfile itself, the binaries from target/release
#                             (built with the Dockerfile's cargo command first), and
#                             their shared libraries from this Debian release
#   build-images.sh apps      the test workloads (tests/kube/README.md):
#                             gosight-test/grpc-apps:1 (grpc server + client),
#                             gosight-test/httpserver:1, gosight-test/rawclient:1
#                             (static Go, with busybox for kubectl exec) and
#                             gosight-test/notgo:1 (a static C HTTP server)
#
# Prints the archive paths, one per line. Archives go to target/images.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x /usr/local/go/bin/go ]] && export PATH=/usr/local/go/bin:$PATH
[[ -d $HOME/.cargo/bin ]] && export PATH=$HOME/.cargo/bin:$PATH
OUT=$PWD/target/images
mkdir -p "$OUT"
log() { printf 'build-images: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
image() { python3 scripts/oci-image.py "$@"; }

busybox() {
    if [[ ! -x /bin/busybox ]]; then
        [[ $(id -u) -eq 0 ]] || die "needs busybox-static (apt-get install busybox-static)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2 || die "installing busybox-static failed"
    fi
    file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || die "/bin/busybox is not static (install busybox-static)"
}
# busybox and the few applets the tests use in the app containers.
BUSYBOX_ARGS=(--file /bin/busybox:/bin/busybox --link busybox:/bin/sh --link busybox:/bin/kill
    --link busybox:/bin/pidof --link busybox:/bin/ps --link busybox:/bin/sleep)

case ${1:-} in
pause)
    clang -static -O2 -o "$OUT/pause" tests/kube/pause.c || die "building pause failed"
    image --name registry.k8s.io/pause:3.10.1 --out "$OUT/pause.tar" \
        --file "$OUT/pause:/pause" --entrypoint /pause
    ;;
gosight)
    # The Dockerfile's build command, as written there.
    build=$(grep -o 'cargo build --release --locked[^&\\]*' Dockerfile | sed 's/[[:space:]]*$//')
    [[ -n $build ]] || die "no 'cargo build --release --locked' line in the Dockerfile"
    log "$build"
    $build >&2 || die "cargo build failed"
    image --name docker.io/library/gosight:0.1.0 --out "$OUT/gosight.tar" --dockerfile Dockerfile \
        --artifacts target/release --with-libs
    ;;
apps)
    busybox
    bin=$OUT/apps-bin
    mkdir -p "$bin"
    log "building the test apps (static Go)"
    (cd tests/go-apps/grpc && CGO_ENABLED=0 sh build.sh latest "$bin/grpc" -trimpath) || die "grpc apps failed"
    (cd tests/go-apps/httpserver && CGO_ENABLED=0 go build -trimpath -o "$bin/httpserver" .) || die "httpserver failed"
    (cd tests/go-apps/rawclient && CGO_ENABLED=0 go build -trimpath -o "$bin/rawclient" .) || die "rawclient failed"
    clang -static -O2 -o "$bin/notgo" tests/kube/notgo.c || die "notgo failed"
    image --name docker.io/gosight-test/grpc-apps:1 --out "$OUT/grpc-apps.tar" \
        --file "$bin/grpc/server:/app/grpc-server" --file "$bin/grpc/client:/app/grpc-client" "${BUSYBOX_ARGS[@]}"
    image --name docker.io/gosight-test/httpserver:1 --out "$OUT/httpserver.tar" \
        --file "$bin/httpserver:/app/httpserver" "${BUSYBOX_ARGS[@]}"
    image --name docker.io/gosight-test/rawclient:1 --out "$OUT/rawclient.tar" \
        --file "$bin/rawclient:/app/rawclient" "${BUSYBOX_ARGS[@]}"
    image --name docker.io/gosight-test/notgo:1 --out "$OUT/notgo.tar" --file "$bin/notgo:/app/notgo"
    ;;
*) die "usage: build-images.sh pause|gosight|apps" ;;
esac
