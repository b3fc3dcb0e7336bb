"""Compressed input through the stream: .gz and .bz2 files are read, and a damaged archive
(truncated, not compressed at all, or failing its checksum) is one counted, quarantined
`corrupt_archive` record naming the error, while the lines before the damage are processed;
the account stays exact and nothing is skipped silently."""

from __future__ import annotations

import bz2
import gzip
import sqlite3
import threading
import zlib
from collections import Counter
from pathlib import Path

import pytest

from apistream.config import load_config
from apistream.lake import read_table
from apistream.pipeline.topology import Paths, run_stream

pytestmark = pytest.mark.spark


def records(name: str, n: int) -> bytes:
    return b"".join(
        b'{"request_id":"%s-%d","timestamp":"2026-11-29T10:00:%02dZ","method":"GET",'
        b'"path":"/api/v1/users/%d","status":200,"latency_ms":%d.5,"bytes_sent":10}\n'
        % (name.encode(), i, i % 60, i % 50, i % 900)
        for i in range(n)
    )


def gzip_prefix_lines(data: bytes) -> int:
    """Complete lines an incremental gzip decompressor gets out of a truncated archive."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data).count(b"\n")


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("compressed")
    inbox = root / "in"
    inbox.mkdir()
    n = 8_000
    half = lambda data: data[: len(data) // 2]  # noqa: E731
    files = {
        "plain.jsonl": records("plain", n),
        "good.jsonl.gz": gzip.compress(records("gz", n)),
        "good.jsonl.bz2": bz2.compress(records("bz2", n)),
        "cut.jsonl.gz": half(gzip.compress(records("cutgz", n))),
        "cut.jsonl.bz2": half(bz2.compress(records("cutbz2", n))),
        "not-gzip.jsonl.gz": records("notgz", 10),
        "ignored.log": records("ignored", 10),  # not matched by source.glob
    }
    for name, data in files.items():
        (inbox / name).write_bytes(data)
    cfg = load_config(
        environ={},
        overrides={
            "source.path": str(inbox),
            "sinks.output": str(root / "out"),
            "source.max_files_per_trigger": 4,
            "validation.max_age": None,
        },
    )
    run_stream(spark, cfg, until_idle=True, stop=threading.Event())
    return files, Paths.of(cfg)


def by_file(paths: Paths) -> tuple[Counter, dict[str, list]]:
    valid = Counter(
        Path(r["source_file"]).name for r in read_table(paths.events, ["source_file"]).to_pylist()
    )
    bad: dict[str, list] = {}
    for r in read_table(paths.quarantine, ["source_file", "reason", "detail"]).to_pylist():
        bad.setdefault(Path(r["source_file"]).name, []).append((r["reason"], r["detail"]))
    return valid, bad


def test_good_archives_are_read_whole(run):
    _, paths = run
    valid, _ = by_file(paths)
    assert (valid["plain.jsonl"], valid["good.jsonl.gz"], valid["good.jsonl.bz2"]) == (
        8_000,
        8_000,
        8_000,
    )
    assert "ignored.log" not in valid


def test_each_damaged_archive_is_one_corrupt_archive_record(run):
    _, paths = run
    _, bad = by_file(paths)
    damaged = {name: rows for name, rows in bad.items() if name.startswith(("cut", "not-"))}
    assert sorted(damaged) == ["cut.jsonl.bz2", "cut.jsonl.gz", "not-gzip.jsonl.gz"]
    assert all(len(rows) == 1 and rows[0][0] == "corrupt_archive" for rows in damaged.values())
    assert "EOFError" in damaged["cut.jsonl.gz"][0][1]
    assert "Not a gzipped file" in damaged["not-gzip.jsonl.gz"][0][1]


def test_lines_before_the_damage_are_processed(run):
    files, paths = run
    valid, _ = by_file(paths)
    assert valid["cut.jsonl.gz"] == gzip_prefix_lines(files["cut.jsonl.gz"])
    assert valid["not-gzip.jsonl.gz"] == 0


def test_account_is_exact(run):
    _, paths = run
    valid, bad = by_file(paths)
    with sqlite3.connect(paths.sqlite) as db:
        totals = db.execute(
            "SELECT input, valid, quarantined, duplicates, late FROM data_quality_totals"
        ).fetchone()
    quarantined = sum(len(rows) for rows in bad.values())
    assert quarantined == 3
    assert totals == (sum(valid.values()) + 3, sum(valid.values()), 3, 0, 0)
