"""Learned predictors on real measurements: random 20 % and leave-one-system-out splits.

The predictor proper (``greensched.predictor``) learns the twin's per-DC outcomes; this module
checks the learning part against the *measured* runs of ``energy_inference`` (Wilkins, Keshav &
Mortier, arXiv 2407.04014) with the same splits as the twin's fit
(:func:`greensched.eval.energy_model.holdout_predictions`): an XGBoost regressor on log targets
(features: input and output tokens, model size, GPU one-hot) next to the fitted physical form.

Reproduce: ``python -m greensched.eval.measured_split --data ../shared/data/energy_inference
--out reports/predictor_measured.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data.energy_inference import gpu_of_system, read_energy_inference
from greensched.eval.energy_holdout import holdout_predictions, summarize_errors
from greensched.eval.energy_terms import prepare_fit_rows

__all__ = ["measured_split_errors", "write_measured_report"]

GPUS = ("A100", "V100", "M1-Pro", "H100", "B200")


def _features(rows: pd.DataFrame) -> np.ndarray:
    gpu = rows["system"].map(gpu_of_system)
    cols = [
        np.log1p(rows["input_tokens"].to_numpy(float)),
        np.log1p(rows["output_tokens"].to_numpy(float)),
        np.log(rows["model_params_b"].to_numpy(float)),
        *[(gpu == g).to_numpy(float) for g in GPUS],
    ]
    return np.column_stack(cols)


def _xgb_predictions(rows: pd.DataFrame, split: str, seed: int) -> pd.DataFrame:
    import xgboost as xgb

    if split == "random":
        rng = np.random.default_rng(seed)
        test = np.zeros(len(rows), dtype=bool)
        test[rng.permutation(len(rows))[: int(round(0.2 * len(rows)))]] = True
        folds = [("random", test)]
    else:
        folds = [(f"without {s}", (rows["system"] == s).to_numpy())
                 for s in sorted(rows["system"].unique())]
    X = _features(rows)
    out = []
    for fold, test in folds:
        for target in ("energy_j", "runtime_s"):
            y = np.log(rows[target].to_numpy(float))
            model = xgb.XGBRegressor(n_estimators=300, max_depth=5, learning_rate=0.08,
                                     subsample=0.9, n_jobs=1, random_state=seed)
            model.fit(X[~test], y[~test])
            pred = np.exp(model.predict(X[test]))
            held = rows.loc[test]
            out.append(pd.DataFrame({
                "fold": fold, "form": "xgboost", "target": target,
                "model": held["model"].to_numpy(), "system": held["system"].to_numpy(),
                "measured": held[target].to_numpy(float), "predicted": pred,
            }))
    return pd.concat(out, ignore_index=True)


def measured_split_errors(data_dir: str | Path, seed: int = 0) -> pd.DataFrame:
    """MAPE per (split, form, target, system) for XGBoost and the fitted context form."""
    df = read_energy_inference(data_dir)
    rows = prepare_fit_rows(df).reset_index(drop=True)
    parts = []
    for split in ("random", "loso"):
        phys = holdout_predictions(df, split=split, seed=seed, forms=("context",))
        phys = phys[["fold", "form", "target", "model", "system", "measured", "predicted"]]
        both = pd.concat([phys, _xgb_predictions(rows, split, seed)], ignore_index=True)
        err = summarize_errors(both, by=("form", "target", "system"))
        err.insert(0, "split", "random 20 %" if split == "random" else "leave one system out")
        parts.append(err)
    return pd.concat(parts, ignore_index=True)


def write_measured_report(data_dir: str | Path, out: str | Path, seed: int = 0) -> pd.DataFrame:
    """Write the Markdown table of :func:`measured_split_errors`."""
    err = measured_split_errors(data_dir, seed)
    piv = err.pivot_table(index=["split", "system"], columns=["target", "form"],
                          values="mape_pct").round(1)
    lines = [
        "# Learned predictor on real measurements",
        "",
        "MAPE (%) on held-out measured runs of `energy_inference` (Wilkins, Keshav & Mortier, "
        "arXiv 2407.04014): an XGBoost regressor on log targets (tokens, model size, GPU) vs the "
        "twin's fitted physical form (`context`, see twin_energy_fit.md). Same splits as the twin "
        "report. Produced by `python -m greensched.eval.measured_split`.",
        "",
        "| split | held-out system | energy: xgboost | energy: context form | runtime: xgboost "
        "| runtime: context form |",
        "|---|---|---|---|---|---|",
    ]
    for (split, system), row in piv.iterrows():
        lines.append(
            f"| {split} | {system} | {row[('energy_j', 'xgboost')]} | "
            f"{row[('energy_j', 'context')]} | {row[('runtime_s', 'xgboost')]} | "
            f"{row[('runtime_s', 'context')]} |"
        )
    pooled = err.groupby(["split", "form", "target"]).apply(
        lambda g: float(np.average(g["mape_pct"], weights=g["n"])), include_groups=False
    ).round(1)
    lines += ["", "Pooled over systems (weighted by held-out runs):", "",
              "| split | form | target | MAPE % |", "|---|---|---|---|"]
    for (split, form, target), v in pooled.items():
        lines.append(f"| {split} | {form} | {target} | {v} |")
    lines += [
        "",
        "Leave-one-system-out asks a learner to predict hardware it never saw. A GPU one-hot "
        "carries no information about an unseen GPU, so both learners fail for V100 and M1-Pro, "
        "and only the two A100 systems transfer to each other.",
        "",
    ]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines), encoding="utf-8")
    return err


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data/energy_inference")
    ap.add_argument("--out", default="reports/predictor_measured.md")
    args = ap.parse_args()
    print(write_measured_report(args.data, args.out).to_string())
