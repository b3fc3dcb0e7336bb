"""DuckDB reference: the same window metrics from the same input files, computed in batch by
an independent SQL implementation, as a speed reference and a check of the pipeline's numbers.

It re-implements, in SQL, the validation rules, Spark's watermark over micro-batches of
`files_per_trigger` files (a row is late when its event time is at or below the newest event
time up to two batches before, minus the delay: stateful operators judge lateness by the
previous batch's watermark), deduplication on (request_id, event time), endpoint templates
and the per window x endpoint x method aggregates with exact percentiles.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from apistream import sqlite_store
from apistream.config import Config
from apistream.fields import REQUIRED_FIELDS
from apistream.pipeline.enrich import template_regex
from apistream.pipeline.sources import matching_files
from apistream.window_metrics import PERCENTILES

# Percentile check: the pipeline's value must be within 1% of the exact value (value rule).
VALUE_TOLERANCE = 0.01
ISO = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _checked_sql(cfg: Config, files_per_trigger: int) -> str:
    v = cfg.validation
    missing = " OR ".join(f"{f} IS NULL" for f in REQUIRED_FIELDS)
    methods = ", ".join(_lit(m) for m in v.methods)
    stale = (
        f"WHEN et < now() - INTERVAL {int(v.max_age)} SECOND THEN 'stale_timestamp'"
        if v.max_age is not None
        else ""
    )
    names = ("request_id", "timestamp", "method", "path", "status", "latency_ms", "bytes_sent")
    paths = ", ".join(f"'$.{f}'" for f in names)
    fields = ",\n".join(
        f"CASE WHEN trim(v[{i}]) <> '' THEN v[{i}] END AS {f}" for i, f in enumerate(names, 1)
    )
    return f"""
    CREATE OR REPLACE TEMP TABLE checked AS
    WITH lines AS (
        SELECT file_no, unnest(string_split(rtrim(content, chr(10)), chr(10))) AS line
        FROM (SELECT content, row_number() OVER (ORDER BY filename) - 1 AS file_no
              FROM read_text($files))
    ), objects AS (
        SELECT file_no, line,
            COALESCE(json_valid(line) AND json_type(CASE WHEN json_valid(line) THEN line END)
                     = 'OBJECT', false) AS ok
        FROM lines
    ), parsed AS (
        SELECT file_no, ok, {fields}
        FROM (SELECT file_no, ok, CASE WHEN ok THEN json_extract_string(line, [{paths}]) END AS v
              FROM objects)
    ), typed AS (
        SELECT *,
            CASE WHEN regexp_matches(trim(timestamp), {_lit(ISO)})
                     THEN TRY_CAST(trim(timestamp) AS TIMESTAMPTZ)
                 WHEN regexp_matches(trim(timestamp), '^\\d+(\\.\\d+)?(E\\d+)?$')
                      AND TRY_CAST(trim(timestamp) AS DOUBLE) >= 1e11
                     THEN to_timestamp(TRY_CAST(trim(timestamp) AS DOUBLE) / 1000)
                 WHEN regexp_matches(trim(timestamp), '^\\d+(\\.\\d+)?(E\\d+)?$')
                      AND TRY_CAST(trim(timestamp) AS DOUBLE) >= 1e8
                     THEN to_timestamp(TRY_CAST(trim(timestamp) AS DOUBLE))
            END AS et,
            TRY_CAST(trim(status) AS INTEGER) AS st,
            TRY_CAST(trim(latency_ms) AS DOUBLE) AS lat,
            TRY_CAST(trim(bytes_sent) AS BIGINT) AS nb,
            upper(trim(method)) AS m
        FROM parsed
    )
    SELECT file_no // {files_per_trigger} AS batch, request_id, epoch_ms(et) AS et_ms, m AS method,
        path, st, lat,
        CASE
            WHEN NOT ok THEN 'malformed_json'
            WHEN {missing} THEN 'missing_field'
            WHEN (timestamp IS NOT NULL AND et IS NULL) OR (status IS NOT NULL AND st IS NULL)
                 OR (latency_ms IS NOT NULL AND lat IS NULL)
                 OR (bytes_sent IS NOT NULL AND nb IS NULL) THEN 'wrong_type'
            WHEN m NOT IN ({methods}) THEN 'invalid_method'
            WHEN st NOT BETWEEN {v.status_min} AND {v.status_max} THEN 'invalid_status'
            WHEN lat < 0 THEN 'negative_latency'
            WHEN lat > {v.max_latency_ms} THEN 'absurd_latency'
            WHEN et > now() + INTERVAL {int(v.max_future)} SECOND THEN 'future_timestamp'
            {stale}
        END AS reason
    FROM typed
    """


def _metrics_sql(cfg: Config) -> str:
    delay_ms = int(cfg.processing.watermark * 1000)
    window_ms = int(cfg.processing.window * 1000)
    cases = " ".join(
        f"WHEN regexp_matches(bare, {_lit(template_regex(e.template))}) THEN {_lit(e.template)}"
        for e in cfg.endpoints
    )
    # Exact percentiles: the ceil(p * n)-th smallest value (percentile_approx's definition).
    qs = ", ".join(
        f"lats[greatest(ceil({round(p, 4)}::DOUBLE * requests), 1)::BIGINT]" for p in PERCENTILES
    )
    return f"""
    CREATE OR REPLACE TEMP TABLE reference AS
    WITH valid AS (SELECT * FROM checked WHERE reason IS NULL),
    newest AS (
        SELECT batch, max(max(et_ms)) OVER (ORDER BY batch) AS upto FROM valid GROUP BY batch
    ),
    marked AS (
        SELECT v.*, v.et_ms <= n.upto - {delay_ms} AS late
        FROM valid v LEFT JOIN newest n ON n.batch = v.batch - 2
    ),
    events AS (
        SELECT request_id, et_ms, any_value(method) AS method, any_value(path) AS path,
               any_value(st) AS st, any_value(lat) AS lat
        FROM marked WHERE late IS NOT TRUE GROUP BY request_id, et_ms
    ),
    named AS (
        SELECT *, CASE {cases} ELSE bare END AS endpoint
        FROM (SELECT *, regexp_extract(path, '^([^?#]*)', 1) AS bare FROM events)
    ),
    grouped AS (
    SELECT strftime(make_timestamp((et_ms - et_ms % {window_ms}) * 1000),
                    '%Y-%m-%dT%H:%M:%SZ') AS window_start,
        endpoint, method, count(*) AS requests,
        {", ".join(f"count_if(st // 100 = {k}) AS status_{k}xx" for k in range(1, 6))},
        min(lat) AS latency_min_ms, max(lat) AS latency_max_ms,
        list_sort(list(lat)) AS lats
    FROM named GROUP BY ALL
    )
    SELECT * EXCLUDE (lats), [{qs}] AS q FROM grouped
    """


def reference_metrics(
    cfg: Config, input_dir: Path, files_per_trigger: int
) -> tuple[duckdb.DuckDBPyConnection, dict[str, Any]]:
    """Compute the reference in DuckDB (2 threads); returns the connection and its account."""
    files = [str(p) for p in matching_files(input_dir, cfg.source.glob)]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    started = time.perf_counter()
    con.execute(_checked_sql(cfg, files_per_trigger), {"files": files})
    con.execute(_metrics_sql(cfg))
    seconds = time.perf_counter() - started
    lines = con.execute("SELECT count(*) FROM checked").fetchall()[0][0]
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM checked WHERE reason IS NOT NULL GROUP BY reason"
        ).fetchall()
    )
    valid = con.execute("SELECT sum(requests) FROM reference").fetchall()[0][0]
    account = {
        "lines": lines,
        "seconds": round(seconds, 2),
        "events_per_s": round(lines / seconds),
        "valid": int(valid),
        "quarantined_by_reason": reasons,
    }
    return con, account


def compare(con: duckdb.DuckDBPyConnection, sqlite_path: Path) -> dict[str, Any]:
    """Window metrics in the pipeline's SQLite vs the DuckDB reference."""
    cols = "window_start, endpoint, method, requests, " + ", ".join(
        [f"status_{k}xx" for k in range(1, 6)]
        + ["latency_min_ms", "latency_max_ms", "latency_p50_ms", "latency_p95_ms"]
        + ["latency_p99_ms"]
    )
    with sqlite_store.read_only(sqlite_path) as conn:
        pipeline = pd.read_sql_query(f"SELECT {cols} FROM endpoint_metrics", conn)
    return compare_frame(con, pipeline)


