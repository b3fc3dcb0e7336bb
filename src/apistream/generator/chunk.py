"""A chunk of generated lines (one file or one Kafka send) and the JSON encoding of records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from apistream.fields import RAW_FIELDS


@dataclass
class Chunk:
    """The lines of one file or Kafka chunk and the endpoint index of each line."""

    lines: list[str]
    eps: np.ndarray


def encode_lines(records: pl.DataFrame) -> list[str]:
    """One JSON line per record, with the raw fields in order and ts_ms as an ISO timestamp."""
    ts = pl.from_epoch(pl.col("ts_ms"), time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    fields = [ts.alias(f) if f == "timestamp" else pl.col(f) for f in RAW_FIELDS]
    return records.select(pl.struct(*fields).struct.json_encode()).to_series().to_list()
