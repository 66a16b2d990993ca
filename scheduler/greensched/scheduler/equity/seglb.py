"""Build and solve SE-GLB (spec eq. 4): an LP on HiGHS for q ∈ {1, ∞}, a conic program otherwise.

Decision y^k_{i,j}(t) ≥ 0 (requests).  Only allowed (i, j, k) triples (route and model masks)
get a column; columns are ordered hour-major, ``v = t * P + p`` over the P allowed triples.

Objective (USD), for a configuration :class:`~greensched.scheduler.equity.problem.EquityConfig`::

    Σ_t Σ_i p_{i,t} γ_i e_i(t)                                  energy cost
  + μ_s Σ_t ‖( Σ_{i,k} s_k y^k_{i,j}(t) / λ_{j,t} )_j‖_{q_s}     social term f_t (eq. 2)
  + ‖( Σ_t μ_c C_{i,t} + μ_w W_{i,t} )_i‖_{q_e}                  environmental term g (eq. 3)
  + Σ y^k_{i,j}(t) m_{ij}                                        moving cost

with C_{i,t} = γ_i e_i(t) c_{i,t} (t CO2) and W_{i,t} = γ_i e_i(t) w_{i,t} (m³).  Constraints:
Σ_{i,k} y = λ_{j,t} (4b) and Σ_{j,k} r_{i,k,r} y ≤ M_{i,r} for every resource (4c).

q = 1 makes a norm of the non-negative vector a plain sum (a linear term); q = ∞ becomes an
epigraph variable u ≥ every entry.  Other q use cvxpy's p-norm cone with Clarabel.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from greensched.errors import GreenSchedError, SolverUnavailableError
from greensched.scheduler.backends import SolveStatus, make_backend
from greensched.scheduler.equity.problem import EnvForm, EquityConfig, EquityProblem

__all__ = [
    "EquityMatrices",
    "EquityResult",
    "build_matrices",
    "evaluate_objective",
    "lq_norm",
    "solve_seglb",
]

SOLVERS = ("auto", "highs", "clarabel")


def lq_norm(v: np.ndarray, q: float, axis: int | None = None) -> np.ndarray:
    """‖v‖_q of a non-negative array (q ≥ 1 or inf), along ``axis``."""
    a = np.abs(np.asarray(v, dtype=float))
    if math.isinf(q):
        return np.asarray(a.max(axis=axis, initial=0.0))
    if q == 1.0:
        return np.asarray(a.sum(axis=axis))
    m = a.max(axis=axis, keepdims=True, initial=0.0)
    safe = np.where(m > 0, m, 1.0)
    out = np.squeeze(safe * ((a / safe) ** q).sum(axis=axis, keepdims=True) ** (1.0 / q), axis)
    return np.asarray(out)


@dataclass
class EquityMatrices:
    """Sparse matrix form of one problem (columns: allowed triples × hours, hour-major).

    ``social`` rows are (hour, region) in C order, ``capacity`` rows (hour, dc, resource),
    ``demand`` rows (hour, region), ``carbon_kg`` / ``water_l`` / ``it_kwh`` rows are DCs
    (horizon totals) and ``it_kwh_hourly`` rows (hour, dc).
    """

    pairs: np.ndarray  # (P, 3) of (i, j, k)
    n_hours: int
    energy_usd: np.ndarray
    move_usd: np.ndarray
    demand: sp.csr_array
    demand_rhs: np.ndarray
    capacity: sp.csr_array
    capacity_rhs: np.ndarray
    social: sp.csr_array
    carbon_kg: sp.csr_array
    water_l: sp.csr_array
    it_kwh_hourly: sp.csr_array

    @property
    def n_cols(self) -> int:
        """Number of y columns."""
        return len(self.pairs) * self.n_hours

    def env_groups(self, cfg: EquityConfig) -> list[sp.csr_array]:
        """Environmental rows in USD per DC: one group (combined) or two (separate)."""
        scale = cfg.env_scale(self.carbon_kg.shape[0])
        c = self.carbon_kg * (scale * cfg.mu_c_usd_per_t / 1000.0)
        w = self.water_l * (scale * cfg.mu_w_usd_per_m3 / 1000.0)
        if cfg.env_form is EnvForm.SEPARATE:
            return [sp.csr_array(c), sp.csr_array(w)]
        return [sp.csr_array(c + w)]

    def linear_usd(self, cfg: EquityConfig) -> np.ndarray:
        """Energy cost (+ moving cost when configured) per column."""
        return self.energy_usd + (self.move_usd if cfg.include_moving else 0.0)


def build_matrices(problem: EquityProblem) -> EquityMatrices:
    """Assemble :class:`EquityMatrices` for ``problem``."""
    n, nj, _, nt = problem.shape
    nr = len(problem.resources)
    pairs = np.argwhere(problem.allowed)
    npair = len(pairs)
    ii, jj, kk = pairs[:, 0], pairs[:, 1], pairs[:, 2]
    cols = np.arange(npair * nt)
    tt = np.repeat(np.arange(nt), npair)
    pi, pj, pk = np.tile(ii, nt), np.tile(jj, nt), np.tile(kk, nt)
    ncol = npair * nt

    fac = problem.facility_kwh_per_request()[pi, pk]  # facility kWh per request
    energy_usd = problem.price_usd_per_kwh[pi, tt] * fac
    move_usd = problem.move_cost_usd_per_request[pi, pj].astype(float)

    demand = sp.csr_array((np.ones(ncol), (tt * nj + pj, cols)), shape=(nt * nj, ncol))
    demand_rhs = problem.demand.T.ravel()

    rows, vals, ccols = [], [], []
    for r in range(nr):
        coef = problem.resource_per_request[pi, pk, r]
        keep = coef != 0
        rows.append((tt * n + pi) * nr + r)
        vals.append(coef)
        ccols.append(cols)
        rows[-1], vals[-1], ccols[-1] = rows[-1][keep], vals[-1][keep], ccols[-1][keep]
    capacity = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(ccols))),
        shape=(nt * n * nr, ncol),
    )
    capacity_rhs = np.tile(problem.capacity.ravel(), nt)

    lam = problem.demand[pj, tt]
    with np.errstate(divide="ignore", invalid="ignore"):
        sval = np.where(lam > 0, problem.perf_cost[pk] / np.where(lam > 0, lam, 1.0), 0.0)
    social = sp.csr_array((sval, (tt * nj + pj, cols)), shape=(nt * nj, ncol))

    carbon_kg = sp.csr_array((fac * problem.carbon_kg_per_kwh[pi, tt], (pi, cols)), shape=(n, ncol))
    water_l = sp.csr_array((fac * problem.water_l_per_kwh[pi, tt], (pi, cols)), shape=(n, ncol))
    it = problem.energy_kwh_per_request[pi, pk]
    it_kwh_hourly = sp.csr_array((it, (tt * n + pi, cols)), shape=(nt * n, ncol))
    return EquityMatrices(
        pairs=pairs,
        n_hours=nt,
        energy_usd=energy_usd,
        move_usd=move_usd,
        demand=demand,
        demand_rhs=demand_rhs,
        capacity=capacity,
        capacity_rhs=capacity_rhs,
        social=social,
        carbon_kg=carbon_kg,
        water_l=water_l,
        it_kwh_hourly=it_kwh_hourly,
    )


def evaluate_objective(
    mats: EquityMatrices, cfg: EquityConfig, y: np.ndarray, n_regions: int
) -> dict[str, float]:
    """Objective components (USD) of the column vector ``y`` under ``cfg``."""
    social_rows = (mats.social @ y).reshape(mats.n_hours, n_regions)
    social = cfg.social_scale(n_regions) * float(lq_norm(social_rows, cfg.q_social, axis=1).sum())
    env = float(sum(float(lq_norm(g @ y, cfg.q_env)) for g in mats.env_groups(cfg)))
    energy = float(mats.energy_usd @ y)
    moving = float(mats.move_usd @ y) if cfg.include_moving else 0.0
    return {
        "energy_usd": energy,
        "social_usd": social,
        "environmental_usd": env,
        "moving_usd": moving,
        "objective_usd": energy + social + env + moving,
    }


@dataclass
class EquityResult:
    """Outcome of one SE-GLB solve; read ``y`` and ``components`` only when :attr:`is_ok`."""

    status: SolveStatus
    config: EquityConfig
    problem: EquityProblem
    solver: str
    solve_s: float
    build_s: float
    y: np.ndarray | None = None  # [dc, region, model, hour] requests
    components: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def is_ok(self) -> bool:
        """True when a solution is available."""
        return self.status.is_ok

    @property
    def objective_usd(self) -> float:
        """Total objective (USD); raises when not ok."""
        if not self.is_ok:
            raise GreenSchedError(f"no solution: status {self.status}, {self.message}")
        return self.components["objective_usd"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary."""
        return {
            "status": str(self.status),
            "config": self.config.to_dict(),
            "solver": self.solver,
            "solve_s": self.solve_s,
            "build_s": self.build_s,
            "components": dict(self.components),
            "message": self.message,
        }


