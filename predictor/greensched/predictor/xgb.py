"""Gradient-boosted trees on featurised dataset rows: the fast fallback predictor.

Targets are the standardised logarithms of ``energy_kwh`` and ``service_s`` per DC
(:class:`~greensched.predictor.features.TargetScaler`).  Five layouts
(:attr:`XGBoostConfig.strategy`):

``"point"`` (default)
    One row per (job, DC): job features + that DC's state + one-hot(DC) (without the one-hot
    when ``dc_identity`` is off, so that a DC never seen in training can be predicted from
    its state); **one squared-error booster per target** (the point prediction and p50) on
    one pre-binned ``QuantileDMatrix`` shared by both targets.  p10 / p90 are the point
    prediction plus the 10 % / 90 % quantiles of the validation residuals (per DC; pooled
    when ``dc_identity`` is off), stored as ``residual_quantiles``; the base class then
    calibrates them by split-conformal prediction on the calibration rows
    (:mod:`greensched.predictor.calibration`).  A quantile tree costs about five times a
    squared-error tree, so this layout fits in about a third of the five-booster time with
    the five-booster layout's point accuracy (``reports/predictor_xgb_fit.md``).  With the
    best-DC classifier: three boosters in all.
``"quantile"``
    The same rows; one booster per target with multi-quantile output (``reg:quantileerror``
    with ``quantile_alpha`` = :attr:`XGBoostConfig.quantile_alphas`, one tree per alpha and
    round); the point prediction is the median (p50).
``"stacked"``
    The same rows; per target one squared-error model (point) and one quantile model
    (p10/p50/p90): five boosters in all (the layout before the multi-quantile one; kept for
    the benchmark, ``bench/bench_predictor.py``).
``"per_dc"``
    One model per target × DC (and one quantile model per target × DC) on job features + that
    DC's state.
``"multi_output"``
    One multi-output tree model per target (``multi_strategy="multi_output_tree"``) on job
    features + every DC's state, predicting all DCs at once; quantiles per target × DC (xgboost's
    quantile objective takes one target at a time).

The hindsight-best DC is a ``multi:softprob`` classifier on job features + every DC's state.
Quantiles are sorted after prediction so they never cross.  Early stopping uses the validation
split; the kept boosters are cut at their best iteration.  With ``progress`` every booster
reports its boosting rounds (a tqdm bar per target, and a log line every 50 rounds on logger
``greensched.predictor.xgb``).  ``fit(..., warm_start=True)`` continues boosting the current
trees (``xgboost.train(xgb_model=...)``) on new rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.base import BasePredictor, PredictorConfig
from greensched.predictor.dataset import TARGETS
from greensched.predictor.features import FeatureBlocks

__all__ = ["FIVE_BOOSTER_DEFAULTS", "MULTI_QUANTILE_DEFAULTS", "STRATEGIES", "XGBoostConfig",
           "XGBoostPredictor"]

log = logging.getLogger(__name__)

STRATEGIES = ("point", "quantile", "stacked", "per_dc", "multi_output")
#: The five-booster layout with the settings it shipped with (the benchmark's reference).
FIVE_BOOSTER_DEFAULTS: dict[str, Any] = {
    "strategy": "stacked", "n_estimators": 600, "learning_rate": 0.08, "max_depth": 6,
    "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 1.0, "reg_lambda": 1.0,
    "early_stopping_rounds": 30, "quantile_n_estimators": 100, "quantile_learning_rate": 0.2,
    "quantile_max_depth": 4, "action_n_estimators": 200,
}
#: The multi-quantile layout with the settings it shipped with (the default before ``"point"``).
MULTI_QUANTILE_DEFAULTS: dict[str, Any] = {
    "strategy": "quantile", "n_estimators": 150, "learning_rate": 0.3, "max_depth": 6,
    "early_stopping_rounds": 10, "action_n_estimators": 40, "max_bin": 64,
}
QUANTILES = (0.1, 0.5, 0.9)
#: Layouts on one row per (job, DC).
STACKED = ("point", "quantile", "stacked")
#: Layouts that pre-bin their rows once (``QuantileDMatrix`` with ``max_bin``).
BINNED = ("point", "quantile")


@dataclass
class XGBoostConfig(PredictorConfig):
    """XGBoost settings (see the module docstring for ``strategy``).

    The defaults suit the ``"point"`` layout: its point boosters are the five-booster
    layout's (same rounds, learning rate, depth and early stopping; 256 bins, as
    ``DMatrix``'s hist default: 128 or 64 bins cost 0.05-0.3 points of MAPE on the twin's
    data), it just drops the two quantile boosters; :data:`FIVE_BOOSTER_DEFAULTS` and
    :data:`MULTI_QUANTILE_DEFAULTS` are the settings the five-booster ``"stacked"`` and the
    multi-quantile ``"quantile"`` layouts shipped with.

    Attributes
    ----------
    n_estimators, learning_rate, max_depth, min_child_weight, subsample, colsample_bytree,
    reg_lambda
        Boosting parameters of the regression models.
    early_stopping_rounds
        Rounds without validation improvement before stopping (needs ``val_fraction > 0``).
    quantile_n_estimators, quantile_learning_rate, quantile_max_depth
        The quantile models (smaller: their trees are evaluated three times per row, so they
        dominate prediction time).
    action_n_estimators
        Boosting rounds of the best-DC classifier.
    n_jobs
        Threads.
    quantile_alphas
        ``"quantile"`` layout: the quantile levels of each target's booster; must include
        0.1, 0.5 and 0.9 (read as p10, p50 = point, p90).
    max_bin
        Histogram bins per feature (``tree_method="hist"``; ``"point"`` and ``"quantile"``
        layouts, which pre-bin their rows once in a ``QuantileDMatrix``).
    progress
        Report boosting progress (tqdm bar per booster, log line every 50 rounds).
    """

    strategy: str = "point"
    n_estimators: int = 600
    learning_rate: float = 0.08
    max_depth: int = 6
    min_child_weight: float = 1.0
    subsample: float = 0.9
    colsample_bytree: float = 1.0
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30
    quantile_n_estimators: int = 100
    quantile_learning_rate: float = 0.2
    quantile_max_depth: int = 4
    action_n_estimators: int = 200
    n_jobs: int = 2
    quantile_alphas: tuple[float, ...] = (0.1, 0.5, 0.9)
    max_bin: int = 256
    progress: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.quantile_alphas = tuple(sorted(float(a) for a in self.quantile_alphas))
        if not set(QUANTILES) <= set(self.quantile_alphas) or not all(
                0 < a < 1 for a in self.quantile_alphas):
            raise GreenSchedError(f"quantile_alphas must lie in (0, 1) and include 0.1, 0.5 "
                                  f"and 0.9, got {self.quantile_alphas!r}")
        if isinstance(self.max_bin, bool) or not isinstance(self.max_bin, int) or \
                self.max_bin < 2:
            raise GreenSchedError(f"max_bin must be an integer >= 2, got {self.max_bin!r}")
        if self.strategy not in STRATEGIES:
            raise GreenSchedError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("n_estimators", "max_depth", "action_n_estimators", "n_jobs",
                     "early_stopping_rounds", "quantile_n_estimators", "quantile_max_depth"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GreenSchedError(f"{name} must be a positive integer, got {v!r}")
        for name in ("learning_rate", "quantile_learning_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise GreenSchedError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("subsample", "colsample_bytree"):
            if not 0 < getattr(self, name) <= 1:
                raise GreenSchedError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.min_child_weight < 0 or self.reg_lambda < 0:
            raise GreenSchedError("min_child_weight and reg_lambda must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable; ``quantile_alphas`` as a list)."""
        d = super().to_dict()
        d["quantile_alphas"] = list(self.quantile_alphas)
        return d


