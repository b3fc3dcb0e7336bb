"""The benchmark suite behind `make bench`: scaling and batch-size sweep over backlogs, the
DuckDB cross-check, GoAccess over the same events as nginx lines, live runs over files and
Kafka for freshness and memory; results as JSON, markdown and a plot."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apistream.bench.goaccess import goaccess_peer
from apistream.bench.machine import machine_info
from apistream.bench.reference import compare, reference_metrics
from apistream.bench.runs import Pipeline, backlog_run, generate, live_run
from apistream.config import Config
from apistream.errors import ApiStreamError
from apistream.pipeline.sources import matching_files


@dataclass(frozen=True)
class Target:
    """A goal on one figure of the summary: at least (`higher`) or at most `goal`; without a
    goal the figure is reported only."""

    key: str
    label: str
    goal: float | None
    higher: bool = False
    fmt: str = "{:,}"

    def met(self, value: float | None) -> bool | None:
        if self.goal is None:
            return None
        if value is None:
            return False
        return value >= self.goal if self.higher else value <= self.goal

    def shown(self) -> str:
        if self.goal is None:
            return "report"
        return ("≥ " if self.higher else "≤ ") + self.fmt.format(self.goal)


# Live rates the freshness targets name, and the sizes of the cost-per-event comparison.
RATE_20K, RATE_50K = 20_000, 50_000
# Cost per event is flat from the smallest to the largest run when it grows by at most this.
FLAT_COST_RATIO = 1.2

# Targets on a 2-core machine (issue "One pass over every event"): checked and printed with
# every run. Medians where runs repeat.
TARGETS: tuple[Target, ...] = (
    Target(
        "sustained_events_per_s",
        "sustained events/s, 5M-event backlog, full pipeline (every defect kind)",
        100_000,
        higher=True,
    ),
    Target(
        "overall_events_per_s",
        "whole run incl. JVM start, 5M events (events/s)",
        80_000,
        higher=True,
    ),
    Target(
        "freshness_p95_s_files_20k",
        "p95 freshness at 20k events/s live, file source (s)",
        3.0,
        fmt="{:g}",
    ),
    Target(
        "freshness_p95_s_files_50k",
        "p95 freshness at 50k events/s live, file source (s), and keeps up",
        5.0,
        fmt="{:g}",
    ),
    Target(
        "freshness_p95_s_kafka_20k",
        "p95 freshness at 20k events/s live, Kafka source (s)",
        5.0,
        fmt="{:g}",
    ),
    Target(
        "freshness_p95_s_kafka_50k",
        "p95 freshness at 50k events/s live, Kafka source (s)",
        None,
    ),
    Target("first_metric_s", "time to first metric in SQLite (s)", 15.0, fmt="{:g}"),
    Target("memory_peak_mb", "peak RSS, JVM + Python, over every run (MB)", 2048),
    Target(
        "memory_slope_mb_per_min",
        "RSS slope over the second half of the 10-min live run (MB/min; flat)",
        None,
    ),
    Target(
        "cost_ratio_largest_smallest",
        "cost per event, largest / smallest run (µs/event ratio, 10M / 1M; flat)",
        FLAT_COST_RATIO,
        fmt="{}",
    ),
    Target(
        "percentile_error_max",
        "DuckDB check: counts exact, p50/p95/p99 within 1% of exact per window",
        0.01,
        fmt="{:.0%}",
    ),
)


@dataclass
class BenchOptions:
    events: int = 5_000_000
    repeats: int = 1  # backlog runs of `events` events: the throughput figures are medians
    scale: tuple[int, ...] = (1_000_000, 5_000_000, 10_000_000)
    sweep: tuple[int, ...] = (1, 4, 10)
    sweep_events: int = 1_000_000
    live_rate: int = 20_000
    live_seconds: int = 600
    fresh_rates: tuple[int, ...] = (5_000, 10_000, 50_000)
    fresh_seconds: int = 180
    # Kafka live runs (fresh_seconds each); None: the target rates (20k, 50k) among the file
    # source's live rates, so `--fresh-rates` and `--live-rate` choose them too.
    kafka_rates: tuple[int, ...] | None = None
    goaccess: bool = True
    warmup_seconds: int = 60
    seed: int = 42
    results: Path = Path("bench/results")
    work: Path | None = None
    keep: bool = False
    notes: list[str] = field(default_factory=list)

    def kafka_run_rates(self) -> tuple[int, ...]:
        if self.kafka_rates is not None:
            return tuple(self.kafka_rates)
        if self.live_seconds <= 0:
            return ()
        file_rates = {self.live_rate, *self.fresh_rates}
        return tuple(r for r in (RATE_20K, RATE_50K) if r in file_rates)


def run_suite(cfg: Config, config_path: Path, opts: BenchOptions, say: Callable[[str], None]):
    """Run every part of the benchmark; returns the results dict (also written to disk)."""
    work = opts.work or Path(tempfile.mkdtemp(prefix="apistream-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(config_path, {})
    default_f = cfg.source.max_files_per_trigger
    results: dict[str, Any] = {
        "machine": machine_info(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "config": {
            "events_per_file": cfg.generator.events_per_file,
            "max_files_per_trigger": default_f,
            "trigger_interval_s": cfg.processing.trigger_interval,
            "window_s": cfg.processing.window,
            "watermark_s": cfg.processing.watermark,
            "shuffle_partitions": cfg.spark.shuffle_partitions,
            "spark_conf": dict(cfg.spark.conf),
        },
        "generator": [],
        "scaling": [],
        "sweep": [],
        "throughput_runs": [],
    }
    sizes = sorted(set(opts.scale) | {opts.events, opts.sweep_events})
    for n in sizes:
        inp = work / f"input-{n}"
        shutil.rmtree(inp, ignore_errors=True)  # a fresh input: the generator appends files
        say(f"generate {n:,} events (backfill, one core)")
        gen = generate(cfg, inp, n, opts.seed)
        results["generator"].append(
            {
                "events": n,
                "seconds": round(gen["seconds"], 2),
                "events_per_s": round(gen["events_per_s"]),
            }
        )
        say(f"  generator: {gen['events_per_s']:,.0f} events/s")
        repeats = max(1, opts.repeats) if n == opts.events else 1
        runs = []
        for i in range(repeats):
            say(
                f"pipeline over a backlog of {n:,} events ({default_f} files per batch)"
                + (f", run {i + 1} of {repeats}" if repeats > 1 else "")
            )
            run = backlog_run(pipe, inp, work / f"out-{n}-r{i}", n, default_f)
            say(
                f"  sustained {run['sustained_events_per_s']:,} events/s, "
                f"wall {run['wall_s']} s, peak RSS {run['memory_peak']['total_mb']:,.0f} MB"
            )
            runs.append(run)
        run = runs[0]
        if n in opts.scale:
            results["scaling"].append(run)
        if n == opts.events:
            results["throughput_runs"] = runs
            results["throughput"] = run
            say(f"DuckDB reference over the same {n:,} lines")
            con, account = reference_metrics(cfg, inp, default_f)
            check = compare(con, work / f"out-{n}-r0" / "analytics.db")
            con.close()
            manifest = gen["manifest"]
            check["valid_manifest"] = manifest["valid_events"]
            check["valid_reference"] = account["valid"]
            check["quarantine_matches_manifest"] = account["quarantined_by_reason"] == {
                k: v for k, v in manifest["defects"].items() if v
            }
            check["agree"] = bool(
                check["agree"]
                and account["valid"] == manifest["valid_events"]
                and check["quarantine_matches_manifest"]
            )
            results["duckdb"] = {**account, "check": check}
            say(
                f"  DuckDB {account['events_per_s']:,} events/s; "
                f"{'agrees' if check['agree'] else 'DISAGREES'} with the pipeline"
            )
            if opts.goaccess:
                say(f"GoAccess over the same {n:,} events as nginx lines")
                files = matching_files(inp, cfg.source.glob)
                ga = goaccess_peer(files, work / "goaccess", opts.keep)
                results["goaccess"] = ga
                say(
                    f"  GoAccess {ga['lines_per_s']:,} lines/s ({ga['version']})"
                    if "error" not in ga
                    else f"  GoAccess: {ga['error']}"
                )
        if n == opts.sweep_events:
            for f in opts.sweep:
                if f == default_f:
                    results["sweep"].append(run)
                    continue
                say(f"pipeline over {n:,} events, {f} files per batch")
                swept = backlog_run(pipe, inp, work / f"out-{n}-f{f}", n, f)
                results["sweep"].append(swept)
                say(f"  {swept['sustained_events_per_s']:,} events/s")
        if not opts.keep:
            for path in work.glob(f"out-{n}-*"):
                shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(inp, ignore_errors=True)
    results["sweep"].sort(key=lambda r: r["files_per_trigger"])
    results["freshness_by_rate"] = []
    if opts.live_seconds > 0:
        say(f"live (files): {opts.live_rate:,} events/s for {opts.live_seconds} s")
        results["live"] = live_run(
            pipe, work, opts.live_rate, opts.live_seconds, opts.warmup_seconds, say
        )
        _clean_live(work, opts.keep)
        results["freshness_by_rate"].append(freshness_row(results["live"]))
        for rate in opts.fresh_rates:
            say(f"live (files): {rate:,} events/s for {opts.fresh_seconds} s (freshness)")
            other = live_run(pipe, work, rate, opts.fresh_seconds, opts.warmup_seconds, say)
            _clean_live(work, opts.keep)
            results["freshness_by_rate"].append(freshness_row(other))
    kafka_rates = opts.kafka_run_rates()
    if kafka_rates:
        results["kafka"] = _kafka_runs(cfg, pipe, work, opts, kafka_rates, say)
        results["freshness_by_rate"] += [freshness_row(x) for x in results["kafka"]["runs"]]
    results["freshness_by_rate"].sort(key=lambda x: (x["source"], x["rate"]))
    results["summary"] = summarise(results)
    if not opts.keep and opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _kafka_runs(
    cfg: Config,
    pipe: Pipeline,
    work: Path,
    opts: BenchOptions,
    rates: Iterable[int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Live runs over a Kafka topic on a broker of their own (scripts/kafka.sh). A failure
    is recorded as the result's `error` (shown as a TODO) instead of figures."""
    from apistream.bench.broker import Broker

    out: dict[str, Any] = {"runs": []}
    say("Kafka: starting a broker (scripts/kafka.sh)")
    try:
        broker = Broker(work / "kafka").start()
    except (ApiStreamError, OSError, ImportError) as exc:
        out["error"] = f"the Kafka broker did not start: {exc}"
        say(f"  {out['error']}")
        return out
    try:
        for rate in rates:
            # As many seconds of data per batch as the file source reads in live mode (one file
            # a second, max_files_per_trigger files), not the config's default offsets.
            per_batch = cfg.source.max_files_per_trigger * rate
            topic = f"bench-{rate}-{int(time.time())}"
            k = cfg.source.kafka.model_copy(
                update={
                    "bootstrap_servers": broker.bootstrap,
                    "topic": topic,
                    "max_offsets_per_trigger": per_batch,
                    "client_options": {},
                }
            )
            say(f"live (kafka): {rate:,} events/s for {opts.fresh_seconds} s, topic {topic}")
            try:
                run = live_run(
                    pipe, work, rate, opts.fresh_seconds, opts.warmup_seconds, say, kafka=k
                )
            except (ApiStreamError, OSError) as exc:
                out.setdefault("failed", []).append({"rate": rate, "error": str(exc)[-2000:]})
                say(f"  the Kafka run at {rate:,} events/s failed: {str(exc)[:300]}")
                continue
            finally:
                _clean_live(work, opts.keep)
            out["runs"].append(run)
            say(
                f"  p95 {run['freshness_s']['p95']} s, generator reached "
                f"{run['achieved_rate']:,} events/s"
            )
    finally:
        try:
            broker.stop()
        except ApiStreamError as exc:
            say(f"  stopping the Kafka broker: {exc}")
        if not opts.keep:
            shutil.rmtree(work / "kafka", ignore_errors=True)
    if out.get("failed") and not out["runs"]:
        out["error"] = "every Kafka run failed: " + out["failed"][0]["error"][-500:]
    return out


