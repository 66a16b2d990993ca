"""Evaluation of a fitted predictor on dataset rows: metrics.json, report.md and
predicted-vs-actual scatter plots (``greensched evaluate-predictor``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from greensched.predictor.base import BasePredictor, write_json
from greensched.predictor.dataset import TARGETS, dc_column
from greensched.predictor.metrics import evaluate_predictions

__all__ = ["format_pct", "write_evaluation"]


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


def format_pct(x: float) -> str:
    """A share as ``"12.34 %"``, or ``"n/a"`` when not finite."""
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
        f"{format_pct(metrics.get('action_accuracy', float('nan')))}",
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
            lines.append(f"| {d} | {m['rmse']:.4g} | {format_pct(m['mape'])} | {m['r2']:.4f} | "
                         f"{m['coverage_p10_p90']:.3f} | {m['below_p10']:.3f} | "
                         f"{m['above_p90']:.3f} |")
        lines += ["", f"![predicted vs actual {t}](pred_vs_actual_{t}.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return metrics


