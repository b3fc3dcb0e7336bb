"""StreamingQueryListener: per-batch progress into SQLite, and a live status for the
terminal. The data-quality account is not written here: the sink commits it with the batch's
data (sink_commit.apply_batch)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from apistream import sqlite_store


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
    """What the terminal shows; written by the listener and the sink, read by the main
    thread."""

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
    # The query's batch id -> the id of its last sink batch, until the listener reads it (they
    # differ after a crash: pipeline.checkpoint_log.source_batches).
    sink_batches: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[dict[str, QueryStatus], dict[str, int]]:
        with self.lock:
            return ({k: QueryStatus(**vars(v)) for k, v in self.queries.items()}, dict(self.totals))

    def add_totals(self, counts: dict[str, int]) -> None:
        with self.lock:
            for k, v in counts.items():
                self.totals[k] += v


class ProgressRecorder(StreamingQueryListener):
    """Writes stream_progress rows to SQLite and keeps the live status."""

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
        with self.status.lock:
            sink_batch = self.status.sink_batches.pop(p.batchId, p.batchId)
        state_rows = sqlite_store.state_rows(self.conn, sink_batch)
        watermark = sqlite_store.late_cutoff_of(self.conn, sink_batch)
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
                "state_rows": state_rows,
                "state_memory_bytes": None,
                "rows_dropped_by_watermark": None,
            },
        )
        with self.status.lock:
            q = self.status.queries.setdefault(p.name, QueryStatus())
            if p.numInputRows or q.batches == 0:
                q.input_rate = _num(p.inputRowsPerSecond) or 0.0
                q.processed_rate = _num(p.processedRowsPerSecond) or 0.0
            q.batches += 1
            q.last_batch = p.batchId
            q.input_rows += p.numInputRows
            q.watermark = watermark
            q.state_rows = state_rows or 0

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
