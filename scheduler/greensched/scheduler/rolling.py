"""Rolling re-planning: a Green-LLM plan over a moving forecast window, first hours committed.

Typical use::

    from greensched.scheduler import PlanConfig
    from greensched.scheduler.rolling import RollingConfig, plan_rolling

    rolling = plan_rolling(scen, PlanConfig(), RollingConfig(horizon_h=24, step_h=1, days=3))
    rolling.write("roll/")            # committed tables with UTC and local times, rolling.json
    guide = rolling.guide()           # what the online assigner follows (latest window per hour)

Windows
    The committed span is hours ``[0, S)`` of the scenario, S = 24 × ``days`` (or every hour).
    Window w starts at s_w = w × step and plans ``[s_w, min(s_w + horizon, S))`` with the
    existing planner (:func:`greensched.scheduler.plan`, or the hour decomposition); only its
    first ``step`` hours ``[s_w, s_w + step)`` are committed.  Every hour of the span is
    committed exactly once, by the latest window that started at or before it.  Windows do not
    look past the span's end: the horizon shrinks over the last ``horizon − step`` hours (a
    fixed-end receding horizon), so horizon = step = S is the monolithic plan of the span.

Water budget (the horizon-coupled row): remaining budget carried forward
    The span's budget is Z_S = Z × L[0, S) / L[0, T) (Z itself when the span is the whole
    scenario), with L the *load weight* of hours: the water of an even split of each hour's IT
    energy over the DCs (the measure ``water_budget_factor`` is defined on).  Window w gets its
    load share of the remaining budget R_w (R_0 = Z_S, R_{w+1} = R_w − committed water of w),
    at least the least water M[s_w, e_w) its hours need and at most R_w − M[e_w, S), so that
    the least water of every later hour stays reserved; the last window gets all that remains
    (:mod:`greensched.scheduler.rolling_budget`).  Each window keeps its own budget and its
    committed water is part of its planned water, so the committed total never exceeds Z_S,
    and every window is feasible when the span is.

Committed slice objective
    Every objective term of the Green-LLM LP is a sum over hours (only the water row couples
    hours), so a window's cost splits into per-hour costs: energy Σ_j c P^g, carbon Σ_j δ θ P^g,
    delay Σ ρ (coef · x) for the letter's delay model, or Σ ρ (ℓ λ x) + ρ Q for ``per_query``
    with Q the tangent queueing seconds at the plan's pool loads (:func:`hourly_costs`; they
    sum to the planner's objective).  The rolling total is the sum of the committed slices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError, InfeasibleError
from greensched.scenario import Scenario
from greensched.scheduler.assign import PlanGuide
from greensched.scheduler.decompose import DecomposeConfig
from greensched.scheduler.greenllm import delay_coefficients
from greensched.scheduler.per_query import per_query_latency_s, wait_segments
from greensched.scheduler.planner import OBJECTIVES, PlanConfig, PlanResult, plan
from greensched.scheduler.rolling_budget import (
    WaterRule,
    least_water_by_hour,
    load_weights,
    span_water_budget,
    window_scenario,
)
from greensched.scheduler.rolling_time import DCZone, resolve_dc_time_zones

__all__ = [
    "BUDGET_RULE",
    "RollingConfig",
    "RollingResult",
    "RollingWindow",
    "hourly_costs",
    "load_weights",
    "plan_perfect_foresight",
    "plan_rolling",
    "span_water_budget",
    "window_scenario",
]

#: The water-budget rule of a rolling plan (module docs).
BUDGET_RULE = "carry-forward, load-weighted, least water of later hours reserved"
#: Families whose committed duals guide the online assigner.
GUIDE_FAMILIES = ("resource", "power_balance", "no_export")


@dataclass
class RollingConfig:
    """How to roll a plan over a scenario.

    Parameters
    ----------
    horizon_h
        Hours each window plans (``--horizon``), ≥ 1.
    step_h
        Hours each window commits before the next re-plan (``--step``), 1 ≤ step ≤ horizon.
    days
        Committed span of 24 × days hours from hour 0 (``--days``), ≥ 1; ``None`` = every hour
        of the scenario.
    decompose
        Solve each window by hour decomposition (:mod:`greensched.scheduler.decompose`) with
        this configuration; ``None`` = the monolithic planner.
    dc_tz
        Time zones of the DCs (:func:`~greensched.scheduler.rolling_time
        .resolve_dc_time_zones`); ``None`` = found from the scenario.
    """

    horizon_h: int = 24
    step_h: int = 1
    days: int | None = None
    decompose: DecomposeConfig | None = None
    dc_tz: str | Path | Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        for name, flag in (("horizon_h", "--horizon"), ("step_h", "--step")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise GreenSchedError(f"{flag} {value!r}: expected a whole number of hours >= 1")
        if self.step_h > self.horizon_h:
            raise GreenSchedError(
                f"--step {self.step_h} is longer than --horizon {self.horizon_h}: a window can "
                "only commit hours it planned; expected --step <= --horizon"
            )
        if self.days is not None and (
            isinstance(self.days, bool)
            or not isinstance(self.days, int | np.integer)
            or self.days < 1
        ):
            raise GreenSchedError(f"--days {self.days!r}: expected a whole number of days >= 1")

    def span_hours(self, scen: Scenario) -> int:
        """Committed span S in hours, checked against the scenario's length."""
        if self.days is None:
            return scen.hours
        span = 24 * int(self.days)
        if span > scen.hours:
            raise GreenSchedError(
                f"--days {self.days} needs {span} hours; the scenario {scen.name!r} has "
                f"{scen.hours} (build a longer one: greensched scenario build CONFIG --days "
                f"{self.days})"
            )
        return span


