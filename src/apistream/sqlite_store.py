"""The SQLite analytics database: schema, idempotent per-batch upserts, window finalisation.

Plain sqlite3, no Spark. WAL mode, so dashboards reading the file never block the writer.
Each metrics batch is applied in one transaction together with its row in `sink_commits`;
a replayed batch id is skipped, so a restart after a crash at any point leaves the same rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apistream.anomalies import ANOMALY_SCHEMA
from apistream.pipeline.aggregate import METRIC_COLUMNS
from apistream.top import RANKING_VIEW

METRICS_QUERY = "metrics"
_METRIC_VALUES = [c for c in METRIC_COLUMNS if c != "max_event_time"]
_KEY = ("window_start", "endpoint", "method")

SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoint_metrics (
    window_start TEXT NOT NULL,          -- ISO-8601 UTC, e.g. 2026-11-27T10:05:00Z
    window_end TEXT NOT NULL,
    endpoint TEXT NOT NULL,              -- endpoint template, e.g. /api/v1/users/{id}
    method TEXT NOT NULL,
    requests INTEGER NOT NULL,
    status_1xx INTEGER, status_2xx INTEGER, status_3xx INTEGER,
    status_4xx INTEGER, status_5xx INTEGER,
    error_rate_4xx REAL, error_rate_5xx REAL,
    latency_min_ms REAL, latency_avg_ms REAL, latency_max_ms REAL,
    latency_p50_ms REAL, latency_p95_ms REAL, latency_p99_ms REAL,
    bytes_sent INTEGER,
    is_final INTEGER NOT NULL DEFAULT 0, -- 1 once the watermark has passed window_end
    updated_batch INTEGER NOT NULL,
    PRIMARY KEY (window_start, endpoint, method)
);
CREATE INDEX IF NOT EXISTS endpoint_metrics_final ON endpoint_metrics (is_final, window_end);
CREATE TABLE IF NOT EXISTS throughput (
    granularity TEXT NOT NULL,           -- 'window' (processing.window) or 'hour'
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    requests INTEGER NOT NULL,
    status_4xx INTEGER NOT NULL,
    status_5xx INTEGER NOT NULL,
    events_per_second REAL NOT NULL,
    events_per_minute REAL NOT NULL,
    events_per_hour REAL NOT NULL,
    is_final INTEGER NOT NULL,
    PRIMARY KEY (granularity, period_start)
);
CREATE TABLE IF NOT EXISTS data_quality (
    batch_id INTEGER PRIMARY KEY,        -- micro-batch of the `events` query
    input INTEGER NOT NULL,              -- lines read
    valid INTEGER NOT NULL,              -- written to the events lake
    quarantined INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    late INTEGER NOT NULL,               -- older than the watermark, dropped
    quarantined_by_reason TEXT NOT NULL, -- JSON object reason -> count
    watermark TEXT,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_progress (
    query TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    input_rows INTEGER NOT NULL,
    input_rows_per_second REAL,
    processed_rows_per_second REAL,
    batch_duration_ms INTEGER,
    watermark TEXT,
    state_rows INTEGER,
    state_memory_bytes INTEGER,
    rows_dropped_by_watermark INTEGER,
    PRIMARY KEY (query, batch_id)
);
CREATE TABLE IF NOT EXISTS sink_commits (
    query TEXT NOT NULL,
    batch_id INTEGER NOT NULL,
    max_event_time TEXT,                 -- newest event time seen up to this batch
    committed_at TEXT NOT NULL,
    PRIMARY KEY (query, batch_id)
);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint TEXT PRIMARY KEY, service TEXT, team TEXT, latency_slo_ms REAL
);
CREATE VIEW IF NOT EXISTS data_quality_totals AS
SELECT COALESCE(SUM(input), 0) AS input, COALESCE(SUM(valid), 0) AS valid,
       COALESCE(SUM(quarantined), 0) AS quarantined,
       COALESCE(SUM(duplicates), 0) AS duplicates, COALESCE(SUM(late), 0) AS late,
       COUNT(*) AS batches
FROM data_quality;
CREATE VIEW IF NOT EXISTS quarantine_reasons AS
SELECT j.key AS reason, SUM(j.value) AS records
FROM data_quality, json_each(data_quality.quarantined_by_reason) AS j
GROUP BY j.key;
"""


