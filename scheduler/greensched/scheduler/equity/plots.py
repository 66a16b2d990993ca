"""Figures of SE-GLB results in the house style (:mod:`greensched.plotstyle`): per-location /
per-region bars and the equity–cost frontier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.plotstyle import (
    FigureFormat,
    figure,
    legend_below,
    save_figure,
    series_style,
)
from greensched.scheduler.equity.algorithms import Algorithm, metrics
from greensched.scheduler.equity.problem import EquityProblem
from greensched.scheduler.equity.seglb import EquityResult

__all__ = ["algorithm_label", "plot_frontier", "plot_per_region"]


def algorithm_label(name: str) -> str:
    """The paper's name of an algorithm (``se-glb`` -> ``SE-GLB``); other names unchanged."""
    try:
        return Algorithm(name).label
    except ValueError:
        return name


def _q_label(q: object) -> str:
    text = str(q)
    return "q = ∞" if text in ("inf", "infinity") else f"q = {text}"


def plot_per_region(
    problem: EquityProblem, results: dict[str, EquityResult], path: str | Path,
    fmt: str | FigureFormat | None = None,
) -> Path:
    """Grouped bars per algorithm: carbon (t) and water (m³) per location, performance score (%)
    per region.  Written as ``path`` with suffix ``fmt`` (default: the path's, else png)."""
    ok = {k: metrics(problem, r.y) for k, r in results.items() if r.is_ok and r.y is not None}
    panels = (
        ("carbon_t", "carbon (t)\nper location", problem.dcs),
        ("water_m3", "water (m³)\nper location", problem.dcs),
        ("perf_score", "performance\nscore (%)\nper region", problem.regions),
    )
    fig, axes = figure(3, 1, width="page", aspect=0.22)
    width = 0.8 / max(len(ok), 1)
    for ax, (attr, label, names) in zip(axes, panels, strict=True):
        xs = np.arange(len(names))
        for n, (alg, m) in enumerate(ok.items()):
            st = series_style(n)
            ax.bar(xs + (n - (len(ok) - 1) / 2) * width, getattr(m, attr), width,
                   label=algorithm_label(alg), color=st["color"], edgecolor="black",
                   linewidth=0.3, hatch=("", "//", "..", "xx", "\\\\", "++")[n % 6])
        ax.set_xticks(xs, names, rotation=20, ha="right")
        ax.set_ylabel(label)
        if attr == "perf_score" and ok:
            lo = min(float(np.nanmin(m.perf_score)) for m in ok.values())
            ax.set_ylim(lo - 2, float(problem.perf_score.max()) + 1)
    axes[0].set_title(f"Footprint per location and service per region — {len(problem.hours)} h, "
                      f"{len(problem.dcs)} locations, {len(problem.regions)} regions")
    legend_below(fig, list(axes), ncol=max(len(ok), 1), title="algorithm")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out, fmt)


def plot_frontier(frontier: pd.DataFrame, path: str | Path,
                  fmt: str | FigureFormat | None = None) -> Path:
    """Equity–cost frontier: energy cost vs max/avg ratios, one line per q as μ varies.

    ``frontier`` needs columns ``q``, ``mu_scale`` and the Table 1 columns
    ``Energy cost avg (USD)``, ``Carbon max/avg``, ``Water max/avg``, ``Perf. cost max/avg``.
    Written as ``path`` with suffix ``fmt`` (default: the path's, else png).
    """
    ys = (("Carbon max/avg", "carbon, max / mean"), ("Water max/avg", "water, max / mean"),
          ("Perf. cost max/avg", "performance cost, max / mean"))
    fig, axes = figure(1, 3, width="page", aspect=0.3)
    for ax, (col, label) in zip(axes, ys, strict=True):
        for i, (q, grp) in enumerate(frontier.groupby("q", sort=False)):
            g = grp.sort_values("mu_scale")
            ax.plot(g["Energy cost avg (USD)"], g[col], label=_q_label(q), **series_style(i))
            for _, row in g.iterrows():
                ax.annotate(
                    f"{row['mu_scale']:g}",
                    (row["Energy cost avg (USD)"], row[col]),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xlabel("mean energy cost per location (USD)")
        ax.set_ylabel(label)
    fig.suptitle("SE-GLB equity–cost frontier (point labels: multiplier of the carbon and "
                 "water prices)")
    legend_below(fig, list(axes), ncol=max(frontier["q"].nunique(), 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out, fmt)
