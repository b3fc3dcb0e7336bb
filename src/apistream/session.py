"""The one SparkSession, built at the entry point from config, after a Java check."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from pyspark.sql import SparkSession

from apistream.config import SparkConfig
from apistream.errors import ApiStreamError

MIN_JAVA = 17
LOG4J = Path(__file__).parent / "resources" / "log4j2.properties"
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


def build_spark(cfg: SparkConfig) -> SparkSession:
    """Create the SparkSession for a run (local[*] by default, or what spark-submit gives)."""
    if not under_spark_submit():
        require_java()
        os.environ.setdefault(
            "PYSPARK_SUBMIT_ARGS",
            f'--driver-java-options "-Dlog4j2.configurationFile=file:{LOG4J}" pyspark-shell',
        )
    builder = SparkSession.builder.appName(cfg.app_name)
    if not under_spark_submit():
        builder = builder.master(cfg.master)
    builder = builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    return spark
