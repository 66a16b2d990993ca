"""Report and plot of a closed-loop run (``greensched loop --out DIR``): error and carbon per
period, where the drift was injected and detected, and which versions were promoted."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from greensched.feedback.closed_loop import LoopResult
from greensched.feedback.world import T0
from greensched.plotstyle import (
    figure,
    legend_below,
    save_figure,
    series_style,
    slot_times,
    time_axis,
)

__all__ = ["pct", "num", "plot_loop", "write_loop_report"]


def pct(x: Any) -> str:
    """``0.123`` as ``12.3 %`` (``n/a`` for missing values)."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else f"{100 * float(x):.1f} %"


def num(x: Any, fmt: str = ".4f") -> str:
    """A number with ``fmt`` (``n/a`` for missing values)."""
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else format(float(x), fmt)


def plot_loop(result: LoopResult, path: str | Path, fmt: str | None = None, *,
              title: str = "Closed loop on the digital twin: drift, re-tune, recovery") -> Path:
    """Two panels over the loop's clock (one period = one hour, UTC): the energy error of the
    served model and of the stale initial model, and carbon per job of greedy placement with
    the stale, current and oracle predictions; drift, detection and promotions marked."""
    per, s, cfg = result.periods, result.summary, result.config
    times = slot_times(T0, per["period"].to_numpy() + 0.5)
    assert times is not None
    x = times.tz_localize(None).to_numpy()
    hour = np.timedelta64(3600, "s")

    def at(period: float) -> Any:
        return (np.datetime64(T0.replace(tzinfo=None)) + int(period * 3600) *
                np.timedelta64(1, "s"))

    fig, (ax1, ax2) = figure(2, 1, width="page", aspect=0.3, sharex=True)
    ax1.plot(x, 100 * per["mape_energy_live"], label="served model (v1, then re-tuned)",
             **series_style(4))
    ax1.plot(x, 100 * per["mape_energy_stale"], label="stale initial model v1",
             **series_style(5))
    ax1.set_yscale("log")
    ax1.set_ylabel("energy MAPE (%)")
    ax1.set_title("Energy prediction error on the outcomes of each period")
    for i, (col, name) in enumerate((("carbon_stale_kg", "greedy on stale v1"),
                                     ("carbon_current_kg", "greedy on the promoted model"),
                                     ("carbon_oracle_kg", "greedy on true energy (oracle)"))):
        ax2.plot(x, 1000 * per[col], label=name, **series_style((5, 4, 2)[i]))
    ax2.set_ylabel("carbon per job (g CO2)")
    ax2.set_title("Carbon per job, same jobs and noise")
    for ax in (ax1, ax2):
        if cfg.drift_period is not None:
            ax.axvline(at(cfg.drift_period), color="#000000", lw=1.0,
                       label="drift injected (" + ", ".join(cfg.drift_dcs)
                       + f" energy x{cfg.energy_factor:g}"
                       + (", load shift)" if cfg.load_shift else ")"))
        if s.get("detected_period") is not None:
            ax.axvline(at(s["detected_period"] + 1), color="#E69F00", lw=1.0, ls="-.",
                       label="drift detected")
        for i, (p, v) in enumerate(zip(s.get("promotions", []), s.get("versions_promoted", []),
                                       strict=False)):
            ax.axvline(at(p + 1), color="#CC79A7", lw=1.0, ls="--",
                       label="re-tuned version promoted" if i == 0 else None)
            if ax is ax1:
                ax.annotate(v, (at(p + 1), 1.0), xycoords=("data", "axes fraction"),
                            fontsize=6, ha="left", va="top", rotation=90)
    ax2.set_xlim(x.min() - hour, x.max() + hour)
    time_axis(ax2, times, label=f"loop clock, one period = 1 h of {cfg.jobs_per_period} jobs")
    legend_below(fig, (ax1, ax2), ncol=2)
    fig.suptitle(title)
    return save_figure(fig, path, fmt)


