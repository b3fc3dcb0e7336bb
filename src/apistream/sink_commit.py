"""One micro-batch into SQLite, in one transaction (no Spark).

The sink hands over what the batch produced: its partial window aggregates, its
data-quality account and its newest event time. Here they are merged into the stored
windows, the windows the watermark has passed are finalised (written to the lake and
scored for anomalies by the configured detectors), and the batch's `sink_commits` row is
written last, all in one transaction. A batch id already committed is skipped, so a replay
changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apistream import sqlite_store as store
from apistream.anomalies import partial_windows, score_windows
from apistream.config import Config
from apistream.timefmt import now_iso
from apistream.window_metrics import final_threshold, merge_windows, newer

END_OF_TIME = "9999-12-31T23:59:59Z"
RowsWriter = Callable[[list[dict[str, Any]], str], None]
# Finalised window rows, the windows whose request counts are partial, detected_at ->
# anomalies: a detector without state in SQLite (the forecast's model is loaded once).
Scorer = Callable[[list[dict[str, Any]], frozenset[str], str], list[dict[str, Any]]]


@dataclass(frozen=True)
class LakeWriters:
    """Where finalised windows and anomalies go (Parquet), each file named by `tag`, and the
    forecast detector when anomaly.detectors has it."""

    final_windows: RowsWriter
    anomalies: RowsWriter
    forecast: Scorer | None = None


@dataclass(frozen=True)
class BatchOutput:
    """What one micro-batch produced, ready to commit."""

    batch_id: int
    partials: list[dict[str, Any]]
    counts: Mapping[str, int]
    reasons: Mapping[str, int]
    max_event_time: str | None
    late_cutoff: str | None
    state_rows: int = 0
    stage_ms: dict[str, int] = field(default_factory=dict)


def apply_batch(conn: sqlite3.Connection, out: BatchOutput, cfg: Config, lake: LakeWriters) -> bool:
    """Commit one batch; False if it had been committed before (a replay)."""
    with store.transaction(conn):
        if store.is_committed(conn, out.batch_id):
            return False
        rows = merge_windows(
            store.read_windows(conn, {p["window_start"] for p in out.partials}), out.partials
        )
        store.upsert_windows(conn, rows, out.batch_id)
        maxima = store.last_commits(conn)
        running = newer(maxima[max(maxima)] if maxima else None, out.max_event_time)
        maxima[out.batch_id] = running
        threshold = final_threshold(maxima, out.batch_id, cfg.processing.watermark)
        touched = {r["window_start"] for r in rows}
        if threshold is not None:
            touched |= finalise(conn, threshold, f"batch-{out.batch_id:010d}", cfg, lake)
        store.refresh_throughput(conn, touched, cfg.processing.window, threshold)
        store.write_quality(conn, out.batch_id, out.counts, out.reasons, out.late_cutoff)
        store.record_commit(conn, out.batch_id, running, out.state_rows, out.stage_ms)
    return True


def flush(conn: sqlite3.Connection, cfg: Config, lake: LakeWriters) -> int:
    """End of input: every open window is final (a watermark at +infinity)."""
    with store.transaction(conn):
        last = store.last_commits(conn, 1)
        tag = f"flush-{max(last) if last else -1:010d}"
        newest = next(iter(last.values()), None)
        touched = finalise(conn, END_OF_TIME, tag, cfg, lake, complete_until=newest)
        store.refresh_throughput(conn, touched, cfg.processing.window, END_OF_TIME)
    return len(touched)


def finalise(
    conn: sqlite3.Connection,
    threshold: str,
    tag: str,
    cfg: Config,
    lake: LakeWriters,
    complete_until: str | None = None,
) -> set[str]:
    """Mark final the open windows ending at or before `threshold`: write them to the lake,
    score them for anomalies. Returns their window starts."""
    final = store.open_windows_until(conn, threshold)
    if not final:
        return set()
    for r in final:
        r["is_final"] = 1
    lake.final_windows(final, tag)
    detected_at = now_iso()
    partial = partial_windows(final, store.first_window_start(conn), complete_until)
    found: list[dict[str, Any]] = []
    if "ewma" in cfg.anomaly.detectors:
        found, baselines = score_windows(
            final, store.read_baselines(conn), cfg.anomaly, detected_at, partial
        )
        store.write_baselines(conn, baselines, max(r["window_start"] for r in final))
    if lake.forecast is not None:
        found += lake.forecast(final, partial, detected_at)
    if found:
        lake.anomalies(found, tag)
        store.write_anomalies(conn, found)
    store.mark_final(conn, threshold)
    return {r["window_start"] for r in final}
