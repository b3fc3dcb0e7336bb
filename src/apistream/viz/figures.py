"""Interactive charts (plotly) of the views; the report inlines them, the notebook shows them."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from apistream.accounting import OUTCOMES
from apistream.viz import views

_PCT_TITLES = {"latency_p50_ms": "p50", "latency_p95_ms": "p95", "latency_p99_ms": "p99"}
_SEVERITY_COLOURS = {"critical": "#b2182b", "high": "#d6604d", "warning": "#f4a582"}


def _markers(markers: pd.DataFrame, chart: str, name: str = "anomaly") -> go.Scatter | None:
    rows = markers[markers["chart"] == chart]
    if rows.empty:
        return None
    colours = [_SEVERITY_COLOURS.get(str(s).lower(), "#b2182b") for s in rows.get("severity", [])]
    text = [
        f"{r.endpoint} {r.metric}: {r.observed:,.4g} (z={getattr(r, 'z_score', float('nan')):.1f})"
        for r in rows.itertuples()
    ]
    return go.Scatter(
        x=rows["window_start"],
        y=rows["observed"],
        mode="markers",
        name=name,
        text=text,
        hoverinfo="text+x",
        marker={"symbol": "x", "size": 12, "color": colours or "#b2182b", "line": {"width": 1}},
    )


def latency(lat: pd.DataFrame, markers: pd.DataFrame) -> go.Figure:
    """p50, p95 and p99 over time, one line per endpoint (click the legend to isolate one)."""
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=("p50", "p95", "p99"),
    )
    for i, col in enumerate(views.PERCENTILE_COLUMNS, start=1):
        for endpoint, g in lat.groupby("endpoint", sort=True):
            fig.add_trace(
                go.Scatter(
                    x=g["window_start"],
                    y=g[col],
                    mode="lines",
                    name=endpoint,
                    legendgroup=endpoint,
                    showlegend=i == 1,
                    hovertemplate=f"{endpoint}<br>%{{x}}<br>{_PCT_TITLES[col]} %{{y:,.1f}} ms",
                ),
                row=i,
                col=1,
            )
        fig.update_yaxes(title_text="ms", type="log", row=i, col=1)
    trace = _markers(markers, "latency")
    if trace is not None:
        fig.add_trace(trace, row=2, col=1)
    fig.update_layout(title="Latency per endpoint (ms, log scale)", height=900, hovermode="closest")
    return fig


def error_rates(err: pd.DataFrame, markers: pd.DataFrame) -> go.Figure:
    """4xx and 5xx rates per window over all endpoints."""
    fig = go.Figure()
    for col, name in (("rate_4xx", "4xx rate"), ("rate_5xx", "5xx rate")):
        fig.add_trace(go.Scatter(x=err["window_start"], y=err[col], mode="lines", name=name))
    trace = _markers(markers, "errors")
    if trace is not None:
        fig.add_trace(trace)
    fig.update_yaxes(tickformat=".1%", title_text="share of requests")
    fig.update_layout(title="4xx / 5xx error rates per window", height=400)
    return fig


def throughput(
    per_window: pd.DataFrame, per_hour: pd.DataFrame, markers: pd.DataFrame
) -> go.Figure:
    """Requests per minute (each window) and per hour; traffic anomalies shaded."""
    fig = make_subplots(
        rows=2,
        cols=1,
        vertical_spacing=0.12,
        subplot_titles=("requests per minute (per window)", "requests per hour"),
    )
    fig.add_trace(
        go.Scatter(
            x=per_window["period_start"],
            y=per_window["events_per_minute"],
            mode="lines",
            name="per minute",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=per_hour["period_start"], y=per_hour["requests"], name="per hour"), row=2, col=1
    )
    for r in markers[markers["chart"] == "traffic"].itertuples():
        fig.add_vrect(
            x0=r.window_start,
            x1=pd.to_datetime(r.window_end, utc=True),
            fillcolor="#d6604d",
            opacity=0.3,
            line_width=0,
            row=1,
            col=1,
        )
    fig.update_layout(title="Throughput", height=600, showlegend=False)
    return fig


def top_endpoints(summary: pd.DataFrame, n: int, min_requests: int) -> go.Figure:
    """Top-N bars: slowest (p95), most failing (5xx rate) and busiest endpoints."""
    panels = (
        ("latency_p95_ms", "slowest: p95 (ms)", ",.1f"),
        ("rate_5xx", "most failing: 5xx rate", ".2%"),
        ("requests", "busiest: requests", ","),
    )
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.2
    )
    for i, (col, _, fmt) in enumerate(panels, start=1):
        top = views.top_n(summary, col, n, min_requests).iloc[::-1]
        fig.add_trace(
            go.Bar(
                x=top[col],
                y=top["endpoint"],
                orientation="h",
                name=col,
                texttemplate=f"%{{x:{fmt}}}",
                hovertemplate=f"%{{y}}: %{{x:{fmt}}}<extra></extra>",
            ),
            row=1,
            col=i,
        )
    fig.update_layout(
        title=f"Top {n} endpoints (at least {min_requests:,} requests)",
        height=max(350, 40 * n + 120),
        showlegend=False,
    )
    return fig


def data_quality(account: dict[str, int], reasons: pd.DataFrame) -> go.Figure:
    """Where every input record went, and why records were quarantined."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("outcome of every input record", "quarantined, by reason")
    )
    outcomes = list(OUTCOMES)
    fig.add_trace(
        go.Bar(
            x=outcomes,
            y=[account[k] for k in outcomes],
            texttemplate="%{y:,}",
            marker_color=["#4daf4a", "#e41a1c", "#984ea3", "#ff7f00"],
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=reasons["reason"], y=reasons["records"], texttemplate="%{y:,}"), row=1, col=2
    )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(
        title=f"Data quality: {account['input']:,} input records", height=420, showlegend=False
    )
    return fig
