"""Feasibility masks: where each workload class may run, from latency, law and capacity.

For workload class w, client area a and compute node (DC) d, the end-to-end latency of one
request is (milliseconds)

    ℓ[w, a, d] = 1000 · ( rtt_s[a, d] + β[a, k] (h_k + f_k) / B[a, d] + s[k, d] )

with k the class's query type, β the data per token (the largest over the horizon), h, f the
tokens per query, B the bandwidth and s the predicted service time per query (an input: the
scenario's per-query processing delay by default, or any predicted table, e.g. the predictor's
``coefficients.csv``; the largest over the horizon). Then

    F[w, a, d] = (ℓ ≤ L_w)  ∧  law_w(a, d)  ∧  (capacity[d, r] ≥ need_w[r] ∀ r)

:func:`feasibility_masks` returns these as one labelled :class:`xarray.Dataset` (dims
``workload, area, dc``), the one object the relocation placement, the assigner (via
:func:`allow_lists`) and the equity model (via :func:`query_type_mask`) read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.relocation.config import RelocationConfig, RelocationError

__all__ = [
    "allow_lists",
    "class_inputs",
    "feasibility_masks",
    "home_dcs",
    "query_type_mask",
    "route_mask",
]


def home_dcs(scenario: Scenario, config: RelocationConfig) -> dict[str, str]:
    """Home DC (service node) of every area: ``[homes]`` or the least-RTT DC (first on ties)."""
    rtt = scenario.ds["rtt_s"].transpose("area", "dc").values
    dcs = scenario.dcs
    return {
        a: config.homes.get(a, dcs[int(np.argmin(rtt[i]))]) for i, a in enumerate(scenario.areas)
    }


def _service_s(
    scenario: Scenario, config: RelocationConfig, service_s: xr.DataArray | None
) -> xr.DataArray:
    """Service seconds per query as (workload, dc)."""
    qt = xr.DataArray(
        [c.query_type for c in config.classes],
        dims="workload",
        coords={"workload": config.class_ids},
    )
    if service_s is None:
        src = scenario.proc_delay_s_per_query()
    else:
        src = service_s
        if "dc" not in src.dims or not ({"query_type", "workload"} & set(src.dims)):
            raise RelocationError(
                f"service_s must have dims dc and query_type (or workload); got {src.dims}"
            )
        missing = sorted(set(scenario.dcs) - {str(d) for d in src["dc"].values})
        if missing:
            raise RelocationError(f"service_s has no values for dc {missing}")
        if float(src.min()) < 0 or not bool(np.isfinite(src).all()):
            raise RelocationError("service_s must be finite and >= 0 seconds")
    if "hour" in src.dims:
        src = src.max("hour")
    if "workload" in src.dims:
        out = src.sel(workload=config.class_ids, dc=scenario.dcs)
    else:
        out = src.sel(query_type=qt, dc=scenario.dcs)
        out = out.drop_vars("query_type", errors="ignore")
    return out.transpose("workload", "dc").astype(float)


def class_inputs(
    scenario: Scenario,
    config: RelocationConfig,
    *,
    service_s: xr.DataArray | None = None,
) -> xr.Dataset:
    """Per-class inputs of the relocation analysis as labelled arrays.

    Parameters
    ----------
    scenario
        The scenario (areas = clients, DCs = compute nodes).
    config
        Classes and settings (checked against the scenario here).
    service_s
        Predicted service seconds per query, dims ``dc`` and ``query_type`` or ``workload``
        (optionally ``hour``: the largest value is used). ``None``: the scenario's per-query
        processing delay (``coefficients.csv`` where loaded).

    Returns
    -------
    xarray.Dataset
        ``latency_ms``, ``rtt_ms``, ``transmission_ms`` (workload, area, dc); ``service_ms``
        (workload, dc); ``law_ok`` (workload, area, dc); ``capacity_ok`` (workload, dc);
        ``queries`` (workload, area, hour); ``energy_kwh_per_query`` (IT, workload, dc, hour);
        ``gpu_units_per_query`` (workload, resource); ``budget_ms`` (workload);
        ``home`` (area, the service node DC) and ``home_region`` (area).
    """
    config.check(scenario)
    ds = scenario.ds
    ids = config.class_ids
    qts = [c.query_type for c in config.classes]
    qt = xr.DataArray(qts, dims="workload", coords={"workload": ids})
    tokens = (ds["input_tokens"] + ds["output_tokens"]).sel(query_type=qt)
    beta = ds["token_size"].max("hour").sel(query_type=qt)
    trans_s = beta * tokens / ds["bandwidth"]
    rtt_ms = ds["rtt_s"] * 1000.0
    serv = _service_s(scenario, config, service_s)
    latency = rtt_ms + 1000.0 * trans_s + 1000.0 * serv
    latency = latency.drop_vars("query_type", errors="ignore").transpose("workload", "area", "dc")
    law = np.zeros((len(ids), len(scenario.areas), len(scenario.dcs)), dtype=bool)
    dc_pos = {d: j for j, d in enumerate(scenario.dcs)}
    for w, c in enumerate(config.classes):
        for a, area in enumerate(scenario.areas):
            for d in config.allowed_dcs(c, area, scenario.dcs):
                law[w, a, dc_pos[d]] = True
    cap = np.ones((len(ids), len(scenario.dcs)), dtype=bool)
    capacity = ds["capacity"].transpose("dc", "resource")
    for w, c in enumerate(config.classes):
        for r, need in c.capacity_need.items():
            cap[w] &= capacity.sel(resource=r).values * config.capacity_share >= need
    coords3 = {"workload": ids, "area": scenario.areas, "dc": scenario.dcs}
    share = xr.DataArray(
        [c.demand_share for c in config.classes], dims="workload", coords={"workload": ids}
    )
    queries = (ds["queries"].sel(query_type=qt) * share).drop_vars("query_type", errors="ignore")
    energy = scenario.energy_kwh_per_query().sel(query_type=qt).drop_vars("query_type")
    gpu = (ds["units_per_token"].sel(query_type=qt) * tokens).drop_vars("query_type")
    homes = home_dcs(scenario, config)
    out = xr.Dataset(
        {
            "latency_ms": latency,
            "rtt_ms": rtt_ms.broadcast_like(latency).transpose("workload", "area", "dc"),
            "transmission_ms": (1000.0 * trans_s)
            .drop_vars("query_type", errors="ignore")
            .transpose("workload", "area", "dc"),
            "service_ms": 1000.0 * serv,
            "law_ok": (("workload", "area", "dc"), law),
            "capacity_ok": (("workload", "dc"), cap),
            "queries": queries.transpose("workload", "area", "hour"),
            "energy_kwh_per_query": energy.transpose("workload", "dc", "hour"),
            "gpu_units_per_query": gpu.transpose("workload", "resource"),
            "budget_ms": ("workload", [c.latency_budget_ms for c in config.classes]),
            "home": ("area", [homes[a] for a in scenario.areas]),
            "home_region": ("area", [config.region_of(homes[a]) for a in scenario.areas]),
        },
        coords=coords3 | {"hour": ds["hour"].values, "resource": scenario.resources},
    )
    out["query_type"] = ("workload", qts)
    return out


def feasibility_masks(
    scenario: Scenario,
    config: RelocationConfig,
    *,
    service_s: xr.DataArray | None = None,
    budgets_ms: Mapping[str, float] | None = None,
    inputs: xr.Dataset | None = None,
) -> xr.Dataset:
    """Feasibility masks F[w, a, d] of every workload class (module docstring).

    Parameters
    ----------
    scenario, config, service_s
        As in :func:`class_inputs`.
    budgets_ms
        Latency budgets replacing the classes' declared ones (class id → ms), e.g. one point
        of a frontier sweep.
    inputs
        Precomputed :func:`class_inputs` (skips recomputing them).

    Returns
    -------
    xarray.Dataset
        Dims ``workload, area, dc``: ``feasible`` (bool), its parts ``latency_ok``, ``law_ok``,
        ``capacity_ok`` and ``latency_ms``; ``budget_ms`` (workload) and ``home`` (area).
        ``feasible.attrs["empty"]`` lists ``(workload, area)`` pairs with no feasible node.
    """
    inp = class_inputs(scenario, config, service_s=service_s) if inputs is None else inputs
    budget = inp["budget_ms"].copy()
    if budgets_ms:
        unknown = sorted(set(budgets_ms) - set(config.class_ids))
        if unknown:
            raise RelocationError(f"budgets_ms names unknown classes {unknown}")
        for k, v in budgets_ms.items():
            budget.loc[{"workload": k}] = float(v)
    latency_ok = inp["latency_ms"] <= budget + 1e-9
    capacity_ok = inp["capacity_ok"].broadcast_like(latency_ok)
    feasible = latency_ok & inp["law_ok"] & capacity_ok
    any_ok = feasible.any("dc").values
    empty = [
        (str(w), str(a))
        for wi, w in enumerate(feasible["workload"].values)
        for ai, a in enumerate(feasible["area"].values)
        if not any_ok[wi, ai]
    ]
    feasible.attrs["empty"] = empty
    return xr.Dataset(
        {
            "feasible": feasible.transpose("workload", "area", "dc"),
            "latency_ok": latency_ok.transpose("workload", "area", "dc"),
            "law_ok": inp["law_ok"],
            "capacity_ok": capacity_ok.transpose("workload", "area", "dc"),
            "latency_ms": inp["latency_ms"],
            "budget_ms": budget,
            "home": inp["home"],
        }
    )


def allow_lists(masks: xr.Dataset, workload: str) -> dict[str, list[str]]:
    """Area → allowed DCs of one class, the assigner's ``sovereignty`` map format."""
    f = masks["feasible"].sel(workload=workload).transpose("area", "dc")
    dcs = [str(d) for d in f["dc"].values]
    return {
        str(a): [dcs[j] for j in np.flatnonzero(row)]
        for a, row in zip(f["area"].values, f.values, strict=True)
    }


