"""The Parquet lake without Spark (pyarrow): reading tables, and writing the small per-batch
tables (finalised windows, anomalies) as one file per batch tag, overwritten on a replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


class RowsFile:
    """Writes rows (finalised windows, anomalies) as one Parquet file per tag. A root with a
    scheme (s3a://, gs://, ...) is written through `put` (the bytes of the file)."""

    def __init__(self, root: str, put: Callable[[str, bytes], None] | None = None):
        self.root = root.rstrip("/")
        self.put = put

    def __call__(self, rows: list[dict[str, Any]], tag: str) -> None:
        table = pa.Table.from_pylist([{**r, "finalized_in": tag} for r in rows])
        target = f"{self.root}/{tag}.parquet"
        if "://" in self.root and self.put is not None:
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer)
            self.put(target, buffer.getvalue().to_pybytes())
            return
        if "://" not in self.root:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target)


def committed_files(table_dir: str | Path) -> list[str]:
    """The data files of a lake table (every Parquet file under it; the pipeline removes the
    files of an uncommitted batch when it restarts)."""
    root = Path(table_dir)
    return sorted(str(p) for p in root.rglob("*.parquet") if not p.name.startswith((".", "_")))


def read_table(table_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A lake table (e.g. lake/events) as an Arrow table, Hive partitions as columns. Files
    written before a column was added (e.g. the quarantine's raw_bytes) read it as nulls."""
    files = committed_files(table_dir)
    if not files:
        return pa.table({})
    layout = {"format": "parquet", "partitioning": "hive", "partition_base_dir": str(table_dir)}
    first = ds.dataset(files, **layout)
    schema = pa.unify_schemas([first.schema, *(pq.read_schema(f) for f in files)])
    return ds.dataset(files, schema=schema, **layout).to_table(columns=columns)
