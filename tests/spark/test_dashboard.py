"""`apistream dashboard` in a real headless Chromium: the figures equal SQLite, the page
follows a new batch, and a missing or empty database says so."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from viz_helpers import ARTIFACTS, copy_db

from apistream import sqlite_store
from apistream.bench.broker import free_port
from apistream.config import load_config
from apistream.latency_histogram import LOG_GAMMA, Histogram
from apistream.range_percentiles import range_quantiles
from apistream.timefmt import iso
from apistream.window_metrics import METRIC_COLUMNS, STATE_COLUMNS


@contextmanager
def dashboard(output: Path, refresh: str = "500ms") -> Iterator[str]:
    """The real command, as a user starts it; yields its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "apistream.cli", "dashboard", "--output", str(output),
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "APISTREAM_DASHBOARD__REFRESH": refresh},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                urllib.request.urlopen(url + "api/state", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {proc.stdout.read()}") from None
                time.sleep(0.1)  # polling the server's real state, bounded by the deadline
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


LATENCY = ("latency_histogram", "latency_min_ms", "latency_max_ms")


def expected(db_path: str) -> dict:
    """The figures computed independently from SQLite with pandas-free SQL."""
    with sqlite3.connect(db_path) as db:
        last_end = db.execute("SELECT MAX(window_end) FROM endpoint_metrics").fetchone()[0]
        since = (sqlite_store.parse_iso(last_end) - timedelta(minutes=5)).isoformat() + "Z"
        rows = db.execute(
            "SELECT window_start, requests, status_4xx, status_5xx, latency_histogram, "
            "latency_min_ms, latency_max_ms FROM endpoint_metrics WHERE window_start >= ?",
            (since,),
        ).fetchall()
        first = sqlite_store.parse_iso(min(r[0] for r in rows))
        newest = db.execute(
            "SELECT max_event_time FROM sink_commits ORDER BY batch_id DESC LIMIT 1"
        ).fetchone()[0]
        end = min(sqlite_store.parse_iso(last_end), sqlite_store.parse_iso(newest))
        span = (end - first).total_seconds()
        n = sum(r[1] for r in rows)
        charted = load_config().dashboard.history_windows
        shown = (
            "(SELECT * FROM endpoint_metrics WHERE window_start IN (SELECT DISTINCT window_start "
            "FROM endpoint_metrics ORDER BY window_start DESC LIMIT ?))"
        )
        return {
            "rps": n / span,
            "error_rate": sum(r[2] + r[3] for r in rows) / n,
            # The p95 of all the recent windows' events, from their merged histograms: the
            # merge itself is checked against exact values in tests/unit.
            "p95": range_quantiles([dict(zip(LATENCY, r[4:], strict=True)) for r in rows], [0.95])[
                0
            ],
            # The table covers the windows charted: the newest dashboard.history_windows.
            "by_endpoint": dict(
                db.execute(f"SELECT endpoint, SUM(requests) FROM {shown} GROUP BY 1", (charted,))
            ),
            "rate_5xx": dict(
                db.execute(
                    f"SELECT endpoint, SUM(status_5xx) * 1.0 / SUM(requests) FROM {shown} "
                    "GROUP BY 1",
                    (charted,),
                )
            ),
            "input": db.execute("SELECT input FROM data_quality_totals").fetchone()[0],
            "reasons": dict(db.execute("SELECT reason, records FROM quarantine_reasons")),
        }


def shown(page) -> dict:
    value = lambda sel: float(page.locator(sel).get_attribute("data-value"))  # noqa: E731
    rows = page.eval_on_selector_all(
        "#endpoints tbody tr",
        "trs => trs.map(tr => [tr.dataset.endpoint, Number(tr.cells[1].dataset.value),"
        " Number(tr.cells[3].dataset.value)])",
    )
    quality = page.eval_on_selector_all(
        "#quality-table tr", "trs => trs.map(tr => [tr.dataset.key, tr.cells[1].dataset.value])"
    )
    return {
        "rps": value("#rps"),
        "error_rate": value("#error-rate"),
        "p95": value("#p95"),
        "rows": rows,
        "quality": {k: int(v) for k, v in quality},
    }


def assert_page_equals_sqlite(page, db_path: str) -> None:
    want, got = expected(db_path), shown(page)
    assert got["rps"] == pytest.approx(want["rps"], rel=1e-12)
    assert got["error_rate"] == pytest.approx(want["error_rate"], rel=1e-12)
    assert got["p95"] == pytest.approx(want["p95"], rel=1e-12)
    assert {ep: n for ep, n, _ in got["rows"]} == want["by_endpoint"]
    assert {ep: r for ep, _, r in got["rows"]} == pytest.approx(want["rate_5xx"], rel=1e-12)
    assert got["quality"]["input"] == want["input"]
    assert {k[7:]: v for k, v in got["quality"].items() if k.startswith("reason:")} == want[
        "reasons"
    ]
    assert page.locator("#rps").inner_text() == f"{want['rps']:,.1f}"
    assert page.locator("#error-rate").inner_text() == f"{100 * want['error_rate']:.2f}%"
    assert page.locator("#p95").inner_text() == f"{want['p95']:,.1f} ms"


def new_batch(db_path: str) -> tuple[str, int]:
    """Land one more metrics batch (and its data-quality row) the way the pipeline's sink does,
    one window after the newest, plus an anomaly in the table issue 3 will write."""
    conn = sqlite_store.connect(db_path)
    last_end, batch = conn.execute(
        "SELECT (SELECT MAX(window_end) FROM endpoint_metrics),"
        " (SELECT MAX(batch_id) FROM sink_commits)"
    ).fetchone()
    dq_batch = conn.execute("SELECT MAX(batch_id) FROM data_quality").fetchone()[0]
    start = sqlite_store.parse_iso(last_end)
    values = {
        "window_start": iso(start), "window_end": iso(start + timedelta(minutes=1)),
        "endpoint": "/api/v1/search", "method": "GET", "requests": 5000,
        "status_1xx": 0, "status_2xx": 3000, "status_3xx": 0, "status_4xx": 500,
        "status_5xx": 1500, "error_rate_4xx": 0.1, "error_rate_5xx": 0.3,
        "latency_min_ms": 100.0, "latency_avg_ms": 1360.0, "latency_max_ms": 9000.0,
        "latency_p50_ms": 800.0, "latency_p95_ms": 4000.0, "latency_p99_ms": 9000.0,
        "bytes_sent": 1_000_000, "max_event_time": iso(start + timedelta(seconds=59), ms=True),
        "latency_count": 5000, "latency_sum_ms": 6_800_000.0,
        # 2,000 requests at 100 ms, 2,000 at 800, 800 at 4 s and 200 at 9 s
        "latency_histogram": Histogram.of(
            (math.ceil(math.log(ms) / LOG_GAMMA), n)
            for ms, n in ((100.0, 2000), (800.0, 2000), (4000.0, 800), (9000.0, 200))
        ).to_bytes(),
    }  # fmt: skip
    assert set(values) == {*METRIC_COLUMNS, *STATE_COLUMNS}
    with sqlite_store.transaction(conn):
        sqlite_store.upsert_windows(conn, [values], batch + 1)
        sqlite_store.write_quality(
            conn, dq_batch + 1,
            {"input": 5010, "valid": 5000, "quarantined": 10, "duplicates": 0, "late": 0},
            {"wrong_type": 10}, None,
        )  # fmt: skip
        sqlite_store.record_commit(conn, batch + 1, values["max_event_time"], 0)
    with conn:
        conn.execute(
            "INSERT INTO anomalies (endpoint, method, window_start, window_end, metric, observed,"
            " baseline_mean, baseline_std, z_score, severity, detected_at) VALUES"
            " ('/api/v1/search', 'GET', ?, ?, 'error_rate_5xx', 0.3, 0.01, 0.005, 58.0,"
            " 'critical', ?)",
            (sqlite_store.iso(start), last_end, sqlite_store.iso(datetime(2026, 1, 1))),
        )
    conn.close()
    return f"{batch + 1}/{dq_batch + 1}", 5000


def test_dashboard_shows_sqlite_and_follows_new_batches(
    pipeline_output, tmp_path, browser_context_factory
):
    copy_db(pipeline_output.sqlite_path, tmp_path / "analytics.db")
    db_path = str(tmp_path / "analytics.db")
    ctx = browser_context_factory()
    attempted: list[str] = []
    ctx.on("request", lambda r: attempted.append(r.url))
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with dashboard(tmp_path) as url:
        page.goto(url)
        page.wait_for_selector("body[data-status=ok] #chart-latency .main-svg", timeout=30_000)
        assert_page_equals_sqlite(page, db_path)
        with sqlite3.connect(db_path) as db:
            found = db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0]
        if found == 0:
            assert page.locator("#anomalies").inner_text() == "No anomalies detected."
        else:
            assert page.locator("#anomalies tr.anomaly").count() == found
        assert page.locator("#balance").inner_text().endswith("holds")
        for chart in ("chart-throughput", "chart-errors", "chart-latency"):
            assert page.evaluate(f"document.getElementById('{chart}').data.length") > 0

        # Sorting: by 5xx rate, highest first, then lowest first.
        page.click("#endpoints th[data-key=rate_5xx]")
        rates = [r for _, _, r in shown(page)["rows"]]
        assert rates == sorted(rates, reverse=True)
        page.click("#endpoints th[data-key=rate_5xx]")
        rates = [r for _, _, r in shown(page)["rows"]]
        assert rates == sorted(rates)

        version, _ = new_batch(db_path)
        page.wait_for_function(f"document.body.dataset.version === '{version}'", timeout=30_000)
        page.wait_for_selector("#anomalies tr.anomaly", timeout=30_000)
        assert_page_equals_sqlite(page, db_path)
        cells = page.locator("#anomalies tr.anomaly").first.inner_text().split("\t")
        assert cells[1:4] + cells[-1:] == ["/api/v1/search", "GET", "error_rate_5xx", "ewma"]
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert errors == []
    assert {u.split("/")[2] for u in attempted} == {url.split("/")[2]}


def test_dashboard_missing_then_empty_database(tmp_path, browser_context_factory):
    page = browser_context_factory().new_page()
    with dashboard(tmp_path) as url:
        page.goto(url)
        page.wait_for_selector("body[data-status=missing]", timeout=30_000)
        assert page.locator("#banner").inner_text() == (
            f"no analytics database at {tmp_path / 'analytics.db'}"
        )
        sqlite_store.connect(tmp_path / "analytics.db").close()  # the stream has just started
        page.wait_for_selector("body[data-status=waiting]", timeout=30_000)
        assert page.locator("#banner").inner_text() == (
            f"Waiting for data: {tmp_path / 'analytics.db'} has no endpoint metrics yet."
        )
