"""Decomposed vs monolithic planning, measured in one run (run on demand, once, with timeout).

    python bench/bench_decompose.py --size 100 --workers 2            # 100 DCs x 100 areas x 5 x 24
    python bench/bench_decompose.py --size 50 --ray-scaling           # + Ray with 1 and 2 actors
    python bench/bench_decompose.py --letter-days 7 --skip-synthetic  # letter regions, one week
    python bench/bench_decompose.py --size 30 --lexicographic         # lexicographic phases

Each plan runs in its own child process; this process samples the memory of the child's whole
process tree (/proc RSS and PSS, every 50 ms) and reports the peaks, the wall time inside the
child (load + build + solve, imports excluded) and the whole-process wall time.  The water
budget is made binding: 95 % of the water of the plan without a budget.  Prints one JSON
document (and writes it with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: ``--skip-hot``: leave out the hot-start run (one HiGHS instance per hour).
SKIP_HOT: list[bool] = []
DATA = ROOT.parent / "shared" / "data"


def _tree_memory_bytes(root_pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``root_pid`` and all its descendants (Linux /proc).

    RSS counts pages shared between a forked worker and its parent once per process; PSS
    splits them between the sharers, so its sum over a process tree is the tree's memory.
    """
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parts = fh.read().rsplit(")", 1)[1].split()
            ppid = int(parts[1])
            pages = int(parts[21])
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = pages * os.sysconf("SC_PAGE_SIZE")
    total_rss, total_pss, stack = 0, 0, [root_pid]
    while stack:
        pid = stack.pop()
        total_rss += rss.get(pid, 0)
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total_pss += int(line.split()[1]) * 1024
                        break
        except OSError:
            total_pss += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total_rss, total_pss


def run_child(args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run this script as a child with ``args``; its JSON result plus peak tree memory."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, pss = _tree_memory_bytes(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        stop.set()
        return {"status": "timeout", "args": args, "stderr": err[-2000:]}
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"status": "failed", "args": args, "stderr": err[-3000:]}
    res: dict[str, Any] = json.loads(lines[-1])
    res["process_wall_s"] = wall
    res["peak_tree_rss_gib"] = peak[0] / 2**30
    res["peak_tree_pss_gib"] = peak[1] / 2**30
    return res


