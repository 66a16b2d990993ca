"""The Green-LLM letter's published numbers (green-llm-model.md) reproduced within 0.01 USD."""

from __future__ import annotations

import pytest

from greensched.scheduler import PlanConfig, PlanSession, SolveStatus, plan

TOL = 0.01


@pytest.fixture(scope="module")
def session(paper):  # type: ignore[no-untyped-def]
    return PlanSession(paper)


def test_default_weights(paper) -> None:
    r = plan(paper)
    assert r.status is SolveStatus.OPTIMAL and r.is_ok
    o = r.objective
    assert o["total_usd"] == pytest.approx(392.08, abs=TOL)
    assert o["energy_usd"] == pytest.approx(197.63, abs=TOL)
    assert o["carbon_usd"] == pytest.approx(5.46, abs=TOL)
    assert o["delay_usd"] == pytest.approx(189.00, abs=TOL)
    # the accounting is consistent
    assert r.carbon_kg > 0 and r.water_l <= paper.water_budget_l
    hourly = r.dc_hourly
    assert hourly["grid_kw"].sum() == pytest.approx(r.grid_kwh)
    assert (
        hourly["facility_kw"] - hourly["grid_kw"] - hourly["renewable_used_kw"]
    ).abs().max() < 1e-6


@pytest.mark.parametrize(
    ("preset", "key", "value"), [("m1", "energy_usd", 193.94), ("m2", "carbon_usd", 2.09)]
)
def test_presets(session, preset: str, key: str, value: float) -> None:
    r = session.solve(PlanConfig.preset(preset))
    assert r.objective[key] == pytest.approx(value, abs=TOL)


LEX = [
    (("energy", "carbon", "delay"), (194.13, 7.85, 193.68)),
    (("energy", "delay", "carbon"), (194.13, 8.14, 192.19)),
    (("delay", "energy", "carbon"), (425.72, 22.51, 180.00)),
    (("delay", "carbon", "energy"), (443.58, 18.62, 180.00)),
    (("carbon", "delay", "energy"), (207.11, 2.09, 195.69)),
    (("carbon", "energy", "delay"), (207.13, 2.09, 195.49)),
]


@pytest.mark.parametrize(("order", "expected"), LEX)
def test_lexicographic_orders(session, order, expected) -> None:  # type: ignore[no-untyped-def]
    r = session.solve(PlanConfig(mode="lexicographic", order=order, epsilon=0.001))
    assert r.is_ok and len(r.phases) == 3
    o = r.objective
    got = (o["energy_usd"], o["carbon_usd"], o["delay_usd"])
    assert got == pytest.approx(expected, abs=TOL)
    # every phase's objective respects the ε-bounds of earlier phases
    for m, phase in enumerate(r.phases[:-1]):
        best = phase["value_usd"]
        for later in r.phases[m + 1 :]:
            assert later[f"{phase['objective']}_usd"] <= best + 0.001 * abs(best) + 1e-6


@pytest.mark.parametrize(
    ("weights", "total"),
    [
        ((0.6, 0.2, 0.2), 394.01),
        ((0.2, 0.6, 0.2), 393.89),
        ((0.2, 0.2, 0.6), 393.41),
        ((0.45, 0.45, 0.1), 393.42),
        ((0.45, 0.1, 0.45), 393.13),
    ],
)
def test_weight_table(session, weights, total) -> None:  # type: ignore[no-untyped-def]
    r = session.solve(PlanConfig(weights=weights))
    assert r.objective["total_usd"] == pytest.approx(total, abs=TOL)


def test_write_outputs(paper, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import pandas as pd

    r = plan(paper)
    r.write(tmp_path)
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["status"] == "optimal" and doc["mode"] == "weighted"
    assert set(doc["objective"]) == {"energy_usd", "carbon_usd", "delay_usd", "total_usd"}
    for key in ("carbon_kg", "water_l", "grid_kwh", "it_kwh", "solver", "solve_seconds", "phases"):
        assert key in doc
    alloc = pd.read_csv(tmp_path / "allocation.csv")
    assert list(alloc.columns) == ["hour", "area", "query_type", "dc", "fraction"]
    assert (alloc["fraction"] > 1e-9).all()
    sums = alloc.groupby(["hour", "area", "query_type"])["fraction"].sum()
    assert len(sums) == 24 * 9 * 5 and (sums - 1).abs().max() < 1e-6
    hourly = pd.read_csv(tmp_path / "dc_hourly.csv")
    assert list(hourly.columns) == [
        "hour",
        "dc",
        "it_kw",
        "facility_kw",
        "grid_kw",
        "renewable_used_kw",
        "water_l",
        "carbon_kg",
    ]
    assert len(hourly) == 24 * 9
    assert hourly["water_l"].sum() == pytest.approx(doc["water_l"])


def test_duals_file(paper, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    r = plan(paper)
    r.write(tmp_path)
    duals = pd.read_csv(tmp_path / "duals.csv")
    counts = duals.groupby("family").size().to_dict()
    assert counts["resource"] == 9 * 3 * 24 and counts["water"] == 1
    assert counts["delay"] == 9 * 5 * 24 and counts["demand"] == 9 * 5 * 24
    # ≤ rows of a minimisation have non-positive duals
    assert (duals.loc[duals["family"].isin(["resource", "water", "delay"]), "dual"] <= 1e-9).all()
