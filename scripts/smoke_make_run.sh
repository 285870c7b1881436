#!/usr/bin/env bash
# Checks the README's first screen: `make run` on a clean checkout serves the API on its
# embedded default (SQLite, no services), and the smoke test passes against it.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${SMOKE_PORT:-18765}
log=$(mktemp)
# Its own session, so that stopping it stops make, runserver and runserver's reloader.
setsid make run PORT="$PORT" >"$log" 2>&1 &
server=$!
trap 'kill -TERM -- -$server 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 240); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "make run exited" >&2; exit 1; }
  sleep 0.5
done
METRICS_URL="http://127.0.0.1:$PORT/metrics" bash scripts/smoke.sh "http://127.0.0.1:$PORT" || { cat "$log" >&2; exit 1; }
