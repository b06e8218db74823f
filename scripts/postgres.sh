#!/usr/bin/env bash
# Provides a PostgreSQL server for the test suite and prints its URL
# (postgres://USER@HOST:PORT) on stdout.
#
# Uses the one at 127.0.0.1:5432 when it accepts connections (trust auth);
# otherwise, or with PG_THROWAWAY=1, installs PostgreSQL with
# apt-get if needed and starts a throwaway cluster on a free port, stopped
# and removed by `scripts/postgres.sh stop DIR` (the DIR is printed on
# stderr and written to $PG_STATE_FILE when that is set).
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

if [ "${1:-}" = "stop" ]; then
  dir=${2:?usage: postgres.sh stop DIR}
  bin=$(cat "$dir/bindir")
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi

can_connect() { psql "$1/postgres" -tAc 'select 1' >/dev/null 2>&1; }

if [ "${PG_THROWAWAY:-0}" != "1" ] && command -v psql >/dev/null && can_connect postgres://postgres@127.0.0.1:5432; then
  log "using the PostgreSQL server at 127.0.0.1:5432"
  echo postgres://postgres@127.0.0.1:5432
  exit 0
fi

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  log "installing PostgreSQL with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql postgresql-client >&2
  bin=$(find_bin)
fi
[ -x "$bin/initdb" ] || { log "initdb not found after installation"; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d /tmp/tollgate-pg.XXXXXX)
echo "$bin" > "$dir/bindir"
chown -R postgres "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
log "started a throwaway PostgreSQL on 127.0.0.1:$port in $dir"
[ -n "${PG_STATE_FILE:-}" ] && echo "$dir" > "$PG_STATE_FILE"
can_connect "postgres://postgres@127.0.0.1:$port" || { log "the throwaway server does not answer"; exit 1; }
echo "postgres://postgres@127.0.0.1:$port"
