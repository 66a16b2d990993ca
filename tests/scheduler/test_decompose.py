"""Decomposed planning: equal to the monolithic optimum, budget met exactly, gap certified."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.backends import SolveStatus
from greensched.scheduler.decompose import (
    DecomposeConfig,
    DecompositionError,
    plan_decomposed,
    split_by_hour,
)
from greensched.scheduler.greenllm import build_model
from greensched.synth import synthesize

#: Decomposed and monolithic optima agree to this relative tolerance.
REL = 1e-6


def _scenario(hours: int = 6, seed: int = 3, budget: float | None = 0.9) -> Scenario:
    """Small synthetic scenario; ``budget`` × the unconstrained plan's water (None: no cap)."""
    scen = synthesize(5, 4, 3, hours, seed=seed)
    scen.water_budget_l = None
    if budget is not None:
        free = plan(scen)
        assert free.is_ok
        scen.water_budget_l = budget * free.water_l
    return scen


def _close(a: float, b: float, rel: float = REL) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(b))


@pytest.fixture(scope="module")
def binding() -> Scenario:
    return _scenario()


def test_weighted_without_budget_equals_monolithic_in_one_round() -> None:
    scen = _scenario(budget=None)
    mono = plan(scen)
    dec = plan_decomposed(scen)
    assert dec.is_ok and mono.is_ok
    assert _close(dec.phases[0]["value_usd"], mono.phases[0]["value_usd"])
    assert dec.rounds == 1  # no coupling row: every hour once
    assert dec.gap_usd == 0.0
    assert "water" not in dec.duals
    assert dec.allocation is not None and dec.dc_hourly is not None
    np.testing.assert_allclose(dec.allocation.sum("dc"), 1.0, atol=1e-9)


def test_binding_water_budget_equal_optimum_and_exact_budget(binding: Scenario) -> None:
    mono = plan(binding)
    dec = plan_decomposed(binding)
    assert dec.is_ok and mono.is_ok
    z = binding.water_budget_l
    assert z is not None
    assert mono.water_l == pytest.approx(z, rel=1e-9)  # the budget binds
    assert _close(dec.phases[0]["value_usd"], mono.phases[0]["value_usd"])
    assert dec.water_l == pytest.approx(z, rel=1e-9, abs=1e-9)
    assert dec.dc_hourly is not None
    assert float(dec.dc_hourly["water_l"].sum()) == pytest.approx(z, rel=1e-9)
    # Certificate: lower bound ≤ true optimum ≤ plan value, and the gap is within tolerance.
    assert dec.lower_bound_usd <= mono.phases[0]["value_usd"] + 1e-9
    assert dec.gap_relative <= DecomposeConfig().gap_tol
    assert dec.water_price_usd_per_l > 0
    assert float(dec.duals["water"]) == pytest.approx(-dec.water_price_usd_per_l)
    # The water price equals the monolithic dual of the budget row.
    assert float(dec.duals["water"]) == pytest.approx(float(mono.duals["water"]), rel=1e-4)
    # Every hour's rows still hold: every query served, no DC over its grid cap.
    assert dec.allocation is not None and dec.dc_hourly is not None
    np.testing.assert_allclose(dec.allocation.sum("dc"), 1.0, atol=1e-9)
    cap = binding.ds["grid_cap_kw"].transpose("hour", "dc").values.ravel()
    assert (dec.dc_hourly["grid_kw"].to_numpy() <= cap + 1e-7).all()


def test_gap_bound_holds_when_stopped_early(binding: Scenario) -> None:
    mono = plan(binding)
    dec = plan_decomposed(binding, decompose=DecomposeConfig(max_rounds=4, gap_tol=0.0))
    assert dec.is_ok
    best = mono.phases[0]["value_usd"]
    value = dec.phases[0]["value_usd"]
    assert dec.lower_bound_usd <= best + 1e-9 <= value + 2e-9
    assert value - best <= dec.gap_usd + 1e-9
    assert binding.water_budget_l is not None
    assert dec.water_l <= binding.water_budget_l * (1 + 1e-9)  # feasible even when stopped


def test_lexicographic_phases_equal_monolithic(binding: Scenario) -> None:
    cfg = PlanConfig(mode="lexicographic", order=("carbon", "energy", "delay"))
    mono = plan(binding, cfg)
    dec = plan_decomposed(binding, cfg)
    assert dec.is_ok and mono.is_ok
    for a, b in zip(dec.phases, mono.phases, strict=True):
        assert a["objective"] == b["objective"]
        assert _close(a["value_usd"], b["value_usd"]), (a, b)
    assert binding.water_budget_l is not None
    assert dec.water_l <= binding.water_budget_l * (1 + 1e-9)


def test_two_worker_processes_hot_start_match_serial(binding: Scenario) -> None:
    serial = plan_decomposed(binding)
    pooled = plan_decomposed(binding, decompose=DecomposeConfig(workers=2, keep_solvers=True))
    assert pooled.engine == "processes" and pooled.workers == 2
    assert _close(pooled.phases[0]["value_usd"], serial.phases[0]["value_usd"], 1e-9)
    assert pooled.water_l == pytest.approx(binding.water_budget_l, rel=1e-9)


