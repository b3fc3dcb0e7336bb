"""The generator's pure steps, each checked against values worked out by hand or a count made
independently from the lines it produced."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from generator_truth import NOW_MS, classify, epoch_ms, template_of

from apistream.config import load_config
from apistream.fields import RAW_FIELDS
from apistream.generator.categories import (
    LATE_BEYOND,
    LATE_WITHIN,
    PLAIN,
    category_bounds,
    choose_categories,
)
from apistream.generator.chunk import encode_lines
from apistream.generator.defects import corrupt_lines
from apistream.generator.duplicates import add_duplicates
from apistream.generator.lateness import (
    PartitionHistory,
    late_beyond_in_files,
    late_beyond_in_partitions,
    partition_references,
    place_late_within,
)
from apistream.generator.tally import Tally, count_chunk
from apistream.generator.traffic import TrafficModel, iso_ms
from apistream.reasons import DEFECT_KINDS

DEFECT = {k: i for i, k in enumerate(DEFECT_KINDS, start=1)}


class Draws:
    """An rng whose `random` returns given values (the only draw category choice makes)."""

    def __init__(self, values: list[float]):
        self.values = np.array(values)

    def random(self, n: int) -> np.ndarray:
        assert n == len(self.values)
        return self.values


def config(**overrides):
    return load_config(overrides=overrides, environ={})


def untouched(rng: np.random.Generator, seed: int) -> bool:
    """Whether rng has drawn nothing since it was made from seed."""
    return rng.random() == np.random.default_rng(seed).random()


# -- categories ----------------------------------------------------------------------------
RATES = {f"generator.defects.{k}": 0.01 for k in DEFECT_KINDS} | {
    "generator.late_within_rate": 0.05,
    "generator.late_beyond_rate": 0.05,
}


def test_categories_follow_the_cumulative_rates():
    cfg = config(**RATES)
    bounds = category_bounds(cfg.generator, cfg.validation)
    draws = [0.005, 0.015, 0.075, 0.085, 0.1, 0.15, 0.2, 0.999]
    cat = choose_categories(bounds, len(draws), Draws(draws))  # type: ignore[arg-type]
    assert cat.tolist() == [
        DEFECT["malformed_json"],
        DEFECT["missing_field"],
        DEFECT["future_timestamp"],
        DEFECT["stale_timestamp"],
        LATE_WITHIN,
        LATE_BEYOND,
        PLAIN,
        PLAIN,
    ]


def test_no_stale_timestamps_without_a_maximum_age():
    cfg = config(**RATES)
    limits = cfg.validation.model_copy(update={"max_age": None})
    bounds = category_bounds(cfg.generator, limits)
    # a draw on the upper bound of future_timestamp skips the empty stale_timestamp range
    draws = [0.075, 0.085, 0.135, 0.185, float(bounds[DEFECT["future_timestamp"] - 1])]
    cat = choose_categories(bounds, len(draws), Draws(draws))  # type: ignore[arg-type]
    assert cat.tolist() == [
        DEFECT["future_timestamp"],
        LATE_WITHIN,
        LATE_BEYOND,
        PLAIN,
        LATE_WITHIN,
    ]


# -- late placement ------------------------------------------------------------------------
def test_late_within_lines_are_10_to_50_percent_of_the_delay_behind_the_newest():
    ts = np.arange(100_000, 100_010, dtype=np.int64)
    cat = np.array([PLAIN, LATE_WITHIN] * 5)
    out = place_late_within(ts, cat, newest_ms=100_009, wm_ms=10_000, rng=np.random.default_rng(1))
    late = cat == LATE_WITHIN
    assert (out[~late] == ts[~late]).all()
    assert ((out[late] >= 100_009 - 5000) & (out[late] <= 100_009 - 1000)).all()
    assert len(set(out[late].tolist())) == 5
    assert ts.tolist() == list(range(100_000, 100_010)), "input unchanged"


def test_late_beyond_in_files_is_older_than_the_file_2f_back_minus_the_delay():
    ts = np.full(8, 900_000, dtype=np.int64)
    cat = np.array([PLAIN, LATE_BEYOND, LATE_WITHIN, LATE_BEYOND, PLAIN, 3, LATE_BEYOND, PLAIN])
    newest_by_file = [100_000, 400_000, 500_000, 600_000]
    out_ts, out_cat = late_beyond_in_files(
        ts, cat, newest_by_file, lag=3, wm_ms=20_000, rng=np.random.default_rng(2)
    )
    # the next file is file 4: its reference is the newest event over files 0..1
    late = cat == LATE_BEYOND
    assert out_cat.tolist() == cat.tolist()
    assert ((out_ts[late] <= 400_000 - 20_000 - 1000) & (out_ts[late] > 400_000 - 320_000)).all()
    assert (out_ts[~late] == 900_000).all()


def test_late_beyond_in_the_first_2f_files_stays_plain_and_draws_nothing():
    ts = np.arange(5, dtype=np.int64) + 50_000
    cat = np.array([LATE_BEYOND, PLAIN, LATE_BEYOND, LATE_WITHIN, 2])
    rng = np.random.default_rng(3)
    out_ts, out_cat = late_beyond_in_files(ts, cat, [1, 2, 3], lag=4, wm_ms=1000, rng=rng)
    assert out_cat.tolist() == [PLAIN, PLAIN, PLAIN, LATE_WITHIN, 2]
    assert out_ts.tolist() == ts.tolist()
    assert untouched(rng, 3)


def test_partition_references_worked_by_hand():
    """Lag 2 (M=1): a row's reference is the newest plain time at positions <= i-2 of its
    partition, carried across chunks; non-plain rows never count."""
    history = PartitionHistory.empty(partitions=2, max_offsets=1)
    part = np.array([0, 1, 0, 0, 1, 0])
    plain = np.array([True, True, True, False, True, True])
    ts = np.array([50, 10, 30, 99, 20, 70], dtype=np.int64)
    # partition 0 positions: 50, 30, (99 not plain), 70; partition 1: 10, 20
    refs, history = partition_references(history, part, plain, ts)
    assert refs.tolist() == [-1, -1, -1, 50, -1, 50]
    refs, history = partition_references(
        history, np.array([0, 1, 1, 0]), np.ones(4, bool), np.array([80, 40, 5, 1], np.int64)
    )
    # partition 0 positions 4, 5 refer to 2 (max 50) and 3 (max 70); partition 1 to 0 and 1
    assert refs.tolist() == [50, 10, 20, 70]
    assert all(len(r) <= history.lag for r in history.running_max)
    assert history.base == (4, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_late_beyond_in_partitions_is_behind_a_plain_event_2m_back_in_its_partition(seed):
    rng = np.random.default_rng([seed, 99])
    m, wm, parts = 7, 5000, 3
    history = PartitionHistory.empty(parts, m)
    log: list[list[tuple[int, int, int, int]]] = [[] for _ in range(parts)]  # in, out cat, ts
    t = 1_000_000
    for _ in range(12):
        n = int(rng.integers(0, 40))
        ts = t + np.sort(rng.integers(0, 10_000, n))
        cat = rng.choice([PLAIN, PLAIN, PLAIN, LATE_BEYOND, LATE_WITHIN, 1], n)
        part = rng.integers(0, parts, n)
        out_ts, out_cat, history = late_beyond_in_partitions(ts, cat, part, history, wm, rng)
        for row in zip(part, cat, out_cat, out_ts, strict=True):
            log[row[0]].append(tuple(int(v) for v in row[1:]))  # type: ignore[arg-type]
        unchanged = cat != LATE_BEYOND
        assert (out_ts[unchanged] == ts[unchanged]).all()
        assert (out_cat[unchanged] == cat[unchanged]).all()
        t += 10_000
    late_seen = 0
    for rows in log:
        for i, (cat_in, cat_out, ts_out) in enumerate(rows):
            if cat_in != LATE_BEYOND:
                continue
            earlier = [ts for c, _, ts in rows[: max(0, i - 2 * m + 1)] if c == PLAIN]
            if not earlier:
                assert cat_out == PLAIN
                continue
            late_seen += 1
            assert cat_out == LATE_BEYOND
            assert max(earlier) - wm - 300_000 < ts_out <= max(earlier) - wm - 1000
    assert late_seen > 0


# -- corruption ----------------------------------------------------------------------------
def test_corrupt_lines_turns_each_defect_line_into_its_kind_and_leaves_the_rest():
    cfg = config(**{"generator.rate": 200})
    model = TrafficModel(cfg, [], seed=4, start_ms=NOW_MS - 60_000)
    records = model.build(*model.arrivals(NOW_MS - 60_000, NOW_MS - 50_000, 60))
    lines = encode_lines(records)
    cat = np.array([(i % (len(DEFECT_KINDS) + 3)) for i in range(records.height)])
    cat[cat == len(DEFECT_KINDS) + 2] = PLAIN
    out = corrupt_lines(lines, cat, np.random.default_rng(5), cfg.validation, NOW_MS)
    expected = [DEFECT_KINDS[c - 1] if 1 <= c <= len(DEFECT_KINDS) else None for c in cat.tolist()]
    assert [classify(line, cfg, NOW_MS) for line in out] == expected
    assert [a == b for a, b in zip(lines, out, strict=True)] == [k is None for k in expected]
    assert lines == encode_lines(records), "input unchanged"


def test_encode_lines_writes_the_raw_fields_with_an_iso_timestamp():
    cfg = config()
    model = TrafficModel(cfg, [], seed=6, start_ms=NOW_MS)
    records = model.build(*model.arrivals(NOW_MS, NOW_MS + 1000, 5))
    for line, row in zip(encode_lines(records), records.iter_rows(named=True), strict=True):
        rec = json.loads(line)
        assert tuple(rec) == RAW_FIELDS
        assert rec["timestamp"] == iso_ms(row["ts_ms"])
        assert rec["request_id"] == row["request_id"] and rec["status"] == row["status"]


# -- duplicates ----------------------------------------------------------------------------
def test_every_plain_record_is_redelivered_once_after_itself_at_rate_1():
    cat = np.array([PLAIN, 1, PLAIN, LATE_WITHIN, PLAIN, LATE_BEYOND, PLAIN])
    layout = add_duplicates(cat, rate=1.0, max_lines=100, rng=np.random.default_rng(7))
    rows, dup = layout.rows.tolist(), layout.duplicate.tolist()
    assert [r for r, d in zip(rows, dup, strict=True) if not d] == list(range(7))
    assert sorted(r for r, d in zip(rows, dup, strict=True) if d) == [0, 2, 4, 6]
    for pos, (r, d) in enumerate(zip(rows, dup, strict=True)):
        if d:
            assert rows.index(r) < pos


def test_no_duplicates_at_rate_0_and_the_cut_keeps_the_first_lines():
    cat = np.zeros(50, dtype=int)
    none = add_duplicates(cat, rate=0.0, max_lines=100, rng=np.random.default_rng(8))
    assert none.rows.tolist() == list(range(50)) and not none.duplicate.any()
    full = add_duplicates(cat, rate=0.5, max_lines=10_000, rng=np.random.default_rng(9))
    cut = add_duplicates(cat, rate=0.5, max_lines=30, rng=np.random.default_rng(9))
    assert 0 < full.duplicate.sum() < 50
    assert cut.rows.tolist() == full.rows[:30].tolist()
    assert cut.duplicate.tolist() == full.duplicate[:30].tolist()


# -- tally ---------------------------------------------------------------------------------
def count_lines(lines: list[str], cfg, t0_ms: int, beyond_below_ms: int) -> Tally:
    """The tally made from the lines alone: defects by the reference validator, the rest by
    event time (plain lines are in [t0, ..), late-beyond ones below `beyond_below_ms`)."""
    seen: set[tuple[str, str]] = set()
    defects: Counter[str] = Counter({k: 0 for k in DEFECT_KINDS})
    by_ep: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    by_ep_method: Counter[str] = Counter()
    dups = late_within = late_beyond = 0
    times = []
    for line in lines:
        kind = classify(line, cfg, NOW_MS)
        if kind:
            defects[kind] += 1
            continue
        rec = json.loads(line)
        key = (rec["request_id"], rec["timestamp"])
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        ts = epoch_ms(rec["timestamp"])
        if ts < beyond_below_ms:
            late_beyond += 1
            continue
        late_within += ts < t0_ms
        times.append(ts)
        ep = template_of(rec["path"], cfg)
        by_ep[ep] += 1
        by_class[f"{rec['status'] // 100}xx"] += 1
        by_ep_method[f"{rec['method']} {ep}"] += 1
    return Tally(
        total_events=len(lines),
        valid_events=len(times),
        duplicates=dups,
        late_within=late_within,
        late_beyond=late_beyond,
        defects=defects,
        by_endpoint=by_ep,
        by_status_class=by_class,
        by_endpoint_method=by_ep_method,
        min_ts=min(times, default=None),
        max_ts=max(times, default=None),
    )


@pytest.mark.parametrize("max_lines", [10_000, 1500])
def test_tally_equals_a_count_of_the_lines(max_lines):
    high = {f"generator.defects.{k}": 0.02 for k in DEFECT_KINDS}
    cfg = config(**high, **{"generator.duplicate_rate": 0.1, "generator.late_beyond_rate": 0.05})
    wm = int(cfg.processing.watermark * 1000)
    t0 = NOW_MS - 3_600_000
    ref = t0 - 10 * wm  # the newest event two batches back
    model = TrafficModel(cfg, [], seed=10, start_ms=t0)
    rng = np.random.default_rng(11)
    records = model.build(*model.arrivals(t0, t0 + 1000, 2000))
    cat = choose_categories(category_bounds(cfg.generator, cfg.validation), records.height, rng)
    ts = place_late_within(records["ts_ms"].to_numpy(), cat, t0 + 999, wm, rng)
    ts, cat = late_beyond_in_files(ts, cat, [ref], 1, wm, rng)
    records = records.with_columns(ts_ms=ts)
    lines = corrupt_lines(encode_lines(records), cat, rng, cfg.validation, NOW_MS)
    layout = add_duplicates(cat, cfg.generator.duplicate_rate, max_lines, rng)
    templates = [e.template for e in cfg.endpoints]
    tally = count_chunk(records, cat, layout, templates)
    written = [lines[i] for i in layout.rows]
    assert tally == count_lines(written, cfg, t0, beyond_below_ms=ref - wm)
    assert len(written) == min(max_lines, tally.total_events)
    assert tally.late_within > 0 and tally.late_beyond > 0 and tally.duplicates > 0


def test_tallies_add_up():
    a = Tally(3, 2, 1, 0, 0, 1, Counter(x=1), Counter(e=2), Counter(s=2), Counter(m=2), 10, 20)
    b = Tally(4, 1, 0, 1, 2, 0, Counter(x=2, y=1), Counter(e=1), Counter(), Counter(m=1), 5, 15)
    total = a + b
    assert total == Tally(
        7, 3, 1, 1, 2, 1, Counter(x=3, y=1), Counter(e=3), Counter(s=2), Counter(m=3), 5, 20
    )
    assert Tally() + a == a and a + Tally() == a
    assert a.defects == Counter(x=1), "operands unchanged"
