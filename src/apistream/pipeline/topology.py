"""The streaming job, wired in one place: the only module that starts queries.

    source       --events-->     parse -> validate -> watermark -> dedup -> enrich -> lake/events
                 --quarantine--> parse -> validate (bad rows) -------------------> lake/quarantine
    lake/events  --metrics-->    watermark -> window metrics -> SQLite (every batch)
                                                               + lake/endpoint_metrics (final)

The metrics query reads the events lake through the file sink's commit log, so it sees whole
`events` batches in order and counts exactly what the lake holds (see docs/design.md).
The source (files or Kafka) is chosen in pipeline/sources.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from apistream import sqlite_store
from apistream.anomalies import AnomalyDetector
from apistream.config import Config, spark_interval
from apistream.errors import ApiStreamError
from apistream.ingest.formats import compile_format
from apistream.pipeline.aggregate import endpoint_window_metrics
from apistream.pipeline.enrich import endpoint_dimension, to_events, to_quarantine
from apistream.pipeline.parse import parse_json_lines
from apistream.pipeline.parse_access import parse_access_lines, parse_mapped_json
from apistream.pipeline.progress import (
    EVENTS_QUERY,
    QUALITY_METRICS,
    LiveStatus,
    ProgressRecorder,
)
from apistream.pipeline.schema import ACCESS_LOG_REQUIRED, EVENTS_DDL
from apistream.pipeline.sources import read_lines
from apistream.pipeline.validate import is_valid, quality_counters, with_quarantine_reason


@dataclass(frozen=True)
class Paths:
    """Everything a run keeps under its output root."""

    events: str
    quarantine: str
    endpoint_metrics: str
    anomalies: str
    checkpoints: str
    sqlite: str

    @classmethod
    def of(cls, cfg: Config) -> Paths:
        return cls(
            events=cfg.path("lake", "events"),
            quarantine=cfg.path("lake", "quarantine"),
            endpoint_metrics=cfg.path("lake", "endpoint_metrics"),
            anomalies=cfg.path("lake", "anomalies"),
            checkpoints=cfg.path("checkpoints"),
            sqlite=cfg.sqlite_path,
        )


def checked_records(lines: DataFrame, cfg: Config) -> DataFrame:
    """Parsed records, each with a quarantine reason or none."""
    logs = cfg.logs
    if logs.format == "json":
        parsed = lines.transform(parse_json_lines)
        return parsed.transform(with_quarantine_reason(cfg.validation))
    if logs.format == "json_mapped":
        parsed = lines.transform(parse_mapped_json(logs.json_fields, logs.json_latency_unit))
        malformed = "malformed_json"
    else:
        fmt = compile_format(logs.format, logs.log_format, logs.timezone)
        parsed = lines.transform(parse_access_lines(fmt))
        malformed = "unparseable_line"
    return parsed.drop("line_no").transform(
        with_quarantine_reason(cfg.validation, ACCESS_LOG_REQUIRED, malformed)
    )


class FinalWindowWriter:
    """Writes finalised windows as one Parquet file per tag, overwritten on a replay."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, rows: list[dict[str, Any]], tag: str) -> None:
        table = pa.Table.from_pylist([{**r, "finalized_in": tag} for r in rows])
        if "://" not in self.root:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, f"{self.root}/{tag}.parquet")


class MetricsSink:
    """foreachBatch sink of the metrics query: SQLite upserts, finalised windows to Parquet."""

    def __init__(self, cfg: Config, paths: Paths):
        self.cfg = cfg
        self.sqlite = paths.sqlite
        self.writer = FinalWindowWriter(paths.endpoint_metrics)
        self.detector = AnomalyDetector(cfg.anomaly, FinalWindowWriter(paths.anomalies))
        self._conn = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self._conn is None:
            self._conn = sqlite_store.connect(self.sqlite)
        # The batch is the handful of windows this micro-batch updated.
        rows = batch.toArrow().to_pylist()
        sqlite_store.apply_metrics_batch(
            self._conn,
            batch_id,
            rows,
            self.cfg.processing.metrics_watermark,
            self.cfg.processing.window,
            self.writer,
            self.detector,
        )


