"""The input directory removed while a live stream runs: one clear message with the account
of the batches committed before, which SQLite holds exactly."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import pytest

from apistream.config import load_config
from apistream.errors import ApiStreamError
from apistream.generator.writer import LogGenerator
from apistream.pipeline.topology import run_stream

pytestmark = pytest.mark.spark


def test_input_directory_removed_mid_run_is_one_clear_message(spark, tmp_path):
    incoming = tmp_path / "in"
    cfg = load_config(
        environ={},
        overrides={
            "generator.events": 12_000,
            "generator.events_per_file": 1_000,
            "generator.rate": 200,
            "source.max_files_per_trigger": 2,
            "processing.trigger_interval": "1 second",
            "source.path": str(incoming),
            "sinks.output": str(tmp_path / "out"),
        },
    )
    LogGenerator(cfg, str(incoming)).backfill()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_stream(spark, cfg, until_idle=False, stop=threading.Event())
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not _committed(cfg):
        time.sleep(0.2)
    shutil.rmtree(incoming)
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], ApiStreamError), failure
    message = str(failure[0])
    with sqlite3.connect(cfg.sqlite_path) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
    assert totals[0] > 0 and totals[0] == sum(totals[1:])
    assert f"input directory {incoming} disappeared" in message
    assert f"input {totals[0]:,} = valid {totals[1]:,}" in message
    assert "\n" not in message


def _committed(cfg) -> bool:
    try:
        with sqlite3.connect(cfg.sqlite_path) as db:
            return db.execute("SELECT COUNT(*) FROM sink_commits").fetchone()[0] > 0
    except sqlite3.Error:
        return False
