"""A micro-batch's own values as columns, not literals, so each batch reuses the code Spark
generated for the previous one.

Spark inlines a timestamp or number literal into the Java code it generates for a query, and
caches generated classes by their source text. A batch whose plan holds its own ingest time
or cut-off as literals therefore compiles ~12 new classes, which the JVM's JIT then compiles
again while they run: on 2 cores that took about a third of every batch
(docs/performance.md). Joined from a one-row broadcast, the same values are columns, and every
batch after the first runs code that is already compiled. Row-id sets go through a hash set
for the same reason (`row_id_in`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.timefmt import parse_iso

INGEST_TIME = "ingest_time"
LATE_CUTOFF = "late_cutoff"
DEDUP_BOUND = "dedup_bound"
_DDL = f"{INGEST_TIME} timestamp, {LATE_CUTOFF} timestamp, {DEDUP_BOUND} timestamp"
# Spark turns `isin` into a hash-set lookup (InSet, the set passed by reference) only above
# spark.sql.optimizer.inSetConversionThreshold (10) values; below it the values are inlined.
# Row ids are never negative, so negative ones pad a short list past the threshold.
_ROW_ID_PAD = tuple(range(-1, -33, -1))


def with_batch_values(
    spark: SparkSession,
    lines: DataFrame,
    ingest_time: datetime,
    cutoff: str | None,
    newest: str | None,
) -> DataFrame:
    """Adds the batch's ingest time, its late cut-off (events at or below it are late; null:
    none) and its dedup bound (only candidates older than it can repeat a kept event: the
    newest kept event time plus 1 ms, as it is kept to the millisecond; null: none kept)."""
    bound = _utc(newest) + timedelta(milliseconds=1) if newest is not None else None
    values = spark.createDataFrame([(ingest_time, _utc(cutoff), bound)], _DDL)
    return lines.crossJoin(F.broadcast(values))


def _utc(text: str | None) -> datetime | None:
    return None if text is None else parse_iso(text).replace(tzinfo=UTC)


def after_cutoff() -> Column:
    """Event time after the batch's late cut-off (everything when there is none)."""
    return F.col(LATE_CUTOFF).isNull() | (F.col("event_time") > F.col(LATE_CUTOFF))


def before_dedup_bound() -> Column:
    """Event time old enough to repeat a kept event (nothing when none is kept)."""
    return F.col("event_time") < F.col(DEDUP_BOUND)


def row_id_in(column: str, row_ids: list[int]) -> Column:
    """`column` is one of `row_ids`, looked up in a hash set whatever the list's length.

    Written as one SQL expression: `Column.isin` makes a JVM call per value, and a batch of
    200k lines drops ~5,000 rows (0.7 s of driver time; docs/performance.md)."""
    ids = ",".join(str(int(i)) for i in (*row_ids, *_ROW_ID_PAD))
    return F.expr(f"`{column}` IN ({ids})")
