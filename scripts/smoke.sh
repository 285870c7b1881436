#!/usr/bin/env bash
# Smoke test against any running instance: liveness and readiness, the README's curl
# session (sign-up, token, read self), update self, 404 for another user, the admin login
# page, the OpenAPI schema; where configured, the signed webhooks and the welcome email
# that the sign-up and update cause, and /metrics adding up what was sent.
# Usage: scripts/smoke.sh [BASE_URL]   (or `make smoke BASE_URL=...`)
#   SMOKE_FORWARDED_PROTO=https  send X-Forwarded-Proto, as a TLS-terminating proxy does
#                                (reaching a production-settings instance over plain HTTP)
#   SMOKE_READY_STATUS=ok        require /readyz to say this (default: ok or degraded)
#   SMOKE_READY_CHECKS           names /readyz must report, each ok ("database broker ...")
#   SMOKE_WEBHOOK_URL            where the instance reaches a receiver this script runs
#                                (scripts/webhook_receiver.py); SMOKE_WEBHOOK_LISTEN (host:port
#                                of that URL) is where it listens. Needs a staff login:
#   SMOKE_STAFF_EMAIL, SMOKE_STAFF_PASSWORD   (e.g. from `make serve-superuser`)
#   SMOKE_EMAIL_DIR              the instance's EMAIL_FILE_PATH: the welcome email must land
#   SMOKE_WAIT_SECONDS (60)      how long to wait for the webhooks and the email
#   METRICS_URL, METRICS_TOKEN   /metrics (Bearer token if set) counts what was sent
#   METRICS_WORKER_URL           the Celery worker's metrics (CELERY_METRICS_PORT)
# Each optional check says when it is skipped and why.
set -euo pipefail

