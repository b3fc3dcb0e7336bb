"""Precision, recall and time to detect of incident detection: the anomalies (per detector)
against the manifest's incidents.

Matching: an alert "targets" an incident when it is on the incident's endpoint and its method
is "*", or the incident's method is "*", or both name the same method. An alert is TRUE when
its window overlaps an incident's span [start, end) and it targets the incident or is
service-wide (endpoint "*"); otherwise it is a false alarm. An incident is FOUND by the
alerts that target it and overlap its span (service-wide alerts find nothing). Old
manifests and databases lack some fields: an incident's method is "*", an alert's method is
"*" and its detector "ewma".
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apistream import sqlite_store
from apistream.anomalies import SERVICE
from apistream.errors import ApiStreamError

ALL_METHODS = "*"
DEFAULT_DETECTOR = "ewma"  # the only detector before alerts named theirs
ANY_DETECTOR = "any"  # the union of every detector's alerts
DEFAULT_WINDOW_S = 60.0
DAY_S = 86_400.0


def parse_time(text: str) -> datetime:
    """ISO-8601 UTC with a Z, with or without milliseconds, as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Span:
    """An incident as matched: its manifest row and the parsed fields."""

    row: dict[str, Any]
    kind: str
    endpoint: str
    method: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Alert:
    """An anomaly row as matched: the row and the parsed fields."""

    row: dict[str, Any]
    endpoint: str
    method: str
    detector: str
    start: datetime
    end: datetime


def as_span(incident: dict[str, Any]) -> Span:
    """A manifest incident (method "*" and kind "unknown" when the manifest lacks them)."""
    return Span(
        incident,
        incident.get("kind") or "unknown",
        incident["endpoint"],
        incident.get("method") or ALL_METHODS,
        parse_time(incident["start"]),
        parse_time(incident["end"]),
    )


def as_alert(row: dict[str, Any]) -> Alert:
    """An anomaly row (method "*" and detector "ewma" when the row lacks them)."""
    return Alert(
        row,
        row["endpoint"],
        row.get("method") or ALL_METHODS,
        row.get("detector") or DEFAULT_DETECTOR,
        parse_time(row["window_start"]),
        parse_time(row["window_end"]),
    )


def overlaps(alert: Alert, span: Span) -> bool:
    """The alert's window and the incident's span [start, end) share an instant."""
    return alert.start < span.end and alert.end > span.start


def targets(alert: Alert, span: Span) -> bool:
    """The alert is on the incident's endpoint, for its method (or either is all methods)."""
    methods_match = ALL_METHODS in (alert.method, span.method) or alert.method == span.method
    return alert.endpoint == span.endpoint and methods_match


def explains(alert: Alert, span: Span) -> bool:
    """The incident makes the alert true: it targets it, or is service-wide, during it."""
    return overlaps(alert, span) and (alert.endpoint == SERVICE or targets(alert, span))


def finds(alert: Alert, span: Span) -> bool:
    """The alert finds the incident: it targets it during its span."""
    return overlaps(alert, span) and targets(alert, span)


