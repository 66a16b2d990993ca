"""The planner's equity option (--equity q=..,mu_c=..,mu_w=..) and the scenario → SE-GLB view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.equity import EquityConfig, solve_seglb
from greensched.scheduler.equity.plan_equity import (
    EquityOption,
    parse_equity_option,
    plan_with_equity,
    problem_from_scenario,
)
from greensched.synth import synthesize

pytest.importorskip("cvxpy", reason="the q = 2 equity plan needs cvxpy + clarabel")


@pytest.fixture(scope="module")
def scen():  # type: ignore[no-untyped-def]
    return synthesize(dcs=3, areas=2, types=2, hours=3, seed=11, name="equity-plan")


def test_parse_equity_option() -> None:
    opt = parse_equity_option("q=2,mu_c=1500,mu_w=60")
    assert (opt.q, opt.mu_c_usd_per_t, opt.mu_w_usd_per_m3) == (2.0, 1500.0, 60.0)
    assert parse_equity_option("q=inf").q == math.inf
    with pytest.raises(GreenSchedError, match="--equity 'mu=3'"):
        parse_equity_option("mu=3")
    with pytest.raises(GreenSchedError, match="mu_c='x' is not a number"):
        parse_equity_option("mu_c=x")
    with pytest.raises(GreenSchedError, match="q='0'"):
        parse_equity_option("q=0")


@pytest.mark.parametrize("q", [2.0, math.inf])
def test_mu_zero_reproduces_the_planner(scen, q: float) -> None:  # type: ignore[no-untyped-def]
    w = (0.5, 0.3, 0.2)
    ref = plan(scen, PlanConfig(weights=w))
    res = plan_with_equity(scen, EquityOption(q=q, mu_c_usd_per_t=0, mu_w_usd_per_m3=0), w)
    assert res.is_ok
    expected = sum(
        wi * ref.objective[f"{k}_usd"]
        for wi, k in zip(w, ("energy", "carbon", "delay"), strict=True)
    )
    assert res.objective["weighted_usd"] == pytest.approx(expected, rel=1e-6)
    assert res.allocation is not None
    np.testing.assert_allclose(res.allocation.sum("dc").values, 1.0, atol=1e-6)


def test_equity_lowers_the_worst_dc(scen) -> None:  # type: ignore[no-untyped-def]
    w = (1.0, 0.0, 0.0)
    plain = plan_with_equity(scen, EquityOption(q=1.0), w)
    minmax = plan_with_equity(scen, EquityOption(q=math.inf), w)
    assert plain.per_dc is not None and minmax.per_dc is not None
    assert minmax.per_dc["h_usd"].max() <= plain.per_dc["h_usd"].max() + 1e-9
    # the min-max plan pays for its equity with energy cost (weights: energy only)
    assert minmax.objective["energy_usd"] >= plain.objective["energy_usd"] - 1e-9


def test_problem_from_scenario_solves(scen) -> None:  # type: ignore[no-untyped-def]
    prob = problem_from_scenario(scen)
    assert prob.shape == (3, 2, 1, 3)
    res = solve_seglb(prob, EquityConfig(q_social=1, q_env=2, mu_s_usd=0.0))
    assert res.is_ok and res.y is not None
    np.testing.assert_allclose(res.y.sum(axis=(0, 2)), prob.demand, rtol=1e-6)
