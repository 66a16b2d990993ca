"""Drift experiment: does the feedback loop notice a changed world, re-tune, and win back the
carbon the stale model loses?

Reproduce with ``python -m greensched.feedback.experiment --out reports/`` (writes
``drift_experiment.md`` and ``drift_experiment.png``) or :func:`run_drift_experiment`.

Setup (all seeded)
==================
* **World**: the digital twin (:mod:`greensched.eval.twin`, noise on) of the embedded default
  scenario (:func:`greensched.defaults.default_scenario`: nine US regions, real hourly carbon
  and prices), default fleet.
* **Initial model v1**: an XGBoost predictor (:class:`~greensched.predictor.xgb.
  XGBoostPredictor`, one thread) trained on a twin dataset (:func:`~greensched.eval.simulate.
  build_dataset`, random placement, every DC's ground truth), registered and promoted.
* **Periods**: period ``p`` serves ``jobs_per_period`` jobs of scenario hour ``p mod 24``
  (:func:`~greensched.eval.traces.jobs_from_demand`).  The current model predicts every job at
  every DC (output lengths known, as in its training data; the DC state it is given is the
  scenario's prices and carbon with the training data's utilisation of that hour), the greedy
  assigner (:class:`~greensched.scheduler.assign.GreedyAssigner`, the scenario's objective
  weights) places the jobs with epsilon-greedy exploration, logging propensities; the twin
  measures them; the outcomes (with the per-DC state the model saw, as ``features``) go into an
  :class:`~greensched.feedback.store.OutcomeStore`; then one cycle of the loop
  (:func:`greensched.feedback.loop.run_once`) checks drift and re-tunes on drift.
* **Change** at period ``change_period``: three DCs get new GPUs that halve the energy per job -
  a documented multiplier ``energy_factor`` on the twin's per-pass energy coefficients
  (``a0, a1, a2, c0`` of :class:`~greensched.eval.twin.Twin`) of those DCs; their time
  coefficients, hence queues and latency, are unchanged - and a **load shift**: the share of
  ``conv-long`` queries triples (jobs drawn with a per-type weight).
* **Comparisons on the same jobs and noise** (common random numbers), greedy without
  exploration: *stale* (v1 for ever), *current* (the loop's promoted model), *oracle* (the
  twin's true noise-free energy and service time of each job at every DC in the current
  world).  Carbon per job is location-based, ``theta[h, d] * PUE[d] * E`` (grid-average carbon
  of the hour, the valuation the assigner scores; on-site renewables would absorb a sample this
  small entirely).
* **Error**: MAPE of a model's predictions at the DC that ran each job, against the twin's
  measurement (``|p - m| / m``), pooled over a period's outcomes.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.eval.simulate import build_dataset
from greensched.eval.traces import jobs_from_demand
from greensched.eval.twin import NoiseSource, Twin, encode_jobs
from greensched.feedback.loop import LoopCycle, LoopState, run_once
from greensched.feedback.registry import ModelRegistry
from greensched.feedback.store import OutcomeStore
from greensched.predictor.base import BasePredictor, load_predictor
from greensched.predictor.dataset import DC_FIELDS, dc_column, rows_from_jobs
from greensched.predictor.xgb import XGBoostPredictor
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, GreedyAssigner

__all__ = [
    "ENERGY_COEFFICIENTS",
    "ExperimentConfig",
    "ExperimentResult",
    "ServedPeriod",
    "changed_twin",
    "outcome_records",
    "period_jobs",
    "prediction_rows",
    "run_drift_experiment",
    "serve_period",
    "train_initial_model",
]

#: Energy coefficients of :class:`~greensched.eval.twin.Twin` scaled by the GPU change.
ENERGY_COEFFICIENTS = ("e_c0", "e_a0", "e_a1", "e_a2")
#: Measurement clock of period 0 (the default scenario's start).
T0 = datetime(2025, 3, 25, tzinfo=UTC)
#: Fast XGBoost settings for the loop (one thread: on a shared 2-core machine XGBoost's two
#: OpenMP threads were up to 20x slower than one when the other core was busy).
FAST_XGB: tuple[tuple[str, Any], ...] = (
    ("n_jobs", 1), ("n_estimators", 300), ("learning_rate", 0.1),
    ("quantile_n_estimators", 40), ("action_n_estimators", 40),
)


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the drift experiment (see the module docstring).

    ``window`` defaults to two periods of jobs (the drift check judges the latest two periods'
    outcomes of the promoted version), ``retune_window`` to one (the re-tune learns from the
    latest period's outcomes plus the replay data); a candidate must beat the current model's
    holdout score by ``min_improvement``.
    """

    periods: int = 36
    change_period: int = 14
    jobs_per_period: int = 400
    train_jobs: int = 4000
    changed_dcs: tuple[str, ...] = ("us-east1", "us-east4", "us-south1")
    energy_factor: float = 0.5
    load_shift: tuple[tuple[str, float], ...] = (("conv-long", 3.0),)
    epsilon: float = 0.15
    window: int | None = None
    retune_window: int | None = None
    min_improvement: float = 0.05
    xgb: tuple[tuple[str, Any], ...] = FAST_XGB
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.change_period < self.periods:
            raise GreenSchedError(f"need 1 <= change_period < periods, got "
                                  f"{self.change_period!r}, {self.periods!r}")
        if self.jobs_per_period < 50 or self.train_jobs < 100:
            raise GreenSchedError("need jobs_per_period >= 50 and train_jobs >= 100")
        if not 0 < self.energy_factor:
            raise GreenSchedError(f"energy_factor must be > 0, got {self.energy_factor!r}")
        if not 0 <= self.epsilon <= 1:
            raise GreenSchedError(f"epsilon must lie in [0, 1], got {self.epsilon!r}")

    @classmethod
    def quick(cls, seed: int = 0) -> ExperimentConfig:
        """A small run for tests (about 15-25 s on 2 cores)."""
        return cls(periods=12, change_period=4, jobs_per_period=300, train_jobs=1500,
                   seed=seed)

    @property
    def drift_window(self) -> int:
        return self.window or 2 * self.jobs_per_period

    @property
    def tune_window(self) -> int:
        return self.retune_window or self.jobs_per_period


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


