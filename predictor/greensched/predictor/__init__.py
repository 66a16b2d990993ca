"""greensched.predictor: per-(job, DC) energy and service-time predictions.

Two estimators share one interface (:class:`~greensched.predictor.base.BasePredictor`): a
LoRA-adapted transformer reading a compact prompt per job
(:class:`~greensched.predictor.lora.LoraPredictor`, needs torch/transformers/peft) and gradient
boosted trees on featurised rows (:class:`~greensched.predictor.xgb.XGBoostPredictor`).
:func:`load_predictor` loads either; :func:`select_predictor` picks LoRA when it works and is
fast enough, else XGBoost.  This package never imports a solver, and importing it does not
import torch or xgboost (the estimator modules do, on use).
"""

from greensched.predictor.base import (
    PRED_VARS,
    BasePredictor,
    CheckpointError,
    NotFittedError,
    PredictorConfig,
)
from greensched.predictor.checkpoint import load_predictor
from greensched.predictor.dataset import DatasetError, DCMismatchError, read_dataset
from greensched.predictor.factory import select_predictor
from greensched.predictor.lora import LoraConfig, LoraPredictor
from greensched.predictor.xgb import XGBoostConfig, XGBoostPredictor

__all__ = [
    "PRED_VARS",
    "BasePredictor",
    "CheckpointError",
    "DCMismatchError",
    "DatasetError",
    "LoraConfig",
    "LoraPredictor",
    "NotFittedError",
    "PredictorConfig",
    "XGBoostConfig",
    "XGBoostPredictor",
    "load_predictor",
    "read_dataset",
    "select_predictor",
]
