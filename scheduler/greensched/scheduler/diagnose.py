"""Which constraint rows of an infeasible Green-LLM scenario cannot be met (split from the planner).

:func:`diagnose_infeasibility` solves the elastic model (``build_model(elastic=True)``) and
lists the rows with slack; :func:`greensched.scheduler.planner.plan` calls it on infeasibility.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.per_query import DelayOptions

if TYPE_CHECKING:
    from greensched.scheduler.greenllm import GreenLLMModel

__all__ = ["diagnose_infeasibility", "diagnosis_message"]

_FAMILY_TEXT = {
    "power_balance": "power supply (grid cap + on-site renewables) is short of the facility load",
    "water": "the water budget is exceeded",
    "resource": "resource capacity is exceeded",
    "delay": "the delay limit cannot be met",
    "utilization": "a serving pool's utilisation cap is exceeded",
}


def _slack_scale(gm: GreenLLMModel, family: str) -> xr.DataArray | float:
    scen = gm.scenario
    ds = scen.ds
    if family == "utilization":
        assert gm.slots is not None
        return gm.max_utilization * 3600.0 * gm.slots
    if family == "power_balance":
        return (ds["grid_cap_kw"] + ds["renewable_kw"]).transpose("dc", "hour")
    if family == "water":
        # the budget itself (0 is a budget of 0 l, not "no budget"); 1 only when there is none
        return float(scen.water_budget_l) if scen.water_budget_l is not None else 1.0
    if family == "resource":
        return ds["capacity"].transpose("dc", "resource")
    if family == "delay":
        return ds["delay_limit_s"]
    raise KeyError(family)


def diagnose_infeasibility(
    scenario: Scenario,
    solver: str = "highs",
    *,
    tolerance: float = 1e-6,
    limit: int = 20,
    delay: DelayOptions | None = None,
) -> list[dict[str, Any]]:
    """Which constraint rows cannot be met, where and by how much.

    Solves the elastic model (a non-negative slack on every inequality family) minimising the
    sum of slacks, each divided by its row's scale (the limit it relaxes), and lists the rows with
    a positive slack, largest relative violation first.  Each entry has ``family``, ``where``
    (index labels), ``shortfall`` (in ``unit``), ``limit`` and ``relative``.
    """
    from greensched.scheduler.compiled import _Compiled, _load_backend
    from greensched.scheduler.greenllm import FAMILIES, build_model

    gm = build_model(scenario, elastic=True, delay=delay)
    comp = _Compiled(gm)
    c = np.zeros(comp.n)
    for family, var in gm.slacks.items():
        scale = _slack_scale(gm, family)
        scale_da = xr.DataArray(scale) if not isinstance(scale, xr.DataArray) else scale
        weight = 1.0 / np.maximum(np.abs(scale_da.broadcast_like(var.labels)), 1e-6)
        vec, _ = comp.vector((var * weight).sum())
        c += vec
    backend = _load_backend(comp, solver, None)
    backend.set_objective(c)
    sol = backend.solve()
    if not sol.status.is_ok or sol.x is None:
        return [{"family": "unknown", "where": {}, "message": f"elastic model {sol.status.value}"}]
    rows: list[dict[str, Any]] = []
    for family, var in gm.slacks.items():
        vals = comp.values(var, sol.x)
        scale = _slack_scale(gm, family)
        scale_da = (
            xr.DataArray(scale) if not isinstance(scale, xr.DataArray) else scale
        ).broadcast_like(vals)
        series = vals.to_series() if vals.ndim else pd.Series([float(vals)])
        limits = scale_da.transpose(*vals.dims).to_series() if vals.ndim else pd.Series([scale])
        for key, amount in series.items():
            lim = float(limits.loc[key]) if vals.ndim else float(limits.iloc[0])
            if amount > tolerance * max(1.0, abs(lim)):
                where = (
                    dict(zip(vals.dims, key if isinstance(key, tuple) else (key,), strict=True))
                    if vals.ndim
                    else {}
                )
                rows.append(
                    {
                        "family": family,
                        "where": {k: (int(v) if k == "hour" else str(v)) for k, v in where.items()},
                        "shortfall": float(amount),
                        "unit": FAMILIES[family][0],
                        "limit": lim,
                        "relative": float(amount) / max(abs(lim), 1e-12),
                    }
                )
    rows.sort(key=lambda r: -r["relative"])
    return rows[:limit] if limit else rows


def diagnosis_message(diagnosis: list[dict[str, Any]]) -> str:
    if not diagnosis:
        return "infeasible; no single constraint family could be identified"
    families: dict[str, int] = {}
    for row in diagnosis:
        families[row["family"]] = families.get(row["family"], 0) + 1
    first = diagnosis[0]
    if first["family"] == "unknown":
        return f"infeasible ({first.get('message', '')})"
    where = ", ".join(f"{k}={v!r}" for k, v in first["where"].items()) or "whole horizon"
    more = "; ".join(f"{f}: {n} row(s)" for f, n in families.items())
    return (
        f"infeasible: {_FAMILY_TEXT.get(first['family'], first['family'])} at {where}: short by "
        f"{first['shortfall']:.6g} {first['unit']} (limit {first['limit']:.6g} {first['unit']}); "
        f"rows that cannot be met — {more}"
    )
