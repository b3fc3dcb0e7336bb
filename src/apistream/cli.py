"""Command line: generate, stream, demo, validate-config."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apistream.config import Config, load_config
from apistream.errors import ApiStreamError

app = typer.Typer(
    help="APIStream Analytics: real-time API request-log analytics on Spark Structured Streaming.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, files) gets 120 columns rather than rich's 80, so tables fit.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config file.", show_default="config/config.yaml"),
]
InputOpt = Annotated[
    str | None, typer.Option("--input", help="Directory of JSON-lines input (source.path).")
]
OutputOpt = Annotated[
    str | None,
    typer.Option("--output", help="Root of lake, SQLite and checkpoints (sinks.output)."),
]
EventsOpt = Annotated[int | None, typer.Option("--events", help="Events to generate.")]
RateOpt = Annotated[float | None, typer.Option("--rate", help="Events per second.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Generator seed.")]
TopicOpt = Annotated[str | None, typer.Option("--topic", help="Kafka topic (source.kafka.topic).")]
BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers", help="Kafka host:port list (source.kafka.bootstrap_servers)."
    ),
]


def _load(config: Path | None, **overrides: Any) -> Config:
    return load_config(config, {k: v for k, v in overrides.items() if v is not None})


def _fail(exc: ApiStreamError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(exc.exit_code)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """A stop flag set by SIGINT/SIGTERM, so a run ends cleanly at a batch boundary."""
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


def _generate(
    cfg: Config, stop: threading.Event, sink: str = "files", manifest_dir: str | None = None
) -> dict[str, Any]:
    from apistream.generator.writer import LogGenerator

    chunks = None
    if sink == "kafka":
        from apistream.kafka_io import KafkaChunkSink

        chunks = KafkaChunkSink(cfg.source.kafka)
    manifest_dir = manifest_dir or cfg.source.path
    gen = LogGenerator(cfg, manifest_dir, sink=chunks)
    columns = (
        TextColumn("generate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("generate", total=cfg.generator.events)
        started = time.perf_counter()
        advance: Callable[[int], None] = lambda n: progress.advance(task, n)  # noqa: E731
        manifest = (
            gen.live(stop, advance) if cfg.generator.mode == "live" else gen.backfill(advance)
        )
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


@app.command()
def generate(
    config: ConfigOpt = None,
    input: InputOpt = None,
    events: EventsOpt = None,
    rate: RateOpt = None,
    seed: SeedOpt = None,
    mode: Annotated[
        str | None,
        typer.Option(help="backfill (as fast as possible) or live (at --rate in real time)."),
    ] = None,
    start: Annotated[str | None, typer.Option(help="Backfill start, ISO-8601 UTC.")] = None,
    sink: Annotated[
        str, typer.Option(help="files (JSON lines under --input) or kafka (source.kafka.topic).")
    ] = "files",
    topic: TopicOpt = None,
    bootstrap_servers: BootstrapOpt = None,
    manifest: Annotated[
        str | None,
        typer.Option(help="Directory for manifest.json (default: --input / source.path)."),
    ] = None,
) -> None:
    """Write synthetic API traffic (with defects and incidents) as JSON-lines files or to Kafka."""
    try:
        if sink not in ("files", "kafka"):
            raise ApiStreamError(f"--sink must be files or kafka, not {sink!r}")
        cfg = _load(
            config,
            **{
                "source.path": input,
                "generator.events": events,
                "generator.rate": rate,
                "generator.seed": seed,
                "generator.mode": mode,
                "generator.start": start,
                "source.kafka.topic": topic,
                "source.kafka.bootstrap_servers": bootstrap_servers,
            },
        )
        with _stop_on_signals() as stop:
            _generate(cfg, stop, sink, manifest)
    except ApiStreamError as exc:
        _fail(exc)


def _stream(cfg: Config, until_idle: bool, stop: threading.Event) -> None:
    from apistream.pipeline.progress import LiveStatus
    from apistream.pipeline.sources import check_source, spark_packages
    from apistream.pipeline.topology import run_stream
    from apistream.session import build_spark
    from apistream.status import render_status

    check_source(cfg)
    console.print("starting Spark…")
    spark = build_spark(cfg.spark, spark_packages(cfg))
    status = LiveStatus()
    try:
        with Live(render_status(status), console=console, refresh_per_second=2) as live:
            run_stream(
                spark,
                cfg,
                until_idle,
                stop,
                status,
                tick=lambda: live.update(render_status(status)),
            )
    finally:
        spark.stop()


@app.command()
def stream(
    config: ConfigOpt = None,
    input: InputOpt = None,
    output: OutputOpt = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Process what is there, flush final windows, exit.")
    ] = False,
    source: Annotated[
        str | None, typer.Option("--source", help="json (files) or kafka (source.format).")
    ] = None,
    topic: TopicOpt = None,
    bootstrap_servers: BootstrapOpt = None,
) -> None:
    """Run the streaming pipeline over the input directory or Kafka topic (Ctrl-C stops)."""
    try:
        cfg = _load(
            config,
            **{
                "source.path": input,
                "sinks.output": output,
                "source.format": source,
                "source.kafka.topic": topic,
                "source.kafka.bootstrap_servers": bootstrap_servers,
            },
        )
        with _stop_on_signals() as stop:
            _stream(cfg, until_idle, stop)
        from apistream.summary import print_run_summary

        print_run_summary(console, cfg, spark=None)
    except ApiStreamError as exc:
        _fail(exc)


@app.command()
def demo(
    config: ConfigOpt = None,
    output: Annotated[
        str,
        typer.Option("--output", help="Root of the demo's input, lake, SQLite and checkpoints."),
    ] = "output/demo",
    events: Annotated[int, typer.Option("--events", help="Events to generate.")] = 1_000_000,
    rate: Annotated[float, typer.Option("--rate", help="Simulated events per second.")] = 400,
    seed: SeedOpt = None,
) -> None:
    """Generate ~1M events with every defect kind, stream them, print a summary."""
    try:
        cfg = _load(
            config,
            **{
                "sinks.output": output,
                "source.path": f"{output}/incoming",
                "generator.events": events,
                "generator.rate": rate,
                "generator.seed": seed,
                "generator.mode": "backfill",
                "generator.incidents.random_count": 4,
            },
        )
        if Path(output).exists():
            shutil.rmtree(output)
        with _stop_on_signals() as stop:
            _generate(cfg, stop)
            started = time.perf_counter()
            _stream(cfg, True, stop)
            elapsed = time.perf_counter() - started
        console.print(
            f"pipeline: {events:,} events in {elapsed:.1f}s including Spark start "
            f"({events / elapsed:,.0f} events/s)"
        )
        from apistream.summary import print_run_summary

        print_run_summary(console, cfg, spark=None)
    except ApiStreamError as exc:
        _fail(exc)


@app.command("validate-config")
def validate_config(config: ConfigOpt = None) -> None:
    """Check a config file (and APISTREAM_* overrides); exit non-zero naming a bad key."""
    try:
        cfg = _load(config)
    except ApiStreamError as exc:
        _fail(exc)
        return
    p, k = cfg.processing, cfg.source.kafka
    source = (
        f"kafka topic {k.topic} at {k.bootstrap_servers}"
        if cfg.source.format == "kafka"
        else cfg.source.path
    )
    console.print(
        f"config OK: {len(cfg.endpoints)} endpoints, window {p.window:g}s, watermark "
        f"{p.watermark:g}s, source {source}, output {cfg.sinks.output}"
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
