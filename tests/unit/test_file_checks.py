"""Which input files a batch cannot read whole, and why (ingest/file_checks.py)."""

from __future__ import annotations

import bz2
import gzip

from apistream.ingest.file_checks import unreadable_files

LINES = b"".join(b'{"n": %d}\n' % i for i in range(5000))


def test_missing_and_damaged_files_are_named_and_good_ones_pass(tmp_path):
    files = {
        "plain.jsonl": LINES,
        "good.jsonl.gz": gzip.compress(LINES),
        "good.jsonl.bz2": bz2.compress(LINES),
        "cut.jsonl.gz": gzip.compress(LINES)[:500],
        "cut.jsonl.bz2": bz2.compress(LINES)[:500],
        "text.jsonl.gz": LINES[:100],
    }
    crc = bytearray(gzip.compress(LINES))
    crc[-6] ^= 0xFF  # the CRC-32 in the gzip trailer
    files["crc.jsonl.gz"] = bytes(crc)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    uris = [f"file://{tmp_path / name}" for name in [*files, "gone.jsonl"]]
    uris.append("s3a://bucket/remote.jsonl.gz")  # not local: not checked here
    found = unreadable_files(uris)
    reasons = {uri.rsplit("/", 1)[1]: why for uri, (why, _) in found.items()}
    assert reasons == {
        "cut.jsonl.gz": "corrupt_archive",
        "cut.jsonl.bz2": "corrupt_archive",
        "text.jsonl.gz": "corrupt_archive",
        "crc.jsonl.gz": "corrupt_archive",
        "gone.jsonl": "missing_file",
    }
    errors = {uri.rsplit("/", 1)[1]: error for uri, (_, error) in found.items()}
    assert errors["cut.jsonl.gz"].startswith("EOFError")
    assert "CRC check failed" in errors["crc.jsonl.gz"]
    assert "Not a gzipped file" in errors["text.jsonl.gz"]


def test_percent_encoded_uri_is_decoded(tmp_path):
    (tmp_path / "a b.jsonl.gz").write_bytes(b"not gzip")
    found = unreadable_files([f"file://{tmp_path}/a%20b.jsonl.gz"])
    assert [why for why, _ in found.values()] == ["corrupt_archive"]


def test_source_glob_braces_match_like_spark(tmp_path):
    from apistream.pipeline.sources import glob_patterns, matching_files

    for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.bz2", "manifest.json", "d.log", ".e.jsonl.tmp"):
        (tmp_path / name).write_text("")
    glob = "*.{jsonl,jsonl.gz,jsonl.bz2}"
    assert glob_patterns(glob) == ["*.jsonl", "*.jsonl.gz", "*.jsonl.bz2"]
    assert [p.name for p in matching_files(tmp_path, glob)] == [
        "a.jsonl",
        "b.jsonl.gz",
        "c.jsonl.bz2",
    ]
    assert [p.name for p in matching_files(tmp_path, "*.log")] == ["d.log"]
