"""Policies: where *and when* each job runs, behind one interface (:class:`Policy`).

:func:`make_policy` builds one by name; :data:`POLICY_NAMES` lists them.  GreenSched's own
modes (``greensched`` spatio-temporal, ``greensched-spatial``, ``greedy``, ``plan-guided``,
``batch-ip``), the Green-LLM plans followed online (``green-llm-m0/m1/m2``), simple ones
(``nearest``, ``random``, ``performance-only``) and the published baselines of
``../shared/spec/baselines.md`` (``casper``, ``pcaps``, ``cap``, ``carbonclipper``,
``carbonclipper-advice``, ``carbonscaler``).  See :mod:`greensched.scheduler.policies.base` for
the contract every policy keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greensched.scheduler.policies.base import (
    Decision,
    JobClass,
    Policy,
    PolicyContext,
    PolicyError,
    Schedule,
    StepJobs,
    place_in_cells,
    run_schedule,
)
from greensched.scheduler.policies.carbonclipper import CarbonClipperPolicy
from greensched.scheduler.policies.carbonscaler import CarbonScalerPolicy
from greensched.scheduler.policies.casper import CasperPolicy
from greensched.scheduler.policies.pcaps import CAPPolicy, PCAPSPolicy
from greensched.scheduler.policies.spatial import (
    BatchIPPolicy,
    GreedyPolicy,
    NearestPolicy,
    PerformanceOnlyPolicy,
    PlanFollowingPolicy,
    RandomPolicy,
)
from greensched.scheduler.policies.spatiotemporal import GreenSchedPolicy

__all__ = [
    "POLICY_NAMES",
    "BatchIPPolicy",
    "CAPPolicy",
    "CarbonClipperPolicy",
    "CarbonScalerPolicy",
    "CasperPolicy",
    "Decision",
    "GreedyPolicy",
    "GreenSchedPolicy",
    "JobClass",
    "NearestPolicy",
    "PCAPSPolicy",
    "PerformanceOnlyPolicy",
    "PlanFollowingPolicy",
    "Policy",
    "PolicyContext",
    "PolicyError",
    "RandomPolicy",
    "Schedule",
    "StepJobs",
    "make_policy",
    "place_in_cells",
    "run_schedule",
]

_FACTORIES: dict[str, Callable[..., Policy]] = {
    "greensched": lambda **kw: GreenSchedPolicy(**kw),
    "greensched-spatial": lambda **kw: GreenSchedPolicy(temporal=False, **kw),
    "greedy": lambda **kw: GreedyPolicy(**kw),
    "plan-guided": lambda **kw: GreedyPolicy(guided=True, **kw),
    "batch-ip": lambda **kw: BatchIPPolicy(**kw),
    "green-llm-m0": lambda **kw: PlanFollowingPolicy("m0", **kw),
    "green-llm-m1": lambda **kw: PlanFollowingPolicy("m1", **kw),
    "green-llm-m2": lambda **kw: PlanFollowingPolicy("m2", **kw),
    "nearest": lambda **kw: NearestPolicy(**kw),
    "random": lambda **kw: RandomPolicy(**kw),
    "performance-only": lambda **kw: PerformanceOnlyPolicy(**kw),
    "casper": lambda **kw: CasperPolicy(**kw),
    "pcaps": lambda **kw: PCAPSPolicy(**kw),
    "cap": lambda **kw: CAPPolicy(**kw),
    "carbonclipper": lambda **kw: CarbonClipperPolicy(**kw),
    "carbonclipper-advice": lambda **kw: CarbonClipperPolicy(advice=True, **kw),
    "carbonscaler": lambda **kw: CarbonScalerPolicy(**kw),
}

#: Every policy :func:`make_policy` knows.
POLICY_NAMES = tuple(_FACTORIES)


def make_policy(name: str, **params: Any) -> Policy:
    """A fresh policy by name (see :data:`POLICY_NAMES`), with keyword parameters."""
    key = str(name).strip().lower()
    if key not in _FACTORIES:
        raise PolicyError(
            f"policy {name!r} is not known; expected one of {', '.join(POLICY_NAMES)}"
        )
    try:
        policy = _FACTORIES[key](**params)
    except TypeError as exc:
        raise PolicyError(f"policy {name!r}: bad parameters {sorted(params)!r} ({exc})") from exc
    policy.name = key  # type: ignore[misc]
    return policy
