"""Input that changes under a live stream: the input directory removed (one clear message with
the account of the batches committed before, which SQLite holds exactly), and a file cut short
mid-line before it is read (its lines counted as they are then, the cut line quarantined)."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from stream_helpers import live_stream

from apistream.catalog import Paths
from apistream.config import load_config
from apistream.errors import ApiStreamError
from apistream.generator.writer import LogGenerator
from apistream.lake import read_table

pytestmark = pytest.mark.spark


def live_config(tmp_path):
    """12 files of 1,000 events, read 2 per batch by a live stream."""
    return load_config(
        environ={},
        overrides={
            "generator.events": 12_000,
            "generator.events_per_file": 1_000,
            "generator.rate": 200,
            "source.max_files_per_trigger": 2,
            "processing.trigger_interval": "1 second",
            "source.path": str(tmp_path / "in"),
            "sinks.output": str(tmp_path / "out"),
        },
    )


def test_input_directory_removed_mid_run_is_one_clear_message(spark, tmp_path):
    cfg = live_config(tmp_path)
    incoming = tmp_path / "in"
    LogGenerator(cfg, str(incoming)).backfill()
    thread, failure = live_stream(spark, cfg, threading.Event())
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


def test_a_file_cut_mid_line_before_it_is_read_is_counted_as_it_is(spark, tmp_path):
    cfg = live_config(tmp_path)
    LogGenerator(cfg, cfg.source.path).backfill()
    last = sorted(Path(cfg.source.path).glob("*.jsonl"))[-1]
    stop = threading.Event()
    thread, failure = live_stream(spark, cfg, stop)
    # Cut the last file (read in the last batch) 20 bytes into its middle line, as a writer
    # that died mid-write, or a log rotated and truncated in place, leaves it.
    data = last.read_bytes()
    cut = data.index(b"\n", len(data) // 2) + 21
    last.write_bytes(data[:cut])
    lines = sum(len(p.read_bytes().splitlines()) for p in Path(cfg.source.path).glob("*.jsonl"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _input(cfg) < lines and not failure:
        time.sleep(0.5)
    stop.set()
    thread.join(timeout=300)
    assert not failure, failure

    with sqlite3.connect(cfg.sqlite_path) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
    assert totals[0] == lines == sum(totals[1:])
    cut_line = data[:cut].rsplit(b"\n", 1)[1].decode()
    quarantine = read_table(Paths.of(cfg).quarantine).to_pylist()
    assert [r["reason"] for r in quarantine if r["raw"] == cut_line] == ["malformed_json"]


def _input(cfg) -> int:
    try:
        with sqlite3.connect(cfg.sqlite_path) as db:
            return db.execute("SELECT input FROM data_quality_totals").fetchone()[0] or 0
    except sqlite3.Error:
        return 0
