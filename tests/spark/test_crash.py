"""A crash between a batch's lake write and its SQLite commit (SIGKILL of the driver and its
JVM), then a restart, leaves exactly what an uninterrupted run leaves."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
from stream_helpers import SMALL_RUN, results, small_run_config

from apistream.catalog import Paths
from apistream.generator.writer import LogGenerator
from apistream.pipeline.sink import KILL_BEFORE_COMMIT
from apistream.pipeline.topology import run_stream

SETTINGS = {**SMALL_RUN, "generator.seed": 21}


def config(root: Path, incoming: Path):
    return small_run_config(root, incoming, SETTINGS)


def test_sigkill_between_lake_write_and_sqlite_commit_then_restart_is_exact(spark, tmp_path):
    incoming = tmp_path / "in"
    reference_cfg = config(tmp_path / "reference", incoming)
    manifest = LogGenerator(reference_cfg, str(incoming)).backfill()
    run_stream(spark, reference_cfg, until_idle=True, stop=threading.Event())

    cfg = config(tmp_path / "crashed", incoming)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("APISTREAM_")},
        KILL_BEFORE_COMMIT: "3",
        "APISTREAM_SPARK__MASTER": "local[2]",
        **{f"APISTREAM_{k.upper().replace('.', '__')}": str(v) for k, v in SETTINGS.items()},
    }
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "apistream.cli",
            "stream",
            "--until-idle",
            "--input",
            str(incoming),
            "--output",
            cfg.sinks.output,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # its own process group: the kill takes the JVM too
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    with sqlite3.connect(cfg.sqlite_path) as db:
        committed = [r[0] for r in db.execute("SELECT batch_id FROM sink_commits")]
    assert committed == [0, 1, 2]
    # batch 3's events are in the lake, uncommitted
    written = sorted(Path(Paths.of(cfg).events).rglob("batch-0000000003-*.parquet"))
    assert written and sum(pq.read_metadata(p).num_rows for p in written) > 0

    run_stream(spark, cfg, until_idle=True, stop=threading.Event())

    after, reference = results(cfg), results(reference_cfg)
    assert after.keys() == reference.keys()
    for name in reference:
        assert after[name] == reference[name], name
    with sqlite3.connect(cfg.sqlite_path) as db:
        valid = db.execute("SELECT SUM(valid) FROM data_quality").fetchone()[0]
    assert valid == manifest["valid_events"]
