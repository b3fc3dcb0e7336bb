"""The SQLite analytics database: schema and plain reads and writes (no Spark, no rules).

WAL mode, so dashboards reading the file never block the writer. The sink of the pipeline
applies a whole micro-batch (window metrics, finalisation, anomalies, data-quality row and
its `sink_commits` row) inside one `transaction`; a batch id already in `sink_commits` is
skipped, so a restart after a crash at any point leaves the same rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from apistream.anomalies import ANOMALY_SCHEMA, Baseline
from apistream.catalog import PIPELINE_QUERY
from apistream.errors import ApiStreamError
from apistream.timefmt import iso, now_iso, parse_iso
from apistream.window_metrics import METRIC_COLUMNS, STATE_COLUMNS

__all__ = ["iso", "parse_iso"]

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
    latency_count INTEGER,               -- requests with a latency
    latency_sum_ms REAL,
    latency_histogram BLOB,              -- latency_histogram.Histogram: mergeable percentiles
    max_event_time TEXT,                 -- newest event in the window (ISO, ms)
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
    batch_id INTEGER PRIMARY KEY,        -- micro-batch of the pipeline query
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
    max_event_time TEXT,                 -- newest valid event time up to this batch (ISO, ms)
    committed_at TEXT NOT NULL,          -- ISO, ms
    state_rows INTEGER,                  -- dedup keys kept for the next batch
    stage_ms TEXT,                       -- JSON: wall ms of each stage of the sink (profile)
    PRIMARY KEY (query, batch_id)
);
CREATE TABLE IF NOT EXISTS endpoints (
    endpoint TEXT PRIMARY KEY, service TEXT, team TEXT, latency_slo_ms REAL
);
CREATE TABLE IF NOT EXISTS alert_deliveries (  -- anomalies sent to webhooks (alert_delivery)
    webhook TEXT NOT NULL,               -- alerts.webhooks[].name
    detector TEXT NOT NULL DEFAULT 'ewma',
    endpoint TEXT NOT NULL, method TEXT NOT NULL, window_start TEXT NOT NULL,
    metric TEXT NOT NULL,                -- with the four above: the anomaly's key
    attempts INTEGER NOT NULL,
    next_attempt_at TEXT,                -- ISO; retries back off
    delivered_at TEXT,                   -- ISO, once the webhook answered 2xx
    last_error TEXT,
    PRIMARY KEY (webhook, detector, endpoint, method, window_start, metric)
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


class ResultsNotFound(ApiStreamError):
    """There is no analytics database where one was expected."""


def require(path: str | Path) -> None:
    """Raise ResultsNotFound naming the path unless the analytics database exists."""
    if not Path(path).is_file():
        raise ResultsNotFound(f"no analytics database at {path} (run `apistream stream` first)")


@contextmanager
def read_only(path: str | Path, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """The one way to read the database: a read-only connection holding one read transaction
    (a consistent snapshot while the stream commits), closed at the end of the `with`.

    In WAL mode a reader never blocks the writer; keep the block short so checkpoints can
    proceed. Raises ResultsNotFound naming the path when the file does not exist.
    """
    require(path)
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    with closing(conn):
        conn.execute("PRAGMA query_only = 1")
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:  # pandas rolls back on its own errors: keep theirs
                conn.execute("COMMIT")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (creating) the database in WAL mode with the schema in place."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA + ANOMALY_SCHEMA)
    _migrate(conn)
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written before anomalies had a `detector` (and baselines their slow
    mean and last value) to the current schema; its anomalies are the ewma detector's."""
    steps = []
    for table in ("anomalies", "alert_deliveries"):
        old = _columns(conn, table)
        if "detector" not in old:
            cols = ", ".join(old)
            steps += [
                f"ALTER TABLE {table} RENAME TO {table}_old;",
                SCHEMA + ANOMALY_SCHEMA,  # creates the table anew (the rest exists)
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {table}_old;",
                f"DROP TABLE {table}_old;",
            ]
    have = _columns(conn, "anomaly_baselines")
    steps += [
        f"ALTER TABLE anomaly_baselines ADD COLUMN {col} REAL;"
        for col in ("slow_mean", "last_value", "last_expected")
        if col not in have
    ]
    if not steps:
        return
    try:  # one script, one transaction (executescript would commit a transaction around it)
        conn.executescript("\n".join(["BEGIN IMMEDIATE;", *steps, "COMMIT;"]))
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def save_endpoints(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn:
        conn.executemany("INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?)", list(rows))


# How long a writer waits for another one (e.g. a backup or a manual `sqlite3` session) to
# release the database before the run fails; each attempt waits the connection's timeout.
LOCK_PATIENCE_S = 600.0
log = logging.getLogger("apistream")


class DatabaseLockedError(sqlite3.OperationalError):
    """Another process held the write lock for longer than the patience."""


def begin_immediate(conn: sqlite3.Connection, patience_s: float = LOCK_PATIENCE_S) -> None:
    """Take the write lock, waiting (bounded) while another process holds it."""
    deadline = time.monotonic() + patience_s
    warned = False
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseLockedError(
                    f"the SQLite database is locked for writing by another process; waited "
                    f"{patience_s:.0f} s"
                ) from None
            if not warned:
                log.warning(
                    "SQLite database locked by another writer; waiting (up to %.0f s)", patience_s
                )
                warned = True


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error; waits
    (bounded) for another writer to release the database."""
    begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def is_committed(conn: sqlite3.Connection, batch_id: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sink_commits WHERE query = ? AND batch_id = ?", (PIPELINE_QUERY, batch_id)
    ).fetchone()
    return row is not None


def last_commits(conn: sqlite3.Connection, n: int = 2) -> dict[int, str | None]:
    """batch id -> running newest event time, of the last `n` committed batches."""
    rows = conn.execute(
        "SELECT batch_id, max_event_time FROM sink_commits WHERE query = ? "
        "ORDER BY batch_id DESC LIMIT ?",
        (PIPELINE_QUERY, n),
    )
    return dict(rows.fetchall())


def record_commit(
    conn: sqlite3.Connection,
    batch_id: int,
    max_event_time: str | None,
    state_rows: int,
    stage_ms: Mapping[str, int] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO sink_commits VALUES (?, ?, ?, ?, ?, ?)",
        (
            PIPELINE_QUERY,
            batch_id,
            max_event_time,
            now_iso(ms=True),
            state_rows,
            json.dumps(dict(stage_ms or {})),
        ),
    )


def commits_newer_than(
    conn: sqlite3.Connection, cutoff: str | None
) -> list[tuple[int, str | None, int]]:
    """(batch id, running newest event time, valid events) of the committed batches whose
    newest event time is after `cutoff` (all of them when None)."""
    rows = conn.execute(
        "SELECT c.batch_id, c.max_event_time, COALESCE(q.valid, 0) FROM sink_commits c "
        "LEFT JOIN data_quality q USING (batch_id) "
        "WHERE c.query = ? AND (? IS NULL OR c.max_event_time > ?) ORDER BY c.batch_id",
        (PIPELINE_QUERY, cutoff, cutoff),
    )
    return rows.fetchall()


_WINDOW_COLUMNS = (*METRIC_COLUMNS, *STATE_COLUMNS)
_KEY = ("window_start", "endpoint", "method")
_UPSERT = (
    f"INSERT INTO endpoint_metrics ({', '.join(_WINDOW_COLUMNS)}, updated_batch) "
    f"VALUES ({', '.join('?' * (len(_WINDOW_COLUMNS) + 1))}) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [*_WINDOW_COLUMNS, "updated_batch"] if c not in _KEY)
)


def _dicts(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def final_windows(
    conn: sqlite3.Connection, start: str | None, end: str | None, columns: str = "*"
) -> list[dict[str, Any]]:
    """The finalised window rows starting in [start, end) (None: open on that side), in
    window, endpoint and method order."""
    cur = conn.execute(
        f"SELECT {columns} FROM endpoint_metrics WHERE is_final = 1 "
        "AND (?1 IS NULL OR window_start >= ?1) AND (?2 IS NULL OR window_start < ?2) "
        "ORDER BY window_start, endpoint, method",
        (start, end),
    )
    return _dicts(cur)


def read_windows(
    conn: sqlite3.Connection, window_starts: Iterable[str]
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Stored rows of the given windows, by (window_start, endpoint, method)."""
    starts = sorted(set(window_starts))
    if not starts:
        return {}
    cur = conn.execute(
        f"SELECT * FROM endpoint_metrics WHERE window_start IN ({','.join('?' * len(starts))})",
        starts,
    )
    return {(r["window_start"], r["endpoint"], r["method"]): r for r in _dicts(cur)}


def upsert_windows(
    conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]], batch_id: int
) -> None:
    conn.executemany(_UPSERT, [[*(r[c] for c in _WINDOW_COLUMNS), batch_id] for r in rows])


