"""Benchmark arithmetic: freshness from SQLite commits, slopes, targets. No Spark."""

from __future__ import annotations

import numpy as np

from apistream.bench.runs import freshness_delays, slope_per_minute
from apistream.bench.suite import TARGETS, summarise


def test_freshness_is_the_wait_for_the_first_commit_holding_a_newer_event():
    commit_t = np.array([10.0, 12.0, 15.0])
    max_et = np.array([7.0, 11.0, 14.0])
    created = np.array([6.0, 7.0, 8.0, 11.0, 12.0, 14.5])
    delays = freshness_delays(commit_t, max_et, created)
    # 14.5 is newer than every commit: not visible yet, left out.
    assert delays.tolist() == [4.0, 3.0, 4.0, 1.0, 3.0]


def test_freshness_uses_the_newest_event_so_far_when_a_commit_holds_only_older_ones():
    # The second commit only carried a late window: its newest event is older.
    delays = freshness_delays(
        np.array([10.0, 11.0, 13.0]), np.array([9.0, 5.0, 12.0]), np.array([9.0, 10.0])
    )
    assert delays.tolist() == [1.0, 3.0]


def test_slope_per_minute():
    t = [0.0, 60.0, 120.0, 180.0]
    assert slope_per_minute(t, [100.0, 100.0, 100.0, 100.0]) == 0.0
    assert slope_per_minute(t, [100.0, 110.0, 120.0, 130.0]) == 10.0
    assert slope_per_minute(t[:2], [1.0, 2.0]) is None


def _run(events: int, eps: int, peak: float) -> dict:
    return {
        "events": events,
        "sustained_events_per_s": eps,
        "wall_s": events / eps + 10,
        "memory_peak": {"total_mb": peak},
    }


def test_summary_checks_each_target_and_the_ratios():
    small, big = _run(1_000_000, 40_000, 1800.0), _run(5_000_000, 50_000, 2100.0)
    results = {
        "generator": [{"events_per_s": 300_000}, {"events_per_s": 350_000}],
        "throughput": big,
        "scaling": [small, big],
        "sweep": [small],
        "duckdb": {
            "events_per_s": 250_000,
            "check": {
                "agree": True,
                "percentiles": {
                    "latency_p50_ms": {"relative_error_max": 0.001},
                    "latency_p99_ms": {"relative_error_max": 0.004},
                },
            },
        },
        "live": {
            "freshness_s": {"p95": 6.0},
            "memory_peak": {"total_mb": 3500.0},
            "memory_slope_mb_per_min": 0.5,
            "state_rows_slope_per_min": 3.0,
        },
    }
    s = summarise(results)
    assert s["figures"] == {
        "sustained_events_per_s": 50_000,
        "freshness_p95_s": 6.0,
        "memory_peak_mb": 3500.0,
        "generator_events_per_s": 325_000,
        "percentile_error_max": 0.004,
    }
    assert s["met"] == {
        "sustained_events_per_s": False,
        "freshness_p95_s": False,
        "memory_peak_mb": False,
        "generator_events_per_s": True,
        "percentile_error_max": True,
    }
    assert s["targets"] == TARGETS
    assert s["ratios"] == {
        "pipeline_vs_generator": round(50_000 / 325_000, 3),
        "pipeline_vs_duckdb": 0.2,
    }
    assert [x["us_per_event"] for x in s["scaling"]] == [25.0, 20.0]
    assert [x["relative_to_smallest"] for x in s["scaling"]] == [1.0, 0.8]
    assert s["duckdb_agrees"] is True
