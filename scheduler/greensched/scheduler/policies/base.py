"""One interface for everything that decides *where and when* a job runs.

A run is a sequence of hourly steps.  At step ``h`` the policy receives the jobs arriving in hour
``h`` (:class:`StepJobs`: integer codes, predicted energy and service time at every DC) and the
state (:class:`PolicyContext`: the scenario, the grid forecast, the shared
:class:`~greensched.scheduler.assign.CapacityLedger` over all hours) and returns, per job, a DC
and a start hour (:class:`Decision`): ``h`` (now) or later, up to the job's latest start hour.
The policy reserves the job's resource units in the ledger at (start hour, DC); the driver
:func:`run_schedule` checks that the decisions and the ledger agree, exactly, in integer ticks.

Job classes (:class:`JobClass`)
    ``interactive`` jobs have a latency SLO (seconds) and start on arrival; ``batch`` jobs
    (offline inference) carry a ``deadline_s`` hours away and may be deferred.  A job's latest
    start time is ``deadline_s − min_d predicted service_s`` (never later than the last hour of
    the horizon); its latest start hour is that time's hour.  A job deferred to hour ``t > h``
    starts at ``t · 3600 + (arrival_s mod 3600)`` (its offset within the hour is kept, so the
    twin's within-hour backlog sees deferred work spread like arriving work), clipped to the
    latest start time.

Contract (``tests/scheduler/test_policy_contract.py`` runs it over every policy)
    * the reserved units never exceed any (hour, dc, resource) capacity;
    * no job starts after its latest start time, and never before it arrives;
    * a job the policy cannot place anywhere gets ``dc = -1`` (the driver's caller decides
      what to do with it: the evaluation runs it at its nearest DC on arrival and counts it as
      an SLA violation);
    * the same seed gives the same decisions.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, CapacityLedger, GreedyAssigner, PlanGuide
from greensched.scheduler.assign.engine import _engine_hour

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.planner import PlanResult

__all__ = [
    "Decision",
    "JobClass",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "Schedule",
    "StepJobs",
    "TemporalStep",
    "carbon_cells",
    "deadline_groups",
    "place_in_cells",
    "place_or_overflow",
    "run_schedule",
    "start_interactive",
]


class PolicyError(GreenSchedError):
    """A policy's inputs or parameters are wrong (the message names the field and value)."""


