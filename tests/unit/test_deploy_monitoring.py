"""deploy/: the Grafana dashboard's structure, every PromQL expression in it checked by
promtool and naming only metrics /metrics serves, and the Prometheus alerting rules with their
promtool unit tests. (Grafana is not installable here; test_prometheus.py also runs each panel
query against a real Prometheus scraping a live pipeline.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from apistream.prometheus_metrics import EndpointWindow, QueryProgress, Snapshot, families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "provisioning" / "dashboards" / "apistream.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("no promtool: make test installs Prometheus (scripts/check_prometheus.sh)")
    return path


def served_names() -> set[str]:
    """Every sample name /metrics can serve (a snapshot with every family filled)."""
    snap = Snapshot(
        totals=dict.fromkeys(("input", "valid", "quarantined", "duplicates", "late", "batches"), 1),
        reasons={"wrong_type": 1},
        queries={"pipeline": QueryProgress(1, 1, 1.0, 1.0, "2026-01-01T00:00:00Z", 1)},
        anomalies={("requests", "warning"): 1},
        endpoints=[EndpointWindow("/a", "GET", 60.0, 1, 0, 1.0)],
        newest_event="2026-01-01T00:00:00Z",
        newest_final_window_end="2026-01-01T00:00:00Z",
    )
    return {s.name for f in families(snap, datetime(2026, 1, 1, 0, 1)) for s in f.samples}


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "apistream" and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "apistream.yaml").read_text()
    )["datasources"][0]
    assert variables["datasource"]["current"]["value"] == provisioned["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("throughput", "freshness", "5xx", "p95", "quarantined", "anomalies"):
        assert topic in titles


def test_every_dashboard_and_alert_expression_names_a_served_metric():
    served = served_names()
    alerts = yaml.safe_load(ALERTS.read_text())
    exprs = dashboard_exprs() + [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\bapistream_[a-z0-9_]+", e)}
    assert used and used <= served, used - served


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"apistream:panel_query_{i}", "expr": e} for i, e in enumerate(dashboard_exprs())
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(dashboard_exprs())} rules found" in done.stdout


def test_alerting_rules_pass_promtool_and_their_unit_tests():
    check = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=ALERTS.parent, capture_output=True, text=True,
    )  # fmt: skip
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout
