"""Batch analytics over the Parquet lake: rollups, SLO report, reconciliation.

Pure DataFrame functions first; `run_batch` does the I/O (lake in, SQLite + Parquet out).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream import sqlite_store
from apistream.accounting import account_of, reasons_of
from apistream.catalog import Paths
from apistream.config import Config, spark_interval
from apistream.errors import ReconciliationError
from apistream.period import DAY, HOUR, Period
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


ROLLUP_LENGTH = {"hour": HOUR, "day": DAY}
BATCH_OF_FILE = r"^batch-(\d+)-"  # lake files are named batch-<id>-<n>.parquet


def read_events(spark: SparkSession, path: str, last_batch: int | None = None) -> DataFrame:
    """The events lake; only the files of batches up to `last_batch` if given (those a
    SQLite snapshot has committed: a live stream may be writing the next)."""
    events = spark.read.parquet(path)
    if last_batch is None:
        return events
    batch = F.regexp_extract("_metadata.file_name", BATCH_OF_FILE, 1).try_cast("long")
    return events.filter(batch <= last_batch)  # a file not named so (null) is not read


def in_period(events: DataFrame, period: Period) -> DataFrame:
    """Events whose event time is in `period`, pruned to its `date` partitions."""
    if period.start is not None:
        events = events.filter(F.col("date") >= period.first_day)
        events = events.filter(F.col("event_time") >= F.lit(period.start))
    if period.end is not None:
        events = events.filter(F.col("date") <= period.last_day)
        events = events.filter(F.col("event_time") < F.lit(period.end))
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


def quality_summary(sqlite_path: str, period: Period) -> pd.DataFrame:
    """The data-quality account of the micro-batches recorded in `period`: input, valid,
    quarantined by reason, duplicates, late."""
    with sqlite_store.read_only(sqlite_path) as db:
        rows = pd.read_sql("SELECT * FROM data_quality", db)
    rows = within(rows, "recorded_at", period)
    totals: dict[str, int] = account_of(rows)
    for reason, n in sorted(reasons_of(rows).items()):
        totals[f"quarantined_{reason}"] = n
    return pd.DataFrame(
        [{"from": period.start_iso, "to": period.end_iso, "batches": len(rows), **totals}]
    )


@dataclass(frozen=True)
class StreamSnapshot:
    """What the stream had committed when a batch run began: the window rows in the period,
    the last committed batch and the valid events of all batches."""

    windows: pd.DataFrame
    last_batch: int
    valid: int


def stream_snapshot(sqlite_path: str, period: Period) -> StreamSnapshot:
    """One read transaction over the stream's tables (WAL: a consistent snapshot while the
    stream commits)."""
    with sqlite_store.read_only(sqlite_path) as db:
        windows = pd.read_sql(
            f"SELECT window_start, endpoint, method, {', '.join(RECONCILED)} FROM endpoint_metrics",
            db,
        )
        last = db.execute("SELECT COALESCE(MAX(batch_id), -1) FROM sink_commits").fetchone()[0]
        valid = db.execute("SELECT COALESCE(SUM(valid), 0) FROM data_quality").fetchone()[0]
    windows = within(windows, "window_start", period)
    return StreamSnapshot(windows, int(last), int(valid))


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

    def require_reconciled(self, period: Period) -> None:
        """Raise ReconciliationError (exit 3) when a window of `period` differs."""
        if not self.reconciled:
            raise ReconciliationError(
                f"reconciliation failed: {len(self.mismatches)} window(s) in {period} differ "
                "between the events lake and the stream's metrics (listed above)"
            )


def reconcile(
    events: DataFrame, window_s: float, stream: StreamSnapshot, period: Period
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Recount the windows that start in `period` from the events lake (`events` must reach
    one window past the period's end) and compare with the stream's rows; every (window,
    endpoint, method) whose counts differ is a mismatch."""
    recount = (
        window_counts(events, spark_interval(window_s))
        .select("window_start", "endpoint", "method", *RECONCILED)
        .toPandas()
    )  # one row per window x endpoint x method: small
    recount = within(recount, "window_start", period)
    key = ["window_start", "endpoint", "method"]
    both = recount.merge(
        stream.windows, on=key, how="outer", suffixes=("_lake", "_stream"), indicator=True
    )
    for col in RECONCILED:
        both[[f"{col}_lake", f"{col}_stream"]] = both[[f"{col}_lake", f"{col}_stream"]].fillna(0)
    differs = both["_merge"] != "both"
    for col in RECONCILED:
        differs |= both[f"{col}_lake"] != both[f"{col}_stream"]
    columns = key + [f"{c}_{s}" for c in RECONCILED for s in ("lake", "stream")]
    mismatches = both.loc[differs, columns].sort_values(key).reset_index(drop=True)
    totals = {
        "lake_events": int(recount["requests"].sum()),
        "stream_requests": int(stream.windows["requests"].sum()),
        "data_quality_valid": stream.valid,
    }
    return mismatches, totals


