"""The world of the closed-loop runs: the digital twin (and its changed copy after an
injected drift), period job streams, the initial model, greedy placement on predictions, and
outcome records of served periods.

Used by :mod:`greensched.feedback.closed_loop` (``greensched loop``) and the drift experiment
(:mod:`greensched.feedback.experiment`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.eval.simulate import build_dataset
from greensched.eval.traces import jobs_from_demand
from greensched.eval.twin import NoiseSource, Twin, encode_jobs
from greensched.predictor.base import BasePredictor
from greensched.predictor.dataset import DC_FIELDS, dc_column, rows_from_jobs
from greensched.predictor.xgb import XGBoostPredictor
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, GreedyAssigner

__all__ = [
    "ENERGY_COEFFICIENTS",
    "FAST_XGB",
    "T0",
    "ServedPeriod",
    "TrainSettings",
    "changed_twin",
    "greedy_choice",
    "outcome_records",
    "period_jobs",
    "prediction_rows",
    "serve_period",
    "train_initial_model",
]

ENERGY_COEFFICIENTS = ("e_c0", "e_a0", "e_a1", "e_a2")
#: Measurement clock of period 0 (the default scenario's start).
T0 = datetime(2025, 3, 25, tzinfo=UTC)
#: Fast XGBoost settings for the loop (one thread: on a shared 2-core machine XGBoost's two
#: OpenMP threads were up to 20x slower than one when the other core was busy).
#: ``strategy="stacked"``: a squared-error point model per target (the multi-quantile default
#: predicts the median, which ignores a drifted minority of re-tuning rows).
FAST_XGB: tuple[tuple[str, Any], ...] = (
    ("strategy", "stacked"), ("n_jobs", 1), ("n_estimators", 300), ("learning_rate", 0.1),
    ("quantile_n_estimators", 40), ("action_n_estimators", 40),
)




class TrainSettings(Protocol):
    """What :func:`train_initial_model` reads of a configuration."""

    @property
    def train_jobs(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def xgb(self) -> tuple[tuple[str, Any], ...]: ...


# ----------------------------------------------------------------------------------------------
# World and data
# ----------------------------------------------------------------------------------------------

def changed_twin(base: Twin, dcs: Sequence[str], energy_factor: float) -> Twin:
    """A copy of ``base`` (same fleet, replicas and energy model) whose per-pass energy
    coefficients at ``dcs`` are multiplied by ``energy_factor`` (time coefficients unchanged)."""
    scen = base.scenario
    unknown = [d for d in dcs if d not in scen.dcs]
    if unknown:
        raise GreenSchedError(f"changed DCs {unknown!r} are not in the scenario (DCs: "
                              f"{scen.dcs!r})")
    tw = Twin(scen, fleet=base.fleet_, energy_model=base.energy_model, mode=base.mode,
              serving=base.serving)
    for d in dcs:
        j = scen.dcs.index(d)
        for key in ENERGY_COEFFICIENTS:
            tw.coef_[key][j, :] = tw.coef_[key][j, :] * float(energy_factor)
    return tw


def period_jobs(scenario: Scenario, n: int, hour: int, seed: int, *,
                type_weight: Mapping[str, float] | None = None,
                prefix: str = "") -> pd.DataFrame:
    """``n`` jobs of scenario hour ``hour`` following the demand; with ``type_weight`` the
    query types' shares are multiplied by those weights (a load shift)."""
    if not type_weight:
        jobs = jobs_from_demand(scenario, n, seed=seed, hours=[hour])
    else:
        pool = jobs_from_demand(scenario, 4 * n, seed=seed, hours=[hour])
        w = pool["query_type"].map(lambda k: float(type_weight.get(str(k), 1.0))).to_numpy()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5348]))
        keep = np.sort(rng.choice(len(pool), n, replace=False, p=w / w.sum()))
        jobs = pool.iloc[keep].reset_index(drop=True)
    jobs = jobs.copy()
    jobs["job_id"] = prefix + jobs["job_id"].astype(str)
    return jobs


