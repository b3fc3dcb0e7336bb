"""Benchmark runs: generate input, run the real pipeline (`apistream stream`) in a child
process, watch it, and turn what it recorded in SQLite into figures.

The pipeline is one streaming query (`PIPELINE_QUERY`) whose micro-batch writes the lake, the
quarantine, the window metrics and the data-quality row in one go. Every figure comes from the
run's own records: stream_progress (one row per micro-batch), data_quality (the per-batch
account) and sink_commits (when each batch was committed to SQLite, with the newest valid event
time up to it).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from apistream import sqlite_store
from apistream.bench.monitor import RssSampler
from apistream.catalog import PIPELINE_QUERY
from apistream.config import Config, KafkaSourceConfig
from apistream.errors import ApiStreamError
from apistream.generator.writer import LogGenerator

Tick = Callable[[str], None]
# A live run kept up when the age of the newest event in SQLite grew by at most this (s/min).
MAX_LAG_GROWTH = 1.0
# A fixed rate for the live run: no daily cycle, no traffic incidents.
LIVE_TRAFFIC = {"generator__daily_amplitude": 0, "generator__incidents__random_count": 0}
# A live run tested its rate when the generator wrote at least this share of it.
MIN_RATE_SHARE = 0.95
# Live runs start generating once the query has started (its checkpoint exists), at most
# after this long: JVM start and, for Kafka, resolving Spark's connector are not freshness.
START_TIMEOUT = 300


@dataclass(frozen=True)
class Pipeline:
    """How to start `apistream stream`: the config file and environment overrides."""

    config: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "apistream", *args, "--config", str(self.config)]

    def environ(self, **overrides: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APISTREAM_")}
        env.update(self.env)
        env.update({f"APISTREAM_{k.upper()}": str(v) for k, v in overrides.items()})
        return env


def generate(cfg: Config, directory: Path, events: int, seed: int) -> dict[str, Any]:
    """Backfill `events` into `directory` in this process; returns the manifest and the
    generator's own events/s (one core, the reference every other rate is compared with)."""
    gen_cfg = cfg.model_copy(
        update={"generator": cfg.generator.model_copy(update={"events": events, "seed": seed})}
    )
    started = time.perf_counter()
    manifest = LogGenerator(gen_cfg, directory).backfill()
    seconds = time.perf_counter() - started
    return {"manifest": manifest, "seconds": seconds, "events_per_s": events / seconds}


def _epoch(text: str | None) -> float | None:
    """SQLite's ISO-8601 UTC text -> epoch seconds."""
    return sqlite_store.parse_iso(text).replace(tzinfo=UTC).timestamp() if text else None


def _spawn(pipe: Pipeline, args: list[str], env: dict[str, str], log: Path):
    """Start `apistream <args>` with its output in `log`."""
    with open(log, "wb") as fh:
        return subprocess.Popen(pipe.command(*args), env=env, stdout=fh, stderr=subprocess.STDOUT)


def _query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if not db.is_file():
        return []
    try:
        with sqlite_store.read_only(db, timeout=10) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []


