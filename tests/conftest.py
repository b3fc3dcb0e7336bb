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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def real_apache_log() -> Path:
    """The real Apache combined log (10,000 lines, line 8899 truncated), gzipped."""
    return REAL_APACHE_LOG


@pytest.fixture(scope="session")
def real_apache_lines(real_apache_log: Path) -> list[str]:
    """Its lines, read independently of the pipeline."""
    return gzip.decompress(real_apache_log.read_bytes()).decode().splitlines()


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession for the whole run: 2 cores, few partitions, no UI, and Spark's
    Kafka connector (resolved from Maven Central into .cache/ivy on first use)."""
    from apistream.config import KAFKA_CONNECTOR, SparkConfig
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
        packages=(KAFKA_CONNECTOR,),
    )
    yield session
    session.stop()
