"""`/metrics` in the Prometheus text format, read from the SQLite analytics database at each
scrape, so every counter equals the committed account (and survives restarts: the database
holds it, not this process).

`read_snapshot` does the reading, `families` turns a snapshot into metric families (pure),
`serve_metrics` serves them with prometheus-client on a loopback address by default.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from apistream import sqlite_store
from apistream.timefmt import parse_iso

PREFIX = "apistream"
OUTCOMES = {
    "valid": "valid",
    "quarantined": "quarantined",
    "duplicate": "duplicates",
    "late": "late",
}


@dataclass(frozen=True)
class EndpointWindow:
    """The newest final window of one endpoint and method."""

    endpoint: str
    method: str
    window_seconds: float
    requests: int
    status_5xx: int
    latency_p95_ms: float | None


@dataclass(frozen=True)
class QueryProgress:
    """The last micro-batch of a query (stream_progress)."""

    batch_id: int
    duration_ms: int | None
    input_rows_per_second: float | None
    processed_rows_per_second: float | None
    watermark: str | None
    state_rows: int | None


@dataclass(frozen=True)
class Snapshot:
    """What /metrics shows, as read from SQLite in one read transaction."""

    totals: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    queries: dict[str, QueryProgress] = field(default_factory=dict)
    anomalies: dict[tuple[str, str, str], int] = field(default_factory=dict)
    endpoints: list[EndpointWindow] = field(default_factory=list)
    newest_event: str | None = None
    newest_final_window_end: str | None = None


def read_snapshot(path: str | Path) -> Snapshot:
    """One consistent read of the database (an empty snapshot before it exists)."""
    if not Path(path).is_file():
        return Snapshot()
    with sqlite_store.read_only(path) as db:  # one snapshot of the WAL for every query
        try:
            return _read(db)
        except sqlite3.OperationalError as exc:  # tables not made yet
            if "no such table" in str(exc):
                return Snapshot()
            raise


def _read(db: sqlite3.Connection) -> Snapshot:
    names = ("input", "valid", "quarantined", "duplicates", "late", "batches")
    totals = dict(
        zip(
            names,
            db.execute(f"SELECT {', '.join(names)} FROM data_quality_totals").fetchone(),
            strict=True,
        )
    )
    reasons = dict(db.execute("SELECT reason, records FROM quarantine_reasons"))
    queries = {
        row[0]: QueryProgress(*row[1:])
        for row in db.execute(
            "SELECT query, batch_id, batch_duration_ms, input_rows_per_second, "
            "processed_rows_per_second, watermark, state_rows FROM stream_progress p "
            "WHERE batch_id = (SELECT MAX(batch_id) FROM stream_progress q "
            "WHERE q.query = p.query)"
        )
    }
    anomalies = {
        (detector, metric, severity): n
        for detector, metric, severity, n in db.execute(
            "SELECT detector, metric, severity, COUNT(*) FROM anomalies GROUP BY 1, 2, 3"
        )
    }
    # The newest final window of each configured endpoint (the endpoints table): the labels
    # are bounded by the config, whatever paths the traffic holds.
    endpoints = [
        EndpointWindow(endpoint, method, _seconds(_time(end), _time(start)) or 0.0, n, s5xx, p95)
        for endpoint, method, start, end, n, s5xx, p95 in db.execute(
            "SELECT m.endpoint, m.method, m.window_start, m.window_end, "
            "m.requests, COALESCE(m.status_5xx, 0), m.latency_p95_ms "
            "FROM endpoint_metrics m JOIN endpoints e ON e.endpoint = m.endpoint "
            "WHERE m.is_final = 1 AND m.window_start = (SELECT MAX(window_start) "
            "FROM endpoint_metrics n WHERE n.is_final = 1 AND n.endpoint = m.endpoint "
            "AND n.method = m.method) ORDER BY 1, 2"
        )
    ]
    newest_event = db.execute("SELECT MAX(max_event_time) FROM sink_commits").fetchone()[0]
    newest_final = db.execute(
        "SELECT MAX(window_end) FROM endpoint_metrics WHERE is_final = 1"
    ).fetchone()[0]
    return Snapshot(totals, reasons, queries, anomalies, endpoints, newest_event, newest_final)


def families(snap: Snapshot, now: datetime) -> Iterator[Metric]:
    """The metric families of a snapshot at wall time `now` (naive UTC, as parse_iso)."""
    t = snap.totals
    records = CounterMetricFamily(
        f"{PREFIX}_records",
        "Input records by outcome (input = the sum of all outcomes).",
        labels=["outcome"],
    )
    for outcome, column in OUTCOMES.items():
        records.add_metric([outcome], t.get(column, 0))
    yield records
    yield CounterMetricFamily(
        f"{PREFIX}_input_records",
        "Input records read (lines or Kafka messages).",
        value=t.get("input", 0),
    )
    by_reason = CounterMetricFamily(
        f"{PREFIX}_quarantined_records", "Quarantined records by reason.", labels=["reason"]
    )
    for reason, n in sorted(snap.reasons.items()):
        by_reason.add_metric([reason], n)
    yield by_reason
    yield CounterMetricFamily(
        f"{PREFIX}_batches", "Micro-batches committed.", value=t.get("batches", 0)
    )

    gauges = {
        "batch_duration_seconds": "Wall time of the query's last micro-batch.",
        "input_rows_per_second": "Input rate of the query's last micro-batch.",
        "processed_rows_per_second": "Processing rate of the query's last micro-batch.",
        "state_rows": "Dedup keys kept for the next micro-batch.",
        "watermark_lag_seconds": "Newest event time minus the watermark.",
        "last_batch_id": "Id of the query's last micro-batch.",
    }
    query_families = {
        name: GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["query"])
        for name, doc in gauges.items()
    }
    newest = _time(snap.newest_event)
    for query, q in sorted(snap.queries.items()):
        values = {
            "batch_duration_seconds": None if q.duration_ms is None else q.duration_ms / 1000,
            "input_rows_per_second": q.input_rows_per_second,
            "processed_rows_per_second": q.processed_rows_per_second,
            "state_rows": q.state_rows,
            "watermark_lag_seconds": _seconds(newest, _time(q.watermark)),
            "last_batch_id": q.batch_id,
        }
        for name, value in values.items():
            if value is not None:
                query_families[name].add_metric([query], value)
    yield from query_families.values()

    for name, doc, then in (
        (
            "newest_event_age_seconds",
            "Wall time since the newest valid event's event time.",
            newest,
        ),
        (
            "newest_final_window_age_seconds",
            "Wall time since the end of the newest final (complete) window.",
            _time(snap.newest_final_window_end),
        ),
    ):
        age = _seconds(now, then)
        if age is not None:
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=age)

    anomalies = CounterMetricFamily(
        f"{PREFIX}_anomalies",
        "Anomalies raised, by detector, metric and severity.",
        labels=["detector", "metric", "severity"],
    )
    for key, n in sorted(snap.anomalies.items()):
        anomalies.add_metric(list(key), n)
    yield anomalies

    labels = ["endpoint", "method"]
    rate = GaugeMetricFamily(
        f"{PREFIX}_endpoint_requests_per_second",
        "Requests per second in the endpoint's newest final window.",
        labels=labels,
    )
    errors = GaugeMetricFamily(
        f"{PREFIX}_endpoint_error_rate_5xx",
        "Share of 5xx responses in the endpoint's newest final window.",
        labels=labels,
    )
    p95 = GaugeMetricFamily(
        f"{PREFIX}_endpoint_latency_p95_seconds",
        "p95 latency in the endpoint's newest final window.",
        labels=labels,
    )
    for e in snap.endpoints:
        key = [e.endpoint, e.method]
        if e.window_seconds > 0:
            rate.add_metric(key, e.requests / e.window_seconds)
        errors.add_metric(key, e.status_5xx / e.requests if e.requests else 0.0)
        if e.latency_p95_ms is not None:
            p95.add_metric(key, e.latency_p95_ms / 1000)
    yield from (rate, errors, p95)


def _time(iso: str | None) -> datetime | None:
    return None if iso is None else parse_iso(iso)


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


class SqliteCollector(Collector):
    """Collects `families` of a fresh snapshot of the database at each scrape."""

    def __init__(self, path: str | Path, clock: Callable[[], datetime] | None = None):
        self.path = path
        self.clock = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))

    def collect(self) -> Iterator[Metric]:
        return families(read_snapshot(self.path), self.clock())


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `close` stops it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(sqlite_path: str | Path, host: str, port: int) -> MetricsServer:
    """Serve /metrics of the database at http://host:port (port 0: a free one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SqliteCollector(sqlite_path))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
