"""One experiment task: a (seed, variant) run through the policy interface and the twin.

Every variant of a seed sees the same jobs, job classes, forecast error and twin noise (common
random numbers), so differences between variants are paired.  Per process, the scenario, its
twin, its plan and each seed's jobs are cached.
"""

from __future__ import annotations

import pickle
import time
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.experiment.config import ExperimentConfig, PredictorKind, Variant
from greensched.eval.twin import JobArrays, NoiseSource, Twin, encode_jobs
from greensched.eval.twin_deferred import execute_schedule
from greensched.scenario import Scenario

__all__ = ["METRICS", "TIMING_METRICS", "load_experiment_scenario", "run_task",
           "train_xgboost", "transformer_predictions"]

#: Metrics of one run (one row per seed × variant × metric in ``results.parquet``).
METRICS = (
    "carbon_kg", "energy_kwh", "it_kwh", "cost_usd", "energy_usd", "carbon_usd", "water_l",
    "sla_violation_rate", "interactive_sla_violation_rate", "batch_deadline_miss_rate",
    "dropped_rate", "deferred_share", "response_s_p95", "ms_per_decision", "max_step_s",
    "ms_per_decision_cpu", "max_step_cpu_s",
    "pred_rmse_energy_kwh", "pred_mape_energy", "pred_rmse_service_s", "pred_mape_service",
)
#: Timings (wall clock, and CPU time of the worker process, which does not grow when other
#: processes share the cores): they differ between runs of the same seed (not compared for
#: identity between the process pool and Ray).
TIMING_METRICS = ("ms_per_decision", "max_step_s", "ms_per_decision_cpu", "max_step_cpu_s")


@lru_cache(maxsize=4)
def load_experiment_scenario(spec: str) -> Scenario:
    """``default``, ``synth:DCS,AREAS,TYPES,HOURS,SEED``, ``build:CONFIG.toml@YYYY-MM-DD`` (one
    day built by :func:`greensched.builder.build.build_scenario`) or a scenario directory."""
    if spec.startswith("build:"):
        from greensched.builder.build import build_scenario

        path, _, start = spec[6:].partition("@")
        return build_scenario(path, start=start or None, days=1)
    if spec == "default":
        from greensched.defaults import default_scenario

        return default_scenario()
    if spec.startswith("synth:"):
        from greensched.synth import synthesize

        d, a, k, h, s = (int(v) for v in spec[6:].split(","))
        return synthesize(dcs=d, areas=a, types=k, hours=h, seed=s, water_budget=False)
    from greensched.scenario import load_scenario

    return load_scenario(spec)


@lru_cache(maxsize=4)
def _twin(spec: str) -> Twin:
    return Twin(load_experiment_scenario(spec))


@lru_cache(maxsize=4)
def _plan(spec: str) -> Any:
    from greensched.scheduler.planner import plan

    return plan(load_experiment_scenario(spec))


def _draw_jobs(scen: Scenario, cfg: ExperimentConfig, seed: int, n_jobs: int) -> pd.DataFrame:
    from greensched.eval.traces import jobs_from_demand

    jobs = jobs_from_demand(scen, n_jobs, seed=seed, traces=cfg.jobs.traces)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4A4F42]))
    batch = rng.random(len(jobs)) < cfg.jobs.batch_share
    lo, hi = cfg.jobs.batch_deadline_h
    dl = jobs["arrival_s"].to_numpy() + rng.uniform(lo, hi, len(jobs)) * 3600.0
    jobs["job_class"] = np.where(batch, "batch", "interactive")
    jobs["deadline_s"] = np.where(batch, dl, jobs["arrival_s"] + jobs["sla_s"])
    jobs["weight"] = demand_weight(scen, cfg, n_jobs)
    return jobs


def demand_weight(scen: Scenario, cfg: ExperimentConfig, n_jobs: int) -> float:
    """Real queries each sampled job stands for (1 without ``represent_demand``)."""
    if not cfg.jobs.represent_demand:
        return 1.0
    return float(scen.ds["queries"].sum()) / max(1, n_jobs)


_JOBS: dict[tuple[str, int, int], tuple[pd.DataFrame, JobArrays]] = {}


def _jobs(cfg: ExperimentConfig, seed: int) -> tuple[pd.DataFrame, JobArrays]:
    key = (cfg.source + cfg.scenario + repr(cfg.jobs), seed, cfg.jobs.n_jobs)
    if key not in _JOBS:
        if len(_JOBS) > 8:
            _JOBS.clear()
        scen = load_experiment_scenario(cfg.scenario)
        frame = _draw_jobs(scen, cfg, seed, cfg.jobs.n_jobs)
        _JOBS[key] = (frame, encode_jobs(scen, frame))
    return _JOBS[key]


def _placement_jobs(frame: pd.DataFrame) -> pd.DataFrame:
    """The jobs table a learned predictor sees when a job is placed: no experiment columns and
    no output length (not known on arrival)."""
    return frame.drop(columns=["job_class", "deadline_s", "weight", "output_tokens"])


