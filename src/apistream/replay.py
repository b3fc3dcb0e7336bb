"""Finalised window rows straight from the generator's traffic model, without Spark.

For judging anomaly detectors over days of busy traffic (`make detection-eval`,
tests/spark/test_detection.py): streaming 50 million events through Spark to score a detector takes
an hour, building their window rows here takes a minute. The rows have the pipeline's shape
and come from the same code after the aggregation (`window_metrics.with_derived`, the
latency histogram's buckets), so the detectors see what the stream would give them for the
clean events; tests/spark/test_detection.py checks the aggregation against Spark's on the same
records. Defects, duplicates and late events are not made here: the pipeline removes them
before any window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from apistream.config import Config
from apistream.generator.traffic import IncidentSpan, TrafficModel, iso_ms, plan_incidents, rate_at
from apistream.latency_histogram import LOG_GAMMA, MIN_LATENCY_MS, ZERO_BUCKET, Histogram
from apistream.window_metrics import STATUS_CLASSES, with_derived

DAY_MS = 86_400_000
CHUNK_MS = 600_000  # arrivals are drawn ten minutes at a time, at the cycle's rate there
RECORD_COLUMNS = ("ts_ms", "ep", "method", "status", "latency_ms", "bytes_sent")


@dataclass(frozen=True)
class Simulation:
    """A simulated run: its window rows (time order) and what a manifest would say of it."""

    rows: list[dict[str, Any]]
    incidents: list[IncidentSpan]
    start_ms: int
    end_ms: int

    def manifest(self, cfg: Config) -> dict[str, Any]:
        return {
            "seed": cfg.generator.seed,
            "event_time_min": iso_ms(self.start_ms),
            "event_time_max": iso_ms(self.end_ms),
            "incidents": [i.as_manifest() for i in self.incidents],
            "settings": {"window_s": cfg.processing.window},
        }


def start_of(cfg: Config) -> int:
    """The simulation's first instant: generator.start, or midnight UTC of 1 March 2026."""
    text = (cfg.generator.start or "2026-03-01T00:00:00").rstrip("Z")
    return int(np.datetime64(text, "ms").astype(np.int64))


def simulate(cfg: Config, days: float) -> Simulation:
    """`days` of traffic at generator.rate (on the daily cycle), with generator.incidents
    planned over the span as the generator plans them, as finalised window rows."""
    start = start_of(cfg)
    end = start + int(days * DAY_MS)
    incidents = plan_incidents(cfg, start, (end - start) / 1000, cfg.generator.seed)
    model = TrafficModel(cfg, incidents, cfg.generator.seed, start)
    window_ms = int(cfg.processing.window * 1000)
    rows = [r for frame in _chunks(cfg, model, start, end) for r in window_rows(frame, window_ms)]
    templates = [e.template for e in cfg.endpoints]
    for r in rows:
        r["endpoint"] = templates[r["endpoint"]]
    return Simulation(rows, incidents, start, end)


def _chunks(cfg: Config, model: TrafficModel, start: int, end: int) -> Iterator[pl.DataFrame]:
    """Clean records, CHUNK_MS at a time (chunks end on window bounds: the window size
    divides CHUNK_MS for any window of whole seconds dividing ten minutes)."""
    rng = np.random.default_rng([cfg.generator.seed, 11])
    for t0 in range(start, end, CHUNK_MS):
        t1 = min(t0 + CHUNK_MS, end)
        n = int(rng.poisson(rate_at(cfg.generator, (t0 + t1) / 2) * (t1 - t0) / 1000))
        times, eps = model.arrivals(t0, t1, n)
        yield model.build(times, eps).select(*RECORD_COLUMNS)


def latency_buckets(latency: pl.Expr) -> pl.Expr:
    """The histogram bucket of each latency, as pipeline/aggregate.py's latency_bucket."""
    return (
        pl.when(latency >= MIN_LATENCY_MS)
        .then((latency.log() / LOG_GAMMA).ceil().cast(pl.Int32))
        .otherwise(pl.lit(ZERO_BUCKET, pl.Int32))
    )


def window_rows(records: pl.DataFrame, window_ms: int) -> list[dict[str, Any]]:
    """Records (RECORD_COLUMNS) -> one finalised row per window x
    endpoint index x method, as the sink stores them (with_derived adds rates and
    percentiles). Rows are in window, endpoint, method order."""
    keyed = records.with_columns(
        ws=pl.col("ts_ms") - pl.col("ts_ms") % window_ms,
        bucket=latency_buckets(pl.col("latency_ms")),
        cls=pl.col("status") // 100,
    )
    keys = ["ws", "ep", "method"]
    sums = keyed.group_by(keys).agg(
        *[(pl.col("cls") == k).sum().alias(f"status_{k}xx") for k in STATUS_CLASSES],
        requests=pl.len(),
        latency_count=pl.col("latency_ms").count(),
        latency_sum_ms=(pl.col("latency_ms") * 1000).round().cast(pl.Int64).sum() / 1000,
        latency_min_ms=pl.col("latency_ms").min(),
        latency_max_ms=pl.col("latency_ms").max(),
        bytes_sent=pl.col("bytes_sent").sum(),
        newest=pl.col("ts_ms").max(),
    )
    hist = (
        keyed.group_by([*keys, "bucket"])
        .agg(n=pl.len())
        .sort("bucket")
        .group_by(keys)
        .agg(pl.col("bucket"), pl.col("n"))
    )
    joined = sums.join(hist, on=keys).sort(keys)
    out = []
    for r in joined.iter_rows(named=True):
        ws = int(r.pop("ws"))
        r["max_event_time"] = iso_ms(r.pop("newest"))
        histogram = Histogram(np.array(r.pop("bucket"), np.int32), np.array(r.pop("n"), np.int64))
        row = {
            "window_start": iso_s(ws),
            "window_end": iso_s(ws + window_ms),
            "endpoint": r.pop("ep"),
            **r,
            "latency_histogram": histogram.to_bytes(),
        }
        out.append(with_derived(row))
    return out


def iso_s(ms: int) -> str:
    """Epoch milliseconds (whole seconds) as the window text: 2026-03-01T10:05:00Z."""
    return np.datetime_as_string(np.datetime64(int(ms) // 1000, "s"), unit="s") + "Z"
