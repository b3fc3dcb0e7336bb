"""Access-log formats through the real parse/validate path, and real logs end to end."""

from __future__ import annotations

import gzip
import re
import shutil
import sqlite3
import string
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from apistream.config import load_config
from apistream.ingest.plan import ingest_config
from apistream.lake import read_table
from apistream.pipeline.enrich import endpoint_template
from apistream.pipeline.records import CHECKED_COLUMNS, checked_records
from apistream.pipeline.topology import Paths, run_stream

LOGS = Path(__file__).parents[1] / "fixtures" / "logs"
NGINX_CUSTOM = (
    '$remote_addr [$time_iso8601] "$request_method $request_uri" $status '
    '$bytes_sent $request_id $upstream_response_time "$http_user_agent" '
    '"$http_x_api_key"'
)
COLUMNS = [c for c in CHECKED_COLUMNS if c not in ("source_file", "ingest_time")]


def parse_fixture(spark, name: str, **logs):
    return parse_lines(spark, (LOGS / name).read_text().splitlines(), name, **logs)


def parse_lines(spark, text: list[str], name: str = "inline.log", **logs):
    cfg = load_config(environ={}, overrides={f"logs.{k}": v for k, v in logs.items()})
    lines = spark.createDataFrame(list(enumerate(text)), "line_no int, value string").withColumns(
        {"source_file": F.lit(name), "ingest_time": F.lit("2026-11-28 00:00:00").cast("timestamp")}
    )
    rows = checked_records(
        lines,
        cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"max_age": None})}),
    ).collect()
    return [{c: r[c] for c in COLUMNS} for r in rows]


def test_nginx_combined_with_request_time(spark):
    rows = parse_fixture(spark, "nginx_combined_rt.log", format="nginx", log_format="combined_rt")
    first = rows[0]
    assert first["reason"] is None
    assert first["event_time"] == datetime(2026, 11, 27, 9, 0, 1)  # +0100 -> UTC
    assert (first["method"], first["path"], first["status_code"]) == (
        "GET",
        "/api/v2/banner/25019354?lang=en",
        200,
    )
    assert (first["latency"], first["nbytes"], first["client_ip"]) == (123.0, 512, "192.0.2.10")
    assert re.fullmatch(r"L[0-9a-f]{31}", first["request_id"])
    assert rows[1]["latency"] == 1500.0 and rows[1]["status_code"] == 503
    assert rows[2]["latency"] == 0.0
    assert (rows[3]["reason"], rows[3]["detail"]) == ("unparseable_line", None)
    assert (rows[4]["reason"], rows[4]["detail"]) == ("invalid_method", "BREW")
    assert len({r["request_id"] for r in rows}) == 5


def test_nginx_custom_format(spark):
    a, b = parse_fixture(spark, "nginx_custom.log", format="nginx", log_format=NGINX_CUSTOM)
    assert a == {
        "reason": None,
        "detail": None,
        "request_id": "f3a8c2e1d4b5a6978877665544332211",
        "event_time": datetime(2026, 11, 27, 9, 0),
        "method": "GET",
        "path": "/users/42",
        "status_code": 200,
        "latency": 42.0,
        "nbytes": 1024,
        "client_ip": "10.1.2.3",
        "user_agent": "okhttp/4.12.0",
        "api_key": "key-123",
    }
    assert b["reason"] is None and b["request_id"].startswith("L")
    assert (b["latency"], b["api_key"], b["status_code"]) == (None, None, 404)


def test_nginx_iso_time_beside_msec_and_request_time_before_upstream(spark):
    fmt = '[$time_iso8601] $msec "$request" $status $upstream_response_time $request_time'
    line = '[2026-11-27T09:00:01+00:00] 1764234001.250 "GET /a HTTP/1.1" 200 0.200 0.250'
    (row,) = parse_lines(spark, [line], format="nginx", log_format=fmt)
    assert (row["reason"], row["event_time"], row["latency"]) == (
        None,
        datetime(2026, 11, 27, 9, 0, 1),
        250.0,
    )


