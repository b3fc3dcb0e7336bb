"""Spark-test fixtures: a small real pipeline run shared by the notebook, report and
dashboard tests with the headless Chromium they open it in; and a real single-node Apache
Kafka broker (KRaft) for the Kafka tests, started by scripts/kafka.sh on free loopback ports
and always stopped at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from viz_helpers import ARTIFACTS

from apistream.config import Config, load_config
from apistream.generator.writer import LogGenerator
from apistream.pipeline.topology import run_stream
from apistream.viz.browser import launch as launch_chromium

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KafkaBroker:
    """A broker run by scripts/kafka.sh in its own directory."""

    port: int
    controller_port: int
    run_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_RUN_DIR": str(self.run_dir),
        }
        done = subprocess.run(
            [str(KAFKA_SH), command], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"kafka.sh {command} failed:\n{done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start (formatting storage on first use) and wait until a client gets metadata."""
        self._script("up")
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.list_topics(timeout=5)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self._script("down")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the session's Kafka tests."""
    broker = KafkaBroker(free_port(), free_port(), tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def viz_config(root: Path) -> Config:
    """15k events over 10 minutes of event time: ten windows, several micro-batches."""
    return load_config(
        environ={},
        overrides={
            "generator.events": 15_000,
            "generator.rate": 25,
            "generator.seed": 5,
            "source.path": str(root / "incoming"),
            "sinks.output": str(root),
        },
    )


@pytest.fixture(scope="session")
def pipeline_output(spark, tmp_path_factory) -> Config:
    """The config of a finished run (generator -> real streaming pipeline -> SQLite + lake)."""
    root = tmp_path_factory.mktemp("viz")
    cfg = viz_config(root)
    LogGenerator(cfg, cfg.source.path).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return cfg


@pytest.fixture(scope="session")
def browser_context_factory() -> Iterator[object]:
    """Launches Chromium contexts, each with a fresh user-data dir; all closed at the end."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    contexts = []
    dirs = []
    with sync_playwright() as pw:

        def launch(**kwargs: object):
            user_dir = tempfile.mkdtemp(prefix="chromium-")
            dirs.append(user_dir)
            ctx = launch_chromium(pw, user_dir, **kwargs)
            contexts.append(ctx)
            return ctx

        yield launch
        for ctx in contexts:
            ctx.close()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
