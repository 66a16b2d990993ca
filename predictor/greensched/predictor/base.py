"""The interface every predictor follows, and the loading factory.

Estimators follow scikit-learn: ``__init__`` stores the config only, :meth:`BasePredictor.fit`
returns ``self``, learned state ends in ``_``, and predicting before fitting raises
:class:`NotFittedError`.  Every predictor answers the same three questions:

* :meth:`~BasePredictor.predict_frame` – dataset-format rows in, one column per (variable, DC)
  out (``energy_kwh__<dc>``, ``service_s_p90__<dc>``, ``best_dc_prob__<dc>``, ... and the
  ``best_dc`` with the highest probability);
* :meth:`~BasePredictor.predict_jobs` – a jobs table and a scenario in, an
  :class:`xarray.Dataset` with dims ``(job, dc)`` out (what the online assigner reads);
* :meth:`~BasePredictor.coefficients` – per (hour, dc, query_type) coefficients for the planner
  (``coefficients.csv``).

Variables (units in names): ``energy_kwh`` (IT energy of the job, kWh) and ``service_s``
(end-to-end service time including network RTT, s) as point predictions, their 10/50/90 %
quantiles ``*_p10``, ``*_p50``, ``*_p90``, and ``best_dc_prob`` (probability that the DC is the
hindsight-best one; sums to 1 over DCs).

A saved model is a directory with ``config.json`` (sorted JSON: ``kind``, the estimator's config,
DCs, feature and target scaling), ``metrics.json`` (validation metrics, training history) and
the estimator's own artefacts; :func:`load_predictor` reads the kind and dispatches.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.jobs import DEFAULT_SLA_S
from greensched.predictor.calibration import (
    DEFAULT_ROWS,
    CalibrationRows,
    QuantileCalibration,
    calibration_rows,
    out_of_fold_calibration,
    truth_arrays,
)
from greensched.predictor.calibration import MIN_CALIBRATION_ROWS as MIN_CAL
from greensched.predictor.dataset import (
    TARGETS,
    check_same_dcs,
    dataset_dcs,
    dc_column,
    rows_from_jobs,
    validate_dataset,
)
from greensched.predictor.features import Featurizer, TargetScaler
from greensched.predictor.metrics import evaluate_predictions
from greensched.scenario import Scenario

__all__ = [
    "FORMAT_VERSION",
    "PRED_VARS",
    "BasePredictor",
    "CheckpointError",
    "NotFittedError",
    "PredictorConfig",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: DC state more than this many training sd from the training mean is logged (once per model
#: and field): another operating point than the model's (LoRA also clips its input there).
OPERATING_RANGE_SD = 10.0
#: Variables of a prediction, per (job, dc).
PRED_VARS = (
    "energy_kwh", "energy_kwh_p10", "energy_kwh_p50", "energy_kwh_p90",
    "service_s", "service_s_p10", "service_s_p50", "service_s_p90",
    "best_dc_prob",
)
#: Saved kinds and their classes (imported lazily: loading XGBoost never imports torch).
KINDS = {
    "lora": "greensched.predictor.lora:LoraPredictor",
    "xgboost": "greensched.predictor.xgb:XGBoostPredictor",
}


class NotFittedError(GreenSchedError):
    """A predictor was used before :meth:`BasePredictor.fit` (or loading)."""


class CheckpointError(GreenSchedError):
    """A saved predictor directory is missing, incomplete or of an unknown kind/format."""


@dataclass
class PredictorConfig:
    """Settings shared by every predictor.

    Attributes
    ----------
    seed
        Seed of the train/validation split, output-token masking and the estimator.
    val_fraction
        Share of the rows held out for early stopping and validation metrics (0 ≤ f < 1; with 0
        there is no early stopping and metrics are on the training rows).
    output_token_dropout
        Share of training rows whose ``output_tokens`` are hidden, so that the model also
        predicts jobs whose generated length is not known yet (online assignment).
    dc_identity
        Let the model know which DC a prediction is for (a one-hot DC input; per-DC target
        scaling).  Off, a DC is known only by its features (state and the optional
        descriptors of :data:`~greensched.predictor.features.DC_DESCRIPTOR_FIELDS`) and the
        target scaling is pooled, so the model can predict for a DC it never saw.
    calibration_fraction
        Share of the rows held out (besides the validation split) to calibrate the p10/p90
        quantiles by split-conformal prediction (:mod:`greensched.predictor.calibration`);
        0 leaves them uncalibrated.  ``val_fraction + calibration_fraction`` must be < 0.9.
    calibrate_on
        Rows the conformal offsets are estimated on
        (:class:`~greensched.predictor.calibration.CalibrationRows`):
        ``"validation+calibration"`` (default), ``"calibration"`` (strict split-conformal) or
        ``"out-of-fold"`` (``calibration_folds`` ≥ 2 more fits score every training row;
        ``docs/predictor-training.md``).  Without a calibration split the first two leave the
        model uncalibrated.
    """

    seed: int = 0
    val_fraction: float = 0.1
    output_token_dropout: float = 0.2
    calibration_fraction: float = 0.1
    dc_identity: bool = True
    calibrate_on: CalibrationRows = DEFAULT_ROWS
    calibration_folds: int = 5

    def __post_init__(self) -> None:
        self.calibrate_on = CalibrationRows.parse(self.calibrate_on)
        if (isinstance(self.calibration_folds, bool) or not isinstance(self.calibration_folds, int)
                or self.calibration_folds < 2):
            raise GreenSchedError(f"calibration_folds must be an integer >= 2, got "
                                  f"{self.calibration_folds!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise GreenSchedError(f"seed must be an integer, got {self.seed!r}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise GreenSchedError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if not 0.0 <= float(self.calibration_fraction) < 1.0 or (
                float(self.val_fraction) + float(self.calibration_fraction) >= 0.9):
            raise GreenSchedError(
                f"calibration_fraction must be in [0, 1) with val_fraction + "
                f"calibration_fraction < 0.9, got {self.calibration_fraction!r} (val_fraction "
                f"{self.val_fraction!r})")
        if not 0.0 <= float(self.output_token_dropout) <= 1.0:
            raise GreenSchedError(
                f"output_token_dropout must be in [0, 1], got {self.output_token_dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {o!r}")


def write_json(path: Path, obj: Any) -> None:
    """Write sorted, indented JSON (atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default,
                              allow_nan=True) + "\n", encoding="utf-8")
    tmp.replace(path)


