"""Incident kinds: the plan, and their effects measured on generated records.

Record effects are compared with an incident-free model on the same seed: incidents that
only change latencies or statuses draw the same arrivals, so rows pair up one to one.
Tolerances are 4 binomial standard deviations of the sample each test measures.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from generator_truth import NOW_MS

from apistream.config import INCIDENT_KIND_TABLE, INCIDENT_KINDS, load_config
from apistream.errors import ConfigError
from apistream.generator.incidents import IncidentSpan, creep_multiplier, plan_incidents
from apistream.generator.traffic import TrafficModel

T0, T1 = NOW_MS, NOW_MS + 3_600_000
START, END = T0 + 900_000, T0 + 2_700_000  # the middle half of the hour
N = 400_000  # ~36k requests of /api/v1/users/{id} (18% of traffic) inside the span
SEED = 5
USERS = "/api/v1/users/{id}"


def four_sd(p: float, n: int) -> float:
    """4 standard deviations of a share p measured on n draws."""
    return 4 * math.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def cfg():
    return load_config(environ={})


def build(cfg, incidents: list[IncidentSpan]) -> pl.DataFrame:
    model = TrafficModel(cfg, incidents, SEED, T0)
    return model.build(*model.arrivals(T0, T1, N))


@pytest.fixture(scope="module")
def baseline(cfg) -> pl.DataFrame:
    return build(cfg, [])


def span(
    cfg,
    kind: str,
    endpoint: str = USERS,
    method: str | None = None,
    factor: float | None = None,
    start_ms: int = START,
    end_ms: int = END,
) -> IncidentSpan:
    """An incident of `kind` (its default factor unless given), by default on the middle half."""
    idx = [e.template for e in cfg.endpoints].index(endpoint)
    factor = INCIDENT_KIND_TABLE[kind].default_factor if factor is None else factor
    return IncidentSpan(kind, endpoint, idx, start_ms, end_ms, factor, method)


def inside(df: pl.DataFrame, inc: IncidentSpan) -> np.ndarray:
    return inc.hits(df["ts_ms"].to_numpy(), df["ep"].to_numpy())


def share_5xx(df: pl.DataFrame, mask: np.ndarray) -> float:
    return float((df["status"].to_numpy()[mask] >= 500).mean())


# -- the table ------------------------------------------------------------------------------
def test_the_kind_table_gives_each_kind_its_default_factor_and_metric():
    table = {k.name: (k.default_factor, k.metric) for k in INCIDENT_KIND_TABLE.values()}
    assert table == {
        "latency_spike": (5.0, "latency_p95_ms"),
        "error_burst": (5.0, "error_rate_5xx"),
        "traffic_drop": (pytest.approx(1 / 0.7), "requests"),
        "traffic_spike": (5.0, "requests"),
        "latency_creep": (1.5, "latency_p95_ms"),
        "error_rise": (4.0, "error_rate_5xx"),
        "method_outage": (0.9, "error_rate_5xx"),
        "slow_dependency": (6.0, "latency_p99_ms"),
    }
    assert INCIDENT_KIND_TABLE["latency_creep"].duration_s == 1800
    assert [k for k in INCIDENT_KINDS if INCIDENT_KIND_TABLE[k].by_method] == ["method_outage"]


# -- effects on records ---------------------------------------------------------------------
def test_creep_multiplier_rises_linearly_from_1_at_the_start_to_the_factor_at_the_end():
    t = np.array([START, START + 450_000, START + 900_000, END - 1, END])
    assert creep_multiplier(t, START, END, 1.5) == pytest.approx([1, 1.125, 1.25, 1.5, 1.5])


def test_latency_creep_multiplies_each_latency_by_1_plus_half_its_progress(cfg, baseline):
    inc = span(cfg, "latency_creep")
    df = build(cfg, [inc])
    hit = inside(df, inc)
    ratio = df["latency_ms"].to_numpy()[hit] / baseline["latency_ms"].to_numpy()[hit]
    progress = (df["ts_ms"].to_numpy()[hit] - START) / (END - START)
    # Latencies are rounded to the microsecond: the ratio is exact to 1e-3.
    np.testing.assert_allclose(ratio, 1 + 0.5 * progress, rtol=1e-3)
    assert np.median(ratio[progress < 0.02]) == pytest.approx(1.0, abs=0.01)
    assert np.median(ratio[progress > 0.98]) == pytest.approx(1.5, abs=0.01)
    # Everything else is untouched: other rows, and every other column.
    assert df.filter(pl.Series(~hit)).equals(baseline.filter(pl.Series(~hit)))
    assert df.drop("latency_ms").equals(baseline.drop("latency_ms"))


def test_error_rise_multiplies_the_5xx_share_by_4_inside_the_span_only(cfg, baseline):
    search = "/api/v1/search"  # 1% 5xx at baseline
    inc = span(cfg, "error_rise", search)
    df = build(cfg, [inc])
    hit = inside(df, inc)
    base = cfg.endpoints[[e.template for e in cfg.endpoints].index(search)].error_rate_5xx
    assert hit.sum() > 15_000
    assert share_5xx(baseline, hit) == pytest.approx(base, abs=four_sd(base, hit.sum()))
    assert share_5xx(df, hit) == pytest.approx(4 * base, abs=four_sd(4 * base, hit.sum()))
    assert df.filter(pl.Series(~hit)).equals(baseline.filter(pl.Series(~hit)))


def test_method_outage_fails_90pct_of_its_method_and_leaves_the_others_at_baseline(cfg, baseline):
    inc = span(cfg, "method_outage", method="PUT")
    df = build(cfg, [inc])
    hit = inside(df, inc)
    put = hit & (df["method"].to_numpy() == "PUT")
    assert put.sum() > 3_000
    assert share_5xx(df, put) == pytest.approx(0.9, abs=four_sd(0.9, put.sum()))
    changed = df["status"].to_numpy() != baseline["status"].to_numpy()
    assert set(df["status"].to_numpy()[changed]) == {503}
    # GET and DELETE on the endpoint, and everything outside the span, are the baseline rows.
    assert df.filter(pl.Series(~put)).equals(baseline.filter(pl.Series(~put)))
    others = hit & ~put
    assert share_5xx(df, others) == pytest.approx(0.003, abs=four_sd(0.003, others.sum()))


def test_slow_dependency_slows_3pct_by_6x_so_p99_rises_and_p50_does_not(cfg, baseline):
    inc = span(cfg, "slow_dependency")
    df = build(cfg, [inc])
    hit = inside(df, inc)
    lat, base = df["latency_ms"].to_numpy()[hit], baseline["latency_ms"].to_numpy()[hit]
    ratio = lat / base
    slowed = ratio > 1.5
    assert slowed.mean() == pytest.approx(0.03, abs=four_sd(0.03, hit.sum()))
    np.testing.assert_allclose(ratio[slowed], 6.0, rtol=1e-3)
    np.testing.assert_allclose(ratio[~slowed], 1.0, rtol=1e-3)
    p50, p99 = np.percentile(lat, [50, 99]) / np.percentile(base, [50, 99])
    # 3% moved above the median shifts it by ~2% (sigma 0.45); p99 lands among the slowed.
    assert 1.0 <= p50 < 1.04
    assert p99 > 2.2
    assert df.drop("latency_ms").equals(baseline.drop("latency_ms"))
    assert df.filter(pl.Series(~hit)).equals(baseline.filter(pl.Series(~hit)))


def test_a_random_traffic_drop_keeps_70pct_of_the_endpoint_inside_the_span(cfg, baseline):
    plan = load_config(
        environ={},
        overrides={
            "generator.incidents.random_count": 1,
            "generator.incidents.kinds": ["traffic_drop"],
        },
    )
    (planned,) = plan_incidents(plan, T0, 3600, SEED)
    assert planned.kind == "traffic_drop" and planned.factor == pytest.approx(1 / 0.7)
    inc = span(cfg, "traffic_drop", factor=planned.factor)
    df = build(cfg, [inc])
    before, after = inside(baseline, inc).sum(), inside(df, inc).sum()
    assert after / before == pytest.approx(0.7, abs=four_sd(0.7, before))
    # Outside the span and on other endpoints the arrivals are the same.
    assert df.filter(pl.Series(~inside(df, inc)))["ts_ms", "ep"].equals(
        baseline.filter(pl.Series(~inside(baseline, inc)))["ts_ms", "ep"]
    )


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_an_incident_outside_the_records_changes_no_byte(cfg, kind):
    """No effect draws a random number unless its incident overlaps the records, so a run
    without incidents in a chunk is the run without incidents."""
    method = "PUT" if INCIDENT_KIND_TABLE[kind].by_method else None
    late = span(cfg, kind, method=method, start_ms=T1 + 60_000, end_ms=T1 + 120_000)
    small = [TrafficModel(cfg, incs, SEED, T0) for incs in ([], [late])]
    a, b = (m.build(*m.arrivals(T0, T1, 5_000)) for m in small)
    assert a.equals(b)


# -- the plan -------------------------------------------------------------------------------
def plan_cfg(**extra):
    return load_config(
        environ={}, overrides={"generator.incidents.random_count": len(INCIDENT_KINDS), **extra}
    )


def test_random_incidents_cover_every_kind_with_its_defaults_in_the_manifest():
    cfg = plan_cfg()
    spans = plan_incidents(cfg, T0, 86_400, seed=3)
    manifest = [s.as_manifest() for s in spans]
    assert sorted(m["kind"] for m in manifest) == sorted(INCIDENT_KINDS)
    for m, s in zip(manifest, spans, strict=True):
        kind = INCIDENT_KIND_TABLE[s.kind]
        assert list(m) == ["kind", "endpoint", "method", "start", "end", "factor", "metric"]
        assert (m["factor"], m["metric"]) == (kind.default_factor, kind.metric)
        assert m["method"] == ("*" if not kind.by_method else s.method)
    creep = next(s for s in spans if s.kind == "latency_creep")
    assert creep.end_ms - creep.start_ms == 1_800_000
    ordered = sorted((s.start_ms, s.end_ms) for s in spans)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ordered))


def test_a_random_outage_takes_down_a_method_of_a_busy_multi_method_endpoint():
    # Half the busier endpoints have one method: over 10 seeds a wrong pick shows.
    cfg = plan_cfg(**{"generator.incidents.kinds": ["method_outage"]})
    busier = sorted(e.weight for e in cfg.endpoints)[len(cfg.endpoints) // 2 :]
    outages = [s for seed in range(10) for s in plan_incidents(cfg, T0, 7200, seed)]
    assert len(outages) == 10 * len(INCIDENT_KINDS)
    for outage in outages:
        endpoint = cfg.endpoints[outage.endpoint_idx]
        assert outage.method in endpoint.methods and len(endpoint.methods) >= 2
        assert endpoint.weight >= busier[0]


def test_the_plan_is_the_same_for_a_seed_and_differs_for_another():
    cfg = plan_cfg()
    assert plan_incidents(cfg, T0, 7200, 1) == plan_incidents(cfg, T0, 7200, 1)
    assert plan_incidents(cfg, T0, 7200, 1) != plan_incidents(cfg, T0, 7200, 2)


def test_a_latency_creep_is_clamped_to_its_slot():
    cfg = plan_cfg(**{"generator.incidents.kinds": ["latency_creep"]})
    spans = plan_incidents(cfg, T0, 7200, 1)
    slot_ms = 0.65 * 7200 * 1000 / len(INCIDENT_KINDS)
    assert all(0 < s.end_ms - s.start_ms <= slot_ms - 120_000 + 1 for s in spans)


def test_a_method_outage_is_skipped_without_a_multi_method_endpoint():
    cfg = plan_cfg(endpoints=[{"template": "/a"}, {"template": "/b", "weight": 2}])
    kinds = [s.kind for s in plan_incidents(cfg, T0, 86_400, 1)]
    assert "method_outage" not in kinds
    assert set(kinds) == set(INCIDENT_KINDS) - {"method_outage"}


# -- config ---------------------------------------------------------------------------------
def incident(**kw) -> dict:
    return {"endpoint": USERS, "start_offset_s": 60, "duration_s": 120, **kw}


def config_error(**overrides) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, overrides=overrides)
    return str(err.value)


def test_an_unknown_kind_fails_naming_the_key():
    msg = config_error(**{"generator.incidents.kinds": ["latency_spike", "meteor"]})
    assert "generator.incidents.kinds.1: unknown incident kind 'meteor'" in msg
    msg = config_error(**{"generator.incidents.explicit": [incident(kind="meteor")]})
    assert "generator.incidents.explicit.0.kind: unknown incident kind 'meteor'" in msg
    assert "generator.incidents.kinds" in config_error(**{"generator.incidents.kinds": []})


@pytest.mark.parametrize(
    ("inc", "expected"),
    [
        (
            incident(kind="method_outage", endpoint="/api/v1/search", method="GET"),
            "method_outage needs an endpoint with two or more methods; /api/v1/search has only GET",
        ),
        (
            incident(kind="method_outage", method="PATCH"),
            "/api/v1/users/{id} has no method 'PATCH' (its methods: GET, PUT, DELETE)",
        ),
        (incident(kind="method_outage"), "a method_outage incident needs a method"),
        (incident(kind="error_rise", method="GET"), "method is only for method_outage"),
    ],
)
def test_an_explicit_method_outage_needs_a_method_of_a_multi_method_endpoint(inc, expected):
    msg = config_error(**{"generator.incidents.explicit": [inc]})
    assert "generator.incidents.explicit" in msg and expected in msg


def test_an_explicit_incident_without_a_factor_gets_its_kinds_default():
    incs = [incident(kind=k) for k in INCIDENT_KINDS] + [incident(kind="error_burst", factor=2)]
    incs[INCIDENT_KINDS.index("method_outage")]["method"] = "put"
    cfg = load_config(
        environ={},
        overrides={"generator.incidents.explicit": incs, "generator.incidents.random_count": 0},
    )
    spans = plan_incidents(cfg, T0, 3600, 1)
    assert [s.factor for s in spans] == [
        *(INCIDENT_KIND_TABLE[k].default_factor for k in INCIDENT_KINDS),
        2.0,
    ]
    assert [s.method for s in spans if s.method] == ["PUT"]
