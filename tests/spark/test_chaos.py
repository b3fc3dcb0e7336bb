"""Chaos: `apistream stream` (driver, JVM and Python workers) is SIGKILLed at random moments,
again and again; then a restart finishes the run. What it leaves must equal an uninterrupted
run, table for table and lake row for lake row, and the SQLite account must balance after
every kill.

`make test` kills 5 times; `make chaos` 30 times over a longer input. The kill moments come
from APISTREAMTEST_CHAOS_SEED (random when unset; a failure names the seed to replay)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stream_helpers import (
    SMALL_RUN,
    cli_env,
    cli_stream,
    differences,
    results,
    small_run_config,
)

from apistream.config import Config
from apistream.generator.writer import LogGenerator
from apistream.pipeline.topology import run_stream

KILLS = int(os.environ.get("APISTREAMTEST_CHAOS_KILLS", "5"))
# A run starts cold: ~9 s of JVM start-up, then ~20 s of JIT warm-up in its first batch before
# anything commits, then a few seconds per batch. Half the kills (rounded up) land at a moment
# of the start: one in each equal stratum of START_S, in random order (start-up, checkpoint
# recovery, the first batch's work). The others wait for the run's first commit and land up to
# BATCH_S later, anywhere in a later batch: its parse, lake writes, SQLite commit or Spark's
# own commit. A run that has not committed by PATIENCE_S is killed then.
START_S = (3.0, 30.0)
BATCH_S = 5.0
PATIENCE_S = 120.0


@dataclass(frozen=True)
class Moment:
    """When to kill a run: `delay_s` after its start, or after its first commit."""

    delay_s: float
    after_commit: bool

    def __str__(self) -> str:
        return f"{self.delay_s:5.2f} s after {'its first commit' if self.after_commit else 'start'}"


@dataclass(frozen=True)
class Kill:
    """One killed run: when, and the batches committed before and after it."""

    moment: Moment
    committed_before: int
    committed_after: int
    exit: int | None  # None: killed; else the run finished before its kill

    def __str__(self) -> str:
        outcome = "killed" if self.exit is None else f"exited {self.exit} first"
        return (f"{self.moment}: {outcome}, committed batches "
                f"{self.committed_before} -> {self.committed_after}")  # fmt: skip


def committed(cfg: Config) -> int:
    """Batches committed to SQLite so far; asserts their account balances."""
    if not Path(cfg.sqlite_path).exists():
        return 0
    with sqlite3.connect(cfg.sqlite_path) as db:
        try:
            batches = db.execute("SELECT COUNT(*) FROM sink_commits").fetchone()[0]
            input_, *parts = db.execute(
                "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
            ).fetchone()
        except sqlite3.OperationalError:  # killed before the tables were made
            return 0
    assert (input_ or 0) == sum(p or 0 for p in parts), "the account must balance at any kill"
    return batches


def kill_at(cfg: Config, incoming: Path, settings: dict, moment: Moment, total: int) -> Kill:
    """Start a run and SIGKILL its whole process group at `moment`. With all `total`
    batches committed, there is no commit to wait for: the kill lands `delay_s` after start."""
    before = committed(cfg)
    log_path = Path(cfg.sinks.output).with_suffix(".log")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            # Not --until-idle: a run never ends before its kill, however fast the machine
            # (one that finished its input first made the kills miss); a kill after the input
            # is done lands in an idle stream, and the restart must still be exact.
            cli_stream(cfg, incoming, until_idle=False),
            env=cli_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group: the kill takes the JVM too
        )
        started = time.monotonic()
        if moment.after_commit and before < total:
            while committed(cfg) == before and time.monotonic() - started < PATIENCE_S:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        try:
            proc.wait(timeout=moment.delay_s)
            assert proc.returncode == 0, log_path.read_text(errors="replace")[-2000:]
            exit_code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            exit_code = None
    _wait_until_gone(proc.pid)
    return Kill(moment, before, committed(cfg), exit_code)


def _wait_until_gone(group: int) -> None:
    """The JVM and Python workers of a killed group are reaped by init; wait for it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process group {group} outlived its SIGKILL")


def kill_moments(kills: int, seed: int) -> list[Moment]:
    """Half (rounded up) at start moments, one in each stratum of START_S; the rest after a
    first commit, anywhere in BATCH_S; in random order."""
    rng = random.Random(seed)
    early = (kills + 1) // 2
    low, high = START_S
    width = (high - low) / early
    moments = [Moment(low + (i + rng.random()) * width, False) for i in range(early)]
    moments += [Moment(rng.uniform(0, BATCH_S), True) for _ in range(kills - early)]
    rng.shuffle(moments)
    return moments


def chaos(
    cfg: Config, incoming: Path, settings: dict, kills: int, seed: int, total: int
) -> list[Kill]:
    return [kill_at(cfg, incoming, settings, m, total) for m in kill_moments(kills, seed)]


def chaos_seed() -> int:
    return int(os.environ.get("APISTREAMTEST_CHAOS_SEED") or random.SystemRandom().getrandbits(32))


# make chaos: 60 one-file batches, so that 30 and more kills still land mid-run.
LONG_RUN = {**SMALL_RUN, "generator.events": 90_000, "generator.events_per_file": 1_500,
            "source.max_files_per_trigger": 1}  # fmt: skip


def reference_run(spark, request, tmp_path) -> tuple[dict, Path, dict[str, object], dict]:
    """(settings, input, results, manifest) of an uninterrupted run: the small run shared with
    the other fault tests, or with more than 5 kills the long run."""
    if KILLS <= 5:
        small = request.getfixturevalue("small_run")
        return SMALL_RUN, small.incoming, small.results, small.manifest
    incoming = tmp_path / "in"
    cfg = small_run_config(tmp_path / "reference", incoming, LONG_RUN)
    manifest = LogGenerator(cfg, str(incoming)).backfill()
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return LONG_RUN, incoming, results(cfg), manifest


def test_sigkill_at_random_moments_then_restart_is_exact(spark, request, tmp_path, record_property):
    settings, incoming, expected, manifest = reference_run(spark, request, tmp_path)
    seed = chaos_seed()
    cfg = small_run_config(tmp_path / "chaos", incoming, settings)
    kills = chaos(cfg, incoming, settings, KILLS, seed, len(expected["sink_commits"]))
    listing = "; ".join(map(str, kills))
    print(f"chaos seed {seed}:", *kills, sep="\n  ")
    record_property("kills", listing)
    replay = f"replay with APISTREAMTEST_CHAOS_SEED={seed}; kills: {listing}"
    assert all(k.exit is None for k in kills), f"a run ended before its kill; {replay}"

    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    differ = differences(results(cfg), expected)
    assert not differ, f"{replay}\n{differ}"
    with sqlite3.connect(cfg.sqlite_path) as db:
        valid = db.execute("SELECT SUM(valid) FROM data_quality").fetchone()[0]
    assert valid == manifest["valid_events"]