def iso(ts: datetime | None, ms: bool = False) -> str | None:
    """A naive-UTC or aware datetime as 'YYYY-MM-DDTHH:MM:SSZ' (floored to the second), or
    with milliseconds. Whole-second text of one width compares correctly as a string."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="milliseconds" if ms else "seconds") + "Z"


def parse_iso(text: str) -> datetime:
    """'...Z' text -> naive UTC datetime."""
    return datetime.fromisoformat(text.rstrip("Z"))


def naive_utc(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def read_only(path: str | Path, timeout: float = 5.0) -> closing[sqlite3.Connection]:
    """A read-only connection to an existing database, closed at the end of a `with`."""
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout))


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating) the database in WAL mode with the schema in place."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA + ANOMALY_SCHEMA + RANKING_VIEW)
    return conn


def save_endpoints(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn:
        conn.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?)", list(rows))


def _metric_row(row: Mapping[str, Any], batch_id: int) -> tuple[Any, ...]:
    values = [
        iso(row[c]) if c in ("window_start", "window_end") else row[c] for c in _METRIC_VALUES
    ]
    return (*values, batch_id)


_UPSERT = (
    f"INSERT INTO endpoint_metrics ({', '.join(_METRIC_VALUES)}, updated_batch) "
    f"VALUES ({', '.join('?' * (len(_METRIC_VALUES) + 1))}) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [*_METRIC_VALUES, "updated_batch"] if c not in _KEY)
)

FinalHandler = Callable[[list[dict[str, Any]], str], None]
Detector = Callable[[sqlite3.Connection, list[dict[str, Any]], str, str | None], Any]


def apply_metrics_batch(
    conn: sqlite3.Connection,
    batch_id: int,
    rows: Sequence[Mapping[str, Any]],
    watermark_delay_s: float,
    window_s: float,
    on_final: FinalHandler,
    detector: Detector | None = None,
) -> bool:
    """Upsert one micro-batch of window metrics and finalise the windows the watermark passed.

    Spark drops, from the next batch on, rows of windows ending at or before the watermark
    derived from the newest event time up to the previous batch; those windows are final.
    `on_final(rows, tag)` persists finalised rows (Parquet) before the transaction commits.
    Returns False when the batch had already been applied.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = conn.execute(
            "SELECT 1 FROM sink_commits WHERE query = ? AND batch_id = ?",
            (METRICS_QUERY, batch_id),
        ).fetchone()
        if done:
            conn.execute("ROLLBACK")
            return False
        conn.executemany(_UPSERT, [_metric_row(r, batch_id) for r in rows])
        prev = conn.execute(
            "SELECT max_event_time FROM sink_commits WHERE query = ? AND batch_id < ? "
            "ORDER BY batch_id DESC LIMIT 1",
            (METRICS_QUERY, batch_id),
        ).fetchone()
        prev_max = parse_iso(prev[0]) if prev and prev[0] else None
        batch_max = max(
            (naive_utc(r["max_event_time"]) for r in rows if r["max_event_time"]), default=None
        )
        touched = {iso(r["window_start"]) for r in rows}
        if prev_max is not None:
            threshold = iso(prev_max - timedelta(seconds=watermark_delay_s))
            touched |= _finalise(conn, threshold, on_final, f"batch-{batch_id:010d}", detector)
            _refresh_throughput(conn, touched, window_s, threshold)
        else:
            _refresh_throughput(conn, touched, window_s, None)
        new_max = max(filter(None, [prev_max, batch_max]), default=None)
        conn.execute(
            "INSERT INTO sink_commits VALUES (?, ?, ?, ?)",
            (METRICS_QUERY, batch_id, iso(new_max, ms=True), iso(datetime.now(UTC), ms=True)),
        )
        conn.execute("COMMIT")
        return True
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def finalise_all(
    conn: sqlite3.Connection,
    window_s: float,
    on_final: FinalHandler,
    detector: Detector | None = None,
) -> int:
    """End of input: every open window is final (like a watermark at +infinity)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute(
            "SELECT MAX(batch_id) FROM sink_commits WHERE query = ?", (METRICS_QUERY,)
        ).fetchone()[0]
        newest = conn.execute(
            "SELECT max_event_time FROM sink_commits WHERE query = ? "
            "ORDER BY batch_id DESC LIMIT 1",
            (METRICS_QUERY,),
        ).fetchone()
        touched = _finalise(
            conn,
            "9999-12-31T23:59:59Z",
            on_final,
            f"flush-{(last if last is not None else -1):010d}",
            detector,
            newest[0] if newest else None,
        )
        _refresh_throughput(conn, touched, window_s, "9999-12-31T23:59:59Z")
        conn.execute("COMMIT")
        return len(touched)
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _finalise(
    conn: sqlite3.Connection,
    threshold: str,
    on_final: FinalHandler,
    tag: str,
    detector: Detector | None = None,
    complete_until: str | None = None,
) -> set[str]:
    cur = conn.execute(
        "SELECT * FROM endpoint_metrics WHERE is_final = 0 AND window_end <= ? "
        "ORDER BY window_start, endpoint, method",
        (threshold,),
    )
    names = [d[0] for d in cur.description]
    final = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not final:
        return set()
    for r in final:
        r["is_final"] = 1
    on_final(final, tag)
    if detector is not None:
        detector(conn, final, tag, complete_until)
    conn.execute(
        "UPDATE endpoint_metrics SET is_final = 1 WHERE is_final = 0 AND window_end <= ?",
        (threshold,),
    )
    return {r["window_start"] for r in final}


def _refresh_throughput(
    conn: sqlite3.Connection, window_starts: set[str], window_s: float, threshold: str | None
) -> None:
    if not window_starts:
        return
    starts = sorted(window_starts)
    marks = ",".join("?" * len(starts))
    conn.execute(
        f"""INSERT INTO throughput
        SELECT 'window', window_start, window_end, SUM(requests), SUM(status_4xx),
               SUM(status_5xx), SUM(requests) / ?1, SUM(requests) * 60.0 / ?1,
               SUM(requests) * 3600.0 / ?1, MIN(is_final)
        FROM endpoint_metrics WHERE window_start IN ({marks})
        GROUP BY window_start, window_end
        ON CONFLICT (granularity, period_start) DO UPDATE SET
            requests = excluded.requests, status_4xx = excluded.status_4xx,
            status_5xx = excluded.status_5xx, events_per_second = excluded.events_per_second,
            events_per_minute = excluded.events_per_minute,
            events_per_hour = excluded.events_per_hour, is_final = excluded.is_final""",
        [float(window_s), *starts],
    )
    hours = sorted({s[:13] for s in starts})
    hour_marks = ",".join("?" * len(hours))
    conn.execute(
        f"""INSERT INTO throughput
        SELECT 'hour', h || ':00:00Z', strftime('%Y-%m-%dT%H:00:00Z', h || ':00:00', '+1 hour'),
               SUM(requests), SUM(status_4xx), SUM(status_5xx), SUM(requests) / 3600.0,
               SUM(requests) / 60.0, SUM(requests),
               CASE WHEN strftime('%Y-%m-%dT%H:00:00Z', h || ':00:00', '+1 hour') <= ?1
                    AND MIN(is_final) = 1 THEN 1 ELSE 0 END
        FROM (SELECT substr(window_start, 1, 13) AS h, * FROM endpoint_metrics)
        WHERE h IN ({hour_marks})
        GROUP BY h
        ON CONFLICT (granularity, period_start) DO UPDATE SET
            requests = excluded.requests, status_4xx = excluded.status_4xx,
            status_5xx = excluded.status_5xx, events_per_second = excluded.events_per_second,
            events_per_minute = excluded.events_per_minute,
            events_per_hour = excluded.events_per_hour, is_final = excluded.is_final""",
        [threshold or "", *hours],
    )


def record_progress(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """Upsert one stream_progress row (keyed by query and batch id)."""
    cols = list(row)
    with conn:
        conn.execute(
            f"INSERT OR REPLACE INTO stream_progress ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )


def record_quality(
    conn: sqlite3.Connection,
    batch_id: int,
    counts: Mapping[str, int],
    reasons: Mapping[str, int],
    watermark: str | None,
) -> None:
    """Upsert the data-quality account of one `events` batch."""
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO data_quality VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                batch_id,
                counts["input"],
                counts["valid"],
                counts["quarantined"],
                counts["duplicates"],
                counts["late"],
                json.dumps(dict(reasons), sort_keys=True),
                watermark,
                iso(datetime.now(UTC)),
            ),
        )


def read_totals(path: str | Path) -> dict[str, Any]:
    """The data-quality account over all batches, with quarantined records by reason."""
    with read_only(path) as conn:
        cur = conn.execute("SELECT * FROM data_quality_totals")
        totals = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        totals["quarantined_by_reason"] = dict(
            conn.execute("SELECT reason, records FROM quarantine_reasons ORDER BY reason")
        )
    return totals
