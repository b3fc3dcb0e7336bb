"""`apistream top --from --to`: endpoints over a range of windows, percentiles from the merged
histograms, on a database written by the sink's own merge and store functions."""

from __future__ import annotations

import json
import math
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cli_runner import cli

from apistream import sqlite_store
from apistream.latency_histogram import LOG_GAMMA, RELATIVE_ERROR
from apistream.period import MINUTE, Period
from apistream.timefmt import iso
from apistream.top import open_windows, top_range
from apistream.window_metrics import merge_windows

HOUR10 = Period.parse("2026-11-30T10", "2026-11-30T10")  # windows 10:00 .. 10:59
SLOW = "2026-11-30T10:04:00Z"
rng = np.random.default_rng(7)


def latencies(n: int, median: float, sigma: float) -> list[float]:
    return [float(x) for x in rng.lognormal(math.log(median), sigma, n)]


def events_of_window(start: str) -> list[tuple[str, str, float, int]]:
    """(endpoint, method, latency ms, status) of the events of one window."""
    minute = start[11:16]
    out: list[tuple[str, str, float, int]] = []
    if "10:00" <= minute <= "10:09":
        slow = 25.0 if start == SLOW else 1.0  # one slow minute on /a
        out += [("/a", "GET", x * slow, 200) for x in latencies(150, 40, 0.3)]
        out += [("/a", "POST", x * slow, 201) for x in latencies(50, 60, 0.3)]
        out += [("/b", "GET", x, 200 if i % 50 else 404) for i, x in
                enumerate(latencies(300, 100, 0.2))]  # fmt: skip
        out += [("/c", "GET", x, 503 if i < 2 else 200) for i, x in
                enumerate(latencies(10, 30, 0.3))]  # fmt: skip
        if minute in ("10:02", "10:06"):
            out.append(("/d", "GET", 60_000.0, 200))  # 2 requests: under the minimum
    elif minute in ("09:59", "11:00"):  # just outside hour 10, on both sides
        out += [("/a", "GET", 50_000.0, 200)] * 100
        out += [("/b", "GET", x, 200) for x in latencies(300, 100, 0.2)]
    elif minute == "11:30":  # not final yet
        out += [("/b", "GET", 90_000.0, 200)] * 300
    return out


WINDOWS = [
    iso(datetime(2026, 11, 30, 9, 59) + timedelta(minutes=m)) for m in (0, *range(1, 11), 61, 91)
]
EVENTS = {w: events_of_window(w) for w in WINDOWS}


