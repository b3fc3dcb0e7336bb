"""Exact re-deliveries of plain records, a little later in the same chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apistream.generator.categories import PLAIN


@dataclass(frozen=True)
class Layout:
    """The chunk's lines in order: the record each line is, and whether it is a re-delivery."""

    rows: np.ndarray
    duplicate: np.ndarray


def add_duplicates(
    cat: np.ndarray, rate: float, max_lines: int, rng: np.random.Generator
) -> Layout:
    """Each plain record is re-delivered with probability `rate`, placed after a random
    record from itself to the end; the chunk is then cut to its first `max_lines` lines."""
    n = len(cat)
    src = np.flatnonzero((cat == PLAIN) & (rng.random(n) < rate))
    keys = np.concatenate([np.arange(n, dtype=float), rng.integers(src, n) + 0.5])
    rows = np.concatenate([np.arange(n), src])
    order = np.argsort(keys, kind="stable")[:max_lines]
    return Layout(rows[order], order >= n)
