"""Figures of SE-GLB results: per-location / per-region bars and the equity–cost frontier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.scheduler.equity.algorithms import metrics
from greensched.scheduler.equity.problem import EquityProblem
from greensched.scheduler.equity.seglb import EquityResult

__all__ = ["plot_frontier", "plot_per_region"]


def plot_per_region(
    problem: EquityProblem, results: dict[str, EquityResult], path: str | Path
) -> Path:
    """Grouped bars per algorithm: carbon (t) and water (m³) per location, score (%) per region."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {k: metrics(problem, r.y) for k, r in results.items() if r.is_ok and r.y is not None}
    panels = (
        ("carbon_t", "carbon per location (t)", problem.dcs),
        ("water_m3", "water per location (m³)", problem.dcs),
        ("perf_score", "performance score per region (%)", problem.regions),
    )
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), constrained_layout=True)
    width = 0.8 / max(len(ok), 1)
    for ax, (attr, label, names) in zip(axes, panels, strict=True):
        xs = np.arange(len(names))
        for n, (alg, m) in enumerate(ok.items()):
            ax.bar(xs + (n - (len(ok) - 1) / 2) * width, getattr(m, attr), width, label=alg)
        ax.set_xticks(xs, names, rotation=30, ha="right")
        ax.set_ylabel(label)
        if attr == "perf_score":
            lo = min(float(np.nanmin(m.perf_score)) for m in ok.values())
            ax.set_ylim(lo - 2, float(problem.perf_score.max()) + 1)
    axes[0].legend(ncols=len(ok))
    axes[0].set_title(f"{len(problem.hours)} h, {len(problem.dcs)} locations")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_frontier(frontier: pd.DataFrame, path: str | Path) -> Path:
    """Equity–cost frontier: energy cost vs max/avg ratios, one line per q as μ varies.

    ``frontier`` needs columns ``q``, ``mu_scale`` and the Table 1 columns
    ``Energy cost avg (USD)``, ``Carbon max/avg``, ``Water max/avg``, ``Perf. cost max/avg``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ys = ("Carbon max/avg", "Water max/avg", "Perf. cost max/avg")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    for ax, col in zip(axes, ys, strict=True):
        for q, grp in frontier.groupby("q", sort=False):
            g = grp.sort_values("mu_scale")
            ax.plot(g["Energy cost avg (USD)"], g[col], marker="o", label=f"q = {q}")
            for _, row in g.iterrows():
                ax.annotate(
                    f"{row['mu_scale']:g}",
                    (row["Energy cost avg (USD)"], row[col]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xlabel("energy cost avg per location (USD)")
        ax.set_ylabel(col)
    axes[0].legend()
    fig.suptitle("SE-GLB equity–cost frontier (labels: multiplier of μ_c, μ_w)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
