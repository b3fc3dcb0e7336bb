"""Synthetic API traffic built in bulk (numpy + polars): clean request records, no I/O.

A chunk of records is built column-wise: arrival times, endpoint, method, status, latency,
bytes, path, caller. Incidents (incidents.py) change the columns inside their time span.
"""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import polars as pl

from apistream.config import Config, Endpoint, GeneratorConfig
from apistream.generator.incidents import (
    IncidentSpan,
    iso_ms,
    plan_incidents,
    with_arrival_effect,
    with_outage,
    with_record_effect,
)

__all__ = ["IncidentSpan", "TrafficModel", "iso_ms", "plan_incidents", "rate_at", "span_s"]

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "curl/8.8.0",
    "axios/1.7.2",
)
CODES_4XX = np.array([400, 401, 403, 404, 409, 422, 429])
CODES_4XX_P = np.array([0.2, 0.15, 0.08, 0.35, 0.07, 0.1, 0.05])
CODES_5XX = np.array([500, 502, 503, 504])
CODES_5XX_P = np.array([0.5, 0.2, 0.2, 0.1])
_PLACEHOLDER = re.compile(r"\{[^/{}]+\}")


def run_prefix(seed: int, start_ms: int) -> str:
    """A short id prefix, stable for a seed and start, so request ids are reproducible."""
    return hashlib.sha1(f"{seed}:{start_ms}".encode()).hexdigest()[:10]


def rate_at(gen: GeneratorConfig, t_ms: float) -> float:
    """Events per second at a time: the base rate on a daily cycle (peak 15:00 UTC)."""
    hours = (t_ms / 3_600_000.0) % 24
    return gen.rate * (1 + gen.daily_amplitude * math.sin(2 * math.pi * (hours - 9) / 24))


def span_s(gen: GeneratorConfig, from_ms: int, events: int, backwards: bool = False) -> float:
    """Seconds of the daily cycle that hold `events`, starting at `from_ms` (or ending there,
    `backwards`): a run of 100k events at 40/s is 42 min at 09:00 UTC but 34 min at noon."""
    step, sign, t, spent, left = 60.0, -1 if backwards else 1, float(from_ms), 0.0, float(events)
    while True:
        rate = rate_at(gen, t + sign * step * 500)
        if rate * step >= left:
            return spent + left / rate
        left -= rate * step
        spent += step
        t += sign * step * 1000


