#!/usr/bin/env bash
# Installs the Redis server the go-redis end-to-end tests start for themselves
# (Debian's `redis-server`; tests/e2e/src/redis.rs runs a private one per test on
# a free port in a temporary directory). Skips it when already there; safe to
# run repeatedly. Debian's packaged service is kept from starting during the
# install and left stopped and disabled (it would take port 6379). Prints the
# server binary's path on its last line.
set -euo pipefail
log() { printf 'install-redis: %s\n' "$*" >&2; }

find_server() { command -v redis-server 2>/dev/null || { [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server; } || true; }
bin=$(find_server)
[[ -n $bin ]] || bash "$(dirname "$0")/apt-install.sh" --stop redis-server redis-server
bin=$(find_server)
[[ -n $bin ]] || { log "redis-server not found after installing Debian's redis-server"; exit 1; }
log "ok: $("$bin" --version)"
echo "$bin"
