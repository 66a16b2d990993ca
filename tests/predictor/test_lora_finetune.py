"""LoRA fine-tuning really adapts the encoder: adapters move, the validation loss beats the
frozen-base model on a task only the text can solve, early stopping keeps the best adapters,
the cached partial forward pass is exact, and warm starts continue from the current adapters."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greensched.predictor import BasePredictor, load_predictor
from greensched.predictor.lora import LoraPredictor

#: Text only (no numeric side input), so that whatever the model knows it read from the prompt
#: through the encoder: a frozen random encoder + head cannot do well, adapters can.
TEXT_TASK: dict[str, Any] = {
    "numeric_features": False, "calibration_fraction": 0.0, "val_fraction": 0.25,
    "head_warmup_epochs": 40, "max_steps": None, "learning_rate": 2e-2,
}


def _lora_state(model: LoraPredictor) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.net_.state_dict().items()
            if "lora_" in k}


@pytest.fixture(scope="module")
def text_models(make: Callable[..., BasePredictor],
                dataset: pd.DataFrame) -> dict[str, LoraPredictor]:
    frozen = make("lora", freeze_base=True, **TEXT_TASK).fit(dataset)
    tuned = make("lora", epochs=12, patience=12, **TEXT_TASK).fit(dataset)
    assert isinstance(frozen, LoraPredictor) and isinstance(tuned, LoraPredictor)
    return {"frozen": frozen, "lora": tuned}


def test_adapters_move_and_beat_the_frozen_base(text_models: dict[str, LoraPredictor]) -> None:
    frozen, tuned = text_models["frozen"], text_models["lora"]
    hf, ht = frozen.metrics_["history"], tuned.metrics_["history"]
    assert hf["variant"] == "frozen" and ht["variant"] == "lora"
    # LoRA B starts at zero; after fine-tuning the kept (best) adapters are far from it
    assert ht["adapter_norm_start"] == 0.0
    assert ht["adapter_norm"] > 1.0
    b = [v for k, v in _lora_state(tuned).items() if "lora_B" in k]
    assert b and all(np.abs(x).max() > 1e-3 for x in b)
    # the best epoch is a fine-tuned one, not the warmed-up start (epoch 0), and it beat
    # the start, which is exactly the frozen model (same heads, same warm-up)
    assert ht["best_epoch"] >= 1 and ht["finetune_improved"] and ht["beat_frozen"] is True
    assert ht["frozen_val_metric"] == pytest.approx(hf["best_val_metric"], rel=1e-6)
    assert ht["best_val_metric"] < ht["frozen_val_metric"]
    assert not ht["restored_start"]
    # same split (same seed): joint fine-tuning beats the frozen encoder + head clearly
    assert ht["best_val_loss"] < 0.8 * hf["best_val_loss"]
    mape = {k: m.metrics_["validation"]["energy_kwh"]["mape"] for k, m in text_models.items()}
    assert mape["lora"] < mape["frozen"]


def test_frozen_variant_has_no_adapters_and_round_trips(
        text_models: dict[str, LoraPredictor], dataset: pd.DataFrame, tmp_path: Path) -> None:
    frozen = text_models["frozen"]
    assert _lora_state(frozen) == {}
    d = frozen.save(tmp_path / "frozen")
    assert not (d / "adapter").exists() and (d / "heads.safetensors").is_file()
    loaded = load_predictor(d)
    assert isinstance(loaded, LoraPredictor) and loaded.variant == "frozen"
    pd.testing.assert_frame_equal(frozen.predict_frame(dataset.iloc[:8]),
                                  loaded.predict_frame(dataset.iloc[:8]), check_exact=True)


def test_early_stopping_keeps_the_best_adapters(make: Callable[..., BasePredictor],
                                                dataset: pd.DataFrame) -> None:
    from greensched.predictor.dataset import validate_dataset
    from greensched.predictor.lora_train import _Data, _val_loss

    # a rate this high overshoots after a few epochs: training stops on a worse state
    model = make("lora", epochs=10, patience=2, **{**TEXT_TASK, "learning_rate": 0.1})
    assert isinstance(model, LoraPredictor)
    model.fit(dataset)
    h = model.metrics_["history"]
    assert 1 <= h["best_epoch"] < h["epochs"], h["val_loss"]  # stopped after worse epochs
    assert h["best_val_loss"] == pytest.approx(h["val_loss"][h["best_epoch"] - 1])
    # the restored network (adapters and heads) reproduces the best validation loss
    _, val, _ = model._split(validate_dataset(dataset, model.dcs_))
    assert val is not None
    d = _Data(model, val)
    d.cache(model.net_, 0, False, 64)
    assert _val_loss(model, d, 0) == pytest.approx(h["best_val_loss"], rel=1e-4)


@pytest.mark.parametrize("start", [0, 1, 2])
def test_cached_partial_forward_is_exact(tiny_bert: Path, start: int) -> None:
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from greensched.predictor.lora import _quiet_peft
    from greensched.predictor.lora_net import build_net

    tok = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    base = AutoModel.from_pretrained(tiny_bert, local_files_only=True)
    with _quiet_peft():
        enc = get_peft_model(base, PeftLoraConfig(r=4, target_modules=["query", "value"],
                                                  layers_to_transform=[1]))
    torch.manual_seed(1)
    for n, p in enc.named_parameters():  # non-zero adapters, so that they matter
        if "lora_B" in n:
            p.data.normal_()
    net = build_net(enc, 32, 0, 0, 2, 8, 4, 0.0).eval()
    batch = tok(["chat a1 in 512 out 128 ; 1 2 3", "code a2 in 7 ; 9"], padding=True,
                return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full = net.pool(ids, mask)
        hidden, pooled = net.hidden_after(ids, mask, start)
        part = net.pool_from(hidden, mask, start)
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, full, atol=1e-5, rtol=1e-5)


def test_warm_start_continues_from_current_adapters(
        text_models: dict[str, LoraPredictor], dataset: pd.DataFrame, tmp_path: Path) -> None:
    tuned = text_models["lora"]
    loaded = load_predictor(tuned.save(tmp_path / "tuned"))
    assert isinstance(loaded, LoraPredictor)
    before = _lora_state(loaded)
    # a vanishing learning rate: continuing must leave the adapters (and predictions) as they
    # are, which a fresh fit (adapters from zero) cannot
    loaded.config.learning_rate = 1e-12
    loaded.config.head_learning_rate = 1e-12
    loaded.config.epochs = 1
    loaded.fit(dataset, warm_start=True)
    h = loaded.metrics_["history"]
    assert h["warm_start"] is True and "head_warmup" not in h
    assert h["adapter_norm_start"] == pytest.approx(tuned.metrics_["history"]["adapter_norm"])
    after = _lora_state(loaded)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6)
    a = tuned.predict_frame(dataset.iloc[:8]).filter(like="energy_kwh__").to_numpy()
    b = loaded.predict_frame(dataset.iloc[:8]).filter(like="energy_kwh__").to_numpy()
    np.testing.assert_allclose(b, a, rtol=1e-4)
    # with a real rate the adapters keep training from there
    loaded.config.learning_rate = 2e-2
    loaded.config.epochs = 2
    loaded.fit(dataset, warm_start=True)
    moved = max(float(np.abs(_lora_state(loaded)[k] - before[k]).max()) for k in before)
    assert moved > 1e-4


def test_cached_training_matches_the_full_forward(make: Callable[..., BasePredictor],
                                                  dataset: pd.DataFrame) -> None:
    """Training on cached lower-layer activations gives the loss *and* the adapter gradients
    of the full forward pass (so the cache cuts nothing off from the loss)."""
    import torch

    from greensched.predictor.dataset import validate_dataset
    from greensched.predictor.lora_train import _Data, _forward, clear_shared_cache, loss_of

    model = make("lora", lora_layers=1, epochs=1, max_steps=3, head_warmup_epochs=2)
    assert isinstance(model, LoraPredictor)
    model.fit(dataset)
    model._make_trainable()  # unmerged adapters, as in training
    net = model.net_.eval()  # no dropout: both paths must agree exactly
    torch.manual_seed(3)
    for n, p in net.named_parameters():
        if "lora_B" in n:
            p.data.normal_(std=0.5)  # adapters that matter
    rows = validate_dataset(dataset, model.dcs_).iloc[:24].reset_index(drop=True)
    clear_shared_cache()
    cached, plain = _Data(model, rows), _Data(model, rows)
    cached.cache(net, 1, True, 8, dtype=torch.float32)
    plain.cache(net, 1, False, 8)
    assert cached.hidden is not None and plain.hidden is None
    idx = torch.arange(len(rows))
    out: list[tuple[float, list[torch.Tensor]]] = []
    for d in (cached, plain):
        net.zero_grad(set_to_none=True)
        loss = loss_of(model.config, _forward(model, d, idx, 1), d.z[idx], d.act[idx])
        loss.backward()
        grads = [p.grad.clone() for n, p in net.named_parameters() if "lora_B" in n]
        out.append((float(loss.detach()), grads))
    assert abs(out[0][0] - out[1][0]) < 1e-5
    assert out[0][1] and all(float(g.abs().max()) > 0 for g in out[0][1])
    for a, b in zip(out[0][1], out[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_variants_share_the_cached_activations(make: Callable[..., BasePredictor],
                                               dataset: pd.DataFrame) -> None:
    """A frozen fit after a lora fit on the same rows reuses its cached embeddings and gives
    exactly the model a fit from scratch gives."""
    from greensched.predictor.lora_train import clear_shared_cache

    clear_shared_cache()
    alone = make("lora", freeze_base=True, head_warmup_epochs=5).fit(dataset)
    assert alone.metrics_["history"]["cache"]["shared_hits"] == 0
    clear_shared_cache()
    make("lora", epochs=1, max_steps=2, head_warmup_epochs=2).fit(dataset)
    shared = make("lora", freeze_base=True, head_warmup_epochs=5).fit(dataset)
    assert shared.metrics_["history"]["cache"]["shared_hits"] == 2  # training and validation
    pd.testing.assert_frame_equal(alone.predict_frame(dataset.iloc[:8]),
                                  shared.predict_frame(dataset.iloc[:8]), check_exact=True)
    clear_shared_cache()


#: Fine-tuning that must make things worse: adapters and heads at a rate that wrecks the
#: warmed-up model within an epoch (numeric features on: the warm-up alone is good).
WRECK: dict[str, Any] = {"epochs": 2, "max_steps": None, "head_warmup_epochs": 30,
                         "learning_rate": 1.0, "finetune_head_lr_scale": 1.0}


@pytest.fixture(scope="module")
def wrecked(make: Callable[..., BasePredictor], dataset: pd.DataFrame
            ) -> dict[str, LoraPredictor]:
    out = {"frozen": make("lora", freeze_base=True, head_warmup_epochs=30).fit(dataset),
           "kept": make("lora", **WRECK).fit(dataset),
           "restored": make("lora", restore_start_if_better=True, **WRECK).fit(dataset)}
    assert all(isinstance(m, LoraPredictor) for m in out.values())
    return out  # type: ignore[return-value]


def test_a_worse_fine_tune_is_kept_and_reported(wrecked: dict[str, LoraPredictor],
                                                dataset: pd.DataFrame) -> None:
    """No silent fallback: the lora model keeps its best fine-tuning epoch (adapters moved)
    even when it is worse than the frozen start, and the history says it lost."""
    hf, h = wrecked["frozen"].metrics_["history"], wrecked["kept"].metrics_["history"]
    assert h["frozen_val_metric"] == pytest.approx(hf["best_val_metric"], rel=1e-6)
    assert h["best_epoch"] >= 1 and h["adapter_norm"] > 1.0
    assert h["best_val_metric"] > h["frozen_val_metric"]
    assert h["beat_frozen"] is False and h["finetune_improved"] is False
    assert h["restored_start"] is False
    # the selection metric is the validation MAPE of the kept model, in original units
    val = wrecked["kept"].metrics_["validation"]
    assert h["best_val_mape"] == pytest.approx(
        [val["energy_kwh"]["mape"], val["service_s"]["mape"]], rel=1e-4)
    assert h["best_val_metric"] == pytest.approx(0.5 * sum(h["best_val_mape"]))
    # and predictions differ from the frozen model's
    a = wrecked["frozen"].predict_frame(dataset.iloc[:8])
    b = wrecked["kept"].predict_frame(dataset.iloc[:8])
    assert not np.allclose(a.filter(like="energy_kwh__").to_numpy(),
                           b.filter(like="energy_kwh__").to_numpy(), rtol=1e-3)


def test_restore_start_if_better_restores_and_says_so(
        wrecked: dict[str, LoraPredictor], dataset: pd.DataFrame) -> None:
    from greensched.predictor.lora import fit_summary

    h = wrecked["restored"].metrics_["history"]
    assert h["restored_start"] is True and h["beat_frozen"] is False
    assert h["best_epoch"] == 0 and h["adapter_norm"] == 0.0
    assert h["adapter_norm_best_epoch"] > 1.0  # it did fine-tune, then put the start back
    assert h["best_val_metric"] == h["frozen_val_metric"]
    assert "restored the start" in fit_summary(h)
    assert "did NOT beat the frozen start" in fit_summary(wrecked["kept"].metrics_["history"])
    # the restored model is the frozen model
    rows = dataset.iloc[:8]
    np.testing.assert_allclose(
        wrecked["restored"].predict_frame(rows).filter(like="__").to_numpy(dtype=float),
        wrecked["frozen"].predict_frame(rows).filter(like="__").to_numpy(dtype=float),
        rtol=1e-5)


def test_zero_head_rate_trains_the_adapters_alone(make: Callable[..., BasePredictor],
                                                  dataset: pd.DataFrame) -> None:
    """finetune_head_lr_scale=0: the warmed-up heads stay exactly the frozen model's, and the
    adapters still move."""
    frozen = make("lora", freeze_base=True, head_warmup_epochs=10).fit(dataset)
    tuned = make("lora", head_warmup_epochs=10, finetune_head_lr_scale=0.0,
                 learning_rate=1e-2).fit(dataset)
    assert isinstance(frozen, LoraPredictor) and isinstance(tuned, LoraPredictor)
    h = tuned.metrics_["history"]
    assert h["finetune_head_lr"] == 0.0 and h["adapter_norm"] > 0.01 and h["best_epoch"] >= 1
    heads = {k: v for k, v in tuned.net_.state_dict().items() if not k.startswith("encoder.")}
    ref = frozen.net_.state_dict()
    assert heads and all(bool((v == ref[k]).all()) for k, v in heads.items())
