"""Calibration on validation + calibration rows (known-answer spread of the coverage), the
test set's own sampling error, the comparison report's per-DC coverage and notes, and the
comparison's input errors and preset."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor import BasePredictor
from greensched.predictor.calibration import (
    CalibrationRows,
    QuantileCalibration,
    calibration_rows,
    coverage_standard_error,
    ideal_coverage_sd,
    truth_arrays,
)
from greensched.predictor.comparison import ComparisonConfig, run_comparison
from greensched.predictor.comparison_report import computed_notes, write_comparison_markdown
from greensched.predictor.dataset import TARGETS, dc_column
from greensched.predictor.synthetic import synthetic_dataset, write_dataset
from greensched.scenario import Scenario

DCS = ["a", "b", "c"]
SIGMA = np.array([0.1, 0.3, 0.5])
WIDTH = 0.8  # raw p10/p90 at ∓0.8 σ: too narrow (the truth's are at ∓1.2816 σ)


def _rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n jobs whose log outcomes at the 3 DCs are σ_d · z with one z per job (errors fully
    correlated across DCs, as nearly on the twin's data: a job is one effective score)."""
    z = rng.normal(size=n)
    return pd.DataFrame({dc_column(t, d): np.exp(s * z) for t in TARGETS
                         for d, s in zip(DCS, SIGMA, strict=True)})


def _raw(n: int) -> dict[str, np.ndarray]:
    out = {}
    for t in TARGETS:
        out[f"{t}_p10"] = np.tile(np.exp(-WIDTH * SIGMA), (n, 1))
        out[f"{t}_p50"] = np.ones((n, 3))
        out[f"{t}_p90"] = np.tile(np.exp(WIDTH * SIGMA), (n, 1))
    return out


