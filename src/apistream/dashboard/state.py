"""What the dashboard shows, read from SQLite in one short read-only transaction.

Every poll opens the database read-only, reads a consistent snapshot with a handful of
aggregate queries and closes it, so the streaming writer (WAL mode) is never blocked. A p95
over several rows (the recent windows, an endpoint's methods or windows) is read from their
merged histograms (range_percentiles.py); the endpoint table covers the windows the charts
show (dashboard.history_windows), whose histograms are read anyway.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apistream.accounting import balances
from apistream.catalog import PIPELINE_QUERY
from apistream.range_percentiles import range_quantiles
from apistream.sqlite_store import ResultsNotFound, read_only
from apistream.timefmt import parse_iso
from apistream.viz.load import has_table

RECENT = """
SELECT * FROM endpoint_metrics
WHERE window_start >= strftime('%Y-%m-%dT%H:%M:%SZ',
    (SELECT MAX(window_end) FROM endpoint_metrics), ?1)
"""
HEADLINE_SQL = f"""
SELECT MIN(window_start), MAX(window_end), SUM(requests), SUM(status_4xx), SUM(status_5xx)
FROM ({RECENT})
"""
# The rows whose merged histograms give a percentile over them (range_percentiles.py).
LATENCY = "latency_histogram, latency_min_ms, latency_max_ms"
RECENT_LATENCY_SQL = f"SELECT {LATENCY} FROM ({RECENT})"

ENDPOINTS_SQL = """
SELECT m.endpoint, SUM(m.requests) AS requests,
       SUM(m.status_4xx) * 1.0 / SUM(m.requests) AS rate_4xx,
       SUM(m.status_5xx) * 1.0 / SUM(m.requests) AS rate_5xx,
       SUM(m.latency_sum_ms) / SUM(m.latency_count) AS latency_avg_ms,
       MAX(m.latency_p95_ms) AS worst_p95_ms,
       e.latency_slo_ms AS latency_slo_ms
FROM endpoint_metrics m LEFT JOIN endpoints e ON e.endpoint = m.endpoint
WHERE m.window_start >= ?1
GROUP BY m.endpoint ORDER BY requests DESC, m.endpoint
"""

SERIES_SQL = """
SELECT window_start, SUM(requests), SUM(status_4xx), SUM(status_5xx), window_end
FROM endpoint_metrics WHERE window_start >= ?1 GROUP BY window_start ORDER BY window_start
"""

SHOWN_LATENCY_SQL = f"""
SELECT endpoint, window_start, {LATENCY} FROM endpoint_metrics WHERE window_start >= ?1
ORDER BY endpoint, window_start
"""


def _seconds(start: str, end: str) -> float:
    return (parse_iso(end) - parse_iso(start)).total_seconds()


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    cur = conn.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _headline(conn: sqlite3.Connection, recent_s: float) -> dict[str, Any]:
    since = f"-{recent_s:g} seconds"
    start, end, requests, s4, s5 = conn.execute(HEADLINE_SQL, (since,)).fetchone()
    (p95,) = range_quantiles(_rows(conn, RECENT_LATENCY_SQL, since), [0.95])
    # The newest window is usually still filling: the rate runs up to the newest event seen.
    newest = conn.execute(
        "SELECT max_event_time FROM sink_commits WHERE query = ? ORDER BY batch_id DESC LIMIT 1",
        (PIPELINE_QUERY,),
    ).fetchone()
    if newest and newest[0] and start < newest[0] < end:
        end = newest[0]
    span_s = _seconds(start, end)
    return {
        "span_start": start,
        "span_end": end,
        "requests": requests,
        "requests_per_s": requests / span_s,
        "error_rate": (s4 + s5) / requests,
        "rate_4xx": s4 / requests,
        "rate_5xx": s5 / requests,
        "p95_ms": p95,
    }


def _first_shown(conn: sqlite3.Connection, history_windows: int) -> str:
    """The oldest of the newest `history_windows` windows: the charts and table start here."""
    return conn.execute(
        "SELECT MIN(window_start) FROM (SELECT DISTINCT window_start FROM endpoint_metrics "
        "ORDER BY window_start DESC LIMIT ?)",
        (history_windows,),
    ).fetchone()[0]


def _endpoints(
    conn: sqlite3.Connection, first: str, shown: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per endpoint over the windows shown: counts, rates, mean latency, the p95 of all its
    events there, the worst window p95, and its SLO."""
    rows = _rows(conn, ENDPOINTS_SQL, first)
    by_endpoint: dict[str, list[dict[str, Any]]] = {}
    for r in shown:
        by_endpoint.setdefault(r["endpoint"], []).append(r)
    for r in rows:
        (r["latency_p95_ms"],) = range_quantiles(by_endpoint[r["endpoint"]], [0.95])
    return rows


