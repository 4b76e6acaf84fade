#!/usr/bin/env bash
# PostgreSQL from Debian's server binaries with a project-local data directory on loopback.
# Usage: postgres.sh start|stop|crash|status (crash = immediate stop, as on power loss; used by fault tests).  Env: PG_PORT (15432), RUN_DIR (.run).
# When run as root the server runs as the 'postgres' system user (PostgreSQL refuses to run as root).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run_dir=${RUN_DIR:-$root/.run}
port=${PG_PORT:-15432}
dir=$run_dir/pg
data=$dir/data
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bindir/postgres" ] || { echo "postgres: server binaries not found (apt-get install postgresql)"; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$dir" "$run_dir/logs"
  [ "$(id -u)" = 0 ] && chown postgres "$dir" && touch "$run_dir/logs/postgres.log" && chown postgres "$run_dir/logs/postgres.log"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
wal_level = logical
# Fewer checkpoints under load (2 GB of WAL filled in about 2 minutes at 1,400 events/s): after each one, the
# first change to every page writes the whole page to the WAL again.
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = lz4
CONF
  fi
  if as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "postgres: already running on 127.0.0.1:$port"; return
  fi
  as_owner "$bindir/pg_ctl" -D "$data" -l "$run_dir/logs/postgres.log" -w -t 60 start >/dev/null
  echo "postgres: up on 127.0.0.1:$port"
}

stop() {
  if [ -f "$data/PG_VERSION" ] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    echo "postgres: stopped"
  fi
}

crash() {
  as_owner "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null && echo "postgres: crashed (immediate stop)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  crash) crash ;;
  status) as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1 && echo "postgres: running on 127.0.0.1:$port" || { echo "postgres: stopped"; exit 1; } ;;
  *) echo "usage: $0 start|stop|crash|status"; exit 2 ;;
esac
