"""XGBoost predictor specifics: the three layouts, accuracy on a noise-free stand-in, missing
output tokens, degenerate best-DC labels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor import BasePredictor
from greensched.predictor.metrics import evaluate_predictions
from greensched.predictor.synthetic import synthetic_dataset
from greensched.predictor.xgb import STRATEGIES, XGBoostConfig
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
