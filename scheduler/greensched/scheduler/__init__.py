"""greensched.scheduler: the Green-LLM planner (weighted, lexicographic) and its solver backends.

``GreenLLMModel`` and ``build_model`` (the linopy model) are imported on first use, so that
planning the letter model (built with numpy, ``direct.py``) does not import linopy.
"""

from typing import Any

from greensched.scheduler.backends import SolveStatus, available_solvers
from greensched.scheduler.planner import (
    OBJECTIVES,
    PRESETS,
    PlanConfig,
    PlanResult,
    PlanSession,
    diagnose_infeasibility,
    plan,
)

__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "GreenLLMModel",
    "PlanConfig",
    "PlanResult",
    "PlanSession",
    "SolveStatus",
    "available_solvers",
    "build_model",
    "diagnose_infeasibility",
    "plan",
]


def __getattr__(name: str) -> Any:
    if name in ("GreenLLMModel", "build_model"):
        from greensched.scheduler import greenllm

        return getattr(greenllm, name)
    raise AttributeError(f"module 'greensched.scheduler' has no attribute {name!r}")
