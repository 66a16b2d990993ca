"""Relocation analysis on a tiny case whose masks, frontier and break-even are worked by hand.

The case: one area ``city`` and three DCs ``home`` (same city), ``near`` and ``far``; one query
type of 60 + 40 tokens at 1e-3 kWh per token (E = 0.1 kWh per query), 0.01 s per token
(service 1000 ms), 8 bit per token over 8e5 bit/s (transmission 1 ms), RTT 4 / 19 / 99 ms:

    latency ℓ = 1005, 1020, 1100 ms.

PUE 1, carbon price 0.1 USD/kg; price 0.30 / 0.20 / 0.10 USD/kWh and carbon 0.5 / 0.3 / 0.1
kg/kWh, constant over 2 hours; 10 queries per hour (1 kWh per hour). Cost of serving all the
demand at a DC for the 2 hours (energy + carbon cost): home 0.60 + 0.10 = 0.70, near
0.40 + 0.06 = 0.46, far 0.20 + 0.02 = 0.22 USD; carbon 1.0 / 0.6 / 0.2 kg.
Egress 0.05 USD/GB. With state S GB a full move costs 0.05 S, so the break-even state is
(0.70 − 0.46) / 0.05 = 4.8 GB to ``near`` and (0.70 − 0.22) / 0.05 = 9.6 GB to ``far``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from greensched.errors import InfeasibleError
from greensched.scenario import Scenario, dataset_from_arrays
from greensched.scheduler.relocation import (
    EgressRule,
    PlacementModel,
    RelocationConfig,
    RelocationError,
    WorkloadClass,
    allow_lists,
    analyse,
    break_even,
    budget_breakpoints,
    class_inputs,
    feasibility_masks,
    frontier,
    layers,
    load_classes,
    query_type_mask,
    rid,
    route_mask,
)

DCS = ["home", "near", "far"]
TOL = 1e-6


def tiny(
    *,
    price: list[float] | np.ndarray | None = None,
    capacity: tuple[float, float, float] = (1e6, 1e6, 1e6),
    hours: int = 2,
) -> Scenario:
    """The hand-worked scenario of the module docstring."""
    p = np.tile([0.30, 0.20, 0.10], (hours, 1)) if price is None else np.asarray(price)
    values = {
        "dc_latitude": [0.0, 1.0, 2.0],
        "dc_longitude": [0.0, 1.0, 2.0],
        "pue": [1.0, 1.0, 1.0],
        "carbon_price_usd_per_kg": [0.1, 0.1, 0.1],
        "dc_name": DCS,
        "area_latitude": [0.0],
        "area_longitude": [0.0],
        "population": [1.0],
        "area_name": ["city"],
        "input_tokens": [60.0],
        "output_tokens": [40.0],
        "energy_in_kwh_per_token": [1e-3],
        "energy_out_kwh_per_token": [1e-3],
        "delay_penalty_usd_per_s": [0.0],
        "capacity": np.array(capacity, dtype=float).reshape(3, 1),
        "units_per_token": [[1.0]],
        "delay_s_per_token": np.full((3, 1), 0.01),
        "rtt_s": [[0.004, 0.019, 0.099]],
        "bandwidth": [[8e5, 8e5, 8e5]],
        "delay_limit_s": [[1e6]],
        "price_usd_per_kwh": p,
        "carbon_kg_per_kwh": np.tile([0.5, 0.3, 0.1], (hours, 1)),
        "renewable_kw": np.zeros((hours, 3)),
        "grid_cap_kw": np.full((hours, 3), 1e6),
        "wue_l_per_kwh": np.zeros((hours, 3)),
        "ewif_l_per_kwh": np.zeros((hours, 3)),
        "queries": np.full((hours, 1, 1), 10.0),
        "token_size": np.full((hours, 1, 1), 8.0),
    }
    ds = dataset_from_arrays(
        values, areas=["city"], dcs=DCS, query_types=["q"], resources=["gpu"], hours=hours
    )
    return Scenario("tiny", "", hours, None, None, {"energy": 1.0, "carbon": 0.0, "delay": 0.0}, ds)


def config(state_gb: float = 1.0, **kw: object) -> RelocationConfig:
    cls = WorkloadClass(
        "c",
        "q",
        float(kw.pop("budget", 1100.0)),  # type: ignore[arg-type]
        state_gb=state_gb,
        **kw.pop("cls", {}),  # type: ignore[arg-type]
    )
    return RelocationConfig([cls], egress_default_usd_per_gb=0.05, **kw)  # type: ignore[arg-type]


# -- masks -------------------------------------------------------------------------------------


def test_latency_is_rtt_plus_transmission_plus_service() -> None:
    inp = class_inputs(tiny(), config())
    lat = inp["latency_ms"].sel(workload="c", area="city").values
    np.testing.assert_allclose(lat, [1005.0, 1020.0, 1100.0], atol=TOL)
    np.testing.assert_allclose(inp["transmission_ms"].sel(workload="c").values, 1.0, atol=TOL)
    assert inp["home"].sel(area="city").item() == "home"


@pytest.mark.parametrize(
    ("budget", "expected"),
    [(1004.9, [0, 0, 0]), (1005.0, [1, 0, 0]), (1020.0, [1, 1, 0]), (1100.0, [1, 1, 1])],
)
def test_latency_mask_against_budget(budget: float, expected: list[int]) -> None:
    m = feasibility_masks(tiny(), config(), budgets_ms={"c": budget})
    assert m["feasible"].sel(workload="c", area="city").values.astype(int).tolist() == expected
    assert m["feasible"].attrs["empty"] == ([("c", "city")] if budget < 1005 else [])


def test_law_and_capacity_remove_nodes() -> None:
    scen = tiny(capacity=(1e6, 1e6, 500.0))
    law = config(cls={"allow": ("home", "far")})
    m = feasibility_masks(scen, law)
    assert m["feasible"].sel(workload="c", area="city").values.tolist() == [True, False, True]
    need = config(cls={"capacity_need": {"gpu": 600.0}})
    m = feasibility_masks(scen, need)
    assert m["capacity_ok"].sel(workload="c", area="city").values.tolist() == [True, True, False]
    assert m["feasible"].sel(workload="c", area="city").values.tolist() == [True, True, False]
    by_area = config(cls={"allow_by_area": {"city": ("near",)}})
    assert allow_lists(feasibility_masks(scen, by_area), "c") == {"city": ["near"]}


def test_service_time_is_an_input() -> None:
    serv = xr.DataArray(
        [[2.0, 2.0, 3.0]], dims=("query_type", "dc"), coords={"query_type": ["q"], "dc": DCS}
    )
    inp = class_inputs(tiny(), config(), service_s=serv)
    lat = inp["latency_ms"].sel(workload="c", area="city").values
    np.testing.assert_allclose(lat, [2005.0, 2020.0, 3100.0], atol=TOL)


def test_query_type_mask_all_and_any() -> None:
    cfg = RelocationConfig(
        [
            WorkloadClass("a", "q", 1005.0, demand_share=0.5),
            WorkloadClass("b", "q", 1100.0, demand_share=0.5),
        ]
    )
    scen = tiny()
    m = feasibility_masks(scen, cfg)
    qt = class_inputs(scen, cfg)["query_type"]
    all_ = query_type_mask(m, qt, "all").sel(area="city", query_type="q").values
    any_ = query_type_mask(m, qt, "any").sel(area="city", query_type="q").values
    assert all_.tolist() == [True, False, False]
    assert any_.tolist() == [True, True, True]
    route = route_mask(m, "all")
    assert route.dims == ("dc", "area") and route.values[:, 0].tolist() == [True, False, False]
    assert route_mask(m, "any").values[:, 0].tolist() == [True, True, True]


# -- placement, frontier, slopes -------------------------------------------------------------


def _model(scen: Scenario, cfg: RelocationConfig) -> tuple[PlacementModel, xr.Dataset]:
    inp = class_inputs(scen, cfg)
    return PlacementModel(scen, cfg, inp), inp


def test_frontier_points_and_slopes_by_hand() -> None:
    scen, cfg = tiny(), config(state_gb=1.0)
    model, inp = _model(scen, cfg)
    np.testing.assert_allclose(budget_breakpoints(inp, "c"), [1005.0, 1020.0, 1100.0])
    pts = frontier(model, cfg, inp)
    assert pts["status"].tolist() == ["optimal"] * 3
    np.testing.assert_allclose(pts["energy_usd"], [0.60, 0.40, 0.20], atol=TOL)
    np.testing.assert_allclose(pts["carbon_kg"], [1.0, 0.6, 0.2], atol=TOL)
    np.testing.assert_allclose(pts["friction_usd"], [0.0, 0.05, 0.05], atol=TOL)
    np.testing.assert_allclose(pts["objective_usd"], [0.70, 0.51, 0.27], atol=TOL)
    np.testing.assert_allclose(pts["relax_ms"], [0.0, 15.0, 95.0], atol=TOL)
    # EROL: 0.20 USD over 15 ms, then 0.20 over 80 ms; CROL: 0.4 kg over 15 and over 80 ms.
    np.testing.assert_allclose(pts["erol_usd_per_ms"].iloc[1:], [0.2 / 15, 0.2 / 80], atol=TOL)
    np.testing.assert_allclose(pts["crol_kg_per_ms"].iloc[1:], [0.4 / 15, 0.4 / 80], atol=TOL)
    np.testing.assert_allclose(pts["moved_share"], [0.0, 1.0, 1.0], atol=TOL)


def test_state_above_break_even_stays_home() -> None:
    # S = 6 GB: to near 0.46 + 0.30 = 0.76 > 0.70 (stay); to far 0.22 + 0.30 = 0.52 (move).
    scen, cfg = tiny(), config(state_gb=6.0)
    model, inp = _model(scen, cfg)
    pts = frontier(model, cfg, inp)
    np.testing.assert_allclose(pts["energy_usd"], [0.60, 0.60, 0.20], atol=TOL)
    np.testing.assert_allclose(pts["objective_usd"], [0.70, 0.70, 0.52], atol=TOL)
    masks = feasibility_masks(scen, cfg, inputs=inp)
    be = break_even(model, masks["feasible"]).set_index("dc")
    np.testing.assert_allclose(be.loc["near", "break_even_state_gb"], 4.8, atol=TOL)
    np.testing.assert_allclose(be.loc["far", "break_even_state_gb"], 9.6, atol=TOL)
    assert not be.loc["near", "pays"] and be.loc["far", "pays"]


def test_break_even_with_migration_time() -> None:
    # m = 36 USD/h, setup 100 s, 8 Gbit/s: friction = 0.05 S + 36 (100 + S)/3600 = 1 + 0.06 S;
    # to far: S* = (0.48 - 1.0) / 0.06 < 0, so no state size pays.
    # With m = 3.6 USD/h: friction = 0.1 + 0.051 S, S*_far = 0.38 / 0.051.
    for rate, expected in ((36.0, 0.0), (3.6, 0.38 / 0.051)):
        cfg = config(
            state_gb=1.0,
            cls={"migration_usd_per_h": rate},
            transfer_gbps=8.0,
            migration_setup_s=100.0,
        )
        model, inp = _model(tiny(), cfg)
        fr = model.friction["migration_s"].sel(workload="c", area="city").values
        np.testing.assert_allclose(fr, [0.0, 101.0, 101.0], atol=TOL)
        be = break_even(model, feasibility_masks(tiny(), cfg, inputs=inp)["feasible"])
        got = be.set_index("dc").loc["far", "break_even_state_gb"]
        np.testing.assert_allclose(got, expected, atol=TOL)


def test_state_is_moved_once_and_used_in_cheap_hours_only() -> None:
    # near is cheaper than home in hour 0 only (0.20 vs 0.30; hour 1: 0.40): moving the state
    # (0.05) pays for hour 0's saving of 0.12; the LP serves hour 0 at near, hour 1 at home.
    scen = tiny(price=[[0.30, 0.20, 0.10], [0.30, 0.40, 0.10]])
    cfg = config(state_gb=1.0, budget=1020.0)
    model, inp = _model(scen, cfg)
    res = model.solve(feasibility_masks(scen, cfg, inputs=inp)["feasible"])
    assert res.is_ok and res.x is not None and res.by_class is not None
    x = res.x.sel(workload="c", area="city")
    np.testing.assert_allclose(x.sel(hour=0).values, [0.0, 1.0, 0.0], atol=TOL)
    np.testing.assert_allclose(x.sel(hour=1).values, [1.0, 0.0, 0.0], atol=TOL)
    np.testing.assert_allclose(res.objective_usd, 0.35 + 0.23 + 0.05, atol=TOL)
    be = break_even(model, feasibility_masks(scen, cfg, inputs=inp)["feasible"])
    np.testing.assert_allclose(be.set_index("dc").loc["near", "saving_usd"], 0.12, atol=TOL)


def test_capacity_splits_the_move() -> None:
    # far holds 500 of the 1000 GPU units per hour: half goes to far, half to near.
    scen = tiny(capacity=(1e6, 1e6, 500.0))
    cfg = config(state_gb=1.0)
    model, inp = _model(scen, cfg)
    res = model.solve(feasibility_masks(scen, cfg, inputs=inp)["feasible"])
    assert res.is_ok and res.x is not None and res.by_class is not None
    np.testing.assert_allclose(
        res.x.sel(workload="c", area="city").mean("hour").values, [0.0, 0.5, 0.5], atol=TOL
    )
    np.testing.assert_allclose(res.objective_usd, 0.11 + 0.23 + 0.05, atol=TOL)
    np.testing.assert_allclose(res.by_class.loc["c", "friction_usd"], 0.05, atol=TOL)


def test_rid_and_layers_by_hand() -> None:
    cfg = RelocationConfig(
        [
            WorkloadClass("tight", "q", 1005.0, demand_share=0.5),
            WorkloadClass("mid", "q", 1020.0, demand_share=0.25),
            WorkloadClass("loose", "q", 1100.0, demand_share=0.25),
        ],
        zones={"home": "z1", "near": "z1", "far": "z2"},
    )
    scen = tiny()
    model, inp = _model(scen, cfg)
    feas = feasibility_masks(scen, cfg, inputs=inp)["feasible"]
    r = rid(model, feas)
    np.testing.assert_allclose([r["tight"], r["mid"], r["loose"], r["all"]], [0, 1, 1, 0.5])
    lay = layers(model, feas).set_index("workload")["layer"]
    assert lay.to_dict() == {"tight": "local", "mid": "regional", "loose": "energy-oriented"}
    # Without zones the radius decides: near (19 ms) is within 20 ms, far (99 ms) is not.
    cfg.zones = {}
    cfg.regional_rtt_ms = 20.0
    lay = layers(model, feas).set_index("workload")["layer"]
    assert lay.to_dict() == {"tight": "local", "mid": "regional", "loose": "energy-oriented"}


def test_analysis_metrics_and_files(tmp_path: Path) -> None:
    rep = analyse(tiny(), config(state_gb=1.0, budget=1020.0))
    m = rep.metrics.set_index("workload").loc["c"]
    np.testing.assert_allclose(m["saving_usd"], 0.20, atol=TOL)
    np.testing.assert_allclose(m["saving_kg"], 0.40, atol=TOL)
    np.testing.assert_allclose(m["erol_usd_per_ms"], 0.2 / 15, atol=TOL)
    np.testing.assert_allclose(m["crol_kg_per_ms"], 0.4 / 15, atol=TOL)
    np.testing.assert_allclose(m["erol_marginal_usd_per_ms"], 0.2 / 80, atol=TOL)
    np.testing.assert_allclose(m["full_saving_kg"], 0.8, atol=TOL)
    # half of the full 0.8 kg saving appears at 1020 ms; 80 % needs 1100 ms.
    assert m["budget_50pct_carbon_ms"] == pytest.approx(1020.0)
    assert m["budget_80pct_carbon_ms"] == pytest.approx(1100.0)
    assert m["break_even_state_gb"] == pytest.approx(4.8)
    assert m["break_even_budget_ms"] == pytest.approx(1020.0)
    assert m["rid"] == pytest.approx(1.0)
    paths = rep.write(tmp_path)
    names = {p.name for p in paths}
    assert {"masks.csv", "frontier.csv", "metrics.csv", "frontier.png", "layers.png"} <= names
    assert (tmp_path / "frontier.png").stat().st_size > 1000


def test_empty_mask_at_declared_budget_is_reported() -> None:
    with pytest.raises(InfeasibleError, match=r"class 'c': area 'city' .*1005\.0 ms"):
        analyse(tiny(), config(budget=1000.0))


# -- configuration ----------------------------------------------------------------------------


def test_egress_rules_most_specific_wins() -> None:
    cfg = RelocationConfig(
        [WorkloadClass("c", "q", 1100.0)],
        zones={"home": "na", "near": "na", "far": "eu"},
        egress=[
            EgressRule("*", "*", 0.08),
            EgressRule("na", "na", 0.02),
            EgressRule("na", "*", 0.05),
        ],
    )
    assert cfg.egress_usd_per_gb("home", "near") == 0.02
    assert cfg.egress_usd_per_gb("home", "far") == 0.05
    assert cfg.egress_usd_per_gb("far", "home") == 0.08
    assert cfg.egress_usd_per_gb("home", "home") == 0.0


def test_classes_file_round_trip_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "classes.toml"
    good.write_text(
        '[relocation]\ntransfer_gbps = 8\negress_source = "test"\n'
        '[zones]\nhome = "z1"\n'
        '[[egress]]\nfrom = "z1"\nto = "*"\nusd_per_gb = 0.05\n'
        '[[class]]\nid = "c"\nquery_type = "q"\nlatency_budget_ms = 1020\nstate_gb = 6\n'
        'allow = ["home", "near"]\ncapacity_need = { gpu = 10 }\n'
    )
    cfg = load_classes(good)
    assert cfg.transfer_gbps == 8.0 and cfg.classes[0].allow == ("home", "near")
    assert cfg.egress_usd_per_gb("home", "near") == 0.05
    feasibility_masks(tiny(), cfg)  # checks the file against the scenario
    bad = tmp_path / "bad.toml"
    bad.write_text('[[class]]\nid = "c"\nquery_type = "q"\nlatency_budget_ms = 1020\nstate = 1\n')
    with pytest.raises(RelocationError, match=r"bad\.toml: class\[0\]\.state is not a known"):
        load_classes(bad)
    bad.write_text('[[class]]\nid = "c"\nquery_type = "q"\nlatency_budget_ms = -5\n')
    with pytest.raises(RelocationError, match=r"class\[0\]\.latency_budget_ms must be > 0"):
        load_classes(bad)
    wrong_type = config(cls={})
    wrong_type.classes[0].query_type = "code"
    with pytest.raises(RelocationError, match=r"class\[0\]\.query_type: unknown query type 'code'"):
        feasibility_masks(tiny(), wrong_type)
    wrong_allow = config(cls={"allow": ("mars",)})
    with pytest.raises(RelocationError, match=r"class\[0\]\.allow: 'mars' is no DC"):
        feasibility_masks(tiny(), wrong_allow)
    two = RelocationConfig(
        [WorkloadClass("a", "q", 1100.0, demand_share=0.7), WorkloadClass("b", "q", 1100.0)]
    )
    with pytest.raises(RelocationError, match=r"query type 'q' take 1.7 of its demand"):
        feasibility_masks(tiny(), two)


def test_frontier_of_one_class_with_capacity_shared_by_another() -> None:
    # Two classes of half the demand each (0.5 kWh/h), 1 GB of state each; far holds one class.
    # Sweeping a's budget with b at 1100 ms: a home 0.35 + b far 0.16 = 0.51; a near
    # 0.28 + 0.16 = 0.44; at 1100 both want far, which holds one of them: still 0.44.
    cfg = RelocationConfig(
        [
            WorkloadClass("a", "q", 1020.0, demand_share=0.5, state_gb=1.0),
            WorkloadClass("b", "q", 1100.0, demand_share=0.5, state_gb=1.0),
        ],
        egress_default_usd_per_gb=0.05,
    )
    scen = tiny(capacity=(1e6, 1e6, 500.0))
    model, inp = _model(scen, cfg)
    pts = frontier(model, cfg, inp, workloads=["a"])
    np.testing.assert_allclose(pts["budget_ms"], [1005.0, 1020.0, 1100.0], atol=TOL)
    np.testing.assert_allclose(pts["fleet_objective_usd"], [0.51, 0.44, 0.44], atol=TOL)
    np.testing.assert_allclose(pts["objective_usd"].iloc[:2], [0.35, 0.28], atol=TOL)


def test_placement_solves_after_a_highs_run_with_other_threads() -> None:
    # HiGHS keeps one thread scheduler per process; a solve asking for another thread count
    # used to end with status "error" (seen when the relocation tests followed other solves).
    import highspy

    from greensched.scheduler.backends import set_highs_threads

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    set_highs_threads(h, 2)
    h.addVar(0.0, 1.0)
    h.changeColCost(0, 1.0)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    h2 = highspy.Highs()
    h2.setOptionValue("output_flag", False)
    set_highs_threads(h2, 1)
    h2.addVar(0.0, 1.0)
    h2.changeColCost(0, -1.0)
    h2.run()
    assert h2.getModelStatus() == highspy.HighsModelStatus.kOptimal
