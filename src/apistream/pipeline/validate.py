"""Validation rules as Column expressions that yield a quarantine reason or null."""

from collections.abc import Callable, Sequence
from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from apistream.config import ValidationConfig
from apistream.pipeline.schema import REASONS, REQUIRED_FIELDS

# Set only on the one record that stands for a file the batch could not read whole
# (records.with_unreadable_files): its reason, one of FILE_PROBLEMS, and the error.
FILE_PROBLEM = "file_problem"
FILE_ERROR = "file_error"
FILE_PROBLEMS = ("missing_file", "corrupt_archive")
WHITESPACE = " \t\r\f\v"

# Raw string field -> the typed column parse.py derived from it.
TYPED = {
    "timestamp": "event_time",
    "status": "status_code",
    "latency_ms": "latency",
    "bytes_sent": "nbytes",
}


def first_missing_field(required: Sequence[str] = REQUIRED_FIELDS) -> Column:
    """Name of the first required field that is absent, else null."""
    return F.coalesce(*[F.when(F.col(f).isNull(), F.lit(f)) for f in required])


def first_wrong_type() -> Column:
    """Name of the first field present but not convertible to its type, else null. A latency
    of NaN or ±Infinity (bare or quoted) is of the wrong type too: no request takes that long."""
    latency = F.col("latency")
    finite_latency = ~F.isnan(latency) & (F.abs(latency) != F.lit(float("inf")))
    converted = {typed: F.col(typed).isNotNull() for typed in TYPED.values()}
    converted["latency"] = converted["latency"] & finite_latency
    return F.coalesce(
        *[
            F.when(F.col(raw).isNotNull() & ~converted[typed], F.lit(raw))
            for raw, typed in TYPED.items()
        ]
    )


def rules(
    limits: ValidationConfig,
    required: Sequence[str] = REQUIRED_FIELDS,
    malformed: str = "malformed_json",
) -> list[tuple[str, Column, Column | None]]:
    """(reason, broken-when condition, detail) in priority order; the first match wins.

    `malformed` names the reason of a line that could not be parsed at all
    (malformed_json for JSON, unparseable_line for access-log formats).
    """
    now = F.col("ingest_time")
    missing = first_missing_field(required)
    checks: list[tuple[str, Column, Column | None]] = [
        ("missing_file", F.col(FILE_PROBLEM) == "missing_file", F.col(FILE_ERROR)),
        ("corrupt_archive", F.col(FILE_PROBLEM) == "corrupt_archive", F.col(FILE_ERROR)),
        ("line_too_long", F.col("line_bytes") > limits.max_line_bytes, F.col("line_bytes")),
        ("invalid_utf8", ~F.is_valid_utf8("raw"), None),
        # A blank line never parses: trimmed (a copy of the line) only when it did not.
        ("blank_line", F.col("is_malformed") & (F.trim("raw", F.lit(WHITESPACE)) == ""), None),
        (malformed, F.col("is_malformed"), None),
        ("missing_field", missing.isNotNull(), missing),
        ("wrong_type", first_wrong_type().isNotNull(), first_wrong_type()),
        ("invalid_method", ~F.col("method").isin(*limits.methods), F.col("method")),
        (
            "invalid_status",
            ~F.col("status_code").between(limits.status_min, limits.status_max),
            F.col("status"),
        ),
        ("negative_latency", F.col("latency") < 0, F.col("latency_ms")),
        ("absurd_latency", F.col("latency") > limits.max_latency_ms, F.col("latency_ms")),
        (
            "future_timestamp",
            F.col("event_time") > now + F.make_interval(secs=F.lit(limits.max_future)),
            F.col("timestamp"),
        ),
    ]
    if limits.max_age is not None:
        checks.append(
            (
                "stale_timestamp",
                F.col("event_time") < now - F.make_interval(secs=F.lit(limits.max_age)),
                F.col("timestamp"),
            )
        )
    assert all(c[0] in REASONS for c in checks)
    return checks


def with_quarantine_reason(
    limits: ValidationConfig,
    required: Sequence[str] = REQUIRED_FIELDS,
    malformed: str = "malformed_json",
) -> Callable[[DataFrame], DataFrame]:
    """Adds `reason` and `detail` (null for a valid record); needs `ingest_time`."""

    def transform(df: DataFrame) -> DataFrame:
        columns = df.columns
        reason, detail = reason_columns(
            limits, tuple(required), malformed, "line_bytes" in columns, FILE_PROBLEM in columns
        )
        return df.withColumn("reason", reason).withColumn("detail", detail)

    return transform


@cache
def reason_columns(
    limits: ValidationConfig,
    required: tuple[str, ...],
    malformed: str,
    has_line_bytes: bool,
    has_file_problem: bool,
) -> tuple[Column, Column]:
    """The `reason` and `detail` expressions, built once per variant: each of a few hundred
    Column calls is a round trip to the JVM (~0.2 ms), and a micro-batch should not pay them
    again. `has_line_bytes`: lines from records.checked_records; `has_file_problem`: the batch
    holds a file it could not read whole."""
    checks = rules(limits, required, malformed)
    if not has_line_bytes:
        checks = [c for c in checks if c[0] != "line_too_long"]
    if not has_file_problem:
        checks = [c for c in checks if c[0] not in FILE_PROBLEMS]
    reason: Column | None = None
    for name, broken, _ in checks:
        reason = F.when(broken, name) if reason is None else reason.when(broken, name)
    # The detail is read off the reason, so each rule is evaluated once per record.
    detail: Column | None = None
    for name, _, why in checks:
        if why is None:
            continue
        hit = F.col("reason") == name
        value = why.cast("string")
        detail = F.when(hit, value) if detail is None else detail.when(hit, value)
    assert reason is not None
    return reason, detail if detail is not None else F.lit(None)


def is_valid() -> Column:
    return F.col("reason").isNull()
