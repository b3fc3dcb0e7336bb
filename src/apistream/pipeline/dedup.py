"""The dedup state: the keys (request_id, event_time) of events accepted in earlier batches
that a later batch may still repeat. They are the events lake's own files of those batches
(only the two key columns are read), so the state costs no writes and needs no restore: after
a restart it is the files of the committed batches.

A record is a duplicate when its key was accepted before (in this batch or an earlier one);
it is late when its event time is at or below the batch's late cut-off
(window_metrics.late_cutoff). A key at or below the cut-off can only match late records, so
a batch drops out of the state once its newest event time falls below it: the state stays
bounded by the watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

KEYS = ("request_id", "event_time")
HASH = "key_hash"
_KEYS_DDL = "request_id string, event_time timestamp"


def with_key_hash(df: DataFrame) -> DataFrame:
    """A 64-bit hash of the key: duplicates are found on it first, then checked exactly."""
    return df.withColumn(HASH, F.xxhash64(*KEYS))


def key_condition(cutoff: str | None) -> Column:
    """Event time after the cut-off (everything when there is none)."""
    if cutoff is None:
        return F.lit(True)
    return F.col("event_time") > F.to_timestamp(F.lit(cutoff))


@dataclass
class Chunk:
    """The events one committed batch accepted: its lake files and newest event time."""

    batch_id: int
    newest: str | None
    files: list[str]
    rows: int


@dataclass
class DedupState:
    spark: SparkSession
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    def keys(self, oldest: str | None = None) -> DataFrame | None:
        """The kept keys from event time `oldest` on, with their hash (None if there are
        none): batches all older are not read, and Parquet skips older row groups."""
        files = [f for c in self.chunks if _reaches(c, oldest) for f in c.files]
        if not files:
            return None
        keys = self.spark.read.schema(_KEYS_DDL).parquet(*files)
        if oldest is not None:
            keys = keys.filter(F.col("event_time") >= F.to_timestamp(F.lit(oldest)))
        return keys.transform(with_key_hash)

    def add(self, chunk: Chunk) -> None:
        self.chunks = [c for c in self.chunks if c.batch_id != chunk.batch_id] + [chunk]

    def evict(self, cutoff: str | None) -> None:
        """Forget the batches whose every key is at or below the cut-off."""
        if cutoff is not None:
            self.chunks = [c for c in self.chunks if c.newest is None or c.newest > cutoff]


def _reaches(chunk: Chunk, oldest: str | None) -> bool:
    return oldest is None or chunk.newest is None or chunk.newest >= oldest


def drop_seen(candidates: DataFrame, state: DedupState, oldest: str | None) -> DataFrame:
    """The candidates (with HASH; event times from `oldest` on) minus repeats within them
    and keys accepted earlier.

    Only hashes are shuffled: a hash seen twice among the candidates, or also among the kept
    keys of the same event-time range, marks a suspect (a handful per batch, collected); only
    suspects are compared on the full key, every other row passes without a shuffle."""
    marks = candidates.select(HASH, F.lit(1).alias("new"))
    seen = state.keys(oldest)
    if seen is not None:
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
