"""Expected totals of a planner allocation executed by the digital twin.

Split from :mod:`greensched.eval.twin` (which re-exports :func:`evaluate_allocation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.eval.twin_accounting import JobArrays
from greensched.queueing import DEFAULT_SERVICE_SCV, default_pool_slots, hourly_wait_s
from greensched.scenario import DELAY_MODELS, Scenario

if TYPE_CHECKING:
    from greensched.eval.twin import Twin

__all__ = ["evaluate_allocation", "loaded_coefficients", "twin_pool_slots"]


def evaluate_allocation(
    scenario: Scenario,
    allocation: xr.DataArray,
    *,
    twin: Twin | None = None,
    mode: str = "coefficients",
    delay_model: str | None = None,
    pool_slots: xr.DataArray | None = None,
    service_scv: float = DEFAULT_SERVICE_SCV,
) -> dict[str, Any]:
    """Expected (noise-free) totals of a planner allocation served by the twin.

    The demand of every (hour, area, query_type) is split over the DCs by the allocation's
    shares, as fractional queries (weight λ·x) with the type's mean tokens; the twin then
    evaluates those weighted jobs with the same code as :func:`~greensched.eval.simulate.simulate`.
    In ``mode="coefficients"`` energy and delay per query are the scenario's coefficients, so
    ``it_kwh``, ``grid_kwh``, ``carbon_kg``, ``water_l``, ``energy_usd`` and ``carbon_usd`` equal
    the planner's ``plan.json`` (when the plan buys no more grid power than it needs, which holds
    at every optimum with positive energy or carbon weight and prices).

    Vocabulary (as in the planner): ``latency_s_per_query`` — the demand-weighted mean latency
    (s per query, queueing included); ``delay_cost_usd`` — the planner's delay cost of this plan
    under ``delay_model`` (default: the scenario's), as the twin measures it; ``sla_penalty_usd``
    — Σ ρ_k λ x · max(0, latency − Δ_{i,k}), the excess over the SLA (meaningful where Δ is a
    per-query SLO, i.e. under ``per_query``).

    ``delay_model="letter"``: ``delay_cost_usd`` (also ``planner_delay_usd``) re-computes the
    letter's Σ ρ_k (D^tran + D^prop + D^proc), whose transmission and processing parts are hour
    totals (they scale with λ).  ``delay_model="per_query"``: ``delay_cost_usd`` = Σ ρ_k λ x ·
    latency = ρ (λ ℓ x + queueing seconds).  In ``mode="coefficients"`` the queueing seconds of
    each (hour, dc, query_type) pool are the exact M/G/c wait
    (:func:`greensched.queueing.hourly_wait_s`) of the pool's load Σ λ x s with ``pool_slots``
    (default :func:`greensched.queueing.default_pool_slots`) and ``service_scv`` — what the
    planner's tangents under-estimate; in ``mode="physics"`` they are the twin's own queues.
    ``queueing_s`` is their total.
    """
    from greensched.eval.twin import Twin  # the twin module re-exports this function

    dm = delay_model if delay_model is not None else scenario.delay_model
    if dm not in DELAY_MODELS:
        raise GreenSchedError(f"delay_model {dm!r} is not known; expected one of {DELAY_MODELS}")

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
    letter_usd = float((alpha * (weight * per_query + x[hh, aa, kk, dd] * rtt)).sum())
    wait = np.asarray(res["wait_s"], dtype=np.float64)
    if tw.mode == "coefficients" and dm == "per_query":
        wait = _pool_wait_s(scenario, jobs, dd, tw, pool_slots, service_scv)
    latency = res["service_s"] - res["wait_s"] + wait
    excess = np.maximum(latency - jobs.sla_s, 0.0)
    n_queries = float(weight.sum())
    totals["delay_model"] = dm
    totals["latency_s_per_query"] = float((weight * latency).sum()) / max(n_queries, 1e-300)
    totals["queueing_s"] = float((weight * wait).sum())
    totals["sla_penalty_usd"] = float((alpha * weight * excess).sum())
    per_query_usd = float((alpha * weight * latency).sum())
    totals["delay_cost_usd"] = letter_usd if dm == "letter" else per_query_usd
    totals["planner_delay_usd"] = totals["delay_cost_usd"]
    totals["queries"] = float(weight.sum())
    totals["types"] = K
    totals["dc_hourly"] = res["account"].frame(scenario)
    totals["queue"] = res["queue"]
    return totals


def _pool_wait_s(
    scenario: Scenario,
    jobs: JobArrays,
    dc: np.ndarray,
    twin: Twin,
    pool_slots: xr.DataArray | None,
    service_scv: float,
) -> np.ndarray:
    """Mean wait per job of coefficient-mode pools: W(load) / queries of its (hour, dc, type)."""
    H, D, K = scenario.hours, len(scenario.dcs), len(scenario.query_types)
    slots_da = default_pool_slots(scenario) if pool_slots is None else pool_slots
    slots = np.asarray(
        slots_da.reindex(dc=scenario.ds.indexes["dc"], query_type=scenario.ds.indexes["query_type"])
        .transpose("dc", "query_type")
        .values,
        dtype=np.float64,
    )
    proc = twin._coef_proc_s[jobs.hour, dc, jobs.qtype]
    cell = (jobs.hour * D + dc) * K + jobs.qtype
    n = np.bincount(cell, weights=jobs.weight, minlength=H * D * K)
    load = np.bincount(cell, weights=jobs.weight * proc, minlength=H * D * K)
    c = np.broadcast_to(slots[None, :, :], (H, D, K)).ravel()
    total = hourly_wait_s(load, c, service_scv)
    per = np.where(n > 0, total / np.where(n > 0, n, 1.0), 0.0)
    return np.asarray(per[cell], dtype=np.float64)


def twin_pool_slots(twin: Twin) -> xr.DataArray:
    """The twin fleet's slots per (dc, query_type): replicas × batch size (``auto`` resolved).

    Pass it as ``PlanConfig(pool_slots=...)`` so the planner's queueing rows see the twin's fleet.
    """
    ds = twin.scenario.ds
    return xr.DataArray(
        np.asarray(twin.replicas_ * twin.batch_size_, dtype=np.float64),
        coords={"dc": ds.indexes["dc"], "query_type": ds.indexes["query_type"]},
        dims=("dc", "query_type"),
        name="slots",
    )


def loaded_coefficients(twin: Twin, queue: Any) -> xr.Dataset:
    """Per-query coefficients of a physics twin at the batches of a loaded state.

    For every (hour, dc, query_type), a job with the type's mean tokens at the effective batch of
    ``queue`` (a :class:`~greensched.eval.twin_accounting.QueueState`, e.g. the ``queue`` that
    :func:`evaluate_allocation` returns): ``energy_kwh_per_query`` = (fixed + decode · energy
    factor) / 3.6e6 and ``proc_delay_s_per_query`` = prefill + decode · latency factor (GPU time;
    network and queueing are the planner's own terms).  Unloaded cells are at batch 1.
    """
    if twin.mode != "physics" or queue is None:
        raise GreenSchedError("loaded_coefficients needs a physics twin and its queue state")
    scen = twin.scenario
    ds = scen.ds
    D, K = len(scen.dcs), len(scen.query_types)
    jj, kk = np.meshgrid(np.arange(D), np.arange(K), indexing="ij")
    h = np.broadcast_to(np.asarray(ds["input_tokens"].values, dtype=float), (D, K))
    f = np.broadcast_to(np.asarray(ds["output_tokens"].values, dtype=float), (D, K))
    c = twin._costs((jj, kk), h, np.round(f))
    energy = (c.energy_fixed_j[None] + c.energy_decode_j[None] * queue.energy_factor) / 3.6e6
    proc = c.time_fixed_s[None] + c.time_decode_s[None] * queue.latency_factor
    coords = {
        "hour": ds.indexes["hour"],
        "dc": ds.indexes["dc"],
        "query_type": ds.indexes["query_type"],
    }
    dims = ("hour", "dc", "query_type")
    return xr.Dataset(
        {"energy_kwh_per_query": (dims, energy), "proc_delay_s_per_query": (dims, proc)},
        coords=coords,
    )
