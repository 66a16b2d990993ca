"""A fair side-by-side of predictor variants, and two transfer tests.

:func:`run_comparison` draws **one** random split of a dataset into a test set and a training
pool (seeded), trains every variant on the first ``n`` pool rows for each size ``n`` (nested
subsets, so every variant sees the same rows), and evaluates all of them on the same test rows:
energy and service-time MAPE and RMSE, p10–p90 coverage before and after the split-conformal
calibration (:mod:`greensched.predictor.calibration`), action accuracy, training time and
samples/s, and inference jobs/s.  Two transfer tests follow:

* **held-out hours**: train on rows outside an hour range, test inside it;
* **leave-one-DC-out**: drop one DC from the training rows entirely and predict it.  The
  models run with ``dc_identity=False`` (no one-hot DC, pooled target scaling), so a DC is
  known only by its features — its hourly state (price, carbon, renewables, PUE, utilisation,
  RTT) and, when the dataset has them, descriptors of what serves the job there
  (:data:`~greensched.predictor.features.DC_DESCRIPTOR_FIELDS`: GPU memory, model size, GPUs
  per replica), which the LoRA model also reads in its prompt.  The unseen DC's columns are
  put in the place of one training DC (:func:`as_dc`) and that output is scored.

Variants (:data:`VARIANTS`): ``lora`` (adapters fine-tuned jointly with the heads),
``lora-frozen`` (frozen base + heads) and ``xgboost`` (one multi-quantile booster per target).
:func:`write_comparison_markdown` writes the report.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.base import BasePredictor
from greensched.predictor.dataset import DC_FIELDS, TARGETS, dataset_dcs, dc_column
from greensched.predictor.factory import make_predictor
from greensched.predictor.features import DC_DESCRIPTOR_FIELDS
from greensched.predictor.metrics import evaluate_predictions

__all__ = ["VARIANTS", "ComparisonConfig", "add_dc_descriptors", "as_dc", "drop_dc",
           "run_comparison", "write_comparison_markdown"]

log = logging.getLogger(__name__)

#: Variant name → (predictor kind, config overrides).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lora": ("lora", {}),
    "lora-frozen": ("lora", {"freeze_base": True}),
    "xgboost": ("xgboost", {}),
}


@dataclass
class ComparisonConfig:
    """Settings of :func:`run_comparison`.

    Attributes
    ----------
    variants
        Names from :data:`VARIANTS`.
    sizes
        Training-set sizes (jobs) of the random split.
    max_rows
        Per variant, the largest size it is trained at (e.g. ``{"lora": 5000}`` on a CPU);
        larger sizes are skipped for it and say so in the report.
    test_jobs
        Jobs in each test set.
    transfer_train_jobs
        Training jobs of the two transfer tests.
    hour_range
        Test hours ``[start, stop)`` of the held-out-hours test (``None``: skip it).
    leave_out_dc
        The DC of the leave-one-DC-out test (``None``: the dataset's last DC; ``""``: skip).
    options
        Per variant, extra config fields.
    seed
        Seed of the split and of every model.
    """

    variants: tuple[str, ...] = ("lora", "lora-frozen", "xgboost")
    sizes: tuple[int, ...] = (1500, 5000, 20000)
    max_rows: dict[str, int] = field(default_factory=dict)
    test_jobs: int = 1000
    transfer_train_jobs: int = 1500
    hour_range: tuple[int, int] | None = (18, 24)
    leave_out_dc: str | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise GreenSchedError(f"unknown predictor variant {unknown[0]!r}; choose from "
                                  f"{', '.join(VARIANTS)}")
        if not self.sizes or any(int(n) < 10 for n in self.sizes):
            raise GreenSchedError(f"sizes must be training-set sizes >= 10, got {self.sizes!r}")
        if self.test_jobs < 10 or self.transfer_train_jobs < 10:
            raise GreenSchedError("test_jobs and transfer_train_jobs must be >= 10")


def add_dc_descriptors(df: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Add ``<field>__<dc>`` descriptor columns to dataset rows from a per (dc, query_type)
    table (columns ``dc``, ``query_type`` and any of
    :data:`~greensched.predictor.features.DC_DESCRIPTOR_FIELDS`)."""
    fields_ = [f for f in DC_DESCRIPTOR_FIELDS if f in table.columns]
    t = table.set_index(["dc", "query_type"])
    cols: dict[str, np.ndarray] = {}
    qt = df["query_type"].astype(str).to_numpy()
    for d in dataset_dcs(df):
        for f in fields_:
            key = pd.MultiIndex.from_arrays([np.full(len(df), d, dtype=object), qt])
            vals = t[f].reindex(key).to_numpy(dtype=float)
            if np.isnan(vals).any():
                bad = qt[np.isnan(vals)][0]
                raise GreenSchedError(f"no {f!r} for dc {d!r}, query_type {bad!r}")
            cols[dc_column(f, d)] = vals
    return df.assign(**cols)


def _dc_fields(df: pd.DataFrame) -> list[str]:
    extra = [f for f in DC_DESCRIPTOR_FIELDS if any(str(c).startswith(f + "__") for c in df)]
    return [*DC_FIELDS, *TARGETS, *extra]


def drop_dc(df: pd.DataFrame, dc: str) -> pd.DataFrame:
    """Rows without any column of ``dc``; a job whose hindsight-best DC was ``dc`` gets the
    remaining DC with the lowest ``price × PUE × energy`` instead (only the energy and
    service-time errors are scored in the leave-one-DC-out test)."""
    dcs = [d for d in dataset_dcs(df) if d != dc]
    out = df.drop(columns=[dc_column(f, dc) for f in _dc_fields(df)
                           if dc_column(f, dc) in df.columns])
    cost = np.column_stack([out[dc_column("price_usd_per_kwh", d)].to_numpy(float)
                            * out[dc_column("pue", d)].to_numpy(float)
                            * out[dc_column("energy_kwh", d)].to_numpy(float) for d in dcs])
    best = out["best_dc"].astype(str).to_numpy()
    repl = np.asarray(dcs, dtype=object)[cost.argmin(axis=1)]
    return out.assign(best_dc=np.where(best == dc, repl, best))


def as_dc(df: pd.DataFrame, unseen: str, slot: str) -> pd.DataFrame:
    """Rows where DC ``slot``'s columns hold DC ``unseen``'s values (its state, descriptors
    and targets), and ``unseen``'s own columns are dropped."""
    out = df.copy()
    for f in _dc_fields(df):
        src = dc_column(f, unseen)
        if src in df.columns:
            out[dc_column(f, slot)] = df[src].to_numpy()
    return drop_dc(out, unseen)


def _build(variant: str, seed: int, opts: dict[str, Any]) -> BasePredictor:
    kind, base = VARIANTS[variant]
    return make_predictor(kind, seed=seed, **{**base, **opts})


def _frame(model: BasePredictor, test: pd.DataFrame, arrays: dict[str, np.ndarray]
           ) -> pd.DataFrame:
    cols: dict[str, Any] = {"job_id": test["job_id"].to_numpy(dtype=object)}
    for var, arr in arrays.items():
        for j, d in enumerate(model.dcs_):
            cols[dc_column(var, d)] = arr[:, j]
    return pd.DataFrame(cols)


def _score(model: BasePredictor, test: pd.DataFrame, only_dc: str | None = None
           ) -> dict[str, Any]:
    t0 = time.perf_counter()
    arrays = model.predict_arrays(test, calibrated=False)
    infer_s = time.perf_counter() - t0
    pred = _frame(model, test, model.calibration_.apply(arrays))
    raw = _frame(model, test, arrays)
    dcs = model.dcs_ if only_dc is None else [only_dc]
    rep = evaluate_predictions(pred, test, dcs)
    rep_raw = evaluate_predictions(raw, test, dcs)
    out: dict[str, Any] = {"jobs_per_s": len(test) / infer_s if infer_s > 0 else math.nan,
                           "n_test": len(test)}
    for t in TARGETS:
        a = rep[t]["all"]
        out[t] = {"mape": a["mape"], "rmse": a["rmse"], "r2": a["r2"],
                  "coverage": a["coverage_p10_p90"],
                  "coverage_raw": rep_raw[t]["all"]["coverage_p10_p90"],
                  "coverage_by_dc": {d: rep[t][d]["coverage_p10_p90"] for d in dcs},
                  "coverage_raw_by_dc": {d: rep_raw[t][d]["coverage_p10_p90"] for d in dcs}}
    if only_dc is None:
        out["action_accuracy"] = rep.get("action_accuracy", math.nan)
    return out


def _fit_score(variant: str, train: pd.DataFrame, test: pd.DataFrame, cfg: ComparisonConfig,
               extra: dict[str, Any] | None = None, only_dc: str | None = None,
               dcs: list[str] | None = None) -> dict[str, Any]:
    model = _build(variant, cfg.seed, {**cfg.options.get(variant, {}), **(extra or {})})
    t0 = time.perf_counter()
    model.fit(train, dcs=dcs)
    fit_s = time.perf_counter() - t0
    res = _score(model, test, only_dc)
    h = model.metrics_["history"]
    res.update(fit_seconds=fit_s, n_train=len(train), history_variant=h.get("variant", "xgboost"),
               train_samples_per_s=float(h.get("train_samples_per_s", math.nan)))
    for key in ("best_epoch", "finetune_improved", "adapter_norm", "epochs", "steps",
                "n_boosters"):
        if key in h:
            res[key] = h[key]
    if "cache" in h:
        res["cache_seconds"] = h["cache"]["seconds"]
    if "head_warmup" in h:
        res["head_warmup_seconds"] = h["head_warmup"]["seconds"]
    return res


def run_comparison(df: pd.DataFrame, cfg: ComparisonConfig,
                   report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the comparison of the module docstring on dataset rows ``df``.

    Returns ``{"random": {size: {variant: result}}, "hours": {...}, "leave_one_dc_out":
    {...}, "config": ..., "machine": ...}``; each result holds the test metrics, fit seconds,
    training samples/s and inference jobs/s.  ``report`` receives one line per finished run.
    """
    say = report or (lambda line: log.info("%s", line))
    dcs = dataset_dcs(df)
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(df))
    n_test = min(cfg.test_jobs, len(df) // 5)
    test = df.iloc[perm[:n_test]].reset_index(drop=True)
    pool = df.iloc[perm[n_test:]].reset_index(drop=True)
    out: dict[str, Any] = {"random": {}, "skipped": [], "n_rows": len(df), "dcs": dcs,
                           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"}
    t_all = time.perf_counter()

    def line(kind: str, name: str, res: dict[str, Any]) -> None:
        say(f"{kind} {name}: energy MAPE {100 * res['energy_kwh']['mape']:.2f} %, service MAPE "
            f"{100 * res['service_s']['mape']:.2f} %, p10-p90 coverage "
            f"{res['energy_kwh']['coverage_raw']:.3f}->{res['energy_kwh']['coverage']:.3f} / "
            f"{res['service_s']['coverage_raw']:.3f}->{res['service_s']['coverage']:.3f}, "
            f"fit {res['fit_seconds']:.1f} s")

    for n in sorted(int(s) for s in cfg.sizes):
        if n > len(pool):
            out["skipped"].append(f"size {n}: only {len(pool)} training rows available")
            continue
        out["random"][n] = {}
        for v in cfg.variants:
            if n > cfg.max_rows.get(v, n):
                out["skipped"].append(f"{v} at {n} jobs (over its max_rows "
                                      f"{cfg.max_rows[v]})")
                continue
            res = _fit_score(v, pool.iloc[:n], test, cfg)
            out["random"][n][v] = res
            line(f"random split, {n} jobs,", v, res)
    m = cfg.transfer_train_jobs
    if cfg.hour_range is not None:
        a, b = cfg.hour_range
        inside = df["hour"].between(a, b - 1).to_numpy()
        h_train = df[~inside].sample(n=min(m, int((~inside).sum())), random_state=cfg.seed)
        h_test = df[inside].sample(n=min(cfg.test_jobs, int(inside.sum())),
                                   random_state=cfg.seed)
        out["hours"] = {"range": [a, b], "results": {}}
        for v in cfg.variants:
            res = _fit_score(v, h_train, h_test, cfg)
            out["hours"]["results"][v] = res
            line(f"hours {a}-{b - 1} held out,", v, res)
    unseen = dcs[-1] if cfg.leave_out_dc is None else cfg.leave_out_dc
    if unseen:
        if unseen not in dcs:
            raise GreenSchedError(f"leave_out_dc {unseen!r} is not a DC of the dataset {dcs!r}")
        slot = next(d for d in dcs if d != unseen)
        kept = [d for d in dcs if d != unseen]
        l_train = drop_dc(pool.iloc[:m], unseen)
        l_test = as_dc(test, unseen, slot)
        out["leave_one_dc_out"] = {"dc": unseen, "slot": slot, "results": {},
                                   "descriptors": [f for f in DC_DESCRIPTOR_FIELDS
                                                   if dc_column(f, unseen) in df.columns]}
        for v in cfg.variants:
            res = _fit_score(v, l_train, l_test, cfg, {"dc_identity": False}, only_dc=slot,
                             dcs=kept)
            out["leave_one_dc_out"]["results"][v] = res
            line(f"leave {unseen} out,", v, res)
    out["total_seconds"] = time.perf_counter() - t_all
    out["config"] = {"variants": list(cfg.variants), "sizes": list(cfg.sizes),
                     "max_rows": cfg.max_rows, "test_jobs": n_test,
                     "transfer_train_jobs": m, "hour_range": cfg.hour_range,
                     "options": cfg.options, "seed": cfg.seed}
    return out


def _pct(x: float) -> str:
    return "–" if not isinstance(x, int | float) or not math.isfinite(x) else f"{100 * x:.2f} %"


def _row(name: str, r: dict[str, Any], action: bool = True) -> str:
    e, s = r["energy_kwh"], r["service_s"]
    cells = [name, str(r["n_train"]), _pct(e["mape"]), _pct(s["mape"]), f"{e['rmse']:.3g}",
             f"{s['rmse']:.3g}", f"{e['coverage_raw']:.3f} → {e['coverage']:.3f}",
             f"{s['coverage_raw']:.3f} → {s['coverage']:.3f}"]
    if action:
        cells.append(_pct(r.get("action_accuracy", math.nan)))
    cells += [f"{r['fit_seconds']:.1f}", f"{r['train_samples_per_s']:.0f}",
              f"{r['jobs_per_s']:.0f}"]
    if "best_epoch" in r and r.get("history_variant") == "lora":
        cells.append(f"best epoch {r['best_epoch']} of {r.get('epochs')}, adapter norm "
                     f"{r.get('adapter_norm', 0.0):.3g}")
    elif "n_boosters" in r:
        cells.append(f"{r['n_boosters']} boosters")
    else:
        cells.append(r.get("history_variant", ""))
    return "| " + " | ".join(cells) + " |"


_HEAD = ("| variant | train jobs | energy MAPE | service MAPE | energy RMSE (kWh) "
         "| service RMSE (s) | energy p10–p90 cover (raw → calibrated) "
         "| service cover (raw → calibrated) |")


def _winners(title: str, by: dict[str, dict[str, Any]]) -> str:
    """One line naming the best variant per metric of a table."""
    if len(by) < 2:
        return ""
    def best(score: Callable[[dict[str, Any]], float]) -> str:
        """The lowest-scoring variant; exact ties (e.g. a fine-tuned model that kept its
        frozen start) are all named, joined by ' = '."""
        vals = {v: float(score(r)) for v, r in by.items()}
        low = min(vals.values())
        return " = ".join(v for v, x in vals.items() if x == low)

    picks = {
        "energy MAPE": best(lambda r: r["energy_kwh"]["mape"]),
        "service MAPE": best(lambda r: r["service_s"]["mape"]),
        "calibrated coverage closest to 0.80": best(lambda r: abs(
            r["energy_kwh"]["coverage"] - 0.8) + abs(r["service_s"]["coverage"] - 0.8)),
        "training time": min(by, key=lambda v: by[v]["fit_seconds"]),
        "inference speed": max(by, key=lambda v: by[v]["jobs_per_s"]),
    }
    return f"- {title}: " + "; ".join(f"{k}: **{v}**" for k, v in picks.items()) + "."


def write_comparison_markdown(results: dict[str, Any], path: str | Path, *,
                              command: str, dataset: str, notes: Sequence[str] = ()) -> Path:
    """Write the comparison of :func:`run_comparison` as Markdown to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    cfg = results["config"]
    lines = [
        "# Predictor comparison: fine-tuned LoRA, frozen base + head, XGBoost",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Data: `{dataset}` ({results['n_rows']} jobs, {len(results['dcs'])} DCs).  One random "
        f"split (seed {cfg['seed']}): {cfg['test_jobs']} test jobs, training sets are nested "
        "prefixes of the rest, so every variant trains on the same rows and is tested on the "
        "same rows.  Each model holds out 10 % of its training rows for early stopping and "
        "10 % for split-conformal calibration of p10/p90.  Coverage is the share of test "
        "truths inside [p10, p90] (nominal 0.80), before → after calibration.  Machine: "
        f"{results['machine']}, CPU only (no GPU in this session); wall time "
        f"{results['total_seconds']:.0f} s.",
        "",
        "## Random split",
        "",
        _HEAD + " action acc. | fit s | train samples/s | infer jobs/s | notes |",
        "|" + "---|" * 13,
    ]
    for by in results["random"].values():
        for v, r in by.items():
            lines.append(_row(v, r))
    if results.get("skipped"):
        lines += ["", "Not run: " + "; ".join(results["skipped"]) + "."]
    if "hours" in results:
        a, b = results["hours"]["range"]
        lines += ["", f"## Held-out hours {a}–{b - 1}", "",
                  f"Trained on {cfg['transfer_train_jobs']} jobs of the other hours.", "",
                  _HEAD + " action acc. | fit s | train samples/s | infer jobs/s | notes |",
                  "|" + "---|" * 13]
        lines += [_row(v, r) for v, r in results["hours"]["results"].items()]
    if "leave_one_dc_out" in results:
        lo = results["leave_one_dc_out"]
        desc = ", ".join(lo["descriptors"]) or "none"
        lines += ["", f"## Leave one DC out: {lo['dc']}", "",
                  f"Trained on {cfg['transfer_train_jobs']} jobs without any column of "
                  f"`{lo['dc']}`, with `dc_identity=False` (no DC one-hot, pooled target "
                  f"scaling); scored on `{lo['dc']}` only.  DC descriptors in the features and "
                  f"the prompt: {desc}.", "",
                  _HEAD + " fit s | train samples/s | infer jobs/s | notes |",
                  "|" + "---|" * 12]
        lines += [_row(v, r, action=False) for v, r in lo["results"].items()]
    wins = [_winners(f"random split, {n} jobs", by) for n, by in results["random"].items()]
    if "hours" in results:
        wins.append(_winners("held-out hours", results["hours"]["results"]))
    if "leave_one_dc_out" in results:
        wins.append(_winners("leave one DC out", results["leave_one_dc_out"]["results"]))
    lines += ["", "## Who wins (computed from the tables above)", "", *filter(None, wins)]
    if notes:
        lines += ["", "## Reading", "", *notes]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
