"""The analytics database from before detectors had names is brought to the current schema
when opened, and the anomaly baselines round-trip through SQLite."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from apistream import sqlite_store
from apistream.anomalies import Baseline, score_windows
from apistream.config import AnomalyConfig

OLD_SCHEMA = """
CREATE TABLE anomalies (endpoint TEXT NOT NULL, method TEXT NOT NULL,
    window_start TEXT NOT NULL, window_end TEXT NOT NULL, metric TEXT NOT NULL,
    observed REAL NOT NULL, baseline_mean REAL NOT NULL, baseline_std REAL NOT NULL,
    z_score REAL NOT NULL, severity TEXT NOT NULL, detected_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, method, window_start, metric));
CREATE TABLE anomaly_baselines (endpoint TEXT NOT NULL, metric TEXT NOT NULL,
    windows INTEGER NOT NULL, mean REAL NOT NULL, var REAL NOT NULL, last_window TEXT NOT NULL,
    PRIMARY KEY (endpoint, metric));
CREATE TABLE alert_deliveries (webhook TEXT NOT NULL, endpoint TEXT NOT NULL,
    method TEXT NOT NULL, window_start TEXT NOT NULL, metric TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_at TEXT, delivered_at TEXT, last_error TEXT,
    PRIMARY KEY (webhook, endpoint, method, window_start, metric));
INSERT INTO anomalies VALUES ('/a', '*', '2026-03-01T10:00:00Z', '2026-03-01T10:01:00Z',
    'latency_p95_ms', 500, 100, 10, 40, 'critical', '2026-03-01T10:04:00Z');
INSERT INTO anomaly_baselines VALUES ('/a', 'error_rate_5xx', 5000, 0.005, 1e-6, 'w');
INSERT INTO alert_deliveries VALUES ('hub', '/a', '*', '2026-03-01T10:00:00Z',
    'latency_p95_ms', 1, NULL, '2026-03-01T10:05:00Z', NULL);
"""


def test_an_old_database_is_migrated_once_and_keeps_its_rows(tmp_path):
    path = tmp_path / "analytics.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SCHEMA)
    for _ in range(2):  # the second open finds nothing to do
        with closing(sqlite_store.connect(path)) as conn:
            (row,) = conn.execute("SELECT detector, endpoint, metric, z_score FROM anomalies")
            assert row == ("ewma", "/a", "latency_p95_ms", 40.0)
            assert sqlite_store.read_baselines(conn) == {
                ("/a", "error_rate_5xx"): (5000, 0.005, 1e-6, None, None, None)
            }
            # The delivered alert is still delivered: not pending for its webhook.
            assert sqlite_store.pending_alerts(conn, "hub", ["critical"], 8, "9999", 10) == []
            assert len(sqlite_store.pending_alerts(conn, "other", ["critical"], 8, "9999", 10)) == 1


def test_an_old_baseline_starts_its_slow_mean_at_its_mean():
    """A baseline written before the slow mean existed must not take one window's rate as
    its slow mean (that would page on every window after an unlucky first one)."""
    rows = [
        {"window_start": "2026-03-01T10:00:00Z", "window_end": "2026-03-01T10:01:00Z",
         "endpoint": "/a", "method": "GET", "requests": 3000, "status_5xx": 3,
         "latency_count": 0, "latency_sum_ms": 0, "latency_min_ms": None,
         "latency_max_ms": None, "latency_histogram": b""},
    ]  # fmt: skip
    old = {("/a", "error_rate_5xx"): (5000, 0.005, 1e-6, None, None, None)}
    _, after = score_windows(rows, old, AnomalyConfig(), "now")
    assert Baseline(*after[("/a", "error_rate_5xx")]).slow_mean > 0.0049


def test_baselines_round_trip(tmp_path):
    with closing(sqlite_store.connect(tmp_path / "a.db")) as conn:
        state = {("/a", "latency_p95_ms"): (12, 100.0, 25.0, 98.5, 103.0, None)}
        with sqlite_store.transaction(conn):
            sqlite_store.write_baselines(conn, state, "2026-03-01T10:00:00Z")
        assert sqlite_store.read_baselines(conn) == state
