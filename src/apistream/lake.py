"""The Parquet lake without Spark (pyarrow): reading tables, and writing the small per-batch
tables (finalised windows, anomalies) as one file per batch tag, overwritten on a replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


class RowsFile:
    """Writes rows (finalised windows, anomalies) as one Parquet file per tag."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def __call__(self, rows: list[dict[str, Any]], tag: str) -> None:
        table = pa.Table.from_pylist([{**r, "finalized_in": tag} for r in rows])
        if "://" not in self.root:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, f"{self.root}/{tag}.parquet")


def committed_files(table_dir: str | Path) -> list[str]:
    """Data files a Spark file sink committed under table_dir (latest compaction + later
    batches of _spark_metadata); all Parquet files when there is no commit log."""
    root = Path(table_dir)
    log = root / "_spark_metadata"
    if not log.is_dir():
        return sorted(str(p) for p in root.rglob("*.parquet") if not p.name.startswith((".", "_")))
    entries = {}
    for f in log.iterdir():
        if f.name.startswith("."):
            continue
        batch = int(f.name.split(".")[0])
        entries[batch] = f
    compacts = [b for b, f in entries.items() if f.name.endswith(".compact")]
    start = max(compacts) if compacts else -1
    files: dict[str, bool] = {}
    for batch in sorted(b for b in entries if b >= start):
        for line in entries[batch].read_text().splitlines()[1:]:
            item = json.loads(line)
            path = item["path"].removeprefix("file://").removeprefix("file:")
            files[path] = item.get("action", "add") == "add"
    return sorted(p for p, added in files.items() if added)


def read_table(table_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A lake table (e.g. lake/events) as an Arrow table, Hive partitions as columns."""
    files = committed_files(table_dir)
    if not files:
        return pa.table({})
    dataset = ds.dataset(
        files, format="parquet", partitioning="hive", partition_base_dir=str(table_dir)
    )
    return dataset.to_table(columns=columns)
