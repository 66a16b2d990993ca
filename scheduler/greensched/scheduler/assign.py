"""Online assignment of individual jobs to data centers: greedy, plan-guided and plan-following.

Every job j (arrival hour h, area a, query type k, tokens n_j = input + output, latency objective
SLA_j) goes to one data center.  The greedy assigner picks, among the DCs allowed for the job, the
one with the lowest score (weighted USD)::

    score(d) = σ_e · c[h,d] · PUE[d] · E[j,d]                     energy bought (USD)
             + σ_c · δ[d] · θ[h,d] · PUE[d] · E[j,d]              carbon priced (USD)
             + σ_d · α_k · max(0, s[j,d] − SLA_j)                 SLA excess (USD)
             + w · (WUE[h,d] / PUE[d] + EWIF[h,d]) · PUE[d] · E[j,d]   water (USD), w ≥ 0
             + Σ_r π[d,r,h] · u[j,r]                               plan-guided only

with E the predicted IT energy (kWh) and s the predicted end-to-end service time (s) of the job at
d, σ the objective weights normalised to sum 1 as in the planner (default: the scenario's), α_k the
query type's ``delay_penalty_usd_per_s`` (configurable), w a water price in USD per litre
(:attr:`AssignConfig.water_price_usd_per_l`, plus the plan's water shadow price in plan-guided
mode), u[j,r] = units_per_token[k,r] · n_j the job's resource units and π[d,r,h] = −dual ≥ 0 the
plan's shadow price of the capacity row (USD per unit; planner duals are ∂objective/∂rhs, ≤ 0 when
binding).  Energy is valued as if bought from the grid: on-site renewables are a plan-level effect.

A DC is *allowed* for a job when

* it has room this hour: u[j,r] ≤ remaining[h,d,r] for every resource r (exact bookkeeping in
  integer ticks, see :class:`CapacityLedger`);
* with ``sla_hard``, s[j,d] ≤ SLA_j;
* the job's area lists it in the data-sovereignty map (areas not in the map may use every DC).

Jobs that no DC can take get ``dc = ""`` and a ``reason``: ``"sovereignty"`` (the area's list is
empty of usable DCs), ``"sla"`` (no allowed DC meets the SLA in hard mode) or ``"capacity"``.

Semantics are those of a sequential loop over jobs in arrival order (ties broken by table order):
each job takes its best allowed DC given what earlier jobs of the same hour reserved.  The
implementation is vectorised and exact: per hour it scores all jobs at once, lets every job take
its best DC, finds the first job whose DC would overflow (per-DC cumulative sums), commits the
jobs before it, re-decides that job alone, and repeats on a window that adapts to how far the
previous round got.  Remaining capacity only shrinks within an hour, so a DC too full for a job at
the start of a round stays too full; and the chosen DC is the minimum of a key over the allowed
set, which does not change when DCs other than the chosen one drop out.  Exploration and
plan-following are written as such "argmin of a key" rules too (ε-greedy: a random key with
probability ε; softmax: score − T·Gumbel noise; plan-following: an exponential race
Exp(1)/fraction), so the same exact engine serves them.  Propensities (the probability of the
chosen DC under the policy, given the DCs allowed at the job's turn) are recorded per job.

Predictions are an :class:`xarray.Dataset` with dims ``(job, dc)`` and variables ``energy_kwh``
and ``service_s`` (optionally ``energy_kwh_p90``, ``service_s_p90`` for the risk-aware mode, which
scores and checks SLAs with the p90 values); ``job`` labels are the jobs' ``job_id``.
:func:`predictions_from_coefficients` builds them from the scenario's per-query coefficients.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.jobs import validate_jobs
from greensched.scenario import Scenario

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.planner import PlanResult

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "REASONS",
    "AssignConfig",
    "AssignError",
    "Assignment",
    "CapacityLedger",
    "GreedyAssigner",
    "JobDecision",
    "PlanGuide",
    "PreparedBatch",
    "assign_greedy",
    "assign_plan_following",
    "evaluate_assignment",
    "job_usage_units",
    "predictions_from_coefficients",
    "sample_jobs_from_demand",
    "write_plan_duals",
]

#: Reasons a job could not be placed, in the order they are tested.
REASONS = ("sovereignty", "sla", "capacity")

#: Columns of :attr:`Assignment.frame` (one row per job, in the jobs table's order).
ASSIGNMENT_COLUMNS = (
    "job_id",
    "dc",
    "hour",
    "predicted_energy_kwh",
    "predicted_service_s",
    "energy_usd",
    "carbon_kg",
    "carbon_usd",
    "water_l",
    "delay_usd",
    "cost_usd",
    "score",
    "propensity",
    "reason",
)

_EXPLORE = (None, "epsilon", "softmax")
_OBJECTIVES = ("energy", "carbon", "delay")


class AssignError(GreenSchedError):
    """Inputs of an assignment do not fit together (predictions, jobs, plan, masks)."""


# -- capacity ------------------------------------------------------------------------------------


class CapacityLedger:
    """Remaining capacity per (hour, dc, resource), shared and thread-safe.

    Capacities and usages are kept in integer *ticks* (``ticks_per_unit`` per resource unit):
    usages are rounded up and capacities down, so that sums are exact, a reservation never
    exceeds the true capacity, and the ledger's totals equal the sum of the accepted jobs' ticks
    exactly.  Every read-modify-write holds :attr:`lock` (re-entrant), so an HTTP service may
    share one ledger between threads; batch assigners hold it while they place an hour's jobs.

    Parameters
    ----------
    capacity
        Capacity in resource units per hour, dims ``(dc, resource)`` (the same every hour) or
        ``(dc, resource, hour)``; a DataArray (labels taken from it) or an array with ``dcs``
        and ``resources`` given.
    hours
        Number of hourly slots T.
    dcs, resources
        Labels when ``capacity`` is a bare array.
    ticks_per_unit
        Resolution of the bookkeeping (default 2**20 ticks per resource unit).
    """

    def __init__(
        self,
        capacity: xr.DataArray | np.ndarray,
        *,
        hours: int,
        dcs: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        ticks_per_unit: int = 2**20,
    ) -> None:
        if isinstance(capacity, xr.DataArray):
            dims = ("dc", "resource", "hour") if "hour" in capacity.dims else ("dc", "resource")
            cap_da = capacity.transpose(*dims)
            dcs = [str(v) for v in cap_da.indexes["dc"]]
            resources = [str(v) for v in cap_da.indexes["resource"]]
            arr = np.asarray(cap_da.values, dtype=float)
        else:
            arr = np.asarray(capacity, dtype=float)
            if dcs is None or resources is None:
                raise AssignError("CapacityLedger: give dcs and resources with a bare array")
        if int(hours) < 1:
            raise AssignError(f"CapacityLedger: hours must be >= 1, got {hours!r}")
        if arr.ndim == 2:
            arr = np.broadcast_to(arr[:, :, None], arr.shape + (int(hours),))
        if arr.shape != (len(dcs), len(resources), int(hours)):
            raise AssignError(
                f"CapacityLedger: capacity has shape {arr.shape}, expected "
                f"({len(dcs)} dcs, {len(resources)} resources, {hours} hours)"
            )
        if not np.all(np.isfinite(arr)) or (arr < 0).any():
            raise AssignError("CapacityLedger: capacities must be finite and >= 0")
        self.ticks_per_unit = int(ticks_per_unit)
        if float(arr.max(initial=0.0)) * self.ticks_per_unit > 2.0**62:
            raise AssignError(
                f"CapacityLedger: capacity {arr.max()!r} is too large for {ticks_per_unit} "
                "ticks per unit; pass a smaller ticks_per_unit"
            )
        self.dcs = list(map(str, dcs))
        self.resources = list(map(str, resources))
        self.hours = int(hours)
        self._dc_index = {d: i for i, d in enumerate(self.dcs)}
        # (hour, dc, resource) layout: one hour's block is contiguous.
        self.capacity_ticks = np.floor(arr.transpose(2, 0, 1) * self.ticks_per_unit).astype(
            np.int64
        )
        self.used_ticks = np.zeros_like(self.capacity_ticks)
        self.lock = threading.RLock()

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kwargs: Any) -> CapacityLedger:
        """A ledger holding the scenario's ``capacity`` for each of its hours."""
        return cls(scenario.ds["capacity"], hours=scenario.hours, **kwargs)

    # -- conversions -------------------------------------------------------------------------
    def to_ticks(self, units: np.ndarray | Sequence[float]) -> np.ndarray:
        """Resource units → integer ticks, rounded up (a usage is never under-counted)."""
        u = np.asarray(units, dtype=float)
        if not np.all(np.isfinite(u)) or (u < 0).any():
            raise AssignError("resource usage must be finite and >= 0")
        scaled = u * self.ticks_per_unit
        # a hair below the next integer still rounds up; exact products stay exact
        return np.ceil(scaled - 1e-9 * np.maximum(1.0, scaled)).astype(np.int64)

    def dc_index(self, dc: int | str) -> int:
        """Position of a DC given by label or position."""
        if isinstance(dc, str):
            if dc not in self._dc_index:
                raise AssignError(f"unknown dc {dc!r}; the ledger has {', '.join(self.dcs)}")
            return self._dc_index[dc]
        i = int(dc)
        if not 0 <= i < len(self.dcs):
            raise AssignError(f"dc index {dc!r} out of range 0..{len(self.dcs) - 1}")
        return i

    def _hour(self, hour: int) -> int:
        h = int(hour)
        if not 0 <= h < self.hours:
            raise AssignError(f"hour {hour!r} out of range 0..{self.hours - 1}")
        return h

    # -- reading -----------------------------------------------------------------------------
    def remaining_ticks(self, hour: int) -> np.ndarray:
        """Copy of the remaining ticks of one hour, shape (dc, resource)."""
        h = self._hour(hour)
        with self.lock:
            return self.capacity_ticks[h] - self.used_ticks[h]

    def used_units(self) -> xr.DataArray:
        """Reserved resource units, dims (dc, resource, hour)."""
        with self.lock:
            used = self.used_ticks.transpose(1, 2, 0) / self.ticks_per_unit
        return self._labelled(used)

    def remaining_units(self) -> xr.DataArray:
        """Remaining resource units, dims (dc, resource, hour)."""
        with self.lock:
            rem = (self.capacity_ticks - self.used_ticks).transpose(1, 2, 0) / self.ticks_per_unit
        return self._labelled(rem)

    def _labelled(self, arr: np.ndarray) -> xr.DataArray:
        return xr.DataArray(
            arr,
            dims=("dc", "resource", "hour"),
            coords={
                "dc": np.asarray(self.dcs, dtype=object),
                "resource": np.asarray(self.resources, dtype=object),
                "hour": np.arange(self.hours, dtype=np.int64),
            },
        )

    def copy(self) -> CapacityLedger:
        """An independent ledger with the same capacities and reservations."""
        new = object.__new__(CapacityLedger)
        with self.lock:
            new.__dict__.update(self.__dict__)
            new.capacity_ticks = self.capacity_ticks.copy()
            new.used_ticks = self.used_ticks.copy()
        new.lock = threading.RLock()
        return new

    # -- changing ----------------------------------------------------------------------------
    def fits(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> bool:
        """Whether ``units`` (one value per resource) fit into the DC's remaining capacity."""
        h, d, t = self._hour(hour), self.dc_index(dc), self._ticks_vector(units)
        with self.lock:
            return bool(np.all(self.used_ticks[h, d] + t <= self.capacity_ticks[h, d]))

    def reserve(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> bool:
        """Reserve ``units`` at ``dc`` in ``hour`` if they fit; returns whether it did."""
        return self.reserve_ticks(hour, dc, self._ticks_vector(units))

    def reserve_ticks(self, hour: int, dc: int | str, ticks: np.ndarray) -> bool:
        """Like :meth:`reserve` with a usage already in ticks."""
        h, d = self._hour(hour), self.dc_index(dc)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            if np.all(self.used_ticks[h, d] + t <= self.capacity_ticks[h, d]):
                self.used_ticks[h, d] += t
                return True
            return False

    def reserve_first(self, hour: int, dc_order: Sequence[int], ticks: np.ndarray) -> int:
        """Reserve at the first DC of ``dc_order`` (positions) with room; -1 when none has."""
        h = self._hour(hour)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            used, cap = self.used_ticks[h], self.capacity_ticks[h]
            for d in dc_order:
                if np.all(used[d] + t <= cap[d]):
                    used[d] += t
                    return int(d)
        return -1

    def release(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> None:
        """Give back a reservation made with :meth:`reserve` (same units)."""
        self.release_ticks(hour, dc, self._ticks_vector(units))

    def release_ticks(self, hour: int, dc: int | str, ticks: np.ndarray) -> None:
        """Like :meth:`release` with a usage in ticks."""
        h, d = self._hour(hour), self.dc_index(dc)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            if np.any(self.used_ticks[h, d] < t):
                raise AssignError(
                    f"release at hour {h}, dc {self.dcs[d]!r} exceeds what is reserved "
                    f"({(self.used_ticks[h, d] / self.ticks_per_unit).tolist()} units)"
                )
            self.used_ticks[h, d] -= t

    def _ticks_vector(self, units: np.ndarray | Sequence[float]) -> np.ndarray:
        t = self.to_ticks(units)
        if t.shape != (len(self.resources),):
            raise AssignError(
                f"usage needs one value per resource ({', '.join(self.resources)}), got shape "
                f"{t.shape}"
            )
        return t


# -- configuration and plan signals -----------------------------------------------------------


@dataclass
class AssignConfig:
    """How the assigner scores and masks DCs.

    Parameters
    ----------
    weights
        ``{"energy", "carbon", "delay"}`` (or a 3-tuple) ≥ 0, not all zero, normalised to sum 1;
        ``None`` uses the plan's weights in plan-guided mode, else the scenario's.
    delay_penalty_usd_per_s
        α in USD per second of SLA excess: one number for every type, a mapping query type → α,
        or ``None`` for each type's ``delay_penalty_usd_per_s``.
    delay_cost
        ``"excess"``: α · max(0, s − SLA) (default); ``"linear"``: α · s.
    water_price_usd_per_l
        Price of water (USD per litre, ≥ 0) in the score.
    sla_hard
        Exclude DCs whose predicted service time exceeds the job's SLA.
    sovereignty
        Mapping area → DCs its jobs may use; areas not in the mapping may use every DC.
    risk
        Score and check the SLA with the p90 predictions (``energy_kwh_p90``, ``service_s_p90``).
    plan_energy_prices
        Plan-guided only: value energy at the plan's marginal facility-energy price
        (:attr:`PlanGuide.energy_price`, which sees on-site renewables) instead of
        σ_e · price + σ_c · δ · θ.
    explore
        ``None``, ``"epsilon"`` (ε-greedy) or ``"softmax"`` (Boltzmann with ``temperature`` USD).
    epsilon, temperature
        Exploration parameters (0 ≤ ε ≤ 1; temperature > 0, in score units, USD).
    seed
        Seed of the exploration and plan-following draws.
    """

    weights: Mapping[str, float] | Sequence[float] | None = None
    delay_penalty_usd_per_s: float | Mapping[str, float] | None = None
    delay_cost: str = "excess"
    water_price_usd_per_l: float = 0.0
    sla_hard: bool = False
    sovereignty: Mapping[str, Sequence[str]] | None = None
    risk: bool = False
    plan_energy_prices: bool = False
    explore: str | None = None
    epsilon: float = 0.1
    temperature: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weights is not None:
            self.weights = _normalise_weights(self.weights)
        if self.delay_cost not in ("excess", "linear"):
            raise AssignError(
                f"delay_cost {self.delay_cost!r} is not known; expected 'excess' or 'linear'"
            )
        if not math.isfinite(self.water_price_usd_per_l) or self.water_price_usd_per_l < 0:
            raise AssignError(
                f"water_price_usd_per_l {self.water_price_usd_per_l!r} must be finite and >= 0"
            )
        if self.explore is not None:
            self.explore = str(self.explore).lower()
            if self.explore in ("", "none"):
                self.explore = None
        if self.explore not in _EXPLORE:
            raise AssignError(
                f"explore {self.explore!r} is not known; expected None, 'epsilon' or 'softmax'"
            )
        if not (0.0 <= float(self.epsilon) <= 1.0):
            raise AssignError(f"epsilon {self.epsilon!r} must lie in [0, 1]")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise AssignError(f"temperature {self.temperature!r} must be a finite number > 0")
        if isinstance(self.delay_penalty_usd_per_s, int | float):
            a = float(self.delay_penalty_usd_per_s)
            if not math.isfinite(a) or a < 0:
                raise AssignError(f"delay_penalty_usd_per_s {a!r} must be finite and >= 0")


def _normalise_weights(w: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
    if isinstance(w, Mapping):
        unknown = set(w) - set(_OBJECTIVES)
        if unknown:
            raise AssignError(
                f"unknown weight(s) {sorted(unknown)!r}; expected energy, carbon, delay"
            )
        vals = [float(w.get(k, 0.0)) for k in _OBJECTIVES]
    else:
        vals = [float(v) for v in w]
        if len(vals) != 3:
            raise AssignError(f"weights {w!r} need three values: energy, carbon, delay")
    if any(not math.isfinite(v) or v < 0 for v in vals) or sum(vals) <= 0:
        raise AssignError(f"weights {w!r} must be finite, >= 0 and not all zero")
    total = sum(vals)
    return {k: v / total for k, v in zip(_OBJECTIVES, vals, strict=True)}


@dataclass
class PlanGuide:
    """What the online assigner takes from a plan.

    Attributes
    ----------
    resource_price
        π[d,r,h] = −(dual of the capacity row) ≥ 0, USD (weighted objective) per resource unit,
        dims (dc, resource, hour); ``None`` when the plan carries no duals.
    water_price_usd_per_l
        −(dual of the water-budget row) ≥ 0, USD per litre (0 without a budget).
    energy_price
        Marginal (weighted) USD per kWh of facility energy at (dc, hour) in the plan:
        −dual(power_balance) + dual(no_export), dims (dc, hour).  It is 0 where on-site
        renewables were in surplus and σ_e c + σ_c δ θ where grid power was marginal.  Used in
        place of the price and carbon terms only with ``AssignConfig.plan_energy_prices``.
    allocation
        Plan shares x, dims (area, dc, query_type, hour), for plan-following.
    weights
        The plan's objective weights (weighted mode), used by default in plan-guided scoring.
    """

    resource_price: xr.DataArray | None = None
    water_price_usd_per_l: float = 0.0
    energy_price: xr.DataArray | None = None
    allocation: xr.DataArray | None = None
    weights: dict[str, float] | None = None
    source: str = ""

    @classmethod
    def from_result(cls, result: PlanResult) -> PlanGuide:
        """Duals, allocation and weights of a solved :class:`PlanResult`."""
        if not result.is_ok:
            raise AssignError(f"the plan is not usable: status {result.status.value!r}")
        guide = cls._from_duals(result.duals)
        guide.allocation = result.allocation
        guide.weights = dict(result.weights) if result.weights else None
        guide.source = "PlanResult"
        return guide

    @classmethod
    def _from_duals(cls, duals: Mapping[str, xr.DataArray]) -> PlanGuide:
        price = None
        if "resource" in duals:
            price = (-duals["resource"]).clip(min=0.0).fillna(0.0).transpose(
                "dc", "resource", "hour"
            )
        water = 0.0
        if "water" in duals and duals["water"].size:
            water = max(0.0, -float(np.nan_to_num(duals["water"].values.ravel()[0])))
        energy = None
        if "power_balance" in duals:
            energy = -duals["power_balance"].fillna(0.0)
            if "no_export" in duals:
                energy = energy + duals["no_export"].fillna(0.0)
            energy = energy.transpose("dc", "hour")
        return cls(resource_price=price, water_price_usd_per_l=water, energy_price=energy)

    @classmethod
    def from_directory(cls, directory: str | Path) -> PlanGuide:
        """Read a plan directory (``PlanResult.write``) and its duals when present.

        Reads ``plan.json`` (status must be optimal), ``allocation.csv`` (hour, area,
        query_type, dc, fraction) and, when present, the row duals: ``duals.csv`` as written by
        ``PlanResult.write`` (long form: family, hour, dc, area, query_type, resource, dual) or
        ``duals.json`` as written by :func:`write_plan_duals`.
        """
        root = Path(directory)
        meta_path = root / "plan.json"
        if not meta_path.is_file():
            raise AssignError(f"{meta_path}: plan.json not found; is this a plan directory?")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AssignError(f"{meta_path}: invalid JSON ({exc})") from exc
        if meta.get("status") != "optimal":
            raise AssignError(
                f"{meta_path}: plan status is {meta.get('status')!r}; only an optimal plan "
                "can guide assignments"
            )
        guide = cls()
        duals_csv = root / "duals.csv"
        duals_json = root / "duals.json"
        if duals_csv.is_file():
            guide = cls._from_duals(_read_duals_csv(duals_csv))
        elif duals_json.is_file():
            try:
                raw = json.loads(duals_json.read_text(encoding="utf-8"))
                duals = {k: xr.DataArray.from_dict(v) for k, v in raw.items()}
            except (json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                raise AssignError(
                    f"{duals_json}: cannot read duals ({exc}); expected "
                    "{family: DataArray.to_dict()}"
                ) from exc
            guide = cls._from_duals(duals)
        alloc_path = root / "allocation.csv"
        if alloc_path.is_file():
            df = pd.read_csv(alloc_path, dtype={"area": str, "query_type": str, "dc": str})
            need = {"hour", "area", "query_type", "dc", "fraction"}
            if not need <= set(df.columns):
                raise AssignError(f"{alloc_path}: needs columns {sorted(need)}")
            guide.allocation = (
                df.set_index(["area", "dc", "query_type", "hour"])["fraction"].to_xarray()
            )
        if meta.get("mode") == "weighted" and isinstance(meta.get("weights"), dict):
            guide.weights = _normalise_weights(meta["weights"])
        guide.source = str(root)
        return guide

    @property
    def has_duals(self) -> bool:
        """True when capacity shadow prices are known."""
        return self.resource_price is not None


#: Index columns of the dual families the assigner reads from ``duals.csv``.
_DUAL_DIMS = {
    "resource": ("dc", "resource", "hour"),
    "power_balance": ("dc", "hour"),
    "no_export": ("dc", "hour"),
    "water": (),
}


def _read_duals_csv(path: Path) -> dict[str, xr.DataArray]:
    """Duals of the families in :data:`_DUAL_DIMS` from the planner's long-form ``duals.csv``."""
    try:
        df = pd.read_csv(path, dtype={"family": str, "dc": str, "area": str,
                                      "query_type": str, "resource": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AssignError(f"{path}: cannot parse as CSV ({exc})") from exc
    if not {"family", "dual"} <= set(df.columns):
        raise AssignError(f"{path}: needs columns family, ..., dual (PlanResult.duals_frame)")
    out: dict[str, xr.DataArray] = {}
    for family, dims in _DUAL_DIMS.items():
        sub = df[df["family"] == family]
        if sub.empty:
            continue
        if not dims:
            out[family] = xr.DataArray(float(sub["dual"].iloc[0]))
            continue
        missing = [d for d in dims if d not in sub.columns or sub[d].isna().any()]
        if missing:
            raise AssignError(f"{path}: family {family!r} rows lack {missing!r}")
        sub = sub.astype({"hour": np.int64})
        out[family] = sub.set_index(list(dims))["dual"].to_xarray()
    return out


def write_plan_duals(result: PlanResult, directory: str | Path) -> Path:
    """Write the plan's row duals as ``duals.json`` ({family: DataArray.to_dict()}).

    :meth:`PlanGuide.from_directory` reads it back.  Sign: ∂objective/∂rhs (≤ 0 when binding).
    """
    if not result.is_ok:
        raise AssignError(f"the plan has no duals: status {result.status.value!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload = {}
    for name, da in result.duals.items():
        clean = da.copy()
        clean = clean.assign_coords({d: [_plain(v) for v in clean.indexes[d]] for d in clean.dims})
        payload[name] = clean.to_dict(data="list")
    path = out / "duals.json"
    path.write_text(json.dumps(payload, default=_plain) + "\n", encoding="utf-8")
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


# -- per-job inputs ----------------------------------------------------------------------------


def _type_tokens(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    ds = scenario.ds
    h = np.asarray(ds["input_tokens"].values, dtype=float)
    f = np.asarray(ds["output_tokens"].values, dtype=float)
    return h, f


def _job_codes(scenario: Scenario, jobs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Integer codes and numeric columns of a validated jobs frame."""
    area = np.asarray(pd.Categorical(jobs["area"], categories=scenario.areas).codes)
    qtype = np.asarray(pd.Categorical(jobs["query_type"], categories=scenario.query_types).codes)
    if (area < 0).any() or (qtype < 0).any():
        col = "area" if (area < 0).any() else "query_type"
        row = int(np.flatnonzero((area if col == "area" else qtype) < 0)[0])
        raise AssignError(
            f"jobs row {row}: unknown {col} {jobs[col].iloc[row]!r} for scenario "
            f"{scenario.name!r}"
        )
    hour = jobs["hour"].to_numpy().astype(np.int64)
    if ((hour < 0) | (hour >= scenario.hours)).any():
        row = int(np.flatnonzero((hour < 0) | (hour >= scenario.hours))[0])
        raise AssignError(f"jobs row {row}: hour {hour[row]} outside 0..{scenario.hours - 1}")
    _, f = _type_tokens(scenario)
    inp = jobs["input_tokens"].to_numpy().astype(float)
    if "output_tokens" in jobs.columns:
        out = pd.to_numeric(jobs["output_tokens"], errors="coerce").to_numpy(dtype=float)
        out = np.where(np.isfinite(out), out, f[qtype])
    else:
        out = f[qtype]
    arrival = (
        jobs["arrival_s"].to_numpy().astype(float)
        if "arrival_s" in jobs.columns
        else hour * 3600.0
    )
    return {
        "area": area.astype(np.int64),
        "qtype": qtype.astype(np.int64),
        "hour": hour,
        "tokens": inp + out,
        "sla": jobs["sla_s"].to_numpy().astype(float),
        "arrival": arrival,
    }


def job_usage_units(scenario: Scenario, jobs: pd.DataFrame) -> np.ndarray:
    """Resource units each job uses, u[j,r] = units_per_token[k_j,r] · (input + output tokens).

    Jobs without ``output_tokens`` count their query type's mean ``output_tokens``.  Shape
    (jobs, resources) in the scenario's resource order.
    """
    jobs = _ensure_valid(scenario, jobs)
    codes = _job_codes(scenario, jobs)
    upt = scenario.ds["units_per_token"].transpose("query_type", "resource").values
    return np.asarray(upt[codes["qtype"]] * codes["tokens"][:, None], dtype=float)


def _ensure_valid(scenario: Scenario, jobs: pd.DataFrame) -> pd.DataFrame:
    if "hour" in jobs.columns and "sla_s" in jobs.columns and "arrival_s" in jobs.columns and (
        jobs["hour"].dtype.kind == "i"
    ):
        return jobs
    return validate_jobs(jobs, scenario)


def predictions_from_coefficients(scenario: Scenario, jobs: pd.DataFrame) -> xr.Dataset:
    """Per-(job, dc) predictions from the scenario's per-query coefficients.

    With e[d,k,h] = :meth:`Scenario.energy_kwh_per_query` and p[d,k,h] =
    :meth:`Scenario.proc_delay_s_per_query` (``coefficients.csv`` when present, else the
    scenario's per-token model), job j of type k in hour h from area a gets::

        scale_j      = (input_j + output_j) / (input_tokens_k + output_tokens_k)
        energy_kwh   = e[d,k,h] · scale_j
        service_s    = p[d,k,h] · scale_j + rtt_s[a,d]

    i.e. energy and processing time are taken as proportional to the job's total tokens, relative
    to its query type's mean tokens (exact for the default per-token model when input and output
    cost the same per token; an approximation otherwise).  A job without ``output_tokens`` has
    scale input_j + f_k over h_k + f_k.  Transmission time is left out: the scenario's
    token_size / bandwidth quotient is not in seconds per token for every scenario.
    """
    jobs = _ensure_valid(scenario, jobs)
    codes = _job_codes(scenario, jobs)
    h, f = _type_tokens(scenario)
    mean_tokens = h + f
    if (mean_tokens <= 0).any():
        k = int(np.flatnonzero(mean_tokens <= 0)[0])
        raise AssignError(
            f"query type {scenario.query_types[k]!r} has zero mean tokens; cannot scale"
        )
    scale = codes["tokens"] / mean_tokens[codes["qtype"]]
    e = scenario.energy_kwh_per_query().transpose("hour", "query_type", "dc").values
    p = scenario.proc_delay_s_per_query().transpose("hour", "query_type", "dc").values
    rtt = scenario.ds["rtt_s"].transpose("area", "dc").values
    hh, kk = codes["hour"], codes["qtype"]
    energy = e[hh, kk] * scale[:, None]
    service = p[hh, kk] * scale[:, None] + rtt[codes["area"]]
    coords = {
        "job": pd.Index(jobs["job_id"]).rename("job"),
        "dc": np.asarray(scenario.dcs, dtype=object),
    }
    return xr.Dataset(
        {"energy_kwh": (("job", "dc"), energy), "service_s": (("job", "dc"), service)},
        coords=coords,
    )


def _prediction_arrays(
    predictions: xr.Dataset, job_ids: pd.Index, dcs: list[str], risk: bool
) -> dict[str, np.ndarray]:
    """energy/service (and risk) arrays aligned to the jobs' order and the scenario's DCs."""
    if not isinstance(predictions, xr.Dataset):
        raise AssignError(
            f"predictions must be an xarray Dataset with dims (job, dc), got "
            f"{type(predictions).__name__}"
        )
    need = ["energy_kwh", "service_s"]
    if risk:
        need += ["energy_kwh_p90", "service_s_p90"]
    missing = [v for v in need if v not in predictions.data_vars]
    if missing:
        extra = " (risk-aware mode needs the p90 quantiles)" if risk else ""
        raise AssignError(f"predictions lack variable(s) {missing!r}{extra}")
    for v in need:
        if set(predictions[v].dims) != {"job", "dc"}:
            raise AssignError(
                f"predictions[{v!r}] has dims {predictions[v].dims!r}; expected ('job', 'dc')"
            )
    pdcs = [str(v) for v in predictions.indexes["dc"]] if "dc" in predictions.indexes else None
    if pdcs is None or set(pdcs) != set(dcs):
        raise AssignError(
            f"predictions cover dcs {pdcs!r}; expected exactly the scenario's {dcs!r}"
        )
    dc_pos = pd.Index(pdcs).get_indexer(dcs)
    if "job" in predictions.indexes:
        pjobs = predictions.indexes["job"]
        if len(pjobs) == len(job_ids) and pjobs.equals(job_ids):
            job_pos = None
        else:
            if not pjobs.is_unique:
                raise AssignError("predictions have duplicated job labels")
            job_pos = pjobs.get_indexer(job_ids)
            if (job_pos < 0).any():
                first = job_ids[int(np.flatnonzero(job_pos < 0)[0])]
                raise AssignError(
                    f"predictions have no row for job_id {first!r} "
                    f"({int((job_pos < 0).sum())} job(s) missing)"
                )
    else:
        if int(predictions.sizes["job"]) != len(job_ids):
            raise AssignError(
                f"predictions have {int(predictions.sizes['job'])} jobs without labels, the "
                f"jobs table {len(job_ids)}; label the job dim with job_id"
            )
        job_pos = None
    out = {}
    for v in need:
        arr = np.asarray(predictions[v].transpose("job", "dc").values, dtype=float)
        if job_pos is not None:
            arr = arr[job_pos]
        arr = arr[:, dc_pos] if not np.array_equal(dc_pos, np.arange(len(dcs))) else arr
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            j, d = (int(x[0]) for x in np.nonzero(bad))
            raise AssignError(
                f"predictions[{v!r}] at job {job_ids[j]!r}, dc {dcs[d]!r} is {arr[j, d]!r}; "
                "expected a finite number >= 0"
            )
        out[v] = arr
    return out


# -- the exact sequential-semantics engine ------------------------------------------------------


def _choose(key: np.ndarray, fallback: np.ndarray | None, fits: np.ndarray) -> np.ndarray:
    """Argmin of ``key`` over allowed DCs; ``fallback`` where no allowed key is finite; -1: none.

    Without a fallback, keys of allowed DCs must be finite (scores, exploration keys).
    """
    k = np.where(fits, key, np.inf)
    c = k.argmin(axis=1)
    finite = np.isfinite(k[np.arange(len(c)), c])
    if fallback is None:
        c[~finite] = -1
        return c
    any_fit = fits.any(axis=1)
    use_fb = any_fit & ~finite
    if use_fb.any():
        c[use_fb] = np.where(fits[use_fb], fallback[use_fb], np.inf).argmin(axis=1)
    c[~any_fit] = -1
    return c


def _commit_prefix(c: np.ndarray, u: np.ndarray, rem: np.ndarray) -> int:
    """Commit the longest prefix of choices that fits; return its length.

    Every job takes its chosen DC ``c`` (-1: none) in order; the prefix ends before the first
    job whose DC would overflow given the earlier jobs' usage.  ``rem`` is reduced by the
    committed prefix's usage (exact integer sums).
    """
    D = rem.shape[0]
    counts = np.bincount(c + 1, minlength=D + 1)[1:]
    present = np.flatnonzero(counts)
    first = len(c)
    cums: list[tuple[int, np.ndarray, np.ndarray]] = []
    for d in present:
        idx = np.flatnonzero(c == d)
        cs = np.cumsum(u[idx], axis=0)
        cums.append((int(d), idx, cs))
        if np.all(cs[-1] <= rem[d]):
            continue
        # cumsum is non-decreasing per resource: the first overflow is a searchsorted
        pos = min(
            int(np.searchsorted(cs[:, r], rem[d, r], side="right")) for r in range(u.shape[1])
        )
        first = min(first, int(idx[pos]))
    for dc, idx, cs in cums:
        n_ok = len(idx) if first == len(c) else int(np.searchsorted(idx, first))
        if n_ok:
            rem[dc] -= cs[n_ok - 1]
    return first


def _engine_hour(
    key: np.ndarray,
    fallback: np.ndarray | None,
    ok: np.ndarray,
    u: np.ndarray,
    rem: np.ndarray,
    min_window: int = 256,
) -> np.ndarray:
    """Sequential greedy over one hour's jobs (arrival order), computed in vectorised rounds.

    ``key`` (m, D): lower is preferred; ``ok`` (m, D): static mask; ``u`` (m, R) ticks;
    ``rem`` (D, R) ticks, updated in place.  Returns the chosen DC per job (-1: none).
    """
    m = key.shape[0]
    choice = np.full(m, -1, dtype=np.int64)
    if m == 0:
        return choice
    p, window = 0, m
    umax = u.max(axis=0)  # an upper bound for every window: tight DCs are a superset
    while p < m:
        q = min(m, p + window)
        ub = u[p:q]
        fits = ok[p:q].copy()
        tight = np.flatnonzero((rem < umax[None, :]).any(axis=1))
        if tight.size:
            # R is small: one (w, D) comparison per resource that some DC is short of
            for r in np.flatnonzero((rem[tight] < umax[None, :]).any(axis=0)):
                fits &= ub[:, r, None] <= rem[None, :, r]
        c = _choose(key[p:q], None if fallback is None else fallback[p:q], fits)
        t = _commit_prefix(c, ub, rem)
        choice[p : p + t] = c[:t]
        if t == q - p:
            p = q
            window *= 2
            continue
        i = p + t
        fi = ok[i] & (u[i][None, :] <= rem).all(axis=1)
        ci = int(_choose(key[i : i + 1], None if fallback is None else fallback[i : i + 1],
                         fi[None, :])[0])
        choice[i] = ci
        if ci >= 0:
            rem[ci] -= u[i]
        p = i + 1
        window = max(min_window, 2 * t)
    return choice


def _allowed_at_turn(
    choice: np.ndarray, ok: np.ndarray, u: np.ndarray, rem_start: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Which DCs were allowed for each job at its turn (static mask and room), shape (m, D)."""
    m, D = ok.shape
    out = np.empty_like(ok)
    rem = rem_start.copy()
    dcs = np.arange(D)
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        c, ub = choice[s:e], u[s:e]
        onehot = c[:, None] == dcs[None, :]
        contrib = ub[:, None, :] * onehot[:, :, None]
        before = np.cumsum(contrib, axis=0) - contrib
        room = rem[None, :, :] - before
        fits = ok[s:e].copy()
        for r in range(ub.shape[1]):
            fits &= ub[:, r, None] <= room[:, :, r]
        out[s:e] = fits
        rem -= contrib.sum(axis=0)
    return out


# -- results ----------------------------------------------------------------------------------


@dataclass
class Assignment:
    """Assignment of a batch of jobs.

    Attributes
    ----------
    frame
        One row per job in the jobs table's order, columns :data:`ASSIGNMENT_COLUMNS`:
        ``dc`` ("" when unplaced, see ``reason``), the predictions used, cost components of the
        chosen DC at the mean predictions (``energy_usd`` = price · PUE · E, ``carbon_kg`` =
        θ · PUE · E, ``carbon_usd`` = δ · carbon_kg, ``water_l``, ``delay_usd`` = α · excess
        (or α · s), ``cost_usd`` = energy + carbon + delay, unweighted), ``score`` (weighted, as
        minimised) and ``propensity``.
    mode
        ``greedy``, ``guided``, ``follow`` or ``batch``.
    ledger
        The ledger the jobs were reserved in.
    """

    frame: pd.DataFrame
    mode: str
    ledger: CapacityLedger
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def assigned(self) -> np.ndarray:
        """Boolean mask of placed jobs."""
        return (self.frame["dc"] != "").to_numpy()

    def summary(self) -> dict[str, Any]:
        """Totals over placed jobs and counts of unplaced jobs by reason."""
        f = self.frame[self.assigned]
        out: dict[str, Any] = {
            "mode": self.mode,
            "jobs": len(self.frame),
            "assigned": len(f),
        }
        for col in ("energy_usd", "carbon_kg", "carbon_usd", "water_l", "delay_usd", "cost_usd",
                    "score", "predicted_energy_kwh"):
            out[col] = float(f[col].sum())
        for r in REASONS:
            out[f"unassigned_{r}"] = int((self.frame["reason"] == r).sum())
        return out


@dataclass
class PreparedBatch:
    """A validated, integer-coded batch of jobs with aligned predictions (input order)."""

    jobs: pd.DataFrame
    codes: dict[str, np.ndarray]
    preds: dict[str, np.ndarray]
    usage_ticks: np.ndarray
    energy: np.ndarray
    service: np.ndarray


@dataclass
class JobDecision:
    """Outcome of :meth:`GreedyAssigner.assign_one`."""

    dc: str | None
    dc_index: int
    hour: int
    score: float
    propensity: float
    reason: str
    usage_ticks: np.ndarray
    energy_usd: float = float("nan")
    carbon_kg: float = float("nan")
    cost_usd: float = float("nan")


# -- the assigner --------------------------------------------------------------------------------


class GreedyAssigner:
    """Greedy (optionally plan-guided, exploring or plan-following) assignment of jobs.

    Holds the scenario's per-(hour, dc) cost coefficients and the masks, so that many batches —
    or single jobs from a service — are scored without re-reading the scenario.

    Parameters
    ----------
    scenario
        The scenario the jobs belong to.
    config
        Scoring and masking options (:class:`AssignConfig`).
    guide
        Plan signals; with duals, their shadow prices enter the score (plan-guided mode).
    ledger
        Shared capacity ledger; a fresh one from the scenario when ``None``.
    """

    def __init__(
        self,
        scenario: Scenario,
        config: AssignConfig | None = None,
        *,
        guide: PlanGuide | None = None,
        ledger: CapacityLedger | None = None,
    ) -> None:
        self.scenario = scenario
        self.config = config or AssignConfig()
        self.guide = guide
        self.ledger = ledger if ledger is not None else CapacityLedger.from_scenario(scenario)
        self.dcs = scenario.dcs
        if self.ledger.dcs != self.dcs or self.ledger.resources != scenario.resources:
            raise AssignError("the ledger's dcs/resources differ from the scenario's")
        if self.ledger.hours != scenario.hours:
            raise AssignError(
                f"the ledger has {self.ledger.hours} hours, the scenario {scenario.hours}"
            )
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(self.config.seed)
        self._build()

    # -- coefficients ------------------------------------------------------------------------
    def _build(self) -> None:
        scen, cfg = self.scenario, self.config
        ds = scen.ds
        weights = cfg.weights
        if weights is None and self.guide is not None and self.guide.weights:
            weights = self.guide.weights
        if weights is None:
            weights = scen.weights
        self.weights = _normalise_weights(weights)  # type: ignore[arg-type]
        se, sc, sd = (self.weights[k] for k in _OBJECTIVES)
        pue = ds["pue"].sel(dc=self.dcs).values.astype(float)
        price = ds["price_usd_per_kwh"].transpose("hour", "dc").values.astype(float)
        theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values.astype(float)
        delta = ds["carbon_price_usd_per_kg"].values.astype(float)
        water_f = (
            ds["wue_l_per_kwh"].transpose("hour", "dc").values / pue[None, :]
            + ds["ewif_l_per_kwh"].transpose("hour", "dc").values
        )
        water_price = float(cfg.water_price_usd_per_l)
        if self.guide is not None:
            water_price += float(self.guide.water_price_usd_per_l)
        self.water_price_usd_per_l = water_price
        # per IT kWh, shape (hour, dc)
        self.energy_usd_per_kwh = price * pue[None, :]
        self.carbon_kg_per_kwh = theta * pue[None, :]
        self.carbon_usd_per_kwh = self.carbon_kg_per_kwh * delta[None, :]
        self.water_l_per_kwh = water_f * pue[None, :]
        self.score_per_kwh = (
            se * self.energy_usd_per_kwh
            + sc * self.carbon_usd_per_kwh
            + water_price * self.water_l_per_kwh
        )
        if cfg.plan_energy_prices:
            if self.guide is None or self.guide.energy_price is None:
                raise AssignError(
                    "plan_energy_prices needs a plan with power-balance duals (PlanGuide)"
                )
            marginal = self.guide.energy_price.reindex(
                dc=self.dcs, hour=np.arange(scen.hours), fill_value=0.0
            ).transpose("hour", "dc").values
            self.score_per_kwh = (
                marginal * pue[None, :] + water_price * self.water_l_per_kwh
            )
        types = scen.query_types
        rho = ds["delay_penalty_usd_per_s"].values.astype(float)
        a = cfg.delay_penalty_usd_per_s
        if a is None:
            alpha = rho
        elif isinstance(a, Mapping):
            unknown = set(a) - set(types)
            if unknown:
                raise AssignError(
                    f"delay_penalty_usd_per_s names unknown query type(s) {sorted(unknown)!r}"
                )
            alpha = np.array([float(a.get(k, r)) for k, r in zip(types, rho, strict=True)])
        else:
            alpha = np.full(len(types), float(a))
        if not np.all(np.isfinite(alpha)) or (alpha < 0).any():
            raise AssignError("delay penalties must be finite and >= 0")
        self.alpha = alpha
        self.delay_weight = sd
        self.units_per_token = ds["units_per_token"].transpose("query_type", "resource").values
        self.mean_output_tokens = ds["output_tokens"].values.astype(float)
        # plan-guided: per token shadow cost G[h, k, d] = Σ_r π[d,r,h] · units_per_token[k,r]
        self.guide_per_token: np.ndarray | None = None
        if self.guide is not None and self.guide.resource_price is not None:
            pi = self.guide.resource_price.reindex(
                dc=self.dcs, resource=scen.resources, hour=np.arange(scen.hours), fill_value=0.0
            ).transpose("hour", "resource", "dc").values
            self.guide_per_token = np.einsum("hrd,kr->hkd", pi, self.units_per_token)
        # sovereignty: allowed[a, d]
        allowed = np.ones((len(scen.areas), len(self.dcs)), dtype=bool)
        if cfg.sovereignty:
            area_pos = {a: i for i, a in enumerate(scen.areas)}
            dc_pos = {d: i for i, d in enumerate(self.dcs)}
            for area, dcs in cfg.sovereignty.items():
                if area not in area_pos:
                    raise AssignError(
                        f"sovereignty names unknown area {area!r}; the scenario has "
                        f"{', '.join(scen.areas[:8])}"
                    )
                if isinstance(dcs, str):
                    dcs = [dcs]
                row = np.zeros(len(self.dcs), dtype=bool)
                for d in dcs:
                    if d not in dc_pos:
                        raise AssignError(
                            f"sovereignty for area {area!r} names unknown dc {d!r}; the scenario "
                            f"has {', '.join(self.dcs[:8])}"
                        )
                    row[dc_pos[d]] = True
                allowed[area_pos[area]] = row
        self.area_allowed = allowed
        self._area_pos = {x: i for i, x in enumerate(scen.areas)}
        self._type_pos = {x: i for i, x in enumerate(types)}
        self.follow_shares: np.ndarray | None = None
        if self.guide is not None and self.guide.allocation is not None:
            alloc = self.guide.allocation.reindex(
                area=scen.areas, dc=self.dcs, query_type=types, hour=np.arange(scen.hours),
                fill_value=0.0,
            ).fillna(0.0)
            self.follow_shares = np.clip(
                alloc.transpose("hour", "area", "query_type", "dc").values, 0.0, None
            )

    # -- scoring -----------------------------------------------------------------------------
    def _scores(
        self,
        hour: np.ndarray,
        qtype: np.ndarray,
        tokens: np.ndarray,
        sla: np.ndarray,
        energy: np.ndarray,
        service: np.ndarray,
    ) -> np.ndarray:
        score = np.take(self.score_per_kwh, hour, axis=0)
        score *= energy
        w_alpha = (self.delay_weight * self.alpha)[qtype]
        if w_alpha.any():
            if self.config.delay_cost == "excess":
                delay = np.subtract(service, sla[:, None])
                np.maximum(delay, 0.0, out=delay)
            else:
                delay = service.copy()
            delay *= w_alpha[:, None]
            score += delay
        if self.guide_per_token is not None:
            extra = self.guide_per_token[hour, qtype]
            extra *= tokens[:, None]
            score += extra
        return score

    def _masks(
        self, area: np.ndarray, sla: np.ndarray, service: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        sov = self.area_allowed[area]
        if self.config.sla_hard:
            return sov, sov & (service <= sla[:, None])
        return sov, sov

    # -- batch assignment ------------------------------------------------------------------------
    def assign(
        self, jobs: pd.DataFrame, predictions: xr.Dataset, *, follow: bool = False
    ) -> Assignment:
        """Assign a batch of jobs, reserving their capacity in :attr:`ledger`.

        ``follow=True`` samples DCs in proportion to the plan's shares for the job's (area,
        type, hour) among the allowed DCs (exponential race, seeded); jobs whose allowed DCs
        all have share 0 fall back to the greedy score (propensity 1).
        """
        batch = self.prepare(jobs, predictions)
        codes = batch.codes
        choice, propensity, score = self.assign_arrays(
            hour=codes["hour"],
            area=codes["area"],
            qtype=codes["qtype"],
            tokens=codes["tokens"],
            sla=codes["sla"],
            energy=batch.energy,
            service=batch.service,
            usage_ticks=batch.usage_ticks,
            arrival=codes["arrival"],
            follow=follow,
        )
        return self.result(batch, choice, score, propensity,
                           "follow" if follow else self.mode)

    @property
    def mode(self) -> str:
        """``guided`` when plan shadow prices enter the score, else ``greedy``."""
        return "guided" if self.guide_per_token is not None else "greedy"

    def prepare(self, jobs: pd.DataFrame, predictions: xr.Dataset) -> PreparedBatch:
        """Validate and encode a batch: integer codes, aligned predictions, usage in ticks."""
        jobs = _ensure_valid(self.scenario, jobs)
        codes = _job_codes(self.scenario, jobs)
        preds = _prediction_arrays(predictions, pd.Index(jobs["job_id"]), self.dcs,
                                   self.config.risk)
        units = self.units_per_token[codes["qtype"]] * codes["tokens"][:, None]
        return PreparedBatch(
            jobs=jobs,
            codes=codes,
            preds=preds,
            usage_ticks=self.ledger.to_ticks(units),
            energy=preds["energy_kwh_p90"] if self.config.risk else preds["energy_kwh"],
            service=preds["service_s_p90"] if self.config.risk else preds["service_s"],
        )

    def score_matrix(self, batch: PreparedBatch) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n, D) and the static mask (SLA if hard, sovereignty) of a prepared batch."""
        c = batch.codes
        score = self._scores(c["hour"], c["qtype"], c["tokens"], c["sla"], batch.energy,
                             batch.service)
        _, ok = self._masks(c["area"], c["sla"], batch.service)
        return score, ok

    def result(self, batch: PreparedBatch, choice: np.ndarray, score: np.ndarray,
               propensity: np.ndarray, mode: str, **info: Any) -> Assignment:
        """Wrap per-job choices (input order) into an :class:`Assignment`."""
        frame = self._frame(batch.jobs, batch.codes, batch.preds, choice, score, propensity,
                            batch.service)
        return Assignment(frame=frame, mode=mode, ledger=self.ledger,
                          info={"weights": dict(self.weights),
                                "water_price_usd_per_l": self.water_price_usd_per_l, **info})

    def assign_arrays(
        self,
        *,
        hour: np.ndarray,
        area: np.ndarray,
        qtype: np.ndarray,
        tokens: np.ndarray,
        sla: np.ndarray,
        energy: np.ndarray,
        service: np.ndarray,
        usage_ticks: np.ndarray,
        arrival: np.ndarray | None = None,
        follow: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vectorised core on integer-coded jobs (input order kept).

        Parameters are per job: hour, area and query-type positions, total tokens, SLA (s),
        energy (kWh) and service time (s) per DC (shape (n, D), used for scoring), usage ticks
        (n, R) and arrival time (s; ties and missing → table order).

        Returns
        -------
        choice, propensity, score
            DC position per job (-1 when none), the chosen DC's probability under the policy
            (1 for plain greedy; NaN when unplaced) and its score (NaN when unplaced).
        """
        n = energy.shape[0]
        if arrival is None:
            order = np.lexsort((np.arange(n), hour))
        else:
            order = np.lexsort((np.arange(n), arrival, hour))
        identity = bool(np.array_equal(order, np.arange(n)))
        explore = self.config.explore if not follow else None
        if follow and self.follow_shares is None:
            raise AssignError("plan-following needs a plan allocation (PlanGuide.allocation)")
        need_turn = explore is not None or follow
        # results in arrival order
        choice = np.full(n, -1, dtype=np.int64)
        propensity = np.full(n, np.nan)
        chosen_score = np.full(n, np.nan)
        hour_sorted = hour if identity else hour[order]
        hours_present, starts = np.unique(hour_sorted, return_index=True)
        ends = np.append(starts[1:], n)
        for h_, s, e in zip(hours_present, starts, ends, strict=True):
            h = int(h_)
            idx: slice | np.ndarray = slice(s, e) if identity else order[s:e]
            hb, ab, kb = hour[idx], area[idx], qtype[idx]
            sla_b, ub = sla[idx], usage_ticks[idx]
            score = self._scores(hb, kb, tokens[idx], sla_b, energy[idx], service[idx])
            _, ok = self._masks(ab, sla_b, service[idx])
            shares = self.follow_shares[h, ab, kb] if follow else None  # type: ignore[index]
            key, fallback = self._keys(score, shares, explore)
            with self.ledger.lock:
                rem = self.ledger.capacity_ticks[h] - self.ledger.used_ticks[h]
                rem_start = rem.copy() if need_turn else rem
                c = _engine_hour(key, fallback, ok, ub, rem)
                self.ledger.used_ticks[h] = self.ledger.capacity_ticks[h] - rem
            choice[s:e] = c
            placed = np.flatnonzero(c >= 0)
            chosen_score[s + placed] = score[placed, c[placed]]
            if need_turn:
                allowed = _allowed_at_turn(c, ok, ub, rem_start)
                propensity[s:e] = self._propensity(c, allowed, score, shares, explore)
            else:
                propensity[s + placed] = 1.0
        if not identity:
            inv = np.empty(n, dtype=np.int64)
            inv[order] = np.arange(n)
            choice, propensity, chosen_score = choice[inv], propensity[inv], chosen_score[inv]
        return choice, propensity, chosen_score

    def _keys(
        self, score: np.ndarray, shares: np.ndarray | None, explore: str | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The key each job minimises over its allowed DCs (and a fallback key)."""
        m, D = score.shape
        if shares is not None:
            # exponential race: argmin Exp(1)/share is distributed ∝ share on any subset
            with self._lock:
                race = self._rng.exponential(1.0, size=(m, D))
            positive = shares > 0
            key = np.full((m, D), np.inf)
            np.divide(race, shares, out=key, where=positive)
            return key, score
        if explore == "epsilon":
            # with probability ε a uniform random key: argmin is uniform on any subset
            with self._lock:
                flip = np.asarray(self._rng.random(m) < self.config.epsilon)
                keys = self._rng.random((m, D))
            return np.where(flip[:, None], keys, score), None
        if explore == "softmax":
            # Gumbel-max: argmin (score − T·G) follows the Boltzmann law on any subset
            with self._lock:
                noise = self._rng.gumbel(size=(m, D))
            return score - self.config.temperature * noise, None
        return score, None

    def _propensity(
        self,
        c: np.ndarray,
        allowed: np.ndarray,
        score: np.ndarray,
        shares: np.ndarray | None,
        explore: str | None,
    ) -> np.ndarray:
        m = len(c)
        out = np.full(m, np.nan)
        placed = c >= 0
        if not placed.any():
            return out
        rows = np.flatnonzero(placed)
        cc = c[placed]
        al = allowed[placed]
        sc = np.where(al, score[placed], np.inf)
        if shares is not None:
            sh = np.where(al, shares[placed], 0.0)
            tot = sh.sum(axis=1)
            p = np.where(tot > 0, sh[np.arange(len(cc)), cc] / np.where(tot > 0, tot, 1.0), 1.0)
        elif explore == "epsilon":
            eps = float(self.config.epsilon)
            greedy = sc.argmin(axis=1)
            size = al.sum(axis=1)
            p = eps / size + np.where(greedy == cc, 1.0 - eps, 0.0)
        else:
            t = float(self.config.temperature)
            z = -(sc - sc.min(axis=1, keepdims=True)) / t
            w = np.exp(z)
            p = w[np.arange(len(cc)), cc] / w.sum(axis=1)
        out[rows] = p
        return out

    def _frame(
        self,
        jobs: pd.DataFrame,
        codes: dict[str, np.ndarray],
        preds: dict[str, np.ndarray],
        choice: np.ndarray,
        score: np.ndarray,
        propensity: np.ndarray,
        service_scored: np.ndarray,
    ) -> pd.DataFrame:
        return _assignment_frame(self, jobs, codes, preds, choice, score, propensity,
                                 service_scored)

    # -- one job at a time (service) -----------------------------------------------------------
    def assign_one(
        self,
        *,
        hour: int,
        area: str,
        query_type: str,
        input_tokens: float,
        energy_kwh: Sequence[float] | np.ndarray,
        service_s: Sequence[float] | np.ndarray,
        output_tokens: float | None = None,
        sla_s: float = 30.0,
    ) -> JobDecision:
        """Place one job now (reserving its capacity), for a service answering one request.

        ``energy_kwh`` and ``service_s`` hold one prediction per DC in scenario order (use the
        p90 values for risk-aware placement).  Exploration follows :attr:`config`; the
        assigner's own seeded generator makes a sequence of calls reproducible.
        """
        try:
            a = self._area_pos[area]
            k = self._type_pos[query_type]
        except KeyError as exc:
            raise AssignError(
                f"unknown area or query type {exc.args[0]!r} for scenario {self.scenario.name!r}"
            ) from exc
        h = self.ledger._hour(hour)
        e = np.asarray(energy_kwh, dtype=float)
        s = np.asarray(service_s, dtype=float)
        D = len(self.dcs)
        if e.shape != (D,) or s.shape != (D,):
            raise AssignError(f"energy_kwh and service_s need one value per dc ({D})")
        out_tok = self.mean_output_tokens[k] if output_tokens is None else float(output_tokens)
        tokens = float(input_tokens) + out_tok
        score = self.score_per_kwh[h] * e
        w_alpha = self.delay_weight * self.alpha[k]
        if self.config.delay_cost == "excess":
            score = score + w_alpha * np.maximum(s - sla_s, 0.0)
        else:
            score = score + w_alpha * s
        if self.guide_per_token is not None:
            score = score + self.guide_per_token[h, k] * tokens
        ok = self.area_allowed[a]
        sla_ok = ok & (s <= sla_s) if self.config.sla_hard else ok
        ticks = self.ledger.to_ticks(self.units_per_token[k] * tokens)
        explore = self.config.explore
        with self.ledger.lock:
            used, cap = self.ledger.used_ticks[h], self.ledger.capacity_ticks[h]
            allowed = sla_ok & (used + ticks[None, :] <= cap).all(axis=1)
            if not allowed.any():
                reason = "sovereignty" if not ok.any() else ("sla" if not sla_ok.any()
                                                             else "capacity")
                return JobDecision(None, -1, h, float("nan"), float("nan"), reason, ticks)
            if explore is None:
                masked = np.where(allowed, score, np.inf)
                d = int(masked.argmin())
                prop = 1.0
            else:
                with self._lock:
                    if explore == "epsilon":
                        flip = self._rng.random() < self.config.epsilon
                        keys = self._rng.random(D) if flip else score
                    else:
                        keys = score - self.config.temperature * self._rng.gumbel(size=D)
                d = int(np.where(allowed, keys, np.inf).argmin())
                prop = float(self._propensity(np.array([d]), allowed[None, :], score[None, :],
                                              None, explore)[0])
            used[d] += ticks
        energy_usd = float(self.energy_usd_per_kwh[h, d] * e[d])
        carbon_kg = float(self.carbon_kg_per_kwh[h, d] * e[d])
        delay = (max(s[d] - sla_s, 0.0) if self.config.delay_cost == "excess" else s[d])
        cost = energy_usd + float(self.carbon_usd_per_kwh[h, d] * e[d]) + self.alpha[k] * delay
        return JobDecision(self.dcs[d], d, h, float(score[d]), prop, "", ticks,
                           energy_usd, carbon_kg, float(cost))


def _reasons(assigner: GreedyAssigner, codes: dict[str, np.ndarray], service: np.ndarray,
             choice: np.ndarray) -> pd.Categorical:
    """Why each unplaced job was not placed ("" if placed), tested in :data:`REASONS` order."""
    code = np.zeros(len(choice), dtype=np.int8)
    rows = np.flatnonzero(choice < 0)
    if rows.size:
        sov, ok = assigner._masks(codes["area"][rows], codes["sla"][rows], service[rows])
        code[rows] = np.where(~sov.any(axis=1), 1, np.where(~ok.any(axis=1), 2, 3))
    return pd.Categorical.from_codes(code, categories=["", *REASONS])


def _assignment_frame(
    assigner: GreedyAssigner,
    jobs: pd.DataFrame,
    codes: dict[str, np.ndarray],
    preds: dict[str, np.ndarray],
    choice: np.ndarray,
    score: np.ndarray,
    propensity: np.ndarray,
    service_scored: np.ndarray,
) -> pd.DataFrame:
    """The per-job result table (input order); cost columns at the mean predictions."""
    n = len(choice)
    placed = choice >= 0
    rows = np.flatnonzero(placed)
    cc = choice[placed]
    hh = codes["hour"][placed]

    def pick(arr: np.ndarray) -> np.ndarray:
        out = np.full(n, np.nan)
        out[rows] = arr[rows, cc]
        return out

    e = pick(preds["energy_kwh"])
    s = pick(preds["service_s"])
    energy_usd = np.full(n, np.nan)
    carbon_kg = np.full(n, np.nan)
    carbon_usd = np.full(n, np.nan)
    water_l = np.full(n, np.nan)
    energy_usd[rows] = assigner.energy_usd_per_kwh[hh, cc] * e[rows]
    carbon_kg[rows] = assigner.carbon_kg_per_kwh[hh, cc] * e[rows]
    carbon_usd[rows] = assigner.carbon_usd_per_kwh[hh, cc] * e[rows]
    water_l[rows] = assigner.water_l_per_kwh[hh, cc] * e[rows]
    alpha = assigner.alpha[codes["qtype"]]
    if assigner.config.delay_cost == "excess":
        delay_usd = alpha * np.maximum(s - codes["sla"], 0.0)
    else:
        delay_usd = alpha * s
    return pd.DataFrame(
        {
            "job_id": jobs["job_id"].reset_index(drop=True),
            "dc": pd.Categorical.from_codes(
                np.where(placed, choice, len(assigner.dcs)), categories=[*assigner.dcs, ""]
            ),
            "hour": codes["hour"],
            "predicted_energy_kwh": e,
            "predicted_service_s": s,
            "energy_usd": energy_usd,
            "carbon_kg": carbon_kg,
            "carbon_usd": carbon_usd,
            "water_l": water_l,
            "delay_usd": delay_usd,
            "cost_usd": energy_usd + carbon_usd + delay_usd,
            "score": score,
            "propensity": propensity,
            "reason": _reasons(assigner, codes, service_scored, choice),
        }
    )


# -- convenience functions -------------------------------------------------------------------


def assign_greedy(
    scenario: Scenario,
    jobs: pd.DataFrame,
    predictions: xr.Dataset,
    config: AssignConfig | None = None,
    *,
    guide: PlanGuide | PlanResult | None = None,
    ledger: CapacityLedger | None = None,
) -> Assignment:
    """Greedy assignment (plan-guided when ``guide`` carries duals); see the module docs."""
    return GreedyAssigner(scenario, config, guide=_as_guide(guide), ledger=ledger).assign(
        jobs, predictions
    )


def assign_plan_following(
    scenario: Scenario,
    jobs: pd.DataFrame,
    predictions: xr.Dataset,
    plan: PlanGuide | PlanResult | str | Path,
    config: AssignConfig | None = None,
    *,
    ledger: CapacityLedger | None = None,
) -> Assignment:
    """Assign each job to a DC drawn with the plan's shares for its (area, type, hour).

    Draws are seeded (``config.seed``) and restricted to the allowed DCs (capacity, SLA if
    hard, sovereignty), renormalised; jobs whose allowed DCs all have plan share 0 take the
    greedy choice.  The plan's duals are not added to the fallback score.
    """
    guide = _as_guide(plan)
    assert guide is not None
    follow_guide = PlanGuide(allocation=guide.allocation, weights=guide.weights,
                             source=guide.source)
    return GreedyAssigner(scenario, config, guide=follow_guide, ledger=ledger).assign(
        jobs, predictions, follow=True
    )


def _as_guide(guide: PlanGuide | PlanResult | str | Path | None) -> PlanGuide | None:
    if guide is None or isinstance(guide, PlanGuide):
        return guide
    if isinstance(guide, str | Path):
        return PlanGuide.from_directory(guide)
    return PlanGuide.from_result(guide)


# -- jobs from demand and evaluation ---------------------------------------------------------------


def sample_jobs_from_demand(
    scenario: Scenario,
    *,
    seed: int = 0,
    fraction: float = 1.0,
    token_spread: float = 0.0,
    sla_s: float | None = None,
) -> pd.DataFrame:
    """A jobs table drawn from the scenario's demand (validated; arrival order).

    Each (hour, area, type) gets round(fraction · queries) jobs with arrivals uniform in the
    hour.  Tokens are the type's means, or lognormal around them (mean preserved) with
    coefficient of variation ``token_spread``.  ``sla_s`` None keeps the jobs-table default.
    """
    if not (fraction > 0 and math.isfinite(fraction)):
        raise AssignError(f"fraction {fraction!r} must be a finite number > 0")
    rng = np.random.default_rng(seed)
    ds = scenario.ds
    q = ds["queries"].transpose("hour", "area", "query_type").values
    counts = np.round(q * fraction).astype(np.int64).ravel()
    H, A, K = q.shape
    cell = np.repeat(np.arange(counts.size), counts)
    hh, aa, kk = np.unravel_index(cell, (H, A, K))
    n = len(cell)
    arrival = (hh + rng.random(n)) * 3600.0
    h_tok, f_tok = _type_tokens(scenario)

    def draw(mean: np.ndarray) -> np.ndarray:
        if token_spread <= 0:
            return np.round(mean).astype(np.int64)
        s2 = math.log1p(token_spread**2)
        vals = mean * np.exp(rng.normal(-s2 / 2, math.sqrt(s2), len(mean)))
        return np.maximum(1, np.round(vals)).astype(np.int64)

    frame = pd.DataFrame(
        {
            "arrival_s": arrival,
            "area": np.asarray(scenario.areas, dtype=object)[aa],
            "query_type": np.asarray(scenario.query_types, dtype=object)[kk],
            "input_tokens": draw(h_tok[kk]),
            "output_tokens": draw(f_tok[kk]),
        }
    )
    if sla_s is not None:
        frame["sla_s"] = float(sla_s)
    frame = frame.sort_values("arrival_s", kind="stable").reset_index(drop=True)
    frame.insert(0, "job_id", [f"j{i:07d}" for i in range(n)])
    return validate_jobs(frame, scenario)


def evaluate_assignment(
    scenario: Scenario, jobs: pd.DataFrame, assignment: Assignment | pd.DataFrame
) -> dict[str, float]:
    """Outcomes of an assignment under the scenario's hourly model.

    IT energy of the placed jobs (their ``predicted_energy_kwh``) is summed per (dc, hour);
    facility energy = PUE · IT; grid = max(0, facility − renewable) (on-site renewables used
    first, as in the plan); energy_usd = Σ price · grid, carbon_kg = Σ θ · grid, carbon_usd =
    Σ δ θ grid, water_l = Σ (WUE/PUE + EWIF) · facility.  Also: delay_usd (α · SLA excess per
    job), SLA violations (predicted service time > SLA), grid-cap excess (kWh above
    grid_cap_kw) and capacity overflow (rows and units above capacity, from the jobs' usage).
    ``model_*`` values are the planner's objective at the realised shares (see
    :func:`_model_costs`).
    """
    frame = assignment.frame if isinstance(assignment, Assignment) else assignment
    jobs = _ensure_valid(scenario, jobs)
    if len(frame) != len(jobs) or not np.array_equal(
        np.asarray(frame["job_id"], dtype=object), np.asarray(jobs["job_id"], dtype=object)
    ):
        raise AssignError("the assignment's job_id column does not match the jobs table")
    ds = scenario.ds
    dcs = scenario.dcs
    dpos = pd.Index(dcs).get_indexer(np.asarray(frame["dc"], dtype=object))
    placed = dpos >= 0
    codes = _job_codes(scenario, jobs)
    H, D = scenario.hours, len(dcs)
    it = np.zeros((H, D))
    np.add.at(it, (codes["hour"][placed], dpos[placed]),
              frame["predicted_energy_kwh"].to_numpy()[placed])
    pue = ds["pue"].values
    facility = it * pue[None, :]
    ren = ds["renewable_kw"].transpose("hour", "dc").values
    grid = np.maximum(facility - ren, 0.0)
    cap = ds["grid_cap_kw"].transpose("hour", "dc").values
    price = ds["price_usd_per_kwh"].transpose("hour", "dc").values
    theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    delta = ds["carbon_price_usd_per_kg"].values
    wf = ds["wue_l_per_kwh"].transpose("hour", "dc").values / pue[None, :] + ds[
        "ewif_l_per_kwh"
    ].transpose("hour", "dc").values
    upt = ds["units_per_token"].transpose("query_type", "resource").values
    units = upt[codes["qtype"]] * codes["tokens"][:, None]
    used = np.zeros((H, D, units.shape[1]))
    np.add.at(used, (codes["hour"][placed], dpos[placed]), units[placed])
    capacity = ds["capacity"].transpose("dc", "resource").values[None, :, :]
    over = np.maximum(used - capacity, 0.0)
    s = frame["predicted_service_s"].to_numpy()
    alpha = ds["delay_penalty_usd_per_s"].values[codes["qtype"]]
    excess = np.where(placed, np.maximum(s - codes["sla"], 0.0), 0.0)
    carbon_kg = float((theta * grid).sum())
    out = {
        "jobs": float(len(frame)),
        "assigned": float(placed.sum()),
        "it_kwh": float(it.sum()),
        "grid_kwh": float(grid.sum()),
        "energy_usd": float((price * grid).sum()),
        "carbon_kg": carbon_kg,
        "carbon_usd": float((delta[None, :] * theta * grid).sum()),
        "water_l": float((wf * facility).sum()),
        "delay_usd": float(np.nansum(alpha * excess)),
        "sla_violations": float((placed & (s > codes["sla"])).sum()),
        "grid_cap_excess_kwh": float(np.maximum(grid - cap, 0.0).sum()),
        "capacity_overflow_rows": float((over > 1e-9).any(axis=1).sum()),
        "capacity_overflow_units": float(over.sum()),
    }
    out["total_usd"] = out["energy_usd"] + out["carbon_usd"] + out["delay_usd"]
    out.update(_model_costs(scenario, codes, dpos))
    return out


def _model_costs(
    scenario: Scenario, codes: dict[str, np.ndarray], dpos: np.ndarray
) -> dict[str, float]:
    """The planner's objective at the shares the assignment realised.

    x̂[a,d,k,h] = (jobs of (a,k,h) placed at d) / (jobs of (a,k,h)); the scenario's demand λ,
    per-query coefficients and hour-total delay terms are then those of the Green-LLM model,
    with grid = max(0, PUE · IT − renewable) (the cheapest purchase for non-negative prices).
    Comparable with the plan's ``objective`` when the jobs follow the scenario's demand.
    """
    from greensched.scheduler.greenllm import delay_coefficients

    ds = scenario.ds
    A, D, K, H = (len(scenario.areas), len(scenario.dcs), len(scenario.query_types),
                  scenario.hours)
    placed = dpos >= 0
    counts = np.zeros((A, D, K, H))
    np.add.at(counts, (codes["area"][placed], dpos[placed], codes["qtype"][placed],
                       codes["hour"][placed]), 1.0)
    total = np.zeros((A, K, H))
    np.add.at(total, (codes["area"], codes["qtype"], codes["hour"]), 1.0)
    x = counts / np.where(total > 0, total, 1.0)[:, None, :, :]
    lam = ds["queries"].transpose("area", "query_type", "hour").values
    e = scenario.energy_kwh_per_query().transpose("dc", "query_type", "hour").values
    it = np.einsum("adkh,dkh,akh->hd", x, e, lam)
    pue = ds["pue"].values
    facility = it * pue[None, :]
    grid = np.maximum(facility - ds["renewable_kw"].transpose("hour", "dc").values, 0.0)
    price = ds["price_usd_per_kwh"].transpose("hour", "dc").values
    theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    delta = ds["carbon_price_usd_per_kg"].values
    coef = delay_coefficients(scenario).transpose("area", "dc", "query_type", "hour").values
    rho = ds["delay_penalty_usd_per_s"].values
    out = {
        "model_energy_usd": float((price * grid).sum()),
        "model_carbon_usd": float((delta[None, :] * theta * grid).sum()),
        "model_carbon_kg": float((theta * grid).sum()),
        "model_delay_usd": float(np.einsum("adkh,adkh,k->", coef, x, rho)),
    }
    out["model_total_usd"] = (
        out["model_energy_usd"] + out["model_carbon_usd"] + out["model_delay_usd"]
    )
    return out
