"""Events -> per window x endpoint x method metrics. Built-in functions only; batch or stream."""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

STATUS_CLASSES = (1, 2, 3, 4, 5)
PERCENTILES = (0.5, 0.95, 0.99)
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
    "max_event_time",
)


def request_aggregates(classes: tuple[int, ...] = STATUS_CLASSES) -> list[Column]:
    """Aggregates every rollup shares: requests, status-class counts, latency min/avg/max
    and bytes sent."""
    return [
        F.count(F.lit(1)).alias("requests"),
        *[
            F.sum((F.col("status_class") == f"{k}xx").cast("long")).alias(f"status_{k}xx")
            for k in classes
        ],
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


def endpoint_window_metrics(events: DataFrame, window: str, accuracy: int) -> DataFrame:
    """Tumbling event-time windows of `window` (a Spark interval) with counts, error rates,
    latency min/avg/max and approximate p50/p95/p99 (percentile_approx, `accuracy`)."""
    pct = F.percentile_approx("latency_ms", F.array(*[F.lit(p) for p in PERCENTILES]), accuracy)
    agg = events.groupBy(F.window("event_time", window).alias("w"), "endpoint", "method").agg(
        *request_aggregates(), pct.alias("pct"), F.max("event_time").alias("max_event_time")
    )
    return agg.select(
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        "endpoint",
        "method",
        "requests",
        *[f"status_{k}xx" for k in STATUS_CLASSES],
        *error_rates(),
        "latency_min_ms",
        "latency_avg_ms",
        "latency_max_ms",
        *percentile_columns(),
        "bytes_sent",
        "max_event_time",
    )
