#!/usr/bin/env bash
# `make run`: set up everything on this machine and start Touchpoint; prints where everything is.
# Reuses the virtualenv, the Kafka jars and the data directories on later runs.
# Env: RUN_DIR (.run); ports KAFKA_PORT, KAFKA_CONTROLLER_PORT, PG_PORT (see kafka.sh, postgres.sh),
# INGESTION_PORT (8001), IDENTITY_PORT (8002), TIMELINE_PORT (8003), ROUTING_PORT (8004), NOTIFICATION_PORT (8005),
# FEEDBACK_PORT (8006) and MAIL_PORT (1025, the local mail catcher); with other values a second copy runs next to
# the first.
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
  # The owner role migrates; the services connect as touchpoint_app (no ownership, no BYPASSRLS), which
  # `migrate` creates and grants.
  export TOUCHPOINT_MIGRATION_DATABASE_URL=postgresql://touchpoint:touchpoint@127.0.0.1:${PG_PORT:-15432}/touchpoint
  export TOUCHPOINT_DATABASE_URL=postgresql://touchpoint_app:touchpoint_app@127.0.0.1:${PG_PORT:-15432}/touchpoint
fi
"$py" -m shared.cli migrate
"$py" -m shared.cli create-topics

is_running() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# E-mail goes to a local catcher that stores every message as a file in a maildir; nothing leaves the machine.
mail_port=${MAIL_PORT:-1025}
mail_dir=$run_dir/mail
if ! is_running mail; then
  if port_taken "$mail_port"; then echo "mail: 127.0.0.1:$mail_port is already taken (set MAIL_PORT)"; exit 1; fi
  nohup "$py" -m aiosmtpd -n -l "127.0.0.1:$mail_port" -c aiosmtpd.handlers.Mailbox "$mail_dir" \
    >>"$run_dir/logs/mail.log" 2>&1 &
  echo $! > "$run_dir/mail.pid"
  for _ in $(seq 1 40); do
    port_taken "$mail_port" && break
    is_running mail || { echo "mail: exited; see $run_dir/logs/mail.log"; tail -20 "$run_dir/logs/mail.log"; exit 1; }
    sleep 0.25
  done
fi

services=(ingestion identity timeline routing notification feedback)
declare -A ports=([ingestion]=${INGESTION_PORT:-8001} [identity]=${IDENTITY_PORT:-8002}
  [timeline]=${TIMELINE_PORT:-8003} [routing]=${ROUTING_PORT:-8004} [notification]=${NOTIFICATION_PORT:-8005}
  [feedback]=${FEEDBACK_PORT:-8006})

# Only routing reads TOUCHPOINT_ROUTING_CONFIG, only identity TOUCHPOINT_IDENTITY_CONFIG; each re-reads its file
# whenever it changes.
export TOUCHPOINT_ROUTING_CONFIG=${TOUCHPOINT_ROUTING_CONFIG:-$root/deploy/routing/routing.yaml}
export TOUCHPOINT_IDENTITY_CONFIG=${TOUCHPOINT_IDENTITY_CONFIG:-$root/deploy/identity/identity.yaml}
# config_file <service> <link key> <default port>: prints the file the service reads. TOUCHPOINT_<SERVICE>_CONFIG
# when set; else deploy/<service>/<service>.yaml, whose links (<link key>) point at http://localhost:<default port>.
# On another port the service reads a copy whose links point at its port (regenerated on every run, so edit the
# original).
config_file() {
  local svc=$1 key=$2 default_port=$3 var="TOUCHPOINT_${1^^}_CONFIG"
  local file=$root/deploy/$svc/$svc.yaml
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if [ "${ports[$svc]}" = "$default_port" ]; then echo "$file"; return; fi
  # Chained: errexit does not reach into the command substitution this runs in.
  sed -E "s#($key: *\"?http://(localhost|127\.0\.0\.1)):$default_port/#\1:${ports[$svc]}/#" "$file" \
    > "$run_dir/$svc.yaml.new" &&
    mv "$run_dir/$svc.yaml.new" "$run_dir/$svc.yaml" &&  # a running service never reads half a file
    echo "$run_dir/$svc.yaml"
}
notification_config=$(config_file notification answer_link_base 8005)
feedback_config=$(config_file feedback survey_link_base 8006)
# Prints the path of a secret for signing links: generated once per run directory, readable only by this user,
# never committed.
secret_file() {
  local file=$run_dir/$1
  if [ ! -s "$file" ]; then
    (umask 077; "$py" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$file") || return
  fi
  echo "$file"
}
answer_secret_file=$(secret_file answer-secret)
survey_secret_file=$(secret_file survey-secret)

# Run in a subshell, so that a service's own settings reach only that service: ingestion reads TOUCHPOINT_SMTP_PORT
# as the port of its own inbound SMTP server, and each link secret stays with the one service that signs with it.
start_service() {
  local svc=$1
  export TOUCHPOINT_PORT=${ports[$svc]}
  case $svc in
    notification)
      export TOUCHPOINT_NOTIFICATION_CONFIG=$notification_config TOUCHPOINT_SMTP_HOST=127.0.0.1 \
        TOUCHPOINT_SMTP_PORT=$mail_port
      TOUCHPOINT_ANSWER_SECRET=$(cat "$answer_secret_file")
      export TOUCHPOINT_ANSWER_SECRET
      ;;
    timeline)
      export TOUCHPOINT_IDENTITY_URL=http://127.0.0.1:${ports[identity]} TOUCHPOINT_ROUTING_URL=http://127.0.0.1:${ports[routing]}
      ;;
    feedback)
      export TOUCHPOINT_FEEDBACK_CONFIG=$feedback_config
      TOUCHPOINT_SURVEY_SECRET=$(cat "$survey_secret_file")
      export TOUCHPOINT_SURVEY_SECRET
      ;;
  esac
  exec nohup "$py" -m "services.$svc"
}
for svc in "${services[@]}"; do
  is_running "$svc" && continue
  if port_taken "${ports[$svc]}"; then
    echo "$svc: 127.0.0.1:${ports[$svc]} is already taken by another process (set ${svc^^}_PORT, or stop it)"; exit 1
  fi
  (start_service "$svc") >>"$run_dir/logs/$svc.log" 2>&1 &
  echo $! > "$run_dir/$svc.pid"
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
  agent console            http://127.0.0.1:${ports[timeline]}/console   (sign in with the dev API key below)
  routing                  http://127.0.0.1:${ports[routing]}   (PUT /v1/agents/{id}/presence, GET /v1/queues, GET /v1/sla, docs at /docs)
  identity rules           $TOUCHPOINT_IDENTITY_CONFIG
  routing config           $TOUCHPOINT_ROUTING_CONFIG
  notification             http://127.0.0.1:${ports[notification]}   (GET /v1/customers/{id}/notifications, answer links /v1/answers/..., docs at /docs)
  notification config      $notification_config
  feedback                 http://127.0.0.1:${ports[feedback]}   (surveys /v1/surveys/..., GET /v1/metrics, docs at /docs)
  feedback config          $feedback_config
  mail catcher             smtp://127.0.0.1:$mail_port, every e-mail a file in $mail_dir/new/
  tenant                   dev
  dev API key              $(cat "$keyfile")
  logs                     $run_dir/logs/
Stop everything with: make stop
INFO
