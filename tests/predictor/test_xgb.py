"""XGBoost predictor specifics: the layouts, accuracy on a noise-free stand-in, missing
output tokens, degenerate best-DC labels, the ``"point"`` layout's residual quantiles and its
saved form."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor import BasePredictor, load_predictor
from greensched.predictor.base import CheckpointError
from greensched.predictor.metrics import evaluate_predictions
from greensched.predictor.synthetic import synthetic_dataset
from greensched.predictor.xgb import (
    MULTI_QUANTILE_DEFAULTS,
    STRATEGIES,
    XGBoostConfig,
    XGBoostPredictor,
    residual_quantiles,
)
from greensched.scenario import Scenario


def test_config_validation() -> None:
    with pytest.raises(GreenSchedError, match="strategy must be one of"):
        XGBoostConfig(strategy="forest")
    with pytest.raises(GreenSchedError, match="max_depth"):
        XGBoostConfig(max_depth=0)
    with pytest.raises(GreenSchedError, match="learning_rate"):
        XGBoostConfig(learning_rate=0.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_layouts_learn_the_stand_in(strategy: str, make: Callable[..., BasePredictor],
                                    scenario: Scenario) -> None:
    train, _ = synthetic_dataset(scenario, 400, seed=11)
    test, _ = synthetic_dataset(scenario, 100, seed=12)
    model = make("xgboost", strategy=strategy, n_estimators=80, output_token_dropout=0.0)
    model.fit(train)
    rep = evaluate_predictions(model.predict_frame(test), test, model.dcs_)
    # loose bounds: 400 jobs, 80 shallow rounds
    assert rep["energy_kwh"]["all"]["mape"] < 0.15
    assert rep["service_s"]["all"]["mape"] < 0.15
    assert set(model.metrics_["history"]["rounds"]) >= {"action"}


def test_missing_output_tokens_are_predicted(fitted: dict[str, BasePredictor],
                                             dataset: pd.DataFrame) -> None:
    rows = dataset.iloc[:10].copy()
    rows["output_tokens"] = np.nan
    pred = fitted["xgboost"].predict_frame(rows)
    assert np.isfinite(pred.filter(like="energy_kwh").to_numpy()).all()


def test_one_best_dc_only_gives_prior(make: Callable[..., BasePredictor],
                                      dataset: pd.DataFrame) -> None:
    rows = dataset.iloc[:40].copy()
    rows["best_dc"] = "dc002"
    model = make("xgboost").fit(rows)
    prob = model.predict_frame(rows.iloc[:3]).filter(like="best_dc_prob").to_numpy()
    np.testing.assert_allclose(prob[:, 2], 1.0)


def test_residual_quantiles_known_answer() -> None:
    r = np.column_stack([np.arange(11.0), 2 * np.arange(11.0)])  # 0..10 and 0..20
    assert residual_quantiles(r) == {"lo": [1.0, 2.0], "hi": [9.0, 18.0]}
    pooled = residual_quantiles(r, pooled=True)  # 22 values: linear-interpolated quantiles
    np.testing.assert_allclose(pooled["lo"], [np.quantile(r, 0.1)] * 2)
    np.testing.assert_allclose(pooled["hi"], [np.quantile(r, 0.9)] * 2)


def test_point_layout_boosters_quantiles_and_saved_form(
        make: Callable[..., BasePredictor], scenario: Scenario, tmp_path: Path) -> None:
    train, _ = synthetic_dataset(scenario, 300, seed=31, noise=0.05)
    model = make("xgboost")
    assert isinstance(model, XGBoostPredictor) and model.config.strategy == "point"
    model.fit(train)
    assert set(model.boosters_) == {"energy_kwh", "service_s", "action"}
    rq = model.residual_quantiles_
    # the validation rows' residuals in standardised log space (30 jobs x 4 DCs)
    assert all(len(rq[t]["lo"]) == 4 and max(rq[t]["lo"]) < 0 < min(rq[t]["hi"]) for t in rq)
    test, _ = synthetic_dataset(scenario, 20, seed=32, noise=0.05)
    raw = model.predict_arrays(test, calibrated=False)
    # p90 = point · exp(hi · σ): one log-space offset per DC (σ: the DC's target scale)
    sigma = np.broadcast_to(np.asarray(model.target_scaler_.std, dtype=float)[1], (4,))
    ratio = np.log(raw["service_s_p90"] / raw["service_s"])
    np.testing.assert_allclose(ratio, np.broadcast_to(np.asarray(rq["service_s"]["hi"]) * sigma,
                                                      ratio.shape), rtol=1e-4)
    path = model.save(tmp_path / "point")
    loaded = load_predictor(path)
    pd.testing.assert_frame_equal(loaded.predict_frame(test), model.predict_frame(test))
    # warm start: more rounds on the current trees, residual quantiles of the new rows
    before = model.boosters_["service_s"].num_boosted_rounds()
    more, _ = synthetic_dataset(scenario, 200, seed=35, noise=0.2)
    model.fit(more, warm_start=True)
    assert model.boosters_["service_s"].num_boosted_rounds() > before
    assert model.residual_quantiles_["service_s"]["hi"] != rq["service_s"]["hi"]
    cfg = json.loads((path / "config.json").read_text())
    del cfg["residual_quantiles"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="residual_quantiles"):
        load_predictor(path)


def test_multi_quantile_model_saved_before_the_point_layout_still_loads(
        make: Callable[..., BasePredictor], scenario: Scenario, tmp_path: Path) -> None:
    """A ``"quantile"`` model's saved config names its strategy, so the new default does not
    change how it loads or predicts; a calibration stored without ``score`` is per-DC."""
    train, _ = synthetic_dataset(scenario, 200, seed=33, noise=0.05)
    opts = {**MULTI_QUANTILE_DEFAULTS, "n_estimators": 20}
    model = make("xgboost", **opts).fit(train)
    path = model.save(tmp_path / "mq")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["calibration"]["score"], cfg["calibration"]["scale_floor"]
    cfg["calibration"]["lo"] = cfg["calibration"]["hi"] = {
        t: [0.01] * 4 for t in ("energy_kwh", "service_s")}
    (path / "config.json").write_text(json.dumps(cfg))
    loaded = load_predictor(path)
    assert isinstance(loaded, XGBoostPredictor) and loaded.config.strategy == "quantile"
    test, _ = synthetic_dataset(scenario, 10, seed=34, noise=0.05)
    raw = loaded.predict_arrays(test, calibrated=False)
    cal = loaded.predict_arrays(test)
    np.testing.assert_allclose(cal["energy_kwh_p90"],
                               np.maximum(raw["energy_kwh_p90"] * np.exp(0.01),
                                          raw["energy_kwh_p50"]))
