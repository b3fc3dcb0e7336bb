"""The detector's arithmetic and rules, and the evaluation, without Spark."""

import math
from statistics import NormalDist

import pytest

from apistream.anomalies import (
    Baseline,
    bounded,
    check,
    partial_windows,
    poisson_z,
    score_windows,
    summarise,
)
from apistream.config import AnomalyConfig
from apistream.evaluation import evaluate
from apistream.latency_histogram import LOG_GAMMA, RELATIVE_ERROR, Histogram

CFG = AnomalyConfig()


def test_baseline_is_a_running_mean_then_ewma():
    b = Baseline()
    for x in (10, 20, 30):
        b.update(x, span=20)
    assert b.mean == pytest.approx(20)
    assert b.var == pytest.approx(200 / 3, rel=0.3)
    before = b.mean
    b.update(1000, span=20)
    assert b.mean == pytest.approx(before + (1000 - before) * max(2 / 21, 1 / 4))


def obs(metric, x, requests=1000, errors=0):
    return {metric: x, "requests": requests, "errors_5xx": errors}


def test_rules_need_baseline_z_and_effect_size():
    b = Baseline(windows=20, mean=100.0, var=100.0)  # std 10
    cold = Baseline(3, 100, 100)
    assert check("latency_p95_ms", obs("latency_p95_ms", 500), cold, CFG) is None
    assert check("latency_p95_ms", obs("latency_p95_ms", 140), b, CFG) is None  # z=4 < 4.5
    assert check("latency_p95_ms", obs("latency_p95_ms", 149), b, CFG) is None  # only +49%
    assert check("latency_p95_ms", obs("latency_p95_ms", 250), b, CFG) == (15, 100)
    assert check("latency_p95_ms", obs("latency_p95_ms", 250, requests=5), b, CFG) is None
    # a p95 needs min_tail_requests (10) above it: 200 requests; a p99 1,000
    assert check("latency_p95_ms", obs("latency_p95_ms", 250, requests=199), b, CFG) is None
    assert check("latency_p95_ms", obs("latency_p95_ms", 250, requests=200), b, CFG) == (15, 100)
    assert check("latency_p99_ms", obs("latency_p99_ms", 250, requests=999), b, CFG) is None
    assert check("latency_avg_ms", obs("latency_avg_ms", 250, requests=100), b, CFG) == (15, 100)
    traffic = Baseline(20, 1000.0, 100.0)  # std: Poisson's sqrt(1000) = 31.6, not 10
    assert check("requests", obs("requests", 700, 700), traffic, CFG)[0] == pytest.approx(
        -300 / math.sqrt(1000)
    )
    assert check("requests", obs("requests", 850, 850), traffic, CFG) is None  # z=-4.7, -15%
    assert check("requests", obs("requests", 1500, 1500), traffic, CFG) is not None


def test_error_rate_is_a_poisson_test_on_the_slow_rate():
    # P(X >= 15 | Poisson(4)) = 2.0e-5 (z 4.11); P(X >= 17 | 4) = 1.1e-6 (z 4.73)
    for count, due in ((15, 4), (17, 4), (27, 8), (500, 400)):
        tail = sum(
            math.exp(i * math.log(due) - due - math.lgamma(i + 1)) for i in range(count, 2000)
        )
        assert poisson_z(count, due) == pytest.approx(-NormalDist().inv_cdf(tail), rel=1e-9)
    assert poisson_z(15, 4) == pytest.approx(4.108, abs=0.001)
    assert poisson_z(3, 4) == 0.0
    base = Baseline(20, 0.02, 0.0, slow_mean=0.004)  # judged on the slow mean, 0.4%
    assert check("error_rate_5xx", obs("error_rate_5xx", 17 / 1000, 1000, 17), base, CFG)[
        1
    ] == pytest.approx(0.004)
    assert check("error_rate_5xx", obs("error_rate_5xx", 0.015, 1000, 15), base, CFG) is None
    # ... unless the last window was high too: 15 + 12 errors where 8 were due (z 5.19)
    base.last_value, base.last_expected = 12, 4.0
    assert check("error_rate_5xx", obs("error_rate_5xx", 0.015, 1000, 15), base, CFG) is not None
    # a Poisson surprise that is under 0.3 points or 2x does not page
    busy = Baseline(20, 0.004, 0.0, slow_mean=0.004)
    assert poisson_z(500, 400) > CFG.k
    assert check("error_rate_5xx", obs("error_rate_5xx", 0.005, 100_000, 500), busy, CFG) is None


def test_a_creep_is_judged_against_the_slow_mean_two_windows_running():
    base = Baseline(20, 120.0, 16.0, slow_mean=100.0)  # the short mean has followed the creep
    assert check("latency_p95_ms", obs("latency_p95_ms", 130), base, CFG) is None  # no last
    base.last_value = 124.0
    assert check("latency_p95_ms", obs("latency_p95_ms", 130), base, CFG) is None  # last < +25%
    base.last_value = 126.0
    assert check("latency_p95_ms", obs("latency_p95_ms", 130), base, CFG) == (5.0, 100.0)
    base.slow_mean = None
    assert check("latency_p95_ms", obs("latency_p95_ms", 130), base, CFG) is None


