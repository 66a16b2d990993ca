"""Online dual mirror descent: auxiliary step closed forms, feasibility, regret ≥ 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler.equity import EquityConfig
from greensched.scheduler.equity.online import auxiliary_step, solve_online
from tests.scheduler.test_equity_seglb import random_problem

cp = pytest.importorskip("cvxpy", reason="online SE-GLB checks need cvxpy + clarabel")


def brute_aux(gamma: np.ndarray, zmax: np.ndarray, q: float, scale: float) -> float:
    z = cp.Variable(len(zmax), nonneg=True)
    norm = cp.norm1(z) if q == 1 else cp.norm_inf(z)
    prob = cp.Problem(cp.Minimize(scale * norm - gamma @ z), [z <= zmax])
    prob.solve(solver=cp.CLARABEL)
    return float(prob.value)


@pytest.mark.parametrize("q", [1.0, math.inf])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auxiliary_closed_form_is_optimal(q: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0, 1.5, 5) * (rng.uniform(size=5) > 0.3)
    zmax = rng.uniform(1, 10, 5)
    z = auxiliary_step(gamma, zmax, q, 1.0)
    assert ((z >= 0) & (z <= zmax + 1e-12)).all()
    value = (np.abs(z).sum() if q == 1 else np.abs(z).max()) - gamma @ z
    assert value == pytest.approx(brute_aux(gamma, zmax, q, 1.0), abs=1e-6)


def test_auxiliary_q2_matches_kkt() -> None:
    # min ‖z‖₂ − γᵀz on a large box: z = 0 when ‖γ‖ ≤ 1; at the box corner when ‖γ‖ ≫ 1.
    assert np.allclose(auxiliary_step(np.array([0.3, 0.4]), np.array([5.0, 5.0]), 2.0, 1.0), 0)
    z = auxiliary_step(np.array([3.0, 4.0]), np.array([2.0, 2.0]), 2.0, 1.0)
    np.testing.assert_allclose(z, [2.0, 2.0], atol=1e-5)


@pytest.mark.parametrize("q", [1.0, math.inf])
def test_online_feasible_and_never_beats_offline(q: float) -> None:
    prob = random_problem(seed=2, t=6)
    cfg = EquityConfig(q_social=1, q_env=q, mu_s_usd=50.0, mean_scaled=True)
    res = solve_online(prob, cfg, eta=1.0)
    np.testing.assert_allclose(res.y.sum(axis=(0, 2)), prob.demand, rtol=1e-7)
    used = np.einsum("ijkt,ikr->irt", res.y, prob.resource_per_request)
    assert (used <= prob.capacity[:, :, None] * (1 + 1e-9)).all()
    assert res.regret_usd >= -1e-6 * abs(res.offline.objective_usd)  # type: ignore[union-attr]
    assert (res.gamma >= 0).all()


def test_online_equals_offline_without_environmental_term() -> None:
    # With μ_c = μ_w = 0 the objective separates by hour: online = offline, regret 0.
    prob = random_problem(seed=4, t=4)
    cfg = EquityConfig(q_social=1, q_env=1, mu_s_usd=50.0, mu_c_usd_per_t=0, mu_w_usd_per_m3=0)
    res = solve_online(prob, cfg, eta=1.0)
    assert res.regret_usd == pytest.approx(0.0, abs=1e-6 * res.components["objective_usd"])


def test_duals_help_against_the_equity_oblivious_baseline() -> None:
    prob = random_problem(seed=5, t=8)
    cfg = EquityConfig(q_social=1, q_env=math.inf, mu_s_usd=50.0, mean_scaled=True)
    with_duals = solve_online(prob, cfg, eta=1.0)
    oblivious = solve_online(prob, cfg, eta=0.0, offline=False)
    assert with_duals.components["objective_usd"] <= oblivious.components["objective_usd"] + 1e-9


def test_eta_must_be_non_negative() -> None:
    with pytest.raises(GreenSchedError, match="eta=-1.0"):
        solve_online(random_problem(), EquityConfig(), eta=-1.0)
