"""Anomaly detection on finalised windows, per endpoint and service-wide.

Each finalised window is summarised per endpoint (all methods) and for the whole service
(endpoint '*'): requests, 5xx rate, average and p95 latency. Every (scope, metric) keeps an
exponentially weighted mean and variance (the baseline) in SQLite, updated in the same
transaction as the window metrics, so baselines survive restarts and a replayed batch is a
no-op. A window is flagged when |z| > k *and* the change is large enough to matter
(AnomalyConfig); anomalous values do not update the baseline, so an incident cannot teach
the baseline that it is normal. Runs once per window in the pipeline's sink, not per record;
this module does no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from apistream.config import AnomalyConfig
from apistream.range_percentiles import range_quantiles

SERVICE = "*"
METRICS = ("latency_p95_ms", "latency_avg_ms", "error_rate_5xx", "requests")

ANOMALY_SCHEMA = """
CREATE TABLE IF NOT EXISTS anomalies (
    endpoint TEXT NOT NULL,              -- endpoint template, or '*' for the whole service
    method TEXT NOT NULL,                -- '*': all methods of the endpoint
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    metric TEXT NOT NULL,                -- latency_p95_ms | latency_avg_ms | error_rate_5xx |
                                         -- requests (traffic spike or drop)
    observed REAL NOT NULL,
    baseline_mean REAL NOT NULL,
    baseline_std REAL NOT NULL,
    z_score REAL NOT NULL,
    severity TEXT NOT NULL,              -- warning (|z| > k) or critical (|z| > 2k)
    detected_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, method, window_start, metric)
);
CREATE TABLE IF NOT EXISTS anomaly_baselines (
    endpoint TEXT NOT NULL, metric TEXT NOT NULL,
    windows INTEGER NOT NULL, mean REAL NOT NULL, var REAL NOT NULL, last_window TEXT NOT NULL,
    PRIMARY KEY (endpoint, metric)
);
"""


@dataclass
class Baseline:
    """Exponentially weighted mean and variance (a running mean until `span` windows)."""

    windows: int = 0
    mean: float = 0.0
    var: float = 0.0

    def update(self, x: float, span: int) -> None:
        alpha = max(2.0 / (span + 1), 1.0 / (self.windows + 1))
        diff = x - self.mean
        incr = alpha * diff
        self.mean += incr
        self.var = (1 - alpha) * (self.var + diff * incr)
        self.windows += 1

    def std(self, metric: str) -> float:
        """Standard deviation with a floor, so a flat baseline does not make every wiggle
        infinitely surprising: 5% of the mean, or 1 point for a rate."""
        floor = 0.01 if metric == "error_rate_5xx" else 0.05 * abs(self.mean)
        return max(math.sqrt(max(self.var, 0.0)), floor, 1e-9)


def summarise(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Final window rows (per endpoint x method) -> per (window_start, scope) observations:
    requests, 5xx rate, mean latency and the p95 of the scope's events (from the merged
    histograms of its rows, range_percentiles.py)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for scope in (r["endpoint"], SERVICE):
            groups[(r["window_start"], scope)].append(r)
    out = {}
    for key, group in groups.items():
        requests = sum(r["requests"] for r in group)
        obs: dict[str, Any] = {
            "requests": requests,
            "window_end": group[0]["window_end"],
            "error_rate_5xx": sum(r["status_5xx"] or 0 for r in group) / requests,
        }
        timed = sum(r["latency_count"] or 0 for r in group)
        if timed:
            obs["latency_avg_ms"] = sum(r["latency_sum_ms"] or 0 for r in group) / timed
            (obs["latency_p95_ms"],) = range_quantiles(group, [0.95])
        out[key] = obs
    return out


def check(
    metric: str, x: float, base: Baseline, requests: float, cfg: AnomalyConfig
) -> float | None:
    """The z-score if (metric, x) is anomalous against the baseline, else None."""
    if base.windows < cfg.min_baseline_windows:
        return None
    z = (x - base.mean) / base.std(metric)
    if metric == "requests":
        if z > cfg.k and x >= base.mean * cfg.traffic_spike_ratio:
            return z
        if z < -cfg.k and x <= base.mean * cfg.traffic_drop_ratio:
            return z
        return None
    if requests < cfg.min_requests or z <= cfg.k:
        return None
    if metric == "error_rate_5xx":
        return z if x - base.mean >= cfg.min_error_rate_increase else None
    return z if x >= base.mean * (1 + cfg.min_latency_increase) else None


BaselineRows = dict[tuple[str, str], tuple[int, float, float]]


def score_windows(
    final_rows: list[dict[str, Any]],
    baselines: BaselineRows,
    cfg: AnomalyConfig,
    detected_at: str,
    first_window: str | None = None,
    complete_until: str | None = None,
) -> tuple[list[dict[str, Any]], BaselineRows]:
    """Score finalised windows in time order against the baselines; returns the anomalies
    found and the updated baselines (a pure function: the sink reads and writes both).

    Request counts are only judged on complete windows: not the stream's first window
    (`first_window`), nor one ending after the newest event seen (`complete_until`, at the
    end of input)."""
    state = {key: Baseline(n, mean, var) for key, (n, mean, var) in baselines.items()}
    found: list[dict[str, Any]] = []
    for (ws, scope), obs in sorted(summarise(final_rows).items()):
        partial = ws == first_window or (
            complete_until is not None and obs["window_end"] > complete_until
        )
        for metric in METRICS:
            if metric not in obs or (metric == "requests" and partial):
                continue
            base = state.setdefault((scope, metric), Baseline())
            z = check(metric, obs[metric], base, obs["requests"], cfg)
            if z is None:
                base.update(obs[metric], cfg.baseline_windows)
                continue
            found.append(
                {
                    "endpoint": scope,
                    "method": "*",
                    "window_start": ws,
                    "window_end": obs["window_end"],
                    "metric": metric,
                    "observed": float(obs[metric]),
                    "baseline_mean": base.mean,
                    "baseline_std": base.std(metric),
                    "z_score": z,
                    "severity": "critical" if abs(z) > 2 * cfg.k else "warning",
                    "detected_at": detected_at,
                }
            )
    return found, {key: (b.windows, b.mean, b.var) for key, b in state.items()}
