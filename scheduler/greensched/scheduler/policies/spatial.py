"""GreenSched's own policies and the simple spatial ones behind the policy interface.

* :class:`GreedyPolicy` — the greedy assigner (:mod:`greensched.scheduler.assign`), plain or
  plan-guided (capacity shadow prices of the Green-LLM plan in the score);
* :class:`PlanFollowingPolicy` — the Green-LLM plan's shares (M0 scenario weights, M1 energy
  only, M2 carbon only) applied to the arriving jobs (Cheng & Nguyen, arXiv 2507.09942);
* :class:`BatchIPPolicy` — the batch MILP (:mod:`greensched.scheduler.batch_ip`) per step;
* :class:`NearestPolicy`, :class:`RandomPolicy`, :class:`PerformanceOnlyPolicy`;
* :class:`GreenSchedPolicy` — GreenSched's spatio-temporal mode: each job takes the (start
  hour, DC) cell with the lowest weighted score over its window — forecast price and carbon,
  the plan's capacity shadow prices of that hour, and the delay cost (SLA excess for interactive
  jobs, lateness past the deadline for batch jobs) — in arrival order, with exact capacity.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scheduler.assign import PlanGuide
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

__all__ = [
    "BatchIPPolicy",
    "GreedyPolicy",
    "GreenSchedPolicy",
    "NearestPolicy",
    "PerformanceOnlyPolicy",
    "PlanFollowingPolicy",
    "RandomPolicy",
    "solve_plan",
]

_WEIGHTS = tuple[float, float, float]


#: Solved plans per (scenario object, preset); the scenario is kept so that its id stays unique.
_PLANS: dict[tuple[int, str], tuple[Any, Any]] = {}


def solve_plan(ctx: PolicyContext, preset: str | None = None) -> Any:
    """The context's plan, or one solved for ``preset`` (m0, m1, m2), cached per scenario."""
    from greensched.scheduler.planner import PlanConfig, plan

    if preset is None and ctx.plan is not None:
        return ctx.plan
    key = (id(ctx.scenario), preset or "")
    if key in _PLANS and _PLANS[key][0] is ctx.scenario:
        return _PLANS[key][1]
    cfg = PlanConfig.preset(preset) if preset else PlanConfig()
    result = plan(ctx.scenario, cfg)
    if not result.is_ok:
        raise PolicyError(f"the Green-LLM plan ({preset or 'scenario weights'}) ended "
                          f"{result.status.value!r}")
    if len(_PLANS) > 16:
        _PLANS.clear()
    _PLANS[key] = (ctx.scenario, result)
    return result


def _spatial(step: StepJobs, key: np.ndarray) -> np.ndarray:
    return key[:, None, :]


class GreedyPolicy(Policy):
    """Per job, the allowed DC of lowest weighted score now (GreenSched's online assigner).

    ``guided=True`` adds the plan's capacity shadow prices (plan-guided mode).  Jobs start on
    arrival; batch jobs are treated as interactive (spatial only).
    """

    name = "greedy"

    def __init__(self, weights: _WEIGHTS | None = None, guided: bool = False) -> None:
        self.weights = weights
        self.guided = guided
        self.name = "plan-guided" if guided else "greedy"  # type: ignore[misc]

    def reset(self, ctx: PolicyContext) -> None:
        guide = PlanGuide.from_result(solve_plan(ctx)) if self.guided else None
        self._assigner = greedy_assigner(ctx, self.weights, guide)

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        hour = np.full(step.m, step.hour, dtype=np.int64)
        choice, _, _ = self._assigner.assign_arrays(
            hour=hour, area=step.area, qtype=step.qtype, tokens=step.tokens, sla=step.sla_s,
            energy=step.energy_kwh, service=step.service_s, usage_ticks=step.usage_ticks,
            arrival=step.arrival_s,
        )
        return Decision(np.asarray(choice, dtype=np.int64), hour)


