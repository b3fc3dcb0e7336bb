"""Writes generated traffic as rolling JSON-lines files plus manifest.json, the ground truth.

Each chunk is built by pure steps (traffic model, categories, late placement, corruption,
duplicates, tally); this module orchestrates them and does the I/O. Files are written to a
hidden temp name and renamed, so a reader never sees half a file, and get strictly
increasing modification times, so a file source reads them in order.

With a Kafka sink (`KafkaChunkSink`) the "files" are chunks produced in order, each confirmed
by the broker, keyed by endpoint to the partition Kafka's default partitioner picks; late
events are then placed per partition (see `lateness`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from apistream.config import Config
from apistream.generator.categories import category_bounds, choose_categories
from apistream.generator.chunk import Chunk, encode_lines
from apistream.generator.defects import corrupt_lines
from apistream.generator.duplicates import add_duplicates
from apistream.generator.lateness import (
    PartitionHistory,
    late_beyond_in_files,
    late_beyond_in_partitions,
    place_late_within,
)
from apistream.generator.tally import Tally, count_chunk
from apistream.generator.traffic import TrafficModel, iso_ms, plan_incidents, rate_at, span_s
from apistream.reasons import DEFECT_KINDS

MANIFEST = "manifest.json"


class ChunkSink(Protocol):
    """Where chunks go instead of files (a Kafka topic): `send` returns once confirmed."""

    partitions: int

    def send(self, lines: list[str], keys: list[str], partitions: list[int]) -> None: ...


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
        self.templates = [e.template for e in cfg.endpoints]
        self.bounds = category_bounds(self.gen, cfg.validation)
        self.wm_ms = int(cfg.processing.watermark * 1000)
        self.lag_files = 2 * cfg.source.max_files_per_trigger
        self.newest_by_file: list[int] = []  # newest event time over files 0..k
        self.tally = Tally()
        self._last_mtime = 0.0
        self._file_seq = self._next_file_seq()
        self.partition_of: np.ndarray | None = None  # by endpoint index, with a sink
        self.history: PartitionHistory | None = None
        if sink is not None:
            from apistream.kafka_io import partition_for

            parts = sink.partitions
            self.partition_of = np.array([partition_for(t, parts) for t in self.templates])
            self.history = PartitionHistory.empty(parts, cfg.source.kafka.max_offsets_per_trigger)

    def _next_file_seq(self) -> int:
        existing = sorted(self.out.glob("events-*.jsonl")) if self.out.exists() else []
        return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0

    # -- building ---------------------------------------------------------------------------
    def build_chunk(self, t0_ms: int, t1_ms: int, n: int, max_lines: int) -> Chunk:
        """A file's or Kafka chunk's lines with arrivals in [t0, t1), and tally them."""
        records = self.model.build(*self.model.arrivals(t0_ms, t1_ms, n))
        eps = records["ep"].to_numpy()
        cat = choose_categories(self.bounds, records.height, self.rng)
        ts = records["ts_ms"].to_numpy()
        newest = int(ts.max()) if records.height else t0_ms
        ts = place_late_within(ts, cat, newest, self.wm_ms, self.rng)
        if self.partition_of is not None and self.history is not None:
            part = self.partition_of[eps]
            ts, cat, self.history = late_beyond_in_partitions(
                ts, cat, part, self.history, self.wm_ms, self.rng
            )
        else:
            ts, cat = late_beyond_in_files(
                ts, cat, self.newest_by_file, self.lag_files, self.wm_ms, self.rng
            )
            before = self.newest_by_file[-1] if self.newest_by_file else newest
            self.newest_by_file.append(max(newest, before))
        records = records.with_columns(ts_ms=pl.Series(ts))
        lines = encode_lines(records)
        lines = corrupt_lines(lines, cat, self.rng, self.cfg.validation, self.now_ms)
        layout = add_duplicates(cat, self.gen.duplicate_rate, max_lines, self.rng)
        self.tally += count_chunk(records, cat, layout, self.templates)
        return Chunk([lines[i] for i in layout.rows], eps[layout.rows])

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
        return final

    def emit(self, chunk: Chunk) -> None:
        """Write a chunk as a file, or send it to the sink and wait for its confirmation."""
        if self.sink is None or self.partition_of is None:
            self.write_file(chunk.lines)
        else:
            keys = [self.templates[i] for i in chunk.eps]
            self.sink.send(chunk.lines, keys, self.partition_of[chunk.eps].tolist())
        self.tally = replace(self.tally, files=self.tally.files + 1)

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
