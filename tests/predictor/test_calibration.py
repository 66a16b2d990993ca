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
from greensched.predictor.calibration import (
    CalibrationScore,
    QuantileCalibration,
    conformal_offset,
)
from greensched.predictor.dataset import TARGETS, rows_from_jobs
from greensched.predictor.synthetic import synthetic_dataset
from greensched.predictor.xgb import XGBoostPredictor
from greensched.scenario import Scenario


def test_conformal_offset_is_the_finite_sample_order_statistic() -> None:
    assert conformal_offset(np.arange(1.0, 10.0)) == 9.0  # n = 9: rank ceil(10 · 0.9) = 9
    assert conformal_offset(np.arange(1.0, 20.0)) == 18.0  # n = 19: rank 18
    assert conformal_offset(np.arange(1.0, 5.0)) == 4.0  # rank 5 > n: the largest
    assert conformal_offset(np.arange(1.0, 100.0)) == 90.0  # n = 99: rank ceil(90.0) = 90
    assert conformal_offset(np.arange(1.0, 9.0)) == 8.0  # n = 8: rank ceil(8.1) = 9 > n
    assert conformal_offset(np.array([])) == 0.0


def test_finite_sample_rule_gives_exactly_rank_over_n_plus_one() -> None:
    """Known answer: for n = 19 uniform scores the conformal quantile is the 18th order
    statistic, whose expected value, i.e. the coverage of a fresh uniform draw, is
    18 / 20 = 0.90; the plain empirical 0.9-quantile would cover (17 + 0.2) / 20 = 0.86."""
    rng = np.random.default_rng(5)
    draws = rng.random((4000, 19))
    conformal = np.array([conformal_offset(s) for s in draws])
    naive = np.quantile(draws, 0.9, axis=1)
    assert conformal.mean() == pytest.approx(0.90, abs=0.005)
    assert naive.mean() == pytest.approx(0.86, abs=0.005)


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
    cal = QuantileCalibration.fit(arrays, y, dcs, score="per-dc")
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
    # without raw widths the pooled score is additive: one offset for both DCs
    pooled = QuantileCalibration.fit(arrays, y, dcs)
    assert pooled.score is CalibrationScore.POOLED_SCALED
    assert pooled.hi["energy_kwh"][0] == pooled.hi["energy_kwh"][1]
    assert pooled.scale_floor["energy_kwh"] == [0.0, 0.0]


def _hetero(rng: np.random.Generator, n: int, width: float
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Log-normal truths whose spread σ is 0.05 or 0.5 per row and DC; raw quantiles
    exp(∓ width · σ) around the true median 1 (too narrow for width < 1.2816)."""
    sigma = np.where(rng.random((n, 3)) < 0.5, 0.05, 0.5)
    y = {t: np.exp(rng.normal(0.0, 1.0, (n, 3)) * sigma) for t in TARGETS}
    arrays = {}
    for t in TARGETS:
        arrays[f"{t}_p10"] = np.exp(-width * sigma)
        arrays[f"{t}_p50"] = np.ones((n, 3))
        arrays[f"{t}_p90"] = np.exp(width * sigma)
    return arrays, y, sigma


def test_pooled_scaled_score_calibrates_each_spread_on_a_known_distribution() -> None:
    """Raw p10/p90 at ∓0.8 σ of a normal: the scaled offset must be 1.2816 / 0.8 − 1 = 0.602
    at both ends (±0.07 is 3 sd of that quantile from 9000 scores), and the calibrated
    interval covers 80 % in the narrow and in the wide rows, while additive per-DC offsets
    only get the mix right (they over-cover the narrow rows)."""
    rng = np.random.default_rng(1)
    dcs = ["a", "b", "c"]
    arrays, y, _ = _hetero(rng, 3000, 0.8)
    cal = QuantileCalibration.fit(arrays, y, dcs)
    np.testing.assert_allclose(cal.lo["service_s"], [1.2816 / 0.8 - 1] * 3, atol=0.07)
    np.testing.assert_allclose(cal.hi["energy_kwh"], [1.2816 / 0.8 - 1] * 3, atol=0.07)
    per_dc = QuantileCalibration.fit(arrays, y, dcs, score=CalibrationScore.PER_DC)
    fresh, yf, sigma = _hetero(rng, 20000, 0.8)
    for t in TARGETS:
        for c, ok in ((cal, True), (per_dc, False)):
            out = c.apply(fresh)
            inside = (yf[t] >= out[f"{t}_p10"]) & (yf[t] <= out[f"{t}_p90"])
            assert inside.mean() == pytest.approx(0.80, abs=0.02)
            narrow = inside[sigma == 0.05].mean()
            assert bool(narrow == pytest.approx(0.80, abs=0.02)) is ok
            assert inside[sigma == 0.5].mean() == pytest.approx(0.80, abs=0.02 if ok else 0.2)
    again = QuantileCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    # a stored calibration without "score" (the first calibrated models) is per-DC additive
    old = cal.to_dict()
    del old["score"], old["scale_floor"]
    assert QuantileCalibration.from_dict(old).score is CalibrationScore.PER_DC


def test_pooled_scaled_floor_bounds_collapsed_intervals() -> None:
    rng = np.random.default_rng(2)
    arrays, y, _ = _hetero(rng, 500, 1.0)
    arrays["energy_kwh_p10"][:5] = 1.0  # a collapsed lower half-width
    cal = QuantileCalibration.fit(arrays, y, ["a", "b", "c"])
    floor = cal.scale_floor["energy_kwh"][0]
    assert floor == pytest.approx(0.05 * np.median(-np.log(arrays["energy_kwh_p10"])))
    assert np.isfinite(cal.lo["energy_kwh"]).all()
    out = cal.apply(arrays)
    assert (out["energy_kwh_p10"][:5] < 1.0).all()  # widened by offset x floor
    with pytest.raises(ValueError, match="calibration score must be one of"):
        QuantileCalibration.fit(arrays, y, ["a", "b", "c"], score="median")


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
    c = model.calibration_
    assert c.score is CalibrationScore.POOLED_SCALED
    # p90' = p90 · exp(Q_hi · max(ln p90 − ln p50, floor)), never below p50
    half = np.maximum(np.log(raw["service_s_p90"] / raw["service_s_p50"]),
                      c.scale_floor["service_s"][1])
    hi = np.exp(np.asarray(c.hi["service_s"])[None, :] * half)
    np.testing.assert_allclose(cal["service_s_p90"],
                               np.maximum(raw["service_s_p90"] * hi, raw["service_s_p50"]))
    np.testing.assert_array_equal(cal["service_s"], raw["service_s"])
    # the "point" layout's raw p10/p90: the point prediction times exp(residual quantiles)
    rq = model.residual_quantiles_["energy_kwh"]  # type: ignore[attr-defined]
    assert min(rq["lo"]) < 0 < max(rq["hi"])
    np.testing.assert_array_equal(raw["energy_kwh_p50"], raw["energy_kwh"])
    assert (raw["energy_kwh_p10"] < raw["energy_kwh"]).all()
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
        model = make("xgboost", strategy="quantile", n_estimators=60,
                     early_stopping_rounds=100, progress=True)
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
