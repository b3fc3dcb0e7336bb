"""`apistream report` on real pipeline output: the HTML renders every chart in Chromium with
every network request blocked (and none attempted); the PNGs are real images."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from viz_helpers import ARTIFACTS, copy_db

PNGS = ["latency", "error_rates", "throughput", "top_endpoints", "data_quality"]


def run_report(output: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apistream.cli", "report", "--output", output],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def report(pipeline_output) -> Path:
    out = run_report(pipeline_output.sinks.output)
    assert out.returncode == 0, out.stderr
    page = Path(pipeline_output.path("report", "report.html"))
    assert f"report: {page}" in out.stdout
    for name in PNGS:
        assert f"chart:  {page.parent / name}.png" in out.stdout
    return page


def test_pngs_are_images(report):
    for name in PNGS:
        data = (report.parent / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000


def test_report_renders_offline_with_values_from_sqlite(
    report, pipeline_output, browser_context_factory
):
    ctx = browser_context_factory()
    attempted: list[str] = []
    ctx.on("request", lambda r: attempted.append(r.url))
    ctx.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort(),
    )
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=30_000
    )
    charts = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => e.id)")
    assert charts == [
        "chart-latency",
        "chart-errors",
        "chart-throughput",
        "chart-top",
        "chart-quality",
    ]
    # every chart drew data: at least one trace per chart
    traces = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).map(e => e.data.length)"
    )
    with sqlite3.connect(pipeline_output.sqlite_path) as db:
        endpoints = db.execute("SELECT COUNT(DISTINCT endpoint) FROM endpoint_metrics").fetchone()[
            0
        ]
        by_endpoint = dict(
            db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1")
        )
        total_input = db.execute("SELECT input FROM data_quality_totals").fetchone()[0]
        anomalies = db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0]
        metrics = [m for (m,) in db.execute("SELECT DISTINCT metric FROM anomalies")]
        traffic = db.execute(
            "SELECT COUNT(*) FROM anomalies WHERE metric NOT LIKE '%latency%' "
            "AND metric NOT LIKE '%error%'"
        ).fetchone()[0]
    # One marker trace on each chart that has anomalies of its kind; a shaded region on the
    # throughput chart for each traffic anomaly.
    marks = {
        "latency": any("latency" in m for m in metrics),
        "errors": any("error" in m for m in metrics),
    }
    shapes = page.evaluate(
        "(document.getElementById('chart-throughput').layout.shapes || []).length"
    )
    assert shapes == traffic
    assert traces == [
        3 * endpoints + marks["latency"],
        2 + marks["errors"],
        2,  # traffic anomalies are shaded regions (layout shapes), not traces
        3,
        2,
    ]
    rows = page.eval_on_selector_all(
        "section:has(h2:text-is('Endpoints')) tbody tr",
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])",
    )
    assert {ep: int(n.replace(",", "")) for ep, n in rows} == by_endpoint
    if anomalies == 0:
        assert page.locator("#anomalies-none").inner_text() == "No anomalies detected."
    else:
        assert page.locator("section:has(h2:text-is('Anomalies')) tbody tr").count() == anomalies
    assert f"Data quality: {total_input:,} input records" in page.content()
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []
    assert [u for u in attempted if not u.startswith("file:")] == []
    assert attempted == [report.as_uri()]


def test_report_marks_anomalies_when_the_table_exists(pipeline_output, tmp_path):
    # One more anomaly in the run's anomalies table, in a copy of the run.
    copy_db(pipeline_output.sqlite_path, tmp_path / "analytics.db")
    with sqlite3.connect(tmp_path / "analytics.db") as db:
        ws, we, endpoint = db.execute(
            "SELECT window_start, window_end, endpoint FROM endpoint_metrics "
            "ORDER BY requests DESC LIMIT 1"
        ).fetchone()
        pd.DataFrame(
            [[endpoint, "GET", ws, we, "latency_p95_ms", 987.5, 100.0, 10.0, 88.75, "critical",
              "2026-01-01T00:00:00Z"]],
            columns=["endpoint", "method", "window_start", "window_end", "metric", "observed",
                     "baseline_mean", "baseline_std", "z_score", "severity", "detected_at"],
        ).to_sql("anomalies", db, index=False, if_exists="append")  # fmt: skip
    out = run_report(str(tmp_path))
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "report" / "report.html").read_text()
    assert "No anomaly detection results yet" not in html
    assert (
        f"<td>{ws}</td><td>{endpoint}</td><td>GET</td><td>latency_p95_ms</td><td>987.5</td>" in html
    )
    # a marker on the latency chart, with its hover text (plotly's JSON escapes '/')
    hover = f"{endpoint} latency_p95_ms: 987.5 (z=88.8)".replace("/", "\\u002f")
    assert '"name":"anomaly","text":[' in html and f'"{hover}"' in html
