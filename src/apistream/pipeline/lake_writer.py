"""Batch-named Parquet files in the lake, so the files of an uncommitted batch can be found
and removed after a crash (`remove_batches_after`) before it is written again. Spark writes
the batch into a staging directory, then each file is renamed into its partition as
`batch-<id>-<n>.parquet`. Paths go through Hadoop's FileSystem, so local directories and
object stores (s3a://, gs://, abfss://) work alike."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession

_BATCH_FILE = re.compile(r"batch-(\d{10})-\d{4}\.parquet$")


def hadoop_put(spark: SparkSession) -> Callable[[str, bytes], None]:
    """Writes a whole file through Hadoop's FileSystem (object stores included), replacing it."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()

    def put(uri: str, data: bytes) -> None:
        path = jvm.org.apache.hadoop.fs.Path(uri)
        out = path.getFileSystem(conf).create(path, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    return put


def batch_prefix(batch_id: int) -> str:
    return f"batch-{batch_id:010d}"


class StagedWriter:
    """One lake table (e.g. lake/events) partitioned by `partition_by`."""

    def __init__(
        self,
        spark: SparkSession,
        table: str,
        staging: str,
        partition_by: tuple[str, ...],
        options: dict[str, str] | None = None,
    ):
        self.options = options or {}
        self.table = table.rstrip("/")
        self.staging = staging.rstrip("/")
        self.partition_by = partition_by
        jvm = spark.sparkContext._jvm
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(self.table).getFileSystem(
            spark.sparkContext._jsc.hadoopConfiguration()
        )

    def _glob(self, name: str) -> list[Any]:
        pattern = "/".join([self.table, *["*"] * len(self.partition_by), name])
        found = self._fs.globStatus(self._path(pattern))
        return list(found) if found is not None else []

    def remove_batches_after(self, batch_id: int) -> int:
        """Delete files of batches newer than the last committed one (a crash's leftovers)."""
        removed = 0
        for status in self._glob("batch-*.parquet"):
            match = _BATCH_FILE.search(status.getPath().getName())
            if match and int(match.group(1)) > batch_id:
                self._fs.delete(status.getPath(), False)
                removed += 1
        return removed

    def files_of(self, batch_id: int) -> list[str]:
        """The files a (committed) batch wrote."""
        return sorted(
            s.getPath().toString() for s in self._glob(f"{batch_prefix(batch_id)}-*.parquet")
        )

    def write(self, df: DataFrame, batch_id: int) -> list[str]:
        """Write the rows of one batch; returns its files. A batch is only written again
        after a restart, and `remove_batches_after` has deleted its earlier files by then."""
        stage = f"{self.staging}/{batch_prefix(batch_id)}"
        df.write.mode("overwrite").options(**self.options).partitionBy(*self.partition_by).parquet(
            stage
        )
        stage_path = self._path(stage)
        qualified = self._fs.makeQualified(stage_path).toString()
        files = self._fs.listFiles(stage_path, True)
        moves = []
        written = []
        while files.hasNext():
            path = files.next().getPath()
            name = path.getName()
            if name.endswith(".parquet") and not name.startswith((".", "_")):
                moves.append(path)
        for n, path in enumerate(sorted(moves, key=lambda p: p.toString())):
            relative = path.getParent().toString()[len(qualified) :].strip("/")
            target_dir = self._path("/".join(filter(None, [self.table, relative])))
            self._fs.mkdirs(target_dir)
            target = self._path(target_dir, f"{batch_prefix(batch_id)}-{n:04d}.parquet")
            if not self._fs.rename(path, target):
                raise OSError(f"could not move {path.toString()} to {target.toString()}")
            written.append(target.toString())
        self._fs.delete(stage_path, True)
        return written
