"""Resident memory of a pipeline process and its JVM, sampled in a background thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class MemorySample:
    t: float  # seconds since the sampler started
    python_mb: float
    jvm_mb: float

    @property
    def total_mb(self) -> float:
        return self.python_mb + self.jvm_mb


@dataclass
class RssSampler:
    """Samples the RSS of process `pid` (the Python driver) and of its Java descendants."""

    pid: int
    interval: float = 1.0
    samples: list[MemorySample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                py = root.memory_info().rss
                jvm = 0
                for child in root.children(recursive=True):
                    try:
                        if "java" in child.name():
                            jvm += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
            except psutil.NoSuchProcess:
                return
            self.samples.append(MemorySample(time.monotonic() - t0, py / 2**20, jvm / 2**20))
            self._stop.wait(self.interval)

    def peaks(self) -> dict[str, float]:
        """Peak RSS in MB of the Python process, the JVM and both together."""
        if not self.samples:
            return {"python_mb": 0.0, "jvm_mb": 0.0, "total_mb": 0.0}
        return {
            "python_mb": round(max(s.python_mb for s in self.samples), 1),
            "jvm_mb": round(max(s.jvm_mb for s in self.samples), 1),
            "total_mb": round(max(s.total_mb for s in self.samples), 1),
        }
