"""What the commands print: the end-of-run summary (top endpoints and the data-quality account,
from SQLite), the batch summary, evaluation, top-N and the config check."""

from __future__ import annotations

from collections.abc import Sequence
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
    _print_anomalies(console, paths.sqlite, cfg.source.path, cfg.anomaly.detectors)
    console.print(
        f"outputs: SQLite {paths.sqlite} | events {paths.events} | quarantine "
        f"{paths.quarantine} | final windows {paths.endpoint_metrics} | checkpoints "
        f"{paths.checkpoint}"
    )


def _print_anomalies(
    console: Console, sqlite_path: str, input_dir: str, detectors: Sequence[str], top: int = 12
) -> None:
    from apistream.evaluation import detector_evaluations, ratio, read_alerts, read_manifest

    alerts = read_alerts(sqlite_path)
    table = Table(title=f"anomalies ({len(alerts)})", title_justify="left")
    for col in (
        "window",
        "detector",
        "endpoint",
        "metric",
        "observed",
        "expected",
        "z",
        "severity",
    ):
        table.add_column(col)
    for a in alerts[:top]:
        table.add_row(
            a["window_start"],
            a["detector"],
            a["endpoint"],
            a["metric"],
            f"{a['observed']:,.3g}",
            f"{a['baseline_mean']:,.3g}",
            f"{a['z_score']:+.1f}",
            a["severity"],
        )
    console.print(table)
    manifest = read_manifest(input_dir)
    if manifest is not None:
        scores = [
            f"{name} precision {_num(ratio(r.true_alerts, r.alerts), '{:.2f}')}, "
            f"recall {_num(ratio(r.found, r.incidents), '{:.2f}')}"
            for name, r in detector_evaluations(manifest, alerts, detectors).items()
        ]
        console.print(
            f"against the generator's {len(manifest['incidents'])} incidents: " + "; ".join(scores)
        )


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    """A score, or "n/a" when it is undefined (None)."""
    return "n/a" if value is None else fmt.format(value)


def print_evaluation(
    console: Console,
    manifest: dict[str, Any],
    alerts: list[dict[str, Any]],
    detectors: Sequence[str] = (),
) -> None:
    """`apistream evaluate`: per detector a table of recall and median time to detect per
    incident kind (precision only overall, see evaluation.kind_scores) and its false alarms
    per day; then each incident, the detectors that found it and when."""
    from apistream.evaluation import detector_evaluations, report, simulated_days

    evaluations = detector_evaluations(manifest, alerts, detectors)
    scores = report(evaluations, simulated_days(manifest))["detectors"]
    for name, result in evaluations.items():
        console.print(_detector_table(name, result, scores[name]))
        console.print(
            f"{name}: alerts {result.alerts} (true {result.true_alerts}, false "
            f"{len(result.false_alerts)}), false alarms per day "
            f"{_num(scores[name]['false_alarms_per_day'], '{:.2f}')}"
        )
    console.print(_incident_table(manifest["incidents"], evaluations))


def _detector_table(name: str, result: Any, scores: dict[str, Any]) -> Table:
    """One detector's scores: a row per incident kind, then "all"."""
    table = Table(
        title=f"detector {name}",
        title_justify="left",
        caption="precision per kind: n/a (a false alarm has no kind)",
        caption_justify="left",
    )
    for col in ("kind", "incidents", "found", "recall", "precision", "median TTD (windows)"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    rows = [*scores["kinds"].items(), ("all", scores["all"])]
    for kind, s in rows:
        ttd = [t for k, t in zip(result.kinds, result.ttd, strict=True) if kind in (k, "all")]
        table.add_row(
            kind,
            str(len(ttd)),
            str(sum(t is not None for t in ttd)),
            _num(s["recall"]),
            _num(s["precision"]),
            _num(s["median_ttd_windows"], "{:g}"),
            style="bold" if kind == "all" else None,
        )
    return table


def _incident_table(incidents: list[dict[str, Any]], evaluations: dict[str, Any]) -> Table:
    """Each incident: the detectors that found it (with their time to detect) and the
    earliest time to detect of any of them, in windows."""
    from apistream.evaluation import ANY_DETECTOR

    table = Table(title="incidents", title_justify="left")
    for col in ("kind", "endpoint", "method", "start", "end", "found by", "TTD"):
        table.add_column(col)
    named = {n: r for n, r in evaluations.items() if n != ANY_DETECTOR} or evaluations
    for k, i in enumerate(incidents):
        ttd = {n: r.ttd[k] for n, r in named.items() if r.ttd[k] is not None}
        found_by = ", ".join(f"{n} ({t})" for n, t in ttd.items())
        table.add_row(
            i.get("kind", "unknown"),
            i["endpoint"],
            i.get("method") or "*",
            i["start"],
            i["end"],
            found_by or "NO",
            str(min(ttd.values())) if ttd else "-",
        )
    return table


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


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.1f}"


def print_top_range(console: Console, title: str, rows: list[dict[str, Any]]) -> None:
    """`apistream top --from --to`: the ranked endpoints (top.top_range rows)."""
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("endpoint")
    for col in ("requests", "p50 ms", "p95 ms", "p99 ms", "4xx", "5xx"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rows, 1):
        table.add_row(
            str(i),
            r["endpoint"],
            f"{r['requests']:,}",
            *(_ms(r[p]) for p in ("p50", "p95", "p99")),
            f"{r['error_rate_4xx']:.2%}",
            f"{r['error_rate_5xx']:.2%}",
        )
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
