"""Batch analytics over the lake: rollups and top-N against an independent pandas
computation, partition pruning, SLO report, and reconciliation that fails loudly."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from stream_helpers import stream_from

from apistream.batch import in_period, read_events, run_batch
from apistream.lake import committed_files, read_table
from apistream.period import Period
from apistream.pipeline.topology import Paths
from apistream.top import top_n

# 23:50 on 14 March 2026 to 00:10 on the 15th, UTC: two date partitions and two hours. Fixed
# instants, so the stale-timestamp check (age against the ingest clock) is off for this run.
MIDNIGHT = datetime(2026, 3, 15, tzinfo=UTC)
START = MIDNIGHT - timedelta(minutes=10)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    # The batching these tests were built for (late events need 2 batches of files).
    settings = {"source.max_files_per_trigger": 4, "generator.events": 60_000,
                "generator.rate": 50, "generator.seed": 5}  # fmt: skip
    cfg = stream_from(spark, root, START, **settings)
    events = read_table(Paths.of(cfg).events).to_pandas()
    return cfg, events, run_batch(spark, cfg)


def test_daily_rollup_equals_independent_computation(lake):
    cfg, events, result = lake
    events["day"] = events["event_time"].dt.strftime("%Y-%m-%dT00:00:00Z")
    got = result.rollups["day"].set_index(["period_start", "endpoint", "method"])
    assert len(got) == events.groupby(["day", "endpoint", "method"]).ngroups
    for (day, ep, method), g in events.groupby(["day", "endpoint", "method"]):
        row = got.loc[(day, ep, method)]
        lat = g["latency_ms"].to_numpy()
        assert row["requests"] == len(g)
        assert row["status_5xx"] == int((g["status"] >= 500).sum())
        assert row["latency_max_ms"] == lat.max()
        assert row["latency_p95_ms"] == pytest.approx(np.percentile(lat, 95), rel=1e-9)
        assert row["latency_p99_ms"] == pytest.approx(np.percentile(lat, 99), rel=1e-9)
    with sqlite3.connect(cfg.sqlite_path) as db:
        assert db.execute("SELECT SUM(requests) FROM rollup_hourly").fetchone()[0] == len(events)


def test_top_n_order_per_day_equals_independent_ranking(lake):
    cfg, events, _ = lake
    day = events["event_time"].dt.strftime("%Y-%m-%d").iloc[0]
    g = events[events["event_time"].dt.strftime("%Y-%m-%d") == day]
    stats = (
        g.groupby(["endpoint", "method"])
        .agg(
            requests=("latency_ms", "size"),
            p95=("latency_ms", lambda s: np.percentile(s, 95)),
            rate_5xx=("status", lambda s: float((s >= 500).mean())),
        )
        .reset_index()
    )
    stats = stats[stats.requests >= 20]
    with sqlite3.connect(cfg.sqlite_path) as db:
        _, by_p95 = top_n(db, "p95", "day", day, n=5, min_requests=20)
        _, by_5xx = top_n(db, "error_5xx", "day", day, n=3, min_requests=20)
    want = stats.sort_values(["p95", "requests"], ascending=False).head(5)
    assert [(r["endpoint"], r["method"]) for r in by_p95] == list(
        zip(want.endpoint, want.method, strict=True)
    )
    assert [r["value"] for r in by_p95] == pytest.approx(list(want.p95))
    want5 = stats.sort_values(["rate_5xx", "requests"], ascending=False).head(3)
    assert [r["value"] for r in by_5xx] == pytest.approx(list(want5.rate_5xx))


def test_top_n_per_window_skips_small_endpoints(lake):
    cfg, _, _ = lake
    with sqlite3.connect(cfg.sqlite_path) as db:
        window, rows = top_n(db, "p95", "window", None, n=50, min_requests=40)
        small = db.execute(
            "SELECT COUNT(*) FROM endpoint_metrics WHERE window_start = ? AND requests < 40",
            (window,),
        ).fetchone()[0]
        total = db.execute(
            "SELECT COUNT(*) FROM endpoint_metrics WHERE window_start = ?", (window,)
        ).fetchone()[0]
    assert small > 0 and len(rows) == total - small
    assert all(r["requests"] >= 40 for r in rows)
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True)


def test_from_to_reads_only_partitions_in_range(lake, spark):
    cfg, events, _ = lake
    days = sorted(events["event_time"].dt.strftime("%Y-%m-%d").unique())
    assert len(days) == 2
    df = in_period(read_events(spark, Paths.of(cfg).events), Period.parse(days[1], days[1]))
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [isnotnull(date" in plan and days[1] in plan
    assert df.count() == int((events["event_time"].dt.strftime("%Y-%m-%d") == days[1]).sum())
    # Run the plan and read its scan's metrics: only the chosen day's partitions were read.
    executed = df._jdf.queryExecution().executedPlan()
    executed.executeCollect()
    scan = executed.collectLeaves().head()
    read = {k: scan.metrics().apply(k).value() for k in ("numPartitions", "numFiles")}
    hours = events[events["event_time"].dt.strftime("%Y-%m-%d") == days[1]]["hour"].nunique()
    assert read["numPartitions"] == hours
    assert read["numFiles"] < len(committed_files(Paths.of(cfg).events))


def test_slo_report_equals_independent_computation(lake):
    cfg, events, result = lake
    slo_ms = {e.template: e.latency_slo_ms for e in cfg.endpoints}
    want = {}
    for endpoint, g in events.groupby("endpoint"):
        limit = slo_ms.get(endpoint) or cfg.slo.default_latency_slo_ms
        timed = g["latency_ms"].dropna()
        compliance = float((timed <= limit).mean())
        availability = float((g["status"] < 500).mean())
        missed = [
            name
            for name, miss in (
                ("latency", compliance < cfg.slo.latency_target),
                ("availability", availability < cfg.slo.availability_target),
            )
            if miss
        ]
        want[endpoint] = (compliance, availability, ",".join(missed) or None)
    got = {
        r.endpoint: (r.latency_compliance, r.availability, None if pd.isna(r.breach) else r.breach)
        for r in result.slo.itertuples()
    }
    assert got.keys() == want.keys()
    for endpoint, (compliance, availability, breach) in want.items():
        assert got[endpoint][:2] == pytest.approx((compliance, availability)), endpoint
        assert got[endpoint][2] == breach, endpoint
    # The run has endpoints on both sides of the targets, so both outcomes are checked.
    breached = {ep for ep, w in want.items() if w[2]}
    assert breached and breached != set(want)


def test_latency_outliers_per_window(lake):
    _, events, result = lake
    stats = events.groupby("endpoint")["latency_ms"].agg(["mean", "std"])
    threshold = events["endpoint"].map(stats["mean"] + 2 * stats["std"])
    events = events.assign(
        out=events["latency_ms"] > threshold,
        w=events["event_time"].dt.floor("60s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    want = events.groupby(["w", "endpoint"])["out"].sum()
    got = result.outliers.set_index(["window_start", "endpoint"])["outliers"]
    assert len(got) == len(want)
    assert all(got.loc[k] == v for k, v in want.items())
    assert want.sum() > 0


def test_quality_summary_over_the_period(lake):
    cfg, events, result = lake
    manifest = json.loads((Path(cfg.source.path) / "manifest.json").read_text())
    q = result.quality.iloc[0]
    assert q["input"] == manifest["total_events"]
    assert q["valid"] == manifest["valid_events"] == len(events)
    assert q["duplicates"] == manifest["duplicates"]
    assert q["late"] == manifest["late_beyond_watermark"]
    assert manifest["defects"]["stale_timestamp"] == 0  # the check is off for this run
    for kind, n in manifest["defects"].items():
        assert q.get(f"quarantined_{kind}", 0) == n, kind


def test_an_hour_replaces_its_own_rollups_and_reads_only_committed_batches(lake, spark):
    """`--from/--to` an hour (the hourly Airflow DAG): its hourly rows are rewritten, the
    other hours and the days stay, and a lake file of a batch SQLite has not committed (a
    live stream's next batch) is not read."""
    cfg, events, _ = lake
    hour = START.strftime("%Y-%m-%dT%H")  # 23:00, the first of the two days
    in_hour = events[events["event_time"].dt.strftime("%Y-%m-%dT%H") == hour]
    # A copy of a file of that hour as batch 10^9's: uncommitted, so not read.
    source = next(f for f in sorted(committed_files(Paths.of(cfg).events)) if "hour=23" in f)
    stray = Path(source).with_name("batch-1000000000-0.parquet")
    stray.write_bytes(Path(source).read_bytes())
    with sqlite3.connect(cfg.sqlite_path) as db:
        before = db.execute("SELECT * FROM rollup_daily ORDER BY 1, 2, 3").fetchall()
        other = (START + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")  # 00:00
        others = db.execute(
            "SELECT COUNT(*) FROM rollup_hourly WHERE period_start = ?", (other,)
        ).fetchone()[0]
        db.execute("UPDATE rollup_hourly SET requests = -1")  # every hour's rows, spoilt
    try:
        result = run_batch(spark, cfg, Period.parse(hour, hour))
    finally:
        stray.unlink()
    assert result.reconciled, result.mismatches
    assert result.totals["lake_events"] == result.totals["stream_requests"] == len(in_hour)
    assert result.rollups["day"].empty
    with sqlite3.connect(cfg.sqlite_path) as db:
        hourly = dict(
            db.execute("SELECT period_start, SUM(requests) FROM rollup_hourly GROUP BY 1")
        )
        assert db.execute("SELECT * FROM rollup_daily ORDER BY 1, 2, 3").fetchall() == before
    # The hour's rows recomputed; the other hour's (spoilt) rows untouched.
    assert hourly == {f"{hour}:00:00Z": len(in_hour), other: -others}


def test_an_hour_without_events_reconciles_and_writes_no_rows(lake, spark):
    cfg, _, _ = lake
    quiet = (START - timedelta(hours=5)).strftime("%Y-%m-%dT%H")
    with sqlite3.connect(cfg.sqlite_path) as db:
        before = db.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()[0]
    result = run_batch(spark, cfg, Period.parse(quiet, quiet))
    assert result.reconciled
    assert result.totals["lake_events"] == result.totals["stream_requests"] == 0
    assert result.rollups["hour"].empty and result.outliers.empty
    with sqlite3.connect(cfg.sqlite_path) as db:
        assert db.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()[0] == before


def test_reconciliation_passes_then_fails_naming_the_window(lake, spark):
    cfg, events, result = lake
    assert result.reconciled, result.mismatches
    assert result.totals["lake_events"] == result.totals["stream_requests"] == len(events)
    victim = sorted(committed_files(Paths.of(cfg).events))[3]
    lost = pd.read_parquet(victim, columns=["event_time", "endpoint", "method"])
    lost_windows = set(lost["event_time"].dt.floor("60s").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    import os

    os.remove(victim)
    broken = run_batch(spark, cfg)
    assert not broken.reconciled
    assert set(broken.mismatches["window_start"]) == lost_windows
    missing = (broken.mismatches["requests_stream"] - broken.mismatches["requests_lake"]).sum()
    assert missing == len(lost)
