"""Rolling re-planning: windows, the carried water budget, time stamps, the assigner, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError, InfeasibleError
from greensched.scenario import Scenario
from greensched.scheduler import PlanConfig, PlanResult, plan
from greensched.scheduler.assign import (
    AssignError,
    GreedyAssigner,
    PlanGuide,
    predictions_from_coefficients,
)
from greensched.scheduler.rolling import (
    RollingConfig,
    RollingResult,
    hourly_costs,
    plan_perfect_foresight,
    plan_rolling,
    window_scenario,
)
from greensched.scheduler.rolling_budget import WaterRule, least_water_by_hour
from greensched.scheduler.rolling_io import committed_dc_hourly_frame
from greensched.scheduler.rolling_time import DCZone, local_time_strings, resolve_dc_time_zones
from greensched.synth import synthesize

WINTER = "2024-01-15T00:00:00Z"


def small(hours: int = 12, water_factor: float | None = None) -> Scenario:
    """3 DCs x 2 areas x 2 types, letter delay model (fast to build); optional binding budget
    as a factor of the unconstrained plan's water."""
    scen = synthesize(dcs=3, areas=2, types=2, hours=hours, seed=0)
    scen.start = WINTER
    if water_factor is not None:
        free = scen.copy()
        free.water_budget_l = None
        scen.water_budget_l = water_factor * plan(free).water_l
    return scen


@pytest.fixture(scope="module")
def tight() -> Scenario:
    return small(water_factor=0.95)


@pytest.fixture(scope="module")
def tight_roll(tight: Scenario) -> RollingResult:
    return plan_rolling(
        tight,
        PlanConfig(),
        RollingConfig(horizon_h=6, step_h=4, dc_tz={"dc001": "America/New_York"}),
    )


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"horizon_h": 4, "step_h": 6}, "--step"),
        ({"days": 0}, "--days"),
        ({"horizon_h": 0}, "--horizon"),
        ({"step_h": -1}, "--step"),
    ],
)
def test_bad_config_names_the_option(kwargs: dict[str, int], flag: str) -> None:
    with pytest.raises(GreenSchedError, match=flag):
        RollingConfig(**kwargs)  # type: ignore[arg-type]


def test_days_longer_than_scenario() -> None:
    with pytest.raises(GreenSchedError, match="--days 2 needs 48 hours"):
        RollingConfig(days=2).span_hours(small())


def test_committed_hours_cover_span_exactly_once(tight_roll: RollingResult) -> None:
    roll = tight_roll
    assert roll.is_ok and roll.dc_hourly is not None and roll.allocation is not None
    assert [(w.start_hour, w.end_hour, w.commit_end_hour) for w in roll.windows] == [
        (0, 6, 4),
        (4, 10, 8),
        (8, 12, 12),
    ]
    assert roll.window_of_hour.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    flows = roll.dc_hourly
    assert len(flows) == 12 * 3
    assert not flows.duplicated(["hour", "dc"]).any()
    assert sorted(flows["hour"].unique()) == list(range(12))
    served = roll.allocation.sum("dc")
    np.testing.assert_allclose(served.values, 1.0, atol=1e-9)


def test_whole_span_window_is_the_monolithic_plan(tight: Scenario) -> None:
    mono = plan(tight, PlanConfig())
    roll = plan_rolling(tight, PlanConfig(), RollingConfig(horizon_h=12, step_h=12))
    assert len(roll.windows) == 1
    assert roll.objective["total_usd"] == pytest.approx(mono.objective["total_usd"], rel=1e-9)
    assert roll.water_l == pytest.approx(mono.water_l, rel=1e-9)
    # the reference of the comparison is the same plan
    pf = plan_perfect_foresight(tight, PlanConfig(), RollingConfig(horizon_h=12, step_h=12))
    assert pf.objective["total_usd"] == pytest.approx(mono.objective["total_usd"], rel=1e-9)


def test_water_budget_carried_and_respected(tight: Scenario, tight_roll: RollingResult) -> None:
    roll = tight_roll
    assert tight.water_budget_l is not None
    budget = tight.water_budget_l
    pf = plan_perfect_foresight(tight, PlanConfig(), RollingConfig(horizon_h=6, step_h=4))
    assert pf.water_l == pytest.approx(budget, rel=1e-6)  # the budget binds
    assert roll.water_l <= budget * (1 + 1e-9)
    assert roll.summary()["budget_met"] is True
    # each window stays within what was left; the last one gets all of it
    used = 0.0
    for w in roll.windows:
        assert w.water_budget_l is not None
        assert w.water_committed_l <= w.water_planned_l + 1e-9
        assert w.water_planned_l <= w.water_budget_l * (1 + 1e-9)
        assert w.water_budget_l <= budget - used + 1e-9
        used += w.water_committed_l
    assert roll.windows[-1].water_budget_l == pytest.approx(
        budget - sum(w.water_committed_l for w in roll.windows[:-1]), rel=1e-12
    )
    # the committed plan is feasible for the span, so it cannot beat perfect foresight
    weights = roll.weights
    assert weights is not None
    pf_weighted = sum(weights[k] * pf.objective[f"{k}_usd"] for k in weights)
    assert roll.weighted_usd >= pf_weighted * (1 - 1e-9)


