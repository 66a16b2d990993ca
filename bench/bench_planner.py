"""Planner benchmark: load + build + solve against the bare HiGHS solve of the same LP.

Run on demand:  python bench/bench_planner.py [--repeat 5] [--big] [--coefficients FILE]
Reports medians and the ratio (end-to-end time) / (bare HiGHS ``run()`` of the same LP, loaded
fresh, same objective), both measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from greensched.scenario import load_scenario
from greensched.scheduler import PlanConfig, PlanSession, plan
from greensched.scheduler.backends import HighsBackend
from greensched.scheduler.greenllm import build_model
from greensched.scheduler.per_query import DelayOptions
from greensched.scheduler.planner import OBJECTIVES, _Compiled
from greensched.synth import synthesize

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paper_scenario"


def bare_highs_seconds(scen, weights=(1 / 3, 1 / 3, 1 / 3)) -> float:  # type: ignore[no-untyped-def]
    comp = _Compiled(build_model(scen))
    pairs = zip(weights, OBJECTIVES, strict=True)
    c = sum(w * comp.vector(comp.gm.objectives[k])[0] for w, k in pairs)
    be = HighsBackend()
    be.load(comp.A, comp.row_lower, comp.row_upper, comp.lb, comp.ub)
    be.set_objective(np.asarray(c))
    t0 = time.perf_counter()
    be.h.run()
    return time.perf_counter() - t0


def end_to_end(directory: Path, cfg: PlanConfig, coefficients: Path | None = None) -> float:
    t0 = time.perf_counter()
    result = plan(load_scenario(directory, coefficients=coefficients), cfg)
    assert result.is_ok, result.message
    return time.perf_counter() - t0


def _e2e_session(directory: Path, coef: Path | None, delay: DelayOptions) -> float:
    t0 = time.perf_counter()
    scen = load_scenario(directory, coefficients=coef)
    result = PlanSession(scen, delay=delay).solve(PlanConfig(diagnose=False))
    if not result.is_ok:
        raise AssertionError(result.message)
    return time.perf_counter() - t0


def report_delay_models(directory: Path, repeat: int, coefficients: Path | None) -> None:
    """End-to-end time: per_query with and without its wait rows, and letter.

    ``per_query`` without congestion has the latency rows only; the difference to the full
    ``per_query`` is what building the utilisation and queueing (wait) rows costs.
    """
    runs: list[tuple[str, Path | None]] = [("scenario coefficients", None)]
    if coefficients is not None:
        runs.append((f"coefficients {coefficients.name}", coefficients))
    variants = {
        "letter": DelayOptions(delay_model="letter"),
        "per_query, no wait rows": DelayOptions(delay_model="per_query", congestion=False),
        "per_query": DelayOptions(delay_model="per_query"),
    }
    for label, coef in runs:
        times: dict[str, float] = {}
        for name, opts in variants.items():
            try:
                times[name] = statistics.median(
                    _e2e_session(directory, coef, opts) for _ in range(repeat)
                )
            except AssertionError as exc:  # letter is infeasible with learned coefficients
                print(f"  {name} ({label}): not optimal ({str(exc)[:70]})")
        for name, t in times.items():
            print(f"  {label}: {name:24s} {t:8.3f} s")
        base = times.get("per_query, no wait rows")
        if base:
            print(f"  {label}: wait rows add {100 * (times['per_query'] / base - 1):5.1f} %")


def report(name: str, directory: Path, repeat: int) -> None:
    scen = load_scenario(directory)
    end_to_end(directory, PlanConfig())  # warm imports
    bare = statistics.median(bare_highs_seconds(scen) for _ in range(repeat))
    weighted = statistics.median(end_to_end(directory, PlanConfig()) for _ in range(repeat))
    lex = statistics.median(
        end_to_end(directory, PlanConfig(mode="lexicographic")) for _ in range(repeat)
    )
    bare_lex = bare * 3
    print(f"{name}: sizes {scen.sizes()}")
    print(f"  bare HiGHS solve (weighted LP)     {bare:8.3f} s")
    print(f"  load+build+solve, weighted         {weighted:8.3f} s   ratio {weighted / bare:5.2f}")
    print(
        f"  load+build+solve, lexicographic    {lex:8.3f} s   ratio to 3 bare solves "
        f"{lex / bare_lex:5.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="also 50 DCs x 50 areas x 5 types x 24 h")
    ap.add_argument(
        "--coefficients",
        type=Path,
        default=None,
        help="also time per_query with this coefficients.csv (e.g. learned ones)",
    )
    args = ap.parse_args()
    if PAPER.exists():
        report("paper scenario", PAPER, args.repeat)
        report_delay_models(PAPER, args.repeat, args.coefficients)
    else:
        print(f"skipping paper scale: {PAPER} not found", file=sys.stderr)
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            synthesize(50, 50, 5, 24, seed=1).save(tmp)
            report("synthetic 50x50x5x24", Path(tmp), max(1, args.repeat // 2))


if __name__ == "__main__":
    main()
