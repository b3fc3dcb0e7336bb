"""Judge the anomaly detectors over simulated days of busy traffic (`make detection-eval`).

For each seed: `days` of traffic on the daily cycle with `incidents` random incidents of
every kind (replay.py builds the finalised windows without Spark), scored by the ewma
detector and by a forecast detector fitted on an incident-free history of other seeds, then
evaluated per kind and detector (evaluation.py). One more seed without incidents gives the
false alarms per day. Seeds used here are not the ones the thresholds were tuned on (1-3).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from apistream import forecast
from apistream.anomalies import DETECTOR, score_windows
from apistream.config import Config, load_config
from apistream.evaluation import (
    Evaluation,
    detector_evaluations,
    evaluate_detectors,
    report,
)
from apistream.replay import simulate

RATE = 300.0  # events/s on average: the busier endpoints see 1-3k requests a minute


def config(seed: int, incidents: int, rate: float = RATE, **overrides: Any) -> Config:
    return load_config(
        environ={},
        overrides={
            "generator.seed": seed,
            "generator.rate": rate,
            "generator.incidents.random_count": incidents,
            **overrides,
        },
    )


def train(spark: SparkSession, seed: int, days: float, rate: float = RATE) -> forecast.Forecast:
    """A forecast fitted on `days` of incident-free history (seed `seed`)."""
    cfg = config(seed, 0, rate)
    return forecast.fit(spark, simulate(cfg, days).rows, cfg)


def alerts_of(
    spark: SparkSession, cfg: Config, days: float, model: forecast.Forecast | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the manifest, every detector's anomalies) of one simulated run."""
    sim = simulate(cfg, days)
    partial = frozenset({sim.rows[0]["window_start"]})  # the run's first window
    found, _ = score_windows(sim.rows, {}, cfg.anomaly, "replay", partial)
    if model is not None:
        found += forecast.score(spark, model, sim.rows, cfg, "replay", partial)
    return sim.manifest(cfg), found


def pool(results: Sequence[Evaluation]) -> Evaluation:
    """Several runs' evaluations as one: counts added, incidents and alerts listed."""
    return Evaluation(
        sum(r.alerts for r in results),
        sum(r.true_alerts for r in results),
        sum(r.incidents for r in results),
        sum(r.found for r in results),
        [m for r in results for m in r.missed],
        [a for r in results for a in r.false_alerts],
        [t for r in results for t in r.ttd],
        [k for r in results for k in r.kinds],
    )


def run(
    spark: SparkSession, seeds: Sequence[int], days: float, incidents: int, train_days: float
) -> dict[str, Any]:
    """Per seed and pooled over the seeds: the evaluate_detectors object, plus the false
    alarms per day on a run without incidents."""
    model = train(spark, 9000, train_days)
    per_seed, evaluations = {}, defaultdict(list)
    for seed in seeds:
        manifest, alerts = alerts_of(spark, config(seed, incidents), days, model)
        per_seed[seed] = evaluate_detectors(manifest, alerts)
        for name, result in detector_evaluations(manifest, alerts).items():
            evaluations[name].append(result)
    pooled = report({n: pool(rs) for n, rs in evaluations.items()}, days * len(seeds))
    quiet_manifest, quiet_alerts = alerts_of(spark, config(seeds[-1] + 1000, 0), days, model)
    quiet = evaluate_detectors(quiet_manifest, quiet_alerts)
    quiet_alarms = {
        n: sum(a["detector"] == n for a in quiet_alerts) / days for n in (DETECTOR, "forecast")
    }
    return {
        "per_seed": per_seed,
        "pooled": pooled,
        "without_incidents": quiet,
        "false_alarms_per_day_without_incidents": quiet_alarms,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 111)))
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--incidents", type=int, default=16)
    parser.add_argument("--train-days", type=float, default=1.0)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    from apistream.session import build_spark

    spark = build_spark(config(0, 0).spark)
    try:
        result = run(spark, args.seeds, args.days, args.incidents, args.train_days)
    finally:
        spark.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print_table(result)


def print_table(result: dict[str, Any]) -> None:
    """Pooled per kind and detector, then per seed, then false alarms without incidents."""
    pooled = result["pooled"]["detectors"]
    print(f"{'detector':10} {'kind':16} {'incidents':>9} {'recall':>7} {'precision':>9} {'ttd':>5}")
    for name, d in pooled.items():
        a = d["all"]
        ttd, false = _f(a["median_ttd_windows"], 5), _f(d["false_alarms_per_day"])
        print(f"{name:10} {'all':16} {'':>9} {_f(a['recall'])} {_f(a['precision'], 9)} "
              f"{ttd}  false/day {false}")  # fmt: skip
        for kind, k in d["kinds"].items():
            print(f"{name:10} {kind:16} {k['incidents']:>9} {_f(k['recall'])} {'':>9} "
                  f"{_f(k['median_ttd_windows'], 5)}")  # fmt: skip
    for seed, r in result["per_seed"].items():
        cells = [f"{n} P {_f(d['all']['precision'])} R {_f(d['all']['recall'])}"
                 for n, d in r["detectors"].items()]  # fmt: skip
        print(f"seed {seed}: " + "; ".join(cells))
    for n, rate in result["false_alarms_per_day_without_incidents"].items():
        print(f"without incidents, {n}: {rate:.2f} false alarms/day")


def _f(x: float | None, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if x is None else f"{x:>{width}.3f}"


if __name__ == "__main__":
    main()
