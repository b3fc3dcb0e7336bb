"""Mergeable latency histograms with a bounded relative error (no Spark).

Latencies fall into logarithmic buckets, as in DDSketch: bucket i holds the values in
(GAMMA**(i-1), GAMMA**i], so any quantile read from the histogram is within RELATIVE_ERROR
of the exact value, at any count. Spark computes the bucket of each event with built-in
functions (`pipeline/aggregate.py`); merging two histograms adds their counts, so a
percentile over any range of windows, endpoints or methods is a merge, never an average.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

RELATIVE_ERROR = 0.005
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LOG_GAMMA = math.log(GAMMA)
# Latencies below MIN_LATENCY_MS (0 ms included) share one bucket, read as 0.
MIN_LATENCY_MS = 1e-3
ZERO_BUCKET = -(2**31)


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: within RELATIVE_ERROR of every value in it."""
    return 0.0 if bucket == ZERO_BUCKET else 2 * GAMMA**bucket / (GAMMA + 1)


@dataclass(frozen=True)
class Histogram:
    """Counts per latency bucket, buckets ascending."""

    buckets: np.ndarray  # int32
    counts: np.ndarray  # int64

    @classmethod
    def empty(cls) -> Histogram:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.int64))

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> Histogram:
        """From (bucket, count) pairs, in any order, repeats added."""
        acc: dict[int, int] = {}
        for b, n in pairs:
            acc[int(b)] = acc.get(int(b), 0) + int(n)
        keys = sorted(acc)
        return cls(np.array(keys, np.int32), np.array([acc[k] for k in keys], np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def merge(self, other: Histogram) -> Histogram:
        if not len(other.buckets):
            return self
        if not len(self.buckets):
            return other
        buckets = np.concatenate([self.buckets, other.buckets])
        counts = np.concatenate([self.counts, other.counts])
        keys, inverse = np.unique(buckets, return_inverse=True)
        return Histogram(keys.astype(np.int32), np.bincount(inverse, counts).astype(np.int64))

    def quantile(self, p: float, lo: float | None = None, hi: float | None = None) -> float | None:
        """The ceil(p*n)-th smallest value (percentile_approx's definition), within
        RELATIVE_ERROR; clamped to the exact [lo, hi] (min, max) when given."""
        n = self.n
        if n == 0:
            return None
        rank = max(1, math.ceil(p * n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        value = bucket_value(int(self.buckets[i]))
        if lo is not None:
            value = max(value, lo)
        if hi is not None:
            value = min(value, hi)
        return value

    def to_bytes(self) -> bytes:
        """Little-endian: count of buckets (int32), buckets (int32), counts (int64)."""
        size = np.array([len(self.buckets)], "<i4")
        return (
            size.tobytes()
            + self.buckets.astype("<i4").tobytes()
            + self.counts.astype("<i8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Histogram:
        if not data:
            return cls.empty()
        size = int(np.frombuffer(data, "<i4", 1)[0])
        buckets = np.frombuffer(data, "<i4", size, 4).astype(np.int32)
        counts = np.frombuffer(data, "<i8", size, 4 + 4 * size).astype(np.int64)
        return cls(buckets, counts)


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram of many (a range of windows, several endpoints or methods)."""
    parts = [h for h in histograms if len(h.buckets)]
    if len(parts) < 2:
        return parts[0] if parts else Histogram.empty()
    buckets = np.concatenate([h.buckets for h in parts])
    counts = np.concatenate([h.counts for h in parts])
    keys, inverse = np.unique(buckets, return_inverse=True)
    return Histogram(keys.astype(np.int32), np.bincount(inverse, counts).astype(np.int64))