class JobClass(StrEnum):
    """Service class of a job."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


@dataclass
class StepJobs:
    """The jobs arriving in one hourly step, integer-coded (arrival order).

    Attributes
    ----------
    hour
        The step's hour (every job's arrival hour).
    index
        Positions of the jobs in the run's full jobs table.
    area, qtype
        Area and query-type positions in the scenario.
    tokens
        Input + output tokens.
    arrival_s, sla_s, deadline_s
        Arrival time, latency objective and deadline (s since hour 0).
    job_class
        0 interactive, 1 batch (:class:`JobClass` order).
    usage_ticks
        Resource usage in ledger ticks, shape (m, R).
    energy_kwh, service_s
        Predicted IT energy and service time at every DC, shape (m, D).
    """

    hour: int
    index: np.ndarray
    area: np.ndarray
    qtype: np.ndarray
    tokens: np.ndarray
    arrival_s: np.ndarray
    sla_s: np.ndarray
    deadline_s: np.ndarray
    job_class: np.ndarray
    usage_ticks: np.ndarray
    energy_kwh: np.ndarray
    service_s: np.ndarray
    hours: int = 24

    @property
    def m(self) -> int:
        """Number of jobs in the step."""
        return len(self.index)

    @property
    def deferrable(self) -> np.ndarray:
        """Batch jobs (may start after their arrival hour)."""
        return self.job_class == 1

    @property
    def latest_start_s(self) -> np.ndarray:
        """deadline − fastest predicted service time; arrival for interactive jobs."""
        latest = self.deadline_s - self.service_s.min(axis=1)
        latest = np.minimum(latest, self.hours * 3600.0 - 1e-6)
        return np.where(self.deferrable, np.maximum(latest, self.arrival_s), self.arrival_s)

    @property
    def latest_start_hour(self) -> np.ndarray:
        """Last hour a job may start in (its arrival hour for interactive jobs)."""
        h = np.floor(self.latest_start_s / 3600.0).astype(np.int64)
        return np.clip(h, self.hour, self.hours - 1)

    def subset(self, rows: np.ndarray) -> StepJobs:
        """The step restricted to ``rows`` (a mask or positions)."""
        return StepJobs(
            hour=self.hour, index=self.index[rows], area=self.area[rows], qtype=self.qtype[rows],
            tokens=self.tokens[rows], arrival_s=self.arrival_s[rows], sla_s=self.sla_s[rows],
            deadline_s=self.deadline_s[rows], job_class=self.job_class[rows],
            usage_ticks=self.usage_ticks[rows], energy_kwh=self.energy_kwh[rows],
            service_s=self.service_s[rows], hours=self.hours,
        )

    def start_s(self, start_hour: np.ndarray) -> np.ndarray:
        """Start time of each job at its start hour (see the module docstring)."""
        t = np.asarray(start_hour, dtype=np.int64)
        later = start_hour_offset(self.arrival_s, t)
        out = np.where(t > self.hour, np.minimum(later, self.latest_start_s), self.arrival_s)
        return np.maximum(out, self.arrival_s)


def start_hour_offset(arrival_s: np.ndarray, start_hour: np.ndarray) -> np.ndarray:
    """``start_hour · 3600 + (arrival_s mod 3600)``."""
    return np.asarray(start_hour, dtype=float) * 3600.0 + np.mod(arrival_s, 3600.0)


@dataclass
class PolicyContext:
    """What a policy may know besides the step's jobs.

    Attributes
    ----------
    scenario
        The scenario (its hourly carbon and prices are the *actual* grid state).
    ledger
        Remaining capacity of every (hour, dc, resource), shared by all steps.
    carbon_forecast_kg_per_kwh, price_forecast_usd_per_kwh
        The forecast the policy plans with, shape (hour, dc); the scenario's values by default.
    seed
        Seed of the policy's own draws.
    plan
        A solved Green-LLM plan for the plan-based policies (they solve one when ``None``).
    """

    scenario: Scenario
    ledger: CapacityLedger
    carbon_forecast_kg_per_kwh: np.ndarray
    price_forecast_usd_per_kwh: np.ndarray
    seed: int = 0
    plan: PlanResult | None = None
    observed_carbon_kg_per_kwh: np.ndarray | None = None
    observed_price_usd_per_kwh: np.ndarray | None = None

    def observe(self, hour: int) -> None:
        """Replace the forecast of hours ≤ ``hour`` by the observed values (when known)."""
        h = int(hour) + 1
        if self.observed_carbon_kg_per_kwh is not None:
            self.carbon_forecast_kg_per_kwh[:h] = self.observed_carbon_kg_per_kwh[:h]
        if self.observed_price_usd_per_kwh is not None:
            self.price_forecast_usd_per_kwh[:h] = self.observed_price_usd_per_kwh[:h]

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        *,
        seed: int = 0,
        forecast_error: float = 0.0,
        plan: PlanResult | None = None,
        ledger: CapacityLedger | None = None,
    ) -> PolicyContext:
        """A fresh ledger and a forecast: the truth times seeded lognormal noise (σ = error).

        The truth is kept as the observation: :func:`run_schedule` reveals each hour's actual
        carbon and price when its step starts (the current hour is observed, later ones are
        forecast).
        """
        if not (math.isfinite(forecast_error) and forecast_error >= 0):
            raise PolicyError(f"forecast_error {forecast_error!r} must be a finite number >= 0")
        ds = scenario.ds
        carbon = np.asarray(ds["carbon_kg_per_kwh"].transpose("hour", "dc").values, dtype=float)
        price = np.asarray(ds["price_usd_per_kwh"].transpose("hour", "dc").values, dtype=float)
        if forecast_error > 0:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF0CA]))
            s2 = forecast_error**2
            carbon = carbon * np.exp(rng.normal(-s2 / 2, forecast_error, carbon.shape))
            price = price * np.exp(rng.normal(-s2 / 2, forecast_error, price.shape))
        truth_c = np.asarray(ds["carbon_kg_per_kwh"].transpose("hour", "dc").values, dtype=float)
        truth_p = np.asarray(ds["price_usd_per_kwh"].transpose("hour", "dc").values, dtype=float)
        return cls(
            scenario=scenario,
            ledger=ledger if ledger is not None else CapacityLedger.from_scenario(scenario),
            carbon_forecast_kg_per_kwh=carbon,
            price_forecast_usd_per_kwh=price,
            seed=int(seed),
            plan=plan,
            observed_carbon_kg_per_kwh=truth_c,
            observed_price_usd_per_kwh=truth_p,
        )

    @property
    def pue(self) -> np.ndarray:
        """PUE per DC."""
        return np.asarray(self.scenario.ds["pue"].values, dtype=float)

    def carbon_per_it_kwh(self) -> np.ndarray:
        """Forecast kg CO2 per IT kWh, (hour, dc): intensity · PUE (grid-bought)."""
        return self.carbon_forecast_kg_per_kwh * self.pue[None, :]


@dataclass
class Decision:
    """Per job of a step: DC position (-1: unplaced) and start hour."""

    dc: np.ndarray
    start_hour: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class Policy(ABC):
    """Decides where and when each arriving job runs (see the module docstring).

    Subclasses set :attr:`name`, cite their paper in the class docstring with the adaptation
    used here, and implement :meth:`decide`; :meth:`reset` starts a run (seeded state, plans).
    """

    name: ClassVar[str] = "policy"
    #: Whether the policy may defer batch jobs (temporal shifting).
    temporal: ClassVar[bool] = False

    def reset(self, ctx: PolicyContext) -> None:  # noqa: B027 - optional hook
        """Prepare a run (called once before the first step)."""

    @abstractmethod
    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        """DC and start hour of every job of ``step``, reserving their capacity in the ledger."""


# -- shared helpers ---------------------------------------------------------------------------


def greedy_assigner(
    ctx: PolicyContext,
    weights: tuple[float, float, float] | None = None,
    guide: PlanGuide | None = None,
    **config: Any,
) -> GreedyAssigner:
    """A greedy assigner on the context's ledger (scores, masks, plan signals)."""
    cfg = AssignConfig(weights=weights, **config)
    return GreedyAssigner(ctx.scenario, cfg, guide=guide, ledger=ctx.ledger)


