# Source to use a cluster that scripts/slurm-up.sh already started (e.g. in another shell):
#
#   source scripts/slurm-env.sh [DIR]      # DIR defaults to /tmp/medscale-slurm
#
# Sets SLURM_CONF and puts the sacct stand-in first on PATH. No `set -e` here: it runs in
# the caller's shell.
_medscale_slurm_dir="${1:-/tmp/medscale-slurm}"
if [[ -f "$_medscale_slurm_dir/env.sh" ]]; then
    # shellcheck source=/dev/null  # written by slurm-up.sh
    source "$_medscale_slurm_dir/env.sh"
else
    echo "slurm-env: no cluster in $_medscale_slurm_dir; run scripts/slurm-up.sh first" >&2
fi
unset _medscale_slurm_dir
