"""The ground truth: what a chunk's lines are, counted as the manifest reports them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from apistream.generator.categories import LATE_BEYOND, LATE_WITHIN, PLAIN
from apistream.generator.duplicates import Layout
from apistream.reasons import DEFECT_KINDS


@dataclass(frozen=True)
class Tally:
    """Counts of written lines; valid lines (plain or late within) also by endpoint, status
    class and endpoint with method, and their event time range."""

    total_events: int = 0
    valid_events: int = 0
    duplicates: int = 0
    late_within: int = 0
    late_beyond: int = 0
    files: int = 0
    defects: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status_class: Counter[str] = field(default_factory=Counter)
    by_endpoint_method: Counter[str] = field(default_factory=Counter)
    min_ts: int | None = None
    max_ts: int | None = None

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            total_events=self.total_events + other.total_events,
            valid_events=self.valid_events + other.valid_events,
            duplicates=self.duplicates + other.duplicates,
            late_within=self.late_within + other.late_within,
            late_beyond=self.late_beyond + other.late_beyond,
            files=self.files + other.files,
            defects=_sum(self.defects, other.defects),
            by_endpoint=_sum(self.by_endpoint, other.by_endpoint),
            by_status_class=_sum(self.by_status_class, other.by_status_class),
            by_endpoint_method=_sum(self.by_endpoint_method, other.by_endpoint_method),
            min_ts=min((t for t in (self.min_ts, other.min_ts) if t is not None), default=None),
            max_ts=max((t for t in (self.max_ts, other.max_ts) if t is not None), default=None),
        )


def _sum(a: Counter[str], b: Counter[str]) -> Counter[str]:
    out = Counter(a)
    out.update(b)
    return out


def count_chunk(
    records: pl.DataFrame, cat: np.ndarray, layout: Layout, templates: Sequence[str]
) -> Tally:
    """The tally of a chunk's lines: `records` and `cat` are its records (columns ts_ms, ep,
    method, status) and their categories, `layout` the lines made of them."""
    rows, dups = layout.rows[~layout.duplicate], int(layout.duplicate.sum())
    c = cat[rows]
    valid = records[rows[(c == PLAIN) | (c == LATE_WITHIN)]]
    valid = valid.with_columns(
        endpoint=pl.Series(templates).gather(valid["ep"]),
        status_class=(pl.col("status") // 100).cast(pl.String) + "xx",
    )
    by_method = valid.group_by("endpoint", "method").len().iter_rows()
    return Tally(
        total_events=len(rows) + dups,
        valid_events=valid.height,
        duplicates=dups,
        late_within=int((c == LATE_WITHIN).sum()),
        late_beyond=int((c == LATE_BEYOND).sum()),
        defects=Counter({k: int((c == i).sum()) for i, k in enumerate(DEFECT_KINDS, start=1)}),
        by_endpoint=Counter(dict(valid.group_by("endpoint").len().iter_rows())),
        by_status_class=Counter(dict(valid.group_by("status_class").len().iter_rows())),
        by_endpoint_method=Counter({f"{m} {ep}": n for ep, m, n in by_method}),
        min_ts=int(valid["ts_ms"].min()) if valid.height else None,
        max_ts=int(valid["ts_ms"].max()) if valid.height else None,
    )
