"""Sizing on the local standalone cluster (`make cluster-bench`): the same backlog streamed with
its executors on 1 worker, on 2 workers, and, as the reference in the same run, in local mode
(`local[2]`, driver and executors in one JVM). Writes bench/results/cluster-<UTC>.json and
prints a markdown table (README "Run on a cluster")."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from apistream.bench.machine import machine_info
from apistream.bench.runs import Pipeline, backlog_run, generate
from apistream.config import DEFAULT_CONFIG, load_config

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "scripts" / "cluster.sh"


def _cluster(command: str, workers: int, state: Path) -> None:
    env = {**os.environ, "CLUSTER_WORKERS": str(workers), "CLUSTER_DIR": str(state)}
    subprocess.run([str(CLUSTER), command], env=env, check=True, timeout=300)


def run(events: int, files_per_trigger: int, work: Path) -> dict[str, Any]:
    cfg = load_config(environ={})
    incoming = work / "in"
    gen = generate(cfg, incoming, events, seed=7)
    master = f"spark://127.0.0.1:{os.environ.get('SPARK_MASTER_PORT', '7077')}"
    runs: list[dict[str, Any]] = []
    for label, workers in (("local[2] (reference)", 0), ("1 worker", 1), ("2 workers", 2)):
        env = {"SPARK_LOCAL_IP": "127.0.0.1"}
        env["APISTREAM_SPARK__MASTER"] = master if workers else "local[2]"
        if workers:
            _cluster("up", workers, work / f"cluster-{workers}")
        try:
            pipe = Pipeline(DEFAULT_CONFIG, env)
            out = work / f"out-{workers}"
            result = backlog_run(pipe, incoming, out, events, files_per_trigger)
        finally:
            if workers:
                _cluster("down", workers, work / f"cluster-{workers}")
        runs.append({"setup": label, "workers": workers, **result})
        print(f"{label}: {result['sustained_events_per_s']:,} events/s sustained", flush=True)
    reference = runs[0]["sustained_events_per_s"]
    for r in runs:
        r["ratio_to_local"] = round(r["sustained_events_per_s"] / reference, 2)
    return {"events": events, "generator": gen["events_per_s"], "runs": runs}


def table(results: dict[str, Any]) -> str:
    lines = [
        "| setup (1 core, 2 GB per worker) | sustained events/s | whole run events/s "
        "| median batch (s) | vs local[2] |",
        "|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['setup']} | {r['sustained_events_per_s']:,} | "
            f"{r['overall_events_per_s']:,} | {r['batch_s_median']} | {r['ratio_to_local']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files-per-trigger", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="apistream-cluster-bench-") as tmp:
        results = run(args.events, args.files_per_trigger, Path(tmp))
    results["machine"] = machine_info()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = REPO / "bench" / "results" / f"cluster-{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
