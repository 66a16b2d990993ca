"""Price-directive coordination of the hourly LPs: the decomposed Green-LLM plan.

The horizon-coupling rows — the water budget Σ_t W_t(x_t) ≤ Z and, in lexicographic mode, the
ε-rows C_{o_m}(x) ≤ C*_{o_m} + ε |C*_{o_m}| of earlier phases — are all linear in four additive
per-hour functionals F_t = (energy, carbon, delay, water)(x_t).  They are moved into the
objective with multipliers μ ≥ 0 (USD per litre for water, dimensionless for ε-rows):

    g(μ) = Σ_t min_{x_t ∈ X_t} (c + Σ_k μ_k a_k) · F_t(x_t)  −  Σ_k μ_k b_k   ≤   optimum,

where X_t is hour t's polytope (demand, power, resource and delay rows).  Every hour is solved
independently (in parallel) for the current prices; each hour solution is kept as a column.
The prices come from the restricted master LP over convex combinations of the columns of each
hour (Dantzig–Wolfe; on one coupling row this is Kelley's cutting-plane search for the
multiplier, a safeguarded bisection on the dual function's slope W(μ) − Z):

    min Σ_{t,r} λ_{t,r} c·F_{t,r}   s.t.  Σ_{t,r} λ_{t,r} a_k·F_{t,r} ≤ b_k (dual −μ_k),
                                          Σ_r λ_{t,r} = 1 for every t,  λ ≥ 0.

Its optimum is a feasible plan (x_t = Σ_r λ_{t,r} x_{t,r} meets every hour's rows, and the
budget exactly when it binds): an upper bound.  g(μ) at the master's prices is a lower bound.
Rounds stop when upper − lower ≤ gap_tol · max(1, |upper|); the gap is reported (certified).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from greensched.errors import GreenSchedError, SolverUnavailableError
from greensched.scenario import Scenario
from greensched.scheduler.backends import SolveStatus
from greensched.scheduler.decompose.assemble import assemble_result
from greensched.scheduler.decompose.hourly import FUNCTIONALS, HourSolve
from greensched.scheduler.decompose.workers import WorkerPool, make_pool
from greensched.scheduler.planner import OBJECTIVES, PlanConfig, PlanResult

__all__ = ["DecomposeConfig", "DecomposedPlanResult", "plan_decomposed"]

_WATER = FUNCTIONALS.index("water")


@dataclass
class DecomposeConfig:
    """How to decompose a plan.

    Parameters
    ----------
    method
        ``"hours"`` (the only method: one LP per hour, coupling rows priced).
    workers
        Local worker processes (1 = in this process), or Ray actors with ``ray_address``.
    ray_address
        A Ray cluster address, ``"local"`` to start a local cluster, or ``None`` (no Ray).
    gap_tol
        Stop when (upper − lower bound) ≤ gap_tol · max(1, |upper|), relative, ≥ 0.
    max_rounds
        Pricing rounds per phase at most (≥ 1); the gap reached is reported either way.
    block_hours
        Hours built together by one linopy model before being split (memory vs build time);
        ``None`` sizes blocks automatically (about 300k allocation variables each).  Letter
        models are built with numpy one hour at a time and ignore it.
    keep_solvers
        False (default): one HiGHS instance per worker, each hour re-loaded with its saved
        basis (measured at 100 x 100 x 5 x 24: 0.46 of the monolithic plan's memory, and
        faster than hot starts); True keeps a HiGHS instance per hour between rounds (hot
        start: only the costs change; ~28 MB per hour at 100 x 100 x 5).
    """

    method: str = "hours"
    workers: int = 1
    ray_address: str | None = None
    gap_tol: float = 1e-7
    max_rounds: int = 60
    block_hours: int | None = None
    keep_solvers: bool = False

    def __post_init__(self) -> None:
        if self.method != "hours":
            raise GreenSchedError(
                f"decompose method {self.method!r} is not known; expected 'hours'"
            )
        if int(self.workers) < 1:
            raise GreenSchedError(f"workers {self.workers!r} must be an integer >= 1")
        self.workers = int(self.workers)
        if not math.isfinite(self.gap_tol) or self.gap_tol < 0:
            raise GreenSchedError(f"gap_tol {self.gap_tol!r} must be a finite number >= 0")
        if int(self.max_rounds) < 1:
            raise GreenSchedError(f"max_rounds {self.max_rounds!r} must be >= 1")
        if self.block_hours is not None and int(self.block_hours) < 1:
            raise GreenSchedError(f"block_hours {self.block_hours!r} must be >= 1")


@dataclass
class DecomposedPlanResult(PlanResult):
    """A :class:`PlanResult` solved by hour decomposition, with its certificate.

    Attributes
    ----------
    method, engine, workers
        ``"decomposed-hours"``; serial, processes or ray; number of workers.
    gap_usd, gap_relative, lower_bound_usd
        Certified optimality gap of the last phase: its objective minus the Lagrangian lower
        bound g(μ) (USD), and relative to max(1, |objective|).
    rounds
        Pricing rounds over all phases (each solves every hour once).
    water_price_usd_per_l
        Multiplier μ of the water budget in the last phase (0 when it does not bind).
    wall_seconds
        Whole decomposed plan, workers' start to result.
    rounds_log
        Per round: phase, wall seconds, sum and max of the hour solve seconds, bounds.
    """

    method: str = "decomposed-hours"
    engine: str = "serial"
    workers: int = 1
    gap_usd: float = float("nan")
    gap_relative: float = float("nan")
    lower_bound_usd: float = float("nan")
    rounds: int = 0
    water_price_usd_per_l: float = 0.0
    wall_seconds: float = 0.0
    rounds_log: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """``plan.json`` content plus ``method`` and the ``decomposition`` certificate."""
        out = super().to_dict()
        out["method"] = self.method
        out["decomposition"] = {
            "engine": self.engine,
            "workers": self.workers,
            "gap_usd": self.gap_usd,
            "gap_relative": self.gap_relative,
            "lower_bound_usd": self.lower_bound_usd,
            "rounds": self.rounds,
            "water_price_usd_per_l": self.water_price_usd_per_l,
            "wall_seconds": self.wall_seconds,
        }
        return out


@dataclass
class _Column:
    hour: int
    worker: int
    index: int
    f: np.ndarray


@dataclass
class _Phase:
    ok: bool
    upper: float
    lower: float
    lam: np.ndarray
    mu: np.ndarray
    rounds: int
    status: SolveStatus = SolveStatus.OPTIMAL
    message: str = ""


class _Coordinator:
    """The column pool, the master LP and the pricing rounds."""

    def __init__(self, pool: WorkerPool, hours: int, log: list[dict[str, Any]]):
        self.pool = pool
        self.T = hours
        self.cols: list[_Column] = []
        self.log = log
        self.solve_s = 0.0

    def price(self, coef: np.ndarray, phase: str) -> list[HourSolve]:
        t0 = time.perf_counter()
        results = self.pool.call("solve", [(coef,)] * self.pool.workers)
        wall = time.perf_counter() - t0
        flat: list[HourSolve] = []
        per_worker = []
        for w, sols in enumerate(results):
            per_worker.append(sum(s.seconds for s in sols))
            for s in sols:
                flat.append(s)
                if s.ok:
                    self.cols.append(_Column(s.hour, w, s.column, np.asarray(s.functionals)))
        secs = [s.seconds for s in flat]
        self.solve_s += sum(secs)
        self.log.append(
            {
                "phase": phase,
                "wall_seconds": wall,
                "hour_seconds_sum": float(sum(secs)),
                "hour_seconds_max": float(max(secs)) if secs else 0.0,
                "worker_seconds_max": float(max(per_worker)) if per_worker else 0.0,
                "iterations": int(sum(s.iterations for s in flat)),
            }
        )
        return flat

    def master(
        self, obj: np.ndarray, rows: list[tuple[np.ndarray, float]]
    ) -> tuple[bool, float, np.ndarray, np.ndarray]:
        """Restricted master LP; returns (ok, value, λ per column, μ per coupling row)."""
        import highspy

        F = np.stack([c.f for c in self.cols])  # columns × functionals
        hours = np.array([c.hour for c in self.cols])
        n = len(self.cols)
        conv = sp.csr_array((np.ones(n), (hours, np.arange(n))), shape=(self.T, n))
        if rows:
            coup = sp.csr_array(np.stack([F @ a for a, _ in rows]))
            A = sp.csc_array(sp.vstack([conv, coup]))
            b = np.array([bk for _, bk in rows])
        else:
            A = sp.csc_array(conv)
            b = np.zeros(0)
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = int(A.shape[0])
        lp.col_cost_ = F @ obj
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.full(n, np.inf)
        lp.row_lower_ = np.concatenate([np.ones(self.T), np.full(len(b), -np.inf)])
        lp.row_upper_ = np.concatenate([np.ones(self.T), b])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        h.passModel(lp)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return False, math.nan, np.zeros(n), np.zeros(len(b))
        sol = h.getSolution()
        lam = np.clip(np.asarray(sol.col_value), 0.0, None)
        duals = np.asarray(sol.row_dual)[self.T :]
        mu = np.clip(-duals, 0.0, None)
        return True, float(np.asarray(sol.col_value) @ (F @ obj)), lam, mu

    def weights(self, lam: np.ndarray) -> list[dict[int, list[tuple[int, float]]]]:
        out: list[dict[int, list[tuple[int, float]]]] = [{} for _ in range(self.pool.workers)]
        full = np.zeros(len(self.cols))
        full[: len(lam)] = lam  # columns priced after the last master have λ = 0
        for c, lv in zip(self.cols, full, strict=True):
            out[c.worker].setdefault(c.hour, [])
            if lv > 0:
                out[c.worker][c.hour].append((c.index, float(lv)))
        return out

    def _bracket_water(
        self,
        obj: np.ndarray,
        rows: list[tuple[np.ndarray, float]],
        sols: list[HourSolve],
        name: str,
        max_steps: int = 16,
    ) -> _Phase:
        """Raise the water price until the hour solutions meet the budget (a feasible master).

        μ₀ = 0 used W₀ > Z litres.  The next price extrapolates the slope of W(μ) to W = Z
        (at least ×2, at most ×16 the last price; the first guess is 5 % of the cost per litre
        at μ₀).  After ``max_steps``, or when a higher price saves no more water, the hours
        are solved for the least water they can use: above Z, the budget is infeasible
        (certified).
        """
        k = next(i for i, (a, _) in enumerate(rows) if a[_WATER] > 0)
        a_w, z = rows[k]
        water = np.zeros(len(FUNCTIONALS))
        water[_WATER] = 1.0
        w_prev = float(sum(s.functionals[_WATER] for s in sols))
        value0 = abs(float(sum(s.value for s in sols)))
        mu_prev = 0.0
        mu = 0.05 * max(value0, 1e-9) / max(w_prev, 1e-12)
        lower = -math.inf
        steps = 0
        for _ in range(max_steps):
            coef = obj + mu * a_w
            got = self.price(coef, name + ":bracket")
            steps += 1
            if any(not s.ok for s in got):  # pragma: no cover - hours were feasible at μ₀
                s = next(s for s in got if not s.ok)
                return _Phase(
                    False,
                    math.nan,
                    lower,
                    np.zeros(0),
                    np.zeros(len(rows)),
                    steps,
                    SolveStatus.ERROR,
                    f"hour {s.hour} ended {s.status} in pricing",
                )
            w_now = float(sum(s.functionals[_WATER] for s in got))
            if len(rows) == 1:
                lower = max(lower, float(sum(s.value for s in got)) - mu * z)
            self.log[-1].update(mu=[mu], water_l=w_now)
            if w_now <= z + 1e-9 * max(1.0, abs(z)):
                return _Phase(True, math.nan, lower, np.zeros(0), np.zeros(len(rows)), steps)
            if w_prev - w_now <= 1e-7 * max(1.0, abs(w_prev)):
                break  # the price no longer buys water: check the least water instead
            slope = (w_prev - w_now) / (mu - mu_prev)
            guess = mu + (w_now - z) / slope if slope > 0 else 16 * mu
            mu_prev, w_prev = mu, w_now
            mu = min(max(guess, 2 * mu), 16 * mu)
        got = self.price(water, name + ":min-water")
        steps += 1
        w_min = float(sum(s.functionals[_WATER] for s in got))
        if w_min > z + 1e-9 * max(1.0, abs(z)):
            return _Phase(
                False,
                math.nan,
                lower,
                np.zeros(0),
                np.zeros(len(rows)),
                steps,
                SolveStatus.INFEASIBLE,
                f"water budget {z:.6g} l is below the least water any plan uses, {w_min:.6g} l",
            )
        return _Phase(True, math.nan, lower, np.zeros(0), np.zeros(len(rows)), steps)

    def solve_phase(
        self,
        name: str,
        obj: np.ndarray,
        rows: list[tuple[np.ndarray, float]],
        tol: float,
        max_rounds: int,
        first: bool,
    ) -> _Phase:
        """One objective under coupling rows; ``first`` starts the column pool."""
        lower = -math.inf
        rounds = 0
        if first:
            sols = self.price(obj, name)
            rounds += 1
            bad = [s for s in sols if not s.ok]
            if bad:
                return _Phase(
                    False,
                    math.nan,
                    math.nan,
                    np.zeros(0),
                    np.zeros(len(rows)),
                    rounds,
                    SolveStatus.INFEASIBLE,
                    f"hour {bad[0].hour} is {bad[0].status}",
                )
            total = np.sum([s.functionals for s in sols], axis=0)
            lower = float(sum(s.value for s in sols))
            if all(a @ total <= bk + 1e-9 * max(1.0, abs(bk)) for a, bk in rows):
                lam = np.zeros(len(self.cols))
                lam[len(self.cols) - len(sols) :] = 1.0
                self.log[-1].update(upper=lower, lower=lower)
                return _Phase(True, lower, lower, lam, np.zeros(len(rows)), rounds)
            bracket = self._bracket_water(obj, rows, sols, name)
            rounds += bracket.rounds
            lower = max(lower, bracket.lower)
            if not bracket.ok:
                return bracket
        while True:
            ok, upper, lam, mu = self.master(obj, rows)
            if not ok:
                return _Phase(
                    False,
                    math.nan,
                    lower,
                    lam,
                    mu,
                    rounds,
                    SolveStatus.INFEASIBLE,
                    "the coupling rows cannot be met by the hour solutions",
                )
            coef = obj + sum(
                (m * a for m, (a, _) in zip(mu, rows, strict=True)), np.zeros(len(FUNCTIONALS))
            )
            sols = self.price(coef, name)
            rounds += 1
            if any(not s.ok for s in sols):
                s = next(s for s in sols if not s.ok)
                return _Phase(
                    False,
                    math.nan,
                    lower,
                    lam,
                    mu,
                    rounds,
                    SolveStatus.ERROR,
                    f"hour {s.hour} ended {s.status} in pricing",
                )
            g = float(sum(s.value for s in sols)) - float(
                sum(m * bk for m, (_, bk) in zip(mu, rows, strict=True))
            )
            lower = max(lower, g)
            self.log[-1].update(upper=upper, lower=lower, mu=[float(v) for v in mu])
            if upper - lower <= tol * max(1.0, abs(upper)) or rounds >= max_rounds:
                return _Phase(True, upper, lower, lam, mu, rounds)


def plan_decomposed(
    scenario: Scenario,
    config: PlanConfig | None = None,
    decompose: DecomposeConfig | None = None,
) -> DecomposedPlanResult:
    """Plan ``scenario`` by hour decomposition; same optimum as :func:`plan` within the gap.

    Weighted mode prices the water budget; lexicographic mode solves each phase the same way,
    with the earlier phases' ε-rows as further coupling rows.  The result carries the method,
    the engine and the certified gap of the last phase.
    """
    cfg = config or PlanConfig()
    dcfg = decompose or DecomposeConfig()
    if cfg.solver != "highs":
        raise SolverUnavailableError(
            f"decomposed planning warm-starts HiGHS; solver {cfg.solver!r} is not supported "
            "with decompose (drop --solver or --decompose)"
        )
    t_start = time.perf_counter()
    T = scenario.hours
    pool = make_pool(dcfg.workers, dcfg.ray_address)
    result = DecomposedPlanResult(
        status=SolveStatus.ERROR,
        mode=cfg.mode,
        solver="highs",
        engine=pool.engine.value,
        workers=pool.workers,
    )
    try:
        split = [list(map(int, a)) for a in np.array_split(np.arange(T), pool.workers)]
        t0 = time.perf_counter()
        delay = cfg.delay_options()
        result.delay_model = delay.model_of(scenario)
        pool.call(
            "build",
            [(scenario, hrs, dcfg.block_hours, delay, dcfg.keep_solvers) for hrs in split],
        )
        result.build_seconds = time.perf_counter() - t0
        coord = _Coordinator(pool, T, result.rounds_log)
        rows: list[tuple[np.ndarray, float]] = []
        if scenario.water_budget_l is not None:
            a = np.zeros(len(FUNCTIONALS))
            a[_WATER] = 1.0
            rows.append((a, float(scenario.water_budget_l)))
        water_rows = len(rows)
        if cfg.mode == "weighted":
            w = (
                cfg.weights
                if cfg.weights is not None
                else tuple(scenario.weights[k] for k in OBJECTIVES)
            )
            total = float(sum(w))
            weights = {k: float(v) / total for k, v in zip(OBJECTIVES, w, strict=True)}
            result.weights = weights
            objs = [("weighted", np.array([weights[k] for k in OBJECTIVES] + [0.0]))]
        else:
            result.order = list(cfg.order)
            result.epsilon = cfg.epsilon
            objs = []
            for name in cfg.order:
                vec = np.zeros(len(FUNCTIONALS))
                vec[OBJECTIVES.index(name)] = 1.0
                objs.append((name, vec))
        phase: _Phase | None = None
        for i, (name, obj) in enumerate(objs):
            phase = coord.solve_phase(name, obj, rows, dcfg.gap_tol, dcfg.max_rounds, i == 0)
            result.rounds += phase.rounds
            if not phase.ok:
                result.status = phase.status
                result.message = f"phase {i + 1} ({name}): {phase.message}"
                break
            f = np.asarray(
                sum(
                    (lv * c.f for c, lv in zip(coord.cols, phase.lam, strict=False)),
                    np.zeros(len(FUNCTIONALS)),
                )
            )
            comps = {f"{k}_usd": float(f[j]) for j, k in enumerate(OBJECTIVES)}
            comps["total_usd"] = sum(comps[f"{k}_usd"] for k in OBJECTIVES)
            result.phases.append(
                {
                    "phase": i + 1,
                    "objective": name,
                    "value_usd": phase.upper,
                    **comps,
                    "lower_bound_usd": phase.lower,
                    "gap_usd": phase.upper - phase.lower,
                    "rounds": phase.rounds,
                }
            )
            if cfg.mode == "lexicographic" and i < len(objs) - 1:
                best = phase.upper
                room = cfg.epsilon * abs(best) + 1e-9 * max(1.0, abs(best))
                rows.append((obj, best + room))
        result.solve_s = coord.solve_s
        if phase is None or not phase.ok:
            if phase is not None and "water budget" in phase.message:
                result.diagnosis = [{"family": "water", "where": {}, "message": phase.message}]
            elif cfg.diagnose and phase is not None and phase.message.startswith("hour "):
                from greensched.scheduler.planner import diagnose_infeasibility

                hour = int(phase.message.split()[1])
                sub = scenario.subset(hours=[hour])
                sub.water_budget_l = None
                result.diagnosis = diagnose_infeasibility(sub, "highs")
                for row in result.diagnosis:
                    if "hour" in row.get("where", {}):
                        row["where"]["hour"] = hour
            return result
        parts: dict[int, dict[str, Any]] = {}
        for got in pool.call("combine", [(w,) for w in coord.weights(phase.lam)]):
            parts.update(got)
        assemble_result(result, scenario, parts, delay)
        if water_rows:
            mu_w = float(phase.mu[0])
            result.water_price_usd_per_l = mu_w
            result.duals["water"] = xr.DataArray(-mu_w)
        result.status = SolveStatus.OPTIMAL
        result.lower_bound_usd = phase.lower
        result.gap_usd = max(0.0, phase.upper - phase.lower)
        result.gap_relative = result.gap_usd / max(1.0, abs(phase.upper))
        for ph in result.phases:
            ph["solve_seconds"] = sum(
                r["hour_seconds_sum"]
                for r in result.rounds_log
                if str(r["phase"]).split(":")[0] == ph["objective"]
            )
    finally:
        pool.close()
        result.wall_seconds = time.perf_counter() - t_start
    return result


def rounds_frame(result: DecomposedPlanResult) -> pd.DataFrame:
    """The per-round log as a table (for reports)."""
    return pd.DataFrame(result.rounds_log)
