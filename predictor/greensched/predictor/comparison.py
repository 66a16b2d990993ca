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

Coverage is reported per target and per DC, each calibrated value with the test set's own
sampling error (:func:`~greensched.predictor.calibration.coverage_standard_error`; the
default 2,000 test jobs put a perfectly calibrated model's per-DC coverage within ±0.018 of
0.80 with 95 % probability, 300 jobs only within ±0.045).  Split-conformal calibration
assumes the test rows are exchangeable with the calibration rows, which a transfer test
breaks on purpose; each transfer test therefore also shows what re-calibrating on the first
``recalibrate_jobs`` jobs of the shifted domain (in time order) gives on the remaining ones.

Variants (:data:`VARIANTS`): ``lora`` (adapters fine-tuned jointly with the heads),
``lora-frozen`` (frozen base + heads) and ``xgboost`` (one multi-quantile booster per target).
:func:`write_comparison_markdown` writes the report.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.base import BasePredictor
from greensched.predictor.calibration import (
    MIN_CALIBRATION_ROWS,
    QuantileCalibration,
    coverage_standard_error,
    truth_arrays,
)
from greensched.predictor.comparison_report import LORA_NOTE_KEYS, write_comparison_markdown
from greensched.predictor.dataset import DC_FIELDS, TARGETS, dataset_dcs, dc_column
from greensched.predictor.factory import make_predictor
from greensched.predictor.features import DC_DESCRIPTOR_FIELDS
from greensched.predictor.metrics import evaluate_predictions

__all__ = ["DEFAULT_TEST_JOBS", "PRESETS", "VARIANTS", "ComparisonConfig", "add_dc_descriptors",
           "as_dc", "drop_dc", "run_comparison", "shift_recalibration",
           "write_comparison_markdown"]

log = logging.getLogger(__name__)

#: Variant name → (predictor kind, config overrides).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lora": ("lora", {}),
    "lora-frozen": ("lora", {"freeze_base": True}),
    "xgboost": ("xgboost", {}),
}


