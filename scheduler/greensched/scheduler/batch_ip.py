"""Batch assignment as an integer program (HiGHS MILP).

A batch of jobs J is placed jointly, one DC each, under the capacity that remains in the ledger
and the same masks and score as the greedy assigner (:mod:`greensched.scheduler.assign`)::

    min   Σ_{j,d} score[j,d] · x[j,d]  +  M · Σ_j z_j
    s.t.  Σ_d x[j,d] + z_j = 1                                   every job: one DC or unplaced
          Σ_{j : hour j = h} u[j,r] · x[j,d] ≤ remaining[h,d,r]   every (h, d, r) that can bind
          x[j,d] ∈ {0, 1}, only for allowed pairs (SLA if hard, sovereignty, fits alone)
          0 ≤ z_j ≤ 1

u[j,r] are the job's resource units (ticks of the ledger / ticks per unit).  The unplaced penalty
M (USD) defaults to 1 + 2 Σ_j max_d |score[j,d]|, more than any change of the score sum, so the IP
first places as many jobs as it can and then minimises the score.  Capacity rows that cannot
bind (the batch's whole usage fits) are left out, so a batch without contention is solved by
presolve alone.  The greedy solution is passed as the starting incumbent, so a time limit never
returns anything worse than greedy.

The solution is reserved in the ledger job by job in arrival order in exact integer ticks; a job
that no longer fits (a concurrent reservation, or a solver tolerance of ~1e-7 units) is placed
greedily instead, and counted in ``info["repaired"]``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.assign import (
    AssignConfig,
    AssignError,
    Assignment,
    CapacityLedger,
    GreedyAssigner,
    PlanGuide,
    _as_guide,
    _engine_hour,
)
from greensched.scheduler.backends import load_highs_model, set_highs_threads, silence_highs_banner

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.planner import PlanResult

__all__ = ["BatchProblem", "assign_batch_ip", "build_batch_problem", "solve_batch_problem"]


class BatchProblem:
    """The MILP of one batch in matrix form, with the maps back to jobs and DCs.

    Attributes
    ----------
    fixed
        Choice per job decided before the solve: a DC position for jobs whose best allowed DC
        is not in a binding capacity row (taking it is optimal whatever the others do), -1 for
        jobs with no allowed DC, -2 for jobs left to the IP.
    job, dc
        Job position (into the whole batch) and DC position of each x column, sorted by job.
    cost
        Objective coefficients: scores of the x columns, then M for each z column.
    A, row_lower, row_upper
        Constraint matrix (CSC) and row bounds: one assignment row per IP job, then the
        capacity rows.
    ip_jobs
        Positions of the jobs in the IP (order of the assignment rows and z columns).
    capacity_rows
        (hour, dc, resource) of each capacity row.
    penalty
        The unplaced penalty M (USD).
    inputs
        The arrays the problem was built from (score, allowed, hour, usage_ticks,
        remaining_ticks, ticks_per_unit), for re-solving parts of it.
    """

    def __init__(
        self,
        fixed: np.ndarray,
        job: np.ndarray,
        dc: np.ndarray,
        cost: np.ndarray,
        A: sp.csc_array,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        ip_jobs: np.ndarray,
        capacity_rows: np.ndarray,
        penalty: float,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.inputs = inputs or {}
        self.fixed = fixed
        self.job = job
        self.dc = dc
        self.cost = cost
        self.A = A
        self.row_lower = row_lower
        self.row_upper = row_upper
        self.ip_jobs = ip_jobs
        self.capacity_rows = capacity_rows
        self.penalty = penalty

    @property
    def n_x(self) -> int:
        """Number of binary columns."""
        return len(self.job)

    def objective(self, choice: np.ndarray, score: np.ndarray) -> float:
        """Objective value of per-job choices (-1 = unplaced) under this problem's penalty."""
        placed = choice >= 0
        rows = np.flatnonzero(placed)
        return float(score[rows, choice[placed]].sum() + self.penalty * (~placed).sum())


