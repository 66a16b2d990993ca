"""Ray (local) vs the local process pool on the same experiment and seeds: identical results?

    python bench/bench_experiment_engines.py [EXP.toml] [--seeds N] [--workers N]

Runs the experiment's ``--quick`` preset once with the process pool and once with ``--ray
local`` (same worker count), compares ``results.parquet`` (every metric except the wall-clock
ones, :data:`~greensched.eval.experiment.TIMING_METRICS`) and prints both wall times and their
ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from greensched.eval.experiment import TIMING_METRICS, load_experiment, run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("experiment", nargs="?", default="examples/experiments/main.toml")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = load_experiment(args.experiment).quick_preset()
    cfg.seeds = args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for engine, ray in (("pool", None), ("ray", "local")):
            t0 = time.perf_counter()
            run_experiment(cfg, Path(tmp) / engine, workers=args.workers, ray_address=ray)
            walls[engine] = time.perf_counter() - t0
        a = pd.read_parquet(Path(tmp) / "pool" / "results.parquet")
        b = pd.read_parquet(Path(tmp) / "ray" / "results.parquet")
    keep = ~a["metric"].isin(TIMING_METRICS)
    same = a[keep].reset_index(drop=True).equals(b[keep].reset_index(drop=True))
    print(f"{cfg.seeds} seeds x {len(cfg.variants)} variants, {args.workers} workers: "
          f"process pool {walls['pool']:.1f} s, ray local {walls['ray']:.1f} s, "
          f"ratio ray/pool {walls['ray'] / walls['pool']:.2f}; results identical "
          f"(non-timing metrics, {int(keep.sum())} rows): {same}")


if __name__ == "__main__":
    main()