def test_an_unflagged_surprise_moves_the_baseline_a_bounded_step():
    b = Baseline(20, 1000.0, 1000.0)
    reach = CFG.k * b.std("requests")
    assert bounded(1300, b, "requests", CFG) == pytest.approx(1000 + reach)
    assert bounded(990, b, "requests", CFG) == 990
    assert bounded(1300, Baseline(3, 1000.0, 1000.0), "requests", CFG) == 1300  # cold


def row(ws, endpoint, method, requests, s5, latencies):
    """A final window row as the store keeps it; `latencies` of every request, or None when
    none had one."""
    lat = latencies or []
    return {
        "window_start": ws,
        "window_end": ws[:14] + "59:59Z",
        "endpoint": endpoint,
        "method": method,
        "requests": requests,
        "status_5xx": s5,
        "latency_count": len(lat),
        "latency_sum_ms": sum(lat),
        "latency_min_ms": min(lat, default=None),
        "latency_max_ms": max(lat, default=None),
        "latency_histogram": Histogram.of(
            (math.ceil(math.log(x) / LOG_GAMMA), 1) for x in lat
        ).to_bytes(),
    }


def test_summarise_per_endpoint_and_service():
    obs = summarise(
        [
            row("T1", "/a", "GET", 30, 3, [10.0] * 20 + [20.0] * 10),
            row("T1", "/a", "POST", 10, 0, [50.0] * 8 + [100.0] * 2),
            row("T1", "/b", "GET", 60, 6, None),
        ]
    )
    a = obs[("T1", "/a")]
    assert a["requests"] == 40
    assert a["latency_avg_ms"] == pytest.approx((200 + 200 + 400 + 200) / 40)
    # The 38th of 40 (20 at 10 ms, 10 at 20, 8 at 50, 2 at 100) is 50 ms; a request-weighted
    # mean of the methods' p95s (20 and 100) would say 40.
    assert a["latency_p95_ms"] == pytest.approx(50.0, rel=RELATIVE_ERROR)
    assert obs[("T1", "*")]["latency_p95_ms"] == pytest.approx(50.0, rel=RELATIVE_ERROR)
    assert obs[("T1", "*")]["error_rate_5xx"] == pytest.approx(0.09)
    assert "latency_p95_ms" not in obs[("T1", "/b")]


def test_detector_keeps_baselines_and_flags_a_spike():
    windows = [f"2026-11-27T10:{m:02d}:00Z" for m in range(14)]
    baselines: dict = {}
    found_all = []
    for i, ws in enumerate(windows):
        p95 = 500.0 if i == 12 else 100.0 + (i % 3)
        rows = [row(ws, "/a", "GET", 1000, 0, [p95 / 2] * 900 + [p95] * 100)]
        found, baselines = score_windows(rows, baselines, CFG, "now", frozenset({windows[0]}))
        assert bool(found) == (i == 12), (i, found)
        found_all += found
    assert {a["metric"] for a in found_all} == {
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_avg_ms",
    }
    assert {a["endpoint"] for a in found_all} == {"/a", "*"}
    assert baselines[("/a", "latency_p95_ms")][0] == 13  # the spike did not teach the baseline
    assert all(math.isfinite(a["z_score"]) for a in found_all)


def test_evaluate_precision_and_recall():
    incidents = [
        {"endpoint": "/a", "start": "2026-11-27T10:02:30.000Z", "end": "2026-11-27T10:04:10.000Z"},
        {"endpoint": "/b", "start": "2026-11-27T11:00:00.000Z", "end": "2026-11-27T11:02:00.000Z"},
    ]
    alert = {"window_start": "2026-11-27T10:02:00Z", "window_end": "2026-11-27T10:03:00Z"}
    alerts = [{**alert, "endpoint": "/a"}, {**alert, "endpoint": "*"}, {**alert, "endpoint": "/c"}]
    result = evaluate(incidents, alerts)
    assert (result.true_alerts, result.alerts, result.found, result.incidents) == (2, 3, 1, 2)
    assert result.precision == pytest.approx(2 / 3) and result.recall == 0.5


def test_partial_windows_are_the_first_and_those_after_the_newest_event():
    rows = [
        {"window_start": f"T{m}", "window_end": f"T{m + 1}"} for m in range(3)
    ]  # fmt: skip
    assert partial_windows(rows, "T0", None) == {"T0"}
    assert partial_windows(rows, None, "T2") == {"T2"}  # ends at T3, after the newest event
    assert partial_windows(rows, "T9", "T9") == frozenset()
