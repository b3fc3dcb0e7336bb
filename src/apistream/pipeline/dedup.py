"""The dedup state: keys (request_id, event_time) of the events accepted in earlier batches
that a later batch may still repeat, kept as one cached DataFrame per batch.

A record is a duplicate when its key was accepted before; it is late when its event time is
at or below the batch's late cut-off (window_metrics.late_cutoff). A key whose event time is
at or below the cut-off can only match late records, so a batch's keys are dropped once its
newest event time falls below it: the state stays bounded by the watermark. After a restart
the state is rebuilt from the committed events lake, which holds exactly the accepted keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.pipeline.aggregate import ISO_MS

KEYS = ("request_id", "event_time")


def key_condition(cutoff: str | None) -> F.Column:
    """Event time after the cut-off (everything when there is none)."""
    if cutoff is None:
        return F.lit(True)
    return F.col("event_time") > F.to_timestamp(F.lit(cutoff))


@dataclass
class _Chunk:
    batch_id: int
    newest: str | None
    keys: DataFrame
    rows: int


@dataclass
class DedupState:
    chunks: list[_Chunk] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chunks)

    def keys(self) -> DataFrame | None:
        """Every kept key (a union of the cached chunks), or None."""
        frames = [c.keys for c in self.chunks if c.rows]
        if not frames:
            return None
        out = frames[0]
        for f in frames[1:]:
            out = out.unionByName(f)
        return out

    def add(self, batch_id: int, keys: DataFrame, newest: str | None) -> None:
        """Cache and keep the keys a batch accepted."""
        cached = keys.select(*KEYS).persist(StorageLevel.MEMORY_AND_DISK)
        self.chunks.append(_Chunk(batch_id, newest, cached, cached.count()))

    def evict(self, cutoff: str | None) -> None:
        """Drop the chunks whose every key is at or below the cut-off."""
        if cutoff is None:
            return
        keep = []
        for c in self.chunks:
            if c.newest is not None and c.newest <= cutoff:
                c.keys.unpersist()
            else:
                keep.append(c)
        self.chunks = keep

    def restore(self, spark: SparkSession, events: DataFrame | None, cutoff: str | None) -> None:
        """Rebuild from the events lake: the keys of accepted events after the cut-off."""
        self.clear()
        if events is None:
            return
        recent = events.filter(key_condition(cutoff))
        if cutoff is not None:
            day = cutoff[:10]
            recent = recent.filter(F.col("date") >= day)
        newest = recent.agg(F.date_format(F.max("event_time"), ISO_MS)).first()[0]
        self.add(-1, recent, newest)

    def clear(self) -> None:
        for c in self.chunks:
            c.keys.unpersist()
        self.chunks = []
