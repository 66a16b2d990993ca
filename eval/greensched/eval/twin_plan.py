"""Expected totals of a planner allocation executed by the digital twin.

Split from :mod:`greensched.eval.twin` (which re-exports :func:`evaluate_allocation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.eval.twin_accounting import JobArrays
from greensched.scenario import Scenario

if TYPE_CHECKING:
    from greensched.eval.twin import Twin

__all__ = ["evaluate_allocation"]


def evaluate_allocation(
    scenario: Scenario,
    allocation: xr.DataArray,
    *,
    twin: Twin | None = None,
    mode: str = "coefficients",
) -> dict[str, Any]:
    """Expected (noise-free) totals of a planner allocation served by the twin.

    The demand of every (hour, area, query_type) is split over the DCs by the allocation's
    shares, as fractional queries (weight λ·x) with the type's mean tokens; the twin then
    evaluates those weighted jobs with the same code as :func:`~greensched.eval.simulate.simulate`.
    In ``mode="coefficients"`` energy and delay per query are the scenario's coefficients, so
    ``it_kwh``, ``grid_kwh``, ``carbon_kg``, ``water_l``, ``energy_usd`` and ``carbon_usd`` equal
    the planner's ``plan.json`` (when the plan buys no more grid power than it needs, which holds
    at every optimum with positive energy or carbon weight and prices).

    ``planner_delay_usd`` re-computes the planner's delay term Σ ρ_k (D^tran + D^prop + D^proc),
    whose transmission and processing parts are hour totals (they scale with λ), for comparison
    with ``delay_usd``, the twin's per-query delay cost Σ ρ_k λ x · delay.
    """
    from greensched.eval.twin import Twin  # the twin module re-exports this function

    tw = twin if twin is not None else Twin(scenario, mode=mode)
    if twin is not None and twin.mode != mode:
        raise GreenSchedError(f"the twin is in mode {twin.mode!r}, not {mode!r}")
    alloc = (
        allocation.reindex(
            area=scenario.areas,
            dc=scenario.dcs,
            query_type=scenario.query_types,
            hour=np.arange(scenario.hours),
            fill_value=0.0,
        )
        .fillna(0.0)
        .clip(0.0, 1.0)
        .transpose("hour", "area", "query_type", "dc")
    )
    x = np.asarray(alloc.values, dtype=np.float64)
    lam = np.asarray(
        scenario.ds["queries"].transpose("hour", "area", "query_type").values, dtype=np.float64
    )
    w = lam[..., None] * x
    hh, aa, kk, dd = np.nonzero(w > 0)
    weight = w[hh, aa, kk, dd]
    K = len(scenario.query_types)
    h_tok = np.asarray(scenario.ds["input_tokens"].values, dtype=np.float64)
    f_tok = np.asarray(scenario.ds["output_tokens"].values, dtype=np.float64)
    delta = np.asarray(
        scenario.ds["delay_limit_s"].transpose("area", "query_type").values, dtype=np.float64
    )
    jobs = JobArrays(
        job_id=np.arange(len(weight)).astype(object),
        hour=hh.astype(np.int64),
        area=aa.astype(np.int64),
        qtype=kk.astype(np.int64),
        input_tokens=h_tok[kk],
        output_tokens=f_tok[kk],
        sla_s=delta[aa, kk],
        arrival_s=hh * 3600.0 + 1800.0,
        weight=weight,
    )
    res = tw.evaluate(jobs, dd.astype(np.int64))
    totals = res["account"].totals()
    rho_k = np.asarray(scenario.ds["delay_penalty_usd_per_s"].values, dtype=np.float64)
    alpha = rho_k[kk]
    rtt = tw._rtt[aa, dd]
    per_query = res["service_s"] - rtt
    excess = np.maximum(res["service_s"] - jobs.sla_s, 0.0)
    totals["delay_usd"] = float((alpha * weight * excess).sum())
    totals["delay_linear_usd"] = float((alpha * weight * res["service_s"]).sum())
    totals["planner_delay_usd"] = float(
        (alpha * (weight * per_query + x[hh, aa, kk, dd] * rtt)).sum()
    )
    totals["queries"] = float(weight.sum())
    totals["types"] = K
    totals["dc_hourly"] = res["account"].frame(scenario)
    return totals