def test_multi_day_horizon_with_budget() -> None:
    scen = _scenario(hours=48, seed=5)
    mono = plan(scen)
    dec = plan_decomposed(scen, decompose=DecomposeConfig(block_hours=12))
    assert dec.is_ok and scen.hours == 48
    assert _close(dec.phases[0]["value_usd"], mono.phases[0]["value_usd"])
    assert dec.water_l == pytest.approx(scen.water_budget_l, rel=1e-9)


def test_infeasible_budget_is_reported_with_the_least_water() -> None:
    scen = _scenario(budget=0.3)
    dec = plan_decomposed(scen)
    assert dec.status is SolveStatus.INFEASIBLE
    assert "water budget" in dec.message and "least water" in dec.message
    assert dec.diagnosis[0]["family"] == "water"
    assert plan(scen).status is SolveStatus.INFEASIBLE  # the monolithic plan agrees


def test_result_json_carries_method_and_gap(binding: Scenario, tmp_path: Path) -> None:
    dec = plan_decomposed(binding)
    dec.write(tmp_path)
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["method"] == "decomposed-hours"
    assert data["decomposition"]["gap_relative"] <= 1e-7
    assert data["decomposition"]["rounds"] == dec.rounds
    assert (tmp_path / "allocation.csv").exists() and (tmp_path / "duals.csv").exists()


def test_coupling_row_is_refused_by_the_splitter() -> None:
    scen = synthesize(2, 2, 2, 2, seed=1)  # synthesize sets a water budget: a horizon row
    with pytest.raises(DecompositionError, match="constraint family 'water'"):
        split_by_hour(build_model(scen))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workers": 0}, "workers"),
        ({"gap_tol": -1.0}, "gap_tol"),
        ({"method": "days"}, "method"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"block_hours": 0}, "block_hours"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(GreenSchedError, match=field):
        DecomposeConfig(**kwargs)


def test_other_solver_is_refused() -> None:
    with pytest.raises(GreenSchedError, match="gurobi"):
        plan_decomposed(_scenario(budget=None), PlanConfig(solver="gurobi"))


def test_plan_command_decompose_hours(tmp_path: Path) -> None:
    import greensched.cli.plan  # noqa: F401  (registers the command)
    from greensched.cli._app import app

    scen = _scenario(hours=4)
    directory = scen.save(tmp_path / "s")
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(app, ["plan", str(directory), "--decompose", "hours", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "certified gap" in res.output
    data = json.loads((out / "plan.json").read_text())
    assert data["method"] == "decomposed-hours"
    assert data["water_l"] == pytest.approx(scen.water_budget_l, rel=1e-9)
    bad = runner.invoke(app, ["plan", str(directory), "--workers", "2"])
    # (main() turns GreenSchedError into one line "error: ..." and exit status 2)
    assert isinstance(bad.exception, GreenSchedError) and "--decompose" in str(bad.exception)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GREENSCHED_TEST_RAY") != "1",
    reason="starts a local Ray cluster (~1-2 min on 2 cores); set GREENSCHED_TEST_RAY=1",
)
def test_ray_local_cluster_matches_serial(binding: Scenario) -> None:
    pytest.importorskip("ray")
    serial = plan_decomposed(binding)
    on_ray = plan_decomposed(binding, decompose=DecomposeConfig(workers=1, ray_address="local"))
    assert on_ray.engine == "ray" and on_ray.is_ok
    assert _close(on_ray.phases[0]["value_usd"], serial.phases[0]["value_usd"], 1e-9)
    assert on_ray.water_l == pytest.approx(binding.water_budget_l, rel=1e-9)


def test_plan_dispatches_on_config_decompose(binding: Scenario) -> None:
    mono = plan(binding)
    dec = plan(binding, PlanConfig(decompose="hours"))
    assert getattr(dec, "method", None) == "decomposed-hours"
    assert _close(dec.phases[0]["value_usd"], mono.phases[0]["value_usd"])
    with pytest.raises(GreenSchedError, match="decompose"):
        PlanConfig(decompose="days")


def test_per_query_delay_model_with_budget() -> None:
    scen = synthesize(5, 4, 3, 6, seed=3)
    scen.water_budget_l = None
    cfg = PlanConfig(delay_model="per_query")
    free = plan(scen, cfg)
    assert free.is_ok
    scen.water_budget_l = 0.93 * free.water_l
    mono = plan(scen, cfg)
    dec = plan_decomposed(scen, cfg)
    assert dec.is_ok and dec.delay_model == "per_query"
    assert _close(dec.phases[0]["value_usd"], mono.phases[0]["value_usd"])
    assert dec.water_l == pytest.approx(scen.water_budget_l, rel=1e-9)
    assert set(mono.duals) == set(dec.duals)  # every family, the queueing rows included
    # the latency summary of the monolithic planner, from the recovered hour solutions
    assert set(dec.latency) == set(mono.latency) and mono.latency
    for key, value in mono.latency.items():
        assert dec.latency[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