#: Test jobs when not given (capped at a fifth of the data): a perfectly calibrated model's
#: per-DC coverage on 2,000 jobs has sd sqrt(0.8 · 0.2 / 2000) = 0.009.
DEFAULT_TEST_JOBS = 2000
#: Named settings of ``greensched evaluate-predictor --compare ... --preset NAME`` (CLI option
#: names, underscores for dashes → values; options given explicitly override them).
#: ``report``: the settings of ``reports/predictor_comparison.md``.
PRESETS: dict[str, dict[str, Any]] = {
    "report": {"sizes": "1500,5000,20000", "max_rows": "",
               "test_jobs": 2000, "transfer_jobs": 1500, "hours": "18-24",
               "lora_epochs": 6, "lora_max_steps": 1000, "recalibrate_jobs": 200,
               "threads": 2},
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
        Jobs in each test set; ``None``: :data:`DEFAULT_TEST_JOBS`, at most a fifth of the
        dataset.  An explicit value must leave at least 10 training jobs.
    transfer_train_jobs
        Training jobs of the two transfer tests.
    hour_range
        Test hours ``[start, stop)`` of the held-out-hours test (``None``: skip it).
    leave_out_dc
        The DC of the leave-one-DC-out test (``None``: the dataset's last DC; ``""``: skip).
    options
        Per variant, extra config fields.
    recalibrate_jobs
        Transfer tests: re-calibrate on this many first (in time) jobs of the shifted test
        set and score the rest (0: skip).
    seed
        Seed of the split and of every model.
    """

    variants: tuple[str, ...] = ("lora", "lora-frozen", "xgboost")
    sizes: tuple[int, ...] = (1500, 5000, 20000)
    max_rows: dict[str, int] = field(default_factory=dict)
    test_jobs: int | None = None
    transfer_train_jobs: int = 1500
    hour_range: tuple[int, int] | None = (18, 24)
    leave_out_dc: str | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    recalibrate_jobs: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise GreenSchedError(f"unknown predictor variant {unknown[0]!r}; choose from "
                                  f"{', '.join(VARIANTS)}")
        if not self.sizes or any(int(n) < 10 for n in self.sizes):
            raise GreenSchedError(f"sizes must be training-set sizes >= 10, got {self.sizes!r}")
        if (self.test_jobs is not None and self.test_jobs < 10) or self.transfer_train_jobs < 10:
            raise GreenSchedError("test_jobs and transfer_train_jobs must be >= 10")
        if self.recalibrate_jobs != 0 and self.recalibrate_jobs < MIN_CALIBRATION_ROWS:
            raise GreenSchedError(f"recalibrate_jobs must be 0 (off) or >= "
                                  f"{MIN_CALIBRATION_ROWS}, got {self.recalibrate_jobs!r}")


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


def _load() -> list[float]:
    """1/5/15-minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _accelerator() -> str:
    """"CUDA: <name>" when torch is already imported and sees a GPU, else "none"."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return f"CUDA: {torch.cuda.get_device_name(0)}"
    except (RuntimeError, AttributeError):
        pass
    return "none"


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


def _coverage(model: BasePredictor, rows: pd.DataFrame, arrays: dict[str, np.ndarray],
              dcs: list[str]) -> dict[str, tuple[float, float]]:
    """Per target: (pooled coverage, its job-clustered standard error) of ``arrays`` (model
    DC order) on the ``dcs`` columns of ``rows``."""
    cols = [model.dcs_.index(d) for d in dcs]
    truth = truth_arrays(rows, dcs)
    out = {}
    for t in TARGETS:
        y = truth[t]
        inside = (y >= arrays[f"{t}_p10"][:, cols]) & (y <= arrays[f"{t}_p90"][:, cols])
        out[t] = (float(inside.mean()), coverage_standard_error(inside))
    return out


def _score(model: BasePredictor, test: pd.DataFrame, only_dc: str | None = None,
           arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    arrays = model.predict_arrays(test, calibrated=False) if arrays is None else arrays
    infer_s = time.perf_counter() - t0
    calibrated = model.calibration_.apply(arrays)
    pred = _frame(model, test, calibrated)
    raw = _frame(model, test, arrays)
    dcs = model.dcs_ if only_dc is None else [only_dc]
    rep = evaluate_predictions(pred, test, dcs)
    rep_raw = evaluate_predictions(raw, test, dcs)
    cover = _coverage(model, test, calibrated, dcs)
    out: dict[str, Any] = {"jobs_per_s": len(test) / infer_s if infer_s > 0 else math.nan,
                           "n_test": len(test)}
    for t in TARGETS:
        a = rep[t]["all"]
        out[t] = {"mape": a["mape"], "rmse": a["rmse"], "r2": a["r2"],
                  "coverage": a["coverage_p10_p90"], "coverage_se": cover[t][1],
                  "coverage_raw": rep_raw[t]["all"]["coverage_p10_p90"],
                  "coverage_by_dc": {d: rep[t][d]["coverage_p10_p90"] for d in dcs},
                  "coverage_raw_by_dc": {d: rep_raw[t][d]["coverage_p10_p90"] for d in dcs}}
    if only_dc is None:
        out["action_accuracy"] = rep.get("action_accuracy", math.nan)
    return out


def shift_recalibration(model: BasePredictor, test: pd.DataFrame, n_first: int,
                        only_dc: str | None = None, *,
                        raw: dict[str, np.ndarray] | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """Coverage on a shifted test set after re-calibrating on ``n_first`` of its jobs.

    Two choices of those jobs, each scored on the test jobs it leaves: the **first**
    ``n_first`` in time order (``hour``, ``arrival_s``: what an online re-calibration could
    use) and ``n_first`` drawn at **random** (seeded: exchangeable with the rest, the best
    case).  Each calibrates a fresh :class:`~greensched.predictor.calibration.
    QuantileCalibration` of the model's raw quantiles (on the scored DC only when
    ``only_dc`` is given); the model's own calibration is scored on the same remaining
    jobs.  ``raw``: the model's uncalibrated predictions of ``test`` (row order), if
    already computed.

    Returns
    -------
    dict
        ``n_recalibrate``, ``n_scored`` and per target ``{"before", "before_se", "after",
        "after_se"}`` (first jobs in time) and ``"random": {target: {...}}`` (random jobs);
        empty when there are fewer than ``n_first`` + 10 test jobs.
    """
    if n_first <= 0 or len(test) < n_first + 10:
        return {}
    dcs = model.dcs_ if only_dc is None else [only_dc]
    cols = [model.dcs_.index(d) for d in dcs]
    if raw is None:
        raw = model.predict_arrays(test, calibrated=False)

    def recal(order: np.ndarray) -> dict[str, dict[str, float]]:
        head, tail = order[:n_first], order[n_first:]
        first = test.iloc[head].reset_index(drop=True)
        rest = test.iloc[tail].reset_index(drop=True)
        fit = QuantileCalibration.fit({v: a[head][:, cols] for v, a in raw.items()},
                                      truth_arrays(first, dcs), dcs)
        raw_rest = {v: a[tail] for v, a in raw.items()}
        before = _coverage(model, rest, model.calibration_.apply(raw_rest), dcs)
        after = {v: np.zeros_like(a) for v, a in raw_rest.items()}
        for v, a in fit.apply({v: a[:, cols] for v, a in raw_rest.items()}).items():
            after[v][:, cols] = a
        got = _coverage(model, rest, after, dcs)
        return {t: {"before": before[t][0], "before_se": before[t][1], "after": got[t][0],
                    "after_se": got[t][1]} for t in TARGETS}

    keys = [c for c in ("hour", "arrival_s") if c in test.columns]
    in_time = (np.lexsort([test[c].to_numpy() for c in reversed(keys)]) if keys
               else np.arange(len(test)))
    out: dict[str, Any] = {"n_recalibrate": n_first, "n_scored": len(test) - n_first,
                           **recal(in_time)}
    out["random"] = recal(np.random.default_rng(seed).permutation(len(test)))
    return out


def _output_unknown(model: BasePredictor, test: pd.DataFrame) -> dict[str, Any]:
    """Scores on ``test`` with every job's ``output_tokens`` hidden: what the online assigner
    knows when a job arrives (the targets still use the realised lengths)."""
    hidden = test.assign(output_tokens=np.nan)
    res = _score(model, test, arrays=model.predict_arrays(hidden, calibrated=False))
    return {t: {k: res[t][k] for k in ("mape", "rmse", "coverage", "coverage_se")}
            for t in TARGETS} | {"action_accuracy": res.get("action_accuracy", math.nan)}


def _fit_score(variant: str, train: pd.DataFrame, test: pd.DataFrame, cfg: ComparisonConfig,
               extra: dict[str, Any] | None = None, only_dc: str | None = None,
               dcs: list[str] | None = None, recalibrate: bool = False,
               output_unknown: bool = False) -> dict[str, Any]:
    model = _build(variant, cfg.seed, {**cfg.options.get(variant, {}), **(extra or {})})
    t0 = time.perf_counter()
    model.fit(train, dcs=dcs)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = model.predict_arrays(test, calibrated=False)
    infer_s = time.perf_counter() - t0
    res = _score(model, test, only_dc, raw)
    res["jobs_per_s"] = len(test) / infer_s if infer_s > 0 else math.nan
    res["calibrated_on"] = model.metrics_.get("calibrated_on", {})
    if output_unknown:
        res["output_unknown"] = _output_unknown(model, test)
    if recalibrate and cfg.recalibrate_jobs:
        res["recalibrated"] = shift_recalibration(model, test, cfg.recalibrate_jobs, only_dc,
                                                  raw=raw, seed=cfg.seed)
    h = model.metrics_["history"]
    res.update(fit_seconds=fit_s, n_train=len(train), history_variant=h.get("variant", "xgboost"),
               train_samples_per_s=float(h.get("train_samples_per_s", math.nan)))
    for key in ("best_epoch", "finetune_improved", "adapter_norm", "epochs", "steps",
                "n_boosters", *LORA_NOTE_KEYS):
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
    if cfg.test_jobs is None:
        n_test = min(DEFAULT_TEST_JOBS, len(df) // 5)
    else:
        n_test = int(cfg.test_jobs)
        if n_test > len(df) - 10:
            raise GreenSchedError(
                f"test_jobs (--test-jobs) {n_test} is too large for this dataset of "
                f"{len(df)} jobs: at most {len(df) - 10} (at least 10 must be left to train on)")
    test = df.iloc[perm[:n_test]].reset_index(drop=True)
    pool = df.iloc[perm[n_test:]].reset_index(drop=True)
    out: dict[str, Any] = {"random": {}, "skipped": [], "n_rows": len(df), "dcs": dcs,
                           "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                           "load_average": {"start": _load()}}
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
            res = _fit_score(v, pool.iloc[:n], test, cfg, output_unknown=True)
            out["random"][n][v] = res
            line(f"random split, {n} jobs,", v, res)
    m = cfg.transfer_train_jobs
    if cfg.hour_range is not None:
        a, b = cfg.hour_range
        inside = df["hour"].between(a, b - 1).to_numpy()
        h_train = df[~inside].sample(n=min(m, int((~inside).sum())), random_state=cfg.seed)
        h_test = df[inside].sample(n=min(n_test, int(inside.sum())),
                                   random_state=cfg.seed)
        out["hours"] = {"range": [a, b], "results": {}}
        for v in cfg.variants:
            res = _fit_score(v, h_train, h_test, cfg, recalibrate=True)
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
                             dcs=kept, recalibrate=True)
            out["leave_one_dc_out"]["results"][v] = res
            line(f"leave {unseen} out,", v, res)
    out["total_seconds"] = time.perf_counter() - t_all
    out["load_average"]["end"] = _load()
    out["accelerator"] = _accelerator()
    out["config"] = {"variants": list(cfg.variants), "sizes": list(cfg.sizes),
                     "max_rows": cfg.max_rows, "test_jobs": n_test,
                     "transfer_train_jobs": m, "hour_range": cfg.hour_range,
                     "recalibrate_jobs": cfg.recalibrate_jobs,
                     "options": cfg.options, "seed": cfg.seed}
    return out
