"""Ablation "continuous learning off", paired over seeds (the drift experiment's two arms).

Each seed runs the drift experiment (:func:`greensched.feedback.experiment.run_drift_experiment`,
by default its quick configuration: 12 periods of 300 jobs, the world changes before period 4):
the closed loop detects the drift and re-tunes (**continuous learning on**), while the stale
initial model v1 is never re-tuned (**continuous learning off**) and predicts the same jobs.
Both arms are scored on the same outcomes, those after the loop's first promotion after the
change: energy and service-time MAPE at the DC that ran each job, and the carbon per job of
greedy placement with that arm's predictions (grid-average θ · PUE · measured energy).  A seed
whose loop never promoted a re-tuned model has no "after" outcomes; it is left out and counted
(``attrs["seeds_without_promotion"]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from greensched.eval.experiment.ablations import ablation_rows

__all__ = ["continuous_learning_ablation"]


def continuous_learning_ablation(
    seeds: Sequence[int], *, quick: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Rows (experiment results format) of both arms for every seed (module docstring)."""
    from greensched.feedback.experiment import run_drift_experiment

    rows: list[dict[str, Any]] = []
    missing: list[int] = []
    summaries: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        if progress:
            progress(i, len(seeds), f"drift experiment seed {seed}")
        res = run_drift_experiment(None, seed=int(seed), quick=quick, extra_seeds=())
        s = res.summary
        summaries.append({"seed": int(seed), **{k: s.get(k) for k in (
            "detected_period", "promoted_period", "false_alarms_before_change",
            "error_after", "error_stale_after", "elapsed_s")}})
        if s.get("promoted_period") is None or not math.isfinite(
                float(s.get("error_after", math.nan))):
            missing.append(int(seed))
            continue
        on = {"pred_mape_energy": s["error_after"], "pred_mape_service": s["service_error_after"],
              "carbon_g_per_job": s["carbon_current_g"]}
        off = {"pred_mape_energy": s["error_stale_after"],
               "pred_mape_service": s["service_error_stale_after"],
               "carbon_g_per_job": s["carbon_stale_g"]}
        rows += ablation_rows("continuous-learning", "continuous-learning", int(seed), on,
                              "xgboost", False)
        rows += ablation_rows("continuous-learning", "continuous-learning-off", int(seed), off,
                              "xgboost", True)
    if progress:
        progress(len(seeds), len(seeds), "done")
    out = pd.DataFrame(rows)
    out.attrs["seeds_without_promotion"] = missing
    out.attrs["per_seed"] = summaries
    return out