class PlanFollowingPolicy(Policy):
    """The Green-LLM hourly plan followed online (Cheng & Nguyen, arXiv 2507.09942).

    Adaptation: the plan's shares x[a,d,k,h] for the job's (area, type, hour) are a sampling law
    over the DCs with room (exponential race, seeded); cells the plan leaves empty take the
    greedy choice.  ``preset``: ``m0`` (scenario weights), ``m1`` (energy only), ``m2`` (carbon
    only).
    """

    name = "plan-following"

    def __init__(self, preset: str = "m0") -> None:
        self.preset = preset.lower()
        self.name = f"green-llm-{self.preset}"  # type: ignore[misc]

    def reset(self, ctx: PolicyContext) -> None:
        result = solve_plan(ctx, self.preset)
        guide = PlanGuide.from_result(result)
        follow = PlanGuide(allocation=guide.allocation, weights=guide.weights)
        self._assigner = greedy_assigner(ctx, None, follow, seed=ctx.seed)

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        hour = np.full(step.m, step.hour, dtype=np.int64)
        choice, _, _ = self._assigner.assign_arrays(
            hour=hour, area=step.area, qtype=step.qtype, tokens=step.tokens, sla=step.sla_s,
            energy=step.energy_kwh, service=step.service_s, usage_ticks=step.usage_ticks,
            arrival=step.arrival_s, follow=True,
        )
        return Decision(np.asarray(choice, dtype=np.int64), hour)


class BatchIPPolicy(Policy):
    """The step's jobs placed jointly by the batch MILP (HiGHS), ``time_limit_s`` per step."""

    name = "batch-ip"

    def __init__(self, weights: _WEIGHTS | None = None, time_limit_s: float = 1.0) -> None:
        self.weights = weights
        self.time_limit_s = float(time_limit_s)

    def reset(self, ctx: PolicyContext) -> None:
        from greensched.scheduler.assign import AssignConfig

        self._config = AssignConfig(weights=self.weights)

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        from greensched.scheduler.batch_ip import assign_batch_ip

        hour = np.full(step.m, step.hour, dtype=np.int64)
        if step.m == 0:
            return Decision(np.zeros(0, dtype=np.int64), hour)
        scen = ctx.scenario
        ids = pd.Index([f"s{step.hour}_{i}" for i in range(step.m)], name="job")
        jobs = pd.DataFrame({
            "job_id": ids,
            "arrival_s": step.arrival_s,
            "hour": hour,
            "area": np.asarray(scen.areas, dtype=object)[step.area],
            "query_type": np.asarray(scen.query_types, dtype=object)[step.qtype],
            "input_tokens": np.round(step.tokens).astype(np.int64),
            "output_tokens": np.zeros(step.m, dtype=np.int64),
            "sla_s": step.sla_s,
        })
        dcs = np.asarray(scen.dcs, dtype=object)
        pred = xr.Dataset(
            {"energy_kwh": (("job", "dc"), step.energy_kwh),
             "service_s": (("job", "dc"), step.service_s)},
            coords={"job": ids, "dc": dcs},
        )
        before = ctx.ledger.used_ticks.copy()
        result = assign_batch_ip(scen, jobs, pred, self._config, ledger=ctx.ledger,
                                 time_limit_s=self.time_limit_s)
        choice = pd.Index(scen.dcs).get_indexer(np.asarray(result.frame["dc"], dtype=object))
        # the batch IP reserves rounded tokens; re-book the step's exact usage ticks
        ctx.ledger.used_ticks[...] = before
        for j in np.flatnonzero(choice >= 0):
            if not ctx.ledger.reserve_ticks(step.hour, int(choice[j]), step.usage_ticks[j]):
                choice[j] = -1
        return Decision(choice.astype(np.int64), hour,
                        {"status": str(result.info.get("status", ""))})


class NearestPolicy(Policy):
    """Lowest round-trip time from the job's area among DCs with room (first DC on ties)."""

    name = "nearest"

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        rtt = np.asarray(ctx.scenario.ds["rtt_s"].transpose("area", "dc").values, dtype=float)
        return Decision(*place_in_cells(ctx, step, _spatial(step, rtt[step.area])))


class RandomPolicy(Policy):
    """Uniformly random DC among those with room (seeded)."""

    name = "random"

    def reset(self, ctx: PolicyContext) -> None:
        self._rng = np.random.default_rng(np.random.SeedSequence([ctx.seed, 0x52414E]))

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        key = self._rng.random((step.m, len(ctx.scenario.dcs)))
        return Decision(*place_in_cells(ctx, step, _spatial(step, key)))


