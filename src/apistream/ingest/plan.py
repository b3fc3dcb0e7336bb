"""Turning `apistream ingest` arguments into the config of a run (no Spark)."""

from __future__ import annotations

from pathlib import Path

from apistream.config import Config
from apistream.errors import ApiStreamError


def stage_files(paths: list[Path], inbox: Path) -> None:
    """Link the given log files into one directory the stream reads (names kept unique)."""
    inbox.mkdir(parents=True, exist_ok=True)
    start = len(list(inbox.iterdir()))
    for i, path in enumerate(paths, start=start):
        if not path.is_file():
            raise ApiStreamError(f"log file not found: {path}")
        (inbox / f"{i:06d}-{path.name}").symlink_to(path.resolve())


def ingest_config(cfg: Config, paths: list[Path], follow: bool) -> Config:
    """The run config for replaying `paths` (files, or one directory to watch with follow).

    A replay reads all files in one batch, so logs of several servers covering the same hours
    never make each other late; old logs are not quarantined as stale (max_age off).
    """
    directory = len(paths) == 1 and paths[0].is_dir()
    if follow and not directory:
        raise ApiStreamError("--follow needs exactly one directory to watch")
    if not paths:
        raise ApiStreamError("give at least one log file or a directory")
    inbox = paths[0] if directory else Path(cfg.path("ingest", "inbox"))
    if not directory:
        stage_files(paths, inbox)
    tree = cfg.model_dump()
    tree["source"].update(path=str(inbox), glob="*")
    if not follow:
        tree["source"]["max_files_per_trigger"] = 1_000_000
    tree["validation"]["max_age"] = None
    return Config.model_validate(tree)
