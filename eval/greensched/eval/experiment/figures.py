"""Figures of an experiment run in the house style (:mod:`greensched.plotstyle`).

:func:`experiment_figures` writes the six figures that the report links
(:func:`greensched.eval.experiment.report.write_report`):

* ``bars_carbon_kg``, ``bars_cost_usd``, ``bars_sla_violation_rate``: one horizontal bar per
  variant (mean over seeds, 95 % CI whiskers).  GreenSched's variant is bluish green, its
  alternative settings (``alternatives`` in ``experiment.json``) blue, ablations a lighter,
  hatched green and every baseline grey; a dashed line marks GreenSched's mean.
* ``carbon_vs_sla``: mean carbon against mean SLA violation (%) per variant with CI crosses,
  each point labelled (labels placed to avoid each other and the points).
* ``hourly_profiles``: hourly carbon and cost of GreenSched and the main baselines, mean over
  seeds, on a UTC time axis when the scenario's start time is known.
* ``carbon_per_region``: carbon per data center (its name and id) of the same variants.

The scenario's start time and data-center names are read from its files (``scenario.toml``,
``datacenters.csv`` or a builder configuration), without building the scenario.
"""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.experiment.stats import summarize
from greensched.plotstyle import (
    OKABE_ITO,
    FigureFormat,
    figure,
    legend_below,
    parse_format,
    save_figure,
    series_style,
    slot_times,
    time_axis,
)

__all__ = ["BAR_METRICS", "Role", "experiment_figures", "scenario_facts", "variant_roles"]

#: (metric, axis label, scale, caption) of the per-variant bar figures.
BAR_METRICS: tuple[tuple[str, str, float, str], ...] = (
    ("carbon_kg", "carbon (kg CO$_2$)", 1.0, "carbon (kg CO2) per variant"),
    ("cost_usd", "energy + carbon cost (USD)", 1.0, "energy + carbon cost (USD) per variant"),
    ("sla_violation_rate", "SLA violation (% of jobs)", 100.0, "SLA violation rate per variant"),
)
#: Baselines drawn in the hourly and per-region figures (when the run has them).
PROFILE_BASELINES = ("performance-only", "pcaps", "carbonscaler", "casper", "carbonclipper")

_GREEN, _BLUE, _GREY = OKABE_ITO[2], OKABE_ITO[4], OKABE_ITO[8]
_ABLATION_FACE = "#A8DBC9"  # the bluish green mixed with 65 % white
#: series_style indices of the other series (green and blue are GreenSched's; yellow last)
_OTHER_STYLES = (0, 1, 5, 6, 7, 8, 3)


class Role(StrEnum):
    """What a variant is in the figures."""

    GREENSCHED = "greensched"
    ALTERNATIVE = "alternative"
    ABLATION = "ablation"
    BASELINE = "baseline"


_ROLE_LABEL = {
    Role.GREENSCHED: "GreenSched",
    Role.ALTERNATIVE: "GreenSched, other setting",
    Role.ABLATION: "ablation of GreenSched",
    Role.BASELINE: "baseline",
}


def variant_roles(
    results: pd.DataFrame, greensched: str, alternatives: Sequence[str] = ()
) -> dict[str, Role]:
    """The :class:`Role` of every variant of ``results``, in the run's order.

    Ablations are the rows flagged ``ablation`` (else the labels starting ``ablation-``).
    """
    order = list(dict.fromkeys(results["variant"]))
    flagged: set[str] = set()
    if "ablation" in results.columns:
        flagged = set(results.loc[results["ablation"].astype(bool), "variant"])
    roles: dict[str, Role] = {}
    for v in order:
        if v == greensched:
            roles[v] = Role.GREENSCHED
        elif v in alternatives:
            roles[v] = Role.ALTERNATIVE
        elif v in flagged or v.startswith("ablation-"):
            roles[v] = Role.ABLATION
        else:
            roles[v] = Role.BASELINE
    return roles


