"""Reading a run's results without Spark: SQLite read-only (short transactions, never blocking
the streaming writer) and the Parquet lake through `apistream.lake`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from apistream.lake import read_table
from apistream.sqlite_store import read_only

ANOMALIES = "anomalies"


def sqlite_path(output: str | Path, sqlite_file: str = "analytics.db") -> Path:
    """The SQLite database of a run whose root is `output`."""
    return Path(output) / sqlite_file


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a table or view exists."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _frame(conn: sqlite3.Connection, table: str, sql: str) -> pd.DataFrame:
    return pd.read_sql(sql, conn) if has_table(conn, table) else pd.DataFrame()


@dataclass(frozen=True)
class Results:
    """The tables of one run, as pandas frames (empty when absent)."""

    metrics: pd.DataFrame
    throughput: pd.DataFrame
    quality: pd.DataFrame
    reasons: pd.DataFrame
    endpoints: pd.DataFrame
    anomalies: pd.DataFrame
    source: str

    @property
    def empty(self) -> bool:
        return self.metrics.empty and self.quality.empty


def load_results(path: str | Path) -> Results:
    """Every table of the SQLite database at `path`."""
    with read_only(path) as conn:
        return Results(
            metrics=_frame(
                conn,
                "endpoint_metrics",
                "SELECT * FROM endpoint_metrics ORDER BY window_start, endpoint, method",
            ),
            throughput=_frame(
                conn, "throughput", "SELECT * FROM throughput ORDER BY granularity, period_start"
            ),
            quality=_frame(conn, "data_quality", "SELECT * FROM data_quality ORDER BY batch_id"),
            reasons=_frame(
                conn,
                "quarantine_reasons",
                "SELECT reason, records FROM quarantine_reasons ORDER BY records DESC, reason",
            ),
            endpoints=_frame(conn, "endpoints", "SELECT * FROM endpoints ORDER BY endpoint"),
            anomalies=_frame(
                conn, ANOMALIES, "SELECT * FROM anomalies ORDER BY window_start, endpoint"
            ),
            source=str(path),
        )


def read_final_windows(lake_dir: str | Path) -> pd.DataFrame:
    """Finalised windows from the Parquet lake (lake/endpoint_metrics); a window re-finalised
    after more input appears once, with its latest row (by the batch in `finalized_in`)."""
    if not Path(lake_dir).is_dir():
        return pd.DataFrame()
    df = read_table(lake_dir).to_pandas()
    if df.empty:
        return df
    df = df.sort_values("finalized_in", key=lambda s: s.str[-10:] + s.str[:1], kind="stable")
    key = ["window_start", "endpoint", "method"]
    return df.drop_duplicates(key, keep="last").sort_values(key).reset_index(drop=True)
