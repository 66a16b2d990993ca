"""Figures of a plan in the house style (:mod:`greensched.plotstyle`).

Four figures: the hourly energy, carbon and delay cost; each data center's grid power over the
horizon (one line per DC, the nine-series palette); grid vs on-site renewable energy per data
center; and the allocation heat-map (share of each area's queries served at each DC).  The time
axes are timestamps (UTC) when the scenario has a start time, hours otherwise; data centers and
areas are labelled with their names (``dc_name`` / ``area_name``) when the scenario has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.plotstyle import (
    OKABE_ITO,
    FigureFormat,
    figure,
    legend_below,
    legend_right,
    parse_format,
    save_figure,
    series_style,
    slot_times,
    time_axis,
)
from greensched.scenario import Scenario
from greensched.scheduler.planner import PlanResult

__all__ = ["PARAM_WORDS", "PLAN_FIGURES", "PRESET_WORDS", "dc_labels", "mode_words", "plot_plan",
           "plot_sweep"]

#: File stems of :func:`plot_plan`'s figures, in order.
PLAN_FIGURES = ("hourly_costs", "grid_by_dc", "energy_by_dc", "allocation_heatmap")


def dc_labels(scen: Scenario) -> list[str]:
    """Display names of the scenario's data centers (``dc_name``, else the id)."""
    return _names(scen, "dc_name", scen.dcs)


def _names(scen: Scenario, var: str, ids: list[str]) -> list[str]:
    if var not in scen.ds:
        return list(ids)
    return [str(n) if str(n).strip() else i for n, i in zip(scen.ds[var].values, ids, strict=True)]


def mode_words(result: PlanResult) -> str:
    """The plan's objective in words (``weighted objective``, ``lexicographic: energy, ...``)."""
    if result.mode == "lexicographic" and result.order:
        return "lexicographic order " + " > ".join(result.order)
    if result.weights:
        names = "/".join(result.weights)
        values = "/".join(f"{v:.2g}" for v in result.weights.values())
        return f"{names} weights {values}"
    return f"{result.mode} objective"


def _time_x(scen: Scenario, hours: np.ndarray) -> tuple[Any, float, bool]:
    """x values of hourly slots (timestamps when the scenario has a start), bar width, is time."""
    times = slot_times(scen.start, hours)
    if times is None:
        return hours, 0.8, False
    return times, 0.8 / 24.0, True  # matplotlib dates are in days


def plot_plan(result: PlanResult, scen: Scenario, out: str | Path,
              fmt: str | FigureFormat = FigureFormat.PNG,
              figures: tuple[str, ...] = PLAN_FIGURES) -> list[Path]:
    """Write the plan's figures (:data:`PLAN_FIGURES`, or the subset ``figures``) into ``out``
    as ``fmt`` (png, svg, pdf); returns their paths (none for a plan that is not optimal)."""
    f = parse_format(fmt)
    unknown = sorted(set(figures) - set(PLAN_FIGURES))
    if unknown:
        raise GreenSchedError(f"plan figures {unknown} are not known; expected some of "
                              f"{', '.join(PLAN_FIGURES)}")
    if not result.is_ok or result.dc_hourly is None or result.allocation is None:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hourly = result.dc_hourly
    names = dc_labels(scen)
    span = f"{len(scen.dcs)} data centers, {scen.hours} h"
    paths: list[Path] = []
    if PLAN_FIGURES[0] in figures:
        paths.append(_hourly_costs(result, scen, out, f))
    if PLAN_FIGURES[1] in figures:
        paths.append(_grid_by_dc(hourly, scen, names, span, out, f))
    if PLAN_FIGURES[2] in figures:
        paths.append(_energy_by_dc(hourly, scen, names, out, f))
    if PLAN_FIGURES[3] in figures:
        paths.append(_allocation_heatmap(result, scen, names, out, f))
    return paths


def _hourly_costs(result: PlanResult, scen: Scenario, out: Path, f: FigureFormat) -> Path:
    """Energy, carbon and delay cost per hour (three stacked panels); they sum to the plan's
    objective components (:func:`greensched.scheduler.rolling.hourly_costs`)."""
    from greensched.scheduler.planner import PlanConfig
    from greensched.scheduler.rolling import hourly_costs

    assert result.dc_hourly is not None and result.allocation is not None
    grid = result.dc_hourly.set_index(["dc", "hour"])["grid_kw"].to_xarray()
    costs = hourly_costs(scen, result.allocation, grid, PlanConfig(delay_model=result.delay_model))
    hours = costs["hour"].to_numpy()
    x, width, is_time = _time_x(scen, hours)
    fig, axes = figure(3, 1, width="column", aspect=0.42, sharex=True)
    panels = ((costs["energy_usd"].to_numpy(), "energy (USD)", OKABE_ITO[0]),
              (costs["carbon_usd"].to_numpy(), "carbon (USD)", OKABE_ITO[2]),
              (costs["delay_usd"].to_numpy(), "delay (USD)", OKABE_ITO[4]))
    for ax, (vals, label, colour) in zip(axes, panels, strict=True):
        ax.bar(x, vals, width=width, color=colour, align="edge" if is_time else "center")
        ax.set_ylabel(label)
    if is_time:
        time_axis(axes[-1], x)
    else:
        axes[-1].set_xlabel("hour of the horizon")
    fig.suptitle(f"Hourly cost of the plan\n{mode_words(result)}")
    return save_figure(fig, out / PLAN_FIGURES[0], f)


