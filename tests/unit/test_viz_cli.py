"""The report and dashboard commands without a JVM: flags, and clear errors."""

from __future__ import annotations

import pytest
from cli_runner import cli


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("report", ["--config", "--output"]),
        ("dashboard", ["--config", "--output", "--host", "--port"]),
    ],
)
def test_help_offers_the_flags(command, flags):
    out = cli(command, "--help")
    assert out.returncode == 0
    assert all(f in out.stdout for f in flags)


def test_report_without_results_names_the_database(tmp_path):
    out = cli("report", "--output", str(tmp_path))
    assert out.returncode == 1
    assert f"no analytics database at {tmp_path / 'analytics.db'}" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_dashboard_port_is_a_config_error():
    out = cli("dashboard", "--port", "70000")
    assert out.returncode == 2
    assert "dashboard.port" in out.stderr
