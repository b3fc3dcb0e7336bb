"""The forecast detector: Spark MLlib predicts each metric of each scope from the time of day.

Each (scope, metric) series (scope: an endpoint or '*' for the service, as in anomalies.py)
has a level, the median of its log values in the training windows. A gradient-boosted tree
model (GBTRegressor, absolute loss so the incidents in the history do not bend it) learns
log(value) - level from the scope, the metric and the time of day, i.e. the daily cycle of
each series. Residuals of the training windows give each series a band (`band_of`). A
finalised window is anomalous when its value is more than `anomaly.forecast.k` bands from
the forecast, or, for the 5xx rate, when its errors are that improbable for a Poisson count
at the forecast rate (a rate of a few errors a window has no useful band in log space), and
the change matters (anomalies.matters).

`apistream train` fits it on the finalised windows of the analytics database and saves it
with MLlib persistence (a PipelineModel) and its series beside it; the stream loads it
once and scores each finalised window (a few dozen rows, on the driver's session).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StringIndexer, VectorAssembler
from pyspark.ml.regression import GBTRegressor
from pyspark.sql import SparkSession

from apistream.anomalies import RATE_FLOOR, Observation, matters, observations, poisson_z
from apistream.config import Config
from apistream.errors import ApiStreamError

DETECTOR = "forecast"
SERIES_DIR = "series"
SERIES_SCHEMA = "scope string, metric string, level double, band double, window_s double"
# Added before the log, so a zero (no errors, no requests) has a finite log.
OFFSET = {"requests": 1.0, "error_rate_5xx": 1e-3}
FEATURES = ("scope_ix", "metric_ix", "tod_sin", "tod_cos")
MAD_TO_STD = 1.4826
MIN_BAND = 0.02  # log units: a series that never moves still has a band


@dataclass(frozen=True)
class Forecast:
    """A fitted model and its series: (scope, metric) -> (level, band), in log units.

    Saved as a directory any Spark file system holds (a local path, s3a://, ...): the
    PipelineModel under `model/`, the series and the window length as Parquet under
    `series/`."""

    model: PipelineModel
    series: dict[tuple[str, str], tuple[float, float]]
    window_s: float

    def save(self, spark: SparkSession, path: str) -> None:
        self.model.write().overwrite().save(f"{path}/model")
        rows = [(s, m, lvl, band, self.window_s) for (s, m), (lvl, band) in self.series.items()]
        frame = spark.createDataFrame(rows, SERIES_SCHEMA)
        frame.coalesce(1).write.mode("overwrite").parquet(f"{path}/{SERIES_DIR}")

    @classmethod
    def load(cls, spark: SparkSession, path: str, window_s: float) -> Forecast:
        try:
            rows = spark.read.schema(SERIES_SCHEMA).parquet(f"{path}/{SERIES_DIR}").collect()
        except AnalysisException:
            rows = []
        if not rows:
            raise ApiStreamError(
                f"anomaly.detectors has forecast but there is no model at {path}: "
                "run `apistream train` first"
            )
        trained = rows[0]["window_s"]
        if trained != window_s:
            raise ApiStreamError(
                f"the forecast model at {path} was trained on {trained:g} s windows, "
                f"not processing.window ({window_s:g} s): run `apistream train` again"
            )
        series = {(r["scope"], r["metric"]): (r["level"], r["band"]) for r in rows}
        return cls(PipelineModel.load(f"{path}/model"), series, window_s)


def log_value(metric: str, value: float) -> float:
    return math.log(value + OFFSET.get(metric, 0.0))


def time_of_day(window_start: str) -> float:
    """Fraction of the UTC day at a window's start: '2026-03-01T06:00:00Z' -> 0.25."""
    h, m, s = (int(x) for x in window_start[11:19].split(":"))
    return (h * 3600 + m * 60 + s) / 86400


def frame(obs: Iterable[Observation]) -> pd.DataFrame:
    """Observations as the model's input: scope, metric, time-of-day features, log value."""
    rows = [
        {
            "window_start": o.window_start,
            "window_end": o.window_end,
            "scope": o.scope,
            "metric": o.metric,
            "value": o.value,
            "requests": o.requests,
            "log_value": log_value(o.metric, o.value),
            "tod_sin": math.sin(2 * math.pi * time_of_day(o.window_start)),
            "tod_cos": math.cos(2 * math.pi * time_of_day(o.window_start)),
        }
        for o in obs
    ]
    return pd.DataFrame(rows, columns=[*Observation.__dataclass_fields__, "log_value",
                                       "tod_sin", "tod_cos"])  # fmt: skip


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def band_of(residuals: list[float]) -> float:
    """A series' band (a std, in log units) from its training residuals: the MAD's, or the
    99th percentile of |residual| read as 2.576 std when the tails are heavier than normal
    (a p99 of a few hundred requests is), at least MIN_BAND."""
    centre = _median(residuals)
    spread = sorted(abs(r - centre) for r in residuals)
    tail = spread[min(len(spread) - 1, int(0.99 * len(spread)))] / 2.576
    return max(MAD_TO_STD * _median(spread), tail, MIN_BAND)


def fit(spark: SparkSession, rows: list[dict[str, Any]], cfg: Config) -> Forecast:
    """Fit the forecast on finalised window rows (several days of history is best: the model
    learns each series' daily cycle from them)."""
    starts = [r["window_start"] for r in rows]
    partial = {min(starts), max(starts)} if starts else set()  # requests there are partial
    data = frame(
        o for o in observations(rows) if o.metric != "requests" or o.window_start not in partial
    )
    if data.empty:
        raise ApiStreamError("no finalised windows to train on")
    by_series: dict[tuple[str, str], list[float]] = defaultdict(list)
    for key, x in zip(zip(data["scope"], data["metric"], strict=True), data["log_value"],
                      strict=True):  # fmt: skip
        by_series[key].append(x)
    levels = {key: _median(xs) for key, xs in by_series.items()}
    data["label"] = data["log_value"] - [levels[k] for k in zip(data["scope"], data["metric"],
                                                                strict=True)]  # fmt: skip
    f = cfg.anomaly.forecast
    scopes = data["scope"].nunique()
    pipeline = Pipeline(
        stages=[
            StringIndexer(
                inputCols=["scope", "metric"],
                outputCols=["scope_ix", "metric_ix"],
                handleInvalid="keep",
            ),
            VectorAssembler(inputCols=list(FEATURES), outputCol="features"),
            GBTRegressor(
                labelCol="label",
                lossType="absolute",
                maxIter=f.trees,
                maxDepth=f.depth,
                maxBins=max(32, scopes + 2),
                seed=7,
            ),
        ]
    )
    sdf = spark.createDataFrame(data.drop(columns=["window_end"]))
    model = pipeline.fit(sdf)
    predicted = model.transform(sdf).select("scope", "metric", "label", "prediction").toPandas()
    residuals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s, m, y, p in predicted.itertuples(index=False):
        residuals[(s, m)].append(y - p)
    series = {}
    for key, rs in residuals.items():
        series[key] = (levels[key], band_of(rs))
    return Forecast(model, series, cfg.processing.window)


def predict(spark: SparkSession, forecast: Forecast, data: pd.DataFrame) -> pd.DataFrame:
    """`data` (from `frame`) with `expected` (the forecast value) and `z` (log residual in
    bands) for the series the model knows; unknown series are dropped."""
    known = [(s, m) in forecast.series for s, m in zip(data["scope"], data["metric"],
                                                       strict=True)]  # fmt: skip
    data = data[known].reset_index(drop=True)
    if data.empty:
        return data.assign(expected=[], z=[])
    data = data.assign(row=range(len(data)))
    scored = forecast.model.transform(spark.createDataFrame(data.drop(columns=["window_end"])))
    pred = scored.select("row", "prediction").toPandas().set_index("row")["prediction"]
    level = [forecast.series[(s, m)][0] for s, m in zip(data["scope"], data["metric"],
                                                       strict=True)]  # fmt: skip
    band = [forecast.series[(s, m)][1] for s, m in zip(data["scope"], data["metric"],
                                                      strict=True)]  # fmt: skip
    centre = pred.reindex(data["row"]).to_numpy() + level
    data["expected"] = [
        max(math.exp(c) - OFFSET.get(m, 0.0), 0.0)
        for c, m in zip(centre, data["metric"], strict=True)
    ]
    data["z"] = [
        poisson_z(round(x * n), max(e, RATE_FLOOR) * n) if m == "error_rate_5xx" else (y - c) / b
        for x, n, e, m, y, c, b in zip(data["value"], data["requests"], data["expected"],
                                       data["metric"], data["log_value"], centre, band,
                                       strict=True)
    ]  # fmt: skip
    data["band"] = band
    return data.drop(columns=["row"])


def spread(metric: str, expected: float, band: float, requests: int) -> float:
    """The forecast's std in the metric's own unit: Poisson's for a 5xx rate, else the
    band's (one band up from the forecast)."""
    if metric == "error_rate_5xx":
        return math.sqrt(max(expected, RATE_FLOOR) / max(requests, 1))
    return expected * (math.exp(band) - 1)


def score(
    spark: SparkSession,
    forecast: Forecast,
    rows: list[dict[str, Any]],
    cfg: Config,
    detected_at: str,
    partial: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The anomalies the forecast finds in finalised window rows. Request counts of the
    `partial` windows (the stream's first, or the last at the end of input) are not
    judged."""
    obs = [o for o in observations(rows) if not (o.metric == "requests" and o.window_start
                                                 in partial)]  # fmt: skip
    if not obs:
        return []
    k = cfg.anomaly.forecast.k
    found = []
    for r in predict(spark, forecast, frame(obs)).itertuples(index=False):
        if abs(r.z) <= k or not matters(r.metric, r.value, r.expected, r.requests, r.z,
                                        cfg.anomaly):  # fmt: skip
            continue
        found.append(
            {
                "detector": DETECTOR,
                "endpoint": r.scope,
                "method": "*",
                "window_start": r.window_start,
                "window_end": r.window_end,
                "metric": r.metric,
                "observed": float(r.value),
                "baseline_mean": float(r.expected),
                "baseline_std": spread(r.metric, r.expected, r.band, r.requests),
                "z_score": float(r.z),
                "severity": "critical" if abs(r.z) > 2 * k else "warning",
                "detected_at": detected_at,
            }
        )
    return sorted(found, key=lambda a: (a["window_start"], a["endpoint"], a["metric"]))


def history(sqlite_path: str, start: str | None, end: str | None) -> list[dict[str, Any]]:
    """The finalised window rows of the analytics database in [start, end) (None: open)."""
    from apistream import sqlite_store

    with sqlite_store.read_only(sqlite_path) as db:
        return sqlite_store.final_windows(db, start, end)
