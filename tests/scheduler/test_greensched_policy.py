"""GreenSched's spatio-temporal policy: joint placement, forecast-demand and SLA headroom."""

from __future__ import annotations

import numpy as np
import pytest

from greensched.scheduler.policies import GreenSchedPolicy, PolicyContext, PolicyError, StepJobs
from greensched.scheduler.policies.spatiotemporal import demand_headroom, joint_cells
from greensched.synth import synthesize


def test_demand_headroom_fills_the_cheapest_dcs_first() -> None:
    remaining = np.full((2, 2, 1), 10, dtype=np.int64)
    demand = np.array([[0.0], [15.0]])
    cost = np.array([[1.0, 2.0], [2.0, 1.0]])
    left = demand_headroom(remaining, demand, cost)
    # hour 0: no forecast demand; hour 1: DC1 (cheaper) full, DC0 takes the other 5
    assert left[:, :, 0].tolist() == [[10, 10], [5, 0]]
    # more demand than capacity: nothing is left, never below zero
    assert demand_headroom(remaining, np.array([[0.0], [50.0]]), cost)[1].sum() == 0


def test_joint_cells_gives_the_clean_capacity_to_the_small_jobs() -> None:
    # a clean cell of 10 ticks (key 1 per job) and a dirty one (key 2); a big job (10 ticks)
    # arrives before two small ones (5 each).  Arrival order: big clean, small dirty: 1 + 2 + 2;
    # joint: both small clean, big dirty: 1 + 1 + 2.
    key = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    usage = np.array([[10], [5], [5]], dtype=np.int64)
    remaining = np.array([[10], [100]], dtype=np.int64)
    cell, facts = joint_cells(key, usage, remaining, np.array([0.0, 1.0, 2.0]), 1, 1.0)
    assert cell.tolist() == [1, 0, 0]
    assert str(facts["status"]).startswith("Optimal")


def _context(carbon: list[list[float]]) -> PolicyContext:
    c = np.asarray(carbon, dtype=float)
    scen = synthesize(dcs=c.shape[1], areas=1, types=1, hours=c.shape[0], seed=0,
                      water_budget=False)
    ctx = PolicyContext.from_scenario(scen)
    ctx.carbon_forecast_kg_per_kwh = c.copy()
    ctx.price_forecast_usd_per_kwh = np.full(c.shape, 0.1)
    return ctx


def _step(job_class: list[int], usage: list[int], service: list[list[float]], hours: int,
          sla_s: float = 30.0) -> StepJobs:
    m = len(job_class)
    D = len(service[0])
    return StepJobs(hour=0, index=np.arange(m), area=np.zeros(m, dtype=np.int64),
                    qtype=np.zeros(m, dtype=np.int64), tokens=np.full(m, 100.0),
                    arrival_s=60.0 + np.arange(m, dtype=float), sla_s=np.full(m, sla_s),
                    deadline_s=np.where(np.array(job_class) == 1, hours * 3600.0, 60 + sla_s),
                    job_class=np.array(job_class, dtype=np.int64),
                    usage_ticks=np.array(usage, dtype=np.int64)[:, None].repeat(3, axis=1),
                    energy_kwh=np.full((m, D), 0.01),
                    service_s=np.array(service, dtype=float), hours=hours)


def test_joint_policy_packs_small_jobs_where_arrival_order_does_not() -> None:
    def run(joint: bool) -> list[int]:
        ctx = _context([[0.1, 0.8]])
        ctx.ledger.capacity_ticks[0, 0] = 10  # the clean DC holds 10 ticks
        pol = GreenSchedPolicy(weights=(0.0, 1.0, 0.0), joint=joint)
        pol.reset(ctx)
        dec = pol.decide(_step([0, 0, 0], [10, 5, 5], [[1.0, 1.0]] * 3, 1), ctx)
        assert (ctx.ledger.used_ticks <= ctx.ledger.capacity_ticks).all()
        return dec.dc.tolist()

    assert run(True) == [1, 0, 0]
    assert run(False) == [0, 1, 1]


def test_sla_headroom_steers_interactive_jobs_off_slow_cells() -> None:
    # DC0 is clean but its predicted mean service (10 s) is over 0.35 x SLA (20 s): with the
    # headroom the job takes DC1 (3 s); without it, DC0 (10 s ≤ 20 s)
    for headroom, want in ((0.35, 1), (1.0, 0)):
        ctx = _context([[0.1, 0.8]])
        pol = GreenSchedPolicy(weights=(0.0, 0.5, 0.5), sla_headroom=headroom)
        pol.reset(ctx)
        dec = pol.decide(_step([0], [1], [[10.0, 3.0]], 1, sla_s=20.0), ctx)
        assert dec.dc.tolist() == [want]


def test_deferral_only_into_capacity_the_forecast_demand_leaves() -> None:
    # one DC, hour 1 much cleaner; the forecast of hour 1's own arrivals is the step's usage
    # scaled by the demand profile (queries[1] / queries[0])
    def start(capacity_hour1: int, reserve: bool) -> int:
        ctx = _context([[0.8], [0.2]])
        ctx.ledger.capacity_ticks[1] = capacity_hour1
        pol = GreenSchedPolicy(weights=(0.0, 1.0, 0.0), reserve_forecast=reserve)
        pol.reset(ctx)
        dec = pol.decide(_step([1], [4], [[5.0]], 2), ctx)
        return int(dec.start_hour[0])

    ctx = _context([[0.8], [0.2]])
    q = ctx.scenario.ds["queries"].sum(["area", "query_type"]).values
    forecast = int(np.ceil(4 * q[1] / q[0]))
    assert start(10 * forecast + 10, True) == 1  # room beyond the forecast demand: defer
    assert start(forecast, True) == 0  # hour 1's arrivals will need it all: run now
    assert start(forecast, False) == 1  # without the headroom it would have deferred


