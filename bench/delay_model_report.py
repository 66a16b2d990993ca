"""Measurements of the per-query delay model; writes reports/delay_model.md and its figure.

Run on demand (about 2 min on 2 cores):

    python bench/delay_model_report.py [--coef /tmp/chain/coef.csv] [--out reports/]

``--coef``: coefficients learned by the chain simulate → train xgboost → predict
--coefficients-out on the paper scenario (see the report); without it that section is skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.defaults import default_scenario
from greensched.eval.plan_gap import true_coefficients
from greensched.eval.twin import Twin, evaluate_allocation
from greensched.eval.twin_plan import loaded_coefficients, twin_pool_slots
from greensched.scenario import Scenario, load_coefficients, load_scenario
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.greenllm import delay_coefficients
from greensched.scheduler.per_query import delay_floor_usd
from greensched.scheduler.sweep import run_sweep

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paper_scenario"
RHO_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else float("nan")


def agreement(scen: Scenario) -> dict[str, Any]:
    """Planner vs the twin executing the plan (coefficients mode, exact M/G/c wait, no noise)."""
    out: dict[str, Any] = {}
    # the letter's model on the same day: Δ as the builder used to convert it (L × busiest λ)
    old = scen.copy()
    old.delay_model = "letter"
    old.ds["delay_limit_s"] = (
        np.ceil(1000.0 * scen.ds["delay_limit_s"] * scen.ds["queries"].max("hour").clip(min=1.0))
        / 1000.0
    )
    letter = plan(old, PlanConfig(delay_model="letter"))
    assert letter.is_ok, letter.message
    rho = scen.ds["delay_penalty_usd_per_s"]
    floor_letter = float((rho * delay_coefficients(old).min("dc")).sum())
    out["letter"] = {
        "objective": letter.objective,
        "decision_share": (letter.objective["delay_usd"] - floor_letter)
        / letter.objective["delay_usd"],
    }
    res = plan(scen, PlanConfig(delay_model="per_query"))
    assert res.is_ok and res.allocation is not None, res.message
    twin = evaluate_allocation(scen, res.allocation, delay_model="per_query")
    out["per_query"] = {
        "objective": res.objective,
        "latency": res.latency,
        "it_kwh": res.it_kwh,
        "twin": {
            k: twin[k]
            for k in (
                "latency_s_per_query",
                "delay_cost_usd",
                "queueing_s",
                "sla_penalty_usd",
                "it_kwh",
                "energy_usd",
                "carbon_usd",
            )
        },
    }
    return out


def tight_fleet(scen: Scenario, slots_per_pool: float = 16.0) -> dict[str, Any]:
    """Default day with every pool at ``slots_per_pool`` slots (default rule: 38): does it steer?"""
    ds = scen.ds
    slots = xr.full_like(ds["pue"] * ds["input_tokens"], slots_per_pool)
    res = plan(scen, PlanConfig(delay_model="per_query", pool_slots=slots))
    assert res.is_ok and res.allocation is not None, res.message
    tw = evaluate_allocation(scen, res.allocation, delay_model="per_query", pool_slots=slots)
    return {
        "slots": slots_per_pool,
        "objective": res.objective,
        "latency": res.latency,
        "twin": {k: tw[k] for k in ("latency_s_per_query", "delay_cost_usd", "queueing_s")},
    }


def physics(scen: Scenario, iterations: int = 3) -> list[dict[str, Any]]:
    """Planner on the twin's own coefficients vs the physics twin (no noise), iterated.

    Iteration 0 plans on :func:`true_coefficients` (representative jobs, near-empty twin:
    batch 1); each later iteration plans on :func:`loaded_coefficients` of the twin at the
    previous plan's loads.  Pool slots: the twin fleet's; cs² = 0 (the twin executes a plan as
    mean-sized jobs, so its queues see deterministic service).
    """
    tw = Twin(scen)
    slots = twin_pool_slots(tw)
    coef = true_coefficients(scen)
    rows = []
    for it in range(iterations):
        res = plan(
            scen.with_coefficients(coef.transpose("hour", "dc", "query_type")),
            PlanConfig(delay_model="per_query", pool_slots=slots, service_scv=0.0),
        )
        assert res.is_ok and res.allocation is not None, res.message
        ev = evaluate_allocation(
            scen, res.allocation, twin=tw, mode="physics", delay_model="per_query"
        )
        rows.append(
            {
                "iteration": it,
                "planner_latency_s": res.latency["latency_s_per_query"],
                "twin_latency_s": ev["latency_s_per_query"],
                "planner_delay_usd": res.objective["delay_usd"],
                "twin_delay_usd": ev["delay_cost_usd"],
                "planner_it_kwh": res.it_kwh,
                "twin_it_kwh": ev["it_kwh"],
                "planner_queueing_s": res.latency["queueing_s"],
                "twin_queueing_s": ev["queueing_s"],
            }
        )
        coef = loaded_coefficients(tw, ev["queue"])
    return rows


def rho_sweep(scen: Scenario, out: Path) -> pd.DataFrame:
    """``greensched sweep --param rho`` under per_query (preset m0) and its trade-off plot."""
    import matplotlib.pyplot as plt

    frame = run_sweep(scen, "rho", RHO_SCALES, ("m0",), progress=False)
    frame.to_csv(out / "delay_model_rho_sweep.csv", index=False)
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    lat = frame["latency_s_per_query"]
    ax[0].plot(lat, frame["energy_usd"] + frame["carbon_usd"], "o-")
    ax[0].set_xlabel("latency (s per query)")
    ax[0].set_ylabel("energy + carbon cost (USD)")
    ax[1].plot(lat, frame["carbon_kg"], "o-", color="tab:green")
    ax[1].set_xlabel("latency (s per query)")
    ax[1].set_ylabel("carbon (kg CO2)")
    for a in ax:
        for x, y, s in zip(lat, a.lines[0].get_ydata(), frame["scale"], strict=True):
            a.annotate(f"ρ×{s:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    fig.suptitle(f"{scen.name}: per_query, ρ scaled (preset m0)")
    fig.tight_layout()
    fig.savefig(out / "delay_model_rho_sweep.png", dpi=120)
    plt.close(fig)
    return frame


def learned(coef_path: Path) -> dict[str, Any]:
    """Paper scenario, per_query, learned vs the twin's true coefficients."""
    paper = load_scenario(PAPER)
    learned_coef = load_coefficients(coef_path, paper)
    res_l = plan(paper.with_coefficients(learned_coef), PlanConfig(delay_model="per_query"))
    res_t = plan(
        paper.with_coefficients(true_coefficients(paper).transpose("hour", "dc", "query_type")),
        PlanConfig(delay_model="per_query"),
    )
    letter_l = plan(paper.with_coefficients(learned_coef), PlanConfig(delay_model="letter"))
    truth = paper.with_coefficients(true_coefficients(paper).transpose("hour", "dc", "query_type"))
    assert res_l.allocation is not None
    at_truth = evaluate_allocation(truth, res_l.allocation, delay_model="per_query")
    return {
        "learned_status": res_l.status.value,
        "true_status": res_t.status.value,
        "learned_it_kwh": res_l.it_kwh,
        "learned_plan_true_it_kwh": at_truth["it_kwh"],
        "true_it_kwh": res_t.it_kwh,
        "learned_objective": res_l.objective,
        "true_objective": res_t.objective,
        "learned_latency": res_l.latency,
        "true_latency": res_t.latency,
        "letter_learned_status": letter_l.status.value,
        "letter_learned_message": letter_l.message[:200],
    }


