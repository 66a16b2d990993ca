"""One contract over every policy: capacity, start windows, determinism, all placed when easy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greensched.scheduler.assign import predictions_from_coefficients, sample_jobs_from_demand
from greensched.scheduler.assign.inputs import _job_codes
from greensched.scheduler.planner import plan
from greensched.scheduler.policies import (
    POLICY_NAMES,
    PolicyContext,
    PolicyError,
    StepJobs,
    make_policy,
    run_schedule,
)
from greensched.synth import synthesize


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    scen = synthesize(dcs=3, areas=2, types=2, hours=6, seed=3, water_budget=False)
    jobs = sample_jobs_from_demand(scen, seed=1, fraction=0.02)
    pred = predictions_from_coefficients(scen, jobs)
    c = _job_codes(scen, jobs)
    rng = np.random.default_rng(5)
    job_class = (rng.random(len(jobs)) < 0.5).astype(np.int64)
    deadline = np.where(job_class == 1, c["arrival"] + 3 * 3600.0, c["arrival"] + c["sla"])
    arrays = dict(hour=c["hour"], area=c["area"], qtype=c["qtype"], tokens=c["tokens"],
                  arrival_s=c["arrival"], sla_s=c["sla"], deadline_s=deadline,
                  job_class=job_class, energy_kwh=pred["energy_kwh"].values,
                  service_s=pred["service_s"].values)
    return {"scenario": scen, "arrays": arrays, "plan": plan(scen)}


def _run(case: dict[str, Any], name: str, capacity_scale: float = 1.0, seed: int = 0,
         **params: Any) -> Any:
    ctx = PolicyContext.from_scenario(case["scenario"], seed=seed, plan=case["plan"])
    if capacity_scale != 1.0:
        ctx.ledger.capacity_ticks = np.floor(ctx.ledger.capacity_ticks * capacity_scale).astype(
            np.int64
        )
    sched = run_schedule(make_policy(name, **params), ctx, **case["arrays"])
    return sched, ctx


def _latest_start(case: dict[str, Any]) -> np.ndarray:
    a = case["arrays"]
    step = StepJobs(hour=0, index=np.arange(len(a["hour"])), area=a["area"], qtype=a["qtype"],
                    tokens=a["tokens"], arrival_s=a["arrival_s"], sla_s=a["sla_s"],
                    deadline_s=a["deadline_s"], job_class=a["job_class"],
                    usage_ticks=np.zeros((len(a["hour"]), 1), dtype=np.int64),
                    energy_kwh=a["energy_kwh"], service_s=a["service_s"],
                    hours=case["scenario"].hours)
    return step.latest_start_s


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_policy_contract(case: dict[str, Any], name: str) -> None:
    a = case["arrays"]
    # tight capacity: a quarter of what the scenario has, so that capacity binds
    sched, ctx = _run(case, name, capacity_scale=0.002)
    led = ctx.ledger
    assert (led.used_ticks <= led.capacity_ticks).all(), "reserved more than the capacity"
    placed = sched.dc >= 0
    assert placed.any()
    assert (sched.start_s[placed] >= a["arrival_s"][placed] - 1e-9).all()
    assert (sched.start_s[placed] <= _latest_start(case)[placed] + 1e-6).all()
    inter = a["job_class"] == 0
    assert (sched.start_hour[inter] == a["hour"][inter]).all()
    # deterministic per seed
    again, _ = _run(case, name, capacity_scale=0.002)
    assert np.array_equal(again.dc, sched.dc)
    assert np.array_equal(again.start_hour, sched.start_hour)
    # ample capacity: everything placed
    easy, _ = _run(case, name)
    assert (easy.dc >= 0).all()


def test_temporal_policies_defer_some_batch_jobs(case: dict[str, Any]) -> None:
    a = case["arrays"]
    # GreenSched defers only for a forecast saving above defer_margin (25 % by default, under
    # which it defers nothing in this small case); without the margin it defers
    for name, params in (("greensched", {"defer_margin": 0.0}), ("carbonscaler", {}),
                         ("carbonclipper", {})):
        sched, _ = _run(case, name, **params)
        deferred = sched.start_hour > a["hour"]
        assert deferred.any(), name
        assert (a["job_class"][deferred] == 1).all(), name


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(PolicyError, match="pcaps"):
        make_policy("pcap")
    with pytest.raises(PolicyError, match="bad parameters"):
        make_policy("pcaps", gama=0.3)


def test_each_step_observes_its_hour(case: dict[str, Any]) -> None:
    scen = case["scenario"]
    ctx = PolicyContext.from_scenario(scen, seed=2, forecast_error=0.3, plan=case["plan"])
    truth = scen.ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    assert not np.allclose(ctx.carbon_forecast_kg_per_kwh, truth)  # a forecast with error
    run_schedule(make_policy("greensched"), ctx, **case["arrays"])
    assert np.array_equal(ctx.carbon_forecast_kg_per_kwh, truth)  # every hour was observed
