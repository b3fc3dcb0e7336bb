"""Each pure step on tiny inline DataFrames."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from apistream.config import TemplatePattern, load_config
from apistream.latency_histogram import RELATIVE_ERROR
from apistream.pipeline.aggregate import window_partials
from apistream.pipeline.batch_values import row_id_in
from apistream.pipeline.dedup import with_key_hashes
from apistream.pipeline.enrich import (
    endpoint_dimension,
    endpoint_template,
    hash_key_frame,
    status_class,
    to_events,
    with_endpoint,
)
from apistream.pipeline.parse import parse_json_lines
from apistream.pipeline.validate import with_quarantine_reason
from apistream.session import jvm_versions
from apistream.spark_stack import hadoop_version, pyspark_version
from apistream.window_metrics import merge_windows

CFG = load_config(environ={})
NOW = "2026-11-27 12:00:00"
GOOD = (
    '{"request_id":"r1","timestamp":"2026-11-27T11:59:00.250Z","method":"get",'
    '"path":"/api/v1/users/42?x=1","status":200,"latency_ms":12.5,"bytes_sent":10}'
)


def check(spark, lines: list[str]):
    df = spark.createDataFrame([(line,) for line in lines], "value string").withColumns(
        {"source_file": F.lit("f.jsonl"), "ingest_time": F.lit(NOW).cast("timestamp")}
    )
    return df.transform(parse_json_lines).transform(with_quarantine_reason(CFG.validation))


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        (GOOD, None, None),
        ('{"request_id":"r1","timestamp"', "malformed_json", None),
        ("[1, 2]", "malformed_json", None),
        ("", "blank_line", None),
        ("\t ", "blank_line", None),
        (GOOD.replace("12.5", "NaN"), "wrong_type", "latency_ms"),
        (GOOD.replace("12.5", '"-Infinity"'), "wrong_type", "latency_ms"),
        (GOOD.replace('"status":200,', ""), "missing_field", "status"),
        (GOOD.replace('"path":"/api/v1/users/42?x=1"', '"path":"  "'), "missing_field", "path"),
        (GOOD.replace('"status":200', '"status":"OK"'), "wrong_type", "status"),
        (GOOD.replace('"bytes_sent":10', '"bytes_sent":"lots"'), "wrong_type", "bytes_sent"),
        (GOOD.replace("2026-11-27T11:59:00.250Z", "yesterday"), "wrong_type", "timestamp"),
        (GOOD.replace('"get"', '"FETCH"'), "invalid_method", "FETCH"),
        (GOOD.replace('"status":200', '"status":999'), "invalid_status", "999"),
        (GOOD.replace('"latency_ms":12.5', '"latency_ms":-3'), "negative_latency", "-3"),
        (GOOD.replace('"latency_ms":12.5', '"latency_ms":900000'), "absurd_latency", "900000"),
        (
            GOOD.replace("2026-11-27T11:59", "2026-12-27T11:59"),
            "future_timestamp",
            "2026-12-27T11:59:00.250Z",
        ),
        (
            GOOD.replace("2026-11-27T11:59", "2024-11-27T11:59"),
            "stale_timestamp",
            "2024-11-27T11:59:00.250Z",
        ),
    ],
)
def test_each_rule_yields_its_reason(spark, line, reason, detail):
    row = check(spark, [line]).select("reason", "detail").first()
    assert (row.reason, row.detail) == (reason, detail)


def test_typed_fields_and_lenient_timestamps(spark):
    lines = [
        GOOD,
        GOOD.replace('"2026-11-27T11:59:00.250Z"', '"2026-11-27T13:59:00.250+02:00"'),
        GOOD.replace('"2026-11-27T11:59:00.250Z"', "1795780740.25"),
        GOOD.replace('"2026-11-27T11:59:00.250Z"', "1795780740250"),
    ]
    rows = check(spark, lines).select("event_time", "status_code", "latency", "method").collect()
    assert {r.event_time for r in rows} == {datetime(2026, 11, 27, 11, 59, 0, 250000)}
    assert rows[0].status_code == 200 and rows[0].latency == 12.5 and rows[0].method == "GET"


def test_endpoint_templates(spark):
    paths = [
        "/api/v1/users/42",
        "/api/v1/users/42/",
        "/api/v1/carts/7/items?x=1",
        "/other/123/x/9f1c2d3e4b5a69788796a5b4c3d2e1f0",
        "/files/3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "/v2/files/a/b.txt",
        "/health",
    ]
    patterns = [TemplatePattern(regex="^/v2/files/.+$", template="/v2/files/{path}")]
    df = spark.createDataFrame([(p,) for p in paths], "path string")
    out = [
        r[0] for r in df.select(endpoint_template(F.col("path"), patterns, CFG.endpoints)).collect()
    ]
    assert out == [
        "/api/v1/users/{id}",
        "/api/v1/users/{id}",
        "/api/v1/carts/{id}/items",
        "/other/{id}/x/{hash}",
        "/files/{uuid}",
        "/v2/files/{path}",
        "/health",
    ]


def test_status_class(spark):
    df = spark.createDataFrame([(100,), (204,), (404,), (599,)], "s int")
    assert [r[0] for r in df.select(status_class(F.col("s"))).collect()] == [
        "1xx",
        "2xx",
        "4xx",
        "5xx",
    ]


def test_to_events_joins_dimension_and_keeps_unknown_endpoints(spark):
    lines = [GOOD, GOOD.replace("/api/v1/users/42?x=1", "/nope/7")]
    events = (
        check(spark, lines)
        .transform(with_endpoint(CFG))
        .transform(with_key_hashes)
        .transform(to_events(endpoint_dimension(spark, CFG)))
    )
    rows = {r.endpoint: r for r in events.collect()}
    assert set(rows) == {"/api/v1/users/{id}", "/nope/{id}"}
    known, unknown = rows["/api/v1/users/{id}"], rows["/nope/{id}"]
    assert (known.service, known.team, known.latency_slo_ms) == ("accounts", "identity", 150.0)
    assert (unknown.service, unknown.team, unknown.latency_slo_ms) == (None, None, None)
    assert (known.date, known.hour, known.status_class) == ("2026-11-27", 11, "2xx")


def test_client_ips_truncated_to_24_and_48_bits(spark):
    ips = {
        "89.55.136.174": "89.55.136.0",
        "10.0.0.1": "10.0.0.0",
        "2001:db8:85a3:8d3:1319:8a2e:370:7348": "2001:db8:85a3::",
        "2001:DB8::1": "2001:db8:0::",
        "::1": "0:0:0::",
        "fe80::": "fe80:0:0::",
        "::ffff:192.0.2.128": "0:0:0::",
        "-": "-",
    }
    lines = [GOOD.replace('"bytes_sent":10', f'"bytes_sent":10,"client_ip":"{ip}"') for ip in ips]
    valid = check(spark, lines).transform(with_endpoint(CFG)).transform(with_key_hashes)
    dimension = endpoint_dimension(spark, CFG)
    kept = valid.transform(to_events(dimension)).select("client_ip").collect()
    truncated = valid.transform(to_events(dimension, "truncate")).select("client_ip").collect()
    assert [r.client_ip for r in kept] == list(ips)
    assert [r.client_ip for r in truncated] == list(ips.values())


KEY_A = b"step-test-hash-key-A-0123456789"
KEY_B = b"step-test-hash-key-B-9876543210"
# RFC 2104 pads a key to SHA-256's 64-byte block, or hashes it first when it is longer.
KEY_BLOCK = bytes(range(64))
KEY_LONG = "ключ-длиннее-блока-".encode() * 4


def hmac16(key: bytes, value: str) -> str:
    """The keyed hash as defined, computed independently: HMAC-SHA256, first 16 hex chars."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def caller_events(spark, callers: list[tuple[str | None, str | None]]):
    """Valid records with these (client_ip, api_key) pairs; None leaves the field out."""
    lines = []
    for ip, api_key in callers:
        extra = "".join(
            f',"{name}":{json.dumps(value)}'
            for name, value in (("client_ip", ip), ("api_key", api_key))
            if value is not None
        )
        lines.append(GOOD.replace('"bytes_sent":10', f'"bytes_sent":10{extra}'))
    return check(spark, lines).transform(with_endpoint(CFG)).transform(with_key_hashes)


