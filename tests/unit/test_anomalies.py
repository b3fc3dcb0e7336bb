"""The detector's arithmetic and rules, and the evaluation, without Spark."""

import math

import pytest

from apistream.anomalies import Baseline, check, score_windows, summarise
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


def test_rules_need_baseline_z_and_effect_size():
    b = Baseline(windows=10, mean=100.0, var=100.0)  # std 10
    assert check("latency_p95_ms", 500, Baseline(3, 100, 100), 100, CFG) is None  # cold
    assert check("latency_p95_ms", 150, b, 100, CFG) is None  # z=5 but only +50%
    assert check("latency_p95_ms", 250, b, 100, CFG) == pytest.approx(15)
    assert check("latency_p95_ms", 250, b, 5, CFG) is None  # too few requests
    assert check("requests", 30, b, 30, CFG) == pytest.approx(-7)  # traffic drop
    assert check("requests", 70, b, 70, CFG) is None  # z=-3 but not halved
    rate = Baseline(10, 0.01, 0.0)
    assert rate.std("error_rate_5xx") == 0.01
    assert check("error_rate_5xx", 0.05, rate, 100, CFG) is None  # +4 points only
    assert check("error_rate_5xx", 0.4, rate, 100, CFG) == pytest.approx(39)


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
    windows = [f"2026-11-27T10:{m:02d}:00Z" for m in range(12)]
    baselines: dict = {}
    found_all = []
    for i, ws in enumerate(windows):
        p95 = 500.0 if i == 10 else 100.0 + (i % 3)
        rows = [row(ws, "/a", "GET", 100, 0, [p95 / 2] * 90 + [p95] * 10)]
        found, baselines = score_windows(rows, baselines, CFG, "now", windows[0])
        assert bool(found) == (i == 10), (i, found)
        found_all += found
    assert {a["metric"] for a in found_all} == {"latency_p95_ms", "latency_avg_ms"}
    assert {a["endpoint"] for a in found_all} == {"/a", "*"}
    assert baselines[("/a", "latency_p95_ms")][0] == 11  # the spike did not teach the baseline
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
