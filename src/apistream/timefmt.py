"""UTC times as ISO-8601 text, the form SQLite and the lake's JSON keep them in (no Spark)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: datetime | None, ms: bool = False) -> str | None:
    """A naive-UTC or aware datetime as 'YYYY-MM-DDTHH:MM:SSZ' (floored to the second), or
    with milliseconds. Text of one width compares correctly as a string."""
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="milliseconds" if ms else "seconds") + "Z"


def parse_iso(text: str) -> datetime:
    """'...Z' text -> naive UTC datetime."""
    return datetime.fromisoformat(text.rstrip("Z"))


def naive_utc(ts: datetime | None) -> datetime | None:
    if ts is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(UTC).replace(tzinfo=None)


def now_iso(ms: bool = False) -> str:
    return iso(datetime.now(UTC), ms=ms) or ""
