"""One Spark stack: pyspark, the JVM it drives and every Maven package on the classpath come
from one Spark (and Hadoop, and Scala) version; a mismatch is a one-line error at start.

Mixed versions fail late and obscurely (a connector built for another Spark throws
NoSuchMethodError or AbstractMethodError on the first batch), so they are refused up front.
Reads pyspark's metadata and jar names only, so it works without starting Spark.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

from apistream.errors import ApiStreamError, ConfigError

_COORDINATE = re.compile(r"^(?P<group>[\w.-]+):(?P<artifact>[\w.-]+):(?P<version>[\w.+-]+)$")
_RELEASE = re.compile(r"^\d+\.\d+\.\d+")


def release(version: str) -> str:
    """The major.minor.patch of a version: a vendor's build ('3.5.0-amzn-0') is its release."""
    match = _RELEASE.match(version)
    return match[0] if match else version


def pyspark_version() -> str | None:
    """The installed pyspark's version, or None without pyspark."""
    try:
        return version("pyspark")
    except PackageNotFoundError:
        return None


def _jar_version(prefix: str) -> str | None:
    """The version in the name of pyspark's jar `<prefix><version>.jar`, or None (no pyspark,
    or a pyspark without jars: a cluster's, whose jars are in SPARK_HOME)."""
    spec = find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return None
    jars = Path(next(iter(spec.submodule_search_locations))) / "jars"
    found = sorted(jars.glob(f"{prefix}*.jar"))
    return found[0].name.removeprefix(prefix).removesuffix(".jar") if found else None


def hadoop_version() -> str:
    """The Hadoop client version in pyspark's jars (hadoop-client-api-<version>.jar)."""
    found = _jar_version("hadoop-client-api-")
    if found is None:
        raise ApiStreamError("no hadoop-client-api jar in pyspark's jars: cannot pick hadoop-aws")
    return found


def binary_version(scala: str | None) -> str | None:
    """A Scala binary version: '2.13' from '2.13.18'."""
    return None if scala is None else ".".join(scala.split(".")[:2])


def package_problem(
    coordinate: str, spark: str, scala: str | None, hadoop: str | None
) -> str | None:
    """Why a Maven coordinate does not fit a Spark `spark` / Scala binary `scala` / Hadoop
    `hadoop` stack, or None when it fits (or is not a Spark or Hadoop artifact). An unknown
    (None) Scala or Hadoop version is not checked."""
    match = _COORDINATE.match(coordinate.strip())
    if match is None:
        return f"{coordinate!r} is not Maven coordinates group:artifact:version"
    group, artifact, got = match["group"], match["artifact"], release(match["version"])
    spark = release(spark)
    hadoop = None if hadoop is None else release(hadoop)
    if group == "org.apache.spark":
        name, _, suffix = artifact.rpartition("_")
        scala = scala or suffix
        wanted = f"{group}:{name or artifact}_{scala}:{spark}"
        if got != spark or suffix != scala:
            return f"{coordinate} is not Spark {spark} for Scala {scala}: use {wanted}"
    if group == "org.apache.hadoop" and hadoop is not None and got != hadoop:
        return f"{coordinate} is not Spark's Hadoop {hadoop}: use version {hadoop}"
    return None


def check_packages(packages: dict[str, str]) -> None:
    """Raise ConfigError naming the config key of the first package (key -> coordinate) that
    does not fit the installed pyspark; nothing to check without pyspark (a cluster's own)."""
    spark = pyspark_version()
    if spark is None:
        return
    scala = binary_version(_jar_version("scala-library-"))
    hadoop = _jar_version("hadoop-client-api-")
    for key, coordinate in packages.items():
        problem = package_problem(coordinate, spark, scala, hadoop)
        if problem:
            raise ConfigError(f"invalid configuration: {key}: {problem}")


def check_runtime(jvm: tuple[str, str, str], python_spark: str | None, packages: str) -> None:
    """Raise ApiStreamError when the started JVM's (Spark, Scala, Hadoop) versions `jvm` do not
    run pyspark `python_spark` (spark-submit from another SPARK_HOME), or a package it loaded
    (`packages`: spark.jars.packages) does not fit them."""
    jvm_spark, jvm_scala, jvm_hadoop = jvm
    if python_spark is not None and release(jvm_spark) != release(python_spark):
        raise ApiStreamError(
            f"Spark's JVM is {jvm_spark} but pyspark is {python_spark}: install "
            f"pyspark=={jvm_spark}, or run from a Spark {python_spark} (SPARK_HOME)"
        )
    scala, hadoop = binary_version(jvm_scala), jvm_hadoop
    for coordinate in filter(None, (c.strip() for c in packages.split(","))):
        problem = package_problem(coordinate, jvm_spark, scala, hadoop)
        if problem:
            raise ApiStreamError(f"spark.jars.packages: {problem}")
