"""The generator's manifest is checked against an independent re-reading of its files:
a plain-Python validator plus a simulation of Spark's watermark over F files per batch."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from generator_truth import NOW_MS, classify, epoch_ms, template_of

from apistream.config import INCIDENT_KIND_TABLE, INCIDENT_KINDS, load_config
from apistream.generator.writer import LogGenerator
from apistream.reasons import DEFECT_KINDS


def make_cfg(tmp: Path, **extra):
    overrides = {
        # The batching these tests were built for (late events need 2 batches of files).
        "source.max_files_per_trigger": 4,
        "generator.events": 40_000,
        "generator.events_per_file": 2_500,
        "source.path": str(tmp),
        "generator.rate": 500,
    }
    overrides.update(extra)
    return load_config(overrides=overrides, environ={})


def replay(directory: Path, cfg, now_ms: int) -> dict:
    """Counts as Spark will see them: F files per batch; a row is late when its event time is
    at or below the watermark of the previous batch (max event time before it minus delay)."""
    files = sorted(directory.glob("events-*.jsonl"))
    per_batch = cfg.source.max_files_per_trigger
    delay = cfg.processing.watermark * 1000
    out = {
        "defects": Counter(),
        "dups": 0,
        "late": 0,
        "valid": 0,
        "total": 0,
        "by_endpoint": Counter(),
        "by_class": Counter(),
    }
    seen: set[tuple[str, str]] = set()
    batch_max: list[int] = []
    for b in range(0, len(files), per_batch):
        wm_prev = max(batch_max[:-1], default=None)
        threshold = wm_prev - delay if wm_prev is not None else -1
        newest = -1
        for f in files[b : b + per_batch]:
            for line in f.read_text().splitlines():
                out["total"] += 1
                kind = classify(line, cfg, now_ms)
                if kind:
                    out["defects"][kind] += 1
                    continue
                rec = json.loads(line)
                ts = epoch_ms(rec["timestamp"])
                newest = max(newest, ts)
                if ts <= threshold:
                    out["late"] += 1
                elif (rec["request_id"], rec["timestamp"]) in seen:
                    out["dups"] += 1
                else:
                    seen.add((rec["request_id"], rec["timestamp"]))
                    out["valid"] += 1
                    out["by_endpoint"][template_of(rec["path"], cfg)] += 1
                    out["by_class"][f"{rec['status'] // 100}xx"] += 1
        batch_max.append(max(newest, batch_max[-1] if batch_max else -1))
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    cfg = make_cfg(tmp)
    manifest = LogGenerator(cfg, tmp, now_ms=NOW_MS).backfill()
    return tmp, cfg, manifest


def test_manifest_matches_an_independent_replay(generated):
    tmp, cfg, m = generated
    ref = replay(tmp, cfg, NOW_MS)
    assert m["total_events"] == ref["total"] == 40_000
    assert m["defects"] == {k: ref["defects"][k] for k in DEFECT_KINDS}
    assert m["duplicates"] == ref["dups"]
    assert m["late_beyond_watermark"] == ref["late"]
    assert m["valid_events"] == ref["valid"]
    assert m["valid_by_endpoint"] == dict(ref["by_endpoint"])
    assert m["valid_by_status_class"] == dict(ref["by_class"])
    assert m["total_events"] == (
        m["valid_events"]
        + sum(m["defects"].values())
        + m["duplicates"]
        + m["late_beyond_watermark"]
    )


def test_every_defect_kind_and_lateness_is_present(generated):
    _, _, m = generated
    assert all(n > 0 for n in m["defects"].values()), m["defects"]
    assert m["duplicates"] > 0
    assert m["late_within_watermark"] > 0
    assert m["late_beyond_watermark"] > 0
    assert m["files"] > 2 * 4  # late-beyond events need 2F files before them


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        cfg = make_cfg(tmp_path / name, **{"generator.seed": seed, "generator.events": 5000})
        LogGenerator(cfg, tmp_path / name, now_ms=NOW_MS).backfill()
        runs.append([p.read_bytes() for p in sorted((tmp_path / name).glob("*.jsonl"))])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_incidents_are_in_the_manifest_and_apart(tmp_path):
    cfg = make_cfg(
        tmp_path,
        **{
            "generator.events": 200_000,
            "generator.rate": 50,
            "generator.incidents.random_count": len(INCIDENT_KINDS),
        },
    )
    m = LogGenerator(cfg, tmp_path, now_ms=NOW_MS).backfill()
    spans = sorted((epoch_ms(i["start"]), epoch_ms(i["end"])) for i in m["incidents"])
    assert len(spans) == len(INCIDENT_KINDS)
    assert sorted(i["kind"] for i in m["incidents"]) == sorted(INCIDENT_KINDS)
    for i in m["incidents"]:
        kind = INCIDENT_KIND_TABLE[i["kind"]]
        assert (i["factor"], i["metric"]) == (kind.default_factor, kind.metric)
        assert (i["method"] == "*") != kind.by_method
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))


def test_files_are_written_atomically_with_increasing_mtimes(generated):
    tmp, _, _ = generated
    files = sorted(tmp.glob("events-*.jsonl"))
    mtimes = [f.stat().st_mtime for f in files]
    assert mtimes == sorted(mtimes) and len(set(mtimes)) == len(mtimes)
    assert not list(tmp.glob(".*.tmp"))
    assert json.loads((tmp / "manifest.json").read_text())["files"] == len(files)


@pytest.mark.parametrize("hour", [3, 9, 15, 21])
def test_incidents_end_inside_the_traffic_at_any_time_of_day(tmp_path, hour):
    """The daily cycle makes a backfill of N events shorter at the peak (15:00 UTC) and longer
    at the trough: incidents are placed on the span the events really cover, so each ends
    two windows before the last event and the detector sees it whole."""
    day_start = NOW_MS - NOW_MS % 86_400_000
    now_ms = day_start + hour * 3_600_000
    cfg = make_cfg(
        tmp_path,
        **{
            "generator.events": 100_000,
            "generator.rate": 40,
            "generator.events_per_file": 20_000,
            "generator.seed": 202,
            "generator.incidents.random_count": 4,
        },
    )
    m = LogGenerator(cfg, tmp_path, now_ms=now_ms).backfill()
    last = epoch_ms(m["event_time_max"])
    assert abs(last - now_ms) < 0.1 * (now_ms - epoch_ms(m["start"]))
    window_ms = int(cfg.processing.window * 1000)
    assert [i for i in m["incidents"] if epoch_ms(i["end"]) > last - 2 * window_ms] == []
