"""The end-to-end assertions against a generator manifest, shared by the file-source, Kafka and
cluster runs: a test module subclasses these (as `Test...`) and defines a module fixture `run`
giving (config, manifest, open SQLite connection) of a finished run."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apistream.catalog import PIPELINE_QUERY
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream
from apistream.reasons import DEFECT_KINDS


def scalar(db: sqlite3.Connection, sql: str) -> object:
    """The single value `sql` selects."""
    return db.execute(sql).fetchone()[0]


def snapshot(cfg) -> dict[str, object]:
    """Every SQLite table's rows and a digest of every lake file."""
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


class ManifestCounts:
    """Counts of a finished run equal its manifest (every run, the cluster's included)."""

    def test_accounting_invariant_equals_injected_counts(self, run):
        _, m, db = run
        row = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        )
        total, valid, quarantined, dups, late = row.fetchone()
        assert total == m["total_events"] == 60_000
        assert valid == m["valid_events"]
        assert quarantined == sum(m["defects"].values())
        assert dups == m["duplicates"] > 0
        assert late == m["late_beyond_watermark"] > 0
        assert total == valid + quarantined + dups + late

    def test_quarantine_reasons_equal_injected_defects(self, run):
        cfg, m, db = run
        reasons = dict(db.execute("SELECT reason, records FROM quarantine_reasons"))
        assert reasons == {k: m["defects"][k] for k in DEFECT_KINDS}
        lake = read_table(Paths.of(cfg).quarantine, ["reason", "raw"]).to_pandas()
        assert lake["reason"].value_counts().to_dict() == reasons
        assert lake["raw"].notna().all()

    def test_requests_per_endpoint_status_class_and_method_equal_manifest(self, run):
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

    def test_events_lake_holds_exactly_the_valid_events(self, run):
        cfg, m, _ = run
        events = read_table(
            Paths.of(cfg).events, ["request_id", "event_time", "date", "hour"]
        ).to_pandas()
        assert len(events) == m["valid_events"]
        assert events["request_id"].nunique() == m["valid_events"]
        # Each event lies in the date=/hour= partition of its own event time (UTC).
        utc = pd.to_datetime(events["event_time"], utc=True)
        assert (events["date"].astype(str) == utc.dt.strftime("%Y-%m-%d")).all()
        assert (events["hour"].astype(int) == utc.dt.hour).all()

    def test_percentiles_within_one_percent_of_exact(self, run):
        cfg, _, db = run
        ev = read_table(Paths.of(cfg).events, ["event_time", "endpoint", "method", "latency_ms"])
        df = ev.to_pandas()
        df["window_start"] = df["event_time"].dt.floor("60s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        exact = {
            key: np.percentile(g["latency_ms"].to_numpy(), [50, 95, 99], method="inverted_cdf")
            for key, g in df.groupby(["window_start", "endpoint", "method"])
        }
        sizes = df.groupby(["window_start", "endpoint", "method"]).size().to_dict()
        rows = db.execute(
            "SELECT window_start, endpoint, method, latency_p50_ms, latency_p95_ms, "
            "latency_p99_ms, requests FROM endpoint_metrics"
        ).fetchall()
        assert len(rows) == len(exact)
        worst = 0.0
        for ws, ep, method, p50, p95, p99, n in rows:
            want = exact[(ws, ep, method)]
            assert n == sizes[(ws, ep, method)]
            got = np.array([p50, p95, p99])
            worst = max(worst, float(np.max(np.abs(got - want) / want)))
        assert worst <= 0.01, worst


class StreamRunChecks(ManifestCounts):
    """The manifest counts plus what a run in this process (the `spark` fixture) shows: final
    windows equal in SQLite and Parquet, throughput, one query, an idempotent re-run."""

    def test_all_windows_final_and_final_parquet_matches_sqlite(self, run):
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

    def test_throughput_adds_up(self, run):
        _, m, db = run
        for granularity in ("window", "hour"):
            assert (
                scalar(
                    db,
                    f"SELECT SUM(requests) FROM throughput WHERE granularity = '{granularity}'",
                )
                == m["valid_events"]
            ), granularity
        rate = db.execute(
            "SELECT requests, events_per_second FROM throughput WHERE granularity = 'window' "
            "LIMIT 1"
        ).fetchone()
        assert rate[1] == pytest.approx(rate[0] / 60)

    def test_one_query_reads_every_line_once_and_commits_each_batch(self, run):
        _, m, db = run
        queries = dict(db.execute("SELECT query, SUM(input_rows) FROM stream_progress GROUP BY 1"))
        assert queries == {PIPELINE_QUERY: m["total_events"]}
        batches = scalar(db, "SELECT COUNT(*) FROM stream_progress")
        assert scalar(db, "SELECT COUNT(*) FROM data_quality") == batches
        assert scalar(db, "SELECT COUNT(*) FROM sink_commits") == batches

    def test_rerun_on_finished_checkpoint_changes_nothing(self, run, spark):
        cfg, _, _ = run
        before = snapshot(cfg)
        run_stream(spark, cfg, until_idle=True, stop=threading.Event())
        assert snapshot(cfg) == before
