"""The dedup state: keys (request_id, event_time) of the events accepted in earlier batches
that a later batch may still repeat, one small Parquet file set per batch under the
checkpoint (`<checkpoint>/dedup/batch-<id>`).

A record is a duplicate when its key was accepted before (in this batch or an earlier one);
it is late when its event time is at or below the batch's late cut-off
(window_metrics.late_cutoff). A key at or below the cut-off can only match late records, so
a batch's keys are deleted once its newest event time falls below it: the state stays
bounded by the watermark. A batch's keys are written before its SQLite commit and replaced on
a replay; after a crash, the keys of uncommitted batches are deleted, so the state always
equals the keys of the committed events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.pipeline.aggregate import ISO_MS
from apistream.pipeline.lake_writer import HadoopFs

KEYS = ("request_id", "event_time")
HASH = "key_hash"
_CHUNK = re.compile(r"^batch-(\d{10})$")


def with_key_hash(df: DataFrame) -> DataFrame:
    """A 64-bit hash of the key: duplicates are found on it first, then checked exactly."""
    return df.withColumn(HASH, F.xxhash64(*KEYS))


def key_condition(cutoff: str | None) -> Column:
    """Event time after the cut-off (everything when there is none)."""
    if cutoff is None:
        return F.lit(True)
    return F.col("event_time") > F.to_timestamp(F.lit(cutoff))


@dataclass
class _Chunk:
    batch_id: int
    newest: str | None
    path: str
    rows: int


@dataclass
class DedupState:
    spark: SparkSession
    root: str
    chunks: list[_Chunk] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fs = HadoopFs(self.spark, self.root)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    def keys(self) -> DataFrame | None:
        """Every kept key (HASH and KEYS), or None."""
        paths = [c.path for c in self.chunks if c.rows]
        return self.spark.read.parquet(*paths) if paths else None

    def add(self, batch_id: int, keys: DataFrame, newest: str | None, floor: str | None) -> None:
        """Keep the keys a batch accepted that are after `floor` (the next batch's late
        cut-off: keys at or below it can only match late records)."""
        path = f"{self.root}/batch-{batch_id:010d}"
        kept = keys.filter(key_condition(floor)).select(HASH, *KEYS)
        kept.write.mode("overwrite").parquet(path)
        rows = self.spark.read.parquet(path).count()  # from the file footers
        self.chunks = [c for c in self.chunks if c.batch_id != batch_id]
        self.chunks.append(_Chunk(batch_id, newest, path, rows))

    def evict(self, cutoff: str | None) -> None:
        """Delete the chunks whose every key is at or below the cut-off."""
        if cutoff is None:
            return
        keep = []
        for c in self.chunks:
            if c.newest is not None and c.newest <= cutoff:
                self.fs.delete(c.path)
            else:
                keep.append(c)
        self.chunks = keep

    def restore(self, last_committed: int) -> None:
        """After a restart: keep the chunks of committed batches, delete the others."""
        self.chunks = []
        for name in self.fs.children():
            match = _CHUNK.match(name)
            if not match:
                continue
            path = f"{self.root}/{name}"
            batch_id = int(match.group(1))
            if batch_id > last_committed:
                self.fs.delete(path)
                continue
            frame = self.spark.read.parquet(path)
            newest, rows = frame.agg(
                F.date_format(F.max("event_time"), ISO_MS), F.count(F.lit(1))
            ).first()
            self.chunks.append(_Chunk(batch_id, newest, path, rows))


def drop_seen(candidates: DataFrame, state: DedupState, oldest: str | None) -> DataFrame:
    """The candidates (with HASH; event times from `oldest` on) minus repeats within them
    and keys accepted earlier.

    Only hashes are shuffled: a hash seen twice among the candidates, or also among the kept
    keys of the same event-time range, marks a suspect (a handful per batch, collected); only
    suspects are compared on the full key, every other row passes without a shuffle."""
    marks = candidates.select(HASH, F.lit(1).alias("new"))
    seen = state.keys()
    if seen is not None and oldest is not None:
        seen = seen.filter(F.col("event_time") >= F.to_timestamp(F.lit(oldest)))
        marks = marks.unionByName(seen.select(HASH, F.lit(0).alias("new")))
    counts = marks.groupBy(HASH).agg(F.sum("new").alias("new"), F.count(F.lit(1)).alias("n"))
    repeated = (F.col("new") > 1) | ((F.col("new") > 0) & (F.col("n") > F.col("new")))
    hashes = [r[0] for r in counts.filter(repeated).select(HASH).collect()]  # a few: small
    if not hashes:
        return candidates
    spark = candidates.sparkSession
    suspects = F.broadcast(spark.createDataFrame([(h,) for h in hashes], f"{HASH} bigint"))
    clear = candidates.join(suspects, HASH, "left_anti")
    rows = candidates.join(suspects, HASH, "left_semi").dropDuplicates(list(KEYS))
    if seen is not None:
        earlier = seen.join(suspects, HASH, "left_semi").select(*KEYS)
        rows = rows.join(earlier, list(KEYS), "left_anti")
    return clear.unionByName(rows)
