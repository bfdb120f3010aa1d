#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for tests, from Debian's packages (tools/deps.sh test installs them).
#
#   tools/pg-test-server.sh start DIR [PORT]    initdb into DIR/data when empty, then start the server
#   tools/pg-test-server.sh stop DIR [MODE]     stop it (pg_ctl mode: fast by default, or immediate)
#   tools/pg-test-server.sh restart DIR         stop (fast) and start again on the same port
#   tools/pg-test-server.sh run -- CMD [ARG...] a fresh server in a temporary folder for CMD, with
#                                               PAYMUX_TEST_PG_URL exported; always stopped and removed
#                                               afterwards; exits with CMD's status
#
# The server listens on 127.0.0.1 only (PORT, or a free one), its unix socket in DIR/socket, fsync
# and synchronous commit on (tests check durability), TCP connections from loopback trusted. It
# holds a database `paymux` owned by the superuser `paymux`; `start` prints its URL
# postgresql://paymux@127.0.0.1:PORT/paymux and writes it to DIR/url. The server's log is
# DIR/postgres.log.
#
# PostgreSQL refuses to run as root: as root, the server runs as the system user paymux-pg (created
# once when missing) and DIR is given to that user, so DIR's parent folders must let it through
# (a folder made by mktemp under /tmp does).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_USER=${PAYMUX_PG_SYSTEM_USER:-paymux-pg}
DB_NAME=paymux
DB_SUPERUSER=paymux

die() { printf 'pg-test-server: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '3,8s/^# \{0,1\}//p' "$0" >&2; exit 2; }

[[ -x "$PG_BIN/postgres" ]] || die "$PG_BIN/postgres is missing (install with: tools/deps.sh test)"

# as_server CMD...: CMD as the user the server runs as.
as_server() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

ensure_system_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u "$PG_USER" >/dev/null 2>&1 && return 0
  # Two tests starting at once may both try: the loser's "already exists" is fine.
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" 2>/dev/null ||
    id -u "$PG_USER" >/dev/null 2>&1 || die "cannot create the system user $PG_USER"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url_of() { printf 'postgresql://%s@127.0.0.1:%s/%s' "$DB_SUPERUSER" "$1" "$DB_NAME"; }

port_of() {
  sed -n "s/^port = \([0-9]*\).*/\1/p" "$1/data/postgresql.auto.conf" 2>/dev/null | tail -1
}

pg_ctl_start() {
  local dir=$1
  # From inside DIR: the server user may not be allowed into the caller's working folder.
  (cd "$dir" && as_server "$PG_BIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -s) >/dev/null
}

init_cluster() {
  local dir=$1 port=$2
  (cd "$dir" && as_server "$PG_BIN/initdb" -D "$dir/data" -U "$DB_SUPERUSER" --auth=trust --encoding=UTF8 \
     --locale=C --no-instructions) >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # postgresql.auto.conf: read last, so these win over postgresql.conf.
  as_server tee -a "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/socket'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
log_min_messages = warning
log_connections = off
EOF
}

cmd_start() {
  local dir=${1:?DIR}
  local port=${2:-}
  ensure_system_user
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ "$(id -u)" == 0 ]]; then
    chown "$PG_USER" "$dir"
    chmod 0700 "$dir"
    runuser -u "$PG_USER" -- test -w "$dir" ||
      die "$PG_USER cannot write to $dir: one of its parent folders does not let it through"
  fi
  local fresh=0
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    fresh=1
    as_server mkdir -p "$dir/socket"
    local attempt
    for attempt in 1 2 3; do
      local p=${port:-$(free_port)}
      [[ -d "$dir/data" ]] && rm -rf "$dir/data"
      init_cluster "$dir" "$p"
      if pg_ctl_start "$dir"; then
        port=$p
        break
      fi
      # A "free" port taken meanwhile: try another one, unless the caller chose it.
      [[ -n "${2:-}" || $attempt == 3 ]] && { tail -20 "$dir/postgres.log" >&2; die "the server did not start"; }
    done
  else
    if [[ -n "$port" && "$port" != "$(port_of "$dir")" ]]; then
      as_server sed -i "s/^port = .*/port = $port/" "$dir/data/postgresql.auto.conf"
    fi
    port=$(port_of "$dir")
    pg_ctl_start "$dir" || { tail -20 "$dir/postgres.log" >&2; die "the server did not start"; }
  fi
  if ((fresh)); then
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$DB_SUPERUSER" -d postgres \
      -c "CREATE DATABASE $DB_NAME OWNER $DB_SUPERUSER" >/dev/null || die "cannot create the database"
  fi
  url_of "$port" | as_server tee "$dir/url" >/dev/null
  url_of "$port"
  echo
}

cmd_stop() {
  local dir=${1:?DIR} mode=${2:-fast}
  case "$mode" in fast|immediate|smart) ;; *) die "stop mode: fast, immediate or smart" ;; esac
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  (cd "$dir" && as_server "$PG_BIN/pg_ctl" stop -D "$dir/data" -m "$mode" -w -t 60 -s) >/dev/null
}

cmd_restart() {
  local dir=${1:?DIR}
  cmd_stop "$dir" fast
  pg_ctl_start "$dir" || { tail -20 "$dir/postgres.log" >&2; die "the server did not start again"; }
}

cmd_run() {
  [[ "${1:-}" == -- ]] && shift
  (($#)) || usage
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/paymux-pg.XXXXXX")
  local url rc=0
  # shellcheck disable=SC2064
  trap "'$0' stop '$dir' immediate >/dev/null 2>&1 || true; rm -rf '$dir'" EXIT
  trap 'exit 130' INT TERM
  url=$(cmd_start "$dir") || exit 1
  PAYMUX_TEST_PG_URL=$url "$@" || rc=$?
  exit "$rc"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) usage ;;
esac
