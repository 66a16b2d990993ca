"""SE-GLB known-answer cases (q = 1, 2, ∞, 64), solver agreement, μ = 0 and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler.equity import EquityConfig, EquityProblem, lq_norm, parse_q, solve_seglb

cp = pytest.importorskip("cvxpy", reason="conic SE-GLB needs cvxpy + clarabel (extra 'equity')")

#: Clarabel's default tolerances are ~1e-8 relative; known answers are checked to 1e-5.
TOL = 1e-5


def tiny(
    n: int,
    j: int,
    k: int,
    t: int = 1,
    **arrays: object,
) -> EquityProblem:
    """A problem with neutral defaults (zero prices/intensities, no capacity limit)."""
    base: dict[str, object] = dict(
        price_usd_per_kwh=np.zeros((n, t)),
        pue=np.ones(n),
        energy_kwh_per_request=np.ones((n, k)),
        perf_cost=np.zeros(k),
        perf_score=np.full(k, 50.0),
        carbon_kg_per_kwh=np.zeros((n, t)),
        water_l_per_kwh=np.zeros((n, t)),
        demand=np.full((j, t), 10.0),
        resource_per_request=np.ones((n, k, 1)),
        capacity=np.full((n, 1), 1e9),
        move_cost_usd_per_request=np.zeros((n, j)),
        route_mask=np.ones((n, j), bool),
        model_mask=np.ones((n, k), bool),
    )
    base.update(arrays)
    return EquityProblem(
        dcs=tuple(f"dc{i}" for i in range(n)),
        regions=tuple(f"r{i}" for i in range(j)),
        models=tuple(f"m{i}" for i in range(k)),
        hours=tuple(str(h) for h in range(t)),
        resources=("gpu_s",),
        **base,  # type: ignore[arg-type]
    )


def env_case() -> EquityProblem:
    """2 DCs, 1 region, λ = 10, prices (1, 1.5) USD/kWh, carbon 1 kg/kWh at both.

    With μ_c = 1000 USD/t (1 USD/kg): cost = y1 + 1.5 y2 + ‖(y1, y2)‖_q, y1 + y2 = 10.
    """
    return tiny(
        2,
        1,
        1,
        price_usd_per_kwh=np.array([[1.0], [1.5]]),
        carbon_kg_per_kwh=np.ones((2, 1)),
    )


def env_cfg(q: float) -> EquityConfig:
    return EquityConfig(
        q_social=1, q_env=q, mu_s_usd=0.0, mu_c_usd_per_t=1000.0, mu_w_usd_per_m3=0.0
    )


@pytest.mark.parametrize("solver", ["highs", "clarabel"])
def test_env_q1_all_on_cheap_dc(solver: str) -> None:
    res = solve_seglb(env_case(), env_cfg(1), solver=solver)
    assert res.is_ok
    # q = 1: 2 y1 + 2.5 y2 → everything at DC 1, objective 20.
    assert res.objective_usd == pytest.approx(20.0, rel=TOL)
    assert res.y is not None and res.y[0, 0, 0, 0] == pytest.approx(10.0, rel=1e-4)


@pytest.mark.parametrize("solver", ["highs", "clarabel"])
def test_env_qinf_splits_evenly(solver: str) -> None:
    res = solve_seglb(env_case(), env_cfg(math.inf), solver=solver)
    # q = ∞: y1 + 1.5 y2 + max(y1, y2) is minimised at y = (5, 5): 17.5.
    assert res.objective_usd == pytest.approx(17.5, rel=TOL)
    assert res.y is not None
    np.testing.assert_allclose(res.y[:, 0, 0, 0], [5.0, 5.0], rtol=1e-4)


def test_env_q2_closed_form() -> None:
    res = solve_seglb(env_case(), env_cfg(2))
    # Stationarity: y1 = 5 + a with a = sqrt(25/7); objective 12.5 − a/2 + sqrt(400/7).
    a = math.sqrt(25.0 / 7.0)
    assert res.solver == "clarabel"
    assert res.objective_usd == pytest.approx(12.5 - a / 2 + math.sqrt(400.0 / 7.0), rel=TOL)
    assert res.y is not None and res.y[0, 0, 0, 0] == pytest.approx(5.0 + a, rel=1e-4)


def test_q64_approaches_minmax_lp() -> None:
    lp = solve_seglb(env_case(), env_cfg(math.inf), solver="highs")
    q64 = solve_seglb(env_case(), env_cfg(64))
    # ‖·‖_∞ ≤ ‖·‖_64 ≤ 2^(1/64) ‖·‖_∞ in two dimensions: the optimum lies within that band.
    assert lp.objective_usd <= q64.objective_usd + 1e-6
    assert q64.objective_usd <= 12.5 + 5.0 * 2 ** (1 / 64) + 1e-6
    assert q64.y is not None
    np.testing.assert_allclose(q64.y[:, 0, 0, 0], [5.0, 5.0], atol=0.2)


def social_case() -> EquityProblem:
    """1 DC, regions with λ = (10, 20), models A (s = 0, 1 GPU-s) and B (s = 0.5, free); 10 GPU-s.

    At least 20 requests must use B; region j's average cost is 0.5 yB_j / λ_j.
    """
    return tiny(
        1,
        2,
        2,
        perf_cost=np.array([0.0, 0.5]),
        demand=np.array([[10.0], [20.0]]),
        resource_per_request=np.array([[[1.0], [0.0]]]),
        capacity=np.array([[10.0]]),
    )


def social_cfg(q: float) -> EquityConfig:
    return EquityConfig(q_social=q, q_env=1, mu_s_usd=1.0, mu_c_usd_per_t=0.0, mu_w_usd_per_m3=0.0)


@pytest.mark.parametrize(
    ("q", "expected", "yb"),
    [
        (1, 0.5, (0.0, 20.0)),  # cheapest per unit: B to the larger region (weight 1/λ)
        (math.inf, 1.0 / 3.0, (20.0 / 3.0, 40.0 / 3.0)),  # equal averages
        (2, math.sqrt(0.2), (4.0, 16.0)),  # 2(0.05)² a = 2(0.025)² b, a + b = 20
    ],
)
def test_social_known_answers(q: float, expected: float, yb: tuple[float, float]) -> None:
    res = solve_seglb(social_case(), social_cfg(q))
    assert res.is_ok, res.message
    assert res.objective_usd == pytest.approx(expected, rel=TOL)
    assert res.y is not None
    np.testing.assert_allclose(res.y[0, :, 1, 0], yb, atol=1e-3)
    # capacity (4c) and demand (4b) hold
    assert res.y[0, :, 0, 0].sum() <= 10.0 + 1e-6
    np.testing.assert_allclose(res.y[0].sum(axis=1)[:, 0], [10.0, 20.0], rtol=1e-6)


def random_problem(seed: int = 0, t: int = 3) -> EquityProblem:
    rng = np.random.default_rng(seed)
    n, j, k = 3, 4, 2
    route = np.ones((n, j), bool)
    route[0, 3] = False  # a routing mask
    return tiny(
        n,
        j,
        k,
        t,
        price_usd_per_kwh=rng.uniform(0.02, 0.1, (n, t)),
        pue=np.array([1.1, 1.2, 1.3]),
        energy_kwh_per_request=np.array([[0.001, 0.005]] * n),
        perf_cost=np.array([0.15, 0.0]),
        carbon_kg_per_kwh=rng.uniform(0.1, 0.6, (n, t)),
        water_l_per_kwh=rng.uniform(1.0, 4.0, (n, t)),
        demand=rng.uniform(500, 1500, (j, t)),
        resource_per_request=np.array([[[1.0], [8.0]]] * n),
        capacity=np.full((n, 1), 4000.0),
        move_cost_usd_per_request=rng.uniform(0, 1e-4, (n, j)),
        route_mask=route,
    )


@pytest.mark.parametrize("q", [1, math.inf])
def test_lp_and_conic_agree(q: float) -> None:
    prob = random_problem()
    cfg = EquityConfig(q_social=q, q_env=q, mu_s_usd=50.0)
    lp = solve_seglb(prob, cfg, solver="highs")
    cone = solve_seglb(prob, cfg, solver="clarabel")
    assert lp.objective_usd == pytest.approx(cone.objective_usd, rel=1e-5)
    assert lp.y is not None
    assert lp.y[0, 3].sum() == 0.0  # masked pair never used
    used = np.einsum("ijkt,ikr->irt", lp.y, prob.resource_per_request)
    assert (used <= prob.capacity[:, :, None] + 1e-6).all()


def test_mu_zero_reproduces_cost_glb() -> None:
    prob = random_problem(seed=3)
    cost_glb = EquityConfig(
        q_social=1, q_env=1, mu_s_usd=50.0, mu_c_usd_per_t=0, mu_w_usd_per_m3=0, name="Cost-GLB"
    )
    se_mu0 = EquityConfig(q_social=1, q_env=2, mu_s_usd=50.0, mu_c_usd_per_t=0, mu_w_usd_per_m3=0)
    a = solve_seglb(prob, cost_glb)
    b = solve_seglb(prob, se_mu0)
    assert a.solver == "highs" and b.solver == "clarabel"
    assert b.components["environmental_usd"] == pytest.approx(0.0, abs=1e-9)
    assert b.objective_usd == pytest.approx(a.objective_usd, rel=1e-6)


def test_equity_lowers_worst_dc_and_costs_energy() -> None:
    prob = random_problem(seed=1)
    q1 = solve_seglb(prob, EquityConfig(q_social=1, q_env=1, mu_s_usd=50.0))
    qi = solve_seglb(prob, EquityConfig(q_social=1, q_env=math.inf, mu_s_usd=50.0))
    assert q1.y is not None and qi.y is not None
    env1 = np.einsum("ijkt,ik,it->i", q1.y, prob.facility_kwh_per_request(), prob.carbon_kg_per_kwh)
    envi = np.einsum("ijkt,ik,it->i", qi.y, prob.facility_kwh_per_request(), prob.carbon_kg_per_kwh)
    assert envi.max() <= env1.max() + 1e-9
    assert qi.components["energy_usd"] >= q1.components["energy_usd"] - 1e-9


def test_infeasible_capacity_is_reported() -> None:
    prob = tiny(1, 1, 1, capacity=np.array([[5.0]]))
    res = solve_seglb(prob, EquityConfig(q_social=1, q_env=1))
    assert not res.is_ok and res.status == "infeasible"
    with pytest.raises(GreenSchedError, match="no solution"):
        _ = res.objective_usd


def test_lq_norm_values() -> None:
    v = np.array([3.0, 4.0])
    assert float(lq_norm(v, 1)) == 7.0
    assert float(lq_norm(v, 2)) == pytest.approx(5.0)
    assert float(lq_norm(v, math.inf)) == 4.0


def test_input_errors_name_the_field() -> None:
    with pytest.raises(GreenSchedError, match="q='0.5'"):
        parse_q("0.5")
    assert parse_q("inf") == math.inf and parse_q("∞") == math.inf
    with pytest.raises(GreenSchedError, match="EquityConfig.mu_c_usd_per_t=-1.0"):
        EquityConfig(mu_c_usd_per_t=-1.0)
    with pytest.raises(GreenSchedError, match=r"demand: shape \(2, 1\), expected \(1, 1\)"):
        tiny(1, 1, 1, demand=np.ones((2, 1)))
    with pytest.raises(GreenSchedError, match=r"price_usd_per_kwh\[0, 0\] = -1"):
        tiny(1, 1, 1, price_usd_per_kwh=np.array([[-1.0]]))
    with pytest.raises(GreenSchedError, match="region 'r0' has demand but no"):
        tiny(1, 1, 1, route_mask=np.zeros((1, 1), bool))
    with pytest.raises(GreenSchedError, match="solver='highs' solves q in"):
        solve_seglb(env_case(), env_cfg(2), solver="highs")


@pytest.mark.parametrize(("q", "expected"), [(1, 15.0), (math.inf, 17.5)])
def test_mean_scaled_is_average_and_max(q: float, expected: float) -> None:
    cfg = env_cfg(q)
    cfg.mean_scaled = True
    # q = 1: y1 + 1.5 y2 + (y1 + y2) / 2 → all at DC 1: 15; q = ∞ is unchanged: 17.5.
    res = solve_seglb(env_case(), cfg, solver="highs")
    assert res.objective_usd == pytest.approx(expected, rel=TOL)


def test_general_q_social_term_along_hours() -> None:
    # q = 3 on the social case: minimise (0.05³a³ + 0.025³b³)^(1/3), a + b = 20.
    # Stationarity: 0.05³ a² = 0.025³ b² → b = a·(0.05/0.025)^(3/2) = 2√2 a.
    res = solve_seglb(social_case(), social_cfg(3))
    a = 20.0 / (1.0 + 2.0 * math.sqrt(2.0))
    b = 20.0 - a
    expected = ((0.05 * a) ** 3 + (0.025 * b) ** 3) ** (1 / 3)
    assert res.objective_usd == pytest.approx(expected, rel=TOL)
