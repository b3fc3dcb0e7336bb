"""A Kafka broker for the bench's Kafka runs: scripts/kafka.sh (single-node KRaft, Apache
Kafka's jars from Maven Central, cached under .cache/) on free loopback ports, in the bench's
scratch directory, always stopped at the end."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from apistream.errors import ApiStreamError

KAFKA_SH = Path(__file__).resolve().parents[3] / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    run_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        if not KAFKA_SH.is_file():
            raise ApiStreamError(f"{KAFKA_SH} not found (the bench runs from a source checkout)")
        env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_RUN_DIR": str(self.run_dir),
        }
        try:
            done = subprocess.run(
                [str(KAFKA_SH), command], env=env, capture_output=True, text=True, timeout=900
            )
        except subprocess.TimeoutExpired:
            raise ApiStreamError(f"scripts/kafka.sh {command} did not finish in 900 s") from None
        if done.returncode != 0:
            raise ApiStreamError(
                f"scripts/kafka.sh {command} failed:\n{(done.stdout + done.stderr)[-1500:]}"
            )

    def start(self) -> Broker:
        """Start it (fetching the jars on first use) and wait until a client gets metadata."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._script("up")
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.list_topics(timeout=5)
                return self
            except Exception as exc:  # the client raises KafkaException until it connects
                if time.monotonic() > deadline:
                    self.stop()
                    raise ApiStreamError(f"the Kafka broker gave no metadata: {exc}") from None

    def stop(self) -> None:
        self._script("down")
