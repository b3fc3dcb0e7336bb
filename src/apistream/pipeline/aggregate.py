"""Events -> per window x endpoint x method aggregates. Built-in functions only; batch or
stream."""

from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from apistream.latency_histogram import LOG_GAMMA, MIN_LATENCY_MS, ZERO_BUCKET
from apistream.window_metrics import PERCENTILES, STATUS_CLASSES

__all__ = ["PERCENTILES", "STATUS_CLASSES"]

ISO_S = "yyyy-MM-dd'T'HH:mm:ss'Z'"
ISO_MS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"


def status_counts(classes: tuple[int, ...] = STATUS_CLASSES) -> list[Column]:
    return [
        F.sum((F.col("status_class") == f"{k}xx").cast("long")).alias(f"status_{k}xx")
        for k in classes
    ]


def request_aggregates(classes: tuple[int, ...] = STATUS_CLASSES) -> list[Column]:
    """Aggregates every rollup shares: requests, status-class counts, latency min/avg/max
    and bytes sent."""
    return [
        F.count(F.lit(1)).alias("requests"),
        *status_counts(classes),
        F.min("latency_ms").alias("latency_min_ms"),
        F.avg("latency_ms").alias("latency_avg_ms"),
        F.max("latency_ms").alias("latency_max_ms"),
        F.sum("bytes_sent").alias("bytes_sent"),
    ]


def error_rates() -> list[Column]:
    return [(F.col(f"status_{k}xx") / F.col("requests")).alias(f"error_rate_{k}xx") for k in (4, 5)]


def percentile_columns(pct: str = "pct") -> list[Column]:
    """latency_p50_ms, latency_p95_ms, latency_p99_ms from an array column of PERCENTILES."""
    return [F.col(pct)[i].alias(f"latency_p{round(p * 100)}_ms") for i, p in enumerate(PERCENTILES)]


def latency_bucket(latency: Column) -> Column:
    """The latency histogram bucket of a value (latency_histogram.py): ceil(ln x / ln gamma)."""
    return F.when(
        latency >= MIN_LATENCY_MS, F.ceil(F.log(latency) / F.lit(LOG_GAMMA)).cast("int")
    ).when(latency.isNotNull(), F.lit(ZERO_BUCKET))


def window_start(event_time: Column, window_s: float) -> Column:
    """Start of the tumbling window (epoch-aligned, like Spark's `window`) of an event time;
    cheaper than `window`, which builds a struct per row."""
    micros = F.unix_micros(event_time)
    size = F.lit(round(window_s * 1_000_000))
    return F.timestamp_micros(micros - F.pmod(micros, size))


ACCEPTED = "accepted"


def window_partials(events: DataFrame, window_s: float, outcome: str | None = None) -> DataFrame:
    """Mergeable partial aggregates per tumbling event-time window of `window_s` seconds x
    endpoint x method x latency bucket: counts, sums, min/max, newest event.
    window_metrics.merge_windows adds them into the stored windows.

    With `outcome` (a column naming what became of each row), only ACCEPTED rows are
    aggregated by window; every other outcome adds one row with its count and newest event,
    so a batch's partials and its account come from one aggregation."""
    keys, aggregates, columns = _partial_columns(window_s, outcome)
    return events.groupBy(*keys).agg(*aggregates).select(*columns)


@cache
def _partial_columns(
    window_s: float, outcome: str | None
) -> tuple[list[Column], list[Column], list[Column | str]]:
    """The grouping keys, aggregates and output columns of window_partials, built once per
    window and outcome (each Column call is a round trip to the JVM; a micro-batch should not
    pay them again)."""
    keep = F.lit(True) if outcome is None else F.col(outcome) == ACCEPTED

    def only(col: Column) -> Column:
        return col if outcome is None else F.when(keep, col)

    keys = [
        *([F.col(outcome)] if outcome else []),
        only(window_start(F.col("event_time"), window_s)).alias("start"),
        only(F.col("endpoint")).alias("endpoint"),
        only(F.col("method")).alias("method"),
        only(latency_bucket(F.col("latency_ms"))).alias("bucket"),
    ]
    aggregates = [
        F.count(F.lit(1)).alias("requests"),
        *status_counts(),
        F.count("latency_ms").alias("latency_count"),
        # Summed as whole microseconds: an integer sum is exact in any order, so a replayed
        # batch adds up to the same bits (a float sum depends on Spark's merge order).
        (F.sum(F.round(F.col("latency_ms") * 1000).cast("long")) / 1000).alias("latency_sum_ms"),
        F.sum("bytes_sent").alias("bytes_sent"),
        F.min("latency_ms").alias("latency_min_ms"),
        F.max("latency_ms").alias("latency_max_ms"),
        F.max("event_time").alias("max_event_time"),
    ]
    columns = [
        *([outcome] if outcome else []),
        F.date_format("start", ISO_S).alias("window_start"),
        F.date_format(
            F.timestamp_micros(F.unix_micros("start") + round(window_s * 1_000_000)), ISO_S
        ).alias("window_end"),
        "endpoint",
        "method",
        "bucket",
        "requests",
        *[f"status_{k}xx" for k in STATUS_CLASSES],
        "latency_count",
        "latency_sum_ms",
        "bytes_sent",
        "latency_min_ms",
        "latency_max_ms",
        F.date_format("max_event_time", ISO_MS).alias("max_event_time"),
    ]
    return keys, aggregates, columns


def window_counts(events: DataFrame, window: str) -> DataFrame:
    """Requests and status-class counts per window x endpoint x method (reconciliation)."""
    return events.groupBy(
        F.date_format(F.window("event_time", window).start, ISO_S).alias("window_start"),
        "endpoint",
        "method",
    ).agg(F.count(F.lit(1)).alias("requests"), *status_counts())
