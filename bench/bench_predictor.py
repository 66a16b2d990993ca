"""Predictor benchmark: training and batched inference speed of MiniLM-LoRA and XGBoost.

Run on demand:  python bench/bench_predictor.py [--lora-jobs 512] [--xgb-jobs 20000]
                   [--train-steps 20] [--skip-lora] [--compare-strategies] [--json OUT]
                   [--fit-compare 20000 [--fit-threads 1]]

Data: the synthetic stand-in dataset (greensched.predictor.synthetic) of a 9-DC scenario.
Each figure is reported with a ratio to a reference measured in the same run:

* LoRA training samples/s  vs  a bare forward+backward pass of the base model (no LoRA, no
  heads) on the same prompts and batch size;
* LoRA inference jobs/s (prompt rendering + tokenising + features + forward with the LoRA
  weights merged + heads)  vs  the bare forward pass of the base model on the same tokens;
* XGBoost job×DC predictions/s (validation + features + all boosters)  vs  one bare
  ``inplace_predict`` of the point-energy booster on the prepared matrix.

* ``--fit-compare N``: the XGBoost fit of N training jobs with one multi-quantile booster per
  target (the default layout) against the five-booster layout with its shipped settings
  (:data:`~greensched.predictor.xgb.FIVE_BOOSTER_DEFAULTS`), same rows, same threads, same
  run (new, five, new, five: the median of two each); test MAPE and p10–p90 coverage (raw →
  calibrated) on 2000 other jobs.  Target: ≤ 0.4× the five-booster time, accuracy no worse.

Targets: LoRA ≥ 100 jobs/s batched, XGBoost ≥ 200k job×DC predictions/s batched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from greensched.predictor.synthetic import synthetic_dataset
from greensched.synth import synthesize


def _median_time(fn: Any, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_lora(scen: Any, n_jobs: int, train_steps: int, base_model: str | None,
               repeat: int) -> dict[str, float]:
    import torch
    from transformers import AutoModel

    from greensched.predictor.lora import LoraPredictor, resolve_base_model
    from greensched.predictor.prompts import render_prompts

    batch = 32
    train, meta = synthetic_dataset(scen, max(batch * train_steps + 64, 256), seed=1, noise=0.02)
    test, _ = synthetic_dataset(scen, n_jobs, seed=2, noise=0.02)
    model = LoraPredictor(base_model=base_model, epochs=1, max_steps=train_steps,
                          batch_size=batch, progress=False, val_fraction=0.05)
    model.fit(train, meta=meta)
    train_sps = float(model.metrics_["history"]["train_samples_per_s"])

    base = AutoModel.from_pretrained(resolve_base_model(base_model), local_files_only=True)
    tok = model.tokenizer_
    enc = tok(render_prompts(train.iloc[: batch * 4], model.dcs_), padding=True,
              return_tensors="pt")
    opt_params = [p for p in base.parameters()]

    def bare_train() -> None:
        for s in range(0, batch * 4, batch):
            out = base(input_ids=enc["input_ids"][s:s + batch],
                       attention_mask=enc["attention_mask"][s:s + batch]).last_hidden_state
            out.mean().backward()
            for p in opt_params:
                p.grad = None

    bare_train_sps = batch * 4 / _median_time(bare_train, max(1, repeat // 2))

    test_enc = tok(render_prompts(test, model.dcs_), padding=True, return_tensors="pt")
    bs = model.config.predict_batch_size

    def bare_forward() -> None:
        with torch.inference_mode():
            for s in range(0, n_jobs, bs):
                base(input_ids=test_enc["input_ids"][s:s + bs],
                     attention_mask=test_enc["attention_mask"][s:s + bs])

    bare_jps = n_jobs / _median_time(bare_forward, repeat)
    jps = n_jobs / _median_time(lambda: model.predict_frame(test), repeat)
    lengths = test_enc["attention_mask"].sum(1).numpy()
    from greensched.predictor.factory import measure_latency_ms

    return {
        "single_job_latency_ms": measure_latency_ms(model, 1, repeat),
        "train_samples_per_s": train_sps,
        "bare_train_samples_per_s": bare_train_sps,
        "train_ratio": train_sps / bare_train_sps,
        "infer_jobs_per_s": jps,
        "bare_forward_jobs_per_s": bare_jps,
        "infer_ratio": jps / bare_jps,
        "prompt_tokens_median": float(np.median(lengths)),
        "prompt_tokens_max": float(lengths.max()),
        "torch_threads": float(torch.get_num_threads()),
    }


def bench_xgb(scen: Any, n_jobs: int, n_train: int, repeat: int,
              strategy: str) -> dict[str, float]:
    from greensched.predictor.dataset import validate_dataset
    from greensched.predictor.xgb import XGBoostPredictor

    train, meta = synthetic_dataset(scen, n_train, seed=1, noise=0.02)
    test, _ = synthetic_dataset(scen, n_jobs, seed=2, noise=0.02)
    model = XGBoostPredictor(strategy=strategy)
    t0 = time.perf_counter()
    model.fit(train, meta=meta)
    fit_s = time.perf_counter() - t0
    D = len(model.dcs_)
    per_s = n_jobs * D / _median_time(lambda: model.predict_frame(test), repeat)
    data = validate_dataset(test, model.dcs_, targets=False)
    arrays_s = n_jobs * D / _median_time(lambda: model._predict_arrays(data), repeat)
    job, dc = model._blocks(data)
    if strategy == "stacked":
        x = model._stacked(job, dc)
        booster = model.boosters_["energy_kwh"]
    else:
        x = np.concatenate([job, dc[:, 0]], axis=1) if strategy == "per_dc" else \
            model._wide(job, dc)
        booster = model.boosters_[f"energy_kwh_q@{model.dcs_[0]}"]
    rows = len(x) if strategy == "stacked" else len(x) * D
    bare = _median_time(lambda: booster.inplace_predict(x), repeat)
    if strategy != "stacked":
        bare *= D  # one booster per DC
    bare_per_s = rows / bare
    from greensched.predictor.factory import measure_latency_ms

    return {
        "single_job_latency_ms": measure_latency_ms(model, 1, repeat),
        "strategy": strategy,  # type: ignore[dict-item]
        "fit_seconds": fit_s,
        "train_rows": float(n_train),
        "predictions_per_s": per_s,
        "predict_arrays_per_s": arrays_s,
        "bare_booster_predictions_per_s": bare_per_s,
        "ratio": per_s / bare_per_s,
    }


def compare_xgb_strategies(scen: Any, n_train: int, n_test: int) -> dict[str, Any]:
    """Accuracy (test MAPE), fit time and prediction speed of the three XGBoost layouts."""
    from greensched.predictor.metrics import evaluate_predictions
    from greensched.predictor.xgb import STRATEGIES, XGBoostPredictor

    train, meta = synthetic_dataset(scen, n_train, seed=1, noise=0.02)
    test, _ = synthetic_dataset(scen, n_test, seed=2, noise=0.02)
    out: dict[str, Any] = {}
    for strategy in STRATEGIES:
        model = XGBoostPredictor(strategy=strategy)
        t0 = time.perf_counter()
        model.fit(train, meta=meta)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = model.predict_frame(test)
        pred_s = time.perf_counter() - t0
        rep = evaluate_predictions(pred, test, model.dcs_)
        out[strategy] = {
            "fit_seconds": fit_s,
            "predictions_per_s": n_test * len(model.dcs_) / pred_s,
            "energy_mape": rep["energy_kwh"]["all"]["mape"],
            "service_mape": rep["service_s"]["all"]["mape"],
            "energy_coverage": rep["energy_kwh"]["all"]["coverage_p10_p90"],
            "action_accuracy": rep["action_accuracy"],
        }
        o = out[strategy]
        print(f"  {strategy:13s} fit {fit_s:7.1f} s  predict {o['predictions_per_s']:10,.0f}/s  "
              f"energy MAPE {100 * o['energy_mape']:.2f} %  service MAPE "
              f"{100 * o['service_mape']:.2f} %  p10-p90 cover {o['energy_coverage']:.2f}  "
              f"action acc {100 * o['action_accuracy']:.1f} %", flush=True)
    return out


def compare_fits(scen: Any, n_train: int, threads: int, rounds: int = 2) -> dict[str, Any]:
    """Fit time and accuracy: multi-quantile layout vs the five-booster one (module docstring)."""
    from greensched.predictor.metrics import evaluate_predictions
    from greensched.predictor.xgb import FIVE_BOOSTER_DEFAULTS, XGBoostPredictor

    train, meta = synthetic_dataset(scen, n_train, seed=1, noise=0.02)
    test, _ = synthetic_dataset(scen, 2000, seed=2, noise=0.02)
    layouts = {"multi-quantile (3 boosters)": {}, "five boosters": FIVE_BOOSTER_DEFAULTS}
    times: dict[str, list[float]] = {k: [] for k in layouts}
    out: dict[str, Any] = {}
    for _ in range(rounds):
        for name, opts in layouts.items():
            model = XGBoostPredictor(n_jobs=threads, **opts)
            t0 = time.perf_counter()
            model.fit(train, meta=meta)
            times[name].append(time.perf_counter() - t0)
            rep = evaluate_predictions(model.predict_frame(test), test, model.dcs_)
            raw = evaluate_predictions(model.predict_frame(test, calibrated=False), test,
                                       model.dcs_)
            out[name] = {
                "fit_seconds": statistics.median(times[name]), "fit_runs": times[name],
                "boosters": len(model.boosters_),
                **{f"{t}_{k}": rep[t]["all"][k] for t in ("energy_kwh", "service_s")
                   for k in ("mape", "rmse", "coverage_p10_p90")},
                **{f"{t}_coverage_raw": raw[t]["all"]["coverage_p10_p90"]
                   for t in ("energy_kwh", "service_s")},
                "action_accuracy": rep["action_accuracy"],
            }
    new, old = out["multi-quantile (3 boosters)"], out["five boosters"]
    out["time_ratio"] = new["fit_seconds"] / old["fit_seconds"]
    print(f"XGBoost fit of {n_train} jobs ({n_train * len(scen.dcs)} job×DC rows), "
          f"{threads} thread(s), median of {rounds}:")
    for name in layouts:
        o = out[name]
        print(f"  {name:28s} {o['fit_seconds']:7.1f} s  energy MAPE "
              f"{100 * o['energy_kwh_mape']:.2f} %  service MAPE {100 * o['service_s_mape']:.2f}"
              f" %  coverage E {o['energy_kwh_coverage_raw']:.3f}->"
              f"{o['energy_kwh_coverage_p10_p90']:.3f}  s {o['service_s_coverage_raw']:.3f}->"
              f"{o['service_s_coverage_p10_p90']:.3f}  action {100 * o['action_accuracy']:.1f} %",
              flush=True)
    print(f"  time ratio {out['time_ratio']:.2f} (target <= 0.40)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lora-jobs", type=int, default=512)
    ap.add_argument("--xgb-jobs", type=int, default=20000)
    ap.add_argument("--xgb-train", type=int, default=3000)
    ap.add_argument("--xgb-strategy", default="stacked")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base-model", default=None)
    ap.add_argument("--skip-lora", action="store_true")
    ap.add_argument("--skip-xgb", action="store_true")
    ap.add_argument("--compare-strategies", action="store_true",
                    help="also compare the XGBoost layouts (stacked, per_dc, multi_output)")
    ap.add_argument("--fit-compare", type=int, default=None, metavar="N",
                    help="compare XGBoost fit time/accuracy of the two layouts on N jobs")
    ap.add_argument("--fit-threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scen = synthesize(dcs=9, areas=3, types=3, hours=24, seed=0)
    results: dict[str, Any] = {}
    if args.fit_compare:
        results["xgboost_fit"] = compare_fits(scen, args.fit_compare, args.fit_threads)
    if not args.skip_xgb:
        x = bench_xgb(scen, args.xgb_jobs, args.xgb_train, args.repeat, args.xgb_strategy)
        results["xgboost"] = x
        print(f"XGBoost ({x['strategy']}, trained on {int(x['train_rows'])} jobs in "
              f"{x['fit_seconds']:.1f} s)")
        print(f"  predict_frame            {x['predictions_per_s']:12,.0f} job×DC/s "
              f"(target ≥ 200,000)   ratio to bare booster {x['ratio']:.3f}")
        print(f"  arrays only (no checks)  {x['predict_arrays_per_s']:12,.0f} job×DC/s")
        print(f"  bare inplace_predict     {x['bare_booster_predictions_per_s']:12,.0f} rows/s")
        print(f"  one job per call         {x['single_job_latency_ms']:12.2f} ms")
    if args.compare_strategies:
        print(f"XGBoost layouts ({args.xgb_train} training jobs, 2000 test jobs, 9 DCs)")
        results["xgboost_layouts"] = compare_xgb_strategies(scen, args.xgb_train, 2000)
    if not args.skip_lora:
        r = bench_lora(scen, args.lora_jobs, args.train_steps, args.base_model, args.repeat)
        results["lora"] = r
        print(f"LoRA on {args.base_model or 'all-MiniLM-L6-v2'} "
              f"({int(r['torch_threads'])} threads, prompts {r['prompt_tokens_median']:.0f}–"
              f"{r['prompt_tokens_max']:.0f} tokens)")
        print(f"  training                 {r['train_samples_per_s']:9.1f} samples/s   "
              f"ratio to bare fwd+bwd {r['train_ratio']:.2f} "
              f"({r['bare_train_samples_per_s']:.1f}/s)")
        print(f"  inference                {r['infer_jobs_per_s']:9.1f} jobs/s (target ≥ 100)   "
              f"ratio to bare forward {r['infer_ratio']:.2f} "
              f"({r['bare_forward_jobs_per_s']:.1f}/s)")
        print(f"  one job per call         {r['single_job_latency_ms']:9.1f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