def windows_to_detect(alert: Alert, span: Span, window_s: float) -> int:
    """ceil((alert window end - incident start) / window): 1 in the window the incident
    starts in, 3 two windows later (exact, in microseconds)."""
    return -(-(alert.end - span.start) // timedelta(seconds=window_s))


def time_to_detect(span: Span, alerts: Iterable[Alert], window_s: float) -> int | None:
    """Windows until the earliest alert that finds the incident, or None if none does."""
    found = [a for a in alerts if finds(a, span)]
    if not found:
        return None
    return windows_to_detect(min(found, key=lambda a: a.end), span, window_s)


@dataclass(frozen=True)
class Evaluation:
    """A set of alerts against the incidents. `ttd` is each incident's time to detect in
    windows, in manifest order (None: missed); `kinds` their kinds."""

    alerts: int
    true_alerts: int
    incidents: int
    found: int
    missed: list[dict[str, Any]]
    false_alerts: list[dict[str, Any]]
    ttd: list[int | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.incidents if self.incidents else 1.0


def evaluate(
    incidents: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    window_s: float = DEFAULT_WINDOW_S,
) -> Evaluation:
    """All the alerts (whatever their detector) against the incidents (see the module)."""
    spans = [as_span(i) for i in incidents]
    parsed = [as_alert(a) for a in alerts]
    false_alerts = [a.row for a in parsed if not any(explains(a, s) for s in spans)]
    ttd = [time_to_detect(s, parsed, window_s) for s in spans]
    missed = [s.row for s, t in zip(spans, ttd, strict=True) if t is None]
    return Evaluation(
        alerts=len(parsed),
        true_alerts=len(parsed) - len(false_alerts),
        incidents=len(spans),
        found=len(spans) - len(missed),
        missed=missed,
        false_alerts=false_alerts,
        ttd=ttd,
        kinds=[s.kind for s in spans],
    )


def by_detector(
    alerts: list[dict[str, Any]], names: Sequence[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """The alerts of each detector (sorted by name; every one of `names`, the detectors the
    run had, even without an alert), then "any" (all of them) when there are two detectors
    or more; only "any" (empty) when there is no alert and no name."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for a in alerts:
        groups.setdefault(a.get("detector") or DEFAULT_DETECTOR, []).append(a)
    named = {name: groups[name] for name in sorted(groups)}
    return named if len(named) == 1 else {**named, ANY_DETECTOR: list(alerts)}


def window_of(manifest: dict[str, Any]) -> float:
    """The run's window length in seconds (settings.window_s; 60 in old manifests)."""
    return float((manifest.get("settings") or {}).get("window_s") or DEFAULT_WINDOW_S)


def simulated_days(manifest: dict[str, Any]) -> float | None:
    """Days of event time the run covers (event_time_max - event_time_min), or None when the
    manifest does not say (or the span is empty)."""
    first, last = manifest.get("event_time_min"), manifest.get("event_time_max")
    if not first or not last:
        return None
    days = (parse_time(last) - parse_time(first)).total_seconds() / DAY_S
    return days if days > 0 else None


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when whole is 0 (undefined, not perfect)."""
    return part / whole if whole else None


def median_ttd(ttd: Iterable[int | None]) -> float | None:
    """The median time to detect of the found incidents, or None if none was found."""
    found = [t for t in ttd if t is not None]
    return float(statistics.median(found)) if found else None


def kind_scores(result: Evaluation) -> dict[str, dict[str, Any]]:
    """Per incident kind (sorted): recall, median TTD, incident count. Precision is null: a
    true alert could be attributed to the kind of the incident it overlaps, but a false alarm
    overlaps none and so has no kind, which would make every kind's precision 1 by
    construction; only the detector's overall precision is meaningful."""
    scores = {}
    for kind in sorted(set(result.kinds)):
        ttd = [t for k, t in zip(result.kinds, result.ttd, strict=True) if k == kind]
        found = sum(t is not None for t in ttd)
        scores[kind] = {
            "precision": None,
            "recall": ratio(found, len(ttd)),
            "median_ttd_windows": median_ttd(ttd),
            "incidents": len(ttd),
        }
    return scores


def detector_scores(result: Evaluation, days: float | None) -> dict[str, Any]:
    """One detector's entry of `evaluate_detectors`."""
    return {
        "all": {
            "precision": ratio(result.true_alerts, result.alerts),
            "recall": ratio(result.found, result.incidents),
            "median_ttd_windows": median_ttd(result.ttd),
        },
        "kinds": kind_scores(result),
        "false_alarms_per_day": len(result.false_alerts) / days if days else None,
    }


def detector_evaluations(
    manifest: dict[str, Any], alerts: list[dict[str, Any]], names: Sequence[str] = ()
) -> dict[str, Evaluation]:
    """Each detector's alerts (and "any", see `by_detector`) against the manifest's
    incidents."""
    incidents, window_s = manifest["incidents"], window_of(manifest)
    return {
        name: evaluate(incidents, group, window_s)
        for name, group in by_detector(alerts, names).items()
    }


def evaluate_detectors(
    manifest: dict[str, Any], alerts: list[dict[str, Any]], names: Sequence[str] = ()
) -> dict:
    """`apistream evaluate --json`: per detector, overall precision, recall and median time
    to detect (windows), the same per incident kind (precision null, see `kind_scores`), and
    false alarms per simulated day (null without the manifest's event-time span). A ratio
    with nothing to divide by (no alert, no incident) is null."""
    return report(detector_evaluations(manifest, alerts, names), simulated_days(manifest))


def report(evaluations: dict[str, Evaluation], days: float | None) -> dict:
    """The `evaluate_detectors` object of the detectors' evaluations."""
    return {"detectors": {n: detector_scores(r, days) for n, r in evaluations.items()}}


def read_manifest(input_dir: str | Path) -> dict[str, Any] | None:
    """The generator's manifest.json in `input_dir`, or None without one."""
    manifest = Path(input_dir) / "manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def read_alerts(sqlite_path: str | Path) -> list[dict[str, Any]]:
    """Every anomaly in the analytics database, in window, endpoint and metric order."""
    try:
        with sqlite_store.read_only(sqlite_path) as db:
            db.row_factory = sqlite3.Row
            sql = "SELECT * FROM anomalies ORDER BY window_start, endpoint, metric"
            return [dict(r) for r in db.execute(sql)]
    except sqlite3.Error as exc:
        raise ApiStreamError(f"cannot read the anomalies in {sqlite_path}: {exc}") from None


def read_run(
    input_dir: str | Path, sqlite_path: str | Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the manifest, the anomalies) of a run; an error naming the missing manifest."""
    manifest = read_manifest(input_dir)
    if manifest is None:
        raise ApiStreamError(f"no generator manifest at {Path(input_dir) / 'manifest.json'}")
    return manifest, read_alerts(sqlite_path)
