"""The SE-GLB paper's four algorithms and its Table 1 metrics.

Cost-GLB: energy + performance cost (μ_c = μ_w = 0, q = 1); All-GLB: weighted sum with carbon
and water, q = 1; E-GLB: environmental equity only (q_env = q, q_social = 1); SE-GLB: both terms
with exponent q (Li, Liu, Yang, Ren, arXiv 2407.05176).

Metrics (horizon totals; "over locations" = over DCs, "over regions" = over user regions):
energy cost avg (USD per location); water avg / max / max÷avg (m³ per location); carbon
avg / max / max÷avg (t per location); performance cost avg / max / max÷avg (request-weighted
mean s_k of a region); performance score avg / min (request-weighted mean benchmark score of a
region, %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.scheduler.equity.problem import (
    DEFAULT_MU_C_USD_PER_T,
    DEFAULT_MU_W_USD_PER_M3,
    EnvForm,
    EquityConfig,
    EquityProblem,
)
from greensched.scheduler.equity.seglb import EquityResult, build_matrices, solve_seglb

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "EquityMetrics",
    "algorithm_config",
    "metrics",
    "run_algorithms",
    "table1",
]

#: Default weight of the social term in the experiments (USD per hour for a unit of
#: power-mean performance cost; see docs/equity.md for the choice).
DEFAULT_MU_S_USD = 10_000.0


class Algorithm(StrEnum):
    """The four load-balancing algorithms of the paper's Table 1."""

    COST_GLB = "cost-glb"
    ALL_GLB = "all-glb"
    E_GLB = "e-glb"
    SE_GLB = "se-glb"

    @property
    def label(self) -> str:
        """Name as printed in the paper."""
        return {"cost-glb": "Cost-GLB", "all-glb": "All-GLB", "e-glb": "E-GLB", "se-glb": "SE-GLB"}[
            self.value
        ]


ALGORITHMS = tuple(Algorithm)


def algorithm_config(
    algorithm: Algorithm | str,
    *,
    q: float | str = 2.0,
    mu_s_usd: float = DEFAULT_MU_S_USD,
    mu_c_usd_per_t: float = DEFAULT_MU_C_USD_PER_T,
    mu_w_usd_per_m3: float = DEFAULT_MU_W_USD_PER_M3,
    env_form: EnvForm | str = EnvForm.COMBINED,
    mean_scaled: bool = True,
) -> EquityConfig:
    """The :class:`EquityConfig` of one algorithm (q is used by E-GLB and SE-GLB only)."""
    try:
        alg = Algorithm(str(algorithm).lower())
    except ValueError:
        raise GreenSchedError(
            f"algorithm {algorithm!r}: expected one of {', '.join(a.value for a in Algorithm)}"
        ) from None
    q_social: float | str = q if alg is Algorithm.SE_GLB else 1.0
    q_env: float | str = q if alg in (Algorithm.E_GLB, Algorithm.SE_GLB) else 1.0
    zero_env = alg is Algorithm.COST_GLB
    return EquityConfig(
        q_social=q_social,  # type: ignore[arg-type]
        q_env=q_env,  # type: ignore[arg-type]
        mu_s_usd=mu_s_usd,
        mu_c_usd_per_t=0.0 if zero_env else mu_c_usd_per_t,
        mu_w_usd_per_m3=0.0 if zero_env else mu_w_usd_per_m3,
        env_form=EnvForm(env_form),
        mean_scaled=mean_scaled,
        name=alg.label,
    )


