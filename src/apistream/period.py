"""The event-time range a batch run covers: whole days or whole hours, in UTC.

`apistream batch --from 2026-11-29 --to 2026-11-30` covers two days; `--from 2026-11-29T13
--to 2026-11-29T13` covers one hour (what the hourly Airflow DAG runs). Both ends are
inclusive on the command line and kept as a half-open range [start, end) here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apistream.errors import UsageError

# A day, or a day and an hour (and optionally minutes, seconds, an offset).
_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}(?::.*)?(?:[+-].*|Z)?)?$")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def _parse(text: str, option: str, finest: timedelta = HOUR) -> tuple[datetime, timedelta]:
    """A day (YYYY-MM-DD) or an hour (YYYY-MM-DDTHH, minutes and seconds 0 if given) ->
    its start in UTC and its length; with `finest` MINUTE, a text with minutes
    (YYYY-MM-DDTHH:MM) is that minute."""
    try:
        if not _SHAPE.match(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is neither a day (YYYY-MM-DD) nor an hour (YYYY-MM-DDTHH)"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if len(text) == len("YYYY-MM-DD"):
        return moment, DAY
    if finest <= MINUTE and ":" in text[11:]:
        if (moment.second, moment.microsecond) != (0, 0):
            raise UsageError(f"{option}: {text!r} is not a whole minute")
        return moment, MINUTE
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise UsageError(f"{option}: {text!r} is not a whole hour")
    return moment, HOUR


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _floor(moment: datetime, length: timedelta) -> datetime:
    return moment - (moment - EPOCH) % length


def _ceil(moment: datetime, length: timedelta) -> datetime:
    floor = _floor(moment, length)
    return floor if floor == moment else floor + length


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; None is open on that side."""

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(cls, first: str | None, last: str | None, finest: timedelta = HOUR) -> Period:
        """From the inclusive `--from` and `--to` of the command line (days, hours, and with
        `finest` MINUTE minutes)."""
        start = _parse(first, "--from", finest)[0] if first else None
        end = None
        if last:
            moment, length = _parse(last, "--to", finest)
            end = moment + length
        if start is not None and end is not None and end <= start:
            raise UsageError(f"--to {last} is before --from {first}")
        return cls(start, end)

    @property
    def start_iso(self) -> str | None:
        return None if self.start is None else _iso(self.start)

    @property
    def end_iso(self) -> str | None:
        return None if self.end is None else _iso(self.end)

    @property
    def first_day(self) -> str | None:
        """The first `date` partition the range touches."""
        return None if self.start is None else self.start.date().isoformat()

    @property
    def last_day(self) -> str | None:
        """The last `date` partition the range touches."""
        return (
            None if self.end is None else (self.end - timedelta(microseconds=1)).date().isoformat()
        )

    def holds(self, iso: str) -> bool:
        """Whether an ISO-8601 UTC time (…Z, as the tables store them) is in the range."""
        return (self.start_iso is None or iso >= self.start_iso) and (
            self.end_iso is None or iso < self.end_iso
        )

    def whole(self, length: timedelta) -> Period | None:
        """The part of the range made of whole periods of `length` (hours or days, aligned
        to UTC midnight), None if it holds none."""
        start = None if self.start is None else _ceil(self.start, length)
        end = None if self.end is None else _floor(self.end, length)
        if start is not None and end is not None and end <= start:
            return None
        return Period(start, end)

    def __str__(self) -> str:
        return f"[{self.start_iso or '…'}, {self.end_iso or '…'})"
