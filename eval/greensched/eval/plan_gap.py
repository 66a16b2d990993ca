"""How much a plan built from *predicted* coefficients loses against one built from the truth.

The twin supplies the true per-query coefficients of a scenario (noise off), with the same
representative-job convention as :meth:`greensched.predictor.base.BasePredictor.coefficients`:
for query type k in hour h, a job with the type's mean tokens from every area a, weighted by the
hour's demand shares w[h,a,k]::

    energy_kwh_per_query[h,d,k]   = Σ_a w · E_true[h,k,a,d]
    proc_delay_s_per_query[h,d,k] = Σ_a w · max(0, s_true[h,k,a,d] − rtt[a,d])

Two plans are solved — one on the predicted, one on the true coefficients — and the predicted
plan's allocation is then priced under the true coefficients (grid purchase re-optimised for that
allocation).  The gap is (true cost of the predicted plan − true optimum) / true optimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario
from greensched.scheduler import PlanConfig, PlanSession
from greensched.weights import Weights

__all__ = ["PlanGap", "plan_gap", "true_coefficients"]


def _representative_jobs(scenario: Scenario) -> tuple[pd.DataFrame, np.ndarray]:
    ds = scenario.ds
    hours = np.asarray(ds.indexes["hour"])
    qts, areas = scenario.query_types, scenario.areas
    hh, kk, aa = (g.ravel() for g in np.meshgrid(np.arange(len(hours)), np.arange(len(qts)),
                                                  np.arange(len(areas)), indexing="ij"))
    jobs = pd.DataFrame({
        "job_id": [f"rep-{h}-{k}-{a}" for h, k, a in zip(hh, kk, aa, strict=True)],
        "hour": hours[hh].astype(np.int64),
        "arrival_s": hours[hh].astype(float) * 3600.0,
        "area": np.asarray(areas, dtype=object)[aa],
        "query_type": np.asarray(qts, dtype=object)[kk],
        "input_tokens": np.round(ds["input_tokens"].values[kk]).astype(np.int64),
        "output_tokens": np.round(ds["output_tokens"].values[kk]).astype(np.int64),
        "sla_s": DEFAULT_SLA_S,
    })
    q = ds["queries"].transpose("hour", "query_type", "area").values  # (H, K, A)
    tot = q.sum(axis=2, keepdims=True)
    w = np.where(tot > 0, q / np.where(tot > 0, tot, 1.0), 1.0 / len(areas))
    return jobs, w


def true_coefficients(scenario: Scenario, seed: int = 0) -> xr.Dataset:
    """The twin's noise-free coefficients per (hour, dc, query_type) (module docstring)."""
    from greensched.eval.simulate import build_dataset

    jobs, w = _representative_jobs(scenario)
    data = build_dataset(scenario, jobs, seed, False)
    H, K, A = w.shape
    dcs = scenario.dcs
    rtt = scenario.ds["rtt_s"].transpose("area", "dc").values  # (A, D)
    energy = np.stack([data[f"energy_kwh__{d}"].to_numpy() for d in dcs], axis=1)
    service = np.stack([data[f"service_s__{d}"].to_numpy() for d in dcs], axis=1)
    energy = energy.reshape(H, K, A, len(dcs))
    proc = np.maximum(0.0, service.reshape(H, K, A, len(dcs)) - rtt[None, None, :, :])
    e = (w[..., None] * energy).sum(axis=2)  # (H, K, D)
    p = (w[..., None] * proc).sum(axis=2)
    coords = {"hour": scenario.ds.indexes["hour"], "query_type": scenario.ds.indexes["query_type"],
              "dc": scenario.ds.indexes["dc"]}
    return xr.Dataset(
        {"energy_kwh_per_query": (("hour", "query_type", "dc"), e),
         "proc_delay_s_per_query": (("hour", "query_type", "dc"), p)},
        coords=coords,
    ).transpose("hour", "dc", "query_type")


