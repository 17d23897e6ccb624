#!/usr/bin/env bash
# Start a private MLflow tracking server on 127.0.0.1 under DIR, for tests and local use.
#
#   uri="$(scripts/mlflow-up.sh [DIR])"   # DIR defaults to /tmp/medscale-mlflow
#   MLFLOW_TRACKING_URI="$uri" medscale train ...   # with `log: [csv, jsonl, mlflow]`
#   scripts/mlflow-down.sh [DIR]
#
# stdout carries only the tracking URI (also written to DIR/uri); progress goes to stderr.
# The server keeps its runs in DIR/mlflow.db (SQLite) and serves artifacts from
# DIR/artifacts, listens on 127.0.0.1 only, on a free port, with one worker. Idempotent: if
# the server of DIR is up and answering, it only prints the URI.
# Exit status 3: mlflow is not installed (callers may skip).
set -euo pipefail

dir="$(realpath -m "${1:-/tmp/medscale-mlflow}")"
wait_s=${MLFLOW_UP_WAIT_S:-300}  # the first start creates the database (slow on a busy CPU)
log() { echo "mlflow-up: $*" >&2; }

python -c "import mlflow" 2>/dev/null || { log "ERROR: mlflow is not installed"; exit 3; }
mkdir -p "$dir"

answering() { [[ -f "$dir/uri" ]] && curl -fsS "$(cat "$dir/uri")/health" >/dev/null 2>&1; }
if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null && answering; then
    cat "$dir/uri"
    exit 0
fi

port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
uri="http://127.0.0.1:$port"
log "starting on $uri (store $dir/mlflow.db)"
setsid mlflow server --host 127.0.0.1 --port "$port" --workers 1 \
    --backend-store-uri "sqlite:///$dir/mlflow.db" \
    --artifacts-destination "$dir/artifacts" --serve-artifacts \
    >"$dir/server.log" 2>&1 </dev/null &
echo $! >"$dir/pid"
echo "$uri" >"$dir/uri"
for ((i = 0; i < wait_s; i++)); do
    if answering; then
        echo "$uri"
        exit 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { log "ERROR: the server exited; see $dir/server.log"; tail -20 "$dir/server.log" >&2; exit 1; }
    sleep 1
done
log "ERROR: no answer on $uri after ${wait_s}s; see $dir/server.log"
exit 1
