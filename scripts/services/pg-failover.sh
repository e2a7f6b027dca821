#!/usr/bin/env bash
# A PostgreSQL primary + asynchronous streaming standby dedicated to failover tests, apart from
# the main cluster on 5432 (which failover tests must never disturb).
#
#   scripts/services/pg-failover.sh start|stop|status|promote|reset
#   scripts/services/pg-failover.sh stop primary|standby     (pg_ctl stop -m fast)
#   scripts/services/pg-failover.sh kill primary|standby     (pg_ctl stop -m immediate: a crash)
#
# primary  127.0.0.1:5434 (KNEX_SCOPE_FAILOVER_PRIMARY_PORT), data in $STATE_DIR/pg-failover/primary
# standby  127.0.0.1:5435 (KNEX_SCOPE_FAILOVER_STANDBY_PORT), data in $STATE_DIR/pg-failover/standby,
#          a pg_basebackup -R of the primary, streaming from it (hot standby, read-only)
# Both: user postgres, trust auth from 127.0.0.1, database `test`, wal_level=replica,
# shared_buffers=16MB, fsync=off (a test pair: processes are killed, never the machine).
#
# `promote` makes the standby a primary (the old primary, if still running, is left alone: stop or
# kill it first for a real failover). After a failover, `reset` (or `start`, which would otherwise
# run two primaries) rebuilds the pair as it was (primary 5434 + standby 5435, empty `test`
# database) in about 2 s, by copying a pristine pair made once (template/) instead of re-running
# initdb and pg_basebackup.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DIR=$STATE_DIR/pg-failover
TEMPLATE=$DIR/template
RUN=$DIR/run
PRIMARY_PORT=${KNEX_SCOPE_FAILOVER_PRIMARY_PORT:-5434}
STANDBY_PORT=${KNEX_SCOPE_FAILOVER_STANDBY_PORT:-5435}
BIN=$(pg_bin)

pg() { # a PostgreSQL program, as postgres
  local program=$1
  shift
  as_user postgres "$BIN/$program" "$@"
}
port_of() { if [ "$1" = primary ]; then echo "$PRIMARY_PORT"; else echo "$STANDBY_PORT"; fi; }

# The postmaster of data dir $1 when it runs: its pid file names a live `postgres` whose working
# directory is that data dir (a pid reused after a crash is not mistaken for it).
postmaster_pid() {
  local data=$1 pid
  pid=$(live_pid "$data/postmaster.pid" postgres) || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$data" ] || return 1
  echo "$pid"
}

sql() { # PORT SQL: one value, or nothing when the server does not answer
  as_user postgres "$BIN/psql" -X -qAt -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null
}

conf() { # DATA PORT: the settings this pair needs, in a file postgresql.conf includes
  cat >"$1/knex-scope.conf" <<EOF
# Written by scripts/services/pg-failover.sh.
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
shared_buffers = 16MB
max_connections = 100
wal_level = replica
max_wal_senders = 5
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on
fsync = off
full_page_writes = off
synchronous_commit = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 500ms
logging_collector = off
log_line_prefix = '%m [%p] '
EOF
  chown postgres: "$1/knex-scope.conf"
}

