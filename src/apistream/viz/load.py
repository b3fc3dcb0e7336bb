"""Reading a run's results without Spark: SQLite read-only (short transactions, never blocking
the streaming writer) and the Parquet lake through `apistream.lake`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from apistream.errors import ApiStreamError
from apistream.lake import read_table

ANOMALIES = "anomalies"
ANOMALY_COLUMNS = [
    "endpoint",
    "method",
    "window_start",
    "window_end",
    "metric",
    "observed",
    "baseline_mean",
    "baseline_std",
    "z_score",
    "severity",
    "detected_at",
]


class ResultsNotFound(ApiStreamError):
    """There is no analytics database where one was expected."""


def sqlite_path(output: str | Path, sqlite_file: str = "analytics.db") -> Path:
    """The SQLite database of a run whose root is `output`."""
    return Path(output) / sqlite_file


@contextmanager
def read_only(path: str | Path, timeout_s: float = 2.0) -> Iterator[sqlite3.Connection]:
    """A read-only connection holding one read transaction (a consistent snapshot).

    In WAL mode a reader never blocks the writer; keep the block short so checkpoints can
    proceed. Raises ResultsNotFound naming the path when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsNotFound(f"no analytics database at {path} (run `apistream stream` first)")
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s, isolation_level=None
    )
    with closing(conn):
        conn.execute("PRAGMA query_only = 1")
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether a table or view exists (the anomalies table arrives with issue 3)."""
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
    anomalies: pd.DataFrame | None
    source: str

    @property
    def empty(self) -> bool:
        return self.metrics.empty and self.quality.empty


def load_results(path: str | Path) -> Results:
    """Every table of the SQLite database at `path`; `anomalies` is None until it exists."""
    with read_only(path) as conn:
        anomalies = (
            pd.read_sql("SELECT * FROM anomalies ORDER BY window_start, endpoint", conn)
            if has_table(conn, ANOMALIES)
            else None
        )
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
            anomalies=anomalies,
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
