#!/usr/bin/env bash
# Blue-green releases of the web tier (deploy/k8s): two colours of the web Deployment,
# one Service `web` whose `colour` selector picks the live one.
#
#   deploy/blue-green.sh deploy IMAGE   migrate (expand-only, docs/deploy.md), roll the idle
#                                       colour to IMAGE, wait until ready, smoke-test it
#                                       through its own Service, switch `web` to it, then
#                                       move worker and beat to IMAGE. The old colour keeps
#                                       running for rollback.
#   deploy/blue-green.sh rollback       switch `web` back to the previous colour (and worker
#                                       and beat back to its image).
#   deploy/blue-green.sh status         the live colour and each colour's image.
#
# Environment: NAMESPACE (default: kubectl's current), KUBECTL (kubectl),
# SMOKE_CMD (scripts/smoke.sh), SMOKE_LOCAL_PORT (18080, for the port-forward),
# SMOKE_HOST (localhost; must be in DJANGO_ALLOWED_HOSTS), ROLLOUT_TIMEOUT (300s),
# MIGRATE_TIMEOUT (600s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KUBECTL=${KUBECTL:-kubectl}
SMOKE_CMD=${SMOKE_CMD:-$ROOT/scripts/smoke.sh}
SMOKE_LOCAL_PORT=${SMOKE_LOCAL_PORT:-18080}
SMOKE_HOST=${SMOKE_HOST:-localhost}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-300s}
MIGRATE_TIMEOUT=${MIGRATE_TIMEOUT:-600s}
PREVIOUS_ANNOTATION=userservice/previous-colour

NAMESPACE_ARGS=()
if [[ -n ${NAMESPACE:-} ]]; then NAMESPACE_ARGS=(--namespace "$NAMESPACE"); fi

log() { printf 'blue-green: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { log "usage: $0 deploy IMAGE | rollback | status"; exit 2; }
kc() { "$KUBECTL" "${NAMESPACE_ARGS[@]}" "$@"; }

other_colour() {
  case $1 in
    blue) echo green ;;
    green) echo blue ;;
    *) die "unknown colour '$1' (the web Service's selector must say blue or green)" ;;
  esac
}

live_colour() {
  local colour
  colour=$(kc get service web -o 'jsonpath={.spec.selector.colour}') || die "cannot read Service web"
  other_colour "$colour" >/dev/null
  echo "$colour"
}

image_of() { kc get deployment "web-$1" -o 'jsonpath={.spec.template.spec.containers[0].image}'; }

# A new Job per release from the suspended CronJob template (a Job's pods are immutable).
migrate() { # image
  local job
  job="migrate-$(date -u +%Y%m%d%H%M%S)"
  log "migrating with $1 (job/$job)"
  kc set image cronjob/migrate "migrate=$1" >/dev/null
  kc create job "$job" --from=cronjob/migrate >/dev/null
  kc wait --for=condition=complete "job/$job" --timeout="$MIGRATE_TIMEOUT" >/dev/null \
    || die "migration job/$job did not complete; nothing was switched (kubectl logs job/$job)"
}

wait_for_port() { # pid port: bounded polling, not a fixed sleep
  local deadline=$((SECONDS + 30))
  until (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; do
    kill -0 "$1" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# The idle colour's own Service, through a port-forward: the same pods `web` will select.
smoke() { # colour
  local forward status=0
  log "smoke-testing web-$1"
  # kubectl itself in the background (not through kc, a function: its subshell's PID
  # would be killed below and leave the port-forward running).
  "$KUBECTL" "${NAMESPACE_ARGS[@]}" port-forward "service/web-$1" "$SMOKE_LOCAL_PORT:80" >/dev/null 2>&1 &
  forward=$!
  if wait_for_port "$forward" "$SMOKE_LOCAL_PORT"; then
    # TLS ends at the ingress; this header tells Django the request did arrive over HTTPS.
    SMOKE_FORWARDED_PROTO=https "$SMOKE_CMD" "http://$SMOKE_HOST:$SMOKE_LOCAL_PORT" >&2 || status=$?
  else
    log "port-forward to service/web-$1 did not open"
    status=1
  fi
  kill "$forward" 2>/dev/null || true
  wait "$forward" 2>/dev/null || true
  return "$status"
}

switch_to() { # colour previous-colour
  log "switching Service web to $1"
  kc patch service web --type merge -p "{\"spec\":{\"selector\":{\"colour\":\"$1\"}}}" >/dev/null
  kc annotate service web --overwrite "$PREVIOUS_ANNOTATION=$2" >/dev/null
}

# Workers and beat run one image at a time; expand/contract keeps both versions valid.
move_background_processes() { # image
  log "moving worker and beat to $1"
  kc set image deployment/worker "worker=$1" >/dev/null
  kc set image deployment/beat "beat=$1" >/dev/null
  kc rollout status deployment/worker --timeout="$ROLLOUT_TIMEOUT" >/dev/null
  kc rollout status deployment/beat --timeout="$ROLLOUT_TIMEOUT" >/dev/null
}

cmd_deploy() { # image
  local image=$1 live idle
  live=$(live_colour)
  idle=$(other_colour "$live")
  log "live colour: $live ($(image_of "$live")); deploying $image to $idle"
  migrate "$image"
  kc set image "deployment/web-$idle" "web=$image" >/dev/null
  kc rollout status "deployment/web-$idle" --timeout="$ROLLOUT_TIMEOUT" >/dev/null \
    || die "web-$idle did not become ready; live traffic stays on $live"
  smoke "$idle" || die "smoke tests failed on web-$idle; live traffic stays on $live"
  switch_to "$idle" "$live"
  move_background_processes "$image"
  log "done: $idle is live with $image; '$0 rollback' returns to $live"
}

cmd_rollback() {
  local live previous image
  live=$(live_colour)
  previous=$(kc get service web -o "jsonpath={.metadata.annotations.${PREVIOUS_ANNOTATION//./\\.}}")
  previous=${previous:-$(other_colour "$live")}
  [[ $previous != "$live" ]] || die "nothing to roll back to: $live is already live"
  other_colour "$previous" >/dev/null
  image=$(image_of "$previous")
  kc rollout status "deployment/web-$previous" --timeout="$ROLLOUT_TIMEOUT" >/dev/null \
    || die "web-$previous is not ready; not switching"
  switch_to "$previous" "$live"
  move_background_processes "$image"
  log "done: $previous is live again with $image"
}

cmd_status() {
  local live colour
  live=$(live_colour)
  for colour in blue green; do
    printf '%-5s %-4s %s\n' "$colour" "$([[ $colour == "$live" ]] && echo live || echo idle)" "$(image_of "$colour")"
  done
}

case ${1:-} in
  deploy) [[ $# -eq 2 && -n $2 ]] || usage; cmd_deploy "$2" ;;
  rollback) [[ $# -eq 1 ]] || usage; cmd_rollback ;;
  status) [[ $# -eq 1 ]] || usage; cmd_status ;;
  *) usage ;;
esac
