#!/usr/bin/env bash
# Smoke test against any running instance: liveness and readiness, the README's curl
# session (sign-up, token, read self), update self, 404 for another user, the admin login
# page, the OpenAPI schema, and /metrics where configured.
# Usage: scripts/smoke.sh [BASE_URL]   (or `make smoke BASE_URL=...`)
#   SMOKE_FORWARDED_PROTO=https  send X-Forwarded-Proto, as a TLS-terminating proxy does
#                                (reaching a production-settings instance over plain HTTP)
#   METRICS_URL, METRICS_TOKEN   check /metrics (Bearer token if set); unset: skipped, said so
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
ready=$("${CURL[@]}" -w '\n%{http_code}' "$BASE_URL/readyz")
if [[ ${ready##*$'\n'} == 404 ]]; then
  echo "smoke: skipped /readyz: not exposed at $BASE_URL (probes reach the pods directly)"
else
  [[ ${ready##*$'\n'} == 200 ]] || fail "/readyz answered ${ready##*$'\n'}: ${ready%$'\n'*}"
  echo "smoke: readiness $(json_field '["status"]' <<<"${ready%$'\n'*}")"
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

if [[ -z ${METRICS_URL:-} ]]; then
  echo "smoke: skipped /metrics: METRICS_URL is not set (set it, and METRICS_TOKEN if required)"
else
  METRICS_AUTH=()
  if [[ -n ${METRICS_TOKEN:-} ]]; then METRICS_AUTH=(-H "Authorization: Bearer $METRICS_TOKEN"); fi
  metrics=$("${CURL[@]}" -f "${METRICS_AUTH[@]}" "$METRICS_URL") || fail "$METRICS_URL failed"
  grep -q '^# TYPE ' <<<"$metrics" || fail "$METRICS_URL is not a Prometheus exposition"
  echo "smoke: /metrics reachable"
fi

echo "smoke: OK ($BASE_URL, user $user_id)"
