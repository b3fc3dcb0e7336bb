"""The options commands share, and which config key each one overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from apistream.config import Config, load_config
from apistream.ingest.formats import ACCESS_LOG_FORMATS, presets_help

# Option (parameter name) -> the config key it overrides; an option left out keeps the config's.
CONFIG_KEYS = {
    "input": "source.path",
    "output": "sinks.output",
    "source": "source.format",
    "topic": "source.kafka.topic",
    "bootstrap_servers": "source.kafka.bootstrap_servers",
    "events": "generator.events",
    "rate": "generator.rate",
    "seed": "generator.seed",
    "mode": "generator.mode",
    "start": "generator.start",
    "metrics_port": "metrics.port",
    "master": "spark.master",
    "format": "logs.format",
    "log_format": "logs.log_format",
    "timezone": "logs.timezone",
    "host": "dashboard.host",
    "port": "dashboard.port",
}


def load(config: Path | None, **options: Any) -> Config:
    """The config file (or the default) with the given options' values over it (CONFIG_KEYS
    names their keys, or an option is named by its dotted key; None leaves a key as it is),
    then APISTREAM_* variables."""
    overrides = {CONFIG_KEYS.get(k, k): v for k, v in options.items() if v is not None}
    return load_config(config, overrides)


def load_options(params: dict[str, Any], **more: Any) -> Config:
    """`load` from a command's parameters (its `locals()`): `config`, and every parameter
    CONFIG_KEYS names; the others (--sink, --follow, ...) are the command's own."""
    options = {k: v for k, v in params.items() if k in CONFIG_KEYS}
    return load(params.get("config"), **options, **more)


def _opt(*names: str, help: str, **kw: Any) -> Any:
    """A typer.Option (names first, then its help)."""
    return typer.Option(*names, help=help, **kw)


ConfigOpt = Annotated[
    Path | None, _opt("--config", help="YAML config file.", show_default="config/config.yaml")
]
InputOpt = Annotated[
    str | None, _opt("--input", help="Directory of JSON-lines input (source.path).")
]
OutputOpt = Annotated[
    str | None, _opt("--output", help="Root of lake, SQLite and checkpoints (sinks.output).")
]
EventsOpt = Annotated[int | None, _opt("--events", help="Events to generate.")]
RateOpt = Annotated[float | None, _opt("--rate", help="Events per second.")]
SeedOpt = Annotated[int | None, _opt("--seed", help="Generator seed.")]
TopicOpt = Annotated[str | None, _opt("--topic", help="Kafka topic (source.kafka.topic).")]
MasterOpt = Annotated[
    str | None,
    _opt("--master", help="Spark master, e.g. spark://127.0.0.1:7077 (spark.master; local[*])."),
]
BootstrapOpt = Annotated[
    str | None,
    _opt("--bootstrap-servers", help="Kafka host:port list (source.kafka.bootstrap_servers)."),
]
FormatOpt = Annotated[
    str, _opt("--format", help=" | ".join((*ACCESS_LOG_FORMATS, "json_mapped", "json")))
]
UntilIdleOpt = Annotated[
    bool, _opt("--until-idle", help="Process what is there, flush final windows, exit.")
]
ModeOpt = Annotated[
    str | None, _opt(help="backfill (as fast as possible) or live (at --rate in real time).")
]
StartOpt = Annotated[str | None, _opt(help="Backfill start, ISO-8601 UTC.")]
SinkOpt = Annotated[
    str, _opt(help="files (JSON lines under --input) or kafka (source.kafka.topic).")
]
ManifestOpt = Annotated[
    str | None, _opt(help="Directory for manifest.json (default: --input / source.path).")
]
SourceOpt = Annotated[str | None, _opt("--source", help="json (files) or kafka (source.format).")]
MetricsPortOpt = Annotated[
    int | None, _opt("--metrics-port", help="Serve Prometheus /metrics here (metrics.port).")
]
DemoOutputOpt = Annotated[
    str, _opt("--output", help="Root of the demo's input, lake, SQLite, checkpoints.")
]
DemoEventsOpt = Annotated[int, _opt("--events", help="Events to generate.")]
DemoRateOpt = Annotated[float, _opt("--rate", help="Simulated events per second.")]
LogPathsOpt = Annotated[
    list[Path], typer.Argument(help="Log files (plain or .gz), or one directory.")
]
LogFormatOpt = Annotated[
    str | None,
    _opt(
        "--log-format",
        help=f"The server's log format string, or a preset ({presets_help()}).",
    ),
]
FollowOpt = Annotated[
    bool, _opt("--follow", help="Keep streaming new files that appear in the directory.")
]
TimezoneOpt = Annotated[str | None, _opt(help="Zone of timestamps without an offset.")]
ByOpt = Annotated[
    str, _opt(help="p95 | p99 | error_4xx | error_5xx | busiest; p50 too with --from/--to")
]
PeriodOpt = Annotated[str, _opt(help="window (stream metrics) or day (needs `apistream batch`)")]
WhenOpt = Annotated[
    str | None, _opt(help="Window start (ISO) or day (YYYY-MM-DD); default: the latest.")
]
CountOpt = Annotated[int | None, _opt("--n", "-n", help="How many.", show_default="report.top_n")]
MinRequestsOpt = Annotated[
    int | None,
    _opt(help="Leave out rows with fewer requests.", show_default="report.min_ranked_requests"),
]
FromOpt = Annotated[
    str | None,
    _opt("--from", help="First day (YYYY-MM-DD) or hour (YYYY-MM-DDTHH), UTC (default: all)."),
]
ToOpt = Annotated[
    str | None, _opt("--to", help="Last day or hour, included (default: up to the newest).")
]
RangeFromOpt = Annotated[
    str | None,
    _opt(
        "--from",
        help="With --to: rank endpoints over the final windows from this day (YYYY-MM-DD), "
        "hour (YYYY-MM-DDTHH) or minute (YYYY-MM-DDTHH:MM), UTC.",
    ),
]
RangeToOpt = Annotated[
    str | None,
    _opt(
        "--to",
        help="Last day, hour or minute of the range, included (windows starting before its "
        "end: --to 2026-11-29T13 ends at 14:00, --to 2026-11-29T13:05 at 13:06).",
    ),
]
JsonOpt = Annotated[
    bool,
    _opt(
        "--json",
        help="Print only a JSON list of {endpoint, requests, p50, p95, p99, error_rate_4xx, "
        "error_rate_5xx} (needs --from/--to).",
    ),
]
HostOpt = Annotated[str | None, _opt(help="Address to listen on.")]
PortOpt = Annotated[int | None, _opt(help="Port to listen on.")]
TargetOpt = Annotated[
    str, _opt("--target", help="dataproc, emr, databricks or k8s.", show_default=False)
]
DryRunOpt = Annotated[bool, _opt("--dry-run", help="Print the artefacts instead of writing them.")]
OutDirOpt = Annotated[
    Path | None, _opt("--out", help="Directory to write them to.", show_default="deploy-out/TARGET")
]
JobUntilIdleOpt = Annotated[
    bool, _opt("--until-idle", help="A job that ends once the input is processed.")
]
EvaluateJsonOpt = Annotated[
    bool, _opt("--json", help="Print only the JSON scores per detector (machine-readable).")
]
