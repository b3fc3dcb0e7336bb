"""The pure view frames behind every chart, on tiny hand-made tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from apistream.viz import views


def metrics_rows() -> pd.DataFrame:
    cols = [
        "window_start",
        "endpoint",
        "method",
        "requests",
        "status_4xx",
        "status_5xx",
        "latency_avg_ms",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
    ]
    rows = [
        ("2026-01-01T00:00:00Z", "/a", "GET", 30, 3, 0, 10.0, 8.0, 20.0, 40.0),
        ("2026-01-01T00:00:00Z", "/a", "POST", 10, 0, 1, 30.0, 25.0, 60.0, 80.0),
        ("2026-01-01T00:01:00Z", "/a", "GET", 60, 6, 3, 12.0, 9.0, 30.0, 50.0),
        ("2026-01-01T00:00:00Z", "/b", "GET", 5, 0, 5, 100.0, 90.0, 200.0, 300.0),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def test_latency_is_request_weighted_over_methods():
    lat = views.latency_over_time(metrics_rows())
    first = lat[(lat.endpoint == "/a")].iloc[0]
    assert first["requests"] == 40
    assert first["latency_p95_ms"] == pytest.approx((30 * 20.0 + 10 * 60.0) / 40)  # 30.0
    assert first["latency_p50_ms"] == pytest.approx((30 * 8.0 + 10 * 25.0) / 40)
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
    assert a["requests"] == 100
    assert a["rate_5xx"] == pytest.approx(4 / 100)
    assert a["latency_p95_ms"] == pytest.approx((600 + 600 + 1800) / 100)
    assert a["worst_p95_ms"] == 60.0
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
    assert views.anomaly_markers(None).empty
    anomalies = pd.DataFrame(
        {
            "window_start": ["2026-01-01T00:00:00Z"] * 3,
            "endpoint": ["/a"] * 3,
            "metric": ["latency_p95_ms", "error_rate_5xx", "requests"],
            "observed": [900.0, 0.3, 5000.0],
        }
    )
    assert views.anomaly_markers(anomalies)["chart"].tolist() == ["latency", "errors", "traffic"]
