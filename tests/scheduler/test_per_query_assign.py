"""The greedy assigner sees congestion in per_query scenarios (same M/G/c wait as the planner)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from greensched.jobs import validate_jobs
from greensched.queueing import default_pool_slots
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, assign_greedy
from greensched.synth import synthesize

N_JOBS = 1800  # in one hour, s = 1 s each: 0.5 Erlang if all at one DC


def _scenario(delay_model: str) -> Scenario:
    """Two DCs, one area, one type; 1 resource unit per query; 2000 and 10⁶ units per hour.

    The default pool rule gives the near DC c = ceil(2000 · 1 / 3600 / 0.7) = 1 slot (M/M/1)
    and the far one 397 slots (no wait to speak of).
    """
    scen = synthesize(2, 1, 1, 1, seed=0)
    ds = scen.ds
    ds["input_tokens"][:] = 500.0
    ds["output_tokens"][:] = 500.0
    ds["delay_s_per_token"][:] = 1.0 / 1000.0
    ds["units_per_token"][:] = 0.0
    ds["units_per_token"].loc[{"resource": "gpu"}] = 1.0 / 1000.0
    ds["capacity"][:] = 1e9
    ds["capacity"].loc[{"resource": "gpu"}] = np.array([2000.0, 1e6])
    scen.delay_model = delay_model
    return scen


def _jobs(scen: Scenario) -> pd.DataFrame:
    return validate_jobs(
        pd.DataFrame(
            {
                "job_id": [f"j{i}" for i in range(N_JOBS)],
                "arrival_s": np.linspace(0.0, 3599.0, N_JOBS),
                "area": scen.areas[0],
                "query_type": scen.query_types[0],
                "input_tokens": 500,
                "output_tokens": 500,
                "sla_s": 30.0,
            }
        ),
        scen,
    )


def _preds(jobs: pd.DataFrame, dcs: list[str]) -> xr.Dataset:
    n = len(jobs)
    service = np.tile([1.0, 1.5], (n, 1))  # the far DC adds 0.5 s of network
    return xr.Dataset(
        {"energy_kwh": (("job", "dc"), np.zeros((n, 2))), "service_s": (("job", "dc"), service)},
        coords={"job": jobs["job_id"].to_numpy(), "dc": dcs},
    )


def test_congestion_splits_load_where_the_marginal_wait_equals_the_latency_gap() -> None:
    cfg = AssignConfig(weights={"energy": 0.0, "carbon": 0.0, "delay": 1.0}, delay_cost="linear")
    a_star = 1.0 - math.sqrt(6.0) / 3.0
    for model, near_erlangs in (("letter", N_JOBS / 3600.0), ("per_query", a_star)):
        scen = _scenario(model)
        assert default_pool_slots(scen).values.tolist() == [[1.0], [397.0]]
        jobs = _jobs(scen)
        frame = assign_greedy(scen, jobs, _preds(jobs, scen.dcs), cfg).frame
        near = float((frame["dc"] == scen.dcs[0]).sum()) * 1.0 / 3600.0  # Erlangs (s = 1 s)
        # letter: latency alone, everything at the near DC (its capacity holds 2000 jobs);
        # per_query: the marginal M/M/1 wait W'(L) = (2a − a²)/(1 − a)² reaches the 0.5 s gap at
        # a* = 1 − √6/3 Erlangs at the near DC (the planner's known answer), up to one chunk
        assert near == pytest.approx(near_erlangs, abs=0.02)