def hourly_costs(
    scen: Scenario, allocation: xr.DataArray, grid_kw: xr.DataArray, config: PlanConfig
) -> pd.DataFrame:
    """Per-hour objective components (USD) of an allocation on ``scen`` (module docs).

    ``allocation`` has dims (area, dc, query_type, hour) and ``grid_kw`` (dc, hour), over the
    scenario's hours.  Columns: hour, energy_usd, carbon_usd, delay_usd, total_usd.
    """
    ds = scen.ds
    x = allocation.transpose("area", "dc", "query_type", "hour")
    grid = grid_kw.transpose("dc", "hour")
    energy = (grid * ds["price_usd_per_kwh"]).sum("dc")
    carbon = (grid * ds["carbon_kg_per_kwh"] * ds["carbon_price_usd_per_kg"]).sum("dc")
    rho = ds["delay_penalty_usd_per_s"]
    opts = config.delay_options()
    cells = ("area", "dc", "query_type")
    if opts.model_of(scen) == "letter":
        delay = (x * delay_coefficients(scen) * rho).sum(cells)
    else:
        lam = ds["queries"]
        delay = (x * per_query_latency_s(scen) * lam * rho).sum(cells)
        load = (x * lam * scen.proc_delay_s_per_query()).sum("area")  # (dc, query_type, hour)
        slope, icpt = wait_segments(scen, opts, opts.slots_of(scen))
        if slope.sizes["segment"]:
            tangent = (slope * load + icpt).max("segment", skipna=True)
            queue = tangent.fillna(0.0).clip(min=0.0)
            delay = delay + (queue * rho).sum(("dc", "query_type"))
    frame = pd.DataFrame(
        {
            "hour": np.asarray(ds.indexes["hour"], dtype=np.int64),
            "energy_usd": energy.transpose("hour").values,
            "carbon_usd": carbon.transpose("hour").values,
            "delay_usd": delay.transpose("hour").values,
        }
    )
    frame["total_usd"] = frame["energy_usd"] + frame["carbon_usd"] + frame["delay_usd"]
    return frame


