#!/usr/bin/env bash
# `make test-browser`: the staff admin in a real, headless Chromium.
#
# Starts disposable services (PostgreSQL primary + replica, Redis), seeds a few thousand
# users and a staff login, serves the app the `make serve` way (gunicorn, production
# settings), runs browser_tests/ with Playwright against it, and stops everything, also
# on failure. Screenshots land in BROWSER_ARTIFACTS.
#   TEST_PORT_BASE (26432): the services use TEST_PORT_BASE+10..+12, apart from `make test`'s
#   BROWSER_PORT (18767): the HTTP port   BROWSER_SEED_USERS (3000)
#   BROWSER_ARTIFACTS (artifacts/browser)   CHROMIUM (/usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test-browser: %s\n' "$*" >&2; }

PORT=${BROWSER_PORT:-18767}
SEED_USERS=${BROWSER_SEED_USERS:-3000}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export BROWSER_ARTIFACTS=${BROWSER_ARTIFACTS:-artifacts/browser}
export SERVICES_DIR='' SERVICES_NAME=browser SERVICES_PORT_BASE=$((${TEST_PORT_BASE:-26432} + 10))
export SERVICES_ENV_FILE=.services.browser.env
BIN=.venv/bin

# Debian's Chromium: no browser download is possible (or wanted) here.
if [[ ! -x $CHROMIUM ]]; then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium with apt-get"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >&2
  else
    log "no browser at $CHROMIUM; install it with:"
    log "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium"
    exit 1
  fi
fi

server_log=$(mktemp)
server=""
cleanup() {
  local status=$?
  if [[ -n $server ]]; then
    # make serve runs in its own session: this stops make and gunicorn's master and workers.
    kill -TERM -- "-$server" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server" 2>/dev/null || true
  fi
  if ((status != 0)); then tail -n 40 "$server_log" >&2 || true; fi
  rm -f "$server_log"
  bash scripts/services.sh down >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT

bash scripts/services.sh up >/dev/null

STAFF_EMAIL=browser-staff@example.com
STAFF_PASSWORD="browser-$RANDOM-harbour-lantern-$RANDOM"
export DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(50))')}
(
  # shellcheck source=/dev/null  # written by scripts/services.sh at run time
  set -a && . "./$SERVICES_ENV_FILE" && set +a
  export DJANGO_DEBUG=false
  $BIN/python manage.py migrate --noinput >/dev/null
  $BIN/python manage.py seed_users "$SEED_USERS" >/dev/null
  DJANGO_SUPERUSER_EMAIL=$STAFF_EMAIL DJANGO_SUPERUSER_PASSWORD=$STAFF_PASSWORD \
    $BIN/python manage.py createsuperuser --noinput >/dev/null
  $BIN/python manage.py shell <browser_tests/seed_dead_letter.py >/dev/null
)

log "serving on 127.0.0.1:$PORT"
setsid make serve PORT="$PORT" SERVE_ENV_FILE="$SERVICES_ENV_FILE" >"$server_log" 2>&1 &
server=$!
for _ in $(seq 1 240); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  kill -0 "$server" 2>/dev/null || { log "make serve exited"; exit 1; }
  sleep 0.5
done

mkdir -p "$BROWSER_ARTIFACTS"
BROWSER_BASE_URL="http://127.0.0.1:$PORT" BROWSER_STAFF_EMAIL=$STAFF_EMAIL \
  BROWSER_STAFF_PASSWORD=$STAFF_PASSWORD $BIN/pytest browser_tests -p no:cacheprovider "$@"
