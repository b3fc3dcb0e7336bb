"""Incidents: where they go on the time axis (the plan) and what they do to the records.

Each kind (config.INCIDENT_KIND_TABLE) has a default factor and the metric it should move.
Arrival effects thin or add requests (traffic_drop, traffic_spike); record effects change
latencies and the 5xx rate (the other kinds); a method_outage turns one method's requests
into 503s. No effect draws random numbers unless its incident overlaps the records, and
record effects draw from a stream of their own, so they change only the rows they hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apistream.config import INCIDENT_KIND_TABLE, SLOW_DEPENDENCY_SHARE, Config

OUTAGE_STATUS = 503


@dataclass(frozen=True)
class IncidentSpan:
    """An incident placed on the time axis (epoch milliseconds); `method` None is all methods."""

    kind: str
    endpoint: str
    endpoint_idx: int
    start_ms: int
    end_ms: int
    factor: float
    method: str | None = None

    def hits(self, times: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """Mask of the records on its endpoint inside its span (any method)."""
        return (eps == self.endpoint_idx) & (times >= self.start_ms) & (times < self.end_ms)

    def as_manifest(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "method": self.method or "*",
            "start": iso_ms(self.start_ms),
            "end": iso_ms(self.end_ms),
            "factor": self.factor,
            "metric": INCIDENT_KIND_TABLE[self.kind].metric,
        }


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and a Z."""
    return np.datetime_as_string(np.datetime64(int(ms), "ms"), unit="ms") + "Z"


# -- the plan -------------------------------------------------------------------------------
def plan_incidents(cfg: Config, start_ms: int, span_s: float, seed: int) -> list[IncidentSpan]:
    """Explicit incidents plus `random_count` random ones, deterministic for the seed.

    Random ones cycle through the seed-shuffled `kinds`, one non-overlapping slot each, with
    the kind's default factor (and duration, if it has one).
    """
    plan = cfg.generator.incidents
    templates = [e.template for e in cfg.endpoints]
    spans = [
        IncidentSpan(
            i.kind,
            i.endpoint,
            templates.index(i.endpoint),
            start_ms + int(i.start_offset_s * 1000),
            start_ms + int((i.start_offset_s + i.duration_s) * 1000),
            i.resolved_factor,
            i.method,
        )
        for i in plan.explicit
    ]
    rng = np.random.default_rng([seed, 7919])
    weights = np.array([e.weight for e in cfg.endpoints])
    # Incidents go on the busier half of the endpoints, so each has traffic to show it.
    busy = [int(i) for i in np.argsort(-weights)[: max(1, len(weights) // 2)]]
    multi = [i for i in busy if len(cfg.endpoints[i].methods) >= 2]
    kinds = [k for k in plan.kinds if multi or not INCIDENT_KIND_TABLE[k].by_method]
    rng.shuffle(kinds)
    # Random incidents get one slot each of the span's 25%..90% (after the detector's cold
    # start), so they never overlap and each is a distinct event to detect.
    count = plan.random_count if kinds else 0
    gap = 2 * cfg.processing.window
    slot = 0.65 * span_s / max(count, 1)
    for n in range(count):
        room = slot - gap
        if room <= 0:
            break
        kind = INCIDENT_KIND_TABLE[kinds[n % len(kinds)]]
        drawn = float(rng.uniform(plan.min_duration_s, plan.max_duration_s))
        duration = min(kind.duration_s or drawn, room)
        offset = 0.25 * span_s + n * slot + float(rng.uniform(0, room - duration))
        ep = int(rng.choice(multi if kind.by_method else busy))
        method = _pick_method(cfg.endpoints[ep].methods, rng) if kind.by_method else None
        s, e = start_ms + int(offset * 1000), start_ms + int((offset + duration) * 1000)
        spans.append(IncidentSpan(kind.name, templates[ep], ep, s, e, kind.default_factor, method))
    return spans


def _pick_method(methods: dict[str, float], rng: np.random.Generator) -> str:
    """One of an endpoint's methods, by its share of the endpoint's traffic."""
    p = np.array(list(methods.values()))
    return str(rng.choice(list(methods), p=p / p.sum()))


# -- the effects ----------------------------------------------------------------------------
def creep_multiplier(times: np.ndarray, start_ms: int, end_ms: int, factor: float) -> np.ndarray:
    """Latency multiplier of a latency_creep: 1 at the start, rising linearly to `factor` at
    the end."""
    progress = np.clip((times - start_ms) / max(end_ms - start_ms, 1), 0.0, 1.0)
    return 1.0 + (factor - 1.0) * progress


def with_arrival_effect(
    inc: IncidentSpan,
    times: np.ndarray,
    eps: np.ndarray,
    t0_ms: int,
    t1_ms: int,
    ep_share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted arrival times and endpoints in [t0, t1) after a traffic incident: a drop keeps
    1/factor of its endpoint's requests, a spike adds (factor - 1) times them."""
    lo, hi = max(t0_ms, inc.start_ms), min(t1_ms, inc.end_ms)
    if hi <= lo:
        return times, eps
    n = len(times)
    if inc.kind == "traffic_drop":
        keep = ~inc.hits(times, eps) | (rng.random(n) < 1.0 / inc.factor)
        return times[keep], eps[keep]
    if inc.kind == "traffic_spike":
        share = ep_share * (hi - lo) / max(t1_ms - t0_ms, 1)
        extra = int(rng.poisson(n * share * (inc.factor - 1)))
        times = np.concatenate([times, rng.integers(lo, hi, size=extra)])
        eps = np.concatenate([eps, np.full(extra, inc.endpoint_idx)])
        order = np.argsort(times, kind="stable")
        return times[order], eps[order]
    return times, eps


def with_record_effect(
    inc: IncidentSpan,
    times: np.ndarray,
    eps: np.ndarray,
    lat: np.ndarray,
    rate_5xx: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(latencies, 5xx probabilities) of the records after an incident on their endpoint."""
    hit = inc.hits(times, eps)
    if not hit.any():
        return lat, rate_5xx
    lat, rate_5xx = lat.copy(), rate_5xx.copy()
    if inc.kind == "latency_spike":
        lat[hit] *= inc.factor
    elif inc.kind == "latency_creep":
        lat[hit] *= creep_multiplier(times[hit], inc.start_ms, inc.end_ms, inc.factor)
    elif inc.kind == "slow_dependency":
        slow = rng.random(int(hit.sum())) < SLOW_DEPENDENCY_SHARE
        lat[np.flatnonzero(hit)[slow]] *= inc.factor
    elif inc.kind == "error_burst":
        rate_5xx[hit] = np.minimum(0.95, 0.08 * inc.factor)
    elif inc.kind == "error_rise":
        rate_5xx[hit] = np.minimum(1.0, rate_5xx[hit] * inc.factor)
    return lat, rate_5xx


def with_outage(
    inc: IncidentSpan,
    times: np.ndarray,
    eps: np.ndarray,
    methods: np.ndarray,
    u: np.ndarray,
    status: np.ndarray,
) -> np.ndarray:
    """Status codes after a method_outage: the records of its method whose status draw `u`
    is below min(factor, 1) get a 503 (that share of the method's requests)."""
    if inc.kind != "method_outage":
        return status
    down = inc.hits(times, eps) & (methods == inc.method) & (u < min(inc.factor, 1.0))
    return np.where(down, OUTAGE_STATUS, status)