CALLERS = [
    ("89.55.136.174", "k_live_4f9a"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "clé-ü-ключ"),
    ("89.55.136.174", "k_live_4f9a"),
    ("-", "-"),
    (None, None),
    ("10.0.0.1", "k_test_0001"),
]


def test_client_ip_and_api_key_hash_is_hmac_sha256_truncated_to_64_bits(spark):
    valid = caller_events(spark, CALLERS)
    dimension = endpoint_dimension(spark, CFG)

    def hashed(key: bytes, client_ip: str = "hash", api_key: str = "hash") -> list[tuple]:
        events = to_events(dimension, client_ip, api_key, hash_key_frame(spark, key))
        return [tuple(r) for r in valid.transform(events).select("client_ip", "api_key").collect()]

    def expected(key: bytes, value: str | None) -> str | None:
        return value if value in (None, "-") else hmac16(key, value)

    with_a = hashed(KEY_A)
    assert with_a == [(expected(KEY_A, ip), expected(KEY_A, k)) for ip, k in CALLERS]
    assert all(re.fullmatch("[0-9a-f]{16}", ip) for ip, _ in with_a[:3] + with_a[5:])
    assert with_a[0] == with_a[2]  # same input, same key: same hash
    assert with_a[3] == ("-", "-") and with_a[4] == (None, None)
    assert hashed(KEY_A) == with_a  # and again in another query
    with_b = hashed(KEY_B)
    for (ip_a, key_a), (ip_b, key_b), (ip, api_key) in zip(with_a, with_b, CALLERS, strict=True):
        assert (ip_a == ip_b) == (ip in (None, "-")), ip
        assert (key_a == key_b) == (api_key in (None, "-")), api_key
    for key in (KEY_BLOCK, KEY_LONG):
        assert hashed(key) == [(expected(key, ip), expected(key, k)) for ip, k in CALLERS]
    # Each column by its own option.
    assert hashed(KEY_A, api_key="keep") == [(expected(KEY_A, ip), k) for ip, k in CALLERS]
    assert hashed(KEY_A, client_ip="keep") == [(ip, expected(KEY_A, k)) for ip, k in CALLERS]
    truncated = ["89.55.136.0", "2001:db8:85a3::", "89.55.136.0", "-", None, "10.0.0.0"]
    assert hashed(KEY_A, client_ip="truncate") == [
        (ip, expected(KEY_A, k)) for ip, (_, k) in zip(truncated, CALLERS, strict=True)
    ]


