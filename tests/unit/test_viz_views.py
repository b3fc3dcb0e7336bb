"""The pure view frames behind every chart, on tiny hand-made tables."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from apistream.latency_histogram import LOG_GAMMA, RELATIVE_ERROR, Histogram
from apistream.range_percentiles import PERCENTILE_COLUMNS
from apistream.viz import views


def bucket(x: float) -> int:
    return math.ceil(math.log(x) / LOG_GAMMA)


# The events of each (window, endpoint, method): (4xx, 5xx, latencies in ms).
EVENTS = {
    ("2026-01-01T00:00:00Z", "/a", "GET"): (3, 0, [10.0] * 30),
    ("2026-01-01T00:00:00Z", "/a", "POST"): (0, 1, [1000.0] * 10),
    ("2026-01-01T00:01:00Z", "/a", "GET"): (6, 3, [float(v) for v in range(1, 61)]),
    ("2026-01-01T00:00:00Z", "/b", "GET"): (0, 5, [100.0, 200.0, 300.0, 400.0, 500.0]),
}


def exact(latencies: list[float], p: float) -> float:
    """The ceil(p*n)-th smallest latency: the definition every percentile here follows."""
    ordered = sorted(latencies)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def metrics_rows() -> pd.DataFrame:
    """Window rows as the stream stores them: counts, sums and a latency histogram each."""
    rows = []
    for (ws, endpoint, method), (s4, s5, lat) in EVENTS.items():
        hist = Histogram.of((bucket(x), 1) for x in lat)
        rows.append(
            {
                "window_start": ws, "endpoint": endpoint, "method": method,
                "requests": len(lat), "status_4xx": s4, "status_5xx": s5,
                "latency_count": len(lat), "latency_sum_ms": sum(lat),
                "latency_min_ms": min(lat), "latency_max_ms": max(lat),
                "latency_avg_ms": sum(lat) / len(lat),
                **{c: exact(lat, p) for c, p in PERCENTILE_COLUMNS.items()},
                "latency_histogram": hist.to_bytes(),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def events_of(**where: str) -> list[float]:
    keys = ("window_start", "endpoint", "method")
    return [
        x
        for key, (_, _, lat) in EVENTS.items()
        if all(key[keys.index(k)] == v for k, v in where.items())
        for x in lat
    ]


def test_latency_over_methods_is_the_percentile_of_their_events_not_a_mean():
    lat = views.latency_over_time(metrics_rows())
    first = lat[(lat.endpoint == "/a")].iloc[0]
    assert first["requests"] == 40
    events = events_of(window_start="2026-01-01T00:00:00Z", endpoint="/a")
    # 30 GETs at 10 ms and 10 POSTs at 1 s: p95 is 1 s; a request-weighted mean of the
    # methods' p95s would say 257.5 ms.
    assert exact(events, 0.95) == 1000.0
    for column, p in PERCENTILE_COLUMNS.items():
        assert first[column] == pytest.approx(exact(events, p), rel=RELATIVE_ERROR), column
    assert first["latency_p50_ms"] == pytest.approx(10.0, rel=RELATIVE_ERROR)
    assert list(lat["endpoint"]) == ["/a", "/a", "/b"]


def test_error_rates_per_window():
    err = views.error_rates_over_time(metrics_rows())
    assert err["requests"].tolist() == [45, 60]
    assert err["rate_4xx"].tolist() == pytest.approx([3 / 45, 6 / 60])
    assert err["rate_5xx"].tolist() == pytest.approx([6 / 45, 3 / 60])


def test_endpoint_summary_and_top_n_respect_min_requests():
    dim = pd.DataFrame({"endpoint": ["/a"], "latency_slo_ms": [50.0]})
    summary = views.endpoint_summary(metrics_rows(), dim)
    a = summary.set_index("endpoint").loc["/a"]
    events = events_of(endpoint="/a")
    assert a["requests"] == 100
    assert a["rate_5xx"] == pytest.approx(4 / 100)
    assert a["latency_avg_ms"] == pytest.approx(sum(events) / 100)
    assert exact(events, 0.95) == 1000.0
    assert a["latency_p95_ms"] == pytest.approx(exact(events, 0.95), rel=RELATIVE_ERROR)
    assert a["worst_p95_ms"] == 1000.0
    assert a["latency_slo_ms"] == 50.0
    assert pd.isna(summary.set_index("endpoint").loc["/b", "latency_slo_ms"])
    assert views.top_n(summary, "rate_5xx", 5, 0)["endpoint"].tolist() == ["/b", "/a"]
    assert views.top_n(summary, "rate_5xx", 5, 10)["endpoint"].tolist() == ["/a"]


def test_quality_account_and_reasons_add_up_over_batches():
    quality = pd.DataFrame(
        {
            "input": [10, 20], "valid": [7, 15], "quarantined": [2, 3],
            "duplicates": [1, 1], "late": [0, 1],
            "quarantined_by_reason": [json.dumps({"wrong_type": 2}),
                                      json.dumps({"wrong_type": 1, "malformed_json": 2})],
        }
    )  # fmt: skip
    assert views.quality_account(quality) == {
        "input": 30, "valid": 22, "quarantined": 5, "duplicates": 2, "late": 1,
    }  # fmt: skip
    reasons = views.quarantine_by_reason(quality)
    assert reasons.values.tolist() == [["wrong_type", 3], ["malformed_json", 2]]
    assert views.quality_account(pd.DataFrame()) == dict.fromkeys(
        ("input", "valid", "quarantined", "duplicates", "late"), 0
    )


def test_anomalies_are_placed_on_the_chart_of_their_metric():
    assert views.anomaly_markers(pd.DataFrame()).empty
    anomalies = pd.DataFrame(
        {
            "window_start": ["2026-01-01T00:00:00Z"] * 3,
            "endpoint": ["/a"] * 3,
            "metric": ["latency_p95_ms", "error_rate_5xx", "requests"],
            "observed": [900.0, 0.3, 5000.0],
        }
    )
    assert views.anomaly_markers(anomalies)["chart"].tolist() == ["latency", "errors", "traffic"]