# The pristine pair, made once: initdb + `test` database, and a pg_basebackup -R of it.
build_template() {
  local started
  started=$(now_ms)
  rm -rf "$TEMPLATE.new"
  mkdir -p "$TEMPLATE.new"
  chown postgres: "$TEMPLATE.new"
  pg initdb -D "$TEMPLATE.new/primary" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-instructions >"$DIR/initdb.log" 2>&1 || {
    warn "pg-failover: initdb failed"
    log_tail "$DIR/initdb.log"
    return "$EXIT_FAILED"
  }
  echo "include_if_exists = 'knex-scope.conf'" >>"$TEMPLATE.new/primary/postgresql.conf"
  conf "$TEMPLATE.new/primary" "$PRIMARY_PORT"
  if ! pg pg_ctl -D "$TEMPLATE.new/primary" -l "$DIR/template.log" -w -t 60 start >/dev/null 9>&-; then
    warn "pg-failover: the template primary did not start"
    log_tail "$DIR/template.log"
    return "$EXIT_FAILED"
  fi
  if ! sql "$PRIMARY_PORT" 'create database test' >/dev/null; then
    warn "pg-failover: could not create the test database"
    pg pg_ctl -D "$TEMPLATE.new/primary" -m immediate stop >/dev/null 2>&1 || true
    return "$EXIT_FAILED"
  fi
  pg pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$TEMPLATE.new/standby" -R \
    -X stream -c fast >>"$DIR/template.log" 2>&1 || {
    warn "pg-failover: pg_basebackup failed"
    log_tail "$DIR/template.log"
    pg pg_ctl -D "$TEMPLATE.new/primary" -m immediate stop >/dev/null 2>&1 || true
    return "$EXIT_FAILED"
  }
  pg pg_ctl -D "$TEMPLATE.new/primary" -m fast -w stop >/dev/null
  conf "$TEMPLATE.new/standby" "$STANDBY_PORT"
  rm -rf "$TEMPLATE"
  mv "$TEMPLATE.new" "$TEMPLATE"
  say "pg-failover: template pair built in $(elapsed "$started")"
}

start_one() { # primary|standby
  local role=$1 data=$DIR/$1 port
  port=$(port_of "$role")
  postmaster_pid "$data" >/dev/null && return 0
  # postgres removes a stale pid file itself unless its pid now belongs to another process.
  rm -f "$data/postmaster.pid"
  local owner
  owner=$(port_owner "$port")
  if [ -n "$owner" ]; then
    warn "pg-failover: port $port is taken by pid $owner ($(cat "/proc/$owner/comm" 2>/dev/null))"
    return "$EXIT_FAILED"
  fi
  if ! pg pg_ctl -D "$data" -l "$DIR/$role.log" -w -t 60 start >/dev/null 9>&-; then
    warn "pg-failover: the $role (127.0.0.1:$port) failed to start"
    log_tail "$DIR/$role.log"
    return "$EXIT_FAILED"
  fi
}

stop_one() { # primary|standby fast|immediate
  local data=$DIR/$1
  postmaster_pid "$data" >/dev/null || return 0
  pg pg_ctl -D "$data" -m "$2" -w -t 60 stop >/dev/null
}

streaming() { [ "$(sql "$STANDBY_PORT" 'select status from pg_stat_wal_receiver')" = streaming ]; }

start() {
  require_exe "$BIN/initdb" postgresql
  require_exe "$BIN/pg_basebackup" postgresql
  make_state_dir "$DIR" postgres
  mkdir -p "$RUN"
  chown postgres: "$RUN"
  [ -f "$TEMPLATE/standby/standby.signal" ] || build_template
  if [ -f "$DIR/standby/PG_VERSION" ] && ! [ -f "$DIR/standby/standby.signal" ]; then
    # The standby was promoted: starting the old primary too would make two primaries.
    say "pg-failover: the standby was promoted (a failover); rebuilding the pair"
    stop_one standby immediate
    stop_one primary immediate
    rm -rf "${DIR:?}/primary" "${DIR:?}/standby"
  fi
  local role
  for role in primary standby; do
    if ! [ -f "$DIR/$role/PG_VERSION" ]; then
      rm -rf "${DIR:?}/$role"
      cp -a "$TEMPLATE/$role" "$DIR/$role"
    fi
  done
  # In parallel: the standby retries its connection to the primary until it answers.
  local primary_job standby_job failed=0
  start_one primary &
  primary_job=$!
  start_one standby &
  standby_job=$!
  wait "$primary_job" || failed=1
  wait "$standby_job" || failed=1
  [ "$failed" = 0 ] || return "$EXIT_FAILED"
  if [ -f "$DIR/standby/standby.signal" ] && ! wait_until 30 streaming; then
    warn "pg-failover: the standby does not stream from the primary"
    log_tail "$DIR/standby.log"
    return "$EXIT_FAILED"
  fi
}

