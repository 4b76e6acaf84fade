#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft) on loopback, from jars resolved by Maven into .cache/kafka/libs.
# Usage: kafka.sh start|stop|status, and for fault tests kill (SIGKILL), pause (SIGSTOP), resume (SIGCONT).
# Env KAFKA_PROXY_PORT: see write_config.  Env: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), RUN_DIR (.run).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run_dir=${RUN_DIR:-$root/.run}
libs=$root/.cache/kafka/libs
port=${KAFKA_PORT:-19092}
cport=${KAFKA_CONTROLLER_PORT:-19093}
dir=$run_dir/kafka
pidfile=$dir/kafka.pid

is_running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

resolve_jars() {
  if ! ls "$libs"/kafka_2.13-*.jar >/dev/null 2>&1; then
    echo "kafka: resolving Apache Kafka from Maven Central into $libs"
    mvn -q -B -f "$root/deploy/kafka/pom.xml" dependency:copy-dependencies
  fi
}

write_config() {
  # KAFKA_PROXY_PORT (fault tests): a second listener on port+2 that advertises the proxy's port, so clients
  # bootstrapped through a TCP proxy in front of it keep talking through the proxy.
  local proxied_listener="" proxied_advertised=""
  if [ -n "${KAFKA_PROXY_PORT:-}" ]; then
    proxied_listener=",PROXIED://127.0.0.1:$((port + 2))"
    proxied_advertised=",PROXIED://127.0.0.1:$KAFKA_PROXY_PORT"
  fi
  mkdir -p "$dir/data" "$run_dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$proxied_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$port$proxied_advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Offset commits are written at once instead of waiting up to 5 ms for company: every batch of every
# consumer waits for its commit before it fetches the next one.
group.coordinator.append.linger.ms=0
auto.create.topics.enable=false
log.cleaner.enable=true
log.retention.hours=168
PROPS
  cat > "$dir/log4j2.yaml" <<'LOG'
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
LOG
}

start() {
  if is_running; then echo "kafka: already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return; fi
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "kafka: 127.0.0.1:$port is already taken by another process (set KAFKA_PORT, or stop it)"; exit 1
  fi
  resolve_jars
  write_config
  local cp="$libs/*"
  if [ ! -f "$dir/data/meta.properties" ]; then
    java -cp "$cp" -Dlog4j2.configurationFile="$dir/log4j2.yaml" kafka.tools.StorageTool format \
      -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
      -c "$dir/server.properties" --standalone >"$run_dir/logs/kafka-format.log" 2>&1
  fi
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -cp "$cp" \
    -Dlog4j2.configurationFile="$dir/log4j2.yaml" kafka.Kafka "$dir/server.properties" \
    >"$run_dir/logs/kafka.log" 2>&1 &
  echo $! > "$pidfile"
  # A broker stopped uncleanly recovers its logs before it listens: minutes with gigabytes of data.
  for _ in $(seq 1 360); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then echo "kafka: up on 127.0.0.1:$port"; return; fi
    is_running || { echo "kafka: exited, see $run_dir/logs/kafka.log"; tail -20 "$run_dir/logs/kafka.log"; exit 1; }
    sleep 0.5
  done
  echo "kafka: did not open 127.0.0.1:$port in 180 s (pid $(cat "$pidfile") still starting, see $run_dir/logs/kafka.log)"; exit 1
}

stop() {
  if is_running; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "kafka: stopped"
  fi
  rm -f "$pidfile"
}

signal_broker() {
  is_running || { echo "kafka: not running"; exit 1; }
  kill -s "$1" "$(cat "$pidfile")"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) signal_broker KILL; sleep 0.2; rm -f "$pidfile"; echo "kafka: killed" ;;
  pause) signal_broker STOP; echo "kafka: paused" ;;
  resume) signal_broker CONT; echo "kafka: resumed" ;;
  status) is_running && echo "kafka: running on 127.0.0.1:$port" || { echo "kafka: stopped"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status|kill|pause|resume"; exit 2 ;;
esac
