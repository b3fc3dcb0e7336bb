"""The event-time range of a batch run, from `--from` / `--to`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apistream.errors import UsageError
from apistream.period import DAY, HOUR, Period


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_days_are_inclusive_and_half_open_inside():
    p = Period.parse("2026-11-28", "2026-11-29")
    assert (p.start, p.end) == (utc(2026, 11, 28), utc(2026, 11, 30))
    assert (p.first_day, p.last_day) == ("2026-11-28", "2026-11-29")
    assert p.holds("2026-11-29T23:59:00Z") and not p.holds("2026-11-30T00:00:00Z")


def test_an_hour_and_an_offset_hour():
    p = Period.parse("2026-11-29T13", "2026-11-29T13:00")
    assert (p.start_iso, p.end_iso) == ("2026-11-29T13:00:00Z", "2026-11-29T14:00:00Z")
    assert (p.first_day, p.last_day) == ("2026-11-29", "2026-11-29")
    late = Period.parse("2026-11-29T23:00:00+01:00", None)
    assert late.start == utc(2026, 11, 29, 22) and late.end is None


def test_whole_periods_of_a_range():
    hours = Period.parse("2026-11-28T22", "2026-11-30T01")
    assert hours.whole(DAY) == Period(utc(2026, 11, 29), utc(2026, 11, 30))
    assert hours.whole(HOUR) == hours
    assert Period.parse("2026-11-29T00", "2026-11-29T00").whole(DAY) is None
    assert Period().whole(DAY) == Period()
    assert Period.parse("2026-11-29T05", None).whole(DAY) == Period(utc(2026, 11, 30), None)


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("29/11/2026", None, "--from: '29/11/2026' is neither a day"),
        ("20261129", None, "--from: '20261129' is neither a day"),
        ("2026-11-29_13", None, "--from: '2026-11-29_13' is neither a day"),
        ("2026-11-29T13:30", None, "--from: '2026-11-29T13:30' is not a whole hour"),
        ("2026-11-29", "2026-11-28", "--to 2026-11-28 is before --from 2026-11-29"),
    ],
)
def test_bad_bounds_name_the_option(first, last, message):
    with pytest.raises(UsageError, match=message):
        Period.parse(first, last)
