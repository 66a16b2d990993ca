"""Figures of a plan: hourly costs, grid vs renewable energy per DC, allocation heat-map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from greensched.scenario import Scenario
from greensched.scheduler.planner import PlanResult

__all__ = ["plot_plan"]


def plot_plan(result: PlanResult, scen: Scenario, out: str | Path) -> list[Path]:
    """Write ``hourly_costs.png``, ``energy_by_dc.png`` and ``allocation_heatmap.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not result.is_ok or result.dc_hourly is None or result.allocation is None:
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = scen.ds
    hourly = result.dc_hourly
    price = ds["price_usd_per_kwh"].to_series().rename("price")
    carbon_price = (ds["carbon_kg_per_kwh"] * ds["carbon_price_usd_per_kg"]).to_series()
    df = hourly.set_index(["hour", "dc"])
    energy_cost = (df["grid_kw"] * price.reorder_levels(["hour", "dc"])).groupby("hour").sum()
    carbon_cost = (
        (df["grid_kw"] * carbon_price.reorder_levels(["hour", "dc"])).groupby("hour").sum()
    )
    assert result.delay_s is not None
    delay_cost = (result.delay_s * ds["delay_penalty_usd_per_s"]).sum(["area", "query_type"])

    paths = []
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True, constrained_layout=True)
    hours = np.asarray(energy_cost.index)
    axes[0].bar(hours, energy_cost.to_numpy(), color="tab:orange")
    axes[0].set_ylabel("energy cost (USD)")
    axes[1].bar(hours, carbon_cost.to_numpy(), color="tab:green")
    axes[1].set_ylabel("carbon cost (USD)")
    axes[2].bar(delay_cost["hour"].values, delay_cost.values, color="tab:blue")
    axes[2].set_ylabel("delay cost (USD)")
    axes[2].set_xlabel("hour")
    fig.suptitle(f"{scen.name}: hourly costs ({result.mode})")
    paths.append(out / "hourly_costs.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    per_dc = hourly.groupby("dc", sort=False)[["grid_kw", "renewable_used_kw"]].sum()
    per_dc = per_dc.reindex(scen.dcs)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(per_dc)), 4), constrained_layout=True)
    xs = np.arange(len(per_dc))
    ax.bar(xs, per_dc["grid_kw"], label="grid (kWh)", color="tab:gray")
    ax.bar(
        xs,
        per_dc["renewable_used_kw"],
        bottom=per_dc["grid_kw"],
        label="on-site renewable (kWh)",
        color="tab:green",
    )
    ax.set_xticks(xs, per_dc.index, rotation=45, ha="right")
    ax.set_ylabel("facility energy over the horizon (kWh)")
    ax.legend()
    ax.set_title("Grid vs renewable energy per data center")
    paths.append(out / "energy_by_dc.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    served = (result.allocation * ds["queries"]).sum(["query_type", "hour"])
    share = served / ds["queries"].sum(["query_type", "hour"])
    mat = share.transpose("area", "dc").values
    fig, ax = plt.subplots(
        figsize=(max(6, 0.6 * len(scen.dcs) + 2), max(4, 0.4 * len(scen.areas) + 1)),
        constrained_layout=True,
    )
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(scen.dcs)), scen.dcs, rotation=45, ha="right")
    ax.set_yticks(range(len(scen.areas)), scen.areas)
    ax.set_xlabel("data center")
    ax.set_ylabel("area")
    fig.colorbar(im, ax=ax, label="share of the area's queries")
    ax.set_title("Allocation (queries over the horizon)")
    paths.append(out / "allocation_heatmap.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
