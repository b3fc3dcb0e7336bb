"""Anomalies posted to webhooks (config `alerts`).

The sink writes anomalies to SQLite inside each batch's commit; this delivers them afterwards,
from the database, so a slow or dead receiver never holds up the stream. Each (webhook,
anomaly) attempt is recorded in `alert_deliveries`: a delivered anomaly is never posted again
to that webhook, across restarts too, and a failed one is retried with exponential backoff up
to `max_attempts`. A crash between a receiver's 2xx and the record of it can repeat one post,
so every post carries the anomaly's id (`Idempotency-Key` header, `id` field) for the
receiver to drop a repeat. Posts per webhook are limited to `max_per_minute`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from apistream import sqlite_store
from apistream.config import AlertsConfig, Webhook, resolve_secrets
from apistream.timefmt import iso

log = logging.getLogger("apistream")
SEVERITIES = {"warning": ("warning", "critical"), "critical": ("critical",)}
MAX_BACKOFF_S = 300.0


def anomaly_id(a: Mapping[str, Any]) -> str:
    """The anomaly's key as one string: detector|endpoint|method|window_start|metric."""
    return "|".join(str(a[k]) for k in sqlite_store.ANOMALY_KEY)


def payload(a: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """The body posted for an anomaly: every field (json), or one line of text (slack)."""
    if fmt == "slack":
        where = a["endpoint"] if a["method"] == "*" else f"{a['method']} {a['endpoint']}"
        return {
            "text": (
                f"{a['severity']} anomaly ({a['detector']}): {a['metric']} of {where} was "
                f"{a['observed']:g} against a baseline of {a['baseline_mean']:g} "
                f"(z {a['z_score']:+.1f}) in the window {a['window_start']} to {a['window_end']}"
            )
        }
    fields = ("detector", "endpoint", "method", "window_start", "window_end", "metric",
              "observed", "baseline_mean", "baseline_std", "z_score", "severity",
              "detected_at")  # fmt: skip
    return {"source": "apistream", "id": anomaly_id(a), **{k: a[k] for k in fields}}


def backoff_s(attempts: int, first_s: float) -> float:
    """Wait after the `attempts`-th failed attempt: first_s, doubling, at most 5 minutes."""
    return min(first_s * 2 ** (attempts - 1), MAX_BACKOFF_S)


class RateLimit:
    """A token bucket: `per_minute` posts a minute, in bursts of at most `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class AlertDeliverer:
    """Delivers pending anomalies of one database to the configured webhooks."""

    def __init__(
        self,
        sqlite_path: str | Path,
        cfg: AlertsConfig,
        environ: Mapping[str, str] = os.environ,
        now: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None),
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.now = now
        # Webhook URLs may be secrets: resolved here, used only by the client, never logged.
        self.urls = resolve_secrets(
            {w.name: w.url for w in cfg.webhooks}, "alerts.webhooks", dict(environ)
        )
        self.limits = {w.name: RateLimit(cfg.max_per_minute, clock) for w in cfg.webhooks}
        self.conn = sqlite_store.connect(sqlite_path)
        self.client = httpx.Client(timeout=cfg.timeout, follow_redirects=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def deliver_pending(self) -> int:
        """One pass over every webhook: post what is due (within its rate limit); returns
        the number delivered."""
        with self._lock:
            return sum(self._deliver(w) for w in self.cfg.webhooks)

    def _deliver(self, webhook: Webhook) -> int:
        delivered = 0
        pending = sqlite_store.pending_alerts(
            self.conn, webhook.name, SEVERITIES[webhook.min_severity], self.cfg.max_attempts,
            iso(self.now(), ms=True), limit=self.cfg.max_per_minute,
        )  # fmt: skip
        for anomaly in pending:
            if self._stop.is_set() and self._thread is not None:
                break
            if not self.limits[webhook.name].take():
                break
            error = self._post(webhook, anomaly)
            attempts = anomaly["attempts"] + 1
            now = self.now()
            if error is None:
                delivered += 1
                sqlite_store.record_attempt(
                    self.conn, webhook.name, anomaly, attempts, iso(now, ms=True), None, None
                )
                continue
            retry = now + timedelta(seconds=backoff_s(attempts, self.cfg.backoff))
            sqlite_store.record_attempt(
                self.conn, webhook.name, anomaly, attempts, None, iso(retry, ms=True), error
            )
            if attempts >= self.cfg.max_attempts:
                log.warning(
                    "alerts: gave up on %s for webhook %s after %d attempts: %s",
                    anomaly_id(anomaly), webhook.name, attempts, error,
                )  # fmt: skip
        return delivered

    def _post(self, webhook: Webhook, anomaly: Mapping[str, Any]) -> str | None:
        """Post one anomaly; None on a 2xx answer, else what went wrong (without the URL)."""
        try:
            r = self.client.post(
                self.urls[webhook.name],
                json=payload(anomaly, webhook.format),
                headers={"Idempotency-Key": anomaly_id(anomaly)},
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}".replace(self.urls[webhook.name], webhook.name)
        return None if r.is_success else f"HTTP {r.status_code}"

    def start(self, every_s: float = 2.0) -> AlertDeliverer:
        """Deliver in a background thread, a pass every `every_s` until `close`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.deliver_pending()
                except sqlite3.Error as exc:  # e.g. a locked database: next pass
                    log.warning("alerts: delivery pass failed: %s", exc)
                self._stop.wait(every_s)

        self._thread = threading.Thread(target=loop, name="apistream-alerts", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.timeout * 2 + 5)
        self.client.close()
        self.conn.close()
