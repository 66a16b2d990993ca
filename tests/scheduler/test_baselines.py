"""Known-answer tests of the published baselines' decision rules (hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from greensched.scheduler.assign import CapacityLedger
from greensched.scheduler.policies import (
    GreenSchedPolicy,
    PCAPSPolicy,
    PolicyContext,
    PolicyError,
    StepJobs,
)
from greensched.scheduler.policies.carbonclipper import (
    stclip_gamma,
    stclip_psi,
    stclip_psi_integral,
    stclip_rates,
)
from greensched.scheduler.policies.carbonscaler import carbonscaler_schedule
from greensched.scheduler.policies.casper import casper_milp
from greensched.scheduler.policies.pcaps import cap_alpha, cap_thresholds, pcaps_bounds, pcaps_psi
from greensched.synth import synthesize


def test_carbonscaler_four_slot_schedule_by_hand() -> None:
    # thr(j) = 0, 1, 1.8, 2.4 (diminishing), Δp = 1 per replica, I = 4, 1, 3, 2, work 4.
    # Values Δthr/(Δp·I): slot 1: 1, .8, .6; slot 3: .5, .4, .3; slot 2: .33, ...; slot 0: .25
    # Taken in order: slot1 j1..j3 (2.4 done), slot3 j1 (3.4), slot3 j2 (4.2 >= 4): [0, 3, 0, 2]
    thr = np.array([0.0, 1.0, 1.8, 2.4])
    power = np.array([0.0, 1.0, 2.0, 3.0])
    sched = carbonscaler_schedule(4.0, thr, power, np.array([4.0, 1.0, 3.0, 2.0]))
    assert sched.tolist() == [0, 3, 0, 2]
    # minimum replicas 2: the first item of a slot is j = 2 (Δthr 1.8, Δp 2)
    sched2 = carbonscaler_schedule(4.0, thr, power, np.array([4.0, 1.0, 3.0, 2.0]), 2)
    assert sched2.tolist() == [0, 3, 0, 2]
    with pytest.raises(PolicyError, match="infeasible deadline"):
        carbonscaler_schedule(10.0, thr, power, np.array([4.0, 1.0, 3.0, 2.0]))


def test_pcaps_threshold_at_given_r_gamma_l_u() -> None:
    # B = 0.5·100 + 0.5·300 = 200; Ψ = 200 + 100 (e^0.25 − 1)/(e^0.5 − 1) = 243.7823
    assert float(pcaps_psi(0.5, 0.5, 100.0, 300.0)) == pytest.approx(243.78231, abs=1e-4)
    assert float(pcaps_psi(1.0, 0.7, 100.0, 300.0)) == pytest.approx(300.0)  # r = 1: U
    assert float(pcaps_psi(0.0, 0.7, 100.0, 300.0)) == pytest.approx(0.7 * 100 + 0.3 * 300)
    assert float(pcaps_psi(0.3, 0.0, 100.0, 300.0)) == 300.0  # carbon-agnostic
    lo, up = pcaps_bounds(np.array([[3.0], [1.0], [2.0], [0.5]]), 0, window=3)
    assert (lo, up) == (pytest.approx(0.95), 3.0)


def test_cap_alpha_and_thresholds() -> None:
    a = cap_alpha(150.0, 300.0)  # W(−0.5/e) = −0.23196 → α = 1.30201
    assert a == pytest.approx(1.302, abs=1e-3)
    # the defining equation (1/α − 1) e^{1/α − 1} = (L/U − 1)/e
    y = 1.0 / a - 1.0
    assert y * math.exp(y) == pytest.approx((0.5 - 1.0) / math.e)
    phi = cap_thresholds(150.0, 300.0, 4)
    assert phi[0] == pytest.approx(300.0 / a)
    assert (np.diff(phi) < 0).all()
    assert cap_alpha(2.0, 2.0) == pytest.approx(1.0)


def test_stclip_gamma_threshold_and_rates() -> None:
    lo, up = 1.0, 4.0
    # τ = D = 0: γ is CAP's Lambert-W ratio; ψ(1) = L, ψ(0) = U/γ
    g = stclip_gamma(lo, up)
    assert g == pytest.approx(cap_alpha(lo, up))
    assert float(stclip_psi(1.0, up, 0.0, 0.0, g)) == pytest.approx(lo)
    assert float(stclip_psi(0.0, up, 0.0, 0.0, g)) == pytest.approx(up / g)
    g2 = stclip_gamma(lo, up, tau=0.1, diameter=0.2)
    assert float(stclip_psi(1.0, up, 0.1, 0.2, g2)) == pytest.approx(lo)
    # closed-form integral against the trapezoid rule
    u = np.linspace(0.2, 0.7, 20001)
    psi = stclip_psi(u, up, 0.1, 0.2, g2)
    trap = float(((psi[1:] + psi[:-1]) / 2 * np.diff(u)).sum())
    assert stclip_psi_integral(0.2, 0.7, up, 0.1, 0.2, g2) == pytest.approx(trap, rel=1e-8)
    # cost U now, L at the deadline: wait (ψ < U everywhere), then compulsory at L
    x = stclip_rates(np.array([[up], [lo]]), lo, up)
    assert x[:, 0].tolist() == pytest.approx([0.0, 1.0])
    # cost L now: ψ(w) > L until w = 1, so all of it runs now
    x = stclip_rates(np.array([[lo], [up]]), lo, up)
    assert x[:, 0].tolist() == pytest.approx([1.0, 0.0])
    # advice with ε = 0 forces the advice's cost
    adv = np.array([[0.0], [1.0], [0.0]])
    cost = np.array([[2.0], [1.0], [4.0]])
    x = stclip_rates(cost, 1.0, 4.0, advice=adv, epsilon=0.0)
    assert float((x * cost).sum()) == pytest.approx(1.0, abs=0.05)


def test_casper_program_by_hand() -> None:
    cost = np.array([[1.0, 2.0], [1.0, 2.0]])
    demand = np.array([3.0, 2.0])
    usage = np.ones((2, 1))
    per_server = np.full((2, 1), 2.0)
    allowed = np.ones((2, 2), dtype=bool)
    # K = 3 servers of 2 requests: all 5 at the cheaper DC0 (3 servers), cost 5
    x, n = casper_milp(cost, demand, usage, per_server, allowed, 3)
    assert float((x * cost).sum()) == pytest.approx(5.0)
    assert n.tolist() == [3, 0]
    # at most 2 servers per DC: 4 at DC0, 1 at DC1, cost 6
    x, n = casper_milp(cost, demand, usage, per_server, allowed, 3, max_servers=2)
    assert float((x * cost).sum()) == pytest.approx(6.0)
    assert n.sum() <= 3 and x.sum(axis=1).tolist() == [3, 2]
    with pytest.raises(PolicyError, match="no solution"):
        casper_milp(cost, demand, usage, per_server, allowed, 2)
    # origin 1 may not use DC0 (latency): origin 0 all at DC0, origin 1 at DC1: cost 3 + 4
    allowed[1, 0] = False
    x, n = casper_milp(cost, demand, usage, per_server, allowed, 3, max_servers=2)
    assert x.tolist() == [[3, 0], [0, 2]]
    assert n.tolist() == [2, 1]


def _one_dc_context(carbon: list[float]) -> PolicyContext:
    scen = synthesize(dcs=1, areas=1, types=1, hours=len(carbon), seed=0, water_budget=False)
    ctx = PolicyContext.from_scenario(scen)
    ctx.carbon_forecast_kg_per_kwh = np.array(carbon, dtype=float)[:, None]
    ctx.price_forecast_usd_per_kwh = np.full((len(carbon), 1), 0.1)
    return ctx


def _step(job_class: list[int], hours: int) -> StepJobs:
    m = len(job_class)
    return StepJobs(hour=0, index=np.arange(m), area=np.zeros(m, dtype=np.int64),
                    qtype=np.zeros(m, dtype=np.int64), tokens=np.full(m, 100.0),
                    arrival_s=np.full(m, 60.0), sla_s=np.full(m, 30.0),
                    deadline_s=np.where(np.array(job_class) == 1, hours * 3600.0, 90.0),
                    job_class=np.array(job_class, dtype=np.int64),
                    usage_ticks=np.ones((m, 3), dtype=np.int64),
                    energy_kwh=np.full((m, 1), 0.01), service_s=np.full((m, 1), 5.0),
                    hours=hours)


def test_greensched_defers_batch_work_to_the_cleaner_hour() -> None:
    ctx = _one_dc_context([0.8, 0.2, 0.5])
    pol = GreenSchedPolicy(weights=(0.0, 1.0, 0.0), guided=False)
    pol.reset(ctx)
    dec = pol.decide(_step([0, 1], 3), ctx)
    assert dec.dc.tolist() == [0, 0]
    assert dec.start_hour.tolist() == [0, 1]  # interactive now, batch at the 0.2 hour


def test_pcaps_waits_above_threshold_and_runs_when_slack_is_gone() -> None:
    # batch job r = 1 − slack/max_slack ≈ 0 → Ψ ≈ B = (L + U)/2 (γ = 0.5); hour 0: L = 0.19,
    # U = 0.8, 0.8 > 0.495 waits; hour 1: window 0.2, 0.5 → B = 0.345 ≥ 0.2 runs
    ctx = _one_dc_context([0.8, 0.2, 0.5])
    dec = PCAPSPolicy(gamma=0.5).decide(_step([0, 1], 3), ctx)
    assert dec.start_hour.tolist() == [0, 1]
    # γ = 1: Ψ ≈ L = 0.95 · window min is never reached: it runs at its latest start hour
    ctx = _one_dc_context([0.8, 0.9, 0.95])
    dec = PCAPSPolicy(gamma=1.0).decide(_step([1], 3), ctx)
    assert dec.start_hour.tolist() == [2]


def test_ledger_is_shared_across_hours() -> None:
    led = CapacityLedger(np.ones((1, 1)), hours=2, dcs=["a"], resources=["r"])
    assert led.capacity_ticks.shape == (2, 1, 1)
