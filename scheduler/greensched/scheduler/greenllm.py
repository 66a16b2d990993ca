"""The Green-LLM allocation model (shared/spec/green-llm-model.md) built with linopy.

Sets: areas i, data centers j, query types k, hours t, resources r.  Decision variables are the
share ``x[area, dc, query_type, hour]`` ∈ [0, 1] of type-k queries from area i in hour t served by
DC j, and the grid purchase ``p_grid[dc, hour]`` ≥ 0 (kW held for one hour = kWh).

Each constraint family has its own ``define_<family>_constraints`` function whose docstring gives
its equation and units.  Building, solving and reading results are separate steps: this module
only builds (:func:`build_model`); :mod:`greensched.scheduler.planner` solves and reads.

Two delay models (``[objective] delay_model``; :class:`~greensched.scheduler.per_query
.DelayOptions`): ``"letter"`` carries the letter's hour-total delay rows and cost
(:func:`define_delay_constraints`); ``"per_query"`` carries per-query latency, a utilisation
cap and a piecewise-linear queueing wait (:mod:`greensched.scheduler.per_query`).

With ``elastic=True`` every inequality family gets a non-negative slack variable
``slack_<family>`` (in the row's own unit), so that the model is always feasible; minimising the
normalised slacks tells which family cannot be met, where and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import linopy
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.per_query import (
    DelayOptions,
    define_latency_constraints,
    define_queueing_constraints,
    define_utilization_constraints,
    per_query_latency_s,
    pool_load_s,
)

__all__ = [
    "FAMILIES",
    "GreenLLMModel",
    "build_model",
    "define_delay_constraints",
    "define_demand_constraints",
    "define_no_export_constraints",
    "define_power_balance_constraints",
    "define_resource_constraints",
    "define_water_constraints",
]

#: Constraint families, their units (of a row's slack) and their dimensions.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "demand": ("share", ("area", "query_type", "hour")),
    "power_balance": ("kWh", ("dc", "hour")),
    "no_export": ("kWh", ("dc", "hour")),
    "water": ("l", ()),
    "resource": ("units", ("dc", "resource", "hour")),
    "delay": ("s", ("area", "query_type", "hour")),
    "utilization": ("s", ("dc", "query_type", "hour")),
}


@dataclass
class GreenLLMModel:
    """A built (not yet solved) Green-LLM model.

    Attributes
    ----------
    model
        The linopy model, without objective.
    x
        Allocation shares, dims (area, dc, query_type, hour).
    p_grid
        Grid purchase in kW (= kWh per slot), dims (dc, hour).
    objectives
        Linear expressions ``energy`` (USD), ``carbon`` (USD) and ``delay`` (USD).
    it_kwh, facility_kwh
        IT and facility energy per (dc, hour) as linear expressions.
    water_l
        Water per (dc, hour) as a linear expression (litres).
    delay_s
        ``letter``: the delay sum D^tran + D^prop + D^proc per (area, query_type, hour);
        ``per_query``: the mean latency Σ_j ℓ x (s per query, queueing excluded).
    delay_model
        ``"letter"`` or ``"per_query"``.
    queue_s, pool_load_s
        ``per_query`` only: queueing seconds Q and busy seconds per (dc, query_type, hour).
    slots, max_utilization, service_scv
        ``per_query`` only: pool slots c per (dc, query_type), the utilisation cap u_max and the
        service-time cs² of the wait model.
    slacks
        In elastic mode, slack variables per family.
    """

    scenario: Scenario
    model: linopy.Model
    x: linopy.Variable
    p_grid: linopy.Variable
    objectives: dict[str, linopy.LinearExpression]
    it_kwh: linopy.LinearExpression
    facility_kwh: linopy.LinearExpression
    water_l: linopy.LinearExpression
    delay_s: linopy.LinearExpression
    elastic: bool = False
    slacks: dict[str, linopy.Variable] = field(default_factory=dict)
    delay_model: str = "letter"
    queue_s: linopy.Variable | None = None
    pool_load_s: linopy.LinearExpression | None = None
    slots: xr.DataArray | None = None
    max_utilization: float = 0.9
    service_scv: float = 1.0


def _order(da: xr.DataArray, *dims: str) -> xr.DataArray:
    return da.transpose(*dims)


def _slack(m: linopy.Model, family: str, like: xr.DataArray | None) -> linopy.Variable:
    coords = None if like is None or like.ndim == 0 else [like.indexes[d] for d in like.dims]
    return m.add_variables(lower=0.0, coords=coords, name=f"slack_{family}")


def define_allocation_variables(
    m: linopy.Model, scen: Scenario
) -> tuple[linopy.Variable, linopy.Variable]:
    """Variables x_{i,j,k,t} ∈ [0, 1] (share) and P^g_{j,t} ∈ [0, P^max_{j,t}] (kW).

    The grid cap P^g_{j,t} ≤ P^max_{j,t} is a variable bound; a shortage of supply shows up as
    slack of the power-balance family in elastic mode.
    """
    ds = scen.ds
    x = m.add_variables(
        lower=0.0,
        upper=1.0,
        coords=[ds.indexes[d] for d in ("area", "dc", "query_type", "hour")],
        name="x",
    )
    upper = _order(ds["grid_cap_kw"], "dc", "hour")
    p_grid = m.add_variables(
        lower=0.0,
        upper=upper,
        coords=[ds.indexes["dc"], ds.indexes["hour"]],
        name="p_grid",
    )
    return x, p_grid


def it_energy_kwh(x: linopy.Variable, scen: Scenario) -> linopy.LinearExpression:
    """P^c_{j,t} = Σ_{i,k} e_{j,k,t} λ^t_{i,k} x_{i,j,k,t}  (kWh of IT energy in the hour)."""
    coef = scen.energy_kwh_per_query() * scen.ds["queries"]
    return (x * coef).sum(["area", "query_type"])


def define_demand_constraints(m: linopy.Model, x: linopy.Variable) -> None:
    """Every query is served: Σ_j x_{i,j,k,t} = 1 for every (i, k, t)."""
    m.add_constraints(x.sum("dc") == 1.0, name="demand")


def define_power_balance_constraints(
    m: linopy.Model,
    scen: Scenario,
    facility: linopy.LinearExpression,
    p_grid: linopy.Variable,
    elastic: bool,
) -> None:
    """Facility load is covered by grid and on-site renewables (kWh per hour).

    P^d_{j,t} = PUE_j P^c_{j,t} ≤ P^g_{j,t} + P^w_{j,t}; renewables may be curtailed (≤, not =).
    """
    lhs = facility - p_grid
    rhs = _order(scen.ds["renewable_kw"], "dc", "hour")
    if elastic:
        lhs = lhs - _slack(m, "power_balance", rhs)
    m.add_constraints(lhs <= rhs, name="power_balance")


def define_no_export_constraints(
    m: linopy.Model, facility: linopy.LinearExpression, p_grid: linopy.Variable
) -> None:
    """Grid purchase never exceeds facility load: P^g_{j,t} ≤ P^d_{j,t} (kWh).

    Without it, zero or negative prices would make buying unusable power 'optimal'
    (green-llm-model.md, note 1).  Always satisfiable, so it has no slack.
    """
    m.add_constraints(p_grid - facility <= 0.0, name="no_export")


def water_litres(scen: Scenario, facility: linopy.LinearExpression) -> linopy.LinearExpression:
    """W_{j,t} = (WUE_{j,t} / PUE_j + EWIF_{j,t}) P^d_{j,t}  (litres)."""
    ds = scen.ds
    factor = ds["wue_l_per_kwh"] / ds["pue"] + ds["ewif_l_per_kwh"]
    return facility * _order(factor, "dc", "hour")


def define_water_constraints(
    m: linopy.Model, scen: Scenario, water: linopy.LinearExpression, elastic: bool
) -> None:
    """Water budget over the horizon: Σ_{j,t} W_{j,t} ≤ Z (litres); only when Z is given."""
    if scen.water_budget_l is None:
        return
    lhs = water.sum()
    if elastic:
        lhs = lhs - _slack(m, "water", None)
    m.add_constraints(lhs <= scen.water_budget_l, name="water")


def define_resource_constraints(
    m: linopy.Model, scen: Scenario, x: linopy.Variable, elastic: bool
) -> None:
    """Resource capacity per DC, resource and hour (resource units).

    Σ_{i,k} α_{k,r} (h_k + f_k) λ^t_{i,k} x_{i,j,k,t} ≤ C_j^r.
    """
    ds = scen.ds
    per_query = ds["units_per_token"] * (ds["input_tokens"] + ds["output_tokens"])
    lhs = (x * (per_query * ds["queries"])).sum(["area", "query_type"])
    rhs = _order(ds["capacity"], "dc", "resource")
    if elastic:
        like = rhs.broadcast_like(ds["hour"]).transpose("dc", "resource", "hour")
        lhs = lhs - _slack(m, "resource", like)
    m.add_constraints(lhs <= rhs, name="resource")


def delay_coefficients(scen: Scenario) -> xr.DataArray:
    """Per-share delay coefficient of (i, j, k, t), in seconds.

    β^t_{i,k} (h_k + f_k) λ^t_{i,k} / B_{i,j}   (transmission, hour total — the letter's code)
    + d_{i,j}                                   (propagation, per query)
    + s_{j,k,t} λ^t_{i,k}                       (processing, hour total)
    """
    ds = scen.ds
    tokens = ds["input_tokens"] + ds["output_tokens"]
    tran = ds["token_size"] * tokens * ds["queries"] / ds["bandwidth"]
    proc = scen.proc_delay_s_per_query() * ds["queries"]
    return (tran + ds["rtt_s"] + proc).transpose("area", "dc", "query_type", "hour")


def define_delay_constraints(
    m: linopy.Model, scen: Scenario, delay: linopy.LinearExpression, elastic: bool
) -> None:
    """Delay limit per area, query type and hour (s).

    D^tran_{i,k,t} + D^prop_{i,k,t} + D^proc_{i,k,t} ≤ Δ_{i,k}, where each D is Σ_j coef x
    (see :func:`delay_coefficients`).
    """
    rhs = scen.ds["delay_limit_s"]
    lhs = delay
    if elastic:
        like = rhs.broadcast_like(scen.ds["hour"]).transpose("area", "query_type", "hour")
        lhs = lhs - _slack(m, "delay", like)
    m.add_constraints(lhs <= rhs, name="delay")


def objective_expressions(
    scen: Scenario, x: linopy.Variable, p_grid: linopy.Variable, delay_coef: xr.DataArray
) -> dict[str, linopy.LinearExpression]:
    """The three cost components (USD).

    C_energy = Σ_{j,t} c_j^t P^g_{j,t};  C_carbon = Σ_{j,t} δ_j θ_j^t P^g_{j,t};
    C_delay = Σ_{i,k,t} ρ_k Σ_j coef_{i,j,k,t} x_{i,j,k,t}.
    """
    ds = scen.ds
    energy = (p_grid * _order(ds["price_usd_per_kwh"], "dc", "hour")).sum()
    carbon_price = ds["carbon_price_usd_per_kg"] * ds["carbon_kg_per_kwh"]
    carbon = (p_grid * _order(carbon_price, "dc", "hour")).sum()
    delay = (x * (delay_coef * ds["delay_penalty_usd_per_s"])).sum()
    return {"energy": energy, "carbon": carbon, "delay": delay}


def build_model(
    scen: Scenario, *, elastic: bool = False, delay: DelayOptions | None = None
) -> GreenLLMModel:
    """Build the Green-LLM LP for ``scen`` (no objective set; see the planner).

    ``delay`` chooses the delay model (default: the scenario's) and its congestion inputs.
    """
    opts = delay or DelayOptions()
    delay_model = opts.model_of(scen)
    m = linopy.Model(force_dim_names=True)
    x, p_grid = define_allocation_variables(m, scen)
    it = it_energy_kwh(x, scen)
    facility = it * scen.ds["pue"]
    water = water_litres(scen, facility)

    define_demand_constraints(m, x)
    define_power_balance_constraints(m, scen, facility, p_grid, elastic)
    define_no_export_constraints(m, facility, p_grid)
    define_water_constraints(m, scen, water, elastic)
    define_resource_constraints(m, scen, x, elastic)
    queue = load = slots = None
    if delay_model == "letter":
        delay_coef = delay_coefficients(scen)
        delay_expr = (x * delay_coef).sum("dc")
        define_delay_constraints(m, scen, delay_expr, elastic)
        objectives = objective_expressions(scen, x, p_grid, delay_coef)
    else:
        latency = per_query_latency_s(scen)
        delay_expr = (x * latency).sum("dc")
        ds = scen.ds
        like = (
            ds["delay_limit_s"].broadcast_like(ds["hour"]).transpose("area", "query_type", "hour")
        )
        define_latency_constraints(
            m, scen, delay_expr, _slack(m, "delay", like) if elastic else None
        )
        load = pool_load_s(x, scen)
        slots = opts.slots_of(scen)
        like_u = slots.broadcast_like(ds["hour"]).transpose("dc", "query_type", "hour")
        if opts.congestion:
            define_utilization_constraints(
                m,
                scen,
                load,
                slots,
                opts.max_utilization,
                _slack(m, "utilization", like_u) if elastic else None,
            )
        queue = define_queueing_constraints(m, scen, load, opts, slots)
        objectives = objective_expressions(scen, x, p_grid, latency * ds["queries"])
        objectives["delay"] = objectives["delay"] + (queue * ds["delay_penalty_usd_per_s"]).sum()

    slacks = {
        name.removeprefix("slack_"): m.variables[name]
        for name in m.variables
        if name.startswith("slack_")
    }
    return GreenLLMModel(
        scenario=scen,
        model=m,
        x=x,
        p_grid=p_grid,
        objectives=objectives,
        it_kwh=it,
        facility_kwh=facility,
        water_l=water,
        delay_s=delay_expr,
        elastic=elastic,
        slacks=slacks,
        delay_model=delay_model,
        queue_s=queue,
        pool_load_s=load,
        slots=slots,
        max_utilization=opts.max_utilization,
        service_scv=opts.service_scv,
    )
