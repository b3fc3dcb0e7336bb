"""Helpers of the notebook, report and dashboard tests."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")  # Debian's, not a download
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def copy_db(src: str | Path, dst: str | Path) -> None:
    """A consistent copy of a live WAL database (the file alone may lack recent commits)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
