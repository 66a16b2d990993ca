"""Markdown report and figures of an experiment run directory (:func:`write_report`).

The report has, in this order: the run's facts; one table of every variant (mean ± 95 % CI over
seeds); GreenSched against every other variant on carbon and on cost (reduction %, paired t and
Wilcoxon p-values with Holm correction, effect sizes); the proposal's expected outcomes marked
met / not met with the measured figure; where GreenSched loses; the figures (bars with CI
whiskers, carbon vs SLA-violation scatter, hourly carbon and cost profiles, per-region bars).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.experiment.stats import compare, summarize

__all__ = ["EXPECTED_OUTCOMES", "SECTIONS", "expected_outcomes", "write_report"]

#: Section headings of the report, in order (the tests check them).
SECTIONS = (
    "## Run",
    "## Every variant",
    "## GreenSched against each variant: carbon",
    "## GreenSched against each variant: cost",
    "## Expected outcomes of the proposal",
    "## Where GreenSched loses",
    "## Figures",
)

#: (id, statement) of the proposal's expected outcomes.
EXPECTED_OUTCOMES = (
    ("carbon-vs-pcaps", "15–30 % carbon savings vs PCAPS"),
    ("carbon-vs-carbonscaler", "15–30 % carbon savings vs CarbonScaler"),
    ("carbon-vs-pure-ml", "5–10 % carbon savings beyond the pure-ML (XGBoost) pipeline"),
    ("sla", "≥ 99 % of jobs within SLA"),
    ("greedy-ms", "< 10 ms per job (greedy decision)"),
    ("batch-ip-s", "< 1 s per batch IP"),
    ("continuous-learning", "continuous learning −10 % error vs a static model"),
)


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _p(x: float) -> str:
    if not np.isfinite(x):
        return "–"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def _mean(summary: pd.DataFrame, variant: str, metric: str) -> tuple[float, float]:
    row = summary[(summary["variant"] == variant) & (summary["metric"] == metric)]
    if row.empty:
        return float("nan"), float("nan")
    return float(row["mean"].iloc[0]), float(row["ci95"].iloc[0])


def expected_outcomes(results: pd.DataFrame, greensched: str,
                      carbon_only: bool = False) -> list[dict[str, Any]]:
    """Each expected outcome with the measured figure and met / not met / not measured
    (``carbon_only``: the three carbon outcomes only)."""
    summary = summarize(results)
    variants = set(results["variant"])
    carbon = compare(results, greensched, "carbon_kg")
    out: list[dict[str, Any]] = []

    def red(baseline: str, low: float, oid: str, text: str) -> None:
        row = carbon[carbon["baseline"] == baseline]
        if row.empty:
            out.append({"id": oid, "outcome": text, "measured": f"no {baseline!r} variant",
                        "status": "not measured"})
            return
        r, h = float(row["reduction_pct"].iloc[0]), float(row["reduction_ci95"].iloc[0])
        p = float(row["p_ttest_holm"].iloc[0])
        out.append({"id": oid, "outcome": text,
                    "measured": f"{r:.1f} % ± {h:.1f} (Holm p = {_p(p)})",
                    "status": ("met" if r >= low and p < 0.05 else
                               "not met (not significant)" if r >= low else "not met")})

    red("pcaps", 15.0, *EXPECTED_OUTCOMES[0])
    red("carbonscaler", 15.0, *EXPECTED_OUTCOMES[1])
    red("pure-ml-xgboost", 5.0, *EXPECTED_OUTCOMES[2])
    m, h = _mean(summary, greensched, "sla_violation_rate")
    out.append({"id": "sla", "outcome": EXPECTED_OUTCOMES[3][1],
                "measured": f"{100 * (1 - m):.2f} % ± {100 * h:.2f} within SLA",
                "status": "met" if 1 - m >= 0.99 else "not met"})
    if carbon_only:
        return out
    # CPU time of the worker (does not grow when other processes share the cores) where the
    # run recorded it; the wall clock beside it
    cpu = "ms_per_decision_cpu" in set(results["metric"])
    ms_metric = "ms_per_decision_cpu" if cpu else "ms_per_decision"
    ms = [(v, *_mean(summary, v, ms_metric)) for v in (greensched, "greedy") if v in variants]
    worst = max((x[1] for x in ms), default=float("nan"))
    kind = "CPU " if cpu else ""
    out.append({"id": "greedy-ms", "outcome": EXPECTED_OUTCOMES[4][1],
                "measured": ", ".join(f"{v}: {a:.3f} {kind}ms ± {b:.3f}"
                                      f" (wall {_mean(summary, v, 'ms_per_decision')[0]:.3f})"
                                      for v, a, b in ms) or "–",
                "status": "met" if np.isfinite(worst) and worst < 10 else
                ("not measured" if not ms else "not met")})
    if "batch-ip" in variants:
        def slowest(metric: str) -> float:
            sub = results[(results["variant"] == "batch-ip") & (results["metric"] == metric)]
            return float(sub["value"].max()) if len(sub) else float("nan")

        mx = slowest("max_step_cpu_s" if cpu else "max_step_s")
        wall = slowest("max_step_s")
        out.append({"id": "batch-ip-s", "outcome": EXPECTED_OUTCOMES[5][1],
                    "measured": f"slowest hourly batch {mx:.3f} {kind}s over all seeds "
                                f"(wall {wall:.3f} s)",
                    "status": "met" if mx < 1.0 else "not met"})
    else:
        out.append({"id": "batch-ip-s", "outcome": EXPECTED_OUTCOMES[5][1],
                    "measured": "no 'batch-ip' variant", "status": "not measured"})
    out.append({"id": "continuous-learning", "outcome": EXPECTED_OUTCOMES[6][1],
                "measured": "not part of this experiment (measured by `greensched experiment "
                "ablations`: reports/ablations.md)",
                "status": "not measured"})
    return out


def _figures(results: pd.DataFrame, hourly: pd.DataFrame, greensched: str, fig_dir: Path,
             meta: dict[str, Any] | None = None) -> list[tuple[str, Path]]:
    """The report's figures in the house style (:mod:`greensched.eval.experiment.figures`);
    ``meta`` (``experiment.json``) gives GreenSched's alternatives and the scenario."""
    from greensched.eval.experiment.figures import experiment_figures

    meta = meta or {}
    return experiment_figures(results, hourly, fig_dir, greensched=greensched,
                              alternatives=tuple(meta.get("alternatives") or ()),
                              scenario=meta.get("scenario"))


