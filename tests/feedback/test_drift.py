"""Drift detection: PSI values, error ratios and verdicts on synthetic outcomes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from outcome_factory import make_outcomes
from rich.console import Console
from rich.table import Table

from greensched.errors import GreenSchedError, LocatedError
from greensched.feedback.drift import (
    FEATURES,
    DriftThresholds,
    Verdict,
    detect_drift,
    error_metrics,
    load_validation_metrics,
    psi,
)

VAL_MAPE = 0.13  # the factory's 15 % log-normal prediction error gives a MAPE of about 12 %


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.DataFrame(make_outcomes(3000, seed=1))


def _recent(n: int = 500, seed: int = 2, **kw: float | tuple[float, ...]) -> pd.DataFrame:
    return pd.DataFrame(make_outcomes(n, seed=seed, **kw))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# PSI
# ----------------------------------------------------------------------------------------------

def test_psi_of_identical_samples_is_zero() -> None:
    x = np.random.default_rng(0).lognormal(5, 1, 2000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    cats = ["a", "b", "b", "c"] * 50
    assert psi(cats, cats, categorical=True) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, x.copy()[::-1]) == pytest.approx(0.0, abs=1e-12)  # order does not matter


def test_psi_hand_computed_and_conventions() -> None:
    ref = ["a"] * 50 + ["b"] * 50
    rec = ["a"] * 70 + ["b"] * 30
    expected = 0.2 * math.log(0.7 / 0.5) + (-0.2) * math.log(0.3 / 0.5)  # 0.1695
    assert psi(ref, rec, categorical=True) == pytest.approx(expected, rel=1e-12)
    # a category never seen in the reference: share floored at 1e-4, so large but finite
    unseen = psi(ref, ["a"] * 45 + ["b"] * 45 + ["z"] * 10, categorical=True)
    assert unseen == pytest.approx(2 * (-0.05) * math.log(0.9) + (0.1 - 1e-4) * math.log(1e3))
    rng = np.random.default_rng(1)
    same = psi(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000))
    shifted = psi(rng.normal(0, 1, 5000), rng.normal(1, 1, 5000))
    assert same < 0.02 < 0.25 < shifted
    with pytest.raises(GreenSchedError, match="non-empty"):
        psi([], [1.0])
    with pytest.raises(GreenSchedError, match="finite"):
        psi([1.0, np.nan], [1.0])


def test_psi_with_heavy_ties_merges_bins() -> None:
    ref = np.array([1.0] * 900 + [2.0] * 100)
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, np.array([1.0] * 500 + [2.0] * 500)) > 0.25


# ----------------------------------------------------------------------------------------------
# Prediction-error drift
# ----------------------------------------------------------------------------------------------

def test_error_metrics_definitions() -> None:
    em = error_metrics([2.0, 1.0, 4.0, np.nan, -1.0], [1.0, 1.0, 8.0, 1.0, 1.0])
    assert em.n == 3  # the NaN and non-positive pairs are ignored
    assert em.mape == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert em.rmse_log == pytest.approx(math.sqrt(2 * math.log(2) ** 2 / 3))
    assert em.bias_log == pytest.approx(0.0, abs=1e-12)
    assert error_metrics([], []).n == 0


def test_no_drift_is_ok(reference: pd.DataFrame) -> None:
    rep = detect_drift(_recent(), reference, VAL_MAPE)
    assert rep.verdict is Verdict.OK and rep.is_ok
    for t in rep.targets:
        assert t.verdict is Verdict.OK and t.n == 500 and t.ratio is not None and t.ratio < 1.25
        assert t.baseline_source == "validation"
    for f in rep.features:
        assert f.verdict is Verdict.OK, f
        assert f.psi < 0.1 and f.noise_psi < 0.05
    assert rep.model_versions == ("v1",)


def test_measured_energy_drift_is_flagged_on_that_target_only(reference: pd.DataFrame) -> None:
    rep = detect_drift(_recent(energy_scale=1.6), reference, VAL_MAPE)
    assert rep.verdict is Verdict.DRIFT
    energy, service = rep.target("energy_kwh"), rep.target("service_s")
    assert energy.verdict is Verdict.DRIFT and energy.ratio is not None and energy.ratio > 1.5
    assert energy.bias_log < 0 and "under-predicting" in energy.note
    assert service.verdict is Verdict.OK
    assert all(f.verdict is Verdict.OK for f in rep.features)  # inputs did not move


def test_error_ratio_thresholds(reference: pd.DataFrame) -> None:
    recent = _recent()
    mape = error_metrics(recent["pred_service_s"], recent["service_s"]).mape
    verdicts = {}
    for ratio in (0.9, 1.3, 2.0):
        val = {"service_s": {"mape": mape / ratio}, "energy_kwh": {"mape": VAL_MAPE}}
        t = detect_drift(recent, reference, val).target("service_s")
        assert t.ratio == pytest.approx(ratio)
        verdicts[ratio] = t.verdict
    assert verdicts == {0.9: Verdict.OK, 1.3: Verdict.WATCH, 2.0: Verdict.DRIFT}
    # the worse of MAPE and RMSE(log) ratios decides
    rmse = error_metrics(recent["pred_service_s"], recent["service_s"]).rmse_log
    t = detect_drift(recent, None, {"service_s": {"mape": mape, "rmse_log": rmse / 1.6}}) \
        .target("service_s")
    assert t.ratio == pytest.approx(1.6) and t.verdict is Verdict.DRIFT


def test_input_drift_is_flagged_per_feature(reference: pd.DataFrame) -> None:
    rep = detect_drift(_recent(token_scale=1.6, query_mix=(0.2, 0.3, 0.5)), reference, VAL_MAPE)
    assert rep.verdict is Verdict.DRIFT
    assert rep.feature("input_tokens").verdict is Verdict.DRIFT
    assert rep.feature("output_tokens").verdict is Verdict.DRIFT
    qt = rep.feature("query_type")
    assert qt.verdict is Verdict.DRIFT and qt.largest_shift.startswith("summarise")
    assert rep.feature("area").verdict is Verdict.OK
    assert rep.feature("hour").verdict is Verdict.OK  # derived from arrival_s


def test_moderate_mix_change_is_watch(reference: pd.DataFrame) -> None:
    rep = detect_drift(_recent(n=2000, area_mix=(0.22, 0.45, 0.33)), reference, VAL_MAPE)
    area = rep.feature("area")
    assert 0.1 <= area.psi < 0.25 and area.verdict is Verdict.WATCH
    assert rep.verdict is Verdict.WATCH


def test_no_false_alarms_from_sampling_noise_in_small_windows(reference: pd.DataFrame) -> None:
    alarms = 0
    for seed in range(10, 30):
        rep = detect_drift(_recent(n=120, seed=seed), reference, VAL_MAPE)
        alarms += sum(f.verdict is not Verdict.OK for f in rep.features)
    assert alarms <= 2, f"{alarms} feature alarms in 100 drift-free checks"


# ----------------------------------------------------------------------------------------------
# Insufficient data, baselines, metrics files
# ----------------------------------------------------------------------------------------------

def test_insufficient_data_below_min_samples(reference: pd.DataFrame) -> None:
    rep = detect_drift(_recent(n=60, energy_scale=3.0), reference, VAL_MAPE)
    assert rep.verdict is Verdict.INSUFFICIENT_DATA and not rep.is_ok
    assert all(t.verdict is Verdict.INSUFFICIENT_DATA for t in rep.targets)
    assert all(f.verdict is Verdict.INSUFFICIENT_DATA for f in rep.features)
    assert "60 outcomes < min_samples 100" in rep.target("energy_kwh").note
    rep = detect_drift(_recent(n=60), reference, VAL_MAPE,
                       thresholds=DriftThresholds(min_samples=50))
    assert rep.verdict is Verdict.OK
    # a small reference sample leaves the features undecided, not the targets
    rep = detect_drift(_recent(), reference.head(20), VAL_MAPE)
    assert rep.feature("area").verdict is Verdict.INSUFFICIENT_DATA
    assert rep.verdict is Verdict.OK


def test_without_baseline_or_reference(reference: pd.DataFrame) -> None:
    recent = _recent(energy_scale=1.6)
    rep = detect_drift(recent)
    assert rep.verdict is Verdict.INSUFFICIENT_DATA
    assert rep.target("energy_kwh").note == "no validation error to compare with"
    assert rep.feature("area").note == "no reference sample"
    # the reference's own error is the baseline when no validation error is given
    rep = detect_drift(recent, reference)
    energy = rep.target("energy_kwh")
    assert energy.baseline_source == "reference sample" and energy.verdict is Verdict.DRIFT
    assert rep.target("service_s").verdict is Verdict.OK
    # features only: judged on a jobs table without predictions
    jobs = reference[list(FEATURES)[:2] + ["query_type", "area", "arrival_s"]]
    rep = detect_drift(_recent(), jobs)
    assert rep.verdict is Verdict.OK
    assert rep.target("service_s").verdict is Verdict.INSUFFICIENT_DATA


@pytest.mark.parametrize("content", [
    {"energy_kwh": {"mape": 0.13, "rmse_log": 0.16}, "service_s": {"MAPE": 0.13}},
    {"validation": {"energy_kwh_mape": 0.13, "service_s_rmsle": 0.16}},
    {"metrics": {"mape": 0.13}},
    {"energy_mape": 0.13, "service_mape": 0.13, "service_rmse_log": 0.16},
    {"energy_kwh": 0.13, "service_s": 0.13},
    # the metrics.json written beside a saved predictor
    {"kind": "xgboost", "n_train": 800, "validation_on": "validation split",
     "validation": {"energy_kwh": {"mape": 0.13, "rmse_log": 0.16, "rmse": 1e-4, "r2": 0.9,
                                   "coverage_p10_p90": 0.8},
                    "service_s": {"mape": 0.13, "rmse_log": 0.16, "rmse": 0.5,
                                  "r2": float("nan"), "coverage_p10_p90": 0.8},
                    "action_accuracy": 0.7}},
])
def test_validation_metrics_json_layouts(tmp_path: Path, content: dict,
                                         reference: pd.DataFrame) -> None:
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps(content))
    val = load_validation_metrics(p)
    assert set(val) == {"energy_kwh", "service_s"}
    assert all(set(m) <= {"mape", "rmse_log"} and m for m in val.values())
    rep = detect_drift(_recent(), reference, p)
    assert rep.verdict is Verdict.OK
    assert all(t.baseline_source == "validation" for t in rep.targets)


def test_bad_validation_metrics_are_named(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    with pytest.raises(LocatedError, match="not found"):
        load_validation_metrics(p)
    p.write_text("{oops")
    with pytest.raises(LocatedError, match="not valid JSON"):
        load_validation_metrics(p)
    p.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(LocatedError, match="no validation error found"):
        load_validation_metrics(p)
    p.write_text(json.dumps({"energy_kwh": {"mape": -1}}))
    with pytest.raises(LocatedError, match="positive number"):
        load_validation_metrics(p)
    with pytest.raises(GreenSchedError, match="positive"):
        detect_drift(_recent(), None, 0.0)


def test_threshold_validation() -> None:
    with pytest.raises(GreenSchedError, match="psi_watch"):
        DriftThresholds(psi_watch=0.3, psi_drift=0.2)
    with pytest.raises(GreenSchedError, match="error_watch_ratio"):
        DriftThresholds(error_watch_ratio=2.0, error_drift_ratio=1.5)
    with pytest.raises(GreenSchedError, match="min_samples"):
        DriftThresholds(min_samples=1)


# ----------------------------------------------------------------------------------------------
# Report rendering
# ----------------------------------------------------------------------------------------------

def test_render_table_and_dict(reference: pd.DataFrame) -> None:
    mixed = pd.concat([_recent(n=300), _recent(n=300, seed=5).assign(model_version="v2")])
    rep = detect_drift(mixed, reference, VAL_MAPE)
    table = rep.render_table()
    assert isinstance(table, Table)
    assert table.row_count == len(rep.targets) + len(rep.features) == 7
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    for word in ("error energy_kwh", "PSI query_type", "Drift check: OK", "v1, v2",
                 "mixes 2 model versions"):
        assert word in text
    d = rep.to_dict()
    assert d["verdict"] == "ok" and d["targets"][0]["target"] == "energy_kwh"
    json.dumps(d)  # JSON-ready
    small = detect_drift(_recent(n=10), None, None).to_dict()
    assert small["verdict"] == "insufficient_data" and small["features"][0]["psi"] is None
    json.dumps(small)


def test_hour_of_day_drift_needs_a_full_day(reference: pd.DataFrame) -> None:
    recent = _recent()
    # the last few hours of a day: time of day cannot be compared, the rest still is
    short = recent.assign(arrival_s=recent["arrival_s"] % (4 * 3600))
    rep = detect_drift(short, reference, VAL_MAPE)
    assert rep.feature("hour").verdict is Verdict.INSUFFICIENT_DATA
    assert "spans 4 h" in rep.feature("hour").note and rep.verdict is Verdict.OK
    # jobs over three days, all at night (hours 0-5 of each day): drift
    rng = np.random.default_rng(3)
    night = recent.drop(columns="arrival_s").assign(
        hour=rng.integers(0, 3, len(recent)) * 24 + rng.integers(0, 6, len(recent)))
    rep = detect_drift(night, reference, VAL_MAPE)
    hour = rep.feature("hour")
    assert hour.verdict is Verdict.DRIFT and hour.largest_shift.startswith("h00")
