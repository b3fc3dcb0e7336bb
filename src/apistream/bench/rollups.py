"""Hourly and daily rollups two ways, timed on one run's output (issue 14's question:
merge the minute windows' histograms instead of re-reading the lake, where that is faster?).

A: `batch.rollup` over the events lake (Spark, exact percentiles), as `apistream batch`.
B: the finalised windows' latency histograms in SQLite merged per hour or day x endpoint x
   method (range_percentiles, within 0.5%), no Spark.

    python -m apistream.bench.rollups --output output/demo
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from apistream import sqlite_store
from apistream.batch import read_events, rollup
from apistream.catalog import Paths
from apistream.config import load_config
from apistream.range_percentiles import range_quantiles
from apistream.window_metrics import PERCENTILES

PERIOD_CHARS = {"hour": 13, "day": 10}  # ISO prefix of a window start naming its hour, day


def merged(sqlite_path: str, granularity: str) -> dict[tuple[str, str, str], list[float | None]]:
    """(period prefix, endpoint, method) -> p50/p95/p99 from the merged window histograms."""
    columns = "window_start, endpoint, method, latency_histogram, latency_min_ms, latency_max_ms"
    with sqlite_store.read_only(sqlite_path) as db:
        rows = sqlite_store.final_windows(db, None, None, columns)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    cut = PERIOD_CHARS[granularity]
    for r in rows:
        groups[(r["window_start"][:cut], r["endpoint"], r["method"])].append(r)
    return {key: range_quantiles(g, PERCENTILES) for key, g in groups.items()}


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """(median seconds over `runs` after one warm-up run, the last result)."""
    result = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(overrides={"sinks.output": args.output})
    from apistream.session import build_spark

    spark = build_spark(cfg.spark)
    paths = Paths.of(cfg)
    try:
        for g in ("hour", "day"):
            lake_s, exact = timed(
                lambda g=g: rollup(read_events(spark, paths.events), g).toPandas(), args.runs
            )
            merge_s, approx = timed(lambda g=g: merged(cfg.sqlite_path, g), args.runs)
            # Spark's `percentile` interpolates between ranks, the histograms give the
            # ceil(p*n)-th value: on a few requests the two definitions differ by more than
            # the histograms' 0.5%, so the gap is also shown over rows of >= 1,000 requests.
            worst = {1: 0.0, 1000: 0.0}
            for r in exact.itertuples(index=False):
                key = (r.period_start[: PERIOD_CHARS[g]], r.endpoint, r.method)
                pcts = (r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)
                for x, y in zip(pcts, approx[key], strict=True):
                    for least in worst:
                        if r.requests >= least:
                            worst[least] = max(worst[least], abs(y - x) / x)
            print(
                f"{g}: lake (Spark, exact) {lake_s:.2f} s, merged histograms {merge_s:.2f} s "
                f"({lake_s / merge_s:.0f}x), {len(exact)} rows, worst percentile gap "
                f"{worst[1]:.3%} ({worst[1000]:.3%} over rows of >= 1,000 requests)"
            )
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
