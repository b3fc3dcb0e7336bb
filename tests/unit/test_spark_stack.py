"""One Spark stack: the shipped connector, image and pin agree with the installed pyspark, and
a package of another Spark, Scala or Hadoop version is refused at start in one line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from cli_runner import cli

from apistream.config import KAFKA_CONNECTOR
from apistream.errors import ApiStreamError, ConfigError
from apistream.spark_stack import (
    check_packages,
    check_runtime,
    hadoop_version,
    package_problem,
    pyspark_version,
)

ROOT = Path(__file__).parents[2]
NEWER = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0"
STACK = ("4.2.0", "2.13", "3.5.0")  # Spark, Scala binary, Hadoop


def test_the_pinned_pyspark_its_connector_and_the_k8s_image_are_one_version():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = extras["optional-dependencies"]["spark"]
    assert pin == f"pyspark=={pyspark_version()}"
    connector = KAFKA_CONNECTOR.rpartition(":")
    assert connector == ("org.apache.spark:spark-sql-kafka-0-10_2.13", ":", pyspark_version())
    image = re.search(r"ARG SPARK_IMAGE=\S+:(\S+)", (ROOT / "deploy/k8s/Dockerfile").read_text())
    assert image is not None and image[1].startswith(f"{pyspark_version()}-scala2.13-")
    check_packages({"source.kafka.connector": KAFKA_CONNECTOR})  # does not raise
    assert hadoop_version() == "3.5.0"


@pytest.mark.parametrize(
    ("coordinate", "problem"),
    [
        ("org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0", None),
        ("org.apache.hadoop:hadoop-aws:3.5.0", None),
        ("org.postgresql:postgresql:42.7.4", None),  # neither Spark's nor Hadoop's
        (
            "org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0",
            "org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0 is not Spark 4.2.0 for Scala 2.13:"
            " use org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
        ),
        (
            "org.apache.spark:spark-sql-kafka-0-10_2.12:4.2.0",
            "org.apache.spark:spark-sql-kafka-0-10_2.12:4.2.0 is not Spark 4.2.0 for Scala 2.13:"
            " use org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",
        ),
        (
            "org.apache.hadoop:hadoop-aws:3.4.1",
            "org.apache.hadoop:hadoop-aws:3.4.1 is not Spark's Hadoop 3.5.0: use version 3.5.0",
        ),
        (
            "spark-sql-kafka-0-10_2.13",
            "'spark-sql-kafka-0-10_2.13' is not Maven coordinates group:artifact:version",
        ),
    ],
)
def test_package_problem_names_the_version_to_use(coordinate, problem):
    assert package_problem(coordinate, *STACK) == problem


def test_unknown_scala_or_hadoop_versions_are_not_checked():
    assert package_problem("org.apache.hadoop:hadoop-aws:3.4.1", "4.2.0", None, None) is None
    assert package_problem("org.apache.spark:spark-avro_2.12:4.2.0", "4.2.0", None, None) is None
    assert "Spark 4.2.0" in package_problem("org.apache.spark:x_2.12:4.1.1", "4.2.0", None, None)


def test_a_connector_of_another_spark_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        check_packages(
            {"source.kafka.connector": "org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0"}
        )
    message = str(err.value)
    assert message.startswith("invalid configuration: source.kafka.connector: ")
    assert message.endswith(f"use org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark_version()}")
    assert "\n" not in message


def test_the_running_jvm_must_be_pyspark_s_spark_and_fit_its_packages():
    check_runtime(("4.2.0", "2.13.18", "3.5.0"), "4.2.0", KAFKA_CONNECTOR)  # does not raise
    check_runtime(("4.2.0", "2.13.18", "3.5.0"), None, "")  # a cluster's pyspark: no metadata
    with pytest.raises(ApiStreamError, match=r"^Spark's JVM is 4\.1\.1 but pyspark is 4\.2\.0: "):
        check_runtime(("4.1.1", "2.13.16", "3.4.1"), "4.2.0", "")
    with pytest.raises(ApiStreamError) as err:
        check_runtime(("4.1.1", "2.13.16", "3.4.1"), None, f"{KAFKA_CONNECTOR}, x:y:1")
    assert str(err.value) == (
        f"spark.jars.packages: {KAFKA_CONNECTOR} is not Spark 4.1.1 for Scala 2.13: "
        "use org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1"
    )
    with pytest.raises(ApiStreamError, match=r"hadoop-aws:3\.5\.0 is not Spark's Hadoop 3\.4\.1"):
        check_runtime(("4.1.1", "2.13.16", "3.4.1"), None, "org.apache.hadoop:hadoop-aws:3.5.0")


def test_stream_refuses_a_mismatched_connector_before_anything_starts(tmp_path):
    out = cli(
        "stream",
        "--output",
        str(tmp_path),
        env={
            "APISTREAM_SOURCE__FORMAT": "kafka",
            # No broker listens here: a connection attempt would fail differently.
            "APISTREAM_SOURCE__KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "APISTREAM_SOURCE__KAFKA__CONNECTOR": NEWER,
        },
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, out.stderr
    assert (
        "source.kafka.connector: org.apache.spark:spark-sql-kafka-0-10_2.13:4.3.0 is not Spark"
        in errors[0]
    )
    assert "starting Spark" not in out.stdout
    assert not (tmp_path / "checkpoints").exists()


def test_a_vendor_build_is_its_release():
    # EMR-style versions: the JVM says 4.2.0-amzn-0 and Hadoop 3.5.0-amzn-1.
    vendor = ("4.2.0-amzn-0", "2.13.16", "3.5.0-amzn-1")
    check_runtime(vendor, "4.2.0", f"{KAFKA_CONNECTOR},org.apache.hadoop:hadoop-aws:3.5.0")
    with pytest.raises(ApiStreamError, match=r"is not Spark 4\.2\.0 for Scala 2\.13"):
        check_runtime(vendor, None, "org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1")
