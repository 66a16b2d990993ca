"""Training of the LoRA predictor (:class:`~greensched.predictor.lora.LoraPredictor`).

Three phases, each recorded in the training history (``metrics_["history"]``):

1. **Cache.**  One no-grad pass over the training and validation prompts stores, per row, the
   hidden states *below* the first adapted layer (``lora_layers`` top layers adapt; the
   layers under them are frozen, so their outputs never change) and the pooled output of the
   untouched model.  Stored as float32 (exact) when that fits in ``cache_max_mb``, else as
   float16 (the upper layers still run in float32), else not at all (every step runs the full
   encoder).  A fresh fit's cache is also kept process-wide (:data:`SHARED_CACHE_ENTRIES`
   row sets, keyed by base model and token ids), so that fitting the other variant on the
   same rows (as the comparison does) does not encode them again.
2. **Head warm-up** ("linear probing, then fine-tuning"): the heads alone, on the cached pooled
   embeddings (exact: LoRA starts as the identity), for up to ``head_warmup_epochs`` epochs
   with early stopping.  The heads are initialised from the seed alone (:func:`reset_heads`),
   so both variants warm up to the *same* model on the same rows.  With ``freeze_base``
   this is the whole training: the result is the frozen base model + an MLP head, named
   variant ``"frozen"``.
3. **Joint fine-tuning** (variant ``"lora"``): the LoRA matrices and the heads together with
   AdamW; the adapters at ``learning_rate``, the already fitted heads at
   ``head_learning_rate × finetune_head_lr_scale`` so that the first steps do not undo the
   warm-up; a linear warm-up of ``warmup_fraction`` of the steps, then cosine decay to 10 %.
   Model selection and early stopping use ``selection_metric`` on the validation rows
   (default ``"mape"``: the mean of the energy and service-time MAPE of the point predictions,
   what the product reports; ``"loss"``: the training loss) and keep the best *fine-tuning*
   epoch's complete trainable state (adapters and heads), so the ``lora`` model always carries
   trained adapters.  The warmed-up start (epoch 0, which *is* the frozen model) is scored as
   the reference: the history records every epoch's loss and metric and whether the kept epoch
   beat the start (``frozen_val_metric``, ``best_val_metric``, ``beat_frozen``,
   ``adapter_norm``: Frobenius norm of all LoRA B matrices, 0 at initialisation).  Only the
   explicit ``restore_start_if_better`` (off by default) puts the start back when fine-tuning
   did not beat it, and then ``restored_start`` is True and a warning is logged.

The head warm-up selects its epoch by the same metric, so both variants are chosen alike.

``warm_start`` skips the warm-up and fine-tunes from the current adapters and heads.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from greensched.predictor.lora_net import encoder_layers, pinball, split_outputs

log = logging.getLogger(__name__)

__all__ = ["SHARED_CACHE_ENTRIES", "adapter_norm", "clear_shared_cache", "fit_lora", "loss_of",
           "reset_heads"]


def loss_of(cfg: Any, o: Any, z: Any, a: Any) -> Any:
    """λ_E·MSE(E) + λ_s·MSE(s) + λ_a·CE(action) + λ_q·(pinball(E) + pinball(s))."""
    import torch.nn.functional as F

    s = split_outputs(o)
    loss = cfg.lambda_energy * F.mse_loss(s["energy_kwh"], z[:, 0])
    loss = loss + cfg.lambda_service * F.mse_loss(s["service_s"], z[:, 1])
    loss = loss + cfg.lambda_action * F.cross_entropy(s["action"], a)
    pin = pinball(s["energy_kwh_q"], z[:, 0]) + pinball(s["service_s_q"], z[:, 1])
    return loss + cfg.lambda_quantile * pin


def adapter_norm(net: Any) -> float:
    """Frobenius norm of all LoRA B matrices (0 before any adapter training)."""
    total = 0.0
    for name, p in net.named_parameters():
        if "lora_B" in name:
            total += float((p.detach().double() ** 2).sum())
    return math.sqrt(total)


#: Entries kept in the process-wide activation cache (each: one row set's cached states).
SHARED_CACHE_ENTRIES = 2
_SHARED: dict[Any, tuple[Any, Any]] = {}


def clear_shared_cache() -> None:
    """Drop every cached activation of :data:`_SHARED`."""
    _SHARED.clear()


def _digest(*tensors: Any) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _trim(ids: Any, mask: Any) -> tuple[Any, Any]:
    length = int(mask.sum(1).max())
    return ids[:, :length], mask[:, :length]


class _Data:
    """Tokens, numeric inputs, targets and (optionally) cached activations of some rows."""

    def __init__(self, model: Any, df: pd.DataFrame) -> None:
        import torch

        self.ids, self.mask, self.num = model._encode(df)
        self.z = torch.from_numpy(model.target_scaler_.transform(
            model.target_scaler_.log_targets(df, model.dcs_)).astype(np.float32))
        self.act = torch.from_numpy(
            pd.Index(model.dcs_).get_indexer(df["best_dc"]).astype(np.int64))
        self.hidden: Any = None
        self.pooled: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def cache(self, net: Any, start: int, keep_hidden: bool, bs: int,
              shared_key: Any = None, dtype: Any = None) -> bool:
        """Fill ``hidden`` (states after ``start`` layers, stored as ``dtype``, default
        float16; only with ``keep_hidden``)
        and ``pooled`` (output of the whole encoder).  With ``shared_key`` (a fresh, untouched
        encoder) the result is looked up in / stored to the process-wide :data:`_SHARED` cache,
        so that fits of different variants on the same rows encode them once; returns whether
        it came from there."""
        import torch

        dtype = torch.float16 if dtype is None else dtype
        key = None
        if shared_key is not None:
            key = (shared_key, (start, str(dtype)) if keep_hidden else None,
                   _digest(self.ids, self.mask))
            hit = _SHARED.get(key) or (None if keep_hidden else next(
                (v for k, v in _SHARED.items() if k[0] == shared_key and k[2] == key[2]),
                None))
            if hit is not None:
                self.hidden = hit[0] if keep_hidden else None
                self.pooled = hit[1]
                return True
        hid, pooled = [], []
        net.eval()
        with torch.no_grad():
            for s in range(0, len(self), bs):
                bi, bm = self.ids[s:s + bs], self.mask[s:s + bs]
                h, p = net.hidden_after(bi, bm, start)
                if keep_hidden:
                    pad = self.ids.shape[1] - h.shape[1]
                    h = torch.nn.functional.pad(h, (0, 0, 0, pad)) if pad else h
                    hid.append(h.to(dtype))
                pooled.append(p)
        self.hidden = torch.cat(hid) if keep_hidden else None
        self.pooled = torch.cat(pooled)
        if key is not None:
            _SHARED[key] = (self.hidden, self.pooled)
            while len(_SHARED) > SHARED_CACHE_ENTRIES:
                del _SHARED[next(iter(_SHARED))]
        return False


def _forward(model: Any, d: _Data, idx: Any, start: int) -> Any:
    net = model.net_
    bi, bm = _trim(d.ids[idx], d.mask[idx])
    if d.hidden is not None:
        hid = d.hidden[idx][:, :bm.shape[1]].float()
        pooled = net.pool_from(hid, bm, start)
    else:
        pooled = net.pool(bi, bm)
    return net.head(pooled, d.num[idx])


def _evaluate(model: Any, d: _Data, start: int, heads_only: bool = False
              ) -> dict[str, float]:
    """Validation loss and point-prediction error of the current network on ``d``.

    Returns ``loss`` (the training loss, :func:`loss_of`), ``mape_energy`` and ``mape_service``
    (mean absolute percentage error of the mean heads in original units, over all rows and
    DCs, as :func:`greensched.predictor.metrics.regression_metrics` computes it) and
    ``metric``: the selection value named by ``config.selection_metric`` (``"mape"``: the
    mean of the two MAPEs; ``"loss"``: the loss)."""
    import torch

    net = model.net_
    net.eval()
    bs = model.config.predict_batch_size
    std = torch.as_tensor(np.asarray(model.target_scaler_.std, dtype=np.float64))
    total = 0.0
    ape = torch.zeros(2, dtype=torch.float64)
    with torch.inference_mode():
        for s in range(0, len(d), bs):
            idx = torch.arange(s, min(s + bs, len(d)))
            o = net.head(d.pooled[idx], d.num[idx]) if heads_only else _forward(
                model, d, idx, start)
            total += float(loss_of(model.config, o, d.z[idx], d.act[idx])) * len(idx)
            parts = split_outputs(o)
            for t, key in enumerate(("energy_kwh", "service_s")):
                # pred / truth = exp((z_pred - z) * sigma) per (row, DC)
                err = (parts[key].double() - d.z[idx, t].double()) * std[t]
                ape[t] += float(torch.expm1(err).abs().mean()) * len(idx)
    n = max(len(d), 1)
    res = {"loss": total / n, "mape_energy": float(ape[0]) / n,
           "mape_service": float(ape[1]) / n}
    res["metric"] = (res["loss"] if model.config.selection_metric == "loss"
                     else 0.5 * (res["mape_energy"] + res["mape_service"]))
    return res


def _val_loss(model: Any, d: _Data, start: int, heads_only: bool = False) -> float:
    """The validation loss alone (:func:`_evaluate`)."""
    return _evaluate(model, d, start, heads_only)["loss"]


def _head_state(net: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()
            if not k.startswith("encoder.")}


def _trainable_state(net: Any) -> dict[str, Any]:
    names = {n for n, p in net.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in net.state_dict().items() if k in names}


def reset_heads(net: Any, seed: int) -> None:
    """Initialise the heads from ``seed`` alone (not from whatever random numbers creating the
    adapters used up), so that both variants start the head warm-up from the same heads and,
    on the same rows, warm up to the same model: the ``lora`` variant's epoch 0 *is* the
    ``frozen`` model, and fine-tuning is compared against exactly that."""
    import torch
    from torch import nn

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, module in net.named_modules():
            if name.startswith("encoder") or not name:
                continue
            if isinstance(module, nn.Linear | nn.LayerNorm):
                module.reset_parameters()
        nn.init.zeros_(net.out.bias)


def _warm_up_heads(model: Any, tr: _Data, va: _Data | None, epochs: int) -> dict[str, Any]:
    """Heads alone on cached pooled embeddings; keeps the epoch best on the selection metric."""
    import torch

    c = model.config
    net = model.net_
    t0 = time.perf_counter()
    params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW(params, lr=c.head_learning_rate, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs,
                                                       eta_min=c.head_learning_rate * 0.02)
    gen = torch.Generator().manual_seed(c.seed + 17)
    n = len(tr)
    bs = max(c.batch_size, 64)
    best: dict[str, float] = {"metric": math.inf}
    best_state, losses, metrics, since, done = None, [], [], 0, 0
    for _ in range(epochs):
        done += 1
        net.train()
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            loss = loss_of(c, net.head(tr.pooled[idx], tr.num[idx]), tr.z[idx], tr.act[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if va is not None:
            ev = _evaluate(model, va, 0, heads_only=True)
            losses.append(ev["loss"])
            metrics.append(ev["metric"])
            if ev["metric"] < best["metric"]:
                best, since, best_state = ev, 0, _head_state(net)
            else:
                since += 1
                if since >= 25:
                    break
    if best_state is not None:
        net.load_state_dict(best_state, strict=False)
    secs = time.perf_counter() - t0
    found = math.isfinite(best["metric"])
    return {"epochs": done, "seconds": secs,
            "samples_per_s": n * done / secs if secs > 0 else float("nan"),
            "best_val_loss": best["loss"] if found else None,
            "best_val_metric": best["metric"] if found else None,
            "best_val_mape": [best["mape_energy"], best["mape_service"]] if found else None,
            "val_loss_every_10": losses[::10], "val_metric_every_10": metrics[::10]}


def _fine_tune(model: Any, tr: _Data, va: _Data | None, start: int,
               history: dict[str, Any], from_warm_heads: bool) -> None:
    """Adapters + heads jointly (phase 3 of the module docstring); updates ``history``.

    Model selection: every epoch is scored on the validation rows by the selection metric
    (``config.selection_metric``); the kept state is the best *fine-tuning* epoch (>= 1), so
    the result always carries trained adapters.  The start (epoch 0: the frozen warm-up, or
    the current model for a warm start) is scored too and recorded as the reference
    (``start_val_metric``, ``beat_start``); only ``restore_start_if_better`` puts it back
    when no epoch beat it, and then ``restored_start`` says so."""
    import torch
    from tqdm.auto import tqdm

    c = model.config
    net = model.net_
    lora_params = [p for n, p in net.named_parameters()
                   if p.requires_grad and n.startswith("encoder.")]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    head_lr = c.head_learning_rate * (c.finetune_head_lr_scale if from_warm_heads else 1.0)
    groups = [{"params": lora_params, "lr": c.learning_rate}]
    if head_lr > 0:  # 0: the warmed-up heads stay fixed, only the adapters train
        groups.append({"params": head_params, "lr": head_lr})
    opt = torch.optim.AdamW(groups, weight_decay=c.weight_decay)
    history["finetune_head_lr"] = head_lr
    n = len(tr)
    steps_per_epoch = math.ceil(n / c.batch_size)
    total = steps_per_epoch * c.epochs
    if c.max_steps is not None:
        total = min(total, c.max_steps)
    warm = max(1, int(total * c.warmup_fraction))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, total - warm)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    seed = c.seed if c.finetune_seed is None else c.finetune_seed
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 2)  # this phase's dropout stream, whatever ran before it
    history.update(selection_metric=str(c.selection_metric), val_metric=[], val_mape=[])
    start_state = _trainable_state(net) if c.restore_start_if_better else None
    start_ev: dict[str, float] | None = None
    if va is not None:
        start_ev = _evaluate(model, va, start)  # the reference: epoch 0
        history["start_val_loss"] = start_ev["loss"]
        history["start_val_metric"] = start_ev["metric"]
        history["start_val_mape"] = [start_ev["mape_energy"], start_ev["mape_service"]]
    best: dict[str, float] = {"metric": math.inf}
    best_state, bad, best_epoch = None, 0, 0
    bar = tqdm(total=total, desc="LoRA fine-tuning", unit="step", disable=not c.progress,
               leave=False)
    t0 = time.perf_counter()
    step = 0
    try:
        for epoch in range(1, c.epochs + 1):
            net.train()
            perm = torch.randperm(n, generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                if step >= total:
                    break
                idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
                loss = loss_of(c, _forward(model, tr, idx, start), tr.z[idx], tr.act[idx])
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
            if va is None:  # nothing to select on: the last epoch is the model
                best_epoch, best_state = epoch, None
            else:
                assert start_ev is not None
                ev = _evaluate(model, va, start)
                history["val_loss"].append(ev["loss"])
                history["val_metric"].append(ev["metric"])
                history["val_mape"].append([ev["mape_energy"], ev["mape_service"]])
                log.info("LoRA fine-tuning epoch %d: train loss %.5g, validation loss %.5g, "
                         "%s %.5g (start %.5g), %.1f samples/s", epoch,
                         history["train_loss"][-1], ev["loss"], c.selection_metric,
                         ev["metric"], start_ev["metric"],
                         step * c.batch_size / (time.perf_counter() - t0))
                if ev["metric"] < best["metric"] - 1e-9:
                    best, bad, best_epoch = ev, 0, epoch
                    best_state = _trainable_state(net)
                else:
                    bad += 1
                    if bad >= c.patience:
                        break
            if step >= total:
                break
    finally:
        bar.close()
    if best_state is not None:
        net.load_state_dict(best_state, strict=False)
    secs = time.perf_counter() - t0
    history["steps"] = step
    history["train_seconds"] = secs
    history["train_samples_per_s"] = min(step * c.batch_size, step * n) / secs if secs else 0.0
    history["best_epoch"] = best_epoch
    history["adapter_norm_best_epoch"] = adapter_norm(net)
    found = math.isfinite(best["metric"])
    history["best_val_loss"] = best["loss"] if found else None
    history["best_val_metric"] = best["metric"] if found else None
    history["best_val_mape"] = [best["mape_energy"], best["mape_service"]] if found else None
    beat = bool(found and start_ev is not None and best["metric"] < start_ev["metric"])
    history["beat_start"] = beat if start_ev is not None else None
    history["finetune_improved"] = beat
    history["restored_start"] = False
    if start_state is not None and start_ev is not None and not beat:
        net.load_state_dict(start_state, strict=False)
        history.update(restored_start=True, best_epoch=0, best_val_loss=start_ev["loss"],
                       best_val_metric=start_ev["metric"],
                       best_val_mape=history["start_val_mape"])
        log.warning("LoRA fine-tuning: no epoch beat the start on validation %s (best %.5g "
                    "at epoch %d, start %.5g); restore_start_if_better restored the start",
                    c.selection_metric, best["metric"], best_epoch, start_ev["metric"])


def fit_lora(model: Any, train: pd.DataFrame, val: pd.DataFrame | None,
             warm_start: bool) -> dict[str, Any]:
    """Run the phases of the module docstring on ``model`` (whose ``net_``, ``tokenizer_``,
    featurizer and target scaling are set up); returns the training history."""
    c = model.config
    net = model.net_
    layers = encoder_layers(net.encoder)
    n_layers = len(layers) if layers is not None else 0
    adapt = n_layers if c.lora_layers is None else min(c.lora_layers, n_layers)
    start = n_layers - adapt if layers is not None else 0
    history: dict[str, Any] = {"variant": model.variant, "train_loss": [], "val_loss": [],
                               "epochs": 0, "steps": 0}
    t0 = time.perf_counter()
    tr = _Data(model, train)
    va = _Data(model, val) if val is not None else None
    hidden = net.encoder.config.hidden_size if hasattr(net.encoder, "config") else 0
    import torch

    # float32 (exact) when it fits in cache_max_mb, else float16 (half the memory)
    cache_mb = 4.0 * (len(tr) + (len(va) if va else 0)) * tr.ids.shape[1] * hidden / 2**20
    dtype = torch.float32 if cache_mb <= c.cache_max_mb else torch.float16
    if dtype == torch.float16:
        cache_mb /= 2
    keep = (c.cache_activations and layers is not None and not c.freeze_base
            and cache_mb <= c.cache_max_mb)
    # a fresh fit's encoder is the untouched base model (LoRA B = 0): its activations can be
    # shared with other fits on the same rows (e.g. the lora and frozen variants)
    shared = None if warm_start else (str(c.base_model or "default"), c.max_length)
    hits = [d.cache(net, start, keep, c.predict_batch_size, shared, dtype)
            for d in (tr, va) if d is not None]
    history["cache"] = {"hidden_cached": keep, "from_layer": start, "layers": n_layers,
                        "adapted_layers": 0 if c.freeze_base else adapt,
                        "megabytes": cache_mb if keep else 0.0, "shared_hits": sum(hits),
                        "dtype": str(dtype).replace("torch.", "") if keep else None,
                        "seconds": time.perf_counter() - t0}
    if not warm_start:
        reset_heads(net, c.seed)
        torch.manual_seed(c.seed + 1)  # the warm-up's dropout stream, the same for both
    if c.freeze_base:
        epochs = max(c.head_warmup_epochs, 1) if not warm_start else max(c.epochs, 1)
        h = _warm_up_heads(model, tr, va, epochs)
        history["head_warmup"] = h
        history.update(epochs=h["epochs"], train_seconds=h["seconds"],
                       train_samples_per_s=h["samples_per_s"], best_val_loss=h["best_val_loss"],
                       best_val_metric=h["best_val_metric"], best_val_mape=h["best_val_mape"],
                       selection_metric=str(c.selection_metric), best_epoch=0,
                       finetune_improved=False)
        if va is not None:
            history["val_loss"] = [h["best_val_loss"]]
            history["val_metric"] = [h["best_val_metric"]]
        history["adapter_norm"] = 0.0
        return history
    warmed = False
    if c.head_warmup_epochs > 0 and not warm_start:
        history["head_warmup"] = _warm_up_heads(model, tr, va, c.head_warmup_epochs)
        warmed = True
    history["adapter_norm_start"] = adapter_norm(net)
    _fine_tune(model, tr, va, start, history, from_warm_heads=warmed or warm_start)
    history["adapter_norm"] = adapter_norm(net)
    # a fresh fit's start is the frozen model (the warmed-up heads on the untouched encoder):
    # whether fine-tuning beat it is the question the "lora" variant answers
    frozen_start = warmed and va is not None
    history["frozen_val_metric"] = history.get("start_val_metric") if frozen_start else None
    history["beat_frozen"] = history.get("beat_start") if frozen_start else None
    return history
