"""StreamingQueryListener: per-batch progress and the data-quality account into SQLite,
and a live status for the terminal. Counters come from df.observe and operator metrics,
never from extra actions."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from apistream import sqlite_store
from apistream.pipeline.schema import REASONS

EVENTS_QUERY = "events"
QUALITY_METRICS = "quality"


@dataclass
class QueryStatus:
    batches: int = 0
    last_batch: int = -1
    input_rows: int = 0
    input_rate: float = 0.0
    processed_rate: float = 0.0
    watermark: str | None = None
    state_rows: int = 0


@dataclass
class LiveStatus:
    """What the terminal shows; written by the listener thread, read by the main thread."""

    queries: dict[str, QueryStatus] = field(default_factory=dict)
    totals: dict[str, int] = field(
        default_factory=lambda: {
            "input": 0,
            "valid": 0,
            "quarantined": 0,
            "duplicates": 0,
            "late": 0,
        }
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[dict[str, QueryStatus], dict[str, int]]:
        with self.lock:
            return ({k: QueryStatus(**vars(v)) for k, v in self.queries.items()}, dict(self.totals))


def _state(progress: Any) -> tuple[int, int, int, dict[str, Any]]:
    rows = mem = dropped = 0
    custom: dict[str, Any] = {}
    for op in progress.stateOperators:
        rows += op.numRowsTotal
        mem += op.memoryUsedBytes
        dropped += op.numRowsDroppedByWatermark
        for k, v in (op.customMetrics or {}).items():
            if isinstance(v, int | float):
                custom[k] = custom.get(k, 0) + v
    return rows, mem, dropped, custom


def quality_counts(progress: Any) -> tuple[dict[str, int], dict[str, int]] | None:
    """Data-quality counts of one `events` batch from its observed metrics and dedup operator."""
    observed = progress.observedMetrics.get(QUALITY_METRICS)
    if observed is None:
        return None
    obs = observed.asDict()
    _, _, late, custom = _state(progress)
    duplicates = int(custom.get("numDroppedDuplicateRows", 0))
    valid_checked = int(obs["valid"] or 0)
    counts = {
        "input": int(obs["input"] or 0),
        "valid": valid_checked - duplicates - late,
        "quarantined": int(obs["quarantined"] or 0),
        "duplicates": duplicates,
        "late": late,
    }
    reasons = {r: int(obs[r] or 0) for r in REASONS if obs.get(r)}
    return counts, reasons


class ProgressRecorder(StreamingQueryListener):
    """Writes stream_progress (all queries) and data_quality (the events query) to SQLite."""

    def __init__(self, sqlite_path: str, status: LiveStatus | None = None):
        self.conn = sqlite_store.connect(sqlite_path)
        self.status = status or LiveStatus()
        self.terminated: set[str] = set()
        self._cond = threading.Condition()

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        # Events reach a listener in order: once a run's termination is here, so is all of
        # its progress.
        with self._cond:
            self.terminated.add(str(event.runId))
            self._cond.notify_all()

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        rows, mem, dropped, _ = _state(p)
        watermark = (p.eventTime or {}).get("watermark")
        sqlite_store.record_progress(
            self.conn,
            {
                "query": p.name,
                "batch_id": p.batchId,
                "timestamp": p.timestamp,
                "input_rows": p.numInputRows,
                "input_rows_per_second": _num(p.inputRowsPerSecond),
                "processed_rows_per_second": _num(p.processedRowsPerSecond),
                "batch_duration_ms": p.batchDuration,
                "watermark": watermark,
                "state_rows": rows,
                "state_memory_bytes": mem,
                "rows_dropped_by_watermark": dropped,
            },
        )
        quality = quality_counts(p) if p.name == EVENTS_QUERY else None
        if quality:
            sqlite_store.record_quality(self.conn, p.batchId, *quality, watermark)
        with self.status.lock:
            q = self.status.queries.setdefault(p.name, QueryStatus())
            if p.numInputRows or q.batches == 0:
                q.input_rate = _num(p.inputRowsPerSecond) or 0.0
                q.processed_rate = _num(p.processedRowsPerSecond) or 0.0
            q.batches += 1
            q.last_batch = p.batchId
            q.input_rows += p.numInputRows
            q.watermark = watermark
            q.state_rows = rows
            if quality:
                for k, v in quality[0].items():
                    self.status.totals[k] += v

    def wait_terminated(self, run_id: str, timeout: float = 60.0) -> bool:
        """Block until the listener has handled the end (and so all progress) of a run."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while run_id not in self.terminated:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN -> None
