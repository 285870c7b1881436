#!/usr/bin/env bash
# The production way of serving, smoke-tested: gunicorn with config/gunicorn.py, DEBUG
# off, HTTPS redirect and secure cookies on (the smoke test sends X-Forwarded-Proto as
# the TLS proxy would), on its own instance of the real services (PostgreSQL primary +
# replica, Redis as cache and broker). What `make serve` does, checked in CI.
#   SMOKE_GUNICORN_PORT (18766)  SMOKE_SERVICES_PORT_BASE (26532)
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${SMOKE_GUNICORN_PORT:-18766}
export SERVICES_NAME=smoke SERVICES_PORT_BASE=${SMOKE_SERVICES_PORT_BASE:-26532}
export SERVICES_ENV_FILE=.services.smoke.env
log=$(mktemp)
server=""

cleanup() {
  if [[ -n $server ]]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  bash scripts/services.sh down >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT

make --no-print-directory .venv/.runtime-installed
bash scripts/services.sh up >/dev/null
set -a
# shellcheck source=/dev/null
. "./$SERVICES_ENV_FILE"
set +a
export DJANGO_DEBUG=false DJANGO_ALLOWED_HOSTS=localhost DJANGO_SECURE_SSL_REDIRECT=true \
  DJANGO_SECURE_COOKIES=true WEB_CONCURRENCY=2 HOST=127.0.0.1 PORT
DJANGO_SECRET_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
export DJANGO_SECRET_KEY

.venv/bin/python manage.py migrate --noinput >/dev/null
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/gunicorn -c config/gunicorn.py config.wsgi >"$log" 2>&1 &
server=$!

for _ in $(seq 1 120); do
  curl -s -o /dev/null -H 'Host: localhost' "http://127.0.0.1:$PORT/healthz" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "gunicorn exited" >&2; exit 1; }
  sleep 0.5
done
# /metrics answers loopback clients when no METRICS_TOKEN is set, as here.
METRICS_URL="http://localhost:$PORT/metrics" SMOKE_FORWARDED_PROTO=https bash scripts/smoke.sh "http://localhost:$PORT" || { cat "$log" >&2; exit 1; }
