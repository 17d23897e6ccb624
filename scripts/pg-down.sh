#!/usr/bin/env bash
# Stop the PostgreSQL server that scripts/pg-up.sh started under DIR, then remove DIR.
#
#   scripts/pg-down.sh [DIR]       # DIR defaults to /tmp/medscale-pg
#
# Idempotent: a missing DIR or a stopped server is fine. Only the server of DIR/data is
# stopped (pg_ctl -m fast, then -m immediate, then SIGKILL if it does not finish in time).
# MEDSCALE_PG_KEEP_DIR=1 keeps DIR (and its logs) after stopping.
set -euo pipefail

dir="$(realpath -m "${1:-/tmp/medscale-pg}")"
data="$dir/data"

log() { echo "pg-down: $*" >&2; }

if [[ ! -e "$dir" ]]; then
    log "nothing in $dir"
    exit 0
fi
if [[ ! -f "$dir/.medscale-pg" ]]; then
    # Never delete a folder we did not create.
    [[ -z "$(ls -A "$dir")" ]] && rmdir "$dir" && exit 0
    log "ERROR: $dir is not a medscale PostgreSQL dir (no .medscale-pg); leaving it alone"
    exit 1
fi

if ((EUID == 0)); then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

# Print the postmaster's pid if DIR/data/postmaster.pid names a live process started for
# DIR/data. A zombie counts as dead (pid 1 of a container may not reap a killed server, and
# pg_ctl would wait for it in vain).
server_pid() {
    local pid
    [[ -s "$data/postmaster.pid" ]] || return 0
    pid="$(head -n1 "$data/postmaster.pid" | tr -dc 0-9)"
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 0
    [[ "$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$data" || return 0
    echo "$pid"
}

pid="$(server_pid)"
if [[ -n "$pid" && -s "$data/PG_VERSION" ]]; then
    bin="/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin"
    if as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null; then
        log "server stopped"
    else
        log "fast shutdown did not finish; stopping immediately"
        as_owner "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null || true
    fi
fi
pid="$(server_pid)"
if [[ -n "$pid" ]]; then
    log "the server (pid $pid) is still running; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in {1..50}; do
        [[ -z "$(server_pid)" ]] && break
        sleep 0.1
    done
    if [[ -n "$(server_pid)" ]]; then
        log "ERROR: the server of $data (pid $pid) did not stop; leaving $dir in place"
        exit 1
    fi
elif [[ -z "${bin:-}" ]]; then
    log "no server running in $data"
fi

if [[ "${MEDSCALE_PG_KEEP_DIR:-0}" == 1 ]]; then
    log "kept $dir"
else
    rm -rf "$dir"
    log "removed $dir"
fi
