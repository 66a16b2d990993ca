"""Split-conformal p10/p90: the order statistic, coverage on fresh draws, storage with the model,
and what the assigner reads (``energy_kwh_p90`` / ``service_s_p90``); XGBoost's multi-quantile
layout, progress and warm start."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.predictor import BasePredictor, load_predictor
from greensched.predictor.calibration import QuantileCalibration, conformal_offset
from greensched.predictor.dataset import TARGETS, rows_from_jobs
from greensched.predictor.synthetic import synthetic_dataset
from greensched.predictor.xgb import XGBoostPredictor
from greensched.scenario import Scenario


def test_conformal_offset_is_the_finite_sample_order_statistic() -> None:
    assert conformal_offset(np.arange(1.0, 10.0)) == 9.0  # n = 9: rank ceil(10 · 0.9) = 9
    assert conformal_offset(np.arange(1.0, 20.0)) == 18.0  # n = 19: rank 18
    assert conformal_offset(np.arange(1.0, 5.0)) == 4.0  # rank 5 > n: the largest
    assert conformal_offset(np.array([])) == 0.0


def test_calibration_reaches_nominal_coverage_on_fresh_draws() -> None:
    rng = np.random.default_rng(0)
    dcs = ["a", "b"]

    def draw(n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        # truth log-normal with a DC-dependent spread; the raw "quantiles" are all the median
        y = {t: np.exp(rng.normal(0.0, [0.2, 0.6], (n, 2))) for t in TARGETS}
        one = np.ones((n, 2))
        arrays = {f"{t}_{q}": one for t in TARGETS for q in ("p10", "p50", "p90")}
        return arrays, y

    arrays, y = draw(2000)
    cal = QuantileCalibration.fit(arrays, y, dcs)
    assert cal.calibrated and cal.coverage_before["energy_kwh"]["all"] == 0.0
    # offsets ≈ the 90 % quantile of |N(0, σ)| on each side: 1.2816 σ
    np.testing.assert_allclose(cal.hi["energy_kwh"], [0.2 * 1.2816, 0.6 * 1.2816], rtol=0.06)
    fresh, yf = draw(20000)
    out = cal.apply(fresh)
    for t in TARGETS:
        inside = (yf[t] >= out[f"{t}_p10"]) & (yf[t] <= out[f"{t}_p90"])
        for j in range(2):
            assert inside[:, j].mean() == pytest.approx(0.80, abs=0.03)
        assert (out[f"{t}_p10"] <= out[f"{t}_p50"]).all()
        assert (out[f"{t}_p50"] <= out[f"{t}_p90"]).all()
    again = QuantileCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    few = QuantileCalibration.fit(*draw(10), dcs)
    assert not few.calibrated and few.hi["service_s"] == [0.0, 0.0]


@pytest.fixture(scope="module")
def calibrated_xgb(make: Callable[..., BasePredictor], scenario: Scenario) -> BasePredictor:
    train, _ = synthetic_dataset(scenario, 500, seed=21, noise=0.05)
    return make("xgboost", n_estimators=30).fit(train)


def test_model_stores_calibration_and_serves_calibrated_p90(
        calibrated_xgb: BasePredictor, scenario: Scenario, tmp_path: Path) -> None:
    model = calibrated_xgb
    assert model.metrics_["n_calibration"] == 50 and model.calibration_.calibrated
    cov = model.metrics_["calibration"]["coverage_before"]
    assert set(cov["energy_kwh"]) == {*model.dcs_, "all"}
    test, _ = synthetic_dataset(scenario, 40, seed=22, noise=0.05)
    raw = model.predict_arrays(test, calibrated=False)
    cal = model.predict_arrays(test)
    hi = np.exp(np.asarray(model.calibration_.hi["service_s"]))
    np.testing.assert_allclose(cal["service_s_p90"],
                               np.maximum(raw["service_s_p90"] * hi, raw["service_s_p50"]))
    np.testing.assert_array_equal(cal["service_s"], raw["service_s"])
    # the assigner's risk mode reads these names from predict_jobs: the calibrated values
    jobs = test[["job_id", "arrival_s", "area", "query_type", "input_tokens", "output_tokens",
                 "sla_s"]]
    ds = model.predict_jobs(jobs, scenario)
    rows = model.predict_arrays(rows_from_jobs(jobs, scenario))
    order = [model.dcs_.index(d) for d in scenario.dcs]
    np.testing.assert_allclose(ds["energy_kwh_p90"].values, rows["energy_kwh_p90"][:, order])
    loaded = load_predictor(model.save(tmp_path / "m"))
    assert loaded.calibration_ == model.calibration_
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["calibration"]["method"].startswith("split-conformal")
    pd.testing.assert_frame_equal(loaded.predict_frame(test), model.predict_frame(test))


def test_xgboost_multi_quantile_layout_progress_and_warm_start(
        make: Callable[..., BasePredictor], scenario: Scenario,
        caplog: pytest.LogCaptureFixture) -> None:
    train, _ = synthetic_dataset(scenario, 300, seed=23, noise=0.02)
    more, _ = synthetic_dataset(scenario, 300, seed=24, noise=0.02)
    with caplog.at_level(logging.INFO, logger="greensched.predictor.xgb"):
        model = make("xgboost", n_estimators=60, early_stopping_rounds=100, progress=True)
        assert isinstance(model, XGBoostPredictor)
        model.fit(train)
    h = model.metrics_["history"]
    assert h["strategy"] == "quantile" and h["n_boosters"] == 3
    assert set(h["rounds"]) == {"energy_kwh_q", "service_s_q", "action"}
    assert "XGBoost energy_kwh_q: round 50/60" in caplog.text
    assert "XGBoost service_s_q: 60 rounds in" in caplog.text
    before = {k: b.num_boosted_rounds() for k, b in model.boosters_.items()}
    orig = model.boosters_["energy_kwh_q"].copy()
    pred0 = model.predict_frame(more)
    model.fit(more, warm_start=True)
    after = {k: b.num_boosted_rounds() for k, b in model.boosters_.items()}
    assert model.metrics_["history"]["warm_start"] is True
    assert after["energy_kwh_q"] > before["energy_kwh_q"]
    # continued, not restarted: the first trees are the old booster's
    x = np.random.default_rng(0).normal(size=(5, orig.num_features())).astype(np.float32)
    np.testing.assert_allclose(
        model.boosters_["energy_kwh_q"][: before["energy_kwh_q"]].inplace_predict(x),
        orig.inplace_predict(x), rtol=1e-6)
    assert not np.allclose(model.predict_frame(more)["energy_kwh__dc000"],
                           pred0["energy_kwh__dc000"])
