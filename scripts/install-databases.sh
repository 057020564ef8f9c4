#!/usr/bin/env bash
# Installs the database servers the SQL end-to-end tests start for themselves:
# PostgreSQL 15 (Debian `postgresql`: initdb/postgres under
# /usr/lib/postgresql/15/bin, psql) and MariaDB (Debian `mariadb-server` and
# `mariadb-client`: mariadbd, mariadb-install-db, mariadb). Skips whatever is
# already there; safe to run repeatedly. Debian's packaged services are kept from
# starting during the install and left stopped and disabled: the tests run their
# own servers on free ports in temporary directories (tests/e2e/src/databases.rs).
# With CI=true a missing prerequisite fails loudly.
set -euo pipefail
log() { printf 'install-databases: %s\n' "$*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
need=()
pg=$(pg_bin)
[[ -n $pg && -x $pg/initdb && -x $pg/postgres ]] || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
{ command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } || need+=(mariadb-server)
command -v mariadb-install-db >/dev/null 2>&1 || [[ " ${need[*]} " == *" mariadb-server "* ]] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
# Debian's services would take 5432 / 3306.
bash "$(dirname "$0")/apt-install.sh" --stop postgresql --stop mariadb "${need[@]}"

pg=$(pg_bin)
ok=1
[[ -n $pg && -x $pg/initdb && -x $pg/postgres && -x $pg/pg_ctl ]] || { log "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"; ok=0; }
command -v psql >/dev/null 2>&1 || { log "psql not found"; ok=0; }
{ command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; } || { log "mariadbd not found"; ok=0; }
command -v mariadb-install-db >/dev/null 2>&1 || { log "mariadb-install-db not found"; ok=0; }
command -v mariadb >/dev/null 2>&1 || { log "the mariadb client not found"; ok=0; }
getent passwd postgres >/dev/null || { log "no postgres user (the PostgreSQL server refuses to run as root)"; ok=0; }
((ok)) || exit 1
log "ok: $("$pg/postgres" --version); $(/usr/sbin/mariadbd --version 2>/dev/null | head -1 || mariadbd --version | head -1)"