def _binding_rows(
    job: np.ndarray, dc: np.ndarray, hour: np.ndarray, usage: np.ndarray, remaining: np.ndarray
) -> np.ndarray:
    """(H, D, R) mask of capacity rows the candidate pairs could overflow."""
    cand = np.zeros(remaining.shape, dtype=np.int64)
    np.add.at(cand, (hour[job], dc), usage[job])
    return cand > remaining


def build_batch_problem(
    score: np.ndarray,
    allowed: np.ndarray,
    hour: np.ndarray,
    usage_ticks: np.ndarray,
    remaining_ticks: np.ndarray,
    ticks_per_unit: int,
    *,
    penalty: float | None = None,
) -> BatchProblem:
    """Assemble the MILP with numpy (no modelling layer), after two exact reductions.

    1. A job whose best allowed DC lies in no binding capacity row takes it (fixed): it is
       its best choice and uses nothing another job could need.
    2. For the other jobs, a DC scoring no better than the job's best non-binding DC is dropped
       (except that DC itself): moving the job there never costs more and frees capacity.
    Both are repeated while the set of binding rows shrinks.

    Parameters
    ----------
    score
        (n, D) scores (USD).
    allowed
        (n, D) static mask (SLA if hard, sovereignty).
    hour
        (n,) hour of each job.
    usage_ticks
        (n, R) usage in ledger ticks.
    remaining_ticks
        (H, D, R) remaining capacity in ticks.
    ticks_per_unit
        The ledger's resolution; capacity rows are written in resource units.
    penalty
        Unplaced penalty M; default 1 + 2 Σ_j max_d |score[j,d]| over allowed pairs.
    """
    n, D = score.shape
    R = usage_ticks.shape[1]
    fits_alone = (usage_ticks[:, None, :] <= remaining_ticks[hour]).all(axis=2)
    ok = allowed & fits_alone
    if penalty is None:
        abs_max = np.where(ok, np.abs(score), 0.0).max(axis=1) if n else np.zeros(0)
        penalty = 1.0 + 2.0 * float(abs_max.sum())
    if not np.isfinite(penalty) or penalty <= 0:
        raise AssignError(f"unplaced penalty {penalty!r} must be a finite number > 0")
    fixed = np.full(n, -2, dtype=np.int64)
    fixed[~ok.any(axis=1)] = -1
    keep = ok.copy()
    uses = usage_ticks > 0  # (n, R)
    while True:
        job, dc = np.nonzero(keep & (fixed == -2)[:, None])
        binding = _binding_rows(job, dc, hour, usage_ticks, remaining_ticks)
        # pair (j, d) touches a binding row
        touch = (binding[hour][:, :, :] & uses[:, None, :]).any(axis=2)  # (n, D)
        masked = np.where(keep, score, np.inf)
        free = np.where(keep & ~touch, score, np.inf)
        best_free = free.min(axis=1)
        free_arg = free.argmin(axis=1)
        best = masked.min(axis=1)
        open_ = fixed == -2
        newly = open_ & np.isfinite(best_free) & (best_free <= best)
        fixed[newly] = free_arg[newly]
        # drop dominated columns of the remaining jobs
        dominated = keep & (score >= best_free[:, None])
        dominated[np.arange(n), free_arg] = False
        before = int(keep[fixed == -2].sum())
        keep &= ~dominated
        after = int(keep[fixed == -2].sum())
        if not newly.any() and after == before:
            break
    ip_jobs = np.flatnonzero(fixed == -2)
    m = len(ip_jobs)
    sub_keep = keep[ip_jobs]
    loc, dc = np.nonzero(sub_keep)  # row-major: sorted by job
    job = ip_jobs[loc]
    P = len(job)
    binding = _binding_rows(job, dc, hour, usage_ticks, remaining_ticks)
    cap_index = np.full(binding.shape, -1, dtype=np.int64)
    cap_rows = np.argwhere(binding)
    cap_index[binding] = m + np.arange(len(cap_rows))
    n_rows = m + len(cap_rows)
    # entries of the x columns: the assignment row, then the active capacity rows with u > 0
    r_idx = cap_index[hour[job][:, None], dc[:, None], np.arange(R)[None, :]]  # (P, R)
    vals = usage_ticks[job] / float(ticks_per_unit)
    active = (r_idx >= 0) & (vals > 0)
    per_col = 1 + active.sum(axis=1)
    rows_x = np.empty(int(per_col.sum()), dtype=np.int64)
    vals_x = np.empty(len(rows_x))
    starts = (np.cumsum(per_col) - per_col).astype(np.int64)
    rows_x[starts] = loc
    vals_x[starts] = 1.0
    offsets = np.cumsum(active, axis=1) - 1  # rank among the column's active entries
    pos = (starts[:, None] + 1 + offsets)[active]
    rows_x[pos] = r_idx[active]
    vals_x[pos] = vals[active]
    # z columns: one entry each, in the job's assignment row
    indptr = np.concatenate([[0], np.cumsum(per_col), len(rows_x) + np.arange(1, m + 1)])
    indices = np.concatenate([rows_x, np.arange(m)])
    data = np.concatenate([vals_x, np.ones(m)])
    A = sp.csc_array((data, indices, indptr), shape=(n_rows, P + m))
    cap_rhs = remaining_ticks[tuple(cap_rows.T)] / float(ticks_per_unit) if len(cap_rows) else (
        np.zeros(0)
    )
    row_lower = np.concatenate([np.ones(m), np.full(len(cap_rows), -np.inf)])
    row_upper = np.concatenate([np.ones(m), cap_rhs])
    cost = np.concatenate([score[job, dc], np.full(m, float(penalty))])
    inputs = {"score": score, "allowed": allowed, "hour": hour, "usage_ticks": usage_ticks,
              "remaining_ticks": remaining_ticks, "ticks_per_unit": ticks_per_unit}
    return BatchProblem(fixed, job, dc, cost, A, row_lower, row_upper, ip_jobs, cap_rows,
                        float(penalty), inputs)