def _unflatten(problem: EquityProblem, mats: EquityMatrices, y: np.ndarray) -> np.ndarray:
    n, nj, nk, nt = problem.shape
    out = np.zeros((n, nj, nk, nt))
    yt = y.reshape(nt, len(mats.pairs))
    p = mats.pairs
    out[p[:, 0], p[:, 1], p[:, 2], :] = yt.T
    return out


def _solve_lp(
    problem: EquityProblem,
    mats: EquityMatrices,
    cfg: EquityConfig,
    extra: np.ndarray,
    threads: int | None,
) -> tuple[SolveStatus, np.ndarray | None, float, str]:
    n = mats.n_cols
    nt, nj = mats.n_hours, len(problem.regions)
    c = mats.linear_usd(cfg) + extra
    groups = mats.env_groups(cfg)
    blocks_a: list[sp.csr_array] = [mats.demand, mats.capacity]
    lo = [mats.demand_rhs, np.full(mats.capacity.shape[0], -np.inf)]
    up = [mats.demand_rhs, mats.capacity_rhs]
    extra_cols = 0
    social_on = cfg.mu_s_usd > 0
    mu_s = cfg.social_scale(nj)
    if social_on and cfg.q_social == 1.0:
        c = c + mu_s * np.asarray(mats.social.sum(axis=0)).ravel()
    if cfg.q_env == 1.0:
        for g in groups:
            c = c + np.asarray(g.sum(axis=0)).ravel()
    aux_costs: list[np.ndarray] = []
    aux_rows: list[tuple[sp.csr_array, sp.csr_array]] = []
    if social_on and math.isinf(cfg.q_social):
        # u_t ≥ social_{t,j}: S y − kron(I_T, 1_J) u ≤ 0
        sel = sp.csr_array(sp.kron(sp.eye(nt), np.ones((nj, 1))))
        aux_rows.append((mats.social, sel))
        aux_costs.append(np.full(nt, mu_s))
        extra_cols += nt
    if math.isinf(cfg.q_env):
        for g in groups:
            aux_rows.append((g, sp.csr_array(np.ones((g.shape[0], 1)))))
            aux_costs.append(np.ones(1))
            extra_cols += 1
    # Assemble [A_y | A_aux].
    rows_y: list[Any] = list(blocks_a)
    aux_blocks: list[Any] = [sp.csr_array((b.shape[0], extra_cols)) for b in blocks_a]
    offset = 0
    for a_y, sel in aux_rows:
        rows_y.append(a_y)
        nrow, width = a_y.shape[0], sel.shape[1]
        aux_blocks.append(
            sp.hstack(
                [
                    sp.csr_array((nrow, offset)),
                    -sp.csr_array(sel),
                    sp.csr_array((nrow, extra_cols - offset - width)),
                ]
            )
        )
        lo.append(np.full(nrow, -np.inf))
        up.append(np.zeros(nrow))
        offset += width
    a_full = sp.csr_array(sp.hstack([sp.vstack(rows_y), sp.vstack(aux_blocks)]))
    cost = np.concatenate([c, *aux_costs]) if aux_costs else c
    backend = make_backend("highs", threads=threads)
    backend.load(
        a_full,
        np.concatenate(lo),
        np.concatenate(up),
        np.zeros(n + extra_cols),
        np.full(n + extra_cols, np.inf),
    )
    backend.set_objective(cost)
    sol = backend.solve()
    if not sol.status.is_ok or sol.x is None:
        return sol.status, None, sol.seconds, sol.message
    return sol.status, np.maximum(sol.x[:n], 0.0), sol.seconds, ""


