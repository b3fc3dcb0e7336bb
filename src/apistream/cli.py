"""Command line: generate, stream, demo, ingest, top, batch, evaluate, report, dashboard,
bench, deploy, validate-config."""

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

from apistream.config import DEFAULT_CONFIG, Config, load_config
from apistream.errors import ApiStreamError, ReconciliationError

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
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--master", help="Spark master, e.g. spark://127.0.0.1:7077 (spark.master; local[*])."
    ),
]
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
    from apistream.preflight import (
        check_alert_webhooks,
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
    if cfg.metrics.port is not None:
        console.print(f"Prometheus metrics: http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
    console.print("starting Spark…")
    spark = build_spark(cfg.spark, packages)
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Serve Prometheus /metrics on this port (metrics.port)."
        ),
    ] = None,
    master: MasterOpt = None,
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
                "metrics.port": metrics_port,
                "spark.master": master,
            },
        )
        with _stop_on_signals() as stop:
            _stream(cfg, until_idle, stop)
        from apistream.summary import print_run_summary

        print_run_summary(console, cfg)
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
    master: MasterOpt = None,
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
                "spark.master": master,
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

        print_run_summary(console, cfg)
    except ApiStreamError as exc:
        _fail(exc)


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Log files (plain or .gz), or one directory.")
    ],
    format: Annotated[
        str, typer.Option("--format", help="nginx | apache | alb | haproxy | json_mapped | json")
    ] = "nginx",
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="nginx log_format / Apache LogFormat string, or a preset "
            "(nginx: combined, combined_rt; apache: common, combined).",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep streaming new files that appear in the directory."),
    ] = False,
    timezone: Annotated[
        str | None, typer.Option(help="Zone of timestamps without an offset (HAProxy).")
    ] = None,
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """Replay existing access logs through the pipeline (or tail a directory with --follow)."""
    try:
        from apistream.ingest.plan import ingest_config

        cfg = _load(
            config,
            **{
                "sinks.output": output,
                "logs.format": format,
                "logs.log_format": log_format,
                "logs.timezone": timezone,
            },
        )
        cfg = ingest_config(cfg, paths, follow)
        with _stop_on_signals() as stop:
            _stream(cfg, not follow, stop)
        from apistream.summary import print_run_summary

        print_run_summary(console, cfg)
    except ApiStreamError as exc:
        _fail(exc)


