"""Static charts (matplotlib) of the same views as `figures`: PNGs for the report, inline
images in the notebook. Figures are built with the object API (no pyplot state, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from apistream.accounting import OUTCOMES
from apistream.viz import views


def _new(rows: int = 1, cols: int = 1, size: tuple[float, float] = (12, 5)):
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def latency(lat: pd.DataFrame, markers: pd.DataFrame) -> Figure:
    """p50/p95/p99 per endpoint over time, log scale; latency anomalies as red crosses."""
    fig, axes = _new(3, 1, (12, 10))
    colours = matplotlib.colormaps["tab20"].colors
    for ax, col in zip(axes[:, 0], views.PERCENTILE_COLUMNS, strict=True):
        for i, (endpoint, g) in enumerate(lat.groupby("endpoint", sort=True)):
            ax.plot(g["window_start"], g[col], label=endpoint, linewidth=1.2, color=colours[i % 20])
        ax.set_yscale("log")
        ax.set_ylabel(f"{col.split('_')[1]} (ms)")
        ax.grid(True, alpha=0.3)
    _mark_anomalies(axes[1, 0], markers, "latency")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.suptitle("Latency per endpoint (ms, log scale)")
    return fig


def _mark_anomalies(ax: Any, markers: pd.DataFrame, chart: str) -> None:
    """Red crosses at the anomalies of one chart."""
    hits = markers[markers["chart"] == chart]
    if not hits.empty:
        ax.scatter(
            hits["window_start"],
            hits["observed"],
            marker="x",
            s=80,
            c="red",
            label="anomaly",
            zorder=5,
        )


def error_rates(err: pd.DataFrame, markers: pd.DataFrame) -> Figure:
    """4xx and 5xx rates per window."""
    fig, axes = _new()
    ax = axes[0, 0]
    ax.plot(err["window_start"], err["rate_4xx"], label="4xx rate")
    ax.plot(err["window_start"], err["rate_5xx"], label="5xx rate")
    _mark_anomalies(ax, markers, "errors")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("4xx / 5xx error rates per window")
    return fig


def throughput(per_window: pd.DataFrame, per_hour: pd.DataFrame, markers: pd.DataFrame) -> Figure:
    """Requests per minute (each window) and per hour; traffic anomalies shaded."""
    fig, axes = _new(2, 1, (12, 7))
    ax = axes[0, 0]
    ax.plot(per_window["period_start"], per_window["events_per_minute"])
    for r in markers[markers["chart"] == "traffic"].itertuples():
        ax.axvspan(r.window_start, pd.to_datetime(r.window_end, utc=True), color="red", alpha=0.2)
    ax.set_title("requests per minute (per window)")
    ax.grid(True, alpha=0.3)
    ax = axes[1, 0]
    ax.bar(per_hour["period_start"], per_hour["requests"], width=1 / 24 * 0.9, align="edge")
    ax.set_title("requests per hour")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.grid(True, alpha=0.3)
    return fig


def top_endpoints(summary: pd.DataFrame, n: int, min_requests: int) -> Figure:
    """Top-N bars: slowest (p95), most failing (5xx rate) and busiest endpoints."""
    fig, axes = _new(1, 3, (15, max(3.5, 0.4 * n + 1.5)))
    panels = (
        ("latency_p95_ms", "slowest: p95 (ms)", "{:,.1f}"),
        ("rate_5xx", "most failing: 5xx rate", "{:.2%}"),
        ("requests", "busiest: requests", "{:,.0f}"),
    )
    for ax, (col, title, fmt) in zip(axes[0], panels, strict=True):
        top = views.top_n(summary, col, n, min_requests).iloc[::-1]
        bars = ax.barh(top["endpoint"], top[col])
        ax.bar_label(bars, labels=[fmt.format(v) for v in top[col]], fontsize=8, padding=2)
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(x=0.25)
    fig.suptitle(f"Top {n} endpoints (at least {min_requests:,} requests)")
    return fig


def data_quality(account: dict[str, int], reasons: pd.DataFrame) -> Figure:
    """Outcome of every input record, and quarantined records by reason."""
    fig, axes = _new(1, 2, (13, 4.5))
    outcomes = list(OUTCOMES)
    bars = axes[0, 0].bar(
        outcomes, [account[k] for k in outcomes], color=["#4daf4a", "#e41a1c", "#984ea3", "#ff7f00"]
    )
    axes[0, 0].bar_label(bars, labels=[f"{account[k]:,}" for k in outcomes], fontsize=8)
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_title(f"outcome of every input record ({account['input']:,} in total)")
    bars = axes[0, 1].bar(reasons["reason"], reasons["records"])
    axes[0, 1].bar_label(bars, labels=[f"{v:,}" for v in reasons["records"]], fontsize=8)
    axes[0, 1].tick_params(axis="x", rotation=30, labelsize=8)
    axes[0, 1].set_title("quarantined, by reason")
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG."""
    fig.savefig(path, dpi=100)
    return path
