"""The notebook runs headless (nbclient) on real pipeline output, with no error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analytics_visualization.ipynb"


def test_notebook_executes_on_pipeline_output(pipeline_output, monkeypatch):
    cfg = pipeline_output
    monkeypatch.setenv("APISTREAM_OUTPUT", cfg.sinks.output)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError naming the cell if any cell fails.
    NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # latency, error rates, throughput, top-N, data quality
    with sqlite3.connect(cfg.sqlite_path) as db:
        windows = db.execute("SELECT COUNT(*) FROM endpoint_metrics").fetchone()[0]
        account = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
    assert f"{windows:,} window rows ({windows:,} final)" in text
    assert f"{windows:,} windows in both; requests equal in SQLite and Parquet: True" in text
    assert f"events lake: {account[1]:,} valid events" in text
    expected = dict(
        zip(("input", "valid", "quarantined", "duplicates", "late"), account, strict=True)
    )
    assert f"{expected} | invariant holds: True" in text
    markdown = "".join(
        o.get("data", {}).get("text/markdown", "")
        for o in outputs
        if o.output_type == "display_data"
    )
    with sqlite3.connect(pipeline_output.sqlite_path) as db:
        found = db.execute("SELECT COUNT(*) FROM anomalies").fetchone()[0]
    if found == 0:
        assert "No anomalies detected" in markdown
    else:
        assert "No anomal" not in markdown