@dataclass
class EquityMetrics:
    """Per-location and per-region outcomes of one solution (horizon totals)."""

    dcs: tuple[str, ...]
    regions: tuple[str, ...]
    energy_cost_usd: np.ndarray  # [dc]
    carbon_t: np.ndarray  # [dc]
    water_m3: np.ndarray  # [dc]
    perf_cost: np.ndarray  # [region] request-weighted mean s_k
    perf_score: np.ndarray  # [region] request-weighted mean score (%)

    def summary(self) -> dict[str, float]:
        """The Table 1 row."""

        def ratio(v: np.ndarray) -> float:
            avg = float(v.mean())
            return float(v.max()) / avg if avg > 0 else math.nan

        return {
            "energy_cost_avg_usd": float(self.energy_cost_usd.mean()),
            "water_avg_m3": float(self.water_m3.mean()),
            "water_max_m3": float(self.water_m3.max()),
            "water_max_over_avg": ratio(self.water_m3),
            "carbon_avg_t": float(self.carbon_t.mean()),
            "carbon_max_t": float(self.carbon_t.max()),
            "carbon_max_over_avg": ratio(self.carbon_t),
            "perf_cost_avg": float(self.perf_cost.mean()),
            "perf_cost_max": float(self.perf_cost.max()),
            "perf_cost_max_over_avg": ratio(self.perf_cost),
            "perf_score_avg": float(self.perf_score.mean()),
            "perf_score_min": float(self.perf_score.min()),
        }


def metrics(problem: EquityProblem, y: np.ndarray) -> EquityMetrics:
    """Table 1 quantities of the allocation ``y`` [dc, region, model, hour] (requests)."""
    n, nj, nk, nt = problem.shape
    if y.shape != (n, nj, nk, nt):
        raise GreenSchedError(f"y: shape {y.shape}, expected {(n, nj, nk, nt)}")
    fac = problem.facility_kwh_per_request()  # [dc, model]
    facility_kwh = np.einsum("ijkt,ik->it", y, fac)
    served = y.sum(axis=(0, 2, 3))  # [region]
    by_model = y.sum(axis=(0, 3))  # [region, model]
    with np.errstate(invalid="ignore", divide="ignore"):
        perf_cost = np.where(served > 0, by_model @ problem.perf_cost / served, 0.0)
        perf_score = np.where(served > 0, by_model @ problem.perf_score / served, np.nan)
    return EquityMetrics(
        dcs=problem.dcs,
        regions=problem.regions,
        energy_cost_usd=(facility_kwh * problem.price_usd_per_kwh).sum(axis=1),
        carbon_t=(facility_kwh * problem.carbon_kg_per_kwh).sum(axis=1) / 1000.0,
        water_m3=(facility_kwh * problem.water_l_per_kwh).sum(axis=1) / 1000.0,
        perf_cost=perf_cost,
        perf_score=perf_score,
    )


def run_algorithms(
    problem: EquityProblem,
    algorithms: tuple[Algorithm | str, ...] = ALGORITHMS,
    **kwargs: object,
) -> dict[str, EquityResult]:
    """Solve each algorithm on ``problem`` (keyword arguments go to :func:`algorithm_config`)."""
    mats = build_matrices(problem)
    out: dict[str, EquityResult] = {}
    for alg in algorithms:
        cfg = algorithm_config(alg, **kwargs)  # type: ignore[arg-type]
        out[cfg.name] = solve_seglb(problem, cfg, matrices=mats)
    return out


TABLE1_COLUMNS = {
    "energy_cost_avg_usd": "Energy cost avg (USD)",
    "water_avg_m3": "Water avg (m³)",
    "water_max_m3": "Water max (m³)",
    "water_max_over_avg": "Water max/avg",
    "carbon_avg_t": "Carbon avg (t)",
    "carbon_max_t": "Carbon max (t)",
    "carbon_max_over_avg": "Carbon max/avg",
    "perf_cost_avg": "Perf. cost avg",
    "perf_cost_max": "Perf. cost max",
    "perf_cost_max_over_avg": "Perf. cost max/avg",
    "perf_score_avg": "Perf. score avg (%)",
    "perf_score_min": "Perf. score min (%)",
}


def table1(problem: EquityProblem, results: dict[str, EquityResult]) -> pd.DataFrame:
    """One row per algorithm in the paper's Table 1 layout (only results that are ok)."""
    rows = {}
    for name, res in results.items():
        if res.is_ok and res.y is not None:
            rows[name] = metrics(problem, res.y).summary()
    df = pd.DataFrame.from_dict(rows, orient="index")
    return df.rename(columns=TABLE1_COLUMNS)
