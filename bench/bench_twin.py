"""Twin throughput: jobs simulated per second, per policy, against a same-run numpy reference.

Run on demand:  python bench/bench_twin.py [--jobs 200000] [--repeat 3] [--synthetic]

Jobs are drawn from the demand of the letter's scenario (../shared/data/paper_scenario; a
synthetic 9-DC scenario with ``--synthetic`` or when the data is absent).  The plan is solved
once beforehand (its solve time is the planner's benchmark, not the twin's).  Reported: median
seconds and jobs/s of ``simulate`` (noise on) per policy, and the ratio of that time to a
reference measured in the same run — ``np.sort`` of 4 M float64 values — so that figures from
machines of different speed can be compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from greensched.eval.simulate import POLICIES, simulate
from greensched.eval.traces import jobs_from_demand
from greensched.eval.twin import Twin
from greensched.scenario import load_scenario
from greensched.scheduler import PlanConfig, plan
from greensched.synth import synthesize

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paper_scenario"


def reference_seconds(repeat: int) -> float:
    """Median time of sorting 4 M random float64 values (the same-run yardstick)."""
    x = np.random.default_rng(0).random(4_000_000)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.sort(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true")
    args = ap.parse_args()
    if args.synthetic or not PAPER.is_dir():
        scen = synthesize(dcs=9, areas=9, types=5, hours=24, seed=0)
    else:
        scen = load_scenario(PAPER)
    jobs = jobs_from_demand(scen, args.jobs, seed=0)
    twin = Twin(scen)
    result = plan(scen, PlanConfig())
    ref = reference_seconds(args.repeat)
    print(f"scenario {scen.name!r}: {len(jobs):,} jobs, {len(scen.dcs)} DCs; "
          f"reference np.sort(4M) = {ref * 1e3:.1f} ms")
    print(f"{'policy':8s} {'median s':>9s} {'jobs/s':>12s} {'time / reference':>17s}")
    for policy in POLICIES:
        simulate(scen, jobs.iloc[:1000], policy, seed=0, noise=True, twin=twin, plan=result)
        times = []
        for r in range(args.repeat):
            t0 = time.perf_counter()
            simulate(scen, jobs, policy, seed=r, noise=True, twin=twin, plan=result)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{policy:8s} {med:9.3f} {len(jobs) / med:12,.0f} {med / ref:17.2f}")
    energy_model_throughput(args.repeat, ref)


def energy_model_throughput(repeat: int, ref: float) -> None:
    """Vectorised energy predictions per second (target: >= 1e6 on one core)."""
    from greensched.eval.energy_model import EnergyModel

    model = EnergyModel.load_default()
    rng = np.random.default_rng(1)
    n = 1_000_000
    tin, tout = rng.integers(1, 8000, n), rng.integers(1, 2000, n)
    model.predict_energy_kwh(tin[:10], tout[:10], model="Llama-2 (7B)", gpu="H100")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.predict_energy_kwh(tin, tout, model="Llama-2 (7B)", gpu="H100", batch_size=8)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"energy model: {n / med:,.0f} predictions/s (target >= 1,000,000); "
          f"time / reference {med / ref:.2f}")


if __name__ == "__main__":
    main()
