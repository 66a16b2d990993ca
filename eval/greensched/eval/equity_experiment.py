"""SE-GLB experiment on the paper's 10 locations: Table 1, frontier, online regret, solve times.

Run once (several minutes on 2 cores) with ``greensched equity experiment --out reports/`` or
``run_experiment("reports/")``.

It writes ``equity_results.md`` (every table, generated), ``equity_results.json``,
``equity_per_region_q2.png``, ``equity_per_region_qinf.png`` and ``equity_frontier.png``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.equity_scenario import ten_location_problem
from greensched.scheduler.equity.algorithms import algorithm_config, run_algorithms, table1
from greensched.scheduler.equity.online import solve_online
from greensched.scheduler.equity.plots import plot_frontier, plot_per_region
from greensched.scheduler.equity.problem import EquityProblem
from greensched.scheduler.equity.seglb import build_matrices, solve_seglb

__all__ = ["EXPERIMENT", "frontier", "markdown_table", "run_experiment", "solve_times"]

#: Settings of the reported experiment (see docs/equity.md for the choice of μ_s).
EXPERIMENT: dict[str, Any] = {
    "mu_s_usd": 5000.0,
    "env_form": "separate",
    "mean_scaled": True,
    "start": "2024-03-24",
    "days": 18,
}


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table of ``df`` (index as first column), numbers rounded to ``digits``."""

    def fmt(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "nan" if math.isnan(float(v)) else f"{float(v):.{digits}f}"
        return str(v)

    head = "| " + " | ".join([str(df.index.name or ""), *map(str, df.columns)]) + " |"
    sep = "|" + "---|" * (len(df.columns) + 1)
    rows = [
        "| " + " | ".join([str(idx), *(fmt(v) for v in row)]) + " |"
        for idx, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    return "\n".join([head, sep, *rows])


def frontier(
    problem: EquityProblem,
    qs: tuple[float | str, ...] = (1, 2, 4, "inf"),
    mu_scales: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0),
) -> pd.DataFrame:
    """SE-GLB over q × (multiplier of μ_c and μ_w): Table 1 columns plus q and mu_scale."""
    mats = build_matrices(problem)
    rows = []
    for q in qs:
        for scale in mu_scales:
            cfg = algorithm_config(
                "se-glb",
                q=q,
                mu_s_usd=EXPERIMENT["mu_s_usd"],
                mu_c_usd_per_t=1500.0 * scale,
                mu_w_usd_per_m3=60.0 * scale,
                env_form=EXPERIMENT["env_form"],
            )
            res = solve_seglb(problem, cfg, matrices=mats)
            t = table1(problem, {"x": res})
            row = t.iloc[0].to_dict()
            row.update(q=str(q), mu_scale=scale, solve_s=res.solve_s, solver=res.solver)
            rows.append(row)
    return pd.DataFrame(rows)


def solve_times(hours: tuple[int, ...] = (24, 432)) -> pd.DataFrame:
    """SE-GLB (q = 2) solve seconds for the masked and the full 10 × 10 × 3 problem."""
    rows = []
    for masks in (True, False):
        for h in hours:
            t0 = time.perf_counter()
            prob = ten_location_problem(hours=h, masks=masks)
            build_data_s = time.perf_counter() - t0
            cfg = algorithm_config(
                "se-glb", q=2, mu_s_usd=EXPERIMENT["mu_s_usd"], env_form=EXPERIMENT["env_form"]
            )
            t1 = time.perf_counter()
            res = solve_seglb(prob, cfg)
            rows.append(
                {
                    "hours": h,
                    "masks": masks,
                    "variables": int(prob.allowed.sum()) * h,
                    "status": str(res.status),
                    "data_s": build_data_s,
                    "model_build_s": res.build_s,
                    "solve_s": res.solve_s,
                    "total_s": time.perf_counter() - t1,
                }
            )
    return pd.DataFrame(rows).set_index("hours")


def _online_rows(problem: EquityProblem, etas: tuple[float, ...]) -> pd.DataFrame:
    rows = []
    for q in (2, "inf"):
        cfg = algorithm_config(
            "se-glb", q=q, mu_s_usd=EXPERIMENT["mu_s_usd"], env_form=EXPERIMENT["env_form"]
        )
        off = None
        for eta in etas:
            res = solve_online(problem, cfg, eta=eta, offline=off is None)
            if off is None:
                off = res.offline
            res.offline = off
            t = table1(problem, {"online": _as_result(res, problem)})
            rows.append(
                {
                    "q": str(q),
                    "eta": eta,
                    "online_usd": res.components["objective_usd"],
                    "offline_usd": off.objective_usd if off is not None else math.nan,
                    "regret_usd": res.regret_usd,
                    "regret_pct": 100 * res.regret_ratio,
                    "carbon_max_over_avg": t["Carbon max/avg"].iloc[0],
                    "water_max_over_avg": t["Water max/avg"].iloc[0],
                    "perf_cost_max_over_avg": t["Perf. cost max/avg"].iloc[0],
                    "seconds": res.solve_s,
                }
            )
        if off is not None and off.y is not None:
            t = table1(problem, {"offline": off})
            rows.append(
                {
                    "q": str(q),
                    "eta": "offline",
                    "online_usd": math.nan,
                    "offline_usd": off.objective_usd,
                    "regret_usd": 0.0,
                    "regret_pct": 0.0,
                    "carbon_max_over_avg": t["Carbon max/avg"].iloc[0],
                    "water_max_over_avg": t["Water max/avg"].iloc[0],
                    "perf_cost_max_over_avg": t["Perf. cost max/avg"].iloc[0],
                    "seconds": off.solve_s,
                }
            )
    return pd.DataFrame(rows)


def _as_result(online: Any, problem: EquityProblem) -> Any:
    from greensched.scheduler.backends import SolveStatus
    from greensched.scheduler.equity.seglb import EquityResult

    return EquityResult(SolveStatus.OPTIMAL, online.config, problem, "online", 0.0, 0.0, online.y)


def run_experiment(out: str | Path, *, days: int = 18, quick: bool = False) -> dict[str, Any]:
    """Run everything and write the report files into ``out``; returns the numbers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"settings": dict(EXPERIMENT, days=days)}
    sections: list[str] = ["# SE-GLB experiment results (generated by equity_experiment)", ""]
    p24 = ten_location_problem(hours=24, start=EXPERIMENT["start"])
    sections += ["## Scenario notes", ""] + [f"- {k}: {v}" for k, v in p24.notes.items()] + [""]
    for q, tag in ((2, "q2"), ("inf", "qinf"), (4, "q4")):
        res = run_algorithms(
            p24, q=q, mu_s_usd=EXPERIMENT["mu_s_usd"], env_form=EXPERIMENT["env_form"]
        )
        t1 = table1(p24, res)
        t1.index.name = f"24 h, q = {q}"
        summary[f"table1_24h_{tag}"] = t1.to_dict(orient="index")
        summary[f"components_24h_{tag}"] = {k: r.components for k, r in res.items()}
        sections += [f"## Table 1 layout, 24 h, q = {q}", "", markdown_table(t1), ""]
        if tag in ("q2", "qinf"):
            plot_per_region(p24, res, out / f"equity_per_region_{tag}.png")
    geo = ten_location_problem(
        hours=24,
        start=EXPERIMENT["start"],
        base_requests_per_h=30_000.0,
        models=("70B",),
        site_models=False,
    )
    for q in (2, "inf"):
        res = run_algorithms(geo, q=q, mu_s_usd=0.0, env_form=EXPERIMENT["env_form"])
        t1 = table1(geo, res)
        t1.index.name = f"70B only, 24 h, q = {q}"
        summary[f"table1_geo_24h_q{q}"] = t1.to_dict(orient="index")
        sections += [
            f"## Geography only (one model, 70B everywhere, 30 000 req/h per region), q = {q}",
            "",
            markdown_table(t1),
            "",
        ]
    fr = frontier(p24)
    summary["frontier_24h"] = fr.to_dict(orient="records")
    cols = [
        "q",
        "mu_scale",
        "Energy cost avg (USD)",
        "Carbon max/avg",
        "Water max/avg",
        "Perf. cost max/avg",
        "Perf. score avg (%)",
        "solve_s",
    ]
    sections += ["## Frontier (SE-GLB, 24 h)", "", markdown_table(fr[cols].set_index("q")), ""]
    plot_frontier(fr, out / "equity_frontier.png")
    if not quick:
        long = ten_location_problem(hours=24 * days, start=EXPERIMENT["start"])
        res = run_algorithms(
            long, q=2, mu_s_usd=EXPERIMENT["mu_s_usd"], env_form=EXPERIMENT["env_form"]
        )
        t1 = table1(long, res)
        t1.index.name = f"{days} days, q = 2"
        summary["table1_long_q2"] = t1.to_dict(orient="index")
        sections += [f"## Table 1 layout, {days} days, q = 2", "", markdown_table(t1), ""]
        on = _online_rows(long, (0.0, 0.3, 1.0, 3.0))
        summary["online_long"] = on.to_dict(orient="records")
        sections += [
            f"## Online dual mirror descent vs offline, {days} days",
            "",
            markdown_table(on.set_index("q")),
            "",
        ]
        st = solve_times((24, 24 * days))
        summary["solve_times"] = st.reset_index().to_dict(orient="records")
        sections += ["## SE-GLB (q = 2) solve times", "", markdown_table(st), ""]
    (out / "equity_results.md").write_text("\n".join(sections), encoding="utf-8")
    (out / "equity_results.json").write_text(
        json.dumps(summary, indent=1, sort_keys=True, default=str), encoding="utf-8"
    )
    return summary
