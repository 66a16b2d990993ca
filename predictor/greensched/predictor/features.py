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

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from greensched.predictor.dataset import DC_FIELDS, TARGETS, DatasetError, dc_column

__all__ = ["DC_DESCRIPTOR_FIELDS", "Featurizer", "TargetScaler", "descriptor_fields"]

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
        out_tok = df["output_tokens"].to_numpy(dtype=float)
        known = np.isfinite(out_tok)
        return np.column_stack([
            np.log1p(df["input_tokens"].to_numpy(dtype=float)),
            np.where(known, np.log1p(np.where(known, out_tok, 0.0)), np.nan),
            known.astype(float),
            np.log(df["sla_s"].to_numpy(dtype=float)),
        ])

    def _dc_raw(self, df: pd.DataFrame) -> np.ndarray:
        arr = np.empty((len(df), len(self.dcs), len(self.dc_fields)))
        for j, d in enumerate(self.dcs):
            for k, f in enumerate(self.dc_fields):
                col = dc_column(f, d)
                if col not in df.columns:
                    raise DatasetError("missing column: the model was trained with this DC "
                                       "descriptor", column=col)
                arr[:, j, k] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        return arr

    @staticmethod
    def _one_hot(values: pd.Series, labels: list[str]) -> np.ndarray:
        pos = pd.Index(labels).get_indexer(values.astype(str))
        out = np.zeros((len(values), len(labels)))
        ok = pos >= 0
        out[np.flatnonzero(ok), pos[ok]] = 1.0
        return out

    @property
    def n_job(self) -> int:
        """Width of :meth:`job_features`."""
        return len(_JOB_NUMERIC) + len(self.query_types) + len(self.areas)

    def job_features(self, df: pd.DataFrame, *, missing: float = np.nan) -> np.ndarray:
        """(n, n_job) float32; an unknown ``output_tokens`` becomes ``missing`` (NaN for trees,
        0 = the training mean for the network)."""
        num = (self._job_raw(df) - self.job_mean) / self.job_std
        num[:, 1] = np.where(np.isfinite(num[:, 1]), num[:, 1], missing)
        return np.column_stack([
            num,
            self._one_hot(df["query_type"], self.query_types),
            self._one_hot(df["area"], self.areas),
        ]).astype(np.float32)

    def dc_features(self, df: pd.DataFrame) -> np.ndarray:
        """(n, D, len(dc_fields)) float32, standardised."""
        return ((self._dc_raw(df) - self.dc_mean) / self.dc_std).astype(np.float32)


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