class XGBoostPredictor(BasePredictor):
    """XGBoost predictor; learned state: ``boosters_`` (name → ``xgboost.Booster``) plus the
    base class's."""

    kind: ClassVar[str] = "xgboost"
    #: ``predict_arrays`` also takes :class:`FeatureBlocks` (featurised rows).
    accepts_feature_blocks: ClassVar[bool] = True
    config_class: ClassVar[type[PredictorConfig]] = XGBoostConfig
    config: XGBoostConfig

    # -- design matrices ---------------------------------------------------------------------
    def _blocks(self, df: pd.DataFrame | FeatureBlocks) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(df, FeatureBlocks):  # featurised by the caller (job block: NaN missing)
            return df.job, df.dc
        return self.featurizer_.job_features(df, missing=np.nan), self.featurizer_.dc_features(df)

    def _stacked(self, job: np.ndarray, dc: np.ndarray) -> np.ndarray:
        n, D, F = dc.shape
        parts = [np.repeat(job, D, axis=0), dc.reshape(n * D, F)]
        if self.config.dc_identity:
            parts.append(np.tile(np.eye(D, dtype=np.float32), (n, 1)))
        return np.concatenate(parts, axis=1)

    @staticmethod
    def _wide(job: np.ndarray, dc: np.ndarray) -> np.ndarray:
        return np.concatenate([job, dc.reshape(len(dc), -1)], axis=1)

    # -- training ----------------------------------------------------------------------------
    def _params(self, objective: str, **extra: Any) -> dict[str, Any]:
        c = self.config
        return {
            "objective": objective, "eta": c.learning_rate, "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight, "subsample": c.subsample,
            "colsample_bytree": c.colsample_bytree, "lambda": c.reg_lambda,
            "tree_method": "hist", "nthread": c.n_jobs, "seed": c.seed,
            **({"max_bin": c.max_bin} if c.strategy in BINNED else {}), **extra,
        }

    def _matrices(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray | None,
                  yv: np.ndarray | None) -> tuple[Any, list[tuple[Any, str]]]:
        """Training matrix and the evaluation list (empty without validation rows)."""
        import xgboost as xgb

        dtrain: xgb.DMatrix
        evals: list[tuple[xgb.DMatrix, str]] = []
        if self.config.strategy in BINNED:  # pre-binned: less memory, faster to build
            mb = self.config.max_bin
            dtrain = xgb.QuantileDMatrix(x, label=y, missing=np.nan, max_bin=mb,
                                         nthread=self.config.n_jobs)
            if xv is not None and yv is not None and len(xv):
                evals = [(xgb.QuantileDMatrix(xv, label=yv, missing=np.nan, ref=dtrain,
                                              max_bin=mb, nthread=self.config.n_jobs), "val")]
        else:  # the earlier layouts exactly as they were
            dtrain = xgb.DMatrix(x, label=y, missing=np.nan)
            if xv is not None and yv is not None and len(xv):
                evals = [(xgb.DMatrix(xv, label=yv, missing=np.nan), "val")]
        return dtrain, evals

    def _train_one(self, params: dict[str, Any], x: np.ndarray, y: np.ndarray,
                   xv: np.ndarray | None, yv: np.ndarray | None, rounds: int,
                   name: str = "booster") -> Any:
        dtrain, evals = self._matrices(x, y, xv, yv)
        return self._boost(params, dtrain, evals, rounds, name)

    def _boost(self, params: dict[str, Any], dtrain: Any, evals: list[tuple[Any, str]],
               rounds: int, name: str) -> Any:
        """Train one booster on prepared matrices (early stopping when ``evals``)."""
        import xgboost as xgb

        prev = self._warm_boosters.get(name)
        callbacks = [_progress(name, rounds)] if self.config.progress else None
        t0 = time.perf_counter()
        booster = xgb.train(params, dtrain, num_boost_round=rounds, evals=evals,
                            early_stopping_rounds=self.config.early_stopping_rounds
                            if evals else None, verbose_eval=False, xgb_model=prev,
                            callbacks=callbacks)
        if evals:
            booster = booster[: booster.best_iteration + 1]
        self._fit_seconds[name] = time.perf_counter() - t0
        return booster

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame | None, *,
             warm_start: bool = False) -> dict[str, Any]:
        self._warm_boosters: dict[str, Any] = dict(self.boosters_) if warm_start else {}
        self._fit_seconds: dict[str, float] = {}
        try:
            return self._fit_boosters(train, val)
        finally:
            self._warm_boosters = {}

    def _fit_boosters(self, train: pd.DataFrame, val: pd.DataFrame | None) -> dict[str, Any]:
        c = self.config
        dcs = self.dcs_
        D = len(dcs)
        z = self.target_scaler_.transform(self.target_scaler_.log_targets(train, dcs))
        job, dc = self._blocks(train)
        zv = jobv = dcv = None
        if val is not None:
            zv = self.target_scaler_.transform(self.target_scaler_.log_targets(val, dcs))
            jobv, dcv = self._blocks(val)
        boosters: dict[str, Any] = {}
        qparams = self._params("reg:quantileerror", quantile_alpha=np.array(QUANTILES),
                               eta=c.quantile_learning_rate, max_depth=c.quantile_max_depth)
        qrounds = c.quantile_n_estimators
        mparams = self._params("reg:squarederror")
        stacked = c.strategy in STACKED
        x = self._stacked(job, dc) if stacked else None
        xv = None if not stacked or jobv is None or dcv is None else self._stacked(jobv, dcv)
        if c.strategy == "point":
            assert x is not None
            boosters.update(self._fit_point(x, z, xv, zv))
        for t_i, t in enumerate(TARGETS):
            y = z[:, t_i]
            yv = None if zv is None else zv[:, t_i]
            if c.strategy == "point":
                continue
            if stacked:
                assert x is not None
                yy, yyv = y.reshape(-1), None if yv is None else yv.reshape(-1)
                if c.strategy == "quantile":
                    boosters[f"{t}_q"] = self._train_one(
                        self._params("reg:quantileerror",
                                     quantile_alpha=np.array(c.quantile_alphas)),
                        x, yy, xv, yyv, c.n_estimators, f"{t}_q")
                    continue
                boosters[f"{t}"] = self._train_one(mparams, x, yy, xv, yyv, c.n_estimators, t)
                boosters[f"{t}_q"] = self._train_one(qparams, x, yy, xv, yyv, qrounds, f"{t}_q")
                continue
            if c.strategy == "multi_output":
                x = self._wide(job, dc)
                xv = None if jobv is None or dcv is None else self._wide(jobv, dcv)
                boosters[f"{t}"] = self._train_one(
                    self._params("reg:squarederror", multi_strategy="multi_output_tree"),
                    x, y, xv, yv, c.n_estimators)
            for j, d in enumerate(dcs):
                if c.strategy == "per_dc":
                    x = np.concatenate([job, dc[:, j]], axis=1)
                    xv = None if jobv is None or dcv is None else np.concatenate(
                        [jobv, dcv[:, j]], axis=1)
                    boosters[f"{t}@{d}"] = self._train_one(
                        mparams, x, y[:, j], xv, None if yv is None else yv[:, j], c.n_estimators,
                        f"{t}@{d}")
                else:
                    x = self._wide(job, dc)
                    xv = None if jobv is None or dcv is None else self._wide(jobv, dcv)
                boosters[f"{t}_q@{d}"] = self._train_one(
                    qparams, x, y[:, j], xv, None if yv is None else yv[:, j], qrounds,
                    f"{t}_q@{d}")
        # best-DC classifier
        labels = pd.Index(dcs).get_indexer(train["best_dc"])
        self.action_prior_ = np.bincount(labels, minlength=D) / len(labels)
        if len(np.unique(labels)) > 1:
            vl = None if val is None else pd.Index(dcs).get_indexer(val["best_dc"]).astype(float)
            boosters["action"] = self._train_one(
                self._params("multi:softprob", num_class=D), self._wide(job, dc),
                labels.astype(float), None if jobv is None or dcv is None else
                self._wide(jobv, dcv), vl, c.action_n_estimators, "action")
        self.boosters_ = boosters
        return {"epochs": 1, "strategy": c.strategy, "n_boosters": len(boosters),
                "rounds": {k: int(b.num_boosted_rounds()) for k, b in boosters.items()},
                "booster_seconds": dict(self._fit_seconds)}

    def _fit_point(self, x: np.ndarray, z: np.ndarray, xv: np.ndarray | None,
                   zv: np.ndarray | None) -> dict[str, Any]:
        """``"point"`` layout: one squared-error booster per target on one pre-binned matrix
        (built once, its label swapped per target); residual quantiles per DC of the
        validation rows (of the training rows when there are none) give the raw p10/p90."""
        c = self.config
        D = z.shape[2]  # z: (n, target, DC)
        yv0 = None if zv is None else zv[:, 0].reshape(-1)
        dtrain, evals = self._matrices(x, z[:, 0].reshape(-1), xv, yv0)
        params = self._params("reg:squarederror")
        boosters: dict[str, Any] = {}
        resid: dict[str, dict[str, list[float]]] = {}
        for t_i, t in enumerate(TARGETS):
            if t_i:
                dtrain.set_label(z[:, t_i].reshape(-1))
                if evals and zv is not None:
                    evals[0][0].set_label(zv[:, t_i].reshape(-1))
            booster = self._boost(params, dtrain, evals, c.n_estimators, t)
            boosters[t] = booster
            if evals and xv is not None and zv is not None:
                r = zv[:, t_i] - np.asarray(booster.inplace_predict(xv)).reshape(-1, D)
            else:
                r = z[:, t_i] - np.asarray(booster.inplace_predict(x)).reshape(-1, D)
            resid[t] = residual_quantiles(r, pooled=not c.dc_identity)
        self.residual_quantiles_ = resid
        return boosters

    # -- prediction --------------------------------------------------------------------------
    def _use_threads(self, rows: int) -> None:
        """Small batches run on one thread: waking a second one costs more than it saves, and
        on a busy machine it can stall a one-job call for tens of milliseconds."""
        want = 1 if rows < 4096 else self.config.n_jobs
        if getattr(self, "threads_", None) != want:
            for booster in self.boosters_.values():
                booster.set_param({"nthread": want})
            self.threads_ = want

    def _predict_arrays(self, data: pd.DataFrame) -> dict[str, np.ndarray]:
        c = self.config
        dcs = self.dcs_
        n, D = len(data), len(dcs)
        self._use_threads(n * D)
        job, dc = self._blocks(data)
        self._warn_out_of_range(dc)
        wide = self._wide(job, dc)
        stacked = self._stacked(job, dc) if c.strategy in STACKED else None
        out: dict[str, np.ndarray] = {}
        b = self.boosters_
        pick = [c.quantile_alphas.index(a) for a in QUANTILES]
        for t_i, t in enumerate(TARGETS):
            if c.strategy == "point":
                assert stacked is not None
                mean = np.asarray(b[t].inplace_predict(stacked)).reshape(n, D)
                rq = self.residual_quantiles_[t]
                q = np.stack([mean + np.asarray(rq["lo"])[None, :], mean,
                              mean + np.asarray(rq["hi"])[None, :]], axis=2)
            elif c.strategy == "quantile":
                assert stacked is not None
                qa = np.asarray(b[f"{t}_q"].inplace_predict(stacked)).reshape(n, D, -1)
                q = qa[:, :, pick]
                mean = q[:, :, 1]
            elif c.strategy == "stacked":
                assert stacked is not None
                mean = b[t].inplace_predict(stacked).reshape(n, D)
                q = b[f"{t}_q"].inplace_predict(stacked).reshape(n, D, len(QUANTILES))
            else:
                q = np.empty((n, D, len(QUANTILES)))
                if c.strategy == "multi_output":
                    mean = np.asarray(b[t].inplace_predict(wide)).reshape(n, D)
                else:
                    mean = np.empty((n, D))
                for j, d in enumerate(dcs):
                    x = np.concatenate([job, dc[:, j]], axis=1) if c.strategy == "per_dc" \
                        else wide
                    if c.strategy == "per_dc":
                        mean[:, j] = b[f"{t}@{d}"].inplace_predict(x)
                    q[:, j] = np.asarray(b[f"{t}_q@{d}"].inplace_predict(x)).reshape(n, -1)
            q = np.sort(q, axis=2)
            out[t] = self.target_scaler_.inverse(mean, t_i)
            for k, name in enumerate(("p10", "p50", "p90")):
                out[f"{t}_{name}"] = self.target_scaler_.inverse(q[:, :, k], t_i)
        if "action" in b and (not isinstance(data, FeatureBlocks) or data.best_dc):
            prob = np.asarray(b["action"].inplace_predict(wide)).reshape(n, D)
        else:
            prob = np.tile(self.action_prior_, (n, 1))
        out["best_dc_prob"] = prob / prob.sum(axis=1, keepdims=True)
        return out

    # -- persistence -------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        bdir = directory / "boosters"
        bdir.mkdir(exist_ok=True)
        files = {}
        for i, (name, booster) in enumerate(sorted(self.boosters_.items())):
            fname = f"b{i:03d}.ubj"
            booster.save_model(bdir / fname)
            files[name] = fname
        extra: dict[str, Any] = {"boosters": files, "action_prior": self.action_prior_.tolist(),
                                 "xgboost_version": _xgb_version()}
        if self.config.strategy == "point":
            extra["residual_quantiles"] = self.residual_quantiles_
        return extra

    def _load_artifacts(self, directory: Path, saved: dict[str, Any]) -> None:
        import xgboost as xgb

        boosters = {}
        for name, fname in saved["boosters"].items():
            path = directory / "boosters" / fname
            if not path.is_file():
                from greensched.predictor.base import CheckpointError

                raise CheckpointError(f"{path}: booster file missing from the saved model")
            booster = xgb.Booster()
            booster.load_model(path)
            boosters[name] = booster
        self.boosters_ = boosters
        self.action_prior_ = np.asarray(saved["action_prior"], dtype=float)
        if self.config.strategy == "point":
            rq = saved.get("residual_quantiles")
            if not isinstance(rq, dict) or set(rq) != set(TARGETS):
                from greensched.predictor.base import CheckpointError

                raise CheckpointError(
                    f"{directory / 'config.json'}: a 'point' XGBoost model needs "
                    f"'residual_quantiles' for {', '.join(TARGETS)}; this file has "
                    f"{sorted(rq) if isinstance(rq, dict) else rq!r} (re-train it)")
            self.residual_quantiles_ = {
                t: {k: [float(v) for v in rq[t][k]] for k in ("lo", "hi")} for t in TARGETS}


