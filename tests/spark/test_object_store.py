"""The lake and the checkpoints on an S3-compatible store over s3a://: a local S3 server (moto,
from PyPI) and Hadoop's S3A connector with its AWS SDK (Maven Central, resolved by Spark into
.cache/ivy). A run killed between a batch's lake write and its SQLite commit, restarted from
the checkpoint on S3, accounts for every record as the manifest says, and the events lake on
S3 holds exactly the valid events. The credentials reach Spark only from the environment and
appear in no output."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import boto3
import pyarrow.dataset as ds
import pytest
import yaml
from pyarrow import fs
from stream_helpers import SMALL_RUN, assert_matches_manifest, cli_env

from apistream.config import DEFAULT_CONFIG, load_config
from apistream.generator.writer import LogGenerator
from apistream.pipeline.sink import KILL_BEFORE_COMMIT

pytestmark = pytest.mark.spark

BUCKET = "apistream-lake"
KEY_ID = "apistream-test"


@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on a free loopback port; yields its endpoint (host:port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urlopen(f"http://{endpoint}/", timeout=2).close()
            break
        except (URLError, ConnectionError):
            assert time.monotonic() < deadline, "the S3 server did not start"
            time.sleep(0.3)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def s3_config(tmp_path: Path, endpoint: str) -> Path:
    """The default config with the small run's settings, its output on s3a:// and S3A pointed
    at the local server; no credential in it."""
    tree = yaml.safe_load(DEFAULT_CONFIG.read_text())
    tree["spark"]["conf"].update(
        {
            "spark.hadoop.fs.s3a.endpoint": f"http://{endpoint}",
            "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            # Only the environment: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
            "spark.hadoop.fs.s3a.aws.credentials.provider": (
                "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"
            ),
        }
    )
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_a_run_on_s3_killed_before_a_commit_and_restarted_is_exact(s3_server, tmp_path):
    secret = secrets.token_hex(20)
    aws = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": secret}
    boto3.client(
        "s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1",
        aws_access_key_id=KEY_ID, aws_secret_access_key=secret,
    ).create_bucket(Bucket=BUCKET)  # fmt: skip
    settings = {
        **SMALL_RUN,
        "source.path": str(tmp_path / "in"),
        "sinks.output": f"s3a://{BUCKET}/run",
        "sinks.sqlite_file": str(tmp_path / "state" / "analytics.db"),
    }
    config = s3_config(tmp_path, s3_server)
    cfg = load_config(config, environ={}, overrides=settings)
    manifest = LogGenerator(cfg, cfg.source.path).backfill()
    command = [sys.executable, "-m", "apistream.cli", "stream", "--until-idle"]
    command += ["--config", str(config)]
    killed = subprocess.run(
        command,
        env=cli_env(settings, **aws, **{KILL_BEFORE_COMMIT: "3"}),
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # the seam kills its own process group
    )
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert Path(cfg.sqlite_path).is_file()  # the killed run had committed batches
    resumed = subprocess.run(
        command, env=cli_env(settings, **aws), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert_matches_manifest(cfg.sqlite_path, manifest)
    s3 = fs.S3FileSystem(
        access_key=KEY_ID, secret_key=secret, endpoint_override=s3_server, scheme="http",
        region="us-east-1",
    )  # fmt: skip
    events = ds.dataset(f"{BUCKET}/run/lake/events", filesystem=s3, partitioning="hive")
    table = events.to_table(columns=["request_id", "event_time"])
    assert table.num_rows == manifest["valid_events"]
    keys = set(zip(table["request_id"].to_pylist(), table["event_time"].to_pylist(), strict=True))
    assert len(keys) == table.num_rows  # no event twice after the replay
    checkpoint = s3.get_file_info(fs.FileSelector(f"{BUCKET}/run/checkpoints", recursive=True))
    assert any(f.path.endswith("/commits/0") for f in checkpoint)
    for out in (killed, resumed):
        assert secret not in out.stdout + out.stderr
