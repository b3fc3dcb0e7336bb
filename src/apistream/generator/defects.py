"""Turning clean records into the bad lines real logs contain, one defect kind per line."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from apistream.config import ValidationConfig
from apistream.fields import REQUIRED_FIELDS
from apistream.generator.categories import defect_mask, defect_of
from apistream.generator.traffic import iso_ms

WRONG_TYPES = {"status": "OK", "latency_ms": "fast", "bytes_sent": "lots", "timestamp": "soon"}
BAD_STATUSES = (0, 42, 99, 600, 700, 999, 1200)
BAD_METHODS = ("FETCH", "GETT", "PUSH", "BREW", "LIST")
DAY_MS = 86_400_000


def corrupt(
    kind: str,
    record: dict[str, Any],
    rng: np.random.Generator,
    limits: ValidationConfig,
    now_ms: int,
) -> str:
    """The raw line for a record turned into a defect of `kind`."""
    rec = dict(record)
    if kind == "malformed_json":
        line = json.dumps(rec)
        return line[: int(rng.integers(5, len(line) - 2))]
    if kind == "missing_field":
        rec.pop(REQUIRED_FIELDS[int(rng.integers(len(REQUIRED_FIELDS)))])
    elif kind == "wrong_type":
        field = list(WRONG_TYPES)[int(rng.integers(len(WRONG_TYPES)))]
        rec[field] = WRONG_TYPES[field]
    elif kind == "negative_latency":
        rec["latency_ms"] = -round(float(rng.uniform(0.5, 500)), 3)
    elif kind == "absurd_latency":
        rec["latency_ms"] = round(limits.max_latency_ms * float(rng.uniform(2, 50)), 3)
    elif kind == "invalid_status":
        rec["status"] = int(
            rng.choice([s for s in BAD_STATUSES if not limits.status_min <= s <= limits.status_max])
        )
    elif kind == "invalid_method":
        rec["method"] = str(rng.choice([m for m in BAD_METHODS if m not in limits.methods]))
    elif kind == "future_timestamp":
        ahead = limits.max_future * 1000 + float(rng.uniform(1, 30)) * DAY_MS
        rec["timestamp"] = iso_ms(now_ms + int(ahead))
    elif kind == "stale_timestamp":
        assert limits.max_age is not None
        behind = limits.max_age * 1000 + float(rng.uniform(30, 700)) * DAY_MS
        rec["timestamp"] = iso_ms(now_ms - int(behind))
    else:
        raise ValueError(f"unknown defect kind {kind}")
    return json.dumps(rec)


def corrupt_lines(
    lines: list[str],
    cat: np.ndarray,
    rng: np.random.Generator,
    limits: ValidationConfig,
    now_ms: int,
) -> list[str]:
    """The lines with each one of a defect category turned into that defect, in order."""
    out = list(lines)
    for i in np.flatnonzero(defect_mask(cat)):
        out[i] = corrupt(defect_of(int(cat[i])), json.loads(out[i]), rng, limits, now_ms)
    return out