@dataclass
class RollingWindow:
    """One re-plan: the hours it planned and committed, its budget, solve time and cost.

    ``objective`` is the committed slice's cost (energy, carbon, delay, total USD) and
    ``weighted_usd`` its weighted objective; ``window_objective`` the whole window's plan.
    """

    index: int
    start_hour: int
    end_hour: int
    commit_end_hour: int
    start_utc: str | None
    status: str
    water_budget_l: float | None = None
    water_planned_l: float = float("nan")
    water_committed_l: float = float("nan")
    objective: dict[str, float] = field(default_factory=dict)
    weighted_usd: float = float("nan")
    window_objective: dict[str, float] = field(default_factory=dict)
    carbon_kg: float = float("nan")
    build_s: float = 0.0
    solve_s: float = 0.0
    wall_s: float = 0.0
    method: str = "monolithic"
    gap_relative: float | None = None
    rounds: int | None = None
    water_price_usd_per_l: float = 0.0
    message: str = ""

    @property
    def is_ok(self) -> bool:
        """True when the window's plan is optimal."""
        return self.status == "optimal"

    def to_dict(self) -> dict[str, Any]:
        """The window's entry of ``rolling.json``."""
        return {
            "window": self.index,
            "start_hour": self.start_hour,
            "end_hour": self.end_hour,
            "commit_end_hour": self.commit_end_hour,
            "start_utc": self.start_utc,
            "status": self.status,
            "method": self.method,
            "water_budget_l": self.water_budget_l,
            "water_planned_l": self.water_planned_l,
            "water_committed_l": self.water_committed_l,
            "water_price_usd_per_l": self.water_price_usd_per_l,
            "objective": self.objective,
            "weighted_usd": self.weighted_usd,
            "window_objective": self.window_objective,
            "carbon_kg": self.carbon_kg,
            "build_seconds": self.build_s,
            "solve_seconds": self.solve_s,
            "wall_seconds": self.wall_s,
            "gap_relative": self.gap_relative,
            "rounds": self.rounds,
            "message": self.message,
        }