def _lq_epigraph(cp: Any, v: Any, rows: int, width: int, q: float) -> tuple[Any, list[Any]]:
    """Epigraph e_r ≥ ‖v_r‖_q of each row r of the non-negative vector ``v`` (row-major blocks).

    Power-cone form: Σ_j ρ_{r,j} = e_r and ρ^{1/q} e^{1-1/q} ≥ |v_{r,j}|, so that
    Σ_j |v_{r,j}|^q ≤ e_r^{q-1} Σ_j ρ_{r,j} = e_r^q (Clarabel supports 3-d power cones).
    """
    epi = cp.Variable(rows, nonneg=True)
    rho = cp.Variable(rows * width, nonneg=True)
    spread = sp.csr_array(sp.kron(sp.eye(rows), np.ones((width, 1))))  # (rows*width, rows)
    cons = [
        spread.T @ rho == epi,
        cp.PowCone3D(rho, spread @ epi, v, 1.0 / q),
    ]
    return epi, cons


def _solve_conic(
    problem: EquityProblem,
    mats: EquityMatrices,
    cfg: EquityConfig,
    extra: np.ndarray,
) -> tuple[SolveStatus, np.ndarray | None, float, str]:
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SolverUnavailableError(
            "SE-GLB with q not in {1, inf} needs cvxpy and clarabel: pip install "
            "'greensched[equity]'"
        ) from exc
    nt, nj = mats.n_hours, len(problem.regions)
    # Scale columns (requests) and the objective to O(1) for the interior-point method.
    pos = problem.demand[problem.demand > 0]
    s_y = float(pos.max()) if pos.size else 1.0
    lin = mats.linear_usd(cfg) + extra
    groups = mats.env_groups(cfg)
    rough = float(np.abs(lin).mean()) * float(problem.demand.sum())
    rough += sum(float(np.asarray(g.sum(axis=0)).mean()) for g in groups) * float(
        problem.demand.sum()
    )
    s_obj = max(rough, 1.0)
    x = cp.Variable(mats.n_cols, nonneg=True)
    terms = [(lin * (s_y / s_obj)) @ x]
    cons: list[Any] = []
    if cfg.mu_s_usd > 0:
        mu_s = cfg.social_scale(nj)
        soc = (mats.social * (s_y * mu_s / s_obj)) @ x  # rows (hour, region), C order
        if cfg.q_social == 1.0:
            terms.append(cp.sum(soc))
        elif math.isinf(cfg.q_social):
            terms.append(cp.sum(cp.max(cp.reshape(soc, (nt, nj), order="C"), axis=1)))
        elif cfg.q_social == 2.0:
            terms.append(cp.sum(cp.norm(cp.reshape(soc, (nt, nj), order="C"), 2, axis=1)))
        else:
            epi, more = _lq_epigraph(cp, soc, nt, nj, cfg.q_social)
            terms.append(cp.sum(epi))
            cons += more
    for g in groups:
        ge = (g * (s_y / s_obj)) @ x
        if cfg.q_env == 1.0:
            terms.append(cp.sum(ge))
        elif math.isinf(cfg.q_env):
            terms.append(cp.max(ge))
        elif cfg.q_env == 2.0:
            terms.append(cp.norm(ge, 2))
        else:
            epi, more = _lq_epigraph(cp, ge, 1, g.shape[0], cfg.q_env)
            terms.append(cp.sum(epi))
            cons += more
    dem_scale = np.where(mats.demand_rhs > 0, 1.0 / np.maximum(mats.demand_rhs, 1e-300), 1.0 / s_y)
    cap_scale = np.where(
        mats.capacity_rhs > 0, 1.0 / np.maximum(mats.capacity_rhs, 1e-300), 1.0 / s_y
    )
    a_dem = sp.csr_array(sp.diags(dem_scale * s_y) @ mats.demand)
    a_cap = sp.csr_array(sp.diags(cap_scale * s_y) @ mats.capacity)
    cons += [a_dem @ x == mats.demand_rhs * dem_scale, a_cap @ x <= mats.capacity_rhs * cap_scale]
    prob = cp.Problem(cp.Minimize(cp.sum(terms) if len(terms) > 1 else terms[0]), cons)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=cp.CLARABEL)
    except cp.error.SolverError as exc:
        return SolveStatus.ERROR, None, time.perf_counter() - t0, str(exc)
    seconds = time.perf_counter() - t0
    status_map = {
        cp.OPTIMAL: SolveStatus.OPTIMAL,
        cp.OPTIMAL_INACCURATE: SolveStatus.OPTIMAL,
        cp.INFEASIBLE: SolveStatus.INFEASIBLE,
        cp.INFEASIBLE_INACCURATE: SolveStatus.INFEASIBLE,
        cp.UNBOUNDED: SolveStatus.UNBOUNDED,
    }
    status = status_map.get(prob.status, SolveStatus.ERROR)
    message = "" if prob.status == cp.OPTIMAL else str(prob.status)
    if not status.is_ok or x.value is None:
        return status, None, seconds, message
    return status, np.maximum(np.asarray(x.value) * s_y, 0.0), seconds, message


