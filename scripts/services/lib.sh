# shellcheck shell=bash disable=SC2034
# Shared by scripts/services/*.sh (sourced, not run). Bash, no systemd: every service runs as a
# plain background process whose pid file, config and log live under $STATE_DIR.
#
# Exit codes every service script uses (all.sh tells them apart):
#   0 = up / done, 1 = down (status only), 2 = failed to start, 3 = a package is missing.

STATE_DIR=${KNEX_SCOPE_SERVICES_DIR:-/var/tmp/knex-scope-services}
SERVICES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

EXIT_DOWN=1
EXIT_FAILED=2
EXIT_MISSING=3

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }

# Runs a command as another user (postgres, mysql): runuser when root, directly when already that
# user, else sudo -n.
as_user() {
  local user=$1
  shift
  if [ "$(id -un)" = "$user" ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u "$user" -- "$@"
  else
    sudo -n -u "$user" -- "$@"
  fi
}

# Fails with EXIT_MISSING, naming the Debian package, when an executable is absent.
require_exe() {
  local path=$1 package=$2
  if ! [ -x "$path" ] && ! command -v "$path" >/dev/null 2>&1; then
    warn "missing: $path (apt-get install -y $package)"
    exit "$EXIT_MISSING"
  fi
}

# Fails with EXIT_MISSING, naming the Debian package, when a file (a library) is absent.
require_file() {
  if ! [ -f "$1" ]; then
    warn "missing: $1 (apt-get install -y $2)"
    exit "$EXIT_MISSING"
  fi
}

# The pid in FILE when that process is alive and its executable's name is NAME (a stale pid file
# after a crash, or a pid reused by another program, counts as not running). Prints nothing else.
live_pid() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(head -n1 "$file" 2>/dev/null | tr -dc 0-9)
  [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  # A zombie is not running.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

# Tells whether something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid listening on 127.0.0.1:PORT (empty when none), for "port taken by another program".
port_owner() { { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o "pid=[0-9]*" | head -n1 | cut -d= -f2; } || true; }

# Waits until COMMAND... succeeds, up to SECONDS (tenths of a second between tries).
wait_until() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# Sends SIGTERM to the process, waits up to SECONDS for it to end, then SIGKILLs it.
stop_pid() {
  local pid=$1 seconds=${2:-30}
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + seconds))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      return 0
    fi
    sleep 0.1
  done
}

# Prints the last lines of a log, indented, for "failed to start" reports.
log_tail() {
  local file=$1 lines=${2:-15}
  if [ -s "$file" ]; then
    warn "  --- last $lines lines of $file ---"
    tail -n "$lines" "$file" | sed 's/^/  | /' >&2
  else
    warn "  (no log at $file)"
  fi
}

# Serializes the commands that change service NAME (two test files healing Galera at once must
# not both start node 2). The lock is file descriptor 9: what a locked command starts in the
# background must not inherit it (`9>&-`), or the lock would live as long as the server.
lock_service() {
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/$1.lock"
  if ! flock -w 600 9; then
    warn "$1: another command held the lock for 10 minutes"
    exit "$EXIT_FAILED"
  fi
}

# Milliseconds since the epoch, for the timings the scripts print.
now_ms() { date +%s%3N; }
elapsed() { printf '%d.%d s' $((($(now_ms) - $1) / 1000)) $((($(now_ms) - $1) % 1000 / 100)); }

# The newest installed PostgreSQL server's bin dir (KNEX_SCOPE_PG_BIN overrides).
pg_bin() {
  if [ -n "${KNEX_SCOPE_PG_BIN:-}" ]; then
    echo "$KNEX_SCOPE_PG_BIN"
    return
  fi
  local dir
  dir=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  [ -d "$dir" ] || dir=""
  echo "${dir:-/usr/lib/postgresql/15/bin}"
}

# A state directory the service's user can read and write (its parents stay root-owned, 0755).
make_state_dir() {
  local dir=$1 owner=$2
  mkdir -p "$dir"
  chmod 0755 "$STATE_DIR"
  chown "$owner:" "$dir"
}
