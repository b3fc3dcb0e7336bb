"""The Kafka source survives a broker restart mid-stream, and a pipeline restarted from its
checkpoint mid-stream resumes exactly: nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from stream_helpers import (
    HeldBackSink,
    assert_matches_manifest,
    kafka_config,
    quality_so_far,
    sigterm_cli_stream,
)

from apistream.errors import ApiStreamError
from apistream.generator.writer import LogGenerator
from apistream.kafka_io import KafkaChunkSink
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream

pytestmark = pytest.mark.kafka

# 12 chunks of 1,500 records; the recovery tests produce the first FIRST_CHUNKS and hold the
# rest back until after the outage or the stop, so it always comes mid-stream.
FIRST_CHUNKS = 8
SMALL = {
    "generator.events": 18_000,
    "generator.events_per_file": 1_500,
    "generator.seed": 3,
    "source.kafka.max_offsets_per_trigger": 1_500,
    "processing.trigger_interval": "1 second",
}


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll real state until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def input_so_far(db_path: Path) -> int:
    return quality_so_far(db_path)[1]


def assert_exact(cfg, manifest) -> None:
    """The account, the metrics and the events lake equal the manifest."""
    assert_matches_manifest(cfg.sqlite_path, manifest)
    assert manifest["late_beyond_watermark"] > 0
    ids = read_table(Paths.of(cfg).events, ["request_id"])["request_id"].to_pylist()
    assert len(ids) == len(set(ids)) == manifest["valid_events"]


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_broker_restart_mid_stream_loses_nothing(spark, kafka_broker, tmp_path):
    cfg = kafka_config(tmp_path, kafka_broker.bootstrap, "broker-restart", **SMALL)
    topic = HeldBackSink(KafkaChunkSink(cfg.source.kafka), FIRST_CHUNKS)
    manifest = LogGenerator(cfg, cfg.source.path, sink=topic).backfill()
    db = Path(cfg.sqlite_path)
    stop, failure = threading.Event(), []

    def live() -> None:
        try:
            run_stream(spark, cfg, until_idle=False, stop=stop)
        except Exception as exc:  # surfaced by the assertion below
            failure.append(exc)

    runner = threading.Thread(target=live, daemon=True)
    runner.start()
    try:
        wait_until(lambda: quality_so_far(db)[0] >= 3 or failure, 240, "three batches")
        assert not failure, failure
        kafka_broker.stop()
        assert port_closed(kafka_broker.port)
        assert input_so_far(db) <= topic.forwarded < manifest["total_events"]
        kafka_broker.start()
        topic.release()  # the rest of the input, produced to the restarted broker
        wait_until(
            lambda: input_so_far(db) >= manifest["total_events"] or failure,
            300,
            "all records after the broker restart",
        )
        assert not failure, failure
    finally:
        stop.set()
        runner.join(timeout=120)
    assert not runner.is_alive()
    # Drain the metrics of the last batches and finalise every window.
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    assert_exact(cfg, manifest)


def test_sigterm_mid_stream_then_resume_from_checkpoint_is_exact(spark, kafka_broker, tmp_path):
    cfg = kafka_config(tmp_path, kafka_broker.bootstrap, "checkpoint-restart", **SMALL)
    topic = HeldBackSink(KafkaChunkSink(cfg.source.kafka), FIRST_CHUNKS)
    manifest = LogGenerator(cfg, cfg.source.path, sink=topic).backfill()
    k = cfg.source.kafka
    env = {
        **os.environ,
        "APISTREAM_SOURCE__KAFKA__MAX_OFFSETS_PER_TRIGGER": str(k.max_offsets_per_trigger),
        "APISTREAM_PROCESSING__TRIGGER_INTERVAL": "1 second",
        "APISTREAM_SPARK__MASTER": "local[2]",
    }
    sigterm_cli_stream(
        [
            "--source",
            "kafka",
            "--bootstrap-servers",
            k.bootstrap_servers,
            "--topic",
            k.topic,
            "--output",
            cfg.sinks.output,
        ],
        env,
        Path(cfg.sqlite_path),
    )
    # Stopped after its third batch, with the held-back records not yet in the topic.
    assert quality_so_far(Path(cfg.sqlite_path))[0] >= 3
    assert input_so_far(Path(cfg.sqlite_path)) <= topic.forwarded < manifest["total_events"]

    topic.release()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    assert_exact(cfg, manifest)


def test_broker_gone_for_good_fails_clearly_within_the_client_timeout(
    spark, kafka_broker, tmp_path
):
    """No hang: once the Kafka clients' default.api.timeout.ms (here 10 s) runs out, the
    pipeline stops with an error naming the Kafka timeout."""
    cfg = kafka_config(
        tmp_path,
        kafka_broker.bootstrap,
        "broker-gone",
        **{
            **SMALL,
            "source.kafka.options": {
                "default.api.timeout.ms": "10000",
                "request.timeout.ms": "5000",  # must not exceed default.api.timeout.ms
            },
        },
    )
    LogGenerator(cfg, cfg.source.path, sink=KafkaChunkSink(cfg.source.kafka)).backfill()
    db = Path(cfg.sqlite_path)
    stop, failure = threading.Event(), []

    def live() -> None:
        try:
            run_stream(spark, cfg, until_idle=False, stop=stop)
        except ApiStreamError as exc:
            failure.append(exc)

    runner = threading.Thread(target=live, daemon=True)
    runner.start()
    try:
        wait_until(lambda: quality_so_far(db)[0] >= 2 or failure, 240, "two batches")
        assert not failure, failure
        kafka_broker.stop()
        started = time.monotonic()
        wait_until(lambda: failure or not runner.is_alive(), 180, "the pipeline to fail")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        runner.join(timeout=120)
        kafka_broker.start()  # for any test after this one
    assert failure, "the pipeline should stop with an error"
    message = str(failure[0])
    assert "failed" in message and "Timeout" in message, message
    assert elapsed < 150