def train_initial_model(scenario: Scenario, twin: Twin, cfg: ExperimentConfig
                        ) -> tuple[XGBoostPredictor, pd.DataFrame]:
    """v1: XGBoost fitted on a twin dataset of ``cfg.train_jobs`` randomly placed jobs."""
    jobs = jobs_from_demand(scenario, cfg.train_jobs, seed=cfg.seed + 101)
    data = build_dataset(scenario, jobs, seed=cfg.seed + 101, noise=True, twin=twin)
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


def _assign(scenario: Scenario, jobs: pd.DataFrame, preds: xr.Dataset,
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
    dc, prop = _assign(scenario, jobs, _predictions(pred, dcs), explore)
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


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------

@dataclass
class ExperimentResult:
    """Numbers of the drift experiment; ``periods`` has one row per period."""

    config: ExperimentConfig
    periods: pd.DataFrame
    summary: dict[str, Any]
    cycles: list[dict[str, Any]] = field(default_factory=list)
    robustness: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    plot_path: Path | None = None

    @property
    def is_ok(self) -> bool:
        """True when the loop re-tuned after the change and cut the error by >= 10 %."""
        red = self.summary.get("error_reduction")
        return red is not None and math.isfinite(red) and red >= 0.10


def _pooled(df: pd.DataFrame, num: str, den: str = "n_jobs") -> float:
    if len(df) == 0 or df[den].sum() == 0:
        return math.nan
    return float((df[num] * df[den]).sum() / df[den].sum())


def _summarise(cfg: ExperimentConfig, per: pd.DataFrame, elapsed: float,
               train_metrics: dict[str, Any]) -> dict[str, Any]:
    c = cfg.change_period
    pre, post = per[per["period"] < c], per[per["period"] >= c]
    drift_post = post[post["verdict"] == "drift"]
    promo_post = post[post["action"] == "promoted"]
    detected = int(drift_post["period"].iloc[0]) if len(drift_post) else None
    promoted = int(promo_post["period"].iloc[0]) if len(promo_post) else None
    s: dict[str, Any] = {
        "change_period": c, "periods": cfg.periods, "jobs_per_period": cfg.jobs_per_period,
        "detected_period": detected,
        "detection_delay_periods": None if detected is None else detected - c + 1,
        "detection_delay_jobs": None if detected is None else int(
            per[(per["period"] >= c) & (per["period"] <= detected)]["n_jobs"].sum()),
        "false_alarms_before_change": int((pre["verdict"] == "drift").sum()),
        "promoted_period": promoted,
        "promotions": per.loc[per["action"] == "promoted", "period"].astype(int).tolist(),
        "rejected_retunes": per.loc[per["action"] == "rejected", "period"].astype(int).tolist(),
        "v1_validation_energy_mape": train_metrics["energy_kwh"]["mape"],
        "v1_validation_service_mape": train_metrics["service_s"]["mape"],
        "pre_change_energy_mape": _pooled(pre, "mape_energy_live"),
        "pre_change_service_mape": _pooled(pre, "mape_service_live"),
        "elapsed_s": elapsed,
    }
    if promoted is None:
        s.update(error_before=math.nan, error_after=math.nan, error_reduction=math.nan)
        return s
    drifted = per[(per["period"] >= c) & (per["period"] <= promoted)]
    after = per[per["period"] > promoted]
    s["error_before"] = _pooled(drifted, "mape_energy_stale")
    s["error_stale_after"] = _pooled(after, "mape_energy_stale")
    s["error_after"] = _pooled(after, "mape_energy_live")
    s["error_reduction"] = 1.0 - s["error_after"] / s["error_stale_after"]
    s["error_reduction_vs_drifted"] = 1.0 - s["error_after"] / s["error_before"]
    s["service_error_stale_after"] = _pooled(after, "mape_service_stale")
    s["service_error_after"] = _pooled(after, "mape_service_live")
    for name in ("stale", "current", "oracle", "live"):
        s[f"carbon_{name}_g"] = 1000.0 * _pooled(after, f"carbon_{name}_kg")
        s[f"carbon_{name}_pre_g"] = 1000.0 * _pooled(pre, f"carbon_{name}_kg")
    gap = s["carbon_stale_g"] - s["carbon_oracle_g"]
    s["carbon_gap_stale_vs_oracle"] = gap / s["carbon_oracle_g"]
    s["carbon_recovered"] = (s["carbon_stale_g"] - s["carbon_current_g"]) / gap \
        if gap > 0 else math.nan
    s["carbon_saving_vs_stale"] = 1.0 - s["carbon_current_g"] / s["carbon_stale_g"]
    return s


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------

def run_drift_experiment(out_dir: str | Path | None, seed: int = 0, quick: bool = False, *,
                         config: ExperimentConfig | None = None,
                         scenario: Scenario | None = None,
                         work_dir: str | Path | None = None,
                         extra_seeds: Sequence[int] | None = None) -> ExperimentResult:
    """Run the drift experiment and (with ``out_dir``) write ``drift_experiment.md`` and
    ``drift_experiment.png`` there.

    Parameters
    ----------
    out_dir
        Folder of the report and plot (created); ``None`` writes nothing.
    seed
        Seed of every draw of the main run (the plot and the per-period table).
    quick
        The small :meth:`ExperimentConfig.quick` run (for tests).
    config
        Explicit settings (overrides ``quick``; its seed is replaced by ``seed``).
    scenario
        Default: :func:`greensched.defaults.default_scenario`.
    work_dir
        Where the outcome store and the registry live (default: a temporary folder, removed).
    extra_seeds
        Seeds of repeat runs summarised in the report's robustness table; default
        ``(seed + 1, seed + 2)`` for the full configuration, none for ``quick`` or a ``config``.
    """
    t_start = time.perf_counter()
    cfg = config or (ExperimentConfig.quick(seed) if quick else ExperimentConfig(seed=seed))
    cfg = replace(cfg, seed=seed)
    if scenario is None:
        from greensched.defaults import default_scenario

        scenario = default_scenario()
    result = _run(cfg, scenario, work_dir)
    if extra_seeds is None:
        extra_seeds = () if quick or config is not None else (seed + 1, seed + 2)
    for other in extra_seeds:
        rep = _run(replace(cfg, seed=int(other)), scenario, None)
        result.robustness.append({"seed": int(other), **rep.summary})
    result.summary["elapsed_total_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.plot_path = _plot(result, out / "drift_experiment.png")
        result.report_path = _write_report(result, out / "drift_experiment.md")
    return result


def _run(cfg: ExperimentConfig, scenario: Scenario,
         work_dir: str | Path | None) -> ExperimentResult:
    """One run of the experiment (no files written)."""
    t_start = time.perf_counter()
    dcs = list(scenario.dcs)
    base = Twin(scenario)
    after_world = changed_twin(base, cfg.changed_dcs, cfg.energy_factor)
    shift = dict(cfg.load_shift)
    tmp = Path(tempfile.mkdtemp(prefix="greensched-drift-")) if work_dir is None \
        else Path(work_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        v1, train = train_initial_model(scenario, base, cfg)
        util = _utilization_table(train, scenario)
        registry = ModelRegistry(tmp / "registry")
        v1.save(tmp / "v1")
        first = registry.register(tmp / "v1", kind=v1.kind, notes="initial model (twin data)",
                                  data_window={"n_train_rows": int(v1.metrics_["n_train"])},
                                  metrics={"validation": {
                                      t: {k: v1.metrics_["validation"][t][k]
                                          for k in ("mape", "rmse_log")}
                                      for t in ("energy_kwh", "service_s")}})
        registry.promote(first, reason="initial model")
        models: dict[str, BasePredictor] = {first: v1}
        state = LoopState()
        records: list[dict[str, Any]] = []
        cycles: list[LoopCycle] = []
        plain = AssignConfig()
        with OutcomeStore.open(tmp / "outcomes.sqlite") as store:
            for p in range(cfg.periods):
                changed = p >= cfg.change_period
                world = after_world if changed else base
                hour = p % scenario.hours
                jobs = period_jobs(scenario, cfg.jobs_per_period, hour,
                                   cfg.seed * 100_003 + p, prefix=f"p{p:03d}-",
                                   type_weight=shift if changed else None)
                ja = encode_jobs(scenario, jobs)
                version = registry.current()
                assert version is not None
                if version not in models:
                    models[version] = load_predictor(registry.path(version))
                seed_p = cfg.seed * 100_003 + p
                # the loop's policy: current model, epsilon-greedy, propensities logged
                served = serve_period(scenario, world, models[version], version, jobs, util,
                                      epsilon=cfg.epsilon, seed=seed_p,
                                      start=T0 + timedelta(hours=p), slot=p)
                rows, pred_live, dc_live = served.rows, served.pred, served.dc
                res_live = served.result
                pred_stale = pred_live if version == first else v1.predict_frame(rows)
                # counterfactual greedy policies on the same jobs and noise
                dc_cur, _ = _assign(scenario, jobs, _predictions(pred_live, dcs), plain)
                dc_stale, _ = (dc_cur, None) if version == first else _assign(
                    scenario, jobs, _predictions(pred_stale, dcs), plain)
                truth = world.evaluate(ja, dc_stale, noise=None, all_dcs=True)
                dc_orc, _ = _assign(scenario, jobs, _arrays_dataset(
                    jobs["job_id"].to_numpy(), dcs, truth["energy_kwh_all"],
                    truth["service_s_all"]), plain)
                theta = scenario.ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
                pue = scenario.ds["pue"].values
                e_all = res_live["energy_kwh_all"]  # common noise: any policy's measured energy
                n = len(jobs)

                def carbon(dc: np.ndarray, e_all: np.ndarray = e_all,
                           hours: np.ndarray = ja.hour, theta: np.ndarray = theta,
                           pue: np.ndarray = pue) -> float:
                    return float(np.mean(theta[hours, dc] * pue[dc]
                                         * e_all[np.arange(len(dc)), dc]))

                e_meas, s_meas = res_live["energy_kwh"], res_live["service_s"]
                store.ingest(served.records)
                cycle = run_once(store, registry, replay_data=train,
                                 window=cfg.drift_window, min_samples=100,
                                 retune_window=cfg.tune_window,
                                 min_improvement=cfg.min_improvement,
                                 seed=cfg.seed + p, state=state)
                cycles.append(cycle)
                e_ratio = None
                if cycle.drift is not None:
                    e_ratio = cycle.drift.target("energy_kwh").ratio
                records.append({
                    "period": p, "hour": hour, "changed": changed, "n_jobs": n,
                    "version": version, "version_after": cycle.version_after,
                    "mape_energy_live": _mape(_observed(pred_live, dcs, "energy_kwh", dc_live),
                                              e_meas),
                    "mape_energy_stale": _mape(_observed(pred_stale, dcs, "energy_kwh",
                                                         dc_live), e_meas),
                    "mape_service_live": _mape(_observed(pred_live, dcs, "service_s",
                                                         dc_live), s_meas),
                    "mape_service_stale": _mape(_observed(pred_stale, dcs, "service_s",
                                                          dc_live), s_meas),
                    "carbon_live_kg": carbon(dc_live),
                    "carbon_current_kg": carbon(dc_cur),
                    "carbon_stale_kg": carbon(dc_stale),
                    "carbon_oracle_kg": carbon(dc_orc),
                    "share_changed_dcs_current": float(np.isin(
                        dc_cur, [dcs.index(d) for d in cfg.changed_dcs]).mean()),
                    "share_changed_dcs_oracle": float(np.isin(
                        dc_orc, [dcs.index(d) for d in cfg.changed_dcs]).mean()),
                    "verdict": None if cycle.verdict is None else cycle.verdict.value,
                    "energy_error_ratio": e_ratio,
                    "baseline": cycle.baseline,
                    "reasons": "; ".join(cycle.reasons()),
                    "action": cycle.action.value,
                    "cycle_s": cycle.elapsed_s,
                })
        per = pd.DataFrame(records)
        elapsed = time.perf_counter() - t_start
        summary = _summarise(cfg, per, elapsed, v1.metrics_["validation"])
        return ExperimentResult(cfg, per, summary, [c.to_dict() for c in cycles])
    finally:
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Plot and report
# ----------------------------------------------------------------------------------------------

def _plot(result: ExperimentResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per, s, cfg = result.periods, result.summary, result.config
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7.2), sharex=True)
    x = per["period"].to_numpy()
    ax1.plot(x, 100 * per["mape_energy_live"], "o-", color="tab:blue", ms=3,
             label="loop's model (v1, then re-tuned)")
    ax1.plot(x, 100 * per["mape_energy_stale"], "s--", color="tab:red", ms=3,
             label="stale model v1")
    ax1.set_yscale("log")
    ax1.set_ylabel("energy MAPE on observed\noutcomes (%, log scale)")
    ax2.plot(x, 1000 * per["carbon_stale_kg"], "s--", color="tab:red", ms=3,
             label="greedy, stale v1")
    ax2.plot(x, 1000 * per["carbon_current_kg"], "o-", color="tab:blue", ms=3,
             label="greedy, loop's model")
    ax2.plot(x, 1000 * per["carbon_oracle_kg"], "^:", color="tab:green", ms=3,
             label="greedy, oracle (true energy)")
    ax2.set_ylabel("carbon per job (g CO2)")
    ax2.set_xlabel(f"period (1 h of the scenario day, {cfg.jobs_per_period} jobs)")
    detected = s.get("detected_period")
    for ax in (ax1, ax2):
        ax.axvline(cfg.change_period - 0.5, color="k", lw=1.2,
                   label=f"change: {', '.join(cfg.changed_dcs)} energy x{cfg.energy_factor:g}"
                   " + load shift")
        if detected is not None:
            ax.axvline(detected + 0.5, color="tab:orange", lw=1.0, ls="-.",
                       label="drift detected")
        for i, p in enumerate(s.get("promotions", [])):
            ax.axvline(p + 0.5, color="tab:purple", lw=1.0, ls="--",
                       label="re-tuned model promoted" if i == 0 else None)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7.5, loc="upper left")
    handles, labels = ax2.get_legend_handles_labels()
    ax2.legend(handles[:3], labels[:3], fontsize=7.5, loc="upper center",
               bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.suptitle("GreenSched feedback loop on the digital twin: drift, re-tune, recovery",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else f"{100 * float(x):.1f} %"


def _num(x: Any, fmt: str = ".4f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else format(float(x), fmt)


def _robustness_lines(result: ExperimentResult) -> list[str]:
    if not result.robustness:
        return []
    lines = [
        "## Robustness: the same experiment with other seeds",
        "",
        "New jobs, noise, exploration draws and training data; same world and change.",
        "",
        "| seed | detection delay (periods) | false DRIFT before | promoted at | energy MAPE "
        "stale -> re-tuned (after promotion) | reduction | carbon g/job stale / re-tuned / "
        "oracle | excess recovered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in [{"seed": result.config.seed, **result.summary}, *result.robustness]:
        lines.append(
            f"| {s['seed']} | {s['detection_delay_periods']} | "
            f"{s['false_alarms_before_change']} | {s['promotions']} | "
            f"{_pct(s.get('error_stale_after'))} -> {_pct(s.get('error_after'))} | "
            f"{_pct(s.get('error_reduction'))} | {_num(s.get('carbon_stale_g'))} / "
            f"{_num(s.get('carbon_current_g'))} / {_num(s.get('carbon_oracle_g'))} | "
            f"{_pct(s.get('carbon_recovered'))} |")
    lines.append("")
    return lines


def _write_report(result: ExperimentResult, path: Path) -> Path:
    s, cfg, per = result.summary, result.config, result.periods
    red = s.get("error_reduction", math.nan)
    claim = "met" if isinstance(red, float) and math.isfinite(red) and red >= 0.10 else \
        "**missed**"
    rec = s.get("carbon_recovered", math.nan)
    args = "--quick " if cfg == replace(ExperimentConfig.quick(cfg.seed)) else ""
    lines = [
        "# Drift experiment: detect, re-tune, recover",
        "",
        f"Reproduce: `python -m greensched.feedback.experiment {args}--seed {cfg.seed} "
        "--out reports/` (code: `feedback/experiment.py`; the loop: `feedback/loop.py`, "
        "`feedback/retune.py`). Runtime on the shared 2-core machine: "
        f"{s['elapsed_s']:.0f} s for the main run, "
        f"{s.get('elapsed_total_s', s['elapsed_s']):.0f} s with the "
        f"{len(result.robustness)} repeat(s) of the robustness table.",
        "",
        "## Setup",
        "",
        f"* World: digital twin of the embedded default scenario (9 US regions), noise on. "
        f"Initial model v1: XGBoost on {cfg.train_jobs} twin jobs (random placement, every "
        f"DC's ground truth); validation MAPE energy {_pct(s['v1_validation_energy_mape'])}, "
        f"service {_pct(s['v1_validation_service_mape'])}.",
        f"* {cfg.periods} periods of {cfg.jobs_per_period} jobs (period p = scenario hour "
        "p mod 24). Each period: the promoted model predicts every job at every DC, the greedy "
        f"assigner places the jobs with epsilon-greedy exploration (epsilon = {cfg.epsilon}), "
        "logging propensities; the twin measures; outcomes are stored; one loop cycle runs "
        f"(drift window: the latest {cfg.drift_window} outcomes of the promoted version; "
        f"re-tune on the latest {cfg.tune_window} outcomes, 20 % of them held out, plus the "
        f"{cfg.train_jobs} rows of v1's training data as replay; a candidate must beat the "
        f"current model's holdout score by {cfg.min_improvement:.0%}; a rejected re-tune is "
        "retried after a window of new outcomes).",
        f"* Change before period {cfg.change_period}: new GPUs at "
        f"{', '.join(cfg.changed_dcs)} multiply the energy of every job there by "
        f"{cfg.energy_factor:g} (the twin's per-pass energy coefficients; latency unchanged), "
        "and the share of "
        + ", ".join(f"`{k}` queries x{v:g}" for k, v in cfg.load_shift) + " (load shift).",
        "* Error: MAPE of a model's energy prediction at the DC that ran each job, pooled over "
        "the outcomes of the periods named. Carbon per job: grid-average (location-based) "
        "theta * PUE * measured energy, for greedy placement without exploration on the same "
        "jobs and noise with the stale v1, the loop's current model, and an oracle that knows "
        "each job's true energy and service time in the changed world.",
        "",
        "## Results",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| energy MAPE of v1 before the change (observed outcomes) | "
        f"{_pct(s['pre_change_energy_mape'])} |",
        f"| drift detected (first DRIFT verdict after the change) | period "
        f"{s['detected_period']} |",
        f"| detection delay | {s['detection_delay_periods']} period(s) = "
        f"{s['detection_delay_jobs']} jobs after the change |",
        f"| false DRIFT verdicts before the change | {s['false_alarms_before_change']} |",
        f"| re-tuned model promoted | period(s) {s['promotions']} |",
        f"| rejected re-tunes (candidate not better) | period(s) {s['rejected_retunes']} |",
        f"| energy MAPE, stale v1, drifted periods (change .. first promotion) | "
        f"{_pct(s.get('error_before'))} |",
        f"| energy MAPE, stale v1, on the outcomes after the promotion | "
        f"{_pct(s.get('error_stale_after'))} |",
        f"| energy MAPE, re-tuned model, same outcomes | {_pct(s.get('error_after'))} |",
        f"| **error reduction by re-tuning** (same outcomes) | **{_pct(red)}** "
        f"(claim >= 10 %: {claim}) |",
        f"| error reduction vs the stale model's error in the drifted periods "
        f"({_pct(s.get('error_before'))} -> {_pct(s.get('error_after'))}; different jobs and "
        f"DCs) | {_pct(s.get('error_reduction_vs_drifted'))} |",
        f"| service-time MAPE stale -> re-tuned (same outcomes) | "
        f"{_pct(s.get('service_error_stale_after'))} -> {_pct(s.get('service_error_after'))} |",
        f"| carbon per job after the promotion: stale greedy | "
        f"{_num(s.get('carbon_stale_g'))} g |",
        f"| carbon per job: re-tuned greedy | {_num(s.get('carbon_current_g'))} g |",
        f"| carbon per job: oracle greedy | {_num(s.get('carbon_oracle_g'))} g |",
        f"| carbon per job: the loop's exploring policy | {_num(s.get('carbon_live_g'))} g |",
        f"| stale model's carbon excess over the oracle | "
        f"{_pct(s.get('carbon_gap_stale_vs_oracle'))} |",
        f"| share of that excess recovered by re-tuning | {_pct(rec)} |",
        "",
        "![error and carbon per period](drift_experiment.png)",
        "",
        *_robustness_lines(result),
        "## Per period",
        "",
        "| period | hour | version | energy MAPE (loop) | energy MAPE (stale) | "
        "error ratio | verdict | DRIFT from | action | carbon g stale / current / oracle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in per.itertuples(index=False):
        ratio = "-" if r.energy_error_ratio is None or (
            isinstance(r.energy_error_ratio, float) and math.isnan(r.energy_error_ratio)) \
            else f"x{r.energy_error_ratio:.2f}"
        lines.append(
            f"| {r.period}{' *' if r.period == cfg.change_period else ''} | {r.hour} | "
            f"{r.version} | {_pct(r.mape_energy_live)} | {_pct(r.mape_energy_stale)} | "
            f"{ratio} | {r.verdict} | {r.reasons or '-'} | {r.action} | "
            f"{1000 * r.carbon_stale_kg:.4f} / "
            f"{1000 * r.carbon_current_kg:.4f} / {1000 * r.carbon_oracle_kg:.4f} |")
    lines += [
        "",
        "`*` first period of the changed world. Error ratio: the drift check's ratio of the "
        "window's energy error to the baseline (the version's burn-in outcomes once there are "
        "a window of them, else its recorded validation error); DRIFT from x1.5. "
        "\"DRIFT from\" lists the checks that fired: pooled error ratio, PSI of an input "
        "feature, or a DC whose mean measured/predicted ratio is off by >= 20 % far beyond "
        "noise (per-DC calibration check).",
        "",
        "## Reading and limits",
        "",
        "* The stale model over-predicts the changed DCs' energy by 1/"
        f"{cfg.energy_factor:g}; the observed error grows only where jobs actually ran there "
        "(its greedy choices plus exploration), so detection depends on exploration and on "
        "how often the greedy policy already used those DCs.",
        "* The re-tune sees one DC per job. Unobserved DCs get the current model's prediction "
        "shifted by the importance-weighted mean log residual at that DC (direct method plus "
        "an IPS correction, doubly-robust style; `feedback/retune.py`); the measured rows are "
        "resampled by clipped, self-normalised 1/propensity weights.",
        "* In the first changed period the greedy policy of v1 sends no job to the changed DCs; "
        "only exploration (epsilon/9 per DC) reaches them, so a re-tune right at detection "
        "has a handful of outcomes per changed DC and may not beat the current model on the "
        "holdout; the loop retries after a window of new outcomes.",
        "* The greedy objective is the scenario's weighted cost (energy price, carbon price, "
        "SLA excess), not carbon alone: the oracle's carbon is the carbon of the cost-optimal "
        "placement, which in a few hours is higher than the stale placement's.",
        "* Low load: the sample per period is far below the scenario's demand, so queues are "
        "short and effective batches are 1 everywhere; the latency part of the objective "
        "rarely binds. On-site renewables are ignored in the per-job carbon (they would cover "
        "a sample this small).",
        "* The hindsight-best-DC classifier of the re-tuned model is trained on the current "
        "model's own best-DC predictions (the log lacks the objective's prices); the greedy "
        "assigner does not use it.",
        "* The plot and the per-period table are one seed; the numbers move with the seed "
        "(noise, exploration draws, training data) - see the robustness table when present.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
