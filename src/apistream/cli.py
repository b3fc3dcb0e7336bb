"""Command line: generate, stream, demo, ingest, top, batch, evaluate, report, dashboard,
bench, deploy, validate-config. Each command loads the config with its options over it and
calls one function; errors are one line (console.reports_errors)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from apistream import cli_options as o
from apistream.bench.command import bench
from apistream.console import console, err_console, reports_errors
from apistream.ingest.formats import DEFAULT_ACCESS_LOG_FORMAT

app = typer.Typer(
    help="APIStream Analytics: real-time API request-log analytics on Spark Structured Streaming.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
@reports_errors
def generate(
    config: o.ConfigOpt = None,
    input: o.InputOpt = None,
    events: o.EventsOpt = None,
    rate: o.RateOpt = None,
    seed: o.SeedOpt = None,
    mode: o.ModeOpt = None,
    start: o.StartOpt = None,
    sink: o.SinkOpt = "files",
    topic: o.TopicOpt = None,
    bootstrap_servers: o.BootstrapOpt = None,
    manifest: o.ManifestOpt = None,
) -> None:
    """Write synthetic API traffic (with defects and incidents) as JSON-lines files or to Kafka."""
    from apistream import run

    cfg = o.load_options(locals())
    with run.stop_on_signals() as stop:
        run.generate(cfg, stop, sink, manifest)


@app.command()
@reports_errors
def stream(
    config: o.ConfigOpt = None,
    input: o.InputOpt = None,
    output: o.OutputOpt = None,
    until_idle: o.UntilIdleOpt = False,
    source: o.SourceOpt = None,
    topic: o.TopicOpt = None,
    bootstrap_servers: o.BootstrapOpt = None,
    metrics_port: o.MetricsPortOpt = None,
    master: o.MasterOpt = None,
) -> None:
    """Run the streaming pipeline over the input directory or Kafka topic (Ctrl-C stops)."""
    from apistream import run

    run.stream_and_summarise(o.load_options(locals()), until_idle)


@app.command()
@reports_errors
def demo(
    config: o.ConfigOpt = None,
    output: o.DemoOutputOpt = "output/demo",
    events: o.DemoEventsOpt = 1_000_000,
    rate: o.DemoRateOpt = 400,
    seed: o.SeedOpt = None,
    master: o.MasterOpt = None,
) -> None:
    """Generate ~1M events with every defect kind, stream them, print a summary."""
    from apistream import run

    incidents = {"generator.incidents.random_count": 4}
    cfg = o.load_options(locals(), input=f"{output}/incoming", mode="backfill", **incidents)
    run.demo(cfg, output)


@app.command()
@reports_errors
def ingest(
    paths: o.LogPathsOpt,
    format: o.FormatOpt = DEFAULT_ACCESS_LOG_FORMAT,
    log_format: o.LogFormatOpt = None,
    follow: o.FollowOpt = False,
    timezone: o.TimezoneOpt = None,
    config: o.ConfigOpt = None,
    output: o.OutputOpt = None,
) -> None:
    """Replay existing access logs through the pipeline (or tail a directory with --follow)."""
    from apistream import run
    from apistream.ingest.plan import ingest_config

    run.stream_and_summarise(ingest_config(o.load_options(locals()), paths, follow), not follow)


@app.command()
@reports_errors
def evaluate(
    config: o.ConfigOpt = None,
    input: o.InputOpt = None,
    output: o.OutputOpt = None,
    as_json: o.EvaluateJsonOpt = False,
) -> None:
    """Precision, recall, time to detect and false alarms per day of each anomaly detector
    (per incident kind) against the generator's incidents."""
    import json

    from apistream.evaluation import evaluate_detectors, read_run
    from apistream.summary import print_evaluation

    cfg = o.load_options(locals())
    manifest, alerts = read_run(cfg.source.path, cfg.sqlite_path)
    if as_json:
        scores = evaluate_detectors(manifest, alerts, cfg.anomaly.detectors)
        typer.echo(json.dumps(scores, indent=2))
    else:
        print_evaluation(console, manifest, alerts, cfg.anomaly.detectors)


