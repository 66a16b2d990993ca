"""Does LoRA fine-tuning beat its frozen-base warm-up?  A small, fixed, real-data experiment.

Run on demand (minutes, not a test); the rows of ``greensched evaluate-predictor --compare
lora,lora-frozen --data /tmp/cmp24k.parquet --sizes 1500 --test-jobs 300``::

    greensched simulate --jobs 24000 --policy random --seed 3 --dataset /tmp/cmp24k.parquet
    nice -n 5 timeout 1800 python bench/lora_finetune_experiment.py --data /tmp/cmp24k.parquet \
        --rows 1500 --test 300 --threads 1 --common '{"epochs": 6, "patience": 6}' \
        --configs '{"frozen": {"freeze_base": true}, "lr2e-4": {"learning_rate": 2e-4}}'

The rows are the comparison's: the twin's DC descriptors are added
(:func:`greensched.predictor.comparison.add_dc_descriptors`), one seeded permutation gives
``--test`` test rows and ``--rows`` training rows (each model then holds out its own
validation and calibration rows, seeded identically, so every config sees the same split).
The cache and the head warm-up are computed once per process and shared by the configs (the
warm-up is deterministic, and fine-tuning seeds its own random stream, so this equals separate
fits).  For every config it prints one JSON line: the warm-up's validation metric (= the
frozen start), the validation loss, selection metric and MAPE of every fine-tuning epoch, the
kept epoch, ``beat_frozen``, the adapter norm, samples/s, the validation loss split by term,
the test MAPE (energy / service) and calibrated coverage, and -- a diagnostic only, never used
for selection -- the test MAPE after every epoch (``test_mape_by_epoch``, epoch 0 = the frozen
start).  A summary table against the frozen model's test MAPE closes the run.
``--grad-check`` also prints, once, the gradient norms of the LoRA A/B matrices and of the
heads on one training batch right after the warm-up (LoRA B starts at 0, so only B has a
gradient then; a zero there would mean the adapters are cut off from the loss).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd


def _rows(path: str, n_rows: int, n_test: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from greensched.cli.predictor import fleet_descriptors
    from greensched.predictor.comparison import add_dc_descriptors
    from greensched.predictor.dataset import read_dataset

    df, _ = read_dataset(path)
    df = add_dc_descriptors(df, fleet_descriptors(None))
    perm = np.random.default_rng(seed).permutation(len(df))
    test = df.iloc[perm[:n_test]].reset_index(drop=True)
    train = df.iloc[perm[n_test:n_test + n_rows]].reset_index(drop=True)
    return train, test


def loss_terms(model: Any, rows: pd.DataFrame) -> dict[str, float]:
    """The validation loss of ``model`` on ``rows`` split into its weighted terms."""
    import torch
    import torch.nn.functional as F

    from greensched.predictor.lora_net import pinball, split_outputs
    from greensched.predictor.lora_train import _Data

    c = model.config
    d = _Data(model, rows)
    model._merge_for_inference()
    with torch.inference_mode():
        o = model.net_(d.ids, d.mask, d.num)
    s = split_outputs(o)
    return {"mse_E": c.lambda_energy * float(F.mse_loss(s["energy_kwh"], d.z[:, 0])),
            "mse_s": c.lambda_service * float(F.mse_loss(s["service_s"], d.z[:, 1])),
            "ce_action": c.lambda_action * float(F.cross_entropy(s["action"], d.act)),
            "pinball": c.lambda_quantile * float(pinball(s["energy_kwh_q"], d.z[:, 0])
                                                 + pinball(s["service_s_q"], d.z[:, 1]))}


def grad_check(train: pd.DataFrame, overrides: dict[str, Any]) -> dict[str, float]:
    """Gradient norms of LoRA A, LoRA B and the heads on one batch after the head warm-up."""
    import torch

    from greensched.predictor.dataset import dataset_dcs, validate_dataset
    from greensched.predictor.features import Featurizer, TargetScaler
    from greensched.predictor.lora import LoraPredictor
    from greensched.predictor.lora_net import encoder_layers
    from greensched.predictor.lora_train import _Data, _forward, _warm_up_heads, loss_of

    m = LoraPredictor(progress=False, **overrides)
    dcs = dataset_dcs(train)
    data = validate_dataset(train, dcs, targets=True)
    tr, va, _ = m._split(data)
    m.dcs_ = dcs
    m.featurizer_ = Featurizer(dcs).fit(tr)
    m.target_scaler_ = TargetScaler().fit(TargetScaler.log_targets(tr, dcs))
    base, m.tokenizer_, _ = m._load_base()
    m.net_ = m._new_net(m._wrap(base), int(base.config.hidden_size))
    layers = encoder_layers(m.net_.encoder)
    assert layers is not None and va is not None
    n_layers = len(layers)
    start = n_layers - (m.config.lora_layers or n_layers)
    dtr, dva = _Data(m, tr), _Data(m, va)
    for d in (dtr, dva):
        d.cache(m.net_, start, True, 128)
    _warm_up_heads(m, dtr, dva, m.config.head_warmup_epochs)
    m.net_.train()
    idx = torch.arange(m.config.batch_size)
    loss = loss_of(m.config, _forward(m, dtr, idx, start), dtr.z[idx], dtr.act[idx])
    loss.backward()
    norms: dict[str, float] = {"lora_A": 0.0, "lora_B": 0.0, "head": 0.0}
    for n, p in m.net_.named_parameters():
        if p.grad is None:
            continue
        key = "lora_A" if "lora_A" in n else "lora_B" if "lora_B" in n else (
            "head" if not n.startswith("encoder.") else None)
        if key:
            norms[key] += float((p.grad.double() ** 2).sum())
    return {k: math.sqrt(v) for k, v in norms.items()} | {"loss": float(loss)}


_WARM: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}


def memoise_warm_up() -> None:
    """Run each distinct head warm-up once per process.  The warm-up is deterministic (heads
    reset from the seed, seeded shuffling and dropout, the same cached embeddings), so later
    configs with the same data, seed and head settings load its result instead of repeating
    it; the fine-tuning phase, which is what the configs vary, always runs."""
    from greensched.predictor import lora_train

    real = lora_train._warm_up_heads

    def warm(model: Any, tr: Any, va: Any, epochs: int) -> dict[str, Any]:
        c = model.config
        key = (lora_train._digest(tr.pooled, tr.num, tr.z), epochs, c.seed, c.head_width,
               c.text_dim, c.text_dropout, c.head_learning_rate, c.batch_size, c.dc_identity,
               c.numeric_features, c.lambda_energy, c.lambda_service, c.lambda_action,
               c.lambda_quantile, str(c.selection_metric), c.weight_decay)
        if key not in _WARM:
            res = real(model, tr, va, epochs)
            _WARM[key] = (lora_train._head_state(model.net_), res)
        state, res = _WARM[key]
        model.net_.load_state_dict(state, strict=False)
        return dict(res)

    lora_train._warm_up_heads = warm


#: Test MAPE (energy, service) after each fine-tuning epoch of the current fit (diagnostic).
_TEST_CURVE: list[list[float]] = []


def track_test_mape(test: pd.DataFrame) -> None:
    """After every fine-tuning evaluation on the validation rows, also score the test rows
    (same cached partial forward) and append their MAPE to :data:`_TEST_CURVE`.  Diagnostic
    only: selection never sees it."""
    from greensched.predictor import lora_train

    real = lora_train._evaluate

    def evaluate(model: Any, d: Any, start: int, heads_only: bool = False) -> dict[str, float]:
        res = real(model, d, start, heads_only)
        if not heads_only and len(test):
            td = getattr(model, "_bench_test_data", None)
            if td is None:
                from greensched.predictor.dataset import validate_dataset

                rows = validate_dataset(test, model.dcs_, targets=True)
                td = lora_train._Data(model, rows)
                # the states below the adapted layers do not depend on the adapters
                td.cache(model.net_, start, True, model.config.predict_batch_size,
                         dtype=__import__("torch").float32)
                model._bench_test_data = td
            t = real(model, td, start)
            _TEST_CURVE.append([t["mape_energy"], t["mape_service"]])
        return res

    lora_train._evaluate = evaluate


def run(train: pd.DataFrame, test: pd.DataFrame, name: str,
        overrides: dict[str, Any]) -> dict[str, Any]:
    from greensched.predictor.comparison import _score
    from greensched.predictor.lora import LoraPredictor

    m = LoraPredictor(progress=False, **overrides)
    _TEST_CURVE.clear()
    t0 = time.perf_counter()
    m.fit(train)
    fit_s = time.perf_counter() - t0
    curve = [list(x) for x in _TEST_CURVE]
    h = m.metrics_["history"]
    _, val, _ = m._split(train)
    terms = loss_terms(m, val) if val is not None else {}
    sc = _score(m, test) if len(test) else {t: {"mape": math.nan, "coverage": math.nan}
                                          for t in ("energy_kwh", "service_s")}
    out = {"name": name, "variant": h.get("variant"), "fit_s": round(fit_s, 1),
           "selection": h.get("selection_metric"),
           "warmup_best_loss": (h.get("head_warmup") or {}).get("best_val_loss"),
           "frozen_val_metric": h.get("frozen_val_metric", h.get("best_val_metric")),
           "val_metric": h.get("val_metric"), "val_mape": h.get("val_mape"),
           "start_val_loss": h.get("start_val_loss"), "val_loss": h.get("val_loss"),
           "train_loss": h.get("train_loss"),
           "best_epoch": h.get("best_epoch"), "epochs": h.get("epochs"),
           "best_val_metric": h.get("best_val_metric"), "best_val_loss": h.get("best_val_loss"),
           "beat_frozen": h.get("beat_frozen"), "restored_start": h.get("restored_start"),
           "adapter_norm": h.get("adapter_norm"),
           "test_mape_by_epoch": curve,
           "samples_per_s": h.get("train_samples_per_s"),
           "cache_s": h.get("cache", {}).get("seconds"),
           "warmup_s": (h.get("head_warmup") or {}).get("seconds"),
           "val_terms": terms,
           "test_mape_E": sc["energy_kwh"]["mape"], "test_mape_s": sc["service_s"]["mape"],
           "test_cover": (sc["energy_kwh"]["coverage"], sc["service_s"]["coverage"]),
           "action_acc": sc.get("action_accuracy")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/lora2k.parquet")
    ap.add_argument("--rows", type=int, default=1500)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default='{"frozen": {"freeze_base": true}, "lora": {}}',
                    help="JSON object: config name -> LoraConfig overrides")
    ap.add_argument("--common", default="{}", help="JSON overrides applied to every config")
    ap.add_argument("--grad-check", action="store_true")
    ap.add_argument("--json", default=None, help="append results (one JSON line each)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    train, test = _rows(args.data, args.rows, max(args.test, 1), args.seed)
    test = test.iloc[:args.test]
    common = {"num_threads": args.threads, "seed": args.seed, **json.loads(args.common)}
    configs = json.loads(args.configs)
    memoise_warm_up()
    track_test_mape(test)
    if args.grad_check:
        first = next(iter(configs.values()))
        print("grad norms after warm-up:", grad_check(train, {**common, **first}), flush=True)
    results = []
    for name, over in configs.items():
        res = run(train, test, name, {**common, **over})
        results.append(res)
        print(json.dumps(res, default=lambda x: round(x, 5) if isinstance(x, float) else str(x)),
              flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps({**res, "overrides": {**common, **over}}, default=str) + "\n")
    print(summary(results), flush=True)


def summary(results: list[dict[str, Any]]) -> str:
    """A markdown table: each config's kept epoch, validation metric against the frozen start,
    and test MAPE against the frozen model's (the first ``freeze_base`` config, if any)."""
    ref = next((r for r in results if r.get("variant") == "frozen"), None)
    lines = ["| config | kept epoch | val metric (frozen start) | beat frozen | adapter norm "
             "| test MAPE E / s | vs frozen E / s | fit s |", "|---|---|---|---|---|---|---|---|"]

    def pct(x: Any) -> str:
        return "–" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.2f}"

    for r in results:
        e, sv = r["test_mape_E"], r["test_mape_s"]
        vs = "–" if ref is None or ref is r else (
            f"{100 * (e - ref['test_mape_E']):+.2f} / {100 * (sv - ref['test_mape_s']):+.2f} pp")
        lines.append(f"| {r['name']} | {r.get('best_epoch')} of {r.get('epochs')} | "
                     f"{pct(r.get('best_val_metric'))} % ({pct(r.get('frozen_val_metric'))} %) | "
                     f"{r.get('beat_frozen')} | {float(r.get('adapter_norm') or 0):.3g} | "
                     f"{pct(e)} / {pct(sv)} % | {vs} | {r['fit_s']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
