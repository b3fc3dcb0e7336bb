"""What Spark logged in the query's checkpoint before running a batch: its timestamp and, for
the file source, the files it reads. Read through Hadoop's FileSystem, so checkpoints on
object stores work alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pyspark.sql import SparkSession


def _read(spark: SparkSession, path: str) -> str | None:
    """A checkpoint file's text, or None if it does not exist."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def batch_timestamp(spark: SparkSession, checkpoint: str, batch_id: int) -> datetime:
    """The batch's timestamp, as Spark logged it in the offset log before running the batch
    (what `current_timestamp()` gives in a stream), so a replayed batch gets the same ingest
    time and the same future/stale verdicts."""
    text = _read(spark, f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    if text is None:
        raise FileNotFoundError(f"no offset log for batch {batch_id} under {checkpoint}")
    # Line 1 is the log's version, line 2 the batch's metadata, then one line per source.
    millis = json.loads(text.splitlines()[1])["batchTimestampMs"]
    return datetime.fromtimestamp(millis / 1000, UTC)


def batch_files(spark: SparkSession, checkpoint: str, batch_id: int) -> list[str]:
    """The files the file source reads in a batch, from its metadata log (sources/0/<id>, or
    the compacted <id>.compact every 10th batch, which lists every batch's files)."""
    base = f"{checkpoint.rstrip('/')}/sources/0/{batch_id}"
    text = _read(spark, base)
    if text is None:
        text = _read(spark, f"{base}.compact") or ""
    entries = [json.loads(line) for line in text.splitlines()[1:] if line.startswith("{")]
    return [e["path"] for e in entries if e.get("batchId", batch_id) == batch_id]
