"""The hostile-input corpus (tests/fixtures/hostile) through `ingest`, one run per format: every
line of every case ends as its expected outcome (a quarantine reason or a valid event), the
account is exact, nothing raises, and what is quarantined stays readable and lossless.
Also: a 100k-line nginx log in which every 100th user agent is 7 KB."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from hostile_corpus import CASES, MAX_LINE_BYTES

from apistream.config import load_config
from apistream.ingest.plan import ingest_config
from apistream.lake import committed_files, read_table
from apistream.pipeline.topology import Paths, run_stream

pytestmark = pytest.mark.spark
LOG_FORMATS = {"json": {"logs.format": "json"}, "nginx": {"logs.format": "nginx"}}


def ingest(spark, root: Path, inputs: list[Path], **overrides) -> Paths:
    """`apistream ingest` of the given files, in this process's SparkSession."""
    base = load_config(environ={}, overrides={"sinks.output": str(root / "out"), **overrides})
    cfg = ingest_config(base, inputs, follow=False)
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return Paths.of(cfg)


def outcomes(paths: Paths) -> dict[str, Counter]:
    """Case name -> Counter of outcomes ("valid" or a reason), read back from the lake."""
    got: dict[str, Counter] = defaultdict(Counter)
    case = lambda source: Path(source).name.split("-", 1)[1].rsplit(".", 1)[0]  # noqa: E731
    for row in read_table(paths.events, ["source_file"]).to_pylist():
        got[case(row["source_file"])]["valid"] += 1
    for row in read_table(paths.quarantine, ["source_file", "reason"]).to_pylist():
        got[case(row["source_file"])][row["reason"]] += 1
    return got


@pytest.fixture(scope="module", params=sorted(LOG_FORMATS))
def corpus_run(request, spark, tmp_path_factory):
    fmt = request.param
    cases = [c for c in CASES if c.fmt == fmt]
    root = tmp_path_factory.mktemp(f"hostile-{fmt}")
    overrides = {**LOG_FORMATS[fmt], "validation.max_line_bytes": MAX_LINE_BYTES}
    return cases, ingest(spark, root, [c.path for c in cases], **overrides)


def test_every_case_ends_as_expected(corpus_run, record_property):
    cases, paths = corpus_run
    got = outcomes(paths)
    expected = {c.name: Counter(c.outcome) for c in cases}
    # For docs/reliability.md (make reliability renders it from the JUnit report).
    record_property("observed", json.dumps({f"{c.fmt}/{c.name}": got[c.name] for c in cases}))
    assert {name: got[name] for name in expected} == expected


def test_account_is_exact_over_the_corpus(corpus_run):
    cases, paths = corpus_run
    lines = sum(sum(c.outcome.values()) for c in cases)
    reasons = Counter()
    for c in cases:
        reasons.update({k: v for k, v in c.outcome.items() if k != "valid"})
    with sqlite3.connect(paths.sqlite) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
        by_reason = dict(db.execute("SELECT reason, records FROM quarantine_reasons"))
    valid = lines - sum(reasons.values())
    assert totals == (lines, valid, sum(reasons.values()), 0, 0)
    assert by_reason == dict(reasons)


def test_invalid_utf8_is_kept_byte_for_byte_and_readable(corpus_run):
    cases, paths = corpus_run
    rows = [r for r in read_table(paths.quarantine).to_pylist() if r["reason"] == "invalid_utf8"]
    originals = {
        line for c in cases for line in c.path.read_bytes().splitlines() if _not_utf8(line)
    }
    assert {r["raw_bytes"] for r in rows} == originals
    assert all(r["raw"] == r["raw_bytes"].decode("utf-8", "replace") for r in rows)
    # Other quarantined lines need no bytes: raw is their text.
    others = [r for r in read_table(paths.quarantine).to_pylist() if r["reason"] != "invalid_utf8"]
    assert others and all(r["raw_bytes"] is None for r in others)
    files = [str(f) for f in committed_files(paths.quarantine)]
    for f in files:
        pq.read_table(f)  # no UnicodeDecodeError
    read = duckdb.sql(f"SELECT count(*) FROM read_parquet({files!r}) WHERE raw_bytes IS NOT NULL")
    assert read.fetchall() == [(len(originals),)]


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_nginx_log_with_7kb_user_agents_ingests_exactly(spark, tmp_path):
    """100k lines, every 100th with a 7 KB user agent: all valid, counted exactly."""
    log = tmp_path / "access.log"
    with log.open("w") as f:
        for i in range(100_000):
            agent = f"agent-{i}-" + ("M" * 7_000 if i % 100 == 0 else "curl/8.8.0")
            f.write(
                f"10.0.{i // 256 % 256}.{i % 256} - - [29/Nov/2026:10:{i // 6000 % 60:02d}:"
                f'{i // 100 % 60:02d} +0000] "GET /api/v1/users/{i % 997} HTTP/1.1" '
                f'{503 if i % 50 == 0 else 200} {i % 4096} "-" "{agent}"\n'
            )
    paths = ingest(spark, tmp_path, [log], **{"logs.format": "nginx"})
    with sqlite3.connect(paths.sqlite) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
        requests, s5 = db.execute(
            "SELECT SUM(requests), SUM(status_5xx) FROM endpoint_metrics"
        ).fetchone()
    assert totals == (100_000, 100_000, 0, 0, 0)
    assert (requests, s5) == (100_000, 2_000)
    agents = read_table(paths.events, ["user_agent"]).column("user_agent").to_pylist()
    assert sum(len(a) > 7_000 for a in agents) == 1_000
