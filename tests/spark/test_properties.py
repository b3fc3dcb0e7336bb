"""Property-based tests (hypothesis): random bytes, and random mutations of valid JSON records
and nginx lines, through the sink's parse -> validate -> outcome -> window-partials path on
tiny DataFrames. Nothing raises, every line gets exactly one outcome, and a record that passes
validation is a well-formed event.

The examples are derandomized so CI runs the same ones each time; HYPOTHESIS_PROFILE=fuzz
draws 500 fresh examples per test instead.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from apistream.config import load_config
from apistream.pipeline.aggregate import window_partials
from apistream.pipeline.batch_values import DEDUP_BOUND, LATE_CUTOFF, with_batch_values
from apistream.pipeline.enrich import with_endpoint
from apistream.pipeline.records import checked_records, slim
from apistream.pipeline.schema import REASONS
from apistream.pipeline.sink import outcome_rows

pytestmark = pytest.mark.spark

settings.register_profile(
    "ci",
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CFG = {
    fmt: load_config(environ={}, overrides={"logs.format": fmt, "validation.max_age": None})
    for fmt in ("json", "nginx")
}
GOOD = {
    "request_id": "r1",
    "timestamp": "2026-11-29T11:59:00.250Z",
    "method": "GET",
    "path": "/api/v1/users/42",
    "status": 200,
    "latency_ms": 12.5,
    "bytes_sent": 10,
}
NGINX = b'10.0.0.1 - - [29/Nov/2026:11:59:00 +0000] "GET /api/v1/users/1 HTTP/1.1" 200 512 "-" "ua"'

# A file line: any bytes but the line break.
line_bytes = st.binary(max_size=400).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mutated_record(draw) -> bytes:
    """A valid record with some fields replaced by anything, then maybe a byte slice changed."""
    rec = dict(GOOD)
    for field in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=4)):
        rec[field] = draw(any_value)
    return draw(mutated(json.dumps(rec, allow_nan=True).encode()))


def mutated(line: bytes) -> st.SearchStrategy[bytes]:
    """The line with one random slice replaced by random bytes (or left alone)."""

    @st.composite
    def build(draw) -> bytes:
        if draw(st.booleans()):
            return line
        start = draw(st.integers(0, len(line)))
        end = draw(st.integers(start, min(len(line), start + 20)))
        return line[:start] + draw(line_bytes.map(lambda b: b[:20])) + line[end:]

    return build()


def check(spark, fmt: str, lines: list[bytes]) -> None:
    """The sink's per-record path over `lines`; asserts one outcome per line and sane events."""
    cfg = CFG[fmt]
    raw = spark.createDataFrame(
        [(i, bytearray(b)) for i, b in enumerate(lines)], "line_no int, b binary"
    ).select(
        F.col("b").cast("string").alias("value"), "line_no", F.lit("f.log").alias("source_file")
    )
    if fmt == "json":
        raw = raw.drop("line_no")
    with_values = with_batch_values(spark, raw, NOW, None, None)
    records = (
        slim(checked_records(with_values, cfg), LATE_CUTOFF, DEDUP_BOUND)
        .transform(with_endpoint(cfg))
        .cache()
    )
    checked = records.select("reason", "event_time", "method", "status_code", "latency").collect()
    assert len(checked) == len(lines)
    assert {r.reason for r in checked} <= {None, *REASONS}
    for r in checked:
        if r.reason is None:
            assert r.event_time is not None and r.method in cfg.validation.methods
            assert cfg.validation.status_min <= r.status_code <= cfg.validation.status_max
            assert r.latency is None or 0 <= r.latency <= cfg.validation.max_latency_ms
    partials = window_partials(outcome_rows(records, F.lit(False)), 60.0, "outcome").collect()
    assert sum(p.requests for p in partials) == len(lines)
    records.unpersist()


@given(st.lists(line_bytes, min_size=1, max_size=60))
def test_random_bytes_as_json_lines(spark, lines):
    check(spark, "json", lines)


@given(st.lists(line_bytes, min_size=1, max_size=60))
def test_random_bytes_as_nginx_lines(spark, lines):
    check(spark, "nginx", lines)


@given(st.lists(mutated_record(), min_size=1, max_size=60))
def test_mutated_json_records(spark, lines):
    check(spark, "json", lines)


@given(st.lists(mutated(NGINX), min_size=1, max_size=60))
def test_mutated_nginx_lines(spark, lines):
    check(spark, "nginx", lines)
