"""A real single-node Apache Kafka broker (KRaft) for the Kafka tests, started by the project's
own scripts/kafka.sh on free loopback ports and always stopped at the end."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KafkaBroker:
    """A broker run by scripts/kafka.sh in its own directory."""

    port: int
    controller_port: int
    run_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_RUN_DIR": str(self.run_dir),
        }
        done = subprocess.run(
            [str(KAFKA_SH), command], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"kafka.sh {command} failed:\n{done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start (formatting storage on first use) and wait until a client gets metadata."""
        self._script("up")
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.list_topics(timeout=5)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self._script("down")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the session's Kafka tests."""
    broker = KafkaBroker(free_port(), free_port(), tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
