"""The streaming job, wired in one place: the only module that starts a query.

    source lines --pipeline--> foreachBatch(PipelineSink): parse -> validate, cached once
        quarantined records                -> lake/quarantine
        late and duplicates dropped, enrich -> lake/events
        window partials, merged            -> SQLite endpoint_metrics
                                              (final windows -> lake/endpoint_metrics, anomalies)
        data-quality account               -> SQLite data_quality

Each line is read, parsed and validated once; everything a batch produces is committed
together (docs/design.md).
The source (files or Kafka) is chosen in pipeline/sources.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from apistream import sqlite_store
from apistream.alert_delivery import AlertDeliverer
from apistream.catalog import PIPELINE_QUERY, Paths
from apistream.config import Config, spark_interval
from apistream.errors import ApiStreamError
from apistream.pipeline.checkpoint_log import last_committed
from apistream.pipeline.progress import LiveStatus, ProgressRecorder
from apistream.pipeline.sink import PipelineSink
from apistream.pipeline.sources import read_lines
from apistream.preflight import metrics_port_error
from apistream.prometheus_metrics import MetricsServer, serve_metrics
from apistream.sink_commit import flush
from apistream.top import ranking_view

__all__ = ["Paths", "StreamRun", "run_stream"]


@dataclass(frozen=True)
class QuerySpec:
    """The one query, declared as data: its name, checkpoint, sink and trigger."""

    name: str
    checkpoint: str
    trigger: dict[str, object]


def query_spec(cfg: Config, paths: Paths, until_idle: bool) -> QuerySpec:
    trigger: dict[str, object] = (
        {"availableNow": True}
        if until_idle
        else {"processingTime": spark_interval(cfg.processing.trigger_interval)}
    )
    return QuerySpec(PIPELINE_QUERY, paths.checkpoint, trigger)


@dataclass
class StreamRun:
    """A finished (or stopped) run: its query and sink."""

    query: StreamingQuery
    sink: PipelineSink


def start(spark: SparkSession, cfg: Config, spec: QuerySpec, sink: PipelineSink) -> StreamingQuery:
    """Start the pipeline query: source lines -> sink (which parses and validates them)."""
    return (
        read_lines(spark, cfg)
        .writeStream.queryName(spec.name)
        .option("checkpointLocation", spec.checkpoint)
        .trigger(**spec.trigger)
        .foreachBatch(sink)
        .start()
    )


def run_stream(
    spark: SparkSession,
    cfg: Config,
    until_idle: bool,
    stop: threading.Event,
    status: LiveStatus | None = None,
    tick: Callable[[], None] = lambda: None,
) -> StreamRun:
    """Run the pipeline: until the input is processed (until_idle) or until `stop` is set.

    The driver waits on the query itself (awaitTermination with a timeout, so a stop request
    and the terminal status are handled in between), never on a sleep loop of its own."""
    paths = Paths.of(cfg)
    status = status or LiveStatus()
    with closing(sqlite_store.connect(paths.sqlite)) as conn:
        _check_same_run(spark, paths, store_last=max(sqlite_store.last_commits(conn), default=-1))
        sqlite_store.save_endpoints(
            conn, [(e.template, e.service, e.team, e.latency_slo_ms) for e in cfg.endpoints]
        )
        conn.executescript(ranking_view(cfg.report.min_ranked_requests))
    recorder = ProgressRecorder(paths.sqlite, status)
    sink = PipelineSink(spark, cfg, paths, status)
    spec = query_spec(cfg, paths, until_idle)
    spark.streams.addListener(recorder)
    query: StreamingQuery | None = None
    metrics: MetricsServer | None = None
    alerts: AlertDeliverer | None = None
    try:
        metrics = _serve_metrics(cfg, paths)
        alerts = AlertDeliverer(paths.sqlite, cfg.alerts).start() if cfg.alerts.webhooks else None
        query = start(spark, cfg, spec, sink)
        while not stop.is_set():
            try:
                if query.awaitTermination(0.5):
                    break
            except StreamingQueryException:
                break
            tick()
        _stop_between_batches(query)
        _raise_if_failed(query, cfg, paths)
        recorder.wait_terminated(str(query.runId))
        if until_idle and not stop.is_set():
            with closing(sqlite_store.connect(paths.sqlite)) as conn:
                flush(conn, cfg, sink.lake)
            if alerts is not None:  # the anomalies of the last windows, before exiting
                alerts.deliver_pending()
        tick()
    finally:
        if query is not None and query.isActive:
            query.stop()
        spark.streams.removeListener(recorder)
        sink.close()
        if metrics is not None:
            metrics.close()
        if alerts is not None:
            alerts.close()
    return StreamRun(query, sink)


def _check_same_run(spark: SparkSession, paths: Paths, store_last: int) -> None:
    """Refuse a checkpoint that is ahead of the SQLite database: the database was deleted or
    replaced (a new driver disk on a cluster, say). SQLite commits a batch before Spark's
    commit log does, so it is never behind in a consistent run; going on would take every lake
    file as a crash's leftover and delete it."""
    committed = last_committed(spark, paths.checkpoint)
    if committed is not None and store_last < committed:
        raise ApiStreamError(
            f"the checkpoint {paths.checkpoint} committed batches up to {committed}, but the "
            f"SQLite database {paths.sqlite} has {'none' if store_last < 0 else store_last}: it "
            "was deleted or replaced. Restore it, or start over with a new sinks.output (the "
            "lake is left as it is)"
        )


