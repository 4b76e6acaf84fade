#!/usr/bin/env bash
# `make stop`: stop the services (SIGTERM: they finish their batch and commit), the mail catcher, then Kafka and
# PostgreSQL. Finds them through the pid files in RUN_DIR (.run), so give it the RUN_DIR run.sh had.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run_dir=${RUN_DIR:-$root/.run}
export RUN_DIR=$run_dir
# The mail catcher last: notification may be handing over a last e-mail while it stops.
for svc in feedback notification routing timeline identity ingestion mail; do
  pidfile=$run_dir/$svc.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "$svc: stopped"
  fi
  rm -f "$pidfile"
done
bash "$root/deploy/local/kafka.sh" stop
bash "$root/deploy/local/postgres.sh" stop