def test_defer_margin_keeps_small_forecast_savings_now() -> None:
    # hour 1 is 10 % cleaner: under the 25 % margin the batch job runs now; margin 0 defers
    for margin, want in ((0.25, 0), (0.0, 1)):
        ctx = _context([[0.5], [0.45]])
        pol = GreenSchedPolicy(weights=(0.0, 1.0, 0.0), defer_margin=margin)
        pol.reset(ctx)
        assert pol.decide(_step([1], [1], [[5.0]], 2), ctx).start_hour.tolist() == [want]


@pytest.mark.parametrize("bad", [{"sla_headroom": 0.0}, {"sla_headroom": 1.5},
                                 {"defer_margin": -0.1}, {"time_limit_s": 0.0}])
def test_bad_parameters_name_the_field(bad: dict[str, float]) -> None:
    with pytest.raises(PolicyError, match=next(iter(bad))):
        GreenSchedPolicy(**bad)  # type: ignore[arg-type]


def test_batch_ip_policy_reports_status_and_gap_per_step() -> None:
    from greensched.scheduler.policies import BatchIPPolicy

    with pytest.raises(PolicyError, match="time_limit_s"):
        BatchIPPolicy(time_limit_s=0.0)
    ctx = _context([[0.1, 0.8]])
    ctx.ledger.capacity_ticks[0, 0] = 10
    pol = BatchIPPolicy(weights=(0.0, 1.0, 0.0))
    pol.reset(ctx)
    step = _step([0, 0, 0], [10, 5, 5], [[1.0, 1.0]] * 3, 1)
    step.usage_ticks = step.usage_ticks[:, :1]
    dec = pol.decide(step, ctx)
    assert set(dec.info) >= {"status", "gap", "solve_s"} and dec.info["gap"] >= 0.0
    assert (ctx.ledger.used_ticks <= ctx.ledger.capacity_ticks).all()


def test_batch_problem_stops_at_the_lp_rounding_when_asked() -> None:
    from greensched.scheduler.batch_ip import build_batch_problem, solve_batch_problem

    # the knapsack case of joint_cells: the LP places both small jobs clean and the big one
    # dirty, integrally; the rounding is optimal and its gap to the LP bound is 0
    score = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    usage = np.array([[10], [5], [5]], dtype=np.int64)
    problem = build_batch_problem(score, np.ones((3, 2), dtype=bool), np.zeros(3, dtype=np.int64),
                                  usage, np.array([[[10], [100]]]), 1)
    start = np.array([0, 1, 1])
    choice, facts = solve_batch_problem(problem, start=start, full_milp=False, max_nodes=10)
    assert choice.tolist() == [1, 0, 0]
    assert facts["gap"] == pytest.approx(0.0, abs=1e-9)


def test_milp_policies_stop_on_work_not_on_the_clock() -> None:
    """Decisions must not depend on the machine's load: no wall-clock limit by default, and a
    node limit that binds ends with the incumbent (HiGHS's node-limit status), not an error."""
    from greensched.scheduler.batch_ip import build_batch_problem, solve_batch_problem
    from greensched.scheduler.policies import BatchIPPolicy

    assert GreenSchedPolicy().time_limit_s is None and GreenSchedPolicy().max_nodes == 20
    assert BatchIPPolicy().time_limit_s is None and BatchIPPolicy().max_nodes == 20
    rng = np.random.default_rng(3)  # a case where one node does not close the gap
    m, d = 40, 6
    score = rng.uniform(1.0, 2.0, (m, d))
    usage = rng.integers(3, 9, (m, 1))
    remaining = np.full((1, d, 1), int(usage.sum() / d * 0.9))
    problem = build_batch_problem(score, np.ones((m, d), dtype=bool), np.zeros(m, dtype=np.int64),
                                  usage, remaining, 1)
    runs = [solve_batch_problem(problem, start=np.full(m, -1), time_limit_s=None,
                                mip_rel_gap=0.0, max_nodes=1, restart=False, lp_rounding=False)
            for _ in range(2)]
    (c1, f1), (c2, f2) = runs
    assert c1.tolist() == c2.tolist() and f1["objective"] == f2["objective"]
    assert f1["status"] == "Solution limit reached" and 0 < f1["gap"] < 1e-3
    placed = c1 >= 0
    for dc in range(d):  # the capacity holds
        assert usage[placed & (c1 == dc), 0].sum() <= remaining[0, dc, 0]


def test_sla_mask_holds_under_carbon_only_weights() -> None:
    """With carbon-only weights the delay term is 0, so only the mask keeps an interactive job
    off a clean DC whose predicted service time exceeds the headroom (0.35 × 30 s = 10.5 s);
    a job no DC can serve within the headroom still gets the cleanest DC."""
    def run(mask: bool, service: list[float]) -> int:
        ctx = _context([[0.1, 0.8]])
        pol = GreenSchedPolicy(weights=(0.0, 1.0, 0.0), sla_mask=mask)
        pol.reset(ctx)
        return int(pol.decide(_step([0], [5], [service], 1), ctx).dc[0])

    assert run(True, [20.0, 5.0]) == 1  # the clean DC is too slow: the fast one
    assert run(False, [20.0, 5.0]) == 0  # without the mask carbon alone decides
    assert run(True, [25.0, 20.0]) == 0  # neither is within the headroom: carbon decides