def _true_coverage(cal: QuantileCalibration) -> float:
    """Exact coverage of the calibrated interval on the known distribution (energy, DC a)."""
    out = cal.apply(_raw(1))
    lo = math.log(out["energy_kwh_p10"][0, 0]) / SIGMA[0]
    hi = math.log(out["energy_kwh_p90"][0, 0]) / SIGMA[0]

    def phi(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    return phi(hi) - phi(lo)


def test_validation_plus_calibration_rows_narrow_the_coverage_spread_as_theory_says() -> None:
    """Known answer: with n exchangeable jobs, the conformal [p10, p90] covers a fresh draw
    with probability F(Q90) − F(Q10), whose sd over calibration draws is sqrt(0.8·0.2/n):
    0.033 for 150 calibration jobs (0.80 ± 0.03 in only ~64 % of runs) and 0.023 when the
    150 validation jobs join them (~81 %)."""
    rng = np.random.default_rng(7)
    modes = (CalibrationRows.CALIBRATION, CalibrationRows.VALIDATION_AND_CALIBRATION)
    got: dict[CalibrationRows, list[float]] = {r: [] for r in modes}
    for _ in range(300):
        val, cal = _rows(rng, 150), _rows(rng, 150)
        for mode in modes:
            rows = calibration_rows(val, cal, mode)
            assert rows is not None
            fit = QuantileCalibration.fit(_raw(len(rows)), truth_arrays(rows, DCS), DCS)
            got[mode].append(_true_coverage(fit))
    only, both = (np.array(got[m]) for m in (CalibrationRows.CALIBRATION,
                                               CalibrationRows.VALIDATION_AND_CALIBRATION))
    assert only.std() == pytest.approx(ideal_coverage_sd(150), rel=0.15)
    assert both.std() == pytest.approx(ideal_coverage_sd(300), rel=0.15)
    for c in (only, both):  # unbiased: 0.80 (+ < 1/n from the finite-sample rule)
        assert c.mean() == pytest.approx(0.80, abs=0.006)  # 3 sd of the mean of 300
    assert np.mean(np.abs(both - 0.8) <= 0.03) > np.mean(np.abs(only - 0.8) <= 0.03) + 0.08
    assert calibration_rows(None, cal) is cal and calibration_rows(val, None) is None


def test_coverage_standard_error_known_answers() -> None:
    assert ideal_coverage_sd(300) == pytest.approx(0.0231, abs=1e-4)
    assert ideal_coverage_sd(2000) == pytest.approx(0.00894, abs=1e-5)
    rng = np.random.default_rng(3)
    one = rng.random(4000) < 0.8
    p = one.mean()
    # all DCs of a job agree: the job is one observation, the binomial se
    same = np.repeat(one[:, None], 9, axis=1)
    assert coverage_standard_error(same) == pytest.approx(math.sqrt(p * (1 - p) / 4000))
    assert coverage_standard_error(one) == coverage_standard_error(same)
    # independent DCs: nine times the observations, se / 3
    indep = rng.random((4000, 9)) < 0.8
    q = indep.mean()
    assert coverage_standard_error(indep) == pytest.approx(math.sqrt(q * (1 - q) / 36000),
                                                           rel=0.05)
    assert math.isnan(coverage_standard_error(np.zeros((0, 3), dtype=bool)))


def test_fit_calibrates_on_the_rows_named_by_calibrate_on(
        make: Callable[..., BasePredictor], scenario: Scenario) -> None:
    train, _ = synthetic_dataset(scenario, 200, seed=31, noise=0.05)
    both = make("xgboost", n_estimators=10, action_n_estimators=5).fit(train)
    assert both.metrics_["calibrated_on"] == {"rows": "validation+calibration", "n_rows": 40}
    assert both.calibration_.n_rows == 40 and both.metrics_["n_calibration"] == 20
    strict = make("xgboost", n_estimators=10, action_n_estimators=5,
                  calibrate_on="calibration").fit(train)
    assert strict.calibration_.n_rows == 20
    assert strict.config.calibrate_on is CalibrationRows.CALIBRATION
    with pytest.raises(GreenSchedError, match="calibrate_on must be one of"):
        make("xgboost", calibrate_on="test")


def test_out_of_fold_trains_on_the_calibration_split_and_scores_every_row_out_of_fold(
        make: Callable[..., BasePredictor], scenario: Scenario,
        monkeypatch: pytest.MonkeyPatch) -> None:
    train, _ = synthetic_dataset(scenario, 200, seed=31, noise=0.05)
    model = make("xgboost", n_estimators=10, action_n_estimators=5,
                 calibrate_on="out-of-fold", calibration_folds=4)
    sizes: list[int] = []
    real_fit = type(model)._fit

    def counting_fit(self: BasePredictor, rows: pd.DataFrame, *a: Any, **kw: Any) -> Any:
        sizes.append(len(rows))
        return real_fit(self, rows, *a, **kw)

    monkeypatch.setattr(type(model), "_fit", counting_fit)
    model.fit(train)
    # 20 validation jobs; the 20 calibration jobs are trained on: 180 = the final fit, then 4
    # fold models on 3/4 of them each, and all 180 are scored by a model that never saw them
    assert model.metrics_["n_train"] == 180 and model.metrics_["n_calibration"] == 0
    assert sizes == [180, 135, 135, 135, 135]
    assert model.metrics_["calibrated_on"] == {"rows": "out-of-fold", "n_rows": 180, "folds": 4}
    assert model.calibration_.n_rows == 180
    offsets = model.calibration_.to_dict()
    assert offsets != QuantileCalibration.identity(model.dcs_).to_dict()
    with pytest.raises(GreenSchedError, match="calibration_folds must be an integer >= 2"):
        make("xgboost", calibrate_on="out-of-fold", calibration_folds=1)
    with pytest.raises(GreenSchedError, match="out_of_fold_calibration"):
        calibration_rows(train.iloc[:5], train.iloc[5:10], "out-of-fold")


def _result(cov: float, by_dc: dict[str, float], **extra: Any) -> dict[str, Any]:
    t = {"mape": 0.03, "rmse": 0.1, "r2": 0.9, "coverage": cov, "coverage_se": 0.0071,
         "coverage_raw": 0.75, "coverage_by_dc": by_dc}
    return {"energy_kwh": t, "service_s": dict(t), "n_train": 1500, "n_test": 2000,
            "fit_seconds": 1.0, "train_samples_per_s": 10.0, "jobs_per_s": 100.0,
            "action_accuracy": 0.98, "calibrated_on": {"rows": "validation+calibration"},
            **extra}


def test_report_shows_per_dc_coverage_sampling_error_and_lora_notes(tmp_path: Path) -> None:
    lora = _result(0.79, {"x": 0.79, "y": 0.86}, history_variant="lora", best_epoch=2,
                   epochs=5, adapter_norm=0.27, beat_frozen=True, best_val_metric=0.0241,
                   frozen_val_metric=0.0255, selection_metric="mape")
    frozen = _result(0.80, {"x": 0.80, "y": 0.80}, history_variant="frozen",
                     beat_frozen=None, frozen_val_metric=None)
    xgb = _result(0.81, {"x": 0.80, "y": 0.82}, n_boosters=3, history_variant="xgboost")
    shifted = _result(0.76, {"x": 0.76}, n_boosters=3, recalibrated={
        "n_recalibrate": 200, "n_scored": 1800,
        **{t: {"before": 0.76, "before_se": 0.01, "after": 0.795, "after_se": 0.01}
           for t in TARGETS},
        "random": {t: {"before": 0.75, "before_se": 0.01, "after": 0.805, "after_se": 0.009}
                   for t in TARGETS}})
    results = {"random": {1500: {"lora": lora, "lora-frozen": frozen, "xgboost": xgb}},
               "n_rows": 24000,
               "dcs": ["x", "y"], "machine": "x86_64", "total_seconds": 5.0,
               "load_average": {"start": [1.0, 1.0, 1.0], "end": [2.0, 1.5, 1.0]},
               "leave_one_dc_out": {"dc": "y", "slot": "x", "descriptors": [],
                                    "results": {"xgboost": shifted}},
               "config": {"seed": 0, "test_jobs": 2000, "transfer_train_jobs": 1500}}
    text = write_comparison_markdown(results, tmp_path / "r.md", command="greensched x",
                                     dataset="d", notes=["hand note"]).read_text()
    assert "| variant | train jobs | target | x | y | all |" in text
    assert "| lora | 1500 | energy | 0.790 | **0.860** | 0.790 |" in text  # outside 0.80±0.03
    assert "0.750 → 0.790 ± 0.007" in text
    assert "sd 0.009 (95 % within ±0.018 of 0.80)" in text
    assert "beat frozen, val mape 2.410 % vs frozen 2.550 %" in text
    assert "| lora-frozen | 1500 |" in text and "| frozen |" in text
    # re-calibrated on the shifted domain: first jobs in time, random jobs
    assert "| xgboost | energy | 0.760 ± 0.010 | 0.795 ± 0.010 | 0.750 ± 0.010 | 0.805 ± 0.009 |" \
        in text
    assert text.rstrip().endswith("hand note")
    notes = "\n".join(computed_notes(results))
    assert "6 of 6 calibrated p10–p90 coverages (pooled over DCs) lie within 0.80 ± 0.03; " \
        "per DC, 10 of 12" in notes
    assert "unseen DC" in notes and "misses 0.80 ± 0.03 for xgboost" in notes
    assert "Re-calibrating on the first 200 shifted jobs in time: xgboost 0.795 / 0.795 on " \
        "the rest; on 200 random ones: xgboost 0.805 / 0.805" in notes
    assert "**lora at 1500 jobs** beat its frozen start on validation mape (2.410 %" in notes
    assert "lora-frozen at 1500" not in notes  # beat_frozen None: no verdict


def test_comparison_input_errors_name_the_option(dataset: pd.DataFrame, scenario: Scenario,
                                                 tmp_path: Path) -> None:
    with pytest.raises(GreenSchedError, match=r"test_jobs \(--test-jobs\) 5000 is too large "
                                              r"for this dataset of 160 jobs: at most 150"):
        run_comparison(dataset, ComparisonConfig(variants=("xgboost",), test_jobs=5000))
    with pytest.raises(GreenSchedError, match="recalibrate_jobs must be 0"):
        ComparisonConfig(recalibrate_jobs=5)
    from tests.cli_inprocess import run_cli

    data = write_dataset(*synthetic_dataset(scenario, 40, seed=5), tmp_path / "d.parquet")
    res = run_cli("evaluate-predictor", "--compare", "xgboost", "--data", str(data), "--out",
                  str(tmp_path / "o"), "--no-describe-dcs", "--test-jobs", "100000")
    assert res.returncode == 2 and "--test-jobs" in res.stderr and "100000" in res.stderr
    res = run_cli("evaluate-predictor", "--compare", "xgboost", "--data", str(data), "--out",
                  str(tmp_path / "o"), "--no-describe-dcs", "--preset", "full")
    assert res.returncode == 2 and "--preset 'full' is not known" in res.stderr


def test_preset_fills_what_is_not_given_and_names_itself() -> None:
    from greensched.cli.predictor import compare_command_line, compare_settings

    got = compare_settings("report", {"threads": 1, "hours": ""})
    assert got["sizes"] == "1500,5000,20000" and got["max_rows"] == ""  # every variant, every size
    assert got["test_jobs"] == 2000 and got["lora_epochs"] == 6 and got["lora_max_steps"] == 1000
    assert got["threads"] == 1 and got["hours"] == ""  # given explicitly: kept
    assert compare_settings(None, {})["test_jobs"] is None  # auto: 2000, <= a fifth
    line = compare_command_line("xgboost", Path("d.parquet"), Path("reports"), "report",
                                {"threads": 1, "sizes": None})
    assert line == ("greensched evaluate-predictor --compare xgboost --data d.parquet "
                    "--out reports --preset report --threads 1")
