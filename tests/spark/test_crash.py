"""A crash (SIGKILL of the driver and its JVM) between a batch's lake write and its SQLite
commit, or between the file source's log and Spark's offset log, then a restart, leaves exactly
what an uninterrupted run leaves."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from stream_helpers import (
    SMALL_RUN,
    cli_env,
    cli_stream,
    differences,
    results,
    small_run_config,
)

from apistream.catalog import Paths
from apistream.config import Config
from apistream.errors import ApiStreamError
from apistream.pipeline.sink import KILL_BEFORE_COMMIT
from apistream.pipeline.topology import run_stream


def killed_before_commit(small_run, tmp_path: Path, batch: int) -> Config:
    """The config of an `apistream stream` run over the small run's input, SIGKILLed with
    its JVM once batch `batch`'s lake files are written, before its SQLite commit."""
    cfg = small_run_config(tmp_path / "crashed", small_run.incoming, SMALL_RUN)
    killed = subprocess.run(
        cli_stream(cfg, small_run.incoming),
        env=cli_env(SMALL_RUN, **{KILL_BEFORE_COMMIT: str(batch)}),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # its own process group: the kill takes the JVM too
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    return cfg


def test_sigkill_between_lake_write_and_sqlite_commit_then_restart_is_exact(
    spark, small_run, tmp_path
):
    cfg = killed_before_commit(small_run, tmp_path, batch=3)
    with sqlite3.connect(cfg.sqlite_path) as db:
        committed = [r[0] for r in db.execute("SELECT batch_id FROM sink_commits")]
    assert committed == [0, 1, 2]
    # batch 3's events are in the lake, uncommitted
    written = sorted(Path(Paths.of(cfg).events).rglob("batch-0000000003-*.parquet"))
    assert written and sum(pq.read_metadata(p).num_rows for p in written) > 0

    run_stream(spark, cfg, until_idle=True, stop=threading.Event())

    differ = differences(results(cfg), small_run.results)
    assert not differ, differ
    with sqlite3.connect(cfg.sqlite_path) as db:
        valid = db.execute("SELECT SUM(valid) FROM data_quality").fetchone()[0]
    assert valid == small_run.manifest["valid_events"]


def test_sigkill_between_the_file_source_log_and_the_offset_log_then_restart_is_exact(
    spark, small_run, tmp_path
):
    """The file source logs the files of its next batch (sources/0/N) before Spark logs the
    query batch's offsets (offsets/N). After a kill between the two, the restarted query's
    batch N reads source batches N and N + 1 at once; the sink commits them as the two
    batches an uninterrupted run commits."""
    cfg = killed_before_commit(small_run, tmp_path, batch=2)
    checkpoint = Path(Paths.of(cfg).checkpoint)
    assert (checkpoint / "sources" / "0" / "2").exists()
    # What a kill a moment earlier leaves: batch 2's files in the source's log, its offsets
    # not logged. (Its uncommitted lake files, which that kill would not have left, are
    # removed by the restart, as in the test above.)
    (checkpoint / "offsets" / "2").unlink()
    (checkpoint / "offsets" / ".2.crc").unlink(missing_ok=True)

    run_stream(spark, cfg, until_idle=True, stop=threading.Event())

    offsets = (checkpoint / "offsets" / "2").read_text().splitlines()
    assert json.loads(offsets[2]) == {"logOffset": 3}, "query batch 2 read source batches 2, 3"
    differ = differences(results(cfg), small_run.results)
    assert not differ, differ


def test_a_lost_sqlite_database_stops_the_restart_and_leaves_the_lake(spark, small_run, tmp_path):
    # A finished run whose database is then lost (a new driver disk on a cluster, say): the
    # checkpoint is ahead of SQLite. Going on would delete the lake as a crash's leftovers.
    cfg = small_run_config(tmp_path / "run", small_run.incoming, SMALL_RUN)
    shutil.copytree(small_run.reference.sinks.output, cfg.sinks.output)
    Path(cfg.sqlite_path).unlink()
    lake = Path(cfg.sinks.output) / "lake"
    before = sorted((str(p), p.stat().st_size) for p in lake.rglob("*.parquet"))
    commits = Path(Paths.of(cfg).checkpoint) / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    with pytest.raises(ApiStreamError) as failure:
        run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    assert str(failure.value).startswith(
        f"the checkpoint {Paths.of(cfg).checkpoint} committed batches up to {last}, but the "
        f"SQLite database {cfg.sqlite_path} has none: it was deleted or replaced."
    )
    assert before and sorted((str(p), p.stat().st_size) for p in lake.rglob("*.parquet")) == before
