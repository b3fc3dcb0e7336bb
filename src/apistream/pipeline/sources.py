"""Sources: the raw lines of a run (`value`, `source_file`) from JSON-lines files
or a Kafka topic. `read_source` picks one by `source.format`; `check_source` fails fast, before
Spark starts, on an input that cannot be read."""

from __future__ import annotations

import os
import re
from fnmatch import fnmatchcase as fnmatch
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.config import Config, resolve_secrets
from apistream.errors import ApiStreamError
from apistream.spark_stack import check_packages, hadoop_version


def check_source(cfg: Config) -> None:
    """Fail fast on a missing input directory, an unreadable file or an unreachable broker."""
    if cfg.source.format == "kafka":
        from apistream.kafka_io import check_topic

        resolve_secrets(cfg.source.kafka.options, "source.kafka.options", dict(os.environ))
        check_topic(cfg.source.kafka)
        return
    path = cfg.source.path
    if "://" in path:
        return
    root = Path(path)
    if not root.is_dir():
        raise ApiStreamError(
            f"input directory not found: {path}\n"
            f"  generate data into it with `apistream generate --input {path}`, "
            "or point --input / source.path at your log directory"
        )
    for file in matching_files(root, cfg.source.glob):
        try:
            with open(file, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ApiStreamError(f"cannot read input file {file}: {exc.strerror}") from None


def glob_patterns(glob: str) -> list[str]:
    """A Hadoop glob's alternatives as fnmatch patterns: '*.{jsonl,jsonl.gz}' -> ['*.jsonl',
    '*.jsonl.gz'] (one level of braces, as source.glob uses them)."""
    match = re.search(r"\{([^{}]*)\}", glob)
    if match is None:
        return [glob]
    head, tail = glob[: match.start()], glob[match.end() :]
    return [p for alt in match.group(1).split(",") for p in glob_patterns(head + alt + tail)]


def matching_files(root: Path, glob: str) -> list[Path]:
    """The files directly in `root` (dangling links too, for the preflight to report) whose
    names match `glob` as Spark's pathGlobFilter does."""
    patterns = glob_patterns(glob)
    return sorted(
        p for p in root.iterdir() if not p.is_dir() and any(fnmatch(p.name, g) for g in patterns)
    )


def spark_packages(cfg: Config) -> tuple[str, ...]:
    """Maven coordinates the SparkSession needs: the Kafka connector for the Kafka source, and
    Hadoop's S3A connector (with its AWS SDK) when a path is on s3a://, of the Hadoop version
    pyspark ships. A connector of another Spark version is a ConfigError."""
    packages = []
    if cfg.source.format == "kafka":
        packages.append(cfg.source.kafka.connector)
        check_packages({"source.kafka.connector": cfg.source.kafka.connector})
    paths = [cfg.sinks.output, cfg.source.path if cfg.source.format == "json" else ""]
    if any(p.startswith("s3a://") for p in paths):
        packages.append(f"org.apache.hadoop:hadoop-aws:{hadoop_version()}")
    return tuple(packages)


def read_source(spark: SparkSession, cfg: Config) -> DataFrame:
    """The raw lines of the configured source."""
    if cfg.source.format == "kafka":
        return read_kafka(spark, cfg)
    return read_files(spark, cfg)


def read_files(spark: SparkSession, cfg: Config) -> DataFrame:
    """The raw lines of the file source, with their file."""
    return (
        spark.readStream.format("text")
        # A damaged .gz/.bz2 is read up to the damage, a removed file skipped; the sink counts
        # both (ingest/file_checks.py).
        .option("ignoreCorruptFiles", "true")
        .option("ignoreMissingFiles", "true")
        .option("maxFilesPerTrigger", cfg.source.max_files_per_trigger)
        .option("pathGlobFilter", cfg.source.glob)
        .load(cfg.source.path)
        .select("value", F.col("_metadata.file_path").alias("source_file"))
    )


def read_kafka(spark: SparkSession, cfg: Config) -> DataFrame:
    """The messages of the topic as lines; source_file is `kafka:topic/partition/offset`."""
    k = cfg.source.kafka
    options = resolve_secrets(k.options, "source.kafka.options", dict(os.environ))
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap_servers)
        .option("subscribe", k.topic)
        .option("startingOffsets", k.starting_offsets)
        .option("maxOffsetsPerTrigger", k.max_offsets_per_trigger)
        .option("failOnDataLoss", str(k.fail_on_data_loss).lower())
    )
    for name, value in options.items():
        reader = reader.option(f"kafka.{name}", value)
    return reader.load().select(
        F.col("value").cast("string").alias("value"),
        F.format_string("kafka:%s/%d/%d", "topic", "partition", "offset").alias("source_file"),
    )


def read_numbered_lines(spark: SparkSession, cfg: Config) -> DataFrame:
    """Lines of whole files (plain or gzip) with their 0-based line number, so a record
    without a request id still gets a stable one (file text + line)."""
    files = (
        spark.readStream.format("text")
        .option("wholetext", True)
        .option("ignoreCorruptFiles", "true")
        .option("ignoreMissingFiles", "true")
        .option("maxFilesPerTrigger", cfg.source.max_files_per_trigger)
        .option("pathGlobFilter", cfg.source.glob)
        .load(cfg.source.path)
        .select(split_lines(F.col("value")).alias("lines"), "_metadata.file_path")
        .withColumnRenamed("file_path", "source_file")
    )
    numbered = files.select(
        "source_file", F.size("lines").alias("n"), F.posexplode("lines").alias("line_no", "value")
    )
    # A file ending in a newline splits into a last, empty element that is no line.
    return numbered.filter(~((F.col("line_no") == F.col("n") - 1) & (F.col("value") == "")))


def split_lines(text: Column) -> Column:
    """A file's text -> its lines (LF or CRLF ends), byte for byte. Splitting goes through
    Java strings, which replace bytes that are not UTF-8; a file holding any is split as
    Latin-1 (one char per byte) and each line turned back into its exact bytes."""
    as_latin1 = F.decode(text.cast("binary"), "ISO-8859-1")
    exact = F.transform(
        F.split(as_latin1, "\r?\n"), lambda line: F.encode(line, "ISO-8859-1").cast("string")
    )
    return F.when(F.is_valid_utf8(text), F.split(text, "\r?\n")).otherwise(exact)


def read_lines(spark: SparkSession, cfg: Config) -> DataFrame:
    """The source's lines: JSON lines as they come, other formats numbered."""
    if cfg.logs.format == "json":
        return read_source(spark, cfg)
    if cfg.source.format == "kafka":
        raise ApiStreamError("access-log formats are read from files; use source.format: json")
    return read_numbered_lines(spark, cfg)
