"""Running an experiment's seeds × variants: in-process, a local process pool, or Ray.

Results do not depend on the engine: every task is a pure function of (experiment, variant,
seed) and the tables are sorted by (variant, seed) before they are written.  Outputs in ``DIR``:

``results.parquet``
    one row per seed × variant × metric: ``experiment, variant, policy, predictor, ablation,
    seed, metric, value``;
``hourly.parquet``
    per seed × variant × hour × DC: ``carbon_kg, cost_usd, it_kwh``;
``experiment.json``
    the configuration, engine, worker count and wall time.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from greensched.eval.experiment.config import ExperimentConfig, ExperimentError, PredictorKind
from greensched.eval.experiment.run import (
    METRICS,
    run_task,
    train_xgboost,
    transformer_predictions,
)

__all__ = ["results_frames", "run_experiment"]

Progress = Callable[[int, int, str], None]


Given = dict[tuple[str, int], Any]  # (predictor kind, seed) -> the seed's predictions


def _tasks(cfg: ExperimentConfig) -> list[tuple[str, int]]:
    return [(v.label, s) for s in range(cfg.seeds) for v in cfg.variants]


def _given(cfg: ExperimentConfig, given: Given, label: str, seed: int) -> Any:
    kind = next(v.predictor for v in cfg.variants if v.label == label)
    return given.get((kind.value, seed))


def results_frames(cfg: ExperimentConfig, outputs: list[dict[str, Any]]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long results table and the hourly table, sorted by (variant, seed)."""
    by_label = {v.label: v for v in cfg.variants}
    rows = []
    for out in outputs:
        v = by_label[out["variant"]]
        for m in METRICS:
            rows.append({
                "experiment": cfg.name, "variant": v.label, "policy": v.policy,
                "predictor": v.predictor.value, "ablation": v.ablation, "seed": out["seed"],
                "metric": m, "value": float(out["metrics"][m]),
            })
    order = {v.label: i for i, v in enumerate(cfg.variants)}
    res = pd.DataFrame(rows)
    res["_o"] = res["variant"].map(order)
    res = res.sort_values(["_o", "seed", "metric"], kind="stable").drop(columns="_o")
    hourly = pd.concat([o["hourly"] for o in outputs], ignore_index=True)
    hourly["_o"] = hourly["variant"].map(order)
    hourly = hourly.sort_values(["_o", "seed", "hour", "dc"], kind="stable").drop(columns="_o")
    return res.reset_index(drop=True), hourly.reset_index(drop=True)


def _pool(cfg: ExperimentConfig, tasks: list[tuple[str, int]], model: bytes | None,
          workers: int, progress: Progress | None, given: Given) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    if workers <= 1:
        for i, (label, seed) in enumerate(tasks):
            outputs.append(run_task(cfg, label, seed, model, _given(cfg, given, label, seed)))
            if progress:
                progress(i + 1, len(tasks), f"{label} seed {seed}")
        return outputs
    # spawn, not fork: the parent has run OpenMP/HiGHS threads (XGBoost training, the plan),
    # and a forked child deadlocks on their locks (measured: workers hung at 0 % CPU)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        futs = {ex.submit(run_task, cfg, label, seed, model, _given(cfg, given, label, seed)):
                (label, seed) for label, seed in tasks}
        for i, fut in enumerate(as_completed(futs)):
            outputs.append(fut.result())
            if progress:
                label, seed = futs[fut]
                progress(i + 1, len(tasks), f"{label} seed {seed}")
    return outputs


def _ray(cfg: ExperimentConfig, tasks: list[tuple[str, int]], model: bytes | None,
         address: str, workers: int, progress: Progress | None, given: Given
         ) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ExperimentError("--ray needs the ray extra: pip install 'greensched[ray]'") from exc
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address == "local":
            kwargs["num_cpus"] = max(1, workers)
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_task)
        cfg_ref = ray.put(cfg)
        model_ref = ray.put(model)
        refs = {remote.remote(cfg_ref, label, seed, model_ref, _given(cfg, given, label, seed)):
                (label, seed) for label, seed in tasks}
        outputs: list[dict[str, Any]] = []
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                outputs.append(ray.get(ref))
                if progress:
                    label, seed = refs[ref]
                    progress(len(outputs), len(tasks), f"{label} seed {seed}")
        return outputs
    finally:
        if started:
            ray.shutdown()


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every (seed, variant) task and write the tables (module docstring) to ``out_dir``."""
    if workers < 1:
        raise ExperimentError(f"workers {workers!r} must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = None
    if any(v.predictor is PredictorKind.XGBOOST for v in cfg.variants):
        if progress:
            progress(0, 1, "training XGBoost on a twin dataset (seed 10000)")
        model = train_xgboost(cfg)
    given: Given = {}
    for kind in (PredictorKind.LORA, PredictorKind.LORA_FROZEN):
        if any(v.predictor is kind for v in cfg.variants):
            if progress:
                progress(0, 1, f"training the {kind.value} transformer on a twin dataset "
                               "(seed 10000)")
            for s, pred in transformer_predictions(cfg, kind, threads=max(1, workers),
                                                   progress=progress).items():
                given[(kind.value, s)] = pred
    tasks = _tasks(cfg)
    if ray_address:
        outputs = _ray(cfg, tasks, model, ray_address, workers, progress, given)
        engine = f"ray:{ray_address}"
    else:
        outputs = _pool(cfg, tasks, model, workers, progress, given)
        engine = "process-pool" if workers > 1 else "in-process"
    res, hourly = results_frames(cfg, outputs)
    res.to_parquet(out / "results.parquet", index=False)
    hourly.to_parquet(out / "hourly.parquet", index=False)
    wall = time.perf_counter() - t0
    meta = {
        "experiment": cfg.name, "source": cfg.source, "scenario": cfg.scenario,
        "seeds": cfg.seeds, "variants": [asdict(v) | {"predictor": v.predictor.value}
                                          for v in cfg.variants],
        "jobs": asdict(cfg.jobs), "noise": cfg.noise, "forecast_error": cfg.forecast_error,
        "capacity_scale": cfg.capacity_scale, "greensched": cfg.greensched,
        "reference": cfg.reference, "engine": engine, "workers": workers, "wall_s": wall,
        "notes": cfg.notes, "command": command, "alternatives": cfg.alternatives,
    }
    (out / "experiment.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
    return meta
