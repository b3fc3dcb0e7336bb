#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, no ZooKeeper) for development and tests, built from
# Apache Kafka's artifacts on Maven Central and run with the local Java 17. Listens on
# 127.0.0.1 only.
#
#   scripts/kafka.sh fetch    resolve the broker jars into .cache/kafka/lib (once; mvn)
#   scripts/kafka.sh up       fetch, format storage on first use, start, wait until ready
#   scripts/kafka.sh down     stop the broker (SIGTERM, then SIGKILL after 30 s)
#   scripts/kafka.sh status   say whether it runs
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_RUN_DIR (.cache/kafka/run:
# data, logs, pid), KAFKA_HEAP (512m), KAFKA_PARTITIONS (3, default for new topics),
# KAFKA_READY_TIMEOUT (120 s).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache"
LIB="$CACHE/kafka/lib"
POM="$ROOT/scripts/kafka/pom.xml"
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
RUN="${KAFKA_RUN_DIR:-$CACHE/kafka/run}"
HEAP="${KAFKA_HEAP:-512m}"
PARTITIONS="${KAFKA_PARTITIONS:-3}"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-120}"
PIDFILE="$RUN/broker.pid"
LOG="$RUN/logs/server.log"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  local stamp="$LIB/.resolved-$(cksum <"$POM" | cut -d' ' -f1)"
  [ -f "$stamp" ] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka broker jars \
(Debian/Ubuntu: sudo apt-get install -y maven)"
  echo "kafka.sh: resolving the Kafka broker from Maven Central into $LIB" >&2
  rm -rf "$LIB" && mkdir -p "$LIB"
  if ! mvn -B -Dstyle.color=never -f "$POM" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DoutputDirectory="$LIB" -DincludeScope=runtime \
    >"$CACHE/kafka/mvn.log" 2>&1; then
    tail -n 40 "$CACHE/kafka/mvn.log" >&2
    die "could not resolve the Kafka broker jars from Maven Central (log: $CACHE/kafka/mvn.log)"
  fi
  echo "kafka.sh: $(ls "$LIB" | wc -l) jars in $LIB" >&2
  touch "$stamp"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_properties() {
  cat >"$RUN/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$RUN/data
num.partitions=$PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
EOF
}

java_opts() {
  JAVA_OPTS=("-Xmx$HEAP" -Xms64m -XX:+UseSerialGC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="file:$ROOT/scripts/kafka/log4j2.properties"
    -Dkafka.logs.dir="$RUN/logs" -cp "$LIB/*")
}

up() {
  fetch
  if running; then
    echo "kafka.sh: broker already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT" >&2
    return 0
  fi
  port_open "$PORT" && die "port $PORT is taken by another process; set KAFKA_PORT"
  mkdir -p "$RUN/logs"
  write_properties
  java_opts
  if [ ! -f "$RUN/data/meta.properties" ]; then
    java "${JAVA_OPTS[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$(java "${JAVA_OPTS[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$RUN/server.properties" >"$RUN/logs/format.log" 2>&1 \
      || { cat "$RUN/logs/format.log" >&2; die "formatting storage failed"; }
  fi
  : >"$LOG"
  nohup java "${JAVA_OPTS[@]}" kafka.Kafka "$RUN/server.properties" \
    >"$RUN/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until grep -q "Kafka Server started" "$LOG" 2>/dev/null && port_open "$PORT"; do
    if ! running; then
      tail -n 30 "$LOG" "$RUN/logs/stdout.log" >&2 || true
      die "the broker exited during start-up"
    fi
    [ $SECONDS -ge $deadline ] && { down; die "the broker was not ready within ${READY_TIMEOUT}s"; }
    sleep 0.5
  done
  echo "kafka.sh: broker ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"), data in $RUN)" >&2
}

down() {
  if ! running; then
    rm -f "$PIDFILE"
    echo "kafka.sh: broker not running" >&2
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  echo "kafka.sh: broker stopped" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status)
    if running; then echo "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; else
      echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 fetch|up|down|status" >&2; exit 2 ;;
esac
