"""The committed hostile-input corpus is what hostile_corpus.py builds, and is broad enough."""

from __future__ import annotations

from hostile_corpus import CASES, HERE

from apistream.pipeline.schema import REASONS


def test_committed_files_are_what_the_script_builds():
    assert all(c.path.read_bytes() == c.content for c in CASES), "run hostile_corpus.py"
    on_disk = {p for d in ("json", "nginx") for p in (HERE / d).iterdir()}
    assert on_disk == {c.path for c in CASES}


def test_at_least_30_kinds_and_only_known_outcomes():
    assert len({(c.fmt, c.name) for c in CASES}) == len(CASES) >= 30
    assert {o for c in CASES for o in c.outcome} <= {"valid", *REASONS}
    assert {o for c in CASES for o in c.outcome} >= {"valid", "invalid_utf8", "blank_line"}
