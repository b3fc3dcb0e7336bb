"""Helpers of the notebook, report and dashboard tests."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def copy_db(src: str | Path, dst: str | Path) -> None:
    """A consistent copy of a live WAL database (the file alone may lack recent commits)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


def planted_anomalies(db_path: str | Path) -> list[dict[str, object]]:
    """One anomaly of each kind the report and the notebook mark, on the run's three busiest
    windows: a latency one (latency chart), an error-rate one (error chart) and a traffic one
    (a shaded region on the throughput chart)."""
    with sqlite3.connect(db_path) as db:
        busiest = db.execute(
            "SELECT window_start, window_end, endpoint FROM endpoint_metrics "
            "ORDER BY requests DESC, window_start, endpoint LIMIT 3"
        ).fetchall()
    kinds = [
        ("latency_p95_ms", 987.5, 88.75),
        ("error_rate_5xx", 0.25, 12.5),
        ("requests", 4321.0, 6.5),
    ]
    return [
        {"endpoint": endpoint, "method": "*", "window_start": ws, "window_end": we,
         "metric": metric, "observed": observed, "baseline_mean": 100.0, "baseline_std": 10.0,
         "z_score": z, "severity": "critical", "detected_at": "2026-01-01T00:00:00Z"}
        for (ws, we, endpoint), (metric, observed, z) in zip(busiest, kinds, strict=True)
    ]  # fmt: skip


def set_anomalies(db_path: str | Path, rows: list[dict[str, object]]) -> None:
    """Replace the anomalies table's rows with `rows`."""
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM anomalies")
        for row in rows:
            names = ", ".join(row)
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO anomalies ({names}) VALUES ({marks})", list(row.values()))
    db.close()


def copy_output(output: str | Path, dst: Path) -> Path:
    """A copy of a finished run's output directory (lake and a consistent SQLite copy)."""
    shutil.copytree(output, dst, ignore=shutil.ignore_patterns("analytics.db*", "report"))
    copy_db(Path(output) / "analytics.db", dst / "analytics.db")
    return dst
