"""Top-N endpoints from SQLite: per window (stream metrics), per day (batch rollups), or per
endpoint over a range of windows (percentiles from their merged latency histograms)."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

from apistream.errors import ApiStreamError, UsageError
from apistream.period import MINUTE, Period
from apistream.range_percentiles import range_quantiles
from apistream.sqlite_store import final_windows
from apistream.window_metrics import PERCENTILES

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


# --by -> the key of a top_range row it ranks by (descending).
RANGE_RANKINGS = {
    "p50": "p50",
    "p95": "p95",
    "p99": "p99",
    "error_4xx": "error_rate_4xx",
    "error_5xx": "error_rate_5xx",
    "busiest": "requests",
}
# The windows of a Period: window_start in [start, end); None leaves that side open.
_IN_RANGE = "(?1 IS NULL OR window_start >= ?1) AND (?2 IS NULL OR window_start < ?2)"


def range_of(first: str | None, last: str | None, period: str, when: str | None) -> Period:
    """The Period of `top --from --to` (Period.parse: days or hours, --to included), or a
    UsageError for an option that does not go with it."""
    if first is None or last is None:
        raise UsageError("--from and --to go together: give both (or neither)")
    if period != "window":
        raise UsageError(f"--from/--to rank a range of windows: leave out --period {period}")
    if when is not None:
        raise UsageError("--when names one window or day: leave it out with --from/--to")
    return Period.parse(first, last, MINUTE)


def top_range(
    conn: sqlite3.Connection, by: str, period: Period, n: int, min_requests: int
) -> list[dict[str, Any]]:
    """The top n endpoints (all methods merged) over the final windows starting in `period`,
    by `by` descending (then more requests, then name): requests, p50/p95/p99 from the merged
    latency histograms (within 0.5% of exact, never a mean of window percentiles) and 4xx/5xx
    rates (sums over sums). Endpoints with fewer than min_requests requests are left out."""
    if by not in RANGE_RANKINGS:
        raise UsageError(f"--by must be one of {', '.join(RANGE_RANKINGS)}")
    columns = (
        "endpoint, requests, status_4xx, status_5xx, latency_histogram, latency_min_ms, "
        "latency_max_ms"
    )
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in final_windows(conn, period.start_iso, period.end_iso, columns):
        groups[r["endpoint"]].append(r)
    rows = []
    for endpoint, group in groups.items():
        requests = sum(r["requests"] for r in group)
        if requests < min_requests or requests == 0:
            continue
        p50, p95, p99 = range_quantiles(group, PERCENTILES)
        rows.append(
            {
                "endpoint": endpoint, "requests": requests, "p50": p50, "p95": p95, "p99": p99,
                "error_rate_4xx": sum(r["status_4xx"] or 0 for r in group) / requests,
                "error_rate_5xx": sum(r["status_5xx"] or 0 for r in group) / requests,
            }
        )  # fmt: skip
    key = RANGE_RANKINGS[by]
    ranked = [r for r in rows if r[key] is not None]
    ranked.sort(key=lambda r: (-r[key], -r["requests"], r["endpoint"]))
    return ranked[:n]


def open_windows(conn: sqlite3.Connection, period: Period) -> int:
    """How many windows starting in `period` are not final yet (top_range leaves them out)."""
    return conn.execute(
        f"SELECT COUNT(DISTINCT window_start) FROM endpoint_metrics WHERE is_final = 0 "
        f"AND {_IN_RANGE}",
        (period.start_iso, period.end_iso),
    ).fetchone()[0]
