"""Online equitable GLB by dual mirror descent (no knowledge of future hours).

Follows the online algorithm of Li, Yang, Wierman, Ren, "Towards Environmentally Equitable AI via
Geographical Load Balancing" (arXiv 2307.05494; public code Ren-Research/Environmentally-
Equitable-AI), as written in ``../shared/spec/equity-relocation.md``:

* The environmental term over the horizon, g(Σ_t B_t x_t) with g a (scaled) Lq norm per group
  (carbon, water, or their weighted sum), is positively homogeneous, so
  g(Σ_t B_t x_t) ≤ Σ_t g(z_t) whenever Σ_t z_t ≥ Σ_t B_t x_t.  The auxiliary z_t takes the
  place of the hour's environmental footprint and a dual γ ≥ 0 prices the coupling row.
* Each hour t, with dual γ_t (γ_1 = 0):
  (1) x_t = argmin  cost_t(x) + f_t(x) + ⟨γ_t, B_t x⟩   over (4b), (4c) and the masks
      (cost_t: energy + moving; f_t: the social term; one SE-GLB solve of that hour);
  (2) z_t = argmin_{0 ≤ z ≤ z_max} Σ_g ‖z_g‖_q − ⟨γ_t, z⟩   (closed form for q ∈ {1, ∞});
  (3) γ_{t+1} = max(0, γ_t + η (B_t x_t − z_t))   (Euclidean mirror map: projected step; the
      projection keeps the price of an inequality row non-negative).
* z_max,g,i,t is the footprint of DC i running its most polluting allowed model at full capacity
  in hour t (known at t).  η = ``eta`` / (mean z_max × √T).

The regret is the offline SE-GLB objective of the online decisions minus the offline optimum.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from greensched.errors import GreenSchedError
from greensched.scheduler.equity.problem import EquityConfig, EquityProblem
from greensched.scheduler.equity.seglb import (
    EquityResult,
    build_matrices,
    evaluate_objective,
    flatten,
    solve_seglb,
)

__all__ = ["OnlineResult", "auxiliary_step", "solve_online"]


def auxiliary_step(gamma: np.ndarray, z_max: np.ndarray, q: float, scale: float) -> np.ndarray:
    """argmin_{0 ≤ z ≤ z_max} scale·‖z‖_q − γᵀz for one group (vectors of length N).

    q = 1: z_i = z_max,i where γ_i > scale, else 0.  q = ∞: z_i = min(L, z_max,i) on the DCs with
    γ_i > 0, with the level L the best breakpoint of the convex piecewise-linear
    scale·L − Σ γ_i min(L, z_max,i).  Other q: a small conic problem (cvxpy + Clarabel).
    """
    g = np.maximum(np.asarray(gamma, dtype=float), 0.0)
    zm = np.asarray(z_max, dtype=float)
    if q == 1.0:
        return np.where(g > scale, zm, 0.0)
    if math.isinf(q):
        levels = np.concatenate([[0.0], np.unique(zm)])
        vals = [scale * lv - float(g @ np.minimum(lv, zm)) for lv in levels]
        level = float(levels[int(np.argmin(vals))])
        return np.where(g > 0, np.minimum(level, zm), 0.0)
    import cvxpy as cp

    # Solve in units of the largest z_max (u = z / s) so the conic solver sees O(1) numbers.
    s = max(float(zm.max()), 1e-300)
    u = cp.Variable(len(zm), nonneg=True)
    norm = cp.norm(u, 2) if q == 2.0 else cp.pnorm(u, p=cast(Any, q), approx=False)
    prob = cp.Problem(cp.Minimize(scale * norm - g @ u), [u <= zm / s])
    prob.solve(solver=cp.CLARABEL)
    if u.value is None:  # pragma: no cover - a box-constrained convex problem always solves
        raise GreenSchedError(f"auxiliary step failed: {prob.status}")
    z = np.asarray(u.value) * s
    return np.clip(z, 0.0, zm)


@dataclass
class OnlineResult:
    """Online decisions over the horizon and their comparison with the offline optimum."""

    config: EquityConfig
    y: np.ndarray  # [dc, region, model, hour]
    components: dict[str, float]
    offline: EquityResult | None
    gamma: np.ndarray  # [hour + 1, group, dc]
    eta: float
    solve_s: float
    hourly_s: list[float] = field(default_factory=list)

    @property
    def regret_usd(self) -> float:
        """Online objective minus the offline optimum (USD); NaN without an offline solve."""
        if self.offline is None or not self.offline.is_ok:
            return math.nan
        return self.components["objective_usd"] - self.offline.objective_usd

    @property
    def regret_ratio(self) -> float:
        """Regret relative to the offline optimum."""
        if self.offline is None or not self.offline.is_ok:
            return math.nan
        return self.regret_usd / self.offline.objective_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary."""
        return {
            "config": self.config.to_dict(),
            "eta": self.eta,
            "components": self.components,
            "offline_objective_usd": (
                self.offline.objective_usd if self.offline and self.offline.is_ok else None
            ),
            "regret_usd": self.regret_usd,
            "regret_ratio": self.regret_ratio,
            "solve_s": self.solve_s,
        }


