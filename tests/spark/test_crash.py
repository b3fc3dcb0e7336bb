"""A crash between a batch's lake write and its SQLite commit (SIGKILL of the driver and its
JVM), then a restart, leaves exactly what an uninterrupted run leaves."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from pathlib import Path

import pyarrow.parquet as pq
from stream_helpers import SMALL_RUN, cli_env, cli_stream, results, small_run_config

from apistream.catalog import Paths
from apistream.pipeline.sink import KILL_BEFORE_COMMIT
from apistream.pipeline.topology import run_stream


def test_sigkill_between_lake_write_and_sqlite_commit_then_restart_is_exact(
    spark, small_run, tmp_path
):
    cfg = small_run_config(tmp_path / "crashed", small_run.incoming, SMALL_RUN)
    killed = subprocess.run(
        cli_stream(cfg, small_run.incoming),
        env=cli_env(SMALL_RUN, **{KILL_BEFORE_COMMIT: "3"}),
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

    after = results(cfg)
    assert after.keys() == small_run.results.keys()
    for name in small_run.results:
        assert after[name] == small_run.results[name], name
    with sqlite3.connect(cfg.sqlite_path) as db:
        valid = db.execute("SELECT SUM(valid) FROM data_quality").fetchone()[0]
    assert valid == small_run.manifest["valid_events"]
