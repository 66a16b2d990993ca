"""Assignment errors, result-table constants and :class:`AssignConfig` (scoring and masks)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from greensched.errors import GreenSchedError
from greensched.weights import OBJECTIVES, Weights, WeightsError

#: Reasons a job could not be placed, in the order they are tested.
REASONS = ("sovereignty", "sla", "capacity")

#: Columns of :attr:`Assignment.frame` (one row per job, in the jobs table's order).
ASSIGNMENT_COLUMNS = (
    "job_id",
    "dc",
    "hour",
    "predicted_energy_kwh",
    "predicted_service_s",
    "energy_usd",
    "carbon_kg",
    "carbon_usd",
    "water_l",
    "delay_usd",
    "cost_usd",
    "score",
    "propensity",
    "reason",
)

_EXPLORE = (None, "epsilon", "softmax")
_OBJECTIVES = OBJECTIVES


class AssignError(GreenSchedError):
    """Inputs of an assignment do not fit together (predictions, jobs, plan, masks)."""


class AssignMode(StrEnum):
    """How the online assigner places jobs."""

    GREEDY = "greedy"  # cheapest allowed DC per job, in arrival order
    PLAN = "plan"  # greedy plus the plan's shadow prices of capacity and water
    FOLLOW = "follow"  # DCs drawn in proportion to the plan's shares
    BATCH = "batch"  # all jobs of a batch placed jointly by a MILP

    @classmethod
    def parse(cls, text: str | AssignMode, allowed: tuple[AssignMode, ...] | None = None,
              ) -> AssignMode:
        """A mode from its name or a common alias (``plan-guided``, ``plan-following``, ``ip``);
        the error lists the modes ``allowed`` (default: all)."""
        key = str(text).strip().lower()
        key = _MODE_ALIASES.get(key, key)
        allowed = allowed or tuple(cls)
        try:
            mode = cls(key)
        except ValueError:
            mode = None
        if mode is None or mode not in allowed:
            raise AssignError(
                f"mode {text!r} is not known; expected one of {', '.join(m.value for m in allowed)}"
            )
        return mode


_MODE_ALIASES = {"guided": "plan", "plan-guided": "plan", "plan-following": "follow",
                 "ip": "batch"}



# -- configuration and plan signals -----------------------------------------------------------


@dataclass
class AssignConfig:
    """How the assigner scores and masks DCs.

    Parameters
    ----------
    weights
        ``{"energy", "carbon", "delay"}`` (or a 3-tuple) ≥ 0, not all zero, normalised to sum 1;
        ``None`` uses the plan's weights in plan-guided mode, else the scenario's.
    delay_penalty_usd_per_s
        α in USD per second of SLA excess: one number for every type, a mapping query type → α,
        or ``None`` for each type's ``delay_penalty_usd_per_s``.
    delay_cost
        ``"excess"``: α · max(0, s − SLA) (default); ``"linear"``: α · s.
    water_price_usd_per_l
        Price of water (USD per litre, ≥ 0) in the score.
    sla_hard
        Exclude DCs whose predicted service time exceeds the job's SLA.
    sovereignty
        Mapping area → DCs its jobs may use; areas not in the mapping may use every DC.
    risk
        Score and check the SLA with the p90 predictions (``energy_kwh_p90``, ``service_s_p90``).
    plan_energy_prices
        Plan-guided only: value energy at the plan's marginal facility-energy price
        (:attr:`PlanGuide.energy_price`, which sees on-site renewables) instead of
        σ_e · price + σ_c · δ · θ.
    explore
        ``None``, ``"epsilon"`` (ε-greedy) or ``"softmax"`` (Boltzmann with ``temperature`` USD).
    epsilon, temperature
        Exploration parameters (0 ≤ ε ≤ 1; temperature > 0, in score units, USD).
    seed
        Seed of the exploration and plan-following draws.
    """

    weights: Mapping[str, float] | Sequence[float] | None = None
    delay_penalty_usd_per_s: float | Mapping[str, float] | None = None
    delay_cost: str = "excess"
    water_price_usd_per_l: float = 0.0
    sla_hard: bool = False
    sovereignty: Mapping[str, Sequence[str]] | None = None
    risk: bool = False
    plan_energy_prices: bool = False
    explore: str | None = None
    epsilon: float = 0.1
    temperature: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weights is not None:
            self.weights = _normalise_weights(self.weights)
        if self.delay_cost not in ("excess", "linear"):
            raise AssignError(
                f"delay_cost {self.delay_cost!r} is not known; expected 'excess' or 'linear'"
            )
        if not math.isfinite(self.water_price_usd_per_l) or self.water_price_usd_per_l < 0:
            raise AssignError(
                f"water_price_usd_per_l {self.water_price_usd_per_l!r} must be finite and >= 0"
            )
        if self.explore is not None:
            self.explore = str(self.explore).lower()
            if self.explore in ("", "none"):
                self.explore = None
        if self.explore not in _EXPLORE:
            raise AssignError(
                f"explore {self.explore!r} is not known; expected None, 'epsilon' or 'softmax'"
            )
        if not (0.0 <= float(self.epsilon) <= 1.0):
            raise AssignError(f"epsilon {self.epsilon!r} must lie in [0, 1]")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise AssignError(f"temperature {self.temperature!r} must be a finite number > 0")
        if isinstance(self.delay_penalty_usd_per_s, int | float):
            a = float(self.delay_penalty_usd_per_s)
            if not math.isfinite(a) or a < 0:
                raise AssignError(f"delay_penalty_usd_per_s {a!r} must be finite and >= 0")


def _normalise_weights(w: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
    try:
        return Weights.of(w).normalised()
    except WeightsError as exc:
        raise AssignError(str(exc)) from exc