@dataclass
class StreamRun:
    """A running pipeline: its queries and the recorder of their progress."""

    spark: SparkSession
    cfg: Config
    paths: Paths
    recorder: ProgressRecorder
    until_idle: bool
    queries: dict[str, StreamingQuery] = field(default_factory=dict)

    def _writer(self, df: DataFrame, name: str):
        w = df.writeStream.queryName(name).option(
            "checkpointLocation", f"{self.paths.checkpoints}/{name}"
        )
        if self.until_idle:
            return w.trigger(availableNow=True)
        return w.trigger(processingTime=spark_interval(self.cfg.processing.trigger_interval))

    def start_ingest(self) -> None:
        """Start the events and quarantine queries over the source."""
        cfg = self.cfg
        dimension = endpoint_dimension(self.spark, cfg)
        records = checked_records(read_lines(self.spark, cfg), cfg)
        events = (
            records.observe(QUALITY_METRICS, *quality_counters())
            .filter(is_valid())
            .withWatermark("event_time", spark_interval(cfg.processing.watermark))
            .dropDuplicates(["request_id", "event_time"])
            .transform(to_events(cfg, dimension))
        )
        self.queries[EVENTS_QUERY] = (
            self._writer(events, EVENTS_QUERY)
            .format("parquet")
            .option("path", self.paths.events)
            .partitionBy("date", "hour")
            .start()
        )
        quarantine = checked_records(read_lines(self.spark, cfg), cfg).filter(~is_valid())
        self.queries["quarantine"] = (
            self._writer(quarantine.transform(to_quarantine), "quarantine")
            .format("parquet")
            .option("path", self.paths.quarantine)
            .partitionBy("ingest_date")
            .start()
        )

    def events_lake_ready(self) -> bool:
        """The events file sink has its commit log, so the lake can be read as a stream."""
        path = f"{self.paths.events}/_spark_metadata"
        return "://" in path or Path(path).is_dir()

    def start_metrics(self) -> None:
        """Start the window-metrics query over the events lake."""
        cfg = self.cfg
        events = self.spark.readStream.schema(EVENTS_DDL).parquet(self.paths.events)
        metrics = endpoint_window_metrics(
            events.withWatermark("event_time", spark_interval(cfg.processing.metrics_watermark)),
            spark_interval(cfg.processing.window),
            cfg.processing.percentile_accuracy,
        )
        self.queries["metrics"] = (
            self._writer(metrics, "metrics")
            .outputMode("update")
            .foreachBatch(MetricsSink(cfg, self.paths))
            .start()
        )

    def failed(self) -> None:
        """Raise a clean error if any query died."""
        for name, q in self.queries.items():
            exc = q.exception()
            if exc is not None:
                raise ApiStreamError(f"query '{name}' failed: {_first_line(exc)}")

    def wait(self, names: list[str], stop: threading.Event, tick: Callable[[], None]) -> None:
        """Wait until the named queries end (or stop is set), refreshing the status."""
        while not stop.is_set():
            try:
                done = all(not self.queries[n].isActive for n in names)
            except StreamingQueryException:
                done = True
            self.failed()
            tick()
            if done:
                break
            stop.wait(0.5)

    def settle(self, name: str) -> None:
        """Wait until the listener has recorded everything of a finished query."""
        q = self.queries.get(name)
        if q is not None and not q.isActive:
            self.recorder.wait_terminated(str(q.runId))

    def stop(self) -> None:
        """Stop every query, then let the listener record their last progress."""
        for name in (EVENTS_QUERY, "quarantine", "metrics"):
            q = self.queries.get(name)
            if q is not None and q.isActive:
                q.stop()
        for name in self.queries:
            self.settle(name)


def run_stream(
    spark: SparkSession,
    cfg: Config,
    until_idle: bool,
    stop: threading.Event,
    status: LiveStatus | None = None,
    tick: Callable[[], None] = lambda: None,
) -> StreamRun:
    """Run the pipeline: until the input is processed (until_idle) or until `stop` is set."""
    paths = Paths.of(cfg)
    conn = sqlite_store.connect(paths.sqlite)
    sqlite_store.save_endpoints(
        conn, [(e.template, e.service, e.team, e.latency_slo_ms) for e in cfg.endpoints]
    )
    recorder = ProgressRecorder(paths.sqlite, status)
    spark.streams.addListener(recorder)
    run = StreamRun(spark, cfg, paths, recorder, until_idle)
    try:
        run.start_ingest()
        if until_idle:
            run.wait([EVENTS_QUERY, "quarantine"], stop, tick)
            run.settle(EVENTS_QUERY)
            if not stop.is_set() and run.events_lake_ready():
                run.start_metrics()
                run.wait(["metrics"], stop, tick)
                run.settle("metrics")
            if not stop.is_set():
                sqlite_store.finalise_all(
                    conn,
                    cfg.processing.window,
                    FinalWindowWriter(paths.endpoint_metrics),
                    AnomalyDetector(cfg.anomaly, FinalWindowWriter(paths.anomalies)),
                )
        else:
            while not stop.is_set():
                if "metrics" not in run.queries and run.events_lake_ready():
                    run.start_metrics()
                run.failed()
                tick()
                stop.wait(0.5)
        tick()
    finally:
        run.stop()
        spark.streams.removeListener(recorder)
        conn.close()
    return run


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "desc", None) or str(exc)
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
