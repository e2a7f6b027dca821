#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of the local PostgreSQL (127.0.0.1:5432).
#
#   scripts/services/pgbouncer.sh start|stop|restart|reload|status
#
# Listens on 127.0.0.1:6432; any database of the server is reachable through it (a wildcard
# entry, so the test kit's per-worker databases work), user postgres with trust auth. A SMALL
# server pool (default_pool_size=4 per database/user pair) so tests can saturate it; the admin
# console is the `pgbouncer` database (`SHOW POOLS`). `restart` is immediate (SIGTERM: clients
# mid-transaction lose their connection), as a fault test wants.
#
# Environment (read at start/restart/reload; a changed value rewrites the config):
#   KNEX_SCOPE_SERVICES_DIR                 state dir root (default /var/tmp/knex-scope-services)
#   KNEX_SCOPE_PGBOUNCER_PORT               listen port (default 6432)
#   KNEX_SCOPE_PGBOUNCER_POOL_SIZE          default_pool_size (default 4)
#   KNEX_SCOPE_PGBOUNCER_QUERY_WAIT_TIMEOUT seconds a client waits for a server connection before
#                                           PgBouncer drops it with 08P01 "query_wait_timeout"
#                                           (default 5: short, so saturation tests end quickly;
#                                           PgBouncer's own default is 120)
#   KNEX_SCOPE_PGBOUNCER_UPSTREAM           host:port of PostgreSQL (default 127.0.0.1:5432)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DIR=$STATE_DIR/pgbouncer
INI=$DIR/pgbouncer.ini
PIDFILE=$DIR/pgbouncer.pid
LOG=$DIR/pgbouncer.log
PORT=${KNEX_SCOPE_PGBOUNCER_PORT:-6432}
POOL_SIZE=${KNEX_SCOPE_PGBOUNCER_POOL_SIZE:-4}
QUERY_WAIT_TIMEOUT=${KNEX_SCOPE_PGBOUNCER_QUERY_WAIT_TIMEOUT:-5}
UPSTREAM=${KNEX_SCOPE_PGBOUNCER_UPSTREAM:-127.0.0.1:5432}
PSQL=$(pg_bin)/psql

write_config() {
  make_state_dir "$DIR" postgres
  # trust auth still looks the user up in auth_file.
  printf '"postgres" ""\n' >"$DIR/userlist.txt.new"
  cat >"$INI.new" <<EOF
; Written by scripts/services/pgbouncer.sh; edits are overwritten at the next start.
[databases]
* = host=${UPSTREAM%:*} port=${UPSTREAM##*:}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir = $DIR
auth_type = trust
auth_file = $DIR/userlist.txt
admin_users = postgres
stats_users = postgres
pool_mode = transaction
default_pool_size = $POOL_SIZE
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
query_wait_timeout = $QUERY_WAIT_TIMEOUT
server_connect_timeout = 5
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = $LOG
pidfile = $PIDFILE
log_connections = 0
log_disconnections = 0
EOF
  touch "$LOG"
  chown postgres: "$INI.new" "$DIR/userlist.txt.new" "$LOG"
  mv -f "$DIR/userlist.txt.new" "$DIR/userlist.txt"
  CONFIG_CHANGED=0
  if cmp -s "$INI.new" "$INI"; then
    rm -f "$INI.new"
  else
    mv -f "$INI.new" "$INI"
    CONFIG_CHANGED=1
  fi
}

running_pid() { live_pid "$PIDFILE" pgbouncer; }

answers() { as_user postgres "$PSQL" -X -qAt -h 127.0.0.1 -p "$PORT" -U postgres -d pgbouncer \
  -c 'SHOW VERSION' >/dev/null 2>&1; }

start() {
  require_exe /usr/sbin/pgbouncer pgbouncer
  require_exe "$PSQL" postgresql-client
  local pid
  write_config
  if pid=$(running_pid); then
    if [ "$CONFIG_CHANGED" = 1 ]; then
      kill -HUP "$pid"
      say "pgbouncer: config changed, reloaded (pid $pid)"
    fi
    if wait_until 10 answers; then
      say "pgbouncer: up on 127.0.0.1:$PORT (already running, pid $pid)"
      return 0
    fi
    warn "pgbouncer: running (pid $pid) but not answering on 127.0.0.1:$PORT"
    log_tail "$LOG"
    return "$EXIT_FAILED"
  fi
  # A stale pid file (after a crash or a SIGKILL) would make pgbouncer refuse to start.
  rm -f "$PIDFILE"
  local owner
  owner=$(port_owner "$PORT")
  if [ -n "$owner" ]; then
    warn "pgbouncer: port $PORT is taken by pid $owner ($(cat "/proc/$owner/comm" 2>/dev/null))"
    return "$EXIT_FAILED"
  fi
  local started
  started=$(now_ms)
  # -d daemonizes; -u would drop root, but runuser already starts it as postgres.
  if ! as_user postgres /usr/sbin/pgbouncer -d -q "$INI" </dev/null >>"$LOG" 2>&1 9>&-; then
    warn "pgbouncer: failed to start"
    log_tail "$LOG"
    return "$EXIT_FAILED"
  fi
  if ! wait_until 10 answers; then
    warn "pgbouncer: started but does not answer on 127.0.0.1:$PORT"
    log_tail "$LOG"
    return "$EXIT_FAILED"
  fi
  say "pgbouncer: started on 127.0.0.1:$PORT in $(elapsed "$started")"
}

stop() {
  local pid
  if pid=$(running_pid); then
    # SIGTERM: immediate shutdown (SIGINT would wait for clients to finish).
    stop_pid "$pid" 10
    say "pgbouncer: stopped"
  fi
  rm -f "$PIDFILE"
}

reload() {
  local pid
  write_config
  pid=$(running_pid) || {
    warn "pgbouncer: not running"
    return "$EXIT_DOWN"
  }
  kill -HUP "$pid"
  say "pgbouncer: reloaded"
}

status() {
  local pid
  if ! [ -x /usr/sbin/pgbouncer ]; then
    say "pgbouncer: missing (apt-get install -y pgbouncer)"
    return "$EXIT_MISSING"
  fi
  if pid=$(running_pid) && answers; then
    local mode
    mode=$(as_user postgres "$PSQL" -X -qAt -h 127.0.0.1 -p "$PORT" -U postgres -d pgbouncer \
      -c 'SHOW CONFIG' 2>/dev/null | awk -F'|' '$1=="pool_mode"||$1=="default_pool_size"||$1=="query_wait_timeout"{printf "%s=%s ", $1, $2}')
    say "pgbouncer: up 127.0.0.1:$PORT -> $UPSTREAM (pid $pid; ${mode% })"
    return 0
  fi
  say "pgbouncer: down (start: scripts/services/pgbouncer.sh start)"
  return "$EXIT_DOWN"
}

case ${1:-} in
start | stop | restart | reload) lock_service pgbouncer ;;
esac

case ${1:-} in
start) start ;;
stop) stop ;;
restart)
  stop
  start
  ;;
reload) reload ;;
status) status ;;
*)
  warn "usage: $0 start|stop|restart|reload|status"
  exit 64
  ;;
esac
