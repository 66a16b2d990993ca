"""Predictor benchmark: training and batched inference speed of MiniLM-LoRA and XGBoost.

Run on demand:  python bench/bench_predictor.py [--lora-jobs 512] [--xgb-jobs 20000]
                   [--train-steps 20] [--skip-lora] [--compare-strategies] [--json OUT]
                   [--fit-compare 20000 [--fit-threads 1]]

Data: the synthetic stand-in dataset (greensched.predictor.synthetic) of a 9-DC scenario, or
with ``--data`` (fit comparison and coverage) a twin dataset written by ``greensched simulate
--dataset``, split as the predictor comparison splits it.  Each figure is reported with a ratio
to a reference measured in the same run:

* LoRA training samples/s  vs  a bare forward+backward pass of the base model (no LoRA, no
  heads) on the same prompts and batch size;
* LoRA inference jobs/s (prompt rendering + tokenising + features + forward with the LoRA
  weights merged + heads)  vs  the bare forward pass of the base model on the same tokens;
* XGBoost job×DC predictions/s (validation + features + all boosters)  vs  one bare
  ``inplace_predict`` of the point-energy booster on the prepared matrix.

* ``--fit-compare N``: the XGBoost fit of N training jobs in the default ``"point"`` layout
  (one squared-error booster per target, conformal p10/p90) against the five-booster layout
  with its shipped settings (:data:`~greensched.predictor.xgb.FIVE_BOOSTER_DEFAULTS`), same
  rows, same threads, same run (new, five, new, five: the median of ``--fit-rounds`` each;
  ``--multi-quantile`` adds the multi-quantile layout); test MAPE, RMSE and p10–p90 coverage
  (raw → calibrated, pooled and the per-DC range) on ``--test-jobs`` other jobs.  Target:
  ≤ 0.4× the five-booster time, accuracy no worse.
* ``--coverage-sizes 1500,5000,20000 [--coverage-seeds 0,1,2,3]``: calibrated p10–p90
  coverage of the default layout on the test jobs at each training size and model seed
  (mean, sd, range, how many runs lie within 0.80 ± 0.03).

Reference run (reports/predictor_xgb_fit.md)::

    greensched simulate --jobs 24000 --policy random --seed 3 --dataset /tmp/xgb24k.parquet
    python bench/bench_predictor.py --skip-lora --skip-xgb --data /tmp/xgb24k.parquet \
        --test-jobs 4000 --fit-compare 20000 --fit-threads 1 \
        --coverage-sizes 1500,5000,20000 --coverage-seeds 0,1,2,3,4,5,6,7 --json OUT

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
    if strategy in ("point", "stacked", "quantile"):
        x = model._stacked(job, dc)
        booster = model.boosters_["energy_kwh" if strategy != "quantile" else "energy_kwh_q"]
    else:
        x = np.concatenate([job, dc[:, 0]], axis=1) if strategy == "per_dc" else \
            model._wide(job, dc)
        booster = model.boosters_[f"energy_kwh_q@{model.dcs_[0]}"]
    stacked = strategy in ("point", "stacked", "quantile")
    rows = len(x) if stacked else len(x) * D
    bare = _median_time(lambda: booster.inplace_predict(x), repeat)
    if not stacked:
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


def _split_dataset(scen: Any, data: Path | None, n_train: int, n_test: int
                   ) -> tuple[Any, Any, str]:
    """Training pool and test rows: a twin dataset (``greensched simulate --dataset``) split
    as the predictor comparison does it (one seeded permutation: the first ``n_test`` jobs
    are the test set, training sets are prefixes of the rest), or the synthetic stand-in."""
    import pandas as pd

    if data is None:
        train, _ = synthetic_dataset(scen, n_train, seed=1, noise=0.02)
        test, _ = synthetic_dataset(scen, n_test, seed=2, noise=0.02)
        return train, test, "synthetic 9-DC stand-in (seeds 1 / 2, 2 % noise)"
    df = pd.read_parquet(data)
    if len(df) < n_train + n_test:
        raise SystemExit(f"{data}: {len(df)} jobs, need {n_train} training + {n_test} test")
    perm = np.random.default_rng(0).permutation(len(df))
    test = df.iloc[perm[:n_test]].reset_index(drop=True)
    pool = df.iloc[perm[n_test:]].reset_index(drop=True)
    return pool, test, f"{data} ({len(df)} jobs; permutation seed 0, {n_test} test jobs)"


def _scores(model: Any, test: Any) -> dict[str, Any]:
    from greensched.predictor.metrics import evaluate_predictions

    rep = evaluate_predictions(model.predict_frame(test), test, model.dcs_)
    raw = evaluate_predictions(model.predict_frame(test, calibrated=False), test, model.dcs_)
    out: dict[str, Any] = {"action_accuracy": rep["action_accuracy"]}
    for t in ("energy_kwh", "service_s"):
        a = rep[t]["all"]
        by_dc = [rep[t][d]["coverage_p10_p90"] for d in model.dcs_]
        out.update({f"{t}_mape": a["mape"], f"{t}_rmse": a["rmse"],
                    f"{t}_coverage_p10_p90": a["coverage_p10_p90"],
                    f"{t}_below_p10": a["below_p10"], f"{t}_above_p90": a["above_p90"],
                    f"{t}_coverage_raw": raw[t]["all"]["coverage_p10_p90"],
                    f"{t}_coverage_dc_min": min(by_dc), f"{t}_coverage_dc_max": max(by_dc)})
    return out


def compare_fits(scen: Any, n_train: int, threads: int, rounds: int = 2,
                 data: Path | None = None, n_test: int = 2000,
                 multi_quantile: bool = False) -> dict[str, Any]:
    """Fit time and accuracy: the ``"point"`` layout (default) vs the five-booster one
    (module docstring), alternating in one run; optionally the multi-quantile layout too."""
    from greensched.predictor.xgb import (
        FIVE_BOOSTER_DEFAULTS,
        MULTI_QUANTILE_DEFAULTS,
        XGBoostPredictor,
    )

    pool, test, source = _split_dataset(scen, data, n_train, n_test)
    train = pool.iloc[:n_train]
    layouts: dict[str, dict[str, Any]] = {"point (3 boosters)": {},
                                          "five boosters": FIVE_BOOSTER_DEFAULTS}
    if multi_quantile:
        layouts["multi-quantile (3 boosters)"] = MULTI_QUANTILE_DEFAULTS
    times: dict[str, list[float]] = {k: [] for k in layouts}
    out: dict[str, Any] = {"data": source, "n_train": n_train, "n_test": len(test),
                           "threads": threads, "rounds": rounds}
    for _ in range(rounds):
        for name, opts in layouts.items():
            model = XGBoostPredictor(n_jobs=threads, **opts)
            t0 = time.perf_counter()
            model.fit(train)
            times[name].append(time.perf_counter() - t0)
            h = model.metrics_["history"]
            out[name] = {
                "fit_seconds": statistics.median(times[name]), "fit_runs": times[name],
                "boosters": len(model.boosters_), "booster_seconds": h["booster_seconds"],
                "booster_rounds": h["rounds"], **_scores(model, test),
            }
    new, old = out["point (3 boosters)"], out["five boosters"]
    out["time_ratio"] = new["fit_seconds"] / old["fit_seconds"]
    out["n_dcs"] = len(model.dcs_)
    print(f"XGBoost fit of {n_train} jobs ({n_train * len(model.dcs_)} job×DC rows), "
          f"{threads} thread(s), median of {rounds}; test {len(test)} jobs of {source}:")
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


def coverage_by_size(scen: Any, sizes: list[int], seeds: list[int], threads: int,
                     data: Path | None = None, n_test: int = 2000) -> dict[str, Any]:
    """Calibrated p10–p90 coverage of the default layout on the test rows at each training
    size, for several model seeds (each seed draws other validation / calibration rows)."""
    from greensched.predictor.xgb import XGBoostPredictor

    pool, test, source = _split_dataset(scen, data, max(sizes), n_test)
    out: dict[str, Any] = {"data": source, "n_test": len(test), "seeds": seeds, "sizes": {}}
    print(f"Calibrated p10-p90 coverage on {len(test)} test jobs ({source}), seeds {seeds}:")
    for n in sizes:
        runs = []
        for seed in seeds:
            model = XGBoostPredictor(n_jobs=threads, seed=seed).fit(pool.iloc[:n])
            runs.append({"seed": seed, "n_calibration": model.metrics_["n_calibration"],
                         **_scores(model, test)})
        summary: dict[str, Any] = {"runs": runs}
        for t in ("energy_kwh", "service_s"):
            cov = np.array([r[f"{t}_coverage_p10_p90"] for r in runs])
            summary[t] = {"mean": float(cov.mean()), "sd": float(cov.std(ddof=1))
                          if len(cov) > 1 else 0.0, "min": float(cov.min()),
                          "max": float(cov.max()),
                          "within_0.03": int((np.abs(cov - 0.8) <= 0.03).sum()),
                          "mape_mean": float(np.mean([r[f"{t}_mape"] for r in runs]))}
        out["sizes"][n] = summary
        e, s = summary["energy_kwh"], summary["service_s"]
        print(f"  {n:6d} jobs ({runs[0]['n_calibration']} calibration jobs): energy "
              f"{e['mean']:.3f} ± {e['sd']:.3f} [{e['min']:.3f}, {e['max']:.3f}], service "
              f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]; within "
              f"0.80 ± 0.03: {e['within_0.03']}/{len(runs)} and {s['within_0.03']}/{len(runs)}",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lora-jobs", type=int, default=512)
    ap.add_argument("--xgb-jobs", type=int, default=20000)
    ap.add_argument("--xgb-train", type=int, default=3000)
    ap.add_argument("--xgb-strategy", default="point")
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
    ap.add_argument("--fit-rounds", type=int, default=2, help="fits per layout (median)")
    ap.add_argument("--data", type=Path, default=None,
                    help="--fit-compare / --coverage-sizes: a twin dataset (parquet) instead "
                         "of the synthetic stand-in")
    ap.add_argument("--test-jobs", type=int, default=2000)
    ap.add_argument("--multi-quantile", action="store_true",
                    help="--fit-compare: also fit the multi-quantile layout")
    ap.add_argument("--coverage-sizes", default=None, metavar="N,N,...",
                    help="calibrated coverage of the default layout at these training sizes")
    ap.add_argument("--coverage-seeds", default="0,1,2,3")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scen = synthesize(dcs=9, areas=3, types=3, hours=24, seed=0)
    results: dict[str, Any] = {}
    if args.fit_compare:
        results["xgboost_fit"] = compare_fits(scen, args.fit_compare, args.fit_threads,
                                              args.fit_rounds, args.data, args.test_jobs,
                                              args.multi_quantile)
    if args.coverage_sizes:
        results["xgboost_coverage"] = coverage_by_size(
            scen, [int(x) for x in args.coverage_sizes.split(",")],
            [int(x) for x in args.coverage_seeds.split(",")], args.fit_threads, args.data,
            args.test_jobs)
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
