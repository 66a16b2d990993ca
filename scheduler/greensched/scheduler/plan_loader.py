"""Reading a plan directory (``greensched plan --out``) as the online assigner's guide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignError, PlanGuide

__all__ = ["plan_guide_for"]


def plan_guide_for(scen: Scenario, plan_dir: Path, *, need_duals: bool) -> PlanGuide:
    """Read a plan directory; when duals are needed but absent, re-solve to obtain them.

    The re-solve uses the settings in ``plan.json`` (weights, or order and ε) and must reproduce
    its ``total_usd`` (relative 1e-6), which guards against a plan of another scenario.

    A rolling plan directory (``greensched plan --rolling --out``, with ``rolling.json``) gives
    the guide of its committed plan: at every hour the shares and prices of the latest window
    that started at or before it (:func:`greensched.scheduler.rolling_io.read_rolling_guide`).
    """
    from greensched.scheduler.rolling_io import is_rolling_directory, read_rolling_guide

    if is_rolling_directory(plan_dir):
        return read_rolling_guide(plan_dir, scen)
    guide = PlanGuide.from_directory(plan_dir)
    if not need_duals or guide.has_duals:
        return guide
    from greensched.scheduler.planner import PlanConfig, plan

    meta: dict[str, Any] = json.loads((Path(plan_dir) / "plan.json").read_text(encoding="utf-8"))
    if meta.get("mode") == "lexicographic":
        cfg = PlanConfig(mode="lexicographic", order=tuple(meta.get("order") or ()),
                         epsilon=float(meta.get("epsilon", 0.001)))
    else:
        w = meta.get("weights") or {}
        cfg = PlanConfig(weights=(w.get("energy", 0.0), w.get("carbon", 0.0),
                                  w.get("delay", 0.0)) if w else None)
    result = plan(scen, cfg)
    if not result.is_ok:
        raise AssignError(f"re-solving the plan for its duals ended {result.status.value!r}")
    want = (meta.get("objective") or {}).get("total_usd")
    got = result.objective["total_usd"]
    if want is not None and abs(got - float(want)) > 1e-6 * max(1.0, abs(float(want))):
        raise AssignError(
            f"{plan_dir}: re-solving the scenario gives total_usd {got!r}, the plan has "
            f"{want!r}; is the plan of another scenario?  Plans written by 'greensched plan' "
            "include duals.csv, which makes the re-solve unnecessary"
        )
    solved = PlanGuide.from_result(result)
    solved.allocation = guide.allocation if guide.allocation is not None else solved.allocation
    solved.source = guide.source
    return solved
