"""Which rows to calibrate p10/p90 on: the calibration split, validation + calibration, or all
training rows out of fold.

For each training size and model seed, one XGBoost fit (the default ``"point"`` layout) on
the comparison's split of a twin dataset (one seeded permutation; the first ``--test-jobs``
jobs are the test set, training sets are prefixes of the rest; the fleet's DC descriptors
added as ``evaluate-predictor --compare`` adds them).  The same fit is calibrated both ways
(:class:`greensched.predictor.calibration.CalibrationRows`: training is identical, only the
conformal offsets differ); a second fit per seed uses ``"out-of-fold"`` (its calibration split
is trained on, 5 extra fold models score every training job).  All are scored on the same test
jobs: calibrated p10–p90 coverage per
target, its mean, sd and range over seeds, how many runs lie within 0.80 ± 0.03, and the
test set's own sampling error, so that the spread due to calibration can be told from the
spread due to the finite test set.

Run (``reports/predictor_calibration.md``)::

    greensched simulate --jobs 24000 --policy random --seed 3 --dataset /tmp/cmp24k.parquet
    nice -n 5 timeout 1800 python bench/bench_calibration.py --data /tmp/cmp24k.parquet \
        --sizes 1500,5000,20000 --seeds 0,1,2,3,4,5 --test-jobs 4000 --threads 1 \
        --out reports/predictor_calibration.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from greensched.predictor.calibration import (
    CalibrationRows,
    QuantileCalibration,
    calibration_rows,
    coverage_standard_error,
    ideal_coverage_sd,
    truth_arrays,
)
from greensched.predictor.dataset import TARGETS, read_dataset, validate_dataset
from greensched.predictor.xgb import XGBoostPredictor

#: Calibrations of one fit (the same model, other offsets).
SPLIT_MODES = (CalibrationRows.CALIBRATION, CalibrationRows.VALIDATION_AND_CALIBRATION)
#: Every row set reported; ``out-of-fold`` is its own fit (its calibration split is trained on).
MODES = (*SPLIT_MODES, CalibrationRows.OUT_OF_FOLD)


def _coverage(arrays: dict[str, np.ndarray], truth: dict[str, np.ndarray]
              ) -> dict[str, tuple[float, float]]:
    out = {}
    for t in TARGETS:
        inside = (truth[t] >= arrays[f"{t}_p10"]) & (truth[t] <= arrays[f"{t}_p90"])
        out[t] = (float(inside.mean()), coverage_standard_error(inside))
    return out


def run(data: Path, sizes: list[int], seeds: list[int], n_test: int, threads: int,
        describe_dcs: bool = True) -> dict[str, Any]:
    """Coverage of both calibration row sets per size and seed (module docstring)."""
    df, _ = read_dataset(data)
    if describe_dcs:
        from greensched.cli.predictor import fleet_descriptors
        from greensched.predictor.comparison import add_dc_descriptors

        df = add_dc_descriptors(df, fleet_descriptors(None))
    perm = np.random.default_rng(0).permutation(len(df))
    test = df.iloc[perm[:n_test]].reset_index(drop=True)
    pool = df.iloc[perm[n_test:]].reset_index(drop=True)
    out: dict[str, Any] = {"data": str(data), "n_test": n_test, "seeds": seeds, "sizes": {},
                           "load_start": [round(x, 2) for x in os.getloadavg()]}
    t_all = time.perf_counter()
    for n in sizes:
        if n > len(pool):
            raise SystemExit(f"size {n}: only {len(pool)} training jobs after {n_test} test")
        runs = []
        for seed in seeds:
            model = XGBoostPredictor(n_jobs=threads, seed=seed)
            t0 = time.perf_counter()
            model.fit(pool.iloc[:n])
            fit_s = time.perf_counter() - t0
            _, val, cal = model._split(validate_dataset(pool.iloc[:n], model.dcs_))
            raw_test = model.predict_arrays(test, calibrated=False)
            truth = truth_arrays(test, model.dcs_)
            row: dict[str, Any] = {"seed": seed, "fit_s": fit_s}
            for mode in SPLIT_MODES:
                rows = calibration_rows(val, cal, mode)
                assert rows is not None
                c = QuantileCalibration.fit(model.predict_arrays(rows, calibrated=False),
                                            truth_arrays(rows, model.dcs_), model.dcs_)
                cov = _coverage(c.apply(raw_test), truth)
                row[mode.value] = {"n_rows": len(rows),
                                   **{t: {"coverage": v[0], "se": v[1]} for t, v in cov.items()}}
            oof = XGBoostPredictor(n_jobs=threads, seed=seed,
                                   calibrate_on=CalibrationRows.OUT_OF_FOLD)
            t0 = time.perf_counter()
            oof.fit(pool.iloc[:n])
            row["out_of_fold_fit_s"] = time.perf_counter() - t0
            cov = _coverage(oof.predict_arrays(test), truth)
            row[CalibrationRows.OUT_OF_FOLD.value] = {
                "n_rows": oof.metrics_["calibrated_on"]["n_rows"],
                **{t: {"coverage": v[0], "se": v[1]} for t, v in cov.items()}}
            runs.append(row)
            print(f"  {n} jobs seed {seed}: fit {fit_s:.1f} s; " + "; ".join(
                f"{m.value} ({row[m.value]['n_rows']} jobs) " + " / ".join(
                    f"{row[m.value][t]['coverage']:.3f}" for t in TARGETS) for m in MODES),
                flush=True)
        summary: dict[str, Any] = {"runs": runs}
        for mode in MODES:
            summary[mode.value] = {}
            for t in TARGETS:
                got = np.array([r[mode.value][t]["coverage"] for r in runs])
                summary[mode.value][t] = {
                    "mean": float(got.mean()), "sd": float(got.std(ddof=1)) if len(got) > 1
                    else 0.0, "min": float(got.min()), "max": float(got.max()),
                    "within": int((np.abs(got - 0.8) <= 0.03 + 1e-12).sum()),
                    "test_se": float(np.mean([r[mode.value][t]["se"] for r in runs]))}
        out["sizes"][n] = summary
    out["total_s"] = time.perf_counter() - t_all
    out["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def markdown(res: dict[str, Any], command: str) -> str:
    """The report of :func:`run`."""
    n_seeds = len(res["seeds"])
    lines = [
        "# Which rows calibrate p10/p90: calibration, validation + calibration, out-of-fold",
        "",
        f"Regenerate: `{command}`",
        "",
        f"Data: `{res['data']}`; test set: the first {res['n_test']} jobs of the seed-0 "
        "permutation (the comparison's split), training sets prefixes of the rest.  XGBoost "
        f"`point` layout, model seeds {res['seeds']} (each seed draws other validation and "
        "calibration rows); every fit is calibrated on the calibration split and on validation + "
        "calibration, and a second fit per seed calibrates out of fold (its calibration split "
        "joins the training rows; 5 fold models score every training job); all are scored on "
        "the same test jobs.  A perfectly calibrated model's per-DC coverage on "
        f"{res['n_test']} test jobs "
        f"has sd {ideal_coverage_sd(res['n_test']):.4f}; \"test SE\" is the job-clustered "
        "standard error of each pooled coverage, from the test rows.  Wall time "
        f"{res['total_s']:.0f} s, load average {res['load_start']} → {res['load_end']} "
        "(1/5/15 min).",
        "",
        "| training jobs | calibrated on | calibration jobs | energy mean ± sd [min, max] "
        "| within 0.80 ± 0.03 | service mean ± sd [min, max] | within | test SE (E / S) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, s in res["sizes"].items():
        for mode in MODES:
            m = s[mode.value]
            e, v = m["energy_kwh"], m["service_s"]
            cells = [str(n), mode.value, str(s["runs"][0][mode.value]["n_rows"]),
                     f"{e['mean']:.3f} ± {e['sd']:.3f} [{e['min']:.3f}, {e['max']:.3f}]",
                     f"{e['within']}/{n_seeds}",
                     f"{v['mean']:.3f} ± {v['sd']:.3f} [{v['min']:.3f}, {v['max']:.3f}]",
                     f"{v['within']}/{n_seeds}", f"{e['test_se']:.4f} / {v['test_se']:.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--sizes", default="1500,5000,20000")
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--test-jobs", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Markdown report to write")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = run(a.data, [int(x) for x in a.sizes.split(",")], [int(x) for x in a.seeds.split(",")],
              a.test_jobs, a.threads)
    command = (f"python bench/bench_calibration.py --data {a.data} --sizes {a.sizes} --seeds "
               f"{a.seeds} --test-jobs {a.test_jobs} --threads {a.threads}")
    text = markdown(res, command)
    print(text)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text, encoding="utf-8")
    if a.json is not None:
        a.json.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
