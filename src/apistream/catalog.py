"""The datasets and the streaming query of a run, named in one place (no Spark)."""

from __future__ import annotations

from dataclasses import dataclass

from apistream.config import Config

PIPELINE_QUERY = "pipeline"


@dataclass(frozen=True)
class Paths:
    """Everything a run keeps under its output root."""

    events: str
    quarantine: str
    endpoint_metrics: str
    anomalies: str
    staging: str
    checkpoint: str
    sqlite: str

    @classmethod
    def of(cls, cfg: Config) -> Paths:
        return cls(
            events=cfg.path("lake", "events"),
            quarantine=cfg.path("lake", "quarantine"),
            endpoint_metrics=cfg.path("lake", "endpoint_metrics"),
            anomalies=cfg.path("lake", "anomalies"),
            staging=cfg.path("lake", "_staging"),
            checkpoint=cfg.path("checkpoints", PIPELINE_QUERY),
            sqlite=cfg.sqlite_path,
        )
