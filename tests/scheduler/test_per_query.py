"""The per-query delay model: known-answer tiny cases, the wait under-estimator, options, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.queueing import default_pool_slots, hourly_wait_s, wait_tangents
from greensched.scenario import Scenario, load_scenario
from greensched.scheduler import PlanConfig, SolveStatus, build_model, plan
from greensched.scheduler.per_query import (
    DelayOptions,
    delay_floor_usd,
    per_query_latency_s,
    wait_segments,
)
from greensched.synth import synthesize

RHO = 0.01  # USD per query-second
LAMBDA = 3600.0  # queries in the hour; with s = 1 s the whole demand is one Erlang


def _two_dcs(rtt_far_s: float) -> Scenario:
    """One area, one type, one hour; DC 'dc000' near (RTT 0), 'dc001' at ``rtt_far_s``.

    Service s = 1 s per query at both, no transmission, energy free (prices and carbon 0), so
    only the delay cost steers: ρ (λ Σ_j ℓ_j x_j + Q_near).
    """
    scen = synthesize(2, 1, 1, 1, seed=0)
    ds = scen.ds
    ds["queries"][:] = LAMBDA
    ds["token_size"][:] = 0.0
    ds["input_tokens"][:] = 500.0
    ds["output_tokens"][:] = 500.0
    ds["delay_s_per_token"][:] = 1.0 / 1000.0
    ds["rtt_s"][:] = np.array([[0.0, rtt_far_s]])
    ds["delay_penalty_usd_per_s"][:] = RHO
    ds["delay_limit_s"][:] = 1e6
    ds["price_usd_per_kwh"][:] = 0.0
    ds["carbon_kg_per_kwh"][:] = 0.0
    ds["capacity"][:] = 1e12
    ds["grid_cap_kw"][:] = 1e9
    scen.water_budget_l = None
    scen.delay_model = "per_query"
    return scen


def _slots(scen: Scenario, near: float, far: float) -> xr.DataArray:
    return xr.DataArray(
        [[near], [far]],
        coords={"dc": scen.ds.indexes["dc"], "query_type": scen.ds.indexes["query_type"]},
        dims=("dc", "query_type"),
    )


def _solve(scen: Scenario, near_slots: float):  # type: ignore[no-untyped-def]
    cfg = PlanConfig(weights=(0.0, 0.0, 1.0), pool_slots=_slots(scen, near_slots, 1e4))
    result = plan(scen, cfg)
    assert result.is_ok, result.message
    return result


def test_interior_optimum_matches_hand_computed_mm1() -> None:
    # Near DC: M/M/1 (c = 1, cs² = 1), W(L) = 3600 a² / (1 − a), a = L / 3600.  Far DC: no queue
    # (10⁴ slots), 0.5 s more latency.  Cost/ρ = λ x ·1 + λ (1 − x) · 1.5 + W(λ x); optimum at
    # W'(L) = 0.5: (2a − a²) / (1 − a)² = 1/2  →  1.5 a² − 3 a + 0.5 = 0  →  a* = 1 − √6 / 3.
    scen = _two_dcs(0.5)
    result = _solve(scen, 1.0)
    a_star = 1.0 - math.sqrt(6.0) / 3.0
    x_near = float(result.allocation.sel(dc="dc000").sum())
    assert x_near * LAMBDA / 3600.0 == pytest.approx(a_star, abs=0.02)
    exact = RHO * (
        LAMBDA * a_star + LAMBDA * (1 - a_star) * 1.5 + 3600.0 * a_star**2 / (1.0 - a_star)
    )
    # the LP's Q is a tangent under-estimator (≤ W, within 2 % + floor), so its optimum lies just
    # below the convex optimum
    assert result.objective["delay_usd"] <= exact * (1 + 1e-9)
    assert result.objective["delay_usd"] == pytest.approx(exact, rel=0.01)
    lat = result.latency
    queue = float(hourly_wait_s(x_near * 3600.0, 1.0))
    assert lat["queueing_s"] == pytest.approx(queue, rel=1e-9)  # exact M/G/c at the plan's load
    assert queue * 0.95 - 1.0 <= lat["queueing_lp_s"] <= queue + 1e-9  # the LP's under-estimate
    mean = (x_near * 1.0 + (1 - x_near) * 1.5) + lat["queueing_s"] / LAMBDA
    assert lat["latency_s_per_query"] == pytest.approx(mean, rel=1e-9)
    # floor: every query at the near DC without queueing = ρ λ · 1 s
    assert lat["delay_floor_usd"] == pytest.approx(RHO * LAMBDA * 1.0)
    assert lat["decision_share"] == pytest.approx(
        1 - lat["delay_floor_usd"] / result.objective["delay_usd"]
    )


def test_utilisation_cap_binds_at_the_congested_dc() -> None:
    # Far DC 100 s away: the near DC takes all it may, u_max = 0.9 of one slot; Q at the top of the
    # fit range is the top tangent, exact: W(0.9 · 3600) = 3600 · 0.81 / 0.1 = 29 160 s.
    scen = _two_dcs(100.0)
    result = _solve(scen, 1.0)
    x_near = float(result.allocation.sel(dc="dc000").sum())
    assert x_near == pytest.approx(0.9, abs=1e-7)
    assert result.latency["queueing_s"] == pytest.approx(29160.0, rel=1e-6)
    exact = RHO * (LAMBDA * 0.9 * 1.0 + LAMBDA * 0.1 * 101.0 + 29160.0)
    assert result.objective["delay_usd"] == pytest.approx(exact, rel=1e-6)
    assert result.duals["utilization"].sel(dc="dc000").item() < 0  # the cap binds


def test_uncongested_pools_split_by_latency_only() -> None:
    # With many slots at both DCs the wait is negligible: everything goes to the near DC.
    scen = _two_dcs(0.5)
    result = _solve(scen, 1e4)
    assert float(result.allocation.sel(dc="dc000").sum()) == pytest.approx(1.0)
    assert result.objective["delay_usd"] == pytest.approx(RHO * LAMBDA * 1.0, rel=1e-9)
    assert result.latency["decision_share"] == pytest.approx(0.0, abs=1e-9)


def test_cap_infeasible_names_the_pool() -> None:
    scen = _two_dcs(0.5)
    cfg = PlanConfig(weights=(0.0, 0.0, 1.0), pool_slots=_slots(scen, 1.0, 1.0))
    result = plan(scen, cfg)  # 1 Erlang of demand, two 1-slot pools capped at 0.9 → 1.8 > 1 fits
    assert result.is_ok
    scen.ds["queries"][:] = 2.0 * LAMBDA  # 2 Erlangs > 1.8
    result = plan(scen, cfg)
    assert result.status in (SolveStatus.INFEASIBLE, SolveStatus.INFEASIBLE_OR_UNBOUNDED)
    row = result.diagnosis[0]
    assert row["family"] == "utilization"
    assert set(row["where"]) == {"dc", "query_type", "hour"}
    assert row["limit"] == pytest.approx(0.9 * 3600.0)  # u_max · 3600 · c busy seconds, c = 1
    assert "utilisation cap" in result.message


def test_latency_limit_is_per_query_and_binds() -> None:
    # Mean latency ≤ 1.2 s forces at least 60 % of the queries to the near DC (1 s vs 1.5 s).
    scen = _two_dcs(0.5)
    scen.ds["delay_limit_s"][:] = 1.2
    scen.ds["price_usd_per_kwh"][:] = np.array([[1.0, 0.0]])  # near DC costly in energy
    result = plan(scen, PlanConfig(weights=(1.0, 0.0, 0.0), pool_slots=_slots(scen, 1e4, 1e4)))
    assert result.is_ok and result.allocation is not None and result.delay_s is not None
    assert float(result.allocation.sel(dc="dc000").sum()) == pytest.approx(0.6, abs=1e-7)
    assert float(result.delay_s.max()) == pytest.approx(1.2, abs=1e-9)


def test_tangents_under_estimate_within_tolerance() -> None:
    for slots in (1.0, 4.0, 38.0, 300.0):
        a, b = wait_tangents(slots, 1.0)
        top = 0.9 * 3600.0 * slots
        grid = np.linspace(0.0, top, 3001)
        w = hourly_wait_s(grid, slots, 1.0)
        env = np.maximum(0.0, np.max(a[:, None] * grid + b[:, None], axis=0))
        assert (env <= w + 1e-9 * w[-1]).all()  # an under-estimator
        assert (w - env <= 0.03 * w + 1e-3 * top).all()
    # cs² scales the wait by (1 + cs²) / 2
    a1, b1 = wait_tangents(4.0, 1.0)
    a3, b3 = wait_tangents(4.0, 3.0)
    assert np.allclose(a3, 2.0 * a1) and np.allclose(b3, 2.0 * b1)
    assert len(wait_tangents(2000.0, 1.0, load_max_s=10.0)[0]) == 0  # idle pool: no rows


def test_default_pool_slots_rule() -> None:
    scen = _two_dcs(0.5)
    scen.ds["capacity"][:] = 0.0
    scen.ds["capacity"].loc[{"resource": "gpu"}] = 7000.0
    scen.ds["units_per_token"][:] = 0.0
    scen.ds["units_per_token"].loc[{"resource": "gpu"}] = 0.001  # 1 unit per query
    # N = 7000 queries/h, s = 1 s → a = 7000/3600 = 1.944 Erlangs → ceil(1.944 / 0.7) = 3
    assert default_pool_slots(scen).values.tolist() == [[3.0], [3.0]]


def test_latency_coefficients_have_no_lambda_factor() -> None:
    scen = _two_dcs(0.25)
    lat = per_query_latency_s(scen)
    assert lat.sel(dc="dc001").item() == pytest.approx(1.25)
    scen.ds["queries"][:] = 10 * LAMBDA
    assert per_query_latency_s(scen).sel(dc="dc001").item() == pytest.approx(1.25)
    assert delay_floor_usd(scen) == pytest.approx(RHO * 10 * LAMBDA)


def test_letter_model_is_default_and_unchanged() -> None:
    scen = synthesize(2, 2, 1, 2, seed=3)
    assert scen.delay_model == "letter"
    gm = build_model(scen)
    assert gm.delay_model == "letter" and "queueing" not in gm.model.constraints
    gm2 = build_model(scen, delay=DelayOptions(delay_model="per_query"))
    assert "delay" in gm2.model.constraints and "queue_s" in gm2.model.variables
    assert plan(scen).latency == {}


def test_options_validate() -> None:
    with pytest.raises(GreenSchedError, match="delay_model"):
        PlanConfig(delay_model="fast")
    with pytest.raises(GreenSchedError, match="max_utilization"):
        PlanConfig(max_utilization=1.0)
    scen = _two_dcs(0.5)
    bad = _slots(scen, 0.0, 3.0)
    with pytest.raises(GreenSchedError, match="dc='dc000'"):
        DelayOptions(pool_slots=bad).slots_of(scen)


def test_segments_fit_reachable_load_only() -> None:
    scen = _two_dcs(0.5)
    slope, _ = wait_segments(scen, DelayOptions(pool_slots=_slots(scen, 1.0, 1e4)))
    n = slope.notnull().sum("segment")
    assert int(n.sel(dc="dc000").item()) >= 3  # the congested pool has a real fit
    assert int(n.sel(dc="dc001").item()) == 0  # 10⁴ slots, 1 Erlang: negligible wait


def test_scenario_toml_round_trip(tmp_path: Path) -> None:
    scen = _two_dcs(0.5)
    scen.save(tmp_path / "s")
    assert 'delay_model = "per_query"' in (tmp_path / "s" / "scenario.toml").read_text()
    assert load_scenario(tmp_path / "s").delay_model == "per_query"
    text = (tmp_path / "s" / "scenario.toml").read_text().replace('"per_query"', '"fast"')
    (tmp_path / "s" / "scenario.toml").write_text(text)
    with pytest.raises(GreenSchedError, match="objective.delay_model"):
        load_scenario(tmp_path / "s")


def test_cli_plan_delay_model(paper_dir: Path, tmp_path: Path) -> None:
    from greensched.cli.plan import plan as plan_command

    out = tmp_path / "p"
    plan_command(paper_dir, delay_model="per_query", out=out)
    doc = json.loads((out / "plan.json").read_text())
    assert doc["delay_model"] == "per_query"
    assert doc["latency"]["latency_s_per_query"] > 0
    assert doc["objective"]["delay_usd"] > doc["latency"]["delay_floor_usd"] > 0
    plan_command(paper_dir, delay_model="letter", out=tmp_path / "l")
    letter = json.loads((tmp_path / "l" / "plan.json").read_text())
    assert "delay_model" not in letter and "latency" not in letter  # the letter's plan.json
    with pytest.raises(GreenSchedError, match="delay_model 'fast'"):
        plan_command(paper_dir, delay_model="fast")
