"""Generator -> a real Kafka topic of 3 partitions -> the pipeline with the Kafka source, checked
with the very assertions of the file-source end-to-end test (e2e_checks, run here against this
module's `run` fixture)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from e2e_checks import StreamRunChecks
from stream_helpers import kafka_config

from apistream.config import KAFKA_CONNECTOR, load_config
from apistream.generator.writer import LogGenerator
from apistream.kafka_io import KafkaChunkSink, partition_for
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream
from apistream.spark_stack import pyspark_version

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def run(spark, kafka_broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("kafka-e2e")
    cfg = kafka_config(root, kafka_broker.bootstrap, "e2e")
    manifest = LogGenerator(cfg, cfg.source.path, sink=KafkaChunkSink(cfg.source.kafka)).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    db = sqlite3.connect(cfg.sqlite_path)
    yield cfg, manifest, db
    db.close()


class TestKafkaSourceRun(StreamRunChecks):
    """The Kafka run against its manifest (the assertions of e2e_checks)."""


def test_the_session_loads_the_kafka_connector_of_its_spark(spark):
    """A Kafka test is selected, so the session has the connector (one Spark stack: the
    session's start-up check would have refused a connector of another Spark)."""
    assert spark.conf.get("spark.jars.packages") == KAFKA_CONNECTOR
    assert KAFKA_CONNECTOR.endswith(f":{pyspark_version()}")


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
