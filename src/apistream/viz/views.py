"""The frames behind every chart, computed from the SQLite tables. Pure pandas, no I/O.

Wherever a p50/p95/p99 covers several (endpoint, method, window) rows, it is the percentile of
those rows' events, from their merged histograms (range_percentiles.py); `worst_p95_ms` is the
highest single window p95.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from apistream.accounting import account_of, reasons_of
from apistream.range_percentiles import PERCENTILE_COLUMNS, range_percentiles


def latency_over_time(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per window and endpoint: p50/p95/p99 of the events of all its methods."""
    cols = ["window_start", "endpoint", "requests", *PERCENTILE_COLUMNS]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    out = range_percentiles(metrics, ["window_start", "endpoint"])
    out["window_start"] = pd.to_datetime(out["window_start"], utc=True)
    return out[cols].sort_values(["endpoint", "window_start"]).reset_index(drop=True)


def error_rates_over_time(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per window over all endpoints: requests, 4xx and 5xx counts and rates."""
    cols = ["window_start", "requests", "status_4xx", "status_5xx", "rate_4xx", "rate_5xx"]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    out = metrics.groupby("window_start", as_index=False)[
        ["requests", "status_4xx", "status_5xx"]
    ].sum()
    out["rate_4xx"] = out["status_4xx"] / out["requests"]
    out["rate_5xx"] = out["status_5xx"] / out["requests"]
    out["window_start"] = pd.to_datetime(out["window_start"], utc=True)
    return out[cols].sort_values("window_start").reset_index(drop=True)


def throughput(table: pd.DataFrame, granularity: str) -> pd.DataFrame:
    """Rows of the `throughput` table for 'window' (per minute) or 'hour', oldest first."""
    cols = ["period_start", "requests", "events_per_second", "events_per_minute", "is_final"]
    if table.empty:
        return pd.DataFrame(columns=cols)
    out = table[table["granularity"] == granularity][cols].copy()
    out["period_start"] = pd.to_datetime(out["period_start"], utc=True)
    return out.sort_values("period_start").reset_index(drop=True)


def endpoint_summary(metrics: pd.DataFrame, endpoints: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per endpoint over all windows: requests, 4xx/5xx rates, mean latency, p95 of all its
    events, worst window p95, and the SLO when the dimension has it."""
    cols = [
        "endpoint",
        "requests",
        "rate_4xx",
        "rate_5xx",
        "latency_avg_ms",
        "latency_p95_ms",
        "worst_p95_ms",
        "latency_slo_ms",
    ]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    out = range_percentiles(metrics, ["endpoint"], {"latency_p95_ms": 0.95})
    counts = metrics.groupby("endpoint", as_index=False).agg(
        status_4xx=("status_4xx", "sum"),
        status_5xx=("status_5xx", "sum"),
        latency_sum_ms=("latency_sum_ms", "sum"),
        latency_count=("latency_count", "sum"),
        worst_p95_ms=("latency_p95_ms", "max"),
    )
    out = out.merge(counts, on="endpoint")
    out["latency_avg_ms"] = out["latency_sum_ms"] / out["latency_count"].where(
        out["latency_count"] > 0
    )
    out["rate_4xx"] = out["status_4xx"] / out["requests"]
    out["rate_5xx"] = out["status_5xx"] / out["requests"]
    slo = (
        endpoints[["endpoint", "latency_slo_ms"]]
        if endpoints is not None and not endpoints.empty
        else pd.DataFrame({"endpoint": [], "latency_slo_ms": []})
    )
    out = out.merge(slo, on="endpoint", how="left")
    return out[cols].sort_values("requests", ascending=False).reset_index(drop=True)


def top_n(summary: pd.DataFrame, by: str, n: int, min_requests: int) -> pd.DataFrame:
    """The n endpoints with the highest `by`, among those with at least min_requests."""
    eligible = summary[summary["requests"] >= min_requests]
    return eligible.sort_values([by, "endpoint"], ascending=[False, True]).head(n)


def quality_account(quality: pd.DataFrame) -> dict[str, int]:
    """The data-quality account over all batches: input, valid, quarantined, duplicates, late."""
    return account_of(quality)


def quarantine_by_reason(quality: pd.DataFrame) -> pd.DataFrame:
    """Quarantined records per reason over all batches, most frequent first."""
    totals = reasons_of(quality)
    out = pd.DataFrame({"reason": list(totals), "records": list(totals.values())})
    return out.sort_values(["records", "reason"], ascending=[False, True]).reset_index(drop=True)


def anomaly_markers(anomalies: pd.DataFrame) -> pd.DataFrame:
    """Anomalies with a `chart` column saying where each is marked: latency, errors, traffic."""
    if anomalies.empty:
        return pd.DataFrame(columns=["window_start", "endpoint", "metric", "observed", "chart"])
    out = anomalies.copy()
    metric = out["metric"].astype(str).str.lower()
    out["chart"] = np.select(
        [metric.str.contains("latency|p50|p95|p99"), metric.str.contains("error|4xx|5xx")],
        ["latency", "errors"],
        default="traffic",
    )
    out["window_start"] = pd.to_datetime(out["window_start"], utc=True)
    return out.reset_index(drop=True)