class PerformanceOnlyPolicy(Policy):
    """argmin_d predicted service time (network included), capacity-masked; the proposal's
    baseline 1 (see ``../shared/spec/baselines.md``)."""

    name = "performance-only"

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        return Decision(*place_in_cells(ctx, step, _spatial(step, step.service_s)))


class GreenSchedPolicy(Policy):
    """GreenSched's spatio-temporal mode (see the module docstring).

    score(j, t, d) = [σ_e c_f(t,d) + σ_c δ_d θ_f(t,d)] PUE_d E_j(d) + Σ_r π[d,r,t] u_jr
                     + σ_d α_k · excess_j(t, d),
    with forecast price c_f and carbon θ_f, plan shadow prices π (``guided``), excess the SLA
    excess (interactive) or the lateness start_s(t) + s_j(d) − deadline_j (batch).  With
    ``temporal=False`` every job starts now (the spatial greedy on the forecast).  ``carbon``
    False drops the carbon term (ablation).  ``plan_energy`` values energy at the plan's
    marginal facility-energy price (which sees on-site renewables and grid caps) instead of the
    forecast grid price and carbon.  ``deadline_margin_s`` asks batch jobs to finish
    that long before their deadline (a margin for queueing the prediction does not see).
    """

    name = "greensched"
    temporal: ClassVar[bool] = True

    def __init__(
        self,
        weights: _WEIGHTS | None = None,
        *,
        guided: bool = True,
        temporal: bool = True,
        carbon: bool = True,
        deadline_margin_s: float = 600.0,
        plan_energy: bool = True,
    ) -> None:
        if not deadline_margin_s >= 0:
            raise PolicyError(f"deadline_margin_s {deadline_margin_s!r} must be >= 0")
        self.deadline_margin_s = float(deadline_margin_s)
        self.weights = weights
        self.guided = guided
        self.use_time = temporal
        self.carbon = carbon
        self.plan_energy = plan_energy

    def reset(self, ctx: PolicyContext) -> None:
        guide = PlanGuide.from_result(solve_plan(ctx)) if self.guided else None
        a = greedy_assigner(ctx, self.weights, guide)
        se, sc, sd = (a.weights[k] for k in ("energy", "carbon", "delay"))
        if not self.carbon:
            sc = 0.0
        pue = ctx.pue
        delta = np.asarray(ctx.scenario.ds["carbon_price_usd_per_kg"].values, dtype=float)
        per_kwh = (se * ctx.price_forecast_usd_per_kwh
                   + sc * delta[None, :] * ctx.carbon_forecast_kg_per_kwh) * pue[None, :]
        if self.plan_energy and guide is not None and guide.energy_price is not None:
            # the plan's marginal USD per facility kWh (0 where on-site renewables are in
            # surplus), in place of the forecast's grid price and carbon
            marginal = guide.energy_price.reindex(
                dc=ctx.scenario.dcs, hour=np.arange(ctx.scenario.hours), fill_value=0.0
            ).transpose("hour", "dc").values
            per_kwh = np.asarray(marginal, dtype=float) * pue[None, :]
        self._per_kwh = per_kwh + a.water_price_usd_per_l * a.water_l_per_kwh
        self._guide = a.guide_per_token  # (H, K, D) or None
        self._w_alpha = sd * a.alpha

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h, m = step.hour, step.m
        T = step.hours - h
        hrs = h + np.arange(T)
        key = self._per_kwh[hrs][None, :, :] * step.energy_kwh[:, None, :]  # (m, T, D)
        if self._guide is not None:
            key = key + self._guide[hrs][:, step.qtype, :].transpose(1, 0, 2) * step.tokens[
                :, None, None
            ]
        start = step.start_s(np.broadcast_to(hrs[None, :], (m, T)).T).T  # (m, T)
        finish = start[:, :, None] + step.service_s[:, None, :]
        limit = np.where(step.deferrable, step.deadline_s - self.deadline_margin_s,
                         step.arrival_s + step.sla_s)
        excess = np.maximum(finish - limit[:, None, None], 0.0)
        key = key + self._w_alpha[step.qtype][:, None, None] * excess
        window = hour_window_mask(step, self.use_time)
        key = np.where(window[:, :, None], key, np.inf)
        return Decision(*place_in_cells(ctx, step, key))
