"""Shared fixtures. Tests under tests/spark need a JVM and are marked `spark`; the rest run
in seconds without one (`make test-fast`)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A gzipped copy of ../shared/data/real-logs/apache-combined/apache_logs (Apache-2.0, see
# SOURCE.txt beside it), so a clone anywhere can run the tests.
REAL_APACHE_LOG = ROOT / "tests" / "fixtures" / "logs" / "apache-combined" / "apache_logs.gz"


# Whether a collected (and selected) test needs Kafka, so the session loads the connector.
NEEDS_KAFKA = pytest.StashKey[bool]()


def uses_kafka(item: pytest.Item) -> bool:
    """A test needs Kafka if it is marked `kafka` or uses the broker fixture."""
    return item.get_closest_marker("kafka") is not None or "kafka_broker" in getattr(
        item, "fixturenames", ()
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m kafka` sees these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)
        if uses_kafka(item):
            item.add_marker(pytest.mark.kafka)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note, for the `spark` fixture, whether any test that will run needs Kafka."""
    session.config.stash[NEEDS_KAFKA] = any(uses_kafka(item) for item in session.items)


@pytest.fixture(scope="session")
def real_apache_log() -> Path:
    """The real Apache combined log (10,000 lines, line 8899 truncated), gzipped."""
    return REAL_APACHE_LOG


@pytest.fixture(scope="session")
def real_apache_lines(real_apache_log: Path) -> list[str]:
    """Its lines, read independently of the pipeline."""
    return gzip.decompress(real_apache_log.read_bytes()).decode().splitlines()


@pytest.fixture(scope="session")
def spark_packages(pytestconfig: pytest.Config) -> tuple[str, ...]:
    """The `spark` session's Maven packages: Spark's Kafka connector (resolved from Maven
    Central into .cache/ivy on first use) only when a test of this run needs Kafka."""
    from apistream.config import KAFKA_CONNECTOR

    return (KAFKA_CONNECTOR,) if pytestconfig.stash.get(NEEDS_KAFKA, False) else ()


@pytest.fixture(scope="session")
def spark(spark_packages: tuple[str, ...]) -> Iterator[object]:
    """One local SparkSession for the whole run: 2 cores, few partitions, no UI; the Kafka
    connector only if a selected test needs Kafka (`spark_packages`)."""
    from apistream.config import SparkConfig
    from apistream.session import build_spark

    session = build_spark(
        SparkConfig(
            master="local[2]",
            app_name="apistream-tests",
            shuffle_partitions=2,
            conf={
                "spark.ui.enabled": "false",
                "spark.sql.session.timeZone": "UTC",
                "spark.ui.showConsoleProgress": "false",
            },
        ),
        packages=spark_packages,
    )
    yield session
    session.stop()
