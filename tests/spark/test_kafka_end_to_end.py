"""Generator -> a real Kafka topic of 3 partitions -> the pipeline with the Kafka source, checked
with the very assertions of the file-source end-to-end test (imported below, so they run here
against this module's `run` fixture)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from test_end_to_end import (  # the file-source test's assertions, run against Kafka here
    test_accounting_invariant_equals_injected_counts,
    test_all_windows_final_and_final_parquet_matches_sqlite,
    test_events_lake_holds_exactly_the_valid_events,
    test_one_query_reads_every_line_once_and_commits_each_batch,
    test_percentiles_within_one_percent_of_exact,
    test_quarantine_reasons_equal_injected_defects,
    test_requests_per_endpoint_status_class_and_method_equal_manifest,
    test_rerun_on_finished_checkpoint_changes_nothing,
    test_throughput_adds_up,
)

from apistream.config import Config, load_config
from apistream.generator.writer import LogGenerator
from apistream.kafka_io import KafkaChunkSink, partition_for
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream

__all__ = [
    "test_accounting_invariant_equals_injected_counts",
    "test_all_windows_final_and_final_parquet_matches_sqlite",
    "test_events_lake_holds_exactly_the_valid_events",
    "test_one_query_reads_every_line_once_and_commits_each_batch",
    "test_percentiles_within_one_percent_of_exact",
    "test_quarantine_reasons_equal_injected_defects",
    "test_requests_per_endpoint_status_class_and_method_equal_manifest",
    "test_rerun_on_finished_checkpoint_changes_nothing",
    "test_throughput_adds_up",
]


def kafka_config(root: Path, bootstrap: str, topic: str, **extra: object) -> Config:
    """The file-source test's settings, with the Kafka source on `topic`."""
    overrides = {
        "generator.events": 60_000,
        "generator.events_per_file": 3_000,
        "generator.rate": 400,
        "generator.seed": 11,
        "source.format": "kafka",
        "source.path": str(root / "incoming"),
        "source.kafka.bootstrap_servers": bootstrap,
        "source.kafka.topic": topic,
        "source.kafka.partitions": 3,
        "source.kafka.max_offsets_per_trigger": 10_000,
        "source.kafka.connect_timeout": "10 seconds",
        "sinks.output": str(root),
        **extra,
    }
    return load_config(environ={}, overrides=overrides)


@pytest.fixture(scope="module")
def run(spark, kafka_broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("kafka-e2e")
    cfg = kafka_config(root, kafka_broker.bootstrap, "e2e")
    manifest = LogGenerator(cfg, cfg.source.path, sink=KafkaChunkSink(cfg.source.kafka)).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    db = sqlite3.connect(cfg.sqlite_path)
    yield cfg, manifest, db
    db.close()


def test_topic_has_three_partitions_keyed_by_endpoint(run):
    cfg, m, _ = run
    assert m["settings"]["sink"] == "kafka"
    assert m["settings"]["partitions"] == 3
    assert not list(Path(cfg.source.path).glob("*.jsonl"))  # only the manifest is written
    events = read_table(Paths.of(cfg).events, ["endpoint", "source_file"]).to_pandas()
    # source_file is kafka:topic/partition/offset; each endpoint lives in its key's partition
    parts = events["source_file"].str.extract(r"^kafka:e2e/(\d+)/(\d+)$")
    assert parts.notna().all().all()
    events["partition"] = parts[0].astype(int)
    assert events["partition"].nunique() == 3
    for endpoint, group in events.groupby("endpoint"):
        assert set(group["partition"]) == {partition_for(endpoint, 3)}, endpoint


def test_partition_for_matches_kafkas_default_partitioner(kafka_broker):
    """The generator's explicit partition is the one Kafka's murmur2 partitioner picks."""
    from confluent_kafka import Producer

    cfg = kafka_config(Path("/nonexistent"), kafka_broker.bootstrap, "partitioner")
    KafkaChunkSink(cfg.source.kafka)  # creates the topic with 3 partitions
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "partitioner": "murmur2"})
    delivered: dict[str, int] = {}
    templates = [e.template for e in load_config(environ={}).endpoints]
    for key in [*templates, "a", "ab", "abc", "abcd", "abcde"]:
        producer.produce(
            "partitioner",
            b"{}",
            key.encode(),
            on_delivery=lambda e, m: delivered.update({m.key().decode(): m.partition()}),
        )
    assert producer.flush(30) == 0
    assert delivered == {key: partition_for(key, 3) for key in delivered}
    assert len(delivered) == len(templates) + 5