BASE_URL=${1:-${BASE_URL:-http://127.0.0.1:8000}}
BASE_URL=${BASE_URL%/}
RUN="smoke-$(date +%s)-$RANDOM"
PASSWORD="smoke-test-$RANDOM-harbour-lantern"

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

CURL=(curl -s --max-time 20)
if [[ -n ${SMOKE_FORWARDED_PROTO:-} ]]; then CURL+=(-H "X-Forwarded-Proto: $SMOKE_FORWARDED_PROTO"); fi
JSON=(-H 'Content-Type: application/json')

status_of() { "${CURL[@]}" -o /dev/null -w '%{http_code}' "$@"; }

status=$(status_of "$BASE_URL/healthz")
[[ $status == 200 ]] || fail "/healthz answered $status"

# 200 is "ok" or "degraded" (a replica, Redis or the broker down): both serve traffic.
# The public edge (nginx, the ingress) does not route /readyz: a 404 there says so.
READY_AUTH=()
# Per-dependency details are for operators: the clients /metrics serves (its token, if set).
if [[ -n ${METRICS_TOKEN:-} ]]; then READY_AUTH=(-H "Authorization: Bearer $METRICS_TOKEN"); fi
ready=$("${CURL[@]}" "${READY_AUTH[@]}" -w '\n%{http_code}' "$BASE_URL/readyz")
if [[ ${ready##*$'\n'} == 404 && -z ${SMOKE_READY_STATUS:-}${SMOKE_READY_CHECKS:-} ]]; then
  echo "smoke: skipped /readyz: not exposed at $BASE_URL (probes reach the pods directly)"
else
  [[ ${ready##*$'\n'} == 200 ]] || fail "/readyz answered ${ready##*$'\n'}: ${ready%$'\n'*}"
  readiness=$(json_field '["status"]' <<<"${ready%$'\n'*}")
  echo "smoke: readiness $readiness"
  if [[ -n ${SMOKE_READY_STATUS:-} && $readiness != "$SMOKE_READY_STATUS" ]]; then
    fail "/readyz is $readiness, not $SMOKE_READY_STATUS: ${ready%$'\n'*}"
  fi
  for check in ${SMOKE_READY_CHECKS:-}; do
    [[ $(json_field "[\"checks\"].get(\"$check\", {}).get(\"status\")" <<<"${ready%$'\n'*}") == ok ]] \
      || fail "/readyz does not report $check as ok: ${ready%$'\n'*}"
  done
fi

WAIT_SECONDS=${SMOKE_WAIT_SECONDS:-60}
receiver=""
STAFF=()
webhook_id=""
work=$(mktemp -d)
cleanup() {
  if [[ -n $webhook_id ]]; then
    "${CURL[@]}" -o /dev/null -X DELETE "$BASE_URL/api/v1/webhooks/$webhook_id/" "${STAFF[@]}" || true
  fi
  if [[ -n $receiver ]]; then kill "$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Polls until the command succeeds, at most WAIT_SECONDS.
wait_for() { # what command...
  local what=$1 deadline=$((SECONDS + WAIT_SECONDS))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || fail "no $what within ${WAIT_SECONDS}s"
    sleep 0.5
  done
}

if [[ -z ${SMOKE_WEBHOOK_URL:-} ]]; then
  echo "smoke: skipped webhooks: SMOKE_WEBHOOK_URL is not set"
elif [[ -z ${SMOKE_STAFF_EMAIL:-} || -z ${SMOKE_STAFF_PASSWORD:-} ]]; then
  fail "SMOKE_WEBHOOK_URL needs SMOKE_STAFF_EMAIL and SMOKE_STAFF_PASSWORD to subscribe"
else
  listen=${SMOKE_WEBHOOK_LISTEN:-$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.hostname}:{p.port or 80}")' "$SMOKE_WEBHOOK_URL")}
  secret="smoke-$RANDOM-$RANDOM-$RANDOM-secret"
  python3 "$(dirname "$0")/webhook_receiver.py" --listen "$listen" --secret "$secret" \
    --out "$work/deliveries.jsonl" --seconds $((WAIT_SECONDS + 120)) &
  receiver=$!
  staff_token=$("${CURL[@]}" -f -X POST "$BASE_URL/api/v1/auth/token/" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$SMOKE_STAFF_EMAIL\", \"password\": \"$SMOKE_STAFF_PASSWORD\"}" | json_field '["token"]') \
    || fail "the staff login was refused"
  STAFF=(-H "Authorization: Bearer $staff_token")
  webhook_id=$("${CURL[@]}" -f -X POST "$BASE_URL/api/v1/webhooks/" "${STAFF[@]}" -H 'Content-Type: application/json' \
    -d "{\"url\": \"$SMOKE_WEBHOOK_URL\", \"topics\": [\"user.created\", \"user.updated\"], \"secret\": \"$secret\"}" \
    | json_field '["id"]') || fail "could not subscribe $SMOKE_WEBHOOK_URL"
fi

sign_up() { # email
  "${CURL[@]}" -f -X POST "$BASE_URL/api/v1/users/" "${JSON[@]}" \
    -d "{\"email\": \"$1\", \"password\": \"$PASSWORD\", \"display_name\": \"Smoke\"}"
}

signup=$(sign_up "$RUN@example.com") || fail "sign-up did not answer 201"
user_id=$(json_field '["id"]' <<<"$signup")

token=$("${CURL[@]}" -f -X POST "$BASE_URL/api/v1/auth/token/" "${JSON[@]}" \
  -d "{\"email\": \"$RUN@example.com\", \"password\": \"$PASSWORD\"}" | json_field '["token"]') \
  || fail "token request failed"
AUTH=(-H "Authorization: Bearer $token")

me=$("${CURL[@]}" -f "$BASE_URL/api/v1/users/me/" "${AUTH[@]}") || fail "/users/me/ failed"
[[ $(json_field '["id"]' <<<"$me") == "$user_id" ]] || fail "/users/me/ is not the new user"

updated=$("${CURL[@]}" -f -X PATCH "$BASE_URL/api/v1/users/$user_id/" "${AUTH[@]}" "${JSON[@]}" \
  -d '{"display_name": "Smoke Updated"}') || fail "PATCH of the user's own record failed"
[[ $(json_field '["display_name"]' <<<"$updated") == "Smoke Updated" ]] || fail "update not applied"

other=$(sign_up "$RUN-other@example.com") || fail "second sign-up did not answer 201"
other_id=$(json_field '["id"]' <<<"$other")
not_found=$("${CURL[@]}" -w '\n%{http_code}' "$BASE_URL/api/v1/users/$other_id/" "${AUTH[@]}")
[[ ${not_found##*$'\n'} == 404 ]] || fail "another user's record answered ${not_found##*$'\n'}, not 404"
[[ $(json_field '["error"]["code"]' <<<"${not_found%$'\n'*}") == not_found ]] \
  || fail "the 404 is not the API's error shape"

status=$(status_of "$BASE_URL/admin/login/")
[[ $status == 200 ]] || fail "/admin/login/ answered $status"

# Production serves the schema to staff only (API_DOCS_PUBLIC=false): this user gets 403.
schema=$("${CURL[@]}" -w '\n%{http_code}' "$BASE_URL/api/schema/?format=json" "${AUTH[@]}")
if [[ ${schema##*$'\n'} == 403 ]]; then
  echo "smoke: /api/schema/ is for staff only here (403 for a user)"
else
  json_field '["openapi"]' <<<"${schema%$'\n'*}" | grep -q '^3\.' \
    || fail "/api/schema/ is not an OpenAPI 3 document"
fi

# Both events of this user, each signed with the subscription's secret.
delivered() { # topic
  python3 - "$work/deliveries.jsonl" "$user_id" "$1" <<'PYTHON'
import json, sys
path, user_id, topic = sys.argv[1:]
for line in open(path):
    delivery = json.loads(line)
    body = json.loads(delivery["body"])
    if delivery["topic"] == topic and str(body["payload"].get("id")) == user_id:
        if not delivery["valid_signature"]:
            sys.exit(f"the {topic} webhook has a bad signature")
        sys.exit(0)
sys.exit(1)
PYTHON
}
if [[ -n $webhook_id ]]; then
  for topic in user.created user.updated; do wait_for "signed $topic webhook" delivered "$topic"; done
  echo "smoke: signed user.created and user.updated webhooks received"
fi

if [[ -z ${SMOKE_EMAIL_DIR:-} ]]; then
  echo "smoke: skipped the welcome email: SMOKE_EMAIL_DIR is not set"
else
  welcomed() { grep -rqs -- "To: $RUN@example.com" "$SMOKE_EMAIL_DIR"; }
  wait_for "welcome email to $RUN@example.com in $SMOKE_EMAIL_DIR" welcomed
  echo "smoke: welcome email written"
fi

# One sample's value, summed over the label sets that contain every given label.
metric_sum() { # exposition name label=value...
  python3 - "$@" <<'PYTHON'
import re, sys
text, name, *wanted = sys.argv[1:]
total = 0.0
for line in text.splitlines():
    match = re.match(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)", line)
    if not match or match[1] != name:
        continue
    labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[3] or ""))
    if all(labels.get(k) == v for k, v in (pair.split("=", 1) for pair in wanted)):
        total += float(match[4])
print(int(total) if total.is_integer() else total)
PYTHON
}
scrape() { # url
  local auth=()
  if [[ -n ${METRICS_TOKEN:-} ]]; then auth=(-H "Authorization: Bearer $METRICS_TOKEN"); fi
  "${CURL[@]}" -f "${auth[@]}" "$1"
}

if [[ -z ${METRICS_URL:-} ]]; then
  echo "smoke: skipped /metrics: METRICS_URL is not set (set it, and METRICS_TOKEN if required)"
else
  COUNTER=django_http_responses_total_by_status_view_method_total
  HEALTHZ=(view=healthz method=GET status=200)
  metrics=$(scrape "$METRICS_URL") || fail "$METRICS_URL failed"
  grep -q '^# TYPE ' <<<"$metrics" || fail "$METRICS_URL is not a Prometheus exposition"
  before=$(metric_sum "$metrics" "$COUNTER" "${HEALTHZ[@]}")
  sent=30
  for _ in $(seq "$sent"); do status_of "$BASE_URL/healthz" >/dev/null; done
  metrics=$(scrape "$METRICS_URL") || fail "$METRICS_URL failed"
  after=$(metric_sum "$metrics" "$COUNTER" "${HEALTHZ[@]}")
  # At least: probes may add their own. Fewer means some worker's counts never reach it.
  ((after - before >= sent)) || fail "/metrics counted $((after - before)) of $sent /healthz requests"
  # Several processes (gunicorn) each report their own series; a single process (`make
  # run`) has prometheus_client's standard process metrics instead.
  workers=$(grep -c '^userservice_process_cpu_seconds{' <<<"$metrics" || true)
  if ((workers >= 1)); then
    echo "smoke: /metrics counted all $sent requests; CPU and memory of $workers web processes"
  elif grep -q '^process_cpu_seconds_total ' <<<"$metrics"; then
    echo "smoke: /metrics counted all $sent requests; CPU and memory of the one process"
  else
    fail "/metrics has no CPU series, neither per process nor of the one process"
  fi
fi

if [[ -z ${METRICS_WORKER_URL:-} ]]; then
  echo "smoke: skipped the worker's metrics: METRICS_WORKER_URL is not set"
else
  metrics=$(scrape "$METRICS_WORKER_URL") || fail "$METRICS_WORKER_URL failed"
  tasks=$(metric_sum "$metrics" celery_tasks_total outcome=succeeded)
  ((tasks >= 1)) || fail "the worker's metrics count no task that succeeded"
  grep -q '^userservice_process_cpu_seconds{.*process="worker"' <<<"$metrics" \
    || fail "the worker's metrics have no per-process CPU series"
  echo "smoke: the worker's metrics count $tasks tasks that succeeded"
fi

echo "smoke: OK ($BASE_URL, user $user_id)"