def caught_up(db: Path, expected_input: int) -> bool:
    """Every input line is accounted for in a committed batch (its data_quality row is in the
    same commit as its window metrics), and that batch's progress row is recorded."""
    totals = _query(db, "SELECT input, valid FROM data_quality_totals")
    last = _query(
        db,
        "SELECT (SELECT MAX(batch_id) FROM sink_commits WHERE query = ?), "
        "(SELECT MAX(batch_id) FROM stream_progress WHERE query = ?)",
        (PIPELINE_QUERY, PIPELINE_QUERY),
    )
    if not totals or not last:
        return False
    (seen, valid), (committed, progressed) = totals[0], last[0]
    return (
        seen >= expected_input
        and valid > 0
        and committed is not None
        and progressed is not None
        and progressed >= committed
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the pipeline to stop at a batch boundary (SIGINT), then insist."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(
    proc: subprocess.Popen[bytes], done: Callable[[], bool], timeout: float, what: str, log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ApiStreamError(f"the pipeline exited ({proc.returncode}) during {what}:\n{tail}")
        if time.monotonic() > deadline:
            _stop(proc)
            raise ApiStreamError(f"{what} did not finish within {timeout:.0f} s (see {log})")
        time.sleep(0.5)


def _batches(db: Path, query: str) -> list[dict[str, Any]]:
    rows = _query(
        db,
        "SELECT batch_id, timestamp, input_rows, batch_duration_ms, state_rows, "
        "state_memory_bytes FROM stream_progress WHERE query = ? ORDER BY batch_id",
        (query,),
    )
    return [
        {
            "batch_id": b,
            "start": _epoch(ts),
            "end": (_epoch(ts) or 0) + (ms or 0) / 1000,
            "rows": n,
            "duration_s": (ms or 0) / 1000,
            "state_rows": sr or 0,
            "state_mb": (sm or 0) / 2**20,
        }
        for b, ts, n, ms, sr, sm in rows
    ]


def _commits(db: Path) -> tuple[np.ndarray, np.ndarray]:
    """Commit time and newest event time (epoch s) of each committed batch, in batch order."""
    rows = _query(
        db,
        "SELECT committed_at, max_event_time FROM sink_commits WHERE query = ? "
        "AND max_event_time IS NOT NULL ORDER BY batch_id",
        (PIPELINE_QUERY,),
    )
    return (
        np.array([_epoch(c) for c, _ in rows], dtype=float),
        np.array([_epoch(m) for _, m in rows], dtype=float),
    )


def backlog_run(
    pipe: Pipeline, input_dir: Path, out_dir: Path, events: int, files_per_trigger: int
) -> dict[str, Any]:
    """Stream a pre-generated backlog as fast as the pipeline goes (trigger interval 0) until
    every event is accounted for in SQLite (window metrics, data quality, in one commit)."""
    db = out_dir / "analytics.db"
    log = out_dir.parent / f"{out_dir.name}.log"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = pipe.environ(
        source__max_files_per_trigger=files_per_trigger, processing__trigger_interval="0s"
    )
    started = time.time()
    proc = _spawn(pipe, ["stream", "--input", str(input_dir), "--output", str(out_dir)], env, log)
    sampler = RssSampler(proc.pid).start()
    try:
        _wait(proc, lambda: caught_up(db, events), 120 + events / 2000, "the backlog run", log)
        done = time.time()
    finally:
        _stop(proc)
        sampler.stop()
    batches = [b for b in _batches(db, PIPELINE_QUERY) if b["rows"]]
    commit_t, _ = _commits(db)
    if len(batches) < 2 or not len(commit_t):
        raise ApiStreamError(f"too few batches to measure ({len(batches)}); see {log}")
    first, rest = batches[0], batches[1:]
    # The commit of the last batch that read input (a no-data batch may follow it).
    committed = dict(
        _query(
            db, "SELECT batch_id, committed_at FROM sink_commits WHERE query = ?", (PIPELINE_QUERY,)
        )
    )
    last_data = committed.get(batches[-1]["batch_id"])
    caught = _epoch(last_data) if last_data else float(commit_t.max())
    steady_rows = sum(b["rows"] for b in rest)
    return {
        "events": events,
        "files_per_trigger": files_per_trigger,
        "rows_per_batch_median": float(np.median([b["rows"] for b in rest])),
        "batches": len(batches),
        "wall_s": round(done - started, 2),
        "first_metric_s": round(float(commit_t.min()) - started, 2),
        "first_batch_s": round(first["duration_s"], 2),
        "batch_s_median": round(float(np.median([b["duration_s"] for b in rest])), 3),
        # From the end of the first batch (JVM start, JIT) until the last commit: one query,
        # so this is both the ingest rate and the end-to-end rate.
        "sustained_events_per_s": round(steady_rows / (caught - first["end"])),
        # Everything: process start (JVM included) until SQLite holds every event.
        "overall_events_per_s": round(events / (done - started)),
        "dedup_state_rows_max": max(b["state_rows"] for b in batches),
        "stage_share": stage_shares(db, {b["batch_id"]: b["duration_s"] for b in rest}),
        "memory_peak": sampler.peaks(),
    }


def stage_shares(db: Path, durations: dict[int, float]) -> dict[str, float]:
    """Share of the batches' time in each stage of the sink (`sink_commits.stage_ms`, the
    run's own timings); what the stages do not cover (SQLite commit, Spark's own bookkeeping
    of the batch) is `other`."""
    rows = _query(
        db, "SELECT batch_id, stage_ms FROM sink_commits WHERE query = ?", (PIPELINE_QUERY,)
    )
    total: dict[str, float] = {}
    for batch_id, stage_ms in rows:
        if batch_id not in durations or not stage_ms:
            continue
        stages = json.loads(stage_ms)
        stages["other"] = max(0.0, durations[batch_id] * 1000 - sum(stages.values()))
        for k, v in stages.items():
            total[k] = total.get(k, 0.0) + v
    whole = sum(total.values())
    return {k: round(v / whole, 3) for k, v in total.items()} if whole else {}


def _wait_started(proc: subprocess.Popen[bytes], out_dir: Path, log: Path) -> float:
    """Seconds until the query has started (Spark wrote its checkpoint's `metadata`), or
    START_TIMEOUT if that never shows; raises if the pipeline exits meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ApiStreamError(f"the pipeline exited ({proc.returncode}) at start:\n{tail}")
        if any(p.is_file() for p in out_dir.rglob("metadata")):
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def live_run(
    pipe: Pipeline,
    work: Path,
    rate: int,
    seconds: int,
    warmup: int,
    tick: Tick,
    kafka: KafkaSourceConfig | None = None,
) -> dict[str, Any]:
    """Generate at `rate` events/s in real time for `seconds` while the pipeline runs live,
    reading files or (with `kafka`: broker, topic, max offsets per batch) a Kafka topic;
    freshness is the delay from an event's creation to its window metric in SQLite."""
    source = "files" if kafka is None else "kafka"
    name = f"live-{source}"
    input_dir, out_dir = work / f"{name}-input", work / f"{name}-output"
    input_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    db, log = out_dir / "analytics.db", work / f"{name}-pipeline.log"
    overrides: dict[str, Any] = dict(LIVE_TRAFFIC)
    if kafka is None:
        stream = ["stream", "--input", str(input_dir), "--output", str(out_dir)]
        sink = ["--input", str(input_dir)]
    else:
        from apistream.kafka_io import ensure_topic

        ensure_topic(kafka)  # the pipeline checks that its topic exists before it starts
        where = ["--topic", kafka.topic, "--bootstrap-servers", kafka.bootstrap_servers]
        stream = ["stream", "--source", "kafka", *where, "--output", str(out_dir)]
        sink = ["--sink", "kafka", *where, "--manifest", str(input_dir)]
        # The generator places late events against the same offsets per batch as the stream.
        overrides["source__kafka__max_offsets_per_trigger"] = kafka.max_offsets_per_trigger
    env = pipe.environ(**overrides)
    spawned = time.time()
    proc = _spawn(pipe, stream, env, log)
    sampler = RssSampler(proc.pid, interval=2.0).start()
    gen_log = work / f"{name}-generator.log"
    gen: subprocess.Popen[bytes] | None = None
    try:
        start_s = _wait_started(proc, out_dir, log)
        gen_started = time.time()
        generate = ["generate", "--mode", "live", "--rate", str(rate)]
        generate += ["--events", str(rate * seconds), *sink]
        gen = _spawn(pipe, generate, env, gen_log)
        while gen.poll() is None:
            if proc.poll() is not None:
                gen.kill()
                gen.wait()
                break
            elapsed = time.time() - gen_started
            if int(elapsed) % 60 == 0:
                tick(f"  live ({source}): {elapsed:.0f} of {seconds} s")
            time.sleep(1)
        gen_ended = time.time()
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ApiStreamError(f"the pipeline exited ({proc.returncode}) during the run:\n{tail}")
        if gen.returncode:
            tail = gen_log.read_text(errors="replace")[-1500:]
            raise ApiStreamError(f"the live generator failed; see {gen_log}:\n{tail}")
        total = json.loads((input_dir / "manifest.json").read_text())["total_events"]
        _wait(proc, lambda: caught_up(db, total), 600, "the live run's catch-up", log)
        catch_up_s = time.time() - gen_ended
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait()
        _stop(proc)
        sampler.stop()
    commit_t, max_et = _commits(db)
    max_et = np.maximum.accumulate(max_et)
    # Events are created at a constant rate: sample creation times evenly over the run.
    delay = freshness_delays(commit_t, max_et, np.arange(gen_started + warmup, gen_ended, 0.05))
    if not len(delay):
        raise ApiStreamError(f"no commit after the warm-up of the live run; see {log}")
    late = commit_t >= gen_started + warmup
    # Keeping up: the age of the newest event in SQLite does not grow over the run.
    lag_slope = slope_per_minute(
        list(commit_t[late] - gen_started), list(commit_t[late] - max_et[late])
    )
    batches = [b for b in _batches(db, PIPELINE_QUERY) if b["start"] and b["start"] >= gen_started]
    # Slopes over the second half: the dedup state takes about the watermark delay plus a
    # warm-up to reach its steady size; after that memory and state should be flat.
    half = (gen_ended - gen_started) / 2
    offset = gen_started - spawned  # memory samples count from the pipeline's start
    mem = [s for s in sampler.samples if s.t - offset >= half]
    steady = [b for b in batches if b["start"] >= gen_started + half]
    achieved = total / (gen_ended - gen_started)
    return {
        "source": source,
        "rate": rate,
        "seconds": seconds,
        "warmup_s": warmup,
        "events": total,
        # The generator's own pace: below MIN_RATE_SHARE of `rate` the run did not test it.
        "achieved_rate": round(achieved),
        "rate_reached": achieved >= MIN_RATE_SHARE * rate,
        "pipeline_start_s": start_s,
        **(
            {"kafka_max_offsets_per_trigger": kafka.max_offsets_per_trigger}
            if kafka is not None
            else {}
        ),
        "freshness_s": {
            "p50": round(float(np.percentile(delay, 50)), 2),
            "p95": round(float(np.percentile(delay, 95)), 2),
            "p99": round(float(np.percentile(delay, 99)), 2),
            "max": round(float(delay.max()), 2),
            "samples": len(delay),
        },
        "catch_up_s": round(catch_up_s, 1),
        "lag_slope_s_per_min": lag_slope,
        "kept_up": lag_slope is not None and lag_slope <= MAX_LAG_GROWTH,
        "staleness_series": [
            [round(c - gen_started, 1), round(c - m, 2)]
            for c, m in zip(commit_t, max_et, strict=True)
            if c >= gen_started
        ],
        "memory_peak": sampler.peaks(),
        "memory_series": [
            [round(s.t - offset, 1), round(s.python_mb, 1), round(s.jvm_mb, 1)]
            for s in sampler.samples
        ],
        "memory_slope_mb_per_min": slope_per_minute([s.t for s in mem], [s.total_mb for s in mem]),
        "state_series": [[round(b["start"] - gen_started, 1), b["state_rows"]] for b in batches],
        "state_rows_slope_per_min": slope_per_minute(
            [b["start"] for b in steady], [b["state_rows"] for b in steady]
        ),
        "batch_s_median": round(float(np.median([b["duration_s"] for b in steady])), 3)
        if steady
        else None,
    }


def freshness_delays(commit_t: np.ndarray, max_et: np.ndarray, created: np.ndarray) -> np.ndarray:
    """Seconds from each creation time to the first commit whose newest event is at
    least that new (all earlier events are in it: files and batches are processed in order).
    Creation times no commit has reached yet are left out."""
    newest = np.maximum.accumulate(max_et)
    idx = np.searchsorted(newest, created, side="left")
    seen = idx < len(commit_t)
    return commit_t[idx[seen]] - created[seen]


def slope_per_minute(t: list[float], y: list[float]) -> float | None:
    """Least-squares slope per minute, or None with too few points."""
    if len(t) < 3:
        return None
    return round(float(np.polyfit(np.array(t) / 60.0, np.array(y), 1)[0]), 2)
