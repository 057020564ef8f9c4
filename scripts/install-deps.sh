#!/usr/bin/env bash
# Installs what building and testing gosight needs on a Debian machine, skipping
# whatever is already there: clang + libclang + libbpf headers (the BPF programs are C), curl,
# wrk, iproute2 and python3 (the tests drive servers and network namespaces), nginx
# (a non-Go neighbour the tests run with their own config; Debian's nginx service is
# kept from starting and left disabled), and checks for Go and Rust. Safe to run
# repeatedly.
set -euo pipefail
log() { printf 'install-deps: %s\n' "$*" >&2; }

need=()
command -v clang >/dev/null 2>&1 || need+=(clang)
[[ -f /usr/include/bpf/bpf_helpers.h ]] || need+=(libbpf-dev)
# bindgen (uprobes/build.rs) generates the Rust side of the BPF records with libclang.
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/*/libclang*.so*' >/dev/null || need+=(libclang-dev)
[[ -f /usr/include/linux/bpf.h ]] || need+=(linux-libc-dev)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
# Debian's nginx would take port 80; stopped if it came with this install.
stop=()
[[ " ${need[*]} " == *" nginx "* ]] && stop=(--stop nginx)
bash "$(dirname "$0")/apt-install.sh" "${stop[@]}" "${need[@]}"

if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
    log "Go is not installed (https://go.dev/dl or apt-get install golang-go)"; exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "Rust is not installed (rustup)"; exit 1
fi
# rustfmt and clippy: the test command checks formatting and lints.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy >&2
    cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 ||
        { log "rustfmt and clippy are missing (rustup component add rustfmt clippy)"; exit 1; }
fi
log "ok: $(clang --version | head -1); $( (command -v go >/dev/null && go version) || /usr/local/go/bin/go version); $(cargo --version)"
