"""Shared fixtures. Tests under tests/spark need a JVM and are marked `spark`; the rest run
in seconds without one (`make test-fast`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's shared data sits beside the repository (../shared/data), as in CI.
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", ROOT.parent / "shared" / "data"))
REAL_APACHE_LOG = SHARED_DATA / "real-logs" / "apache-combined" / "apache_logs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def real_apache_log() -> Path:
    """The real Apache combined log of ../shared/data (10,000 lines, line 8899 truncated)."""
    return REAL_APACHE_LOG


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
