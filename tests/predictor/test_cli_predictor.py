"""The command bodies behind `greensched train / predict / evaluate-predictor`, and the accuracy
report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from greensched.cli.predictor import evaluate_command, predict_command, train_command
from greensched.errors import GreenSchedError
from greensched.predictor.report import write_accuracy_report
from greensched.predictor.synthetic import synthetic_dataset, synthetic_jobs, write_dataset
from greensched.scenario import Scenario, load_scenario


@pytest.fixture(scope="module")
def files(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    train, meta = synthetic_dataset(scenario, 120, seed=21, noise=0.02)
    test, _ = synthetic_dataset(scenario, 40, seed=22, noise=0.02)
    jobs = synthetic_jobs(scenario, 7, seed=23)
    jobs.to_csv(root / "jobs.csv", index=False)
    scenario.save(root / "scenario")
    return {"train": write_dataset(train, meta, root / "train.parquet"),
            "test_csv": write_dataset(test, meta, root / "test.csv"),
            "jobs": root / "jobs.csv", "scenario": root / "scenario", "root": root}


@pytest.fixture(scope="module")
def xgb_dir(files: dict[str, Path]) -> Path:
    out = files["root"] / "xgb-model"
    train_command(files["train"], "xgboost", None, 1, out, seed=3, n_estimators=20)
    return out


def test_train_xgboost_writes_model_and_metrics(xgb_dir: Path) -> None:
    metrics = json.loads((xgb_dir / "metrics.json").read_text())
    assert metrics["kind"] == "xgboost"
    assert metrics["dataset"]["scenario"] == "predictor-test"
    assert json.loads((xgb_dir / "config.json").read_text())["config"]["seed"] == 3


def test_validation_metrics_readable_by_drift_check(xgb_dir: Path) -> None:
    from greensched.feedback.drift import load_validation_metrics

    got = load_validation_metrics(xgb_dir / "metrics.json")
    assert set(got) == {"energy_kwh", "service_s"}
    assert got["energy_kwh"]["mape"] > 0 and got["service_s"]["rmse_log"] > 0


def test_train_lora_with_local_base(files: dict[str, Path], tiny_bert: Path,
                                    tmp_path: Path) -> None:
    metrics = train_command(files["train"], "lora", str(tiny_bert), 1, tmp_path / "lora",
                            max_rows=48, progress=False, max_steps=2, head_width=16)
    assert metrics["n_train"] + metrics["n_val"] == 48
    assert (tmp_path / "lora" / "adapter").is_dir()


def test_train_rejects_unknown_model_and_bad_option(files: dict[str, Path],
                                                    tmp_path: Path) -> None:
    with pytest.raises(GreenSchedError, match="unknown model 'forest'"):
        train_command(files["train"], "forest", None, 1, tmp_path / "m")
    with pytest.raises(GreenSchedError, match="--base-model applies to --model lora"):
        train_command(files["train"], "xgboost", "/somewhere", 1, tmp_path / "m")


def test_predict_jobs_and_coefficients(files: dict[str, Path], xgb_dir: Path,
                                       tmp_path: Path, scenario: Scenario) -> None:
    out = tmp_path / "pred.csv"
    coef = tmp_path / "coefficients.csv"
    written = predict_command(xgb_dir, files["scenario"], files["jobs"], out, coef)
    assert written == {"predictions": out, "coefficients": coef}
    pred = pd.read_csv(out)
    assert len(pred) == 7 * len(scenario.dcs)
    assert list(pred.columns[:4]) == ["job_id", "dc", "energy_kwh", "energy_kwh_p10"]
    assert set(pred["dc"]) == set(scenario.dcs)
    again = load_scenario(files["scenario"], coefficients=coef)
    assert again.coefficients is not None
    assert dict(again.coefficients.sizes) == {"hour": 12, "dc": 4, "query_type": 3}


def test_predict_argument_errors(files: dict[str, Path], xgb_dir: Path) -> None:
    with pytest.raises(GreenSchedError, match="nothing to write"):
        predict_command(xgb_dir, files["scenario"], files["jobs"], None, None)
    with pytest.raises(GreenSchedError, match="--out needs --jobs"):
        predict_command(xgb_dir, files["scenario"], None, Path("x.csv"), None)


def test_evaluate_writes_report_plots_metrics(files: dict[str, Path], xgb_dir: Path,
                                              tmp_path: Path) -> None:
    metrics = evaluate_command(xgb_dir, files["test_csv"], tmp_path / "report")
    for name in ("report.md", "metrics.json", "pred_vs_actual_energy_kwh.png",
                 "pred_vs_actual_service_s.png"):
        assert (tmp_path / "report" / name).is_file(), name
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| dc003 |" in text and "Action accuracy" in text
    for key in ("rmse", "mape", "r2", "coverage_p10_p90"):
        assert key in metrics["energy_kwh"]["dc000"]
    assert 0 <= metrics["action_accuracy"] <= 1


def test_accuracy_report_side_by_side(files: dict[str, Path], tiny_bert: Path,
                                      tmp_path: Path) -> None:
    res = write_accuracy_report(files["train"], files["test_csv"], tmp_path, lora_epochs=1,
                                base_model=str(tiny_bert), max_train_rows=60,
                                lora_options={"max_steps": 2, "head_width": 16},
                                xgb_options={"n_estimators": 10})
    text = res["report"].read_text()
    assert "| energy_kwh MAPE | ≤ 5.00 % |" in text
    assert "| service_s MAPE | ≤ 3.00 % |" in text
    assert "lora, energy_kwh: MAPE" in text and "xgboost, service_s: MAPE" in text
    assert (tmp_path / "predictor_accuracy" / "lora" / "report.md").is_file()
