"""Access-log lines -> the same string and typed columns as parse_json_lines, with built-in
Spark expressions compiled once from a CompiledFormat (regexp_extract; no per-line Python)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from apistream.ingest import formats as fm
from apistream.pipeline.parse import epoch_seconds, to_timestamp_lenient
from apistream.pipeline.schema import RAW_FIELDS

ABSOLUTE_URL = r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*"


def absent_to_null(col: Column) -> Column:
    """'' (no match) and '-' (the log's own 'absent') become null."""
    return F.when(~F.trim(col).isin("", "-"), col)


def stable_request_id(line: Column, line_no: Column) -> Column:
    """An id from the line's text and its line number: the same file read twice yields the
    same ids (caught as duplicates); two identical lines of one file stay two requests."""
    digest = F.sha2(F.concat_ws("#", line, line_no.cast("string")), 256)
    return F.concat(F.lit("L"), F.substring(digest, 1, 31))


def _event_time(fmt: fm.CompiledFormat, text: Column) -> Column:
    """The event time (UTC) from the time field's text, as the format's TimeSpec says."""
    spec = fmt.time
    if spec.kind == "epoch":
        return epoch_seconds(text.try_cast("double"))
    if spec.kind == "iso":
        return to_timestamp_lenient(text)
    parsed = F.try_to_timestamp(text, F.lit(spec.pattern))
    return F.to_utc_timestamp(parsed, fmt.timezone) if spec.local else parsed


def _latency(fmt: fm.CompiledFormat, field: Callable[[str], Column]) -> tuple[Column, Column]:
    """(raw latency text, latency in ms): the LatencySpec's fields summed and scaled, null
    when any holds the spec's 'absent' value or the format has no latency."""
    spec = fmt.latency
    if spec is None:
        return F.lit(None).cast("string"), F.lit(None).cast("double")
    parts = [field(role) for role in spec.roles]
    total = reduce(operator.add, [p.try_cast("double") for p in parts])
    ms = total * fm.MS_PER_UNIT[spec.unit]
    if spec.absent is not None:
        ms = F.when(~F.array_contains(F.array(*parts), spec.absent), ms)
    return field(spec.raw), ms


def parse_access_lines(fmt: fm.CompiledFormat) -> Callable[[DataFrame], DataFrame]:
    """`value` log lines (+ line_no) -> raw, is_malformed, RAW_FIELDS as text, typed columns."""

    def field(role: str) -> Column:
        if role not in fmt.roles:
            return F.lit(None).cast("string")
        return F.col(f"_{role}")

    def transform(lines: DataFrame) -> DataFrame:
        # One capture per field, each used once below.
        captured = lines.select(
            "*",
            *[
                absent_to_null(F.regexp_extract("value", fmt.regex, i)).alias(f"_{role}")
                for role, i in fmt.roles.items()
            ],
        )
        request = field(fm.REQUEST_LINE)
        method = (
            field(fm.METHOD)
            if fmt.has(fm.METHOD)
            else absent_to_null(F.regexp_extract(request, r"^(\S+)\s+\S+", 1))
        )
        path = (
            field(fm.PATH)
            if fmt.has(fm.PATH)
            else absent_to_null(F.regexp_extract(request, r"^\S+\s+(\S+)", 1))
        )
        nbytes = field(fm.BYTES_DASH_ZERO) if fmt.has(fm.BYTES_DASH_ZERO) else field(fm.BYTES)
        if fmt.has(fm.BYTES_DASH_ZERO):
            nbytes = F.coalesce(nbytes, F.lit("0"))
        client = (
            field(fm.CLIENT_IP)
            if fmt.has(fm.CLIENT_IP)
            else absent_to_null(F.regexp_extract(field(fm.CLIENT_IP_PORT), r"^(.*):\d+$", 1))
        )
        latency_raw, latency_ms = _latency(fmt, field)
        keep = [c for c in lines.columns if c != "value"]
        text = captured.select(
            F.col("value").alias("raw"),
            (~F.col("value").rlike(fmt.regex)).alias("is_malformed"),
            F.coalesce(
                field(fm.REQUEST_ID), stable_request_id(F.col("value"), F.col("line_no"))
            ).alias("request_id"),
            field(fmt.time.role).alias("timestamp"),
            F.upper(method).alias("method"),
            path.alias("_path"),
            field(fm.STATUS).alias("status"),
            latency_raw.alias("latency_ms"),
            nbytes.alias("bytes_sent"),
            client.alias("client_ip"),
            field(fm.USER_AGENT).alias("user_agent"),
            field(fm.API_KEY).alias("api_key"),
            latency_ms.alias("latency"),
            *keep,
        )
        # Absolute-form request targets (proxies, load balancers) keep only their path.
        path = F.col("_path")
        bare = F.coalesce(absent_to_null(F.regexp_replace(path, ABSOLUTE_URL, "")), F.lit("/"))
        return text.select(
            "raw",
            "is_malformed",
            *[
                F.when(path.rlike(ABSOLUTE_URL), bare).otherwise(path).alias(f)
                if f == "path"
                else F.col(f)
                for f in RAW_FIELDS
            ],
            *keep,
            _event_time(fmt, F.col("timestamp")).alias("event_time"),
            F.col("status").try_cast("int").alias("status_code"),
            "latency",
            F.col("bytes_sent").try_cast("long").alias("nbytes"),
        )

    return transform


def parse_mapped_json(
    fields: Mapping[str, str], latency_unit: str
) -> Callable[[DataFrame], DataFrame]:
    """JSON lines of any shape (Envoy, Traefik, Kong, ...) mapped to the event fields by JSON
    path, e.g. {"path": "$.request.path", "latency_ms": "$.duration"}."""
    scale = fm.MS_PER_UNIT[latency_unit]

    def transform(lines: DataFrame) -> DataFrame:
        value = F.col("value")

        def get(name: str) -> Column:
            path = fields.get(name)
            if path is None:
                return F.lit(None).cast("string")
            return absent_to_null(F.get_json_object(value, path))

        text = {f: get(f) for f in RAW_FIELDS}
        text["request_id"] = F.coalesce(
            text["request_id"], stable_request_id(value, F.col("line_no"))
        )
        text["method"] = F.upper(text["method"])
        keep = [c for c in lines.columns if c != "value"]
        out = lines.select(
            value.alias("raw"),
            (F.get_json_object(value, "$").isNull() | ~F.trim(value).startswith("{")).alias(
                "is_malformed"
            ),
            *[text[f].alias(f) for f in RAW_FIELDS],
            *keep,
        )
        return out.select(
            "*",
            to_timestamp_lenient(F.col("timestamp")).alias("event_time"),
            F.col("status").try_cast("int").alias("status_code"),
            (F.col("latency_ms").try_cast("double") * scale).alias("latency"),
            F.col("bytes_sent").try_cast("long").alias("nbytes"),
        )

    return transform
