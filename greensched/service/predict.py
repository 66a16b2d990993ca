"""Predictor adapters of the service: integer-coded job arrays in, (job, dc) arrays out.

Two adapters share one interface, ``predict(jobs) -> {variable: (n, D) array}`` with DCs in the
scenario's order:

* :class:`CoefficientPredictor` wraps the scheduler's
  :class:`~greensched.scheduler.assign.CoefficientTable` (per-query coefficients scaled by the
  job's tokens, as :func:`~greensched.scheduler.assign.predictions_from_coefficients`);
* :class:`ModelPredictor` feeds a saved predictor dataset-format rows built from per-(hour, dc)
  state computed once, through the documented
  :meth:`~greensched.predictor.base.BasePredictor.predict_arrays` (or ``predict_jobs`` for other
  predictors).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignError, CoefficientTable
from greensched.service.config import ServiceError

__all__ = [
    "PRED_VARS",
    "CoefficientPredictor",
    "JobArrays",
    "ModelPredictor",
    "load_model",
    "model_version",
]

#: Prediction variables the service reads (p90s for risk-aware assignment).
PRED_VARS = ("energy_kwh", "service_s", "energy_kwh_p90", "service_s_p90")


@dataclass
class JobArrays:
    """Validated jobs, integer-coded, in arrival (request) order."""

    job_id: list[str]
    hour: np.ndarray  # int64
    area: np.ndarray  # int64 position in scenario.areas
    qtype: np.ndarray  # int64 position in scenario.query_types
    input_tokens: np.ndarray  # float
    output_tokens: np.ndarray  # float, NaN = unknown
    sla_s: np.ndarray  # float
    arrival_s: np.ndarray  # float

    def __len__(self) -> int:
        return len(self.job_id)

    @classmethod
    def concat(cls, parts: list[JobArrays]) -> JobArrays:
        """One batch of ``parts`` in order."""
        if len(parts) == 1:
            return parts[0]
        ids: list[str] = []
        for p in parts:
            ids.extend(p.job_id)
        arrays = {name: np.concatenate([getattr(p, name) for p in parts])
                  for name in ("hour", "area", "qtype", "input_tokens", "output_tokens",
                               "sla_s", "arrival_s")}
        return cls(job_id=ids, **arrays)

    def take(self, idx: np.ndarray) -> JobArrays:
        """The jobs at positions ``idx``."""
        return JobArrays(job_id=[self.job_id[i] for i in idx], hour=self.hour[idx],
                         area=self.area[idx], qtype=self.qtype[idx],
                         input_tokens=self.input_tokens[idx],
                         output_tokens=self.output_tokens[idx], sla_s=self.sla_s[idx],
                         arrival_s=self.arrival_s[idx])

    def fingerprint(self, i: int) -> tuple[Any, ...]:
        """What identifies job ``i``'s content (a re-sent job id must carry the same)."""
        out = self.output_tokens[i]
        return (int(self.hour[i]), int(self.area[i]), int(self.qtype[i]),
                float(self.input_tokens[i]), None if math.isnan(out) else float(out),
                float(self.sla_s[i]), float(self.arrival_s[i]))

    def frame(self, scenario: Scenario) -> pd.DataFrame:
        """A validated jobs table (``greensched.jobs`` columns)."""
        return pd.DataFrame({
            "job_id": np.asarray(self.job_id, dtype=object),
            "arrival_s": self.arrival_s,
            "hour": self.hour.astype(np.int64),
            "area": np.asarray(scenario.areas, dtype=object)[self.area],
            "query_type": np.asarray(scenario.query_types, dtype=object)[self.qtype],
            "input_tokens": self.input_tokens.astype(np.int64),
            "output_tokens": self.output_tokens,  # NaN = not known
            "sla_s": self.sla_s,
        })

    @classmethod
    def probe(cls) -> JobArrays:
        """One job of the first hour, area and type (warm-up and load checks)."""
        z = np.zeros(1, np.int64)
        return cls(job_id=["warm-up"], hour=z, area=z.copy(), qtype=z.copy(),
                   input_tokens=np.full(1, 100.0), output_tokens=np.full(1, 100.0),
                   sla_s=np.full(1, DEFAULT_SLA_S), arrival_s=np.zeros(1))


class CoefficientPredictor:
    """Per-query coefficients scaled by each job's tokens: the scheduler's
    :class:`~greensched.scheduler.assign.CoefficientTable` (the arrays behind
    :func:`~greensched.scheduler.assign.predictions_from_coefficients`)::

        energy_kwh[j,d] = e[h,k,d] · (n_in + n_out) / (mean_in_k + mean_out_k)
        service_s[j,d]  = p[h,k,d] · (same scale) + rtt_s[a,d]

    where an unknown ``n_out`` counts as the type's mean.
    """

    kind = "coefficients"

    def __init__(self, scenario: Scenario) -> None:
        try:
            self.table = CoefficientTable(scenario)
        except AssignError as exc:
            raise ServiceError(f"coefficient predictions: {exc}") from exc

    def predict(self, jobs: JobArrays) -> dict[str, np.ndarray]:
        """``energy_kwh`` and ``service_s`` per (job, dc)."""
        t = self.table
        out = np.where(np.isnan(jobs.output_tokens), t.mean_output_tokens[jobs.qtype],
                       jobs.output_tokens)
        energy, service = t.predict(jobs.hour, jobs.qtype, jobs.area, jobs.input_tokens + out)
        return {"energy_kwh": energy, "service_s": service}


