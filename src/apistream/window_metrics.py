"""Window metrics as mergeable state (no Spark, no I/O).

A micro-batch contributes partial aggregates per window x endpoint x method x latency
bucket (`pipeline/aggregate.py`); `merge_windows` adds them to the stored rows of the same
windows. Every column is a sum, a min/max or a histogram, so the merge is exact and the
order of batches does not matter. Finality and the late cut-off are pure rules of the
event-time watermark.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from apistream.latency_histogram import Histogram
from apistream.timefmt import iso, parse_iso

STATUS_CLASSES = (1, 2, 3, 4, 5)
PERCENTILES = (0.5, 0.95, 0.99)
KEY = ("window_start", "endpoint", "method")
_COUNTS = ("requests", *[f"status_{k}xx" for k in STATUS_CLASSES], "latency_count")
_SUMS = ("latency_sum_ms", "bytes_sent")
# The columns users read (SQLite endpoint_metrics and lake/endpoint_metrics).
METRIC_COLUMNS = (
    "window_start",
    "window_end",
    "endpoint",
    "method",
    "requests",
    *[f"status_{k}xx" for k in STATUS_CLASSES],
    "error_rate_4xx",
    "error_rate_5xx",
    "latency_min_ms",
    "latency_avg_ms",
    "latency_max_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "bytes_sent",
)
# What a later batch needs to merge into a window.
STATE_COLUMNS = ("latency_count", "latency_sum_ms", "latency_histogram", "max_event_time")
# One partial row per window x endpoint x method x latency bucket.
PARTIAL_COLUMNS = (
    "window_start",
    "window_end",
    "endpoint",
    "method",
    "bucket",
    *_COUNTS,
    *_SUMS,
    "latency_min_ms",
    "latency_max_ms",
    "max_event_time",
)

Key = tuple[str, str, str]


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def with_derived(row: dict[str, Any]) -> dict[str, Any]:
    """Error rates, average and percentiles from the row's sums and histogram."""
    n = row["requests"]
    row["error_rate_4xx"] = row["status_4xx"] / n if n else None
    row["error_rate_5xx"] = row["status_5xx"] / n if n else None
    timed = row["latency_count"]
    row["latency_avg_ms"] = row["latency_sum_ms"] / timed if timed else None
    hist = Histogram.from_bytes(row["latency_histogram"])
    lo, hi = row["latency_min_ms"], row["latency_max_ms"]
    for p in PERCENTILES:
        row[f"latency_p{round(p * 100)}_ms"] = hist.quantile(p, lo, hi)
    return row


def merge_windows(
    stored: Mapping[Key, Mapping[str, Any]], partials: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Stored window rows (by key) plus a batch's partial rows -> the updated rows of every
    window the batch touched."""
    grouped: dict[Key, list[Mapping[str, Any]]] = defaultdict(list)
    for p in partials:
        grouped[(p["window_start"], p["endpoint"], p["method"])].append(p)
    out = []
    for key, parts in sorted(grouped.items()):
        old = stored.get(key)
        row: dict[str, Any] = {
            "window_start": key[0],
            "window_end": parts[0]["window_end"],
            "endpoint": key[1],
            "method": key[2],
        }
        for c in (*_COUNTS, *_SUMS):
            row[c] = sum(p[c] or 0 for p in parts) + ((old[c] or 0) if old else 0)
        row["latency_sum_ms"] = float(row["latency_sum_ms"])
        lo = hi = newest = None
        for p in parts:
            lo, hi = _min(lo, p["latency_min_ms"]), _max(hi, p["latency_max_ms"])
            newest = _max(newest, p["max_event_time"])
        hist = Histogram.of((p["bucket"], p["latency_count"]) for p in parts if p["latency_count"])
        if old:
            lo, hi = _min(lo, old["latency_min_ms"]), _max(hi, old["latency_max_ms"])
            newest = _max(newest, old["max_event_time"])
            hist = Histogram.from_bytes(old["latency_histogram"]).merge(hist)
        row.update(
            latency_min_ms=lo,
            latency_max_ms=hi,
            max_event_time=newest,
            latency_histogram=hist.to_bytes(),
        )
        out.append(with_derived(row))
    return out


def late_cutoff(maxima: Mapping[int, str | None], batch_id: int, delay_s: float) -> str | None:
    """Event times at or below this are late in batch `batch_id`: the newest event time up
    to two batches back minus the watermark delay (Spark's rule for a stateful operator:
    the previous batch's watermark). `maxima` maps committed batch ids to their running
    newest event time. None: nothing is late yet."""
    return _minus(_running_max(maxima, batch_id - 2), delay_s)


def final_threshold(maxima: Mapping[int, str | None], batch_id: int, delay_s: float) -> str | None:
    """After batch `batch_id`, a window ending at or before this is final: no later batch
    accepts an event in it (later rows are newer than the next batch's late cut-off)."""
    text = _minus(_running_max(maxima, batch_id - 1), delay_s)
    # Window ends are whole seconds: compare them with the threshold floored to the second.
    return None if text is None else iso(parse_iso(text))


def _running_max(maxima: Mapping[int, str | None], upto: int) -> str | None:
    ids = [b for b in maxima if b <= upto]
    return maxima[max(ids)] if ids else None


def _minus(text: str | None, delay_s: float) -> str | None:
    if text is None:
        return None
    return iso(parse_iso(text) - timedelta(seconds=delay_s), ms=True)


def newer(a: str | None, b: str | None) -> str | None:
    """The newer of two ISO times (either may be None)."""
    return _max(a, b)
