"""Raw lines -> string fields and typed fields. Column and DataFrame functions, no I/O."""

from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from apistream.pipeline.schema import CORRUPT_COLUMN, RAW_FIELDS, RAW_SCHEMA

_NUMBER = r"^\d+(\.\d+)?(E\d+)?$"


def to_timestamp_lenient(col: Column) -> Column:
    """ISO-8601 text (any offset) or an epoch number -> timestamp, else null.

    An epoch number is read by its size: from 1e8 as seconds, from 1e11 as milliseconds, from
    1e14 as microseconds and from 1e17 up to 1e20 as nanoseconds (each unit's range covers
    1973-5138); any other number is no timestamp.
    """
    text = F.trim(col)
    # ISO-8601 shape (yyyy-MM-dd[T ]HH:mm...) by its separators, cheaper than a regex per
    # record; the cast rejects anything else in those places.
    iso = (
        (F.substring(text, 5, 1) == "-")
        & (F.substring(text, 8, 1) == "-")
        & F.substring(text, 11, 1).isin("T", " ")
        & (F.substring(text, 14, 1) == ":")
    )
    # The epoch branch is only reached off the ISO shape (rarely): its one use of the number
    # keeps Spark from hoisting the regex and the cast out of the CASE for every record.
    epoch = F.when(text.rlike(_NUMBER), F.timestamp_micros(_epoch_micros(text.try_cast("double"))))
    return F.when(iso, text.try_cast("timestamp")).otherwise(epoch)


def epoch_seconds(number: Column) -> Column:
    """Epoch seconds (a double, e.g. a log's msec time field) -> timestamp; null, not an
    overflow error, past year 5138 or before 1970."""
    return F.when(number.between(0, 1e11), F.timestamp_micros((number * 1e6).try_cast("long")))


def _epoch_micros(number: Column) -> Column:
    """Epoch s / ms / µs / ns by magnitude (see to_timestamp_lenient) -> microseconds, else
    null; never an overflow error, whatever the number."""
    scale = (
        F.when(number >= 1e20, F.lit(None))
        .when(number >= 1e17, F.lit(0.001))
        .when(number >= 1e14, F.lit(1.0))
        .when(number >= 1e11, F.lit(1_000.0))
        .when(number >= 1e8, F.lit(1_000_000.0))
    )
    return (number * scale).try_cast("long")


def blank_to_null(col: Column) -> Column:
    """A string field that is empty or only spaces counts as absent."""
    return F.when(F.trim(col) != "", col)


def parse_json_lines(lines: DataFrame) -> DataFrame:
    """`value` JSON lines -> raw, is_malformed, the raw string fields and typed columns.

    Typed: event_time, status_code, latency, nbytes (null where the text does not convert).
    """
    parsed_json, fields, typed = _json_columns()
    others = [c for c in lines.columns if c != "value"]
    return lines.withColumn("_j", parsed_json).select(*fields, *others).withColumns(typed)


@cache
def _json_columns() -> tuple[Column, list[Column], dict[str, Column]]:
    """The expressions of parse_json_lines, built once (each Column call is a round trip to
    the JVM, and a micro-batch should not pay them again)."""
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    malformed = (
        F.col("_j").isNull()
        | F.col(f"_j.{CORRUPT_COLUMN}").isNotNull()
        | (F.trim(F.col("value")) == "")
    )
    fields = [
        F.col("value").alias("raw"),
        malformed.alias("is_malformed"),
        *[blank_to_null(F.col(f"_j.{f}")).alias(f) for f in RAW_FIELDS],
    ]
    typed = {
        "method": F.upper(F.trim("method")),
        "event_time": to_timestamp_lenient(F.col("timestamp")),
        "status_code": F.trim("status").try_cast("int"),
        "latency": F.trim("latency_ms").try_cast("double"),
        "nbytes": F.trim("bytes_sent").try_cast("long"),
    }
    return F.from_json("value", RAW_SCHEMA, options), fields, typed
