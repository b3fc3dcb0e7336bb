"""Scoring the detectors against the generator's incidents: hand-made incidents and alerts
with known answers (evaluation.evaluate_detectors and `apistream evaluate --json`)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cli_runner import cli

from apistream import sqlite_store
from apistream.evaluation import evaluate, evaluate_detectors

DAY = "2026-11-27T"

# Four incidents over a two-day run of 60 s windows: /b's is POST only, /d's is an old
# manifest's (no method, no metric).
INCIDENTS = [
    {"kind": "latency", "endpoint": "/a", "method": "*", "start": DAY + "10:05:03.123Z",
     "end": DAY + "10:15:00.000Z", "factor": 4.0, "metric": "latency_p95_ms"},
    {"kind": "errors", "endpoint": "/b", "method": "POST", "start": DAY + "11:00:00.000Z",
     "end": DAY + "11:10:00.000Z", "factor": 0.3, "metric": "error_rate_5xx"},
    {"kind": "latency", "endpoint": "/c", "method": "*", "start": DAY + "12:00:30.000Z",
     "end": DAY + "12:05:00.000Z", "factor": 3.0, "metric": "latency_p95_ms"},
    {"kind": "traffic", "endpoint": "/d", "start": DAY + "13:00:00.000Z",
     "end": DAY + "13:03:00.000Z", "factor": 5.0},
]  # fmt: skip

MANIFEST = {
    "event_time_min": "2026-11-27T00:00:00.000Z",
    "event_time_max": "2026-11-29T00:00:00.000Z",
    "incidents": INCIDENTS,
    "settings": {"window_s": 60.0},
}


def alert(detector: str | None, endpoint: str, method: str | None, minute: str) -> dict:
    """A one-minute alert starting at DAY + `minute` (HH:MM); None leaves the key out, as an
    old database would."""
    hh, mm = map(int, minute.split(":"))
    end = f"{hh + (mm + 1) // 60:02d}:{(mm + 1) % 60:02d}"
    row = {"endpoint": endpoint, "window_start": f"{DAY}{minute}:00Z",
           "window_end": f"{DAY}{end}:00Z", "metric": "latency_p95_ms", "observed": 900.0,
           "z_score": 9.0, "severity": "critical"}  # fmt: skip
    if method is not None:
        row["method"] = method
    if detector is not None:
        row["detector"] = detector
    return row


ALERTS = [
    alert("ewma", "/a", "*", "10:05"),  # true, finds /a in its first window: TTD 1
    alert("ewma", "/b", "POST", "11:02"),  # true, finds /b's POST incident: TTD 3
    alert("ewma", "/b", "GET", "11:00"),  # false: another method than the incident's
    alert("ewma", "*", "*", "12:01"),  # true (service-wide during /c's), finds nothing
    alert("ewma", "/z", "*", "20:00"),  # false: no incident on /z
    alert("ewma", "/a", "*", "10:15"),  # false: starts as /a's incident ends
    alert("forecast", "/a", "*", "10:07"),  # true, finds /a: TTD ceil(176.877 / 60) = 3
    alert("forecast", "/b", "*", "11:00"),  # true, all methods of /b find POST: TTD 1
    alert("forecast", "/d", None, "13:01"),  # true (no method: "*"), finds /d: TTD 2
    alert("forecast", "/a", "*", "23:00"),  # false
    alert("forecast", "/c", "GET", "12:10"),  # false: after /c's incident
]

EXPECTED = {
    "detectors": {
        "ewma": {
            "all": {"precision": 0.5, "recall": 0.5, "median_ttd_windows": 2.0},
            "kinds": {
                "errors": {"precision": None, "recall": 1.0, "median_ttd_windows": 3.0,
                           "incidents": 1},
                "latency": {"precision": None, "recall": 0.5, "median_ttd_windows": 1.0,
                            "incidents": 2},
                "traffic": {"precision": None, "recall": 0.0, "median_ttd_windows": None,
                            "incidents": 1},
            },
            "false_alarms_per_day": 1.5,
        },
        "forecast": {
            "all": {"precision": 0.6, "recall": 0.75, "median_ttd_windows": 2.0},
            "kinds": {
                "errors": {"precision": None, "recall": 1.0, "median_ttd_windows": 1.0,
                           "incidents": 1},
                "latency": {"precision": None, "recall": 0.5, "median_ttd_windows": 3.0,
                            "incidents": 2},
                "traffic": {"precision": None, "recall": 1.0, "median_ttd_windows": 2.0,
                            "incidents": 1},
            },
            "false_alarms_per_day": 1.0,
        },
        "any": {
            "all": {"precision": 6 / 11, "recall": 0.75, "median_ttd_windows": 1.0},
            "kinds": {
                "errors": {"precision": None, "recall": 1.0, "median_ttd_windows": 1.0,
                           "incidents": 1},
                "latency": {"precision": None, "recall": 0.5, "median_ttd_windows": 1.0,
                            "incidents": 2},
                "traffic": {"precision": None, "recall": 1.0, "median_ttd_windows": 2.0,
                            "incidents": 1},
            },
            "false_alarms_per_day": 2.5,
        },
    }
}  # fmt: skip


def test_scores_per_detector_and_kind():
    assert evaluate_detectors(MANIFEST, ALERTS) == EXPECTED


def test_time_to_detect_counts_the_start_window_as_one():
    def ttd(window: str, start: str) -> float | None:
        manifest = {"incidents": [{**INCIDENTS[0], "start": DAY + start}]}
        scores = evaluate_detectors(manifest, [alert("ewma", "/a", "*", window)])
        return scores["detectors"]["ewma"]["all"]["median_ttd_windows"]

    assert ttd("10:05", "10:05:00.000Z") == 1  # starts on the window's edge
    assert ttd("10:05", "10:05:59.999Z") == 1
    assert ttd("10:06", "10:05:00.000Z") == 2
    assert ttd("10:07", "10:05:03.123Z") == 3
    assert ttd("10:04", "10:05:00.000Z") is None  # ends as the incident starts: no overlap


def test_the_earliest_alert_sets_the_time_to_detect():
    late, early = alert("ewma", "/a", "*", "10:09"), alert("ewma", "/a", "*", "10:06")
    result = evaluate(INCIDENTS[:1], [late, early])
    assert result.ttd == [2]


def test_method_scoped_incident():
    post = INCIDENTS[1]
    cases = (("POST", True), ("*", True), (None, True), ("GET", False), ("PUT", False))
    for method, found in cases:  # None: an old alert without a method, so all of /b's
        result = evaluate([post], [alert("ewma", "/b", method, "11:03")])
        assert result.found == int(found), method
        assert result.true_alerts == int(found), method


def test_service_wide_alert_is_true_but_finds_nothing():
    result = evaluate(INCIDENTS[2:3], [alert("ewma", "*", "*", "12:04")])
    assert (result.alerts, result.true_alerts, result.found) == (1, 1, 0)
    assert result.missed == INCIDENTS[2:3]


def test_evaluate_keeps_the_run_totals():
    result = evaluate(INCIDENTS, ALERTS)
    assert (result.alerts, result.true_alerts, result.incidents, result.found) == (11, 6, 4, 3)
    assert result.precision == pytest.approx(6 / 11) and result.recall == 0.75
    assert result.missed == [INCIDENTS[2]]
    assert [a["endpoint"] for a in result.false_alerts] == ["/b", "/z", "/a", "/a", "/c"]
    assert result.ttd == [1, 1, None, 2]


def test_old_manifest_and_alerts():
    # No method, metric, settings or event-time span; no detector or method on the alerts.
    incidents = [{k: v for k, v in i.items() if k not in ("method", "metric")} for i in INCIDENTS]
    alerts = [alert(None, a["endpoint"], None, a["window_start"][11:16]) for a in ALERTS]
    scores = evaluate_detectors({"incidents": incidents}, alerts)["detectors"]
    assert list(scores) == ["ewma"]  # one detector: no "any"
    assert scores["ewma"]["false_alarms_per_day"] is None
    # Without methods /b's incident is all of /b, so its GET alert (now "*") is true too.
    assert scores["ewma"]["all"] == {
        "precision": 7 / 11, "recall": 0.75, "median_ttd_windows": 1.0}  # fmt: skip


def test_no_alerts():
    scores = evaluate_detectors(MANIFEST, [])["detectors"]
    assert scores == {
        "any": {
            "all": {"precision": None, "recall": 0.0, "median_ttd_windows": None},
            "kinds": {k: {"precision": None, "recall": 0.0, "median_ttd_windows": None,
                          "incidents": n} for k, n in (("errors", 1), ("latency", 2),
                                                       ("traffic", 1))},
            "false_alarms_per_day": 0.0,
        }
    }  # fmt: skip


def write_run(root: Path, manifest: dict, alerts: list[dict]) -> None:
    """The manifest and an analytics database holding `alerts`."""
    (root / "manifest.json").write_text(json.dumps(manifest))
    with closing(sqlite_store.connect(root / "analytics.db")) as db:
        for a in alerts:
            row = {"method": "*", "baseline_mean": 100.0, "baseline_std": 10.0,
                   "detected_at": DAY + "23:59:00Z", **a}  # fmt: skip
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO anomalies ({names}) VALUES ({marks})", list(row.values()))


def test_cli_json(tmp_path):
    write_run(tmp_path, MANIFEST, ALERTS)
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == EXPECTED


def test_cli_tables(tmp_path):
    write_run(tmp_path, MANIFEST, ALERTS)
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in out.stdout.splitlines()
        if line.startswith("│")
    ]
    assert ["all", "4", "2", "0.500", "0.500", "2"] in rows  # ewma
    assert ["all", "4", "3", "0.750", "0.545", "1"] in rows  # any
    assert ["traffic", "1", "0", "0.000", "n/a", "n/a"] in rows  # ewma
    assert "ewma: alerts 6 (true 3, false 3), false alarms per day 1.50" in out.stdout
    incidents = {r[1]: r[5:] for r in rows if len(r) == 7}
    assert incidents == {
        "/a": ["ewma (1), forecast (3)", "1"],
        "/b": ["ewma (3), forecast (1)", "1"],
        "/c": ["NO", "-"],
        "/d": ["forecast (2)", "2"],
    }


def test_cli_reads_an_old_database(tmp_path):
    # The anomalies table as it was before detectors had names.
    (tmp_path / "manifest.json").write_text(json.dumps({"incidents": INCIDENTS[:1]}))
    with closing(sqlite3.connect(tmp_path / "analytics.db")) as db, db:
        db.execute("CREATE TABLE anomalies (endpoint, method, window_start, window_end, metric)")
        db.execute("INSERT INTO anomalies VALUES ('/a', '*', ?, ?, 'latency_p95_ms')",
                   (DAY + "10:06:00Z", DAY + "10:07:00Z"))  # fmt: skip
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["detectors"]["ewma"]["all"] == {
        "precision": 1.0, "recall": 1.0, "median_ttd_windows": 2.0}  # fmt: skip


def test_a_configured_detector_without_alerts_scores_zero_recall():
    ewma_only = [a for a in ALERTS if a.get("detector", "ewma") == "ewma"]
    scores = evaluate_detectors(MANIFEST, ewma_only, ("ewma", "forecast"))["detectors"]
    assert list(scores) == ["ewma", "forecast", "any"]
    assert scores["forecast"]["all"] == {
        "precision": None,
        "recall": 0.0,
        "median_ttd_windows": None,
    }
    assert scores["forecast"]["false_alarms_per_day"] == 0.0
    assert scores["any"]["all"] == scores["ewma"]["all"]
