"""Mergeable window state without Spark: histograms, merges, the late cut-off and finality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apistream.latency_histogram import LOG_GAMMA, RELATIVE_ERROR, Histogram, merge_all
from apistream.window_metrics import final_threshold, late_cutoff, merge_windows


def bucket(x: float) -> int:
    return math.ceil(math.log(x) / LOG_GAMMA)


def histogram(values: np.ndarray) -> Histogram:
    return Histogram.of((bucket(v), 1) for v in values)


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_within_the_relative_error_of_the_exact_value(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.lognormal(np.log(80), 0.9, 20_000), 3)
    h = histogram(values)
    ordered = np.sort(values)
    for p in (0.5, 0.95, 0.99, 0.999):
        exact = ordered[math.ceil(p * len(values)) - 1]
        got = h.quantile(p, ordered[0], ordered[-1])
        assert abs(got - exact) <= RELATIVE_ERROR * exact, (p, got, exact)


def test_merge_is_a_sum_and_serialisation_round_trips():
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(3, 1, 3000) for _ in range(4)]
    merged = merge_all(histogram(p) for p in parts)
    whole = histogram(np.concatenate(parts))
    assert np.array_equal(merged.buckets, whole.buckets)
    assert np.array_equal(merged.counts, whole.counts)
    back = Histogram.from_bytes(merged.to_bytes())
    assert np.array_equal(back.buckets, merged.buckets)
    assert np.array_equal(back.counts, merged.counts)
    assert merged.n == 12_000
    assert Histogram.empty().quantile(0.5) is None


def partial(ws: str, bucket_: int, n: int, lo: float, hi: float, newest: str) -> dict:
    return {
        "window_start": ws, "window_end": ws.replace(":00:", ":01:"), "endpoint": "/a",
        "method": "GET", "bucket": bucket_, "requests": n, "status_1xx": 0,
        "status_2xx": n - 1, "status_3xx": 0, "status_4xx": 1, "status_5xx": 0,
        "latency_count": n, "latency_sum_ms": n * lo, "bytes_sent": 10 * n,
        "latency_min_ms": lo, "latency_max_ms": hi, "max_event_time": newest,
    }  # fmt: skip


def test_merge_windows_adds_counts_and_keeps_min_max_and_newest():
    ws = "2026-11-27T10:00:00Z"
    first = merge_windows({}, [partial(ws, bucket(10), 4, 10.0, 10.0, "2026-11-27T10:00:10.000Z")])
    stored = {(ws, "/a", "GET"): first[0]}
    batch = [
        partial(ws, bucket(20), 2, 20.0, 20.0, "2026-11-27T10:00:05.000Z"),
        partial(ws, bucket(5), 2, 5.0, 5.0, "2026-11-27T10:00:40.000Z"),
    ]
    (row,) = merge_windows(stored, batch)
    assert (row["requests"], row["status_4xx"], row["bytes_sent"]) == (8, 3, 80)
    assert (row["latency_min_ms"], row["latency_max_ms"]) == (5.0, 20.0)
    assert row["latency_avg_ms"] == pytest.approx((40 + 40 + 10) / 8)
    assert row["max_event_time"] == "2026-11-27T10:00:40.000Z"
    assert row["latency_p50_ms"] == pytest.approx(10.0, rel=RELATIVE_ERROR)
    assert row["latency_p99_ms"] == pytest.approx(20.0, rel=RELATIVE_ERROR)
    assert row["error_rate_4xx"] == 3 / 8


def test_late_cutoff_is_two_batches_back_and_finality_one_back():
    maxima = {
        0: "2026-11-27T10:00:00.000Z",
        1: "2026-11-27T10:05:00.500Z",
        2: "2026-11-27T10:06:00.000Z",
    }
    assert late_cutoff(maxima, 0, 120) is None
    assert late_cutoff(maxima, 1, 120) is None
    assert late_cutoff(maxima, 2, 120) == "2026-11-27T09:58:00.000Z"
    assert late_cutoff(maxima, 3, 120) == "2026-11-27T10:03:00.500Z"
    assert final_threshold(maxima, 0, 120) is None
    # floored to the second: window ends are whole seconds
    assert final_threshold(maxima, 2, 120) == "2026-11-27T10:03:00Z"
