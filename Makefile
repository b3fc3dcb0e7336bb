# APIStream Analytics. `make demo` and `make test` set up everything they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup deps demo test test-fast test-airflow test-spark test-kafka lint clean kafka-up kafka-down screenshots bench bench-quick detection-eval reliability chaos cluster-up cluster-down cluster-demo cluster-bench

help:
	@echo "make demo       generate ~1M events, stream them, print a summary"
	@echo "make test       all tests (fast ones first, then Spark end-to-end)"
	@echo "make test-fast  tests that need no JVM (seconds)"
	@echo "make test-kafka only the Kafka tests (start their own broker)"
	@echo "make test-airflow  only the Airflow DAG tests (airflow dags test; part of make test)"
	@echo "make kafka-up   start a local Kafka broker on 127.0.0.1:9092 (make kafka-down stops it)"
	@echo "make reliability  run the hostile-input and fault tests, write docs/reliability.md (~10 min)"
	@echo "make chaos      SIGKILL the pipeline 30 times at random moments, then check the restart (~15 min)"
	@echo "make cluster-up a local Spark standalone cluster: master, 2 workers, history server"
	@echo "make cluster-demo  the demo on that cluster (make cluster-down stops it)"
	@echo "make cluster-bench  sizing: the same backlog on 1 and 2 workers and in local[2] (~8 min)"
	@echo "make lint       ruff"
	@echo "make screenshots  README images of the report and dashboard (after make demo)"
	@echo "make bench      throughput, freshness (files, Kafka), memory, scaling; DuckDB cross-check,"
	@echo "                 GoAccess and DuckDB as peers (~50 min)"
	@echo "make bench-quick  the same, smaller (~10 min)"
	@echo "make detection-eval  both anomaly detectors over 10 seeds x 2 simulated days (~15 min)"
	@echo "make clean      remove the virtualenv and outputs"

$(STAMP): pyproject.toml
	@scripts/check_python.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[spark,dev,bench,airflow]'
	@touch $(STAMP)

setup: $(STAMP)

# JVM dependencies from Maven Central, cached under .cache/ (git-ignored): the Kafka broker
# jars (mvn) now; Spark's Kafka connector is resolved by Spark itself (Ivy) on first use.
deps:
	@scripts/kafka.sh fetch

demo: setup
	@scripts/check_java.sh
	$(BIN)/apistream demo

test: setup deps
	@scripts/check_java.sh
	@scripts/check_chromium.sh --install
	@scripts/check_goaccess.sh --install
	@scripts/check_prometheus.sh --install
	$(BIN)/pytest -m "not spark" -q
	$(BIN)/pytest -m spark -q --durations=20

test-fast: setup
	$(BIN)/pytest -m "not spark" -q

test-airflow: setup
	@scripts/check_java.sh
	$(BIN)/pytest -m airflow -q

screenshots: setup
	@scripts/check_chromium.sh --install
	$(BIN)/python scripts/screenshots.py --output output/demo --images docs/images

# Results go to bench/results/<UTC timestamp>.{json,md,png}; see README "Performance".
# GoAccess is a peer (scripts/check_goaccess.sh --install as root installs it); the Kafka runs
# start their own broker (scripts/kafka.sh) at the 20k and 50k events/s of the file runs.
# A local Spark standalone cluster (master, 2 workers of 1 core / 2 GB, history server) from the
# pyspark install; ports from SPARK_MASTER_PORT, SPARK_MASTER_WEBUI_PORT, ... (scripts/cluster.sh).
cluster-up: setup
	@scripts/check_java.sh
	@scripts/cluster.sh up

cluster-down:
	@scripts/cluster.sh down

# Sizing: the same 1M-event backlog on 1 and 2 workers and in local[2] (~10 min; stops the cluster).
cluster-bench: setup
	@scripts/check_java.sh
	@scripts/cluster.sh down >/dev/null
	$(BIN)/python -m apistream.bench.cluster

cluster-demo: cluster-up
	SPARK_CONF_DIR=$(CURDIR)/.cache/cluster/conf $(BIN)/apistream demo --output output/cluster-demo \
		--master spark://127.0.0.1:$${SPARK_MASTER_PORT:-7077}

bench: setup deps
	@scripts/check_java.sh
	@scripts/check_goaccess.sh --install
	$(BIN)/apistream bench

detection-eval: setup
	@scripts/check_java.sh
	$(BIN)/python -m apistream.bench.detection --json output/detection-eval.json

bench-quick: setup deps
	@scripts/check_java.sh
	@scripts/check_goaccess.sh --install
	$(BIN)/apistream bench --events 1000000 --scale 1000000 --sweep 4 --live-seconds 90 --warmup 20 \
		--fresh-rates 50000 --fresh-seconds 60

# docs/reliability.md from the results of the hostile-input and fault tests (JUnit XML).
RELIABILITY_TESTS := tests/spark/test_hostile_input.py tests/spark/test_crash.py tests/spark/test_chaos.py \
	tests/spark/test_restart.py tests/spark/test_kafka_recovery.py tests/spark/test_long_fields.py \
	tests/spark/test_input_faults.py tests/spark/test_compressed_input.py tests/spark/test_full_disk.py \
	tests/spark/test_properties.py tests/spark/test_secrets.py \
	tests/unit/test_preflight.py tests/unit/test_cli.py tests/unit/test_dashboard_host.py
reliability: setup deps
	@scripts/check_java.sh
	@mkdir -p .cache
	-$(BIN)/pytest -q -o junit_family=xunit1 --junitxml=.cache/reliability.xml $(RELIABILITY_TESTS)
	$(BIN)/python scripts/reliability_doc.py .cache/reliability.xml > docs/reliability.md
	@echo "wrote docs/reliability.md"

test-kafka: setup deps
	@scripts/check_java.sh
	$(BIN)/pytest -q tests/unit/test_kafka_source.py tests/spark/test_kafka*.py

kafka-up: deps
	@scripts/check_java.sh
	@scripts/kafka.sh up

kafka-down:
	@scripts/kafka.sh down

lint: setup
	$(BIN)/ruff check src tests scripts deploy notebooks
	$(BIN)/ruff format --check src tests scripts deploy

clean:
	rm -rf $(VENV) output .pytest_cache .ruff_cache .cache

# 30 SIGKILLs at random moments over 60 one-file batches (tests/spark/test_chaos.py; make test
# kills 5 times). APISTREAMTEST_CHAOS_SEED=N replays the moments of a failed run.
CHAOS_KILLS ?= 30
chaos: setup
	@scripts/check_java.sh
	APISTREAMTEST_CHAOS_KILLS=$(CHAOS_KILLS) $(BIN)/pytest -q -s tests/spark/test_chaos.py
