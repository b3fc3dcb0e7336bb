"""The statistical anomaly detector ("ewma") on finalised windows, per endpoint and
service-wide.

Each finalised window is summarised per endpoint (all methods) and for the whole service
(endpoint '*'): requests, 5xx errors, average, p95 and p99 latency. Every (scope, metric)
keeps a baseline in SQLite, updated in the same transaction as the window metrics, so
baselines survive restarts and a replayed batch is a no-op: an exponentially weighted mean
and variance over `baseline_windows`, a slow mean over `slow_baseline_windows`, and the last
window's value. A window is flagged when it is improbable under the baseline *and* the change
is large enough to matter (`matters`):

- requests: |z| > k against the EWMA (its std at least Poisson's, sqrt(mean));
- the 5xx rate: the window's errors, or those of this window and the last together, are
  improbable for a Poisson count at the baseline rate (z of its upper tail > k), so a rise
  from 0.5% to 2% is caught on a busy endpoint within two windows;
- latency: z > k against the EWMA; or, for a slow creep the EWMA would follow, two windows
  in a row above the slow mean by `latency_drift` with z > k/2 against it (the drift itself
  is the evidence; the z only keeps a noisy series out).

Flagged values do not update the means, so an incident cannot teach the baseline that it is
normal; an unflagged latency or request count moves them at most k std (`bounded`). The
flip side: a lasting change that matters (a deploy that doubles p95) is flagged on every
window until it reverts. Runs once per window in the pipeline's sink, not per record; no
I/O here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from statistics import NormalDist
from typing import Any

from apistream.config import AnomalyConfig
from apistream.range_percentiles import range_quantiles

DETECTOR = "ewma"
SERVICE = "*"
METRICS = ("requests", "error_rate_5xx", "latency_avg_ms", "latency_p95_ms", "latency_p99_ms")
# Metrics with a slow mean: the 5xx rate's expected count, and the latencies a creep is
# measured against (p99 is too noisy a window to judge a 25% drift on).
SLOW_METRICS = ("error_rate_5xx", "latency_avg_ms", "latency_p95_ms")
# Share of a window's requests above each percentile metric (anomaly.min_tail_requests).
TAIL_SHARE = {"latency_p95_ms": 0.05, "latency_p99_ms": 0.01}
RATE_FLOOR = 0.001  # a 5xx baseline of 0 is read as 0.1%, so one error is not a surprise

ANOMALY_SCHEMA = """
CREATE TABLE IF NOT EXISTS anomalies (
    detector TEXT NOT NULL DEFAULT 'ewma', -- ewma (statistical) | forecast (Spark MLlib)
    endpoint TEXT NOT NULL,              -- endpoint template, or '*' for the whole service
    method TEXT NOT NULL,                -- '*': all methods of the endpoint
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    metric TEXT NOT NULL,                -- requests (traffic spike or drop) | error_rate_5xx |
                                         -- latency_avg_ms | latency_p95_ms | latency_p99_ms
    observed REAL NOT NULL,
    baseline_mean REAL NOT NULL,         -- what the detector expected
    baseline_std REAL NOT NULL,
    z_score REAL NOT NULL,
    severity TEXT NOT NULL,              -- warning (|z| > k) or critical (|z| > 2k)
    detected_at TEXT NOT NULL,
    PRIMARY KEY (detector, endpoint, method, window_start, metric)
);
CREATE TABLE IF NOT EXISTS anomaly_baselines (
    endpoint TEXT NOT NULL, metric TEXT NOT NULL,
    windows INTEGER NOT NULL, mean REAL NOT NULL, var REAL NOT NULL, last_window TEXT NOT NULL,
    slow_mean REAL, last_value REAL, last_expected REAL,
    PRIMARY KEY (endpoint, metric)
);
"""


@dataclass(frozen=True)
class Observation:
    """One metric of one scope in one finalised window."""

    window_start: str
    window_end: str
    scope: str
    metric: str
    value: float
    requests: int


@dataclass
class Baseline:
    """Exponentially weighted mean and variance (a running mean until `span` windows), a
    slow mean, and the last window's value (for the 5xx rate: its error count, and the
    count the baseline expected)."""

    windows: int = 0
    mean: float = 0.0
    var: float = 0.0
    slow_mean: float | None = None
    last_value: float | None = None
    last_expected: float | None = None

    def update(self, x: float, span: int, slow_span: int = 0) -> None:
        if slow_span:
            # A baseline from before the slow mean existed starts it at its EWMA mean.
            slow = self.slow_mean if self.slow_mean is not None else self.mean
            beta = max(2.0 / (slow_span + 1), 1.0 / (self.windows + 1))
            self.slow_mean = slow + beta * (x - slow)
        alpha = max(2.0 / (span + 1), 1.0 / (self.windows + 1))
        diff = x - self.mean
        incr = alpha * diff
        self.mean += incr
        self.var = (1 - alpha) * (self.var + diff * incr)
        self.windows += 1

    def std(self, metric: str) -> float:
        """Standard deviation with a floor, so a flat baseline does not make every wiggle
        infinitely surprising: Poisson's for a count, 0.1 point for a rate, 5% of the mean
        for a latency."""
        if metric == "requests":
            floor = math.sqrt(abs(self.mean))
        elif metric == "error_rate_5xx":
            floor = RATE_FLOOR
        else:
            floor = 0.05 * abs(self.mean)
        return max(math.sqrt(max(self.var, 0.0)), floor, 1e-9)


def summarise(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Final window rows (per endpoint x method) -> per (window_start, scope) observations:
    requests, 5xx errors and rate, mean latency and the p95/p99 of the scope's events (from
    the merged histograms of its rows, range_percentiles.py)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        for scope in (r["endpoint"], SERVICE):
            groups[(r["window_start"], scope)].append(r)
    out = {}
    for key, group in groups.items():
        requests = sum(r["requests"] for r in group)
        errors = sum(r["status_5xx"] or 0 for r in group)
        obs: dict[str, Any] = {
            "requests": requests,
            "window_end": group[0]["window_end"],
            "errors_5xx": errors,
            "error_rate_5xx": errors / requests,
        }
        timed = sum(r["latency_count"] or 0 for r in group)
        if timed:
            obs["latency_avg_ms"] = sum(r["latency_sum_ms"] or 0 for r in group) / timed
            obs["latency_p95_ms"], obs["latency_p99_ms"] = range_quantiles(group, [0.95, 0.99])
        out[key] = obs
    return out


def observations(rows: Iterable[dict[str, Any]]) -> list[Observation]:
    """summarise's observations, one per (window, scope, metric), in that order."""
    return [
        Observation(ws, obs["window_end"], scope, m, float(obs[m]), int(obs["requests"]))
        for (ws, scope), obs in sorted(summarise(rows).items())
        for m in METRICS
        if obs.get(m) is not None
    ]


