"""The 10-location scenario from ../shared/data, the four algorithms and the Table 1 metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler.equity import build_matrices, evaluate_objective, solve_seglb
from greensched.scheduler.equity.algorithms import (
    algorithm_config,
    metrics,
    run_algorithms,
    table1,
)
from greensched.scheduler.equity.seglb import flatten
from greensched.scheduler.equity.ten_locations import performance_costs
from tests.conftest import SHARED_DATA, require_shared_data
from tests.scheduler.test_equity_seglb import tiny

pytest.importorskip("cvxpy", reason="SE-GLB with q = 2 needs cvxpy + clarabel")


@pytest.fixture(scope="module")
def ten():  # type: ignore[no-untyped-def]
    require_shared_data()
    from greensched.eval.equity_scenario import ten_location_problem

    return ten_location_problem(SHARED_DATA, hours=6)


def test_performance_costs_from_benchmark_scores() -> None:
    score, cost = performance_costs()
    # mean of ARC, HellaSwag, TruthfulQA (Open LLM Leaderboard v1)
    assert score["70B"] == pytest.approx((67.32 + 87.33 + 44.92) / 3)
    assert cost["70B"] == 0.0
    assert cost["7B"] == pytest.approx(1 - (53.07 + 78.59 + 38.76) / (67.32 + 87.33 + 44.92))
    assert cost["7B"] > cost["13B"] > 0


def test_ten_location_facts(ten) -> None:  # type: ignore[no-untyped-def]
    from greensched.data.electricity_maps import read_electricity_maps

    assert ten.shape == (10, 10, 3, 6)
    assert ten.dcs[0] == "Virginia" and ten.dcs[-1] == "Japan"
    np.testing.assert_allclose(ten.pue, 1.1)
    np.testing.assert_allclose(ten.capacity[:, 0], 150 * 8 * 3600.0)  # GPU-seconds per hour
    np.testing.assert_allclose(ten.capacity[:, 1], 150 * 6.5)  # IT kWh per hour
    sg = ten.dcs.index("Singapore")
    assert not ten.model_mask[sg, ten.models.index("70B")] and ten.model_mask[sg].sum() == 2
    eu = [ten.regions.index(r) for r in ("Belgium", "Netherlands", "Germany", "Denmark")]
    us_asia = [
        i
        for i, d in enumerate(ten.dcs)
        if d not in ("Belgium", "Netherlands", "Germany", "Denmark")
    ]
    assert not ten.route_mask[np.ix_(us_asia, eu)].any()  # sovereignty
    em = read_electricity_maps(SHARED_DATA / "green_llm/Carbon/US-MIDA-PJM_2024_hourly.csv")
    first = em.loc["2024-03-24 00:00:00+00:00", "carbon_kg_per_kwh"]
    assert ten.carbon_kg_per_kwh[0, 0] == pytest.approx(float(first))
    # per-request energy from the twin grows with model size
    e = ten.energy_kwh_per_request[0]
    assert e[0] < e[1] < e[2]


def test_algorithms_on_ten_locations(ten) -> None:  # type: ignore[no-untyped-def]
    res = run_algorithms(ten, q=math.inf, mu_s_usd=5000.0, env_form="separate")
    assert all(r.is_ok for r in res.values())
    mats = build_matrices(ten)
    # Each algorithm is optimal for its own objective: no other algorithm's allocation does better.
    for name, r in res.items():
        for other in res.values():
            assert other.y is not None
            val = evaluate_objective(mats, r.config, flatten(ten, mats, other.y), 10)
            assert r.objective_usd <= val["objective_usd"] * (1 + 1e-6), name
    t1 = table1(ten, res)
    assert list(t1.index) == ["Cost-GLB", "All-GLB", "E-GLB", "SE-GLB"]
    assert t1.loc["SE-GLB", "Perf. cost max/avg"] <= t1.loc["Cost-GLB", "Perf. cost max/avg"]
    assert t1.loc["E-GLB", "Carbon max (t)"] <= t1.loc["All-GLB", "Carbon max (t)"] + 1e-9


def test_metrics_known_answer() -> None:
    # 2 DCs, 2 regions, 2 models (scores 60, 40; s = 0, 1/3), one hour.
    prob = tiny(
        2,
        2,
        2,
        price_usd_per_kwh=np.array([[0.1], [0.2]]),
        pue=np.array([1.0, 2.0]),
        energy_kwh_per_request=np.array([[1.0, 1.0], [1.0, 1.0]]),
        perf_cost=np.array([0.0, 1 / 3]),
        perf_score=np.array([60.0, 40.0]),
        carbon_kg_per_kwh=np.array([[1000.0], [500.0]]),
        water_l_per_kwh=np.array([[1000.0], [0.0]]),
        demand=np.array([[10.0], [10.0]]),
    )
    y = np.zeros((2, 2, 2, 1))
    y[0, 0, 0, 0] = 10  # region 0: model 0 at DC 0
    y[1, 1, 1, 0] = 10  # region 1: model 1 at DC 1
    s = metrics(prob, y).summary()
    # DC 0: 10 kWh → 1 USD, 10 t, 10 m³; DC 1: 20 kWh facility → 4 USD, 10 t, 0 m³
    assert s["energy_cost_avg_usd"] == pytest.approx(2.5)
    assert s["carbon_avg_t"] == pytest.approx(10.0) and s["carbon_max_over_avg"] == 1.0
    assert s["water_max_m3"] == pytest.approx(10.0) and s["water_max_over_avg"] == 2.0
    assert s["perf_cost_max"] == pytest.approx(1 / 3) and s["perf_cost_max_over_avg"] == 2.0
    assert s["perf_score_avg"] == 50.0 and s["perf_score_min"] == 40.0


def test_cost_glb_has_no_environmental_price() -> None:
    cfg = algorithm_config("cost-glb")
    assert cfg.mu_c_usd_per_t == 0 and cfg.mu_w_usd_per_m3 == 0 and cfg.is_lp
    assert algorithm_config("SE-GLB", q=3).q_social == 3.0
    with pytest.raises(GreenSchedError, match="algorithm 'foo'"):
        algorithm_config("foo")


def test_solve_reports_components(ten) -> None:  # type: ignore[no-untyped-def]
    r = solve_seglb(ten, algorithm_config("se-glb", q=2, mu_s_usd=5000.0))
    assert r.is_ok and r.solver == "clarabel"
    parts = ("energy_usd", "social_usd", "environmental_usd", "moving_usd")
    assert sum(r.components[p] for p in parts) == pytest.approx(r.objective_usd)