class TrafficModel:
    """Builds clean request records for given arrival times."""

    def __init__(self, cfg: Config, incidents: list[IncidentSpan], seed: int, start_ms: int):
        self.cfg = cfg
        self.endpoints: tuple[Endpoint, ...] = cfg.endpoints
        self.incidents = incidents
        self.rng = np.random.default_rng([seed, 1])
        # Record effects draw from their own stream: they change only the rows they hit.
        self.effect_rng = np.random.default_rng([seed, 4])
        self.prefix = run_prefix(seed, start_ms)
        w = np.array([e.weight for e in self.endpoints], dtype=float)
        self.ep_p = w / w.sum()
        self.methods = sorted({m for e in self.endpoints for m in e.methods})
        cum = np.zeros((len(self.endpoints), len(self.methods)))
        for i, e in enumerate(self.endpoints):
            for m, p in e.methods.items():
                cum[i, self.methods.index(m)] = p
        cum /= cum.sum(axis=1, keepdims=True)
        self.method_cum = np.cumsum(cum, axis=1)
        self.lat_mu = np.log([e.latency.median_ms for e in self.endpoints])
        self.lat_sigma = np.array([e.latency.sigma for e in self.endpoints])
        self.rate_4xx = np.array([e.error_rate_4xx for e in self.endpoints])
        self.rate_5xx = np.array([e.error_rate_5xx for e in self.endpoints])
        self.bytes_mu = np.log(np.maximum([e.bytes_median for e in self.endpoints], 1))
        self.path_parts = [_PLACEHOLDER.split(e.template) for e in self.endpoints]
        users = cfg.generator.users
        urng = np.random.default_rng([seed, 2])
        octets = urng.integers(1, 255, size=(users, 4))
        self.user_ip = pl.Series([f"{a}.{b}.{c}.{d}" for a, b, c, d in octets])
        self.user_key = pl.Series([f"key_{i:06d}" for i in range(users)])
        self.seq = 0

    def arrivals(self, t0_ms: int, t1_ms: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n arrival times in [t0, t1) with endpoints, after traffic incidents thin or add."""
        times = np.sort(self.rng.integers(t0_ms, max(t1_ms, t0_ms + 1), size=n))
        eps = self.rng.choice(len(self.endpoints), size=n, p=self.ep_p)
        for inc in self.incidents:
            share = float(self.ep_p[inc.endpoint_idx])
            times, eps = with_arrival_effect(inc, times, eps, t0_ms, t1_ms, share, self.rng)
        return times, eps

    def build(self, times: np.ndarray, eps: np.ndarray) -> pl.DataFrame:
        """Clean records for arrival times and endpoint indexes (one row each)."""
        n = len(times)
        rng = self.rng
        method_idx = (rng.random(n)[:, None] > self.method_cum[eps]).sum(axis=1)
        method_idx = np.minimum(method_idx, len(self.methods) - 1)
        lat = np.exp(self.lat_mu[eps] + self.lat_sigma[eps] * rng.standard_normal(n))
        r5 = self.rate_5xx[eps]
        for inc in self.incidents:
            lat, r5 = with_record_effect(inc, times, eps, lat, r5, self.effect_rng)
        u = rng.random(n)
        names = self._method_names(method_idx)
        status = np.where(names == "POST", 201, 200)
        status = np.where(u < 0.01, 304, status)
        is4 = (u >= r5) & (u < r5 + self.rate_4xx[eps])
        status = np.where(is4, rng.choice(CODES_4XX, size=n, p=CODES_4XX_P), status)
        status = np.where(u < r5, rng.choice(CODES_5XX, size=n, p=CODES_5XX_P), status)
        for inc in self.incidents:
            status = with_outage(inc, times, eps, names, u, status)
        nbytes = np.exp(self.bytes_mu[eps] + 0.4 * rng.standard_normal(n)).astype(np.int64)
        nbytes = np.where(status == 304, 0, nbytes)
        users = (rng.zipf(1.3, size=n) - 1) % self.cfg.generator.users
        ids = rng.integers(1, 1_000_000, size=(2, n))
        seq0, self.seq = self.seq, self.seq + n
        frame = pl.DataFrame(
            {
                "seq": np.arange(seq0, seq0 + n),
                "ts_ms": times.astype(np.int64),
                "ep": eps.astype(np.int32),
                "method": pl.Series(self.methods)[method_idx],
                "status": status.astype(np.int32),
                "latency_ms": np.round(lat, 3),
                "bytes_sent": nbytes,
                "user": users.astype(np.int64),
                "id1": ids[0],
                "id2": ids[1],
                "ua": rng.integers(0, len(USER_AGENTS), size=n),
            }
        )
        return frame.select(
            request_id=pl.lit(self.prefix + "-") + pl.col("seq").cast(pl.String).str.zfill(10),
            ts_ms=pl.col("ts_ms"),
            ep=pl.col("ep"),
            method=pl.col("method"),
            path=self._path_expr(),
            status=pl.col("status"),
            latency_ms=pl.col("latency_ms"),
            bytes_sent=pl.col("bytes_sent"),
            client_ip=self.user_ip.gather(frame["user"]),
            user_agent=pl.Series(USER_AGENTS).gather(frame["ua"]),
            api_key=self.user_key.gather(frame["user"]),
        )

    def _method_names(self, idx: np.ndarray) -> np.ndarray:
        return np.array(self.methods)[idx]

    def _path_expr(self) -> pl.Expr:
        expr = pl.lit(None, dtype=pl.String)
        for i, parts in enumerate(self.path_parts):
            pieces: list[pl.Expr] = []
            for j, part in enumerate(parts):
                pieces.append(pl.lit(part))
                if j < len(parts) - 1:
                    pieces.append(pl.col("id1" if j == 0 else "id2").cast(pl.String))
            expr = pl.when(pl.col("ep") == i).then(pl.concat_str(pieces)).otherwise(expr)
        return expr
