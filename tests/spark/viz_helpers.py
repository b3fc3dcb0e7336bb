"""Helpers of the notebook, report and dashboard tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def copy_db(src: str | Path, dst: str | Path) -> None:
    """A consistent copy of a live WAL database (the file alone may lack recent commits)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