@dataclass
class PlanGap:
    """Objective of the true-coefficient plan, of the predicted plan priced at the truth, gap."""

    true_optimum_usd: float
    predicted_plan_true_cost_usd: float
    predicted_plan_own_estimate_usd: float
    gap_pct: float
    components_true: dict[str, float]
    components_predicted_at_truth: dict[str, float]
    coefficient_mape: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for reports."""
        return dict(self.__dict__)


def _price_allocation(scen: Scenario, allocation: xr.DataArray, weights: dict[str, float]
                      ) -> tuple[float, dict[str, float]]:
    """Weighted objective of a fixed allocation under ``scen`` (grid purchase re-optimised)."""
    session = PlanSession(scen)
    comp = session.comp
    x = allocation.transpose(*session.gm.x.labels.dims).values
    cols = comp.col_of[session.gm.x.labels.values.ravel()]
    vals = np.clip(x.ravel(), 0.0, 1.0)
    h = session.backend.h
    h.changeColsBounds(len(cols), cols.astype(np.int32), vals, vals)
    result = session.solve(PlanConfig(weights=Weights.of(weights).as_tuple(),
                                      diagnose=False))
    if not result.is_ok:
        return float("nan"), {}
    return float(result.phases[0]["value_usd"]), dict(result.objective)


def plan_gap(scenario: Scenario, predicted: xr.Dataset, *, seed: int = 0) -> PlanGap:
    """Compare the plan on ``predicted`` coefficients with the plan on the twin's truth."""
    truth = true_coefficients(scenario, seed)
    true_scen = scenario.with_coefficients(truth)
    pred_scen = scenario.with_coefficients(
        predicted.transpose("hour", "dc", "query_type").reindex_like(truth)
    )
    best = PlanSession(true_scen).solve(PlanConfig(diagnose=False))
    mine = PlanSession(pred_scen).solve(PlanConfig(diagnose=False))
    if not (best.is_ok and mine.is_ok):
        raise RuntimeError(f"plans not optimal: truth {best.status}, predicted {mine.status}")
    assert best.weights is not None and mine.allocation is not None
    cost, comps = _price_allocation(true_scen, mine.allocation, best.weights)
    opt = float(best.phases[0]["value_usd"])
    mape = {}
    for var in ("energy_kwh_per_query", "proc_delay_s_per_query"):
        t = truth[var].values
        p = pred_scen.coefficients[var].transpose(*truth[var].dims).values  # type: ignore[index]
        ok = np.abs(t) > 1e-12
        mape[var] = float(np.mean(np.abs(p[ok] - t[ok]) / np.abs(t[ok])))
    return PlanGap(
        true_optimum_usd=opt,
        predicted_plan_true_cost_usd=cost,
        predicted_plan_own_estimate_usd=float(mine.phases[0]["value_usd"]),
        gap_pct=100.0 * (cost - opt) / abs(opt),
        components_true=dict(best.objective),
        components_predicted_at_truth=comps,
        coefficient_mape=mape,
    )


def write_plan_gap_report(
    model_dir: str, out: str, scenario: Scenario | None = None, provenance: str = ""
) -> PlanGap:
    """Write a Markdown report of :func:`plan_gap` for a saved predictor (default scenario)."""
    from pathlib import Path

    from greensched.defaults import default_scenario
    from greensched.predictor.checkpoint import load_predictor

    scen = scenario or default_scenario()
    predictor = load_predictor(model_dir)
    gap = plan_gap(scen, predictor.coefficients(scen))
    t, p = gap.components_true, gap.components_predicted_at_truth
    ec_t = t["energy_usd"] + t["carbon_usd"]
    ec_p = p["energy_usd"] + p["carbon_usd"]
    mape_e = 100 * gap.coefficient_mape["energy_kwh_per_query"]
    mape_d = 100 * gap.coefficient_mape["proc_delay_s_per_query"]
    rows = [
        ("coefficient MAPE, energy per query", f"{mape_e:.2f} %"),
        ("coefficient MAPE, processing delay per query", f"{mape_d:.2f} %"),
        ("weighted objective, plan on true coefficients (optimum)",
         f"{gap.true_optimum_usd:.4f} USD"),
        ("weighted objective, plan on predicted coefficients, priced at the truth",
         f"{gap.predicted_plan_true_cost_usd:.4f} USD"),
        ("**objective gap**", f"**{gap.gap_pct:.4f} %**"),
        ("energy + carbon cost, true plan / predicted plan",
         f"{ec_t:.4f} / {ec_p:.4f} USD ({100 * (ec_p - ec_t) / ec_t:+.2f} %)"),
        ("predicted plan's own estimate of its objective",
         f"{gap.predicted_plan_own_estimate_usd:.4f} USD"),
    ]
    lines = [
        "# Plan from predicted vs true coefficients",
        "",
        f"Scenario {scen.name!r}; predictor `{model_dir}` ({predictor.kind}); truth = the digital "
        "twin with noise off (`greensched.eval.plan_gap`). Reproduce: "
        f"`python -m greensched.eval.plan_gap --model {model_dir} --out {out}`.",
        "",
        "| quantity | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "The delay term (the letter's hour-total delay) dominates this scenario's objective, so "
        "the weighted gap is small; the energy + carbon row shows the gap on the green part.",
        "",
    ]
    if provenance:
        lines += ["How the model was made: " + provenance, ""]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    return gap


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="reports/predictor_plan_gap.md")
    ap.add_argument("--provenance", default="", help="How the model was trained (free text).")
    args = ap.parse_args()
    print(write_plan_gap_report(args.model, args.out, provenance=args.provenance).to_dict())
