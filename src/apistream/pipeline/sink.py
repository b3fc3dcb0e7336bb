"""The foreachBatch sink of the pipeline query: one pass over each micro-batch.

The lines of a batch are parsed and validated once, with the batch's own values as columns
(batch_values), and the checked records persisted once;
from them the sink writes the quarantine, drops late records and duplicates against the
dedup state, writes the new events to the lake, aggregates their window partials, and
commits the window metrics, finalisation, anomalies and the batch's data-quality account to
SQLite in one transaction (sink_commit.apply_batch). The lake files of a batch are named by
its id and replaced on a replay; SQLite skips a committed batch id. A batch of the file
source is a batch of the sink even when a query batch reads two after a crash
(checkpoint_log.source_batches). So a crash at any point followed by a restart leaves the same
lake and the same SQLite rows as a clean run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from datetime import datetime

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream import sqlite_store as store
from apistream.catalog import Paths
from apistream.config import Config, hash_key
from apistream.errors import ApiStreamError
from apistream.ingest.file_checks import unreadable_files
from apistream.lake import RowsFile
from apistream.pipeline.aggregate import ACCEPTED, window_partials
from apistream.pipeline.batch_values import (
    DEDUP_BOUND,
    LATE_CUTOFF,
    after_cutoff,
    row_id_in,
    with_batch_values,
)
from apistream.pipeline.checkpoint_log import (
    as_file_path,
    batch_files,
    batch_timestamp,
    source_batches,
)
from apistream.pipeline.dedup import (
    KEY_HASHES,
    ROW_ID,
    Chunk,
    DedupState,
    repeated_rows,
    with_key_hashes,
)
from apistream.pipeline.enrich import (
    endpoint_dimension,
    hash_key_frame,
    status_class,
    to_events,
    to_quarantine,
    with_endpoint,
)
from apistream.pipeline.lake_writer import StagedWriter, hadoop_put
from apistream.pipeline.progress import LiveStatus
from apistream.pipeline.records import checked_records, slim, with_unreadable_files
from apistream.pipeline.schema import REASONS
from apistream.pipeline.validate import is_valid
from apistream.sink_commit import BatchOutput, LakeWriters, Scorer, apply_batch
from apistream.window_metrics import late_cutoff


def forecast_scorer(spark: SparkSession, cfg: Config) -> Scorer:
    """The forecast detector's scorer, its model loaded once (fails here if there is none)."""
    from apistream import forecast

    model = forecast.Forecast.load(spark, cfg.forecast_model_path, cfg.processing.window)
    return lambda rows, partial, at: forecast.score(spark, model, rows, cfg, at, partial)


def outcome(repeated: Column) -> Column:
    """What became of each checked record: its quarantine reason, late, duplicate or
    accepted."""
    return (
        F.when(~is_valid(), F.col("reason"))
        .when(~after_cutoff(), F.lit("late"))
        .when(repeated, F.lit("duplicate"))
        .otherwise(F.lit(ACCEPTED))
    )


def outcome_rows(records: DataFrame, repeated: Column) -> DataFrame:
    """Checked records (with `endpoint`) -> what window_partials aggregates: each record's
    outcome and, for a valid one, its measures."""
    return records.select(
        "event_time",
        "endpoint",
        "method",
        # Only a valid record's latency is a number to aggregate (not NaN or 1e300).
        F.when(is_valid(), F.col("latency")).alias("latency_ms"),
        status_class(F.col("status_code")).alias("status_class"),
        F.col("nbytes").alias("bytes_sent"),
        outcome(repeated).alias("outcome"),
    )


VALID_OUTCOMES = (ACCEPTED, "late", "duplicate")


def account(rows: list[dict]) -> tuple[dict[str, int], dict[str, int], str | None]:
    """The batch's counts, its quarantine reasons and its newest valid event time, from the
    per-outcome rows of window_partials."""
    n = Counter()
    newest = None
    for r in rows:
        n[r["outcome"]] += r["requests"]
        if r["outcome"] in VALID_OUTCOMES and r["max_event_time"] is not None:
            newest = max(newest or "", r["max_event_time"])
    reasons = {r: n[r] for r in REASONS}
    counts = {
        "input": sum(n.values()),
        "valid": n[ACCEPTED],
        "quarantined": sum(reasons.values()),
        "duplicates": n["duplicate"],
        "late": n["late"],
    }
    return counts, reasons, newest


