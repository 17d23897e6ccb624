#!/usr/bin/env bash
# Start a private single-node SLURM cluster (munged + slurmctld + slurmd) under DIR.
#
#   eval "$(scripts/slurm-up.sh [DIR])"     # DIR defaults to /tmp/medscale-slurm
#   ... sbatch / srun / squeue / scontrol / sacct (stand-in) ...
#   scripts/slurm-down.sh [DIR]
#
# stdout carries only `export ...` lines (also written to DIR/env.sh); progress goes to stderr.
# Idempotent: if the cluster in DIR is already up and answering, it only prints the env.
# MEDSCALE_SLURM_CPUS=N advertises N CPUs instead of the detected count (oversubscribes a
# small machine so that `-n 2` jobs fit on one core).
set -euo pipefail

# The daemons live in /usr/sbin, which a minimal CI environment may leave off PATH.
export PATH="$PATH:/usr/sbin:/sbin"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(realpath -m "${1:-/tmp/medscale-slurm}")"
conf="$dir/slurm.conf"
marker="$dir/.medscale-slurm"
wait_s=30

log() { echo "slurm-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# slurm.conf has no quoting, so a path with spaces cannot work.
[[ "$dir" =~ [[:space:]] ]] && die "DIR must not contain whitespace: '$dir'"

print_env() { cat "$dir/env.sh"; }

# 0 when the pid file names a live process called $2 that was started for this DIR.
pid_alive() {
    local pidfile="$1" name="$2" pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(tr -dc 0-9 <"$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"
}

cluster_answers() {
    pid_alive "$dir/munged.pid" munged && pid_alive "$dir/slurmctld.pid" slurmctld &&
        pid_alive "$dir/slurmd.pid" slurmd &&
        SLURM_CONF="$conf" timeout 5 sinfo -h -o %T 2>/dev/null |
        grep -qE '^(idle|mixed|allocated|completing)'
}

show_logs() {
    local f
    for f in "$dir"/munged.log "$dir"/slurmctld.log "$dir"/slurmd.log; do
        [[ -f "$f" ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}

# Show the logs, stop what did start (no daemons leak into CI), keep DIR for the logs.
fail() {
    show_logs
    MEDSCALE_SLURM_KEEP_DIR=1 "$here/slurm-down.sh" "$dir" >&2 || true
    die "$@"
}

# 0 when nothing listens on TCP port $1 (SO_REUSEADDR as slurm uses, so TIME_WAIT is fine).
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("0.0.0.0", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# --- already running? ------------------------------------------------------------------
if [[ -f "$marker" && -f "$dir/env.sh" ]] && cluster_answers; then
    log "cluster in $dir is already up"
    print_env
    exit 0
fi

# --- install -------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null; then
    log "installing slurm-wlm (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm; } >&2 ||
        die "apt-get install slurm-wlm failed"
fi
for tool in munged mungekey slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || die "$tool not found after installing slurm-wlm"
done

# --- clean up what a killed earlier run left (live daemons, stale pid files, state) ----
if [[ -e "$dir" ]]; then
    if [[ -f "$marker" ]]; then
        log "found a stale cluster in $dir; stopping it and starting fresh"
        "$here/slurm-down.sh" "$dir" >&2
    elif [[ -n "$(ls -A "$dir")" ]]; then
        die "$dir exists and is not a medscale SLURM dir; pick another DIR"
    fi
fi
mkdir -p "$dir"/{state,spool,bin}
chmod 755 "$dir" # munged wants a socket folder that is not group/world-writable
touch "$marker"

# --- munge: own key and socket, so we never touch a system munged ---------------------
mungekey --create --keyfile="$dir/munge.key" --force >&2
chmod 600 "$dir/munge.key"
munged --socket="$dir/munge.socket.2" --key-file="$dir/munge.key" \
    --log-file="$dir/munged.log" --pid-file="$dir/munged.pid" \
    --seed-file="$dir/munged.seed" ||
    fail "munged did not start"

# --- slurm.conf ----------------------------------------------------------------------
ctld_port=6817
while ! port_free "$ctld_port" || ! port_free $((ctld_port + 1)); do
    ctld_port=$((ctld_port + 2))
    ((ctld_port < 6900)) || die "no free port pair between 6817 and 6900"
done
slurmd_port=$((ctld_port + 1))

# CPU topology as slurmd sees it (CPUs=.. Boards=.. SocketsPerBoard=.. CoresPerSocket=..
# ThreadsPerCore=..); a mismatch with the hardware would drain the node.
topology="$(slurmd -C | head -n1 | grep -oE '(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' | xargs)"
[[ "$topology" == *CPUs=* ]] || die "could not read the CPU topology from 'slurmd -C'"
overrides=""
if [[ -n "${MEDSCALE_SLURM_CPUS:-}" ]]; then
    [[ "$MEDSCALE_SLURM_CPUS" =~ ^[1-9][0-9]*$ ]] || die "MEDSCALE_SLURM_CPUS must be a number"
    # config_overrides lets slurmd accept more CPUs than the hardware has.
    topology="CPUs=$MEDSCALE_SLURM_CPUS"
    overrides="SlurmdParameters=config_overrides"
fi
# Half the RAM: the node is invalidated if RealMemory exceeds what slurmd finds.
real_mem=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2))

cat >"$conf" <<EOF
# Written by scripts/slurm-up.sh; everything lives under $dir.
ClusterName=medscale
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire (default 120 s, minimum 5) is also how long a requeued job waits to rerun.
AuthInfo=socket=$dir/munge.socket.2,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting daemon: plain process tracking, no job accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Start jobs at once instead of on a 3-s grid; sched_interval (default 60 s) is how soon
# a job whose BeginTime passed (a requeued one) is started.
SchedulerParameters=batch_sched_delay=0,sched_interval=2
ReturnToService=2
# Finished jobs stay visible to scontrol (and the sacct stand-in) for 5 minutes.
MinJobAge=300
# SIGTERM -> SIGKILL grace period on cancel/requeue/time limit.
KillWait=5
JobRequeue=1
InactiveLimit=0
MailProg=/bin/true
$overrides
NodeName=localhost NodeAddr=127.0.0.1 $topology RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# Without accounting the real sacct fails; the stand-in answers from scontrol.
ln -sf "$here/sacct" "$dir/bin/sacct"
cat >"$dir/env.sh" <<EOF
export SLURM_CONF=$conf
export PATH="$dir/bin:\$PATH"
EOF

# --- daemons -------------------------------------------------------------------------
export SLURM_CONF="$conf"
slurmctld -f "$conf" || fail "slurmctld did not start"
# -N: the node name stays 'localhost' whatever the hostname is.
slurmd -f "$conf" -N localhost || fail "slurmd did not start"

start=$SECONDS
state=""
while ((SECONDS - start < wait_s)); do
    state="$(timeout 5 sinfo -h -o %T 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    sleep 0.2
done
if [[ "$state" != idle ]]; then
    fail "node not idle after ${wait_s}s (sinfo says '${state:-nothing}'); logs kept in $dir"
fi

# slurmctld places its first batch job only ~3 s after it starts (srun is immediate). Run one
# now, so callers get a cluster that schedules batch jobs at once, and the batch path is tested.
warmup="$(sbatch --parsable --job-name=medscale-warmup --chdir="$dir" -o /dev/null --wrap true)" ||
    fail "sbatch of the warm-up job failed"
state=""
while ((SECONDS - start < wait_s)); do
    state="$(scontrol -o show job "$warmup" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)"
    [[ "$state" == JobState=COMPLETED ]] && break
    [[ "$state" =~ =(FAILED|CANCELLED|NODE_FAIL|TIMEOUT|OUT_OF_MEMORY)$ ]] &&
        fail "warm-up job $warmup ended ${state#JobState=}"
    sleep 0.1
done
[[ "$state" == JobState=COMPLETED ]] ||
    fail "warm-up job $warmup not COMPLETED after ${wait_s}s (${state:-no state})"
log "cluster up in $dir (ports $ctld_port/$slurmd_port, $((SECONDS - start))s to a finished job)"
print_env