def _clean_live(work: Path, keep: bool) -> None:
    if not keep:
        for source in ("files", "kafka"):
            for part in ("input", "output"):
                shutil.rmtree(work / f"live-{source}-{part}", ignore_errors=True)


def freshness_row(live: dict[str, Any]) -> dict[str, Any]:
    """The freshness-by-rate row of one live run."""
    return {
        "source": live.get("source", "files"),
        "rate": live["rate"],
        "seconds": live["seconds"],
        "achieved_rate": live.get("achieved_rate"),
        "rate_reached": live.get("rate_reached", True),
        **{k: live["freshness_s"][k] for k in ("p50", "p95", "p99")},
        "batch_s_median": live.get("batch_s_median"),
        "kept_up": live["kept_up"],
        "memory_peak_mb": live["memory_peak"]["total_mb"],
    }


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def freshness_at(rows: list[dict[str, Any]], source: str, rate: int) -> dict[str, Any] | None:
    """Median p95 of the live runs of `source` at `rate`; kept up and rate reached only if
    every such run did. None without such a run."""
    runs = [x for x in rows if x["source"] == source and x["rate"] == rate]
    if not runs:
        return None
    return {
        "p95": _median(x["p95"] for x in runs),
        "kept_up": all(x["kept_up"] for x in runs),
        "rate_reached": all(x["rate_reached"] for x in runs),
        "runs": len(runs),
    }