def child(argv: list[str]) -> None:
    """Child side: plan one scenario directory and print a JSON line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--mode", choices=["mono", "dec"], required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray", default=None)
    ap.add_argument("--no-budget", action="store_true")
    ap.add_argument("--block-hours", type=int, default=None)
    ap.add_argument("--hot-start", action="store_true", help="one HiGHS instance per hour")
    ap.add_argument("--lexicographic", action="store_true")
    a = ap.parse_args(argv)
    from greensched.scenario import load_scenario
    from greensched.scheduler import PlanConfig, plan
    from greensched.scheduler.decompose import DecomposeConfig, plan_decomposed

    t0 = time.perf_counter()
    scen = load_scenario(a.scenario)
    if a.no_budget:
        scen.water_budget_l = None
    cfg = PlanConfig(mode="lexicographic") if a.lexicographic else PlanConfig()
    if a.mode == "mono":
        r = plan(scen, cfg)
        extra: dict[str, Any] = {}
    else:
        d = DecomposeConfig(
            workers=a.workers,
            ray_address=a.ray,
            block_hours=a.block_hours,
            keep_solvers=a.hot_start,
        )
        r = plan_decomposed(scen, cfg, d)
        extra = {
            "rounds": r.rounds,
            "gap_relative": r.gap_relative,
            "gap_usd": r.gap_usd,
            "water_price_usd_per_l": r.water_price_usd_per_l,
            "engine": r.engine,
            "rounds_log": [{k: v for k, v in row.items() if k != "mu"} for row in r.rounds_log],
        }
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "status": r.status.value,
                "mode": a.mode,
                "sizes": scen.sizes(),
                "value_usd": r.phases[-1]["value_usd"] if r.phases else None,
                "phase_values_usd": [p["value_usd"] for p in r.phases],
                "water_l": r.water_l,
                "budget_l": scen.water_budget_l,
                "build_s": r.build_seconds,
                "solve_s": r.solve_s,
                "in_process_wall_s": wall,
                **extra,
            }
        )
    )


def compare(
    directory: Path, workers: int, timeout_s: float, label: str, extra: list[str] | None = None
) -> dict[str, Any]:
    """Monolithic and decomposed plans of one scenario directory (budget made binding).

    ``extra`` child arguments (``--lexicographic``) apply to the three compared plans.
    """
    extra = extra or []
    free = run_child(
        [str(directory), "--mode", "dec", "--workers", str(workers), "--no-budget"], timeout_s
    )
    if free.get("status") != "optimal":
        return {"label": label, "error": free}
    from greensched.scenario import load_scenario

    scen = load_scenario(directory)
    scen.water_budget_l = 0.95 * float(free["water_l"])
    scen.save(directory)
    dec = run_child([str(directory), "--mode", "dec", "--workers", str(workers), *extra], timeout_s)
    hot: dict[str, Any] = (
        {"status": "skipped"}
        if SKIP_HOT
        else run_child(
            [str(directory), "--mode", "dec", "--workers", str(workers), "--hot-start", *extra],
            timeout_s,
        )
    )
    mono = run_child([str(directory), "--mode", "mono", *extra], timeout_s)
    out: dict[str, Any] = {
        "label": label,
        "unconstrained_water_l": free["water_l"],
        "decomposed": dec,
        "decomposed_hot_start": hot,
        "monolithic": mono,
    }
    for key, run in (("", dec), ("hot_start_", hot)):
        if run.get("status") != "optimal" or mono.get("status") != "optimal":
            continue
        out[f"{key}speedup_in_process"] = mono["in_process_wall_s"] / run["in_process_wall_s"]
        out[f"{key}speedup_whole_process"] = mono["process_wall_s"] / run["process_wall_s"]
        out[f"{key}memory_ratio_rss"] = run["peak_tree_rss_gib"] / mono["peak_tree_rss_gib"]
        out[f"{key}memory_ratio_pss"] = run["peak_tree_pss_gib"] / mono["peak_tree_pss_gib"]
        out[f"{key}objective_rel_diff"] = abs(run["value_usd"] - mono["value_usd"]) / max(
            1.0, abs(mono["value_usd"])
        )
        out[f"{key}budget_rel_diff"] = abs(run["water_l"] - run["budget_l"]) / run["budget_l"]
    return out


def ray_scaling(directory: Path, timeout_s: float) -> dict[str, Any]:
    """Decomposed plan on a local Ray cluster with 1 and 2 actors (budget as saved)."""
    rows = {}
    for n in (1, 2):
        rows[str(n)] = run_child(
            [str(directory), "--mode", "dec", "--workers", str(n), "--ray", "local"], timeout_s
        )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100, help="DCs = areas = SIZE, 5 types, 24 h")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600.0, help="per child process (s)")
    ap.add_argument("--ray-scaling", action="store_true")
    ap.add_argument("--letter-days", type=int, default=0)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--lexicographic", action="store_true", help="lexicographic plans")
    ap.add_argument("--skip-hot", action="store_true", help="no hot-start decomposed run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.skip_hot:
        SKIP_HOT.append(True)
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_synthetic:
            from greensched.synth import synthesize

            d = Path(tmp) / f"synth{args.size}"
            synthesize(args.size, args.size, 5, 24, seed=1).save(d)
            report["synthetic"] = compare(
                d,
                args.workers,
                args.timeout,
                f"{args.size}x{args.size}x5x24",
                ["--lexicographic"] if args.lexicographic else [],
            )
            if args.ray_scaling:
                report["ray"] = ray_scaling(d, args.timeout)
        if args.letter_days:
            config = ROOT / "examples" / "letter-regions.toml"
            if not DATA.exists():
                report["letter"] = {"skipped": f"{DATA} not found"}
            else:
                from greensched.builder import build_from_config

                d = Path(tmp) / "letter"
                build_from_config(config, d, days=args.letter_days)
                report["letter"] = compare(
                    d, args.workers, args.timeout, f"letter-regions {args.letter_days} days"
                )
    report["load_avg_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
