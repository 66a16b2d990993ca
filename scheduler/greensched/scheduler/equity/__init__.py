"""greensched.scheduler.equity: equity-aware geographical load balancing (SE-GLB).

Li, Liu, Yang, Ren, "Towards Socially and Environmentally Responsible AI" (arXiv 2407.05176) and,
for the online algorithm, Li, Yang, Wierman, Ren, "Towards Environmentally Equitable AI via
Geographical Load Balancing" (arXiv 2307.05494).  See docs/equity.md.
"""

from greensched.scheduler.equity.problem import EnvForm, EquityConfig, EquityProblem, parse_q
from greensched.scheduler.equity.seglb import (
    EquityMatrices,
    EquityResult,
    build_matrices,
    evaluate_objective,
    lq_norm,
    solve_seglb,
)

__all__ = [
    "EnvForm",
    "EquityConfig",
    "EquityMatrices",
    "EquityProblem",
    "EquityResult",
    "build_matrices",
    "evaluate_objective",
    "lq_norm",
    "parse_q",
    "solve_seglb",
]