def solve_batch_problem(
    problem: BatchProblem,
    *,
    start: np.ndarray | None = None,
    time_limit_s: float | None = 1.0,
    mip_rel_gap: float = 1e-4,
    threads: int | None = None,
    lp_rounding: bool = True,
    max_nodes: int | None = None,
    full_milp: bool = True,
    restart: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Solve with HiGHS; returns the chosen DC per job (-1 = unplaced) and solver facts.

    Steps: (1) the LP relaxation, whose basic solutions leave at most one fractional job per
    binding capacity row; (2) the jobs it places integrally are kept and the few fractional
    ones are re-solved as a small MILP in the capacity left (``lp_rounding``); (3) when that
    solution (or ``start``, a choice per job of the whole batch, if better) is not within
    ``mip_rel_gap`` of the LP bound, the full MILP is run from it for the time that is left.
    Facts: ``status`` ("Optimal", "Optimal (LP bound)" when step 2 closed the gap, or HiGHS's
    status), ``objective``, ``bound``, ``gap``, sizes and seconds.  ``max_nodes`` bounds the
    MILP's branch-and-bound nodes: a limit in work rather than wall-clock time, so the result
    does not depend on the machine's load (``time_limit_s`` is then only a safety net).
    ``full_milp=False`` stops after step 2 (the LP rounding, or ``start`` if better) and reports
    its gap to the LP bound: no branch and bound on the whole batch.  ``restart=False`` stops
    HiGHS from restarting the root node after fixing columns (``mip_allow_restart``): on the
    experiments' step problems the restarts repeated the root's cut rounds and took most of
    the time without changing the incumbent, so a work limit (``max_nodes``) without restarts
    bounds the time as well.
    """
    t0 = time.perf_counter()
    choice = problem.fixed.copy()
    m = len(problem.ip_jobs)
    P = problem.n_x
    facts: dict[str, Any] = {
        "status": "Optimal",
        "solve_s": 0.0,
        "objective": float("nan"),
        "bound": float("nan"),
        "gap": 0.0,
        "ip_jobs": m,
        "columns": P + m,
        "rows": int(problem.A.shape[0]),
        "capacity_rows": len(problem.capacity_rows),
        "penalty": problem.penalty,
        "method": "reductions",
    }
    if m == 0:
        return choice, facts
    import highspy

    score = problem.inputs.get("score")

    def value(c: np.ndarray) -> float:
        assert score is not None
        rows = problem.ip_jobs
        cc = c[rows]
        placed = cc >= 0
        return float(score[rows[placed], cc[placed]].sum() + problem.penalty * (~placed).sum())

    def left() -> float | None:
        return None if time_limit_s is None else time_limit_s - (time.perf_counter() - t0)

    silence_highs_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    set_highs_threads(h, threads)
    load_highs_model(h, problem.A, problem.row_lower, problem.row_upper, np.zeros(P + m),
                     np.ones(P + m), cost=problem.cost)
    incumbent: np.ndarray | None = None
    if start is not None and score is not None:
        incumbent = start.copy()
        incumbent[problem.fixed >= -1] = problem.fixed[problem.fixed >= -1]
    bound = -np.inf
    if lp_rounding and score is not None:
        h.setOptionValue("solver", "simplex")
        if left() is not None:
            h.setOptionValue("time_limit", max(float(left()), 1e-3))  # type: ignore[arg-type]
        h.run()
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            bound = float(h.getInfo().objective_function_value)
            x = np.asarray(h.getSolution().col_value, dtype=float)
            rounded = _round_lp(problem, x, left(), max_nodes)
            if rounded is not None and (incumbent is None or value(rounded) < value(incumbent)):
                incumbent = rounded
                facts["method"] = "lp rounding"
            if incumbent is not None:
                facts.update(objective=value(incumbent), bound=bound)
                gap = _gap(value(incumbent), bound)
                facts["gap"] = gap
                if gap <= mip_rel_gap:
                    facts["status"] = "Optimal (LP bound)"
                    facts["solve_s"] = time.perf_counter() - t0
                    return incumbent, facts
    remaining = left()
    if not full_milp and incumbent is not None and score is not None:
        facts.update(status="LP rounding", objective=value(incumbent),
                     gap=_gap(value(incumbent), bound), solve_s=time.perf_counter() - t0)
        return incumbent, facts
    if remaining is not None and remaining <= 0 and incumbent is not None:
        facts["status"] = "Time limit reached"
        facts["solve_s"] = time.perf_counter() - t0
        return incumbent, facts
    # the full MILP from the best solution known
    h.changeColsIntegrality(
        P, np.arange(P, dtype=np.int32), np.full(P, highspy.HighsVarType.kInteger)
    )
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if max_nodes is not None:
        h.setOptionValue("mip_max_nodes", int(max_nodes))
    h.setOptionValue("mip_allow_restart", bool(restart))
    h.setOptionValue("solver", "choose")
    if remaining is not None:
        h.setOptionValue("time_limit", max(float(remaining), 1e-3))
    if incumbent is not None:
        h.setSolution(_start_solution(problem, incumbent, highspy))
    h.run()
    info = h.getInfo()
    facts.update(
        status=h.modelStatusToString(h.getModelStatus()),
        bound=max(bound, float(info.mip_dual_bound)),
        method="milp",
    )
    if info.primal_solution_status == 2:  # kSolutionStatusFeasible
        x = np.asarray(h.getSolution().col_value, dtype=float)
        choice[problem.ip_jobs] = -1
        chosen = np.flatnonzero(x[:P] > 0.5)
        choice[problem.job[chosen]] = problem.dc[chosen]
        if incumbent is not None and score is not None and value(incumbent) < value(choice):
            choice = incumbent
    elif incumbent is not None:
        choice = incumbent
    else:
        raise AssignError(f"batch IP ended {facts['status']!r} without a feasible solution")
    if score is not None:
        facts["objective"] = value(choice)
        facts["gap"] = _gap(facts["objective"], facts["bound"])
    facts["solve_s"] = time.perf_counter() - t0
    return choice, facts


def _gap(objective: float, bound: float) -> float:
    if not np.isfinite(bound):
        return float("inf")
    return max(0.0, objective - bound) / max(abs(objective), 1e-12)


def _round_lp(problem: BatchProblem, x: np.ndarray, time_left: float | None,
              max_nodes: int | None = None) -> np.ndarray | None:
    """Keep the LP's integral placements and re-solve its fractional jobs exactly."""
    inp = problem.inputs
    P = problem.n_x
    xv, z = x[:P], x[P:]
    cand = problem.fixed.copy()
    whole = xv > 1.0 - 1e-6
    cand[problem.job[whole]] = problem.dc[whole]
    cand[problem.ip_jobs[z > 1.0 - 1e-6]] = -1
    frac = problem.ip_jobs[cand[problem.ip_jobs] == -2]
    rem = inp["remaining_ticks"].copy()
    j = problem.job[whole]
    np.subtract.at(rem, (inp["hour"][j], problem.dc[whole]), inp["usage_ticks"][j])
    if (rem < 0).any():  # an LP tolerance over-filled a row: leave it to the MILP
        return None
    if frac.size:
        sub = build_batch_problem(
            inp["score"][frac], inp["allowed"][frac], inp["hour"][frac],
            inp["usage_ticks"][frac], rem, inp["ticks_per_unit"], penalty=problem.penalty,
        )
        limit = None if time_left is None else max(time_left, 0.05)
        # leaving them unplaced is feasible: the start, so a limit never ends without a solution
        sub_choice, _ = solve_batch_problem(sub, start=np.full(frac.size, -1, dtype=np.int64),
                                            time_limit_s=limit, mip_rel_gap=0.0,
                                            lp_rounding=False, max_nodes=max_nodes)
        cand[frac] = sub_choice
    return cand


def _start_solution(problem: BatchProblem, start: np.ndarray, highspy: Any) -> Any:
    """A HiGHS solution placing the IP's jobs as in ``start`` where that column exists."""
    P, m = problem.n_x, len(problem.ip_jobs)
    width = int(max(problem.dc.max(initial=0), start.max(initial=0))) + 1
    key = problem.job * width + problem.dc  # sorted: columns are by job, then dc
    s = start[problem.ip_jobs]
    want = problem.ip_jobs * width + np.maximum(s, 0)
    col = np.minimum(np.searchsorted(key, want), max(P - 1, 0))
    hit = (s >= 0) & (P > 0) & (key[col] == want) if P else np.zeros(m, dtype=bool)
    x0 = np.zeros(P + m)
    x0[col[hit]] = 1.0
    x0[P + np.flatnonzero(~hit)] = 1.0
    sol = highspy.HighsSolution()
    sol.col_value = x0
    sol.value_valid = True
    return sol


def assign_batch_ip(
    scenario: Scenario,
    jobs: pd.DataFrame,
    predictions: xr.Dataset,
    config: AssignConfig | None = None,
    *,
    guide: PlanGuide | PlanResult | None = None,
    ledger: CapacityLedger | None = None,
    time_limit_s: float | None = 1.0,
    mip_rel_gap: float = 1e-4,
    unassigned_penalty_usd: float | None = None,
    threads: int | None = None,
    assigner: GreedyAssigner | None = None,
    max_nodes: int | None = None,
    restart: bool = True,
) -> Assignment:
    """Place a batch of jobs jointly (one DC each) with a MILP; see the module docs.

    Scores, masks and weights are those of :class:`~greensched.scheduler.assign.AssignConfig`
    (exploration is not available here).  ``time_limit_s`` bounds the whole call (the solver
    gets what preparation left less a margin for the bookkeeping after it, at least 0.05 s).
    ``info`` of the result holds the solver status, objective, bound, gap, sizes and the
    greedy objective of the same batch for comparison.  ``assigner`` reuses a prepared
    :class:`~greensched.scheduler.assign.GreedyAssigner` (its scores, masks and ledger; built
    once per run by the batch-IP policy instead of per call: ``config``, ``guide`` and
    ``ledger`` are then ignored).  ``max_nodes`` and ``restart`` are the solver's work limits
    (:func:`solve_batch_problem`); with ``time_limit_s=None`` the result does not depend on the
    machine's speed.
    """
    t_call = time.perf_counter()
    if assigner is None:
        cfg = config or AssignConfig()
        if cfg.explore is not None:
            raise AssignError("the batch IP is deterministic; exploration is for the greedy modes")
        assigner = GreedyAssigner(scenario, cfg, guide=_as_guide(guide), ledger=ledger)
    batch = assigner.prepare(jobs, predictions)
    score, ok = assigner.score_matrix(batch)
    hour = batch.codes["hour"]
    led = assigner.ledger
    order = np.lexsort((np.arange(len(hour)), batch.codes["arrival"], hour))
    with led.lock:
        remaining = led.capacity_ticks - led.used_ticks
    # greedy on a copy of the remaining capacity: the starting incumbent and the comparison
    greedy = np.full(len(hour), -1, dtype=np.int64)
    rem_g = remaining.copy()
    for hh in np.unique(hour):
        idx = order[hour[order] == hh]
        greedy[idx] = _engine_hour(score[idx], None, ok[idx], batch.usage_ticks[idx], rem_g[hh])
    t0 = time.perf_counter()
    problem = build_batch_problem(score, ok, hour, batch.usage_ticks, remaining,
                                  led.ticks_per_unit, penalty=unassigned_penalty_usd)
    build_seconds = time.perf_counter() - t0
    # the solver gets what preparation left, minus a margin for reserving and the result table
    margin = 0.03 + 3e-5 * len(hour)
    budget = None if time_limit_s is None else max(
        time_limit_s - (time.perf_counter() - t_call) - margin, 0.05
    )
    choice, facts = solve_batch_problem(problem, start=greedy, time_limit_s=budget,
                                        mip_rel_gap=mip_rel_gap, threads=threads,
                                        max_nodes=max_nodes, restart=restart)
    ip_objective = problem.objective(choice, score)
    greedy_objective = problem.objective(greedy, score)
    if ip_objective > greedy_objective:  # a time limit ended before improving on greedy
        choice = greedy
    # reserve exactly, in arrival order; repair what no longer fits
    repaired = 0
    with led.lock:
        for j in order:
            d = int(choice[j])
            if d >= 0 and not led.reserve_ticks(int(hour[j]), d, batch.usage_ticks[j]):
                rem = led.capacity_ticks[hour[j]] - led.used_ticks[hour[j]]
                fits = ok[j] & (batch.usage_ticks[j][None, :] <= rem).all(axis=1)
                d = int(np.where(fits, score[j], np.inf).argmin()) if fits.any() else -1
                if d >= 0:
                    led.reserve_ticks(int(hour[j]), d, batch.usage_ticks[j])
                choice[j] = d
                repaired += 1
    propensity = np.where(choice >= 0, 1.0, np.nan)
    chosen = np.full(len(choice), np.nan)
    placed = choice >= 0
    chosen[placed] = score[np.flatnonzero(placed), choice[placed]]
    facts.update(
        build_seconds=build_seconds,
        repaired=repaired,
        ip_objective=problem.objective(choice, score),
        greedy_objective=greedy_objective,
    )
    return assigner.result(batch, choice, chosen, propensity, "batch", **facts)