def test_window_budget_rule_known_answers() -> None:
    rule = WaterRule(6.0, np.array([1.0, 1.0, 2.0, 2.0]), np.ones(4))
    assert rule.window_budget(0, 2) == pytest.approx(2.0)  # load share 6 x 2/6
    rule.commit(1.0)
    assert rule.window_budget(1, 3) == pytest.approx(3.0)  # 5 x 3/5, within [2, 5 - 1]
    assert rule.window_budget(2, 4) == pytest.approx(5.0)  # the last window: all that is left
    # a heavy first hour would take 4.5 x 11/13 = 3.8; the later hours' least water is kept
    greedy = WaterRule(4.5, np.array([10.0, 1.0, 1.0, 1.0]), np.ones(4))
    assert greedy.window_budget(0, 2) == pytest.approx(2.5)
    # a light window still gets the least water its hours need
    light = WaterRule(8.0, np.array([0.0, 0.0, 5.0, 5.0]), np.full(4, 1.5))
    assert light.window_budget(0, 2) == pytest.approx(3.0)


def test_least_water_and_infeasible_budget() -> None:
    scen = small(hours=4)
    least = least_water_by_hour(scen)
    free = plan(scen, PlanConfig())
    assert least.shape == (4,) and (least > 0).all()
    assert least.sum() <= free.water_l * (1 + 1e-9)
    scen.water_budget_l = 0.99 * float(least.sum())
    with pytest.raises(InfeasibleError, match="below the least water"):
        plan_rolling(scen, PlanConfig(), RollingConfig(horizon_h=2, step_h=1))
    scen.water_budget_l = 1.001 * float(least.sum())  # just enough: every window is feasible
    roll = plan_rolling(scen, PlanConfig(), RollingConfig(horizon_h=2, step_h=1))
    assert roll.is_ok and roll.water_l <= scen.water_budget_l * (1 + 1e-9)


def test_decomposed_windows_match() -> None:
    from greensched.scheduler.decompose import DecomposeConfig

    scen = small(hours=6, water_factor=0.95)
    rcfg = RollingConfig(horizon_h=4, step_h=3)
    mono = plan_rolling(scen, PlanConfig(), rcfg)
    rcfg.decompose = DecomposeConfig()
    dec = plan_rolling(scen, PlanConfig(), rcfg)
    assert [w.method for w in dec.windows] == ["decomposed-hours"] * 2
    assert dec.weighted_usd == pytest.approx(mono.weighted_usd, rel=1e-7)
    assert mono.windows[0].water_price_usd_per_l > 0  # window 0's budget binds
    assert dec.windows[0].water_price_usd_per_l == pytest.approx(
        mono.windows[0].water_price_usd_per_l, rel=1e-6
    )


def _costs(scen: Scenario, res: PlanResult, cfg: PlanConfig) -> pd.DataFrame:
    assert res.dc_hourly is not None and res.allocation is not None
    grid = res.dc_hourly.set_index(["dc", "hour"])["grid_kw"].to_xarray()
    return hourly_costs(scen, res.allocation, grid, cfg)


def test_hourly_costs_sum_to_the_objective() -> None:
    scen = small(hours=6)
    res = plan(scen, PlanConfig())
    costs = _costs(scen, res, PlanConfig())
    for key in ("energy_usd", "carbon_usd", "delay_usd", "total_usd"):
        assert costs[key].sum() == pytest.approx(res.objective[key], rel=1e-9)


def test_hourly_costs_per_query_queueing_term() -> None:
    scen = small(hours=2)
    scen.ds["delay_s_per_token"] = scen.ds["delay_s_per_token"] * 300.0  # pools congest
    cfg = PlanConfig(delay_model="per_query")
    res = plan(scen, cfg)
    assert res.latency["queueing_lp_s"] > 1.0  # the tangent queueing term is in the cost
    costs = _costs(scen, res, cfg)
    assert costs["delay_usd"].sum() == pytest.approx(res.objective["delay_usd"], rel=1e-7)


def test_time_zones_of_a_us_dc() -> None:
    from greensched.defaults import default_scenario

    zones = resolve_dc_time_zones(default_scenario())  # finds examples/letter-regions.toml
    assert zones["us-east4"] == DCZone("America/New_York", "config-area")
    assert zones["us-west1"].tz == "America/Los_Angeles"
    times = pd.date_range("2024-01-15T12:00:00Z", periods=1, freq="h")
    summer = pd.date_range("2024-07-15T12:00:00Z", periods=1, freq="h")
    assert local_time_strings(times, zones["us-east4"])[0] == "2024-01-15T07:00:00-05:00"
    assert local_time_strings(summer, zones["us-east4"])[0] == "2024-07-15T08:00:00-04:00"
    # without a configuration: the solar offset of the longitude, named as such
    lon = resolve_dc_time_zones(small(), None)
    assert lon["dc001"] == DCZone("UTC-05:00", "longitude")  # longitude -79.1
    with pytest.raises(GreenSchedError, match="--dc-tz"):
        resolve_dc_time_zones(small(), "dc001=Mars/Olympus")


