"""Side-by-side accuracy report of the LoRA and XGBoost predictors on one train/test split.

:func:`write_accuracy_report` trains both predictors on the same training set, evaluates both on
the same test set and writes ``<out_dir>/predictor_accuracy.md`` (targets: energy MAPE ≤ 5 %,
service-time MAPE ≤ 3 %, pooled over DCs, stating plainly which are missed) with the detailed
evaluations (per-DC tables, PNGs, metrics JSON) in ``<out_dir>/predictor_accuracy/<kind>/``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from greensched.predictor.base import BasePredictor, write_json
from greensched.predictor.dataset import TARGETS, read_dataset
from greensched.predictor.evaluation import write_evaluation
from greensched.predictor.factory import make_predictor

__all__ = ["MAPE_TARGETS", "write_accuracy_report"]

log = logging.getLogger(__name__)

#: Accuracy targets (pooled MAPE as a fraction).
MAPE_TARGETS = {"energy_kwh": 0.05, "service_s": 0.03}


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} %"


def write_accuracy_report(
    train_path: str | Path,
    test_path: str | Path,
    out_dir: str | Path = "reports",
    lora_epochs: int = 3,
    *,
    base_model: str | None = None,
    seed: int = 0,
    max_train_rows: int | None = None,
    lora_options: dict[str, Any] | None = None,
    xgb_options: dict[str, Any] | None = None,
    models: tuple[str, ...] = ("xgboost", "lora"),
) -> dict[str, Any]:
    """Train both predictors on ``train_path``, evaluate on ``test_path``, write the report.

    Parameters
    ----------
    train_path, test_path
        Datasets (``docs/dataset-format.md``).
    out_dir
        Where ``predictor_accuracy.md`` goes (default ``reports``).
    lora_epochs
        LoRA training epochs.
    base_model
        LoRA base model directory (default: the packaged MiniLM).
    seed
        Seed for both.
    max_train_rows
        Use only the first rows of the training set (LoRA trains at tens of jobs/s on 2 cores).
    lora_options, xgb_options
        Further config fields.
    models
        Which predictors to include.

    Returns
    -------
    dict
        Per kind: ``fit_seconds``, ``metrics`` (test), and the report path under ``"report"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, tmeta = read_dataset(train_path)
    test, _ = read_dataset(test_path)
    if max_train_rows is not None:
        train = train.iloc[:max_train_rows]
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    for kind in models:
        opts = dict(xgb_options or {}) if kind == "xgboost" else {
            "progress": False, **(lora_options or {})}
        predictor: BasePredictor = make_predictor(
            kind, base_model=base_model if kind == "lora" else None,
            epochs=lora_epochs if kind == "lora" else None, seed=seed, **opts)
        t0 = time.perf_counter()
        predictor.fit(train, meta=tmeta)
        fit_s = time.perf_counter() - t0
        metrics = write_evaluation(predictor, test, out / "predictor_accuracy" / kind,
                                   name=f"trained on {Path(train_path).name}")
        results[kind] = {"fit_seconds": fit_s, "metrics": metrics,
                         "validation": predictor.metrics_["validation"],
                         "history": predictor.metrics_["history"]}
        log.info("%s: fit %.1f s, energy MAPE %s, service MAPE %s", kind, fit_s,
                 _pct(metrics["energy_kwh"]["all"]["mape"]),
                 _pct(metrics["service_s"]["all"]["mape"]))
    total_s = time.perf_counter() - t_start
    lines = [
        "# Predictor accuracy: LoRA vs XGBoost",
        "",
        f"Train: `{train_path}` ({len(train)} jobs; scenario {tmeta.get('scenario', '?')!r}, "
        f"noise {tmeta.get('noise', '?')}, objective "
        f"{(tmeta.get('objective') or {}).get('definition', '?')!r}).  "
        f"Test: `{test_path}` ({len(test)} jobs).  Both models see the same split; metrics are "
        "pooled over all DCs.  Total wall time of this report: "
        f"{total_s:.0f} s on this machine.",
        "",
        "| metric | target | " + " | ".join(models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for t in TARGETS:
        goal = MAPE_TARGETS[t]
        lines.append(f"| {t} MAPE | ≤ {_pct(goal)} | " + " | ".join(
            _pct(results[k]["metrics"][t]["all"]["mape"]) for k in models) + " |")
        lines.append(f"| {t} R² | – | " + " | ".join(
            f"{results[k]['metrics'][t]['all']['r2']:.4f}" for k in models) + " |")
        lines.append(f"| {t} p10–p90 coverage | 0.80 | " + " | ".join(
            f"{results[k]['metrics'][t]['all']['coverage_p10_p90']:.3f}" for k in models) + " |")
    lines.append("| action accuracy | – | " + " | ".join(
        _pct(results[k]["metrics"].get("action_accuracy", math.nan)) for k in models) + " |")
    lines.append("| training time | – | " + " | ".join(
        f"{results[k]['fit_seconds']:.0f} s" for k in models) + " |")
    lines.append("| inference | – | " + " | ".join(
        f"{results[k]['metrics']['jobs_per_s']:.0f} jobs/s" for k in models) + " |")
    lines += ["", "## Targets", ""]
    for k in models:
        for t in TARGETS:
            got = results[k]["metrics"][t]["all"]["mape"]
            goal = MAPE_TARGETS[t]
            verdict = "met" if got <= goal else "**missed**"
            lines.append(f"- {k}, {t}: MAPE {_pct(got)} against ≤ {_pct(goal)}: {verdict}.")
    lines += ["", "Per-DC tables and predicted-vs-actual plots: "
              + ", ".join(f"[{k}](predictor_accuracy/{k}/report.md)" for k in models) + ".", ""]
    if "lora" in results:
        h = results["lora"]["history"]
        lines += [f"LoRA: {h.get('epochs')} epochs, {h.get('steps')} steps, "
                  f"{h.get('train_samples_per_s', float('nan')):.1f} training samples/s.", ""]
    path = out / "predictor_accuracy.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    write_json(out / "predictor_accuracy" / "summary.json",
               {k: {"fit_seconds": v["fit_seconds"],
                    **{t: v["metrics"][t]["all"] for t in TARGETS},
                    "action_accuracy": v["metrics"].get("action_accuracy")}
                for k, v in results.items()})
    results["report"] = path
    results["total_seconds"] = total_s
    return results