def place_in_cells(
    ctx: PolicyContext,
    step: StepJobs,
    key: np.ndarray,
    first_hour: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Place jobs in (hour, dc) cells by the exact sequential greedy engine; reserve them.

    ``key`` has shape (m, T', D) over hours ``first_hour .. first_hour + T' − 1`` (default the
    step's hour); lower is preferred, ``inf`` forbids a cell.  Jobs are taken in arrival order,
    each to its lowest-key cell with room.  Returns (dc, start_hour); -1 / step hour for jobs
    no allowed cell can hold.
    """
    led = ctx.ledger
    h0 = step.hour if first_hour is None else int(first_hour)
    m, T, D = key.shape
    R = led.capacity_ticks.shape[2]
    flat = key.reshape(m, T * D)
    ok = np.isfinite(flat)
    order = np.lexsort((np.arange(m), step.arrival_s))
    with led.lock:
        rem = (led.capacity_ticks[h0 : h0 + T] - led.used_ticks[h0 : h0 + T]).reshape(T * D, R)
        c = np.full(m, -1, dtype=np.int64)
        c[order] = _engine_hour(
            np.where(ok, flat, 0.0)[order], None, ok[order], step.usage_ticks[order], rem
        )
        led.used_ticks[h0 : h0 + T] = led.capacity_ticks[h0 : h0 + T] - rem.reshape(T, D, R)
    placed = c >= 0
    dc = np.where(placed, c % D, -1)
    start = np.where(placed, h0 + c // D, step.hour)
    return dc.astype(np.int64), start.astype(np.int64)


def hour_window_mask(step: StepJobs, temporal: bool) -> np.ndarray:
    """(m, T) mask of the hours each job may start in, T = hours − step hour."""
    T = step.hours - step.hour
    hrs = step.hour + np.arange(T)
    if not temporal:
        return np.broadcast_to(hrs[None, :] == step.hour, (step.m, T)).copy()
    return hrs[None, :] <= step.latest_start_hour[:, None]


# -- helpers of the temporal baselines (PCAPS, CAP, CarbonClipper, CarbonScaler) ---------------


def carbon_cells(step: StepJobs, ctx: PolicyContext) -> np.ndarray:
    """(m, T, D) forecast kg CO2 of each job at every (start hour ≥ step hour, DC): E·I·PUE."""
    hrs = step.hour + np.arange(step.hours - step.hour)
    return ctx.carbon_per_it_kwh()[hrs][None, :, :] * step.energy_kwh[:, None, :]


def start_interactive(
    ctx: PolicyContext, step: StepJobs, key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decision arrays (dc, start hour) with the interactive jobs placed on arrival.

    Each interactive job takes the DC of lowest ``key`` (m, T, D) in the step's hour with room;
    the deferrable jobs stay unplaced (-1) for the caller.
    """
    dc = np.full(step.m, -1, dtype=np.int64)
    start = np.full(step.m, step.hour, dtype=np.int64)
    inter = ~step.deferrable
    if inter.any():
        d, s = place_in_cells(ctx, step.subset(inter), key[inter][:, :1, :])
        dc[inter], start[inter] = d, s
    return dc, start


def deadline_groups(step: StepJobs) -> Iterator[tuple[np.ndarray, int]]:
    """The step's deferrable jobs grouped by latest start hour: (rows, hours in the window)."""
    for last in np.unique(step.latest_start_hour[step.deferrable]):
        rows = np.flatnonzero(step.deferrable & (step.latest_start_hour == last))
        yield rows, int(last) - step.hour + 1


def place_or_overflow(
    ctx: PolicyContext, step: StepJobs, key: np.ndarray, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Place by ``key``; jobs no cell of ``key`` can hold take their lowest ``fallback`` cell.

    Both keys have shape (m, T, D) from the step's hour (``inf`` forbids a cell).
    """
    d, s = place_in_cells(ctx, step, key)
    miss = d < 0
    if miss.any():
        d2, s2 = place_in_cells(ctx, step.subset(miss), fallback[miss])
        d[miss], s[miss] = d2, s2
    return d, s


@dataclass
class TemporalStep:
    """The state a temporal baseline's step shares: carbon per cell, windows, the decision.

    :meth:`begin` places the interactive jobs on arrival (lowest E·I·PUE DC with room) and
    leaves the deferrable ones unplaced; :meth:`place_group` places a group of them by a key
    within their windows, overflow at their lowest E·I·PUE cell with room.
    """

    carbon: np.ndarray  # (m, T, D) E·I·PUE (kg)
    window: np.ndarray  # (m, T) start hours allowed
    dc: np.ndarray
    start: np.ndarray

    @classmethod
    def begin(cls, ctx: PolicyContext, step: StepJobs) -> TemporalStep:
        """Carbon per cell and windows of ``step``; its interactive jobs placed."""
        carbon = carbon_cells(step, ctx)
        dc, start = start_interactive(ctx, step, carbon)
        return cls(carbon, hour_window_mask(step, True), dc, start)

    def place_group(self, ctx: PolicyContext, step: StepJobs, rows: np.ndarray,
                    key: np.ndarray) -> None:
        """Place jobs ``rows`` by ``key`` (len(rows), T, D) in their windows, with overflow."""
        in_window = self.window[rows][:, :, None]
        self.dc[rows], self.start[rows] = place_or_overflow(
            ctx, step.subset(rows), np.where(in_window, key, np.inf),
            np.where(in_window, self.carbon[rows], np.inf),
        )

    def decision(self) -> Decision:
        """The step's decision."""
        return Decision(self.dc, self.start)


@dataclass
class Schedule:
    """Decisions of a whole run (jobs-table order) and the policy's timings."""

    policy: str
    dc: np.ndarray
    start_hour: np.ndarray
    start_s: np.ndarray
    decide_s: list[float]
    step_jobs: list[int]
    info: list[dict[str, Any]] = field(default_factory=list)
    #: CPU seconds of this process per step (``time.process_time``): unlike the wall-clock
    #: ``decide_s`` it does not grow when other processes share the cores
    decide_cpu_s: list[float] = field(default_factory=list)

    @property
    def ms_per_job(self) -> float:
        """Mean decision time per job (ms)."""
        n = max(1, sum(self.step_jobs))
        return 1e3 * sum(self.decide_s) / n

    @property
    def ms_per_job_cpu(self) -> float:
        """Mean decision CPU time per job (ms)."""
        n = max(1, sum(self.step_jobs))
        return 1e3 * sum(self.decide_cpu_s) / n

    @property
    def max_step_cpu_s(self) -> float:
        """CPU seconds of the longest step (by CPU time)."""
        return max(self.decide_cpu_s, default=0.0)

    @property
    def max_step_s(self) -> float:
        """Longest step (s): the batch-decision time."""
        return max(self.decide_s, default=0.0)


def run_schedule(
    policy: Policy,
    ctx: PolicyContext,
    *,
    hour: np.ndarray,
    area: np.ndarray,
    qtype: np.ndarray,
    tokens: np.ndarray,
    arrival_s: np.ndarray,
    sla_s: np.ndarray,
    deadline_s: np.ndarray,
    job_class: np.ndarray,
    energy_kwh: np.ndarray,
    service_s: np.ndarray,
) -> Schedule:
    """Drive ``policy`` step by step over a horizon and check its decisions.

    Inputs are per job (any order; each step sees its jobs in arrival order).  Raises
    :class:`PolicyError` when a decision breaks the contract (a start outside the job's window,
    or ledger reservations that differ from the decided usage).
    """
    scen = ctx.scenario
    H = scen.hours
    n = len(hour)
    upt = scen.ds["units_per_token"].transpose("query_type", "resource").values
    usage = ctx.ledger.to_ticks(upt[qtype] * np.asarray(tokens, dtype=float)[:, None])
    before = ctx.ledger.used_ticks.copy()
    dc = np.full(n, -1, dtype=np.int64)
    start_hour = np.asarray(hour, dtype=np.int64).copy()
    start_s = np.asarray(arrival_s, dtype=float).copy()
    decide_s: list[float] = []
    decide_cpu_s: list[float] = []
    counts: list[int] = []
    infos: list[dict[str, Any]] = []
    policy.reset(ctx)
    for h in range(H):
        idx = np.flatnonzero(hour == h)
        idx = idx[np.lexsort((idx, arrival_s[idx]))]
        step = StepJobs(
            hour=h, index=idx, area=area[idx], qtype=qtype[idx], tokens=tokens[idx],
            arrival_s=arrival_s[idx], sla_s=sla_s[idx], deadline_s=deadline_s[idx],
            job_class=job_class[idx], usage_ticks=usage[idx], energy_kwh=energy_kwh[idx],
            service_s=service_s[idx], hours=H,
        )
        ctx.observe(h)
        t0, c0 = time.perf_counter(), time.process_time()
        dec = policy.decide(step, ctx)
        decide_s.append(time.perf_counter() - t0)
        decide_cpu_s.append(time.process_time() - c0)
        counts.append(step.m)
        infos.append(dec.info)
        d = np.asarray(dec.dc, dtype=np.int64)
        t = np.asarray(dec.start_hour, dtype=np.int64)
        if d.shape != (step.m,) or t.shape != (step.m,):
            raise PolicyError(f"{policy.name}: decision shapes {d.shape}, {t.shape} at hour {h}")
        placed = d >= 0
        late = placed & ((t < h) | (t > step.latest_start_hour))
        if late.any():
            j = int(np.flatnonzero(late)[0])
            raise PolicyError(
                f"{policy.name}: job {int(idx[j])} starts in hour {int(t[j])}, outside its window "
                f"{h}..{int(step.latest_start_hour[j])}"
            )
        dc[idx] = d
        start_hour[idx] = np.where(placed, t, h)
        start_s[idx] = step.start_s(start_hour[idx])
    used = np.zeros_like(before)
    p = dc >= 0
    np.add.at(used, (start_hour[p], dc[p]), usage[p])
    if not np.array_equal(ctx.ledger.used_ticks - before, used):
        raise PolicyError(f"{policy.name}: ledger reservations differ from the decided usage")
    return Schedule(policy.name, dc, start_hour, start_s, decide_s, counts, infos, decide_cpu_s)