@app.command()
@reports_errors
def top(
    by: o.ByOpt = "p95",
    period: o.PeriodOpt = "window",
    when: o.WhenOpt = None,
    first: o.RangeFromOpt = None,
    last: o.RangeToOpt = None,
    n: o.CountOpt = None,
    min_requests: o.MinRequestsOpt = None,
    as_json: o.JsonOpt = False,
    config: o.ConfigOpt = None,
    output: o.OutputOpt = None,
) -> None:
    """Top-N endpoints: slowest by p95/p99, highest 4xx/5xx rates, busiest. Endpoint x method
    rows of one window or day; or, with --from/--to, endpoints (methods merged) over the final
    windows of the range, percentiles from their merged latency histograms (within 0.5%)."""
    import json

    from apistream import sqlite_store
    from apistream.errors import UsageError
    from apistream.summary import print_top, print_top_range
    from apistream.top import open_windows, range_of, top_n, top_range

    cfg = o.load_options(locals())
    n = cfg.report.top_n if n is None else n
    least = cfg.report.min_ranked_requests if min_requests is None else min_requests
    if first is None and last is None:
        if as_json:
            raise UsageError("--json needs a range: give --from and --to")
        with sqlite_store.read_only(cfg.sqlite_path) as db:
            ranked, rows = top_n(db, by, period, when, n, least)
        print_top(console, by, f"top {n} by {by}, {period} {ranked}", rows, by.startswith("error"))
        return
    span = range_of(first, last, period, when)
    with sqlite_store.read_only(cfg.sqlite_path) as db:
        rows = top_range(db, by, span, n, least)
        left_out = open_windows(db, span)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    print_top_range(console, f"top {n} by {by}, final windows {span}", rows)
    if left_out:
        console.print(f"{left_out} window(s) in the range not final yet, left out", highlight=False)


@app.command()
@reports_errors
def batch(
    first: o.FromOpt = None,
    last: o.ToOpt = None,
    config: o.ConfigOpt = None,
    output: o.OutputOpt = None,
) -> None:
    """Rollups, SLO report and reconciliation over the lake; exit 3 on any mismatch."""
    from apistream import sqlite_store
    from apistream.batch import run_batch
    from apistream.period import Period
    from apistream.session import build_spark
    from apistream.summary import print_batch_summary

    cfg = o.load_options(locals())
    period = Period.parse(first, last)
    sqlite_store.require(cfg.sqlite_path)
    spark = build_spark(cfg.spark)
    try:
        result = run_batch(spark, cfg, period)
    finally:
        spark.stop()
    print_batch_summary(console, result, cfg.report.min_ranked_requests)
    result.require_reconciled(period)


@app.command()
@reports_errors
def train(
    first: o.FromOpt = None,
    last: o.ToOpt = None,
    config: o.ConfigOpt = None,
    output: o.OutputOpt = None,
) -> None:
    """Fit the forecast detector (Spark MLlib) on the finalised windows, and save it."""
    from apistream.period import Period
    from apistream.run import train_forecast

    cfg = o.load_options(locals())
    train_forecast(cfg, Period.parse(first, last))


@app.command()
@reports_errors
def report(config: o.ConfigOpt = None, output: o.OutputOpt = None) -> None:
    """Write an HTML report (interactive, works offline) and PNG charts of a run's results."""
    from apistream.report import write_report

    files = write_report(o.load_options(locals()))
    console.print(f"report: {files.html}", highlight=False)
    for png in files.pngs:
        console.print(f"chart:  {png}", highlight=False)


@app.command()
@reports_errors
def dashboard(
    config: o.ConfigOpt = None,
    output: o.OutputOpt = None,
    host: o.HostOpt = None,
    port: o.PortOpt = None,
) -> None:
    """Serve a live dashboard of the SQLite results, refreshed while the stream writes them."""
    from apistream.dashboard.app import serve

    serve(o.load_options(locals()))


@app.command("validate-config")
@reports_errors
def validate_config(config: o.ConfigOpt = None) -> None:
    """Check a config file (and APISTREAM_* overrides); exit non-zero naming a bad key."""
    from apistream.summary import config_summary

    console.print(config_summary(o.load_options(locals())))


@app.command()
@reports_errors
def deploy(
    target: o.TargetOpt,
    config: o.ConfigOpt = None,
    dry_run: o.DryRunOpt = False,
    out: o.OutDirOpt = None,
    until_idle: o.JobUntilIdleOpt = False,
) -> None:
    """The commands and job specs that run the stream on a cluster, from the config: paths,
    package, Kafka connector and sizes (section deploy; see README "Run on a cluster")."""
    from apistream.deploy import render, write_artifacts

    artifacts = render(target, o.load_options(locals()), until_idle)
    if dry_run:
        for a in artifacts:
            console.print(f"# ---- {a.name} ----", highlight=False)
            console.print(a.text, end="", highlight=False, markup=False, soft_wrap=True)
        return
    folder = out or Path("deploy-out") / target
    write_artifacts(artifacts, folder)
    console.print(f"wrote {', '.join(a.name for a in artifacts)} to {folder}", highlight=False)


app.command()(reports_errors(bench))


def main() -> None:
    """The `apistream` entry point: Ctrl-C exits 130; a missing pyspark is one line."""
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