def run_batch(spark: SparkSession, cfg: Config, period: Period | None = None) -> BatchResult:
    """Rollups, SLO report and reconciliation over the lake in `period` (all of it if None);
    results to SQLite and Parquet."""
    period = period or Period()
    paths = Paths.of(cfg)
    spark.conf.set("spark.sql.files.ignoreMissingFiles", "true")  # report, don't crash
    stream = stream_snapshot(paths.sqlite, period)
    lake = read_events(spark, paths.events, stream.last_batch)
    # Five aggregations read the same rows: scan and decode the lake once.
    events = in_period(lake, period).cache()
    rollups = {g: rollup(events, g).toPandas() for g in ROLLUPS}
    # A rollup period is written only if the range covers it whole (no day from an hour).
    covered = {g: period.whole(ROLLUP_LENGTH[g]) for g in ROLLUPS}
    for g, frame in rollups.items():
        whole = covered[g]
        rollups[g] = frame.iloc[:0] if whole is None else within(frame, "period_start", whole)
    slo = slo_report(events, cfg).orderBy("endpoint").toPandas()
    window_s = cfg.processing.window
    # A window that starts before the period (one that does not divide an hour) is left out.
    outliers = within(
        latency_outliers(events, spark_interval(window_s)).toPandas(), "window_start", period
    )
    events.unpersist()
    reach = Period(
        period.start, None if period.end is None else period.end + timedelta(seconds=window_s)
    )
    mismatches, totals = reconcile(in_period(lake, reach), window_s, stream, period)
    quality = quality_summary(paths.sqlite, period)
    with closing(sqlite3.connect(paths.sqlite)) as db, db:
        for g, table in ROLLUPS.items():
            if covered[g] is not None:
                replace_periods(db, table, "period_start", rollups[g], covered[g])
        replace_periods(db, "latency_outliers", "window_start", outliers, period)
        slo.to_sql("slo_report", db, if_exists="replace", index=False)
        quality.to_sql("data_quality_summary", db, if_exists="replace", index=False)
        mismatches.to_sql("reconciliation_mismatches", db, if_exists="replace", index=False)
    out = Path(cfg.path("lake", "batch"))
    out.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(paths.sqlite)) as db:
        for name in (*ROLLUPS.values(), "latency_outliers", "slo_report"):
            if _has_table(db, name):  # the whole table: what every run so far has written
                frame = pd.read_sql(f"SELECT * FROM {name}", db)
                # Written aside and renamed: a reader (or a concurrent run) never sees half a file.
                part = out / f".{name}.{os.getpid()}.parquet.tmp"
                pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), part)
                os.replace(part, out / f"{name}.parquet")
    return BatchResult(rollups, slo, outliers, quality, mismatches, totals)


def within(frame: pd.DataFrame, column: str, period: Period) -> pd.DataFrame:
    """The rows whose `column` (ISO time) is in `period`; an empty frame keeps its columns."""
    keep = frame[column].map(period.holds).astype(bool)
    return frame[keep].reset_index(drop=True)


def replace_periods(
    db: sqlite3.Connection, table: str, key: str, rows: pd.DataFrame, period: Period
) -> None:
    """The rows of `table` whose `key` time is in `period` become `rows` (created if new)."""
    if _has_table(db, table):
        db.execute(
            f"DELETE FROM {table} WHERE {key} >= COALESCE(?, '') AND {key} < COALESCE(?, '~')",
            (period.start_iso, period.end_iso),
        )
    rows.to_sql(table, db, if_exists="append", index=False)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None
