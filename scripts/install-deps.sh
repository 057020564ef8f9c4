#!/usr/bin/env bash
# Installs what building and testing gosight needs on a Debian machine, skipping
# whatever is already there: clang + libbpf headers (the BPF programs are C), curl,
# wrk, iproute2 and python3 (the tests drive servers and network namespaces), and
# checks for Go and Rust. Safe to run repeatedly.
set -euo pipefail
log() { printf 'install-deps: %s\n' "$*" >&2; }

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[[ -f /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
[[ -f /usr/include/linux/bpf.h ]] || need+=(linux-libc-dev)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages ${need[*]}: run as root or install them"; exit 1
    fi
    log "installing ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
    log "Go is not installed (https://go.dev/dl or apt-get install golang-go)"; exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "Rust is not installed (rustup)"; exit 1
fi
log "ok: $(clang --version | head -1); $( (command -v go >/dev/null && go version) || /usr/local/go/bin/go version); $(cargo --version)"
