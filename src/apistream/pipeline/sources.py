"""Sources: the raw lines of a run (`value`, `source_file`, `ingest_time`) from JSON-lines files
or a Kafka topic. `read_source` picks one by `source.format`; `check_source` fails fast, before
Spark starts, on an input that cannot be read."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from apistream.config import Config, resolve_secrets
from apistream.errors import ApiStreamError


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
    for file in sorted(root.glob(cfg.source.glob)):
        try:
            with open(file, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ApiStreamError(f"cannot read input file {file}: {exc.strerror}") from None


def spark_packages(cfg: Config) -> tuple[str, ...]:
    """Maven coordinates the SparkSession needs for the configured source."""
    return (cfg.source.kafka.connector,) if cfg.source.format == "kafka" else ()


def read_source(spark: SparkSession, cfg: Config) -> DataFrame:
    """The raw lines of the configured source."""
    if cfg.source.format == "kafka":
        return read_kafka(spark, cfg)
    return read_files(spark, cfg)


def read_files(spark: SparkSession, cfg: Config) -> DataFrame:
    """The raw lines of the file source, with their file and the batch's ingest time."""
    return (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", cfg.source.max_files_per_trigger)
        .option("pathGlobFilter", cfg.source.glob)
        .load(cfg.source.path)
        .select("value", F.col("_metadata.file_path").alias("source_file"))
        .withColumn("ingest_time", F.current_timestamp())
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
    return (
        reader.load()
        .select(
            F.col("value").cast("string").alias("value"),
            F.format_string("kafka:%s/%d/%d", "topic", "partition", "offset").alias("source_file"),
        )
        .withColumn("ingest_time", F.current_timestamp())
    )