@dataclass
class RollingResult:
    """A rolling plan: its windows and the committed plan over the span.

    Attributes
    ----------
    windows
        One :class:`RollingWindow` per re-plan, in time order (the run stops at the first
        window that is not optimal).
    allocation
        Committed shares x, dims (area, dc, query_type, hour), hours 0..S−1 of the scenario.
    dc_hourly
        Committed per (hour, dc) flows (``dc_hourly.csv`` columns) plus ``window``,
        ``energy_usd`` and ``carbon_usd``.
    duals
        Committed row duals of :data:`GUIDE_FAMILIES`, hour = scenario hour.
    water_price
        Water shadow price (USD per litre, ≥ 0) of the window that committed each hour, dims
        (hour,).
    window_of_hour
        Index of the window that committed each hour of the span.
    zones
        Time zone of every DC.
    """

    scenario: str
    start_utc: str | None
    span_h: int
    config: RollingConfig
    plan_config: PlanConfig
    windows: list[RollingWindow] = field(default_factory=list)
    allocation: xr.DataArray | None = None
    dc_hourly: pd.DataFrame | None = None
    duals: dict[str, xr.DataArray] = field(default_factory=dict)
    water_price: xr.DataArray | None = None
    window_of_hour: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    zones: dict[str, DCZone] = field(default_factory=dict)
    water_budget_l: float | None = None
    water_least_l: float | None = None
    weights: dict[str, float] | None = None
    wall_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """True when every window was optimal and the whole span is committed."""
        return (
            bool(self.windows)
            and all(w.is_ok for w in self.windows)
            and (self.windows[-1].commit_end_hour == self.span_h)
        )

    @property
    def status(self) -> str:
        """``optimal``, or the status of the first window that was not."""
        bad = next((w for w in self.windows if not w.is_ok), None)
        return "optimal" if bad is None else bad.status

    @property
    def message(self) -> str:
        """Why the run stopped (empty when it is ok)."""
        bad = next((w for w in self.windows if not w.is_ok), None)
        if bad is None:
            return ""
        when = f", {bad.start_utc}" if bad.start_utc else ""
        return (
            f"window {bad.index} (hours {bad.start_hour}-{bad.end_hour - 1}{when}, water budget "
            f"{_fmt(bad.water_budget_l)} l) ended {bad.status}: {bad.message}"
        )

    @property
    def objective(self) -> dict[str, float]:
        """Sum of the committed slices' costs (USD)."""
        keys = [f"{k}_usd" for k in OBJECTIVES] + ["total_usd"]
        return {k: float(sum(w.objective.get(k, 0.0) for w in self.windows)) for k in keys}

    @property
    def weighted_usd(self) -> float:
        """Sum of the committed slices' weighted objectives (NaN for lexicographic plans)."""
        if not self.weights:
            return float("nan")
        return float(sum(w.weighted_usd for w in self.windows if w.is_ok))

    @property
    def water_l(self) -> float:
        """Committed water (litres)."""
        return float(sum(w.water_committed_l for w in self.windows if w.is_ok))

    def window_for_hour(self, hour: int) -> int:
        """The window whose plan is followed at scenario hour ``hour``: the latest window that
        started at or before it (the one that committed it)."""
        if not 0 <= hour < len(self.window_of_hour):
            raise GreenSchedError(f"hour {hour} is outside the committed span 0..{self.span_h - 1}")
        return int(self.window_of_hour[hour])

    def guide(self) -> PlanGuide:
        """The committed plan as the online assigner's guide: at every hour the shares, capacity
        and energy prices and the water price of the window that committed it."""
        if self.allocation is None:
            raise GreenSchedError("the rolling plan committed no hours")
        guide = PlanGuide._from_duals(self.duals)
        guide.allocation = self.allocation
        guide.water_price_by_hour = self.water_price
        guide.weights = dict(self.weights) if self.weights else None
        guide.source = "rolling"
        return guide

    def summary(self) -> dict[str, Any]:
        """``rolling.json``: configuration, totals, per-window entries."""
        solve = np.array([w.solve_s for w in self.windows]) if self.windows else np.zeros(1)
        budget = self.water_budget_l
        return {
            "kind": "rolling",
            "scenario": self.scenario,
            "status": self.status,
            "message": self.message,
            "start_utc": self.start_utc,
            "span_hours": self.span_h,
            "days": self.config.days,
            "horizon_h": self.config.horizon_h,
            "step_h": self.config.step_h,
            "mode": str(self.plan_config.mode),
            "weights": self.weights,
            "method": "decomposed-hours" if self.config.decompose is not None else "monolithic",
            "windows_count": len(self.windows),
            "water_budget_rule": BUDGET_RULE,
            "water_budget_l": budget,
            "water_least_l": self.water_least_l,
            "water_l": self.water_l,
            "budget_met": None
            if budget is None
            else bool(self.water_l <= budget * (1 + 1e-7) + 1e-9),
            "objective": self.objective,
            "weighted_usd": self.weighted_usd,
            "carbon_kg": float(sum(w.carbon_kg for w in self.windows if w.is_ok)),
            "solve_seconds_total": float(solve.sum()),
            "solve_seconds_mean": float(solve.mean()),
            "solve_seconds_max": float(solve.max()),
            "build_seconds_total": float(sum(w.build_s for w in self.windows)),
            "wall_seconds": self.wall_s,
            "dc_time_zones": {d: {"tz": z.tz, "source": z.source} for d, z in self.zones.items()},
            "windows": [w.to_dict() for w in self.windows],
        }

    def write(self, directory: str | Path) -> Path:
        """Write ``rolling.json`` and the committed tables (:mod:`rolling_io`)."""
        from greensched.scheduler.rolling_io import write_rolling

        return write_rolling(self, directory)


def _fmt(v: float | None) -> str:
    return "none" if v is None else f"{v:.6g}"


