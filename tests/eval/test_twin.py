"""Digital twin physics and accounting (greensched.eval.twin, greensched.eval.fleet)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import ScenarioError
from greensched.eval.energy_model import EnergyModel
from greensched.eval.fleet import default_fleet, fleet_for, load_fleet
from greensched.eval.twin import (
    JobArrays,
    NoiseSource,
    Twin,
    erlang_c,
    evaluate_allocation,
    facility_accounting,
    mgc_wait_s,
)
from greensched.scheduler import PlanConfig, plan
from greensched.synth import synthesize

#: Relative tolerance of "twin totals == planner totals" (solver tolerances are ~1e-9).
PLAN_RTOL = 1e-6
PLAN_KEYS = ("energy_usd", "carbon_usd", "carbon_kg", "water_l", "grid_kwh", "it_kwh")


@pytest.fixture(scope="module")
def small():  # type: ignore[no-untyped-def]
    return synthesize(dcs=3, areas=2, types=2, hours=4, seed=0)


@pytest.fixture(scope="module")
def model() -> EnergyModel:
    return EnergyModel.load_default()


def _plan_json(result, tmp_path: Path) -> dict:  # type: ignore[no-untyped-def]
    result.write(tmp_path)
    return json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))


def _check_totals(totals: dict, plan_json: dict) -> None:
    for key in PLAN_KEYS:
        want = plan_json["objective"][key] if key.endswith("_usd") else plan_json[key]
        assert totals[key] == pytest.approx(want, rel=PLAN_RTOL, abs=1e-9), key


# -- queueing ------------------------------------------------------------------------------------


def _erlang_c_direct(c: int, a: float) -> float:
    terms = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (terms + top)


def test_erlang_c_matches_textbook_values() -> None:
    # M/M/1: P(wait) = rho; M/M/2 with a = 1: 1/3; and the direct sum formula.
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0)
    for c, a in ((5, 3.2), (10, 7.0), (30, 27.5)):
        assert erlang_c(c, a) == pytest.approx(_erlang_c_direct(c, a), rel=1e-10)
    assert erlang_c(2000, 1900.0) == pytest.approx(erlang_c(2000, 1900.0))  # finite, no overflow
    assert 0.0 < float(erlang_c(2000, 1990.0)) < 1.0
    assert float(erlang_c(4, 0.0)) == 0.0


def test_queueing_delay_increases_with_utilisation() -> None:
    loads = np.linspace(0.5, 15.5, 31)
    wait, p_wait = mgc_wait_s(16, loads, 2.0, 1.0)
    assert np.all(np.diff(wait) > 0) and np.all(np.diff(p_wait) > 0)
    # Allen-Cunneen: heavier-tailed service times wait longer; cs2 = 1 is exact M/M/c
    w_mm, _ = mgc_wait_s(4, 3.0, 1.0, 1.0)
    assert float(w_mm) == pytest.approx(_erlang_c_direct(4, 3.0) * 1.0 / (4 - 3.0))
    assert float(mgc_wait_s(4, 3.0, 1.0, 4.0)[0]) == pytest.approx(2.5 * float(w_mm))


def _fleet_csv(tmp_path: Path, scen, replicas: int = 1, batch: int = 2) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "fleet.csv"
    path.write_text(
        "dc,query_type,model,gpu,gpus_per_replica,replicas,batch_size\n"
        f"*,*,7B,A100,1,{replicas},{batch}\n",
        encoding="utf-8",
    )
    return path


def test_twin_wait_grows_with_load(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    twin = Twin(small, load_fleet(_fleet_csv(tmp_path, small), small))
    waits, utils = [], []
    for n in (200, 800, 1600, 2400):
        jobs = JobArrays(
            job_id=np.arange(n).astype(str), hour=np.zeros(n, dtype=np.int64),
            area=np.zeros(n, dtype=np.int64), qtype=np.zeros(n, dtype=np.int64),
            input_tokens=np.full(n, 500.0), output_tokens=np.full(n, 200.0),
            sla_s=np.full(n, 30.0), arrival_s=np.linspace(0, 3599, n), weight=np.ones(n),
        )
        res = twin.evaluate(jobs, np.zeros(n, dtype=np.int64))
        waits.append(float(res["wait_s"].mean()))
        utils.append(float(res["queue"].utilization[0, 0, 0]))
    assert np.all(np.diff(utils) > 0)
    assert np.all(np.diff(waits) > 0), waits
    assert utils[-1] > 1.0  # the last load overloads the two slots: the fluid backlog adds
    assert waits[-1] > 100 * waits[0]


# -- serving physics ----------------------------------------------------------------------------


def test_no_cache_serving_reproduces_the_fitted_model(small, model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At batch 1 the 'no_cache' twin equals the measured-regime EnergyModel prediction."""
    fleet = load_fleet(_fleet_csv(tmp_path, small, batch=1), small)
    twin = Twin(small, fleet, energy_model=model, serving="no_cache")
    tin = np.array([10.0, 38.0, 500.0, 1500.0])
    tout = np.array([1.0, 64.0, 300.0, 2048.0])
    idx = (np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    c = twin._costs(idx, tin, tout)
    e = model.predict_energy_j(tin, tout, model=7.0, gpu="A100")
    t = model.predict_runtime_s(tin, tout, model=7.0, gpu="A100")
    np.testing.assert_allclose(c.energy_fixed_j + c.energy_decode_j, e, rtol=1e-9)
    np.testing.assert_allclose(c.time_fixed_s + c.time_decode_s, t, rtol=1e-9)
    # with a KV cache decoding is cheaper and grows linearly in output tokens at fixed context
    kv = Twin(small, fleet, energy_model=model)._costs(idx, tin, tout)
    assert np.all(kv.energy_fixed_j + kv.energy_decode_j <= e * (1 + 1e-12))
    assert kv.energy_decode_j[-1] < 0.5 * c.energy_decode_j[-1]


def test_batching_lowers_energy_and_raises_latency(small, model) -> None:  # type: ignore[no-untyped-def]
    twin = Twin(small, energy_model=model)
    fe, ft = twin.batch_factors(np.array([1.0, 8.0, 16.0, 64.0]))
    assert fe[0] == pytest.approx(1.0) and ft[0] == pytest.approx(1.0)
    assert np.all(np.diff(fe) < 0) and np.all(np.diff(ft) > 0)


# -- facility accounting -------------------------------------------------------------------------


def test_facility_accounting_by_hand(small) -> None:  # type: ignore[no-untyped-def]
    scen = small.copy()
    ds = scen.ds
    ds["pue"][:] = 1.5
    ds["renewable_kw"][:] = 10.0
    ds["grid_cap_kw"][:] = 20.0
    ds["price_usd_per_kwh"][:] = 0.1
    ds["carbon_kg_per_kwh"][:] = 0.4
    ds["carbon_price_usd_per_kg"][:] = 0.05
    ds["wue_l_per_kwh"][:] = 0.6
    ds["ewif_l_per_kwh"][:] = 2.0
    it = np.zeros((scen.hours, len(scen.dcs)))
    it[0, 0], it[0, 1], it[1, 2] = 4.0, 12.0, 30.0  # facility 6 (all renewable), 18, 45
    acc = facility_accounting(scen, it)
    assert acc.grid_kwh[0, 0] == 0.0 and acc.renewable_used_kwh[0, 0] == pytest.approx(6.0)
    assert acc.grid_kwh[0, 1] == pytest.approx(8.0)
    assert acc.grid_kwh[1, 2] == pytest.approx(20.0)  # capped
    assert acc.grid_shortfall_kwh[1, 2] == pytest.approx(15.0)
    assert acc.carbon_kg[0, 1] == pytest.approx(0.4 * 8.0)
    assert acc.energy_usd[0, 1] == pytest.approx(0.8)
    assert acc.carbon_usd[0, 1] == pytest.approx(0.05 * 3.2)
    assert acc.water_l[0, 1] == pytest.approx((0.6 / 1.5 + 2.0) * 18.0)
    tot = acc.totals()
    assert tot["grid_kwh"] == pytest.approx(28.0) and tot["grid_shortfall_kwh"] == pytest.approx(15)


def test_plan_totals_equal_planner_accounting_small(small, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = plan(small, PlanConfig())
    assert result.is_ok
    totals = evaluate_allocation(small, result.allocation, mode="coefficients")
    _check_totals(totals, _plan_json(result, tmp_path))
    assert totals["planner_delay_usd"] == pytest.approx(result.objective["delay_usd"], rel=1e-6)


def test_plan_totals_equal_planner_accounting_paper(paper, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = plan(paper, PlanConfig())
    assert result.is_ok
    totals = evaluate_allocation(paper, result.allocation, mode="coefficients")
    _check_totals(totals, _plan_json(result, tmp_path))
    assert totals["queries"] == pytest.approx(float(paper.ds["queries"].sum()))
    # per (hour, dc) too
    mine = totals["dc_hourly"].set_index(["hour", "dc"])
    theirs = result.dc_hourly.set_index(["hour", "dc"])
    for col in ("it_kw", "grid_kw", "water_l", "carbon_kg"):
        np.testing.assert_allclose(mine[col].loc[theirs.index], theirs[col], rtol=1e-6,
                                   atol=1e-6)
    # physics mode: auto-sized replicas keep every pool at or below the target utilisation
    twin = Twin(paper)
    phys = evaluate_allocation(paper, result.allocation, twin=twin, mode="physics")
    assert phys["grid_shortfall_kwh"] == 0.0
    assert phys["it_kwh"] > 0


# -- noise ---------------------------------------------------------------------------------------


def test_noise_source_is_addressable_and_standard() -> None:
    src = NoiseSource(7)
    rows = np.arange(20000)[:, None]
    cols = np.arange(5)[None, :]
    full = src.normal(1, rows, cols)
    pick = np.array([3, 0, 4, 4, 1])
    np.testing.assert_array_equal(src.normal(1, np.arange(5), pick), full[np.arange(5), pick])
    assert abs(full.mean()) < 0.01 and full.std() == pytest.approx(1.0, abs=0.01)
    assert not np.array_equal(src.normal(2, rows, cols), full)
    assert not np.array_equal(NoiseSource(8).normal(1, rows, cols), full)
    u = src.uniform(3, rows, cols)
    assert u.min() > 0 and u.max() < 1


# -- fleet ---------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "fleet.csv"
    p.write_text(text, encoding="utf-8")
    return p


HEADER = "dc,query_type,model,gpu,gpus_per_replica,replicas,batch_size\n"


@pytest.mark.parametrize(
    ("body", "line", "column", "value"),
    [
        ("dc000,type0,7B,A100,1,2,16\ndc001,type0,13B,TPU,1,2,16\n", 3, "gpu", "TPU"),
        ("dc000,type0,7B,A100,1,2,sixteen\n", 2, "batch_size", "sixteen"),
        ("dc000,type0,7B,A100,1,2,0\n", 2, "batch_size", "0"),
        ("dc000,type0,7B,A100,1,-3,16\n", 2, "replicas", "-3"),
        ("dc000,type0,llama,A100,1,2,16\n", 2, "model", "llama"),
        ("dc009,type0,7B,A100,1,2,16\n", 2, "dc", "dc009"),
        ("dc000,chat,7B,A100,1,2,16\n", 2, "query_type", "chat"),
        ("dc000,type0,70B,A100,1,2,8\n", 2, "gpus_per_replica", "1"),
        ("dc000,type0,7B,A100,1,2,16\ndc000,type0,7B,H100,1,2,16\n", 3, "query_type", "type0"),
    ],
)
def test_bad_fleet_table_names_file_line_column(small, tmp_path, body, line, column,  # type: ignore[no-untyped-def]
                                                value) -> None:
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(ScenarioError) as info:
        load_fleet(path, small)
    err = info.value
    assert err.file == str(path) and err.line == line and err.column == column
    assert err.value == value
    assert str(path) in str(err) and f"line {line}" in str(err)


def test_fleet_missing_column_and_file(small, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScenarioError, match="missing column") as info:
        load_fleet(_write(tmp_path, "dc,query_type,model,gpu,replicas,batch_size\n"), small)
    assert info.value.column == "gpus_per_replica" and info.value.line == 1
    with pytest.raises(ScenarioError, match="not found"):
        load_fleet(tmp_path / "nope.csv", small)


def test_fleet_wildcards_defaults_and_round_trip(small, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, HEADER + "*,*,13B,H100,1,auto,8\ndc001,*,70B,B200,1,3,4\n"
                  "dc001,type1,7B,A100,1,5,32\n")
    fleet = load_fleet(path, small)
    t = fleet.table.set_index(["dc", "query_type"])
    assert t.loc[("dc000", "type0"), "model"] == "13B"
    assert t.loc[("dc001", "type0"), "gpu"] == "B200" and t.loc[("dc001", "type0"), "replicas"] == 3
    assert t.loc[("dc001", "type1"), "batch_size"] == 32
    twin = Twin(small, fleet)
    assert (twin.replicas_ >= 1).all() and twin.replicas_[1, 1] == 5
    saved = twin.fleet_.save(tmp_path / "resolved.csv")
    again = load_fleet(saved, small)
    assert again.to_frame().equals(twin.fleet_.to_frame())
    # beside the scenario: fleet_for picks it up; default otherwise
    scen_dir = tmp_path / "scen"
    small.save(scen_dir)
    (scen_dir / "fleet.csv").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    from greensched.scenario import load_scenario

    loaded = load_scenario(scen_dir)
    assert fleet_for(loaded).to_frame().equals(fleet.to_frame())
    assert fleet_for(small).to_frame().equals(default_fleet(small).to_frame())


def test_default_fleet_for_the_letter(paper) -> None:  # type: ignore[no-untyped-def]
    fleet = default_fleet(paper)
    t = fleet.table
    assert len(t) == len(paper.dcs) * len(paper.query_types)
    assert set(t["gpu"]) == {"A100", "H100", "B200"}
    big = t[t["model"] == "70B"].set_index("gpu")["gpus_per_replica"]
    assert (big.loc[["A100"]] == 4).all() and (big.loc[["B200"]] == 1).all()
    assert isinstance(fleet.to_frame(), pd.DataFrame)
