"""The twin executes plans under the per-query delay model with the planner's wait model."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from greensched.eval.twin import Twin, evaluate_allocation
from greensched.eval.twin_plan import loaded_coefficients, twin_pool_slots
from greensched.queueing import hourly_wait_s
from greensched.scenario import Scenario
from greensched.scheduler import PlanConfig, plan
from greensched.synth import synthesize

LAMBDA = 3600.0
RHO = 0.01


def _two_dcs() -> tuple[Scenario, xr.DataArray]:
    """As in tests/scheduler/test_per_query.py: near DC M/M/1, far DC 0.5 s away, no queue."""
    scen = synthesize(2, 1, 1, 1, seed=0)
    ds = scen.ds
    ds["queries"][:] = LAMBDA
    ds["token_size"][:] = 0.0
    ds["input_tokens"][:] = 500.0
    ds["output_tokens"][:] = 500.0
    ds["delay_s_per_token"][:] = 1.0 / 1000.0
    ds["rtt_s"][:] = np.array([[0.0, 0.5]])
    ds["delay_penalty_usd_per_s"][:] = RHO
    ds["delay_limit_s"][:] = 1.2
    ds["price_usd_per_kwh"][:] = 0.0
    ds["carbon_kg_per_kwh"][:] = 0.0
    ds["capacity"][:] = 1e12
    ds["grid_cap_kw"][:] = 1e9
    scen.water_budget_l = None
    scen.delay_model = "per_query"
    slots = xr.DataArray(
        [[1.0], [1e4]],
        coords={"dc": ds.indexes["dc"], "query_type": ds.indexes["query_type"]},
        dims=("dc", "query_type"),
    )
    return scen, slots


def test_twin_prices_the_plan_like_the_planner() -> None:
    scen, slots = _two_dcs()
    result = plan(scen, PlanConfig(weights=(0.0, 0.0, 1.0), pool_slots=slots))
    assert result.is_ok and result.allocation is not None
    tw = evaluate_allocation(scen, result.allocation, pool_slots=slots)
    assert tw["delay_model"] == "per_query"
    x_near = float(result.allocation.sel(dc="dc000").sum())
    # the twin's queueing is the exact M/G/c wait of the plan's load; the planner's a tangent
    # under-estimate of it (≤ W, within 2 % + 0.1 % of the busy seconds)
    exact = float(hourly_wait_s(x_near * LAMBDA * 1.0, 1.0))
    assert tw["queueing_s"] == pytest.approx(exact, rel=1e-9)
    assert result.latency["queueing_s"] == pytest.approx(exact, rel=1e-9)
    assert result.latency["latency_s_per_query"] == pytest.approx(tw["latency_s_per_query"])
    assert result.latency["queueing_lp_s"] <= exact + 1e-9
    assert result.latency["queueing_lp_s"] >= 0.98 * exact - 1e-3 * 0.9 * 3600.0
    ell = x_near * 1.0 + (1 - x_near) * 1.5
    assert tw["latency_s_per_query"] == pytest.approx(ell + exact / LAMBDA, rel=1e-9)
    assert tw["delay_cost_usd"] == pytest.approx(RHO * (LAMBDA * ell + exact), rel=1e-9)
    assert tw["delay_cost_usd"] == pytest.approx(result.objective["delay_usd"], rel=0.01)
    # SLA penalty: the mean latency meets Δ = 1.2 s, but each query is judged on its own:
    # far-DC queries take 1.5 s (+ no wait), near ones 1 s + their mean wait
    near_lat = 1.0 + exact / (x_near * LAMBDA)
    excess = (1 - x_near) * max(1.5 - 1.2, 0) + x_near * max(near_lat - 1.2, 0)
    assert tw["sla_penalty_usd"] == pytest.approx(RHO * LAMBDA * excess, rel=1e-9)


def test_letter_execution_keeps_the_letter_delay_term(paper) -> None:  # type: ignore[no-untyped-def]
    result = plan(paper)
    assert result.allocation is not None
    tw = evaluate_allocation(paper, result.allocation)
    assert tw["delay_model"] == "letter" and tw["queueing_s"] == 0.0
    assert tw["delay_cost_usd"] == pytest.approx(result.objective["delay_usd"], rel=1e-6)


def test_twin_pool_slots_and_loaded_coefficients() -> None:
    scen = synthesize(3, 2, 2, 2, seed=1)
    twin = Twin(scen)
    slots = twin_pool_slots(twin)
    assert slots.dims == ("dc", "query_type")
    assert np.allclose(slots.values, twin.replicas_ * twin.batch_size_)
    res = plan(scen, PlanConfig(delay_model="per_query", pool_slots=slots))
    assert res.is_ok and res.allocation is not None
    ev = evaluate_allocation(scen, res.allocation, twin=twin, mode="physics")
    coef = loaded_coefficients(twin, ev["queue"])
    assert set(coef.dims) == {"hour", "dc", "query_type"}
    assert (coef["energy_kwh_per_query"] > 0).all() and (coef["proc_delay_s_per_query"] > 0).all()
    with pytest.raises(ValueError, match="physics twin"):
        loaded_coefficients(Twin(scen, mode="coefficients"), None)