def _progress(name: str, rounds: int) -> Any:
    """An xgboost training callback: a tqdm bar per booster and a log line every 50 rounds."""
    import xgboost as xgb
    from tqdm.auto import tqdm

    class _Callback(xgb.callback.TrainingCallback):
        def before_training(self, model: Any) -> Any:
            self.bar = tqdm(total=rounds, desc=f"XGBoost {name}", unit="round", leave=False)
            self.t0 = time.perf_counter()
            return model

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            self.bar.update(1)
            if (epoch + 1) % 50 == 0:
                last = {k: v[-1] for k, v in evals_log.get("val", {}).items()}
                log.info("XGBoost %s: round %d/%d, %.1f s, val %s", name, epoch + 1, rounds,
                         time.perf_counter() - self.t0,
                         ", ".join(f"{k} {float(v):.4f}" for k, v in last.items()) or "-")
            return False

        def after_training(self, model: Any) -> Any:
            self.bar.close()
            log.info("XGBoost %s: %d rounds in %.1f s", name, model.num_boosted_rounds(),
                     time.perf_counter() - self.t0)
            return model

    return _Callback()


def residual_quantiles(resid: np.ndarray, *, pooled: bool = False,
                       levels: tuple[float, float] = (0.1, 0.9)) -> dict[str, list[float]]:
    """Lower and upper quantiles of residuals ``(n, D)`` per DC (``pooled``: one value over all
    DCs, repeated), as ``{"lo": [...], "hi": [...]}``.

    Examples
    --------
    >>> r = np.column_stack([np.arange(11.0), 2 * np.arange(11.0)])
    >>> residual_quantiles(r)
    {'lo': [1.0, 2.0], 'hi': [9.0, 18.0]}
    """
    r = np.asarray(resid, dtype=float)
    D = r.shape[1]
    if pooled:
        lo, hi = (float(v) for v in np.quantile(r, levels))
        return {"lo": [lo] * D, "hi": [hi] * D}
    qs = np.quantile(r, levels, axis=0)
    return {"lo": [float(v) for v in qs[0]], "hi": [float(v) for v in qs[1]]}


def _xgb_version() -> str:
    import xgboost as xgb

    return str(xgb.__version__)


def describe(model: XGBoostPredictor) -> str:
    """One-line summary of a fitted model's boosters (for logs)."""
    return json.dumps({k: int(b.num_boosted_rounds()) for k, b in model.boosters_.items()})
