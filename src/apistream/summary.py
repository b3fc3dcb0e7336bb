"""The end-of-run summary: top endpoints (from the events lake) and the data-quality account."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from apistream import sqlite_store
from apistream.config import Config, is_remote
from apistream.lake import read_table


def endpoint_stats(events_dir: str, min_requests: int = 100) -> list[dict[str, Any]]:
    """Per endpoint over the whole run: requests, exact p95 latency, 5xx rate."""
    table = read_table(events_dir, ["endpoint", "latency_ms", "status"])
    if table.num_rows == 0:
        return []
    endpoints = table["endpoint"].to_numpy(zero_copy_only=False)
    latency = table["latency_ms"].to_numpy()
    is5xx = pc.greater_equal(table["status"], 500).to_numpy(zero_copy_only=False)
    out = []
    for name in np.unique(endpoints):
        mask = endpoints == name
        n = int(mask.sum())
        if n < min_requests:
            continue
        out.append(
            {
                "endpoint": str(name),
                "requests": n,
                "p95_ms": float(np.percentile(latency[mask], 95, method="inverted_cdf")),
                "error_rate_5xx": float(is5xx[mask].mean()),
            }
        )
    return out


def print_run_summary(console: Console, cfg: Config, top: int = 5) -> None:
    """Print top endpoints by p95 and by 5xx rate, the data-quality account, and the outputs."""
    from apistream.catalog import Paths

    paths = Paths.of(cfg)
    # Exact figures from the events lake, read here; a lake on object storage is not.
    stats = [] if is_remote(paths.events) else endpoint_stats(paths.events)
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
    for key in ("valid", "quarantined", "duplicates", "late"):
        dq.add_row(key, f"{totals[key]:,}")
    for reason, n in totals["quarantined_by_reason"].items():
        dq.add_row(f"  quarantined: {reason}", f"{n:,}")
    balanced = totals["input"] == (
        totals["valid"] + totals["quarantined"] + totals["duplicates"] + totals["late"]
    )
    dq.add_row("input", f"{totals['input']:,}", style="bold")
    dq.caption = "input = valid + quarantined + duplicates + late: " + (
        "holds" if balanced else "DOES NOT HOLD"
    )
    console.print(dq)
    _print_anomalies(console, paths.sqlite, cfg.source.path)
    console.print(
        f"outputs: SQLite {paths.sqlite} | events {paths.events} | quarantine "
        f"{paths.quarantine} | final windows {paths.endpoint_metrics} | checkpoints "
        f"{paths.checkpoint}"
    )


def _print_anomalies(console: Console, sqlite_path: str, input_dir: str, top: int = 12) -> None:
    import json
    import sqlite3
    from pathlib import Path

    from apistream.evaluation import evaluate

    with sqlite_store.read_only(sqlite_path) as db:
        db.row_factory = sqlite3.Row
        alerts = [
            dict(r)
            for r in db.execute("SELECT * FROM anomalies ORDER BY window_start, endpoint, metric")
        ]
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
    manifest = Path(input_dir) / "manifest.json"
    if manifest.is_file():
        result = evaluate(json.loads(manifest.read_text())["incidents"], alerts)
        console.print(
            f"against the generator's {result.incidents} incidents: precision "
            f"{result.precision:.2f}, recall {result.recall:.2f}"
        )


def print_batch_summary(console: Console, result: Any, top: int = 5) -> None:
    """Daily top endpoints, SLO breaches and the reconciliation verdict of `apistream batch`."""
    daily = result.rollups["day"]
    if len(daily):
        table = Table(title="daily: slowest endpoints (exact p95)", title_justify="left")
        for col in ("day", "endpoint", "method", "requests", "p95_ms", "5xx rate"):
            table.add_column(col)
        ranked = daily[daily.requests >= 20].sort_values("latency_p95_ms", ascending=False)
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
