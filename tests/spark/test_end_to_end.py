"""Generator -> real streaming pipeline -> SQLite + Parquet, checked against the manifest."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apistream.bench.reference import compare, reference_metrics
from apistream.catalog import PIPELINE_QUERY
from apistream.config import DEFECT_KINDS, load_config
from apistream.generator.writer import LogGenerator
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream


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


def scalar(db, sql):
    return db.execute(sql).fetchone()[0]


def test_accounting_invariant_equals_injected_counts(run):
    _, m, db = run
    row = db.execute("SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals")
    total, valid, quarantined, dups, late = row.fetchone()
    assert total == m["total_events"] == 60_000
    assert valid == m["valid_events"]
    assert quarantined == sum(m["defects"].values())
    assert dups == m["duplicates"] > 0
    assert late == m["late_beyond_watermark"] > 0
    assert total == valid + quarantined + dups + late


def test_quarantine_reasons_equal_injected_defects(run):
    cfg, m, db = run
    reasons = dict(db.execute("SELECT reason, records FROM quarantine_reasons"))
    assert reasons == {k: m["defects"][k] for k in DEFECT_KINDS}
    lake = read_table(Paths.of(cfg).quarantine, ["reason", "raw"]).to_pandas()
    assert lake["reason"].value_counts().to_dict() == reasons
    assert lake["raw"].notna().all()


def test_requests_per_endpoint_status_class_and_method_equal_manifest(run):
    _, m, db = run
    by_endpoint = dict(
        db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1")
    )
    assert by_endpoint == m["valid_by_endpoint"]
    sums = db.execute(
        "SELECT SUM(status_1xx), SUM(status_2xx), SUM(status_3xx), SUM(status_4xx),"
        " SUM(status_5xx) FROM endpoint_metrics"
    ).fetchone()
    by_class = {f"{i + 1}xx": n for i, n in enumerate(sums) if n}
    assert by_class == m["valid_by_status_class"]
    by_method = dict(
        db.execute(
            "SELECT method || ' ' || endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1"
        )
    )
    assert by_method == m["valid_by_endpoint_method"]


def test_events_lake_holds_exactly_the_valid_events(run):
    cfg, m, _ = run
    events = read_table(Paths.of(cfg).events, ["request_id", "endpoint", "date", "hour"])
    assert events.num_rows == m["valid_events"]
    assert len(set(events["request_id"].to_pylist())) == m["valid_events"]
    assert set(events.column_names) >= {"date", "hour"}


def test_percentiles_within_one_percent_of_exact(run):
    cfg, _, db = run
    ev = read_table(Paths.of(cfg).events, ["event_time", "endpoint", "method", "latency_ms"])
    df = ev.to_pandas()
    df["window_start"] = df["event_time"].dt.floor("60s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    exact = {
        key: np.percentile(g["latency_ms"].to_numpy(), [50, 95, 99], method="inverted_cdf")
        for key, g in df.groupby(["window_start", "endpoint", "method"])
    }
    rows = db.execute(
        "SELECT window_start, endpoint, method, latency_p50_ms, latency_p95_ms, "
        "latency_p99_ms, requests FROM endpoint_metrics"
    ).fetchall()
    assert len(rows) == len(exact)
    worst = 0.0
    for ws, ep, method, p50, p95, p99, n in rows:
        want = exact[(ws, ep, method)]
        assert n == len(df[(df.window_start == ws) & (df.endpoint == ep) & (df.method == method)])
        got = np.array([p50, p95, p99])
        worst = max(worst, float(np.max(np.abs(got - want) / want)))
    assert worst <= 0.01, worst


def test_all_windows_final_and_final_parquet_matches_sqlite(run):
    cfg, _, db = run
    assert scalar(db, "SELECT COUNT(*) FROM endpoint_metrics WHERE is_final = 0") == 0
    sql = pd.read_sql("SELECT * FROM endpoint_metrics", db)
    lake = read_table(Paths.of(cfg).endpoint_metrics).to_pandas()
    assert len(lake) == len(sql)
    key = ["window_start", "endpoint", "method"]
    merged = sql.merge(lake, on=key, suffixes=("", "_pq"))
    assert len(merged) == len(sql)
    for col in ("requests", "status_5xx", "latency_p95_ms", "bytes_sent"):
        assert (merged[col] == merged[f"{col}_pq"]).all(), col
    # Most windows were finalised by the watermark while streaming, the rest by the flush.
    assert set(lake["finalized_in"].str[:5]) <= {"batch", "flush"}


def test_throughput_adds_up(run):
    _, m, db = run
    assert (
        scalar(db, "SELECT SUM(requests) FROM throughput WHERE granularity = 'window'")
        == m["valid_events"]
    )
    assert (
        scalar(db, "SELECT SUM(requests) FROM throughput WHERE granularity = 'hour'")
        == m["valid_events"]
    )
    rate = db.execute(
        "SELECT requests, events_per_second FROM throughput WHERE granularity = 'window' LIMIT 1"
    ).fetchone()
    assert rate[1] == pytest.approx(rate[0] / 60)


def test_one_query_reads_every_line_once_and_commits_each_batch(run):
    _, m, db = run
    queries = dict(db.execute("SELECT query, SUM(input_rows) FROM stream_progress GROUP BY 1"))
    assert queries == {PIPELINE_QUERY: m["total_events"]}
    batches = scalar(db, "SELECT COUNT(*) FROM stream_progress")
    assert scalar(db, "SELECT COUNT(*) FROM data_quality") == batches
    assert scalar(db, "SELECT COUNT(*) FROM sink_commits") == batches


def snapshot(cfg) -> dict[str, object]:
    db = sqlite3.connect(cfg.sqlite_path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    state: dict[str, object] = {
        t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables
    }
    db.close()
    lake = Path(cfg.path("lake"))
    state["lake"] = {
        str(p.relative_to(lake)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(lake.rglob("*"))
        if p.is_file()
    }
    return state


def test_rerun_on_finished_checkpoint_changes_nothing(run, spark):
    cfg, _, _ = run
    before = snapshot(cfg)
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    assert snapshot(cfg) == before


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
