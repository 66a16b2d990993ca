"""Greedy, plan-guided, plan-following and exploring assignment of single jobs."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greensched.jobs import validate_jobs
from greensched.scheduler.assign import (
    AssignConfig,
    AssignError,
    CapacityLedger,
    GreedyAssigner,
    PlanGuide,
    _allowed_at_turn,
    _engine_hour,
    assign_greedy,
    assign_plan_following,
    evaluate_assignment,
    job_usage_units,
    predictions_from_coefficients,
    sample_jobs_from_demand,
    write_plan_duals,
)
from greensched.synth import synthesize

#: Scores are sums of a few products: compare with this relative tolerance.
REL = 1e-12


# -- helpers ---------------------------------------------------------------------------------------


def tiny_scenario(dcs: int = 3, hours: int = 1, areas: int = 1, types: int = 1):  # type: ignore[no-untyped-def]
    """A synthetic scenario with round numbers: PUE 1, one resource, 1 unit per token."""
    scen = synthesize(dcs=dcs, areas=areas, types=types, hours=hours, seed=0, resources=1)
    ds = scen.ds
    ds["pue"] = xr.full_like(ds["pue"], 1.0)
    ds["price_usd_per_kwh"] = xr.full_like(ds["price_usd_per_kwh"], 0.1) * xr.DataArray(
        np.arange(1, dcs + 1, dtype=float), dims="dc", coords={"dc": ds.indexes["dc"]}
    )
    ds["carbon_kg_per_kwh"] = xr.full_like(ds["carbon_kg_per_kwh"], 0.5)
    ds["carbon_price_usd_per_kg"] = xr.full_like(ds["carbon_price_usd_per_kg"], 0.02)
    ds["wue_l_per_kwh"] = xr.full_like(ds["wue_l_per_kwh"], 1.0)
    ds["ewif_l_per_kwh"] = xr.full_like(ds["ewif_l_per_kwh"], 2.0)
    ds["units_per_token"] = xr.full_like(ds["units_per_token"], 1.0)
    ds["capacity"] = xr.full_like(ds["capacity"], 1000.0)
    ds["delay_penalty_usd_per_s"] = xr.full_like(ds["delay_penalty_usd_per_s"], 0.5)
    ds["input_tokens"] = xr.full_like(ds["input_tokens"], 6.0)
    ds["output_tokens"] = xr.full_like(ds["output_tokens"], 4.0)
    scen.weights = {"energy": 1.0, "carbon": 0.0, "delay": 0.0}
    return scen


def jobs_frame(scen, n: int, *, tokens=(6, 4), sla: float = 30.0, area=None, hour=0):  # type: ignore[no-untyped-def]
    return validate_jobs(
        pd.DataFrame(
            {
                "job_id": [f"j{i}" for i in range(n)],
                "arrival_s": hour * 3600.0 + np.linspace(0.0, 3599.0, n),
                "area": area if area is not None else scen.areas[0],
                "query_type": scen.query_types[0],
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "sla_s": sla,
            }
        ),
        scen,
    )


def preds(jobs, dcs, energy, service):  # type: ignore[no-untyped-def]
    n, d = len(jobs), len(dcs)
    e = np.broadcast_to(np.asarray(energy, dtype=float), (n, d))
    s = np.broadcast_to(np.asarray(service, dtype=float), (n, d))
    return xr.Dataset(
        {"energy_kwh": (("job", "dc"), e.copy()), "service_s": (("job", "dc"), s.copy())},
        coords={"job": jobs["job_id"].to_numpy(), "dc": dcs},
    )


def reference_greedy(scen, jobs, pred, cfg, ledger):  # type: ignore[no-untyped-def]
    """Independent sequential greedy: a Python loop over jobs in arrival order."""
    ds = scen.ds
    w = cfg.weights or {k: v / sum(scen.weights.values()) for k, v in scen.weights.items()}
    dcs = scen.dcs
    out = []
    order = np.lexsort(
        (np.arange(len(jobs)), jobs["arrival_s"].to_numpy(), jobs["hour"].to_numpy())
    )
    for i in order:
        job = jobs.iloc[i]
        h, k, a = int(job["hour"]), job["query_type"], job["area"]
        tokens = job["input_tokens"] + job["output_tokens"]
        units = ds["units_per_token"].sel(query_type=k).values * tokens
        ticks = ledger.to_ticks(units)
        best, best_d = np.inf, -1
        for d_i, d in enumerate(dcs):
            e = float(pred["energy_kwh"].sel(job=job["job_id"], dc=d))
            s = float(pred["service_s"].sel(job=job["job_id"], dc=d))
            if cfg.sovereignty and a in cfg.sovereignty and d not in cfg.sovereignty[a]:
                continue
            if cfg.sla_hard and s > job["sla_s"]:
                continue
            if not ledger.fits(h, d, units):
                continue
            pue = float(ds["pue"].sel(dc=d))
            price = float(ds["price_usd_per_kwh"].sel(hour=h, dc=d))
            theta = float(ds["carbon_kg_per_kwh"].sel(hour=h, dc=d))
            delta = float(ds["carbon_price_usd_per_kg"].sel(dc=d))
            rho = float(ds["delay_penalty_usd_per_s"].sel(query_type=k))
            score = (w["energy"] * price * pue * e + w["carbon"] * delta * theta * pue * e
                     + w["delay"] * rho * max(0.0, s - job["sla_s"]))
            if score < best:
                best, best_d = score, d_i
        if best_d >= 0:
            assert ledger.reserve_ticks(h, best_d, ticks)
        out.append((i, dcs[best_d] if best_d >= 0 else "", best))
    out.sort()
    return [d for _, d, _ in out], np.array([s for _, _, s in out])


# -- hand-computed cases ------------------------------------------------------------------------


def test_greedy_tiny_hand_computed() -> None:
    # prices 0.1, 0.2, 0.3 USD/kWh; energy weight only; each job uses 10 units;
    # dc000 holds 25 units (2 jobs), dc001 holds 10 (1 job), dc002 plenty.
    scen = tiny_scenario()
    cap = scen.ds["capacity"].copy()
    cap.values[:, 0] = [25.0, 10.0, 1000.0]
    scen.ds["capacity"] = cap
    jobs = jobs_frame(scen, 5)
    pred = preds(jobs, scen.dcs, [1.0, 1.0, 2.0], 1.0)
    a = assign_greedy(scen, jobs, pred)
    f = a.frame
    assert f["dc"].tolist() == ["dc000", "dc000", "dc001", "dc002", "dc002"]
    # score = 1.0 · price · PUE(1) · E
    assert f["score"].tolist() == pytest.approx([0.1, 0.1, 0.2, 0.6, 0.6], rel=REL)
    assert f["propensity"].tolist() == [1.0] * 5
    assert (f["reason"] == "").all()
    # cost columns: energy 0.1·1, carbon 0.5·1 kg at 0.02 USD/kg
    assert f["energy_usd"].iloc[0] == pytest.approx(0.1, rel=REL)
    assert f["carbon_kg"].iloc[0] == pytest.approx(0.5, rel=REL)
    assert f["carbon_usd"].iloc[0] == pytest.approx(0.01, rel=REL)
    assert f["water_l"].iloc[3] == pytest.approx((1.0 / 1.0 + 2.0) * 2.0, rel=REL)
    used = a.ledger.used_units().sel(resource=scen.resources[0], hour=0).values
    assert used.tolist() == [20.0, 10.0, 20.0]


def test_all_score_terms_hand_computed() -> None:
    scen = tiny_scenario(dcs=2)
    cfg = AssignConfig(weights=(2.0, 1.0, 1.0), water_price_usd_per_l=0.01)
    jobs = jobs_frame(scen, 1, sla=1.0)
    pred = preds(jobs, scen.dcs, [[1.0, 0.5]], [[3.0, 1.5]])
    a = assign_greedy(scen, jobs, pred, cfg)
    # weights normalised to 0.5, 0.25, 0.25
    # dc000: 0.5·0.1·1 + 0.25·0.02·0.5·1 + 0.25·0.5·(3−1) + 0.01·3·1 = 0.05+0.0025+0.25+0.03
    # dc001: 0.5·0.2·0.5 + 0.25·0.02·0.5·0.5 + 0.25·0.5·0.5 + 0.01·3·0.5 = 0.05+0.00125+0.0625+0.015
    assert a.frame["dc"].iloc[0] == "dc001"
    assert a.frame["score"].iloc[0] == pytest.approx(0.05 + 0.00125 + 0.0625 + 0.015, rel=REL)
    # cost_usd is unweighted energy + carbon + delay
    assert a.frame["cost_usd"].iloc[0] == pytest.approx(0.1 + 0.005 + 0.25, rel=REL)


def test_alpha_override_and_linear_delay() -> None:
    scen = tiny_scenario(dcs=2)
    jobs = jobs_frame(scen, 1, sla=1.0)
    pred = preds(jobs, scen.dcs, [[1.0, 1.0]], [[0.5, 0.9]])
    cfg = AssignConfig(weights=(1, 0, 1), delay_penalty_usd_per_s=2.0, delay_cost="linear")
    a = assign_greedy(scen, jobs, pred, cfg)
    # dc000: 0.5·0.1 + 0.5·2·0.5 = 0.55; dc001: 0.5·0.2 + 0.5·2·0.9 = 1.0
    assert a.frame["dc"].iloc[0] == "dc000"
    assert a.frame["score"].iloc[0] == pytest.approx(0.55, rel=REL)


def test_reasons_capacity_sla_sovereignty() -> None:
    scen = tiny_scenario(dcs=2, areas=2)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = 10.0
    scen.ds["capacity"] = cap
    a0, a1 = scen.areas
    jobs = validate_jobs(pd.DataFrame({
        "job_id": ["big", "slow", "banned", "ok"],
        "hour": 0,
        "area": [a0, a0, a1, a0],
        "query_type": scen.query_types[0],
        "input_tokens": [50, 1, 1, 1],
        "output_tokens": [0, 1, 1, 1],
        "sla_s": [30.0, 0.5, 30.0, 30.0],
    }), scen)
    pred = preds(jobs, scen.dcs, 1.0, [[1.0, 1.0]] * 2 + [[0.1, 0.1]] * 2)
    cfg = AssignConfig(sla_hard=True, sovereignty={a1: []})
    f = assign_greedy(scen, jobs, pred, cfg).frame.set_index("job_id")
    assert f.loc["big", "reason"] == "capacity" and f.loc["big", "dc"] == ""
    assert f.loc["slow", "reason"] == "sla"
    assert f.loc["banned", "reason"] == "sovereignty"
    assert f.loc["ok", "dc"] == "dc000" and f.loc["ok", "reason"] == ""
    assert np.isnan(f.loc["big", "score"]) and np.isnan(f.loc["big", "propensity"])


def test_sla_hard_never_picks_violating_dc() -> None:
    scen = tiny_scenario(dcs=3)
    jobs = jobs_frame(scen, 50, sla=1.0)
    rng = np.random.default_rng(1)
    service = rng.uniform(0.0, 2.0, (50, 3))
    pred = preds(jobs, scen.dcs, rng.uniform(0.1, 1.0, (50, 3)), service)
    f = assign_greedy(scen, jobs, pred, AssignConfig(sla_hard=True)).frame
    placed = f["dc"] != ""
    assert (f.loc[placed, "predicted_service_s"] <= 1.0).all()
    no_dc = (service > 1.0).all(axis=1)
    assert (f.loc[no_dc, "reason"] == "sla").all()
    assert placed.sum() == (~no_dc).sum()
    # soft mode places every job and may pick violating DCs (penalised only)
    soft = assign_greedy(scen, jobs, pred).frame
    assert (soft["dc"] != "").all()


def test_sovereignty_lists_respected() -> None:
    scen = tiny_scenario(dcs=3, areas=3)
    a0, a1, a2 = scen.areas
    rng = np.random.default_rng(2)
    n = 60
    jobs = validate_jobs(pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)], "hour": 0,
        "area": rng.choice(scen.areas, n), "query_type": scen.query_types[0],
        "input_tokens": 5, "output_tokens": 5,
    }), scen)
    pred = preds(jobs, scen.dcs, rng.uniform(0.1, 1, (n, 3)), 0.1)
    allowed = {a0: ["dc002"], a1: ["dc001", "dc002"]}
    f = assign_greedy(scen, jobs, pred, AssignConfig(sovereignty=allowed)).frame
    for area, dc in zip(jobs["area"], f["dc"], strict=True):
        assert dc in allowed.get(area, scen.dcs)
    with pytest.raises(AssignError, match="unknown dc 'nowhere'"):
        assign_greedy(scen, jobs, pred, AssignConfig(sovereignty={a0: ["nowhere"]}))
    with pytest.raises(AssignError, match="unknown area"):
        assign_greedy(scen, jobs, pred, AssignConfig(sovereignty={"atlantis": ["dc000"]}))


def test_risk_mode_uses_p90() -> None:
    scen = tiny_scenario(dcs=2)
    jobs = jobs_frame(scen, 1, sla=1.0)
    pred = preds(jobs, scen.dcs, [[1.0, 1.0]], [[0.5, 0.5]])
    pred["energy_kwh_p90"] = pred["energy_kwh"] * [[5.0, 1.0]]
    pred["service_s_p90"] = pred["service_s"] * [[1.0, 3.0]]
    assert assign_greedy(scen, jobs, pred).frame["dc"].iloc[0] == "dc000"
    f = assign_greedy(scen, jobs, pred, AssignConfig(risk=True)).frame
    assert f["dc"].iloc[0] == "dc001"  # 0.2·1 < 0.1·5
    assert f["predicted_energy_kwh"].iloc[0] == 1.0  # reported at the mean
    f = assign_greedy(scen, jobs, pred, AssignConfig(risk=True, sla_hard=True)).frame
    assert f["dc"].iloc[0] == "dc000"  # p90 service at dc001 is 1.5 s > SLA 1 s
    del pred["energy_kwh_p90"]
    with pytest.raises(AssignError, match="p90"):
        assign_greedy(scen, jobs, pred, AssignConfig(risk=True))


def test_prediction_errors_are_clear() -> None:
    scen = tiny_scenario(dcs=2)
    jobs = jobs_frame(scen, 3)
    pred = preds(jobs.iloc[:2], scen.dcs, 1.0, 1.0)
    with pytest.raises(AssignError, match="no row for job_id 'j2'"):
        assign_greedy(scen, jobs, pred)
    pred = preds(jobs, ["dc000", "elsewhere"], 1.0, 1.0)
    with pytest.raises(AssignError, match="expected exactly the scenario's"):
        assign_greedy(scen, jobs, pred)
    pred = preds(jobs, scen.dcs, 1.0, 1.0)
    pred["energy_kwh"][1, 0] = np.nan
    with pytest.raises(AssignError, match="job 'j1', dc 'dc000'"):
        assign_greedy(scen, jobs, pred)
    with pytest.raises(AssignError, match="epsilon"):
        AssignConfig(explore="epsilon", epsilon=1.5)
    with pytest.raises(AssignError, match="explore"):
        AssignConfig(explore="thompson")


def test_predictions_align_by_job_id_and_dc_order() -> None:
    scen = tiny_scenario(dcs=3)
    jobs = jobs_frame(scen, 4)
    pred = preds(jobs, scen.dcs, [[1.0, 2.0, 3.0]] * 4, 0.1)
    shuffled = pred.isel(job=[3, 1, 0, 2], dc=[2, 0, 1])
    a = assign_greedy(scen, jobs, pred).frame
    b = assign_greedy(scen, jobs, shuffled).frame
    pd.testing.assert_frame_equal(a, b)


# -- capacity bookkeeping -------------------------------------------------------------------------


def test_engine_equals_sequential_loop() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        m, D, R = int(rng.integers(1, 300)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        key = rng.integers(0, 5, (m, D)).astype(float)
        fallback = None
        if trial % 3 == 0:
            key[rng.random((m, D)) < 0.3] = np.inf
            fallback = rng.random((m, D))
        ok = rng.random((m, D)) < 0.8
        u = rng.integers(0, 20, (m, R))
        rem0 = rng.integers(0, 200, (D, R))
        rem, want, allowed = rem0.copy(), np.full(m, -1), np.zeros_like(ok)
        for i in range(m):
            fits = ok[i] & (u[i][None] <= rem).all(axis=1)
            allowed[i] = fits
            if fits.any():
                k = np.where(fits, key[i], np.inf)
                d = int(k.argmin())
                if fallback is not None and not np.isfinite(k[d]):
                    d = int(np.where(fits, fallback[i], np.inf).argmin())
                want[i] = d
                rem[d] -= u[i]
        got_rem = rem0.copy()
        got = _engine_hour(key, fallback, ok, u, got_rem, min_window=int(rng.integers(1, 40)))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_rem, rem)
        np.testing.assert_array_equal(
            _allowed_at_turn(got, ok, u, rem0, chunk=int(rng.integers(1, 64))), allowed
        )


@st.composite
def instances(draw):  # type: ignore[no-untyped-def]
    dcs = draw(st.integers(1, 4))
    resources = draw(st.integers(1, 3))
    hours = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    tightness = draw(st.floats(0.05, 2.0))
    sla_hard = draw(st.booleans())
    sovereign = draw(st.booleans())
    return dcs, resources, hours, n, seed, tightness, sla_hard, sovereign


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_random_instances_match_reference_and_ledger_is_exact(inst) -> None:  # type: ignore[no-untyped-def]
    dcs, resources, hours, n, seed, tightness, sla_hard, sovereign = inst
    scen = synthesize(dcs=dcs, areas=2, types=2, hours=hours, seed=seed % 1000,
                      resources=resources)
    rng = np.random.default_rng(seed)
    jobs = validate_jobs(pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        "arrival_s": rng.uniform(0, hours * 3600.0, n).round(0),  # ties happen
        "area": rng.choice(scen.areas, n),
        "query_type": rng.choice(scen.query_types, n),
        "input_tokens": rng.integers(1, 2000, n),
        "output_tokens": rng.integers(0, 800, n),
        "sla_s": rng.uniform(0.5, 2.0, n),
    }), scen)
    units = job_usage_units(scen, jobs)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = np.round(units.mean(axis=0)[None, :] * n / max(dcs, 1) * tightness
                             * rng.uniform(0.5, 1.5, cap.shape), 3)
    scen.ds["capacity"] = cap
    pred = preds(jobs, scen.dcs, rng.uniform(0.001, 0.01, (n, dcs)),
                 rng.uniform(0.1, 3.0, (n, dcs)))
    sov = {scen.areas[0]: list(rng.choice(scen.dcs, rng.integers(0, dcs + 1), replace=False))}
    cfg = AssignConfig(sla_hard=sla_hard, sovereignty=sov if sovereign else None)
    a = assign_greedy(scen, jobs, pred, cfg)
    f = a.frame
    # same choices as an independent sequential loop
    want, want_score = reference_greedy(scen, jobs, pred, cfg, CapacityLedger.from_scenario(scen))
    assert f["dc"].tolist() == want
    placed = (f["dc"] != "").to_numpy()
    np.testing.assert_allclose(f["score"].to_numpy()[placed], want_score[placed], rtol=1e-9)
    # the ledger holds exactly the accepted jobs' ticks, never above capacity
    ticks = a.ledger.to_ticks(units)
    expected = np.zeros_like(a.ledger.used_ticks)
    dpos = pd.Index(scen.dcs).get_indexer(f["dc"].astype(str))
    for j in np.flatnonzero(placed):
        expected[jobs["hour"].iloc[j], dpos[j]] += ticks[j]
    np.testing.assert_array_equal(a.ledger.used_ticks, expected)
    assert (a.ledger.used_ticks <= a.ledger.capacity_ticks).all()
    assert evaluate_assignment(scen, jobs, a)["capacity_overflow_units"] == 0.0
    # masks
    if sla_hard:
        assert (f.loc[placed, "predicted_service_s"] <= jobs.loc[placed, "sla_s"]).all()
    if sovereign:
        a0 = (jobs["area"] == scen.areas[0]).to_numpy()
        assert set(f.loc[a0 & placed, "dc"]) <= set(sov[scen.areas[0]])
    assert set(f.loc[~placed, "reason"]) <= {"capacity", "sla", "sovereignty"}


def test_ledger_reserve_release_and_threads() -> None:
    ledger = CapacityLedger(np.array([[10.0, 5.0]]), hours=2, dcs=["a"], resources=["cpu", "gpu"])
    assert ledger.reserve(0, "a", [4.0, 2.0])
    assert ledger.reserve(0, 0, [4.0, 2.0])
    assert not ledger.reserve(0, "a", [4.0, 2.0])  # cpu 12 > 10
    assert ledger.fits(0, "a", [2.0, 1.0])
    ledger.release(0, "a", [4.0, 2.0])
    assert ledger.used_units().sel(dc="a", hour=0).values.tolist() == [4.0, 2.0]
    assert ledger.remaining_units().sel(dc="a", hour=1).values.tolist() == [10.0, 5.0]
    with pytest.raises(AssignError, match="exceeds what is reserved"):
        ledger.release(1, "a", [1.0, 0.0])
    with pytest.raises(AssignError, match="unknown dc"):
        ledger.reserve(0, "b", [1.0, 1.0])
    with pytest.raises(AssignError, match="one value per resource"):
        ledger.reserve(0, "a", [1.0])
    # many threads reserving 0.1 units: exactly floor(capacity / usage) succeed
    big = CapacityLedger(np.array([[1000.0]]), hours=1, dcs=["a"], resources=["cpu"])
    wins = []

    def worker() -> None:
        ok = 0
        for _ in range(2000):
            ok += big.reserve(0, "a", [0.3])
        wins.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per = int(big.to_ticks([0.3])[0])
    assert sum(wins) == big.capacity_ticks[0, 0, 0] // per
    assert big.used_ticks[0, 0, 0] == sum(wins) * per


def test_shared_ledger_between_batches_and_assign_one() -> None:
    scen = tiny_scenario(dcs=2)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = 30.0
    scen.ds["capacity"] = cap
    jobs = jobs_frame(scen, 4)
    pred = preds(jobs, scen.dcs, 1.0, 0.1)
    assigner = GreedyAssigner(scen)
    first = assigner.assign(jobs.iloc[:2], pred)
    second = assigner.assign(jobs.iloc[2:], pred)
    assert first.frame["dc"].tolist() == ["dc000", "dc000"]
    assert second.frame["dc"].tolist() == ["dc000", "dc001"]
    # one job at a time from a service gives the same as the batch
    one = GreedyAssigner(scen)
    got = [
        one.assign_one(hour=0, area=scen.areas[0], query_type=scen.query_types[0],
                       input_tokens=6, output_tokens=4, energy_kwh=[1.0, 1.0],
                       service_s=[0.1, 0.1]).dc
        for _ in range(7)
    ]
    assert got == ["dc000"] * 3 + ["dc001"] * 3 + [None]
    last = one.assign_one(hour=0, area=scen.areas[0], query_type=scen.query_types[0],
                          input_tokens=6, energy_kwh=[1.0, 1.0], service_s=[0.1, 0.1])
    assert last.reason == "capacity" and last.dc is None
    one.ledger.release_ticks(0, "dc001", last.usage_ticks)  # room for one again
    again = one.assign_one(hour=0, area=scen.areas[0], query_type=scen.query_types[0],
                           input_tokens=6, energy_kwh=[1.0, 1.0], service_s=[0.1, 0.1])
    assert again.dc == "dc001" and again.score == pytest.approx(0.2, rel=REL)


# -- predictions from coefficients ----------------------------------------------------------------


def test_predictions_from_coefficients_scaling() -> None:
    scen = synthesize(dcs=3, areas=2, types=2, hours=2, seed=4)
    h = scen.ds["input_tokens"].values
    f = scen.ds["output_tokens"].values
    k0 = scen.query_types[0]
    jobs = validate_jobs(pd.DataFrame({
        "job_id": ["mean", "double", "no_out"], "hour": 1, "area": scen.areas[1],
        "query_type": k0,
        "input_tokens": [int(h[0]), int(2 * h[0]), int(h[0])],
        "output_tokens": [int(f[0]), int(2 * f[0]), int(f[0])],
    }), scen)
    p = predictions_from_coefficients(scen, jobs)
    e = scen.energy_kwh_per_query().sel(query_type=k0, hour=1).values
    proc = scen.proc_delay_s_per_query().sel(query_type=k0, hour=1).values
    rtt = scen.ds["rtt_s"].sel(area=scen.areas[1]).values
    np.testing.assert_allclose(p["energy_kwh"].sel(job="mean").values, e, rtol=REL)
    np.testing.assert_allclose(p["energy_kwh"].sel(job="double").values, 2 * e, rtol=REL)
    np.testing.assert_allclose(p["service_s"].sel(job="double").values, 2 * proc + rtt, rtol=REL)
    # without output_tokens, the type's mean output counts
    no_out = validate_jobs(jobs.drop(columns=["output_tokens"]), scen)
    q = predictions_from_coefficients(scen, no_out)
    np.testing.assert_allclose(q["energy_kwh"].values, p["energy_kwh"].sel(job="mean").values
                               [None, :].repeat(3, 0) * [[1], [(2 * h[0] + f[0]) / (h[0] + f[0])],
                                                         [1]], rtol=REL)


# -- exploration ---------------------------------------------------------------------------------


def _explore_case(n: int = 4000):  # type: ignore[no-untyped-def]
    scen = tiny_scenario(dcs=3)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = 1e9
    scen.ds["capacity"] = cap
    jobs = jobs_frame(scen, n)
    pred = preds(jobs, scen.dcs, [[1.0, 1.1, 1.2]] * n, 0.1)
    return scen, jobs, pred


def test_epsilon_greedy_propensities_and_frequencies() -> None:
    scen, jobs, pred = _explore_case()
    cfg = AssignConfig(explore="epsilon", epsilon=0.3, seed=7)
    f = assign_greedy(scen, jobs, pred, cfg).frame
    expect = {"dc000": 0.7 + 0.1, "dc001": 0.1, "dc002": 0.1}
    for dc, p in expect.items():
        rows = f["dc"] == dc
        assert f.loc[rows, "propensity"].to_numpy() == pytest.approx(p, rel=1e-12)
        assert rows.mean() == pytest.approx(p, abs=0.03)
    assert sum(expect.values()) == pytest.approx(1.0)
    # seeded: same seed same draws, another seed other draws
    again = assign_greedy(scen, jobs, pred, cfg).frame
    pd.testing.assert_frame_equal(f, again)
    other = assign_greedy(scen, jobs, pred, AssignConfig(explore="epsilon", epsilon=0.3, seed=8))
    assert not other.frame["dc"].equals(f["dc"])


def test_softmax_propensities_and_frequencies() -> None:
    scen, jobs, pred = _explore_case()
    t = 0.01
    f = assign_greedy(scen, jobs, pred, AssignConfig(explore="softmax", temperature=t,
                                                     seed=3)).frame
    scores = np.array([0.1, 0.22, 0.36])
    p = np.exp(-(scores - scores.min()) / t)
    p /= p.sum()
    for d, dc in enumerate(scen.dcs):
        rows = f["dc"] == dc
        if rows.any():
            assert f.loc[rows, "propensity"].to_numpy() == pytest.approx(p[d], rel=1e-9)
        assert rows.mean() == pytest.approx(p[d], abs=0.03)
    assert ((f["propensity"] > 0) & (f["propensity"] <= 1)).all()


def test_exploration_propensity_sees_only_allowed_dcs() -> None:
    # dc000 fills after 10 jobs: from then on the policy chooses among two DCs
    scen, jobs, pred = _explore_case(200)
    cap = scen.ds["capacity"].copy()
    cap.values[:, 0] = [100.0, 1e6, 1e6]
    scen.ds["capacity"] = cap
    f = assign_greedy(scen, jobs, pred, AssignConfig(explore="epsilon", epsilon=0.5,
                                                     seed=1)).frame
    assert (f["dc"] == "dc000").sum() == 10
    late = f.iloc[np.flatnonzero(f["dc"] == "dc000")[-1] + 1:]
    expect = {"dc001": 0.5 + 0.25, "dc002": 0.25}
    for dc, p in expect.items():
        assert late.loc[late["dc"] == dc, "propensity"].to_numpy() == pytest.approx(p)


def test_assign_one_exploration_is_seeded() -> None:
    scen, _, _ = _explore_case(1)
    kwargs = dict(hour=0, area=scen.areas[0], query_type=scen.query_types[0], input_tokens=1,
                  output_tokens=0, energy_kwh=[1.0, 1.1, 1.2], service_s=[0.1, 0.1, 0.1])
    runs = []
    for _ in range(2):
        assigner = GreedyAssigner(scen, AssignConfig(explore="softmax", temperature=0.05, seed=9))
        runs.append([(d.dc, d.propensity) for d in (assigner.assign_one(**kwargs)
                                                   for _ in range(50))])
    assert runs[0] == runs[1]
    assert len({dc for dc, _ in runs[0]}) > 1
    assert all(0 < p <= 1 for _, p in runs[0])


# -- plan-guided and plan-following --------------------------------------------------------------


def test_plan_guided_adds_capacity_and_water_shadow_prices() -> None:
    scen = tiny_scenario(dcs=2)
    jobs = jobs_frame(scen, 1)  # 10 tokens → 10 units
    pred = preds(jobs, scen.dcs, 1.0, 0.1)
    price = xr.DataArray(
        np.array([[[0.02]], [[0.0]]]), dims=("dc", "resource", "hour"),
        coords={"dc": scen.dcs, "resource": scen.resources, "hour": [0]},
    )
    guide = PlanGuide(resource_price=price, water_price_usd_per_l=0.001)
    f = assign_greedy(scen, jobs, pred, guide=guide).frame
    # dc000: 0.1 + 0.02·10 + 0.001·3 = 0.303; dc001: 0.2 + 0 + 0.003 = 0.203
    assert f["dc"].iloc[0] == "dc001"
    assert f["score"].iloc[0] == pytest.approx(0.203, rel=REL)
    assert assign_greedy(scen, jobs, pred).frame["dc"].iloc[0] == "dc000"


def test_plan_guide_from_result_and_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greensched.scheduler import plan

    scen = synthesize(3, 2, 2, 3, seed=5)
    scen.water_budget_l = 0.9 * plan(scen).water_l  # make the water row bind
    result = plan(scen)
    g1 = PlanGuide.from_result(result)
    assert g1.water_price_usd_per_l > 0
    assert g1.resource_price is not None and (g1.resource_price >= 0).all()
    result.write(tmp_path)
    read = [PlanGuide.from_directory(tmp_path)]  # the planner's duals.csv
    (tmp_path / "duals.csv").unlink()
    g0 = PlanGuide.from_directory(tmp_path)
    assert not g0.has_duals and g0.allocation is not None
    write_plan_duals(result, tmp_path)
    read.append(PlanGuide.from_directory(tmp_path))  # duals.json
    for g2 in read:
        assert g2.water_price_usd_per_l == pytest.approx(g1.water_price_usd_per_l, rel=1e-12)
        xr.testing.assert_allclose(g2.resource_price.sortby(["dc", "resource", "hour"]),
                                   g1.resource_price.sortby(["dc", "resource", "hour"]))
        xr.testing.assert_allclose(g2.energy_price.sortby(["dc", "hour"]),
                                   g1.energy_price.sortby(["dc", "hour"]))
        assert g2.weights == pytest.approx(g1.weights)
    g2 = read[0]
    alloc = g2.allocation.reindex_like(g1.allocation).fillna(0.0)
    np.testing.assert_allclose(alloc.values, g1.allocation.where(g1.allocation > 1e-9, 0).values,
                               atol=1e-12)
    (tmp_path / "plan.json").write_text('{"status": "infeasible"}')
    with pytest.raises(AssignError, match="only an optimal plan"):
        PlanGuide.from_directory(tmp_path)


def test_plan_following_tracks_fractions() -> None:
    scen = tiny_scenario(dcs=3, hours=2)
    cap = scen.ds["capacity"].copy()
    cap.values[:] = 1e6
    scen.ds["capacity"] = cap
    n = 3000
    jobs = jobs_frame(scen, n, hour=1)
    pred = preds(jobs, scen.dcs, 1.0, 0.1)
    alloc = xr.DataArray(
        np.zeros((1, 3, 1, 2)), dims=("area", "dc", "query_type", "hour"),
        coords={"area": scen.areas, "dc": scen.dcs, "query_type": scen.query_types,
                "hour": [0, 1]},
    )
    alloc.values[0, :, 0, 1] = [0.2, 0.0, 0.8]
    guide = PlanGuide(allocation=alloc)
    f = assign_plan_following(scen, jobs, pred, guide, AssignConfig(seed=4)).frame
    share = f["dc"].value_counts(normalize=True)
    assert share.get("dc001", 0.0) == 0.0
    assert share["dc000"] == pytest.approx(0.2, abs=0.03)
    prop = f.groupby("dc", observed=True)["propensity"].unique()
    assert prop["dc000"].tolist() == pytest.approx([0.2]) and prop["dc002"].tolist() == [0.8]
    again = assign_plan_following(scen, jobs, pred, guide, AssignConfig(seed=4)).frame
    pd.testing.assert_frame_equal(f, again)
    # when dc002 is full the draw is renormalised over the rest (propensity 1 for dc000)
    cap = scen.ds["capacity"].copy()
    cap.values[2, 0] = 100.0
    scen.ds["capacity"] = cap
    f = assign_plan_following(scen, jobs, pred, guide, AssignConfig(seed=4)).frame
    assert (f["dc"] == "dc002").sum() == 10
    after = f.iloc[np.flatnonzero(f["dc"] == "dc002")[-1] + 1:]
    assert set(after["dc"]) == {"dc000"} and (after["propensity"] == 1.0).all()
    # hour 0 has no plan share at all: greedy fallback
    f0 = assign_plan_following(scen, jobs_frame(scen, 3, hour=0), pred, guide).frame
    assert f0["dc"].tolist() == ["dc000"] * 3 and (f0["propensity"] == 1.0).all()


def test_paper_modes_respect_capacity(paper) -> None:  # type: ignore[no-untyped-def]
    from greensched.scheduler import plan

    scen = paper.subset(hours=[10, 11])
    result = plan(scen)
    jobs = sample_jobs_from_demand(scen, seed=2, fraction=1.0, token_spread=0.3)
    pred = predictions_from_coefficients(scen, jobs)
    outs = {
        "greedy": assign_greedy(scen, jobs, pred),
        "guided": assign_greedy(scen, jobs, pred, guide=result),
        "follow": assign_plan_following(scen, jobs, pred, result, AssignConfig(seed=1)),
    }
    for name, a in outs.items():
        ev = evaluate_assignment(scen, jobs, a)
        assert ev["capacity_overflow_rows"] == 0, name
        assert (a.ledger.used_ticks <= a.ledger.capacity_ticks).all(), name
        assert ev["assigned"] == len(jobs), name
    # following the plan reproduces the plan's objective closely (same demand, shares sampled)
    ev = evaluate_assignment(scen, jobs, outs["follow"])
    assert ev["model_total_usd"] == pytest.approx(result.objective["total_usd"], rel=0.02)


# -- command-line function ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_case(tmp_path_factory):  # type: ignore[no-untyped-def]
    from greensched.scheduler import plan

    root = tmp_path_factory.mktemp("assign_cli")
    scen = synthesize(4, 3, 3, 4, seed=1)
    scen.save(root / "scen")
    jobs = sample_jobs_from_demand(scen, seed=0, fraction=0.02)
    jobs.to_csv(root / "jobs.csv", index=False)
    result = plan(scen)
    result.write(root / "plan")
    return root, scen, jobs, result


def test_assign_command_modes_write_columns(cli_case) -> None:  # type: ignore[no-untyped-def]
    from greensched.cli.assign import OUTPUT_COLUMNS, assign_command

    root, scen, jobs, _ = cli_case
    for mode in ("greedy", "plan", "follow", "batch"):
        out = root / f"{mode}.csv"
        res = assign_command(root / "scen", root / "jobs.csv", mode=mode,
                             plan_dir=None if mode == "greedy" else root / "plan", out=out,
                             seed=2)
        df = pd.read_csv(out, keep_default_na=False)
        assert tuple(df.columns) == OUTPUT_COLUMNS
        assert df["job_id"].tolist() == jobs["job_id"].tolist()
        assert set(df["dc"]) <= set(scen.dcs)
        assert res.summary()["assigned"] == len(jobs)
    explored = assign_command(root / "scen", root / "jobs.csv", out=root / "e.csv",
                              explore="softmax", temperature=1e-4, seed=3)
    assert ((explored.frame["propensity"] > 0) & (explored.frame["propensity"] <= 1)).all()


def test_assign_command_plan_duals_file_and_mismatch(cli_case, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from greensched.cli.assign import assign_command
    from greensched.scheduler.plan_loader import plan_guide_for

    root, scen, _, result = cli_case
    plan_copy = tmp_path / "plan"
    shutil.copytree(root / "plan", plan_copy)
    (plan_copy / "duals.csv").unlink(missing_ok=True)
    resolved = plan_guide_for(scen, plan_copy, need_duals=True)  # no duals: re-solves
    read = plan_guide_for(scen, root / "plan", need_duals=True)  # the planner's duals.csv
    xr.testing.assert_allclose(read.resource_price.sortby(["dc", "resource", "hour"]),
                               resolved.resource_price.sortby(["dc", "resource", "hour"]))
    other = synthesize(4, 3, 3, 4, seed=2)
    other.save(tmp_path / "other")
    with pytest.raises(AssignError, match="another scenario"):
        assign_command(tmp_path / "other", root / "jobs.csv", mode="plan",
                       plan_dir=plan_copy, out=tmp_path / "x.csv")


def test_assign_command_errors(cli_case, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from greensched.cli.assign import assign_command
    from greensched.errors import GreenSchedError

    root, scen, _, _ = cli_case
    base = dict(scenario=root / "scen", jobs=root / "jobs.csv", out=tmp_path / "a.csv")
    with pytest.raises(GreenSchedError, match="mode 'fastest' is not known"):
        assign_command(**base, mode="fastest")
    with pytest.raises(GreenSchedError, match="needs --plan"):
        assign_command(**base, mode="follow")
    with pytest.raises(GreenSchedError, match="not both"):
        assign_command(**base, model=tmp_path, coefficients=tmp_path / "c.csv")
    with pytest.raises(GreenSchedError, match="--explore applies"):
        assign_command(**base, mode="batch", explore="epsilon")
    with pytest.raises(GreenSchedError, match="load_predictor|predictor"):
        assign_command(**base, model=tmp_path / "model")
    sov = tmp_path / "sov.csv"
    sov.write_text(f"area,dc\n{scen.areas[0]},{scen.dcs[1]}\n{scen.areas[1]},\n")
    res = assign_command(**base, sovereignty=sov)
    f = res.frame.assign(area=pd.read_csv(root / "jobs.csv")["area"])
    assert set(f.loc[f["area"] == scen.areas[0], "dc"]) == {scen.dcs[1]}
    assert (f.loc[f["area"] == scen.areas[1], "reason"] == "sovereignty").all()


def test_assign_command_with_a_saved_predictor(cli_case, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("xgboost", reason="xgboost is not installed (extra 'ml')")
    from greensched.cli.assign import assign_command
    from greensched.predictor.synthetic import synthetic_dataset
    from greensched.predictor.xgb import XGBoostConfig, XGBoostPredictor

    root, scen, jobs, _ = cli_case
    df, _ = synthetic_dataset(scen, 300, seed=0)
    XGBoostPredictor(XGBoostConfig(n_estimators=20, action_n_estimators=10)).fit(df).save(
        tmp_path / "model"
    )
    res = assign_command(root / "scen", root / "jobs.csv", model=tmp_path / "model",
                         out=tmp_path / "a.csv", risk=True, sla_hard=True)
    assert res.summary()["jobs"] == len(jobs)
    placed = res.frame["dc"] != ""
    assert (res.frame.loc[placed, "predicted_energy_kwh"] > 0).all()
