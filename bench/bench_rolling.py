"""Rolling re-planning vs one monolithic multi-day plan (perfect foresight), measured in one run.

    python bench/bench_rolling.py --days 3                        # letter regions as configured
    python bench/bench_rolling.py --days 3 --water-factor 0.97    # budget made binding
    python bench/bench_rolling.py --days 3 --water-factor 0.97 --decompose --step 6
    python bench/bench_rolling.py --synthetic 20 --days 2 --step 4 --water-factor 0.95

The scenario is the letter-regions build configuration for ``--days`` days (or a synthetic fleet
of N DCs x N areas x 3 types).  ``--water-factor F`` replaces the water budget by F x the water
of the perfect-foresight plan without a budget, so that the budget binds (F < 1).  The
perfect-foresight reference is the monolithic plan of the whole span with the same budget
(:func:`greensched.scheduler.rolling.plan_perfect_foresight`); the rolling plan re-plans every
``--step`` hours over ``--horizon`` hours.  Reported: objective gap of rolling vs perfect
foresight (weighted objective, relative), committed water vs budget, per-window build / solve /
wall seconds, and the load average.  Prints one JSON document (and writes it with ``--json``).
Run once, at ``nice -n 5``, with a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "max": float(arr.max()),
        "total": float(arr.sum()),
    }


def _weighted(objective: dict[str, float], weights: dict[str, float]) -> float:
    return float(sum(weights[k] * objective[f"{k}_usd"] for k in weights))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "letter-regions.toml"))
    ap.add_argument("--synthetic", type=int, default=None, help="N DCs x N areas x 3 types")
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=24)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--water-factor", type=float, default=None)
    ap.add_argument("--decompose", action="store_true", help="windows by hour decomposition")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from greensched.scheduler import PlanConfig, plan
    from greensched.scheduler.decompose import DecomposeConfig
    from greensched.scheduler.rolling import RollingConfig, plan_perfect_foresight, plan_rolling

    t0 = time.perf_counter()
    if args.synthetic is not None:
        from greensched.synth import synthesize

        scen = synthesize(
            dcs=args.synthetic, areas=args.synthetic, types=3, hours=24 * args.days, seed=1
        )
        what = f"synthetic {args.synthetic}x{args.synthetic}x3"
    else:
        from greensched.builder import build_scenario

        scen = build_scenario(args.config, days=args.days)
        what = f"{Path(args.config).name}, {scen.start}"
    build_s = time.perf_counter() - t0
    cfg = PlanConfig()
    report: dict[str, Any] = {
        "scenario": what,
        "sizes": scen.sizes(),
        "days": args.days,
        "horizon_h": args.horizon,
        "step_h": args.step,
        "decompose": args.decompose,
        "workers": args.workers,
        "scenario_build_seconds": build_s,
        "configured_water_budget_l": scen.water_budget_l,
        "load_average_start": os.getloadavg(),
    }
    if args.water_factor is not None:
        free = scen.copy()
        free.water_budget_l = None
        free_plan = plan(free, cfg)
        scen.water_budget_l = args.water_factor * free_plan.water_l
        report["water_without_budget_l"] = free_plan.water_l
        report["water_factor"] = args.water_factor
    dcfg = DecomposeConfig(workers=args.workers) if args.decompose else None
    rcfg = RollingConfig(horizon_h=args.horizon, step_h=args.step, days=args.days, decompose=dcfg)

    t0 = time.perf_counter()
    pf = plan_perfect_foresight(scen, cfg, rcfg)
    pf_wall = time.perf_counter() - t0
    if not pf.is_ok:
        raise SystemExit(f"perfect-foresight plan ended {pf.status.value}: {pf.message}")
    assert pf.weights is not None
    weights = dict(pf.weights)
    report["perfect_foresight"] = {
        "objective": pf.objective,
        "weighted_usd": _weighted(pf.objective, weights),
        "water_l": pf.water_l,
        "build_seconds": pf.build_seconds,
        "solve_seconds": pf.solve_s,
        "wall_seconds": pf_wall,
    }

    def progress(done: int, total: int, window: Any) -> None:
        print(
            f"window {done}/{total}: solve {window.solve_s:.3f} s, wall {window.wall_s:.2f} s",
            file=sys.stderr,
            flush=True,
        )

    roll = plan_rolling(scen, cfg, rcfg, progress=progress)
    if not roll.is_ok:
        raise SystemExit(f"rolling plan stopped: {roll.message}")
    summary = roll.summary()
    pf_w = report["perfect_foresight"]["weighted_usd"]
    report["rolling"] = {
        "windows": len(roll.windows),
        "objective": roll.objective,
        "weighted_usd": roll.weighted_usd,
        "water_l": roll.water_l,
        "water_budget_l": roll.water_budget_l,
        "budget_met": summary["budget_met"],
        "solve_seconds": _stats([w.solve_s for w in roll.windows]),
        "build_seconds": _stats([w.build_s for w in roll.windows]),
        "wall_seconds_per_window": _stats([w.wall_s for w in roll.windows]),
        "wall_seconds": roll.wall_s,
        "binding_windows": int(sum(w.water_price_usd_per_l > 0 for w in roll.windows)),
    }
    if args.decompose:
        gaps = [w.gap_relative for w in roll.windows if w.gap_relative is not None]
        report["rolling"]["window_gap_relative_max"] = float(np.nanmax(gaps)) if gaps else None
        report["rolling"]["rounds"] = _stats([float(w.rounds or 0) for w in roll.windows])
    report["objective_gap_relative"] = (roll.weighted_usd - pf_w) / abs(pf_w)
    report["total_cost_gap_relative"] = (
        roll.objective["total_usd"] - pf.objective["total_usd"]
    ) / abs(pf.objective["total_usd"])
    report["load_average_end"] = os.getloadavg()
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
