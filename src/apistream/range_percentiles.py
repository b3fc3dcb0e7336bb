"""Latency percentiles over several window rows: a range of windows, several methods of an
endpoint, or several endpoints. The one place they are computed.

A percentile of several rows is read from the merge of their latency histograms
(latency_histogram.py): within RELATIVE_ERROR (0.5%) of the exact value over those rows'
events, and clamped to their exact min and max. It is never a mean of the rows' percentiles,
which is not a percentile: one slow minute in an hour can put a mean of p95s off by a large
factor. Rows are mappings (or a DataFrame's rows) with `latency_histogram` (bytes),
`latency_min_ms` and `latency_max_ms`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from apistream.latency_histogram import Histogram, merge_all
from apistream.window_metrics import PERCENTILES

# Column -> percentile, as the window rows name them: latency_p50_ms -> 0.5, ...
PERCENTILE_COLUMNS = {f"latency_p{round(p * 100)}_ms": p for p in PERCENTILES}


def _known(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def range_quantiles(rows: Iterable[Mapping[str, Any]], ps: Sequence[float]) -> list[float | None]:
    """The quantiles `ps` of all the rows' events together (None without a latency)."""
    histograms, lows, highs = [], [], []
    for r in rows:
        histograms.append(Histogram.from_bytes(r["latency_histogram"]))
        lows.append(_known(r["latency_min_ms"]))
        highs.append(_known(r["latency_max_ms"]))
    merged = merge_all(histograms)
    lo = min((x for x in lows if x is not None), default=None)
    hi = max((x for x in highs if x is not None), default=None)
    return [merged.quantile(p, lo, hi) for p in ps]


def range_percentiles(
    frame: pd.DataFrame, keys: list[str], columns: Mapping[str, float] = PERCENTILE_COLUMNS
) -> pd.DataFrame:
    """Per group of `keys`: the summed requests and each column's percentile of the group's
    events (`columns`: column -> percentile), groups in key order."""
    out_columns = [*keys, "requests", *columns]
    if frame.empty:
        return pd.DataFrame(columns=out_columns)
    rows = []
    for key, group in frame.groupby(keys, sort=True):
        values = range_quantiles(group.to_dict("records"), list(columns.values()))
        rows.append([*key, int(group["requests"].sum()), *values])
    return pd.DataFrame(rows, columns=out_columns)
