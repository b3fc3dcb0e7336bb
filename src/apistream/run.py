"""What the generate, stream, demo and ingest commands do, once their config is loaded: the
generator with a progress bar, the stream after its preflight checks with a live status, and
a stop flag that SIGINT/SIGTERM set so a run ends at a batch boundary."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apistream.config import Config
from apistream.console import console, err_console
from apistream.errors import UsageError
from apistream.period import Period

SINKS = ("files", "kafka")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """A stop flag set by SIGINT/SIGTERM (a second one interrupts at once)."""
    stop = threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err_console.print(f"\n{signal.Signals(signum).name}: stopping after the current batch…")
        stop.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def generate(
    cfg: Config, stop: threading.Event, sink: str = "files", manifest_dir: str | None = None
) -> dict[str, Any]:
    """Generate cfg.generator's traffic to files or Kafka with a progress bar; its manifest."""
    from apistream.generator.writer import LogGenerator

    if sink not in SINKS:
        raise UsageError(f"--sink must be files or kafka, not {sink!r}")
    chunks = None
    if sink == "kafka":
        from apistream.kafka_io import KafkaChunkSink

        chunks = KafkaChunkSink(cfg.source.kafka)
    manifest_dir = manifest_dir or cfg.source.path
    gen = LogGenerator(cfg, manifest_dir, sink=chunks)
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TextColumn("events"))
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("generate", total=cfg.generator.events)
        started = time.perf_counter()

        def advance(n: int) -> None:
            progress.advance(task, n)

        live = cfg.generator.mode == "live"
        manifest = gen.live(stop, advance) if live else gen.backfill(advance)
        elapsed = time.perf_counter() - started
    rate = manifest["total_events"] / elapsed if elapsed else 0
    where = (
        f"{manifest['files']} chunks to Kafka topic {cfg.source.kafka.topic!r} "
        f"({manifest['settings']['partitions']} partitions)"
        if chunks is not None
        else f"{manifest['files']} files to {cfg.source.path}"
    )
    console.print(
        f"wrote {manifest['total_events']:,} events in {where} ({rate:,.0f} events/s); "
        f"ground truth in {manifest_dir}/manifest.json"
    )
    return manifest


def stream(cfg: Config, until_idle: bool, stop: threading.Event) -> None:
    """Check what the run needs (Spark packages, source, output, SQLite, ports, webhooks), then
    run the stream with a live status until idle or stopped."""
    from apistream.pipeline.progress import LiveStatus
    from apistream.pipeline.sources import check_source, spark_packages
    from apistream.pipeline.topology import run_stream
    from apistream.preflight import (
        check_alert_webhooks,
        check_forecast_model,
        check_metrics_port,
        check_output,
        check_sqlite_writable,
    )
    from apistream.session import build_spark
    from apistream.status import render_status

    packages = spark_packages(cfg)  # a connector of another Spark fails here, first
    check_source(cfg)
    check_output(cfg)
    check_sqlite_writable(cfg.sqlite_path)
    check_metrics_port(cfg)
    check_alert_webhooks(cfg)
    check_forecast_model(cfg)
    if cfg.metrics.port is not None:
        console.print(f"Prometheus metrics: http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
    console.print("starting Spark…")
    spark = build_spark(cfg.spark, packages)
    status = LiveStatus()
    try:
        with Live(render_status(status), console=console, refresh_per_second=2) as live:
            tick = lambda: live.update(render_status(status))  # noqa: E731
            run_stream(spark, cfg, until_idle, stop, status, tick=tick)
    finally:
        spark.stop()


def stream_and_summarise(cfg: Config, until_idle: bool) -> None:
    """`stream`, stoppable by signals, then the run's summary."""
    from apistream.summary import print_run_summary

    with stop_on_signals() as stop:
        stream(cfg, until_idle, stop)
    print_run_summary(console, cfg)


def demo(cfg: Config, output: str) -> None:
    """Generate into a fresh `output`, stream it all, print the rate and the summary."""
    from apistream.summary import print_run_summary

    if Path(output).exists():
        shutil.rmtree(output)
    with stop_on_signals() as stop:
        generate(cfg, stop)
        started = time.perf_counter()
        stream(cfg, True, stop)
        elapsed = time.perf_counter() - started
    events = cfg.generator.events
    console.print(
        f"pipeline: {events:,} events in {elapsed:.1f}s including Spark start "
        f"({events / elapsed:,.0f} events/s)"
    )
    print_run_summary(console, cfg)


def train_forecast(cfg: Config, period: Period) -> None:
    """`apistream train`: fit the forecast detector on the database's finalised windows in
    `period` and save it at anomaly.forecast.model."""
    from apistream import forecast, sqlite_store
    from apistream.session import build_spark

    sqlite_store.require(cfg.sqlite_path)
    rows = forecast.history(cfg.sqlite_path, period.start_iso, period.end_iso)
    if not rows:
        raise UsageError("no finalised windows in that period to train on: stream some first")
    windows = len({r["window_start"] for r in rows})
    err_console.print(f"training the forecast detector on {windows:,} windows")
    spark = build_spark(cfg.spark)
    try:
        with err_console.status("fitting gradient-boosted trees (Spark MLlib) ..."):
            model = forecast.fit(spark, rows, cfg)
            model.save(spark, cfg.forecast_model_path)
    finally:
        spark.stop()
    console.print(
        f"forecast model: {len(model.series)} series ({windows:,} windows, "
        f"{rows[0]['window_start']} .. {rows[-1]['window_end']}) saved at "
        f"{cfg.forecast_model_path}; use it with anomaly.detectors: [ewma, forecast]"
    )
