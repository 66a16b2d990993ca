"""Numeric features of dataset rows, shared by the XGBoost predictor and the LoRA model's numeric
side input.

Job features (one row per job)::

    log1p(input_tokens), log1p(output_tokens) (missing → NaN or 0), output_known (0/1),
    log(sla_s), one-hot(query_type), one-hot(area)

Per-DC features (one vector per job and DC), in :data:`greensched.predictor.dataset.DC_FIELDS`
order: price (USD/kWh), carbon (kg/kWh), renewable share, PUE, utilisation, RTT (s), then the
optional DC descriptors of :data:`DC_DESCRIPTOR_FIELDS` (what serves the job there: GPU memory,
model size, GPUs per replica) when the training rows carry them for every DC
(``<field>__<dc>``).  Descriptors let a model predict for a DC it never saw in training.

Continuous features are standardised with the training set's mean and standard deviation (the
same statistics for every DC, so that DCs stay comparable).  Unknown categories map to all-zero
one-hots.  Targets are modelled as standardised logarithms per (target, DC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from greensched.predictor.dataset import DC_FIELDS, TARGETS, DatasetError, dc_column

__all__ = [
    "DC_DESCRIPTOR_FIELDS",
    "DCFeatureTable",
    "FeatureBlocks",
    "Featurizer",
    "TargetScaler",
    "descriptor_fields",
]

#: Optional per-(job, DC) descriptors of the serving set-up (numeric, ``<field>__<dc>``).
DC_DESCRIPTOR_FIELDS = ("gpu_memory_gb", "model_params_b", "gpus_per_replica")


def descriptor_fields(df: pd.DataFrame, dcs: Sequence[str]) -> tuple[str, ...]:
    """The :data:`DC_DESCRIPTOR_FIELDS` that ``df`` has for every DC of ``dcs``."""
    return tuple(f for f in DC_DESCRIPTOR_FIELDS
                 if all(dc_column(f, d) in df.columns for d in dcs))

_JOB_NUMERIC = ("log_input_tokens", "log_output_tokens", "output_known", "log_sla_s")


class Featurizer:
    """Turns dataset rows into arrays; :meth:`fit` learns categories and scaling."""

    def __init__(self, dcs: Sequence[str]) -> None:
        self.dcs = [str(d) for d in dcs]
        self.query_types: list[str] = []
        self.areas: list[str] = []
        self.job_mean = np.zeros(len(_JOB_NUMERIC))
        self.job_std = np.ones(len(_JOB_NUMERIC))
        self.dc_fields: tuple[str, ...] = tuple(DC_FIELDS)
        self.dc_mean = np.zeros(len(DC_FIELDS))
        self.dc_std = np.ones(len(DC_FIELDS))

    # -- fitting and persistence -------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> Featurizer:
        """Learn categories and means/standard deviations from (validated) training rows."""
        self.query_types = sorted(pd.unique(df["query_type"].astype(str)))
        self.areas = sorted(pd.unique(df["area"].astype(str)))
        self.dc_fields = (*DC_FIELDS, *descriptor_fields(df, self.dcs))
        raw = self._job_raw(df)
        self.job_mean = np.nanmean(raw, axis=0)
        self.job_std = np.nanstd(raw, axis=0)
        self.job_mean[2], self.job_std[2] = 0.0, 1.0  # the flag stays 0/1
        dc = self._dc_raw(df).reshape(-1, len(self.dc_fields))
        self.dc_mean = dc.mean(axis=0)
        self.dc_std = dc.std(axis=0)
        self.job_mean = np.nan_to_num(self.job_mean)
        self.job_std = np.where(np.isfinite(self.job_std) & (self.job_std > 1e-12), self.job_std, 1)
        self.dc_std = np.where(self.dc_std > 1e-12, self.dc_std, 1.0)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "dcs": self.dcs,
            "query_types": self.query_types,
            "areas": self.areas,
            "dc_fields": list(self.dc_fields),
            "job_mean": self.job_mean.tolist(),
            "job_std": self.job_std.tolist(),
            "dc_mean": self.dc_mean.tolist(),
            "dc_std": self.dc_std.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Featurizer:
        """Inverse of :meth:`to_dict`."""
        f = cls(d["dcs"])
        f.query_types = list(d["query_types"])
        f.areas = list(d["areas"])
        f.dc_fields = tuple(d.get("dc_fields", DC_FIELDS))
        for key in ("job_mean", "job_std", "dc_mean", "dc_std"):
            setattr(f, key, np.asarray(d[key], dtype=float))
        return f

    # -- transforms --------------------------------------------------------------------------
    @staticmethod
    def _job_raw(df: pd.DataFrame) -> np.ndarray:
        return _job_raw_arrays(df["input_tokens"].to_numpy(dtype=float),
                               df["output_tokens"].to_numpy(dtype=float),
                               df["sla_s"].to_numpy(dtype=float))

    def _dc_raw(self, df: pd.DataFrame) -> np.ndarray:
        arr = np.empty((len(df), len(self.dcs), len(self.dc_fields)))
        for j, d in enumerate(self.dcs):
            for k, f in enumerate(self.dc_fields):
                col = dc_column(f, d)
                if col not in df.columns:
                    raise DatasetError("missing column: the model was trained with this DC "
                                       "descriptor", column=col)
                s = df[col]
                # numeric numpy columns convert as they are (what to_numeric would return)
                arr[:, j, k] = (s.to_numpy(dtype=float) if s.dtype.kind in "fiub"
                                else pd.to_numeric(s, errors="coerce").to_numpy(dtype=float))
        return arr

    def positions(self, values: Sequence[str] | pd.Series, kind: str) -> np.ndarray:
        """Positions of ``values`` among the learned ``"query_type"`` or ``"area"`` categories
        (int64, -1 for an unknown category: an all-zero one-hot)."""
        labels = {"query_type": self.query_types, "area": self.areas}.get(kind)
        if labels is None:
            raise ValueError(f"kind must be 'query_type' or 'area', got {kind!r}")
        vals = values.astype(str) if isinstance(values, pd.Series) else [str(v) for v in values]
        return np.asarray(pd.Index(labels).get_indexer(vals), dtype=np.int64)

    @property
    def n_job(self) -> int:
        """Width of :meth:`job_features`."""
        return len(_JOB_NUMERIC) + len(self.query_types) + len(self.areas)

    def job_features(self, df: pd.DataFrame, *, missing: float = np.nan) -> np.ndarray:
        """(n, n_job) float32; an unknown ``output_tokens`` becomes ``missing`` (NaN for trees,
        0 = the training mean for the network)."""
        return self.job_block(df["input_tokens"].to_numpy(dtype=float),
                              df["output_tokens"].to_numpy(dtype=float),
                              df["sla_s"].to_numpy(dtype=float),
                              self.positions(df["query_type"], "query_type"),
                              self.positions(df["area"], "area"), missing=missing)

    def job_block(self, input_tokens: np.ndarray, output_tokens: np.ndarray, sla_s: np.ndarray,
                  query_type_pos: np.ndarray, area_pos: np.ndarray, *,
                  missing: float = np.nan) -> np.ndarray:
        """:meth:`job_features` from arrays: tokens and SLA as floats (``output_tokens`` NaN
        when unknown), categories as :meth:`positions` (-1 unknown).  Bit-identical to
        :meth:`job_features` on the same jobs; no DataFrame is built (the HTTP service)."""
        num = (_job_raw_arrays(np.asarray(input_tokens, dtype=float),
                               np.asarray(output_tokens, dtype=float),
                               np.asarray(sla_s, dtype=float)) - self.job_mean) / self.job_std
        num[:, 1] = np.where(np.isfinite(num[:, 1]), num[:, 1], missing)
        n, w = len(num), len(_JOB_NUMERIC)
        out = np.zeros((n, self.n_job), dtype=np.float32)
        out[:, :w] = num  # the same rounding to float32 as astype
        rows = np.arange(n)
        for pos, start in ((np.asarray(query_type_pos), w),
                           (np.asarray(area_pos), w + len(self.query_types))):
            ok = pos >= 0
            out[rows[ok], start + pos[ok]] = 1.0
        return out

    def dc_features(self, df: pd.DataFrame) -> np.ndarray:
        """(n, D, len(dc_fields)) float32, standardised."""
        return ((self._dc_raw(df) - self.dc_mean) / self.dc_std).astype(np.float32)

    def range_warnings(self, z: np.ndarray, limit: float) -> list[tuple[str, str]]:
        """``(field, message)`` for each DC field of a standardised DC block ``z`` ((n, D, F),
        :meth:`dc_features`) with values more than ``limit`` training standard deviations from
        the training mean (rows affected, how far, the training mean and the values seen)."""
        out = []
        for k, f in enumerate(self.dc_fields):
            far = np.abs(z[:, :, k]) > limit
            if far.any():
                raw = self.dc_mean[k] + z[:, :, k].astype(float) * self.dc_std[k]
                out.append((f, (
                    f"{f} of {int(far.any(axis=1).sum())} of {len(z)} rows lies outside the "
                    f"training range (up to {float(np.abs(z[:, :, k]).max()):.0f} training sd "
                    f"from its mean {self.dc_mean[k]:.4g}; seen {np.nanmin(raw):.4g}.."
                    f"{np.nanmax(raw):.4g}). The model was trained at another operating point: "
                    "pass the state it was trained on (predict_jobs(utilization=...)) or "
                    "retrain")))
        return out

    def dc_table(self, dcs: Sequence[str], by_hour: Mapping[str, np.ndarray],
                 by_area: Mapping[str, np.ndarray]) -> DCFeatureTable:
        """:meth:`dc_features` precomputed for every hour and area (see
        :class:`DCFeatureTable`); ``by_hour[field]`` is (hours, len(dcs)), ``by_area[field]``
        (areas, len(dcs)), DCs in ``dcs`` order (reordered to the model's)."""
        return DCFeatureTable(self, dcs, by_hour, by_area)


def _job_raw_arrays(input_tokens: np.ndarray, output_tokens: np.ndarray,
                    sla_s: np.ndarray) -> np.ndarray:
    known = np.isfinite(output_tokens)
    return np.column_stack([
        np.log1p(input_tokens),
        np.where(known, np.log1p(np.where(known, output_tokens, 0.0)), np.nan),
        known.astype(float),
        np.log(sla_s),
    ])


class DCFeatureTable:
    """Standardised per-DC features for every hour and area, computed once.

    Each of the featurizer's ``dc_fields`` depends either on the hour (grid and DC state) or on
    the job's area (``rtt_s``); :meth:`block` gathers a batch's (n, D, F) float32 features from
    the two tables, bit-identical to :meth:`Featurizer.dc_features` on the dataset rows of the
    same jobs (each element is standardised with the same float64 operations, then rounded to
    float32).

    Raises
    ------
    DatasetError
        A field of ``dc_fields`` is in neither mapping, or a DC of the model is missing.
    """

    def __init__(self, featurizer: Featurizer, dcs: Sequence[str],
                 by_hour: Mapping[str, np.ndarray], by_area: Mapping[str, np.ndarray]) -> None:
        fz = featurizer
        given = [str(d) for d in dcs]
        missing = [d for d in fz.dcs if d not in given]
        if missing:
            raise DatasetError(f"no per-DC values for the model's DC(s) {missing}",
                               column="dc")
        order = np.asarray([given.index(d) for d in fz.dcs], dtype=np.int64)
        self.n_fields = len(fz.dc_fields)
        self.dcs = list(fz.dcs)

        hour_ks = [k for k, f in enumerate(fz.dc_fields) if f in by_hour]
        area_ks = [k for k, f in enumerate(fz.dc_fields) if f in by_area and f not in by_hour]
        absent = [f for k, f in enumerate(fz.dc_fields) if k not in {*hour_ks, *area_ks}]
        if absent:
            raise DatasetError("missing column: the model was trained with this DC "
                               "descriptor", column=dc_column(absent[0], fz.dcs[0]))

        def table(source: Mapping[str, np.ndarray], ks: list[int]) -> np.ndarray | None:
            if not ks:
                return None
            return np.stack([((np.asarray(source[fz.dc_fields[k]], dtype=float)[:, order]
                               - fz.dc_mean[k]) / fz.dc_std[k]).astype(np.float32)
                             for k in ks], axis=2)

        self.by_hour = table(by_hour, hour_ks)
        self.by_area = table(by_area, area_ks)
        self._parts = [(tab, _slot(ks), axis) for axis, (tab, ks) in enumerate(
            ((self.by_hour, hour_ks), (self.by_area, area_ks))) if tab is not None]

    def block(self, hour: np.ndarray, area: np.ndarray) -> np.ndarray:
        """(n, D, F) float32 features of jobs at ``hour`` (positions into the hour axis of
        ``by_hour``) from ``area`` (positions into ``by_area``)."""
        out = np.empty((len(hour), len(self.dcs), self.n_fields), dtype=np.float32)
        for tab, slot, axis in self._parts:
            out[:, :, slot] = tab[area if axis else hour]
        return out


@dataclass
class FeatureBlocks:
    """Rows featurised already: :meth:`Featurizer.job_block` (``job``, (n, n_job)) and
    :meth:`DCFeatureTable.block` (``dc``, (n, D, F)) of the same jobs, for predictors that take
    them instead of dataset rows (``XGBoostPredictor.predict_arrays``, the HTTP service);
    ``best_dc=False`` skips the best-DC classifier (``best_dc_prob`` is then the prior)."""

    job: np.ndarray
    dc: np.ndarray
    best_dc: bool = True

    def __post_init__(self) -> None:
        if self.job.ndim != 2 or self.dc.ndim != 3 or len(self.job) != len(self.dc):
            raise ValueError(f"job (n, n_job) and dc (n, D, F) blocks of the same jobs "
                             f"expected, got shapes {self.job.shape} and {self.dc.shape}")

    def __len__(self) -> int:
        return len(self.job)


def _slot(ks: list[int]) -> slice | np.ndarray:
    """A slice for consecutive positions (a plain copy), else the positions."""
    if ks == list(range(ks[0], ks[0] + len(ks))):
        return slice(ks[0], ks[0] + len(ks))
    return np.asarray(ks, dtype=np.int64)


class TargetScaler:
    """Standardised log targets per (target, DC): z = (ln y − μ) / σ."""

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.mean = mean
        self.std = std

    @staticmethod
    def log_targets(df: pd.DataFrame, dcs: Sequence[str]) -> np.ndarray:
        """(n, 2, D) natural logs of ``energy_kwh`` and ``service_s``."""
        return np.stack(
            [np.column_stack([np.log(df[dc_column(t, d)].to_numpy(dtype=float)) for d in dcs])
             for t in TARGETS],
            axis=1,
        )

    def fit(self, logs: np.ndarray, pooled: bool = False) -> TargetScaler:
        """Learn μ, σ (each (2, D)) from (n, 2, D) log targets; ``pooled``: one μ, σ per
        target shared by all DCs (so that the scaled targets keep the differences between
        DCs, which a model without DC identity must learn from the DCs' features)."""
        if pooled:
            D = logs.shape[2]
            self.mean = np.repeat(logs.mean(axis=(0, 2))[:, None], D, axis=1)
            std = np.repeat(logs.std(axis=(0, 2))[:, None], D, axis=1)
        else:
            self.mean = logs.mean(axis=0)
            std = logs.std(axis=0)
        self.std = np.where(std > 1e-9, std, 1.0)
        return self

    def transform(self, logs: np.ndarray) -> np.ndarray:
        """(n, 2, D) logs → standardised."""
        assert self.mean is not None and self.std is not None
        return (logs - self.mean) / self.std

    def inverse(self, z: np.ndarray, target: int) -> np.ndarray:
        """Standardised values (n, D) of target index ``target`` → original units."""
        assert self.mean is not None and self.std is not None
        return np.exp(z * self.std[target] + self.mean[target])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        assert self.mean is not None and self.std is not None
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["mean"], dtype=float), np.asarray(d["std"], dtype=float))
