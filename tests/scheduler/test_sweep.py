"""Sweeps and the letter's tables."""

from __future__ import annotations

import pytest

from greensched.errors import GreenSchedError
from greensched.scheduler.sweep import parse_scale, run_sweep, run_table, scaled_scenario
from greensched.synth import synthesize


def test_parse_scale() -> None:
    assert parse_scale("0.1:1.9:0.2") == pytest.approx([0.1 + 0.2 * i for i in range(10)])
    assert parse_scale("0.5,1,2") == [0.5, 1.0, 2.0]
    for bad in ("1:0:0.1", "a,b", "0:1:0", "-1,1"):
        with pytest.raises(GreenSchedError):
            parse_scale(bad)


def test_scaled_scenario_changes_only_its_variables() -> None:
    s = synthesize(2, 2, 2, 3, seed=1)
    t = scaled_scenario(s, "theta", 2.0)
    assert float(t.ds["carbon_kg_per_kwh"].sum()) == pytest.approx(
        2 * float(s.ds["carbon_kg_per_kwh"].sum())
    )
    assert t.ds["price_usd_per_kwh"].identical(s.ds["price_usd_per_kwh"])
    assert float(s.ds["carbon_kg_per_kwh"].sum()) != float(t.ds["carbon_kg_per_kwh"].sum())


def test_carbon_only_model_emits_less_as_theta_rises() -> None:
    s = synthesize(4, 3, 2, 6, seed=4)
    df = run_sweep(s, "theta", [0.5, 1.0, 1.5], ["m1", "m2"], progress=False)
    assert (df["status"] == "optimal").all()
    piv = df.pivot(index="scale", columns="model", values="carbon_kg")
    assert (piv["m2"] <= piv["m1"] + 1e-6).all()  # carbon-only never emits more
    cost = df.pivot(index="scale", columns="model", values="carbon_usd")["m2"]
    assert cost.is_monotonic_increasing


def test_sweep_in_process_pool_matches_serial() -> None:
    s = synthesize(3, 2, 2, 4, seed=8)
    a = run_sweep(s, "demand", [0.8, 1.2], ["m0"], progress=False)
    b = run_sweep(s, "demand", [0.8, 1.2], ["m0"], workers=2, progress=False)
    assert a["total_usd"].to_numpy() == pytest.approx(b["total_usd"].to_numpy(), rel=1e-9)


def test_tables(paper) -> None:  # type: ignore[no-untyped-def]
    lex = run_table(paper.subset(hours=range(6)), "lexicographic")
    assert len(lex) == 6 and (lex["status"] == "optimal").all()
    w = run_table(paper, "weights")
    first = w.iloc[0]
    assert first["total_usd"] == pytest.approx(392.08, abs=0.01)
    with pytest.raises(GreenSchedError):
        run_table(paper, "nope")
