#!/usr/bin/env bash
# Stop the Ray head that scripts/ray-up.sh started under DIR, then remove DIR.
#
#   scripts/ray-down.sh [DIR]       # DIR defaults to /tmp/medscale-ray
#
# Idempotent: a missing DIR or a dead head is fine. Only processes of the head are signalled:
# those in the session ray-up.sh recorded (if one of them still names DIR, so the session id
# was not recycled), those whose command line names DIR/t/, and their descendants (the
# workers). `ray stop` is not used: it stops every Ray on the machine.
# MEDSCALE_RAY_KEEP_DIR=1 keeps DIR (and its logs) after stopping.
set -euo pipefail

dir="$(realpath -m "${1:-/tmp/medscale-ray}")"

log() { echo "ray-down: $*" >&2; }

if [[ ! -e "$dir" ]]; then
    log "nothing in $dir"
    exit 0
fi
if [[ ! -f "$dir/.medscale-ray" ]]; then
    # Never delete a folder we did not create.
    [[ -z "$(ls -A "$dir")" ]] && rmdir "$dir" && exit 0
    log "ERROR: $dir is not a medscale Ray dir (no .medscale-ray); leaving it alone"
    exit 1
fi

# Raylet first (its workers and agents then exit with it), the GCS last, as `ray stop` does;
# SIGKILL whatever ignores SIGTERM for GRACE seconds.
python3 - "$dir" "$(cat "$dir/ray.sid" 2>/dev/null || true)" <<'EOF' >&2
import os, signal, sys, time

root, sid_text = sys.argv[1], sys.argv[2].strip()
mark = root + "/t/"
GRACE = 10.0
me = {os.getpid(), os.getppid()}

def read(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""

def cmdline(pid):
    return read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")

def alive(pid):  # a zombie counts as dead (pid 1 of a container may not reap)
    stat = read(pid, "stat").decode(errors="replace")
    return bool(stat) and stat.rpartition(")")[2].split()[:1] != ["Z"]

def session_of(pid):
    try:
        return os.getsid(pid)
    except OSError:
        return None

def parent_of(pid):
    fields = read(pid, "stat").decode(errors="replace").rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None

def ours():
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    named = {p for p in pids if mark in cmdline(p)} - me
    found = set(named)
    if sid_text.isdigit():
        session = {p for p in pids if session_of(p) == int(sid_text)} - me
        if session & named:  # the recorded session is still the head's
            found |= session
    parents = {p: parent_of(p) for p in pids}
    while True:  # add descendants until nothing new
        more = {p for p, pp in parents.items() if pp in found} - found - me
        if not more:
            return {p for p in found if alive(p)}
        found |= more

def name(pid):
    return read(pid, "comm").decode(errors="replace").strip()

def stop(pids, what):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    end = time.monotonic() + GRACE
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in [p for p in pids if alive(p)]:
        print(f"ray-down: {what} {pid} ignored SIGTERM; sending SIGKILL")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

procs = ours()
if not procs:
    print("ray-down: no processes of this head are running")
    sys.exit(0)
raylets = {p for p in procs if name(p) == "raylet"}
gcs = {p for p in procs if name(p) == "gcs_server"}
stop(raylets, "raylet")
stop(ours() - gcs, "process")
stop(gcs, "gcs_server")
left = ours()
end = time.monotonic() + 5
while left and time.monotonic() < end:
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.2)
    left = ours()
if left:
    print(f"ray-down: WARNING: still alive: {sorted(left)}")
    sys.exit(1)
print(f"ray-down: stopped {len(procs)} processes")
EOF

if [[ "${MEDSCALE_RAY_KEEP_DIR:-0}" == 1 ]]; then
    log "head stopped; kept $dir"
else
    rm -rf "$dir"
    log "removed $dir"
fi