def _utilization_table(train: pd.DataFrame, scenario: Scenario) -> xr.DataArray:
    """Mean training-data utilisation per (hour, dc): the load level the model was fitted on."""
    H = scenario.hours
    cols = [dc_column("utilization", d) for d in scenario.dcs]
    table = train.groupby("hour")[cols].mean().reindex(np.arange(H))
    table = table.fillna(train[cols].mean())
    return xr.DataArray(table.to_numpy(dtype=float), dims=("hour", "dc"),
                        coords={"hour": np.arange(H), "dc": np.asarray(scenario.dcs, object)})


def prediction_rows(jobs: pd.DataFrame, scenario: Scenario,
                    utilization: xr.DataArray) -> pd.DataFrame:
    """Dataset-format rows (no targets) of ``jobs``: what the model is given."""
    return rows_from_jobs(jobs, scenario, utilization)


def train_initial_model(scenario: Scenario, twin: Twin, cfg: TrainSettings, *,
                        serving_state: bool = False) -> tuple[XGBoostPredictor, pd.DataFrame]:
    """v1: XGBoost fitted on a twin dataset of ``cfg.train_jobs`` randomly placed jobs.

    With ``serving_state`` the rows' ``utilization__<dc>`` is the scenario's expected
    utilisation of the hour (:func:`greensched.state.expected_utilization`) - the state the
    service gives the model - instead of the training sample's own (tiny) load, so that the
    model is served the features it was fitted on.
    """
    jobs = jobs_from_demand(scenario, cfg.train_jobs, seed=cfg.seed + 101)
    data = build_dataset(scenario, jobs, seed=cfg.seed + 101, noise=True, twin=twin)
    if serving_state:
        from greensched.state import expected_utilization

        util = expected_utilization(scenario).transpose("hour", "dc").values
        hours = data["hour"].to_numpy(dtype=np.int64) % scenario.hours
        for j, d in enumerate(scenario.dcs):
            data[dc_column("utilization", d)] = util[hours, j]
    model = XGBoostPredictor(seed=cfg.seed, **dict(cfg.xgb)).fit(
        data, meta=data.attrs.get("greensched"))
    return model, data


def _predictions(pred: pd.DataFrame, dcs: Sequence[str]) -> xr.Dataset:
    """A predict_frame output as the assigner's (job, dc) Dataset."""
    return xr.Dataset(
        {t: (("job", "dc"), pred[[dc_column(t, d) for d in dcs]].to_numpy(dtype=float))
         for t in ("energy_kwh", "service_s")},
        coords={"job": pred["job_id"].to_numpy(dtype=object),
                "dc": np.asarray(dcs, dtype=object)})


def _arrays_dataset(job_ids: np.ndarray, dcs: Sequence[str], energy: np.ndarray,
                    service: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"energy_kwh": (("job", "dc"), energy),
                       "service_s": (("job", "dc"), service)},
                      coords={"job": np.asarray(job_ids, dtype=object),
                              "dc": np.asarray(dcs, dtype=object)})


def greedy_choice(scenario: Scenario, jobs: pd.DataFrame, preds: xr.Dataset,
            config: AssignConfig) -> tuple[np.ndarray, np.ndarray]:
    """DC position and propensity per job (jobs that fit nowhere take their best DC)."""
    a = GreedyAssigner(scenario, config).assign(jobs, preds)
    dc = pd.Index(scenario.dcs).get_indexer(a.frame["dc"].astype(str))
    prop = a.frame["propensity"].to_numpy(dtype=float)
    unplaced = dc < 0
    if unplaced.any():
        e = preds["energy_kwh"].values[unplaced]
        dc[unplaced] = e.argmin(axis=1)
        prop[unplaced] = 1.0
    return dc.astype(np.int64), prop


