"""Infeasible scenarios name the constraint family, the indices and the shortfall."""

from __future__ import annotations

import pytest

from greensched.scheduler import PlanConfig, SolveStatus, diagnose_infeasibility, plan
from greensched.synth import synthesize


@pytest.fixture()
def scen():  # type: ignore[no-untyped-def]
    return synthesize(3, 2, 2, 4, seed=2)


def _first(result):  # type: ignore[no-untyped-def]
    assert result.status in (SolveStatus.INFEASIBLE, SolveStatus.INFEASIBLE_OR_UNBOUNDED)
    assert not result.is_ok
    assert result.diagnosis, result.message
    return result.diagnosis[0]


def test_delay_limit_infeasible(scen) -> None:  # type: ignore[no-untyped-def]
    limit = scen.ds["delay_limit_s"].copy()
    limit.loc[{"area": "area001", "query_type": "type1"}] = 1e-4
    scen.ds["delay_limit_s"] = limit
    r = plan(scen)
    row = _first(r)
    assert row["family"] == "delay"
    assert row["where"]["area"] == "area001" and row["where"]["query_type"] == "type1"
    assert row["where"]["hour"] in range(4)
    assert row["shortfall"] > 0 and row["unit"] == "s"
    assert "delay limit" in r.message and "area='area001'" in r.message
    assert {d["family"] for d in r.diagnosis} == {"delay"}
    assert len(r.diagnosis) == 4  # every hour of that (area, type)


def test_resource_capacity_infeasible(scen) -> None:  # type: ignore[no-untyped-def]
    cap = scen.ds["capacity"].copy()
    cap.loc[{"resource": "gpu"}] = cap.loc[{"resource": "gpu"}] * 0.1
    scen.ds["capacity"] = cap
    row = _first(plan(scen))
    assert row["family"] == "resource" and row["where"]["resource"] == "gpu"
    assert set(row["where"]) == {"dc", "resource", "hour"}


def test_water_budget_infeasible(scen) -> None:  # type: ignore[no-untyped-def]
    need = plan(scen).water_l
    scen.water_budget_l = need * 0.2
    r = plan(scen)
    row = _first(r)
    assert row["family"] == "water" and row["where"] == {}
    assert row["limit"] == pytest.approx(need * 0.2)
    assert row["unit"] == "l"
    assert "water budget" in r.message


def test_power_supply_infeasible(scen) -> None:  # type: ignore[no-untyped-def]
    for var in ("grid_cap_kw", "renewable_kw"):
        arr = scen.ds[var].copy()
        arr.loc[{"hour": 2}] = 0.0
        scen.ds[var] = arr
    r = plan(scen, PlanConfig(mode="lexicographic"))
    row = _first(r)
    assert row["family"] == "power_balance" and row["where"]["hour"] == 2
    assert all(d["where"]["hour"] == 2 for d in r.diagnosis)


def test_diagnosis_of_feasible_scenario_is_empty(scen) -> None:  # type: ignore[no-untyped-def]
    assert diagnose_infeasibility(scen) == []
