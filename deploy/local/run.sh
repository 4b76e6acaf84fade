#!/usr/bin/env bash
# `make run`: set up everything on this machine and start Touchpoint; prints where everything is.
# Reuses the virtualenv, the Kafka jars and the data directories on later runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
run_dir=${RUN_DIR:-$root/.run}
export RUN_DIR=$run_dir
mkdir -p "$run_dir/logs"

bash deploy/local/setup.sh
py=$root/.venv/bin/python

external_kafka=${TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS:-}
external_db=${TOUCHPOINT_DATABASE_URL:-}
if [ -z "$external_kafka" ]; then
  bash deploy/local/kafka.sh start
  export TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${KAFKA_PORT:-19092}
fi
if [ -z "$external_db" ]; then
  bash deploy/local/postgres.sh start
  "$py" -m shared.cli db-init --admin-url "postgresql://postgres@127.0.0.1:${PG_PORT:-15432}/postgres" >/dev/null
  export TOUCHPOINT_DATABASE_URL=postgresql://touchpoint:touchpoint@127.0.0.1:${PG_PORT:-15432}/touchpoint
fi
"$py" -m shared.cli migrate
"$py" -m shared.cli create-topics

# Only routing reads TOUCHPOINT_ROUTING_CONFIG; it re-reads the file whenever it changes.
export TOUCHPOINT_ROUTING_CONFIG=${TOUCHPOINT_ROUTING_CONFIG:-$root/deploy/routing/routing.yaml}
services=(ingestion identity timeline routing)
declare -A ports=([ingestion]=8001 [identity]=8002 [timeline]=8003 [routing]=8004)
for svc in "${services[@]}"; do
  pidfile=$run_dir/$svc.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
  TOUCHPOINT_PORT=${ports[$svc]} nohup "$py" -m "services.$svc" >>"$run_dir/logs/$svc.log" 2>&1 &
  echo $! > "$pidfile"
done
for svc in "${services[@]}"; do
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:${ports[$svc]}/readyz" >/dev/null 2>&1; then break; fi
    kill -0 "$(cat "$run_dir/$svc.pid")" 2>/dev/null || { echo "$svc exited; see $run_dir/logs/$svc.log"; tail -20 "$run_dir/logs/$svc.log"; exit 1; }
    sleep 0.5
  done
done

keyfile=$run_dir/dev-api-key
if [ ! -s "$keyfile" ]; then
  (umask 077; "$py" -m shared.cli api-keys create dev --scopes ingest,read,admin --label development > "$keyfile")
fi
cat <<INFO

Touchpoint is running.
  Kafka bootstrap servers  $TOUCHPOINT_KAFKA_BOOTSTRAP_SERVERS
  PostgreSQL               ${TOUCHPOINT_DATABASE_URL%%\?*}
  ingestion                http://127.0.0.1:${ports[ingestion]}   (POST /v1/events, docs at /docs)
  identity                 http://127.0.0.1:${ports[identity]}   (/healthz, /readyz)
  timeline                 http://127.0.0.1:${ports[timeline]}   (GET /v1/customers/..., docs at /docs)
  routing                  http://127.0.0.1:${ports[routing]}   (PUT /v1/agents/{id}/presence, GET /v1/queues, GET /v1/sla, docs at /docs)
  routing config           $TOUCHPOINT_ROUTING_CONFIG
  tenant                   dev
  dev API key              $(cat "$keyfile")
  logs                     $run_dir/logs/
Stop everything with: make stop
INFO