def _training_data(cfg: ExperimentConfig, seed: int) -> pd.DataFrame:
    from greensched.eval.simulate import build_dataset

    scen = load_experiment_scenario(cfg.scenario)
    frame = _draw_jobs(scen, cfg, seed, cfg.jobs.train_jobs)
    return build_dataset(scen, frame.drop(columns=["job_class", "deadline_s", "weight"]),
                         seed=seed, noise=cfg.noise, twin=_twin(cfg.scenario))


def _operating_utilization(train: pd.DataFrame, scen: Scenario) -> Any:
    """The utilisation per (hour, dc) a learned predictor is told at placement: the mean
    ``utilization__<dc>`` of its training day (the twin's own operating point).

    Not the scenario's expected utilisation (:func:`greensched.state.dc_hour_state`'s default):
    an experiment's jobs carry demand weights, so the twin's queues run far below it (about
    0.001 against 0.3-0.4 in ``predictors.toml``), and a predictor told 0.4 after training on
    0.001 is asked thousands of standard deviations outside its data.  Hours without training
    jobs take the day's mean.
    """
    import xarray as xr

    cols = [f"utilization__{d}" for d in scen.dcs]
    by_hour = train.groupby("hour")[cols].mean().reindex(range(scen.hours))
    values = by_hour.fillna(train[cols].mean()).to_numpy(dtype=float)
    return xr.DataArray(values, dims=("hour", "dc"),
                        coords={"hour": np.arange(scen.hours),
                                "dc": np.asarray(scen.dcs, dtype=object)})


def train_xgboost(cfg: ExperimentConfig, seed: int = 10_000) -> bytes:
    """An XGBoost predictor trained on a twin dataset of a seed no run uses, with the
    utilisation it is told at placement (:func:`_operating_utilization`); pickled."""
    from greensched.predictor.factory import make_predictor

    model = make_predictor("xgboost", seed=0, n_jobs=1, n_estimators=200)
    train = _training_data(cfg, seed)
    model.fit(train)
    util = _operating_utilization(train, load_experiment_scenario(cfg.scenario))
    return pickle.dumps({"model": model, "utilization": util})


