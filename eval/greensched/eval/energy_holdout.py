"""Held-out evaluation of the energy/runtime model: predictions on unseen runs and error tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from greensched.data.energy_inference import gpu_of_system
from greensched.errors import GreenSchedError
from greensched.eval.energy_model import EnergyModel
from greensched.eval.energy_terms import (
    prepare_fit_rows,
)

__all__ = ["holdout_predictions", "summarize_errors"]


# ----------------------------------------------------------------------------------------------
# validation helpers


def holdout_predictions(
    df: pd.DataFrame,
    *,
    split: str = "random",
    test_fraction: float = 0.2,
    seed: int = 0,
    forms: tuple[str, ...] = ("wilkins", "quadratic", "context"),
    mlenergy: pd.DataFrame | None = None,
    drop_warmup: bool = True,
) -> pd.DataFrame:
    """Held-out predictions of each form for every test row.

    ``split="random"``: one random ``test_fraction`` of the usable rows (seeded) is held out, the
    models are fitted on the rest.  ``split="loso"`` (leave one system out): for every system the
    models are fitted on the other systems and predict the held-out system through its GPU
    (``gpu=gpu_of_system(system)``); a GPU without any factor is predicted as the reference GPU.

    Returns one row per (test row, form, target) with ``measured`` and ``predicted``.
    """
    rows = prepare_fit_rows(df, drop_warmup=drop_warmup).reset_index(drop=True)
    if split == "random":
        rng = np.random.default_rng(seed)
        test = np.zeros(len(rows), dtype=bool)
        test[rng.permutation(len(rows))[: int(round(test_fraction * len(rows)))]] = True
        folds = [("random", test)]
    elif split == "loso":
        folds = [
            (f"without {s}", (rows["system"] == s).to_numpy())
            for s in sorted(rows["system"].unique())
        ]
    else:
        raise GreenSchedError("split must be 'random' or 'loso'")
    out = []
    for fold, test in folds:
        train, held = rows.loc[~test], rows.loc[test]
        for form in forms:
            m = EnergyModel(form=form, drop_warmup=drop_warmup).fit(train, mlenergy)
            for (model, system), g in held.groupby(["model", "system"], sort=True):
                gpu: str | None = system if split == "random" else gpu_of_system(system)
                if gpu not in m.gpu_energy_factor_ and split == "loso":
                    gpu = None
                mdl = model if model in m.models_ else float(g["model_params_b"].iloc[0])
                tin = g["input_tokens"].to_numpy()
                tout = g["output_tokens"].to_numpy()
                for target, pred in (
                    ("energy_j", m.predict_energy_j(tin, tout, model=mdl, gpu=gpu)),
                    ("runtime_s", m.predict_runtime_s(tin, tout, model=mdl, gpu=gpu)),
                ):
                    out.append(
                        pd.DataFrame(
                            {
                                "fold": fold,
                                "form": form,
                                "target": target,
                                "model": model,
                                "system": system,
                                "predicted_as": gpu if gpu is not None else m.reference_gpu,
                                "input_tokens": tin,
                                "output_tokens": tout,
                                "measured": g[target].to_numpy(dtype=np.float64),
                                "predicted": pred,
                            }
                        )
                    )
    return pd.concat(out, ignore_index=True)


def summarize_errors(
    pred: pd.DataFrame, by: tuple[str, ...] = ("form", "target", "model", "system")
) -> pd.DataFrame:
    """MAPE (%), RMSE, median and 90th-percentile absolute percentage error per group."""
    ape = (pred["predicted"] / pred["measured"] - 1.0).abs() * 100.0
    sq = (pred["predicted"] - pred["measured"]) ** 2
    tmp = pred.loc[:, list(by)].assign(ape=ape.to_numpy(), sq=sq.to_numpy())
    g = tmp.groupby(list(by), sort=True)
    res = g.agg(
        n=("ape", "size"),
        mape_pct=("ape", "mean"),
        median_ape_pct=("ape", "median"),
        p90_ape_pct=("ape", lambda s: float(np.quantile(s, 0.9))),
        rmse=("sq", lambda s: float(np.sqrt(s.mean()))),
    )
    return res.reset_index()
