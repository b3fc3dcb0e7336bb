"""Airflow DAGs for APIStream's batch analytics over the lake.

- `apistream_hourly`, at 10 past each hour: `apistream batch` for the previous hour (hourly
  rollups, SLO report, latency outliers) with its reconciliation of the stream's window
  metrics against the events lake.
- `apistream_daily`, at 00:30 UTC: `apistream batch` for the previous day (daily rollups
  too), then `apistream report` (the HTML report and charts).

A reconciliation mismatch (exit 3) or a bad option or config (exit 2) fails its task at once:
a retry would meet the same data or the same config. Any other failure (Spark could not start,
the disk is full) is retried. The batch runs read only what the stream has committed, so they
can run beside it; the hourly and the daily run may overlap (they replace different rollup
rows, and the Parquet copies are replaced whole, by rename).

Install `apistream[airflow]` and copy this file into Airflow's dags folder. Each run's params
(or `-c '{"output": "..."}'` on a manual run): `apistream`, the command (default: the one
beside Airflow's Python); `config`, the YAML config file; `output`, the root of lake and
SQLite. An empty one is not passed.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# apistream's exit codes that a retry cannot mend: the lake and the stream differ (3); a bad
# option or config (2).
FINAL = {3: "reconciliation failed: the lake and the stream differ", 2: "bad option or config"}

_beside = Path(sys.executable).with_name("apistream")
PARAMS = {
    "apistream": Param(str(_beside) if _beside.exists() else "apistream", type="string"),
    "config": Param("", type="string", description="YAML config file ('' for the default)"),
    "output": Param("", type="string", description="Root of lake and SQLite ('' for config)"),
}
DEFAULTS = {"owner": "apistream", "retries": 1, "retry_delay": timedelta(minutes=5)}


def run_apistream(*args: str) -> None:
    """`apistream <args>` with the run's config and output; its output goes to the task log."""
    params = get_current_context()["params"]
    command = [params["apistream"], *args]
    for option in ("config", "output"):
        if params[option]:
            command += [f"--{option}", params[option]]
    print("running", shlex.join(command), flush=True)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
    if proc.returncode in FINAL:
        raise AirflowFailException(FINAL[proc.returncode])
    if proc.returncode:
        raise AirflowException(f"apistream {args[0]} exited {proc.returncode}")


def run_time() -> datetime:
    """When the run is for: its logical date, or for a manual run without one, when it was
    asked to run."""
    context = get_current_context()
    return context.get("logical_date") or context["dag_run"].run_after


def scheduled_dag(dag_id: str, schedule: str, description: str) -> DAG:
    return DAG(
        dag_id,
        description=description,
        schedule=CronTriggerTimetable(schedule, timezone="UTC"),
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,  # runs of one DAG take turns
        default_args=DEFAULTS,
        params=PARAMS,
        doc_md=__doc__,
        tags=["apistream"],
    )


with scheduled_dag(
    "apistream_hourly", "10 * * * *", "Rollups and reconciliation of the previous hour"
) as hourly:

    @task
    def batch_previous_hour() -> None:
        hour = (run_time() - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
        run_apistream("batch", "--from", hour, "--to", hour)

    batch_previous_hour()


with scheduled_dag(
    "apistream_daily", "30 0 * * *", "Rollups and reconciliation of the previous day, report"
) as daily:

    @task
    def batch_previous_day() -> None:
        day = (run_time() - timedelta(days=1)).strftime("%Y-%m-%d")
        run_apistream("batch", "--from", day, "--to", day)

    @task
    def report() -> None:
        run_apistream("report")

    batch_previous_day() >> report()