@app.command()
def evaluate(
    config: ConfigOpt = None,
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Precision and recall of the detected anomalies against the generator's incidents."""
    import json
    import sqlite3
    from contextlib import closing

    from rich.table import Table

    from apistream.evaluation import evaluate as score

    try:
        cfg = _load(config, **{"source.path": input, "sinks.output": output})
        manifest_path = Path(cfg.source.path) / "manifest.json"
        if not manifest_path.is_file():
            raise ApiStreamError(f"no generator manifest at {manifest_path}")
        if not Path(cfg.sqlite_path).is_file():
            raise ApiStreamError(f"no analytics database at {cfg.sqlite_path}")
        incidents = json.loads(manifest_path.read_text())["incidents"]
        with closing(sqlite3.connect(cfg.sqlite_path)) as db:
            db.row_factory = sqlite3.Row
            alerts = [dict(r) for r in db.execute("SELECT * FROM anomalies")]
    except (ApiStreamError, sqlite3.Error) as exc:
        _fail(exc if isinstance(exc, ApiStreamError) else ApiStreamError(str(exc)))
        return
    result = score(incidents, alerts)
    table = Table(title="incidents", title_justify="left")
    for col in ("kind", "endpoint", "start", "end", "found"):
        table.add_column(col)
    missed = {(i["endpoint"], i["start"]) for i in result.missed}
    for i in incidents:
        found = (i["endpoint"], i["start"][:19] + "Z") not in missed
        table.add_row(i["kind"], i["endpoint"], i["start"], i["end"], "yes" if found else "NO")
    console.print(table)
    console.print(
        f"alerts {result.alerts} (true {result.true_alerts}), incidents "
        f"{result.incidents} (found {result.found})"
    )
    console.print(f"precision {result.precision:.3f}  recall {result.recall:.3f}")


@app.command()
def top(
    by: Annotated[str, typer.Option(help="p95 | p99 | error_4xx | error_5xx | busiest")] = "p95",
    period: Annotated[
        str, typer.Option(help="window (stream metrics) or day (needs `apistream batch`)")
    ] = "window",
    when: Annotated[
        str | None,
        typer.Option(help="Window start (ISO) or day (YYYY-MM-DD); default: the latest."),
    ] = None,
    n: Annotated[int, typer.Option(help="How many.")] = 10,
    min_requests: Annotated[int, typer.Option(help="Leave out rows with fewer requests.")] = 20,
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """Top-N endpoints: slowest by p95/p99, highest 4xx/5xx rates, busiest."""
    from rich.table import Table

    from apistream import sqlite_store
    from apistream.top import top_n

    try:
        cfg = _load(config, **{"sinks.output": output})
        if not Path(cfg.sqlite_path).is_file():
            raise ApiStreamError(f"no analytics database at {cfg.sqlite_path}")
        with sqlite_store.read_only(cfg.sqlite_path) as db:
            ranked, rows = top_n(db, by, period, when, n, min_requests)
    except ApiStreamError as exc:
        _fail(exc)
        return
    table = Table(title=f"top {n} by {by}, {period} {ranked}", title_justify="left")
    for col in ("#", "endpoint", "method", "requests", by):
        table.add_column(col, justify="right" if col in ("#", "requests", by) else "left")
    for i, r in enumerate(rows, 1):
        value = f"{r['value']:.2%}" if by.startswith("error") else f"{r['value']:,.1f}"
        table.add_row(str(i), r["endpoint"], r["method"], f"{r['requests']:,}", value)
    console.print(table)


@app.command()
def batch(
    first: Annotated[
        str | None,
        typer.Option("--from", help="First day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH), UTC."),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option("--to", help="Last day or hour, included (default: all of the lake)."),
    ] = None,
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """Rollups, SLO report and reconciliation over the lake; exit 3 on any mismatch."""
    from apistream.batch import run_batch
    from apistream.period import Period
    from apistream.session import build_spark
    from apistream.summary import print_batch_summary

    try:
        cfg = _load(config, **{"sinks.output": output})
        period = Period.parse(first, last)
        if not Path(cfg.sqlite_path).is_file():
            raise ApiStreamError(f"no analytics database at {cfg.sqlite_path}: run the stream")
        spark = build_spark(cfg.spark)
        try:
            result = run_batch(spark, cfg, period)
        finally:
            spark.stop()
        print_batch_summary(console, result)
        if not result.reconciled:
            raise ReconciliationError(
                f"reconciliation failed: {len(result.mismatches)} window(s) in {period} differ "
                "between the events lake and the stream's metrics (listed above)"
            )
    except ApiStreamError as exc:
        _fail(exc)


@app.command()
def report(config: ConfigOpt = None, output: OutputOpt = None) -> None:
    """Write an HTML report (interactive, works offline) and PNG charts of a run's results."""
    try:
        from apistream.report import write_report

        files = write_report(_load(config, **{"sinks.output": output}))
        console.print(f"report: {files.html}", highlight=False)
        for png in files.pngs:
            console.print(f"chart:  {png}", highlight=False)
    except ApiStreamError as exc:
        _fail(exc)


@app.command()
def dashboard(
    config: ConfigOpt = None,
    output: OutputOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Serve a live dashboard of the SQLite results, refreshed while the stream writes them."""
    try:
        from apistream.dashboard.app import serve

        cfg = _load(
            config, **{"sinks.output": output, "dashboard.host": host, "dashboard.port": port}
        )
        d = cfg.dashboard
        console.print(
            f"dashboard: http://{d.host}:{d.port}/ reading {cfg.sqlite_path} (Ctrl-C stops)",
            highlight=False,
        )
        if d.host in ("0.0.0.0", "::") and not d.allowed_hosts:
            console.print(
                "note: only localhost names are answered; list the names other machines use "
                "in dashboard.allowed_hosts (APISTREAM_DASHBOARD__ALLOWED_HOSTS='[host]')",
                highlight=False,
            )
        serve(cfg, d.host, d.port)
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


@app.command()
def deploy(
    target: Annotated[
        str, typer.Option("--target", help="dataproc, emr, databricks or k8s.", show_default=False)
    ],
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the artefacts instead of writing them.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory to write them to.", show_default="deploy-out/TARGET"),
    ] = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="A job that ends once the input is processed.")
    ] = False,
) -> None:
    """The commands and job specs that run the stream on a cluster, from the config: paths,
    package, Kafka connector and sizes (section deploy; see README "Run on a cluster")."""
    from apistream.deploy import render

    try:
        cfg = _load(config)
        artifacts = render(target, cfg, until_idle)
    except ApiStreamError as exc:
        _fail(exc)
        return
    if dry_run:
        for a in artifacts:
            console.print(f"# ---- {a.name} ----", highlight=False)
            console.print(a.text, end="", highlight=False, markup=False, soft_wrap=True)
        return
    folder = out or Path("deploy-out") / target
    folder.mkdir(parents=True, exist_ok=True)
    for a in artifacts:
        path = folder / a.name
        path.write_text(a.text)
        if a.kind == "shell":
            path.chmod(0o755)
    console.print(f"wrote {', '.join(a.name for a in artifacts)} to {folder}", highlight=False)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@app.command()
def bench(
    config: ConfigOpt = None,
    events: Annotated[
        int, typer.Option(help="Events of the throughput run (and DuckDB check).")
    ] = 5_000_000,
    scale: Annotated[str, typer.Option(help="Run sizes for the scaling figures.")] = "1e6,5e6,10e6",
    sweep: Annotated[str, typer.Option(help="Files per micro-batch to sweep.")] = "1,4,10",
    sweep_events: Annotated[int, typer.Option(help="Events of each sweep run.")] = 1_000_000,
    live_rate: Annotated[int, typer.Option(help="Events/s of the live run.")] = 20_000,
    live_seconds: Annotated[int, typer.Option(help="Length of the live run (0 skips it).")] = 600,
    fresh_rates: Annotated[
        str, typer.Option(help="Further live rates, for freshness only ('' for none).")
    ] = "5000,10000,50000",
    fresh_seconds: Annotated[int, typer.Option(help="Length of each of those runs.")] = 180,
    warmup: Annotated[
        int, typer.Option(help="Seconds of the live run left out of freshness.")
    ] = 60,
    results: Annotated[Path, typer.Option(help="Where the JSON, markdown and plot go.")] = Path(
        "bench/results"
    ),
    work: Annotated[
        Path | None, typer.Option(help="Scratch directory (default: a temp dir).")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep inputs and outputs of every run.")] = False,
    repeats: Annotated[
        int, typer.Option(help="Backlog runs of --events; figures are medians.")
    ] = 1,
    kafka_rates: Annotated[
        str | None,
        typer.Option(help="Live rates over Kafka ('' for none; default: 20k/50k if run on files)."),
    ] = None,
    goaccess: Annotated[
        bool, typer.Option(help="Time GoAccess over the same events as nginx lines.")
    ] = True,
) -> None:
    """Benchmark throughput, freshness, memory and scaling; DuckDB cross-checks the numbers."""
    try:
        from apistream.bench import results as out
        from apistream.bench.suite import BenchOptions, run_suite, stamp
    except ImportError as exc:
        _fail(
            ApiStreamError(
                f"the benchmark needs its extras ({exc.name}): pip install -e '.[bench]'"
            )
        )
        return
    try:
        cfg = _load(config)
        from apistream.session import require_java

        require_java()
    except ApiStreamError as exc:
        _fail(exc)
        return
    opts = BenchOptions(
        events=events,
        scale=_sizes(scale),
        sweep=_sizes(sweep),
        sweep_events=sweep_events,
        live_rate=live_rate,
        live_seconds=live_seconds,
        fresh_rates=_sizes(fresh_rates),
        fresh_seconds=fresh_seconds,
        warmup_seconds=warmup,
        results=results,
        work=work,
        keep=keep,
        repeats=repeats,
        kafka_rates=None if kafka_rates is None else _sizes(kafka_rates),
        goaccess=goaccess,
    )
    started = time.perf_counter()

    def say(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:7.0f}s[/] {text}", highlight=False)

    try:
        r = run_suite(cfg, config or DEFAULT_CONFIG, opts, say)
    except ApiStreamError as exc:
        _fail(exc)
        return
    name = stamp()
    paths = out.write(r, results, name)
    console.print(out.markdown(r, name))
    console.print(f"results: {paths['json']}, {paths['md']}, {paths['png']}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "pyspark":
            raise
        err_console.print(
            "[bold red]error:[/] pyspark is not installed: pip install 'apistream\\[spark]' for a "
            "local run (make setup does), or run under spark-submit on a cluster"
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
