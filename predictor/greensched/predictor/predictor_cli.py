"""Bodies of the predictor commands (``greensched train``, ``predict``, ``evaluate-predictor``).

They take plain arguments, do the work, write their outputs and return what they wrote; the CLI
module registers them and prints.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.jobs import load_jobs
from greensched.predictor.base import PRED_VARS, BasePredictor, load_predictor, write_json
from greensched.predictor.dataset import TARGETS, dataset_dcs, dc_column, read_dataset
from greensched.predictor.metrics import evaluate_predictions
from greensched.scenario import load_scenario, save_coefficients

__all__ = [
    "MODELS",
    "evaluate_command",
    "make_predictor",
    "predict_command",
    "train_command",
    "write_evaluation",
]

log = logging.getLogger(__name__)

MODELS = ("lora", "xgboost")


def make_predictor(model: str, *, base_model: str | None = None, epochs: int | None = None,
                   seed: int = 0, **options: Any) -> BasePredictor:
    """An unfitted predictor of kind ``model`` ("lora" or "xgboost") with the given options
    (fields of :class:`~greensched.predictor.lora.LoraConfig` /
    :class:`~greensched.predictor.xgb.XGBoostConfig`)."""
    if model == "lora":
        from greensched.predictor.lora import LoraConfig, LoraPredictor

        extra = {"epochs": epochs} if epochs is not None else {}
        return LoraPredictor(LoraConfig(base_model=base_model, seed=seed, **extra, **options))
    if model == "xgboost":
        from greensched.predictor.xgb import XGBoostConfig, XGBoostPredictor

        if base_model is not None:
            raise GreenSchedError("--base-model applies to --model lora only")
        return XGBoostPredictor(XGBoostConfig(seed=seed, **options))
    raise GreenSchedError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def train_command(
    data: Path,
    model: str,
    base_model: str | None,
    epochs: int,
    out: Path,
    seed: int = 0,
    *,
    val_fraction: float = 0.1,
    max_rows: int | None = None,
    progress: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Train a predictor on a dataset and save it to ``out``.

    Parameters
    ----------
    data
        Dataset (Parquet or CSV, ``docs/dataset-format.md``).
    model
        ``"lora"`` or ``"xgboost"``.
    base_model
        Local Hugging Face model directory for LoRA (default: the packaged MiniLM).
    epochs
        LoRA training epochs (ignored by XGBoost, which stops early on its own).
    out
        Model directory to write.
    seed
        Seed of split, masking and training.
    val_fraction
        Held-out share for early stopping and validation metrics.
    max_rows
        Use only the first ``max_rows`` rows (quick runs).
    progress
        Show a progress bar (LoRA).
    options
        Further config fields of the chosen predictor.

    Returns
    -------
    dict
        The model's ``metrics_`` (also written to ``out/metrics.json``).
    """
    df, meta = read_dataset(data)
    if max_rows is not None:
        df = df.iloc[:max_rows]
    if model == "lora":
        options = {"progress": progress, **options}
    predictor = make_predictor(model, base_model=base_model, epochs=epochs if model == "lora"
                               else None, seed=seed, val_fraction=val_fraction, **options)
    predictor.fit(df, meta=meta)
    predictor.save(out)
    log.info("saved %s model to %s", model, out)
    return predictor.metrics_


def predict_command(
    model: Path,
    scenario: Path,
    jobs: Path | None,
    out: Path | None,
    coefficients_out: Path | None,
) -> dict[str, Path]:
    """Predict jobs of a scenario (one row per job and DC) and/or the planner coefficients.

    Writes ``out`` (CSV: ``job_id, dc`` and the variables of
    :data:`~greensched.predictor.base.PRED_VARS`) when ``jobs`` and ``out`` are given, and
    ``coefficients_out`` (``coefficients.csv`` format: hour, dc, query_type,
    energy_kwh_per_query, proc_delay_s_per_query, the delay without network RTT) when given.
    Returns the written paths by name.
    """
    if out is None and coefficients_out is None:
        raise GreenSchedError("nothing to write: give --out (with --jobs) and/or "
                              "--coefficients-out")
    if out is not None and jobs is None:
        raise GreenSchedError("--out needs --jobs JOBS.csv (the jobs to predict)")
    scen = load_scenario(scenario)
    predictor = load_predictor(model, dcs=scen.dcs)
    written: dict[str, Path] = {}
    if out is not None and jobs is not None:
        table = load_jobs(jobs, scen)
        pred = predictor.predict_jobs(table, scen)
        long = pred.to_dataframe().reset_index()[["job", "dc", *PRED_VARS]]
        long = long.rename(columns={"job": "job_id"})
        out.parent.mkdir(parents=True, exist_ok=True)
        long.to_csv(out, index=False)
        written["predictions"] = out
    if coefficients_out is not None:
        written["coefficients"] = save_coefficients(predictor.coefficients(scen), coefficients_out)
    return written


