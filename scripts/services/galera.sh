#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback, from the installed mariadb-server + galera-4, apart
# from the main MariaDB on 3306 (never touched: each node reads only its own my.cnf).
#
#   scripts/services/galera.sh start     cold start, or heal (see below); waits until all 3 nodes
#                                        report wsrep_cluster_size=3, wsrep_ready=ON, Synced
#   scripts/services/galera.sh heal      same as start: clears gmcast.isolate, re-forms a primary
#                                        component if none is left (pc.bootstrap), restarts dead nodes
#   scripts/services/galera.sh stop      clean shutdown (node 1 last: it may bootstrap next time)
#   scripts/services/galera.sh status    one line per node; exit 0 when the cluster is whole
#   scripts/services/galera.sh kill N    SIGKILL node N (1-3)
#   scripts/services/galera.sh restart N stop node N cleanly and start it again (rejoins by IST/SST)
#   scripts/services/galera.sh isolate N SET GLOBAL wsrep_provider_options='gmcast.isolate=1' on N
#   scripts/services/galera.sh reset     stop, delete all data, start from scratch
#
# node N: SQL 127.0.0.1:331N, gcomm 451N, IST 452N, rsync SST 453N; datadir and logs under
# $STATE_DIR/galera/nodeN; root with an empty password from 127.0.0.1 (as on the main server), a
# `test` database. Small buffers (innodb_buffer_pool_size=24M, gcache 32M): ~90 MB RSS per node.
#
# When every node died (SIGKILL, crash), no grastate.dat says safe_to_bootstrap: 1; `start` then
# recovers each node's last committed seqno (mariadbd --wsrep-recover) and bootstraps the most
# advanced one, as Galera's documentation prescribes, so no committed transaction is lost.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

DIR=$STATE_DIR/galera
NODES=(1 2 3)
MARIADBD=/usr/sbin/mariadbd
PROVIDER=/usr/lib/galera/libgalera_smm.so
CLIENT=$(command -v mariadb || command -v mysql || echo /usr/bin/mariadb)
START_TIMEOUT=${KNEX_SCOPE_GALERA_START_TIMEOUT:-120}

sql_port() { echo $((3310 + $1)); }
gcomm_port() { echo $((4510 + $1)); }
node_dir() { echo "$DIR/node$1"; }

sql() { # N SQL
  "$CLIENT" --no-defaults --protocol=tcp -h 127.0.0.1 -P "$(sql_port "$1")" -u root \
    --connect-timeout=2 -N -B -e "$2" 2>/dev/null
}

write_config() { # N
  local n=$1 dir peers="" i
  dir=$(node_dir "$n")
  for i in "${NODES[@]}"; do peers+="${peers:+,}127.0.0.1:$(gcomm_port "$i")"; done
  mkdir -p "$dir"
  cat >"$dir/my.cnf" <<EOF
# Written by scripts/services/galera.sh; mariadbd reads only this file (--defaults-file).
[mariadbd]
user = mysql
datadir = $dir/data
socket = $dir/mariadbd.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/error.log
port = $(sql_port "$n")
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 200

# Small: three of these run next to everything else.
performance_schema = OFF
innodb_buffer_pool_size = 24M
innodb_log_file_size = 16M
innodb_log_buffer_size = 2M
innodb_flush_log_at_trx_commit = 2
key_buffer_size = 1M
aria_pagecache_buffer_size = 4M
table_open_cache = 400
thread_cache_size = 16
query_cache_size = 0

# Galera
wsrep_on = ON
wsrep_provider = $PROVIDER
wsrep_cluster_name = knex-scope
wsrep_cluster_address = gcomm://$peers
wsrep_node_name = node$n
wsrep_node_address = 127.0.0.1:$(gcomm_port "$n")
wsrep_node_incoming_address = 127.0.0.1:$(sql_port "$n")
wsrep_sst_receive_address = 127.0.0.1:$((4530 + n))
wsrep_provider_options = "gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$((4520 + n));gcache.size=32M;gcache.page_size=32M"
wsrep_sst_method = rsync
wsrep_slave_threads = 2
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
EOF
  chown -R mysql: "$dir"
}

# mariadbd of node N when it runs (its pid file names a live mariadbd working in the node's datadir).
node_pid() {
  local dir pid
  dir=$(node_dir "$1")
  pid=$(live_pid "$dir/mariadbd.pid" mariadbd) || return 1
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$dir/data" ] || return 1
  echo "$pid"
}

# "ready cluster_size state cluster_status last_committed" of node N, or nothing.
node_state() {
  sql "$1" "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_size',
    'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_last_committed')" |
    awk '{ v[$1] = $2 } END { if (NR) print v["wsrep_ready"], v["wsrep_cluster_size"],
      v["wsrep_local_state_comment"], v["wsrep_cluster_status"], v["wsrep_last_committed"] }'
}

