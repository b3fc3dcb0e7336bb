"""What the commands print: the end-of-run summary (top endpoints and the data-quality account,
from SQLite), the batch summary, evaluation, top-N and the config check."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from apistream import sqlite_store
from apistream.accounting import OUTCOMES, verdict
from apistream.config import Config
from apistream.viz import views


def endpoint_stats(sqlite_path: str, min_requests: int) -> list[dict[str, Any]]:
    """Per endpoint over the whole run (viz.views.endpoint_summary of its window rows in
    SQLite): requests, p95 latency of all its events (within 0.5%), 5xx rate."""
    with sqlite_store.read_only(sqlite_path) as db:
        metrics = pd.read_sql("SELECT * FROM endpoint_metrics", db)
    summary = views.endpoint_summary(metrics)
    eligible = summary[summary["requests"] >= min_requests]
    return [
        {
            "endpoint": r.endpoint,
            "requests": int(r.requests),
            "p95_ms": None if pd.isna(r.latency_p95_ms) else float(r.latency_p95_ms),
            "error_rate_5xx": float(r.rate_5xx),
        }
        for r in eligible.itertuples()
    ]


def print_run_summary(console: Console, cfg: Config, top: int = 5) -> None:
    """Print top endpoints by p95 and by 5xx rate, the data-quality account, and the outputs."""
    from apistream.catalog import Paths

    paths = Paths.of(cfg)
    stats = endpoint_stats(paths.sqlite, cfg.report.min_requests)
    for title, key, fmt in (
        ("slowest endpoints (p95 latency)", "p95_ms", "{:,.1f} ms"),
        ("most failing endpoints (5xx rate)", "error_rate_5xx", "{:.2%}"),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("endpoint")
        table.add_column("requests", justify="right")
        table.add_column(key, justify="right")
        for row in sorted(stats, key=lambda r: -(r[key] or 0))[:top]:
            if row[key] is None:
                continue
            table.add_row(row["endpoint"], f"{row['requests']:,}", fmt.format(row[key]))
        console.print(table)
    totals = sqlite_store.read_totals(paths.sqlite)
    dq = Table(title="data quality (every input record accounted for)", title_justify="left")
    dq.add_column("outcome")
    dq.add_column("records", justify="right")
    for key in OUTCOMES:
        dq.add_row(key, f"{totals[key]:,}")
    for reason, n in totals["quarantined_by_reason"].items():
        dq.add_row(f"  quarantined: {reason}", f"{n:,}")
    dq.add_row("input", f"{totals['input']:,}", style="bold")
    dq.caption = verdict(totals)
    console.print(dq)
    _print_anomalies(console, paths.sqlite, cfg.source.path)
    console.print(
        f"outputs: SQLite {paths.sqlite} | events {paths.events} | quarantine "
        f"{paths.quarantine} | final windows {paths.endpoint_metrics} | checkpoints "
        f"{paths.checkpoint}"
    )


def _print_anomalies(console: Console, sqlite_path: str, input_dir: str, top: int = 12) -> None:
    from apistream.evaluation import evaluate, read_alerts, read_incidents

    alerts = read_alerts(sqlite_path)
    table = Table(title=f"anomalies ({len(alerts)})", title_justify="left")
    for col in ("window", "endpoint", "metric", "observed", "baseline", "z", "severity"):
        table.add_column(col)
    for a in alerts[:top]:
        table.add_row(
            a["window_start"],
            a["endpoint"],
            a["metric"],
            f"{a['observed']:,.3g}",
            f"{a['baseline_mean']:,.3g}",
            f"{a['z_score']:+.1f}",
            a["severity"],
        )
    console.print(table)
    incidents = read_incidents(input_dir)
    if incidents is not None:
        result = evaluate(incidents, alerts)
        console.print(
            f"against the generator's {result.incidents} incidents: precision "
            f"{result.precision:.2f}, recall {result.recall:.2f}"
        )


def print_evaluation(console: Console, incidents: list[dict[str, Any]], result: Any) -> None:
    """`apistream evaluate`: each incident and whether it was found, then precision/recall."""
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


def print_top(
    console: Console, by: str, title: str, rows: list[dict[str, Any]], rate: bool
) -> None:
    """`apistream top`: the ranked endpoint x method rows, a rate as a percentage."""
    table = Table(title=title, title_justify="left")
    for col in ("#", "endpoint", "method", "requests", by):
        table.add_column(col, justify="right" if col in ("#", "requests", by) else "left")
    for i, r in enumerate(rows, 1):
        value = f"{r['value']:.2%}" if rate else f"{r['value']:,.1f}"
        table.add_row(str(i), r["endpoint"], r["method"], f"{r['requests']:,}", value)
    console.print(table)


def config_summary(cfg: Config) -> str:
    """`apistream validate-config`: one line on what the config runs."""
    p, k = cfg.processing, cfg.source.kafka
    source = (
        f"kafka topic {k.topic} at {k.bootstrap_servers}"
        if cfg.source.format == "kafka"
        else cfg.source.path
    )
    return (
        f"config OK: {len(cfg.endpoints)} endpoints, window {p.window:g}s, watermark "
        f"{p.watermark:g}s, source {source}, output {cfg.sinks.output}"
    )


def print_batch_summary(console: Console, result: Any, min_requests: int, top: int = 5) -> None:
    """Daily top endpoints (rows of at least `min_requests`), SLO breaches and the
    reconciliation verdict of `apistream batch`."""
    daily = result.rollups["day"]
    if len(daily):
        table = Table(title="daily: slowest endpoints (exact p95)", title_justify="left")
        for col in ("day", "endpoint", "method", "requests", "p95_ms", "5xx rate"):
            table.add_column(col)
        ranked = daily[daily.requests >= min_requests].sort_values(
            "latency_p95_ms", ascending=False
        )
        for r in ranked.head(top).itertuples():
            table.add_row(
                r.period_start[:10],
                r.endpoint,
                r.method,
                f"{r.requests:,}",
                f"{r.latency_p95_ms:,.1f}",
                f"{r.error_rate_5xx:.2%}",
            )
        console.print(table)
    slo = Table(title="SLO report", title_justify="left")
    for col in ("endpoint", "requests", "slo_ms", "under slo", "availability", "breach"):
        slo.add_column(col)
    for r in result.slo.itertuples():
        compliance = (
            "-" if r.latency_compliance != r.latency_compliance else (f"{r.latency_compliance:.2%}")
        )
        slo.add_row(
            r.endpoint,
            f"{r.requests:,}",
            f"{r.latency_slo_ms:,.0f}",
            compliance,
            f"{r.availability:.3%}",
            r.breach or "",
            style="red" if r.breach else None,
        )
    console.print(slo)
    if result.reconciled:
        console.print(
            f"reconciliation: OK ({result.totals['lake_events']:,} events in the lake "
            f"= {result.totals['stream_requests']:,} requests in the stream metrics)"
        )
    else:
        bad = Table(title="reconciliation mismatches", title_justify="left")
        for col in result.mismatches.columns:
            bad.add_column(col)
        for row in result.mismatches.head(50).itertuples(index=False):
            bad.add_row(*[str(v) for v in row])
        console.print(bad)
