"""Deduplication on the key (request_id, event_time).

A record is a duplicate when its key was accepted before, in this batch or an earlier one;
it is late when its event time is at or below the batch's late cut-off
(window_metrics.late_cutoff). Keys are compared as a 128-bit identity, two independent
64-bit xxhash64 values of the key (KEY_HASHES), which the events lake stores with every event.
Two different keys share an identity with probability ~2^-128 per pair: about 1e-26 for a
batch of 100k keys checked against 10M kept ones.

The dedup state is the events lake itself: the identities of the batches still within the
watermark, read from their files (two 64-bit columns; no extra writes and nothing to restore
after a restart). A key at or below the cut-off can only match late
records, so a batch drops out of the state once its newest event time falls below it.

Within a batch each record carries a row id (ROW_ID, fixed when the batch is cached); the
row ids to drop are found by one job (a shuffle and a join of identities only) and applied
as a filter (batch_values.row_id_in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from apistream.pipeline.batch_values import DEDUP_BOUND, before_dedup_bound

KEYS = ("request_id", "event_time")
KEY_HASHES = ("key_hash1", "key_hash2")
ROW_ID = "row_id"
# A second, independent hash of the same key: xxhash64 seeded through a leading constant.
_SALT = "apistream-dedup"
_STATE_DDL = "key_hash1 bigint, key_hash2 bigint"


def with_key_hashes(df: DataFrame) -> DataFrame:
    """Adds the 128-bit identity of the key as two 64-bit columns."""
    return df.withColumns(
        {KEY_HASHES[0]: F.xxhash64(*KEYS), KEY_HASHES[1]: F.xxhash64(F.lit(_SALT), *KEYS)}
    )


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

    @property
    def newest(self) -> str | None:
        """The newest event time kept (ISO text), None if none is known."""
        times = [c.newest for c in self.chunks if c.newest is not None]
        return max(times) if times else None

    def identities(self) -> DataFrame | None:
        """The identities kept from the batches within the watermark (None if none)."""
        files = [f for c in self.chunks for f in c.files]
        if not files:
            return None
        return self.spark.read.schema(_STATE_DDL).parquet(*files)

    def add(self, chunk: Chunk) -> None:
        self.chunks = [c for c in self.chunks if c.batch_id != chunk.batch_id] + [chunk]

    def evict(self, cutoff: str | None) -> None:
        """Forget the batches whose every key is at or below the cut-off."""
        if cutoff is not None:
            self.chunks = [c for c in self.chunks if c.newest is None or c.newest > cutoff]


def repeated_rows(candidates: DataFrame, state: DedupState) -> DataFrame:
    """Row ids of the candidates (ROW_ID, KEY_HASHES, event_time, DEDUP_BOUND from
    batch_values.with_batch_values) to drop: every row of an
    identity kept earlier, and all but the first row of an identity seen twice within the
    batch. Only 64-bit columns are shuffled or joined, and only candidates no newer than the
    newest kept event can match a kept identity (the key holds the event time): in a stream
    those are a few late and re-delivered ones, broadcast against the kept identities."""
    ids = candidates.select(ROW_ID, *KEY_HASHES, "event_time", DEDUP_BOUND)
    order = Window.partitionBy(*KEY_HASHES).orderBy(ROW_ID)
    within = ids.withColumn("n", F.row_number().over(order)).filter("n > 1").select(ROW_ID)
    kept, newest = state.identities(), state.newest
    if kept is None or newest is None:
        return within
    older = ids.filter(before_dedup_bound()).select(ROW_ID, *KEY_HASHES)
    earlier = kept.join(F.broadcast(older), list(KEY_HASHES)).select(ROW_ID)
    return within.unionByName(earlier)