def partial(window: str, endpoint: str, method: str, latency: float, status: int) -> dict:
    """One event as a micro-batch's partial row (pipeline/aggregate.py's shape)."""
    end = iso(datetime.fromisoformat(window[:-1]) + timedelta(minutes=1))
    return {
        "window_start": window, "window_end": end, "endpoint": endpoint, "method": method,
        "bucket": math.ceil(math.log(latency) / LOG_GAMMA), "requests": 1,
        **{f"status_{k}xx": int(status // 100 == k) for k in range(1, 6)},
        "latency_count": 1, "latency_sum_ms": latency, "bytes_sent": 100,
        "latency_min_ms": latency, "latency_max_ms": latency,
        "max_event_time": window.replace(":00Z", ":30.000Z"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """analytics.db as the sink leaves it: merged window rows, all final up to 11:01."""
    root = tmp_path_factory.mktemp("top-range")
    with closing(sqlite_store.connect(root / "analytics.db")) as conn:
        for batch, w in enumerate(WINDOWS):
            rows = merge_windows({}, [partial(w, *e) for e in EVENTS[w]])
            with sqlite_store.transaction(conn):
                sqlite_store.upsert_windows(conn, rows, batch)
        with sqlite_store.transaction(conn):
            sqlite_store.mark_final(conn, "2026-11-30T11:01:00Z")
    return root


@pytest.fixture
def db(db_dir: Path):
    with sqlite_store.read_only(db_dir / "analytics.db") as conn:
        yield conn


def exact(values: list[float], p: float) -> float:
    """The ceil(p*n)-th smallest value (numpy sort): what every percentile here means."""
    ordered = np.sort(np.asarray(values))
    return float(ordered[max(1, math.ceil(p * len(ordered))) - 1])


def in_hour10(endpoint: str) -> list[float]:
    return [e[2] for w in WINDOWS if HOUR10.holds(w) for e in EVENTS[w] if e[0] == endpoint]


def test_range_percentiles_are_those_of_the_events_not_a_mean_of_windows(db):
    rows = {r["endpoint"]: r for r in top_range(db, "p95", HOUR10, 10, 20)}
    assert set(rows) == {"/a", "/b", "/c"}
    for endpoint, row in rows.items():
        lat = in_hour10(endpoint)
        assert row["requests"] == len(lat)
        for p in (0.5, 0.95, 0.99):
            assert row[f"p{round(p * 100)}"] == pytest.approx(exact(lat, p), rel=RELATIVE_ERROR)
    # /a: 10 windows of 200 requests, one of them 25x slower. Its events put p95 and p99 in
    # the slow minute; a mean of the windows' p95s (the wrong way) is several times lower.
    window_p95 = [
        exact([e[2] for e in EVENTS[w] if e[0] == "/a"], 0.95) for w in WINDOWS if HOUR10.holds(w)
    ]
    assert len(window_p95) == 10
    mean_p95 = sum(window_p95) / len(window_p95)
    assert rows["/a"]["requests"] == 2000
    assert rows["/a"]["p95"] > 3 * mean_p95
    assert rows["/a"]["p99"] > 3 * mean_p95
    assert rows["/b"]["error_rate_4xx"] == pytest.approx(60 / 3000)
    assert rows["/c"]["error_rate_5xx"] == pytest.approx(0.2)


def test_ranking_orders_by_the_chosen_value(db):
    def order(by: str) -> list[str]:
        return [r["endpoint"] for r in top_range(db, by, HOUR10, 10, 20)]

    assert order("p95") == order("p99") == ["/a", "/b", "/c"]
    assert order("p50") == ["/b", "/a", "/c"]  # /b is slower in the middle, /a in the tail
    assert order("busiest") == ["/b", "/a", "/c"]
    assert order("error_5xx") == ["/c", "/b", "/a"]  # /a and /b: 0, more requests first
    assert order("error_4xx") == ["/b", "/a", "/c"]
    assert [r["endpoint"] for r in top_range(db, "p95", HOUR10, 2, 20)] == ["/a", "/b"]


def test_min_requests_is_over_the_whole_range(db):
    def ranked(least: int) -> list[str]:
        return [r["endpoint"] for r in top_range(db, "p95", HOUR10, 10, least)]

    assert ranked(100) == ["/a", "/b", "/c"]  # /c: 10 a window, 100 over the range
    assert ranked(101) == ["/a", "/b"]
    assert ranked(2) == ["/d", "/a", "/b", "/c"]  # two requests of 60 s
    assert ranked(3) == ["/a", "/b", "/c"]


def test_range_bounds_and_final_windows_only(db):
    # Hours 10 and 11: the 11:00 window (100 x 50 s on /a) is in, the 09:59 one is not.
    both = {
        r["endpoint"]: r
        for r in top_range(db, "p99", Period.parse("2026-11-30T10", "2026-11-30T11"), 10, 20)
    }
    assert both["/a"]["requests"] == 2100
    assert both["/a"]["p99"] == pytest.approx(50_000.0, rel=RELATIVE_ERROR)
    # Hour 11: the 11:30 window (300 x 90 s on /b) is not final, so left out and counted.
    hour11 = Period.parse("2026-11-30T11", "2026-11-30T11")
    b = {r["endpoint"]: r for r in top_range(db, "p99", hour11, 10, 20)}["/b"]
    assert b["requests"] == 300
    assert b["p99"] < 1000
    assert open_windows(db, hour11) == 1
    assert open_windows(db, HOUR10) == 0
    # Minutes: 10:59 to 11:00, both included: the 11:00 window is in, 10:58 and 11:01 not.
    two = Period.parse("2026-11-30T10:59", "2026-11-30T11:00", MINUTE)
    assert (two.start_iso, two.end_iso) == ("2026-11-30T10:59:00Z", "2026-11-30T11:01:00Z")
    eleven = Period.parse("2026-11-30T11:00", "2026-11-30T11:00", MINUTE)
    a = {r["endpoint"]: r for r in top_range(db, "p99", eleven, 10, 1)}["/a"]
    assert a["requests"] == 100 and a["p99"] == pytest.approx(50_000.0, rel=RELATIVE_ERROR)


def test_json_prints_only_the_ranked_list(db_dir, db):
    out = cli("top", "--from", "2026-11-30T10", "--to", "2026-11-30T10", "--by", "p99",
              "-n", "3", "--json", "--output", str(db_dir))  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    keys = ["endpoint", "requests", "p50", "p95", "p99", "error_rate_4xx", "error_rate_5xx"]
    assert [list(r) for r in got] == [keys] * 3
    assert got == top_range(db, "p99", HOUR10, 3, 20)
    assert [r["endpoint"] for r in got] == ["/a", "/b", "/c"]
    # the config's minimum applies to the range too
    env = {"APISTREAM_REPORT__MIN_RANKED_REQUESTS": "101"}
    out = cli("top", "--from", "2026-11-30", "--to", "2026-11-30", "--json",
              "--output", str(db_dir), env=env)  # fmt: skip
    assert [r["endpoint"] for r in json.loads(out.stdout)] == ["/a", "/b"]


def test_the_table_form(db_dir):
    out = cli("top", "--from", "2026-11-30T10", "--to", "2026-11-30T11", "--output", str(db_dir))
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "top 10 by p95, final windows [2026-11-30T10:00:00Z, 2026-11-30T12:00:00Z)" in text
    assert "1 window(s) in the range not final yet, left out" in text
    body = [line for line in out.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[2].strip() for line in body] == ["/a", "/b", "/c"]
    assert body[0].split("│")[3].strip() == "2,100"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-11-30T10"], "--from and --to go together: give both (or neither)"),
        (["--to", "2026-11-30T10"], "--from and --to go together: give both (or neither)"),
        (["--from", "2026-11-30", "--to", "2026-11-30", "--period", "day"],
         "--from/--to rank a range of windows: leave out --period day"),
        (["--from", "2026-11-30", "--to", "2026-11-30", "--when", "2026-11-30"],
         "--when names one window or day: leave it out with --from/--to"),
        (["--json"], "--json needs a range: give --from and --to"),
        (["--from", "2026-11-30T10:30:15", "--to", "2026-11-30T11"],
         "--from: '2026-11-30T10:30:15' is not a whole minute"),
        (["--from", "2026-11-30T11", "--to", "2026-11-30T10"],
         "--to 2026-11-30T10 is before --from 2026-11-30T11"),
        (["--from", "yesterday", "--to", "2026-11-30"],
         "--from: 'yesterday' is neither a day (YYYY-MM-DD) nor an hour (YYYY-MM-DDTHH)"),
        (["--from", "2026-11-30", "--to", "2026-11-30", "--by", "slowness"],
         "--by must be one of p50, p95, p99, error_4xx, error_5xx, busiest"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(db_dir, args, message):
    out = cli("top", *args, "--output", str(db_dir))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {message}"
    assert out.stdout == ""


def test_help_says_the_end_is_included():
    out = cli("top", "--help")
    text = " ".join(out.stdout.replace("│", " ").split())
    assert "Last day, hour or minute of the range, included" in text
    assert "--json" in text
