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


def _met(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def _measured(key: str, value: float | None) -> str:
    if key == "percentile_error_max" and value is not None:
        return f"{value:.2%}"
    if key == "cost_ratio_largest_smallest" and value is not None:
        return f"{value:.2f}"
    return _n(value)


def _freshness_note(s: dict[str, Any], r: dict[str, Any], key: str) -> str:
    """Why a freshness figure is missing or does not count."""
    which = key.removeprefix("freshness_p95_s_")  # e.g. kafka_20k
    source = which.split("_")[0]
    x = s.get("freshness", {}).get(which)
    if x is None:
        kafka = r.get("kafka", {})
        if source == "kafka" and kafka.get("error"):
            return f"TODO, not measured: {kafka['error'][:200]}"
        failed = [f for f in kafka.get("failed", []) if f"kafka_{f['rate'] // 1000}k" == which]
        if source == "kafka" and failed:
            return f"TODO, the run failed: {failed[0]['error'][:200]}"
        return "not run"
    notes = []
    if not x["rate_reached"]:
        notes.append("generator fell short of the rate")
    if not x["kept_up"]:
        notes.append("did not keep up")
    return "; ".join(notes)


def peer_table(r: dict[str, Any]) -> list[str]:
    """One table: the pipeline's figures against their targets, then the peers measured in
    the same run (generator, DuckDB, GoAccess) with the pipeline's rate as a ratio to each."""
    from apistream.bench.suite import TARGETS

    s = r["summary"]
    lines = [
        "| kind | figure | goal | measured | met | pipeline ÷ peer |",
        "|---|---|---|---|---|---|",
    ]
    for t in TARGETS:
        value = s["figures"].get(t.key)
        shown = _measured(t.key, value)
        if t.key.startswith("freshness_"):
            note = _freshness_note(s, r, t.key)
            shown = f"{shown} ({note})" if note and value is not None else (note or shown)
        if t.key == "cost_ratio_largest_smallest" and len(s["scaling"]) > 1:
            big, small = s["scaling"][-1]["events"], s["scaling"][0]["events"]
            shown += f" ({big / 1e6:g}M / {small / 1e6:g}M)"
        lines.append(
            f"| pipeline | {t.label} | {t.shown()} | {shown} | {_met(s['met'].get(t.key))} | |"
        )
    peers, ratios = s["peers"], s["ratios"]
    duck, ga = r.get("duckdb", {}), r.get("goaccess", {})
    lines.append(
        "| peer | generator: JSON lines written, one core (events/s) | | "
        f"{_n(peers['generator_events_per_s'])} | | {_n(ratios['pipeline_vs_generator'])} |"
    )
    lines.append(
        "| peer | DuckDB: the same window metrics from the same files, 2 threads (events/s) | | "
        f"{_n(peers['duckdb_events_per_s']) if duck else 'not run'} | | "
        f"{_n(ratios['pipeline_vs_duckdb'])} |"
    )
    if ga.get("error"):
        shown = f"not measured: {ga['error']}"
    elif ga:
        shown = _n(peers["goaccess_lines_per_s"])
    else:
        shown = "not run"
    lines.append(
        f"| peer | GoAccess {ga.get('version', '')}: the same events as nginx lines, one "
        f"thread (lines/s) | | {shown} | | {_n(ratios['pipeline_vs_goaccess'])} |"
    )
    return lines


def markdown(r: dict[str, Any], name: str) -> str:
    """The summary users read: the pipeline against its targets and the peers, then
    throughput, sweep, scaling, freshness, memory."""
    s, m = r["summary"], r["machine"]
    lines = [
        f"# Benchmark {name}",
        "",
        f"{m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gb']} GB, {m['os']}; "
        f"Python {m['python']}, PySpark {m['pyspark']}, {m['java']}, DuckDB {m['duckdb']}; "
        f"commit {m['commit']}.",
        "",
        "## The pipeline and its peers",
        "",
        "Kind *pipeline*: a figure of the pipeline (one streaming query) against its target; "
        "medians where runs repeat. Kind *peer*: another program doing related work on the "
        "same events in the same run, and the pipeline's sustained rate divided by it.",
        "",
        *peer_table(r),
    ]
    tp = r.get("throughput")
    if tp:
        duck = r.get("duckdb", {})
        check = duck.get("check", {})
        n_runs = s.get("throughput_runs", 1)
        lines += [
            "",
            f"## Throughput ({tp['events']:,} events, {tp['files_per_trigger']} files per batch"
            + (f", median of {n_runs} runs" if n_runs > 1 else "")
            + ")",
            "",
            f"- sustained (after the first batch, until SQLite holds every event): "
            f"**{_n(s['figures']['sustained_events_per_s'])} events/s**; one query, so this is "
            "also the ingest rate",
            f"- whole run incl. JVM start {_n(s['figures']['overall_events_per_s'])} events/s "
            f"(wall {tp['wall_s']} s); first metric in SQLite after "
            f"{_n(s['figures']['first_metric_s'])} s; first batch {tp['first_batch_s']} s; "
            f"batches {tp['batch_s_median']} s (median); dedup state up to "
            f"{tp['dedup_state_rows_max']:,} keys",
        ]
        if tp.get("stage_share"):
            shares = ", ".join(f"{k} {v:.0%}" for k, v in tp["stage_share"].items())
            lines.append(f"- where a batch's time goes (the sink's own stage timings): {shares}")
        if check:
            lines.append(
                f"- DuckDB cross-check: {check.get('groups', 0):,} window x endpoint x method "
                f"groups, {check.get('groups_with_count_mismatch')} with a count mismatch, "
                f"{check.get('groups_missing_in_pipeline')} missing, valid events "
                f"{check.get('valid_reference', 0):,} (manifest {check.get('valid_manifest', 0):,}"
                "); percentiles outside 1% of exact / relative error max: "
                + ", ".join(
                    f"{k.split('_')[1]} {v['outside_tolerance']} / "
                    + (
                        f"{v['relative_error_max']:.2%}"
                        if v["relative_error_max"] is not None
                        else "n/a"
                    )
                    for k, v in check.get("percentiles", {}).items()
                )
                + f": **{'agrees' if check.get('agree') else 'DISAGREES'}**"
            )
        ga = r.get("goaccess", {})
        if ga and not ga.get("error"):
            lines.append(
                f"- GoAccess {ga['version']}: {ga['lines']:,} lines ({ga['raw_lines']:,} left "
                f"as they were: defects) in {ga['seconds']} s ({ga['cpu_s']} s CPU), "
                f"{_n(ga.get('valid_requests'))} valid / {_n(ga.get('failed_requests'))} failed "
                f"by its own count; writing the nginx log took {ga['convert_s']} s (not timed)"
            )
    if r["sweep"]:
        lines += [
            "",
            "## Micro-batch size",
            "",
            "| files/batch | rows/batch | batch (s, median) | events/s |",
            "|---|---|---|---|",
        ]
        for x in r["sweep"]:
            lines.append(
                f"| {x['files_per_trigger']} | {x['rows_per_batch_median']:,.0f} | "
                f"{x['batch_s_median']} | {x['sustained_events_per_s']:,} |"
            )
    if s["scaling"]:
        lines += [
            "",
            "## Scaling",
            "",
            "| events | events/s | µs per event | vs smallest | wall (s) | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        by_size = {x["events"]: x for x in r["scaling"]}
        for y in s["scaling"]:
            x = by_size[y["events"]]
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
            f"## Live (files): {live['rate']:,} events/s for {live['seconds']} s",
            "",
            f"- freshness, event creation to its window metric in SQLite (after "
            f"{live['warmup_s']} s warm-up): p50 {f['p50']} s, p95 **{f['p95']} s**, "
            f"p99 {f['p99']} s, max {f['max']} s; generator reached "
            f"{_n(live.get('achieved_rate'))} events/s",
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
            "| source | events/s | reached | run (s) | p50 (s) | p95 (s) | p99 (s) | batch (s) "
            "| kept up | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in rates:
            reached = _n(x.get("achieved_rate"))
            if not x.get("rate_reached", True):
                reached = f"**{reached}**"
            lines.append(
                f"| {x['source']} | {x['rate']:,} | {reached} | {x['seconds']} | {x['p50']} | "
                f"{x['p95']} | {x['p99']} | {x['batch_s_median']} | "
                f"{'yes' if x['kept_up'] else '**no**'} | {_n(x.get('memory_peak_mb'))} |"
            )
    kafka = r.get("kafka")
    if kafka and (kafka.get("error") or kafka.get("failed")):
        lines += ["", "## Kafka: TODO", ""]
        if kafka.get("error"):
            lines.append(f"- not measured: {kafka['error']}")
        for x in kafka.get("failed", []):
            lines.append(f"- the run at {x['rate']:,} events/s failed: {x['error'][-500:]}")
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
                f"{s['batch_s_median']:.2f} s/batch",
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
    if live and live["memory_series"]:
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
