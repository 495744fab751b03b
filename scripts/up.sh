#!/usr/bin/env bash
# `make up`: the Celery deployment on one machine. Uses SIDYP_REDIS_URL when it answers; otherwise starts
# a local redis-server (persistence on, data under the data dir). Then one `sidyp worker` and the API.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export SIDYP_DATA_DIR="${SIDYP_DATA_DIR:-$PWD/data}"
HOST="${SIDYP_HOST:-127.0.0.1}"
PORT="${SIDYP_PORT:-8000}"
mkdir -p "$SIDYP_DATA_DIR"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

redis_answers() {
  "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PYEOF
}

if [ -z "${SIDYP_REDIS_URL:-}" ] || ! redis_answers "$SIDYP_REDIS_URL"; then
  if [ -n "${SIDYP_REDIS_URL:-}" ]; then
    echo "SIDYP_REDIS_URL=$SIDYP_REDIS_URL does not answer; starting a local redis-server instead"
  fi
  command -v redis-server >/dev/null 2>&1 || bash scripts/ensure-redis.sh
  REDIS_PORT="${SIDYP_LOCAL_REDIS_PORT:-6379}"
  mkdir -p "$SIDYP_DATA_DIR/redis"
  # Append-only persistence: accepted jobs survive a Redis restart.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SIDYP_DATA_DIR/redis" \
    --appendonly yes --save 60 1 >"$SIDYP_DATA_DIR/redis.log" 2>&1 &
  pids+=($!)
  export SIDYP_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  for _ in $(seq 1 50); do redis_answers "$SIDYP_REDIS_URL" && break; sleep 0.1; done
  redis_answers "$SIDYP_REDIS_URL" || { echo "redis-server did not start (see $SIDYP_DATA_DIR/redis.log)"; exit 1; }
  echo "redis-server on $SIDYP_REDIS_URL"
fi

"$PY" -m sidyp_cli worker &
pids+=($!)
"$PY" -m sidyp_cli serve --host "$HOST" --port "$PORT" &
pids+=($!)
echo "sidyp API on http://$HOST:$PORT (docs at /docs); Ctrl-C stops it all"
wait -n "${pids[@]}" || true
