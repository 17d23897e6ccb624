#!/usr/bin/env bash
# Start a private single-node Ray head on 127.0.0.1 under DIR, for tests and developers.
#
#   eval "$(scripts/ray-up.sh [DIR])"     # DIR defaults to /tmp/medscale-ray
#   ... ray.address: $MEDSCALE_RAY_ADDRESS (medscale.launch.ray.connect) ...
#   scripts/ray-down.sh [DIR]
#
# stdout carries only `export ...` lines (also written to DIR/env.sh); progress goes to stderr.
# Idempotent: if the head in DIR is already up and answering, it only prints the env.
# Every listener of the head is on loopback (checked after the start; the head is stopped if
# not). Drivers authenticate with a token kept in DIR/auth_token (mode 0600), named by the
# exported RAY_AUTH_MODE/RAY_AUTH_TOKEN_PATH. MEDSCALE_RAY_CPUS=N advertises N CPUs
# (default 2); PYTHON names the interpreter that has Ray (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(realpath -m "${1:-/tmp/medscale-ray}")"
marker="$dir/.medscale-ray"
py="${PYTHON:-python3}"
cpus="${MEDSCALE_RAY_CPUS:-2}"

log() { echo "ray-up: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Ray's unix sockets live under DIR/t/session_<date>_<pid>/sockets/ (64 characters after
# DIR) and a socket path may not exceed 107 bytes.
((${#dir} <= 40)) || die "DIR must be at most 40 characters (Ray's socket paths): '$dir'"
[[ "$dir" =~ [[:space:]] ]] && die "DIR must not contain whitespace: '$dir'"
[[ "$cpus" =~ ^[0-9]+$ ]] || die "MEDSCALE_RAY_CPUS must be a whole number, not '$cpus'"

print_env() { cat "$dir/env.sh"; }

# 0 when the head recorded in DIR has a live GCS that accepts connections on its port.
head_answers() {
    [[ -s "$dir/port" && -s "$dir/gcs.pid" ]] || return 1
    local pid port
    pid="$(tr -dc 0-9 <"$dir/gcs.pid")"
    port="$(tr -dc 0-9 <"$dir/port")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/t/" || return 1
    "$py" - "$port" <<'EOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except OSError:
    sys.exit(1)
EOF
}

# Stop what did start (no daemons leak into CI), keep DIR for the logs.
fail() {
    local f
    for f in "$dir"/ray-start.log "$dir"/t/session_latest/logs/gcs_server.out \
        "$dir"/t/session_latest/logs/raylet.out; do
        [[ -f "$f" ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 20 "$f" >&2
    done
    MEDSCALE_RAY_KEEP_DIR=1 "$here/ray-down.sh" "$dir" >&2 || true
    die "$@"
}

# --- already running? ------------------------------------------------------------------
if [[ -f "$marker" && -f "$dir/env.sh" ]] && head_answers; then
    log "head in $dir is already up"
    print_env
    exit 0
fi

"$py" -c 'import ray' 2>/dev/null ||
    die "Ray is not installed for $py: pip install 'ray[train,tune]' (or set PYTHON)"

# --- clean up what a killed earlier run left --------------------------------------------
if [[ -e "$dir" ]]; then
    if [[ -f "$marker" ]]; then
        log "found a stale head in $dir; stopping it and starting fresh"
        "$here/ray-down.sh" "$dir" >&2
    elif [[ -n "$(ls -A "$dir")" ]]; then
        die "$dir exists and is not a medscale Ray dir; pick another DIR"
    fi
fi
mkdir -p "$dir"
touch "$marker"

# --- token: drivers need it to submit work (other local users cannot) -------------------
(
    umask 077
    "$py" -c 'import secrets; print(secrets.token_hex(32))' >"$dir/auth_token"
)

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray then keeps --node-ip-address=127.0.0.1 (else it
# replaces it with the default route's address) and binds its listeners there.
# *_SOCKET_IFNAME: the collectives of training workers on this head stay on loopback too.
# A new session (setsid) groups every process of the head, so that ray-down.sh finds them.
log "starting a Ray head on 127.0.0.1:$port ($cpus CPUs) in $dir"
env -u RAY_ADDRESS -u RAY_AUTH_TOKEN \
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/auth_token" \
    GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}" NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-lo}" \
    setsid --wait "$py" -m ray.scripts.scripts start --head --node-ip-address=127.0.0.1 \
    --port="$port" --num-cpus="$cpus" --include-dashboard=false --disable-usage-stats \
    --temp-dir="$dir/t" >"$dir/ray-start.log" 2>&1 </dev/null ||
    fail "ray start failed"
echo "$port" >"$dir/port"

# Record the GCS pid and the head's session id; refuse any listener off loopback.
"$py" - "$dir" <<'EOF' >&2 || fail "the head is not confined to loopback (see above)"
import ipaddress, os, sys

root = sys.argv[1]
mark = root + "/t/"

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""

pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
gcs = [p for p in pids if "gcs_server" in cmdline(p) and mark in cmdline(p)]
if not gcs:
    print("ray-up: no GCS process found for this head")
    sys.exit(1)
sid = os.getsid(gcs[0])
with open(os.path.join(root, "gcs.pid"), "w") as f:
    f.write(f"{gcs[0]}\n")
with open(os.path.join(root, "ray.sid"), "w") as f:
    f.write(f"{sid}\n")

def session_of(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None

ours = {p for p in pids if session_of(p) == sid}
inodes = {}
for pid in ours:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes[link[8:-1]] = pid
    except OSError:
        pass

def address(hex_ip):
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    ip = ipaddress.IPv6Address(words)
    return ip.ipv4_mapped or ip

bad = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table) as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            ip = address(hex_ip)
            if not ip.is_loopback:
                bad.append(f"{ip}:{int(hex_port, 16)} ({cmdline(inodes[inode])[:80]})")
for entry in bad:
    print(f"ray-up: listener outside loopback: {entry}")
sys.exit(1 if bad else 0)
EOF

cat >"$dir/env.sh.partial" <<EOF
export MEDSCALE_RAY_ADDRESS=127.0.0.1:$port
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$dir/auth_token
EOF
mv "$dir/env.sh.partial" "$dir/env.sh"
log "head up at 127.0.0.1:$port (logs in $dir/t/session_latest/logs)"
print_env
