"""The energy–latency frontier of each workload class and its slopes (EROL, CROL).

For class w, the frontier is the optimal placement as a function of w's latency budget L_w, all
other classes kept at their declared budgets. The mask F changes only where L_w crosses a
latency ℓ[w, a, d] of an allowed node, so the frontier is a step function and evaluating it at
those breakpoints is exact: between two breakpoints nothing changes.

Slopes between consecutive feasible points L_p < L_q (relaxing the budget by L_q − L_p):

    EROL = (energy cost(L_p) − energy cost(L_q)) / (L_q − L_p)        USD per ms
    CROL = (carbon(L_p) − carbon(L_q)) / (L_q − L_p)                  kg CO2 per ms

Both are "saved per ms relaxed" (positive = relaxing saves), evaluated on the class's own
energy cost and carbon.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scheduler.relocation.config import RelocationConfig
from greensched.scheduler.relocation.masks import feasibility_masks
from greensched.scheduler.relocation.placement import PlacementModel

__all__ = ["budget_breakpoints", "frontier", "slopes"]


def budget_breakpoints(
    inputs: xr.Dataset, workload: str, *, max_points: int = 60, extra: tuple[float, ...] = ()
) -> np.ndarray:
    """Budgets (ms) where class ``workload``'s mask changes, from the tightest usable one.

    The tightest usable budget is max over areas of the least latency to an allowed node
    (below it some area has no node at all). Breakpoints beyond ``max_points`` are thinned
    evenly (the first, the last and ``extra`` budgets are always kept).
    """
    lat = inputs["latency_ms"].sel(workload=workload)
    ok = inputs["law_ok"].sel(workload=workload) & inputs["capacity_ok"].sel(workload=workload)
    vals = lat.where(ok)
    tight = float(vals.min("dc").max("area"))
    cand = np.unique(np.round(vals.values[np.isfinite(vals.values)], 9))
    cand = cand[cand >= tight - 1e-9]
    extra_arr = np.array([e for e in extra if e >= tight - 1e-9], dtype=float)
    if len(cand) > max_points:
        keep = np.unique(np.round(np.linspace(0, len(cand) - 1, max_points)).astype(int))
        cand = cand[keep]
    return np.unique(np.concatenate([cand, extra_arr]))


def slopes(points: pd.DataFrame) -> pd.DataFrame:
    """Add ``erol_usd_per_ms`` and ``crol_kg_per_ms`` (secant to the previous feasible point)."""
    out = points.copy()
    out["erol_usd_per_ms"] = np.nan
    out["crol_kg_per_ms"] = np.nan
    for _, grp in out.groupby("workload", sort=False):
        ok = grp[grp["status"] == "optimal"]
        if len(ok) < 2:
            continue
        dl = np.diff(ok["budget_ms"].to_numpy())
        de = -np.diff(ok["energy_usd"].to_numpy())
        dc = -np.diff(ok["carbon_kg"].to_numpy())
        out.loc[ok.index[1:], "erol_usd_per_ms"] = de / dl
        out.loc[ok.index[1:], "crol_kg_per_ms"] = dc / dl
    return out


def frontier(
    model: PlacementModel,
    config: RelocationConfig,
    inputs: xr.Dataset,
    *,
    workloads: list[str] | None = None,
    budgets_ms: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Sweep each class's budget over its breakpoints and solve the placement at each.

    Parameters
    ----------
    model
        The placement LP of the scenario and classes.
    config, inputs
        Classes and their :func:`~greensched.scheduler.relocation.masks.class_inputs`.
    workloads
        Classes to sweep (default: all).
    budgets_ms
        Budgets per class replacing the breakpoints (for custom sweeps).
    progress
        Called as ``progress(done, total)`` after every solve.

    Returns
    -------
    pandas.DataFrame
        One row per (workload, budget): ``budget_ms``, ``relax_ms`` (above the tightest
        budget), ``status``, the class's ``energy_usd``, ``carbon_kg``, ``carbon_usd``,
        ``friction_usd``, ``objective_usd``, ``moved_share``, ``mean_latency_ms``, the
        whole fleet's ``fleet_objective_usd`` and ``fleet_carbon_kg``, ``feasible_nodes``
        (mean mask size over areas), ``solve_s``, and the slopes of :func:`slopes`.
    """
    rows = []
    declared = {c.id: c.latency_budget_ms for c in config.classes}
    grids = {}
    for w in workloads or config.class_ids:
        if budgets_ms is not None and w in budgets_ms:
            grids[w] = np.asarray(budgets_ms[w], dtype=float)
        else:
            grids[w] = budget_breakpoints(
                inputs, w, max_points=config.max_sweep_points, extra=(declared[w],)
            )
    total = sum(len(g) for g in grids.values())
    for w, grid in grids.items():
        tight = float(grid.min()) if len(grid) else np.nan
        for b in grid:
            masks = feasibility_masks(model.scenario, config, inputs=inputs, budgets_ms={w: b})
            res = model.solve(masks["feasible"])
            row: dict[str, object] = {
                "workload": w,
                "budget_ms": float(b),
                "relax_ms": float(b) - tight,
                "status": str(res.status),
                "feasible_nodes": float(masks["feasible"].sel(workload=w).sum("dc").mean()),
                "solve_s": res.solve_s,
            }
            if res.is_ok and res.by_class is not None:
                bc = res.by_class.loc[w]
                for k in (
                    "energy_usd",
                    "carbon_kg",
                    "carbon_usd",
                    "friction_usd",
                    "objective_usd",
                    "moved_share",
                    "mean_latency_ms",
                ):
                    row[k] = float(bc[k])
                row["fleet_objective_usd"] = float(res.by_class["objective_usd"].sum())
                row["fleet_carbon_kg"] = float(res.by_class["carbon_kg"].sum())
            rows.append(row)
            if progress is not None:
                progress(len(rows), total)
    cols = [
        "workload",
        "budget_ms",
        "relax_ms",
        "status",
        "energy_usd",
        "carbon_kg",
        "carbon_usd",
        "friction_usd",
        "objective_usd",
        "moved_share",
        "mean_latency_ms",
        "fleet_objective_usd",
        "fleet_carbon_kg",
        "feasible_nodes",
        "solve_s",
    ]
    return slopes(pd.DataFrame(rows).reindex(columns=cols))
