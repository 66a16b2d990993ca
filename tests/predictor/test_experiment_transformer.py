"""The transformer as an experiment variant's predictor (``lora`` / ``lora-frozen`` kinds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from greensched.eval.experiment import PredictorKind, load_experiment, run_task
from greensched.eval.experiment.run import transformer_predictions

TINY = """
name = "tiny"
scenario = "synth:3,2,2,6,1"
seeds = 2
greensched = "gs-lora"
reference = "gs"
[jobs]
n_jobs = 40
train_jobs = 60
[[variant]]
label = "gs"
policy = "greensched"
[[variant]]
label = "gs-lora"
policy = "greensched"
predictor = "lora-frozen"
"""


def test_transformer_predictions_drive_a_variant(tmp_path: Path, tiny_bert: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(TINY, encoding="utf-8")
    cfg = load_experiment(path)
    opts = {"base_model": str(tiny_bert), "batch_size": 16, "head_width": 32,
            "progress": False, "head_warmup_epochs": 5}
    given = transformer_predictions(cfg, PredictorKind.LORA_FROZEN, threads=1, options=opts)
    assert sorted(given) == [0, 1]
    energy, service = given[0]
    assert energy.shape == (40, 3) and service.shape == (40, 3)
    assert np.isfinite(energy).all() and (energy > 0).all() and (service > 0).all()
    # on the twin's scale: the predictions were once 1e28 s (a utilisation 2,000 training
    # standard deviations out), which "finite and positive" let through
    from greensched.eval.experiment.run import _jobs, _twin

    exp_e, exp_s = _twin(cfg.scenario).expected(_jobs(cfg, 0)[1])
    for pred, ref in ((energy, exp_e), (service, exp_s)):
        ratio = float(np.median(pred / ref))
        assert 0.2 < ratio < 5.0, ratio
    out = run_task(cfg, "gs-lora", 0, None, given[0])
    assert out["metrics"]["pred_mape_energy"] > 0.0  # a learned model, scored on the twin
    with pytest.raises(ValueError, match="predictions made in the parent"):
        run_task(cfg, "gs-lora", 0)
    with pytest.raises(ValueError, match="not a transformer kind"):
        transformer_predictions(cfg, PredictorKind.XGBOOST)
