#!/usr/bin/env bash
# Installs Debian packages without letting their services start, for the install
# scripts: `apt-install.sh [--stop SERVICE]... PACKAGE...`. A packaged service
# (nginx, PostgreSQL, MariaDB) would take the port the tests want; each SERVICE
# named is also stopped and disabled afterwards. Needs root.
set -euo pipefail
log() { printf 'apt-install: %s\n' "$*" >&2; }

stop=()
while [[ ${1:-} == --stop ]]; do
    stop+=("$2")
    shift 2
done
(($#)) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    log "missing packages $*: run as root or install them"; exit 1
fi
log "installing $*"
apt-get update -qq >&2
# No service may start during the install.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
for svc in "${stop[@]}"; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