def bench(scen_dir: Path, coef_path: Path | None, repeat: int = 3) -> dict[str, float]:
    """End-to-end load + build + solve, letter vs per_query, median of ``repeat``."""

    def e2e(dm: str, coef: Path | None) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = plan(load_scenario(scen_dir, coefficients=coef), PlanConfig(delay_model=dm))
            assert r.is_ok, r.message
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    e2e("letter", None)  # warm
    out = {"letter_s": e2e("letter", None), "per_query_s": e2e("per_query", None)}
    if coef_path is not None:
        out["letter_learned_s"] = float("nan")  # letter is infeasible with learned coefficients
        out["per_query_learned_s"] = e2e("per_query", coef_path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coef", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scen = default_scenario()
    result: dict[str, Any] = {"agreement": agreement(scen)}
    result["physics"] = physics(scen)
    result["tight_fleet"] = tight_fleet(scen)
    sweep = rho_sweep(scen, args.out)
    result["rho_sweep"] = sweep[
        [
            "scale",
            "energy_usd",
            "carbon_usd",
            "delay_usd",
            "carbon_kg",
            "latency_s_per_query",
            "queueing_s",
        ]
    ].to_dict("records")
    if args.coef is not None:
        result["learned"] = learned(args.coef)
    result["bench"] = bench(PAPER, args.coef)
    result["floor_default_usd"] = delay_floor_usd(scen)
    (args.out / "delay_model.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
