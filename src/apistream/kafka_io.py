"""The Python Kafka client (confluent-kafka) at the edges: the start-up reachability check,
topic creation and the generator's producer. Spark reads Kafka through its own connector."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from apistream.config import KafkaSourceConfig, resolve_secrets
from apistream.errors import ApiStreamError

_QUIET = logging.getLogger("apistream.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils.murmur2), unsigned 32-bit."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[4 * n4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner gives a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def client_config(k: KafkaSourceConfig, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """librdkafka settings: bootstrap servers plus client_options with secrets resolved."""
    environ = dict(os.environ) if environ is None else environ
    options = resolve_secrets(k.client_options, "source.kafka.client_options", environ)
    return {"bootstrap.servers": k.bootstrap_servers, "logger": _QUIET, **options}


def topic_partitions(k: KafkaSourceConfig, environ: dict[str, str] | None = None) -> int | None:
    """Partitions of the topic, None if it does not exist; a clear error if no broker answers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(k, environ))
    try:
        meta = admin.list_topics(timeout=k.connect_timeout)
    except KafkaException as exc:
        raise ApiStreamError(
            f"cannot reach Kafka at {k.bootstrap_servers} (source.kafka.bootstrap_servers) "
            f"within {k.connect_timeout:g}s: {exc.args[0].str() if exc.args else exc}\n"
            "  start a local broker with `make kafka-up`, or check the address and "
            "source.kafka.client_options (security settings)"
        ) from None
    topic = meta.topics.get(k.topic)
    if topic is None or topic.error is not None:
        return None
    return len(topic.partitions)


def check_topic(k: KafkaSourceConfig) -> None:
    """Fail fast, before Spark starts, if the broker is unreachable or the topic is missing."""
    if topic_partitions(k) is None:
        raise ApiStreamError(
            f"Kafka topic {k.topic!r} not found at {k.bootstrap_servers} (source.kafka.topic)\n"
            f"  produce to it with `apistream generate --sink kafka --topic {k.topic}`"
        )


def ensure_topic(k: KafkaSourceConfig) -> int:
    """Create the topic with source.kafka.partitions if it is missing; its partition count."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    existing = topic_partitions(k)
    if existing is not None:
        return existing
    admin = AdminClient(client_config(k))
    futures = admin.create_topics(
        [NewTopic(k.topic, num_partitions=k.partitions, replication_factor=-1)],
        operation_timeout=k.connect_timeout,
        request_timeout=k.connect_timeout,
    )
    try:
        futures[k.topic].result()
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise ApiStreamError(f"cannot create Kafka topic {k.topic!r}: {exc}") from None
    return topic_partitions(k) or k.partitions


class KafkaChunkSink:
    """Produces chunks of lines, keyed, to explicit partitions; each chunk is confirmed."""

    def __init__(self, k: KafkaSourceConfig):
        from confluent_kafka import Producer

        self.k = k
        self.partitions = ensure_topic(k)
        self.producer = Producer(
            {
                **client_config(k),
                "enable.idempotence": True,  # ordered per partition, no duplicates on retry
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
                "message.timeout.ms": int(max(30.0, 4 * k.connect_timeout) * 1000),
            }
        )
        self.errors: list[str] = []

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, lines: Sequence[str], keys: Sequence[str], partitions: Sequence[int]) -> None:
        """Produce one chunk and wait until the broker has acknowledged every record."""
        produce, poll = self.producer.produce, self.producer.poll
        for i, (line, key, part) in enumerate(zip(lines, keys, partitions, strict=True)):
            while True:
                try:
                    produce(
                        self.k.topic,
                        value=line.encode(),
                        key=key.encode(),
                        partition=int(part),
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:  # local queue full: let deliveries drain
                    poll(0.05)
            if i % 1000 == 0:
                poll(0)
        left = self.producer.flush(self.k.connect_timeout * 4)
        if left or self.errors:
            raise ApiStreamError(
                f"Kafka did not confirm {left or len(self.errors)} records to topic "
                f"{self.k.topic!r}: {self.errors[0] if self.errors else 'timed out'}"
            )