def matters(
    metric: str, x: float, expected: float, requests: float, z: float, cfg: AnomalyConfig
) -> bool:
    """Whether a change from `expected` to `x` (z its surprise, signed) is large enough to
    page on (AnomalyConfig): any detector's second test."""
    if metric == "requests":
        if z > 0:
            return x >= expected * cfg.traffic_spike_ratio
        return x <= expected * cfg.traffic_drop_ratio
    if requests < cfg.min_requests or z <= 0:
        return False
    if metric in TAIL_SHARE and requests * TAIL_SHARE[metric] < cfg.min_tail_requests:
        return False  # a p99 of 100 requests is their maximum: too noisy to page on
    if metric == "error_rate_5xx":
        return (
            x - expected >= cfg.min_error_rate_increase
            and x >= max(expected, RATE_FLOOR) * cfg.min_error_rate_ratio
        )
    return x >= expected * (1 + cfg.min_latency_increase)


def poisson_z(count: float, expected: float) -> float:
    """The z (standard normal quantile) of P(X >= count) for X ~ Poisson(expected): how
    surprising `count` errors are when `expected` were due. 0 at or below the mean."""
    k = math.ceil(count - 1e-9)
    if k <= expected or expected <= 0:
        return 0.0
    log_pmf = k * math.log(expected) - expected - math.lgamma(k + 1)
    tail, term, i = 0.0, 1.0, k
    while term > 1e-17 * tail or i == k:  # terms fall once i > expected
        tail += term
        i += 1
        term *= expected / i
    p = min(max(math.exp(log_pmf) * tail, 1e-300), 0.5)
    return -NormalDist().inv_cdf(p)


