"""Fixtures of the predictor tests: a small synthetic scenario and dataset, a tiny randomly
initialised BERT (built from a config, nothing downloaded), and fitted models of each kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from greensched.predictor.base import BasePredictor
from greensched.predictor.synthetic import synthetic_dataset
from greensched.scenario import Scenario
from greensched.synth import synthesize

KINDS = ("lora", "xgboost")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine idle
    OpenMP workers spin; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    """4 DCs, 3 areas, 3 query types, 12 hours (three DCs are hindsight-best for some jobs)."""
    return synthesize(dcs=4, areas=3, types=3, hours=12, seed=0, name="predictor-test")


@pytest.fixture(scope="session")
def dataset(scenario: Scenario) -> pd.DataFrame:
    """160 jobs in the twin's dataset format (closed-form ground truth, 2 % noise)."""
    df, _ = synthetic_dataset(scenario, 160, seed=1, noise=0.02)
    return df


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from greensched.predictor.lora import default_base_model

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(default_base_model(), local_files_only=True)
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
    return out


def _small_config(kind: str, tiny_bert: Path, **kw: Any) -> dict[str, Any]:
    """Fast settings for unit tests."""
    if kind == "lora":
        return {"base_model": str(tiny_bert), "epochs": 2, "batch_size": 16, "max_steps": 12,
                "head_width": 32, "progress": False, "predict_batch_size": 64,
                "head_warmup_epochs": 10, **kw}
    return {"n_estimators": 25, "action_n_estimators": 10, "max_depth": 4, "n_jobs": 1, **kw}


def _make(kind: str, tiny_bert: Path, **kw: Any) -> BasePredictor:
    from greensched.predictor.lora import LoraPredictor
    from greensched.predictor.xgb import XGBoostPredictor

    cls = LoraPredictor if kind == "lora" else XGBoostPredictor
    return cls(**_small_config(kind, tiny_bert, **kw))


@pytest.fixture(scope="session")
def make(tiny_bert: Path) -> Callable[..., BasePredictor]:
    """``make(kind, **config)``: an unfitted predictor with fast test settings."""
    return lambda kind, **kw: _make(kind, tiny_bert, **kw)


@pytest.fixture(scope="session")
def fitted(dataset: pd.DataFrame, make: Callable[..., BasePredictor]) -> dict[str, BasePredictor]:
    """One fitted model per kind (shared: do not refit)."""
    return {kind: make(kind).fit(dataset) for kind in KINDS}


@pytest.fixture(scope="session")
def saved(fitted: dict[str, BasePredictor],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fitted models saved to directories."""
    root = tmp_path_factory.mktemp("saved-models")
    return {kind: model.save(root / kind) for kind, model in fitted.items()}