def _scatter_png(path: Path, truth: pd.DataFrame, pred: pd.DataFrame, dcs: list[str],
                 target: str, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = math.inf, -math.inf
    for d in dcs:
        y = truth[dc_column(target, d)].to_numpy(dtype=float)
        p = pred[dc_column(target, d)].to_numpy(dtype=float)
        ax.scatter(y, p, s=4, alpha=0.5, label=d)
        lo, hi = min(lo, y.min(), p.min()), max(hi, y.max(), p.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title)
    if len(dcs) <= 12:
        ax.legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} %"


def write_evaluation(predictor: BasePredictor, df: pd.DataFrame, out: Path,
                     *, name: str = "") -> dict[str, Any]:
    """Evaluate ``predictor`` on dataset rows; write ``metrics.json``, ``report.md`` and
    predicted-vs-actual PNGs into ``out``; return the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    dcs = predictor.dcs_
    t0 = time.perf_counter()
    pred = predictor.predict_frame(df)
    pred_s = time.perf_counter() - t0
    metrics = evaluate_predictions(pred, df, dcs)
    metrics["model"] = {"kind": predictor.kind, "name": name,
                        "config": predictor.config.to_dict()}
    metrics["predict_seconds"] = pred_s
    metrics["jobs_per_s"] = len(df) / pred_s if pred_s > 0 else float("nan")
    for t in TARGETS:
        _scatter_png(out / f"pred_vs_actual_{t}.png", df, pred, dcs, t,
                     f"{predictor.kind}: {t}")
    write_json(out / "metrics.json", metrics)
    lines = [
        f"# Predictor evaluation: {predictor.kind}{f' ({name})' if name else ''}",
        "",
        f"{len(df)} jobs × {len(dcs)} DCs; prediction took {pred_s:.2f} s "
        f"({metrics['jobs_per_s']:.0f} jobs/s).",
        "",
        f"Action accuracy (highest best_dc_prob = hindsight-best DC): "
        f"{_pct(metrics.get('action_accuracy', float('nan')))}",
        "",
    ]
    for t in TARGETS:
        lines += [
            f"## {t}",
            "",
            "| DC | RMSE | MAPE | R² | p10–p90 coverage (0.8 ideal) | below p10 | above p90 |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in [*dcs, "all"]:
            m = metrics[t][d]
            lines.append(f"| {d} | {m['rmse']:.4g} | {_pct(m['mape'])} | {m['r2']:.4f} | "
                         f"{m['coverage_p10_p90']:.3f} | {m['below_p10']:.3f} | "
                         f"{m['above_p90']:.3f} |")
        lines += ["", f"![predicted vs actual {t}](pred_vs_actual_{t}.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return metrics


def evaluate_command(model: Path, data: Path, out: Path) -> dict[str, Any]:
    """Evaluate a saved model on a test dataset; writes ``out/report.md``, ``out/metrics.json``
    and ``out/pred_vs_actual_<target>.png``; returns the metrics (see
    :mod:`greensched.predictor.metrics`)."""
    df, meta = read_dataset(data)
    predictor = load_predictor(model, dcs=dataset_dcs(df, meta))
    return write_evaluation(predictor, df, out, name=str(model))


def summary_line(metrics: dict[str, Any]) -> str:
    """One line with the pooled energy/service MAPE and action accuracy of a metrics dict."""
    parts = []
    src = metrics.get("validation", metrics)
    for t in TARGETS:
        m = src.get(t, {})
        m = m.get("all", m)
        if "mape" in m:
            parts.append(f"{t} MAPE {_pct(float(m['mape']))}")
    acc = src.get("action_accuracy")
    if acc is not None and np.isfinite(acc):
        parts.append(f"action accuracy {_pct(float(acc))}")
    return ", ".join(parts)
