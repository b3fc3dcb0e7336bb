"""Kafka source without a JVM: config and secrets, the clear error when no broker answers, and
the generator's late placement replayed through a plain-Python model of Spark's Kafka source."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from generator_truth import NOW_MS, classify, epoch_ms, template_of

from apistream.config import load_config, resolve_secrets
from apistream.errors import ConfigError
from apistream.generator.writer import LogGenerator
from apistream.kafka_io import partition_for


def test_kafka_section_is_typed_and_validated():
    cfg = load_config(
        environ={},
        overrides={
            "source.format": "kafka",
            "source.kafka.bootstrap_servers": "b1:9092, b2:9093",
            "source.kafka.options": {"kafka.security.protocol": "SASL_SSL", "x.enabled": True},
        },
    )
    k = cfg.source.kafka
    assert k.bootstrap_servers == "b1:9092,b2:9093"
    assert k.options == {"security.protocol": "SASL_SSL", "x.enabled": "true"}
    assert k.connector.startswith("org.apache.spark:spark-sql-kafka-0-10_2.13:")
    for key, bad in (
        ("source.kafka.bootstrap_servers", "localhost"),
        ("source.kafka.max_offsets_per_trigger", 0),
        ("source.kafka.starting_offsets", "yesterday"),
        ("source.kafka.connector", "spark-sql-kafka"),
        ("source.format", "kinesis"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(environ={}, overrides={key: bad})


def test_secrets_come_from_the_environment_and_stay_out_of_the_config():
    jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required password='${PW}';"
    cfg = load_config(
        environ={"APISTREAM_SOURCE__KAFKA__OPTIONS": json.dumps({"sasl.jaas.config": jaas})},
    )
    options = cfg.source.kafka.options
    assert "s3cret" not in repr(cfg)
    resolved = resolve_secrets(options, "source.kafka.options", {"PW": "s3cret"})
    assert resolved["sasl.jaas.config"].endswith("password='s3cret';")
    with pytest.raises(ConfigError, match=r"source\.kafka\.options\.sasl\.jaas\.config: .*PW"):
        resolve_secrets(options, "source.kafka.options", {})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["stream", "generate"])
def test_no_broker_reachable_is_a_clear_error_within_bounded_time(command, tmp_path):
    port = closed_port()
    args = ["--bootstrap-servers", f"127.0.0.1:{port}", "--topic", "t"]
    if command == "stream":
        args += ["--source", "kafka", "--output", str(tmp_path / "out")]
    else:
        args += ["--sink", "kafka", "--input", str(tmp_path / "in"), "--events", "1000"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "apistream.cli", command, *args],
        env={"APISTREAM_SOURCE__KAFKA__CONNECT_TIMEOUT": "3", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in done.stderr
    assert "within 3s" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 60


class MemorySink:
    """Keeps what the generator produces, per partition, in order (a topic's partitions)."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.log: list[list[str]] = [[] for _ in range(partitions)]

    def send(self, lines: list[str], keys: list[str], partitions: list[int]) -> None:
        for line, key, p in zip(lines, keys, partitions, strict=True):
            assert p == partition_for(key, self.partitions)
            self.log[p].append(line)


def proportional(m: int, pos: list[int], end: list[int]) -> list[int]:
    """Spark's documented maxOffsetsPerTrigger split: proportional to each partition's lag."""
    lag = [e - p for p, e in zip(pos, end, strict=True)]
    total = sum(lag)
    out = []
    for p, e, n in zip(pos, end, lag, strict=True):
        share = m * n / total if n > 0 else 0
        out.append(min(e, p + (math.ceil(share) if share < 1 else math.floor(share))))
    return out


def one_partition_at_a_time(m: int, pos: list[int], end: list[int]) -> list[int]:
    """An adversarial but legal batching: up to M offsets of one partition per batch."""
    out = list(pos)
    p = next(i for i, (a, b) in enumerate(zip(pos, end, strict=True)) if a < b)
    out[p] = min(end[p], pos[p] + m)
    return out


def replay(sink: MemorySink, cfg, planner) -> Counter:
    """Counts as Spark sees them; a row is late at or below the previous batch's watermark."""
    m, delay = cfg.source.kafka.max_offsets_per_trigger, cfg.processing.watermark * 1000
    pos, end = [0] * sink.partitions, [len(p) for p in sink.log]
    out, seen, batch_max = Counter(), set(), []
    while pos != end:
        upto = planner(m, pos, end)
        wm_prev = max(batch_max[:-1], default=None)
        threshold = wm_prev - delay if wm_prev is not None else -1
        newest = -1
        for p, (a, b) in enumerate(zip(pos, upto, strict=True)):
            for line in sink.log[p][a:b]:
                if classify(line, cfg, NOW_MS):
                    out["quarantined"] += 1
                    continue
                rec = json.loads(line)
                ts = epoch_ms(rec["timestamp"])
                newest = max(newest, ts)
                if ts <= threshold:
                    out["late"] += 1
                elif (rec["request_id"], rec["timestamp"]) in seen:
                    out["duplicates"] += 1
                else:
                    seen.add((rec["request_id"], rec["timestamp"]))
                    out["valid"] += 1
                    out[template_of(rec["path"], cfg)] += 1
        batch_max.append(max(newest, batch_max[-1] if batch_max else -1))
        pos = upto
    return out


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kafka-gen")
    cfg = load_config(
        environ={},
        overrides={
            "generator.events": 40_000,
            "generator.events_per_file": 2_000,
            "generator.rate": 400,
            "source.kafka.max_offsets_per_trigger": 2_500,
        },
    )
    sink = MemorySink(3)
    manifest = LogGenerator(cfg, tmp, now_ms=NOW_MS, sink=sink).backfill()
    return cfg, sink, manifest


def test_manifest_matches_a_replay_of_the_partitions(produced):
    cfg, sink, m = produced
    assert all(sink.log), "every partition gets records"
    ref = replay(sink, cfg, proportional)
    assert sum(len(p) for p in sink.log) == m["total_events"] == 40_000
    assert m["late_beyond_watermark"] > 0 and m["late_within_watermark"] > 0
    assert ref["late"] == m["late_beyond_watermark"]
    assert ref["duplicates"] == m["duplicates"]
    assert ref["valid"] == m["valid_events"]
    assert {e: ref[e] for e in m["valid_by_endpoint"]} == m["valid_by_endpoint"]
    assert m["settings"]["sink"] == "kafka"


def test_late_beyond_events_are_late_under_any_batching_of_at_most_m(produced):
    cfg, sink, m = produced
    assert replay(sink, cfg, one_partition_at_a_time)["late"] >= m["late_beyond_watermark"]
