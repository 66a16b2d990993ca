"""GreenSched's own policies and the simple spatial ones behind the policy interface.

* :class:`GreedyPolicy` — the greedy assigner (:mod:`greensched.scheduler.assign`), plain or
  plan-guided (capacity shadow prices of the Green-LLM plan in the score);
* :class:`PlanFollowingPolicy` — the Green-LLM plan's shares (M0 scenario weights, M1 energy
  only, M2 carbon only) applied to the arriving jobs (Cheng & Nguyen, arXiv 2507.09942);
* :class:`BatchIPPolicy` — the batch MILP (:mod:`greensched.scheduler.batch_ip`) per step;
* :class:`NearestPolicy`, :class:`RandomPolicy`, :class:`PerformanceOnlyPolicy`;

GreenSched's spatio-temporal mode lives in :mod:`greensched.scheduler.policies.spatiotemporal`.
"""

from __future__ import annotations

from typing import Any

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
    place_in_cells,
)

__all__ = [
    "BatchIPPolicy",
    "GreedyPolicy",
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
    """The step's jobs placed jointly by the batch MILP (HiGHS), a work limit per step.

    The greedy assigner behind the IP (scores, masks) is built once per run.  The IP gets
    ``mip_rel_gap`` and ``max_nodes`` branch-and-bound nodes without root restarts (a work
    limit: the decisions do not depend on the machine's load; 20 nodes keep the slowest step of
    the main experiment under the proposal's 1 s per batch on a quiet core).  It starts from
    the LP rounding and the arrival-order greedy, so a limit returns the best incumbent found,
    whose relative gap to the LP / MILP bound is in the decision's ``info`` (``gap``,
    ``status``).  ``time_limit_s`` (None: none) adds a wall-clock limit.
    """

    name = "batch-ip"

    def __init__(self, weights: _WEIGHTS | None = None, time_limit_s: float | None = None,
                 mip_rel_gap: float = 1e-3, max_nodes: int = 20) -> None:
        if (time_limit_s is not None and not time_limit_s > 0) or not mip_rel_gap >= 0 \
                or max_nodes < 0:
            raise PolicyError(f"batch-ip needs time_limit_s > 0 (or None), mip_rel_gap >= 0 and "
                              f"max_nodes >= 0, got {time_limit_s!r}, {mip_rel_gap!r}, "
                              f"{max_nodes!r}")
        self.weights = weights
        self.time_limit_s = None if time_limit_s is None else float(time_limit_s)
        self.mip_rel_gap = float(mip_rel_gap)
        self.max_nodes = int(max_nodes)

    def reset(self, ctx: PolicyContext) -> None:
        self._assigner = greedy_assigner(ctx, self.weights)
        scen = ctx.scenario
        self._areas = np.asarray(scen.areas, dtype=object)
        self._types = np.asarray(scen.query_types, dtype=object)
        self._dcs = np.asarray(scen.dcs, dtype=object)

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
            "area": self._areas[step.area],
            "query_type": self._types[step.qtype],
            "input_tokens": np.round(step.tokens).astype(np.int64),
            "output_tokens": np.zeros(step.m, dtype=np.int64),
            "sla_s": step.sla_s,
        })
        pred = xr.Dataset(
            {"energy_kwh": (("job", "dc"), step.energy_kwh),
             "service_s": (("job", "dc"), step.service_s)},
            coords={"job": ids, "dc": self._dcs},
        )
        before = ctx.ledger.used_ticks.copy()
        result = assign_batch_ip(scen, jobs, pred, ledger=ctx.ledger,
                                 time_limit_s=self.time_limit_s, mip_rel_gap=self.mip_rel_gap,
                                 assigner=self._assigner, max_nodes=self.max_nodes,
                                 restart=False, threads=1)
        choice = pd.Index(scen.dcs).get_indexer(np.asarray(result.frame["dc"], dtype=object))
        # the batch IP reserves rounded tokens; re-book the step's exact usage ticks
        ctx.ledger.used_ticks[...] = before
        for j in np.flatnonzero(choice >= 0):
            if not ctx.ledger.reserve_ticks(step.hour, int(choice[j]), step.usage_ticks[j]):
                choice[j] = -1
        info = result.info
        return Decision(choice.astype(np.int64), hour,
                        {"status": str(info.get("status", "")),
                         "gap": float(info.get("gap", 0.0)),
                         "solve_s": float(info.get("solve_s", 0.0))})


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
