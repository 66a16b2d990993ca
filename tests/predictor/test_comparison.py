"""The fair comparison: one split for all variants, transfer tests, DC descriptors, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor.comparison import (
    ComparisonConfig,
    add_dc_descriptors,
    as_dc,
    drop_dc,
    run_comparison,
    write_comparison_markdown,
)
from greensched.predictor.dataset import dataset_dcs


def _descriptors(dcs: list[str], types: list[str]) -> pd.DataFrame:
    rows = [{"dc": d, "query_type": k, "gpu_memory_gb": 40.0 * (1 + j % 2),
             "model_params_b": 7.0 + i} for j, d in enumerate(dcs) for i, k in enumerate(types)]
    return pd.DataFrame(rows)


def test_descriptors_drop_and_substitute(dataset: pd.DataFrame) -> None:
    dcs = dataset_dcs(dataset)
    types = sorted(dataset["query_type"].unique())
    df = add_dc_descriptors(dataset, _descriptors(dcs, types))
    k = types.index(df["query_type"].iloc[0])
    assert df["gpu_memory_gb__dc001"].iloc[0] == 80.0
    assert df["model_params_b__dc001"].iloc[0] == 7.0 + k
    gone = drop_dc(df, "dc003")
    assert not [c for c in gone.columns if c.endswith("__dc003")]
    assert "dc003" not in set(gone["best_dc"])
    moved = as_dc(df, "dc003", "dc000")
    np.testing.assert_array_equal(moved["energy_kwh__dc000"], df["energy_kwh__dc003"])
    np.testing.assert_array_equal(moved["gpu_memory_gb__dc000"], df["gpu_memory_gb__dc003"])
    with pytest.raises(GreenSchedError, match="no 'gpu_memory_gb' for dc"):
        add_dc_descriptors(dataset, _descriptors(dcs[:2], types))
    with pytest.raises(GreenSchedError, match="unknown predictor variant 'gbm'"):
        ComparisonConfig(variants=("gbm",))


def test_comparison_runs_every_variant_on_one_split(dataset: pd.DataFrame, tiny_bert: Path,
                                                    tmp_path: Path) -> None:
    dcs = dataset_dcs(dataset)
    df = add_dc_descriptors(dataset, _descriptors(dcs, sorted(dataset["query_type"].unique())))
    lora: dict[str, Any] = {"base_model": str(tiny_bert), "epochs": 1, "max_steps": 3,
                            "head_width": 16, "progress": False, "head_warmup_epochs": 3}
    cfg = ComparisonConfig(
        variants=("lora-frozen", "xgboost"), sizes=(60, 110), test_jobs=30,
        transfer_train_jobs=60, hour_range=(6, 18), max_rows={"lora-frozen": 60},
        recalibrate_jobs=20,
        options={"lora": lora, "lora-frozen": lora,
                 "xgboost": {"n_estimators": 10, "action_n_estimators": 5, "n_jobs": 1}})
    lines: list[str] = []
    res = run_comparison(df, cfg, report=lines.append)
    assert set(res["random"][60]) == {"lora-frozen", "xgboost"}
    assert set(res["random"][110]) == {"xgboost"}  # lora-frozen capped at 60
    assert any("lora-frozen at 110" in s for s in res["skipped"])
    r = res["random"][60]["lora-frozen"]
    assert r["history_variant"] == "frozen" and r["n_train"] == 60 and r["n_test"] == 30
    assert res["random"][110]["xgboost"]["n_boosters"] == 3
    assert 0.0 <= r["energy_kwh"]["coverage"] <= 1.0 and r["jobs_per_s"] > 0
    assert 0.0 < r["energy_kwh"]["coverage_se"] < 0.2
    assert set(r["service_s"]["coverage_by_dc"]) == set(dcs)
    assert r["calibrated_on"]["rows"] == "validation+calibration"
    # scored again with the output lengths hidden (the assigner's view): the length decides
    # much of a job's energy, so hiding it must cost accuracy
    x = res["random"][110]["xgboost"]
    assert x["output_unknown"]["energy_kwh"]["mape"] > x["energy_kwh"]["mape"]
    assert 0.0 <= x["output_unknown"]["service_s"]["coverage"] <= 1.0
    lo = res["leave_one_dc_out"]
    assert lo["dc"] == "dc003" and lo["descriptors"] == ["gpu_memory_gb", "model_params_b"]
    assert set(lo["results"]) == {"lora-frozen", "xgboost"}
    assert np.isfinite(lo["results"]["xgboost"]["energy_kwh"]["mape"])
    assert res["hours"]["range"] == [6, 18]
    rc = res["hours"]["results"]["xgboost"]["recalibrated"]
    assert rc["n_recalibrate"] == 20 and rc["n_scored"] == 10
    assert 0.0 <= rc["energy_kwh"]["after"] <= 1.0
    assert lo["results"]["xgboost"]["recalibrated"]["n_scored"] == 10
    assert len(lines) == 3 + 2 + 2
    path = write_comparison_markdown(res, tmp_path / "cmp.md", command="greensched x",
                                     dataset="d.parquet")
    text = path.read_text()
    assert "Regenerate: `greensched x`" in text and "## Leave one DC out: dc003" in text
    assert "accelerator: none" in text and "load average" in text
    # 3 tables, 2×2 recal rows, 2 per-DC, 1 with output lengths hidden
    assert text.count("\n| lora-frozen | ") == 3 + 4 + 2 + 1
    assert "### Output length unknown" in text
    assert "## Calibrated p10–p90 coverage per target and DC" in text
    assert "| variant | train jobs | target | " + " | ".join(dcs) + " | all |" in text
    assert "the first 20 in time order" in text
    assert set(rc["random"]) == {"energy_kwh", "service_s"}
    assert "leave one DC out: energy MAPE: **" in text


def test_winners_name_exact_ties() -> None:
    """A fine-tuned model that kept its frozen start ties with the frozen one: both named."""
    from greensched.predictor.comparison_report import _winners

    def res(mape: float, fit_s: float) -> dict[str, object]:
        t = {"mape": mape, "coverage": 0.8}
        return {"energy_kwh": t, "service_s": t, "fit_seconds": fit_s, "jobs_per_s": 10.0}

    line = _winners("t", {"lora": res(0.03, 200.0), "lora-frozen": res(0.03, 30.0),
                          "xgboost": res(0.05, 1.0)})
    assert "energy MAPE: **lora = lora-frozen**" in line
    assert "training time: **xgboost**" in line