reset() {
  local started
  started=$(now_ms)
  make_state_dir "$DIR" postgres
  # The data is thrown away: no need for a clean shutdown.
  stop_one standby immediate
  stop_one primary immediate
  rm -rf "${DIR:?}/primary" "${DIR:?}/standby"
  start
  say "pg-failover: reset to primary 127.0.0.1:$PRIMARY_PORT + standby 127.0.0.1:$STANDBY_PORT in $(elapsed "$started")"
}

promote() {
  if ! postmaster_pid "$DIR/standby" >/dev/null; then
    warn "pg-failover: the standby (127.0.0.1:$STANDBY_PORT) is not running"
    return "$EXIT_FAILED"
  fi
  if [ "$(sql "$STANDBY_PORT" 'select pg_is_in_recovery()')" != t ]; then
    say "pg-failover: 127.0.0.1:$STANDBY_PORT is already a primary"
    return 0
  fi
  local started
  started=$(now_ms)
  pg pg_ctl -D "$DIR/standby" -w -t 60 promote >/dev/null
  say "pg-failover: promoted 127.0.0.1:$STANDBY_PORT in $(elapsed "$started")"
}

describe() { # primary|standby: prints one line, returns 0 when it plays its role as built
  local role=$1 port pid recovery
  port=$(port_of "$role")
  if ! pid=$(postmaster_pid "$DIR/$role"); then
    say "  $role 127.0.0.1:$port: down"
    return 1
  fi
  recovery=$(sql "$port" 'select pg_is_in_recovery()')
  case $recovery in
  f)
    say "  $role 127.0.0.1:$port: up (pid $pid), primary (timeline $(sql "$port" "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"))"
    [ "$role" = primary ]
    ;;
  t)
    say "  $role 127.0.0.1:$port: up (pid $pid), standby in recovery, wal receiver: $(sql "$port" 'select status from pg_stat_wal_receiver' || true)"
    [ "$role" = standby ] && streaming
    ;;
  *)
    say "  $role 127.0.0.1:$port: running (pid $pid) but not answering"
    return 1
    ;;
  esac
}

status() {
  if ! [ -x "$BIN/initdb" ]; then
    say "pg-failover: missing (apt-get install -y postgresql)"
    return "$EXIT_MISSING"
  fi
  local primary standby ok=1
  primary=$(describe primary) || ok=0
  standby=$(describe standby) || ok=0
  if [ "$ok" = 1 ]; then
    say "pg-failover: up, primary 127.0.0.1:$PRIMARY_PORT streaming to standby 127.0.0.1:$STANDBY_PORT"
  else
    say "pg-failover: not as built (scripts/services/pg-failover.sh start, or reset after a failover)"
  fi
  say "$primary"
  say "$standby"
  [ "$ok" = 1 ] || return "$EXIT_DOWN"
}

role_arg() {
  case ${1:-} in
  primary | standby) echo "$1" ;;
  *)
    warn "usage: $0 ${2} primary|standby"
    exit 64
    ;;
  esac
}

case ${1:-} in
start | stop | kill | promote | reset) lock_service pg-failover ;;
esac

case ${1:-} in
start)
  started=$(now_ms)
  start
  say "pg-failover: up, primary 127.0.0.1:$PRIMARY_PORT + standby 127.0.0.1:$STANDBY_PORT ($(elapsed "$started"))"
  ;;
stop)
  if [ -n "${2:-}" ]; then
    stop_one "$(role_arg "$2" stop)" fast
  else
    stop_one standby fast
    stop_one primary fast
  fi
  say "pg-failover: stopped ${2:-primary and standby}"
  ;;
kill)
  stop_one "$(role_arg "${2:-}" kill)" immediate
  say "pg-failover: killed the ${2}"
  ;;
promote) promote ;;
reset) reset ;;
status) status ;;
*)
  warn "usage: $0 start|stop [primary|standby]|kill primary|standby|status|promote|reset"
  exit 64
  ;;
esac