def test_committed_table_time_stamps(tight_roll: RollingResult) -> None:
    frame = committed_dc_hourly_frame(tight_roll)
    row = frame[(frame["hour"] == 5) & (frame["dc"] == "dc001")].iloc[0]
    assert row["time_utc"] == "2024-01-15T05:00:00Z"
    assert row["tz"] == "America/New_York"
    assert row["time_local"] == "2024-01-15T00:00:00-05:00"
    assert row["window"] == 1


def _window_guide(scen: Scenario, roll: RollingResult, index: int) -> PlanGuide:
    """The plan of window ``index`` solved on its own, as a guide in scenario hours."""
    w = roll.windows[index]
    res = plan(window_scenario(scen, w.start_hour, w.end_hour, w.water_budget_l), PlanConfig())
    guide = PlanGuide.from_result(res)
    shift = {"hour": np.arange(w.start_hour, w.end_hour)}
    assert guide.allocation is not None and guide.resource_price is not None
    assert guide.energy_price is not None
    guide.allocation = guide.allocation.assign_coords(shift)
    guide.resource_price = guide.resource_price.assign_coords(shift)
    guide.energy_price = guide.energy_price.assign_coords(shift)
    return guide


def test_assigner_follows_the_latest_window(
    tight: Scenario, tight_roll: RollingResult, tmp_path: Path
) -> None:
    roll = tight_roll
    t = 5  # covered by window 0 (hours 0-5, lookahead) and window 1 (hours 4-9), committed by 1
    assert roll.window_for_hour(t) == 1
    latest = _window_guide(tight, roll, 1)
    older = _window_guide(tight, roll, 0)
    mine = roll.guide()
    assert latest.allocation is not None and older.allocation is not None
    assert mine.allocation is not None
    at = {"hour": t}
    want_x = latest.allocation.sel(at)
    np.testing.assert_allclose(
        mine.allocation.sel(at).transpose(*want_x.dims).values, want_x.values, atol=1e-9
    )
    # the two windows planned hour t differently (the budget binds), so the choice matters
    assert float(abs(older.allocation.sel(at) - want_x).max()) > 1e-3
    # the read-back guide of the written directory is the same guide
    from greensched.scheduler.plan_loader import plan_guide_for

    roll.write(tmp_path / "roll")
    meta = json.loads((tmp_path / "roll" / "plan.json").read_text())
    assert meta["method"] == "rolling" and meta["water_l"] == pytest.approx(roll.water_l)
    read = plan_guide_for(tight, tmp_path / "roll", need_duals=True)
    assert read.allocation is not None
    np.testing.assert_allclose(
        read.allocation.reindex_like(mine.allocation).fillna(0.0).values,
        mine.allocation.values,
        atol=1e-9,
    )
    with pytest.raises(AssignError, match="12 hours"):  # a plan longer than the scenario
        plan_guide_for(small(hours=6), tmp_path / "roll", need_duals=True)
    # jobs at hour t are assigned exactly as the latest window's plan alone would assign them
    jobs = pd.DataFrame(
        {
            "job_id": [f"j{i}" for i in range(40)],
            "hour": t,
            "area": ["area000", "area001"] * 20,
            "query_type": ["type0"] * 20 + ["type1"] * 20,
            "input_tokens": 200,
            "output_tokens": 100,
            "sla_s": 30.0,
        }
    )
    preds = predictions_from_coefficients(tight, jobs)
    got = GreedyAssigner(tight, guide=read).assign(jobs, preds).frame["dc"]
    want = GreedyAssigner(tight, guide=latest).assign(jobs, preds).frame["dc"]
    assert got.tolist() == want.tolist()


def _cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from greensched.cli.main import main

    monkeypatch.setattr(sys, "argv", ["greensched", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_rolling_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    small(hours=6).save(tmp_path / "s")
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "plan",
        str(tmp_path / "s"),
        "--rolling",
        "--horizon",
        "4",
        "--step",
        "3",
        "--json",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["windows_count"] == 2 and doc["budget_met"] is True
    assert [(w["start_hour"], w["end_hour"]) for w in doc["windows"]] == [(0, 4), (3, 6)]
    assert all(w["solve_seconds"] > 0 for w in doc["windows"])
    assert doc["objective"]["total_usd"] == pytest.approx(
        sum(w["objective"]["total_usd"] for w in doc["windows"]), rel=1e-12
    )
    table = pd.read_csv(tmp_path / "r" / "committed_dc_hourly.csv")
    assert len(table) == 6 * 3 and table["window"].tolist() == [0] * 9 + [1] * 9
    assert table["time_utc"].iloc[0] == "2024-01-15T00:00:00Z"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--rolling", "--horizon", "4", "--step", "6"), "--step 6"),
        (("--rolling", "--days", "0"), "--days 0"),
        (("--horizon", "4"), "--horizon need(s) --rolling"),
    ],
)
def test_cli_bad_options(
    args: tuple[str, ...],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _cli(monkeypatch, capsys, "plan", *args)
    assert code == 2
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1
