"""Dashboard state without a browser: a missing database, an empty one, and the figures of a
small one written by the real store functions."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pytest

from apistream import sqlite_store
from apistream.dashboard.state import dashboard_state
from apistream.latency_histogram import LOG_GAMMA, RELATIVE_ERROR, Histogram
from apistream.timefmt import iso


def test_missing_database_names_the_path(tmp_path):
    state = dashboard_state(tmp_path / "nope.db", 300, 60)
    assert state["status"] == "missing"
    assert state["message"] == f"no analytics database at {tmp_path / 'nope.db'}"


def test_empty_database_is_waiting_for_data(tmp_path):
    sqlite_store.connect(tmp_path / "analytics.db").close()
    state = dashboard_state(tmp_path / "analytics.db", 300, 60)
    assert state["status"] == "waiting"
    assert state["message"] == "waiting for data"
    assert state["anomalies"] == []  # the table exists (empty) from the first connect


def row(minute: int, endpoint: str, requests: int, s4: int, s5: int, latency: float) -> dict:
    """A window row of `requests` requests, every one taking `latency` ms."""
    hist = Histogram.of([(math.ceil(math.log(latency) / LOG_GAMMA), requests)])
    p95 = latency
    return {
        "window_start": iso(datetime(2026, 1, 1, 0, minute)),
        "window_end": iso(datetime(2026, 1, 1, 0, minute + 1)),
        "endpoint": endpoint, "method": "GET", "requests": requests,
        "status_1xx": 0, "status_2xx": requests - s4 - s5, "status_3xx": 0,
        "status_4xx": s4, "status_5xx": s5,
        "error_rate_4xx": s4 / requests, "error_rate_5xx": s5 / requests,
        "latency_min_ms": p95, "latency_avg_ms": p95, "latency_max_ms": p95,
        "latency_p50_ms": p95, "latency_p95_ms": p95, "latency_p99_ms": p95,
        "bytes_sent": 100, "max_event_time": iso(datetime(2026, 1, 1, 0, minute, 59), ms=True),
        "latency_count": requests, "latency_sum_ms": requests * p95,
        "latency_histogram": hist.to_bytes(),
    }  # fmt: skip


def test_headline_table_and_series(tmp_path):
    conn = sqlite_store.connect(tmp_path / "analytics.db")
    rows = [
        row(0, "/a", 60, 6, 0, 10.0),
        row(9, "/a", 120, 0, 12, 20.0),
        row(9, "/b", 60, 0, 0, 50.0),
    ]
    with sqlite_store.transaction(conn):
        sqlite_store.upsert_windows(conn, rows, 0)
        sqlite_store.write_quality(
            conn, 0, {"input": 250, "valid": 240, "quarantined": 5, "duplicates": 3, "late": 2},
            {"wrong_type": 5}, None,
        )  # fmt: skip
        sqlite_store.record_commit(conn, 0, max(r["max_event_time"] for r in rows), 0)
    conn.close()
    state = dashboard_state(tmp_path / "analytics.db", 300, 60)
    assert state["status"] == "ok"
    h = state["headline"]
    # the last 5 minutes up to the newest window end (00:10) cover only the 00:09 window,
    # which is filled up to the newest event time seen (00:09:59)
    assert (h["span_start"], h["span_end"], h["requests"]) == (
        "2026-01-01T00:09:00Z", "2026-01-01T00:09:59.000Z", 180,
    )  # fmt: skip
    assert h["requests_per_s"] == pytest.approx(180 / 59)
    assert h["error_rate"] == pytest.approx(12 / 180)
    # 120 requests at 20 ms and 60 at 50 ms: the 171st of 180 is 50 ms (a request-weighted
    # mean of the two windows' p95s would say 30).
    assert h["p95_ms"] == 50.0
    table = {r["endpoint"]: r for r in state["endpoints"]}
    assert table["/a"]["requests"] == 180
    assert table["/a"]["rate_4xx"] == pytest.approx(6 / 180)
    assert table["/a"]["latency_avg_ms"] == pytest.approx((60 * 10.0 + 120 * 20.0) / 180)
    # the 171st of 60 at 10 ms and 120 at 20 ms, from the merged histograms (within 0.5%)
    assert table["/a"]["latency_p95_ms"] == pytest.approx(20.0, rel=RELATIVE_ERROR)
    assert table["/a"]["worst_p95_ms"] == 20.0
    s = state["series"]
    assert s["windows"] == ["2026-01-01T00:00:00Z", "2026-01-01T00:09:00Z"]
    assert s["requests_per_min"] == [60.0, 180.0]
    assert s["p95_ms"] == {"/a": [10.0, 20.0], "/b": [None, 50.0]}
    assert state["quality"]["balanced"] is True
    assert state["quality"]["reasons"] == [["wrong_type", 5]]
    assert dashboard_state(tmp_path / "analytics.db", 300, 1)["series"]["windows"] == [
        "2026-01-01T00:09:00Z"
    ]


def test_a_failed_read_keeps_its_own_error(tmp_path):
    # pandas rolls the snapshot back on its own error; the opener must not hide it.
    sqlite_store.connect(tmp_path / "analytics.db").close()
    with (
        pytest.raises(pd.errors.DatabaseError, match="no such table: nope"),
        sqlite_store.read_only(tmp_path / "analytics.db") as db,
    ):
        pd.read_sql("SELECT * FROM nope", db)
