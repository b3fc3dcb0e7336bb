"""CLI behaviour that needs no JVM: help everywhere, and one clear error, no traceback (run
in-process with typer's CliRunner; the entry point itself in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from cli_runner import cli

from apistream import sqlite_store
from apistream.top import ranking_view


@pytest.mark.parametrize("command", ["generate", "stream", "demo", "deploy", "validate-config"])
def test_help_everywhere(command):
    out = cli(command, "--help")
    assert out.returncode == 0
    assert "--config" in out.stdout


def test_common_flags_are_offered():
    assert all(
        f in cli("generate", "--help").stdout for f in ("--input", "--events", "--rate", "--seed")
    )
    assert all(f in cli("stream", "--help").stdout for f in ("--input", "--output", "--until-idle"))


def test_bad_config_value_is_one_clear_error():
    out = cli("validate-config", env={"APISTREAM_PROCESSING__WATERMARK": "later"})
    assert out.returncode == 2
    assert "processing.watermark" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_unknown_config_key_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (Path(__file__).parents[2] / "config" / "config.yaml").read_text()
    bad.write_text(text.replace("max_latency_ms: 300000", "max_latency: 300000"))
    out = cli("stream", "--config", str(bad), "--input", str(tmp_path))
    assert out.returncode == 2
    assert "validation.max_latency: unknown key" in out.stderr
    assert "Traceback" not in out.stderr


def test_batch_names_a_bad_period_before_anything_runs(tmp_path):
    out = cli("batch", "--from", "2026-11-29T13:30", "--output", str(tmp_path))
    assert out.returncode == 2
    assert "--from: '2026-11-29T13:30' is not a whole hour" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_input_directory(tmp_path):
    out = cli("stream", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o"))
    assert out.returncode == 1
    assert f"input directory not found: {tmp_path / 'nope'}" in out.stderr
    assert "Traceback" not in out.stderr


def test_unreadable_input_file(tmp_path):
    (tmp_path / "events-000000.jsonl").symlink_to(tmp_path / "gone.jsonl")
    out = cli("stream", "--input", str(tmp_path), "--output", str(tmp_path / "o"))
    assert out.returncode == 1
    assert "cannot read input file" in out.stderr and "events-000000.jsonl" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_java_is_explained(tmp_path):
    out = cli(
        "stream",
        "--input",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        env={"JAVA_HOME": str(tmp_path / "no-jdk")},
    )
    assert out.returncode == 1
    assert "needs Java 17+" in out.stderr and "apt-get install" in out.stderr
    assert "Traceback" not in out.stderr


def test_generate_writes_files_and_manifest(tmp_path):
    out = cli("generate", "--input", str(tmp_path), "--events", "3000", "--seed", "5")
    assert out.returncode == 0, out.stderr
    assert "wrote 3,000 events" in out.stdout
    assert (tmp_path / "manifest.json").is_file()
    assert len(list(tmp_path.glob("events-*.jsonl"))) >= 1


def test_without_pyspark_a_spark_command_says_how_to_install_it(tmp_path):
    # pyspark is an extra (apistream[spark]): a cluster brings its own. Hidden here the way
    # an environment without it would be: `import pyspark` raises ModuleNotFoundError.
    hide = "import sys; sys.modules['pyspark'] = None; from apistream.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", hide, "stream", "--input", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "pyspark is not installed: pip install 'apistream[spark]'" in out.stderr
    assert "Traceback" not in out.stderr


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in `text`, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def _run_with(tmp_path: Path, incidents: list[dict], anomalies: list[tuple]) -> None:
    """A run's manifest and analytics database, as the generator and the stream leave them."""
    (tmp_path / "manifest.json").write_text(json.dumps({"incidents": incidents}))
    with closing(sqlite_store.connect(tmp_path / "analytics.db")) as db:
        db.executemany(
            "INSERT INTO anomalies (endpoint, method, window_start, window_end, metric, observed, "
            "baseline_mean, baseline_std, z_score, severity, detected_at) VALUES (?, '*', ?, ?, "
            "'latency_p95_ms', 900, 100, 10, 80, 'critical', '2026-11-30T00:00:00Z')",
            anomalies,
        )
        rows = [
            ("2026-11-30T10:00:00Z", "/a", "GET", 50, 0.0, 10.0),
            ("2026-11-30T10:00:00Z", "/b", "GET", 400, 0.02, 80.0),
            ("2026-11-30T10:00:00Z", "/c", "POST", 19, 0.5, 999.0),  # under the minimum
            ("2026-11-30T10:00:00Z", "/d", "GET", 30, 0.1, 40.0),
            ("2026-11-30T09:59:00Z", "/e", "GET", 500, 0.0, 5000.0),  # an earlier window
        ]
        db.executemany(
            "INSERT INTO endpoint_metrics (window_start, window_end, endpoint, method, requests, "
            "error_rate_5xx, latency_p95_ms, is_final, updated_batch) "
            "VALUES (?, '', ?, ?, ?, ?, ?, 1, 0)",
            rows,
        )


