"""Generator -> real streaming pipeline -> SQLite + Parquet, checked against the manifest."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from e2e_checks import StreamRunChecks

from apistream.bench.reference import compare, reference_metrics
from apistream.config import load_config
from apistream.generator.writer import LogGenerator
from apistream.pipeline.topology import run_stream


def e2e_config(root: Path):
    return load_config(
        environ={},
        overrides={
            # The batching these tests were built for (late events need 2 batches of files).
            "source.max_files_per_trigger": 4,
            "generator.events": 60_000,
            "generator.events_per_file": 3_000,
            "generator.rate": 400,
            "generator.seed": 11,
            "source.path": str(root / "incoming"),
            "sinks.output": str(root),
        },
    )


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    cfg = e2e_config(root)
    manifest = LogGenerator(cfg, cfg.source.path).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    db = sqlite3.connect(cfg.sqlite_path)
    yield cfg, manifest, db
    db.close()


class TestFileSourceRun(StreamRunChecks):
    """The file-source run against its manifest (the assertions of e2e_checks)."""


def test_duckdb_reference_agrees_with_the_pipeline_and_the_manifest(run):
    """An independent SQL implementation over the same files (the benchmark's cross-check)."""
    cfg, m, _ = run
    con, account = reference_metrics(cfg, Path(cfg.source.path), cfg.source.max_files_per_trigger)
    assert account["lines"] == m["total_events"]
    assert account["valid"] == m["valid_events"]
    assert account["quarantined_by_reason"] == {k: n for k, n in m["defects"].items() if n}
    check = compare(con, Path(cfg.sqlite_path))
    assert check["groups"] > 50
    assert check["groups_missing_in_pipeline"] == check["groups_missing_in_reference"] == 0
    assert check["groups_with_count_mismatch"] == 0
    assert check["requests_pipeline"] == check["requests_reference"] == m["valid_events"]
    for name, p in check["percentiles"].items():
        assert p["outside_tolerance"] == 0, name
        assert p["relative_error_max"] <= 0.01, name
    assert check["agree"] is True


def test_duckdb_cross_check_reports_a_single_wrong_count(run, tmp_path):
    cfg, _, _ = run
    copy = tmp_path / "tampered.db"
    with sqlite3.connect(cfg.sqlite_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
        dst.execute(
            "UPDATE endpoint_metrics SET status_5xx = status_5xx + 1 WHERE rowid = "
            "(SELECT MIN(rowid) FROM endpoint_metrics)"
        )
    con, _ = reference_metrics(cfg, Path(cfg.source.path), cfg.source.max_files_per_trigger)
    check = compare(con, copy)
    assert check["groups_with_count_mismatch"] == 1
    assert check["agree"] is False