def write_loop_report(result: LoopResult, path: str | Path, *, plot_name: str | None = None,
                      command: str = "greensched loop") -> Path:
    """A Markdown report of the run: set-up, the measured numbers, one row per period."""
    s, cfg, per = result.summary, result.config, result.periods
    drift = ("none" if cfg.drift_period is None else
             f"from period {cfg.drift_period}: energy x{cfg.energy_factor:g} at "
             f"{', '.join(cfg.drift_dcs) or 'no DC'}"
             + ("; query mix " + ", ".join(f"{k} x{w:g}" for k, w in cfg.load_shift)
                if cfg.load_shift else ""))
    lines = [
        "# Closed loop: serve, measure, detect, re-tune, promote, swap",
        "",
        f"Reproduce: `{command}`. Wall time {s['elapsed_s']:.0f} s for "
        f"{s['periods_served']} period(s) (+ {s.get('train_s', 0):.0f} s training v1).",
        "",
        "## Set-up",
        "",
        f"* {s['periods_served']} periods of {cfg.jobs_per_period} jobs; epsilon-greedy "
        f"exploration {cfg.epsilon}; drift window {cfg.drift_window} outcomes of the promoted "
        f"version; re-tune on {cfg.tune_window} outcomes plus replay of the {cfg.train_jobs} "
        f"training rows; a candidate must beat the current model by {cfg.min_improvement:.0%}.",
        f"* Injected drift: {drift}.",
        "* Error: MAPE of the energy prediction at the DC that ran each job. Carbon: "
        "theta * PUE * measured energy of greedy placement (no exploration) on the same jobs "
        "and noise with the stale v1, the promoted model and the true energy (oracle).",
        "",
        "## Results",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| v1 validation energy MAPE | {pct(s['v1_validation_energy_mape'])} |",
        f"| served energy MAPE before the drift | {pct(s['pre_change_energy_mape'])} |",
        f"| drift detected at period | {s['detected_period']} (delay "
        f"{s['detection_delay_periods']} period(s), {s['detection_delay_jobs']} jobs) |",
        f"| false DRIFT verdicts before the drift | {s['false_alarms_before_change']} |",
        "| promotions (period: version) | "
        + (", ".join(f"{p}: {v}" for p, v in zip(s["promotions"], s["versions_promoted"],
                                                  strict=False)) or "none") + " |",
        f"| longest hot swap (promotion -> service answers with it) | "
        f"{num(s.get('swap_s_max'), '.2f')} s |",
        f"| energy MAPE, stale v1, drifted periods up to the promotion | "
        f"{pct(s.get('error_before'))} |",
        f"| energy MAPE after the promotion: stale v1 -> served model | "
        f"{pct(s.get('error_stale_after'))} -> {pct(s.get('error_after'))} "
        f"(reduction {pct(s.get('error_reduction'))}) |",
        f"| carbon per job before the drift (served) | {num(s.get('carbon_pre_live_g'))} g |",
        f"| carbon per job after the promotion: stale / promoted / oracle | "
        f"{num(s.get('carbon_stale_g'))} / {num(s.get('carbon_current_g'))} / "
        f"{num(s.get('carbon_oracle_g'))} g |",
        f"| share of the stale model's carbon excess recovered | "
        f"{pct(s.get('carbon_recovered'))} |",
        "",
    ]
    if plot_name:
        lines += [f"![error and carbon per period]({plot_name})", ""]
    lines += ["## Per period", "",
              "| period | hour | served version | jobs | unplaced | energy MAPE served / "
              "stale | verdict | action | swap s | carbon g stale / promoted / oracle |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in per.itertuples(index=False):
        mark = " *" if cfg.drift_period is not None and r.period == cfg.drift_period else ""
        lines.append(
            f"| {r.period}{mark} | {r.hour} | {r.version} | {r.n_jobs} | {r.n_unplaced} | "
            f"{pct(r.mape_energy_live)} / {pct(r.mape_energy_stale)} | {r.verdict} | "
            f"{r.action} | {num(r.swap_s, '.2f')} | {1000 * r.carbon_stale_kg:.4f} / "
            f"{1000 * r.carbon_current_kg:.4f} / {1000 * r.carbon_oracle_kg:.4f} |")
    lines += ["", "`*` first period of the drifted world.", ""]
    p = Path(path)
    p.write_text("\n".join(lines), encoding="utf-8")
    return p
