"""Benchmark results on disk: the JSON record, a markdown summary and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _n(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.2f}{unit}"


def markdown(r: dict[str, Any], name: str) -> str:
    """The summary users read: targets, throughput, sweep, scaling, freshness, memory."""
    s, m = r["summary"], r["machine"]
    lines = [
        f"# Benchmark {name}",
        "",
        f"{m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gb']} GB, {m['os']}; "
        f"Python {m['python']}, PySpark {m['pyspark']}, {m['java']}, DuckDB {m['duckdb']}; "
        f"commit {m['commit']}.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
    ]
    labels = {
        "sustained_events_per_s": ("sustained events/s, full pipeline", "≥ {:,}"),
        "freshness_p95_s": ("p95 freshness at the live rate (s)", "≤ {}"),
        "memory_peak_mb": ("peak RSS, driver JVM + Python (MB)", "≤ {:,}"),
        "generator_events_per_s": ("generator events/s, one core", "≥ {:,}"),
        "percentile_error_max": ("DuckDB check: counts exact, max percentile error", "≤ {:.0%}"),
    }
    for key, (label, goal) in labels.items():
        met = "yes" if s["met"][key] else "**no**"
        value = s["figures"][key]
        shown = f"{value:.2%}" if key == "percentile_error_max" and value is not None else _n(value)
        lines.append(f"| {label} | {goal.format(s['targets'][key])} | {shown} | {met} |")
    tp = r.get("throughput")
    if tp:
        duck = r.get("duckdb", {})
        check = duck.get("check", {})
        lines += [
            "",
            f"## Throughput ({tp['events']:,} events, {tp['files_per_trigger']} files per batch)",
            "",
            f"- sustained (after the first batch, until SQLite holds every window): "
            f"**{tp['sustained_events_per_s']:,} events/s**; ingest query alone "
            f"{tp['ingest_events_per_s']:,} events/s",
            f"- wall time {tp['wall_s']} s incl. JVM start ({tp['overall_events_per_s']:,} "
            f"events/s overall); first metric in SQLite after {tp['first_metric_s']} s; "
            f"first batch {tp['first_batch_s']} s",
            f"- references in the same run: generator {s['figures']['generator_events_per_s']:,} "
            f"events/s (pipeline/generator = {s['ratios']['pipeline_vs_generator']}), DuckDB "
            f"{duck.get('events_per_s', 0):,} events/s (pipeline/DuckDB = "
            f"{s['ratios']['pipeline_vs_duckdb']})",
            f"- DuckDB cross-check: {check.get('groups', 0):,} window x endpoint x method groups, "
            f"{check.get('groups_with_count_mismatch')} with a count mismatch, "
            f"{check.get('groups_missing_in_pipeline')} missing, valid events "
            f"{check.get('valid_reference', 0):,} (manifest {check.get('valid_manifest', 0):,}); "
            "percentile relative error max "
            + ", ".join(
                f"{k.split('_')[1]} {v['relative_error_max']:.2%}"
                for k, v in check.get("percentiles", {}).items()
            )
            + f": **{'agrees' if check.get('agree') else 'DISAGREES'}**",
        ]
    if r["sweep"]:
        lines += [
            "",
            "## Micro-batch size",
            "",
            "| files/batch | rows/batch | ingest batch (s, median) | events/s |",
            "|---|---|---|---|",
        ]
        for x in r["sweep"]:
            lines.append(
                f"| {x['files_per_trigger']} | {x['rows_per_batch_median']:,.0f} | "
                f"{x['ingest_batch_s_median']} | {x['sustained_events_per_s']:,} |"
            )
    if s["scaling"]:
        lines += [
            "",
            "## Scaling",
            "",
            "| events | events/s | µs per event | vs smallest | wall (s) | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for x, y in zip(r["scaling"], s["scaling"], strict=True):
            lines.append(
                f"| {x['events']:,} | {x['sustained_events_per_s']:,} | {y['us_per_event']} | "
                f"{y['relative_to_smallest']} | {x['wall_s']} | "
                f"{x['memory_peak']['total_mb']:,.0f} |"
            )
    live = r.get("live")
    if live:
        f = live["freshness_s"]
        lines += [
            "",
            f"## Live: {live['rate']:,} events/s for {live['seconds']} s",
            "",
            f"- freshness, event creation to its window metric in SQLite (after "
            f"{live['warmup_s']} s warm-up): p50 {f['p50']} s, p95 **{f['p95']} s**, "
            f"p99 {f['p99']} s, max {f['max']} s",
            f"- peak RSS: JVM {live['memory_peak']['jvm_mb']:,.0f} MB, Python "
            f"{live['memory_peak']['python_mb']:,.0f} MB; slope over the second half "
            f"{live['memory_slope_mb_per_min']} MB/min",
            f"- dedup state rows: slope over the second half "
            f"{live['state_rows_slope_per_min']} rows/min",
            f"- newest event's age in SQLite grew {live['lag_slope_s_per_min']} s/min after "
            f"warm-up (kept up: {'yes' if live['kept_up'] else '**no**'}); caught up "
            f"{live['catch_up_s']} s after generation stopped",
        ]
    rates = r.get("freshness_by_rate")
    if rates:
        lines += [
            "",
            "## Freshness by live rate",
            "",
            "| events/s | run (s) | p50 (s) | p95 (s) | p99 (s) | ingest batch (s) | kept up |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in rates:
            lines.append(
                f"| {x['rate']:,} | {x['seconds']} | {x['p50']} | {x['p95']} | {x['p99']} | "
                f"{x['ingest_batch_s_median']} | {'yes' if x['kept_up'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> None:
    """Four panels: batch-size sweep, scaling, live freshness, live memory and state."""
    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    sweep = r["sweep"]
    a = ax[0][0]
    if sweep:
        x = [f"{s['rows_per_batch_median'] / 1000:.0f}k" for s in sweep]
        a.bar(x, [s["sustained_events_per_s"] for s in sweep], color="#4c72b0")
        for i, s in enumerate(sweep):
            a.annotate(
                f"{s['ingest_batch_s_median']:.2f} s/batch",
                (i, s["sustained_events_per_s"]),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    a.set(title="Throughput by micro-batch size", xlabel="rows per batch", ylabel="events/s")
    a = ax[0][1]
    if r["scaling"]:
        a.plot(
            [s["events"] / 1e6 for s in r["scaling"]],
            [1e6 / s["sustained_events_per_s"] for s in r["scaling"]],
            "o-",
        )
        a.set_ylim(bottom=0)
    a.set(title="Cost per event by run size", xlabel="million events", ylabel="µs per event")
    live = r.get("live")
    a = ax[1][0]
    if live:
        t, lag = (
            zip(*live["staleness_series"], strict=True) if live["staleness_series"] else ([], [])
        )
        a.plot(t, lag, lw=0.8, label="newest event's age at each SQLite commit")
        a.axhline(live["freshness_s"]["p95"], color="C1", ls="--", label="p95 freshness")
        a.axvline(live["warmup_s"], color="grey", ls=":", label="end of warm-up")
        a.legend(fontsize=8)
    a.set(title="Live freshness", xlabel="seconds", ylabel="seconds")
    a = ax[1][1]
    if live:
        t, py, jvm = zip(*live["memory_series"], strict=True)
        a.plot(t, jvm, label="driver JVM RSS")
        a.plot(t, py, label="Python RSS")
        a.set(ylabel="MB")
        b = a.twinx()
        st, rows = zip(*live["state_series"], strict=True) if live["state_series"] else ([], [])
        b.plot(st, [x / 1e6 for x in rows], color="C3", lw=0.8, label="dedup state rows (M)")
        b.set_ylabel("million state rows")
        a.legend(loc="upper left", fontsize=8)
        b.legend(loc="lower right", fontsize=8)
    a.set(title="Live memory and state", xlabel="seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(r: dict[str, Any], directory: Path, name: str) -> dict[str, Path]:
    """bench/results/<name>.json, .md and .png."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {ext: directory / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(r, indent=1))
    paths["md"].write_text(markdown(r, name))
    plot(r, paths["png"])
    return paths
