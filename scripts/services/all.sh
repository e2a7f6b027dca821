#!/usr/bin/env bash
# Starts, stops or reports every scale-out service, in parallel, one line per service:
#
#   scripts/services/all.sh start|stop|status
#
#   pgbouncer    PgBouncer (transaction pooling) 127.0.0.1:6432 -> PostgreSQL 127.0.0.1:5432
#   pg-failover  PostgreSQL primary 127.0.0.1:5434 + streaming standby 127.0.0.1:5435
#   galera       MariaDB Galera cluster 127.0.0.1:3311, 3312, 3313
#
# Each line says `ok`, `MISSING` (a Debian package is not installed: the line names it) or
# `FAILED` (followed by the script's output, which ends with the service's log tail). Exit code:
# 0 when all are up, 3 when some are only missing packages, 2 when one failed.
# KNEX_SCOPE_SERVICES (e.g. "pgbouncer galera") limits the set.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a SERVICES <<<"${KNEX_SCOPE_SERVICES:-pgbouncer pg-failover galera}"
command=${1:-}
case $command in
start | stop | status) ;;
*)
  warn "usage: $0 start|stop|status"
  exit 64
  ;;
esac

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A pids started
for service in "${SERVICES[@]}"; do
  started[$service]=$(now_ms)
  "$SERVICES_DIR/$service.sh" "$command" >"$out/$service" 2>&1 &
  pids[$service]=$!
done

worst=0
for service in "${SERVICES[@]}"; do
  rc=0
  wait "${pids[$service]}" || rc=$?
  took=$(elapsed "${started[$service]}")
  case $rc in
  0)
    printf '%-12s ok       %s\n' "$service" "$(grep -v '^  ' "$out/$service" | tail -n1 | sed "s/^$service: //")"
    # status: the per-node / per-server lines
    [ "$command" != status ] || grep '^  ' "$out/$service" || true
    ;;
  "$EXIT_MISSING")
    printf '%-12s MISSING  %s\n' "$service" "$(grep -m1 'missing' "$out/$service" | sed "s/^$service: //")"
    [ "$worst" = "$EXIT_FAILED" ] || worst=$EXIT_MISSING
    ;;
  "$EXIT_DOWN")
    # status only: down is not a failure to start
    printf '%-12s down     %s\n' "$service" "$(head -n1 "$out/$service" | sed "s/^$service: //")"
    grep '^  ' "$out/$service" || true
    [ "$worst" != 0 ] || worst=$EXIT_DOWN
    ;;
  *)
    printf '%-12s FAILED   exit %s after %s; its output:\n' "$service" "$rc" "$took"
    sed 's/^/    /' "$out/$service"
    worst=$EXIT_FAILED
    ;;
  esac
done
exit "$worst"
