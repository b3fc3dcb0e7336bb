"""CLI behaviour that needs no JVM: help everywhere, and one clear error, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "apistream.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


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
