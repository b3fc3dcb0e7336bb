"""Quoted fields of 10 KB to 1 MB through Spark's regexp_extract, for every access-log format.

java.util.regex ran the old quoted-field pattern `((?:[^"\\]|\\.)*)` by recursing once per
character: a user agent of ~1,500 characters threw StackOverflowError, which killed the task
and the JVM. Each line here is parsed by parse_access_lines on a small static DataFrame and
checked field by field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F

from apistream.ingest import formats as fm
from apistream.pipeline.parse_access import parse_access_lines

pytestmark = pytest.mark.spark

SIZES = (10_000, 100_000, 1_000_000)
PATH = "/api/v1/users/1"
REFERER = "https://example.com/"
UA = "curl/8.8.0"
HEADER = "1wt.eu"
REPRO_UA = "M" * 1600
REPRO = (
    '10.0.0.1 - - [29/Nov/2026:02:20:00 +0000] "GET /api/v1/users/1 HTTP/1.1" 200 512 "-" '
    f'"{REPRO_UA}"'
)
# Output columns of parse_access_lines compared as they are (event_time as text).
COLUMNS = ("is_malformed", "method", "path", "status_code", "latency", "nbytes", "client_ip")


@dataclass(frozen=True)
class Format:
    fmt: fm.CompiledFormat
    # (path, referer, user agent, haproxy captured header) -> one log line
    line: Callable[[str, str, str, str], str]
    long_fields: tuple[str, ...]  # which of path/referer/ua/header to make long
    latency: float | None
    event_time: str
    has_ua: bool = True
    request_id: str = r"L[0-9a-f]{31}"  # by default the line's stable id


CLF = "10.0.0.1 - - [29/Nov/2026:02:20:00 +0000]"
FORMATS = {
    "nginx-combined": Format(
        fm.compile_format("nginx", "combined"),
        lambda p, r, u, h: f'{CLF} "GET {p} HTTP/1.1" 200 512 "{r}" "{u}"',
        ("path", "referer", "ua"),
        None,
        "2026-11-29 02:20:00.000",
    ),
    "nginx-combined_rt": Format(
        fm.compile_format("nginx", "combined_rt"),
        lambda p, r, u, h: f'{CLF} "GET {p} HTTP/1.1" 200 512 "{r}" "{u}" 0.250',
        ("path", "referer", "ua"),
        250.0,
        "2026-11-29 02:20:00.000",
    ),
    "apache-common": Format(
        fm.compile_format("apache", "common"),
        lambda p, r, u, h: f'{CLF} "GET {p} HTTP/1.1" 200 512',
        ("path",),
        None,
        "2026-11-29 02:20:00.000",
        has_ua=False,
    ),
    "apache-combined": Format(
        fm.compile_format("apache", "combined"),
        lambda p, r, u, h: f'{CLF} "GET {p} HTTP/1.1" 200 512 "{r}" "{u}"',
        ("path", "referer", "ua"),
        None,
        "2026-11-29 02:20:00.000",
    ),
    "alb": Format(
        fm.compile_format("alb", None),
        lambda p, r, u, h: (
            "http 2026-11-29T02:20:00.000000Z app/my-loadbalancer/50dc6c495c0c9188 "
            "10.0.0.1:2817 10.0.0.9:80 0.000 0.250 0.000 200 200 34 512 "
            f'"GET http://www.example.com:80{p} HTTP/1.1" "{u}" - - '
            "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/t/73e2d6bc24d8a067 "
            f'"Root=1-58337262-36d228ad5d99923122bbe354" "{r}" "-" 0 '
            '2026-11-29T02:20:00.000000Z "forward" "-" "-" "10.0.0.9:80" "200" "-" "-"'
        ),
        # The referer slot is the domain_name field, past the 18 parsed ones: `(?: .*)?`.
        ("path", "ua", "referer"),
        250.0,
        "2026-11-29 02:20:00.000",
        request_id="Root=1-58337262-36d228ad5d99923122bbe354",
    ),
    "haproxy": Format(
        fm.compile_format("haproxy", None),
        lambda p, r, u, h: (
            "Nov 29 02:20:00 localhost haproxy[14389]: 10.0.0.1:33317 "
            "[29/Nov/2026:02:20:00.655] http-in static/srv1 10/0/30/69/250 200 512 - - ---- "
            f'1/1/1/1/0 0/0 {{{h}}} {{}} "GET {p} HTTP/1.1"'
        ),
        # The request is its one quoted field; a long captured header is what `.*?` crosses.
        ("path", "header"),
        250.0,
        "2026-11-29 02:20:00.655",
        has_ua=False,
    ),
}


def long_text(n: int, head: str, unit: str) -> str:
    """Exactly n characters: head, then `unit` repeated with an escaped quote (\\") at its
    start and middle, ending in an escaped backslash (\\\\) just before the closing quote."""
    body = unit * (n // len(unit) + 1)
    body = body[: n - len(head) - 6]
    half = len(body) // 2
    text = head + '\\"' + body[:half] + '\\"' + body[half:] + "\\\\"
    assert len(text) == n
    return text


def cases(spec: Format) -> list[dict[str, str]]:
    """One normal line, then each long field at each size, as the values put in."""
    normal = {"path": PATH, "referer": REFERER, "ua": UA, "header": HEADER}
    out = [normal]
    for name in spec.long_fields:
        for n in SIZES:
            text = {
                "path": lambda n: long_text(n, "/api/v1/search?q=", "abc123%20-._~"),
                "referer": lambda n: long_text(n, "https://example.com/?r=", "xyz789&a=b"),
                "ua": lambda n: long_text(n, "Mozilla/5.0 ", "(X11; Linux x86_64) "),
                "header": lambda n: long_text(n, "", "Mozilla/5.0 (X11) "),
            }[name](n)
            out.append({**normal, name: text})
    return out


def parse(spark, spec: Format, lines: list[str], referer_group: int | None) -> list[dict]:
    """lines -> parse_access_lines -> the checked columns, in line order."""
    df = spark.createDataFrame(list(enumerate(lines)), "line_no int, value string")
    parsed = parse_access_lines(spec.fmt)(df)
    referer = (
        F.regexp_extract("raw", spec.fmt.regex, referer_group)
        if referer_group
        else F.lit(None).cast("string")
    )
    rows = parsed.select(
        "line_no",
        "request_id",
        *COLUMNS,
        "user_agent",
        F.date_format("event_time", "yyyy-MM-dd HH:mm:ss.SSS").alias("event_time"),
        referer.alias("referer"),
    ).collect()
    return [r.asDict() for r in sorted(rows, key=lambda r: r["line_no"])]


def referer_group(spec: Format) -> int | None:
    """The capture group of the referer-like field (no role of its own), if parsed."""
    if spec.fmt.name in ("nginx", "apache") and spec.fmt.has(fm.USER_AGENT):
        return spec.fmt.roles[fm.USER_AGENT] - 1
    return None


@pytest.mark.parametrize("name", FORMATS)
def test_long_quoted_fields_parse_exactly(spark, name):
    spec = FORMATS[name]
    inputs = cases(spec)
    lines = [spec.line(v["path"], v["referer"], v["ua"], v["header"]) for v in inputs]
    group = referer_group(spec)
    rows = parse(spark, spec, lines, group)
    assert len(rows) == len(inputs) == 1 + 3 * len(spec.long_fields)
    for row, values, line in zip(rows, inputs, lines, strict=True):
        assert re.fullmatch(spec.request_id, row.pop("request_id")), line[:200]
        assert row.pop("line_no") is not None
        expected = {
            "is_malformed": False,
            "method": "GET",
            "path": values["path"],
            "status_code": 200,
            "latency": spec.latency,
            "nbytes": 512,
            "client_ip": "10.0.0.1",
            "user_agent": values["ua"] if spec.has_ua else None,
            "event_time": spec.event_time,
            "referer": values["referer"] if group else None,
        }
        if row != expected:  # compare lengths first: a 1 MB diff is unreadable
            lengths = {k: len(v) if isinstance(v, str) else v for k, v in row.items()}
            want = {k: len(v) if isinstance(v, str) else v for k, v in expected.items()}
            assert lengths == want, line[:200]
        assert row == expected, line[:200]


def test_minimal_reproduction(spark):
    """The one-line report: nginx combined, a 1,600-character user agent."""
    spec = FORMATS["nginx-combined"]
    [row] = parse(spark, spec, [REPRO], referer_group(spec))
    assert re.fullmatch(r"L[0-9a-f]{31}", row.pop("request_id"))
    assert row == {
        "line_no": 0,
        "is_malformed": False,
        "method": "GET",
        "path": "/api/v1/users/1",
        "status_code": 200,
        "latency": None,
        "nbytes": 512,
        "client_ip": "10.0.0.1",
        "user_agent": REPRO_UA,
        "event_time": "2026-11-29 02:20:00.000",
        "referer": "-",
    }


def test_unclosed_megabyte_field_is_malformed_not_fatal(spark):
    """A 1 MB user agent whose closing quote is lost (a truncated line) is one malformed
    line, and the lines around it still parse."""
    spec = FORMATS["nginx-combined_rt"]
    ua = long_text(1_000_000, "Mozilla/5.0 ", "(X11; Linux x86_64) ")
    good = spec.line(PATH, REFERER, UA, HEADER)
    truncated = spec.line(PATH, REFERER, ua, HEADER)[:-7]  # drops '" 0.250'
    rows = parse(spark, spec, [good, truncated, good], referer_group(spec))
    assert [r["is_malformed"] for r in rows] == [False, True, False]
    assert [r["user_agent"] for r in rows] == [UA, None, UA]
    assert [r["latency"] for r in rows] == [250.0, None, 250.0]


def _checked(spark, lines: list[str], **logs) -> list:
    from apistream.config import load_config
    from apistream.pipeline.records import checked_records, slim

    overrides = {"validation.max_age": None} | {f"logs.{k}": v for k, v in logs.items()}
    cfg = load_config(environ={}, overrides=overrides)
    df = spark.createDataFrame(list(enumerate(lines)), "line_no int, value string").withColumns(
        {"source_file": F.lit("f"), "ingest_time": F.lit("2026-11-29 03:00:00").cast("timestamp")}
    )
    return slim(checked_records(df, cfg)).select("reason", "detail", "raw").collect()


JSON_GOOD = (
    '{{"request_id":"r{n}","timestamp":"2026-11-29T02:20:00Z","method":"GET",'
    '"path":"/api/v1/users/1","status":200,"latency_ms":12.5,"bytes_sent":10,'
    '"client_ip":"10.0.0.1","user_agent":"{ua}","api_key":"k"}}'
)


@pytest.mark.parametrize("fmt", ["json", "nginx"])
def test_line_over_the_limit_is_quarantined_with_its_first_64_kib(spark, fmt):
    limit = 1_048_576
    if fmt == "json":
        line = lambda n, ua: JSON_GOOD.format(n=n, ua=ua)  # noqa: E731
        logs = {}
    else:
        line = lambda n, ua: REPRO.replace(REPRO_UA, ua)  # noqa: E731
        logs = {"format": "nginx", "log_format": "combined"}
    under = line(1, "U" * (limit - 400))
    over = line(2, "é" * (limit // 2 + 1))  # two bytes a character: over in bytes only
    rows = _checked(spark, [under, over], **logs)
    assert len(under.encode()) <= limit < len(over.encode())
    assert (rows[0].reason, rows[0].raw) == (None, None)  # valid: no raw kept
    assert rows[1].reason == "line_too_long"
    assert rows[1].detail == str(len(over.encode()))
    assert rows[1].raw == over[:65_536]
