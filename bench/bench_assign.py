"""Assigner benchmarks, run on demand (not a test).

    python bench/bench_assign.py [--jobs 1000000] [--repeat 3] [--calls 20000] [--skip-compare]
    python bench/bench_assign.py --only-compare [--capacity-scale 0.4] [--water-scale 0.9]
                                 [--sla 0.03] [--fraction 1.0] [--token-spread 0.3]

Each figure is reported with a reference measured in the same run, as a ratio:

* greedy, vectorised, 10 DCs, predictions given: jobs/s of ``GreedyAssigner.assign_arrays``
  (scores, masks, exact capacity bookkeeping) against ``numpy.argmin`` over the same
  precomputed score matrix; also the whole ``assign()`` (validation, alignment, result table);
* one job at a time (``assign_one``, 10 DCs): p50 / p99 latency against one ``numpy.argmin`` of
  a 10-vector;
* batch IP, 1,000 jobs × 10 DCs: wall time of ``assign_batch_ip`` against the HiGHS LP
  relaxation of the same matrix and against greedy, at three levels of contention;
* the three online modes on the paper scenario (jobs drawn from its demand, predictions from its
  coefficients): greedy, plan-guided, plan-following — cost, carbon, water, SLA violations,
  capacity overflows, and the planner's objective at the realised shares.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from greensched.scheduler.assign import (
    AssignConfig,
    GreedyAssigner,
    PlanGuide,
    _job_codes,
    assign_greedy,
    assign_plan_following,
    evaluate_assignment,
    job_usage_units,
    predictions_from_coefficients,
    sample_jobs_from_demand,
)
from greensched.scheduler.backends import load_highs_model
from greensched.scheduler.batch_ip import assign_batch_ip, build_batch_problem
from greensched.synth import synthesize

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paper_scenario"


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_greedy(n_jobs: int, repeat: int) -> None:
    scen = synthesize(dcs=10, areas=5, types=4, hours=24, seed=0)
    per_day = float(scen.ds["queries"].sum())
    jobs = sample_jobs_from_demand(scen, seed=1, fraction=n_jobs / per_day, token_spread=0.3)
    pred = predictions_from_coefficients(scen, jobs)
    n = len(jobs)
    print(f"greedy, {n} jobs x 10 DCs over 24 h (synthetic), predictions given")
    for label, cap_scale in (("capacity as synthesised", 1.0), ("no capacity pressure", 1e6)):
        s = scen.copy()
        s.ds["capacity"] = s.ds["capacity"] * cap_scale
        g = GreedyAssigner(s)
        codes = _job_codes(s, jobs)
        usage = g.ledger.to_ticks(g.units_per_token[codes["qtype"]] * codes["tokens"][:, None])
        energy = np.ascontiguousarray(pred["energy_kwh"].values)
        service = np.ascontiguousarray(pred["service_s"].values)
        score = g._scores(codes["hour"], codes["qtype"], codes["tokens"], codes["sla"], energy,
                          service)

        def core() -> None:
            g.ledger.used_ticks[:] = 0  # noqa: B023
            g.assign_arrays(hour=codes["hour"], area=codes["area"], qtype=codes["qtype"],  # noqa: B023
                            tokens=codes["tokens"], sla=codes["sla"], energy=energy,  # noqa: B023
                            service=service, usage_ticks=usage, arrival=codes["arrival"])  # noqa: B023

        def full() -> None:
            g.ledger.used_ticks[:] = 0  # noqa: B023
            g.assign(jobs, pred)  # noqa: B023

        t_ref = _best(lambda: score.argmin(axis=1), repeat)  # noqa: B023
        t_core = _best(core, repeat)
        t_full = _best(full, max(1, repeat - 1))
        g.ledger.used_ticks[:] = 0
        out = g.assign(jobs, pred)
        rejected = int((out.frame["dc"] == "").sum())
        print(f"  [{label}; {rejected} rejected for capacity]")
        print(f"    numpy argmin over the score matrix  {n / t_ref / 1e6:8.2f} M jobs/s")
        print(f"    assign_arrays (exact capacity)      {n / t_core / 1e6:8.2f} M jobs/s   "
              f"ratio to argmin time {t_core / t_ref:6.1f}")
        print(f"    assign() incl. validation + table   {n / t_full / 1e6:8.2f} M jobs/s   "
              f"ratio to argmin time {t_full / t_ref:6.1f}")


def bench_single(calls: int) -> None:
    scen = synthesize(dcs=10, areas=5, types=4, hours=24, seed=0)
    scen.ds["capacity"] = scen.ds["capacity"] * 1e6
    g = GreedyAssigner(scen)
    rng = np.random.default_rng(0)
    e = rng.uniform(0.001, 0.01, (calls, 10))
    s = rng.uniform(0.01, 1.0, (calls, 10))
    areas, types = scen.areas, scen.query_types
    lat = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        g.assign_one(hour=i % 24, area=areas[i % len(areas)], query_type=types[i % len(types)],
                     input_tokens=300, output_tokens=200, energy_kwh=e[i], service_s=s[i])
        lat[i] = time.perf_counter() - t0
    ref = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        int(np.argmin(e[i]))
        ref[i] = time.perf_counter() - t0
    p50, p99 = np.percentile(lat, [50, 99]) * 1e6
    r50, r99 = np.percentile(ref, [50, 99]) * 1e6
    print(f"single call assign_one, 10 DCs, {calls} calls")
    print(f"  p50 {p50:7.1f} us   p99 {p99:7.1f} us   (target p99 <= 1000 us)")
    print(f"  reference numpy argmin of 10 values: p50 {r50:5.2f} us, p99 {r99:5.2f} us; "
          f"ratio p99/p99 {p99 / r99:6.1f}")


def bench_batch_ip(repeat: int) -> None:
    import highspy

    scen = synthesize(dcs=10, areas=5, types=4, hours=24, seed=0)
    hour_jobs = sample_jobs_from_demand(scen, seed=1, fraction=1.0, token_spread=0.3)
    hour_jobs = hour_jobs[hour_jobs["hour"] == 12].reset_index(drop=True)
    batch = hour_jobs.iloc[-1000:].reset_index(drop=True)
    earlier = hour_jobs.iloc[:-1000].reset_index(drop=True)
    print("batch IP, 1000 jobs x 10 DCs")
    cases = []
    s0 = scen.copy()
    s0.ds["capacity"] = s0.ds["capacity"] * 1e6
    cases.append(("no contention", s0, None))
    # the rest of the hour has been placed greedily before the batch: some DCs are full
    s1 = scen.copy()
    total = job_usage_units(s1, hour_jobs).sum(axis=0)
    s1.ds["capacity"] = s1.ds["capacity"] * 0 + total[None, :] * 0.12
    cases.append(("after the hour's other jobs", s1, earlier))
    s2 = scen.copy()
    btotal = job_usage_units(s2, batch).sum(axis=0)
    s2.ds["capacity"] = s2.ds["capacity"] * 0 + btotal[None, :] * 0.3
    cases.append(("every DC holds 30 % of the batch", s2, None))
    for label, s, before in cases:
        pred = predictions_from_coefficients(s, batch)
        times, infos = [], []
        for _ in range(repeat):
            g = GreedyAssigner(s)
            if before is not None:
                g.assign(before, predictions_from_coefficients(s, before))
            t0 = time.perf_counter()
            a = assign_batch_ip(s, batch, pred, ledger=g.ledger, time_limit_s=1.0)
            times.append(time.perf_counter() - t0)
            infos.append(a.info)
        # references: greedy on the same batch, HiGHS LP relaxation of the same matrix
        g = GreedyAssigner(s)
        if before is not None:
            g.assign(before, predictions_from_coefficients(s, before))
        led = g.ledger.copy()
        t_greedy = _best(lambda: assign_greedy(s, batch, pred, ledger=led.copy()), repeat)  # noqa: B023
        prepared = g.prepare(batch, pred)
        score, ok = g.score_matrix(prepared)
        problem = build_batch_problem(score, ok, prepared.codes["hour"], prepared.usage_ticks,
                                      g.ledger.capacity_ticks - g.ledger.used_ticks,
                                      g.ledger.ticks_per_unit)
        t_lp = float("nan")
        if problem.n_x:
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            m = len(problem.ip_jobs)
            n_col = problem.n_x + m
            load_highs_model(h, problem.A, problem.row_lower, problem.row_upper,
                             np.zeros(n_col), np.ones(n_col), cost=problem.cost)
            t0 = time.perf_counter()
            h.run()
            t_lp = time.perf_counter() - t0
        info = infos[int(np.argmin(times))]
        t = min(times)
        better = info["greedy_objective"] - info["ip_objective"]
        print(f"  [{label}] {t:6.3f} s (target <= 1 s)  status {info['status']!r}, "
              f"method {info['method']}, jobs in IP {info['ip_jobs']}, capacity rows "
              f"{info['capacity_rows']}, gap {info['gap']:.2e}")
        print(f"      objective {info['ip_objective']:.6g} vs greedy {info['greedy_objective']:.6g}"
              f" (better by {better:.3g} USD); greedy {t_greedy * 1e3:.1f} ms -> ratio "
              f"{t / t_greedy:6.1f}; HiGHS LP relaxation {t_lp * 1e3:.1f} ms -> ratio "
              f"{t / t_lp if t_lp == t_lp else float('nan'):6.1f}")


def compare_modes(fraction: float, token_spread: float, seed: int, *,
                  capacity_scale: float = 1.0, water_scale: float | None = None,
                  sla_s: float | None = None) -> None:
    from greensched.scenario import load_scenario
    from greensched.scheduler import plan

    if not PAPER.is_dir():
        print(f"compare: {PAPER} not found; skipped")
        return
    scen = load_scenario(PAPER)
    scen.ds["capacity"] = scen.ds["capacity"] * capacity_scale
    if water_scale is not None:
        scen.water_budget_l = water_scale * plan(scen).water_l
    result = plan(scen)
    if not result.is_ok:
        print(f"compare: the plan is {result.status.value}: {result.message}")
        return
    guide = PlanGuide.from_result(result)
    jobs = sample_jobs_from_demand(scen, seed=seed, fraction=fraction, token_spread=token_spread,
                                   sla_s=sla_s)
    pred = predictions_from_coefficients(scen, jobs)
    print(f"modes on the paper scenario (capacity x {capacity_scale}, water budget "
          f"{'as given' if water_scale is None else f'x {water_scale} of the free plan'}, SLA "
          f"{'default' if sla_s is None else sla_s} s): {len(jobs)} jobs (demand x {fraction}, "
          f"token cv {token_spread}), water price {guide.water_price_usd_per_l:.3g} USD/l, "
          f"plan total_usd {result.objective['total_usd']:.2f} "
          f"(energy {result.objective['energy_usd']:.2f}, carbon "
          f"{result.objective['carbon_usd']:.2f}, delay {result.objective['delay_usd']:.2f}); "
          f"binding capacity rows in the plan: {int((result.duals['resource'] < -1e-12).sum())}")
    modes = {
        "greedy": lambda: assign_greedy(scen, jobs, pred),
        "plan-guided": lambda: assign_greedy(scen, jobs, pred, guide=guide),
        "plan-following": lambda: assign_plan_following(scen, jobs, pred, guide,
                                                        AssignConfig(seed=seed)),
        "greedy, linear delay": lambda: assign_greedy(scen, jobs, pred,
                                                      AssignConfig(delay_cost="linear")),
        "guided + plan energy prices": lambda: assign_greedy(
            scen, jobs, pred, AssignConfig(plan_energy_prices=True), guide=guide),
    }
    cols = ("energy_usd", "carbon_kg", "carbon_usd", "water_l", "delay_usd", "total_usd",
            "sla_violations", "capacity_overflow_rows", "model_delay_usd", "model_total_usd")
    header = f"  {'mode':30s} {'s':>6s} " + " ".join(f"{c:>14s}" for c in cols) + "  unplaced"
    print(header)
    for name, fn in modes.items():
        t0 = time.perf_counter()
        a = fn()
        dt = time.perf_counter() - t0
        ev = evaluate_assignment(scen, jobs, a)
        print(f"  {name:30s} {dt:6.2f} " + " ".join(f"{ev[c]:14.3f}" for c in cols)
              + f"  {int(ev['jobs'] - ev['assigned'])}")
    # plan-following without the capacity mask: how often the sampled plan shares overflow
    huge = scen.copy()
    huge.ds["capacity"] = huge.ds["capacity"] * 1e6
    free = assign_plan_following(huge, jobs, pred, guide, AssignConfig(seed=seed))
    ev = evaluate_assignment(scen, jobs, free)
    print(f"  plan-following without capacity checks would overflow "
          f"{int(ev['capacity_overflow_rows'])} (dc, hour) rows by "
          f"{ev['capacity_overflow_units']:.1f} units in total")
    g = assign_greedy(huge, jobs, pred)
    ev = evaluate_assignment(scen, jobs, g)
    print(f"  greedy without capacity checks would overflow {int(ev['capacity_overflow_rows'])} "
          f"(dc, hour) rows by {ev['capacity_overflow_units']:.1f} units in total")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--fraction", type=float, default=1.0, help="compare: demand fraction")
    ap.add_argument("--token-spread", type=float, default=0.3, help="compare: token CV")
    ap.add_argument("--capacity-scale", type=float, default=1.0, help="compare: capacity factor")
    ap.add_argument("--water-scale", type=float, default=None,
                    help="compare: water budget as a share of the unconstrained plan's water")
    ap.add_argument("--sla", type=float, default=None, help="compare: SLA of every job (s)")
    ap.add_argument("--only-compare", action="store_true")
    args = ap.parse_args(argv)
    if args.only_compare:
        compare_modes(args.fraction, args.token_spread, seed=1,
                      capacity_scale=args.capacity_scale, water_scale=args.water_scale,
                      sla_s=args.sla)
        return 0
    bench_greedy(args.jobs, args.repeat)
    bench_single(args.calls)
    bench_batch_ip(args.repeat)
    if not args.skip_compare:
        compare_modes(args.fraction, args.token_spread, seed=1,
                      capacity_scale=args.capacity_scale, water_scale=args.water_scale,
                      sla_s=args.sla)
    return 0


if __name__ == "__main__":
    sys.exit(main())
