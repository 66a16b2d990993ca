"""Decomposed planning: the Green-LLM LP solved hour by hour, coupling rows priced.

See ``docs/decomposition.md``.  Entry point: :func:`plan_decomposed`.
"""

from greensched.scheduler.decompose.coordinate import (
    DecomposeConfig,
    DecomposedPlanResult,
    plan_decomposed,
    rounds_frame,
)
from greensched.scheduler.decompose.hourly import (
    FUNCTIONALS,
    DecompositionError,
    HourLP,
    HourWorker,
    split_by_hour,
)
from greensched.scheduler.decompose.workers import Engine, WorkerPool, make_pool

__all__ = [
    "FUNCTIONALS",
    "DecomposeConfig",
    "DecomposedPlanResult",
    "DecompositionError",
    "Engine",
    "HourLP",
    "HourWorker",
    "WorkerPool",
    "make_pool",
    "plan_decomposed",
    "rounds_frame",
    "split_by_hour",
]