def query_type_mask(masks: xr.Dataset, query_types: xr.DataArray, how: str = "all") -> xr.DataArray:
    """Mask by (area, query_type, dc), for models that index query types, not classes.

    Parameters
    ----------
    masks
        From :func:`feasibility_masks`.
    query_types
        The query type of each class (dims ``workload``; ``class_inputs(...)["query_type"]``).
    how
        ``"all"``: a DC is allowed for a type when every class of the type may use it (safe);
        ``"any"``: when one class may.
    """
    if how not in ("all", "any"):
        raise RelocationError(f"how must be 'all' or 'any' (got {how!r})")
    f = masks["feasible"]
    parts = []
    types = sorted({str(q) for q in query_types.values})
    for q in types:
        sel = f.sel(
            workload=[
                w for w, t in zip(f["workload"].values, query_types.values, strict=True) if t == q
            ]
        )
        parts.append(sel.all("workload") if how == "all" else sel.any("workload"))
    out = xr.concat(parts, dim="query_type").assign_coords(query_type=types)
    return out.transpose("area", "query_type", "dc")


def route_mask(masks: xr.Dataset, how: str = "all") -> xr.DataArray:
    """Mask by (dc, area) over all classes: the equity model's ``route_mask`` layout.

    ``how="all"``: DC d may serve area a when every class may use it there; ``"any"``: when
    one class may. ``route_mask(m).values`` is the ``[dc, region]`` array of
    :class:`greensched.scheduler.equity.problem.EquityProblem` when its regions are the areas.
    """
    if how not in ("all", "any"):
        raise RelocationError(f"how must be 'all' or 'any' (got {how!r})")
    f = masks["feasible"]
    out = f.all("workload") if how == "all" else f.any("workload")
    return out.transpose("dc", "area")
