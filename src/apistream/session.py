"""The one SparkSession, built at the entry point from config, after a Java check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from apistream.config import SparkConfig
from apistream.errors import ApiStreamError
from apistream.spark_stack import check_runtime, pyspark_version

MIN_JAVA = 17
# HotSpot never JIT-compiles a method over 8000 bytes of bytecode (HugeMethodLimit); Spark's
# whole-stage code for parsing, validating and templating a batch is just over that, so it ran
# interpreted: over half of the task time (docs/performance.md). Executors get the same flag
# from spark.executor.extraJavaOptions in config.yaml.
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"
LOG4J = Path(__file__).parent / "resources" / "log4j2.properties"
_REPO = Path(__file__).resolve().parents[2]
# Maven packages (Spark's Kafka connector) are resolved by Ivy into the repo's git-ignored cache.
IVY_DIR = _REPO / ".cache" / "ivy" if (_REPO / "pyproject.toml").is_file() else None
# Jars a package may pull in that pyspark already ships: keep pyspark's own.
PROVIDED = (
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.hadoop:hadoop-client-api",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "at.yawk.lz4:lz4-java",
    "org.lz4:lz4-java",
    "com.google.code.findbugs:jsr305",
    "org.scala-lang.modules:scala-parallel-collections_2.13",
)
PACKAGE_HELP = (
    "could not start Spark with the Maven package(s) {packages}: Ivy could not resolve them "
    "from Maven Central (see the resolution report above).\n"
    "  Check the network and the coordinates (source.kafka.connector); once resolved they are "
    "cached in {ivy}."
)
JAVA_HELP = (
    "Spark 4 needs Java {min}+ (found: {found}). Install a JDK, e.g.\n"
    "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless\n"
    "  macOS:         brew install openjdk@17\n"
    "or point JAVA_HOME at an existing Java {min}+ installation."
)


def java_major_version() -> int | None:
    """Major version of the `java` Spark will use (JAVA_HOME first, then PATH), or None."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def require_java() -> None:
    """Fail with instructions unless Java 17+ is available."""
    version = java_major_version()
    if version is None or version < MIN_JAVA:
        found = "none" if version is None else f"Java {version}"
        raise ApiStreamError(JAVA_HELP.format(min=MIN_JAVA, found=found))


def under_spark_submit() -> bool:
    """True when launched by spark-submit, which then owns master and JVM options."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark(cfg: SparkConfig, packages: Sequence[str] = ()) -> SparkSession:
    """Create the SparkSession for a run (local[*] by default, or what spark-submit gives).

    `packages` are Maven coordinates resolved from Maven Central (under spark-submit, pass
    them with --packages instead).
    """
    if not under_spark_submit():
        require_java()
        os.environ.setdefault(
            "PYSPARK_SUBMIT_ARGS",
            f'--driver-java-options "-Dlog4j2.configurationFile=file:{LOG4J} {JIT_OPTIONS}" '
            "pyspark-shell",
        )
    builder = SparkSession.builder.appName(cfg.app_name)
    if not under_spark_submit():
        builder = builder.master(cfg.master)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    if packages and not under_spark_submit():
        builder = builder.config("spark.jars.packages", ",".join(packages))
        builder = builder.config("spark.jars.excludes", ",".join(PROVIDED))
        if IVY_DIR is not None:
            builder = builder.config("spark.jars.ivy", str(IVY_DIR))
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if packages and "JAVA_GATEWAY_EXITED" in str(exc):
            raise ApiStreamError(
                PACKAGE_HELP.format(packages=", ".join(packages), ivy=IVY_DIR or "~/.ivy2")
            ) from None
        raise
    spark.sparkContext.setLogLevel(cfg.log_level)
    try:
        check_runtime(
            jvm_versions(spark), pyspark_version(), spark.conf.get("spark.jars.packages", "")
        )
    except ApiStreamError:
        spark.stop()
        raise
    return spark


def jvm_versions(spark: SparkSession) -> tuple[str, str, str]:
    """The (Spark, Scala, Hadoop) versions of the session's JVM."""
    jvm = spark.sparkContext._jvm
    return (
        spark.version,
        jvm.scala.util.Properties.versionNumberString(),
        jvm.org.apache.hadoop.util.VersionInfo.getVersion(),
    )
