"""Raw lines -> string fields and typed fields. Column and DataFrame functions, no I/O."""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from apistream.pipeline.schema import CORRUPT_COLUMN, RAW_FIELDS, RAW_SCHEMA

_ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
_EPOCH_S = r"^\d{9,10}(\.\d{1,6})?$"
_EPOCH_MS = r"^\d{12,13}$"


def to_timestamp_lenient(col: Column) -> Column:
    """ISO-8601 text (any offset), epoch seconds or epoch milliseconds -> timestamp, else null."""
    text = F.trim(col)
    return (
        F.when(text.rlike(_ISO), text.try_cast("timestamp"))
        .when(text.rlike(_EPOCH_S), F.timestamp_seconds(text.try_cast("double")))
        .when(text.rlike(_EPOCH_MS), F.timestamp_millis(text.try_cast("long")))
    )


def blank_to_null(col: Column) -> Column:
    """A string field that is empty or only spaces counts as absent."""
    return F.when(F.trim(col) != "", col)


def parse_json_lines(lines: DataFrame) -> DataFrame:
    """`value` JSON lines -> raw, is_malformed, the raw string fields and typed columns.

    Typed: event_time, status_code, latency, nbytes (null where the text does not convert).
    """
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}
    parsed = lines.withColumn("_j", F.from_json("value", RAW_SCHEMA, options))
    fields = [blank_to_null(F.col(f"_j.{f}")).alias(f) for f in RAW_FIELDS]
    malformed = (
        F.col("_j").isNull()
        | F.col(f"_j.{CORRUPT_COLUMN}").isNotNull()
        | (F.trim(F.col("value")) == "")
    )
    return (
        parsed.select(
            F.col("value").alias("raw"),
            malformed.alias("is_malformed"),
            *fields,
            *[c for c in lines.columns if c != "value"],
        )
        .withColumn("method", F.upper(F.trim("method")))
        .withColumn("event_time", to_timestamp_lenient(F.col("timestamp")))
        .withColumn("status_code", F.trim("status").try_cast("int"))
        .withColumn("latency", F.trim("latency_ms").try_cast("double"))
        .withColumn("nbytes", F.trim("bytes_sent").try_cast("long"))
    )