def compare_frame(con: duckdb.DuckDBPyConnection, pipeline: pd.DataFrame) -> dict[str, Any]:
    """The pipeline's window metrics (a frame of endpoint_metrics columns) vs the `reference`
    table: groups, counts, min/max exact; each percentile within VALUE_TOLERANCE of exact."""
    con.register("pipeline", pipeline)
    keys = con.execute(
        "SELECT count(*) FILTER (WHERE p.window_start IS NULL), "
        "count(*) FILTER (WHERE r.window_start IS NULL), count(*) "
        "FROM reference r FULL JOIN pipeline p USING (window_start, endpoint, method)"
    ).fetchall()[0]
    counts = ["requests", *[f"status_{k}xx" for k in range(1, 6)]]
    mismatch = " OR ".join(f"r.{c} <> p.{c}" for c in counts)
    count_mismatches = con.execute(
        f"SELECT count(*) FROM reference r JOIN pipeline p USING (window_start, endpoint, method) "
        f"WHERE {mismatch} OR r.latency_min_ms <> p.latency_min_ms "
        f"OR r.latency_max_ms <> p.latency_max_ms"
    ).fetchall()[0][0]
    pct: dict[str, Any] = {}
    for i, p in enumerate(PERCENTILES, 1):
        name = f"latency_p{round(p * 100)}_ms"
        exact, got = f"r.q[{i}]", f"p.{name}"
        outside, rel_max, rel_median = con.execute(
            f"SELECT count_if(NOT coalesce(abs({got} - {exact}) <= {VALUE_TOLERANCE} * "
            f"abs({exact}), false)), "
            f"max(abs({got} - {exact}) / {exact}), median(abs({got} - {exact}) / {exact}) "
            f"FROM reference r JOIN pipeline p USING (window_start, endpoint, method)"
        ).fetchall()[0]
        pct[name] = {
            "outside_tolerance": int(outside),
            "relative_error_max": round(float(rel_max), 5) if rel_max is not None else None,
            "relative_error_median": round(float(rel_median), 6)
            if rel_median is not None
            else None,
        }
    totals = con.execute(
        "SELECT (SELECT sum(requests) FROM reference), (SELECT sum(requests) FROM pipeline)"
    ).fetchall()[0]
    con.unregister("pipeline")
    agree = (
        keys[0] == 0
        and keys[1] == 0
        and count_mismatches == 0
        and all(v["outside_tolerance"] == 0 for v in pct.values())
    )
    return {
        "groups": int(keys[2]),
        "groups_missing_in_pipeline": int(keys[0]),
        "groups_missing_in_reference": int(keys[1]),
        "groups_with_count_mismatch": int(count_mismatches),
        "requests_reference": int(totals[0]),
        "requests_pipeline": int(totals[1]),
        "percentiles": pct,
        "percentile_rule": f"|pipeline - exact| <= {VALUE_TOLERANCE:.0%} of exact per window x "
        "endpoint x method; exact = the ceil(p*n)-th smallest latency",
        "agree": bool(agree),
    }
