#!/usr/bin/env bash
# Smoke test against any running instance: the README's curl session, plus the admin
# login page and the OpenAPI schema. Usage: scripts/smoke.sh [BASE_URL]
set -euo pipefail

BASE_URL=${1:-${BASE_URL:-http://127.0.0.1:8000}}
EMAIL="smoke-$(date +%s)-$RANDOM@example.com"
PASSWORD="smoke-test-$RANDOM-harbour-lantern"

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

status=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/healthz")
[[ $status == 200 ]] || fail "/healthz answered $status"

signup=$(curl -sf -X POST "$BASE_URL/api/v1/users/" -H 'Content-Type: application/json' \
  -d "{\"email\": \"$EMAIL\", \"password\": \"$PASSWORD\", \"display_name\": \"Smoke\"}") \
  || fail "sign-up did not answer 201"
user_id=$(json_field '["id"]' <<<"$signup")

token=$(curl -sf -X POST "$BASE_URL/api/v1/auth/token/" -H 'Content-Type: application/json' \
  -d "{\"email\": \"$EMAIL\", \"password\": \"$PASSWORD\"}" | json_field '["token"]') \
  || fail "token request failed"

me=$(curl -sf "$BASE_URL/api/v1/users/me/" -H "Authorization: Bearer $token") || fail "/users/me/ failed"
[[ $(json_field '["id"]' <<<"$me") == "$user_id" ]] || fail "/users/me/ is not the new user"

status=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/admin/login/")
[[ $status == 200 ]] || fail "/admin/login/ answered $status"

curl -sf "$BASE_URL/api/schema/?format=json" | json_field '["openapi"]' | grep -q '^3\.' \
  || fail "/api/schema/ is not an OpenAPI 3 document"

echo "smoke: OK ($BASE_URL, user $user_id)"
