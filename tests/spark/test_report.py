"""`apistream report` on real pipeline output: the HTML renders every chart in Chromium with
every network request blocked (and none attempted); the PNGs are real images; anomalies are
marked on their charts and listed, or the page says there are none."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from viz_helpers import ARTIFACTS, copy_db, planted_anomalies, set_anomalies

PNGS = ["latency", "error_rates", "throughput", "top_endpoints", "data_quality"]
CHARTS = ["chart-latency", "chart-errors", "chart-throughput", "chart-top", "chart-quality"]
# Where each anomaly metric (anomalies.METRICS) belongs, as the README describes the report:
# latency on the latency chart, the 5xx rate on the error chart, traffic shaded on throughput.
CHART_OF = {
    "latency_p95_ms": "chart-latency",
    "latency_avg_ms": "chart-latency",
    "latency_p99_ms": "chart-latency",
    "error_rate_5xx": "chart-errors",
    "requests": "chart-throughput",
}


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


def report_of(output: Path) -> Path:
    """Run `apistream report` on `output` (a copied database) and return its page."""
    out = run_report(str(output))
    assert out.returncode == 0, out.stderr
    return output / "report" / "report.html"


def open_offline(browser_context_factory, page_path: Path):
    """The page in Chromium with every non-file request blocked, once its charts are drawn;
    returns (page, requests attempted, page errors)."""
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
    page.goto(page_path.as_uri())
    page.wait_for_function(
        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 5", timeout=30_000
    )
    return page, attempted, errors


def drawn(page) -> tuple[dict[str, int], int]:
    """Traces per chart, and the shaded regions (layout shapes) of the throughput chart."""
    traces = dict(
        page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => [e.id, e.data.length])")
    )
    shapes = page.evaluate(
        "(document.getElementById('chart-throughput').layout.shapes || []).length"
    )
    return traces, shapes


def base_traces(db_path: str | Path) -> dict[str, int]:
    """Traces per chart without anomalies: p50/p95/p99 per endpoint; 4xx and 5xx rates;
    per-minute and per-hour throughput; three top-N bars; the account and the reasons."""
    with sqlite3.connect(db_path) as db:
        endpoints = db.execute("SELECT COUNT(DISTINCT endpoint) FROM endpoint_metrics").fetchone()
    db.close()
    return dict(zip(CHARTS, [3 * endpoints[0], 2, 2, 3, 2], strict=True))


def anomaly_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "section:has(h2:text-is('Anomalies')) tbody tr",
        "trs => trs.map(tr => Array.from(tr.cells, c => c.textContent))",
    )


def test_pngs_are_images(report):
    for name in PNGS:
        data = (report.parent / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 10_000


def test_report_renders_offline_with_values_from_sqlite(
    report, pipeline_output, browser_context_factory
):
    page, attempted, errors = open_offline(browser_context_factory, report)
    traces, shapes = drawn(page)
    assert list(traces) == CHARTS
    with sqlite3.connect(pipeline_output.sqlite_path) as db:
        by_endpoint = dict(
            db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1")
        )
        total_input = db.execute("SELECT input FROM data_quality_totals").fetchone()[0]
        metrics = [m for (m,) in db.execute("SELECT metric FROM anomalies")]
    db.close()
    assert set(metrics) <= CHART_OF.keys()
    # One marker trace on a chart with anomalies of its kind; a region for each traffic one.
    marked = {CHART_OF[m] for m in metrics} - {"chart-throughput"}
    want = base_traces(pipeline_output.sqlite_path)
    assert traces == {chart: n + (chart in marked) for chart, n in want.items()}
    assert shapes == metrics.count("requests")
    rows = page.eval_on_selector_all(
        "section:has(h2:text-is('Endpoints')) tbody tr",
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])",
    )
    assert {ep: int(n.replace(",", "")) for ep, n in rows} == by_endpoint
    assert len(anomaly_rows(page)) == len(metrics)
    assert f"Data quality: {total_input:,} input records" in page.content()
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []
    assert attempted == [report.as_uri()]


def test_report_marks_each_anomaly_on_its_chart_and_lists_it(
    pipeline_output, tmp_path, browser_context_factory
):
    copy_db(pipeline_output.sqlite_path, tmp_path / "analytics.db")
    planted = planted_anomalies(tmp_path / "analytics.db")
    set_anomalies(tmp_path / "analytics.db", planted)
    page, _, errors = open_offline(browser_context_factory, report_of(tmp_path))
    traces, shapes = drawn(page)
    want = base_traces(tmp_path / "analytics.db")
    assert traces == {**want, "chart-latency": want["chart-latency"] + 1,
                      "chart-errors": want["chart-errors"] + 1}  # fmt: skip
    assert shapes == 1  # the traffic anomaly
    marker = page.evaluate(
        "document.getElementById('chart-latency').data.find(t => t.name === 'anomaly').text"
    )
    latency = planted[0]
    assert marker == [f"{latency['endpoint']} latency_p95_ms: 987.5 (z=88.8)"]
    assert page.locator("#anomalies-none").count() == 0
    # As the table shows them: observed and baseline to 4 significant digits, z to 0.1.
    shown = {"latency_p95_ms": ("987.5", "88.8"), "error_rate_5xx": ("0.25", "12.5"),
             "requests": ("4,321", "6.5")}  # fmt: skip
    assert sorted(anomaly_rows(page)) == sorted(
        [a["window_start"], a["endpoint"], "*", a["metric"], shown[a["metric"]][0], "100",
         shown[a["metric"]][1], "critical", "ewma"]
        for a in planted
    )  # fmt: skip
    assert errors == []


def test_report_says_when_no_anomaly_was_found(pipeline_output, tmp_path, browser_context_factory):
    copy_db(pipeline_output.sqlite_path, tmp_path / "analytics.db")
    set_anomalies(tmp_path / "analytics.db", [])
    page, _, errors = open_offline(browser_context_factory, report_of(tmp_path))
    traces, shapes = drawn(page)
    assert traces == base_traces(tmp_path / "analytics.db")
    assert shapes == 0
    assert page.locator("#anomalies-none").inner_text() == "No anomalies detected."
    assert anomaly_rows(page) == []
    assert errors == []