#: (caption, file) of the figures :func:`_figures` makes, in order.
_FIGURE_CAPTIONS: list[tuple[str, Path]] = [
    ("carbon (kg CO2) per variant", Path("bars_carbon_kg.png")),
    ("energy + carbon cost (USD) per variant", Path("bars_cost_usd.png")),
    ("SLA violation rate per variant", Path("bars_sla_violation_rate.png")),
    ("carbon vs SLA violation (means over seeds)", Path("carbon_vs_sla.png")),
    ("hourly carbon and cost profiles", Path("hourly_profiles.png")),
    ("carbon per region", Path("carbon_per_region.png")),
]


def _comparison_table(cmp: pd.DataFrame, unit: str) -> list[str]:
    lines = [f"| baseline | GreenSched {unit} | baseline {unit} | reduction % (95 % CI) | "
             "p t (Holm) | p Wilcoxon (Holm) | Cohen's d_z | rank-biserial |",
             "|---|---|---|---|---|---|---|---|"]
    for r in cmp.itertuples():
        lines.append(
            f"| {r.baseline} | {_fmt(r.greensched_mean)} | {_fmt(r.baseline_mean)} | "
            f"{r.reduction_pct:.1f} ± {r.reduction_ci95:.1f} | {_p(r.p_ttest_holm)} | "
            f"{_p(r.p_wilcoxon_holm)} | {_fmt(r.cohens_dz, 3)} | {_fmt(r.rank_biserial, 3)} |"
        )
    return lines


def _source_notes(source: str) -> str:
    """``notes`` of the experiment file the run came from (when it is still there)."""
    import tomllib

    p = Path(source)
    if not source or not p.is_file():
        return ""
    try:
        return str(tomllib.loads(p.read_text(encoding="utf-8")).get("notes", ""))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ""