INCIDENTS = [
    {"kind": "latency", "endpoint": "/a", "start": "2026-11-30T10:00:00.000Z",
     "end": "2026-11-30T10:05:00.000Z"},
    {"kind": "errors", "endpoint": "/b", "start": "2026-11-30T11:00:00.000Z",
     "end": "2026-11-30T11:05:00.000Z"},
]  # fmt: skip


def test_evaluate_scores_the_anomalies_against_the_manifest(tmp_path):
    # One true alert on /a, one false alert on /z; /b's incident is missed.
    _run_with(
        tmp_path,
        INCIDENTS,
        [
            ("/a", "2026-11-30T10:01:00Z", "2026-11-30T10:02:00Z"),
            ("/z", "2026-11-30T12:00:00Z", "2026-11-30T12:01:00Z"),
        ],
    )
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = table_rows(out.stdout)
    found = {row[1]: row[5] for row in rows if len(row) == 7}  # the incidents table
    assert found == {"/a": "ewma (2)", "/b": "NO"}  # /a found in its second window
    assert "ewma: alerts 2 (true 1, false 1)" in out.stdout
    assert ["all", "2", "1", "0.500", "0.500", "2"] in rows  # incidents, found, recall, precision


def test_evaluate_names_what_is_missing(tmp_path):
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: no generator manifest at {tmp_path / 'manifest.json'}"
    (tmp_path / "manifest.json").write_text('{"incidents": []}')
    out = cli("evaluate", "--input", str(tmp_path), "--output", str(tmp_path))
    assert out.returncode == 1
    assert f"no analytics database at {tmp_path / 'analytics.db'}" in out.stderr


def test_top_ranks_the_latest_window_leaving_out_small_rows(tmp_path):
    _run_with(tmp_path, [], [])
    out = cli("top", "--by", "p95", "--n", "2", "--output", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "top 2 by p95, window 2026-11-30T10:00:00Z" in out.stdout
    assert table_rows(out.stdout) == [
        ["1", "/b", "GET", "400", "80.0"],
        ["2", "/d", "GET", "30", "40.0"],
    ]
    out = cli("top", "--by", "error_5xx", "--min-requests", "10", "--output", str(tmp_path))
    assert table_rows(out.stdout)[0] == ["1", "/c", "POST", "19", "50.00%"]


def test_top_refuses_an_unknown_ranking(tmp_path):
    _run_with(tmp_path, [], [])
    out = cli("top", "--by", "slowness", "--output", str(tmp_path))
    assert out.returncode == 1
    assert (
        out.stderr.strip() == "error: --by must be one of p95, p99, error_4xx, error_5xx, busiest"
    )


def test_top_reads_its_minimum_from_the_config(tmp_path):
    _run_with(tmp_path, [], [])
    env = {"APISTREAM_REPORT__MIN_RANKED_REQUESTS": "10"}
    out = cli("top", "--by", "error_5xx", "--output", str(tmp_path), env=env)
    assert table_rows(out.stdout)[0] == ["1", "/c", "POST", "19", "50.00%"]


def test_the_rankings_view_ranks_the_rows_over_its_minimum(tmp_path):
    _run_with(tmp_path, [], [])
    with closing(sqlite_store.connect(tmp_path / "analytics.db")) as db:
        db.executescript(ranking_view(25))
        ranks = db.execute(
            "SELECT endpoint, rank_p95 FROM endpoint_rankings "
            "WHERE window_start = '2026-11-30T10:00:00Z' ORDER BY rank_p95"
        ).fetchall()
        assert ranks == [("/b", 1), ("/d", 2), ("/a", 3)]  # not /c: 19 requests
        db.executescript(ranking_view(40))  # replaced: /a, /b and the earlier window's /e
        names = db.execute("SELECT endpoint FROM endpoint_rankings ORDER BY 1").fetchall()
        assert names == [("/a",), ("/b",), ("/e",)]