def outcome_records(jobs: pd.DataFrame, rows: pd.DataFrame, dc: np.ndarray,
                    dcs: Sequence[str], pred: pd.DataFrame, propensity: np.ndarray,
                    energy_kwh: np.ndarray, service_s: np.ndarray, version: str,
                    start: datetime, slot: int | None = None) -> pd.DataFrame:
    """Outcome-store records of one period: job fields, the DC that ran each job, the logged
    prediction and propensity, the measurement and the per-DC state the model saw
    (``features``); ``measured_at`` = ``start`` + arrival offset in the hour + service time.

    With ``slot`` the stored ``hour`` is that absolute hourly slot (and ``arrival_s`` moves
    with it), as a live log would have it; else the scenario hour of the jobs."""
    n = len(jobs)
    idx = np.arange(n)
    e_pred = pred[[dc_column("energy_kwh", d) for d in dcs]].to_numpy(dtype=float)[idx, dc]
    s_pred = pred[[dc_column("service_s", d) for d in dcs]].to_numpy(dtype=float)[idx, dc]
    state_cols = [dc_column(f, d) for d in dcs for f in DC_FIELDS]
    state = rows[state_cols].to_numpy(dtype=float)
    features = [dict(zip(state_cols, map(float, r), strict=True)) for r in state]
    arrival = jobs["arrival_s"].to_numpy(dtype=float)
    offset = arrival - 3600.0 * jobs["hour"].to_numpy(dtype=float)
    hour = jobs["hour"].to_numpy(dtype=np.int64)
    if slot is not None:
        hour = np.full(n, int(slot), dtype=np.int64)
        arrival = 3600.0 * slot + offset
    measured = [start + timedelta(seconds=float(o + s)) for o, s in
                zip(offset, service_s, strict=True)]
    return pd.DataFrame({
        "job_id": jobs["job_id"].astype(str).to_numpy(),
        "arrival_s": arrival,
        "hour": hour,
        "area": jobs["area"].astype(str).to_numpy(),
        "query_type": jobs["query_type"].astype(str).to_numpy(),
        "input_tokens": jobs["input_tokens"].to_numpy(dtype=np.int64),
        "output_tokens": jobs["output_tokens"].to_numpy(dtype=np.int64),
        "sla_s": jobs["sla_s"].to_numpy(dtype=float),
        "features": features,
        "dc": np.asarray(dcs, dtype=object)[dc],
        "model_version": version,
        "pred_energy_kwh": e_pred,
        "pred_service_s": s_pred,
        "propensity": np.clip(propensity, 1e-9, 1.0),
        "energy_kwh": energy_kwh,
        "service_s": service_s,
        "measured_at": measured,
    })


@dataclass
class ServedPeriod:
    """One period served by a model with exploration: what :func:`serve_period` returns."""

    jobs: pd.DataFrame
    rows: pd.DataFrame
    pred: pd.DataFrame
    dc: np.ndarray
    propensity: np.ndarray
    result: dict[str, Any]
    records: pd.DataFrame


def serve_period(scenario: Scenario, world: Twin, model: BasePredictor, version: str,
                 jobs: pd.DataFrame, utilization: xr.DataArray, *, epsilon: float, seed: int,
                 start: datetime, slot: int | None = None) -> ServedPeriod:
    """Predict, place with epsilon-greedy exploration, measure in ``world`` (noise seeded by
    ``seed``, every DC's values in ``result["*_all"]``) and build the outcome records."""
    dcs = list(scenario.dcs)
    rows = prediction_rows(jobs, scenario, utilization)
    pred = model.predict_frame(rows)
    explore = AssignConfig(explore="epsilon", epsilon=epsilon, seed=seed)
    dc, prop = greedy_choice(scenario, jobs, _predictions(pred, dcs), explore)
    res = world.evaluate(encode_jobs(scenario, jobs), dc, noise=NoiseSource(seed),
                         all_dcs=True)
    records = outcome_records(jobs, rows, dc, dcs, pred, prop, res["energy_kwh"],
                              res["service_s"], version, start, slot)
    return ServedPeriod(jobs, rows, pred, dc, prop, res, records)


def _mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - meas) / meas))


def _observed(pred: pd.DataFrame, dcs: Sequence[str], target: str, dc: np.ndarray) -> np.ndarray:
    arr = pred[[dc_column(target, d) for d in dcs]].to_numpy(dtype=float)
    return arr[np.arange(len(arr)), dc]
