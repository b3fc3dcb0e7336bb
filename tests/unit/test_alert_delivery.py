"""Anomalies delivered to webhooks: a real local HTTP receiver, a real SQLite file. Payloads,
no repeat across a restart, retries with backoff, giving up, the rate limit, secret URLs."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from http_receiver import Receiver, http_receiver

from apistream import sqlite_store
from apistream.alert_delivery import AlertDeliverer, RateLimit, backoff_s
from apistream.bench.broker import free_port
from apistream.config import AlertsConfig, Webhook
from apistream.errors import ConfigError

T0 = datetime(2026, 11, 29, 12, 0, 0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as rec:
        yield rec


def anomaly(window: int, severity: str = "critical", metric: str = "latency_p95_ms") -> dict:
    start = T0 + timedelta(minutes=window)
    return {
        "detector": "ewma", "endpoint": "/api/v1/users/{id}", "method": "GET",
        "window_start": start.isoformat() + "Z",
        "window_end": (start + timedelta(minutes=1)).isoformat() + "Z",
        "metric": metric, "observed": 850.0, "baseline_mean": 120.0, "baseline_std": 15.0,
        "z_score": 48.7, "severity": severity, "detected_at": "2026-11-29T12:30:00.000Z",
    }  # fmt: skip


@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "analytics.db")
    sqlite_store.connect(path).close()
    return path


def add(db: str, *rows: dict) -> None:
    with sqlite3.connect(db) as conn:
        sqlite_store.write_anomalies(conn, list(rows))


class Clock:
    """Wall time (for retries) and monotonic time (for the rate limit), moved by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    def mono(self) -> float:
        return self.t


def deliverer(db: str, clock: Clock, *hooks: Webhook, env=None, **alerts) -> AlertDeliverer:
    cfg = AlertsConfig(webhooks=hooks, **alerts)
    return AlertDeliverer(db, cfg, environ=env or {}, now=clock.now, clock=clock.mono)


def deliveries(db: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT webhook, window_start, attempts, delivered_at IS NOT NULL, last_error "
            "FROM alert_deliveries ORDER BY webhook, window_start"
        ).fetchall()


def test_json_and_slack_payloads_each_once_and_min_severity(db, receiver):
    add(db, anomaly(0), anomaly(1, severity="warning"))
    clock = Clock()
    chat = Webhook(name="chat", url=receiver.url, format="slack", min_severity="critical")
    hooks = (Webhook(name="hub", url=receiver.url), chat)
    d = deliverer(db, clock, *hooks)
    assert d.deliver_pending() == 3
    d.close()
    json_posts = [p for p in receiver.posts if "source" in p["body"]]
    slack_posts = [p for p in receiver.posts if "text" in p["body"]]
    assert [p["body"]["severity"] for p in json_posts] == ["critical", "warning"]
    first = json_posts[0]
    assert first["body"] == {"source": "apistream", "id": first["headers"]["Idempotency-Key"],
                             **anomaly(0)}  # fmt: skip
    assert first["headers"]["Idempotency-Key"] == (
        "ewma|/api/v1/users/{id}|GET|2026-11-29T12:00:00Z|latency_p95_ms"
    )
    assert [p["body"]["text"] for p in slack_posts] == [
        "critical anomaly (ewma): latency_p95_ms of GET /api/v1/users/{id} was 850 against a "
        "baseline of 120 (z +48.7) in the window 2026-11-29T12:00:00Z to 2026-11-29T12:01:00Z"
    ]


def test_nothing_is_posted_twice_across_a_restart(db, receiver):
    add(db, anomaly(0), anomaly(1))
    clock = Clock()
    hook = Webhook(name="hub", url=receiver.url)
    first = deliverer(db, clock, hook)
    assert first.deliver_pending() == 2
    first.close()
    add(db, anomaly(2))
    again = deliverer(db, clock, hook)  # a restarted stream
    assert again.deliver_pending() == 1
    assert again.deliver_pending() == 0
    again.close()
    windows = [p["body"]["window_start"] for p in receiver.posts]
    assert windows == ["2026-11-29T12:00:00Z", "2026-11-29T12:01:00Z", "2026-11-29T12:02:00Z"]


def test_failures_are_retried_with_backoff_until_delivered(db, receiver):
    add(db, anomaly(0))
    receiver.statuses = [500, 503]
    clock = Clock()
    d = deliverer(db, clock, Webhook(name="hub", url=receiver.url), backoff=10)
    assert d.deliver_pending() == 0  # attempt 1: 500
    assert d.deliver_pending() == 0  # not due before 10 s
    assert len(receiver.posts) == 1
    clock.t = 10
    assert d.deliver_pending() == 0  # attempt 2: 503; the next waits 20 s
    clock.t = 29
    assert d.deliver_pending() == 0 and len(receiver.posts) == 2
    clock.t = 30
    assert d.deliver_pending() == 1
    d.close()
    assert deliveries(db) == [("hub", "2026-11-29T12:00:00Z", 3, 1, None)]
    assert [backoff_s(n, 2.0) for n in (1, 2, 3, 9, 10)] == [2.0, 4.0, 8.0, 300.0, 300.0]


def test_gives_up_after_max_attempts_without_logging_a_secret_url(db, caplog, monkeypatch):
    add(db, anomaly(0))
    secret = f"http://127.0.0.1:{free_port()}/T0000/B0000/s3cr3t-token"  # nothing listens
    clock = Clock()
    hook = Webhook(name="oncall", url="${HOOK_URL}", format="slack")
    d = deliverer(db, clock, hook, env={"HOOK_URL": secret}, max_attempts=2, backoff=1)
    caplog.set_level(logging.DEBUG)
    assert d.deliver_pending() == 0
    clock.t = 1
    assert d.deliver_pending() == 0
    clock.t = 1000
    assert d.deliver_pending() == 0  # no attempt left
    d.close()
    [(webhook, _, attempts, delivered, error)] = deliveries(db)
    assert (webhook, attempts, delivered) == ("oncall", 2, 0)
    assert error.startswith("ConnectError")
    assert "gave up" in caplog.text and "oncall" in caplog.text
    assert "s3cr3t" not in caplog.text + error


def test_a_webhook_url_from_an_unset_variable_fails_naming_the_key(db):
    hook = Webhook(name="oncall", url="${HOOK_URL}")
    with pytest.raises(ConfigError, match=r"alerts\.webhooks\.oncall: .*HOOK_URL is not set"):
        deliverer(db, Clock(), hook)


def test_the_rate_limit_holds_the_rest_back_until_their_turn(db, receiver):
    add(db, *(anomaly(i) for i in range(5)))
    clock = Clock()
    d = deliverer(db, clock, Webhook(name="hub", url=receiver.url), max_per_minute=2)
    assert d.deliver_pending() == 2
    assert d.deliver_pending() == 0
    clock.t = 30  # one more token
    assert d.deliver_pending() == 1
    clock.t = 90
    assert d.deliver_pending() == 2
    d.close()
    assert len(receiver.posts) == 5
    assert len({p["headers"]["Idempotency-Key"] for p in receiver.posts}) == 5


def test_rate_limit_bucket():
    t = [0.0]
    bucket = RateLimit(60, clock=lambda: t[0])
    assert sum(bucket.take() for _ in range(100)) == 60
    t[0] = 0.5
    assert not bucket.take()
    t[0] = 1.0
    assert bucket.take() and not bucket.take()
