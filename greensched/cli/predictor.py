"""Bodies of the predictor commands (``greensched train``, ``predict``, ``evaluate-predictor``).

They take plain arguments, do the work, write their outputs and return what they wrote; the CLI
module registers them and prints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from greensched.cli._app import (
    JOBS_HELP,
    app,
    console,
)
from greensched.errors import GreenSchedError
from greensched.jobs import load_jobs
from greensched.predictor.base import PRED_VARS, load_predictor
from greensched.predictor.dataset import TARGETS, dataset_dcs, read_dataset
from greensched.predictor.evaluation import format_pct, write_evaluation
from greensched.predictor.factory import MODELS, make_predictor
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
            parts.append(f"{t} MAPE {format_pct(float(m['mape']))}")
    acc = src.get("action_accuracy")
    if acc is not None and np.isfinite(acc):
        parts.append(f"action accuracy {format_pct(float(acc))}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# typer commands
# ----------------------------------------------------------------------------------------------

@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Training dataset (greensched simulate --dataset).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    model: Annotated[str, typer.Option(help="lora | xgboost")] = "xgboost",
    base_model: Annotated[
        str | None, typer.Option(help="Hugging Face model path (default: all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: int = 0,
    val_fraction: Annotated[float, typer.Option(help="Validation share for early stopping.")] = 0.1,
    max_rows: Annotated[int | None, typer.Option(help="Use at most this many rows.")] = None,
) -> None:
    """Train an energy and service-time predictor (LoRA transformer or XGBoost)."""

    metrics = train_command(data, model, base_model, epochs, out, seed,
                            val_fraction=val_fraction, max_rows=max_rows)
    console.print(summary_line(metrics))
    console.print(f"wrote {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Model directory (greensched train --out).")],
    scenario: Annotated[Path, typer.Option(help="Scenario directory.")],
    jobs: Annotated[Path | None, typer.Option(help=JOBS_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Predictions CSV (one row per job and DC).")] = (
        None
    ),
    coefficients_out: Annotated[
        Path | None, typer.Option(help="Write planner coefficients (coefficients.csv).")
    ] = None,
) -> None:
    """Predict per-job energy and service time, or the planner's coefficients."""

    for name, path in predict_command(model, scenario, jobs, out, coefficients_out).items():
        console.print(f"wrote {name}: {path}")


@app.command("evaluate-predictor")
def evaluate_predictor(
    model: Annotated[Path, typer.Option(help="Model directory.")],
    data: Annotated[Path, typer.Option(help="Test dataset.")],
    out: Annotated[Path, typer.Option(help="Report directory.")],
) -> None:
    """RMSE, MAPE, R², quantile coverage and action accuracy on a test set, with plots."""

    metrics = evaluate_command(model, data, out)
    console.print(summary_line(metrics))
    console.print(f"wrote {out}/report.md")

