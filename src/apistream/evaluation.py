"""Precision and recall of incident detection: anomalies against the manifest's incidents."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apistream import sqlite_store
from apistream.anomalies import SERVICE
from apistream.errors import ApiStreamError


@dataclass(frozen=True)
class Evaluation:
    alerts: int
    true_alerts: int
    incidents: int
    found: int
    missed: list[dict[str, Any]]
    false_alerts: list[dict[str, Any]]

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.incidents if self.incidents else 1.0


def _overlaps(alert: dict[str, Any], incident: dict[str, Any]) -> bool:
    return alert["window_start"] < incident["end"] and alert["window_end"] > incident["start"]


def _iso_s(text: str) -> str:
    """'2026-11-27T10:05:03.123Z' -> '2026-11-27T10:05:03Z' (comparable with window text)."""
    return text[:19] + "Z"


def evaluate(incidents: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> Evaluation:
    """An alert is true when its window overlaps an incident on its endpoint (or it is a
    service-wide alert during any incident); an incident is found when an alert on its own
    endpoint overlaps its span."""
    spans = [{**i, "start": _iso_s(i["start"]), "end": _iso_s(i["end"])} for i in incidents]
    true_alerts, false_alerts = 0, []
    for a in alerts:
        if any(_overlaps(a, i) and a["endpoint"] in (i["endpoint"], SERVICE) for i in spans):
            true_alerts += 1
        else:
            false_alerts.append(a)
    missed = [
        i
        for i in spans
        if not any(_overlaps(a, i) and a["endpoint"] == i["endpoint"] for a in alerts)
    ]
    return Evaluation(
        len(alerts), true_alerts, len(spans), len(spans) - len(missed), missed, false_alerts
    )


def read_incidents(input_dir: str | Path) -> list[dict[str, Any]] | None:
    """The generator's incidents (manifest.json in `input_dir`), or None without a manifest."""
    manifest = Path(input_dir) / "manifest.json"
    return json.loads(manifest.read_text())["incidents"] if manifest.is_file() else None


def read_alerts(sqlite_path: str | Path) -> list[dict[str, Any]]:
    """Every anomaly in the analytics database, in window, endpoint and metric order."""
    try:
        with sqlite_store.read_only(sqlite_path) as db:
            db.row_factory = sqlite3.Row
            sql = "SELECT * FROM anomalies ORDER BY window_start, endpoint, metric"
            return [dict(r) for r in db.execute(sql)]
    except sqlite3.Error as exc:
        raise ApiStreamError(f"cannot read the anomalies in {sqlite_path}: {exc}") from None


def evaluate_run(input_dir: str | Path, sqlite_path: str | Path) -> tuple[list, Evaluation]:
    """(the incidents, their evaluation) of a run: its manifest against its anomalies."""
    incidents = read_incidents(input_dir)
    if incidents is None:
        raise ApiStreamError(f"no generator manifest at {Path(input_dir) / 'manifest.json'}")
    return incidents, evaluate(incidents, read_alerts(sqlite_path))
