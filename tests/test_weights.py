"""One weights type for planner, assigner, builder and command line."""

from __future__ import annotations

import math

import pytest

from greensched.weights import OBJECTIVES, Objective, Weights, WeightsError


def test_forms_agree_and_normalise() -> None:
    expected = {"energy": 0.6, "carbon": 0.2, "delay": 0.2}
    for form in ("3,1,1", (3, 1, 1), [3.0, 1.0, 1.0], {"energy": 3, "carbon": 1, "delay": 1}):
        got = Weights.of(form).normalised()
        assert got.keys() == expected.keys()
        assert all(math.isclose(got[k], expected[k]) for k in expected)
    assert Weights.of({"carbon": 2}).as_tuple() == (0.0, 2.0, 0.0)
    assert OBJECTIVES == tuple(o.value for o in Objective) == ("energy", "carbon", "delay")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("1,x,2", "expected three numbers"),
        ("1,2", "expected three numbers"),
        ((1.0, -1.0, 0.0), ">= 0"),
        ((0, 0, 0), "not all zero"),
        ((float("nan"), 1, 1), "finite"),
        ({"energy": 1, "water": 1}, "unknown weight(s) ['water']"),
        ((1, 2), "need three values"),
    ],
)
def test_bad_weights_say_what_is_wrong(value: object, needle: str) -> None:
    with pytest.raises(WeightsError) as exc:
        Weights.of(value)  # type: ignore[arg-type]
    assert needle in str(exc.value)
    assert isinstance(exc.value, ValueError)
