"""Input files a batch cannot read whole: gone before it read them, or damaged archives.

Spark is told to skip such files (sources.py: ignoreMissingFiles, ignoreCorruptFiles): it
keeps the lines of a damaged .gz/.bz2 up to the damage, and skips a missing file, without a
word. This check, run on the batch's file list before the batch, names each one, so the sink
counts and quarantines it (`missing_file`, `corrupt_archive`) instead of losing it silently or
failing the query on every restart."""

from __future__ import annotations

import bz2
import gzip
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

OPENERS = {".gz": gzip.open, ".bz2": bz2.open}
CHUNK = 1 << 20


def local_path(uri: str) -> Path | None:
    """A file: URI (or plain path) as a local path; None for other file systems."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def archive_error(path: Path) -> str | None:
    """Why a compressed file cannot be read to its end (None if it can, or is no archive)."""
    opener = OPENERS.get(path.suffix)
    if opener is None:
        return None
    try:
        with opener(path, "rb") as f:
            while f.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        return f"{type(exc).__name__}: {exc or 'damaged archive'}"
    return None


def unreadable_files(uris: Iterable[str]) -> dict[str, tuple[str, str]]:
    """URI -> (reason, error) of each local file among `uris` that is gone or damaged."""
    found = {}
    for uri in uris:
        path = local_path(uri)
        if path is None:
            continue
        if not path.exists():
            found[uri] = ("missing_file", f"file removed before it was read: {path}")
        elif (error := archive_error(path)) is not None:
            found[uri] = ("corrupt_archive", error)
    return found
