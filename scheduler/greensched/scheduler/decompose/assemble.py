"""Labelled plan outputs from the recovered hour solutions of a decomposed plan."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.per_query import DelayOptions, latency_summary
from greensched.scheduler.planner import OBJECTIVES, PlanResult, set_dc_flows

__all__ = ["assemble_result"]


def assemble_result(
    result: PlanResult,
    scen: Scenario,
    parts: dict[int, dict[str, Any]],
    delay: DelayOptions | None = None,
) -> None:
    """Fill ``result``'s labelled outputs from the recovered hour solutions ``parts``.

    Same fields and shapes as the monolithic planner: allocation (area, dc, query_type, hour),
    ``dc_hourly``, ``delay_s``, objective components, totals and row duals per family; for
    ``per_query`` plans also the ``latency`` summary (pool slots and cs² from ``delay``).
    """
    ds = scen.ds
    T = scen.hours
    hours = [parts[t] for t in range(T)]
    coords_x = {d: ds.indexes[d] for d in ("area", "dc", "query_type")}
    alloc = np.stack([p["x"] for p in hours], axis=-1)
    result.allocation = xr.DataArray(
        alloc,
        dims=("area", "dc", "query_type", "hour"),
        coords={**coords_x, "hour": ds.indexes["hour"]},
    ).clip(0.0, 1.0)

    def dc_hour(key: str) -> xr.DataArray:
        arr = np.stack([np.asarray(p[key]).ravel() for p in hours], axis=-1)
        return xr.DataArray(
            arr, dims=("dc", "hour"), coords={"dc": ds.indexes["dc"], "hour": ds.indexes["hour"]}
        )

    grid = dc_hour("grid")
    it = dc_hour("it_kwh")
    facility = dc_hour("facility_kwh")
    water = dc_hour("water_l")
    carbon = grid * ds["carbon_kg_per_kwh"].transpose("dc", "hour")
    renewable_used = (facility - grid).clip(min=0.0)
    f = np.sum([p["functionals"] for p in hours], axis=0)
    comps = {f"{k}_usd": float(f[i]) for i, k in enumerate(OBJECTIVES)}
    comps["total_usd"] = comps["energy_usd"] + comps["carbon_usd"] + comps["delay_usd"]
    result.objective = comps
    set_dc_flows(
        result,
        it=it,
        facility=facility,
        grid=grid,
        renewable_used=renewable_used,
        water=water,
        carbon=carbon,
    )
    delay_s = np.stack([p["delay_s"] for p in hours], axis=-1)
    result.delay_s = xr.DataArray(
        delay_s,
        dims=("area", "query_type", "hour"),
        coords={
            "area": ds.indexes["area"],
            "query_type": ds.indexes["query_type"],
            "hour": ds.indexes["hour"],
        },
    )
    if result.delay_model == "per_query" and "pool_load_s" in hours[0]:
        opts = delay or DelayOptions()
        load = xr.DataArray(
            np.stack([p["pool_load_s"] for p in hours], axis=-1),
            dims=("dc", "query_type", "hour"),
            coords={d: ds.indexes[d] for d in ("dc", "query_type", "hour")},
        )
        result.latency = latency_summary(
            scen,
            result.delay_s,
            load,
            opts.slots_of(scen),
            opts.service_scv,
            float(sum(np.sum(p["queue_s"]) for p in hours)),
            comps["delay_usd"],
        )
    duals: dict[str, xr.DataArray] = {}
    for name, (dims, dim_coords) in hours[0]["dual_dims"].items():
        if name not in hours[0]["duals"]:
            continue
        arr = np.stack([p["duals"][name] for p in hours], axis=-1)
        coords: dict[str, Any] = dict(dim_coords)
        coords["hour"] = ds.indexes["hour"]
        duals[name] = xr.DataArray(arr, dims=(*dims, "hour"), coords=coords)
    result.duals = duals
