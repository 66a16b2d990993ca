"""Figures of a relocation analysis: the energy–latency frontier and the layer shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_frontier", "plot_layers"]

_LAYER_COLOURS = {"local": "#4c72b0", "regional": "#dd8452", "energy-oriented": "#55a868"}


def plot_frontier(
    points: pd.DataFrame, out: str | Path, metrics: pd.DataFrame | None = None
) -> Path:
    """Carbon and energy cost of each class against the budget relaxation (step curves).

    x: budget above the class's tightest usable budget (ms); markers at the declared budgets.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    declared = (
        dict(zip(metrics["workload"], metrics["budget_ms"], strict=True))
        if metrics is not None
        else {}
    )
    for w, grp in points.groupby("workload", sort=False):
        ok = grp[grp["status"] == "optimal"]
        if ok.empty:
            continue
        x = ok["relax_ms"].to_numpy()
        for ax, col in zip(axes, ("carbon_kg", "energy_usd"), strict=True):
            (line,) = ax.step(x, ok[col].to_numpy(), where="post", label=str(w))
            if w in declared:
                b = declared[w]
                at = ok[ok["budget_ms"] <= b + 1e-9]
                if len(at):
                    ax.plot(
                        at["relax_ms"].iloc[-1],
                        at[col].iloc[-1],
                        "o",
                        color=line.get_color(),
                        ms=6,
                    )
    axes[0].set_ylabel("class carbon (kg CO2 over the horizon)")
    axes[1].set_ylabel("class energy cost (USD over the horizon)")
    for ax in axes:
        ax.set_xlabel("latency budget above the tightest feasible one (ms)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="class (dot: declared budget)", title_fontsize=8)
    fig.suptitle("Energy–latency frontier per workload class")
    p = Path(out)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p


def plot_layers(metrics: pd.DataFrame, out: str | Path) -> Path:
    """Stacked bars: share of each class's demand (energy) in the local / regional /
    energy-oriented layers, bar width proportional to nothing; the class's demand share in the
    label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(metrics) + 2), 4), constrained_layout=True)
    labels = [
        f"{w}\n({100 * s:.0f} % of demand)"
        for w, s in zip(metrics["workload"], metrics["demand_share"], strict=True)
    ]
    bottom = np.zeros(len(metrics))
    for layer, colour in _LAYER_COLOURS.items():
        vals = metrics[f"share_{layer}"].fillna(0.0).to_numpy()
        ax.bar(labels, vals, bottom=bottom, color=colour, label=layer)
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the class's demand (energy)")
    ax.set_title("Relocation layers at the declared budgets")
    ax.legend(fontsize=8, loc="upper right")
    p = Path(out)
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