def transformer_predictions(cfg: ExperimentConfig, kind: PredictorKind, *, seed: int = 10_000,
                            threads: int = 2, progress: Any = None,
                            options: dict[str, Any] | None = None
                            ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Train GreenSched's transformer (``kind`` lora or lora-frozen) once on the twin dataset
    of seed ``seed`` (the one XGBoost trains on) and predict every run seed's jobs with it.

    Done in the parent process: one training, and inference batched per seed, instead of a
    model copy per worker.  Like the other predictors it is not told a job's output length,
    and it is told the utilisation of its training day (:func:`_operating_utilization`).
    ``options``: further :class:`~greensched.predictor.lora.LoraConfig` fields (a local
    ``base_model``, epochs).  Returns ``{seed: (energy_kwh (n, D), service_s (n, D))}``.
    """
    from greensched.predictor.factory import make_predictor

    if kind not in (PredictorKind.LORA, PredictorKind.LORA_FROZEN):
        raise ValueError(f"{kind!r} is not a transformer kind")
    scen = load_experiment_scenario(cfg.scenario)
    model = make_predictor("lora", seed=0, **{"num_threads": threads, **(options or {}),
                                             "freeze_base": kind is PredictorKind.LORA_FROZEN})
    train = _training_data(cfg, seed)
    model.fit(train)
    util = _operating_utilization(train, scen)
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for s in range(cfg.seeds):
        frame, _ = _jobs(cfg, s)
        pred = model.predict_jobs(_placement_jobs(frame), scen, util)
        out[s] = (np.asarray(pred["energy_kwh"].values, dtype=float),
                  np.asarray(pred["service_s"].values, dtype=float))
        if progress:
            progress(s + 1, cfg.seeds, f"{kind.value} predictions, seed {s}")
    return out


def _predictions(kind: PredictorKind, cfg: ExperimentConfig, seed: int, frame: pd.DataFrame,
                 ja: JobArrays, model: bytes | None,
                 given: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    tw = _twin(cfg.scenario)
    scen = tw.scenario
    if kind in (PredictorKind.LORA, PredictorKind.LORA_FROZEN):
        if given is None:
            raise ValueError(f"a {kind.value} variant needs the predictions made in the parent "
                             "(transformer_predictions)")
        return given
    if kind is PredictorKind.EXPECTED:
        return tw.expected(ja)
    if kind is PredictorKind.ORACLE:
        rtt = np.asarray(scen.ds["rtt_s"].transpose("area", "dc").values, dtype=float)
        res = tw.evaluate(ja, rtt.argmin(axis=1)[ja.area],
                          noise=NoiseSource(seed) if cfg.noise else None, all_dcs=True)
        return np.asarray(res["energy_kwh_all"]), np.asarray(res["service_s_all"])
    if model is None:
        raise ValueError("an xgboost variant needs the trained model")
    trained = pickle.loads(model)  # noqa: S301 - bytes made by train_xgboost in this run
    # the same information as GreenSched's own predictor: a job's output length is not known
    # when it is placed (the model was trained with 20 % of the outputs hidden for this case)
    pred = trained["model"].predict_jobs(_placement_jobs(frame), scen, trained["utilization"])
    return (np.asarray(pred["energy_kwh"].values, dtype=float),
            np.asarray(pred["service_s"].values, dtype=float))


def run_task(cfg: ExperimentConfig, label: str, seed: int,
             model: bytes | None = None,
             predictions: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Run variant ``label`` on seed ``seed``; returns metrics and hourly/regional tables.
    ``model``: the pickled XGBoost model (``xgboost`` variants); ``predictions``: the seed's
    transformer predictions (``lora`` / ``lora-frozen`` variants)."""
    from greensched.scheduler.assign import CapacityLedger
    from greensched.scheduler.policies import PolicyContext, make_policy, run_schedule

    variant: Variant = next(v for v in cfg.variants if v.label == label)
    scen = load_experiment_scenario(cfg.scenario)
    tw = _twin(cfg.scenario)
    frame, ja = _jobs(cfg, seed)
    energy, service = _predictions(variant.predictor, cfg, seed, frame, ja, model, predictions)
    w = demand_weight(scen, cfg, cfg.jobs.n_jobs)
    ledger = CapacityLedger(scen.ds["capacity"] * (cfg.capacity_scale / w), hours=scen.hours)
    ctx = PolicyContext.from_scenario(scen, seed=seed, forecast_error=cfg.forecast_error,
                                      plan=_plan(cfg.scenario), ledger=ledger)
    job_class = (frame["job_class"].to_numpy() == "batch").astype(np.int64)
    deadline = frame["deadline_s"].to_numpy(dtype=float)
    t0 = time.perf_counter()
    sched = run_schedule(
        make_policy(variant.policy, **variant.params), ctx, hour=ja.hour, area=ja.area,
        qtype=ja.qtype, tokens=ja.input_tokens + ja.output_tokens, arrival_s=ja.arrival_s,
        sla_s=ja.sla_s, deadline_s=deadline, job_class=job_class, energy_kwh=energy,
        service_s=service,
    )
    wall = time.perf_counter() - t0
    ex = execute_schedule(tw, ja, sched.dc, sched.start_hour, sched.start_s,
                          deadline_s=deadline, job_class=job_class,
                          noise=NoiseSource(seed) if cfg.noise else None)
    acc = ex.result["account"]
    tot = acc.totals()
    rows = np.arange(ja.n)
    pe, ps = energy[rows, ex.dc], service[rows, ex.dc]
    batch = job_class == 1
    metrics = {
        "carbon_kg": tot["carbon_kg"],
        "energy_kwh": tot["facility_kwh"],
        "it_kwh": tot["it_kwh"],
        "cost_usd": tot["energy_usd"] + tot["carbon_usd"],
        "energy_usd": tot["energy_usd"],
        "carbon_usd": tot["carbon_usd"],
        "water_l": tot["water_l"],
        "sla_violation_rate": float(1.0 - ex.sla_met.mean()),
        "interactive_sla_violation_rate": float(1.0 - ex.sla_met[~batch].mean())
        if (~batch).any() else 0.0,
        "batch_deadline_miss_rate": float(1.0 - ex.sla_met[batch].mean()) if batch.any() else 0.0,
        "dropped_rate": float(ex.dropped.mean()),
        "deferred_share": float((ex.start_hour > ja.hour).mean()),
        "response_s_p95": float(np.percentile(ex.response_s, 95)),
        "ms_per_decision": sched.ms_per_job,
        "max_step_s": sched.max_step_s,
        "ms_per_decision_cpu": sched.ms_per_job_cpu,
        "max_step_cpu_s": sched.max_step_cpu_s,
        "pred_rmse_energy_kwh": float(np.sqrt(np.mean((pe - ex.energy_kwh) ** 2))),
        "pred_mape_energy": float(np.mean(np.abs(pe - ex.energy_kwh) / ex.energy_kwh)),
        "pred_rmse_service_s": float(np.sqrt(np.mean((ps - ex.service_s) ** 2))),
        "pred_mape_service": float(np.mean(np.abs(ps - ex.service_s) / ex.service_s)),
    }
    H, D = acc.carbon_kg.shape
    hourly = pd.DataFrame({
        "variant": label, "seed": seed,
        "hour": np.repeat(np.arange(H), D), "dc": np.tile(np.asarray(scen.dcs, dtype=object), H),
        "carbon_kg": acc.carbon_kg.ravel(), "cost_usd": (acc.energy_usd + acc.carbon_usd).ravel(),
        "it_kwh": acc.it_kwh.ravel(),
    })
    return {"variant": label, "seed": seed, "metrics": metrics, "hourly": hourly,
            "wall_s": wall}
