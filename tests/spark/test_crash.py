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

from apistream.catalog import Paths
from apistream.config import load_config
from apistream.generator.writer import LogGenerator
from apistream.lake import read_table
from apistream.pipeline.sink import KILL_BEFORE_COMMIT
from apistream.pipeline.topology import run_stream

# Columns that hold wall-clock times or timings, not results.
CLOCK_COLUMNS = {"committed_at", "recorded_at", "detected_at", "stage_ms"}
SETTINGS = {
    "generator.events": 24_000,
    "generator.events_per_file": 2_000,
    "generator.rate": 200,
    "generator.seed": 21,
    "source.max_files_per_trigger": 2,
}


def config(root: Path, incoming: Path):
    return load_config(
        environ={},
        overrides={**SETTINGS, "source.path": str(incoming), "sinks.output": str(root)},
    )


def results(cfg) -> dict[str, object]:
    """SQLite tables (without clock columns) and the rows of every lake table."""
    out: dict[str, object] = {}
    with sqlite3.connect(cfg.sqlite_path) as db:
        for table in ("endpoint_metrics", "throughput", "data_quality", "sink_commits",
                      "anomalies", "anomaly_baselines"):  # fmt: skip
            cur = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            keep = [i for i, n in enumerate(names) if n not in CLOCK_COLUMNS]
            out[table] = sorted(tuple(_round(r[i]) for i in keep) for r in cur.fetchall())
    paths = Paths.of(cfg)
    for name in ("events", "quarantine", "endpoint_metrics", "anomalies"):
        table = read_table(getattr(paths, name))
        columns = [c for c in table.column_names if c not in {"ingest_time", "detected_at"}]
        rows = table.select(columns).to_pylist() if columns else []
        out[f"lake/{name}"] = sorted(
            repr(sorted((k, _round(v)) for k, v in r.items())) for r in rows
        )
    return out


def _round(value: object) -> object:
    """Floating sums may differ in the last bits with the order Spark adds them in."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


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
