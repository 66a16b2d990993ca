"""Equity for Green-LLM scenarios: an SE-GLB view of a scenario, and the planner's equity option.

Two uses of a :class:`~greensched.scenario.Scenario` (the Green-LLM exchange format):

* :func:`problem_from_scenario` — an :class:`EquityProblem` with areas as regions and one
  "model" per DC (the scenario's query mix), so SE-GLB's environmental equity can be solved on
  any scenario (the embedded default included).  Per-request energy and resources are the
  demand-weighted means over query types; there is no model choice, so s_k = 0.
* :func:`plan_with_equity` — ``greensched plan --equity q=2,mu_c=…,mu_w=…``: the Green-LLM LP of
  the planner (:func:`greensched.scheduler.greenllm.build_model`, all its rows) with its weighted
  objective plus the environmental Lq term over DCs,

      + ‖( μ_c C_j + μ_w W_j )_j‖_q,
      C_j = Σ_t θ_{j,t} P^g_{j,t} / 1000 (t),   W_j = Σ_t W_{j,t} / 1000 (m³),

  added on top of the weighted sum (whose carbon cost already prices C linearly).  q ∈ {1, ∞}
  stays a linear program on HiGHS (linopy); other q export linopy's matrices to cvxpy + Clarabel.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from greensched.errors import GreenSchedError, SolverUnavailableError
from greensched.scenario import Scenario
from greensched.scheduler.backends import SolveStatus
from greensched.scheduler.equity.problem import EquityProblem, parse_q

__all__ = [
    "EquityOption",
    "EquityPlanResult",
    "parse_equity_option",
    "plan_with_equity",
    "problem_from_scenario",
]


def problem_from_scenario(scen: Scenario) -> EquityProblem:
    """An SE-GLB problem from a Green-LLM scenario (regions = areas, one model)."""
    ds = scen.ds
    lam = ds["queries"].transpose("area", "query_type", "hour")  # requests
    by_type = lam.sum(["area", "hour"])  # [query_type]
    weight = by_type / float(by_type.sum())
    e = scen.energy_kwh_per_query().mean("hour")  # [dc, query_type]
    energy = (e * weight).sum("query_type").transpose("dc").values[:, None]
    per_query = ds["units_per_token"] * (ds["input_tokens"] + ds["output_tokens"])
    res_da = (per_query * weight).sum("query_type")  # [resource] or [dc, resource]
    res = res_da.broadcast_like(ds["pue"]).transpose("dc", "resource").values[:, None, :]
    water = (ds["wue_l_per_kwh"] / ds["pue"] + ds["ewif_l_per_kwh"]).transpose("dc", "hour")
    n, j = len(scen.dcs), len(scen.areas)
    return EquityProblem(
        dcs=tuple(scen.dcs),
        regions=tuple(scen.areas),
        models=("scenario mix",),
        hours=tuple(str(h) for h in ds.indexes["hour"]),
        resources=tuple(str(r) for r in ds.indexes["resource"]),
        price_usd_per_kwh=np.maximum(ds["price_usd_per_kwh"].transpose("dc", "hour").values, 0),
        pue=ds["pue"].values,
        energy_kwh_per_request=energy,
        perf_cost=np.zeros(1),
        perf_score=np.zeros(1),
        carbon_kg_per_kwh=ds["carbon_kg_per_kwh"].transpose("dc", "hour").values,
        water_l_per_kwh=water.values,
        demand=lam.sum("query_type").values,
        resource_per_request=res,
        capacity=ds["capacity"].transpose("dc", "resource").values,
        move_cost_usd_per_request=np.zeros((n, j)),
        route_mask=np.ones((n, j), bool),
        model_mask=np.ones((n, 1), bool),
        notes={"source": f"Green-LLM scenario {scen.name!r} (one model: its query mix)"},
    )


@dataclass
class EquityOption:
    """``--equity q=2,mu_c=1500,mu_w=60``: the environmental Lq term added to a plan.

    ``mu_c`` in USD per tonne CO2, ``mu_w`` in USD per m³ (paper defaults 1500 and 60).
    """

    q: float = 2.0
    mu_c_usd_per_t: float = 1500.0
    mu_w_usd_per_m3: float = 60.0

    def __post_init__(self) -> None:
        self.q = parse_q(self.q)
        for name in ("mu_c_usd_per_t", "mu_w_usd_per_m3"):
            v = float(getattr(self, name))
            if not (v >= 0 and math.isfinite(v)):
                raise GreenSchedError(f"--equity {name}={v!r}: expected a finite number >= 0")
            setattr(self, name, v)


def parse_equity_option(text: str) -> EquityOption:
    """Parse ``q=2,mu_c=1500,mu_w=60`` (any subset; keys q, mu_c, mu_w)."""
    keys = {"q": "q", "mu_c": "mu_c_usd_per_t", "mu_w": "mu_w_usd_per_m3"}
    fields: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in keys:
            raise GreenSchedError(
                f"--equity {part!r}: expected key=value with key one of q, mu_c, mu_w"
            )
        name = keys[key.strip()]
        if name == "q":
            fields[name] = value.strip()
        else:
            try:
                fields[name] = float(value)
            except ValueError:
                raise GreenSchedError(
                    f"--equity {part!r}: {key}={value!r} is not a number"
                ) from None
    return EquityOption(**fields)


@dataclass
class EquityPlanResult:
    """An equity-augmented plan: allocation and per-DC footprints; read only when ok."""

    status: SolveStatus
    option: EquityOption
    weights: tuple[float, float, float]
    solver: str
    solve_s: float
    allocation: xr.DataArray | None = None  # [area, dc, query_type, hour]
    objective: dict[str, float] = field(default_factory=dict)
    per_dc: pd.DataFrame | None = None
    message: str = ""

    @property
    def is_ok(self) -> bool:
        """True when a solution is available."""
        return self.status.is_ok

    def write(self, directory: str | Path) -> Path:
        """``plan.json`` (status, option, objective), ``allocation.csv``, ``equity_by_dc.csv``."""
        import json

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        body = {
            "status": str(self.status),
            "mode": "weighted+equity",
            "weights": list(self.weights),
            "equity": {
                "q": "inf" if math.isinf(self.option.q) else self.option.q,
                "mu_c_usd_per_t": self.option.mu_c_usd_per_t,
                "mu_w_usd_per_m3": self.option.mu_w_usd_per_m3,
            },
            "objective": self.objective,
            "solver": self.solver,
            "solve_seconds": self.solve_s,
            "message": self.message,
        }
        (out / "plan.json").write_text(json.dumps(body, indent=1, sort_keys=True), "utf-8")
        if self.allocation is not None:
            df = self.allocation.to_series().rename("fraction").reset_index()
            df = df[df["fraction"] > 1e-9][["hour", "area", "query_type", "dc", "fraction"]]
            df.to_csv(out / "allocation.csv", index=False)
        if self.per_dc is not None:
            self.per_dc.to_csv(out / "equity_by_dc.csv")
        return out


def plan_with_equity(
    scen: Scenario,
    option: EquityOption,
    weights: tuple[float, float, float] | None = None,
) -> EquityPlanResult:
    """Solve the Green-LLM weighted LP plus the environmental Lq term over DCs.

    ``weights`` are (energy, carbon, delay), normalised to sum 1; ``None`` uses the scenario's.
    """
    from greensched.scheduler.greenllm import build_model

    if weights is None:
        sw: Any = scen.weights
        weights = (
            tuple(sw[k] for k in ("energy", "carbon", "delay")) if isinstance(sw, dict) else sw
        )
    w = np.asarray(weights, dtype=float)
    if w.shape != (3,) or (w < 0).any() or w.sum() <= 0:
        raise GreenSchedError(f"weights={tuple(w)}: expected three numbers >= 0, not all 0")
    w = w / w.sum()
    gm = build_model(scen)
    m = gm.model
    carbon_kg = gm.p_grid * scen.ds["carbon_kg_per_kwh"].transpose("dc", "hour")
    h_expr = carbon_kg.sum("hour") * (option.mu_c_usd_per_t / 1000.0) + gm.water_l.sum("hour") * (
        option.mu_w_usd_per_m3 / 1000.0
    )
    h = m.add_variables(lower=0.0, coords=[scen.ds.indexes["dc"]], name="equity_h")
    m.add_constraints(h - h_expr == 0.0, name="equity_h_def")
    base = (
        float(w[0]) * gm.objectives["energy"]
        + float(w[1]) * gm.objectives["carbon"]
        + float(w[2]) * gm.objectives["delay"]
    )
    t0 = time.perf_counter()
    if option.q == 1.0 or math.isinf(option.q):
        if option.q == 1.0:
            m.add_objective(base + h.sum())
        else:
            u = m.add_variables(lower=0.0, name="equity_max")
            m.add_constraints(u - h >= 0.0, name="equity_max_def")
            m.add_objective(base + 1.0 * u)
        status_s, _ = m.solve(solver_name="highs", io_api="direct", output_flag=False)
        ok = status_s == "ok" and m.termination_condition == "optimal"
        status = SolveStatus.OPTIMAL if ok else SolveStatus.INFEASIBLE
        solver = "highs"
        values = _label_values(m) if ok else None
    else:
        m.add_objective(base)
        status, values = _solve_conic_linopy(m, "equity_h", option.q)
        solver = "clarabel"
    seconds = time.perf_counter() - t0
    wt = (float(w[0]), float(w[1]), float(w[2]))
    result = EquityPlanResult(status, option, wt, solver, seconds)
    if not status.is_ok or values is None:
        result.message = f"equity plan: {status}"
        return result
    x = _var_values(gm.x, values)
    pg = _var_values(gm.p_grid, values)
    hvals = _var_values(h, values).transpose("dc").values
    comps = {k: float(_expr_values(e, values)) for k, e in gm.objectives.items()}
    carbon_t = (pg * scen.ds["carbon_kg_per_kwh"]).sum("hour") / 1000.0
    water_m3 = _expr_values(gm.water_l, values).sum("hour") / 1000.0
    if math.isinf(option.q):
        norm = float(np.max(hvals))
    else:
        norm = float(np.sum(hvals**option.q) ** (1 / option.q))
    weighted = sum(wi * comps[k] for wi, k in zip(wt, ("energy", "carbon", "delay"), strict=True))
    result.allocation = x.transpose("area", "dc", "query_type", "hour")
    result.objective = {
        "energy_usd": comps["energy"],
        "carbon_usd": comps["carbon"],
        "delay_usd": comps["delay"],
        "weighted_usd": weighted,
        "equity_usd": norm,
        "total_usd": weighted + norm,
    }
    result.per_dc = pd.DataFrame(
        {
            "carbon_t": carbon_t.transpose("dc").values,
            "water_m3": water_m3.transpose("dc").values,
            "h_usd": hvals,
        },
        index=pd.Index(scen.dcs, name="dc"),
    )
    return result


def _label_values(m: Any) -> np.ndarray:
    """Primal values of every variable of a solved linopy model, indexed by label."""
    n = max(int(np.asarray(v.labels).max()) for v in m.variables.data.values()) + 1
    out = np.full(n + 1, np.nan)
    for var in m.variables.data.values():
        labels = np.asarray(var.labels).ravel()
        out[labels[labels >= 0]] = np.asarray(var.solution).ravel()[labels >= 0]
    return out


def _var_values(var: Any, values: np.ndarray) -> xr.DataArray:
    labels = var.labels
    return xr.DataArray(values[np.asarray(labels)], coords=labels.coords, dims=labels.dims)


def _expr_values(expr: Any, values: np.ndarray) -> xr.DataArray:
    """Value of a linopy LinearExpression under ``values`` (by label; -1 = no variable)."""
    vars_ = np.asarray(expr.vars)
    vals = np.where(vars_ >= 0, values[np.where(vars_ >= 0, vars_, 0)], 0.0)
    coeffs = xr.DataArray(
        np.asarray(expr.coeffs) * vals, coords=expr.coeffs.coords, dims=expr.coeffs.dims
    )
    return coeffs.sum("_term") + expr.const


def _solve_conic_linopy(m: Any, hname: str, q: float) -> tuple[SolveStatus, np.ndarray | None]:
    """Solve linopy model ``m`` (its objective) + ‖h‖_q with cvxpy + Clarabel; values by label."""
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SolverUnavailableError(
            "--equity with q not in {1, inf} needs cvxpy + clarabel: pip install "
            "'greensched[equity]'"
        ) from exc
    mat = m.matrices
    vlabels = np.asarray(mat.vlabels)
    a = sp.csr_array(mat.A)
    b = np.asarray(mat.b, dtype=float)
    sense = np.asarray(mat.sense).astype(str)
    c = np.asarray(mat.c, dtype=float)
    lb, ub = np.asarray(mat.lb, dtype=float), np.asarray(mat.ub, dtype=float)
    pos = {int(lbl): i for i, lbl in enumerate(vlabels)}
    h_idx = np.array([pos[int(v)] for v in np.asarray(m.variables[hname].labels).ravel()])
    x = cp.Variable(len(vlabels))
    cons = []
    for s_char, op in (("=", "eq"), ("<", "le"), (">", "ge")):
        rows = np.flatnonzero(sense == s_char)
        if rows.size == 0:
            continue
        lhs = a[rows] @ x
        cons.append(
            lhs == b[rows] if op == "eq" else (lhs <= b[rows] if op == "le" else lhs >= b[rows])
        )
    fin_lb, fin_ub = np.isfinite(lb), np.isfinite(ub)
    if fin_lb.any():
        cons.append(x[np.flatnonzero(fin_lb)] >= lb[fin_lb])
    if fin_ub.any():
        cons.append(x[np.flatnonzero(fin_ub)] <= ub[fin_ub])
    term = cp.norm(x[h_idx], 2) if q == 2.0 else cp.pnorm(x[h_idx], p=q, approx=False)  # type: ignore[arg-type]
    prob = cp.Problem(cp.Minimize(c @ x + term), cons)
    prob.solve(solver=cp.CLARABEL)
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        return SolveStatus.INFEASIBLE if "infeasible" in str(
            prob.status
        ) else SolveStatus.ERROR, None
    n_labels = int(vlabels.max()) + 1
    values = np.full(n_labels, np.nan)
    values[vlabels] = np.asarray(x.value)
    return SolveStatus.OPTIMAL, values
