"""Helpers of the stream tests: a CLI stream stopped with SIGTERM mid-stream, input held back
so that a stop or an outage comes mid-stream by construction, the Kafka runs' config, and the
comparison of a finished run with its manifest or with another run."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from apistream.catalog import Paths
from apistream.config import Config, load_config
from apistream.generator.writer import ChunkSink, LogGenerator
from apistream.lake import read_table
from apistream.pipeline.topology import run_stream


def quality_so_far(db_path: Path) -> tuple[int, int]:
    """(events batches, input records) recorded in data_quality so far."""
    if not db_path.exists():
        return 0, 0
    with sqlite3.connect(db_path) as db:
        try:
            return db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input), 0) FROM data_quality"
            ).fetchone()
        except sqlite3.OperationalError:
            return 0, 0


def sigterm_cli_stream(
    args: list[str], env: dict[str, str], db_path: Path, after_batches: int = 3
) -> str:
    """Run `apistream stream ARGS`, send SIGTERM once `after_batches` events batches are
    recorded, and return its stderr; it must exit 0 saying it stops."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "apistream.cli", "stream", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while quality_so_far(db_path)[0] < after_batches and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping" in err
    return err


def stage_files(staging: Path, incoming: Path, first: int) -> list[Path]:
    """Move the first `first` generated files (in name order, which is their write order) from
    `staging` into `incoming`; return the others, held back until `release_files`. A stream
    started on `incoming` cannot read past them, so a stop lands before the end by
    construction, not by timing."""
    files = sorted(staging.glob("events-*.jsonl"))
    assert len(files) > first, "nothing would be held back"
    incoming.mkdir(parents=True, exist_ok=True)
    for f in files[:first]:
        shutil.move(f, incoming / f.name)
    return files[first:]


def release_files(held: list[Path], incoming: Path) -> None:
    """Move the held-back files into `incoming` (renames keep their write-order mtimes)."""
    for f in held:
        shutil.move(f, incoming / f.name)


class HeldBackSink:
    """A generator sink (a Kafka topic) that forwards the first `first` chunks and keeps the
    rest until `release()`: the stream cannot read past them, so whatever happens before the
    release happens mid-stream by construction."""

    def __init__(self, sink: ChunkSink, first: int):
        self.sink, self.first = sink, first
        self.partitions: int = sink.partitions
        self.chunks = 0  # chunks seen
        self.forwarded = 0  # records sent to the topic
        self.held: list[tuple[list[str], list[str], list[int]]] = []

    def send(self, lines: list[str], keys: list[str], partitions: list[int]) -> None:
        """Forward the chunk, or keep it once `first` chunks are out."""
        self.chunks += 1
        if self.chunks > self.first:
            self.held.append((list(lines), list(keys), list(partitions)))
            return
        self.sink.send(lines, keys, partitions)
        self.forwarded += len(lines)

    def release(self) -> None:
        """Send the held chunks, in order."""
        for chunk in self.held:
            self.sink.send(*chunk)
            self.forwarded += len(chunk[0])
        self.held = []


def assert_matches_manifest(sqlite_path: str, manifest: dict) -> None:
    """The data-quality account and requests per endpoint equal the generator's manifest."""
    with sqlite3.connect(sqlite_path) as db:
        total, valid, quarantined, dups, late = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
        by_endpoint = dict(
            db.execute("SELECT endpoint, SUM(requests) FROM endpoint_metrics GROUP BY 1")
        )
    assert total == manifest["total_events"]
    assert valid == manifest["valid_events"]
    assert quarantined == sum(manifest["defects"].values())
    assert dups == manifest["duplicates"]
    assert late == manifest["late_beyond_watermark"]
    assert by_endpoint == manifest["valid_by_endpoint"]


# Columns that hold wall-clock times or timings, not results.
CLOCK_COLUMNS = {"committed_at", "recorded_at", "detected_at", "stage_ms"}


def results(cfg) -> dict[str, object]:
    """SQLite tables (without clock columns) and the rows of every lake table."""
    out: dict[str, object] = {}
    with sqlite3.connect(cfg.sqlite_path) as db:
        for table in ("endpoint_metrics", "throughput", "data_quality", "sink_commits",
                      "anomalies", "anomaly_baselines"):  # fmt: skip
            cur = db.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cur.description]
            keep = [i for i, n in enumerate(names) if n not in CLOCK_COLUMNS]
            out[table] = sorted(tuple(_round(r[i]) for i in keep) for r in cur.fetchall())
    paths = Paths.of(cfg)
    for name in ("events", "quarantine", "endpoint_metrics", "anomalies"):
        table = read_table(getattr(paths, name))
        columns = [c for c in table.column_names if c not in {"ingest_time", "detected_at"}]
        rows = table.select(columns).to_pylist() if columns else []
        out[f"lake/{name}"] = sorted(
            repr(sorted((k, _round(v)) for k, v in r.items())) for r in rows
        )
    return out


