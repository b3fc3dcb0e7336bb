"""Top-N endpoints from SQLite: per window (stream metrics) or per day (batch rollups)."""

from __future__ import annotations

import sqlite3
from typing import Any

from apistream.errors import ApiStreamError

RANKINGS = {
    "p95": "latency_p95_ms",
    "p99": "latency_p99_ms",
    "error_4xx": "error_rate_4xx",
    "error_5xx": "error_rate_5xx",
    "busiest": "requests",
}


def ranking_view(min_requests: int) -> str:
    """The endpoint_rankings view (per-window ranks for SQL users), over the rows with at least
    `min_requests` requests (report.min_ranked_requests), replacing any earlier one."""
    return f"""
DROP VIEW IF EXISTS endpoint_rankings;
CREATE VIEW endpoint_rankings AS
SELECT window_start, endpoint, method, requests, latency_p95_ms, latency_p99_ms,
       error_rate_4xx, error_rate_5xx,
       RANK() OVER (PARTITION BY window_start ORDER BY latency_p95_ms DESC) AS rank_p95,
       RANK() OVER (PARTITION BY window_start ORDER BY latency_p99_ms DESC) AS rank_p99,
       RANK() OVER (PARTITION BY window_start ORDER BY error_rate_4xx DESC) AS rank_4xx,
       RANK() OVER (PARTITION BY window_start ORDER BY error_rate_5xx DESC) AS rank_5xx,
       RANK() OVER (PARTITION BY window_start ORDER BY requests DESC) AS rank_requests
FROM endpoint_metrics WHERE requests >= {int(min_requests)};
"""


def top_n(
    conn: sqlite3.Connection,
    by: str,
    period: str,
    when: str | None,
    n: int,
    min_requests: int,
) -> tuple[str | None, list[dict[str, Any]]]:
    """(the window or day ranked, its top n endpoint x method rows by `by`). Rows with fewer
    than min_requests are left out, so an endpoint with two requests never tops a list."""
    if by not in RANKINGS:
        raise ApiStreamError(f"--by must be one of {', '.join(RANKINGS)}")
    col = RANKINGS[by]
    if period == "window":
        table, key = "endpoint_metrics", "window_start"
        latest = "SELECT MAX(window_start) FROM endpoint_metrics WHERE is_final = 1"
    elif period == "day":
        table, key = "rollup_daily", "period_start"
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollup_daily'")
        if not exists.fetchone():
            raise ApiStreamError("no daily rollups yet: run `apistream batch` first")
        latest = "SELECT MAX(period_start) FROM rollup_daily"
        when = f"{when}T00:00:00Z" if when and len(when) == 10 else when
    else:
        raise ApiStreamError("--period must be window or day")
    when = when or conn.execute(latest).fetchone()[0]
    cur = conn.execute(
        f"SELECT endpoint, method, requests, {col} AS value FROM {table} "
        f"WHERE {key} = ? AND requests >= ? AND {col} IS NOT NULL "
        f"ORDER BY {col} DESC, requests DESC, endpoint, method LIMIT ?",
        (when, min_requests, n),
    )
    names = [d[0] for d in cur.description]
    return when, [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
