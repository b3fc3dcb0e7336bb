"""Turning `apistream ingest` arguments into the config of a run: plan_ingest computes it (and
only reads the file system), prepare links the files the run reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apistream.config import Config
from apistream.errors import ApiStreamError


@dataclass(frozen=True)
class IngestPlan:
    """The run config, and the log files to link into its inbox (source.path) before it."""

    config: Config
    inbox: Path
    # (name, resolved target) of each given file; empty when a directory is read as it is.
    files: tuple[tuple[str, Path], ...] = ()


def plan_ingest(cfg: Config, paths: list[Path], follow: bool) -> IngestPlan:
    """The plan for replaying `paths` (files, or one directory to watch with follow).

    A replay reads all files in one batch, so logs of several servers covering the same hours
    never make each other late; old logs are not quarantined as stale (max_age off).
    """
    directory = len(paths) == 1 and paths[0].is_dir()
    if follow and not directory:
        raise ApiStreamError("--follow needs exactly one directory to watch")
    if not paths:
        raise ApiStreamError("give at least one log file or a directory")
    missing = [] if directory else [p for p in paths if not p.is_file()]
    if missing:
        raise ApiStreamError(f"log file not found: {missing[0]}")
    inbox = paths[0] if directory else Path(cfg.path("ingest", "inbox"))
    tree = cfg.model_dump()
    tree["source"].update(path=str(inbox), glob="*")
    if not follow:
        tree["source"]["max_files_per_trigger"] = 1_000_000
    tree["validation"]["max_age"] = None
    files = () if directory else tuple((p.name, p.resolve()) for p in paths)
    return IngestPlan(config=Config.model_validate(tree), inbox=inbox, files=files)


def prepare(plan: IngestPlan) -> None:
    """Link the plan's files into its inbox, numbered after what is there (names unique)."""
    if not plan.files:
        return
    plan.inbox.mkdir(parents=True, exist_ok=True)
    start = len(list(plan.inbox.iterdir()))
    for i, (name, target) in enumerate(plan.files, start=start):
        (plan.inbox / f"{i:06d}-{name}").symlink_to(target)


def ingest_config(cfg: Config, paths: list[Path], follow: bool) -> Config:
    """plan_ingest, then prepare: the run config, its inbox ready."""
    plan = plan_ingest(cfg, paths, follow)
    prepare(plan)
    return plan.config
