"""One contract suite, run over every predictor kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor import (
    PRED_VARS,
    BasePredictor,
    DatasetError,
    DCMismatchError,
    NotFittedError,
    load_predictor,
)
from greensched.predictor.synthetic import synthetic_jobs
from greensched.scenario import Scenario, load_scenario, save_coefficients
from greensched.synth import synthesize

from .conftest import KINDS

pytestmark = pytest.mark.parametrize("kind", KINDS)


def test_fit_returns_self_and_learned_state(kind: str, make: Callable[..., BasePredictor],
                                            dataset: pd.DataFrame) -> None:
    model = make(kind, n_estimators=5) if kind == "xgboost" else make(kind, max_steps=2)
    assert not hasattr(model, "dcs_")
    assert model.fit(dataset.iloc[:60]) is model
    assert model.dcs_ == ["dc000", "dc001", "dc002", "dc003"]
    assert model.metrics_["validation"]["energy_kwh"]["mape"] > 0


def test_init_stores_config_only(kind: str, make: Callable[..., BasePredictor]) -> None:
    model = make(kind)
    learned = [k for k in vars(model) if k.endswith("_")]
    assert learned == []
    assert model.config.seed == 0
    with pytest.raises(GreenSchedError, match="unknown option 'no_such_option'"):
        make(kind, no_such_option=1)
    with pytest.raises(GreenSchedError, match="val_fraction"):
        make(kind, val_fraction=1.5)


@pytest.mark.parametrize("call", ["predict_frame", "predict_jobs", "coefficients", "save"])
def test_not_fitted_error(kind: str, call: str, make: Callable[..., BasePredictor],
                          dataset: pd.DataFrame, scenario: Scenario, tmp_path: Path) -> None:
    model = make(kind)
    args = {"predict_frame": (dataset,), "predict_jobs": (dataset, scenario),
            "coefficients": (scenario,), "save": (tmp_path,)}[call]
    with pytest.raises(NotFittedError, match="not fitted") as info:
        getattr(model, call)(*args)
    assert isinstance(info.value, GreenSchedError)


def test_save_load_round_trip_identical(kind: str, fitted: dict[str, BasePredictor],
                                        saved: dict[str, Path], dataset: pd.DataFrame) -> None:
    model = fitted[kind]
    loaded = load_predictor(saved[kind])
    assert type(loaded) is type(model)
    assert loaded.kind == kind
    assert loaded.config == model.config
    assert loaded.dcs_ == model.dcs_
    a = model.predict_frame(dataset.iloc[:40])
    b = loaded.predict_frame(dataset.iloc[:40])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for name in ("config.json", "metrics.json"):
        assert (saved[kind] / name).is_file()


def test_predict_frame_columns(kind: str, fitted: dict[str, BasePredictor],
                               dataset: pd.DataFrame) -> None:
    model = fitted[kind]
    pred = model.predict_frame(dataset.iloc[:10])
    assert list(pred["job_id"]) == list(dataset["job_id"].iloc[:10])
    for var in PRED_VARS:
        for d in model.dcs_:
            assert f"{var}__{d}" in pred.columns
    assert set(pred["best_dc"]) <= set(model.dcs_)


def test_predict_jobs_dims_and_ordering(kind: str, fitted: dict[str, BasePredictor],
                                        scenario: Scenario) -> None:
    jobs = synthetic_jobs(scenario, 25, seed=3)
    jobs.loc[::2, "output_tokens"] = np.nan  # unknown generated length
    ds = fitted[kind].predict_jobs(jobs, scenario)
    assert set(ds.data_vars) == set(PRED_VARS)
    for var in PRED_VARS:
        assert ds[var].dims == ("job", "dc")
    assert list(ds.indexes["job"]) == list(jobs["job_id"])
    assert list(ds.indexes["dc"]) == scenario.dcs
    for t in ("energy_kwh", "service_s"):
        v = {q: ds[f"{t}{q}"].values for q in ("", "_p10", "_p50", "_p90")}
        assert np.isfinite(v[""]).all() and (v[""] > 0).all()
        assert (v["_p10"] <= v["_p50"] + 1e-12).all() and (v["_p50"] <= v["_p90"] + 1e-12).all()
    np.testing.assert_allclose(ds["best_dc_prob"].sum("dc").values, 1.0, rtol=1e-6)


def test_predict_jobs_follows_scenario_dc_order(kind: str, fitted: dict[str, BasePredictor],
                                                scenario: Scenario) -> None:
    jobs = synthetic_jobs(scenario, 8, seed=4)
    ref = fitted[kind].predict_jobs(jobs, scenario)
    rev = scenario.subset(dc=scenario.dcs[::-1]) if hasattr(scenario, "subset") else None
    if rev is None or rev.dcs == scenario.dcs:
        pytest.skip("Scenario.subset does not reorder DCs")
    out = fitted[kind].predict_jobs(jobs, rev)
    assert list(out.indexes["dc"]) == rev.dcs
    np.testing.assert_allclose(out["energy_kwh"].sel(dc=scenario.dcs).values,
                               ref["energy_kwh"].values, rtol=1e-5)


def test_wrong_dc_checkpoint_rejected(kind: str, saved: dict[str, Path],
                                      fitted: dict[str, BasePredictor]) -> None:
    other = synthesize(dcs=5, areas=2, types=2, hours=6, seed=0)
    jobs = synthetic_jobs(other, 5, seed=0)
    with pytest.raises(DCMismatchError, match="dc004"):
        fitted[kind].predict_jobs(jobs, other)
    with pytest.raises(DCMismatchError, match=r"only the scenario has \['dc004'\]"):
        load_predictor(saved[kind], dcs=other.dcs)
    with pytest.raises(DCMismatchError, match=r"only the model has \['dc003'\]"):
        load_predictor(saved[kind], dcs=["dc000", "dc001", "dc002", "dcX"])


def test_coefficients_feed_the_planner(kind: str, fitted: dict[str, BasePredictor],
                                       scenario: Scenario, tmp_path: Path) -> None:
    coef = fitted[kind].coefficients(scenario)
    for var in ("energy_kwh_per_query", "proc_delay_s_per_query"):
        assert coef[var].dims == ("hour", "dc", "query_type")
        assert np.isfinite(coef[var].values).all() and (coef[var].values >= 0).all()
    assert (coef["energy_kwh_per_query"].values > 0).all()
    scenario.save(tmp_path / "scen")
    path = save_coefficients(coef, tmp_path / "scen" / "coefficients.csv")
    again = load_scenario(tmp_path / "scen", coefficients=path)
    assert again.coefficients is not None
    np.testing.assert_allclose(again.coefficients["energy_kwh_per_query"].values,
                               coef["energy_kwh_per_query"].values, rtol=1e-6)


def test_dataset_errors_name_column_and_row(kind: str, fitted: dict[str, BasePredictor],
                                            make: Callable[..., BasePredictor],
                                            dataset: pd.DataFrame) -> None:
    model = fitted[kind]
    with pytest.raises(DatasetError, match="'pue__dc002'.*missing column"):
        model.predict_frame(dataset.drop(columns=["pue__dc002"]))
    bad = dataset.iloc[:20].copy()
    bad.loc[7, "energy_kwh__dc001"] = np.nan
    with pytest.raises(DatasetError, match=r"'energy_kwh__dc001'.*row 7 \(job_id 'job000007'\)"):
        make(kind).fit(bad)
    bad = dataset.iloc[:20].copy()
    bad.loc[3, "best_dc"] = "dc999"
    with pytest.raises(DatasetError, match=r"'best_dc'.*row 3.*unknown DC.*'dc999'"):
        make(kind).fit(bad)
    extra = dataset.iloc[:5].copy()
    extra["price_usd_per_kwh__dc777"] = 0.1
    with pytest.raises(DCMismatchError, match="dc777"):
        model.predict_frame(extra)
