"""The pipeline on a real Spark standalone cluster: a master and two worker JVMs, each
launching its own executor JVM (scripts/cluster.sh, from the pyspark install), with the driver
in an `apistream stream --master spark://...` process.

- The Kafka end-to-end run gives the exact counts of the local one (the very assertions of
  test_end_to_end, e2e_checks.ManifestCounts, run against this module's `run` fixture).
- Its tasks ran on both workers (the application's event log).
- A worker killed with SIGKILL mid-stream, with its executor, loses nothing.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import pytest
from e2e_checks import ManifestCounts
from stream_helpers import assert_matches_manifest, cli_env, kafka_config

from apistream.config import load_config
from apistream.generator.writer import LogGenerator
from apistream.kafka_io import KafkaChunkSink

pytestmark = [pytest.mark.spark, pytest.mark.kafka]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """scripts/cluster.sh on free ports, its state in `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.port, self.ui = _free_port(), _free_port()
        self.env = {
            **os.environ,
            "CLUSTER_DIR": str(root),
            "SPARK_MASTER_PORT": str(self.port),
            "SPARK_MASTER_WEBUI_PORT": str(self.ui),
            "SPARK_WORKER_WEBUI_PORT": "0",
            "SPARK_HISTORY_PORT": str(_free_port()),
            "PYTHON": sys.executable,
        }

    @property
    def master(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def script(self, *args: str) -> None:
        cmd = [str(REPO / "scripts" / "cluster.sh"), *args]
        subprocess.run(cmd, env=self.env, check=True, timeout=180)

    def status(self) -> dict:
        with urlopen(f"http://127.0.0.1:{self.ui}/json/", timeout=10) as r:
            return json.load(r)

    def stream(self, settings: dict[str, object]) -> subprocess.Popen:
        """`apistream stream --until-idle` with the driver here and executors on the cluster;
        its event log goes where the history server reads (the cluster's spark-defaults)."""
        env = cli_env(
            settings,
            APISTREAM_SPARK__MASTER=self.master,
            SPARK_CONF_DIR=str(self.root / "conf"),
            SPARK_LOCAL_IP="127.0.0.1",
        )
        cmd = [sys.executable, "-m", "apistream.cli", "stream", "--until-idle"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def event_log(self, app_id: str) -> list[dict]:
        """The application's events (Spark 4 rolls the log into a directory of parts)."""
        rolled = self.root / "events" / f"eventlog_v2_{app_id}"
        parts = sorted(rolled.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
        files = parts if rolled.is_dir() else [self.root / "events" / app_id]
        return [json.loads(line) for f in files for line in f.open()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    c.script("up")
    try:
        yield c
    finally:
        c.script("down")


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.fixture(scope="module")
def run(cluster, kafka_broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster-kafka")
    cfg = kafka_config(root, kafka_broker.bootstrap, "cluster-e2e")
    manifest = LogGenerator(cfg, cfg.source.path, sink=KafkaChunkSink(cfg.source.kafka)).backfill()
    settings = {
        "source.format": "kafka",
        "source.path": cfg.source.path,
        "source.kafka.bootstrap_servers": kafka_broker.bootstrap,
        "source.kafka.topic": "cluster-e2e",
        "source.kafka.max_offsets_per_trigger": 10_000,
        "sinks.output": cfg.sinks.output,
    }
    _finish(cluster.stream(settings))
    db = sqlite3.connect(cfg.sqlite_path)
    yield cfg, manifest, db
    db.close()


class TestClusterRun(ManifestCounts):
    """The cluster's Kafka run against its manifest (the assertions of e2e_checks)."""


def test_the_cluster_run_matches_the_manifest(run):
    cfg, manifest, _ = run
    assert_matches_manifest(cfg.sqlite_path, manifest)


def test_tasks_ran_on_executors_of_both_workers(cluster, run):
    apps = cluster.status()["completedapps"]
    assert len(apps) == 1 and apps[0]["state"] == "FINISHED", apps
    log = cluster.event_log(apps[0]["id"])
    # An executor's log URL is served by the worker that launched it.
    worker_of = {
        e["Executor ID"]: urlparse(e["Executor Info"]["Log Urls"]["stdout"]).port
        for e in log
        if e["Event"] == "SparkListenerExecutorAdded"
    }
    tasks = Counter(
        worker_of[e["Task Info"]["Executor ID"]]
        for e in log
        if e["Event"] == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] == "Success"
    )
    workers = {urlparse(w["webuiaddress"]).port for w in cluster.status()["workers"]}
    assert set(tasks) == workers and len(workers) == 2, (tasks, workers)
    assert min(tasks.values()) > 0


def test_a_worker_killed_mid_stream_loses_nothing(cluster, tmp_path):
    settings = {
        "generator.events": 40_000,
        "generator.events_per_file": 2_000,
        "generator.rate": 200,
        "generator.seed": 31,
        "source.max_files_per_trigger": 2,
        "source.path": str(tmp_path / "in"),
        "sinks.output": str(tmp_path / "out"),
    }
    cfg = load_config(environ={}, overrides=settings)
    manifest = LogGenerator(cfg, cfg.source.path).backfill()
    proc = cluster.stream(settings)
    db_path = Path(cfg.sqlite_path)
    deadline = time.monotonic() + 300
    committed = 0
    while committed < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if db_path.exists():
            with sqlite3.connect(db_path) as db:
                committed = db.execute("SELECT COUNT(*) FROM sink_commits").fetchone()[0]
    assert committed >= 2, "the stream did not commit two batches"
    cluster.script("kill-worker", "1")
    _finish(proc)
    with sqlite3.connect(db_path) as db:
        batches = db.execute("SELECT COUNT(*) FROM sink_commits").fetchone()[0]
    assert batches == 10 and committed < batches  # the kill came with most batches to go
    assert_matches_manifest(cfg.sqlite_path, manifest)
    status = cluster.status()
    assert [w["state"] for w in status["workers"]].count("ALIVE") == 1
    app = max(status["completedapps"], key=lambda a: a["starttime"])
    log = cluster.event_log(app["id"])
    lost = [e for e in log if e["Event"] == "SparkListenerExecutorRemoved"]
    assert len(lost) == 1, lost  # the killed worker's executor, lost while the stream ran
    ended = [e["Timestamp"] for e in log if e["Event"] == "SparkListenerApplicationEnd"]
    assert lost[0]["Timestamp"] < ended[0]