def _commit_window(
    roll: RollingResult,
    window: RollingWindow,
    sub: Scenario,
    result: PlanResult,
    commit: int,
    alloc: np.ndarray,
) -> None:
    """Record window ``window``'s first ``commit`` hours in ``roll`` and its costs."""
    assert result.allocation is not None and result.dc_hourly is not None
    s = window.start_hour
    x = result.allocation.transpose("area", "dc", "query_type", "hour").isel(hour=slice(0, commit))
    alloc[..., s : s + commit] = x.values
    grid = result.dc_hourly.set_index(["dc", "hour"])["grid_kw"].to_xarray().reindex(dc=sub.dcs)
    costs = hourly_costs(sub, result.allocation, grid, roll.plan_config)
    costs = costs[costs["hour"] < commit]
    flows = result.dc_hourly[result.dc_hourly["hour"] < commit].copy()
    window.objective = {c: float(costs[c].sum()) for c in costs.columns if c.endswith("_usd")}
    if roll.weights:  # weighted mode (lexicographic plans have no weighted objective)
        window.weighted_usd = float(
            sum(roll.weights[k] * window.objective[f"{k}_usd"] for k in OBJECTIVES)
        )
    window.water_committed_l = float(flows["water_l"].sum())
    window.carbon_kg = float(flows["carbon_kg"].sum())
    ds = sub.ds
    price = ds["price_usd_per_kwh"].transpose("hour", "dc").values
    cprice = (ds["carbon_kg_per_kwh"] * ds["carbon_price_usd_per_kg"]).transpose("hour", "dc")
    h = flows["hour"].to_numpy(dtype=np.int64)
    d = flows["dc"].map({name: i for i, name in enumerate(sub.dcs)}).to_numpy(dtype=np.int64)
    g = flows["grid_kw"].to_numpy(dtype=np.float64)
    flows["energy_usd"] = price[h, d] * g
    flows["carbon_usd"] = cprice.values[h, d] * g
    flows["hour"] = flows["hour"] + s
    flows.insert(2, "window", window.index)
    assert roll.dc_hourly is not None
    roll.dc_hourly = pd.concat([roll.dc_hourly, flows], ignore_index=True)
    for fam in GUIDE_FAMILIES:
        if fam not in result.duals:
            continue
        da = result.duals[fam].isel(hour=slice(0, commit))
        da = da.assign_coords(hour=np.arange(s, s + commit, dtype=np.int64))
        roll.duals[fam] = (
            da if fam not in roll.duals else xr.concat([roll.duals[fam], da], dim="hour")
        )
    water_dual = result.duals.get("water")
    if water_dual is not None and water_dual.size:
        window.water_price_usd_per_l = max(0.0, -float(np.nan_to_num(water_dual.values.ravel()[0])))
    else:  # a decomposed window: the coordinated water price μ
        window.water_price_usd_per_l = max(
            0.0, float(getattr(result, "water_price_usd_per_l", 0.0) or 0.0)
        )
    assert roll.water_price is not None
    roll.water_price[s : s + commit] = window.water_price_usd_per_l
    roll.window_of_hour[s : s + commit] = window.index


def _solve(sub: Scenario, cfg: PlanConfig, decompose: DecomposeConfig | None) -> PlanResult:
    if decompose is None:
        return plan(sub, cfg)
    from greensched.scheduler.decompose import plan_decomposed

    return plan_decomposed(sub, cfg, decompose)