def test_apache_with_microseconds(spark):
    a, b, c = parse_fixture(
        spark,
        "apache_timed.log",
        format="apache",
        log_format='%h %l %u %t "%r" %>s %b %D "%{User-Agent}i"',
    )
    assert (a["event_time"], a["nbytes"], a["latency"]) == (datetime(2026, 11, 27, 13, 0), 0, 2.5)
    assert (b["latency"], b["nbytes"], b["method"]) == (123.456, 17, "PUT")
    assert (c["reason"], c["detail"]) == ("wrong_type", "status")


def test_alb(spark):
    ok, failed = parse_fixture(spark, "alb.log", format="alb")
    assert ok["reason"] is None
    assert (ok["path"], ok["latency"], ok["status_code"], ok["client_ip"]) == (
        "/",
        1.0,
        200,
        "192.168.131.39",
    )
    assert ok["event_time"] == datetime(2026, 11, 27, 22, 23, 0, 186641)
    assert (failed["path"], failed["latency"], failed["status_code"]) == (
        "/orders/77?x=1",
        None,
        502,
    )
    assert failed["request_id"] == "Root=1-58337262-36d228ad5d99923122bbe355"


def test_haproxy_with_timezone(spark):
    ok, badreq, timeout = parse_fixture(
        spark, "haproxy.log", format="haproxy", timezone="Europe/Paris"
    )
    assert ok["event_time"] == datetime(2026, 11, 27, 11, 14, 14, 655000)
    assert (ok["latency"], ok["nbytes"], ok["client_ip"]) == (109.0, 2750, "10.0.1.2")
    assert (badreq["reason"], badreq["detail"]) == ("missing_field", "method")
    assert (timeout["status_code"], timeout["latency"], timeout["path"]) == (
        504,
        12.0,
        "/api/jobs/9",
    )


def test_json_with_field_mapping(spark):
    fields = {
        "timestamp": "$.start_time",
        "method": "$.method",
        "path": "$.path",
        "status": "$.response_code",
        "latency_ms": "$.duration",
        "bytes_sent": "$.bytes_sent",
        "request_id": "$.x_request_id",
        "user_agent": "$.user_agent",
    }
    ok, wrong, broken = parse_fixture(
        spark, "envoy.jsonl", format="json_mapped", json_fields=fields, json_latency_unit="ms"
    )
    assert ok == {
        "reason": None,
        "detail": None,
        "request_id": "abc-1",
        "event_time": datetime(2026, 11, 27, 10, 0),
        "method": "GET",
        "path": "/api/items/5",
        "status_code": 200,
        "latency": 12.0,
        "nbytes": 99,
        "client_ip": None,
        "user_agent": "envoy",
        "api_key": None,
    }
    assert (wrong["reason"], wrong["detail"]) == ("wrong_type", "status")
    assert broken["reason"] == "malformed_json"


def is_hex(text: str, length: int) -> bool:
    return len(text) >= length and all(c in string.hexdigits for c in text)


def segment_template(segment: str) -> str:
    """One path segment as the default templating names it, by str methods: ASCII digits
    -> {id}, a UUID (8-4-4-4-12 hex digits) -> {uuid}, 16+ hex digits -> {hash}."""
    if segment.isascii() and segment.isdigit():
        return "{id}"
    groups = segment.split("-")
    if [len(g) for g in groups] == [8, 4, 4, 4, 12] and all(is_hex(g, 1) for g in groups):
        return "{uuid}"
    return "{hash}" if is_hex(segment, 16) else segment


def path_template(target: str) -> str:
    """A request target's endpoint template: query and fragment cut, then each segment after
    a '/' as segment_template says."""
    head, *segments = target.partition("?")[0].partition("#")[0].split("/")
    return "/".join([head, *map(segment_template, segments)])


def independent_counts(lines: list[str]):
    """Counts of the real log by plain Python: split at the quotes, templating by segment."""
    endpoints, classes, bad = Counter(), Counter(), []
    for n, line in enumerate(lines, 1):
        if line.count('"') % 2:  # a quoted field left open: the truncated line
            bad.append(n)
            continue
        request, after = line.split('"')[1:3]
        target = request.split()[1]
        status = int(after.split()[0])
        endpoints[path_template(target)] += 1
        classes[f"{status // 100}xx"] += 1
    return endpoints, classes, bad