def differences(got: dict[str, object], expected: dict[str, object]) -> str:
    """What differs between two `results`, table by table: the rows only one side has (a
    few of each), '' if nothing."""
    out = [f"{name}: only one side has it" for name in sorted(expected.keys() ^ got.keys())]
    for name in sorted(expected.keys() & got.keys()):
        mine, theirs = got[name], expected[name]
        if mine == theirs:
            continue
        extra = [r for r in mine if r not in theirs]
        missing = [r for r in theirs if r not in mine]
        out.append(f"{name}: {len(mine)} rows, expected {len(theirs)}")
        out += [f"  only got:      {_short(r)}" for r in extra[:3]]
        out += [f"  only expected: {_short(r)}" for r in missing[:3]]
    return "\n".join(out)


def _short(row: object) -> str:
    """A row without its bytes (sketches), cut to a readable length."""
    if isinstance(row, tuple):
        row = tuple("<bytes>" if isinstance(v, bytes) else v for v in row)
    text = str(row)
    return text if len(text) < 400 else text[:400] + "..."


def _round(value: object) -> object:
    """Floating sums may differ in the last bits with the order Spark adds them in."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


# A run of 12 files in batches of 2, shared by the crash, chaos and full-disk tests.
SMALL_RUN = {
    "generator.events": 24_000,
    "generator.events_per_file": 2_000,
    "generator.rate": 200,
    "generator.seed": 21,
    "source.max_files_per_trigger": 2,
}


def cli_env(settings: dict[str, object], **extra: str) -> dict[str, str]:
    """The environment of an `apistream` subprocess run with `settings` (and no other
    APISTREAM_* variable of this process)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("APISTREAM_")},
        "APISTREAM_SPARK__MASTER": "local[2]",
        **{f"APISTREAM_{k.upper().replace('.', '__')}": str(v) for k, v in settings.items()},
        **extra,
    }


def cli_stream(cfg: Config, incoming: Path, until_idle: bool = True) -> list[str]:
    """`apistream stream [--until-idle]` over `incoming` into the outputs of `cfg`."""
    return [sys.executable, "-m", "apistream.cli", "stream",
            *(["--until-idle"] if until_idle else []),
            "--input", str(incoming), "--output", cfg.sinks.output]  # fmt: skip


def kafka_config(root: Path, bootstrap: str, topic: str, **extra: object) -> Config:
    """The file-source end-to-end test's settings, with the Kafka source on `topic`."""
    overrides = {
        "generator.events": 60_000,
        "generator.events_per_file": 3_000,
        "generator.rate": 400,
        "generator.seed": 11,
        "source.format": "kafka",
        "source.path": str(root / "incoming"),
        "source.kafka.bootstrap_servers": bootstrap,
        "source.kafka.topic": topic,
        "source.kafka.partitions": 3,
        "source.kafka.max_offsets_per_trigger": 10_000,
        "source.kafka.connect_timeout": "10 seconds",
        "sinks.output": str(root),
        **extra,
    }
    return load_config(environ={}, overrides=overrides)


def small_run_config(root: Path, incoming: Path, settings: dict[str, object]) -> Config:
    """The config of a run over `incoming` with its outputs under `root`."""
    return load_config(
        environ={},
        overrides={**settings, "source.path": str(incoming), "sinks.output": str(root)},
    )


def live_stream(spark, cfg: Config, stop) -> tuple[threading.Thread, list[BaseException]]:
    """A live run (until `stop` is set) in a thread, returned once its first batch has
    committed (or failed: the exception is in the list)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_stream(spark, cfg, until_idle=False, stop=stop)
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline
        and not failure
        and quality_so_far(Path(cfg.sqlite_path))[0] == 0
    ):
        time.sleep(0.2)
    return thread, failure


def stream_from(spark, root: Path, start: datetime, **settings: object) -> Config:
    """Generate a run whose event time starts at the fixed instant `start` and stream it to
    the end (every window final). The stale-timestamp check (age against the ingest clock)
    is off, since the instants are fixed."""
    cfg = load_config(
        environ={},
        overrides={
            **settings,
            "generator.start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source.path": str(root / "in"),
            "sinks.output": str(root / "out"),
            "validation.max_age": None,
        },
    )
    LogGenerator(cfg, cfg.source.path).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return cfg