def _series(conn: sqlite3.Connection, first: str, shown: list[dict[str, Any]]) -> dict[str, Any]:
    rows = conn.execute(SERIES_SQL, (first,)).fetchall()
    windows = [r[0] for r in rows]
    index = {w: i for i, w in enumerate(windows)}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in shown:
        groups.setdefault((r["endpoint"], r["window_start"]), []).append(r)
    p95: dict[str, list[float | None]] = {}
    for (endpoint, window), group in groups.items():
        (value,) = range_quantiles(group, [0.95])
        p95.setdefault(endpoint, [None] * len(windows))[index[window]] = value
    return {
        "windows": windows,
        "requests_per_min": [r[1] * 60.0 / _seconds(r[0], r[4]) for r in rows],
        "rate_4xx": [r[2] / r[1] for r in rows],
        "rate_5xx": [r[3] / r[1] for r in rows],
        "p95_ms": p95,
    }


def _quality(conn: sqlite3.Connection) -> dict[str, Any]:
    totals = _rows(conn, "SELECT * FROM data_quality_totals")[0]
    totals["reasons"] = [
        list(r)
        for r in conn.execute(
            "SELECT reason, records FROM quarantine_reasons ORDER BY records DESC, reason"
        )
    ]
    totals["balanced"] = balances(totals)
    return totals


def _anomalies(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(
        conn,
        "SELECT * FROM anomalies ORDER BY window_start DESC, z_score DESC LIMIT ?",
        limit,
    )


def dashboard_state(path: str | Path, recent_s: float, history_windows: int) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data, with `status` ok, waiting or missing."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    base: dict[str, Any] = {"path": str(path), "read_at": now}
    try:
        with read_only(path, timeout=2.0) as conn:  # a poll waits at most 2 s for a lock
            if not has_table(conn, "endpoint_metrics"):
                return {**base, "status": "waiting", "message": "waiting for data"}
            batches = conn.execute(
                "SELECT (SELECT MAX(batch_id) FROM sink_commits), "
                "(SELECT MAX(batch_id) FROM data_quality), "
                "(SELECT COUNT(*) FROM endpoint_metrics)"
            ).fetchone()
            state = {
                **base,
                "version": f"{batches[0]}/{batches[1]}",
                "metrics_batch": batches[0],
                "events_batch": batches[1],
                "quality": _quality(conn),
                "anomalies": _anomalies(conn),
            }
            if not batches[2]:
                return {**state, "status": "waiting", "message": "waiting for data"}
            first = _first_shown(conn, history_windows)
            shown = _rows(conn, SHOWN_LATENCY_SQL, first)
            return {
                **state,
                "status": "ok",
                "message": "",
                "headline": _headline(conn, recent_s),
                "endpoints": _endpoints(conn, first, shown),
                "series": _series(conn, first, shown),
            }
    except ResultsNotFound:
        return {**base, "status": "missing", "message": f"no analytics database at {path}"}
    except sqlite3.Error as exc:
        return {**base, "status": "error", "message": f"could not read {path}: {exc}"}