def summarise(r: dict[str, Any], targets: Sequence[Target] = TARGETS) -> dict[str, Any]:
    """Headline figures (medians where runs repeat), ratios against the peers, and each of
    `targets` met or missed."""
    gen_rate = _median(g["events_per_s"] for g in r["generator"])
    tp_runs = r.get("throughput_runs") or ([r["throughput"]] if r.get("throughput") else [])
    live = r.get("live", {})
    rows = r.get("freshness_by_rate", [])
    kafka_runs = r.get("kafka", {}).get("runs", [])
    runs = [*r["scaling"], *r["sweep"], *tp_runs, *([live] if live else []), *kafka_runs]
    peaks = [x["memory_peak"]["total_mb"] for x in runs]
    peaks += [x["memory_peak_mb"] for x in rows if x.get("memory_peak_mb") is not None]
    peak = max(peaks, default=None)
    sustained = _median(x["sustained_events_per_s"] for x in tp_runs)
    overall = _median(x["overall_events_per_s"] for x in tp_runs)
    first_metric = _median(x["first_metric_s"] for x in tp_runs)
    duck = r.get("duckdb", {})
    goaccess = r.get("goaccess", {})
    check = duck.get("check", {})
    pct_error = max(
        (
            v["relative_error_max"]
            for v in check.get("percentiles", {}).values()
            if v["relative_error_max"] is not None
        ),
        default=None,
    )
    fresh = {
        (source, rate): freshness_at(rows, source, rate)
        for source in ("files", "kafka")
        for rate in (RATE_20K, RATE_50K)
    }

    def p95(source: str, rate: int) -> float | None:
        x = fresh[(source, rate)]
        return x["p95"] if x else None

    scaling = [
        {
            "events": x["events"],
            "us_per_event": round(1e6 / x["sustained_events_per_s"], 2),
            "wall_us_per_event": round(1e6 * x["wall_s"] / x["events"], 2),
        }
        for x in sorted(r["scaling"], key=lambda x: x["events"])
    ]
    base = scaling[0] if scaling else None
    for x in scaling:
        x["relative_to_smallest"] = round(x["us_per_event"] / base["us_per_event"], 3)
    cost_ratio = (
        scaling[-1]["relative_to_smallest"]
        if len(scaling) > 1 and scaling[-1]["events"] > scaling[0]["events"]
        else None
    )
    figures = {
        "sustained_events_per_s": sustained,
        "overall_events_per_s": overall,
        "freshness_p95_s_files_20k": p95("files", RATE_20K),
        "freshness_p95_s_files_50k": p95("files", RATE_50K),
        "freshness_p95_s_kafka_20k": p95("kafka", RATE_20K),
        "freshness_p95_s_kafka_50k": p95("kafka", RATE_50K),
        "first_metric_s": first_metric,
        "memory_peak_mb": peak,
        "memory_slope_mb_per_min": live.get("memory_slope_mb_per_min"),
        "cost_ratio_largest_smallest": cost_ratio,
        "percentile_error_max": pct_error,
    }
    met = {t.key: t.met(figures[t.key]) for t in targets}
    # Conditions beyond the number: a freshness run counts only if the generator reached its
    # rate (and, at 50k on files, the pipeline kept up); the percentile target needs the
    # whole DuckDB check to agree (counts, groups, manifest).
    for (source, rate), x in fresh.items():
        key = f"freshness_p95_s_{source}_{rate // 1000}k"
        if met[key] and x is not None:
            met[key] = x["rate_reached"] and (x["kept_up"] or key != "freshness_p95_s_files_50k")
    if met["percentile_error_max"]:
        met["percentile_error_max"] = bool(check.get("agree"))
    duck_rate = duck.get("events_per_s")
    ga_rate = goaccess.get("lines_per_s")
    return {
        "figures": figures,
        "targets": {t.key: t.goal for t in targets},
        "met": met,
        "freshness": {
            f"{source}_{rate // 1000}k": x for (source, rate), x in fresh.items() if x is not None
        },
        "peers": {
            "generator_events_per_s": round(gen_rate) if gen_rate else None,
            "duckdb_events_per_s": duck_rate,
            "goaccess_lines_per_s": ga_rate,
        },
        "ratios": {
            "pipeline_vs_generator": _ratio(sustained, gen_rate),
            "pipeline_vs_duckdb": _ratio(sustained, duck_rate),
            "pipeline_vs_goaccess": _ratio(sustained, ga_rate),
        },
        "duckdb_agrees": check.get("agree"),
        "throughput_runs": len(tp_runs),
        "scaling": scaling,
        "memory_slope_mb_per_min": live.get("memory_slope_mb_per_min"),
        "state_rows_slope_per_min": live.get("state_rows_slope_per_min"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
