"""The featurizer's array path (``job_block``, ``dc_table``, ``FeatureBlocks``) equals the
pandas path bit for bit: on random jobs of a synthetic scenario and of the embedded default
scenario, against a frozen copy of the featurizer as it was before the array path existed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from greensched.predictor.dataset import DC_FIELDS, dc_column, rows_from_jobs
from greensched.predictor.features import DCFeatureTable, FeatureBlocks, Featurizer
from greensched.scenario import Scenario
from greensched.state import STATE_FIELDS, dc_hour_state

# -- the featurizer's transforms before the array path (reference, frozen) ---------------------


def _ref_job_features(fz: Featurizer, df: pd.DataFrame, missing: float) -> np.ndarray:
    out_tok = df["output_tokens"].to_numpy(dtype=float)
    known = np.isfinite(out_tok)
    raw = np.column_stack([
        np.log1p(df["input_tokens"].to_numpy(dtype=float)),
        np.where(known, np.log1p(np.where(known, out_tok, 0.0)), np.nan),
        known.astype(float),
        np.log(df["sla_s"].to_numpy(dtype=float)),
    ])
    num = (raw - fz.job_mean) / fz.job_std
    num[:, 1] = np.where(np.isfinite(num[:, 1]), num[:, 1], missing)

    def one_hot(values: pd.Series, labels: list[str]) -> np.ndarray:
        pos = pd.Index(labels).get_indexer(values.astype(str))
        out = np.zeros((len(values), len(labels)))
        ok = pos >= 0
        out[np.flatnonzero(ok), pos[ok]] = 1.0
        return out

    return np.column_stack([num, one_hot(df["query_type"], fz.query_types),
                            one_hot(df["area"], fz.areas)]).astype(np.float32)


def _ref_dc_features(fz: Featurizer, df: pd.DataFrame) -> np.ndarray:
    arr = np.empty((len(df), len(fz.dcs), len(fz.dc_fields)))
    for j, d in enumerate(fz.dcs):
        for k, f in enumerate(fz.dc_fields):
            arr[:, j, k] = pd.to_numeric(df[dc_column(f, d)], errors="coerce").to_numpy(
                dtype=float)
    return ((arr - fz.dc_mean) / fz.dc_std).astype(np.float32)


# -- helpers ------------------------------------------------------------------------------------


def _jobs(scen: Scenario, n: int, seed: int) -> pd.DataFrame:
    """Random jobs: every area and type, unknown output tokens on ~30 %, random SLAs."""
    rng = np.random.default_rng(seed)
    out = rng.integers(1, 3000, n).astype(float)
    out[rng.random(n) < 0.3] = np.nan
    return pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)],
        "arrival_s": rng.uniform(0, scen.hours * 3600.0 - 1, n),
        "hour": 0,
        "area": np.asarray(scen.areas, dtype=object)[rng.integers(0, len(scen.areas), n)],
        "query_type": np.asarray(scen.query_types, dtype=object)[
            rng.integers(0, len(scen.query_types), n)],
        "input_tokens": rng.integers(0, 20_000, n),
        "output_tokens": out,
        "sla_s": rng.uniform(0.2, 120.0, n),
    }).assign(hour=lambda d: (d["arrival_s"] // 3600).astype(np.int64))


def _fitted(scen: Scenario, rows: pd.DataFrame, drop: dict[str, list[str]] | None = None
            ) -> Featurizer:
    """A featurizer fitted on ``rows`` with some categories left out (unknown at predict)."""
    fz = Featurizer(scen.dcs)
    train = rows
    for col, labels in (drop or {}).items():
        train = train[~train[col].isin(labels)]
    return fz.fit(train)


def _tables(scen: Scenario, fz: Featurizer, dcs: list[str] | None = None) -> DCFeatureTable:
    state = dc_hour_state(scen)
    order = dcs or scen.dcs
    by_hour = {f: state[f].transpose("hour", "dc").sel(dc=order).values for f in STATE_FIELDS}
    rtt = scen.ds["rtt_s"].transpose("area", "dc").sel(dc=order).values
    return fz.dc_table(order, by_hour, {"rtt_s": rtt})


def _array_path(scen: Scenario, fz: Featurizer, jobs: pd.DataFrame, table: DCFeatureTable,
                missing: float) -> tuple[np.ndarray, np.ndarray]:
    qpos = fz.positions(scen.query_types, "query_type")
    apos = fz.positions(scen.areas, "area")
    k = pd.Index(scen.query_types).get_indexer(jobs["query_type"])
    a = pd.Index(scen.areas).get_indexer(jobs["area"])
    job = fz.job_block(jobs["input_tokens"].to_numpy(dtype=float),
                       jobs["output_tokens"].to_numpy(dtype=float),
                       jobs["sla_s"].to_numpy(dtype=float), qpos[k], apos[a], missing=missing)
    return job, table.block(jobs["hour"].to_numpy(), a)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (NaN where NaN), same dtype and shape."""
    return a.dtype == b.dtype and a.shape == b.shape and bool(
        np.array_equal(a.view(np.uint32), b.view(np.uint32)))


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", [np.nan, 0.0])
def test_array_path_equals_pandas_path_on_random_jobs(scenario: Scenario,
                                                      missing: float) -> None:
    jobs = _jobs(scenario, 300, seed=4)
    rows = rows_from_jobs(jobs, scenario)
    # one area and one type unknown to the featurizer: all-zero one-hots on both paths
    fz = _fitted(scenario, rows, {"area": [scenario.areas[0]],
                                  "query_type": [scenario.query_types[-1]]})
    assert scenario.areas[0] not in fz.areas
    ref_job, ref_dc = _ref_job_features(fz, rows, missing), _ref_dc_features(fz, rows)
    assert _same(fz.job_features(rows, missing=missing), ref_job)
    assert _same(fz.dc_features(rows), ref_dc)
    # DCs handed over in another order than the model's are reordered
    table = _tables(scenario, fz, dcs=list(reversed(scenario.dcs)))
    job, dc = _array_path(scenario, fz, jobs, table, missing)
    assert _same(job, ref_job)
    assert _same(dc, ref_dc)
    assert np.isnan(ref_job[:, 1]).any() == np.isnan(missing)  # unknown outputs were hit


