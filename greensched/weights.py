"""The three objectives of the Green-LLM model and one validated type for their weights.

Every module that names objectives (planner, assigner, builder, command line) uses
:data:`OBJECTIVES` and :class:`Weights`, so that a weight vector is parsed and checked in one
place: three finite values ≥ 0, not all zero, in the order energy, carbon, delay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from greensched.errors import GreenSchedError

__all__ = ["OBJECTIVES", "Objective", "Weights", "WeightsError"]


class Objective(StrEnum):
    """One objective of the Green-LLM model (each a cost in USD)."""

    ENERGY = "energy"
    CARBON = "carbon"
    DELAY = "delay"


#: The objectives in their canonical order (weights are always given in this order).
OBJECTIVES: tuple[str, str, str] = (Objective.ENERGY.value, Objective.CARBON.value,
                                    Objective.DELAY.value)


class WeightsError(GreenSchedError):
    """A weight vector that is not three finite values ≥ 0, not all zero."""


@dataclass(frozen=True)
class Weights:
    """Weights of energy, carbon and delay cost (σ_e, σ_c, σ_d of the letter).

    Parameters
    ----------
    energy, carbon, delay
        Finite and ≥ 0, not all zero.  They need not sum to 1; :meth:`normalised` rescales.
    """

    energy: float
    carbon: float
    delay: float

    def __post_init__(self) -> None:
        values = (self.energy, self.carbon, self.delay)
        try:
            floats = tuple(float(v) for v in values)
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"weights {values!r} must be numbers (energy, carbon, delay)") \
                from exc
        if any(not math.isfinite(v) or v < 0 for v in floats) or sum(floats) <= 0:
            raise WeightsError(
                f"weights {values!r} must be finite, >= 0 and not all zero (energy, carbon, delay)"
            )
        object.__setattr__(self, "energy", floats[0])
        object.__setattr__(self, "carbon", floats[1])
        object.__setattr__(self, "delay", floats[2])

    @classmethod
    def of(cls, value: Weights | Mapping[str, float] | Sequence[float] | str) -> Weights:
        """Weights from a mapping ``{"energy": .., "carbon": .., "delay": ..}`` (missing keys are
        0, unknown keys an error), a sequence of three values, a ``"E,C,D"`` string or Weights."""
        if isinstance(value, Weights):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(OBJECTIVES))
            if unknown:
                raise WeightsError(
                    f"unknown weight(s) {unknown!r}; expected energy, carbon, delay"
                )
            return cls(*(float(value.get(k, 0.0)) for k in OBJECTIVES))
        vals = list(value)
        if len(vals) != 3:
            raise WeightsError(f"weights {value!r} need three values: energy, carbon, delay")
        return cls(vals[0], vals[1], vals[2])

    @classmethod
    def parse(cls, text: str) -> Weights:
        """``"0.6,0.2,0.2"`` → Weights; the error quotes the text and the expected form."""
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError as exc:
            raise WeightsError(
                f"weights {text!r}: expected three numbers E,C,D such as 0.6,0.2,0.2"
            ) from exc
        if len(values) != 3:
            raise WeightsError(f"weights {text!r}: expected three numbers E,C,D")
        return cls(values[0], values[1], values[2])

    def as_tuple(self) -> tuple[float, float, float]:
        """``(energy, carbon, delay)`` as given."""
        return (self.energy, self.carbon, self.delay)

    def normalised(self) -> dict[str, float]:
        """``{"energy": σ_e, "carbon": σ_c, "delay": σ_d}`` rescaled to sum 1."""
        total = self.energy + self.carbon + self.delay
        return {k: v / total for k, v in zip(OBJECTIVES, self.as_tuple(), strict=True)}
