"""Solve the Green-LLM model: weighted and lexicographic modes, presets, infeasibility diagnosis.

Typical use::

    from greensched.scenario import load_scenario
    from greensched.scheduler import PlanConfig, plan

    result = plan(load_scenario("paper_scenario"), PlanConfig(mode="lexicographic",
                                                              order=("energy", "carbon", "delay")))
    if result.is_ok:
        result.write("out/")

Weighted mode minimises σ_e C_energy + σ_c C_carbon + σ_d C_delay (weights normalised to sum 1).
Lexicographic mode is the letter's Algorithm 1: for the objectives in priority order, minimise
C_{o_ℓ} subject to C_{o_m} ≤ C*_{o_m} + ε |C*_{o_m}| for every earlier phase m.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.queueing import DEFAULT_MAX_UTILIZATION, DEFAULT_SERVICE_SCV
from greensched.scenario import Scenario
from greensched.scheduler.backends import BackendSolution, SolveStatus
from greensched.scheduler.diagnose import diagnose_infeasibility, diagnosis_message
from greensched.scheduler.per_query import DelayOptions, latency_summary
from greensched.util import jsonable
from greensched.weights import OBJECTIVES, Weights

if TYPE_CHECKING:  # linopy (through greenllm) is imported only where a model is built with it
    from greensched.scheduler.compiled import _Compiled
    from greensched.scheduler.greenllm import GreenLLMModel

__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "PlanMode",
    "PlanConfig",
    "PlanResult",
    "PlanSession",
    "diagnose_infeasibility",
    "plan",
    "set_dc_flows",
]


class PlanMode(StrEnum):
    """How the three objectives are combined."""

    WEIGHTED = "weighted"
    LEXICOGRAPHIC = "lexicographic"


#: Named presets: m0 uses the scenario's weights; m1 and m2 are the letter's baselines.
PRESETS: dict[str, tuple[float, float, float] | None] = {
    "m0": None,
    "m1": (1.0, 0.0, 0.0),
    "m2": (0.0, 1.0, 0.0),
}


@dataclass
class PlanConfig:
    """How to solve a scenario.

    Parameters
    ----------
    mode
        ``"weighted"`` or ``"lexicographic"``.
    weights
        ``(energy, carbon, delay)`` weights for weighted mode, each ≥ 0, not all zero; normalised
        to sum 1.  ``None`` uses the scenario's ``[objective]`` weights.
    order
        Priority order of the three objectives for lexicographic mode.
    epsilon
        Relative tolerance ε ≥ 0 on earlier phases (the letter uses 0.001).
    solver
        ``"highs"`` (default) or ``"gurobi"``.
    time_limit_s
        Optional time limit per solve.
    diagnose
        On infeasibility, re-solve an elastic model to say which family fails where.
    threads
        Solver threads (``None`` = solver default).
    delay_model
        ``"letter"`` or ``"per_query"`` (``docs/delay-model.md``); ``None``: the scenario's
        ``[objective] delay_model``.
    pool_slots, service_scv, max_utilization
        Congestion inputs of ``per_query`` (:class:`~greensched.scheduler.per_query
        .DelayOptions`): slots per (dc, query_type) (``None``: the documented default),
        service-time cs², utilisation cap.
    decompose
        ``"hours"``: solve hour by hour with the coupling rows priced, in this process
        (:func:`greensched.scheduler.decompose.plan_decomposed` for workers and Ray).
    """

    mode: PlanMode | str = PlanMode.WEIGHTED
    weights: tuple[float, float, float] | None = None
    order: tuple[str, ...] = ("energy", "carbon", "delay")
    epsilon: float = 0.001
    solver: str = "highs"
    time_limit_s: float | None = None
    diagnose: bool = True
    threads: int | None = None
    delay_model: str | None = None
    pool_slots: xr.DataArray | None = None
    service_scv: float = DEFAULT_SERVICE_SCV
    max_utilization: float = DEFAULT_MAX_UTILIZATION
    decompose: str | None = None

    def __post_init__(self) -> None:
        self.delay_options()  # validates the delay fields
        if self.decompose not in (None, "hours"):
            raise GreenSchedError(f"decompose {self.decompose!r} is not known; expected 'hours'")
        try:
            self.mode = PlanMode(self.mode)
        except ValueError:
            raise GreenSchedError(
                f"mode {self.mode!r} is not known; expected 'weighted' or 'lexicographic'"
            ) from None
        if self.weights is not None:
            self.weights = Weights.of(self.weights).as_tuple()
        order = tuple(str(o).strip().lower() for o in self.order)
        if len(order) != 3 or sorted(order) != sorted(OBJECTIVES):
            raise GreenSchedError(
                f"order {self.order!r} must be a permutation of energy, carbon, delay"
            )
        self.order = order
        if not np.isfinite(self.epsilon) or self.epsilon < 0:
            raise GreenSchedError(f"epsilon {self.epsilon!r} must be a finite number >= 0")

    def delay_options(self) -> DelayOptions:
        """The delay model and congestion inputs as :class:`DelayOptions`."""
        return DelayOptions(
            delay_model=self.delay_model,
            pool_slots=self.pool_slots,
            service_scv=self.service_scv,
            max_utilization=self.max_utilization,
        )

    @classmethod
    def preset(cls, name: str, **kwargs: Any) -> PlanConfig:
        """Config of a named preset (m0, m1, m2)."""
        key = name.lower()
        if key not in PRESETS:
            raise GreenSchedError(f"preset {name!r} is not known; expected one of m0, m1, m2")
        return cls(mode="weighted", weights=PRESETS[key], **kwargs)


@dataclass
class PlanResult:
    """A solved (or failed) plan.

    Attributes
    ----------
    status
        Solver status; read the other fields only when :attr:`is_ok`.
    objective
        ``energy_usd``, ``carbon_usd``, ``delay_usd`` (the delay cost) and ``total_usd``
        (unweighted sum).
    delay_model
        ``"letter"`` or ``"per_query"``.
    latency
        ``per_query`` only: ``latency_s_per_query`` (demand-weighted mean, queueing included),
        ``queueing_s`` (total queueing seconds: the M/G/c wait at the plan's pool loads),
        ``queueing_lp_s`` (the LP's tangent under-estimate of it, what the objective's delay
        cost carries), ``delay_floor_usd`` (the delay cost of every
        query at its lowest-latency DC without queueing) and ``decision_share`` (share of the
        delay cost above that floor).
    allocation
        Shares x, dims (area, dc, query_type, hour).
    dc_hourly
        Per (hour, dc): it_kw, facility_kw, grid_kw, renewable_used_kw, water_l, carbon_kg.
    phases
        One entry per solve phase (one in weighted mode) with its objective values.
    duals
        Row duals per constraint family (∂ objective / ∂ row bound), as labelled arrays.
    diagnosis
        For infeasible scenarios: the rows that cannot be met and by how much.
    """

    status: SolveStatus
    mode: str
    solver: str
    weights: dict[str, float] | None = None
    order: list[str] | None = None
    epsilon: float | None = None
    objective: dict[str, float] = field(default_factory=dict)
    carbon_kg: float = float("nan")
    water_l: float = float("nan")
    grid_kwh: float = float("nan")
    it_kwh: float = float("nan")
    solve_s: float = 0.0
    build_seconds: float = 0.0
    phases: list[dict[str, Any]] = field(default_factory=list)
    allocation: xr.DataArray | None = None
    dc_hourly: pd.DataFrame | None = None
    delay_s: xr.DataArray | None = None
    duals: dict[str, xr.DataArray] = field(default_factory=dict)
    diagnosis: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    delay_model: str = "letter"
    latency: dict[str, float] = field(default_factory=dict)

    @property
    def is_ok(self) -> bool:
        """True when the plan is optimal and its values can be read."""
        return self.status.is_ok

    def to_dict(self) -> dict[str, Any]:
        """The ``plan.json`` content (scenario-format.md, Plan output)."""
        out: dict[str, Any] = {"status": self.status.value, "mode": self.mode}
        if self.delay_model != "letter":
            out["delay_model"] = self.delay_model
        if self.mode == "weighted":
            out["weights"] = self.weights
        else:
            out["order"] = self.order
            out["epsilon"] = self.epsilon
        out.update(
            {
                "objective": self.objective,
                "carbon_kg": self.carbon_kg,
                "water_l": self.water_l,
                "grid_kwh": self.grid_kwh,
                "it_kwh": self.it_kwh,
                "solver": self.solver,
                "solve_seconds": self.solve_s,  # plan.json key fixed by the exchange-format spec
                "phases": self.phases,
            }
        )
        if self.latency:
            out["latency"] = self.latency
        if self.diagnosis:
            out["diagnosis"] = self.diagnosis
        if self.message:
            out["message"] = self.message
        return out

    def allocation_frame(self, threshold: float = 1e-9) -> pd.DataFrame:
        """Allocation as rows ``hour, area, query_type, dc, fraction`` with fraction > threshold."""
        if self.allocation is None:
            return pd.DataFrame(columns=["hour", "area", "query_type", "dc", "fraction"])
        da = self.allocation.transpose("hour", "area", "query_type", "dc")
        vals = np.asarray(da.values)
        keep = np.nonzero(vals > threshold)  # C order: hour, area, query_type, dc
        data: dict[str, Any] = {
            str(dim): np.asarray(da.indexes[dim])[pos]
            for dim, pos in zip(da.dims, keep, strict=True)
        }
        data["fraction"] = vals[keep]
        return pd.DataFrame(data)

    def duals_frame(self) -> pd.DataFrame:
        """Row duals in long form: ``family, hour, dc, area, query_type, resource, dual``.

        ``dual`` = ∂(optimal objective)/∂(row bound) in USD per row unit (≤ 0 for a binding
        ``≤`` row of a minimisation); index columns a family does not have are empty.
        """
        cols = ["family", "hour", "dc", "area", "query_type", "resource", "dual"]
        parts = []
        for family, da in self.duals.items():
            df = (
                da.to_dataframe(name="dual").reset_index()
                if da.ndim
                else pd.DataFrame({"dual": [float(da)]})
            )
            df.insert(0, "family", family)
            parts.append(df)
        if not parts:
            return pd.DataFrame(columns=cols)
        out = pd.concat(parts, ignore_index=True)
        for col in cols:
            if col not in out.columns:
                out[col] = pd.NA
        out["hour"] = out["hour"].astype("Int64")
        return out[cols]

    def write(self, directory: str | Path, tables: str = "csv") -> Path:
        """Write plan.json, allocation.csv and dc_hourly.csv (and duals.csv) into ``directory``.

        ``duals.csv`` is an addition of this tool (the spec's three files are unchanged): the
        online assigner's plan-guided mode reads the capacity and water prices from it.
        ``tables="parquet"`` writes the three tables as ``.parquet`` files instead (same
        columns; measured at 100 x 100 x 5 x 24 in ``reports/decomposition.md``).
        """
        if tables not in TABLE_FORMATS:
            raise GreenSchedError(f"tables {tables!r} is not known; expected csv or parquet")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "plan.json").write_text(
            json.dumps(jsonable(self.to_dict()), indent=2) + "\n", encoding="utf-8"
        )
        if self.is_ok:
            assert self.dc_hourly is not None
            frames = {
                "allocation": self.allocation_frame(),
                "dc_hourly": self.dc_hourly,
                "duals": self.duals_frame(),
            }
            for name, frame in frames.items():
                if tables == "parquet":
                    frame.to_parquet(out / f"{name}.parquet", index=False)
                else:
                    frame.to_csv(out / f"{name}.csv", index=False)
        return out


#: Formats of the plan tables (``PlanResult.write``; ``greensched plan --tables``).
TABLE_FORMATS = ("csv", "parquet")


def _components(vectors: dict[str, tuple[np.ndarray, float]], x: np.ndarray) -> dict[str, float]:
    vals = {f"{k}_usd": float(vec @ x + const) for k, (vec, const) in vectors.items()}
    vals["total_usd"] = vals["energy_usd"] + vals["carbon_usd"] + vals["delay_usd"]
    return vals


class PlanSession:
    """A model built and loaded into a solver once, solved under several objectives.

    Sweeps and tables solve the same constraints with different weights or orders; the session
    reuses the matrix and warm-starts the solver between solves.
    """

    def __init__(
        self,
        scenario: Scenario,
        solver: str = "highs",
        threads: int | None = None,
        delay: DelayOptions | None = None,
    ):
        from greensched.scheduler.compiled import _Compiled, _load_backend
        from greensched.scheduler.greenllm import build_model

        t0 = time.perf_counter()
        self.scenario = scenario
        self.solver = solver
        self.delay = delay or DelayOptions()
        self.gm = build_model(scenario, delay=self.delay)
        self.delay_model = self.gm.delay_model
        self.comp = _Compiled(self.gm)
        self.vectors = {k: self.comp.vector(self.gm.objectives[k]) for k in OBJECTIVES}
        self.backend = _load_backend(self.comp, solver, threads)
        self.build_seconds = time.perf_counter() - t0

    def _read(self, result: PlanResult, sol: BackendSolution) -> None:
        """Fill ``result``'s outputs from an optimal solution."""
        _read_solution(result, self.comp, self.gm, self.vectors, sol)

    def solve(self, cfg: PlanConfig) -> PlanResult:
        """Solve under ``cfg`` (its solver and threads fields are ignored here)."""
        scenario, vectors, backend = self.scenario, self.vectors, self.backend
        result = PlanResult(
            status=SolveStatus.ERROR,
            mode=cfg.mode,
            solver=self.solver,
            delay_model=self.delay_model,
        )
        result.build_seconds = self.build_seconds
        solve_s = 0.0
        sol: BackendSolution | None = None
        if cfg.mode == "weighted":
            w = (
                cfg.weights
                if cfg.weights is not None
                else tuple(scenario.weights[k] for k in OBJECTIVES)
            )
            total = float(sum(w))
            weights = {k: float(v) / total for k, v in zip(OBJECTIVES, w, strict=True)}
            result.weights = weights
            c = sum(weights[k] * vectors[k][0] for k in OBJECTIVES)
            backend.set_objective(np.asarray(c))
            sol = backend.solve(cfg.time_limit_s)
            solve_s += sol.seconds
            if sol.status.is_ok:
                assert sol.x is not None
                comps = _components(vectors, sol.x)
                weighted = sum(weights[k] * comps[f"{k}_usd"] for k in OBJECTIVES)
                result.phases = [
                    {
                        "phase": 1,
                        "objective": "weighted",
                        "value_usd": weighted,
                        **comps,
                        "solve_seconds": sol.seconds,
                    }
                ]
        else:
            result.order = list(cfg.order)
            result.epsilon = cfg.epsilon
            try:
                for i, name in enumerate(cfg.order):
                    vec, const = vectors[name]
                    backend.set_objective(vec)
                    sol = backend.solve(cfg.time_limit_s, warm=i > 0)
                    solve_s += sol.seconds
                    if not sol.status.is_ok:
                        result.message = f"phase {i + 1} ({name}) ended {sol.status.value}"
                        break
                    assert sol.x is not None
                    best = float(vec @ sol.x + const)
                    comps = _components(vectors, sol.x)
                    result.phases.append(
                        {
                            "phase": i + 1,
                            "objective": name,
                            "value_usd": best,
                            **comps,
                            "solve_seconds": sol.seconds,
                        }
                    )
                    if i < len(cfg.order) - 1:
                        # C_o ≤ C* + ε|C*|, with a hair of room for the solver's tolerances.
                        room = cfg.epsilon * abs(best) + 1e-9 * max(1.0, abs(best))
                        backend.add_row(vec, best + room - const)
            finally:
                backend.remove_added_rows()
        assert sol is not None
        result.status = sol.status
        result.solve_s = solve_s
        if not sol.status.is_ok:
            result.message = result.message or sol.message
            if cfg.diagnose and sol.status in (
                SolveStatus.INFEASIBLE,
                SolveStatus.INFEASIBLE_OR_UNBOUNDED,
            ):
                result.diagnosis = diagnose_infeasibility(scenario, self.solver, delay=self.delay)
                result.message = diagnosis_message(result.diagnosis)
            return result
        self._read(result, sol)
        return result


def plan(scenario: Scenario, config: PlanConfig | None = None) -> PlanResult:
    """Build and solve the Green-LLM model of ``scenario``.

    Returns a :class:`PlanResult`; when the scenario is infeasible its ``status`` says so and its
    ``diagnosis`` (when ``config.diagnose``) names the constraint family, the indices and the
    shortfall.  Raises :class:`~greensched.errors.SolverUnavailableError` when the solver cannot
    be used (not installed, or the model is beyond its licence).
    """
    cfg = config or PlanConfig()
    if cfg.decompose is not None:
        from greensched.scheduler.decompose import plan_decomposed

        return plan_decomposed(scenario, cfg)
    delay = cfg.delay_options()
    if delay.model_of(scenario) == "letter":  # built with numpy, no linopy (direct.py)
        from greensched.scheduler.direct_session import DirectPlanSession

        return DirectPlanSession(scenario, cfg.solver, cfg.threads, delay).solve(cfg)
    return PlanSession(scenario, cfg.solver, cfg.threads, delay).solve(cfg)


def _read_solution(
    result: PlanResult,
    comp: _Compiled,
    gm: GreenLLMModel,
    vectors: dict[str, tuple[np.ndarray, float]],
    sol: BackendSolution,
) -> None:
    assert sol.x is not None and sol.row_duals is not None
    x = sol.x
    scen = gm.scenario
    result.objective = _components(vectors, x)
    result.allocation = comp.values(gm.x, x).clip(0.0, 1.0)
    grid = comp.values(gm.p_grid, x).transpose("dc", "hour")
    it = comp.evaluate(gm.it_kwh, x).transpose("dc", "hour")
    facility = comp.evaluate(gm.facility_kwh, x).transpose("dc", "hour")
    water = comp.evaluate(gm.water_l, x).transpose("dc", "hour")
    theta = scen.ds["carbon_kg_per_kwh"].transpose("dc", "hour")
    carbon = grid * theta
    renewable_used = (facility - grid).clip(min=0.0)
    set_dc_flows(
        result,
        it=it,
        facility=facility,
        grid=grid,
        renewable_used=renewable_used,
        water=water,
        carbon=carbon,
    )
    result.delay_s = comp.evaluate(gm.delay_s, x)
    result.duals = comp.duals(sol.row_duals)
    if gm.delay_model == "per_query":
        assert gm.queue_s is not None and gm.pool_load_s is not None and gm.slots is not None
        result.latency = latency_summary(
            scen,
            result.delay_s,
            comp.evaluate(gm.pool_load_s, x),
            gm.slots,
            gm.service_scv,
            float(comp.values(gm.queue_s, x).sum()),
            result.objective["delay_usd"],
        )


def set_dc_flows(
    result: PlanResult,
    *,
    it: xr.DataArray,
    facility: xr.DataArray,
    grid: xr.DataArray,
    renewable_used: xr.DataArray,
    water: xr.DataArray,
    carbon: xr.DataArray,
) -> None:
    """Totals and the ``dc_hourly`` table (exchange-format columns) of a plan's per-DC flows,
    each a (dc, hour) array: kW held for one hourly slot, litres, kg CO2."""
    result.carbon_kg = float(carbon.sum())
    result.water_l = float(water.sum())
    result.grid_kwh = float(grid.sum())
    result.it_kwh = float(it.sum())
    frame = xr.Dataset(
        {
            "it_kw": it,
            "facility_kw": facility,
            "grid_kw": grid,
            "renewable_used_kw": renewable_used,
            "water_l": water,
            "carbon_kg": carbon,
        }
    ).transpose("hour", "dc")
    result.dc_hourly = frame.to_dataframe().reset_index()[list(DC_HOURLY_COLUMNS)]


#: Columns of ``dc_hourly.csv`` (shared/spec/scenario-format.md).
DC_HOURLY_COLUMNS = (
    "hour",
    "dc",
    "it_kw",
    "facility_kw",
    "grid_kw",
    "renewable_used_kw",
    "water_l",
    "carbon_kg",
)