# Counted in the raw file with awk and grep, less the truncated line 8899 (a 200).
HAND_COUNTED_ENDPOINTS = {
    "/images/web/{id}/banner.png": 516,  # all /images/web/2009/banner.png
    "/blog/{id}/May/{id}": 6,  # e.g. line 2143: /blog/2007/May/27
    "/favicon.ico": 807,
}
HAND_COUNTED_CLASSES = {"2xx": 9_170, "3xx": 609, "4xx": 217, "5xx": 3}


# Request targets and their templates, written by hand.
TEMPLATES_BY_HAND = {
    "/blog/2007/May/27?page=3#top": "/blog/{id}/May/{id}",
    "/u/123e4567-e89b-12d3-a456-426614174000/x": "/u/{uuid}/x",
    "/f/0123456789abcdefABCDEF/": "/f/{hash}/",
    "/f/0123456789abcde/2009a": "/f/0123456789abcde/2009a",
}


def test_independent_templating_and_the_pipeline_agree_with_templates_by_hand(spark):
    paths = spark.createDataFrame([(p,) for p in TEMPLATES_BY_HAND], "path string")
    rows = paths.select("path", endpoint_template(F.col("path"), (), ()).alias("t")).collect()
    assert {r["path"]: r["t"] for r in rows} == TEMPLATES_BY_HAND
    assert {p: path_template(p) for p in TEMPLATES_BY_HAND} == TEMPLATES_BY_HAND


@pytest.fixture(scope="module")
def real_run(spark, tmp_path_factory, real_apache_log):
    root = tmp_path_factory.mktemp("ingest")
    base = load_config(
        environ={},
        overrides={
            "sinks.output": str(root),
            "logs.format": "apache",
            "logs.log_format": "combined",
        },
    )
    cfg = ingest_config(base, [real_apache_log], follow=False)
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return cfg


def test_real_apache_log_counts_equal_an_independent_count(real_run, real_apache_lines):
    endpoints, classes, bad = independent_counts(real_apache_lines)
    assert bad == [8899]
    assert {k: endpoints[k] for k in HAND_COUNTED_ENDPOINTS} == HAND_COUNTED_ENDPOINTS
    assert dict(classes) == HAND_COUNTED_CLASSES
    with sqlite3.connect(real_run.sqlite_path) as db:
        got = dict(db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1"))
        sums = db.execute(
            "SELECT SUM(status_2xx), SUM(status_3xx), SUM(status_4xx), "
            "SUM(status_5xx) FROM endpoint_metrics"
        ).fetchone()
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
        latency = db.execute("SELECT COUNT(latency_p95_ms), COUNT(*) FROM endpoint_metrics")
        latency = latency.fetchone()
    assert {k: got.get(k) for k in HAND_COUNTED_ENDPOINTS} == HAND_COUNTED_ENDPOINTS
    assert got == dict(endpoints)
    assert dict(zip(["2xx", "3xx", "4xx", "5xx"], sums, strict=True)) == dict(classes)
    assert totals == (10_000, 9_999, 1, 0, 0)
    assert latency[0] == 0 and latency[1] > 0  # no latency in the log: empty, not zero


def test_real_apache_log_truncated_line_is_quarantined(real_run, real_apache_lines):
    q = read_table(Paths.of(real_run).quarantine).to_pylist()
    assert len(q) == 1
    assert q[0]["reason"] == "unparseable_line"
    assert q[0]["raw"] == real_apache_lines[8898]


def test_same_file_twice_in_one_ingest_is_caught_as_duplicates(spark, tmp_path):
    plain = tmp_path / "access.log"
    shutil.copy(LOGS / "nginx_combined_rt.log", plain)
    zipped = tmp_path / "access.log.1.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    base = load_config(
        environ={},
        overrides={
            "sinks.output": str(tmp_path / "out"),
            "logs.format": "nginx",
            "logs.log_format": "combined_rt",
        },
    )
    cfg = ingest_config(base, [plain, zipped], follow=False)
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    with sqlite3.connect(cfg.sqlite_path) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
        endpoints = dict(
            db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1")
        )
    assert totals == (10, 3, 4, 3, 0)
    assert endpoints == {"/api/v2/banner/{id}": 1, "/api/v2/orders": 1, "/health": 1}
