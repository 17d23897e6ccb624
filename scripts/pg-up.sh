#!/usr/bin/env bash
# Start a private PostgreSQL server on 127.0.0.1 under DIR, for tests (campaign ledger).
#
#   url="$(scripts/pg-up.sh [DIR])"     # DIR defaults to /tmp/medscale-pg
#   ... postgresql+psycopg://postgres@127.0.0.1:PORT/ledger ...
#   scripts/pg-down.sh [DIR]
#
# stdout carries only the SQLAlchemy URL of the `ledger` database (also written to DIR/url);
# progress goes to stderr. Idempotent: if the server in DIR is already up and answering, it
# only prints the URL. Installs Debian's `postgresql` package if no server binaries are found
# (needs root; Debian's policy-rc.d keeps the package's own `main` cluster down).
# As root the server runs as the `postgres` user (runuser); otherwise as the calling user.
# Authentication is `trust` for a throwaway test server: any local user reaching
# 127.0.0.1:PORT is a superuser. The server listens on 127.0.0.1 only, and on a unix socket in
# DIR (mode 0700). fsync is off: a crash of the machine (not of the server) may lose data.
# Exit status 3: PostgreSQL is not installed and cannot be installed here (callers may skip).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(realpath -m "${1:-/tmp/medscale-pg}")"
data="$dir/data"
marker="$dir/.medscale-pg"
wait_s=30

log() { echo "pg-up: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
unavailable() {
    log "ERROR: $*"
    exit 3
}

# The server's unix socket is DIR/.s.PGSQL.PORT (17 characters after DIR) and a socket path
# may not exceed 107 bytes; pg_ctl's -o options have no quoting for spaces.
((${#dir} <= 80)) || die "DIR must be at most 80 characters (unix socket path limit): '$dir'"
[[ "$dir" =~ [[:space:]] ]] && die "DIR must not contain whitespace: '$dir'"

# Run a server tool as the server's owner: postgres when we are root (initdb and the server
# refuse root), else ourselves.
if ((EUID == 0)); then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

find_bin() {
    local initdb
    initdb="$(printf "%s\n" /usr/lib/postgresql/*/bin/initdb | grep -v "\*" | sort -V | tail -n1 || true)"
    [[ -n "$initdb" ]] && dirname "$initdb"
}

print_url() { cat "$dir/url"; }

# 0 when the server of DIR/data runs and answers on the port recorded in DIR/port.
server_answers() {
    [[ -s "$dir/port" && -s "$data/PG_VERSION" ]] || return 1
    local bin port
    bin="/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin"
    port="$(tr -dc 0-9 <"$dir/port")"
    [[ -x "$bin/pg_ctl" && -n "$port" ]] || return 1
    as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d ledger -t 5
}

# --- already running? ------------------------------------------------------------------
if [[ -f "$marker" && -s "$dir/url" ]] && server_answers; then
    log "server in $dir is already up"
    print_url
    exit 0
fi

# --- install -------------------------------------------------------------------------
bin="$(find_bin || true)"
if [[ -z "$bin" ]]; then
    ((EUID == 0)) || unavailable "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and only root can install it: apt-get install postgresql"
    command -v apt-get >/dev/null ||
        unavailable "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and there is no apt-get to install it"
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq postgresql; } >&2 ||
        unavailable "apt-get install postgresql failed (see above)"
    bin="$(find_bin || true)"
    [[ -n "$bin" ]] || unavailable "no /usr/lib/postgresql/*/bin/initdb after installing postgresql"
fi
for tool in initdb pg_ctl pg_isready createdb; do
    [[ -x "$bin/$tool" ]] || die "$bin/$tool is missing"
done
if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run the server as"
    runuser -u postgres -- true 2>/dev/null ||
        die "cannot run commands as 'postgres' (runuser -u postgres failed)"
fi

# --- clean up what a killed earlier run left --------------------------------------------
if [[ -e "$dir" ]]; then
    if [[ -f "$marker" ]]; then
        log "found a stale server dir $dir; stopping it and starting fresh"
        "$here/pg-down.sh" "$dir" >&2
    elif [[ -n "$(ls -A "$dir")" ]]; then
        die "$dir exists and is not a medscale PostgreSQL dir; pick another DIR"
    fi
fi
mkdir -p "$dir"
touch "$marker"
chmod 700 "$dir"
if ((EUID == 0)); then
    chown postgres "$dir" "$marker"
    as_owner test -w "$dir" ||
        die "user postgres cannot write $dir (is a parent folder closed to it?); pick another DIR"
fi

started=0
show_log() {
    [[ -f "$dir/server.log" ]] || return 0
    echo "----- tail of $dir/server.log -----" >&2
    tail -n 25 "$dir/server.log" >&2
}
stop_started() {
    if ((started)) && [[ -f "$data/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >&2 || true
    fi
    started=0
}
# Show the log, stop what did start (no server leaks into CI), keep DIR for the log.
fail() {
    show_log
    stop_started
    die "$* (log kept in $dir; scripts/pg-down.sh $dir removes it)"
}
# An unexpected error (set -e) also stops the server.
trap 'rc=$?; if ((rc != 0 && started)); then show_log; stop_started; fi' EXIT

# --- cluster and server ----------------------------------------------------------------
started_at=$SECONDS
log "initdb in $data ($bin)"
as_owner "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$dir/initdb.log" 2>&1 || {
    tail -n 25 "$dir/initdb.log" >&2
    die "initdb failed"
}

port=""
for attempt in 1 2 3; do
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    log "starting the server on 127.0.0.1:$port"
    started=1
    if as_owner "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t "$wait_s" \
        -o "-k $dir -h 127.0.0.1 -p $port -c fsync=off" start >/dev/null 2>"$dir/pg_ctl.err"; then
        break
    fi
    cat "$dir/pg_ctl.err" >&2
    stop_started
    # Another process took the port between the probe and the start: try another one.
    if ((attempt < 3)) && grep -q 'could not bind' "$dir/server.log" 2>/dev/null; then
        log "port $port was taken; trying another"
        port=""
        continue
    fi
    fail "the server did not start"
done
[[ -n "$port" ]] || fail "the server did not start (no free port)"
echo "$port" >"$dir/port"
rm -f "$dir/pg_ctl.err"

"$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres ledger >&2 ||
    fail "createdb ledger failed"

echo "postgresql+psycopg://postgres@127.0.0.1:$port/ledger" >"$dir/url.partial"
mv "$dir/url.partial" "$dir/url"
trap - EXIT
log "server up at 127.0.0.1:$port in $((SECONDS - started_at))s (log: $dir/server.log)"
print_url
