"""Saved predictors: read a model directory's ``config.json`` and load a model of any kind.

Kept apart from :mod:`greensched.predictor.base` (the interface) so that loading reads like what
it is: a look-up of the saved ``kind`` in :data:`~greensched.predictor.base.KINDS`, an import of
that estimator's module only (loading XGBoost never imports torch), and its ``_from_saved``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from greensched.predictor.base import FORMAT_VERSION, KINDS, BasePredictor, CheckpointError
from greensched.predictor.dataset import check_same_dcs

__all__ = ["load_predictor", "predictor_class", "read_saved_config"]


def read_saved_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved model directory (checked for kind and format)."""
    d = Path(path)
    cfg = d / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{d}: not a saved predictor (no config.json); train one with "
                              "`greensched train`")
    try:
        saved = json.loads(cfg.read_text("utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{cfg}: not valid JSON ({exc})") from exc
    if saved.get("kind") not in KINDS:
        raise CheckpointError(f"{cfg}: unknown predictor kind {saved.get('kind')!r}; expected "
                              f"one of {sorted(KINDS)}")
    if saved.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg}: format {saved.get('format')!r} is not supported "
                              f"(this version reads {FORMAT_VERSION})")
    return saved


def predictor_class(kind: str) -> type[BasePredictor]:
    """The class registered for a saved ``kind`` (imports its module)."""
    if kind not in KINDS:
        raise CheckpointError(f"unknown predictor kind {kind!r}; expected one of {sorted(KINDS)}")
    module, name = KINDS[kind].split(":")
    cls: type[BasePredictor] = getattr(importlib.import_module(module), name)
    return cls


def load_predictor(path: str | Path, *, dcs: list[str] | None = None) -> BasePredictor:
    """Load a saved predictor of any kind (reads ``kind`` from its ``config.json``).

    Parameters
    ----------
    path
        Directory written by :meth:`BasePredictor.save`.
    dcs
        If given, the DCs the caller will predict for; a model trained for other DCs is rejected
        with :class:`~greensched.predictor.dataset.DCMismatchError` naming the DCs that differ.
    """
    d = Path(path)
    saved = read_saved_config(d)
    cls = predictor_class(saved["kind"])
    model = cls._from_saved(d, saved)
    if dcs is not None:
        check_same_dcs(model.dcs_, [str(x) for x in dcs], "scenario")
    return model