def check(
    metric: str, obs: dict[str, Any], base: Baseline, cfg: AnomalyConfig
) -> tuple[float, float] | None:
    """(z, expected value) if the metric's value in `obs` is anomalous, else None."""
    if base.windows < cfg.min_baseline_windows:
        return None
    x, n = obs[metric], obs["requests"]
    if metric == "error_rate_5xx":
        due = expected_rate(base) * n
        z = poisson_z(obs["errors_5xx"], due)
        if base.last_value is not None and base.last_expected is not None:
            both = poisson_z(obs["errors_5xx"] + base.last_value, due + base.last_expected)
            z = max(z, both if z > cfg.k / 2 else 0.0)
        rate = expected_rate(base)
        return (z, rate) if z > cfg.k and matters(metric, x, rate, n, z, cfg) else None
    z = (x - base.mean) / base.std(metric)
    if abs(z) > cfg.k and matters(metric, x, base.mean, n, z, cfg):
        return z, base.mean
    if metric in SLOW_METRICS and base.slow_mean is not None and n >= cfg.min_requests:
        drift = base.slow_mean * (1 + cfg.latency_drift)
        zs = (x - base.slow_mean) / base.std(metric)
        last = base.last_value
        if x >= drift and zs > cfg.k / 2 and last is not None and last >= drift:
            return zs, base.slow_mean
    return None


def bounded(x: float, base: Baseline, metric: str, cfg: AnomalyConfig) -> float:
    """The value a baseline learns from a window it did not flag: x, pulled in to k std of
    the mean once the baseline is warm. A surprising window that does not matter (the first
    minute of an incident, a 15% dip) moves the baseline a little, not its variance a lot,
    and a lasting change is still learned, a step at a time."""
    if base.windows < cfg.min_baseline_windows or metric == "error_rate_5xx":
        return x  # a rate's surprise is judged on counts (poisson_z), not on its std
    reach = cfg.k * base.std(metric)
    return min(max(x, base.mean - reach), base.mean + reach)


def expected_rate(base: Baseline) -> float:
    """The 5xx rate a window is judged against: the slow mean (a short one would be off by
    10% on a few errors a window, and make a Poisson test see surprises that are not)."""
    rate = base.slow_mean if base.slow_mean is not None else base.mean
    return max(rate, RATE_FLOOR)


BaselineRows = dict[tuple[str, str], tuple[Any, ...]]


def partial_windows(
    rows: Iterable[dict[str, Any]], first_window: str | None, complete_until: str | None
) -> frozenset[str]:
    """The starts of the windows among `rows` whose request counts are partial, which no
    detector judges: the stream's first window, and one ending after the newest event seen
    (`complete_until`, at the end of input)."""
    return frozenset(
        r["window_start"]
        for r in rows
        if r["window_start"] == first_window
        or (complete_until is not None and r["window_end"] > complete_until)
    )


def score_windows(
    final_rows: list[dict[str, Any]],
    baselines: BaselineRows,
    cfg: AnomalyConfig,
    detected_at: str,
    partial: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], BaselineRows]:
    """Score finalised windows in time order against the baselines; returns the anomalies
    found and the updated baselines (a pure function: the sink reads and writes both).
    Request counts of the `partial` windows (`partial_windows`) are not judged."""
    state = {key: Baseline(*values) for key, values in baselines.items()}
    found: list[dict[str, Any]] = []
    for (ws, scope), obs in sorted(summarise(final_rows).items()):
        for metric in METRICS:
            if metric not in obs or (metric == "requests" and ws in partial):
                continue
            base = state.setdefault((scope, metric), Baseline())
            hit = check(metric, obs, base, cfg)
            if metric == "error_rate_5xx":
                last = (obs["errors_5xx"], expected_rate(base) * obs["requests"])
            else:
                last = (obs[metric], None)
            if hit is None:
                slow = cfg.slow_baseline_windows if metric in SLOW_METRICS else 0
                base.update(bounded(obs[metric], base, metric, cfg), cfg.baseline_windows, slow)
            base.last_value, base.last_expected = last
            if hit is None:
                continue
            z, expected = hit
            found.append(
                {
                    "detector": DETECTOR,
                    "endpoint": scope,
                    "method": "*",
                    "window_start": ws,
                    "window_end": obs["window_end"],
                    "metric": metric,
                    "observed": float(obs[metric]),
                    "baseline_mean": expected,
                    "baseline_std": base.std(metric),
                    "z_score": z,
                    "severity": "critical" if abs(z) > 2 * cfg.k else "warning",
                    "detected_at": detected_at,
                }
            )
    return found, {key: astuple(b) for key, b in state.items()}