def plan_rolling(
    scen: Scenario,
    plan_config: PlanConfig | None = None,
    rolling: RollingConfig | None = None,
    *,
    progress: Callable[[int, int, RollingWindow], None] | None = None,
) -> RollingResult:
    """Re-plan ``scen`` every ``step_h`` hours over a ``horizon_h``-hour window (module docs).

    ``progress(done, total, window)`` is called after every window.  Stops at the first window
    that is not optimal (its status and diagnosis message are in the result).
    """
    cfg = plan_config or PlanConfig()
    rcfg = rolling or RollingConfig()
    t_start = time.perf_counter()
    span = rcfg.span_hours(scen)
    zones = resolve_dc_time_zones(scen, rcfg.dc_tz)
    starts = list(range(0, span, rcfg.step_h))
    budget_span = span_water_budget(scen, span)
    rule: WaterRule | None = None
    if budget_span is not None:
        span_scen = window_scenario(scen, 0, span, None)
        least = least_water_by_hour(span_scen, cfg, chunk_h=max(rcfg.horizon_h, 24))
        rule = WaterRule(budget_span, load_weights(span_scen), least)
        if budget_span < rule.least_total_l * (1 - 1e-9):
            raise InfeasibleError(
                f"infeasible: the water budget of hours 0-{span - 1} ({budget_span:.6g} l) is "
                f"below the least water they can be served with ({rule.least_total_l:.6g} l)",
                [
                    {
                        "family": "water",
                        "where": {},
                        "shortfall": rule.least_total_l - budget_span,
                        "unit": "l",
                        "limit": budget_span,
                    }
                ],
            )
    roll = RollingResult(
        scenario=scen.name,
        start_utc=window_scenario(scen, 0, 1, None).start,
        span_h=span,
        config=rcfg,
        plan_config=cfg,
        water_budget_l=budget_span,
        water_least_l=None if rule is None else rule.least_total_l,
        zones=zones,
        dc_hourly=pd.DataFrame(),
        water_price=xr.DataArray(
            np.zeros(span), dims=("hour",), coords={"hour": np.arange(span, dtype=np.int64)}
        ),
        window_of_hour=np.full(span, -1, dtype=np.int64),
    )
    sizes = scen.sizes()
    alloc = np.zeros((sizes["area"], sizes["dc"], sizes["query_type"], span))
    for index, s in enumerate(starts):
        t0 = time.perf_counter()
        e = min(s + rcfg.horizon_h, span)
        commit = min(rcfg.step_h, span - s)
        budget = None if rule is None else rule.window_budget(s, e)
        sub = window_scenario(scen, s, e, budget)
        result = _solve(sub, cfg, rcfg.decompose)
        window = RollingWindow(
            index=index,
            start_hour=s,
            end_hour=e,
            commit_end_hour=s + commit,
            start_utc=sub.start,
            status=result.status.value,
            water_budget_l=budget,
            build_s=float(result.build_seconds),
            solve_s=float(result.solve_s),
            method=str(getattr(result, "method", "monolithic")),
            message=result.message,
        )
        if rcfg.decompose is not None:
            window.gap_relative = float(getattr(result, "gap_relative", float("nan")))
            window.rounds = int(getattr(result, "rounds", 0))
        roll.windows.append(window)
        if not result.is_ok:
            window.wall_s = time.perf_counter() - t0
            if progress is not None:
                progress(index + 1, len(starts), window)
            break
        if roll.weights is None and result.weights:
            roll.weights = dict(result.weights)
        window.window_objective = dict(result.objective)
        window.water_planned_l = float(result.water_l)
        _commit_window(roll, window, sub, result, commit, alloc)
        if rule is not None:
            rule.commit(window.water_committed_l)
        window.wall_s = time.perf_counter() - t0
        if progress is not None:
            progress(index + 1, len(starts), window)
    ds = scen.ds
    roll.allocation = xr.DataArray(
        alloc,
        dims=("area", "dc", "query_type", "hour"),
        coords={
            "area": ds.indexes["area"],
            "dc": ds.indexes["dc"],
            "query_type": ds.indexes["query_type"],
            "hour": np.arange(span, dtype=np.int64),
        },
    )
    roll.wall_s = time.perf_counter() - t_start
    return roll


def plan_perfect_foresight(
    scen: Scenario, plan_config: PlanConfig | None = None, rolling: RollingConfig | None = None
) -> PlanResult:
    """The monolithic plan of the committed span with its budget Z_S: the perfect-foresight
    reference a rolling plan is compared with (same span, same budget, one window)."""
    rcfg = rolling or RollingConfig()
    span = rcfg.span_hours(scen)
    sub = window_scenario(scen, 0, span, span_water_budget(scen, span))
    return _solve(sub, plan_config or PlanConfig(), rcfg.decompose)
