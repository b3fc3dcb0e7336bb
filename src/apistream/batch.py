"""Batch analytics over the Parquet lake: rollups, SLO report, reconciliation.

Pure DataFrame functions first; `run_batch` does the I/O (lake in, SQLite + Parquet out).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream import sqlite_store
from apistream.catalog import Paths
from apistream.config import Config, spark_interval
from apistream.pipeline.aggregate import (
    PERCENTILES,
    error_rates,
    percentile_columns,
    request_aggregates,
    window_counts,
)

ROLLUPS = {"hour": "rollup_hourly", "day": "rollup_daily"}
ROLLUP_CLASSES = (2, 3, 4, 5)
RECONCILED = ("requests", "status_2xx", "status_4xx", "status_5xx")


def read_events(spark: SparkSession, path: str, start: date | None, end: date | None) -> DataFrame:
    """The events lake, pruned to the date partitions in [start, end]."""
    events = spark.read.parquet(path)
    if start is not None:
        events = events.filter(F.col("date") >= start.isoformat())
    if end is not None:
        events = events.filter(F.col("date") <= end.isoformat())
    return events


def rollup(events: DataFrame, granularity: str) -> DataFrame:
    """Per period (hour or day) x endpoint x method: counts, error rates, latency with exact
    percentiles, bytes and throughput."""
    seconds = {"hour": 3600, "day": 86400}[granularity]
    return (
        events.groupBy(
            F.date_trunc(granularity, "event_time").alias("period_start"), "endpoint", "method"
        )
        .agg(
            *request_aggregates(ROLLUP_CLASSES),
            F.percentile("latency_ms", F.array(*[F.lit(p) for p in PERCENTILES])).alias("pct"),
        )
        .select(
            F.date_format("period_start", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("period_start"),
            "endpoint",
            "method",
            "requests",
            "status_2xx",
            "status_3xx",
            "status_4xx",
            "status_5xx",
            *error_rates(),
            "latency_min_ms",
            "latency_avg_ms",
            "latency_max_ms",
            *percentile_columns(),
            "bytes_sent",
            (F.col("requests") / seconds).alias("events_per_second"),
        )
    )


def latency_outliers(events: DataFrame, window: str) -> DataFrame:
    """Per window x endpoint: requests slower than the endpoint's mean + 2 sigma over the
    period (the "statistical outliers in response times")."""
    stats = events.groupBy("endpoint").agg(
        (F.avg("latency_ms") + 2 * F.stddev_samp("latency_ms")).alias("threshold_ms")
    )
    return (
        events.join(F.broadcast(stats), "endpoint")
        .groupBy(F.window("event_time", window).alias("w"), "endpoint")
        .agg(
            F.count(F.lit(1)).alias("requests"),
            F.sum((F.col("latency_ms") > F.col("threshold_ms")).cast("long")).alias("outliers"),
            F.first("threshold_ms").alias("threshold_ms"),
        )
        .select(
            F.date_format("w.start", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("window_start"),
            "endpoint",
            "requests",
            "outliers",
            "threshold_ms",
        )
    )


def slo_report(events: DataFrame, cfg: Config) -> DataFrame:
    """Per endpoint: share of timed requests under its latency SLO, and availability (share
    of non-5xx); `breach` names what misses the targets in config `slo`."""
    slo = F.coalesce(F.col("latency_slo_ms"), F.lit(cfg.slo.default_latency_slo_ms))
    timed = F.col("latency_ms").isNotNull()
    report = events.groupBy("endpoint").agg(
        F.count(F.lit(1)).alias("requests"),
        F.first(slo).alias("latency_slo_ms"),
        (
            F.sum((timed & (F.col("latency_ms") <= slo)).cast("long")) / F.sum(timed.cast("long"))
        ).alias("latency_compliance"),
        (1 - F.avg((F.col("status") >= 500).cast("double"))).alias("availability"),
    )
    late = F.col("latency_compliance") < cfg.slo.latency_target
    down = F.col("availability") < cfg.slo.availability_target
    return report.withColumn(
        "breach",
        F.when(late & down, "latency,availability")
        .when(late, "latency")
        .when(down, "availability"),
    )


def quality_summary(sqlite_path: str, start: date | None, end: date | None) -> pd.DataFrame:
    """The data-quality account of the micro-batches processed in [start, end] (by the day
    they were recorded): input, valid, quarantined by reason, duplicates, late."""
    with sqlite_store.read_only(sqlite_path) as db:
        rows = pd.read_sql("SELECT * FROM data_quality", db)
    day = rows["recorded_at"].str[:10]
    if start is not None:
        rows = rows[day >= start.isoformat()]
    if end is not None:
        rows = rows[day <= end.isoformat()]
    totals = {
        k: int(rows[k].sum()) for k in ("input", "valid", "quarantined", "duplicates", "late")
    }
    reasons = pd.json_normalize(rows["quarantined_by_reason"].map(json.loads).tolist())
    for reason, n in reasons.sum().items() if len(reasons) else []:
        totals[f"quarantined_{reason}"] = int(n)
    return pd.DataFrame(
        [
            {
                "from": start.isoformat() if start else None,
                "to": end.isoformat() if end else None,
                "batches": len(rows),
                **totals,
            }
        ]
    )


@dataclass
class BatchResult:
    rollups: dict[str, pd.DataFrame]
    slo: pd.DataFrame
    outliers: pd.DataFrame
    quality: pd.DataFrame
    mismatches: pd.DataFrame
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def reconciled(self) -> bool:
        return self.mismatches.empty


def reconcile(
    events: DataFrame, cfg: Config, sqlite_path: str, start: date | None, end: date | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Recount window metrics from the events lake and compare with the stream's SQLite
    rows; every (window, endpoint, method) whose counts differ is a mismatch."""
    recount = (
        window_counts(events, spark_interval(cfg.processing.window))
        .select("window_start", "endpoint", "method", *RECONCILED)
        .toPandas()
    )  # one row per window x endpoint x method: small
    with sqlite_store.read_only(sqlite_path) as db:
        stream = pd.read_sql(
            f"SELECT window_start, endpoint, method, {', '.join(RECONCILED)} FROM endpoint_metrics",
            db,
        )
        valid = db.execute("SELECT COALESCE(SUM(valid), 0) FROM data_quality").fetchone()[0]
    if start is not None:
        stream = stream[stream.window_start >= start.isoformat()]
    if end is not None:
        stream = stream[
            stream.window_start
            < (pd.Timestamp(end) + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        ]
    key = ["window_start", "endpoint", "method"]
    both = recount.merge(stream, on=key, how="outer", suffixes=("_lake", "_stream"), indicator=True)
    for col in RECONCILED:
        both[[f"{col}_lake", f"{col}_stream"]] = both[[f"{col}_lake", f"{col}_stream"]].fillna(0)
    differs = both["_merge"] != "both"
    for col in RECONCILED:
        differs |= both[f"{col}_lake"] != both[f"{col}_stream"]
    columns = key + [f"{c}_{s}" for c in RECONCILED for s in ("lake", "stream")]
    mismatches = both.loc[differs, columns].sort_values(key).reset_index(drop=True)
    totals = {
        "lake_events": int(recount["requests"].sum()),
        "stream_requests": int(stream["requests"].sum()),
        "data_quality_valid": int(valid),
    }
    return mismatches, totals


def run_batch(
    spark: SparkSession, cfg: Config, start: date | None = None, end: date | None = None
) -> BatchResult:
    """Rollups, SLO report and reconciliation over the lake; results to SQLite and Parquet."""
    paths = Paths.of(cfg)
    spark.conf.set("spark.sql.files.ignoreMissingFiles", "true")  # report, don't crash
    # Five aggregations read the same rows: scan and decode the lake once.
    events = read_events(spark, paths.events, start, end).cache()
    rollups = {g: rollup(events, g).toPandas() for g in ROLLUPS}
    slo = slo_report(events, cfg).orderBy("endpoint").toPandas()
    outliers = latency_outliers(events, spark_interval(cfg.processing.window)).toPandas()
    mismatches, totals = reconcile(events, cfg, paths.sqlite, start, end)
    events.unpersist()
    quality = quality_summary(paths.sqlite, start, end)
    with closing(sqlite3.connect(paths.sqlite)) as db:
        for g, table in ROLLUPS.items():
            rollups[g].to_sql(table, db, if_exists="replace", index=False)
        slo.to_sql("slo_report", db, if_exists="replace", index=False)
        outliers.to_sql("latency_outliers", db, if_exists="replace", index=False)
        quality.to_sql("data_quality_summary", db, if_exists="replace", index=False)
        mismatches.to_sql("reconciliation_mismatches", db, if_exists="replace", index=False)
        db.commit()
    out = Path(cfg.path("lake", "batch"))
    out.mkdir(parents=True, exist_ok=True)
    tables = [
        *((ROLLUPS[g], rollups[g]) for g in ROLLUPS),
        ("slo_report", slo),
        ("latency_outliers", outliers),
    ]
    for name, frame in tables:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"{name}.parquet")
    return BatchResult(rollups, slo, outliers, quality, mismatches, totals)
