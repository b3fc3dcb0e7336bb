"""A planted hash key (enrichment.client_ip / api_key: hash) never leaves memory.

A real pipeline run hashes with a random key; the key is then searched as text, as hex (how
Spark prints a binary literal) and as base64 (how py4j sends bytes) in every file under the
output root (SQLite, lake, checkpoints), the Python and JVM logs, every plan Spark executed
(the SQL UI's text, in extended mode: parsed, analyzed, optimized and physical plans) and
the stream's plan and progress. A control query that inlines the key as a literal is caught
by the same search, so the search can fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from apistream.catalog import Paths
from apistream.config import DEFAULT_HASH_KEY_ENV, load_config
from apistream.generator.writer import LogGenerator
from apistream.lake import read_table
from apistream.pipeline.enrich import HASH_INNER, HASH_OUTER, hash_key_frame, hmac_pads, keyed_hash
from apistream.pipeline.topology import run_stream

EXPLAIN_MODE = "spark.sql.ui.explainMode"


def forms(key: str) -> list[str]:
    """The ways a key could be printed: as is, as hex (either case), as base64; and the same
    for its HMAC inner and outer keys, which give the key back."""
    printed = [key]
    for raw in (key.encode(), *hmac_pads(key.encode())):
        printed += [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()]
    return printed


def found(key: str, text: str) -> list[str]:
    """The forms of the key in the text."""
    return [f for f in forms(key) if f in text]


def hmac16(key: str, value: str) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def _execution_ids(spark: SparkSession) -> set[int]:
    spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
    runs = spark._jsparkSession.sharedState().statusStore().executionsList()
    return {runs.apply(i).executionId() for i in range(runs.size())}


@contextmanager
def observe(spark: SparkSession) -> Iterator[Callable[[], tuple[list[str], str]]]:
    """While open, the JVM logs at INFO are also written to a string and the SQL UI keeps
    extended plans. Yields a function giving the plan text of each SQL execution started
    since (description, details, plans) and the JVM log so far."""
    jvm = spark._jvm
    core = jvm.org.apache.logging.log4j.core
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    root = context.getConfiguration().getRootLogger()
    writer = jvm.java.io.StringWriter()
    layout = core.layout.PatternLayout.createDefaultLayout()
    name = "apistream-secrets-test"
    appender = core.appender.WriterAppender.createAppender(layout, None, writer, name, False, True)
    appender.start()
    level = root.getLevel()
    root.addAppender(appender, None, None)
    root.setLevel(jvm.org.apache.logging.log4j.Level.INFO)
    context.updateLoggers()
    mode = spark.conf.get(EXPLAIN_MODE)
    spark.conf.set(EXPLAIN_MODE, "extended")
    before = _execution_ids(spark)

    def seen() -> tuple[list[str], str]:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty()
        store = spark._jsparkSession.sharedState().statusStore()
        runs = store.executionsList()
        plans = []
        for i in range(runs.size()):
            run = runs.apply(i)
            if run.executionId() not in before:
                plans.append(
                    "\n".join([run.description(), run.details(), run.physicalPlanDescription()])
                )
        return plans, writer.toString()

    try:
        yield seen
    finally:
        spark.conf.set(EXPLAIN_MODE, mode)
        root.removeAppender(name)
        root.setLevel(level)
        context.updateLoggers()
        appender.stop()


def test_the_search_finds_a_key_inlined_as_a_literal_and_not_one_from_the_key_frame(spark):
    key = secrets.token_urlsafe(24)
    ips = spark.createDataFrame([("89.55.136.174",)], "ip string")
    with observe(spark) as seen:
        pads = [F.lit(pad) for pad in hmac_pads(key.encode())]
        inlined = ips.select(keyed_hash(F.col("ip"), *pads).alias("h")).first()
        plans, _ = seen()
    assert found(key, "\n".join(plans))
    with observe(spark) as seen:
        joined = ips.crossJoin(F.broadcast(hash_key_frame(spark, key.encode())))
        keys = F.col(HASH_INNER), F.col(HASH_OUTER)
        as_data = joined.select(keyed_hash(F.col("ip"), *keys).alias("h")).first()
        plans, log = seen()
    assert inlined.h == as_data.h == hmac16(key, "89.55.136.174")
    assert any("sha2(" in p for p in plans)
    assert not found(key, "\n".join(plans) + log)


def raw_callers(incoming: Path) -> tuple[set[str], set[str]]:
    """The client IPs and api keys in the generated lines (read without Spark)."""
    ips, api_keys = set(), set()
    for path in incoming.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                ips.add(rec.get("client_ip"))
                api_keys.add(rec.get("api_key"))
    return {v for v in ips if isinstance(v, str)}, {v for v in api_keys if isinstance(v, str)}


def test_planted_hash_key_is_nowhere_after_a_run(spark, tmp_path, monkeypatch, caplog, capfd):
    key = secrets.token_urlsafe(24)
    monkeypatch.setenv(DEFAULT_HASH_KEY_ENV, key)  # the sink reads the key from os.environ
    cfg = load_config(
        environ={DEFAULT_HASH_KEY_ENV: key},
        overrides={
            "enrichment.client_ip": "hash",
            "enrichment.api_key": "hash",
            "source.max_files_per_trigger": 4,
            "generator.events": 5000,
            "generator.events_per_file": 1000,
            "generator.rate": 25,
            "generator.seed": 3,
            "source.path": str(tmp_path / "incoming"),
            "sinks.output": str(tmp_path),
        },
    )
    LogGenerator(cfg, cfg.source.path).backfill()
    caplog.set_level(logging.DEBUG)  # py4j logs every command it sends at DEBUG
    with observe(spark) as seen:
        run = run_stream(spark, cfg, until_idle=True, stop=threading.Event())
        plans, jvm_log = seen()
    query = run.query
    stream = [
        query._jsq.explainInternal(True),
        str(query.lastProgress),
        str(query.recentProgress),
        str(query.status),
    ]
    out, err = capfd.readouterr()

    assert sum("sha2(" in p for p in plans) >= 2  # the events of both batches
    assert "Starting job" in jvm_log and "DEBUG" in caplog.text
    leaks = {
        "plans": found(key, "\n".join(plans)),
        "stream": found(key, "\n".join(stream)),
        "jvm log": found(key, jvm_log),
        "python log": found(key, caplog.text),
        "stdout/stderr": found(key, out + err),
    }
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".db" for p in files)
    assert any("checkpoints" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        secret = [key.encode(), *hmac_pads(key.encode())]
        leaks[str(path)] = [f for f in forms(key) if f.encode() in data] + [
            s.hex() for s in secret if s in data
        ]
    events = read_table(Paths.of(cfg).events)
    quarantine = read_table(Paths.of(cfg).quarantine)
    leaks["lake values"] = found(key, str(events.to_pydict()) + str(quarantine.to_pydict()))
    assert {where: f for where, f in leaks.items() if f} == {}

    # The lake holds the hashes of the generated callers, never the callers themselves.
    ips, api_keys = raw_callers(tmp_path / "incoming")
    assert len(ips) > 10 and len(api_keys) > 10
    columns = events.select(["client_ip", "api_key"]).to_pydict()
    assert len(columns["client_ip"]) > 4000
    for column, raw in (("client_ip", ips), ("api_key", api_keys)):
        stored = set(columns[column]) - {None, "-"}
        assert len(stored) > 10, column
        assert not stored & raw, column
        assert stored <= {hmac16(key, v) for v in raw}, column

    # enrichment.quarantine_raw "auto": with callers hashed, bad lines are not kept as they came.
    bad = quarantine.to_pydict()
    assert len(bad["reason"]) > 10
    assert set(bad["raw"]) == {None} and set(bad["raw_bytes"]) == {None}
    assert not {str(v) for column in bad.values() for v in column} & (ips | api_keys)
