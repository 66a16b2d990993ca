"""Batch IP: optimal on tiny instances (brute force), never worse than greedy, masks kept."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greensched.jobs import validate_jobs
from greensched.scheduler.assign import (
    AssignConfig,
    AssignError,
    CapacityLedger,
    assign_greedy,
    job_usage_units,
    predictions_from_coefficients,
    sample_jobs_from_demand,
)
from greensched.scheduler.batch_ip import (
    assign_batch_ip,
    build_batch_problem,
    solve_batch_problem,
)
from greensched.synth import synthesize

#: Objective values are sums of at most a few dozen products.
ABS = 1e-9


def brute_force(score, allowed, hour, usage, remaining, penalty):  # type: ignore[no-untyped-def]
    """Best objective over every assignment (including unplaced jobs), exact ticks."""
    n, D = score.shape
    best = np.inf
    for combo in itertools.product(range(-1, D), repeat=n):
        c = np.array(combo)
        if any(c[j] >= 0 and not allowed[j, c[j]] for j in range(n)):
            continue
        used = np.zeros_like(remaining)
        for j in range(n):
            if c[j] >= 0:
                used[hour[j], c[j]] += usage[j]
        if (used > remaining).any():
            continue
        value = sum(score[j, c[j]] for j in range(n) if c[j] >= 0) + penalty * (c < 0).sum()
        best = min(best, value)
    return best


@st.composite
def tiny(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 6))
    D = draw(st.integers(1, 3))
    R = draw(st.integers(1, 2))
    H = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    score = np.round(rng.uniform(-0.2, 1.0, (n, D)), 3)
    allowed = rng.random((n, D)) < 0.85
    hour = rng.integers(0, H, n)
    usage = rng.integers(0, 10, (n, R))
    remaining = rng.integers(0, 25, (H, D, R))
    return score, allowed, hour, usage, remaining


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny())
def test_ip_equals_brute_force(inst) -> None:  # type: ignore[no-untyped-def]
    score, allowed, hour, usage, remaining = inst
    problem = build_batch_problem(score, allowed, hour, usage, remaining, 1)
    choice, facts = solve_batch_problem(problem, time_limit_s=None, mip_rel_gap=0.0)
    want = brute_force(score, allowed, hour, usage, remaining, problem.penalty)
    assert problem.objective(choice, score) == pytest.approx(want, abs=ABS)
    # the choice is feasible: masks and exact capacity
    used = np.zeros_like(remaining)
    for j, d in enumerate(choice):
        if d >= 0:
            assert allowed[j, d]
            used[hour[j], d] += usage[j]
    assert (used <= remaining).all()
    # without LP rounding the plain MILP finds the same optimum
    plain, _ = solve_batch_problem(problem, time_limit_s=None, mip_rel_gap=0.0, lp_rounding=False)
    assert problem.objective(plain, score) == pytest.approx(want, abs=ABS)


def test_reductions_fix_uncontested_jobs() -> None:
    # job 0 prefers dc0 (contested with job 1), job 2 prefers dc1 which has room for all
    score = np.array([[0.1, 0.5], [0.1, 0.2], [0.9, 0.3]])
    allowed = np.ones((3, 2), dtype=bool)
    usage = np.array([[5], [5], [5]])
    remaining = np.array([[[5], [100]]])
    problem = build_batch_problem(score, allowed, np.zeros(3, np.int64), usage, remaining, 1)
    assert problem.fixed[2] == 1  # best DC not in a binding row
    assert sorted(problem.ip_jobs.tolist()) == [0, 1]
    choice, _ = solve_batch_problem(problem, time_limit_s=None, mip_rel_gap=0.0)
    # job 0 loses 0.4 at dc1, job 1 only 0.1: job 1 moves
    assert choice.tolist() == [0, 1, 1]


def _scenario_batch(seed: int, n: int, tightness: float):  # type: ignore[no-untyped-def]
    scen = synthesize(dcs=4, areas=2, types=2, hours=1, seed=seed, resources=2)
    jobs = sample_jobs_from_demand(scen, seed=seed, token_spread=0.5).iloc[:n]
    jobs = validate_jobs(jobs.assign(sla_s=np.random.default_rng(seed).uniform(0.01, 0.1, n)),
                         scen)
    total = job_usage_units(scen, jobs).sum(axis=0)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = np.round(total[None, :] * tightness
                             * np.random.default_rng(seed).uniform(0.5, 1.5, cap.shape), 3)
    scen.ds["capacity"] = cap
    return scen, jobs, predictions_from_coefficients(scen, jobs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_not_worse_than_greedy_and_exact_ledger(seed: int) -> None:
    scen, jobs, pred = _scenario_batch(seed, 40, 0.2)
    cfg = AssignConfig(sla_hard=seed == 1, sovereignty={scen.areas[0]: scen.dcs[:2]})
    a = assign_batch_ip(scen, jobs, pred, cfg, time_limit_s=2.0)
    g = assign_greedy(scen, jobs, pred, cfg)
    assert a.info["ip_objective"] <= a.info["greedy_objective"] + ABS
    # the greedy objective reported is that of the greedy assigner on the same batch
    penalty = a.info["penalty"]
    g_obj = g.frame["score"].sum() + penalty * (g.frame["dc"] == "").sum()
    assert a.info["greedy_objective"] == pytest.approx(g_obj, abs=1e-9)
    f = a.frame
    assert a.info["ip_objective"] == pytest.approx(
        f["score"].sum() + penalty * (f["dc"] == "").sum(), abs=1e-9
    )
    # exact ledger: used ticks are the accepted jobs' ticks
    ticks = a.ledger.to_ticks(job_usage_units(scen, jobs))
    dpos = pd.Index(scen.dcs).get_indexer(f["dc"].astype(str))
    expected = np.zeros_like(a.ledger.used_ticks)
    for j in np.flatnonzero(dpos >= 0):
        expected[jobs["hour"].iloc[j], dpos[j]] += ticks[j]
    np.testing.assert_array_equal(a.ledger.used_ticks, expected)
    assert (a.ledger.used_ticks <= a.ledger.capacity_ticks).all()
    # masks
    placed = (f["dc"] != "").to_numpy()
    a0 = (jobs["area"] == scen.areas[0]).to_numpy()
    assert set(f.loc[a0 & placed, "dc"]) <= set(scen.dcs[:2])
    if cfg.sla_hard:
        assert (f.loc[placed, "predicted_service_s"] <= jobs.loc[placed, "sla_s"]).all()
    assert (f.loc[placed, "propensity"] == 1.0).all()
    assert set(f.loc[~placed, "reason"]) <= {"capacity", "sla", "sovereignty"}


def test_batch_without_contention_equals_greedy() -> None:
    scen, jobs, pred = _scenario_batch(3, 200, 10.0)
    a = assign_batch_ip(scen, jobs, pred)
    g = assign_greedy(scen, jobs, pred)
    assert a.info["ip_jobs"] == 0 and a.info["capacity_rows"] == 0
    assert a.frame["dc"].tolist() == g.frame["dc"].tolist()
    assert a.mode == "batch"


def test_batch_uses_shared_ledger_and_plan_guide() -> None:
    scen, jobs, pred = _scenario_batch(4, 30, 10.0)
    ledger = CapacityLedger.from_scenario(scen)
    # another user already holds almost everything at the cheapest DC
    best = assign_greedy(scen, jobs, pred).frame["dc"].value_counts().index[0]
    ledger.reserve(0, best, ledger.remaining_units().sel(dc=best, hour=0).values * 0.999)
    a = assign_batch_ip(scen, jobs, pred, ledger=ledger, time_limit_s=None, mip_rel_gap=0.0)
    assert a.ledger is ledger
    assert (ledger.used_ticks <= ledger.capacity_ticks).all()
    assert (a.frame["dc"] == best).sum() <= 1
    # a plan guide's shadow price on every DC but one moves everything there
    other = [d for d in scen.dcs if d != best][0]
    price = xr.DataArray(
        np.where(np.array(scen.dcs) == other, 0.0, 10.0)[:, None, None]
        * np.ones((1, len(scen.resources), 1)),
        dims=("dc", "resource", "hour"),
        coords={"dc": scen.dcs, "resource": scen.resources, "hour": [0]},
    )
    from greensched.scheduler.assign import PlanGuide

    guided = assign_batch_ip(scen, jobs, pred, guide=PlanGuide(resource_price=price))
    assert (guided.frame["dc"] == other).all()


def test_batch_rejects_exploration() -> None:
    scen, jobs, pred = _scenario_batch(5, 5, 1.0)
    with pytest.raises(AssignError, match="exploration"):
        assign_batch_ip(scen, jobs, pred, AssignConfig(explore="epsilon"))


def test_thousand_jobs_respects_time_limit() -> None:
    scen = synthesize(dcs=10, areas=4, types=3, hours=1, seed=7)
    jobs = sample_jobs_from_demand(scen, seed=7, fraction=2.0, token_spread=0.3).iloc[:1000]
    total = job_usage_units(scen, jobs).sum(axis=0)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = total[None, :] * 0.3  # every DC can hold 30 % of the batch
    scen.ds["capacity"] = cap
    pred = predictions_from_coefficients(scen, jobs)
    t0 = time.perf_counter()
    a = assign_batch_ip(scen, jobs, pred, time_limit_s=1.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0 + 1.5  # generous: shared CI machines
    assert a.info["ip_objective"] <= a.info["greedy_objective"] + ABS
    assert (a.ledger.used_ticks <= a.ledger.capacity_ticks).all()
