"""GreenSched's own spatio-temporal policy: a joint per-step assignment over (start hour, DC).

Each step, the jobs arriving in the hour are placed *jointly* over the cells (start hour t, DC d)
of their windows (interactive jobs: the current hour only; batch jobs: up to their latest start
hour), minimising the weighted score below under the capacity that remains:

    score(j, t, d) = [σ_e c_f(t,d) + σ_c δ_d θ_f(t,d)] PUE_d E_j(d) + Σ_r π[d,r,t] u_jr
                     + σ_d α_k · excess_j(t, d)

with forecast price c_f and carbon θ_f (or the plan's marginal facility-energy price,
``plan_energy``), the plan's capacity shadow prices π (``guided``), and the delay cost: for an
interactive job the excess of its predicted service time over ``sla_headroom`` · SLA, for a
batch job the lateness past ``deadline − deadline_margin_s``.

Three decision rules make the policy earn its place (``docs/experiments.md``, issue 13):

Joint placement (``joint``)
    Capacity is counted in tokens while a job's energy has a large per-request part, so the
    clean DCs' capacity is worth most when it holds many short jobs.  Taking the jobs in arrival
    order gives the first comers the clean capacity whatever their size; the joint assignment
    is the step's transportation-like integer program (:mod:`greensched.scheduler.batch_ip`:
    LP relaxation and rounding, then the step's MILP from that incumbent within ``max_nodes``
    (20) branch-and-bound nodes without root restarts — a work limit, so decisions do not
    depend on the machine's load; there is no wall-clock limit unless ``time_limit_s`` is
    given; the arrival-order greedy is kept when it scores better, so the step never does
    worse than arrival order on the score).
Forecast-demand headroom (``reserve_forecast``)
    A batch job deferred to hour t takes capacity that hour t's own arrivals would use.  The
    policy forecasts hour t's usage from the scenario's demand profile (queries per hour × mean
    tokens × units per token) scaled by the ratio of the usage observed so far to the profile's
    (an online estimate: nothing about the run is known in advance), lets that forecast demand
    take hour t's cheapest cells (per-kWh score × the step's mean energy per DC) and defers
    only into what is left.  Deferral therefore moves work into hours whose clean capacity
    would otherwise stay idle instead of displacing later jobs onto dirtier DCs.  A later cell's
    energy term carries a premium of ``defer_margin`` (25 %): the forecast is uncertain, and
    the lowest of many noisy forecasts is biased low, so a deferral must promise more than the
    forecast error.
SLA headroom (``sla_headroom``, ``sla_mask``)
    The predictions are means (output lengths unknown), and packing raises the effective batch
    and so the decode latency; an interactive job is steered to cells whose predicted mean
    service time stays within ``sla_headroom`` · SLA.  The excess is priced by the delay weight
    and, with ``sla_mask`` (default), the cells beyond the headroom are also forbidden to an
    interactive job that has a cell within it, whatever the weights: with carbon-only weights
    the delay term is 0 and the price alone let 12.4 % of the 10-DC fleet's jobs miss their SLA
    (``reports/evaluation-10dc.md`` before the mask; 0.0 % on seed 0 with it, at 13.24 against
    12.66 kg).

``sla_headroom`` = 0.35 and ``defer_margin`` = 0.25 were chosen on tuning seeds 100–104 of
``examples/experiments/main.toml`` (never on the reported seeds 0–29): 0.25 / 0.35 / 0.5 gave
0.07 / 0.29 / 2.5 % SLA violations at 11.88 / 11.81 / 11.71 kg; a margin of 0.25 vs 0 gave
11.62 vs 11.81 kg.  ``joint=False, reserve_forecast=False, sla_headroom=1, defer_margin=0,
guided=True, plan_energy=True`` is the previous rule (arrival-order greedy over the cells at
the plan's prices); the ``ablation-*`` variants of that file switch each rule off.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from greensched.scheduler.assign import PlanGuide
from greensched.scheduler.assign.engine import _engine_hour
from greensched.scheduler.policies.base import (
    Decision,
    Policy,
    PolicyContext,
    PolicyError,
    StepJobs,
    greedy_assigner,
    hour_window_mask,
    place_in_cells,
)

__all__ = ["GreenSchedPolicy", "demand_headroom", "joint_cells"]

_WEIGHTS = tuple[float, float, float]


def demand_headroom(
    remaining: np.ndarray, demand: np.ndarray, cost: np.ndarray
) -> np.ndarray:
    """Capacity left in each (hour, DC) after a forecast demand takes the cheapest DCs.

    Parameters
    ----------
    remaining
        (T, D, R) remaining ticks.
    demand
        (T, R) forecast usage of the hours' own arrivals (ticks).
    cost
        (T, D) cost per job of each DC (lower is taken first).

    Returns
    -------
    numpy.ndarray
        (T, D, R) ticks left, ``0 ≤ left ≤ remaining``.  The demand of an hour fills DCs in
        increasing cost, each up to the share of the demand its tightest resource can hold.
    """
    rem = np.asarray(remaining, dtype=np.int64)
    left = rem.copy()
    T, D, R = rem.shape
    for t in range(T):
        need = np.asarray(demand[t], dtype=float)
        pos = need > 0
        if not pos.any():
            continue
        share = 1.0
        for d in np.argsort(cost[t], kind="stable"):
            if share <= 0:
                break
            f = min(share, float((rem[t, d, pos] / need[pos]).min()))
            if f <= 0:
                continue
            want = f * need  # rounded up, but a hair above an integer stays that integer
            take = np.ceil(want - 1e-9 * np.maximum(1.0, want)).astype(np.int64)
            take = np.minimum(take, rem[t, d])
            left[t, d] -= take
            share -= f
    return left


def joint_cells(
    key: np.ndarray,
    usage_ticks: np.ndarray,
    remaining: np.ndarray,
    arrival_s: np.ndarray,
    ticks_per_unit: int,
    time_limit_s: float | None,
    max_nodes: int | None = None,
    full_milp: bool = True,
    restart: bool = True,
) -> tuple[np.ndarray, dict[str, object]]:
    """Joint assignment of jobs to cells: the cell per job (-1: none) and the solver facts.

    ``key`` (m, C) scores (``inf`` forbids), ``remaining`` (C, R) ticks.  The arrival-order
    greedy is the starting incumbent and the fallback (never worse on the summed key).
    The MILP runs from the LP rounding within ``max_nodes`` branch-and-bound nodes (a work
    limit: deterministic); ``full_milp`` False stops at the LP rounding (on seeds 0 and 1 of
    the main experiment 13.09 / 12.40 kg against 11.86 / 10.85 kg with 20 nodes).
    ``time_limit_s`` (None: none) adds a wall-clock limit, which makes the decisions depend on
    the machine's load.
    """
    from greensched.scheduler.batch_ip import build_batch_problem, solve_batch_problem

    m = key.shape[0]
    ok = np.isfinite(key)
    score = np.where(ok, key, 0.0)
    order = np.lexsort((np.arange(m), arrival_s))
    greedy = np.full(m, -1, dtype=np.int64)
    greedy[order] = _engine_hour(score[order], None, ok[order], usage_ticks[order],
                                 remaining.copy())
    problem = build_batch_problem(score, ok, np.zeros(m, dtype=np.int64), usage_ticks,
                                  remaining[None], ticks_per_unit)
    choice, facts = solve_batch_problem(problem, start=greedy, time_limit_s=time_limit_s,
                                        mip_rel_gap=1e-3, max_nodes=max_nodes, threads=1,
                                        full_milp=full_milp, restart=restart)
    if problem.objective(choice, score) > problem.objective(greedy, score):
        choice = greedy
    return choice, facts


class GreenSchedPolicy(Policy):
    """GreenSched's spatio-temporal mode (see the module docstring).

    With ``temporal=False`` every job starts now (spatial only).  ``carbon`` False drops the
    carbon term (ablation).  ``plan_energy`` values energy at the plan's marginal
    facility-energy price (which sees on-site renewables and grid caps) instead of the forecast
    grid price and carbon.
    """

    name = "greensched"
    temporal: ClassVar[bool] = True

    def __init__(
        self,
        weights: _WEIGHTS | None = None,
        *,
        guided: bool = False,
        temporal: bool = True,
        carbon: bool = True,
        deadline_margin_s: float = 600.0,
        plan_energy: bool = False,
        joint: bool = True,
        reserve_forecast: bool = True,
        sla_headroom: float = 0.35,
        time_limit_s: float | None = None,
        max_nodes: int = 20,
        defer_margin: float = 0.25,
        sla_mask: bool = True,
    ) -> None:
        if not deadline_margin_s >= 0:
            raise PolicyError(f"deadline_margin_s {deadline_margin_s!r} must be >= 0")
        if not 0 < sla_headroom <= 1:
            raise PolicyError(f"sla_headroom {sla_headroom!r} must lie in (0, 1]")
        if time_limit_s is not None and not time_limit_s > 0:
            raise PolicyError(f"time_limit_s {time_limit_s!r} must be > 0 (or None: no limit)")
        self.deadline_margin_s = float(deadline_margin_s)
        self.weights = weights
        self.guided = guided
        self.use_time = temporal
        self.carbon = carbon
        self.plan_energy = plan_energy
        self.joint = joint
        self.reserve_forecast = reserve_forecast
        self.sla_headroom = float(sla_headroom)
        self.time_limit_s = None if time_limit_s is None else float(time_limit_s)
        if max_nodes < 0:
            raise PolicyError(f"max_nodes {max_nodes!r} must be >= 0")
        self.max_nodes = int(max_nodes)
        if not defer_margin >= 0:
            raise PolicyError(f"defer_margin {defer_margin!r} must be >= 0")
        self.defer_margin = float(defer_margin)
        self.sla_mask = bool(sla_mask)

    def reset(self, ctx: PolicyContext) -> None:
        from greensched.scheduler.policies.spatial import solve_plan

        need_plan = self.guided or self.plan_energy
        guide = PlanGuide.from_result(solve_plan(ctx)) if need_plan else None
        a = greedy_assigner(ctx, self.weights, guide if self.guided else None)
        se, sc, sd = (a.weights[k] for k in ("energy", "carbon", "delay"))
        if not self.carbon:
            sc = 0.0
        pue = ctx.pue
        delta = np.asarray(ctx.scenario.ds["carbon_price_usd_per_kg"].values, dtype=float)
        per_kwh = (se * ctx.price_forecast_usd_per_kwh
                   + sc * delta[None, :] * ctx.carbon_forecast_kg_per_kwh) * pue[None, :]
        if self.plan_energy and guide is not None and guide.energy_price is not None:
            marginal = guide.energy_price.reindex(
                dc=ctx.scenario.dcs, hour=np.arange(ctx.scenario.hours), fill_value=0.0
            ).transpose("hour", "dc").values
            per_kwh = np.asarray(marginal, dtype=float) * pue[None, :]
        self._per_kwh = per_kwh + a.water_price_usd_per_l * a.water_l_per_kwh
        self._guide = a.guide_per_token  # (H, K, D) or None
        self._w_alpha = sd * a.alpha
        # the demand profile: resource units per hour of the scenario's queries
        ds = ctx.scenario.ds
        q = np.asarray(ds["queries"].transpose("hour", "area", "query_type").values, dtype=float)
        tokens = np.asarray((ds["input_tokens"] + ds["output_tokens"]).values, dtype=float)
        upt = np.asarray(ds["units_per_token"].transpose("query_type", "resource").values,
                         dtype=float)
        self._profile = np.einsum("hk,kr->hr", q.sum(axis=1) * tokens[None, :], upt)
        self._seen_ticks = np.zeros(upt.shape[1])
        self._seen_profile = np.zeros(upt.shape[1])

    def _key(self, step: StepJobs) -> np.ndarray:
        h, m = step.hour, step.m
        T = step.hours - h
        hrs = h + np.arange(T)
        premium = np.where(hrs > h, 1.0 + self.defer_margin, 1.0)[:, None]  # forecast risk
        key = (self._per_kwh[hrs] * premium)[None, :, :] * step.energy_kwh[:, None, :]
        if self._guide is not None:
            key = key + self._guide[hrs][:, step.qtype, :].transpose(1, 0, 2) * step.tokens[
                :, None, None
            ]
        start = step.start_s(np.broadcast_to(hrs[None, :], (m, T)).T).T  # (m, T)
        finish = start[:, :, None] + step.service_s[:, None, :]
        limit = np.where(step.deferrable, step.deadline_s - self.deadline_margin_s,
                         step.arrival_s + self.sla_headroom * step.sla_s)
        excess = np.maximum(finish - limit[:, None, None], 0.0)
        key = key + self._w_alpha[step.qtype][:, None, None] * excess
        window = hour_window_mask(step, self.use_time)
        allowed = np.broadcast_to(window[:, :, None], key.shape)
        if self.sla_mask:  # interactive jobs: only cells within the headroom, where one is
            fine = allowed & (excess <= 0.0)
            keep = ~step.deferrable & fine.any(axis=(1, 2))
            allowed = np.where(keep[:, None, None], fine, allowed)
        return np.where(allowed, key, np.inf)

    def _forecast_demand(self, step: StepJobs) -> np.ndarray:
        """(T, R) forecast usage ticks of the arrivals of hours h .. H−1 (0 for hour h)."""
        h = step.hour
        self._seen_ticks += step.usage_ticks.sum(axis=0)
        self._seen_profile += self._profile[h]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self._seen_profile > 0, self._seen_ticks / self._seen_profile, 0.0)
        demand = self._profile[h:] * ratio[None, :]
        demand[0] = 0.0  # the hour's own arrivals are the step's jobs
        return demand

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h, m = step.hour, step.m
        demand = self._forecast_demand(step)
        if m == 0:
            return Decision(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        key = self._key(step)
        if not self.joint and not self.reserve_forecast:
            return Decision(*place_in_cells(ctx, step, key))
        led = ctx.ledger
        T, D = key.shape[1], key.shape[2]
        with led.lock:
            rem = led.capacity_ticks[h:] - led.used_ticks[h:]  # (T, D, R)
        if self.reserve_forecast and self.use_time and T > 1:
            e_mean = step.energy_kwh.mean(axis=0)
            rem = demand_headroom(rem, demand, self._per_kwh[h:] * e_mean[None, :])
        flat = key.reshape(m, T * D)
        info: dict[str, object] = {}
        if self.joint:
            cell, info = joint_cells(flat, step.usage_ticks, rem.reshape(T * D, -1),
                                     step.arrival_s, led.ticks_per_unit, self.time_limit_s,
                                     self.max_nodes, restart=False)
        else:
            order = np.lexsort((np.arange(m), step.arrival_s))
            ok = np.isfinite(flat)
            cell = np.full(m, -1, dtype=np.int64)
            cell[order] = _engine_hour(np.where(ok, flat, 0.0)[order], None, ok[order],
                                       step.usage_ticks[order], rem.reshape(T * D, -1).copy())
        dc = np.where(cell >= 0, cell % D, -1)
        start = np.where(cell >= 0, h + cell // D, h)
        order = np.lexsort((np.arange(m), step.arrival_s))
        for j in order:
            if dc[j] >= 0 and not led.reserve_ticks(int(start[j]), int(dc[j]),
                                                    step.usage_ticks[j]):
                dc[j], start[j] = -1, h
        miss = dc < 0
        if miss.any():  # nothing in the headroom: any cell of the window with room
            d2, s2 = place_in_cells(ctx, step.subset(miss), key[miss])
            dc[miss], start[miss] = d2, s2
        return Decision(dc.astype(np.int64), start.astype(np.int64),
                        {"status": str(info.get("status", "greedy"))})