def write_report(run_dir: str | Path, markdown: str | Path | None = None,
                 command: str | None = None, figures: bool = True) -> Path:
    """Write the report of ``run_dir`` (default ``run_dir/report.md``); figures beside it
    (``figures=False``: the Markdown only, the Figures section links the files of an earlier
    call)."""
    run = Path(run_dir)
    results = pd.read_parquet(run / "results.parquet")
    hourly = pd.read_parquet(run / "hourly.parquet")
    meta = json.loads((run / "experiment.json").read_text(encoding="utf-8"))
    gs = meta["greensched"]
    md = Path(markdown) if markdown is not None else run / "report.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = md.parent / f"{md.stem}_figures"
    summary = summarize(results)
    order = list(dict.fromkeys(results["variant"]))
    lines = [f"# Experiment `{meta['experiment']}`", "", SECTIONS[0], ""]
    jobs = meta["jobs"]
    lines += [
        f"- scenario: `{meta['scenario']}`; {meta['seeds']} seeds; {jobs['n_jobs']} jobs per "
        f"seed (Azure traces: `{jobs['traces']}`), batch share {jobs['batch_share']}, batch "
        f"deadlines {jobs['batch_deadline_h'][0]}–{jobs['batch_deadline_h'][1]} h",
        f"- twin noise {meta['noise']}, forecast error σ = {meta['forecast_error']}, capacity × "
        f"{meta['capacity_scale']}",
        f"- engine {meta['engine']}, {meta['workers']} worker(s), wall time "
        f"{meta['wall_s']:.1f} s",
        f"- GreenSched variant: `{gs}`; every comparison is paired over seeds (same jobs, "
        "noise and forecast error)",
    ]
    command = command or meta.get("command")
    if command:
        lines.append(f"- regenerate: `{command}`")
    notes = meta.get("notes") or _source_notes(meta.get("source", ""))
    if notes:
        lines += ["", notes.strip()]
    has_cpu = "ms_per_decision_cpu" in set(results["metric"])  # runs before it: wall clock
    ms_col = "ms_per_decision_cpu" if has_cpu else "ms_per_decision"
    step_col = "max_step_cpu_s" if has_cpu else "max_step_s"
    timing = "ms/job (CPU) | max step CPU s" if has_cpu else "ms/job | max step s"
    lines += ["", SECTIONS[1], "",
              "| variant | policy | predictor | carbon kg | cost USD | energy kWh | water l | "
              f"SLA viol. % | deferred % | {timing} | energy MAPE |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    info = results.drop_duplicates("variant").set_index("variant")
    for v in order:
        def cell(metric: str, scale: float = 1.0, v: str = v) -> str:
            m, h = _mean(summary, v, metric)
            return f"{_fmt(m * scale)} ± {_fmt(h * scale, 2)}"

        lines.append(
            f"| {v} | {info.loc[v, 'policy']} | {info.loc[v, 'predictor']} | "
            f"{cell('carbon_kg')} | {cell('cost_usd')} | {cell('energy_kwh')} | "
            f"{cell('water_l')} | {cell('sla_violation_rate', 100)} | "
            f"{cell('deferred_share', 100)} | {cell(ms_col)} | "
            f"{cell(step_col)} | {cell('pred_mape_energy')} |"
        )
    carbon = compare(results, gs, "carbon_kg")
    cost = compare(results, gs, "cost_usd")
    lines += ["", SECTIONS[2], "", *_comparison_table(carbon, "kg"), "",
              SECTIONS[3], "", *_comparison_table(cost, "USD"), "", SECTIONS[4], "",
              "| outcome | measured | status |", "|---|---|---|"]
    for o in expected_outcomes(results, gs):
        lines.append(f"| {o['outcome']} | {o['measured']} | **{o['status']}** |")
    for alt in meta.get("alternatives") or []:
        lines.append("")
        lines.append(f"The carbon and SLA outcomes for the GreenSched setting `{alt}` (same "
                     "seeds):")
        lines += ["", "| outcome | measured | status |", "|---|---|---|"]
        for o in expected_outcomes(results, alt, carbon_only=True):
            lines.append(f"| {o['outcome']} | {o['measured']} | **{o['status']}** |")
        alt_cmp = compare(results, alt, "carbon_kg")
        lines += ["", f"`{alt}` against each variant, carbon:", "",
                  *_comparison_table(alt_cmp, "kg")]
    lines += ["", SECTIONS[5], ""]
    losses = []
    for r in carbon.itertuples():
        if r.reduction_pct < 0:
            sig = "significant" if r.p_ttest_holm < 0.05 else "not significant"
            losses.append(f"- carbon: `{r.baseline}` emits {-r.reduction_pct:.1f} % less than "
                          f"GreenSched (Holm p = {_p(r.p_ttest_holm)}, {sig})")
    for r in cost.itertuples():
        if r.reduction_pct < 0:
            sig = "significant" if r.p_ttest_holm < 0.05 else "not significant"
            losses.append(f"- cost: `{r.baseline}` costs {-r.reduction_pct:.1f} % less than "
                          f"GreenSched (Holm p = {_p(r.p_ttest_holm)}, {sig})")
    m_gs, _ = _mean(summary, gs, "sla_violation_rate")
    for v in order:
        m_v, _ = _mean(summary, v, "sla_violation_rate")
        if v != gs and m_v < m_gs:
            losses.append(f"- SLA: `{v}` violates {100 * m_v:.3f} % vs GreenSched's "
                          f"{100 * m_gs:.3f} %")
    lines += losses or ["- nowhere in this experiment"]
    lines += ["", SECTIONS[6], ""]
    made = _figures(results, hourly, gs, fig_dir, meta) if figures else _FIGURE_CAPTIONS
    for caption, path in made:
        lines.append(f"![{caption}]({fig_dir.name}/{path.name})")
        lines.append("")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
