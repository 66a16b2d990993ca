"""Figures of a relocation analysis in the house style (:mod:`greensched.plotstyle`): the
energy–latency frontier and the layer shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.plotstyle import (
    OKABE_ITO,
    FigureFormat,
    figure,
    legend_below,
    save_figure,
    series_style,
)

__all__ = ["LAYER_STYLE", "plot_frontier", "plot_layers"]

#: Colour and hatch of each relocation layer (Okabe-Ito blue, orange, bluish green).
LAYER_STYLE: dict[str, tuple[str, str]] = {
    "local": (OKABE_ITO[4], ""),
    "regional": (OKABE_ITO[0], "//"),
    "energy-oriented": (OKABE_ITO[2], ".."),
}


def plot_frontier(
    points: pd.DataFrame, out: str | Path, metrics: pd.DataFrame | None = None,
    fmt: str | FigureFormat | None = None,
) -> Path:
    """Carbon and energy cost of each class against the budget relaxation (step curves).

    x: budget above the class's tightest usable budget (ms); filled markers at the declared
    budgets.  Written as ``out`` with suffix ``fmt`` (default: the path's, else png).
    """
    fig, axes = figure(1, 2, width="page", aspect=0.32)
    declared = (
        dict(zip(metrics["workload"], metrics["budget_ms"], strict=True))
        if metrics is not None
        else {}
    )
    for i, (w, grp) in enumerate(points.groupby("workload", sort=False)):
        ok = grp[grp["status"] == "optimal"]
        if ok.empty:
            continue
        st = series_style(i)
        x = ok["relax_ms"].to_numpy()
        for ax, col in zip(axes, ("carbon_kg", "energy_usd"), strict=True):
            ax.step(x, ok[col].to_numpy(), where="post", label=str(w), color=st["color"],
                    linestyle=st["linestyle"])
            if w in declared:
                b = declared[w]
                at = ok[ok["budget_ms"] <= b + 1e-9]
                if len(at):
                    ax.plot(at["relax_ms"].iloc[-1], at[col].iloc[-1], linestyle="none",
                            marker=st["marker"], color=st["color"], markersize=5,
                            markeredgecolor="black", markeredgewidth=0.4)
    axes[0].set_ylabel("carbon (kg CO$_2$)")
    axes[1].set_ylabel("energy cost (USD)")
    for ax in axes:
        ax.set_xlabel("latency budget above the tightest feasible one (ms)")
    fig.suptitle("Energy–latency frontier per workload class over the horizon "
                 "(marker: declared budget)")
    legend_below(fig, list(axes), ncol=min(max(points["workload"].nunique(), 1), 5),
                 title="workload class")
    return save_figure(fig, out, fmt)


def plot_layers(metrics: pd.DataFrame, out: str | Path,
                fmt: str | FigureFormat | None = None) -> Path:
    """Stacked bars: share of each class's demand (energy) in the local / regional /
    energy-oriented layers; the class's share of the demand under its name.  Written as ``out`` with
    suffix ``fmt`` (default: the path's, else png)."""
    fig, ax = figure(1, 1, width="column", aspect=0.7)
    labels = [
        f"{w}\n{100 * s:.0f} %"
        for w, s in zip(metrics["workload"], metrics["demand_share"], strict=True)
    ]
    bottom = np.zeros(len(metrics))
    for layer, (colour, hatch) in LAYER_STYLE.items():
        vals = metrics[f"share_{layer}"].fillna(0.0).to_numpy()
        ax.bar(labels, vals, bottom=bottom, color=colour, hatch=hatch, edgecolor="white",
               linewidth=0.3, label=layer)
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the class's energy")
    ax.tick_params(axis="x", labelsize=6)
    ax.set_xlabel("workload class and its share of the demand")
    ax.set_title("Relocation layers at the declared budgets")
    legend_below(fig, [ax], ncol=3, title="layer")
    return save_figure(fig, out, fmt)
