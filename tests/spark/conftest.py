"""Spark-test fixtures: a small real pipeline run shared by the notebook, report and
dashboard tests with the headless Chromium they open it in; and a real single-node Apache
Kafka broker (KRaft) for the Kafka tests, started by scripts/kafka.sh on free loopback ports
and always stopped at the end."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stream_helpers import SMALL_RUN, results, small_run_config
from viz_helpers import ARTIFACTS

from apistream.bench.broker import Broker as KafkaBroker
from apistream.config import Config, load_config
from apistream.generator.writer import LogGenerator
from apistream.pipeline.topology import run_stream
from apistream.viz.browser import launch as launch_chromium


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the session's Kafka tests."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@dataclass(frozen=True)
class SmallRun:
    """The input of the small run (stream_helpers.SMALL_RUN) and an uninterrupted run over it."""

    incoming: Path
    manifest: dict
    reference: Config
    results: dict[str, object]
    output_bytes: int


@pytest.fixture(scope="session")
def small_run(spark, tmp_path_factory) -> SmallRun:
    """The reference the crash, chaos and full-disk tests compare their runs with."""
    root = tmp_path_factory.mktemp("small-run")
    incoming = root / "in"
    cfg = small_run_config(root / "reference", incoming, SMALL_RUN)
    manifest = LogGenerator(cfg, str(incoming)).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    size = sum(p.stat().st_size for p in (root / "reference").rglob("*") if p.is_file())
    return SmallRun(incoming, manifest, cfg, results(cfg), size)


def viz_config(root: Path) -> Config:
    """15k events over 10 minutes of event time: ten windows, several micro-batches."""
    return load_config(
        environ={},
        overrides={
            # The batching these tests were built for (late events need 2 batches of files).
            "source.max_files_per_trigger": 4,
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
