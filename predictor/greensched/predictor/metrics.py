"""Accuracy metrics of predictions against dataset ground truth.

Per target (``energy_kwh``, ``service_s``) and DC, plus pooled over DCs (key ``"all"``):

* ``rmse`` – root mean squared error, in the target's unit;
* ``mape`` – mean absolute percentage error as a fraction (0.05 = 5 %);
* ``rmse_log`` – sqrt(mean(ln(p / y)²)), scale-free;
* ``r2`` – coefficient of determination (1 − SS_res / SS_tot; NaN when y is constant);
* ``coverage_p10_p90`` – share of truths within [p10, p90] (0.8 for calibrated quantiles),
  ``below_p10`` / ``above_p90`` – shares outside each end (0.1 each when calibrated).

``action_accuracy`` is the share of jobs whose highest ``best_dc_prob`` is the hindsight-best DC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from greensched.predictor.dataset import TARGETS, dc_column

__all__ = ["evaluate_predictions", "target_metrics"]


def target_metrics(y: np.ndarray, p: np.ndarray, p10: np.ndarray | None = None,
                   p90: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one target (see the module docstring); arrays of equal shape, flattened."""
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    err = p - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    out = {
        "n": float(y.size),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err) / np.abs(y))),
        "rmse_log": float(np.sqrt(np.mean(np.log(p / y) ** 2))),
        "r2": float(1.0 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
    }
    if p10 is not None and p90 is not None:
        lo = np.asarray(p10, dtype=float).ravel()
        hi = np.asarray(p90, dtype=float).ravel()
        out["coverage_p10_p90"] = float(np.mean((y >= lo) & (y <= hi)))
        out["below_p10"] = float(np.mean(y < lo))
        out["above_p90"] = float(np.mean(y > hi))
    return out


def evaluate_predictions(pred: pd.DataFrame, truth: pd.DataFrame,
                         dcs: Sequence[str]) -> dict[str, Any]:
    """Metrics of ``pred`` (a :meth:`predict_frame` result) against ``truth`` (dataset rows with
    targets, same row order).

    Returns ``{target: {dc | "all": {metric: value}}, "action_accuracy": float, "n_jobs": int}``.
    """
    out: dict[str, Any] = {"n_jobs": len(truth)}
    for t in TARGETS:
        y = np.column_stack([truth[dc_column(t, d)].to_numpy(dtype=float) for d in dcs])
        cols = {q: np.column_stack([pred[dc_column(f"{t}{q}", d)].to_numpy(dtype=float)
                                    for d in dcs]) for q in ("", "_p10", "_p90")}
        per = {d: target_metrics(y[:, j], cols[""][:, j], cols["_p10"][:, j], cols["_p90"][:, j])
               for j, d in enumerate(dcs)}
        per["all"] = target_metrics(y, cols[""], cols["_p10"], cols["_p90"])
        out[t] = per
    if "best_dc" in truth.columns:
        prob = np.column_stack([pred[dc_column("best_dc_prob", d)].to_numpy(dtype=float)
                                for d in dcs])
        chosen = np.asarray(dcs, dtype=object)[prob.argmax(axis=1)]
        out["action_accuracy"] = float(np.mean(chosen == truth["best_dc"].astype(str).to_numpy()))
    return out
