"""The notebook runs headless (nbclient) on real pipeline output, with no error, and shows the
run's figures; its anomaly cell lists the anomalies found, or says there are none."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from viz_helpers import copy_output, planted_anomalies, set_anomalies

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analytics_visualization.ipynb"


def execute(output: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run the notebook on `output`; the outputs of its code cells. Raises CellExecutionError
    naming the cell if any cell fails."""
    monkeypatch.setenv("APISTREAM_OUTPUT", str(output))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def markdown_of(outputs: list[dict]) -> str:
    return "".join(
        o.get("data", {}).get("text/markdown", "")
        for o in outputs
        if o.output_type == "display_data"
    )


def test_notebook_executes_on_pipeline_output(pipeline_output, tmp_path, monkeypatch):
    output = copy_output(pipeline_output.sinks.output, tmp_path / "out")
    planted = planted_anomalies(output / "analytics.db")
    set_anomalies(output / "analytics.db", planted)
    outputs = execute(output, monkeypatch)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # latency, error rates, throughput, top-N, data quality
    with sqlite3.connect(output / "analytics.db") as db:
        windows = db.execute("SELECT COUNT(*) FROM endpoint_metrics").fetchone()[0]
        account = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
    db.close()
    assert f"{windows:,} window rows ({windows:,} final)" in text
    assert f"{windows:,} windows in both; requests equal in SQLite and Parquet: True" in text
    assert f"events lake: {account[1]:,} valid events" in text
    expected = dict(
        zip(("input", "valid", "quarantined", "duplicates", "late"), account, strict=True)
    )
    assert f"{expected} | invariant holds: True" in text
    # The anomaly cell shows the planted anomalies as a table, by z-score, highest first.
    assert "No anomal" not in markdown_of(outputs)
    table = next(
        o["data"]["text/html"]
        for o in outputs
        if "text/html" in o.get("data", {}) and "z_score" in o["data"]["text/html"]
    )
    rows = [table.index(f"<td>{a['metric']}</td>") for a in planted]
    assert rows == sorted(rows)  # latency (z 88.75), errors (12.5), requests (6.5)


def test_notebook_says_when_no_anomaly_was_found(pipeline_output, tmp_path, monkeypatch):
    output = copy_output(pipeline_output.sinks.output, tmp_path / "out")
    set_anomalies(output / "analytics.db", [])
    outputs = execute(output, monkeypatch)
    assert not [o for o in outputs if o.output_type == "error"]
    assert "_No anomalies detected._" in markdown_of(outputs)
    assert not [o for o in outputs if "z_score" in o.get("data", {}).get("text/html", "")]
