#!/usr/bin/env bash
# CI's runtime-parity stage: what a user runs, from what the Docker image installs.
#
# A virtualenv is built from the runtime lock alone by scripts/install_runtime.sh, the
# script the Dockerfile runs, so no development package can hide a missing dependency.
# From it, as the README tells a user: `make services-up`, `make serve`, `make worker`,
# `make beat` and `make serve-superuser`, then `make smoke` with every check on: sign-up,
# login and PATCH; the signed user.created and user.updated webhooks at a receiver on
# loopback; the welcome email in the services' mail sink; /readyz ok for every dependency,
# the broker included; /metrics adding up the requests sent; the worker's own metrics.
# Nothing is set for the entry points that a user would not set: only the make variables
# that pick this run's instance of the services and its ports, and the broker: RabbitMQ,
# the production one (`make services-up BROKER=rabbitmq`), so that its client comes from
# the runtime lock too.
#   PARITY_VENV (.venv-runtime)  PARITY_PORT (18800; the receiver +1)
#   PARITY_SERVICES_PORT_BASE (26632)  PARITY_READY_SECONDS (120)  PARITY_BROKER (rabbitmq)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PARITY_VENV:-.venv-runtime}
PORT=${PARITY_PORT:-18800}
READY_SECONDS=${PARITY_READY_SECONDS:-120}
export SERVICES_DIR='' SERVICES_NAME=parity SERVICES_PORT_BASE=${PARITY_SERVICES_PORT_BASE:-26632}
export SERVICES_ENV_FILE=.services.parity.env
STACK=(VENV="$VENV" SERVE_ENV_FILE="$SERVICES_ENV_FILE" PORT="$PORT")
LOGS=$(mktemp -d)
groups=()

log() { printf 'runtime-parity: %s\n' "$*" >&2; }

stop_all() {
  local status=$?
  for group in "${groups[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  for group in "${groups[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$group" 2>/dev/null || true
  done
  if ((status != 0)); then
    for name in serve worker beat; do
      [[ -f $LOGS/$name.log ]] && { log "--- $name (last lines)"; tail -n 40 "$LOGS/$name.log" >&2; }
    done
  fi
  make --no-print-directory services-down >/dev/null 2>&1 || true
  rm -rf "$LOGS"
}
trap stop_all EXIT

# Each entry point in a process group of its own, so that stopping it stops its children.
start() { # name make-target
  setsid make --no-print-directory "$2" "${STACK[@]}" >"$LOGS/$1.log" 2>&1 &
  groups+=("$!")
}

log "runtime virtualenv $VENV from requirements.txt alone (scripts/install_runtime.sh)"
rm -rf "$VENV"
make --no-print-directory "$VENV/.runtime-installed" VENV="$VENV"
if "$VENV/bin/python" -c 'import pytest' 2>/dev/null; then
  log "the runtime virtualenv has pytest: it is not the runtime lock alone"; exit 1
fi

make --no-print-directory services-up BROKER="${PARITY_BROKER:-rabbitmq}" >/dev/null
# Read, not sourced: the entry points must find their settings themselves.
mail_dir=$(sed -n 's/^EMAIL_FILE_PATH=//p' "$SERVICES_ENV_FILE")

wait_until() { # what command...
  local what=$1 deadline=$((SECONDS + READY_SECONDS))
  shift
  until "$@"; do
    for group in "${groups[@]}"; do
      kill -0 -- "-$group" 2>/dev/null || { log "an entry point exited before $what"; exit 1; }
    done
    ((SECONDS < deadline)) || { log "no $what within ${READY_SECONDS}s"; exit 1; }
    sleep 0.5
  done
}
answers() { curl -s -o /dev/null --max-time 5 "$1"; }
ready() { curl -s --max-time 5 "http://127.0.0.1:$PORT/readyz" | grep -q '"status": *"ok"'; }

# One after another, as a user would: each of serve and worker migrates first.
start serve serve
wait_until "readiness ok" ready
log "serving on 127.0.0.1:$PORT; readiness ok"
start worker worker
wait_until "worker metrics" answers "http://127.0.0.1:9808/metrics"
start beat beat
staff_email="parity-staff-$RANDOM@example.com"
staff_password="parity-$RANDOM-$RANDOM-harbour-lantern"
DJANGO_SUPERUSER_EMAIL=$staff_email DJANGO_SUPERUSER_PASSWORD=$staff_password \
  make --no-print-directory serve-superuser "${STACK[@]}" >"$LOGS/superuser.log" 2>&1 \
  || { cat "$LOGS/superuser.log" >&2; exit 1; }

# The image's HEALTHCHECK command, from the runtime environment.
PORT=$PORT "$VENV/bin/python" scripts/healthcheck.py

make --no-print-directory smoke BASE_URL="http://127.0.0.1:$PORT" \
  SMOKE_READY_STATUS=ok SMOKE_READY_CHECKS="database replica_0 redis broker" \
  SMOKE_WEBHOOK_URL="http://127.0.0.1:$((PORT + 1))/hook" \
  SMOKE_STAFF_EMAIL="$staff_email" SMOKE_STAFF_PASSWORD="$staff_password" \
  SMOKE_EMAIL_DIR="$mail_dir" \
  METRICS_URL="http://127.0.0.1:$PORT/metrics" \
  METRICS_WORKER_URL="http://127.0.0.1:9808/metrics"
for group in "${groups[@]}"; do
  kill -0 -- "-$group" 2>/dev/null || { log "an entry point exited during the smoke test"; exit 1; }
done
grep -q "beat: Starting" "$LOGS/beat.log" || { log "beat never started its scheduler"; exit 1; }
log "OK"