def _grid_by_dc(hourly: pd.DataFrame, scen: Scenario, names: list[str], span: str, out: Path,
                f: FigureFormat) -> Path:
    """Grid power per data center over time, one styled series per DC."""
    fig, ax = figure(1, 1, width="page", aspect=0.3)
    grid = hourly.pivot(index="hour", columns="dc", values="grid_kw").reindex(columns=scen.dcs)
    gx, _, g_time = _time_x(scen, np.asarray(grid.index))
    for i, (dc, name) in enumerate(zip(scen.dcs, names, strict=True)):
        ax.plot(gx, grid[dc].to_numpy(), label=name, markevery=max(1, len(grid) // 12),
                **series_style(i))
    ax.set_ylabel("grid power (kW)")
    if g_time:
        time_axis(ax, gx)
    else:
        ax.set_xlabel("hour of the horizon")
    ax.set_title(f"Grid power drawn by each data center ({span})")
    legend_right(ax, title="data center")
    return save_figure(fig, out / PLAN_FIGURES[1], f)


def _energy_by_dc(hourly: pd.DataFrame, scen: Scenario, names: list[str], out: Path,
                  f: FigureFormat) -> Path:
    per_dc = hourly.groupby("dc", sort=False)[["grid_kw", "renewable_used_kw"]].sum()
    per_dc = per_dc.reindex(scen.dcs)
    fig, ax = figure(1, 1, width="column", aspect=0.25 + 0.07 * len(per_dc))
    ys = np.arange(len(per_dc))
    ax.barh(ys, per_dc["grid_kw"], color=OKABE_ITO[8], label="grid")
    ax.barh(ys, per_dc["renewable_used_kw"], left=per_dc["grid_kw"], color=OKABE_ITO[2],
            label="on-site renewable", hatch="//", edgecolor="white", linewidth=0)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"facility energy, {scen.hours} h (kWh)")
    fig.suptitle("Grid and renewable energy per data center")
    legend_below(fig, [ax], ncol=2)
    return save_figure(fig, out / PLAN_FIGURES[2], f)


def _allocation_heatmap(result: PlanResult, scen: Scenario, names: list[str], out: Path,
                        f: FigureFormat) -> Path:
    assert result.allocation is not None
    ds = scen.ds
    served = (result.allocation * ds["queries"]).sum(["query_type", "hour"])
    share = served / ds["queries"].sum(["query_type", "hour"])
    mat = share.transpose("area", "dc").values
    fig, ax = figure(1, 1, width="page", aspect=0.12 + 0.035 * len(scen.areas))
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(scen.dcs)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(scen.areas)), _names(scen, "area_name", scen.areas))
    ax.grid(False)
    ax.set_xlabel("data center")
    ax.set_ylabel("user area")
    fig.colorbar(im, ax=ax, label="share of the area's queries")
    ax.set_title(f"Where each area's queries are served — {mode_words(result)}")
    return save_figure(fig, out / PLAN_FIGURES[3], f)


#: Sweep parameters (:data:`greensched.scheduler.sweep.PARAMS`) in words.
PARAM_WORDS = {
    "theta": "carbon intensity θ",
    "renewables": "on-site renewable supply",
    "tau": "energy per token τ",
    "rho": "delay penalty ρ",
    "demand": "demand",
    "price": "electricity price",
}
#: Plan presets in words.
PRESET_WORDS = {"m0": "M0: scenario weights", "m1": "M1: energy only", "m2": "M2: carbon only"}


def plot_sweep(frame: pd.DataFrame, param: str, out: str | Path,
               fmt: str | FigureFormat = FigureFormat.PNG) -> Path:
    """Energy, carbon and delay cost and carbon mass against the scale, one line per preset;
    written as ``out/sweep_<param>.<fmt>``."""
    f = parse_format(fmt)
    fig, grid = figure(2, 2, width="page", aspect=0.24, sharex=True)
    axes = list(grid.ravel())
    panels = [
        ("energy_usd", "energy cost (USD)"),
        ("carbon_usd", "carbon cost (USD)"),
        ("delay_usd", "delay cost (USD)"),
        ("carbon_kg", "CO$_2$ (kg)"),
    ]
    words = PARAM_WORDS.get(param, param)
    ok = frame[frame["status"] == "optimal"]
    for ax, (col, label) in zip(axes, panels, strict=True):
        for i, (model, part) in enumerate(ok.groupby("model", sort=True)):
            ax.plot(part["scale"], part[col], label=PRESET_WORDS.get(str(model), str(model)),
                    **series_style(i))
        ax.set_ylabel(label)
    for ax in axes[2:]:
        ax.set_xlabel(f"{words}, multiple of the scenario's")
    fig.suptitle(f"Sensitivity of the plan to the {words}")
    legend_below(fig, axes, ncol=3, title="objective")
    return save_figure(fig, Path(out) / f"sweep_{param}", f)