def test_hashing_without_the_key_frame_is_refused(spark):
    dimension = endpoint_dimension(spark, CFG)
    with pytest.raises(ValueError, match="hash_key frame"):
        to_events(dimension, "keep", "hash")


def test_window_metrics(spark):
    rows = [("2026-11-27 10:00:01", "/a", "GET", 200, "2xx", float(v), 10) for v in range(1, 101)]
    rows += [
        ("2026-11-27 10:00:30", "/a", "GET", 503, "5xx", 1000.0, 0),
        ("2026-11-27 10:01:00", "/a", "GET", 404, "4xx", 5.0, 1),
    ]
    df = spark.createDataFrame(
        rows,
        "t string, endpoint string, method string, status int, "
        "status_class string, latency_ms double, bytes_sent long",
    )
    df = df.withColumn("event_time", F.col("t").cast("timestamp"))
    partials = window_partials(df, 60.0).toArrow().to_pylist()
    # one partial per latency bucket: 100 distinct values in the first window
    assert sum(p["requests"] for p in partials) == 102
    first, second = merge_windows({}, partials)
    assert first["window_start"] == "2026-11-27T10:00:00Z"
    assert first["window_end"] == "2026-11-27T10:01:00Z"
    assert (first["requests"], first["status_2xx"], first["status_5xx"]) == (101, 100, 1)
    assert (first["latency_min_ms"], first["latency_max_ms"]) == (1.0, 1000.0)
    assert first["latency_avg_ms"] == pytest.approx(6050 / 101)
    assert first["error_rate_5xx"] == pytest.approx(1 / 101)
    assert first["bytes_sent"] == 1000
    assert first["max_event_time"] == "2026-11-27T10:00:30.000Z"
    # the ceil(p*n)-th smallest value of 1..100 and 1000, within the histogram's 0.5%
    for name, exact in (
        ("latency_p50_ms", 51.0),
        ("latency_p95_ms", 96.0),
        ("latency_p99_ms", 100.0),
    ):
        assert first[name] == pytest.approx(exact, rel=RELATIVE_ERROR), name
    assert second["window_start"] == "2026-11-27T10:01:00Z"
    assert (second["requests"], second["status_4xx"], second["error_rate_4xx"]) == (1, 1, 1.0)
    assert second["latency_p50_ms"] == second["latency_p99_ms"] == 5.0  # clamped to min/max


def test_window_partials_merge_across_batches_like_one_batch(spark):
    """Splitting a window's events over two batches gives the same row as one batch."""
    rows = [(f"2026-11-27 10:00:{i % 60:02d}", float(1 + i * 7 % 500), i % 3) for i in range(900)]
    df = spark.createDataFrame(rows, "t string, latency_ms double, bytes_sent long").select(
        F.col("t").cast("timestamp").alias("event_time"),
        F.lit("/a").alias("endpoint"),
        F.lit("GET").alias("method"),
        F.lit("2xx").alias("status_class"),
        "latency_ms",
        "bytes_sent",
    )
    whole = merge_windows({}, window_partials(df, 60.0).toArrow().to_pylist())
    early = df.filter(F.second("event_time") < 30)
    late = df.filter(F.second("event_time") >= 30)
    first = merge_windows({}, window_partials(early, 60.0).toArrow().to_pylist())
    stored = {(r["window_start"], r["endpoint"], r["method"]): r for r in first}
    split = merge_windows(stored, window_partials(late, 60.0).toArrow().to_pylist())
    assert split == whole


@pytest.mark.parametrize("n", [0, 3, 5_000])
def test_row_id_in_selects_exactly_the_ids_through_a_hash_set(spark, n):
    rows = spark.range(20_000).withColumnRenamed("id", "row_id")
    ids = list(range(7, 7 + 3 * n, 3))
    picked = rows.filter(row_id_in("row_id", ids))
    assert sorted(r.row_id for r in picked.collect()) == ids
    # One set looked up per row, not a chain of comparisons (and no literal in the code).
    assert "INSET" in picked._jdf.queryExecution().optimizedPlan().toString().upper()


def test_the_session_runs_one_spark_stack(spark, spark_packages):
    spark_version, scala, hadoop = jvm_versions(spark)
    assert (spark_version, hadoop) == (pyspark_version(), hadoop_version())
    assert scala.startswith("2.13.")
    # Only the packages this run's tests need: the Kafka connector with a Kafka test (where
    # test_kafka_end_to_end checks it), none for these steps alone.
    assert spark.conf.get("spark.jars.packages", "") == ",".join(spark_packages)