cluster_size() { node_state "$1" | awk '{print $2}' || true; }
size_above() { [ "$(cluster_size "$1")" -gt "$2" ] 2>/dev/null; }
answers() { [ -n "$(node_state "$1")" ]; }
is_primary() { [[ "$(node_state "$1")" == ON\ *\ Synced\ Primary\ * ]]; }
is_whole() { # N: synced in a primary component of all 3
  [[ "$(node_state "$1")" == "ON ${#NODES[@]} Synced Primary "* ]]
}
all_whole() {
  local n
  for n in "${NODES[@]}"; do is_whole "$n" || return 1; done
}
any_primary() {
  local n
  for n in "${NODES[@]}"; do
    if node_pid "$n" >/dev/null && is_primary "$n"; then return 0; fi
  done
  return 1
}

# Makes node 1's datadir: system tables, root without a password from 127.0.0.1 (the main
# server's setup), a `test` database. Joiners need none: rsync SST replaces their datadir.
install_db() { # N
  local dir
  dir=$(node_dir "$1")
  # --auth-root-authentication-method=normal: root@localhost, root@127.0.0.1 and root@::1 without
  # a password (no anonymous users with --skip-test-db).
  echo 'CREATE DATABASE IF NOT EXISTS test;' >"$dir/init.sql"
  rm -rf "$dir/data"
  if ! mariadb-install-db --defaults-file="$dir/my.cnf" --user=mysql --skip-test-db \
    --auth-root-authentication-method=normal --skip-name-resolve --extra-file="$dir/init.sql" \
    >"$dir/install-db.log" 2>&1; then
    warn "galera: mariadb-install-db failed for node $1"
    log_tail "$dir/install-db.log"
    return "$EXIT_FAILED"
  fi
}

grastate() { # N KEY: a field of the node's grastate.dat
  local file
  file=$(node_dir "$1")/data/grastate.dat
  [ -f "$file" ] && awk -v key="$2:" '$1 == key { print $2 }' "$file"
}

# Node N's last committed position (uuid:seqno), when grastate.dat lost it in a crash (seqno -1):
# recovered from InnoDB with mariadbd --wsrep-recover, as mysqld_safe does before every start.
# Without it a crashed node restarts at position -1 and needs a full SST instead of an IST, and a
# node bootstrapped from it would found a new cluster history. Cached in recovered-position until
# the next launch.
recover_position() {
  local n=$1 dir
  dir=$(node_dir "$n")
  if [ -s "$dir/recovered-position" ]; then
    cat "$dir/recovered-position"
    return
  fi
  [ "$(grastate "$n" seqno)" = -1 ] && [ -d "$dir/data/mysql" ] || return 0
  rm -f "$dir/recover.log"
  "$MARIADBD" --defaults-file="$dir/my.cnf" --wsrep-recover --log-error="$dir/recover.log" \
    >/dev/null 2>&1 || true
  grep -o 'Recovered position: [^ ]*' "$dir/recover.log" | tail -n1 | cut -d' ' -f3 |
    tee "$dir/recovered-position"
}

