"""/metrics: the families of a snapshot (pure), the read of a real SQLite database, and the
port preflight."""

from __future__ import annotations

import socket
import urllib.request
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apistream import sqlite_store
from apistream.config import load_config
from apistream.errors import ApiStreamError
from apistream.preflight import check_metrics_port
from apistream.prometheus_metrics import (
    EndpointWindow,
    QueryProgress,
    Snapshot,
    families,
    read_snapshot,
    serve_metrics,
)

NOW = datetime(2026, 11, 29, 12, 0, 0)


def samples(metric_families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in metric_families
        for s in f.samples
        if not s.name.endswith("_created")
    }


def test_a_snapshot_becomes_counters_and_gauges():
    snap = Snapshot(
        totals={
            "input": 100,
            "valid": 90,
            "quarantined": 6,
            "duplicates": 3,
            "late": 1,
            "batches": 4,
        },
        reasons={"malformed_json": 4, "wrong_type": 2},
        queries={"pipeline": QueryProgress(3, 1500, 20.0, 40.0, "2026-11-29T11:58:00Z", 90)},
        anomalies={("ewma", "latency_p95_ms", "critical"): 2},
        endpoints=[EndpointWindow("/api/v1/users", "GET", 60.0, 120, 6, 250.0)],
        newest_event="2026-11-29T11:59:30Z",
        newest_final_window_end="2026-11-29T11:59:00Z",
    )
    got = samples(families(snap, NOW))
    assert got[("apistream_records_total", (("outcome", "valid"),))] == 90
    assert got[("apistream_records_total", (("outcome", "duplicate"),))] == 3
    assert got[("apistream_input_records_total", ())] == 100
    assert got[("apistream_quarantined_records_total", (("reason", "wrong_type"),))] == 2
    assert got[("apistream_batches_total", ())] == 4
    assert got[("apistream_batch_duration_seconds", (("query", "pipeline"),))] == 1.5
    assert got[("apistream_watermark_lag_seconds", (("query", "pipeline"),))] == 90.0
    assert got[("apistream_newest_event_age_seconds", ())] == 30.0
    assert got[("apistream_newest_final_window_age_seconds", ())] == 60.0
    key = (("detector", "ewma"), ("metric", "latency_p95_ms"), ("severity", "critical"))
    assert got[("apistream_anomalies_total", key)] == 2
    ep = (("endpoint", "/api/v1/users"), ("method", "GET"))
    assert got[("apistream_endpoint_requests_per_second", ep)] == 2.0
    assert got[("apistream_endpoint_error_rate_5xx", ep)] == 0.05
    assert got[("apistream_endpoint_latency_p95_seconds", ep)] == 0.25


def test_before_the_first_batch_every_counter_is_zero(tmp_path):
    assert read_snapshot(tmp_path / "missing.db") == Snapshot()
    sqlite_store.connect(tmp_path / "a.db").close()
    got = samples(families(read_snapshot(tmp_path / "a.db"), NOW))
    assert got[("apistream_input_records_total", ())] == 0
    assert got[("apistream_records_total", (("outcome", "valid"),))] == 0
    assert not any(name.startswith("apistream_endpoint") for name, _ in got)


def test_served_text_parses_as_the_prometheus_format(tmp_path):
    sqlite_store.connect(tmp_path / "a.db").close()
    server = serve_metrics(tmp_path / "a.db", "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics") as r:
            text = r.read().decode()
    finally:
        server.close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"apistream_records", "apistream_input_records", "apistream_batches"} <= names


def test_a_busy_metrics_port_fails_before_spark_starts_naming_the_key():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        cfg = load_config(environ={}, overrides={"metrics.port": port})
        with pytest.raises(ApiStreamError, match=rf"metrics\.port: .*127\.0\.0\.1:{port}"):
            check_metrics_port(cfg)
    check_metrics_port(load_config(environ={}))  # not served: nothing to check
