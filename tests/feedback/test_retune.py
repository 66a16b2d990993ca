"""Re-tuning on stored outcomes: importance weights, pseudo-labels, promote-only-when-better.

The integration cases run the digital twin of the embedded default scenario with a small
XGBoost model (one thread): a few hundred jobs per period, so each re-tune takes 1-3 s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.defaults import default_scenario
from greensched.errors import GreenSchedError
from greensched.eval.twin import Twin
from greensched.feedback.experiment import (
    T0,
    ExperimentConfig,
    _utilization_table,
    changed_twin,
    period_jobs,
    serve_period,
    train_initial_model,
)
from greensched.feedback.registry import ModelRegistry, RegistryError
from greensched.feedback.retune import (
    RetuneStatus,
    build_training_frame,
    effective_sample_size,
    importance_weights,
    level_corrections,
    outcome_rows,
    resample_indices,
    retune,
)
from greensched.feedback.store import OutcomeStore
from greensched.predictor.base import BasePredictor
from greensched.predictor.dataset import DC_FIELDS, dc_column
from greensched.scenario import Scenario

REL = 1e-12
CHANGED = ("us-east1", "us-east4", "us-south1")


# ----------------------------------------------------------------------------------------------
# a small world shared by the integration tests (retune and loop)
# ----------------------------------------------------------------------------------------------

@dataclass
class World:
    scenario: Scenario
    before: Twin
    after: Twin
    model: BasePredictor
    train: pd.DataFrame
    util: object
    cfg: ExperimentConfig


@pytest.fixture(scope="session")
def world() -> World:
    cfg = ExperimentConfig(periods=4, change_period=2, jobs_per_period=300, train_jobs=1200,
                           seed=3)
    scen = default_scenario()
    before = Twin(scen)
    after = changed_twin(before, CHANGED, 0.5)
    model, train = train_initial_model(scen, before, cfg)
    return World(scen, before, after, model, train, _utilization_table(train, scen), cfg)


def new_registry(w: World, root: Path) -> ModelRegistry:
    reg = ModelRegistry(root)
    w.model.save(root.parent / f"{root.name}-v1")
    v = reg.register(root.parent / f"{root.name}-v1", kind=w.model.kind)
    reg.promote(v)
    return reg


def ingest_period(w: World, store: OutcomeStore, reg: ModelRegistry, p: int, *,
                  changed: bool, epsilon: float = 0.15, jobs: int = 300) -> pd.DataFrame:
    version = reg.current()
    assert version is not None
    from greensched.predictor.checkpoint import load_predictor

    model = load_predictor(reg.path(version))
    batch = period_jobs(w.scenario, jobs, 4 + p % 20, 1000 + p, prefix=f"t{p:03d}-")
    served = serve_period(w.scenario, w.after if changed else w.before, model, version, batch,
                          w.util, epsilon=epsilon, seed=1000 + p,
                          start=T0 + timedelta(hours=p))
    report = store.ingest(served.records)
    assert report.inserted == len(batch)
    return served.records


# ----------------------------------------------------------------------------------------------
# weights and resampling
# ----------------------------------------------------------------------------------------------

def test_importance_weights_are_clipped_and_self_normalised() -> None:
    p = [1.0, 0.5, 0.01, float("nan"), 0.0, 0.25]
    w = importance_weights(p, clip=20.0)
    raw = np.array([1.0, 2.0, 20.0, 1.0, 1.0, 4.0])  # 1/0.01 clipped; NaN and 0 count as p=1
    np.testing.assert_allclose(w, raw / raw.mean(), rtol=REL)
    assert w.mean() == pytest.approx(1.0, rel=REL)
    assert w.max() / w.min() <= 20.0 + 1e-12
    # clip 1: all weights equal
    np.testing.assert_allclose(importance_weights(p, clip=1.0), np.ones(6), rtol=REL)
    with pytest.raises(GreenSchedError, match="clip"):
        importance_weights(p, clip=0.5)
    assert effective_sample_size(np.ones(7)) == pytest.approx(7.0)
    assert effective_sample_size(np.array([1.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_systematic_resampling_reproduces_the_weights() -> None:
    w = np.array([1.0, 3.0, 0.0, 4.0])
    idx = resample_indices(w, 8, seed=0)
    np.testing.assert_array_equal(np.bincount(idx, minlength=4), [1, 3, 0, 4])
    rng = np.random.default_rng(1)
    w = rng.exponential(size=50)
    for seed in range(5):
        counts = np.bincount(resample_indices(w, 500, seed=seed), minlength=50)
        expected = 500 * w / w.sum()
        assert (counts >= np.floor(expected) - 1e-9).all()
        assert (counts <= np.ceil(expected) + 1e-9).all()
        assert counts.sum() == 500
    with pytest.raises(GreenSchedError):
        resample_indices(np.zeros(3), 4)


def test_level_corrections_estimate_the_drift_and_shrink_noise() -> None:
    rng = np.random.default_rng(0)
    # DC 0: halved (log -0.69) with little noise; DC 1: pure noise; DC 2: one outcome
    r = np.concatenate([np.log(0.5) + rng.normal(0, 0.03, 10), rng.normal(0, 0.3, 10),
                        [np.log(0.5)]])
    d = np.array([0] * 10 + [1] * 10 + [2])
    w = np.ones(len(r))
    c = level_corrections(r, d, w, 4)
    assert c[0].factor == pytest.approx(0.5, rel=0.03)
    assert abs(c[1].log_shift) < abs(c[1].raw) + 1e-15  # shrunk towards 0
    assert abs(c[1].log_shift) < 0.1
    assert c[2].log_shift == 0.0 and c[2].n == 1  # too few outcomes
    assert c[3].log_shift == 0.0 and c[3].n == 0
    # importance weights enter the mean: a heavy row pulls it
    r2 = np.array([0.0, 0.0, -1.0])
    c2 = level_corrections(r2, np.zeros(3, dtype=int), np.array([1.0, 1.0, 8.0]), 1)
    assert c2[0].raw == pytest.approx(-0.8, rel=REL)


# ----------------------------------------------------------------------------------------------
# pseudo-labels
# ----------------------------------------------------------------------------------------------

def _toy_rows(n: int, dcs: list[str]) -> pd.DataFrame:
    cols = {"job_id": [f"j{i}" for i in range(n)], "hour": np.zeros(n, dtype=np.int64),
            "area": ["a"] * n, "query_type": ["q"] * n, "input_tokens": np.full(n, 100.0),
            "output_tokens": np.full(n, 50.0), "sla_s": np.full(n, 30.0)}
    for d in dcs:
        for f in DC_FIELDS:
            cols[dc_column(f, d)] = np.full(n, 0.5)
    return pd.DataFrame(cols)


def test_pseudo_labels_keep_the_observed_values() -> None:
    dcs = ["a", "b", "c"]
    n = 6
    rows = _toy_rows(n, dcs)
    di = np.array([0, 1, 2, 0, 1, 1])
    pred = pd.DataFrame({"job_id": rows["job_id"], "best_dc": ["a"] * n})
    for j, d in enumerate(dcs):
        pred[dc_column("energy_kwh", d)] = 1.0 + j
        pred[dc_column("service_s", d)] = 10.0 + j
    # measured: DC b really costs half what the model says, a and c as predicted
    factor = np.array([1.0, 0.5, 1.0])
    meas_e = (1.0 + di) * factor[di]
    meas_s = 10.0 + di
    w = np.ones(n)
    frame, corr = build_training_frame(rows, di, {"energy_kwh": meas_e, "service_s": meas_s},
                                       pred, dcs, w)
    e = frame[[dc_column("energy_kwh", d) for d in dcs]].to_numpy()
    s = frame[[dc_column("service_s", d) for d in dcs]].to_numpy()
    np.testing.assert_array_equal(e[np.arange(n), di], meas_e)  # measurements kept exactly
    np.testing.assert_array_equal(s[np.arange(n), di], meas_s)
    # unobserved cells: the model's value times the DC's correction (b halved, a/c unchanged)
    assert corr["energy_kwh"][1].factor == pytest.approx(0.5, rel=1e-9)
    assert corr["energy_kwh"][0].factor == pytest.approx(1.0, rel=1e-9)
    for i in range(n):
        for j in range(3):
            if j != di[i]:
                assert e[i, j] == pytest.approx((1.0 + j) * factor[j], rel=1e-9)
    assert (frame["best_dc"] == "a").all()
    # plain direct method: the model's values
    frame0, _ = build_training_frame(rows, di, {"energy_kwh": meas_e, "service_s": meas_s},
                                     pred, dcs, w, correction="none")
    e0 = frame0[[dc_column("energy_kwh", d) for d in dcs]].to_numpy()
    np.testing.assert_array_equal(e0[np.arange(n), di], meas_e)
    assert e0[0, 1] == 2.0 and e0[1, 0] == 1.0
    with pytest.raises(GreenSchedError, match="correction"):
        build_training_frame(rows, di, {"energy_kwh": meas_e, "service_s": meas_s}, pred, dcs,
                             w, correction="bogus")


def test_outcome_rows_take_state_from_features_then_replay(world: World) -> None:
    dcs = list(world.scenario.dcs)
    train = world.train
    feats = {dc_column(f, d): 0.25 for d in dcs for f in DC_FIELDS}
    base = {"area": train["area"].iloc[0], "query_type": train["query_type"].iloc[0],
            "input_tokens": 100, "output_tokens": 20, "sla_s": np.nan, "arrival_s": 3.0 * 3600}
    outcomes = pd.DataFrame([
        {**base, "job_id": "x1", "hour": 3, "features_json": json.dumps(feats)},
        {**base, "job_id": "x2", "hour": 3, "features_json": None},
        {**base, "job_id": "x3", "hour": 27, "features_json": json.dumps({"other": 1.0})},
    ])
    rows, sources = outcome_rows(outcomes, dcs, replay=train)
    assert sources == {"features": 1, "scenario": 0, "replay": 2}
    col = dc_column("price_usd_per_kwh", dcs[0])
    assert rows.loc[0, col] == 0.25
    hour3 = train.loc[train["hour"] == 3, col].mean()
    assert rows.loc[1, col] == pytest.approx(hour3)
    assert rows.loc[2, col] == pytest.approx(hour3)  # hour 27 -> hour of day 3
    assert rows.loc[1, "sla_s"] == 30.0  # the default SLA
    with pytest.raises(GreenSchedError, match="per-DC state"):
        outcome_rows(outcomes, dcs)
    rows_s, sources_s = outcome_rows(outcomes.iloc[:2], dcs, scenario=world.scenario)
    assert sources_s["scenario"] == 1


# ----------------------------------------------------------------------------------------------
# retune end to end
# ----------------------------------------------------------------------------------------------

def test_retune_promotes_a_better_model_with_lineage(world: World, tmp_path: Path,
                                                     store_url: str) -> None:
    reg = new_registry(world, tmp_path / "reg")
    parent = reg.current()
    with OutcomeStore.open(store_url) as store:
        ingest_period(world, store, reg, 0, changed=True)
        res = retune(store, reg, replay_data=world.train, window=300, seed=0)
    assert res.status is RetuneStatus.PROMOTED and res.is_ok and res.promoted
    assert reg.current() == res.version != parent
    assert res.score_candidate < res.score_current
    assert res.improvement > 0.1
    # the drift was found at the changed DCs and nowhere else
    for d, f in res.corrections["energy_kwh"].items():
        if d in CHANGED:
            assert f == pytest.approx(0.5, abs=0.1) or f == 1.0  # 1.0: no outcome there
        else:
            assert f == pytest.approx(1.0, abs=0.1)
    assert min(res.corrections["energy_kwh"][d] for d in CHANGED) < 0.65
    info = reg.info(res.version)
    assert info.parent == parent and info.kind == "xgboost"
    dw = info.data_window
    assert dw["n_outcomes"] == 300 and dw["n_holdout"] == 60 and dw["n_train_outcomes"] == 240
    assert dw["n_replay"] == len(world.train)
    assert dw["from"] < dw["holdout_from"] <= dw["to"]
    assert info.metrics["validation"]["energy_kwh"]["mape"] > 0
    assert reg.history()[-1]["event"] == "promote"
    assert res.weights["ess"] <= 240 and res.weights["max"] <= 20.0
    assert json.dumps(res.to_dict())  # JSON-ready


def test_retune_does_not_register_a_worse_model(world: World, tmp_path: Path) -> None:
    """Unchanged world (nothing to fix) and replay data whose targets are shuffled between
    jobs (levels kept, the link to the features destroyed; a uniform scaling would be undone by
    the replay's re-levelling): the candidate is worse on the latest outcomes, so no version is
    registered."""
    reg = new_registry(world, tmp_path / "reg")
    bad = world.train.copy()
    perm = np.random.default_rng(0).permutation(len(bad))
    targets = [dc_column(t, d) for d in world.scenario.dcs for t in ("energy_kwh", "service_s")]
    bad[targets] = bad[targets].to_numpy()[perm]
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        ingest_period(world, store, reg, 0, changed=False)
        before = reg.versions()
        res = retune(store, reg, replay_data=bad, window=300, seed=0)
    assert res.status is RetuneStatus.NOT_BETTER and not res.is_ok
    assert res.score_candidate > res.score_current
    assert res.version is None
    assert reg.versions() == before and reg.current() == before[0]
    assert "not better" in res.describe()


def test_retune_min_improvement_and_insufficient_data(world: World, tmp_path: Path) -> None:
    reg = new_registry(world, tmp_path / "reg")
    with OutcomeStore.open(tmp_path / "o.sqlite") as store:
        res = retune(store, reg, replay_data=world.train)
        assert res.status is RetuneStatus.INSUFFICIENT_DATA
        assert "min_outcomes" in res.message
        ingest_period(world, store, reg, 0, changed=True)
        strict = retune(store, reg, replay_data=world.train, window=300, min_improvement=0.99)
        assert strict.status is RetuneStatus.NOT_BETTER  # better, but not by 99 %
        assert strict.improvement > 0
        kept = retune(store, reg, replay_data=world.train, window=300, promote=False)
        assert kept.status is RetuneStatus.REGISTERED and reg.current() == "v0001"
        assert reg.versions() == ["v0001", kept.version]
        with pytest.raises(GreenSchedError):
            retune(store, reg, replay_data=world.train, val_fraction=1.0)
    empty = ModelRegistry(tmp_path / "empty")
    with OutcomeStore.open(tmp_path / "o2.sqlite") as store, pytest.raises(RegistryError):
        retune(store, empty, replay_data=world.train)
    assert math.isfinite(kept.score_candidate)
