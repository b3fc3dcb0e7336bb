"""The generator's ground truth re-read in plain Python, independently of the pipeline: what
each generated line is (valid or which defect) and which endpoint template its path has. Shared
by the generator and Kafka-source tests."""

from __future__ import annotations

import json
import re
from datetime import datetime

NOW_MS = 1_790_000_000_000  # fixed clock: 2026-09-21


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def classify(line: str, cfg, now_ms: int) -> str | None:
    """Reference validation in plain Python: the defect kind of a line, or None if valid."""
    try:
        rec = json.loads(line)
    except ValueError:
        return "malformed_json"
    required = ("request_id", "timestamp", "method", "path", "status", "latency_ms")
    if any(rec.get(f) in (None, "") for f in required):
        return "missing_field"
    if not isinstance(rec["status"], int) or not isinstance(rec["latency_ms"], int | float):
        return "wrong_type"
    if not isinstance(rec.get("bytes_sent"), int):
        return "wrong_type"
    if not re.match(r"^\d{4}-\d\d-\d\dT", rec["timestamp"]):
        return "wrong_type"
    v = cfg.validation
    if rec["method"] not in v.methods:
        return "invalid_method"
    if not v.status_min <= rec["status"] <= v.status_max:
        return "invalid_status"
    if rec["latency_ms"] < 0:
        return "negative_latency"
    if rec["latency_ms"] > v.max_latency_ms:
        return "absurd_latency"
    ts = epoch_ms(rec["timestamp"])
    if ts > now_ms + v.max_future * 1000:
        return "future_timestamp"
    if ts < now_ms - v.max_age * 1000:
        return "stale_timestamp"
    return None


def template_of(path: str, cfg) -> str:
    for e in cfg.endpoints:
        regex = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(e.template)) + "$"
        if re.match(regex, path):
            return e.template
    raise AssertionError(path)