def solve_seglb(
    problem: EquityProblem,
    config: EquityConfig | None = None,
    *,
    solver: str = "auto",
    extra_cost_usd: np.ndarray | None = None,
    threads: int | None = None,
    matrices: EquityMatrices | None = None,
) -> EquityResult:
    """Solve SE-GLB for ``problem`` under ``config``.

    Parameters
    ----------
    solver
        ``"auto"`` (HiGHS when both q ∈ {1, ∞}, else Clarabel), ``"highs"`` (LP only) or
        ``"clarabel"`` (any q, through cvxpy).
    extra_cost_usd
        Optional extra linear cost per column (USD per request; hour-major like the matrices),
        e.g. the online algorithm's dual prices; not reported in ``components``.
    matrices
        Pre-built :func:`build_matrices` output, to reuse across solves.

    Raises
    ------
    GreenSchedError
        Unknown solver, or ``highs`` asked for a q outside {1, ∞}.
    """
    cfg = config or EquityConfig()
    if solver not in SOLVERS:
        raise GreenSchedError(f"solver={solver!r}: expected one of {', '.join(SOLVERS)}")
    if solver == "highs" and not cfg.is_lp:
        raise GreenSchedError(
            f"solver='highs' solves q in {{1, inf}} only (q_social={cfg.q_social}, "
            f"q_env={cfg.q_env}); use 'clarabel' or 'auto'"
        )
    t0 = time.perf_counter()
    mats = matrices or build_matrices(problem)
    extra = np.zeros(mats.n_cols) if extra_cost_usd is None else np.asarray(extra_cost_usd, float)
    if extra.shape != (mats.n_cols,):
        raise GreenSchedError(
            f"extra_cost_usd: shape {extra.shape}, expected ({mats.n_cols},) "
            "(allowed triples × hours)"
        )
    use = ("highs" if cfg.is_lp else "clarabel") if solver == "auto" else solver
    build_s = time.perf_counter() - t0
    if use == "highs":
        status, y, secs, msg = _solve_lp(problem, mats, cfg, extra, threads)
    else:
        status, y, secs, msg = _solve_conic(problem, mats, cfg, extra)
    result = EquityResult(status, cfg, problem, use, secs, build_s, message=msg)
    if status.is_ok and y is not None:
        result.y = _unflatten(problem, mats, y)
        result.components = evaluate_objective(mats, cfg, y, len(problem.regions))
    return result


def flatten(problem: EquityProblem, mats: EquityMatrices, y4: np.ndarray) -> np.ndarray:
    """Column vector (hour-major over allowed triples) of a [dc, region, model, hour] array."""
    p = mats.pairs
    return np.asarray(y4[p[:, 0], p[:, 1], p[:, 2], :].T.ravel())