class ModelPredictor:
    """A saved predictor, fed dataset-format rows built from cached per-(hour, dc) state.

    The rows are those of :func:`greensched.predictor.dataset.rows_from_jobs` (the scenario's
    expected utilisation), built from arrays computed once instead of per call, and go to the
    predictor's public :meth:`~greensched.predictor.base.BasePredictor.predict_arrays` without
    re-validation (the request models checked labels, ranges and tokens).  Predictors without
    ``predict_arrays`` get a jobs table through ``predict_jobs``.

    XGBoost models (``accepts_feature_blocks``) skip the rows altogether: the per-DC features
    of every hour and area are standardised once
    (:meth:`~greensched.predictor.features.Featurizer.dc_table`), a batch's job features come
    from its arrays (:meth:`~greensched.predictor.features.Featurizer.job_block`), both
    bit-identical to featurising the rows, and the best-DC classifier, which the service does
    not read, is not evaluated.
    """

    kind = "model"

    def __init__(self, model: Any, scenario: Scenario, fast: bool = True) -> None:
        from greensched.predictor.dataset import dc_column
        from greensched.state import STATE_FIELDS, dc_hour_state

        self.model = model
        self.scenario = scenario
        self.kind = str(getattr(model, "kind", type(model).__name__))
        dcs = scenario.dcs
        state = dc_hour_state(scenario)
        by_hour = {f: state[f].transpose("hour", "dc").values for f in STATE_FIELDS}
        rtt = scenario.ds["rtt_s"].transpose("area", "dc").values
        self._state = [([dc_column(f, d) for d in dcs], by_hour[f]) for f in STATE_FIELDS]
        self._rtt = ([dc_column("rtt_s", d) for d in dcs], rtt)
        self._areas = np.asarray(scenario.areas, dtype=object)
        self._types = np.asarray(scenario.query_types, dtype=object)
        self._fast = False
        self._blocks: Any = None
        model_dcs = [str(d) for d in getattr(model, "dcs_", [])]
        if fast and callable(getattr(model, "predict_arrays", None)) and (
            sorted(model_dcs) == sorted(dcs)
        ):
            self._fast = True
            self._order = np.asarray([model_dcs.index(d) for d in dcs], dtype=np.int64)
            fz = getattr(model, "featurizer_", None)
            if getattr(model, "accepts_feature_blocks", False) and fz is not None and set(
                    fz.dc_fields) <= {*STATE_FIELDS, "rtt_s"}:
                self._featurizer = fz
                self._dc_table = fz.dc_table(dcs, by_hour, {"rtt_s": rtt})
                self._qpos = fz.positions(scenario.query_types, "query_type")
                self._apos = fz.positions(scenario.areas, "area")
                self._blocks = self._feature_blocks

    def _feature_blocks(self, jobs: JobArrays) -> Any:
        from greensched.predictor.features import FeatureBlocks

        fz = self._featurizer
        job = fz.job_block(jobs.input_tokens, jobs.output_tokens, jobs.sla_s,
                           self._qpos[jobs.qtype], self._apos[jobs.area], missing=np.nan)
        return FeatureBlocks(job, self._dc_table.block(jobs.hour, jobs.area), best_dc=False)

    def rows(self, jobs: JobArrays) -> pd.DataFrame:
        """Dataset-format rows without targets (``docs/dataset-format.md``)."""
        cols: dict[str, Any] = {
            "job_id": np.asarray(jobs.job_id, dtype=object),
            "arrival_s": jobs.arrival_s,
            "hour": jobs.hour,
            "area": self._areas[jobs.area],
            "query_type": self._types[jobs.qtype],
            "input_tokens": jobs.input_tokens,
            "output_tokens": jobs.output_tokens,
            "sla_s": jobs.sla_s,
        }
        for names, arr in self._state:
            vals = arr[jobs.hour]
            for j, c in enumerate(names):
                cols[c] = vals[:, j]
        names, rtt = self._rtt
        vals = rtt[jobs.area]
        for j, c in enumerate(names):
            cols[c] = vals[:, j]
        return pd.DataFrame(cols)

    def predict(self, jobs: JobArrays) -> dict[str, np.ndarray]:
        """Every variable of :data:`PRED_VARS` the model gives, per (job, dc)."""
        if self._fast:
            rows = self._blocks(jobs) if self._blocks is not None else self.rows(jobs)
            arrays = self.model.predict_arrays(rows, validate=False)
            return {v: np.asarray(arrays[v], dtype=float)[:, self._order]
                    for v in PRED_VARS if v in arrays}
        dcs = self.scenario.dcs
        ds = self.model.predict_jobs(jobs.frame(self.scenario), self.scenario)
        return {v: np.asarray(ds[v].transpose("job", "dc").sel(dc=dcs).values, dtype=float)
                for v in PRED_VARS if v in ds.data_vars}

    def warm_up(self) -> ModelPredictor:
        """One prediction (first hour, area and type), so that a broken model fails here."""
        out = self.predict(JobArrays.probe())
        for v in ("energy_kwh", "service_s"):
            if v not in out or out[v].shape != (1, len(self.scenario.dcs)):
                raise ServiceError(f"the predictor returned no {v!r} per DC")
        return self


def model_version(path: Path) -> str:
    """``version`` from a registry copy's ``registry.json``, else the directory name."""
    meta = path / "registry.json"
    if meta.is_file():
        try:
            v = json.loads(meta.read_text(encoding="utf-8")).get("version")
            if isinstance(v, str) and v:
                return v
        except (OSError, ValueError):
            pass
    return path.resolve().name


def load_model(path: Path, scenario: Scenario) -> ModelPredictor:
    """Load a saved predictor for ``scenario``'s DCs and check it answers one probe."""
    try:
        from greensched.predictor.checkpoint import load_predictor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ServiceError(f"model {str(path)!r} needs the predictor (pip install "
                           f"'greensched[ml]'): {exc}") from exc
    model = load_predictor(path, dcs=scenario.dcs)
    return ModelPredictor(model, scenario).warm_up()
