#!/usr/bin/env bash
# Disposable backing services for development and tests: PostgreSQL primary,
# streaming hot-standby replica and Redis, and with BROKER=rabbitmq a RabbitMQ node as
# the Celery broker, on private ports, node names and data dirs so they never touch the
# system instances on 5432/6379/5672 (nor the system's epmd on 4369).
#
# Usage: scripts/services.sh up|down|status|env|rabbitmqctl ARGS...
#   SERVICES_NAME (dev)  SERVICES_PORT_BASE (25432: primary; replica +1, redis +2,
#   RabbitMQ AMQP +3, its Erlang distribution +4, its own epmd +5)
#   SERVICES_DIR (/tmp/userservice-services-NAME-BASE)  SERVICES_ENV_FILE (./.services.env)
#   BROKER (redis: the Celery broker is a database of the Redis; rabbitmq: the RabbitMQ)
set -euo pipefail

SERVICES_NAME=${SERVICES_NAME:-dev}
SERVICES_PORT_BASE=${SERVICES_PORT_BASE:-25432}
SERVICES_DIR=${SERVICES_DIR:-/tmp/userservice-services-$SERVICES_NAME-$SERVICES_PORT_BASE}
SERVICES_ENV_FILE=${SERVICES_ENV_FILE:-.services.env}
BROKER=${BROKER:-redis}

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $SERVICES_PORT_BASE =~ ^[0-9]+$ ]] || die "SERVICES_PORT_BASE must be a number"
[[ $SERVICES_DIR == /* ]] || die "SERVICES_DIR must be an absolute path"
[[ $BROKER == redis || $BROKER == rabbitmq ]] || die "BROKER must be redis or rabbitmq"
# Each instance's directory records its port base. A SERVICES_DIR left in the environment
# by sourcing another instance's env file would otherwise point this one at that one's
# data, and `up` or `down` would stop and delete it.
if [[ -f $SERVICES_DIR/port-base && $(<"$SERVICES_DIR/port-base") != "$SERVICES_PORT_BASE" ]]; then
  die "SERVICES_DIR=$SERVICES_DIR holds the instance on port base $(<"$SERVICES_DIR/port-base"), not $SERVICES_PORT_BASE; unset SERVICES_DIR"
fi

PRIMARY_PORT=$SERVICES_PORT_BASE
REPLICA_PORT=$((SERVICES_PORT_BASE + 1))
REDIS_PORT=$((SERVICES_PORT_BASE + 2))
PRIMARY_DATA=$SERVICES_DIR/primary
REPLICA_DATA=$SERVICES_DIR/replica
SOCKET_DIR=$SERVICES_DIR/sock
LOG_DIR=$SERVICES_DIR/log
RUN_DIR=$SERVICES_DIR/run
REDIS_DIR=$SERVICES_DIR/redis
RABBITMQ_PORT=$((SERVICES_PORT_BASE + 3))
RABBITMQ_DIR=$SERVICES_DIR/rabbitmq
RABBITMQ_BIN=/usr/lib/rabbitmq/bin
RABBITMQ_USER=userservice
DB_NAME=userservice
FALLBACK_USER=userservice
PG_BINDIR=""
PG_USER=""

# The caller's libpq settings must not redirect our tools to another server.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGDATA
# The caller's LANG may not be generated here; PostgreSQL tools warn or fail on it.
export LC_ALL=C

find_pg_bindir() {
  local dir="" tool
  if command -v pg_config >/dev/null 2>&1; then dir=$(pg_config --bindir 2>/dev/null || true); fi
  if [[ -z $dir || ! -x $dir/initdb ]]; then
    dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  for tool in initdb pg_ctl pg_basebackup psql pg_isready; do [[ -x $dir/$tool ]] || return 1; done
  PG_BINDIR=$dir
}

have_redis() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }
have_rabbitmq() { [[ $BROKER != rabbitmq || -x $RABBITMQ_BIN/rabbitmq-server ]]; }

ensure_binaries() {
  if find_pg_bindir && have_redis && have_rabbitmq; then return 0; fi
  local install="apt-get install -y --no-install-recommends postgresql redis-server"
  if [[ $BROKER == rabbitmq ]]; then install+=" rabbitmq-server"; fi
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL/Redis binaries missing; install them with:"
    log "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive $install"
    exit 1
  fi
  log "installing the services' packages with apt-get"
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $install >&2
  if ! find_pg_bindir || ! have_redis || ! have_rabbitmq; then die "binaries still missing after apt-get install"; fi
}

# pg_ctl only works as the data owner, so an existing SERVICES_DIR's owner wins
# over the defaults (e.g. if the postgres user appeared since the last run).
detect_pg_user() {
  if [[ $EUID -ne 0 ]]; then PG_USER=$(id -un)
  elif [[ -d $SERVICES_DIR && $(stat -c %U "$SERVICES_DIR") != root ]]; then PG_USER=$(stat -c %U "$SERVICES_DIR")
  elif id -u postgres >/dev/null 2>&1; then PG_USER=postgres
  else PG_USER=$FALLBACK_USER
  fi
}

ensure_pg_user_exists() {
  if [[ $EUID -ne 0 ]] || id -u "$PG_USER" >/dev/null 2>&1; then return 0; fi
  log "creating system user $PG_USER (PostgreSQL refuses to run as root)"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
}

# PostgreSQL refuses to run as root, so root drops to PG_USER. `cd /` spares the
# tools a cwd they cannot read (e.g. a repo under /root).
as_pg_user() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u "$PG_USER" -- "$@"); else (cd / && "$@"); fi
}

prepare_dirs() {
  mkdir -p "$SERVICES_DIR" "$SOCKET_DIR" "$LOG_DIR" "$RUN_DIR" "$REDIS_DIR"
  echo "$SERVICES_PORT_BASE" >"$SERVICES_DIR/port-base"
  if [[ $EUID -eq 0 ]]; then chown "$PG_USER:" "$SERVICES_DIR" "$SOCKET_DIR" "$LOG_DIR" "$RUN_DIR" "$REDIS_DIR"; fi
  as_pg_user test -w "$SERVICES_DIR" || die "$PG_USER cannot write $SERVICES_DIR (parent dir not traversable?)"
}

# Bounded polling instead of fixed sleeps: fast when things are quick, finite when not.
wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.25
  done
}

pg_ready() { [[ -n $PG_BINDIR ]] && "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$1" -t 3; }

pg_query() { # port database sql
  "$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"
}

# Another instance sharing our port must not be silently adopted as ours.
pg_up_here() { # port datadir name
  pg_ready "$1" || return 1
  [[ $(realpath -m "$(pg_query "$1" postgres 'SHOW data_directory' 2>/dev/null)") == "$(realpath -m "$2")" ]] \
    || die "port $1 is served by something other than our $3; pick another SERVICES_PORT_BASE"
}

# The postmaster's cwd is its data dir; that tells our server apart from an
# unrelated process that reused a PID recorded in a crashed run's postmaster.pid.
our_postmaster_pid() { # datadir
  local pid
  pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$(realpath -m "$1")" ]] || return 1
  echo "$pid"
}

# A killed postmaster lingers as a zombie until reaped, and its children (cwd =
# data dir) exit a moment later; a new postmaster refuses to start while either
# remains. A live unrelated process that reused the PID does not count.
pg_procs_gone() { # datadir pid...
  local dir cwd pid
  dir=$(realpath -m "$1")
  shift
  for pid; do ! grep -qsE '^State:\s+[ZX]' "/proc/$pid/status" || return 1; done
  for cwd in /proc/[0-9]*/cwd; do [[ $(readlink "$cwd" 2>/dev/null) != "$dir" ]] || return 1; done
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# For a PID verified as ours, "gone" is exact; the zombie test in pg_procs_gone
# has a brief blind spot while a killed process is still tearing down.
kill_postmaster() { # pid name
  kill -KILL "$1" 2>/dev/null || true
  wait_for 15 "$2 (pid $1) to exit" pid_gone "$1" || die "$2 (pid $1) would not die"
}

# Both lock files name the old postmaster; the new one checks both.
wait_pg_gone() { # datadir port name
  local pids
  pids=$(head -q -n 1 "$1/postmaster.pid" "$SOCKET_DIR/.s.PGSQL.$2.lock" 2>/dev/null | grep -E '^[0-9]+$' || true)
  # shellcheck disable=SC2086 # one word per PID
  wait_for 15 "old $3 processes to exit" pg_procs_gone "$1" $pids || die "old $3 processes linger"
}

write_pg_config() { # datadir port name
  # Appended, so these win over initdb's (or the cloned primary's) defaults. The
  # logging collector keeps logs in SERVICES_DIR even after a bare 'pg_ctl start'.
  local settings=(
    "listen_addresses = '127.0.0.1'" "port = $2" "unix_socket_directories = '$SOCKET_DIR'"
    "wal_level = replica" "max_wal_senders = 10" "max_replication_slots = 10" "wal_keep_size = '256MB'"
    "hot_standby = on" "hot_standby_feedback = on" "max_connections = 200" "shared_buffers = 128MB"
    "fsync = off" "full_page_writes = off" "synchronous_commit = off"
    "logging_collector = on" "log_directory = '$LOG_DIR'" "log_filename = '$3.log'"
  )
  printf '%s\n' "" "# ---- added by scripts/services.sh ----" "${settings[@]}" >>"$1/postgresql.conf"
}

init_primary() {
  # A new primary has a new system identifier, so any old replica is useless.
  rm -rf -- "$PRIMARY_DATA" "$REPLICA_DATA" "$RUN_DIR/primary.ready" "$RUN_DIR/replica.ready"
  log "initialising primary in $PRIMARY_DATA"
  as_pg_user "$PG_BINDIR/initdb" -D "$PRIMARY_DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
    >"$LOG_DIR/initdb.log" 2>&1 || { tail -n 20 "$LOG_DIR/initdb.log" >&2; die "initdb failed"; }
  write_pg_config "$PRIMARY_DATA" "$PRIMARY_PORT" primary
  # Disposable cluster listening on 127.0.0.1 only: trust everything.
  printf '%s\n' "local all all trust" "host all all 127.0.0.1/32 trust" "host all all ::1/128 trust" \
    "local replication all trust" "host replication all 127.0.0.1/32 trust" "host replication all ::1/128 trust" \
    >"$PRIMARY_DATA/pg_hba.conf"
  # Marker last: a run killed mid-initdb leaves no marker and gets a clean re-init.
  touch "$RUN_DIR/primary.ready"
}

init_replica() {
  rm -rf -- "$REPLICA_DATA" "$RUN_DIR/replica.ready"
  log "cloning replica into $REPLICA_DATA"
  as_pg_user "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$REPLICA_DATA" \
    -R -X stream -c fast --no-sync >"$LOG_DIR/basebackup.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/basebackup.log" >&2; die "pg_basebackup failed"; }
  write_pg_config "$REPLICA_DATA" "$REPLICA_PORT" replica
  touch "$RUN_DIR/replica.ready"
}

start_pg() { # datadir port name
  local pid
  if pid=$(our_postmaster_pid "$1"); then
    # Alive but not answering: wedged by an earlier run. It is disposable, and
    # a polite pg_ctl stop could hang on it.
    log "killing unresponsive $3 (pid $pid)"
    kill_postmaster "$pid" "$3"
  fi
  wait_pg_gone "$1" "$2" "$3"
  rm -f -- "$1/postmaster.pid" # whatever wrote it is gone, so it is stale
  log "starting $3 on 127.0.0.1:$2"
  as_pg_user "$PG_BINDIR/pg_ctl" -D "$1" -l "$LOG_DIR/$3-startup.log" -w -t 60 start >/dev/null 2>&1 || {
    tail -n 20 "$LOG_DIR/$3-startup.log" "$LOG_DIR/$3.log" >&2 2>/dev/null || true
    die "$3 failed to start (port $2 taken?)"
  }
}

stop_pg() { # datadir port name
  local pid
  pid=$(our_postmaster_pid "$1") || return 0
  log "stopping $3"
  if [[ -n $PG_BINDIR ]]; then
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$1" -m fast -w -t 20 stop >/dev/null 2>&1 && return 0
    as_pg_user "$PG_BINDIR/pg_ctl" -D "$1" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
  fi
  kill_postmaster "$pid" "$3"
  wait_pg_gone "$1" "$2" "$3"
}

ensure_database() {
  [[ $(pg_query "$PRIMARY_PORT" postgres "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") == 1 ]] && return 0
  log "creating database $DB_NAME"
  pg_query "$PRIMARY_PORT" postgres "CREATE DATABASE $DB_NAME OWNER postgres"
}

replica_in_recovery() { [[ $(pg_query "$REPLICA_PORT" postgres 'SELECT pg_is_in_recovery()') == t ]]; }
primary_streaming() {
  [[ $(pg_query "$PRIMARY_PORT" postgres "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") -ge 1 ]]
}

# The password reaches redis-cli through its environment, never its arguments (ps).
redis_cli() {
  REDISCLI_AUTH=$(cat "$SERVICES_DIR/redis-password" 2>/dev/null || true) \
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@" 2>/dev/null
}
redis_alive() { [[ $(redis_cli ping) == PONG ]]; }
redis_unprotected() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
redis_gone() { ! redis_alive; }
redis_ours() { [[ $(redis_cli config get dir | tail -n 1) == "$(realpath -m "$REDIS_DIR")" ]]; }
redis_up_here() {
  redis_alive || return 1
  redis_ours || die "port $REDIS_PORT is served by something other than our redis; pick another SERVICES_PORT_BASE"
}

# Redis refuses clients without this instance's password: anything else on the machine
# could otherwise rewrite throttle counters, cached tokens or the task queue. Made once
# an instance (like the secret key), hex so it needs no escaping in a URL.
redis_password() {
  local file=$SERVICES_DIR/redis-password
  if [[ ! -s $file ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

start_redis() {
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  # The password goes in a config file only the server's user reads, not on its
  # command line (ps would show it).
  local conf=$RUN_DIR/redis.conf
  (umask 077 && printf 'requirepass %s\n' "$(redis_password)" >"$conf")
  if [[ $EUID -eq 0 ]]; then chown "$PG_USER:" "$conf"; fi
  as_pg_user "$(command -v redis-server)" "$conf" --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --save "" --appendonly no --dir "$REDIS_DIR" --pidfile "$RUN_DIR/redis.pid" --logfile "$LOG_DIR/redis.log" >/dev/null
  wait_for 15 "redis to answer PING" redis_alive || { tail -n 20 "$LOG_DIR/redis.log" >&2; die "redis failed to start"; }
}

# RabbitMQ: a node of our own. Its node name, ports (AMQP, distribution, and an epmd of
# its own: the system's epmd on 4369 belongs to the system's RabbitMQ), Erlang cookie
# (in its own HOME), data and config live under SERVICES_DIR; the Debian package's
# /etc/rabbitmq files are never read. It runs as the services' user, like PostgreSQL.
rabbitmq_env() {
  export HOME=$RABBITMQ_DIR/home
  export RABBITMQ_NODENAME=userservice-$SERVICES_NAME-$SERVICES_PORT_BASE@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$RABBITMQ_PORT
  export RABBITMQ_DIST_PORT=$((SERVICES_PORT_BASE + 4))
  export ERL_EPMD_PORT=$((SERVICES_PORT_BASE + 5)) ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_CONF_ENV_FILE=$RABBITMQ_DIR/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$RABBITMQ_DIR/rabbitmq.conf
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBITMQ_DIR/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$RABBITMQ_DIR/data RABBITMQ_LOG_BASE=$LOG_DIR
  export RABBITMQ_PID_FILE=$RUN_DIR/rabbitmq.pid ERL_CRASH_DUMP=$LOG_DIR/erl_crash.dump
  export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

# runuser resets HOME, where Erlang looks for the cookie: passed on explicitly.
rabbitmqctl_run() { (rabbitmq_env && as_pg_user env HOME="$HOME" "$RABBITMQ_BIN/rabbitmqctl" "$@"); }

rabbitmq_password() {
  local file=$SERVICES_DIR/rabbitmq-password
  if [[ ! -s $file ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
  fi
  cat "$file"
}

rabbitmq_pid() {
  local pid
  pid=$(cat "$RUN_DIR/rabbitmq.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && grep -qs beam "/proc/$pid/cmdline" || return 1
  echo "$pid"
}

# Answers AMQP on its port (a TCP connect), and is our node (by its pid file).
rabbitmq_alive() { rabbitmq_pid >/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$RABBITMQ_PORT") 2>/dev/null; }

# The node refuses to start while its distribution port has a socket of a previous node
# in TIME-WAIT (rabbitmqctl's connections, up to a minute after that node stopped).
dist_port_free() { [[ -z $(ss -Htan "( sport = :$((SERVICES_PORT_BASE + 4)) )" 2>/dev/null) ]]; }

start_rabbitmq() {
  wait_for 90 "rabbitmq's distribution port to be free" dist_port_free \
    || die "port $((SERVICES_PORT_BASE + 4)) stays taken; pick another SERVICES_PORT_BASE"
  mkdir -p "$RABBITMQ_DIR/home" "$RABBITMQ_DIR/data"
  local cookie=$RABBITMQ_DIR/home/.erlang.cookie
  [[ -s $cookie ]] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$cookie")
  chmod 400 "$cookie"
  : >"$RABBITMQ_DIR/rabbitmq-env.conf"
  echo "[]." >"$RABBITMQ_DIR/enabled_plugins"
  # default_user applies when the node first creates its database. consumer_timeout (ms)
  # is above CELERY_TASK_TIME_LIMIT: a task still running is never taken from its worker.
  (umask 077 && printf '%s\n' \
    "listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT" \
    "default_user = $RABBITMQ_USER" "default_pass = $(rabbitmq_password)" \
    "default_permissions.configure = .*" "default_permissions.read = .*" "default_permissions.write = .*" \
    "loopback_users = none" "consumer_timeout = 900000" "log.file.level = warning" \
    >"$RABBITMQ_DIR/rabbitmq.conf")
  if [[ $EUID -eq 0 ]]; then chown -R "$PG_USER:" "$RABBITMQ_DIR"; fi
  log "starting rabbitmq on 127.0.0.1:$RABBITMQ_PORT"
  (rabbitmq_env && cd / && if [[ $EUID -eq 0 ]]; then
    setsid runuser -u "$PG_USER" -- env HOME="$HOME" "$RABBITMQ_BIN/rabbitmq-server" >>"$LOG_DIR/rabbitmq-startup.log" 2>&1 </dev/null &
  else
    setsid "$RABBITMQ_BIN/rabbitmq-server" >>"$LOG_DIR/rabbitmq-startup.log" 2>&1 </dev/null &
  fi)
  rabbitmqctl_run wait --timeout 60 "$RUN_DIR/rabbitmq.pid" >/dev/null 2>&1 \
    || { tail -n 20 "$LOG_DIR/rabbitmq-startup.log" >&2; die "rabbitmq failed to start (port $RABBITMQ_PORT taken?)"; }
  wait_for 15 "rabbitmq to accept AMQP connections" rabbitmq_alive || die "rabbitmq does not listen"
}

stop_rabbitmq() {
  local pid
  pid=$(rabbitmq_pid) || return 0
  log "stopping rabbitmq"
  rabbitmqctl_run shutdown >/dev/null 2>&1 || kill -KILL "$pid" 2>/dev/null || true
  wait_for 15 "rabbitmq (pid $pid) to exit" pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
}

# The node starts an epmd on its own port, which outlives the node: ours to stop.
stop_epmd() { (rabbitmq_env && epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1) || true; }

rabbitmq_url() { echo "amqp://$RABBITMQ_USER:$(rabbitmq_password)@127.0.0.1:$RABBITMQ_PORT//"; }

# One secret key an instance, made once, so the web server, worker and beat agree.
secret_key() {
  local file=$SERVICES_DIR/django-secret-key
  if [[ ! -s $file ]]; then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n/+=' >"$file")
  fi
  cat "$file"
}

write_env_file() {
  {
    echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PRIMARY_PORT/$DB_NAME"
    echo "DATABASE_REPLICA_URLS=postgres://postgres@127.0.0.1:$REPLICA_PORT/$DB_NAME"
    echo "REDIS_URL=redis://default:$(redis_password)@127.0.0.1:$REDIS_PORT/0"
    if [[ $BROKER == rabbitmq ]]; then
      echo "CELERY_BROKER_URL=$(rabbitmq_url)"
    else
      echo "CELERY_BROKER_URL=redis://default:$(redis_password)@127.0.0.1:$REDIS_PORT/1"
    fi
    echo "DJANGO_SECRET_KEY=$(secret_key)"
    # The development stack's mail sink: every email a file in this directory.
    echo "EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend"
    echo "EMAIL_FILE_PATH=$SERVICES_DIR/mail"
    # Webhook receivers of a development stack listen on this machine, which the SSRF
    # guard refuses in production.
    echo "WEBHOOK_ALLOW_PRIVATE_TARGETS=true"
    printf '%s=%q\n' SERVICES_DIR "$SERVICES_DIR" PG_BINDIR "$PG_BINDIR" \
      SERVICES_PRIMARY_DATA "$PRIMARY_DATA" SERVICES_REPLICA_DATA "$REPLICA_DATA" SERVICES_PG_USER "$PG_USER"
  } >"$SERVICES_ENV_FILE"
  cat "$SERVICES_ENV_FILE"
}

cmd_up() {
  ensure_binaries
  detect_pg_user
  ensure_pg_user_exists
  prepare_dirs
  local fresh_primary=false
  if pg_up_here "$PRIMARY_PORT" "$PRIMARY_DATA" primary; then
    log "primary already running on 127.0.0.1:$PRIMARY_PORT"
  else
    if [[ ! -f $RUN_DIR/primary.ready ]]; then init_primary; fresh_primary=true; fi
    start_pg "$PRIMARY_DATA" "$PRIMARY_PORT" primary
  fi
  ensure_database
  if pg_up_here "$REPLICA_PORT" "$REPLICA_DATA" replica; then
    log "replica already running on 127.0.0.1:$REPLICA_PORT"
  else
    if $fresh_primary || [[ ! -f $RUN_DIR/replica.ready ]]; then init_replica; fi
    start_pg "$REPLICA_DATA" "$REPLICA_PORT" replica
  fi
  wait_for 30 "replica to be in recovery" replica_in_recovery || die "replica is not a standby; see $LOG_DIR/replica.log"
  wait_for 30 "primary to report a streaming replica" primary_streaming \
    || die "replica is not streaming; see $LOG_DIR/replica.log (or run 'down' then 'up')"
  if redis_up_here && redis_unprotected; then
    # Started by an older version of this script: bring it back with the password.
    log "restarting redis, which answers without a password"
    redis_cli shutdown nosave >/dev/null || true
    wait_for 10 "redis to exit" redis_gone || die "redis would not stop"
  fi
  if redis_up_here; then log "redis already running on 127.0.0.1:$REDIS_PORT"; else start_redis; fi
  if [[ $BROKER == rabbitmq ]]; then
    if rabbitmq_alive; then log "rabbitmq already running on 127.0.0.1:$RABBITMQ_PORT"; else start_rabbitmq; fi
  fi
  write_env_file
}

cmd_down() {
  find_pg_bindir || true
  detect_pg_user
  stop_pg "$REPLICA_DATA" "$REPLICA_PORT" replica
  stop_pg "$PRIMARY_DATA" "$PRIMARY_PORT" primary
  if redis_alive && redis_ours; then
    log "stopping redis"
    redis_cli shutdown nosave >/dev/null || true
    wait_for 10 "redis to exit" redis_gone || true
  fi
  stop_rabbitmq
  stop_epmd
  rm -rf -- "$SERVICES_DIR"
  rm -f -- "$SERVICES_ENV_FILE"
  log "down: $SERVICES_DIR removed"
}

report() { # label port check-command...
  local label=$1 port=$2
  shift 2
  if "$@"; then echo "$label 127.0.0.1:$port running"; else echo "$label 127.0.0.1:$port not running"; fi
}

cmd_status() {
  find_pg_bindir || true
  report postgres-primary "$PRIMARY_PORT" pg_ready "$PRIMARY_PORT"
  report postgres-replica "$REPLICA_PORT" pg_ready "$REPLICA_PORT"
  report redis "$REDIS_PORT" redis_alive
  report rabbitmq "$RABBITMQ_PORT" rabbitmq_alive
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) find_pg_bindir || true; detect_pg_user; write_env_file ;;
  rabbitmqctl) detect_pg_user; shift; rabbitmqctl_run "$@" ;;
  *) die "usage: $0 up|down|status|env|rabbitmqctl ARGS..." ;;
esac
