"""Late events: event times placed behind the watermark the stream will have when it reads them.

A "late within" event is never older than the newest event of its own chunk minus half the
watermark delay, so the stream still counts it. A "late beyond" event is older than a
watermark the stream has certainly reached, whatever its batching:

- files: in file k it is older than the newest event of files 0..k-2F minus the delay
  (F = files per trigger);
- Kafka partitions: at position i of partition p it is older than the newest plain event at
  positions up to i - 2M of p minus the delay (M = max offsets per trigger). Spark reads at
  most M offsets of a partition per batch, so that event was read at least two batches
  earlier, and late rows are judged against the previous batch's watermark (docs/design.md).

A late-beyond event with no such reference yet (the first chunks) stays plain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apistream.generator.categories import LATE_BEYOND, LATE_WITHIN, PLAIN

JITTER_MS = (1000, 300_000)  # how much older than the reference a late-beyond event is


def place_late_within(
    ts: np.ndarray, cat: np.ndarray, newest_ms: int, wm_ms: int, rng: np.random.Generator
) -> np.ndarray:
    """Event times with late-within lines 10%..50% of the delay behind `newest_ms`."""
    out = ts.copy()
    late = cat == LATE_WITHIN
    out[late] = newest_ms - (rng.uniform(0.1, 0.5, late.sum()) * wm_ms)
    return out


def place_late_beyond(
    ts: np.ndarray,
    cat: np.ndarray,
    refs: np.ndarray,
    wm_ms: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Event times and categories with each late-beyond line placed older than its reference
    minus the delay; one without a reference (-1) becomes plain."""
    out_ts, out_cat = ts.copy(), cat.copy()
    out_cat[(out_cat == LATE_BEYOND) & (refs < 0)] = PLAIN
    late = out_cat == LATE_BEYOND
    jitter = rng.integers(*JITTER_MS, late.sum())
    out_ts[late] = refs[late] - wm_ms - jitter
    return out_ts, out_cat


def late_beyond_in_files(
    ts: np.ndarray,
    cat: np.ndarray,
    newest_by_file: Sequence[int],
    lag: int,
    wm_ms: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Late-beyond placement for the next file: `newest_by_file[j]` is the newest event time
    over files 0..j written so far, `lag` is 2F."""
    k = len(newest_by_file) - lag
    refs = np.full(len(ts), newest_by_file[k] if k >= 0 else -1, dtype=np.int64)
    return place_late_beyond(ts, cat, refs, wm_ms, rng)


@dataclass(frozen=True)
class PartitionHistory:
    """Per partition, the running max of plain event times at its last `lag` positions, which
    start at position `base` (-1 where no plain event came yet)."""

    lag: int
    running_max: tuple[np.ndarray, ...]
    base: tuple[int, ...]

    @classmethod
    def empty(cls, partitions: int, max_offsets: int) -> PartitionHistory:
        """No positions yet, for 2 * max_offsets positions of lag."""
        none = np.empty(0, dtype=np.int64)
        return cls(2 * max_offsets, (none,) * partitions, (0,) * partitions)


def partition_references(
    history: PartitionHistory, part: np.ndarray, plain: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, PartitionHistory]:
    """For each row, the newest plain event time at least `lag` positions before it in its
    partition (-1 if none), and the history advanced by these rows."""
    ref = np.full(len(ts), -1, dtype=np.int64)
    running, bases = [], []
    for p, (seen, base) in enumerate(zip(history.running_max, history.base, strict=True)):
        idx = np.flatnonzero(part == p)
        last = seen[-1] if len(seen) else -1
        vals = np.where(plain[idx], ts[idx], -1).astype(np.int64)
        back = len(seen) + np.arange(len(idx)) - history.lag  # relative to base
        seen = np.concatenate([seen, np.maximum.accumulate(np.append(last, vals))[1:]])
        ok = back + base >= 0
        ref[idx[ok]] = seen[back[ok]]
        drop = max(0, len(seen) - history.lag)
        running.append(seen[drop:])
        bases.append(base + drop)
    return ref, PartitionHistory(history.lag, tuple(running), tuple(bases))


def late_beyond_in_partitions(
    ts: np.ndarray,
    cat: np.ndarray,
    part: np.ndarray,
    history: PartitionHistory,
    wm_ms: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, PartitionHistory]:
    """Late-beyond placement for the next chunk, whose rows go to partitions `part`: event
    times, categories and the partition history after the chunk."""
    refs, after = partition_references(history, part, cat == PLAIN, ts)
    out_ts, out_cat = place_late_beyond(ts, cat, refs, wm_ms, rng)
    return out_ts, out_cat, after