def _serve_metrics(cfg: Config, paths: Paths) -> MetricsServer | None:
    """Prometheus /metrics of the run's database when metrics.port is set."""
    if cfg.metrics.port is None:
        return None
    try:
        return serve_metrics(paths.sqlite, cfg.metrics.host, cfg.metrics.port)
    except OSError as exc:
        raise metrics_port_error(cfg.metrics.host, cfg.metrics.port, exc) from None


def _stop_between_batches(query: StreamingQuery, patience_s: float = 120.0) -> None:
    """Stop the query once its running micro-batch (if any) has committed, so a stop request
    does not interrupt a batch half-way (a restart would replay it; this is only tidier)."""
    waited = 0.0
    running = _last_batch(query) + 1 if query.status["isTriggerActive"] else None
    try:
        while (
            running is not None
            and query.isActive
            and _last_batch(query) < running
            and waited < patience_s
        ):
            query.awaitTermination(0.2)
            waited += 0.2
    except StreamingQueryException:
        return
    if query.isActive:
        query.stop()


def _last_batch(query: StreamingQuery) -> int:
    progress = query.lastProgress
    return int(progress["batchId"]) if progress else -1


def _raise_if_failed(query: StreamingQuery, cfg: Config, paths: Paths) -> None:
    try:
        exc = query.exception()
    except StreamingQueryException as e:
        exc = e
    if exc is None:
        return
    inbox = Path(cfg.source.path)
    if cfg.source.format == "json" and not inbox.is_dir():
        t = sqlite_store.read_totals(paths.sqlite)
        raise ApiStreamError(
            f"input directory {inbox} disappeared while the stream ran. Every batch committed "
            f"before is kept: input {t['input']:,} = valid {t['valid']:,} + quarantined "
            f"{t['quarantined']:,} + duplicates {t['duplicates']:,} + late {t['late']:,} "
            f"({paths.sqlite}). Restore the directory (or set source.path) and run again to "
            "go on from the checkpoint."
        )
    raise ApiStreamError(f"query '{query.name}' failed: {_first_line(exc)}")


_CAUSE = re.compile(r"((?:[a-z][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)): ?(.*)")
_WRAPPERS = ("py4j.", "org.apache.spark.sql.execution.streaming.sources.ForeachBatch")


def _first_line(exc: BaseException) -> str:
    """One line for the user: the innermost Java cause (a failure inside the sink reaches us
    wrapped in Python and py4j tracebacks), else the first line of the message."""
    text = str(getattr(exc, "desc", None) or exc)
    causes = [
        m.group(0).strip()
        for m in map(_CAUSE.search, text.splitlines())
        if m and not m.group(1).startswith(_WRAPPERS)
    ]
    if causes:
        return causes[-1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