def test_array_path_equals_pandas_path_on_the_default_scenario() -> None:
    from greensched.defaults import default_scenario

    scen = default_scenario()
    jobs = _jobs(scen, 400, seed=11)
    rows = rows_from_jobs(jobs, scen)
    fz = _fitted(scen, rows.iloc[:250])  # statistics of other rows than those featurised
    job, dc = _array_path(scen, fz, jobs, _tables(scen, fz), np.nan)
    assert _same(job, _ref_job_features(fz, rows, np.nan))
    assert _same(dc, _ref_dc_features(fz, rows))
    assert dc.shape == (400, len(scen.dcs), len(DC_FIELDS))


def test_dc_table_names_a_field_it_was_not_given(scenario: Scenario) -> None:
    from greensched.predictor.dataset import DatasetError

    rows = rows_from_jobs(_jobs(scenario, 40, seed=1), scenario)
    fz = _fitted(scenario, rows)
    state = dc_hour_state(scenario)
    by_hour = {f: state[f].transpose("hour", "dc").values for f in STATE_FIELDS}
    with pytest.raises(DatasetError, match="rtt_s__"):
        fz.dc_table(scenario.dcs, by_hour, {})
    with pytest.raises(DatasetError, match="dc000"):
        fz.dc_table(scenario.dcs[1:], by_hour, {"rtt_s": np.zeros((3, 3))})


def test_xgboost_predicts_the_same_from_feature_blocks(scenario: Scenario,
                                                       dataset: pd.DataFrame) -> None:
    pytest.importorskip("xgboost")
    from greensched.predictor.xgb import XGBoostPredictor

    model: Any = XGBoostPredictor(n_estimators=6, action_n_estimators=3, max_depth=3,
                                  n_jobs=1).fit(dataset)
    jobs = _jobs(scenario, 60, seed=2)
    rows = rows_from_jobs(jobs, scenario)
    ref = model.predict_arrays(rows)
    fz = model.featurizer_
    job, dc = _array_path(scenario, fz, jobs, _tables(scenario, fz), np.nan)
    full = model.predict_arrays(FeatureBlocks(job, dc), validate=False)
    for var, arr in ref.items():
        assert np.array_equal(full[var], arr), var
    fast = model.predict_arrays(FeatureBlocks(job, dc, best_dc=False), validate=False)
    for var in ("energy_kwh", "service_s", "energy_kwh_p90", "service_s_p10"):
        assert np.array_equal(fast[var], ref[var]), var
    # without the classifier the best-DC probabilities are the training prior
    prior = model.action_prior_ / model.action_prior_.sum()
    assert np.allclose(fast["best_dc_prob"], prior[None, :])
    with pytest.raises(ValueError, match="same jobs"):
        FeatureBlocks(job[:3], dc)
