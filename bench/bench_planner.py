"""Planner benchmark: load + build + solve against the bare HiGHS solve of the same LP.

Run on demand:  python bench/bench_planner.py [--repeat 5] [--big] [--coefficients FILE]
Reports medians and the ratio (end-to-end time) / (bare HiGHS ``run()`` of the same LP, loaded
fresh, same objective), both measured in this run.

    python bench/bench_planner.py --whole-process [--repeat 5]   # paper scale, whole processes
    python bench/bench_planner.py --tables-size 100               # CSV vs Parquet plan tables

``--whole-process`` times, as separate processes (median of ``--repeat``): the
``greensched plan`` command; a bare script that imports only numpy, scipy.sparse and highspy,
reads the same LP's arrays from an .npz and solves it with ``backends.load_highs_model``; and a
bare script that loads the scenario (``load_scenario``), builds the LP with numpy
(``direct.build_direct``) and solves it the same way (no result tables, no CLI).
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
from greensched.scheduler.compiled import _Compiled
from greensched.scheduler.greenllm import build_model
from greensched.scheduler.per_query import DelayOptions
from greensched.scheduler.planner import OBJECTIVES
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


_BARE_NPZ = """
import sys
import highspy
import numpy as np
import scipy.sparse as sp
from greensched.scheduler.backends import load_highs_model
z = np.load(sys.argv[1])
A = sp.csc_array((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
h = highspy.Highs()
h.setOptionValue("output_flag", False)
load_highs_model(h, A, z["rl"], z["ru"], z["lb"], z["ub"], z["c"])
h.run()
print(h.getInfo().objective_function_value)
"""

_BARE_BUILD = """
import sys
import highspy
from greensched.scenario import load_scenario
from greensched.scheduler.backends import load_highs_model
from greensched.scheduler.direct import build_direct
d = build_direct(load_scenario(sys.argv[1]))
w = 1.0 / 3.0
c = w * (d.vectors["energy"][0] + d.vectors["carbon"][0] + d.vectors["delay"][0])
h = highspy.Highs()
h.setOptionValue("output_flag", False)
load_highs_model(h, d.A, d.row_lower, d.row_upper, d.lb, d.ub, c)
h.run()
print(h.getInfo().objective_function_value)
"""


_OLD_PATH = """
import sys
import greensched.cli.main
import greensched.scheduler as sched
from greensched.scheduler.planner import PlanConfig, PlanSession
def linopy_plan(scen, cfg=None):
    cfg = cfg or PlanConfig()
    return PlanSession(scen, delay=cfg.delay_options()).solve(cfg)
sched.plan = linopy_plan
sys.argv = ["greensched", "plan", sys.argv[1]]
greensched.cli.main.main()
"""


def _proc_seconds(cmd: list[str]) -> float:
    import subprocess

    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def report_whole_process(directory: Path, repeat: int) -> None:
    """``greensched plan`` vs the two bare scripts, each a whole process (medians)."""
    import os
    import shutil

    from greensched.scheduler.direct import build_direct

    scen = load_scenario(directory)
    d = build_direct(scen)
    w = [scen.weights[k] / sum(scen.weights.values()) for k in OBJECTIVES]
    c = sum(wk * d.vectors[k][0] for wk, k in zip(w, OBJECTIVES, strict=True))
    exe = shutil.which("greensched") or "greensched"
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "lp.npz"
        np.savez(
            npz,
            data=d.A.data,
            indices=d.A.indices,
            indptr=d.A.indptr,
            shape=np.array(d.A.shape),
            rl=d.row_lower,
            ru=d.row_upper,
            lb=d.lb,
            ub=d.ub,
            c=c,
        )
        runs = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "bare: numpy + highspy, LP from .npz": [sys.executable, "-c", _BARE_NPZ, str(npz)],
            "bare: load_scenario + numpy build + highspy": [
                sys.executable,
                "-c",
                _BARE_BUILD,
                str(directory),
            ],
            "greensched plan": [exe, "plan", str(directory)],
            "old path: every command module + linopy build": [
                sys.executable,
                "-c",
                _OLD_PATH,
                str(directory),
            ],
            "greensched plan --out (csv)": [exe, "plan", str(directory), "--out", tmp + "/o"],
        }
        samples: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeat):  # round robin: every variant sees the same load drift
            for k, v in runs.items():
                samples[k].append(_proc_seconds(v))
        times = {k: statistics.median(v) for k, v in samples.items()}
    print(f"whole-process seconds (median of {repeat}), load average {os.getloadavg()}:")
    plan_s = times["greensched plan"]
    for k, t in times.items():
        print(f"  {k:45s} {t:7.3f} s   greensched plan / this = {plan_s / t:5.2f}")


def report_tables(size: int) -> None:
    """Write time of one plan's tables as CSV and as Parquet (a SIZE x SIZE x 5 x 24 plan)."""
    from greensched.scheduler.decompose import DecomposeConfig, plan_decomposed

    scen = synthesize(size, size, 5, 24, seed=1)
    result = plan_decomposed(scen, PlanConfig(), DecomposeConfig(workers=2))
    assert result.is_ok, result.message
    rows = len(result.allocation_frame())
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("csv", "parquet", "csv", "parquet"):
            t0 = time.perf_counter()
            result.write(Path(tmp) / fmt, tables=fmt)
            secs = time.perf_counter() - t0
            size_mb = sum(f.stat().st_size for f in (Path(tmp) / fmt).iterdir()) / 2**20
            print(
                f"  {size}x{size}x5x24 plan, {rows} allocation rows: write {fmt:8s} "
                f"{secs:6.2f} s, {size_mb:6.1f} MiB"
            )
        # every (hour, area, query_type, dc) cell as a row: the format's cost at ~1M rows
        every = result.allocation_frame(threshold=-1.0)
        for fmt in ("csv", "parquet"):
            path = Path(tmp) / f"every.{fmt}"
            t0 = time.perf_counter()
            if fmt == "csv":
                every.to_csv(path, index=False)
            else:
                every.to_parquet(path, index=False)
            secs = time.perf_counter() - t0
            print(
                f"  every cell ({len(every)} rows): write {fmt:8s} {secs:6.2f} s, "
                f"{path.stat().st_size / 2**20:6.1f} MiB"
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
    ap.add_argument("--whole-process", action="store_true", help="paper scale, whole processes")
    ap.add_argument("--tables-size", type=int, default=0, help="CSV vs Parquet at this size")
    args = ap.parse_args()
    if args.whole_process or args.tables_size:
        if args.whole_process:
            report_whole_process(PAPER, args.repeat)
        if args.tables_size:
            report_tables(args.tables_size)
        return
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
