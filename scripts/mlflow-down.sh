#!/usr/bin/env bash
# Stop the MLflow server that scripts/mlflow-up.sh started under DIR (its process group).
#
#   scripts/mlflow-down.sh [DIR]   # DIR defaults to /tmp/medscale-mlflow; keeps DIR's data
set -euo pipefail

dir="$(realpath -m "${1:-/tmp/medscale-mlflow}")"
[[ -f "$dir/pid" ]] || exit 0
pid="$(cat "$dir/pid")"
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"  # setsid: the group is the server's
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
fi
rm -f "$dir/pid" "$dir/uri"
echo "mlflow-down: stopped the server of $dir" >&2
