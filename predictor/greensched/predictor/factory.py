"""Choosing the predictor to serve: the LoRA model when it can run (and is fast enough), else
XGBoost.  Every decision is logged (``logging``, logger ``greensched.predictor.factory``) with
its reason, one line: ``predictor: falling back to XGBoost from DIR (reason: <FallbackReason>):
<detail>``; the chosen model carries the same in ``selection_`` (``{"kind", "reason",
"detail", "source"}``; reason ``None`` when LoRA was chosen).
"""

from __future__ import annotations

import importlib
import logging
import statistics
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

from greensched.errors import GreenSchedError
from greensched.predictor.base import BasePredictor, CheckpointError
from greensched.predictor.checkpoint import load_predictor
from greensched.predictor.dataset import DCMismatchError

__all__ = ["MODELS", "FallbackReason", "make_predictor", "measure_latency_ms", "ml_import_error",
           "select_predictor"]


class FallbackReason(StrEnum):
    """Why :func:`select_predictor` fell back to XGBoost."""

    NO_LORA_MODEL = "no-lora-model"
    ML_STACK_MISSING = "ml-stack-missing"
    BROKEN_CHECKPOINT = "broken-checkpoint"
    DC_MISMATCH = "dc-mismatch"
    NOT_A_LORA_MODEL = "not-a-lora-model"
    OVER_LATENCY_BUDGET = "over-latency-budget"

log = logging.getLogger(__name__)

_ML_MODULES = ("torch", "transformers", "peft")


def ml_import_error() -> str | None:
    """``None`` when torch, transformers and peft import, else why not."""
    for name in _ML_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # includes a module set to None in sys.modules
            return f"{name} does not import ({exc})"
    return None


def measure_latency_ms(model: BasePredictor, n_jobs: int = 1, repeats: int = 5) -> float:
    """Median wall time (ms) of one :meth:`~BasePredictor.predict_frame` call on ``n_jobs``
    copies of the model's stored probe row, after one warm-up call."""
    frame = model.probe_frame(n_jobs)
    model.predict_frame(frame)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model.predict_frame(frame)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def select_predictor(
    lora_dir: str | Path | None = None,
    xgb_dir: str | Path | None = None,
    latency_budget_ms: float | None = None,
    *,
    dcs: list[str] | None = None,
    latency_jobs: int = 1,
) -> BasePredictor:
    """Load the LoRA predictor if possible, else the XGBoost one.

    LoRA is chosen when ``lora_dir`` is given, torch/transformers/peft import, the checkpoint
    loads (and, with ``dcs``, covers exactly those DCs) and, with ``latency_budget_ms``, the
    median latency of a ``latency_jobs``-job call is within the budget.  Otherwise the reason
    (:class:`FallbackReason`) is logged as one warning line and ``xgb_dir`` is loaded.  The
    returned model's ``selection_`` records the choice.

    Raises
    ------
    CheckpointError
        Neither model can be used (the message gives both reasons).
    """
    reason = "no LoRA model directory given"
    why = FallbackReason.NO_LORA_MODEL
    if lora_dir is not None:
        err = ml_import_error()
        if err is not None:
            reason, why = err, FallbackReason.ML_STACK_MISSING
        else:
            try:
                model = load_predictor(lora_dir, dcs=dcs)
            except DCMismatchError as exc:
                reason, why = f"the LoRA model does not fit these DCs: {exc}", \
                    FallbackReason.DC_MISMATCH
            except (GreenSchedError, OSError, RuntimeError) as exc:
                reason = f"the LoRA checkpoint {str(lora_dir)!r} does not load: {exc}"
                why = FallbackReason.BROKEN_CHECKPOINT
            else:
                if model.kind != "lora":
                    reason = f"{str(lora_dir)!r} holds a {model.kind!r} model, not a LoRA one"
                    why = FallbackReason.NOT_A_LORA_MODEL
                elif latency_budget_ms is None:
                    log.info("predictor: LoRA model from %s", lora_dir)
                    model.selection_ = {"kind": "lora", "reason": None, "detail": "",
                                        "source": str(lora_dir)}
                    return model
                else:
                    ms = measure_latency_ms(model, latency_jobs)
                    if ms <= latency_budget_ms:
                        log.info("predictor: LoRA model from %s (%.1f ms per %d-job call, "
                                 "budget %.1f ms)", lora_dir, ms, latency_jobs,
                                 latency_budget_ms)
                        model.selection_ = {"kind": "lora", "reason": None,
                                            "detail": f"{ms:.1f} ms", "source": str(lora_dir)}
                        return model
                    reason = (f"the LoRA model takes {ms:.1f} ms per {latency_jobs}-job call, "
                              f"over the {latency_budget_ms:.1f} ms budget")
                    why = FallbackReason.OVER_LATENCY_BUDGET
    if xgb_dir is None:
        raise CheckpointError(f"no usable predictor: {reason}, and no XGBoost model directory "
                              "was given to fall back to")
    try:
        model = load_predictor(xgb_dir, dcs=dcs)
    except GreenSchedError as exc:
        raise CheckpointError(f"no usable predictor: {reason}; the XGBoost fallback does not "
                              f"load either: {exc}") from exc
    log.warning("predictor: falling back to XGBoost from %s (reason: %s) because %s", xgb_dir,
                why.value, reason)
    model.selection_ = {"kind": model.kind, "reason": why.value, "detail": reason,
                        "source": str(xgb_dir)}
    if latency_budget_ms is not None:
        ms = measure_latency_ms(model, latency_jobs)
        if ms > latency_budget_ms:
            log.warning("predictor: the XGBoost fallback also exceeds the budget (%.1f ms > "
                        "%.1f ms); using it anyway", ms, latency_budget_ms)
    return model


#: Predictor kinds :func:`make_predictor` builds.
MODELS = ("lora", "xgboost")


def make_predictor(model: str, *, base_model: str | None = None, epochs: int | None = None,
                   seed: int = 0, **options: Any) -> BasePredictor:
    """An unfitted predictor of kind ``model`` ("lora" or "xgboost") with the given options
    (fields of :class:`~greensched.predictor.lora.LoraConfig` /
    :class:`~greensched.predictor.xgb.XGBoostConfig`)."""
    if model == "lora":
        from greensched.predictor.lora import LoraConfig, LoraPredictor

        extra: dict[str, Any] = {"epochs": epochs} if epochs is not None else {}
        return LoraPredictor(LoraConfig(base_model=base_model, seed=seed, **extra, **options))
    if model == "xgboost":
        from greensched.predictor.xgb import XGBoostConfig, XGBoostPredictor

        if base_model is not None:
            raise GreenSchedError("--base-model applies to --model lora only")
        return XGBoostPredictor(XGBoostConfig(seed=seed, **options))
    raise GreenSchedError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