def scenario_facts(spec: str | None) -> tuple[str | None, dict[str, str]]:
    """(start time or ``None``, {DC id: name}) of an experiment's ``scenario`` spec, read
    from its files only (``default``, ``build:CONFIG@DATE``, a directory; ``synth:`` has
    neither).  Anything unreadable gives ``(None, {})``."""
    if not spec or spec.startswith("synth:"):
        return None, {}
    try:
        if spec.startswith("build:"):
            path, _, day = spec[6:].partition("@")
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            start = day or raw.get("scenario", {}).get("start")
            names = {
                str(d["id"]): str(d.get("name", d["id"]))
                for d in raw.get("datacenter", [])
                if "id" in d
            }
            return (str(start) if start is not None else None), names
        if spec == "default":
            from greensched.defaults import default_scenario_path

            root = default_scenario_path()
            if root is None:
                return None, {}
            directory = Path(root)
        else:
            directory = Path(spec)
        meta = tomllib.loads((directory / "scenario.toml").read_text(encoding="utf-8"))
        start = meta.get("start")
        names = {}
        dcs = directory / "datacenters.csv"
        if dcs.is_file():
            table = pd.read_csv(dcs)
            if {"dc", "name"} <= set(table.columns):
                names = {
                    str(a): str(b)
                    for a, b in zip(table["dc"], table["name"], strict=True)
                    if isinstance(b, str) and b
                }
        return (str(start) if start is not None else None), names
    except (
        OSError,
        tomllib.TOMLDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        ValueError,
        pd.errors.ParserError,
    ):
        return None, {}


def _means(
    summary: pd.DataFrame, metric: str, order: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    sub = summary[summary["metric"] == metric].set_index("variant").reindex(list(order))
    return sub["mean"].to_numpy(dtype=float), sub["ci95"].to_numpy(dtype=float)


_LOOKS: dict[Role, dict[str, Any]] = {
    Role.GREENSCHED: {"facecolor": _GREEN, "edgecolor": "black", "hatch": None},
    Role.ALTERNATIVE: {"facecolor": _BLUE, "edgecolor": "black", "hatch": None},
    Role.ABLATION: {"facecolor": _ABLATION_FACE, "edgecolor": _GREEN, "hatch": "////"},
    Role.BASELINE: {"facecolor": _GREY, "edgecolor": _GREY, "hatch": None},
}


def _bar_look(role: Role) -> dict[str, Any]:
    """Face, edge and hatch of a variant's bar (and scatter marker) by role."""
    return dict(_LOOKS[role])


def _role_legend(fig: Any, roles: Sequence[Role]) -> None:
    from matplotlib.patches import Patch

    present = [r for r in Role if r in set(roles)]
    handles = [Patch(linewidth=0.6, label=_ROLE_LABEL[r], **_bar_look(r)) for r in present]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=min(2, len(handles)), frameon=False
    )


def bars_figure(
    summary: pd.DataFrame,
    roles: Mapping[str, Role],
    metric: str,
    label: str,
    scale: float,
    n_seeds: int,
) -> Any:
    """Horizontal bars of ``metric`` per variant (mean ± 95 % CI), coloured by role."""
    order = list(roles)
    mean, ci = _means(summary, metric, order)
    mean, ci = mean * scale, ci * scale
    fig, ax = figure(width="column", aspect=(0.75 + 0.13 * len(order)) / 3.5)
    y = np.arange(len(order))
    bars = ax.barh(
        y,
        mean,
        xerr=ci,
        height=0.72,
        linewidth=0.6,
        error_kw={"elinewidth": 0.7, "capsize": 1.5, "ecolor": "black"},
    )
    for patch, v in zip(bars.patches, order, strict=True):
        look = _bar_look(roles[v])
        patch.set_facecolor(look["facecolor"])
        patch.set_edgecolor(look["edgecolor"])
        patch.set_hatch(look["hatch"])
        patch.set_gid(f"bar-{v}")
    ax.set_yticks(y, order)
    for tick, v in zip(ax.get_yticklabels(), order, strict=True):
        if roles[v] in (Role.GREENSCHED, Role.ALTERNATIVE):
            tick.set_fontweight("bold")
    ax.set_ylim(len(order) - 0.4, -0.6)  # the run's order from the top
    gs = [i for i, v in enumerate(order) if roles[v] is Role.GREENSCHED]
    if gs and np.isfinite(mean[gs[0]]):
        ax.axvline(mean[gs[0]], color=_GREEN, linestyle="--", linewidth=0.8, zorder=0)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(label)
    ax.set_xlim(left=0)
    ax.set_title(f"mean ± 95 % CI over {n_seeds} seeds")
    _role_legend(fig, [roles[v] for v in order])
    return fig


