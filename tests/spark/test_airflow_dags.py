"""The Airflow DAGs (deploy/airflow/dags) run by Airflow itself, `airflow dags test`, over a
copy of a real pipeline run: the hourly DAG writes the previous hour's rollups and reconciles
them, and fails at once, without a retry, when the stream's metrics are spoilt; the daily DAG
writes the day and the report."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from apistream.config import load_config
from apistream.lake import read_table

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parents[2] / "deploy" / "airflow" / "dags"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """An Airflow home with its metadata database, our DAGs folder and no examples."""
    home = tmp_path_factory.mktemp("airflow")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("APISTREAM_", "AIRFLOW"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    subprocess.run([airflow(), "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def airflow() -> str:
    """The `airflow` command beside this Python (the [airflow] extra)."""
    found = shutil.which("airflow", path=str(Path(sys.executable).parent))
    assert found, "airflow is not installed: make setup installs the [airflow] extra"
    return found


def dags_test(env: dict[str, str], dag: str, logical: pd.Timestamp, output: Path):
    return subprocess.run(
        [airflow(), "dags", "test", dag, logical.isoformat(), "-c", f'{{"output": "{output}"}}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def output(pipeline_output, tmp_path) -> Path:
    """A copy of a finished run's lake and SQLite (the DAGs write to it), without a report."""
    copy = tmp_path / "out"
    shutil.copytree(pipeline_output.sinks.output, copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    return copy


def sqlite_of(output: Path) -> str:
    return load_config(environ={}, overrides={"sinks.output": str(output)}).sqlite_path


def events_of(output: Path) -> pd.DataFrame:
    events = read_table(str(output / "lake" / "events")).to_pandas()
    return events.assign(hour=events["event_time"].dt.floor("h"))


def test_hourly_dag_rolls_up_the_previous_hour_and_fails_on_a_mismatch(airflow_env, output):
    events = events_of(output)
    hour = events["hour"].mode()[0]
    in_hour = events[events["hour"] == hour]
    logical = (hour + timedelta(hours=1, minutes=10)).tz_localize("UTC")

    done = dags_test(airflow_env, "apistream_hourly", logical, output)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sqlite = sqlite_of(output)
    want = in_hour.groupby(["endpoint", "method"]).size()
    with sqlite3.connect(sqlite) as db:
        got = pd.read_sql("SELECT * FROM rollup_hourly", db)
        assert db.execute("SELECT COUNT(*) FROM reconciliation_mismatches").fetchone()[0] == 0
    assert set(got["period_start"]) == {hour.strftime("%Y-%m-%dT%H:00:00Z")}
    assert got.set_index(["endpoint", "method"])["requests"].sort_index().equals(want.sort_index())

    # One window of that hour miscounted in the stream's metrics: the task fails at once.
    with sqlite3.connect(sqlite) as db:
        window = db.execute(
            "SELECT MIN(window_start) FROM endpoint_metrics WHERE window_start >= ?",
            (hour.strftime("%Y-%m-%dT%H:%M:%SZ"),),
        ).fetchone()[0]
        db.execute(
            "UPDATE endpoint_metrics SET requests = requests + 1 WHERE rowid = "
            "(SELECT MIN(rowid) FROM endpoint_metrics WHERE window_start = ?)",
            (window,),
        )
    failed = dags_test(airflow_env, "apistream_hourly", logical, output)

    log = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "AirflowFailException: reconciliation failed" in log
    assert "up_for_retry" not in log
    with sqlite3.connect(sqlite) as db:
        windows = {r[0] for r in db.execute("SELECT window_start FROM reconciliation_mismatches")}
    assert windows == {window}


def test_daily_dag_rolls_up_the_previous_day_then_writes_the_report(airflow_env, output):
    events = events_of(output)
    day = events["event_time"].dt.floor("D").mode()[0]
    on_day = events[events["event_time"].dt.floor("D") == day]
    logical = (day + timedelta(days=1, minutes=30)).tz_localize("UTC")

    done = dags_test(airflow_env, "apistream_daily", logical, output)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(sqlite_of(output)) as db:
        daily = pd.read_sql("SELECT * FROM rollup_daily", db)
        hourly = pd.read_sql(
            "SELECT period_start, SUM(requests) AS n FROM rollup_hourly GROUP BY 1", db
        )
    assert set(daily["period_start"]) == {day.strftime("%Y-%m-%dT00:00:00Z")}
    assert daily["requests"].sum() == len(on_day)
    assert hourly["n"].sum() == len(on_day)
    assert "report: " in done.stdout + done.stderr  # the task's output, in Airflow's log
    assert (output / "report" / "report.html").is_file()
