"""Writes generated traffic as rolling JSON-lines files plus manifest.json, the ground truth.

Files are written to a hidden temp name and renamed, so a reader never sees half a file, and
get strictly increasing modification times, so a file source reads them in order. Late events
are placed against the watermark the stream will have: an event "late beyond the watermark"
in file k is older than the watermark after files 0..k-2F (F = files per trigger), whatever
the batching; one "late within" is never older than the newest event of its own file minus
half the watermark delay.

With a Kafka sink (`KafkaChunkSink`) the "files" are chunks produced in order, each confirmed
by the broker, keyed by endpoint to the partition Kafka's default partitioner picks. Spark's
Kafka source reads at most `max_offsets_per_trigger` (M) offsets of a partition per batch, so
an event "late beyond the watermark" at position i of partition p is placed older than the
newest plain event at positions up to i - 2M of the same partition minus the delay: that
event was read at least two batches earlier (late rows are judged against the previous
batch's watermark), whatever the batching (see docs/design.md).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from apistream.config import DEFECT_KINDS, Config
from apistream.fields import RAW_FIELDS
from apistream.generator.defects import corrupt
from apistream.generator.traffic import TrafficModel, iso_ms, plan_incidents, rate_at, span_s

PLAIN, LATE_WITHIN, LATE_BEYOND = 0, len(DEFECT_KINDS) + 1, len(DEFECT_KINDS) + 2
MANIFEST = "manifest.json"


@dataclass
class Tally:
    """Running ground truth of what has been written."""

    total_events: int = 0
    valid_events: int = 0
    duplicates: int = 0
    late_within: int = 0
    late_beyond: int = 0
    files: int = 0
    defects: Counter = field(default_factory=Counter)
    by_endpoint: Counter = field(default_factory=Counter)
    by_status_class: Counter = field(default_factory=Counter)
    by_endpoint_method: Counter = field(default_factory=Counter)
    min_ts: int | None = None
    max_ts: int | None = None


class ChunkSink(Protocol):
    """Where chunks go instead of files (a Kafka topic): `send` returns once confirmed."""

    partitions: int

    def send(self, lines: list[str], keys: list[str], partitions: list[int]) -> None: ...


class PartitionTracker:
    """Per-partition positions and running max of plain event times (Kafka sink)."""

    def __init__(self, of_endpoint: np.ndarray, partitions: int, max_offsets: int):
        self.of_endpoint = of_endpoint
        self.lag = 2 * max_offsets
        # running max at the last `lag` positions of each partition, from position base[p]
        self.running_max = [np.empty(0, dtype=np.int64) for _ in range(partitions)]
        self.base = [0] * partitions

    def references(self, eps: np.ndarray, plain: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """For each row, the newest plain event time at least 2M positions before it in its
        partition (-1 if none), then advance the positions by these rows."""
        part = self.of_endpoint[eps]
        ref = np.full(len(ts), -1, dtype=np.int64)
        for p, history in enumerate(self.running_max):
            idx = np.flatnonzero(part == p)
            last = history[-1] if len(history) else -1
            vals = np.where(plain[idx], ts[idx], -1).astype(np.int64)
            back = len(history) + np.arange(len(idx)) - self.lag  # relative to base[p]
            history = np.concatenate([history, np.maximum.accumulate(np.append(last, vals))[1:]])
            ok = back + self.base[p] >= 0
            ref[idx[ok]] = history[back[ok]]
            drop = max(0, len(history) - self.lag)
            self.running_max[p], self.base[p] = history[drop:], self.base[p] + drop
        return ref


@dataclass
class Chunk:
    """The lines of one file or Kafka chunk and the endpoint index of each line."""

    lines: list[str]
    eps: np.ndarray


class LogGenerator:
    """Generates files into `out_dir` for a config; deterministic for seed and start.

    With a `sink`, chunks go to it (a Kafka topic) and only manifest.json is written to out_dir.
    """

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path,
        now_ms: int | None = None,
        sink: ChunkSink | None = None,
    ):
        self.cfg = cfg
        self.sink = sink
        self.gen = cfg.generator
        self.out = Path(out_dir)
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if self.gen.mode == "live":
            self.start_ms = self.now_ms
        elif self.gen.start:
            self.start_ms = int(np.datetime64(self.gen.start.rstrip("Z"), "ms").astype(np.int64))
        else:
            before_now = span_s(self.gen, self.now_ms, self.gen.events, backwards=True)
            self.start_ms = (self.now_ms - int(before_now * 1000)) // 1000 * 1000
        span = span_s(self.gen, self.start_ms, self.gen.events)
        self.incidents = plan_incidents(cfg, self.start_ms, span, self.gen.seed)
        self.model = TrafficModel(cfg, self.incidents, self.gen.seed, self.start_ms)
        self.rng = np.random.default_rng([self.gen.seed, 3])
        self.wm_ms = int(cfg.processing.watermark * 1000)
        self.lag_files = 2 * cfg.source.max_files_per_trigger
        self.cum_max: list[int] = []  # newest event time over files 0..k
        self.tally = Tally()
        self._last_mtime = 0.0
        self._file_seq = self._next_file_seq()
        probs = [getattr(self.gen.defects, k) for k in DEFECT_KINDS]
        if cfg.validation.max_age is None:
            probs[DEFECT_KINDS.index("stale_timestamp")] = 0.0
        self._cat_cum = np.cumsum([*probs, self.gen.late_within_rate, self.gen.late_beyond_rate])
        self.tracker: PartitionTracker | None = None
        if sink is not None:
            from apistream.kafka_io import partition_for

            of_endpoint = np.array(
                [partition_for(e.template, sink.partitions) for e in cfg.endpoints]
            )
            self.tracker = PartitionTracker(
                of_endpoint, sink.partitions, cfg.source.kafka.max_offsets_per_trigger
            )

    def _next_file_seq(self) -> int:
        existing = sorted(self.out.glob("events-*.jsonl")) if self.out.exists() else []
        return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0

    # -- building ---------------------------------------------------------------------------
    def build_file(self, t0_ms: int, t1_ms: int, n: int, max_lines: int) -> list[str]:
        """Lines of one file with arrivals in [t0, t1), at most max_lines, and tally them."""
        return self.build_chunk(t0_ms, t1_ms, n, max_lines).lines

    def build_chunk(self, t0_ms: int, t1_ms: int, n: int, max_lines: int) -> Chunk:
        """A file's or Kafka chunk's lines with arrivals in [t0, t1), and tally them."""
        times, eps = self.model.arrivals(t0_ms, t1_ms, n)
        df = self.model.build(times, eps)
        n = df.height
        cat = np.searchsorted(self._cat_cum, self.rng.random(n), side="right") + 1
        cat[cat > LATE_BEYOND] = PLAIN
        ts = df["ts_ms"].to_numpy().copy()
        file_max = int(ts.max()) if n else t0_ms
        k = len(self.cum_max)
        late_w = cat == LATE_WITHIN
        ts[late_w] = file_max - (self.rng.uniform(0.1, 0.5, late_w.sum()) * self.wm_ms)
        late_b = cat == LATE_BEYOND
        if self.tracker is not None:
            refs = self.tracker.references(df["ep"].to_numpy(), cat == PLAIN, ts)
            cat[late_b & (refs < 0)] = PLAIN
            late_b = cat == LATE_BEYOND
            jitter = self.rng.integers(1000, 300_000, late_b.sum())
            ts[late_b] = refs[late_b] - self.wm_ms - jitter
        elif k - self.lag_files >= 0:
            ref = self.cum_max[k - self.lag_files]
            ts[late_b] = ref - self.wm_ms - self.rng.integers(1000, 300_000, late_b.sum())
        else:
            cat[late_b] = PLAIN
        self.cum_max.append(max(file_max, self.cum_max[-1] if self.cum_max else file_max))
        df = df.with_columns(ts_ms=pl.Series(ts))
        lines = self._encode(df).to_list()
        for i in np.flatnonzero((cat >= 1) & (cat <= len(DEFECT_KINDS))):
            lines[i] = corrupt(
                DEFECT_KINDS[cat[i] - 1],
                json.loads(lines[i]),
                self.rng,
                self.cfg.validation,
                self.now_ms,
                iso_ms,
            )
        # Exact re-deliveries of plain records, a little later in the same file.
        dup_src = np.flatnonzero((cat == PLAIN) & (self.rng.random(n) < self.gen.duplicate_rate))
        keys = np.concatenate(
            [np.arange(n, dtype=float), self.rng.integers(dup_src, n) + 0.5 if n else np.array([])]
        )
        src = np.concatenate([np.arange(n), dup_src])
        order = np.argsort(keys, kind="stable")[:max_lines]
        kept_src, kept_dup = src[order], order >= n
        self._tally(df, cat, kept_src[~kept_dup], int(kept_dup.sum()))
        return Chunk([lines[i] for i in kept_src], df["ep"].to_numpy()[kept_src])

    def _encode(self, df: pl.DataFrame) -> pl.Series:
        ts = pl.from_epoch(pl.col("ts_ms"), time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        return df.select(
            pl.struct(
                *[ts.alias(f) if f == "timestamp" else pl.col(f) for f in RAW_FIELDS]
            ).struct.json_encode()
        ).to_series()

    def _tally(self, df: pl.DataFrame, cat: np.ndarray, rows: np.ndarray, dups: int) -> None:
        t = self.tally
        t.total_events += len(rows) + dups
        t.duplicates += dups
        c = cat[rows]
        for i, kind in enumerate(DEFECT_KINDS, start=1):
            t.defects[kind] += int((c == i).sum())
        t.late_beyond += int((c == LATE_BEYOND).sum())
        t.late_within += int((c == LATE_WITHIN).sum())
        valid_rows = rows[(c == PLAIN) | (c == LATE_WITHIN)]
        templates = pl.Series([e.template for e in self.cfg.endpoints])
        valid = df[valid_rows]
        valid = valid.with_columns(
            endpoint=templates.gather(valid["ep"]),
            status_class=(pl.col("status") // 100).cast(pl.String) + "xx",
        )
        t.valid_events += valid.height
        if valid.height:
            t.min_ts = min(t.min_ts or 2**62, int(valid["ts_ms"].min()))
            t.max_ts = max(t.max_ts or 0, int(valid["ts_ms"].max()))
        for col, counter in (("endpoint", t.by_endpoint), ("status_class", t.by_status_class)):
            for key, cnt in valid.group_by(col).len().iter_rows():
                counter[key] += cnt
        for ep, m, cnt in valid.group_by("endpoint", "method").len().iter_rows():
            t.by_endpoint_method[f"{m} {ep}"] += cnt

    # -- writing ----------------------------------------------------------------------------
    def write_file(self, lines: list[str]) -> Path:
        """Write lines atomically (hidden temp file, then rename) with an increasing mtime."""
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"events-{self._file_seq:06d}.jsonl"
        tmp = self.out / f".{name}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        final = self.out / name
        os.replace(tmp, final)
        self._last_mtime = max(time.time(), self._last_mtime + 0.002)
        os.utime(final, (self._last_mtime, self._last_mtime))
        self._file_seq += 1
        self.tally.files += 1
        return final

    def emit(self, chunk: Chunk) -> None:
        """Write a chunk as a file, or send it to the sink and wait for its confirmation."""
        if self.sink is None or self.tracker is None:
            self.write_file(chunk.lines)
            return
        templates = [e.template for e in self.cfg.endpoints]
        keys = [templates[i] for i in chunk.eps]
        self.sink.send(chunk.lines, keys, self.tracker.of_endpoint[chunk.eps].tolist())
        self.tally.files += 1

    def manifest(self) -> dict[str, Any]:
        t = self.tally
        return {
            "seed": self.gen.seed,
            "mode": self.gen.mode,
            "start": iso_ms(self.start_ms),
            "event_time_min": iso_ms(t.min_ts) if t.min_ts else None,
            "event_time_max": iso_ms(t.max_ts) if t.max_ts else None,
            "files": t.files,
            "total_events": t.total_events,
            "valid_events": t.valid_events,
            "valid_by_endpoint": dict(sorted(t.by_endpoint.items())),
            "valid_by_status_class": dict(sorted(t.by_status_class.items())),
            "valid_by_endpoint_method": dict(sorted(t.by_endpoint_method.items())),
            "defects": {k: t.defects[k] for k in DEFECT_KINDS},
            "duplicates": t.duplicates,
            "late_within_watermark": t.late_within,
            "late_beyond_watermark": t.late_beyond,
            "incidents": [i.as_manifest() for i in self.incidents],
            "settings": {
                "window_s": self.cfg.processing.window,
                "watermark_s": self.cfg.processing.watermark,
                "max_files_per_trigger": self.cfg.source.max_files_per_trigger,
                **self._sink_settings(),
            },
        }

    def _sink_settings(self) -> dict[str, Any]:
        if self.sink is None:
            return {"sink": "files"}
        k = self.cfg.source.kafka
        return {
            "sink": "kafka",
            "topic": k.topic,
            "partitions": self.sink.partitions,
            "max_offsets_per_trigger": k.max_offsets_per_trigger,
        }

    def write_manifest(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.manifest(), indent=2))
        os.replace(tmp, self.out / MANIFEST)

    def _file_size(self, t_ms: int, remaining: int) -> int:
        by_span = int(rate_at(self.gen, t_ms) * self.cfg.processing.watermark / 4)
        return max(1, min(self.gen.events_per_file, by_span, remaining))

    def backfill(self, on_file: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
        """Write all events as fast as possible, event time starting at `start`."""
        t = self.start_ms
        while self.tally.total_events < self.gen.events:
            remaining = self.gen.events - self.tally.total_events
            n = self._file_size(t, remaining)
            t1 = t + max(1, int(n / rate_at(self.gen, t) * 1000))
            chunk = self.build_chunk(t, t1, n, remaining)
            self.emit(chunk)
            self.write_manifest()
            on_file(len(chunk.lines))
            t = t1
        self.write_manifest()
        return self.manifest()

    def live(
        self, stop: threading.Event, on_file: Callable[[int], None] = lambda n: None
    ) -> dict[str, Any]:
        """Write one file a second at `rate` events/s of wall-clock time until done or stopped.

        A second's events are written once that second is over, as a log shipper flushing
        every second would: no line reaches the input before its request happened.
        """
        next_tick = time.time()
        while self.tally.total_events < self.gen.events and not stop.is_set():
            t0 = int(next_tick * 1000)
            remaining = self.gen.events - self.tally.total_events
            n = max(1, min(remaining, int(self.rng.poisson(rate_at(self.gen, t0)))))
            chunk = self.build_chunk(t0, t0 + 1000, n, remaining)
            next_tick += 1.0
            stop.wait(max(0.0, next_tick - time.time()))  # on stop: flush this second now
            self.emit(chunk)
            self.write_manifest()
            on_file(len(chunk.lines))
        self.write_manifest()
        return self.manifest()
