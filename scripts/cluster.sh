#!/usr/bin/env bash
# A local Spark standalone cluster from the pyspark install (no download): a master, workers
# and a history server on 127.0.0.1, state under .cache/cluster (git-ignored).
#
#   scripts/cluster.sh up       start (waits until every worker has registered)
#   scripts/cluster.sh down     stop them by PID
#   scripts/cluster.sh status   the master's /json/ summary
#   scripts/cluster.sh kill-worker N   SIGKILL worker N (1-based) and its executors, as a
#                                      lost node would go
#
# Ports and sizes (environment): SPARK_MASTER_PORT (7077), SPARK_MASTER_WEBUI_PORT (8080),
# SPARK_WORKER_WEBUI_PORT (8081, +1 per worker; 0: any free), SPARK_HISTORY_PORT (18080),
# CLUSTER_WORKERS (2), CLUSTER_WORKER_CORES (1), CLUSTER_WORKER_MEMORY (2g).
# Applications that export SPARK_CONF_DIR=.cache/cluster/conf write their event logs where the
# history server reads them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
RUN=${CLUSTER_DIR:-$PWD/.cache/cluster}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}
MASTER_UI=${SPARK_MASTER_WEBUI_PORT:-8080}
WORKER_UI=${SPARK_WORKER_WEBUI_PORT:-8081}
HISTORY_PORT=${SPARK_HISTORY_PORT:-18080}
WORKERS=${CLUSTER_WORKERS:-2}
CORES=${CLUSTER_WORKER_CORES:-1}
MEMORY=${CLUSTER_WORKER_MEMORY:-2g}
MASTER_URL="spark://127.0.0.1:$MASTER_PORT"

spark_home() { "$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }

# start NAME CLASS ARGS...: a JVM in the background, its PID in $RUN/NAME.pid.
start() {
  local name=$1
  shift
  nohup "$SPARK_HOME/bin/spark-class" "$@" >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

stop_pid() {
  local file=$1
  [[ -f $file ]] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

master_json() {
  "$PY" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$MASTER_UI/json/"
}

alive_workers() {
  master_json 2>/dev/null |
    "$PY" -c 'import json, sys; print(sum(w["state"] == "ALIVE" for w in json.load(sys.stdin)["workers"]))' \
    2>/dev/null || echo 0
}

up() {
  if [[ -f $RUN/master.pid ]] && kill -0 "$(cat "$RUN/master.pid")" 2>/dev/null; then
    echo "cluster already up: $MASTER_URL"
    return 0
  fi
  SPARK_HOME=$(spark_home)
  export SPARK_HOME
  mkdir -p "$RUN/logs" "$RUN/events" "$RUN/conf"
  cat >"$RUN/conf/spark-defaults.conf" <<EOF
spark.eventLog.enabled true
spark.eventLog.dir file:$RUN/events
spark.eventLog.compress false
EOF
  start master org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port "$MASTER_UI"
  for i in $(seq "$WORKERS"); do
    mkdir -p "$RUN/worker-$i"
    start "worker-$i" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$CORES" --memory "$MEMORY" \
      --webui-port $((WORKER_UI == 0 ? 0 : WORKER_UI + i - 1)) --work-dir "$RUN/worker-$i" \
      "$MASTER_URL"
  done
  SPARK_HISTORY_OPTS="-Dspark.history.fs.logDirectory=file:$RUN/events -Dspark.history.ui.port=$HISTORY_PORT" \
    start history org.apache.spark.deploy.history.HistoryServer
  for _ in $(seq 120); do
    if [[ $(alive_workers) -ge $WORKERS ]]; then
      echo "cluster up: $MASTER_URL, $WORKERS workers x $CORES core(s), $MEMORY"
      echo "  master UI http://127.0.0.1:$MASTER_UI/ (/json/), history http://127.0.0.1:$HISTORY_PORT/"
      echo "  event logs: export SPARK_CONF_DIR=$RUN/conf"
      return 0
    fi
    sleep 0.5
  done
  echo "error: the cluster did not come up within 60 s; logs in $RUN/logs" >&2
  tail -n 20 "$RUN"/logs/*.log >&2 || true
  down
  return 1
}

down() {
  for f in "$RUN"/worker-*.pid "$RUN"/history.pid "$RUN"/master.pid; do
    [[ -e $f ]] && stop_pid "$f"
  done
  echo "cluster down"
}

case ${1:-} in
up) up ;;
down) down ;;
status) master_json 2>/dev/null || { echo "no master on :$MASTER_UI" >&2; exit 1; } ;;
kill-worker)
  # The worker and the executors it launched, as a lost node would go.
  pid=$(cat "$RUN/worker-${2:?worker number}.pid")
  children=$(pgrep -P "$pid" || true)
  kill -9 "$pid" $children
  rm -f "$RUN/worker-$2.pid"
  ;;
*) echo "usage: $0 up|down|status|kill-worker N" >&2; exit 2 ;;
esac
