"""greensched.scheduler: the Green-LLM planner (weighted, lexicographic) and its solver backends."""

from greensched.scheduler.backends import SolveStatus, available_solvers
from greensched.scheduler.greenllm import GreenLLMModel, build_model
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