def open_windows_until(conn: sqlite3.Connection, threshold: str) -> list[dict[str, Any]]:
    """Windows not yet final that end at or before `threshold`, in window order."""
    cur = conn.execute(
        "SELECT * FROM endpoint_metrics WHERE is_final = 0 AND window_end <= ? "
        "ORDER BY window_start, endpoint, method",
        (threshold,),
    )
    return _dicts(cur)


def mark_final(conn: sqlite3.Connection, threshold: str) -> None:
    conn.execute(
        "UPDATE endpoint_metrics SET is_final = 1 WHERE is_final = 0 AND window_end <= ?",
        (threshold,),
    )


def first_window_start(conn: sqlite3.Connection) -> str | None:
    return conn.execute("SELECT MIN(window_start) FROM endpoint_metrics").fetchone()[0]


BASELINE_COLUMNS = tuple(f.name for f in fields(Baseline))


def read_baselines(conn: sqlite3.Connection) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(scope, metric) -> the anomaly baseline's BASELINE_COLUMNS (anomalies.Baseline)."""
    rows = conn.execute(
        f"SELECT endpoint, metric, {', '.join(BASELINE_COLUMNS)} FROM anomaly_baselines"
    )
    return {(e, m): tuple(values) for e, m, *values in rows}


def write_baselines(
    conn: sqlite3.Connection,
    baselines: Mapping[tuple[str, str], tuple[Any, ...]],
    last_window: str,
) -> None:
    cols = ("endpoint", "metric", *BASELINE_COLUMNS, "last_window")
    conn.executemany(
        f"INSERT OR REPLACE INTO anomaly_baselines ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        [(e, m, *values, last_window) for (e, m), values in baselines.items()],
    )


