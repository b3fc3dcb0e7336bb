"""Lines of any input format -> checked records: parsed once, validated once, each with a
quarantine reason or none. Pure DataFrame functions, stream or batch."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.config import Config
from apistream.ingest.formats import compile_format
from apistream.pipeline.parse import parse_json_lines
from apistream.pipeline.parse_access import parse_access_lines, parse_mapped_json
from apistream.pipeline.schema import ACCESS_LOG_REQUIRED
from apistream.pipeline.validate import (
    FILE_ERROR,
    FILE_PROBLEM,
    is_valid,
    with_quarantine_reason,
)

# What the sink needs of a checked record: the event fields for a valid one, the raw line
# and the reason for a quarantined one.
CHECKED_COLUMNS = (
    "request_id",
    "event_time",
    "method",
    "path",
    "status_code",
    "latency",
    "nbytes",
    "client_ip",
    "user_agent",
    "api_key",
    "reason",
    "detail",
    "source_file",
    "ingest_time",
)


# What the quarantine keeps of a line longer than validation.max_line_bytes.
RAW_KEEP_CHARS = 65_536


def cap_line_length(max_bytes: int) -> Callable[[DataFrame], DataFrame]:
    """Adds `line_bytes`; a line longer than `max_bytes` is cut to RAW_KEEP_CHARS before any
    parsing (and quarantined as line_too_long by the validation rules)."""

    def transform(lines: DataFrame) -> DataFrame:
        size = F.octet_length("value")
        cut = F.when(size > max_bytes, F.substring("value", 1, RAW_KEEP_CHARS))
        return lines.withColumns({"line_bytes": size, "value": cut.otherwise(F.col("value"))})

    return transform


def with_unreadable_files(
    spark: SparkSession, lines: DataFrame, unreadable: dict[str, tuple[str, str]]
) -> DataFrame:
    """The batch's lines plus one record per file it could not read whole (URI -> (reason,
    error), file_checks.unreadable_files), quarantined with that reason; the lines of a
    damaged archive up to the damage are in `lines`."""
    if not unreadable:
        return lines
    rows = [
        (f"{why}: {error}", uri, why, error) for uri, (why, error) in sorted(unreadable.items())
    ]
    ddl = f"value string, source_file string, {FILE_PROBLEM} string, {FILE_ERROR} string"
    return lines.unionByName(spark.createDataFrame(rows, ddl), allowMissingColumns=True)


def checked_records(lines: DataFrame, cfg: Config) -> DataFrame:
    """Parsed records, each with a quarantine reason or none."""
    logs = cfg.logs
    lines = lines.transform(cap_line_length(cfg.validation.max_line_bytes))
    if logs.format == "json":
        parsed = lines.transform(parse_json_lines)
        return parsed.transform(with_quarantine_reason(cfg.validation))
    if logs.format == "json_mapped":
        parsed = lines.transform(parse_mapped_json(logs.json_fields, logs.json_latency_unit))
        malformed = "malformed_json"
    else:
        fmt = compile_format(logs.format, logs.log_format, logs.timezone)
        parsed = lines.transform(parse_access_lines(fmt))
        malformed = "unparseable_line"
    return parsed.drop("line_no").transform(
        with_quarantine_reason(cfg.validation, ACCESS_LOG_REQUIRED, malformed)
    )


def slim(records: DataFrame, *keep: str, keep_raw: bool = True) -> DataFrame:
    """Only the columns the sink uses (and `keep`); the raw line is kept for quarantined
    records only, and only if `keep_raw` (enrichment.quarantine_raw). A line that is not valid
    UTF-8 keeps its exact bytes in `raw_bytes`, and `raw` holds it readable (each invalid byte
    as U+FFFD), so Arrow and DuckDB can read it."""
    invalid_utf8 = F.col("reason") == "invalid_utf8"
    if keep_raw:
        raw = F.when(invalid_utf8, F.make_valid_utf8("raw")).when(~is_valid(), F.col("raw"))
        raw_bytes = F.when(invalid_utf8, F.col("raw").cast("binary"))
    else:
        raw, raw_bytes = F.lit(None).cast("string"), F.lit(None).cast("binary")
    return records.select(*CHECKED_COLUMNS, *keep, raw.alias("raw"), raw_bytes.alias("raw_bytes"))
