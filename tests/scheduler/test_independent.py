"""The planner against an independent formulation, on scenarios where the water budget or the
delay limits bind, prices go negative, or renewables exceed the load (built from the paper)."""

from __future__ import annotations

import numpy as np
import pytest

from greensched.scheduler import PlanConfig, plan
from tests.scheduler.independent import solve_independent

HOURS = list(range(8, 14))
WEIGHTS = [(1 / 3, 1 / 3, 1 / 3), (0.6, 0.2, 0.2), (0.1, 0.1, 0.8)]


@pytest.fixture(scope="module")
def base(paper):  # type: ignore[no-untyped-def]
    """Six hours of the paper scenario with the water budget scaled to the horizon."""
    sub = paper.subset(hours=HOURS)
    sub.water_budget_l = paper.water_budget_l * len(HOURS) / 24
    return sub


def _compare(scen, weights) -> dict:  # type: ignore[no-untyped-def]
    ours = plan(scen, PlanConfig(weights=weights))
    ref = solve_independent(scen, weights)
    assert ours.is_ok and ref["status"] == 0.0
    weighted = ours.phases[0]["value_usd"]
    assert weighted == pytest.approx(ref["weighted"], rel=1e-6)
    return {"ours": ours, "ref": ref}


def _water_binding(base):  # type: ignore[no-untyped-def]
    scen = base.copy()
    scen.water_budget_l = None
    free = plan(scen)
    scen.water_budget_l = 0.97 * free.water_l
    return scen, free


def test_water_budget_binds(base) -> None:  # type: ignore[no-untyped-def]
    scen, free = _water_binding(base)
    for w in WEIGHTS:
        res = _compare(scen, w)["ours"]
        assert res.water_l == pytest.approx(scen.water_budget_l, rel=1e-6)
    assert res.duals["water"].item() < 0  # tightening the budget raises the cost
    assert plan(scen).phases[0]["value_usd"] > free.phases[0]["value_usd"]


def _delay_binding(base):  # type: ignore[no-untyped-def]
    free = plan(base)
    from greensched.scheduler.greenllm import delay_coefficients

    best = delay_coefficients(base).min("dc")  # all on the quickest DC
    achieved = free.delay_s
    gap = (achieved - best).transpose("area", "query_type", "hour")
    limit = (best + 0.4 * gap).max("hour")
    scen = base.copy()
    scen.ds["delay_limit_s"] = limit.transpose("area", "query_type")
    return scen, free


def test_delay_limits_bind(base) -> None:  # type: ignore[no-untyped-def]
    scen, free = _delay_binding(base)
    for w in WEIGHTS:
        res = _compare(scen, w)["ours"]
        slack = scen.ds["delay_limit_s"] - res.delay_s
        assert float(slack.min()) > -1e-6
        assert int((abs(slack) < 1e-6).sum()) > 0  # some rows at their limit
    assert float(free.delay_s.max()) > 0


def test_negative_prices(base) -> None:  # type: ignore[no-untyped-def]
    scen = base.copy()
    price = scen.ds["price_usd_per_kwh"].copy()
    price[1:3] = price[1:3] - 0.2
    scen.ds["price_usd_per_kwh"] = price
    assert float(price.min()) < 0
    for w in WEIGHTS:
        res = _compare(scen, w)["ours"]
        hourly = res.dc_hourly
        assert (hourly["grid_kw"] <= hourly["facility_kw"] + 1e-6).all()  # no buying to waste
    assert res.objective["energy_usd"] < plan(base, PlanConfig(weights=w)).objective["energy_usd"]


def test_renewable_surplus(base) -> None:  # type: ignore[no-untyped-def]
    scen = base.copy()
    scen.ds["renewable_kw"] = scen.ds["renewable_kw"] * 200
    for w in WEIGHTS:
        res = _compare(scen, w)["ours"]
        hourly = res.dc_hourly
        ren = scen.ds["renewable_kw"].to_series().reorder_levels(["hour", "dc"])
        used = hourly.set_index(["hour", "dc"])["renewable_used_kw"]
        assert (used <= ren.loc[used.index] + 1e-6).all()
        assert float((ren.loc[used.index] - used).max()) > 0  # curtailed somewhere
    assert res.grid_kwh < plan(base, PlanConfig(weights=w)).grid_kwh


def test_lexicographic_on_binding_water(base) -> None:  # type: ignore[no-untyped-def]
    scen, _ = _water_binding(base)
    r = plan(scen, PlanConfig(mode="lexicographic", order=("carbon", "energy", "delay")))
    ref = solve_independent(scen, (0.0, 1.0, 0.0))
    assert r.phases[0]["value_usd"] == pytest.approx(ref["carbon_usd"], rel=1e-6)
    assert r.objective["carbon_usd"] <= ref["carbon_usd"] * 1.001 + 2e-9  # ε plus 1e-9 room
    assert np.isfinite(r.water_l) and r.water_l <= scen.water_budget_l * (1 + 1e-9)