def _offsets() -> list[tuple[float, float, str, str]]:
    """Label offsets (points) around a point, nearest first, with the alignment that keeps
    the label on the far side of its point."""
    out = []
    for k, radius in enumerate((4.0, 8.0, 13.0, 19.0, 26.0, 34.0, 44.0, 56.0, 70.0)):
        for deg in range(0, 360, 30 if radius < 30 else 20):
            t = np.deg2rad(deg + (10 if k % 2 else 0))
            dx, dy = radius * np.cos(t), 0.8 * radius * np.sin(t)
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            out.append((float(dx), float(dy), ha, va))
    return out


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return float(w * h) if w > 0 and h > 0 else 0.0


def _label_points(
    ax: Any,
    xy: Sequence[tuple[float, float]],
    labels: Sequence[str],
    colors: Sequence[str],
    bold: Sequence[bool] | None = None,
    fontsize: float = 5.5,
) -> list[Any]:
    """Annotate each point with a small offset: the nearest offset whose label overlaps no
    label or point and stays inside the axes (else the least-overlapping one); labels set
    off further than a few points get a thin leader line."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    fig.canvas.draw()  # final layout, so the display coordinates below hold
    renderer = fig.canvas.get_renderer()
    r = 3.5 * fig.dpi / 72.0
    pts = [ax.transData.transform(p) for p in xy]
    markers = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in pts]
    inside = ax.get_window_extent(renderer)
    pad = 1.0 * fig.dpi / 72.0
    placed: list[Any] = []
    made = []
    weights = ["bold" if b else "normal" for b in (bold or [False] * len(labels))]
    for i, (text, (x, y), color) in enumerate(zip(labels, xy, colors, strict=True)):
        best: tuple[float, tuple[float, float, str, str]] | None = None
        probe = ax.annotate(
            text,
            (x, y),
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=fontsize,
            fontweight=weights[i],
        )
        probe.set_in_layout(False)
        for off in _offsets():
            dx, dy, ha, va = off
            probe.set_position((dx, dy))
            probe.set_ha(ha)
            probe.set_va(va)
            box = probe.get_window_extent(renderer).expanded(1.0, 1.0).padded(pad)
            cost = 10.0 * sum(_overlap(box, b) for b in placed)
            cost += 10.0 * sum(_overlap(box, m) for j, m in enumerate(markers) if j != i)
            if not (
                inside.x0 <= box.x0
                and box.x1 <= inside.x1
                and inside.y0 <= box.y0
                and box.y1 <= inside.y1
            ):
                cost += 1e9
            if best is None or cost < best[0]:
                best = (cost, off)
            if cost == 0.0:
                break
        probe.remove()
        assert best is not None
        dx, dy, ha, va = best[1]
        far = np.hypot(dx, dy) > 9
        ann = ax.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=fontsize,
            color=color,
            fontweight=weights[i],
            arrowprops={
                "arrowstyle": "-",
                "linewidth": 0.4,
                "color": color,
                "shrinkA": 0.5,
                "shrinkB": 2.5,
            }
            if far
            else None,
        )
        ann.set_in_layout(False)
        placed.append(ann.get_window_extent(renderer).padded(pad))
        made.append(ann)
    return made


def scatter_figure(summary: pd.DataFrame, roles: Mapping[str, Role], n_seeds: int) -> Any:
    """Mean carbon against mean SLA violation (%) per variant, CI crosses, labelled points."""
    order = list(roles)
    c, ch = _means(summary, "carbon_kg", order)
    s, sh = _means(summary, "sla_violation_rate", order)
    s, sh = 100 * s, 100 * sh
    fig, ax = figure(width="page", aspect=0.58)
    marker = {
        Role.GREENSCHED: ("*", 9.0),
        Role.ALTERNATIVE: ("D", 4.0),
        Role.ABLATION: ("^", 4.0),
        Role.BASELINE: ("o", 3.5),
    }
    text_color = {
        Role.GREENSCHED: "#00684C",
        Role.ALTERNATIVE: _BLUE,
        Role.ABLATION: "#00684C",
        Role.BASELINE: "#444444",
    }
    # baselines first, so that GreenSched's points are drawn on top
    rank = {Role.BASELINE: 0, Role.ABLATION: 1, Role.ALTERNATIVE: 2, Role.GREENSCHED: 3}
    for i in sorted(range(len(order)), key=lambda k: rank[roles[order[k]]]):
        role = roles[order[i]]
        look = _bar_look(role)
        m, size = marker[role]
        ax.errorbar(
            s[i],
            c[i],
            xerr=sh[i],
            yerr=ch[i],
            fmt=m,
            markersize=size,
            markerfacecolor=look["facecolor"],
            markeredgecolor=look["edgecolor"] if role is not Role.BASELINE else "#555555",
            markeredgewidth=0.6,
            ecolor=look["edgecolor"] if role is Role.ABLATION else look["facecolor"],
            elinewidth=0.5,
            alpha=1.0,
            zorder=3 + rank[role],
            label=_ROLE_LABEL[role],
        )
    ax.set_xlabel("SLA violation (% of jobs)")
    ax.set_ylabel("carbon (kg CO$_2$)")
    ax.set_title(f"means over {n_seeds} seeds, ± 95 % CI")
    ax.margins(x=0.18, y=0.1)
    right = ax.get_xlim()[1]
    ax.set_xlim(-0.08 * right, right)  # room for labels left of 0 %, no negative ticks
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= right])
    seen: dict[str, Any] = {}
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
        seen.setdefault(lab, h)
    keys = [_ROLE_LABEL[r] for r in Role if _ROLE_LABEL[r] in seen]
    fig.legend([seen[k] for k in keys], keys, loc="outside lower center", ncol=4, frameon=False)
    ok = [i for i in range(len(order)) if np.isfinite(c[i]) and np.isfinite(s[i])]
    first = sorted(ok, key=lambda k: -rank[roles[order[k]]])
    _label_points(
        ax,
        [(s[i], c[i]) for i in first],
        [order[i] for i in first],
        [text_color[roles[order[i]]] for i in first],
        [roles[order[i]] in (Role.GREENSCHED, Role.ALTERNATIVE) for i in first],
    )
    return fig


def _series(roles: Mapping[str, Role]) -> list[tuple[str, dict[str, Any]]]:
    """(variant, plot style) of the hourly / per-region series: GreenSched, its other
    settings, then the main baselines."""
    out: list[tuple[str, dict[str, Any]]] = []
    alt_styles = iter((4, 6, 0))
    others = iter(_OTHER_STYLES)
    for v, role in roles.items():
        if role is Role.GREENSCHED:
            out.insert(0, (v, {**series_style(2), "linestyle": "-", "linewidth": 1.8, "zorder": 5}))
        elif role is Role.ALTERNATIVE:
            out.append((v, {**series_style(next(alt_styles, 4)), "zorder": 4}))
    for v in PROFILE_BASELINES:
        if roles.get(v) is Role.BASELINE:
            out.append((v, series_style(next(others, 8))))
    return out


def hourly_figure(
    hourly: pd.DataFrame, roles: Mapping[str, Role], start: str | None, n_seeds: int
) -> Any:
    """Hourly carbon and cost (mean over seeds) of GreenSched and the main baselines."""
    fig, axes = figure(1, 2, width="page", aspect=0.3)
    hours = np.sort(hourly["hour"].unique())
    times = slot_times(start, hours + 0.5)  # each hour's value at its middle
    for v, style in _series(roles):
        sub = hourly[hourly["variant"] == v]
        per_hour = (
            sub.groupby(["seed", "hour"])[["carbon_kg", "cost_usd"]]
            .sum()
            .groupby("hour")
            .mean()
            .reindex(hours)
        )
        x: Any = times if times is not None else hours + 0.5
        for ax, col in zip(axes, ("carbon_kg", "cost_usd"), strict=True):
            ax.plot(
                x, per_hour[col].to_numpy(), label=v, markevery=max(1, len(hours) // 12), **style
            )
    axes[0].set_ylabel("carbon (kg CO$_2$ per hour)")
    axes[1].set_ylabel("cost (USD per hour)")
    axes[0].set_title(f"(a) hourly carbon, mean over {n_seeds} seeds")
    axes[1].set_title(f"(b) hourly energy + carbon cost, mean over {n_seeds} seeds")
    for ax in axes:
        ax.set_ylim(bottom=0)
        if times is not None:
            time_axis(ax, times)
        else:
            ax.set_xlabel("hour of the day (UTC)")
            ax.set_xticks(np.arange(0, int(hours.max()) + 2, 6 if hours.max() < 48 else 24))
    legend_below(fig, list(axes), ncol=min(4, len(_series(roles))))
    return fig


def region_figure(
    hourly: pd.DataFrame, roles: Mapping[str, Role], names: Mapping[str, str], n_seeds: int
) -> Any:
    """Carbon per data center (mean over seeds of the run's total) of the same series."""
    series = _series(roles)
    dcs = [str(d) for d in dict.fromkeys(hourly["dc"])]
    fig, ax = figure(width="page", aspect=0.4)
    width = 0.84 / max(1, len(series))
    x = np.arange(len(dcs))
    for i, (v, style) in enumerate(series):
        per_dc = (
            hourly[hourly["variant"] == v]
            .groupby(["seed", "dc"])["carbon_kg"]
            .sum()
            .groupby("dc")
            .mean()
            .reindex(dcs)
        )
        ax.bar(
            x - 0.42 + (i + 0.5) * width,
            per_dc.to_numpy(),
            width,
            label=v,
            color=style["color"],
            edgecolor="black" if roles[v] is Role.GREENSCHED else style["color"],
            linewidth=0.5,
        )
    labels = []
    for d in dcs:
        name = names.get(d, "")
        labels.append("\n".join([*textwrap.wrap(name, 15), d]) if name and name != d else d)
    ax.set_xticks(x, labels)
    ax.tick_params(axis="x", labelsize=6)
    ax.grid(axis="x", visible=False)
    ax.set_xlim(-0.5, len(dcs) - 0.5)
    ax.set_ylabel("carbon (kg CO$_2$)")
    ax.set_title(f"carbon per data center over the run, mean over {n_seeds} seeds")
    legend_below(fig, [ax], ncol=min(4, len(series)))
    return fig


def experiment_figures(
    results: pd.DataFrame,
    hourly: pd.DataFrame,
    fig_dir: Path,
    *,
    greensched: str,
    alternatives: Sequence[str] = (),
    scenario: str | None = None,
    fmt: str | FigureFormat = "png",
) -> list[tuple[str, Path]]:
    """Write the six experiment figures into ``fig_dir``; (caption, path) of each, in the
    report's order.  ``scenario`` (the run's spec) gives the time axis and the DC names."""
    f = parse_format(fmt)
    fig_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    roles = variant_roles(results, greensched, alternatives)
    n_seeds = int(results["seed"].nunique()) if "seed" in results.columns else 0
    start, names = scenario_facts(scenario)
    made: list[tuple[str, Path]] = []
    for metric, label, scale, caption in BAR_METRICS:
        fig = bars_figure(summary, roles, metric, label, scale, n_seeds)
        made.append((caption, save_figure(fig, fig_dir / f"bars_{metric}", f)))
    made.append(
        (
            "carbon vs SLA violation (means over seeds)",
            save_figure(scatter_figure(summary, roles, n_seeds), fig_dir / "carbon_vs_sla", f),
        )
    )
    made.append(
        (
            "hourly carbon and cost profiles",
            save_figure(
                hourly_figure(hourly, roles, start, n_seeds), fig_dir / "hourly_profiles", f
            ),
        )
    )
    made.append(
        (
            "carbon per region",
            save_figure(
                region_figure(hourly, roles, names, n_seeds), fig_dir / "carbon_per_region", f
            ),
        )
    )
    return made
