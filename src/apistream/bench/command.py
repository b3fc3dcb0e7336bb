"""`apistream bench`: its options, and the suite run and written from them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from apistream.cli_options import ConfigOpt, load
from apistream.config import DEFAULT_CONFIG
from apistream.console import console
from apistream.errors import ApiStreamError


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


def bench(
    config: ConfigOpt = None,
    events: Annotated[
        int, typer.Option(help="Events of the throughput run (and DuckDB check).")
    ] = 5_000_000,
    scale: Annotated[str, typer.Option(help="Run sizes for the scaling figures.")] = "1e6,5e6,10e6",
    sweep: Annotated[str, typer.Option(help="Files per micro-batch to sweep.")] = "1,4,10",
    sweep_events: Annotated[int, typer.Option(help="Events of each sweep run.")] = 1_000_000,
    live_rate: Annotated[int, typer.Option(help="Events/s of the live run.")] = 20_000,
    live_seconds: Annotated[int, typer.Option(help="Length of the live run (0 skips it).")] = 600,
    fresh_rates: Annotated[
        str, typer.Option(help="Further live rates, for freshness only ('' for none).")
    ] = "5000,10000,50000",
    fresh_seconds: Annotated[int, typer.Option(help="Length of each of those runs.")] = 180,
    warmup: Annotated[
        int, typer.Option(help="Seconds of the live run left out of freshness.")
    ] = 60,
    results: Annotated[Path, typer.Option(help="Where the JSON, markdown and plot go.")] = Path(
        "bench/results"
    ),
    work: Annotated[
        Path | None, typer.Option(help="Scratch directory (default: a temp dir).")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep inputs and outputs of every run.")] = False,
    repeats: Annotated[
        int, typer.Option(help="Backlog runs of --events; figures are medians.")
    ] = 1,
    kafka_rates: Annotated[
        str | None,
        typer.Option(help="Live rates over Kafka ('' for none; default: 20k/50k if run on files)."),
    ] = None,
    goaccess: Annotated[
        bool, typer.Option(help="Time GoAccess over the same events as nginx lines.")
    ] = True,
) -> None:
    """Benchmark throughput, freshness, memory and scaling; DuckDB cross-checks the numbers."""
    try:
        from apistream.bench import results as out
        from apistream.bench.suite import BenchOptions, run_suite, stamp
    except ImportError as exc:
        raise ApiStreamError(
            f"the benchmark needs its extras ({exc.name}): pip install -e '.[bench]'"
        ) from None
    from apistream.session import require_java

    cfg = load(config)
    require_java()
    opts = BenchOptions(
        events=events,
        scale=_sizes(scale),
        sweep=_sizes(sweep),
        sweep_events=sweep_events,
        live_rate=live_rate,
        live_seconds=live_seconds,
        fresh_rates=_sizes(fresh_rates),
        fresh_seconds=fresh_seconds,
        warmup_seconds=warmup,
        results=results,
        work=work,
        keep=keep,
        repeats=repeats,
        kafka_rates=None if kafka_rates is None else _sizes(kafka_rates),
        goaccess=goaccess,
    )
    started = time.perf_counter()

    def say(text: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:7.0f}s[/] {text}", highlight=False)

    r = run_suite(cfg, config or DEFAULT_CONFIG, opts, say)
    name = stamp()
    paths = out.write(r, results, name)
    console.print(out.markdown(r, name))
    console.print(f"results: {paths['json']}, {paths['md']}, {paths['png']}")
