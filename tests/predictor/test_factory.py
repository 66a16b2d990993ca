"""select_predictor: LoRA when it works and is fast enough, else XGBoost, with a logged reason."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from greensched.predictor import CheckpointError, select_predictor
from greensched.predictor.factory import measure_latency_ms

LOGGER = "greensched.predictor.factory"


def test_lora_chosen_when_it_loads(saved: dict[str, Path],
                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model = select_predictor(saved["lora"], saved["xgboost"], latency_budget_ms=60_000)
    assert model.kind == "lora"
    assert "LoRA model from" in caplog.text


def test_fallback_when_ml_stack_does_not_import(saved: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = select_predictor(saved["lora"], saved["xgboost"])
    assert model.kind == "xgboost"
    assert "falling back to XGBoost" in caplog.text and "peft does not import" in caplog.text


def test_fallback_when_checkpoint_broken(saved: dict[str, Path], tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = select_predictor(tmp_path / "empty", saved["xgboost"])
    assert model.kind == "xgboost"
    assert "does not load" in caplog.text and "no config.json" in caplog.text


def test_fallback_when_over_latency_budget(saved: dict[str, Path],
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = select_predictor(saved["lora"], saved["xgboost"], latency_budget_ms=1e-6)
    assert model.kind == "xgboost"
    assert "over the 0.0 ms budget" in caplog.text
    assert "also exceeds the budget" in caplog.text


def test_fallback_when_dcs_differ(saved: dict[str, Path], caplog: pytest.LogCaptureFixture
                                  ) -> None:
    dcs = ["dc000", "dc001", "dc002", "dc003"]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = select_predictor(saved["lora"], saved["xgboost"], dcs=dcs)
    assert model.kind == "lora"
    with pytest.raises(CheckpointError, match="dc009"):
        select_predictor(saved["lora"], saved["xgboost"], dcs=[*dcs[:3], "dc009"])


def test_no_usable_model(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no LoRA model directory given"):
        select_predictor(None, None)
    with pytest.raises(CheckpointError, match="fallback does not load"):
        select_predictor(None, tmp_path)


def test_wrong_kind_in_lora_slot(saved: dict[str, Path],
                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        model = select_predictor(saved["xgboost"], saved["xgboost"])
    assert model.kind == "xgboost" and "not a LoRA one" in caplog.text


def test_latency_measurement(saved: dict[str, Path]) -> None:
    from greensched.predictor import load_predictor

    ms = measure_latency_ms(load_predictor(saved["xgboost"]), n_jobs=4, repeats=2)
    assert 0 < ms < 10_000


def test_predictor_never_imports_a_solver() -> None:
    import subprocess

    code = (
        "import sys, importlib\n"
        "for m in ('base', 'dataset', 'factory', 'features', 'lora', 'metrics', 'evaluation',"
        " 'prompts', 'report', 'synthetic', 'xgb'):\n"
        "    importlib.import_module('greensched.predictor.' + m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('linopy', 'highspy', 'gurobipy')"
        " or m.startswith('greensched.scheduler')]\n"
        "heavy = [m for m in ('torch', 'xgboost') if m in sys.modules]\n"
        "print(bad, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[] []"


def test_fallback_reason_is_named(saved: dict[str, Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """One warning line per fallback, naming the reason; the model records it."""
    from greensched.predictor.factory import FallbackReason

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        broken = select_predictor(tmp_path / "empty", saved["xgboost"])
    assert broken.selection_["reason"] == FallbackReason.BROKEN_CHECKPOINT
    assert [r.getMessage().count("(reason: broken-checkpoint)") for r in caplog.records] == [1]
    # DC mismatch of the LoRA model alone: the XGBoost model is loaded without the DC check
    dcs = ["dc000", "dc001", "dc002", "dc003"]
    import greensched.predictor.factory as factory

    real = factory.load_predictor

    def lora_mismatch(path: Path, *, dcs: list[str] | None = None) -> object:
        return real(path, dcs=[*dcs[:3], "dc009"] if path == saved["lora"] and dcs else dcs)

    monkeypatch.setattr(factory, "load_predictor", lora_mismatch)
    mismatch = select_predictor(saved["lora"], saved["xgboost"], dcs=dcs)
    assert mismatch.kind == "xgboost"
    assert mismatch.selection_["reason"] == "dc-mismatch"
    assert "dc009" in mismatch.selection_["detail"]
    monkeypatch.setitem(sys.modules, "peft", None)
    assert select_predictor(saved["lora"], saved["xgboost"]).selection_["reason"] == \
        "ml-stack-missing"