def _hour_env_coef(problem: EquityProblem, cfg: EquityConfig, t: int) -> np.ndarray:
    """[group, dc, model] USD of environmental footprint per request at hour t (scaled)."""
    fac = problem.facility_kwh_per_request()
    scale = cfg.env_scale(len(problem.dcs))
    carbon = fac * problem.carbon_kg_per_kwh[:, t, None] * (cfg.mu_c_usd_per_t / 1000.0)
    water = fac * problem.water_l_per_kwh[:, t, None] * (cfg.mu_w_usd_per_m3 / 1000.0)
    if str(cfg.env_form) == "separate":
        return scale * np.stack([carbon, water])
    return scale * (carbon + water)[None]


def _z_max(problem: EquityProblem, coef: np.ndarray) -> np.ndarray:
    """[group, dc] footprint of each DC at full capacity with its most polluting model."""
    with np.errstate(divide="ignore"):
        per_res = np.where(
            problem.resource_per_request > 0,
            problem.capacity[:, None, :] / problem.resource_per_request,
            np.inf,
        )
    max_requests = per_res.min(axis=2)  # [dc, model]
    max_requests = np.where(np.isfinite(max_requests), max_requests, problem.demand.max())
    foot = coef * np.where(problem.model_mask, max_requests, 0.0)[None]
    return np.asarray(foot.max(axis=2))


def solve_online(
    problem: EquityProblem,
    config: EquityConfig,
    *,
    eta: float = 1.0,
    offline: bool = True,
) -> OnlineResult:
    """Run the online dual-mirror-descent algorithm hour by hour; optionally solve offline too.

    Raises
    ------
    GreenSchedError
        If ``eta`` is negative or an hour's subproblem is infeasible.  ``eta = 0`` keeps γ = 0:
        the equity-oblivious hour-by-hour baseline.
    """
    if not (eta >= 0 and math.isfinite(eta)):
        raise GreenSchedError(f"eta={eta!r}: expected a finite number >= 0 (0 = no dual)")
    t0 = time.perf_counter()
    n, nj, nk, nt = problem.shape
    hour_cfg = EquityConfig(
        q_social=config.q_social,
        q_env=1.0,
        mu_s_usd=config.mu_s_usd,
        mu_c_usd_per_t=0.0,
        mu_w_usd_per_m3=0.0,
        include_moving=config.include_moving,
        mean_scaled=config.mean_scaled,
        name=f"{config.name} (online hour)",
    )
    coefs = [_hour_env_coef(problem, config, t) for t in range(nt)]
    zmax = [_z_max(problem, c) for c in coefs]
    step = eta / (max(float(np.mean(zmax)), 1e-12) * math.sqrt(nt))
    groups = coefs[0].shape[0]
    gamma = np.zeros((nt + 1, groups, n))
    y = np.zeros((n, nj, nk, nt))
    hourly: list[float] = []
    scale = 1.0  # coefs already carry μ and the power-mean factor
    for t in range(nt):
        hour = problem.window(t, t + 1)
        mats = build_matrices(hour)
        p = mats.pairs
        extra = np.einsum("gp,gp->p", gamma[t][:, p[:, 0]], coefs[t][:, p[:, 0], p[:, 2]])
        res = solve_seglb(hour, hour_cfg, extra_cost_usd=extra, matrices=mats)
        if not res.is_ok or res.y is None:
            raise GreenSchedError(
                f"online hour {problem.hours[t]!r}: subproblem {res.status} ({res.message})"
            )
        hourly.append(res.solve_s)
        y[..., t] = res.y[..., 0]
        b = np.einsum("ijk,gik->gi", res.y[..., 0], coefs[t])  # B_t x_t, [group, dc]
        z = np.stack(
            [auxiliary_step(gamma[t, g], zmax[t][g], config.q_env, scale) for g in range(groups)]
        )
        gamma[t + 1] = np.maximum(0.0, gamma[t] + step * (b - z))
    mats_all = build_matrices(problem)
    comps = evaluate_objective(mats_all, config, flatten(problem, mats_all, y), nj)
    off = solve_seglb(problem, config, matrices=mats_all) if offline else None
    return OnlineResult(
        config=config,
        y=y,
        components=comps,
        offline=off,
        gamma=gamma,
        eta=eta,
        solve_s=time.perf_counter() - t0,
        hourly_s=hourly,
    )
