"""What Spark logged in the query's checkpoint before running a batch: its timestamp and, for
the file source, the files it reads. Read through Hadoop's FileSystem, so checkpoints on
object stores work alike."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession


def _hadoop(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """A checkpoint path as Hadoop's Path, and its FileSystem."""
    hpath = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hpath, hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def _read(spark: SparkSession, path: str) -> str | None:
    """A checkpoint file's text, or None if it does not exist."""
    hpath, fs = _hadoop(spark, path)
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def _offset_log(spark: SparkSession, checkpoint: str, batch_id: int) -> list[str]:
    """The lines of a batch's offset log: its version, the batch's metadata, then one offset
    per source."""
    text = _read(spark, f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    if text is None:
        raise FileNotFoundError(f"no offset log for batch {batch_id} under {checkpoint}")
    return text.splitlines()


def batch_timestamp(spark: SparkSession, checkpoint: str, batch_id: int) -> datetime:
    """The batch's timestamp, as Spark logged it in the offset log before running the batch
    (what `current_timestamp()` gives in a stream), so a replayed batch gets the same ingest
    time and the same future/stale verdicts."""
    millis = json.loads(_offset_log(spark, checkpoint, batch_id)[1])["batchTimestampMs"]
    return datetime.fromtimestamp(millis / 1000, UTC)


def source_batches(spark: SparkSession, checkpoint: str, batch_id: int) -> range:
    """The file source's own batches (its metadata log, sources/0/<id>) that a query batch
    reads: those after the previous batch's source offset, up to its own.

    Normally one, with the query batch's id. But the file source logs the files of its next
    batch before Spark logs the query batch's offsets, so a crash between the two leaves
    source batch N logged and query batch N not; after a restart, query batch N reads source
    batches N and N + 1, and every later query batch id is one less than its source batch's.
    """

    def log_offset(batch: int) -> int:
        if batch < 0:
            return -1
        return int(json.loads(_offset_log(spark, checkpoint, batch)[2])["logOffset"])

    return range(log_offset(batch_id - 1) + 1, log_offset(batch_id) + 1)


def last_committed(spark: SparkSession, checkpoint: str) -> int | None:
    """The newest batch the query committed (its commit log, commits/<id>), None if none."""
    commits, fs = _hadoop(spark, f"{checkpoint.rstrip('/')}/commits")
    if not fs.exists(commits):
        return None
    ids = [int(n) for s in fs.listStatus(commits) if (n := s.getPath().getName()).isdigit()]
    return max(ids, default=None)


def batch_files(spark: SparkSession, checkpoint: str, batch_id: int) -> list[str]:
    """The files of one of the file source's batches, from its metadata log (sources/0/<id>,
    or the compacted <id>.compact every 10th batch, which lists every batch's files)."""
    base = f"{checkpoint.rstrip('/')}/sources/0/{batch_id}"
    text = _read(spark, base)
    if text is None:
        text = _read(spark, f"{base}.compact") or ""
    entries = [json.loads(line) for line in text.splitlines()[1:] if line.startswith("{")]
    return [e["path"] for e in entries if e.get("batchId", batch_id) == batch_id]


def as_file_path(uri: str) -> str:
    """A path of the source's log in the form a row's `_metadata.file_path` has: both are
    URL-encoded, but the log writes a local file `file:///p` and the row `file:/p`."""
    return re.sub(r"^file:/+", "file:/", uri)
