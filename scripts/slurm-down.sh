#!/usr/bin/env bash
# Stop the private SLURM cluster that scripts/slurm-up.sh started under DIR, then remove DIR.
#
#   scripts/slurm-down.sh [DIR]       # DIR defaults to /tmp/medscale-slurm
#
# Idempotent: a missing DIR or dead daemons are fine. Only pids from DIR's own pid files are
# signalled, and only if the process has the expected name and was started for DIR.
# MEDSCALE_SLURM_KEEP_DIR=1 keeps DIR (and its logs) after stopping.
set -euo pipefail

dir="$(realpath -m "${1:-/tmp/medscale-slurm}")"
conf="$dir/slurm.conf"

log() { echo "slurm-down: $*" >&2; }

if [[ ! -e "$dir" ]]; then
    log "nothing in $dir"
    exit 0
fi
if [[ ! -f "$dir/.medscale-slurm" ]]; then
    # Never delete a folder we did not create.
    [[ -z "$(ls -A "$dir")" ]] && rmdir "$dir" && exit 0
    log "ERROR: $dir is not a medscale SLURM dir (no .medscale-slurm); leaving it alone"
    exit 1
fi

# Print the pid in $1 if it is a live process named $2 whose command line mentions DIR
# (guards against a recycled pid).
our_pid() {
    local pidfile="$1" name="$2" pid
    [[ -s "$pidfile" ]] || return 0
    pid="$(tr -dc 0-9 <"$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 0
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/" || return 0
    echo "$pid"
}

# A zombie counts as dead: in a container whose pid 1 does not reap, exited daemons stay
# zombies.
alive() {
    kill -0 "$1" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# Wait up to $2 seconds for pid $1 to exit; 0 when it did.
wait_gone() {
    local pid="$1" end=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# Cancel jobs first: slurmstepd and job processes outlive slurmd otherwise.
if [[ -n "$(our_pid "$dir/slurmctld.pid" slurmctld)" ]]; then
    export SLURM_CONF="$conf"
    jobs="$(timeout 5 squeue -h -o %A 2>/dev/null || true)"
    if [[ -n "$jobs" ]]; then
        log "cancelling jobs: ${jobs//$'\n'/ }"
        # shellcheck disable=SC2086  # one argument per job id
        timeout 10 scancel $jobs 2>/dev/null || true
        end=$((SECONDS + 15)) # KillWait is 5 s
        while ((SECONDS < end)) && [[ -n "$(timeout 5 squeue -h -o %A 2>/dev/null || true)" ]]; do
            sleep 0.2
        done
    fi
fi

# Each daemon takes 1-2 s to exit, so signal all three at once and then wait.
declare -A pids=()
for name in slurmd slurmctld munged; do
    pid="$(our_pid "$dir/$name.pid" "$name")"
    [[ -n "$pid" ]] || continue
    pids[$name]="$pid"
    kill -TERM "$pid" 2>/dev/null || true
done
for name in "${!pids[@]}"; do
    pid="${pids[$name]}"
    if ! wait_gone "$pid" 15; then
        log "$name ($pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || log "WARNING: $name ($pid) still alive"
    fi
    log "stopped $name ($pid)"
done

# A killed earlier run leaves its slurmstepd processes, and their jobs, running. They have no
# pid file; a step daemon is ours when one of its open files (the slurmd log) lies in DIR.
# Kill those and everything below them.
python3 - "$dir/" <<'EOF_PY' >&2
import os, signal, sys

prefix = sys.argv[1]
parent = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent[int(pid)] = int(f.read().rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        pass

def is_our_stepd(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "slurmstepd":
                return False
        fds = os.listdir(f"/proc/{pid}/fd")
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix) for fd in fds)
    except OSError:
        return False

doomed = {pid for pid in parent if is_our_stepd(pid)}
while True:  # add descendants until nothing new
    more = {pid for pid, ppid in parent.items() if ppid in doomed} - doomed
    if not more:
        break
    doomed |= more
for pid in sorted(doomed):
    try:
        os.kill(pid, signal.SIGKILL)
        print(f"slurm-down: killed leftover job process {pid}")
    except OSError:
        pass
EOF_PY

if [[ "${MEDSCALE_SLURM_KEEP_DIR:-0}" == 1 ]]; then
    log "daemons stopped; kept $dir"
else
    rm -rf "$dir"
    log "removed $dir"
fi