def write_anomalies(conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    conn.executemany(
        f"INSERT OR REPLACE INTO anomalies ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        [[r[c] for c in cols] for r in rows],
    )


def refresh_throughput(
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


def state_rows(conn: sqlite3.Connection, batch_id: int) -> int | None:
    """Dedup keys kept after a committed batch."""
    row = conn.execute(
        "SELECT state_rows FROM sink_commits WHERE query = ? AND batch_id = ?",
        (PIPELINE_QUERY, batch_id),
    ).fetchone()
    return row[0] if row else None


def late_cutoff_of(conn: sqlite3.Connection, batch_id: int) -> str | None:
    """The late cut-off (watermark) a committed batch was judged against."""
    row = conn.execute("SELECT watermark FROM data_quality WHERE batch_id = ?", (batch_id,))
    found = row.fetchone()
    return found[0] if found else None


def record_progress(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
    """Upsert one stream_progress row (keyed by query and batch id)."""
    cols = list(row)
    with transaction(conn):
        conn.execute(
            f"INSERT OR REPLACE INTO stream_progress ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            [row[c] for c in cols],
        )


def write_quality(
    conn: sqlite3.Connection,
    batch_id: int,
    counts: Mapping[str, int],
    reasons: Mapping[str, int],
    watermark: str | None,
) -> None:
    """The data-quality account of one batch (call inside the batch's transaction)."""
    conn.execute(
        "INSERT OR REPLACE INTO data_quality VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            batch_id,
            counts["input"],
            counts["valid"],
            counts["quarantined"],
            counts["duplicates"],
            counts["late"],
            json.dumps({k: v for k, v in reasons.items() if v}, sort_keys=True),
            watermark,
            now_iso(),
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


ANOMALY_KEY = ("detector", "endpoint", "method", "window_start", "metric")


def pending_alerts(
    conn: sqlite3.Connection,
    webhook: str,
    severities: Sequence[str],
    max_attempts: int,
    now: str,
    limit: int,
) -> list[dict[str, Any]]:
    """Anomalies of the given severities not yet delivered to `webhook`, oldest window first:
    never tried, or due for a retry and with attempts left."""
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT a.*, COALESCE(d.attempts, 0) AS attempts FROM anomalies a "
            "LEFT JOIN alert_deliveries d ON d.webhook = ? AND d.detector = a.detector "
            "AND d.endpoint = a.endpoint "
            "AND d.method = a.method AND d.window_start = a.window_start AND d.metric = a.metric "
            f"WHERE a.severity IN ({','.join('?' * len(severities))}) "
            "AND d.delivered_at IS NULL AND COALESCE(d.attempts, 0) < ? "
            "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?) "
            "ORDER BY a.window_start, a.endpoint, a.method, a.metric, a.detector LIMIT ?",
            (webhook, *severities, max_attempts, now, limit),
        ).fetchall()
    finally:
        conn.row_factory = None
    return [dict(r) for r in rows]


def record_attempt(
    conn: sqlite3.Connection,
    webhook: str,
    anomaly: Mapping[str, Any],
    attempts: int,
    delivered_at: str | None,
    next_attempt_at: str | None,
    error: str | None,
) -> None:
    """The outcome of one delivery attempt of an anomaly to a webhook."""
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO alert_deliveries (webhook, detector, endpoint, method, "
            "window_start, metric, attempts, next_attempt_at, delivered_at, last_error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (webhook, *(anomaly[k] for k in ANOMALY_KEY), attempts, next_attempt_at,
             delivered_at, error),
        )  # fmt: skip
