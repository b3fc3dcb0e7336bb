"""`apistream report`: one self-contained HTML file (plotly with its JavaScript inlined, so it
works offline) and PNG charts of the same views, from a run's SQLite database."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from apistream.config import Config
from apistream.errors import ApiStreamError
from apistream.viz import figures, static, views
from apistream.viz.load import Results, load_results

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0; } .meta { color: #666; margin-top: .3rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #666; font-style: italic; } .ok { color: #1a7f37; } .bad { color: #b2182b; }
"""


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` produced."""

    html: Path
    pngs: list[Path]


@dataclass(frozen=True)
class _Views:
    latency: pd.DataFrame
    errors: pd.DataFrame
    per_window: pd.DataFrame
    per_hour: pd.DataFrame
    summary: pd.DataFrame
    account: dict[str, int]
    reasons: pd.DataFrame
    markers: pd.DataFrame


def _views(res: Results) -> _Views:
    return _Views(
        latency=views.latency_over_time(res.metrics),
        errors=views.error_rates_over_time(res.metrics),
        per_window=views.throughput(res.throughput, "window"),
        per_hour=views.throughput(res.throughput, "hour"),
        summary=views.endpoint_summary(res.metrics, res.endpoints),
        account=views.quality_account(res.quality),
        reasons=views.quarantine_by_reason(res.quality),
        markers=views.anomaly_markers(res.anomalies),
    )


def _table(df: pd.DataFrame, formats: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, rec, strict=True):
            text = "" if pd.isna(value) else formats.get(col, "{}").format(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _anomaly_section(res: Results) -> str:
    if res.anomalies.empty:
        return '<p class="note" id="anomalies-none">No anomalies detected.</p>'
    cols = [
        c
        for c in (
            "window_start",
            "endpoint",
            "method",
            "metric",
            "observed",
            "baseline_mean",
            "z_score",
            "severity",
            "detector",
        )
        if c in res.anomalies.columns
    ]
    return _table(
        res.anomalies[cols],
        {"observed": "{:,.4g}", "baseline_mean": "{:,.4g}", "z_score": "{:.1f}"},
    )


def _quality_section(v: _Views) -> str:
    a = v.account
    balanced = a["input"] == a["valid"] + a["quarantined"] + a["duplicates"] + a["late"]
    rows = pd.DataFrame(
        {
            "outcome": ["input", "valid", "quarantined", "duplicates", "late"],
            "records": [a[k] for k in ("input", "valid", "quarantined", "duplicates", "late")],
        }
    )
    check = (
        '<p class="ok">input = valid + quarantined + duplicates + late: holds</p>'
        if balanced
        else '<p class="bad">input = valid + quarantined + duplicates + late: DOES NOT HOLD</p>'
    )
    return _table(rows, {"records": "{:,}"}) + check


def _figure_div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def build_html(res: Results, cfg: Config, generated_at: datetime) -> str:
    """The report page: every chart as an inline plotly div, plotly.js inlined once."""
    v = _views(res)
    n, min_req = cfg.report.top_n, cfg.report.min_requests
    span = (
        f"{res.metrics['window_start'].min()} to {res.metrics['window_end'].max()}"
        if not res.metrics.empty
        else "no windows yet"
    )
    sections = [
        (
            "Latency p50 / p95 / p99 per endpoint",
            _figure_div(figures.latency(v.latency, v.markers), "chart-latency"),
        ),
        ("Error rates", _figure_div(figures.error_rates(v.errors, v.markers), "chart-errors")),
        (
            "Throughput",
            _figure_div(
                figures.throughput(v.per_window, v.per_hour, v.markers), "chart-throughput"
            ),
        ),
        ("Top endpoints", _figure_div(figures.top_endpoints(v.summary, n, min_req), "chart-top")),
        (
            "Endpoints",
            _table(
                v.summary,
                {
                    "requests": "{:,}",
                    "rate_4xx": "{:.2%}",
                    "rate_5xx": "{:.2%}",
                    "latency_avg_ms": "{:,.1f}",
                    "latency_p95_ms": "{:,.1f}",
                    "worst_p95_ms": "{:,.1f}",
                    "latency_slo_ms": "{:,.0f}",
                },
            ),
        ),
        ("Anomalies", _anomaly_section(res)),
        (
            "Data quality",
            _figure_div(figures.data_quality(v.account, v.reasons), "chart-quality")
            + _quality_section(v),
        ),
    ]
    body = "\n".join(
        f"<section><h2>{html.escape(title)}</h2>\n{content}</section>"
        for title, content in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>APIStream Analytics report</title>
<style>{_CSS}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head><body>
<h1>APIStream Analytics report</h1>
<p class="meta">{html.escape(res.source)} · windows {html.escape(span)} ·
{len(v.summary)} endpoints · generated {generated_at:%Y-%m-%d %H:%M:%S} UTC</p>
<p class="note">p50/p95/p99 over several windows or methods are the percentiles of all their
requests, from merged latency histograms (within 0.5%); "worst p95" is the highest single
window.</p>
{body}
</body></html>
"""


def write_pngs(res: Results, cfg: Config, out_dir: Path) -> list[Path]:
    """The same views as PNG files."""
    v = _views(res)
    n, min_req = cfg.report.top_n, cfg.report.min_requests
    return [
        static.save(static.latency(v.latency, v.markers), out_dir / "latency.png"),
        static.save(static.error_rates(v.errors, v.markers), out_dir / "error_rates.png"),
        static.save(
            static.throughput(v.per_window, v.per_hour, v.markers), out_dir / "throughput.png"
        ),
        static.save(static.top_endpoints(v.summary, n, min_req), out_dir / "top_endpoints.png"),
        static.save(static.data_quality(v.account, v.reasons), out_dir / "data_quality.png"),
    ]


def write_report(cfg: Config, out_dir: str | Path | None = None) -> ReportFiles:
    """Read the run's SQLite database and write report.html plus PNGs under out_dir
    (default: <output>/report)."""
    res = load_results(cfg.sqlite_path)
    if res.metrics.empty:
        raise ApiStreamError(f"no endpoint metrics yet in {cfg.sqlite_path}: nothing to report")
    target = Path(out_dir) if out_dir else Path(cfg.path("report"))
    target.mkdir(parents=True, exist_ok=True)
    page = target / "report.html"
    page.write_text(build_html(res, cfg, datetime.now(UTC)), encoding="utf-8")
    return ReportFiles(html=page, pngs=write_pngs(res, cfg, target))
