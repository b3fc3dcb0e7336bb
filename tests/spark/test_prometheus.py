"""A real Prometheus server (Debian's package, installed by make test) scrapes the /metrics of
a running pipeline; PromQL through its HTTP API returns what SQLite holds for the same batch."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_helpers import live_stream
from viz_helpers import ARTIFACTS

from apistream.bench.broker import free_port
from apistream.config import load_config
from apistream.generator.writer import LogGenerator

PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "prometheus")
DASHBOARD = Path(__file__).parents[2] / "deploy/grafana/provisioning/dashboards/apistream.json"


class Prometheus:
    """A Prometheus server scraping one target every second."""

    def __init__(self, root: Path, target: str):
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: apistream\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log = (root / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "prometheus exited at start"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("prometheus did not become ready in 60 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant query: {labels without __name__, job and instance: value}."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        skip = {"__name__", "job", "instance"}
        return {
            tuple(sorted((k, v) for k, v in s["metric"].items() if k not in skip)): float(
                s["value"][1]
            )
            for s in body["data"]["result"]
        }

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def prometheus_for(tmp_path) -> Iterator:
    if shutil.which(PROMETHEUS) is None:
        pytest.fail(
            "prometheus is not installed: make test installs it (scripts/check_prometheus.sh)"
        )
    servers: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        servers.append(Prometheus(tmp_path / "prometheus", target))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def sqlite_values(db_path: str, batches: int) -> dict[str, object]:
    """What /metrics must show once `batches` batches are committed (ids 0, 1, ...)."""
    batch = batches - 1
    with sqlite3.connect(db_path) as db:
        totals = db.execute(
            "SELECT SUM(input), SUM(valid), SUM(quarantined), SUM(duplicates), SUM(late), "
            "COUNT(*) FROM data_quality WHERE batch_id <= ?",
            (batch,),
        ).fetchone()
        reasons: dict[str, int] = {}
        for (by_reason,) in db.execute(
            "SELECT quarantined_by_reason FROM data_quality WHERE batch_id <= ?", (batch,)
        ):
            for reason, n in json.loads(by_reason).items():
                reasons[reason] = reasons.get(reason, 0) + n
        windows = db.execute(
            "SELECT endpoint, method, requests, status_5xx, latency_p95_ms FROM endpoint_metrics m "
            "WHERE is_final = 1 AND window_start = (SELECT MAX(window_start) FROM "
            "endpoint_metrics n WHERE n.is_final = 1 AND n.endpoint = m.endpoint "
            "AND n.method = m.method)"
        ).fetchall()
    return {"totals": totals, "reasons": reasons, "windows": windows}


def test_prometheus_scrapes_a_running_pipeline_and_promql_equals_sqlite(
    spark, tmp_path, prometheus_for, browser_context_factory
):
    metrics_port = free_port()
    cfg = load_config(
        environ={},
        overrides={
            "generator.events": 12_000,
            "generator.events_per_file": 2_000,
            "generator.rate": 40,
            "generator.seed": 8,
            "source.max_files_per_trigger": 2,
            "processing.trigger_interval": "1 second",
            "metrics.port": metrics_port,
            "source.path": str(tmp_path / "in"),
            "sinks.output": str(tmp_path / "out"),
        },
    )
    manifest = LogGenerator(cfg, cfg.source.path).backfill()
    prometheus = prometheus_for(f"127.0.0.1:{metrics_port}")
    stop = threading.Event()
    thread, failure = live_stream(spark, cfg, stop)
    try:
        # Scraped while it runs: the target is up and a batch in progress is seen.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not failure:
            done = prometheus.query("apistream_input_records_total")
            if done and next(iter(done.values())) == manifest["total_events"]:
                break
            time.sleep(1)
        assert not failure, failure
        assert prometheus.query("up") == {(): 1.0}
        # Each scrape reads SQLite once: the values below are those of this many batches
        # (the batch ids of the commits; the listener's last_batch_id may lag behind them).
        committed = int(next(iter(prometheus.query("apistream_batches_total").values())))
        expected = sqlite_values(cfg.sqlite_path, committed)
        records = prometheus.query("apistream_records_total")
        quarantined = prometheus.query("apistream_quarantined_records_total")
        rates = prometheus.query("apistream_endpoint_requests_per_second")
        errors = prometheus.query("apistream_endpoint_error_rate_5xx")
        p95 = prometheus.query("apistream_endpoint_latency_p95_seconds")
        batches = prometheus.query("apistream_batches_total")
        # Every panel of the Grafana dashboard answers (anomalies: none in this run).
        dashboard = json.loads(DASHBOARD.read_text())
        panels = {t["expr"]: prometheus.query(t["expr"]) for p in dashboard["panels"]
                  for t in p["targets"]}  # fmt: skip
        page = browser_context_factory().new_page()
        page.goto(f"{prometheus.url}/graph?g0.expr=apistream_records_total&g0.tab=0"
                  "&g0.range_input=2m")  # fmt: skip
        page.wait_for_selector("canvas, .graph-chart, svg", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "prometheus.png"), full_page=True)
    finally:
        stop.set()
        thread.join(timeout=300)

    input_, valid, bad, dups, late, n_batches = expected["totals"]
    assert input_ == manifest["total_events"]
    assert records == {
        (("outcome", "valid"),): valid,
        (("outcome", "quarantined"),): bad,
        (("outcome", "duplicate"),): dups,
        (("outcome", "late"),): late,
    }
    assert valid == manifest["valid_events"]
    assert batches == {(): n_batches}
    assert quarantined == {(("reason", r),): n for r, n in expected["reasons"].items()}
    assert sum(quarantined.values()) == sum(manifest["defects"].values())
    windows = expected["windows"]
    assert len(windows) >= 10
    for endpoint, method, requests, status_5xx, latency_p95_ms in windows:
        key = (("endpoint", endpoint), ("method", method))
        assert rates[key] == pytest.approx(requests / cfg.processing.window, rel=1e-12)
        assert errors[key] == pytest.approx(status_5xx / requests, rel=1e-12)
        assert p95[key] == pytest.approx(latency_p95_ms / 1000, rel=1e-12)
    assert len(rates) == len(windows)
    assert {e for e, result in panels.items() if not result} == {
        e for e in panels if "anomalies" in e
    }
