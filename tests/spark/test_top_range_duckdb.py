"""`apistream top --from --to --json` after a real streamed run, against DuckDB's exact
quantile_disc over the lake's events of the same range."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from stream_helpers import cli_env, stream_from

from apistream.catalog import Paths
from apistream.lake import read_table
from apistream.period import MINUTE, Period

# 12:50 to 13:10 on 15 March 2026, UTC: twenty one-minute windows, ten in each hour. Fixed
# instants, so the stale-timestamp check (age against the ingest clock) is off for this run.
START = datetime(2026, 3, 15, 12, 50, tzinfo=UTC)


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    """The run's config and its lake events (event time in epoch microseconds)."""
    root = tmp_path_factory.mktemp("top-range")
    settings = {"generator.events": 30_000, "generator.rate": 25, "generator.seed": 8}
    cfg = stream_from(spark, root, START, **settings)
    with closing(sqlite3.connect(cfg.sqlite_path)) as db:  # --until-idle: all final
        (still_open,) = db.execute("SELECT COUNT(*) FROM endpoint_metrics WHERE is_final = 0")
    assert still_open == (0,)
    events = read_table(Paths.of(cfg).events, ["event_time", "endpoint", "latency_ms"])
    micros = events["event_time"].cast(pa.timestamp("us", "UTC")).cast(pa.int64())
    return cfg, pa.table({"t": micros, "endpoint": events["endpoint"], "lat": events["latency_ms"]})


def exact(events: pa.Table, period: Period) -> dict[str, tuple[int, float, float, float]]:
    """endpoint -> (events, p50, p95, p99) over the events of the windows starting in
    `period` (one-minute windows aligned to the hour: the events in [start, end))."""
    start, end = (int(t.timestamp() * 1_000_000) for t in (period.start, period.end))
    con = duckdb.connect()
    con.register("events", events)
    rows = con.execute(
        "SELECT endpoint, count(*), quantile_disc(lat, 0.5), quantile_disc(lat, 0.95), "
        "quantile_disc(lat, 0.99) FROM events WHERE t >= ? AND t < ? GROUP BY endpoint",
        [start, end],
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.parametrize(
    ("first", "last"),
    [("2026-03-15T12", "2026-03-15T12"), ("2026-03-15T13", "2026-03-15T13"),
     ("2026-03-15", "2026-03-15"), ("2026-03-15T12:55", "2026-03-15T13:04")],
)  # fmt: skip
def test_range_percentiles_equal_duckdb_over_the_lake(run, first, last):
    cfg, events = run
    out = subprocess.run(
        [sys.executable, "-m", "apistream.cli", "top", "--from", first, "--to", last,
         "--by", "p95", "-n", "1000", "--min-requests", "0", "--json",
         "--output", cfg.sinks.output],
        env=cli_env({}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    want = exact(events, Period.parse(first, last, MINUTE))
    assert len(want) >= 8
    assert sum(n for n, *_ in want.values()) > (9_000 if first != "2026-03-15" else 25_000)
    assert {r["endpoint"] for r in got} == set(want)
    for r in got:
        n, p50, p95, p99 = want[r["endpoint"]]
        assert r["requests"] == n, r["endpoint"]
        for key, value in (("p50", p50), ("p95", p95), ("p99", p99)):
            assert r[key] == pytest.approx(value, rel=0.01), (r["endpoint"], key)
    assert [r["p95"] for r in got] == sorted((r["p95"] for r in got), reverse=True)