# The seqno node N last committed (-1 when unknown).
last_seqno() {
  local n=$1 seqno position
  seqno=$(grastate "$n" seqno)
  if [ "${seqno:--1}" = -1 ]; then
    position=$(recover_position "$n")
    seqno=${position##*:}
  fi
  echo "${seqno:--1}"
}

# The node to bootstrap a new cluster from when none runs: the one grastate.dat marks
# safe_to_bootstrap, else the most advanced after recovery (marked safe_to_bootstrap here).
bootstrap_node() {
  local n best="" best_seqno=-2 seqno
  for n in "${NODES[@]}"; do
    if [ "$(grastate "$n" safe_to_bootstrap)" = 1 ]; then
      echo "$n"
      return
    fi
  done
  local tmp
  tmp=$(mktemp -d)
  local jobs=() job
  for n in "${NODES[@]}"; do
    last_seqno "$n" >"$tmp/$n" &
    jobs+=($!)
  done
  for job in "${jobs[@]}"; do wait "$job" || true; done
  for n in "${NODES[@]}"; do
    seqno=$(cat "$tmp/$n")
    if [ -d "$(node_dir "$n")/data/mysql" ] && [ "$seqno" -gt "$best_seqno" ]; then
      best=$n
      best_seqno=$seqno
    fi
  done
  rm -rf "$tmp"
  if [ -z "$best" ]; then
    # No node has a datadir: a new cluster.
    install_db 1 || return
    echo 1
    return
  fi
  local file
  file=$(node_dir "$best")/data/grastate.dat
  [ -f "$file" ] && sed -i 's/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/' "$file"
  warn "galera: no node was safe to bootstrap; node $best has the highest recovered seqno ($best_seqno)"
  echo "$best"
}

launch() { # N [--wsrep-new-cluster]
  local n=$1 dir
  shift
  dir=$(node_dir "$n")
  mkdir -p "$dir/data"
  chown mysql: "$dir/data"
  rm -f "$dir/mariadbd.pid" "$dir/data/rsync_sst.pid" "$dir/data/sst_in_progress"
  local position
  position=$(recover_position "$n")
  rm -f "$dir/recovered-position"
  if [ -n "$position" ]; then set -- --wsrep-start-position="$position" "$@"; fi
  local owner
  owner=$(port_owner "$(sql_port "$n")")
  if [ -n "$owner" ]; then
    warn "galera: node $n's port $(sql_port "$n") is taken by pid $owner ($(cat "/proc/$owner/comm" 2>/dev/null))"
    return "$EXIT_FAILED"
  fi
  # setsid: the node outlives the shell that started it (CI's job control, a test's child process).
  setsid "$MARIADBD" --defaults-file="$dir/my.cnf" "$@" </dev/null >>"$dir/stdout.log" 2>&1 9>&- &
  # mariadbd writes its pid file only once storage engines are up (after a state transfer): until
  # then this one tells that the node is running. mariadbd (as mysql) overwrites it.
  echo $! >"$dir/mariadbd.pid"
  chown mysql: "$dir/mariadbd.pid"
}

wait_for() { # DESCRIPTION N CHECK...: waits START_TIMEOUT s for CHECK, else prints node N's log
  local what=$1 n=$2
  shift 2
  if ! wait_until "$START_TIMEOUT" "$@"; then
    warn "galera: $what did not happen within $START_TIMEOUT s"
    node_pid "$n" >/dev/null || warn "galera: node $n is not running"
    log_tail "$(node_dir "$n")/error.log" 20
    return "$EXIT_FAILED"
  fi
}

# Starts every node that is not running, re-forming a primary component first if none is left.
start() {
  require_exe "$MARIADBD" mariadb-server
  require_file "$PROVIDER" galera-4
  require_exe rsync rsync
  require_exe "$CLIENT" mariadb-client
  make_state_dir "$DIR" root
  local started n running=() dead=() bootstrap=""
  started=$(now_ms)
  for n in "${NODES[@]}"; do
    if node_pid "$n" >/dev/null; then running+=("$n"); else dead+=("$n"); fi
  done
  for n in "${NODES[@]}"; do
    write_config "$n"
    rm -f "$(node_dir "$n")/recovered-position"
  done
  if [ "${#running[@]}" = 0 ]; then
    bootstrap=$(bootstrap_node)
    [ -n "$bootstrap" ] || return "$EXIT_FAILED"
    launch "$bootstrap" --wsrep-new-cluster
    wait_for "bootstrapping node $bootstrap" "$bootstrap" is_primary "$bootstrap"
    dead=()
    for n in "${NODES[@]}"; do [ "$n" = "$bootstrap" ] || dead+=("$n"); done
  else
    heal_running "${running[@]}"
  fi
  # A crashed node first recovers its position (seconds of InnoDB recovery): all in parallel.
  # (Wait for these jobs by pid: a bare `wait` would wait for the mariadbd launched above.)
  local jobs=() job
  for n in "${dead[@]}"; do
    recover_position "$n" >/dev/null &
    jobs+=($!)
  done
  for job in "${jobs[@]}"; do wait "$job" || true; done
  # One join at a time: nodes joining at the same instant make gcomm discard and retry
  # connections (~5 s lost); a node is in the view within a second.
  local primary size
  for primary in "${NODES[@]}"; do is_primary "$primary" && break; done
  for n in "${dead[@]}"; do
    size=$(cluster_size "$primary")
    launch "$n"
    wait_until 10 size_above "$primary" "$size" || true
  done
  for n in "${NODES[@]}"; do wait_for "node $n joining" "$n" is_whole "$n"; done
  say "galera: up, 3 nodes on 127.0.0.1:$(sql_port 1),$(sql_port 2),$(sql_port 3) in $(elapsed "$started")${bootstrap:+ (bootstrapped from node $bootstrap)}"
}

# Running nodes: lift gmcast.isolate; if no primary component forms, bootstrap one from the most
# advanced running node (pc.bootstrap), so dead nodes can join it.
heal_running() {
  local n isolated=0
  for n in "$@"; do
    # A node still starting (or receiving a state transfer) answers once it is done.
    wait_for "node $n answering" "$n" answers "$n"
    # gmcast.isolate does not show in @@wsrep_provider_options: lift it wherever the node is not in
    # a whole cluster (a no-op on a node that was not isolated).
    if ! is_whole "$n"; then
      sql "$n" "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'" || true
      isolated=1
    fi
  done
  # Reconnected nodes that are a majority merge back into a primary component within seconds; a
  # minority (quorum lost with the other nodes dead) never will.
  if [ "$isolated" = 1 ] && [ $(($# * 2)) -gt "${#NODES[@]}" ]; then
    wait_until 15 any_primary || true
    if [ "$#" = "${#NODES[@]}" ]; then wait_until 15 all_whole || true; fi
  fi
  any_primary && return 0
  local best="" best_seqno=-2 seqno
  for n in "$@"; do
    seqno=$(node_state "$n" | awk '{print $5}') || true
    if [ -n "$seqno" ] && [ "$seqno" -gt "$best_seqno" ]; then
      best=$n
      best_seqno=$seqno
    fi
  done
  if [ -z "$best" ]; then
    warn "galera: nodes $* run but none answers; stop them (scripts/services/galera.sh stop) and start again"
    return "$EXIT_FAILED"
  fi
  say "galera: no primary component; bootstrapping one on node $best (pc.bootstrap, seqno $best_seqno)"
  sql "$best" "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'" || true
  wait_for "pc.bootstrap on node $best" "$best" is_primary "$best"
}

stop_node() { # N
  local pid
  pid=$(node_pid "$1") || return 0
  stop_pid "$pid" 60
}

stop() {
  # Nodes 3 and 2 leave cleanly first; node 1, last to go, is marked safe_to_bootstrap.
  local job3 job2
  stop_node 3 &
  job3=$!
  stop_node 2 &
  job2=$!
  wait "$job3" "$job2" || true
  stop_node 1
  say "galera: stopped"
}

restart_node() { # N
  local n=$1 started
  started=$(now_ms)
  stop_node "$n"
  if any_primary; then
    write_config "$n"
    launch "$n"
    wait_for "node $n joining" "$n" is_whole "$n"
    say "galera: node $n rejoined in $(elapsed "$started")"
  else
    start
  fi
}

status() {
  if ! [ -x "$MARIADBD" ] || ! [ -f "$PROVIDER" ]; then
    say "galera: missing (apt-get install -y mariadb-server galera-4 rsync)"
    return "$EXIT_MISSING"
  fi
  local n pid state lines="" whole=1
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n"); then
      state=$(node_state "$n") || true
      read -r ready size local_state cluster_status seqno <<<"${state:-? ? ? ? ?}"
      lines+="  node $n 127.0.0.1:$(sql_port "$n"): up (pid $pid, rss $(($(awk '/VmRSS/{print $2}' "/proc/$pid/status") / 1024)) MB) ready=$ready size=$size $local_state $cluster_status seqno=$seqno"$'\n'
      is_whole "$n" || whole=0
    else
      lines+="  node $n 127.0.0.1:$(sql_port "$n"): down"$'\n'
      whole=0
    fi
  done
  if [ "$whole" = 1 ]; then
    say "galera: up, cluster of 3 on 127.0.0.1:$(sql_port 1),$(sql_port 2),$(sql_port 3)"
  else
    say "galera: not whole (scripts/services/galera.sh start heals it)"
  fi
  printf '%s' "$lines"
  [ "$whole" = 1 ] || return "$EXIT_DOWN"
}

node_arg() {
  case ${1:-} in
  1 | 2 | 3) echo "$1" ;;
  *)
    warn "usage: $0 $2 1|2|3"
    exit 64
    ;;
  esac
}

case ${1:-} in
start | heal | stop | kill | restart | isolate | reset) lock_service galera ;;
esac

case ${1:-} in
start | heal) start ;;
stop) stop ;;
status) status ;;
kill)
  n=$(node_arg "${2:-}" kill)
  if pid=$(node_pid "$n"); then
    kill -KILL "$pid"
    say "galera: node $n killed (pid $pid)"
  else
    say "galera: node $n was not running"
  fi
  ;;
restart) restart_node "$(node_arg "${2:-}" restart)" ;;
isolate)
  n=$(node_arg "${2:-}" isolate)
  sql "$n" "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'"
  say "galera: node $n isolated (gmcast.isolate=1); heal: scripts/services/galera.sh heal"
  ;;
reset)
  stop
  rm -rf "${DIR:?}"
  start
  ;;
*)
  warn "usage: $0 start|heal|stop|status|kill N|restart N|isolate N|reset"
  exit 64
  ;;
esac