class BasePredictor(abc.ABC):
    """Shared fit/predict/save logic; subclasses implement the estimator.

    Subclasses define ``kind``, ``config_class`` and :meth:`_fit`, :meth:`_predict_arrays`,
    :meth:`_save`, :meth:`_load_artifacts`.

    Learned state (after :meth:`fit` or :func:`load_predictor`): ``dcs_`` (DC order of the
    outputs), ``featurizer_``, ``target_scaler_``, ``metrics_`` (validation metrics and training
    history), ``probe_row_`` (one dataset row, used to measure latency), ``calibration_``
    (:class:`~greensched.predictor.calibration.QuantileCalibration` of p10/p90).
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[PredictorConfig]] = PredictorConfig
    #: Set by :func:`~greensched.predictor.factory.select_predictor`: why this model serves.
    selection_: dict[str, Any]

    def __init__(self, config: PredictorConfig | None = None, **overrides: Any) -> None:
        cfg = config if config is not None else self.config_class()
        if not isinstance(cfg, self.config_class):
            raise GreenSchedError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                                  f"got {type(cfg).__name__}")
        names = {f.name for f in fields(cfg)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise GreenSchedError(f"unknown option {unknown[0]!r} for {type(self).__name__}; "
                                  f"known: {', '.join(sorted(names))}")
        self.config = replace(cfg, **overrides) if overrides else cfg

    # -- subclass hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def _fit(self, train: pd.DataFrame, val: pd.DataFrame | None, *,
             warm_start: bool = False) -> dict[str, Any]:
        """Fit the estimator on validated rows; return training history for ``metrics_``.
        With ``warm_start`` the learned state (weights, featurizer, scaling) is already there
        and training continues from it."""

    @abc.abstractmethod
    def _predict_arrays(self, data: pd.DataFrame) -> dict[str, np.ndarray]:
        """Validated rows → ``{var: (n, D) array}`` for every var of :data:`PRED_VARS`, columns
        in ``dcs_`` order."""

    @abc.abstractmethod
    def _save(self, directory: Path) -> dict[str, Any]:
        """Write the estimator's artefacts; return extra entries for ``config.json``."""

    @abc.abstractmethod
    def _load_artifacts(self, directory: Path, saved: dict[str, Any]) -> None:
        """Restore the estimator's learned state from ``directory``."""

    # -- fitting -----------------------------------------------------------------------------
    def _split(self, data: pd.DataFrame
               ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
        """Random (seeded) training / validation / calibration rows."""
        n = len(data)
        n_val = int(round(n * float(self.config.val_fraction)))
        if self.config.val_fraction > 0 and n >= 4:
            n_val = min(max(n_val, 1), n - 2)
        else:
            n_val = 0
        n_cal = int(round(n * float(self.config.calibration_fraction)))
        if n_cal < MIN_CAL or n - n_val - n_cal < 2:
            n_cal = 0
        perm = np.random.default_rng(self.config.seed).permutation(n)

        def part(idx: np.ndarray) -> pd.DataFrame | None:
            return data.iloc[np.sort(idx)].reset_index(drop=True) if len(idx) else None

        train = part(perm[n_val + n_cal:])
        assert train is not None
        return train, part(perm[:n_val]), part(perm[n_val:n_val + n_cal])

    def _mask_outputs(self, train: pd.DataFrame) -> pd.DataFrame:
        frac = float(self.config.output_token_dropout)
        if frac <= 0:
            return train
        rng = np.random.default_rng(self.config.seed + 1)
        hide = rng.random(len(train)) < frac
        out = train.copy()
        out.loc[hide, "output_tokens"] = np.nan
        return out

    def fit(self, df: pd.DataFrame, *, dcs: list[str] | None = None,
            meta: dict[str, Any] | None = None, warm_start: bool = False) -> Self:
        """Fit on dataset rows (``docs/dataset-format.md``).

        The rows are split (seeded) into training, validation (early stopping, ``metrics_``)
        and calibration rows; the split-conformal p10/p90 offsets
        (:mod:`greensched.predictor.calibration`) are estimated on the rows named by
        ``config.calibrate_on`` (default validation + calibration, so the validation
        coverage in ``metrics_`` is then in-sample for the calibration).

        Parameters
        ----------
        df
            Training rows with targets.
        dcs
            DC order of the outputs; default: the dataset's (``meta["dcs"]`` or column order).
        meta
            The dataset's ``greensched`` metadata, if any (kept in ``metrics_``).
        warm_start
            Continue training the fitted (or loaded) model on ``df`` instead of starting
            afresh: the feature and target scaling, the categories and the learned weights are
            kept (LoRA: current adapters and heads, no head warm-up; XGBoost: more boosting
            rounds on the current trees); the quantiles are re-calibrated.  The DCs must be
            the model's.  Ignored (a fresh fit) when the model is not fitted yet.

        Returns
        -------
        self
        """
        warm = bool(warm_start) and getattr(self, "metrics_", None) is not None
        if warm:
            model_dcs: list[str] = list(self.dcs_)
            dcs = model_dcs if dcs is None else [str(d) for d in dcs]
            check_same_dcs(model_dcs, dcs, "dataset")
            dcs = model_dcs
        else:
            dcs = [str(d) for d in dcs] if dcs is not None else dataset_dcs(df, meta)
        data = validate_dataset(df, dcs, targets=True)
        train, val, cal = self._split(data)
        oof = self.config.calibrate_on is CalibrationRows.OUT_OF_FOLD
        if oof and cal is not None:  # the calibration split is trained on (and scored OOF)
            train, cal = pd.concat([train, cal], ignore_index=True), None
        if not warm:
            self.dcs_: list[str] = dcs
            self.featurizer_ = Featurizer(dcs).fit(train)
            self.target_scaler_ = TargetScaler().fit(TargetScaler.log_targets(train, dcs),
                                                     pooled=not self.config.dc_identity)
        t0 = time.perf_counter()
        history = self._fit(self._mask_outputs(train), val, warm_start=warm)
        history["warm_start"] = warm
        fit_s = time.perf_counter() - t0
        self.calibration_ = QuantileCalibration.identity(dcs)
        cal_rows = None if oof else calibration_rows(val, cal, self.config.calibrate_on)
        if oof:
            self.calibration_ = self._out_of_fold(train, val)
        elif cal_rows is not None:
            self.calibration_ = QuantileCalibration.fit(self._predict_arrays(cal_rows),
                                                        truth_arrays(cal_rows, dcs), dcs)
        on = val if val is not None else train
        raw_arrays = self._predict_arrays(on)
        report = evaluate_predictions(
            self._frame(on, self.calibration_.apply(raw_arrays)), on, dcs)
        raw = evaluate_predictions(self._frame(on, raw_arrays), on, dcs)
        keys = ("mape", "rmse_log", "rmse", "r2", "coverage_p10_p90")
        validation: dict[str, Any] = {t: {k: report[t]["all"][k] for k in keys} for t in TARGETS}
        for t in TARGETS:
            validation[t]["coverage_p10_p90_uncalibrated"] = raw[t]["all"]["coverage_p10_p90"]
        validation["action_accuracy"] = report.get("action_accuracy", float("nan"))
        self.probe_row_ = {c: (v.item() if hasattr(v, "item") else v)
                           for c, v in on.drop(columns=[c for c in on.columns if c in ("best_dc",)
                                                        or c.startswith(TARGETS)])
                           .iloc[0].items()}
        self.metrics_: dict[str, Any] = {
            "kind": self.kind,
            "validation_on": "validation split" if val is not None else "training rows",
            "validation": validation,
            "n_train": len(train),
            "n_val": 0 if val is None else len(val),
            "n_calibration": 0 if cal is None else len(cal),
            "calibrated_on": {"rows": self.config.calibrate_on.value,
                              "n_rows": len(train) if oof else
                              0 if cal_rows is None else len(cal_rows),
                              **({"folds": self.config.calibration_folds} if oof else {})},
            "calibration": self.calibration_.to_dict(),
            "fit_seconds": fit_s,
            "train_samples_per_s": len(train) * max(1, int(history.get("epochs", 1))) / fit_s
            if fit_s > 0 else float("nan"),
            "history": history,
            "dataset": meta or {},
        }
        log.info("%s fitted on %d rows in %.1f s: energy MAPE %.2f %%, service MAPE %.2f %%",
                 self.kind, len(train), fit_s, 100 * validation["energy_kwh"]["mape"],
                 100 * validation["service_s"]["mape"])
        return self

    def _out_of_fold(self, train: pd.DataFrame, val: pd.DataFrame | None
                     ) -> QuantileCalibration:
        """``"out-of-fold"`` offsets: fresh models with this one's settings and scaling, each
        trained (on ``train`` less one fold, early-stopped on ``val``) and asked for its fold."""
        def fit_predict(rest: pd.DataFrame, held: pd.DataFrame) -> dict[str, np.ndarray]:
            member = type(self)(self.config)
            member.dcs_, member.featurizer_ = self.dcs_, self.featurizer_
            member.target_scaler_ = self.target_scaler_
            member._fit(member._mask_outputs(rest), val, warm_start=False)
            return member._predict_arrays(held)

        return out_of_fold_calibration(train, self.dcs_, fit_predict,
                                       folds=self.config.calibration_folds,
                                       seed=self.config.seed + 2, what=self.kind)

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if getattr(self, "metrics_", None) is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(dataset) or "
                "load_predictor(directory) before predicting or saving")

    def _warn_out_of_range(self, dc: np.ndarray) -> None:
        """Log (once per field) DC state of the standardised block ``dc`` ((n, D, F)) beyond
        :data:`OPERATING_RANGE_SD`; the estimators call it on the block they predict from."""
        warned: set[str] = self.__dict__.setdefault("_range_warned", set())
        for field, text in self.featurizer_.range_warnings(dc, OPERATING_RANGE_SD):
            if field not in warned:
                warned.add(field)
                log.warning("%s predictor: %s", self.kind, text)

    def _arrays(self, data: pd.DataFrame, calibrated: bool = True) -> dict[str, np.ndarray]:
        arrays = self._predict_arrays(data)
        cal = getattr(self, "calibration_", None)
        if calibrated and cal is not None:
            arrays = cal.apply(arrays)
        return arrays

    def predict_arrays(self, rows: pd.DataFrame, *, validate: bool = True,
                       calibrated: bool = True) -> dict[str, np.ndarray]:
        """Dataset-format rows → ``{var: (n, D) array}`` for every variable of
        :data:`PRED_VARS`, DCs in ``dcs_`` order: the array form of :meth:`predict_frame`, for
        callers that predict many small batches (the HTTP service).

        Parameters
        ----------
        rows
            Dataset-format rows (targets ignored).
        validate
            Check the rows first (:func:`~greensched.predictor.dataset.validate_dataset`);
            ``False`` skips it: the caller guarantees typed rows with the model's DC columns,
            as :func:`~greensched.predictor.dataset.rows_from_jobs` builds them.
        calibrated
            Return the conformally calibrated p10/p90 (default); False gives the raw model
            quantiles.
        """
        self._check_fitted()
        data = validate_dataset(rows, self.dcs_, targets=False) if validate else rows
        return self._arrays(data, calibrated)

    def _predict_validated(self, data: pd.DataFrame, calibrated: bool = True) -> pd.DataFrame:
        return self._frame(data, self._arrays(data, calibrated))

    def _frame(self, data: pd.DataFrame, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
        cols: dict[str, Any] = {"job_id": data["job_id"].to_numpy(dtype=object)}
        for var in PRED_VARS:
            for j, d in enumerate(self.dcs_):
                cols[dc_column(var, d)] = arrays[var][:, j]
        cols["best_dc"] = np.asarray(self.dcs_, dtype=object)[arrays["best_dc_prob"].argmax(1)]
        return pd.DataFrame(cols)

    def predict_frame(self, df: pd.DataFrame, *, calibrated: bool = True) -> pd.DataFrame:
        """Predict dataset-format rows (targets, if present, are ignored).

        Returns one row per input row: ``job_id``, ``<var>__<dc>`` for every variable of
        :data:`PRED_VARS` and DC (in ``dcs_`` order), and ``best_dc``.  The p10/p90 columns
        are the calibrated quantiles unless ``calibrated=False``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        DCMismatchError
            The rows carry state for other DCs than the model's.
        DatasetError
            A column is missing or a value is invalid.
        """
        self._check_fitted()
        pre = "price_usd_per_kwh__"
        present = [str(c)[len(pre):] for c in df.columns if str(c).startswith(pre)]
        if present:
            check_same_dcs(self.dcs_, present, "dataset")
        data = validate_dataset(df, self.dcs_, targets=False)
        return self._predict_validated(data, calibrated)

    def predict_jobs(self, jobs: pd.DataFrame, scenario: Scenario,
                     utilization: xr.DataArray | None = None, *,
                     calibrated: bool = True) -> xr.Dataset:
        """Predict every job at every DC of the scenario.

        Parameters
        ----------
        jobs
            Jobs table (``greensched.jobs``); ``output_tokens`` optional.
        scenario
            Supplies each job's hour state (:func:`greensched.state.dc_hour_state`) and RTTs.
        utilization
            Observed utilisation per (hour, dc) (0..1); default the expected utilisation.

        calibrated
            Calibrated p10/p90 (default; what the assigner's risk mode reads as
            ``energy_kwh_p90`` / ``service_s_p90``) or the raw model quantiles.

        Returns
        -------
        xarray.Dataset
            Dims ``(job, dc)`` (job labels = ``job_id``, DCs in scenario order), variables
            :data:`PRED_VARS`.
        """
        self._check_fitted()
        check_same_dcs(self.dcs_, scenario.dcs, "scenario")
        rows = rows_from_jobs(jobs, scenario, utilization)  # typed: jobs and scenario are valid
        arrays = self._arrays(rows, calibrated)
        order = [self.dcs_.index(d) for d in scenario.dcs]
        return xr.Dataset(
            {var: (("job", "dc"), arrays[var][:, order]) for var in PRED_VARS},
            coords={"job": rows["job_id"].to_numpy(dtype=object),
                    "dc": np.asarray(scenario.dcs, dtype=object)},
            attrs={"predictor": self.kind},
        )

    def coefficients(self, scenario: Scenario,
                     utilization: xr.DataArray | None = None) -> xr.Dataset:
        """Planner coefficients per (hour, dc, query_type), predicted for representative jobs.

        The representative job of query type k in hour h has the type's mean tokens
        (``input_tokens``, ``output_tokens`` of the scenario) and the default SLA
        (:data:`greensched.jobs.DEFAULT_SLA_S`); it is predicted from every area a, and::

            energy_kwh_per_query[h,d,k]   = Σ_a w[h,a,k] · E[h,k,a,d]
            proc_delay_s_per_query[h,d,k] = Σ_a w[h,a,k] · max(0, s[h,k,a,d] − rtt_s[a,d])

        with w the hour's demand shares over areas (``queries``; equal when the hour has none).
        The processing delay **excludes the network RTT**, since the planner adds d_ij itself.
        """
        self._check_fitted()
        check_same_dcs(self.dcs_, scenario.dcs, "scenario")
        ds = scenario.ds
        hours = np.asarray(ds.indexes["hour"])
        qts, areas = scenario.query_types, scenario.areas
        H, K, A = len(hours), len(qts), len(areas)
        grid = np.meshgrid(np.arange(H), np.arange(K), np.arange(A), indexing="ij")
        hh, kk, aa = (g.ravel() for g in grid)
        jobs = pd.DataFrame({
            "job_id": [f"rep-{h}-{k}-{a}" for h, k, a in zip(hh, kk, aa, strict=True)],
            "hour": hours[hh].astype(np.int64),
            "area": np.asarray(areas, dtype=object)[aa],
            "query_type": np.asarray(qts, dtype=object)[kk],
            "input_tokens": np.round(ds["input_tokens"].sel(query_type=qts).values[kk])
            .astype(np.int64),
            "output_tokens": np.round(ds["output_tokens"].sel(query_type=qts).values[kk])
            .astype(np.int64),
            "sla_s": DEFAULT_SLA_S,
        })
        pred = self.predict_jobs(jobs, scenario, utilization)
        energy = pred["energy_kwh"].values.reshape(H, K, A, -1)
        rtt = ds["rtt_s"].transpose("area", "dc").values
        proc = np.maximum(pred["service_s"].values.reshape(H, K, A, -1) - rtt[None, None], 0.0)
        w = ds["queries"].transpose("hour", "query_type", "area").values.astype(float)
        tot = w.sum(axis=2, keepdims=True)
        w = np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), 1.0 / A)
        e = (w[..., None] * energy).sum(axis=2)  # (H, K, D)
        p = (w[..., None] * proc).sum(axis=2)
        coords = {"hour": hours, "dc": np.asarray(scenario.dcs, dtype=object),
                  "query_type": np.asarray(qts, dtype=object)}
        return xr.Dataset(
            {"energy_kwh_per_query": (("hour", "dc", "query_type"), e.transpose(0, 2, 1)),
             "proc_delay_s_per_query": (("hour", "dc", "query_type"), p.transpose(0, 2, 1))},
            coords=coords,
            attrs={"predictor": self.kind,
                   "convention": "proc_delay_s_per_query excludes network RTT"},
        )

    def probe_frame(self, n: int = 1) -> pd.DataFrame:
        """``n`` copies of a stored validation row (features only), for latency measurements."""
        self._check_fitted()
        row = pd.DataFrame([self.probe_row_] * n)
        row["job_id"] = [f"probe-{i}" for i in range(n)]
        return row

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the fitted model to ``directory`` (created); see the module docstring."""
        self._check_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        extra = self._save(out)
        saved = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config.to_dict(),
            "dcs": self.dcs_,
            "featurizer": self.featurizer_.to_dict(),
            "target_scaler": self.target_scaler_.to_dict(),
            "probe_row": self.probe_row_,
            "calibration": self.calibration_.to_dict(),
            **extra,
        }
        write_json(out / "config.json", saved)
        write_json(out / "metrics.json", self.metrics_)
        return out

    @classmethod
    def _from_saved(cls, directory: Path, saved: dict[str, Any]) -> Self:
        obj = cls(cls.config_class.from_dict(saved.get("config", {})))
        obj.dcs_ = [str(d) for d in saved["dcs"]]
        obj.featurizer_ = Featurizer.from_dict(saved["featurizer"])
        obj.target_scaler_ = TargetScaler.from_dict(saved["target_scaler"])
        obj.probe_row_ = dict(saved.get("probe_row", {}))
        obj.calibration_ = (QuantileCalibration.from_dict(saved["calibration"])
                            if "calibration" in saved else QuantileCalibration.identity(obj.dcs_))
        obj._load_artifacts(directory, saved)
        mpath = directory / "metrics.json"
        obj.metrics_ = json.loads(mpath.read_text("utf-8")) if mpath.is_file() else {}
        return obj

    def __repr__(self) -> str:
        state = f"dcs={self.dcs_!r}" if getattr(self, "metrics_", None) is not None else "unfitted"
        return f"{type(self).__name__}({self.config!r}, {state})"


def finite_or_nan(x: float) -> float:
    """``x`` if finite else NaN (for JSON reports)."""
    return x if math.isfinite(x) else float("nan")
