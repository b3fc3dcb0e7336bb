"""Reading lake tables without Spark: Hive partitions as columns, and files of an older
schema read together with newer ones."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from apistream.lake import read_table


def test_files_from_before_a_new_column_read_it_as_nulls(tmp_path):
    table = tmp_path / "quarantine"
    old = table / "ingest_date=2026-11-01"
    new = table / "ingest_date=2026-11-29"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    # The quarantine before raw_bytes existed, then after.
    before = pa.table({"raw": ["{bad"], "reason": ["malformed_json"]})
    after = pa.table({"raw": ["?"], "raw_bytes": [b"\xff"], "reason": ["invalid_utf8"]})
    pq.write_table(before, old / "batch-0000000001-0.parquet")
    pq.write_table(after, new / "batch-0000000002-0.parquet")
    got = read_table(table).sort_by("ingest_date").to_pylist()
    assert got == [
        {"raw": "{bad", "reason": "malformed_json", "raw_bytes": None, "ingest_date": "2026-11-01"},
        {"raw": "?", "reason": "invalid_utf8", "raw_bytes": b"\xff", "ingest_date": "2026-11-29"},
    ]
    only = read_table(table, columns=["raw_bytes"]).column("raw_bytes").to_pylist()
    assert sorted(only, key=lambda v: v or b"") == [None, b"\xff"]


def test_an_empty_table_is_an_empty_arrow_table(tmp_path):
    assert read_table(tmp_path / "nothing").num_rows == 0