HIGH_CARDINALITY = (
    "request_id",
    "event_time",
    "path",
    "latency_ms",
    "bytes_sent",
    "client_ip",
    "ingest_time",
    *KEY_HASHES,
)


class PipelineSink:
    """Called by Spark with each micro-batch of raw lines (`value`, `source_file`, and
    `line_no` for access logs: sources.read_lines)."""

    def __init__(self, spark: SparkSession, cfg: Config, paths: Paths, status: LiveStatus):
        self.cfg = cfg
        self.paths = paths
        self.status = status
        self.dimension = endpoint_dimension(spark, cfg)
        # enrichment.client_ip / api_key: hash; the key is read from the environment here and
        # reaches Spark only as the data of a broadcast DataFrame, never in a plan.
        key = hash_key(cfg.enrichment, os.environ)
        self.hash_key = None if key is None else hash_key_frame(spark, key)
        self.events = StagedWriter(
            spark,
            paths.events,
            f"{paths.staging}/events",
            ("date", "hour"),
            # Dictionary encoding only pays on few distinct values; on ids, times and paths it
            # cost ~40% of the write (docs/performance.md).
            {f"parquet.enable.dictionary#{c}": "false" for c in HIGH_CARDINALITY},
        )
        self.quarantine = StagedWriter(
            spark, paths.quarantine, f"{paths.staging}/quarantine", ("ingest_date",)
        )
        put = hadoop_put(spark)
        self.lake = LakeWriters(
            RowsFile(paths.endpoint_metrics, put),
            RowsFile(paths.anomalies, put),
            forecast_scorer(spark, cfg) if "forecast" in cfg.anomaly.detectors else None,
        )
        # Transforms made once: each builds its Column expressions on first use and reuses
        # them, as every Column call is a round trip to the JVM (docs/performance.md).
        self.with_endpoint = with_endpoint(cfg)
        e = cfg.enrichment
        self.to_events = to_events(self.dimension, e.client_ip, e.api_key, self.hash_key)
        self.state = DedupState(spark)
        self.conn: sqlite3.Connection | None = None

    def recover(self) -> None:
        """Before the first batch: remove lake files and dedup keys of batches that were not
        committed (a crash's leftovers)."""
        self.conn = store.connect(self.paths.sqlite)
        maxima = store.last_commits(self.conn)
        last = max(maxima) if maxima else -1
        self.events.remove_batches_after(last)
        self.quarantine.remove_batches_after(last)
        cutoff = late_cutoff(maxima, last + 1, self.cfg.processing.watermark)
        for batch_id, newest, valid in store.commits_newer_than(self.conn, cutoff):
            self.state.add(Chunk(batch_id, newest, self.events.files_of(batch_id), valid))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.conn is None:
            self.recover()
        assert self.conn is not None
        spark = batch.sparkSession
        checkpoint = self.paths.checkpoint
        from_files = self.cfg.source.format == "json"  # files (of any log format), not Kafka
        # Each of the file source's own batches is a batch of the sink, so a query batch that
        # reads two of them after a crash (source_batches) commits the two batches an
        # uninterrupted run commits.
        parts = source_batches(spark, checkpoint, batch_id) if from_files else [batch_id]
        files_of = {part: batch_files(spark, checkpoint, part) for part in parts if from_files}
        if len(parts) > 1:
            _check_split(batch, [f for files in files_of.values() for f in files])
        ingest_time = batch_timestamp(spark, checkpoint, batch_id)
        for part in parts:
            if store.is_committed(self.conn, part):
                continue
            lines = batch
            if from_files:
                files = files_of[part]
                if len(parts) > 1:
                    paths = [as_file_path(f) for f in files]
                    lines = batch.filter(F.col("source_file").isin(paths))
                lines = with_unreadable_files(spark, lines, unreadable_files(files))
            self._run(lines, part, ingest_time)
        with self.status.lock:
            self.status.sink_batches[batch_id] = parts[-1]

    def _run(self, batch: DataFrame, batch_id: int, ingest_time: datetime) -> None:
        """One batch of the sink: `batch_id` is its id in SQLite and the lake."""
        assert self.conn is not None
        cutoff = late_cutoff(store.last_commits(self.conn), batch_id, self.cfg.processing.watermark)
        self.state.evict(cutoff)
        lines = with_batch_values(batch.sparkSession, batch, ingest_time, cutoff, self.state.newest)
        # Parsed and validated once; the row id and the endpoint are fixed once, in the
        # cache, for every later pass.
        records = (
            slim(
                checked_records(lines, self.cfg),
                LATE_CUTOFF,
                DEDUP_BOUND,
                keep_raw=self.cfg.enrichment.keeps_raw,
            )
            .withColumn(ROW_ID, F.monotonically_increasing_id())
            .transform(self.with_endpoint)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        try:
            self._process(records, batch_id, cutoff)
        finally:
            records.unpersist()

    def _process(self, records: DataFrame, batch_id: int, cutoff: str | None) -> None:
        clock = StageClock()
        # First action: parses, validates and caches the whole batch while finding the rows
        # that repeat a key (a few; their ids are collected).
        candidates = records.filter(is_valid() & after_cutoff()).transform(with_key_hashes)
        drops = repeated_rows(candidates, self.state).toArrow()
        repeated = row_id_in(ROW_ID, drops.column(ROW_ID).to_pylist())
        clock.lap("parse_validate_dedup")
        bad = records.filter(~is_valid()).transform(to_quarantine).coalesce(1)
        self.quarantine.write(bad, batch_id)
        clock.lap("quarantine_write")
        events = candidates.filter(~repeated).transform(self.to_events)
        files = self.events.write(events, batch_id)
        clock.lap("events_write")
        checked = outcome_rows(records, repeated)
        rows = window_partials(checked, self.cfg.processing.window, "outcome").toArrow()
        clock.lap("window_partials")
        rows = rows.to_pylist()  # per outcome, window x endpoint x bucket: small
        counts, reasons, newest = account(rows)
        partials = [r for r in rows if r.pop("outcome") == ACCEPTED]
        self.state.add(Chunk(batch_id, newest, files, counts["valid"]))
        out = BatchOutput(
            batch_id, partials, counts, reasons, newest, cutoff, self.state.rows, clock.laps
        )
        _fault_point(batch_id)
        apply_batch(self.conn, out, self.cfg, self.lake)
        self.status.add_totals(counts)


def _check_split(batch: DataFrame, files: list[str]) -> None:
    """Fail, naming them, if the rows of a query batch come from files its source batches do
    not list: filtered by file, their rows would be lost without a count. (Only after a
    crash, so the extra Spark job is rare.)"""
    paths = [as_file_path(f) for f in files]
    strays = batch.filter(~F.col("source_file").isin(paths)).select("source_file").distinct()
    found = strays.limit(5).toArrow().column("source_file").to_pylist()
    if found:
        raise ApiStreamError(
            f"a batch reads files its source log does not list as such (e.g. {found[0]}; "
            f"the log has {files[:2]}): cannot split it into the source's batches"
        )


class StageClock:
    """Wall time of each stage of a batch, in ms (stored with the batch: the profile)."""

    def __init__(self) -> None:
        self.laps: dict[str, int] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round((now - self._last) * 1000)
        self._last = now


# Test seam: kill this process group (the driver and its JVM) once a batch's lake files are
# written and before its SQLite commit, as a crash there would (tests/spark/test_crash.py).
KILL_BEFORE_COMMIT = "APISTREAMTEST_KILL_BEFORE_COMMIT"  # not APISTREAM_*: no config key


def _fault_point(batch_id: int) -> None:
    if os.environ.get(KILL_BEFORE_COMMIT) == str(batch_id):
        os.killpg(os.getpgrp(), signal.SIGKILL)
