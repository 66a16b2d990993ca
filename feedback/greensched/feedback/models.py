"""Putting trained predictors into a model registry: what ``greensched model ...`` does.

:func:`register_model` checks that a directory is a saved predictor (its ``config.json`` names a
known kind and format), copies it into the registry as a new version with the predictor's kind
and validation error (from its ``metrics.json``) as metadata, and optionally promotes it.
:func:`registry_rows` lists the versions for a table.  The registry itself (atomic promotion,
rollback, hot reloading) is :mod:`greensched.feedback.registry`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greensched.errors import GreenSchedError
from greensched.feedback.registry import ModelRegistry, RegistryError, VersionInfo

__all__ = [
    "NOTHING_PROMOTED_HINT",
    "register_model",
    "registry_rows",
    "require_current",
    "validation_error",
]

#: How to fix "nothing promoted"; ``{registry}`` is filled in.
NOTHING_PROMOTED_HINT = ("register and promote a trained model first: greensched model register "
                         "MODEL_DIR --registry {registry} --promote")


def validation_error(model_dir: str | Path) -> dict[str, dict[str, float]]:
    """``{target: {mape, rmse_log}}`` from a saved predictor's ``metrics.json`` (empty if none)."""
    path = Path(model_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise GreenSchedError(f"{path}: not valid JSON ({exc})") from exc
    val = metrics.get("validation", {}) if isinstance(metrics, dict) else {}
    out: dict[str, dict[str, float]] = {}
    for target in ("energy_kwh", "service_s"):
        m = val.get(target) if isinstance(val, dict) else None
        if isinstance(m, dict):
            out[target] = {k: float(m[k]) for k in ("mape", "rmse_log")
                           if isinstance(m.get(k), int | float)}
    return out


def register_model(registry: ModelRegistry | str | Path, model_dir: str | Path, *,
                   promote: bool = False, notes: str = "",
                   parent: str | None = None) -> VersionInfo:
    """Register the saved predictor in ``model_dir`` as a new version (and promote it).

    Raises
    ------
    GreenSchedError
        ``model_dir`` is not a saved predictor (no or a bad ``config.json``).
    RegistryError
        The registry refuses (unknown parent, ...).
    """
    from greensched.predictor.checkpoint import read_saved_config

    src = Path(model_dir)
    if not src.is_dir():
        raise GreenSchedError(f"model directory {str(src)!r} does not exist; train one with "
                              "greensched train --data DATA --model xgboost --out DIR")
    saved = read_saved_config(src)
    reg = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
    metrics: dict[str, Any] = {}
    val = validation_error(src)
    if val:
        metrics["validation"] = val
    if parent is None:
        parent = reg.current()
    version = reg.register(src, parent=parent, kind=str(saved["kind"]), metrics=metrics,
                           notes=notes or f"registered from {src}")
    if promote:
        reg.promote(version, reason="greensched model register --promote")
    return reg.info(version)


def require_current(registry: ModelRegistry) -> str:
    """The promoted version; raises naming the command to run when there is none."""
    cur = registry.current()
    if cur is None:
        raise RegistryError(f"no model version has been promoted in {registry.root}; "
                            + NOTHING_PROMOTED_HINT.format(registry=registry.root))
    return cur


def registry_rows(registry: ModelRegistry) -> list[dict[str, Any]]:
    """One dict per version (oldest first): version, current, kind, parent, created_at,
    validation energy and service MAPE, notes."""
    cur = registry.current()
    rows = []
    for v in registry.versions():
        info = registry.info(v)
        val = info.metrics.get("validation", {}) if isinstance(info.metrics, dict) else {}
        rows.append({
            "version": v, "current": v == cur, "kind": info.kind, "parent": info.parent,
            "created_at": info.created_at,
            "energy_mape": (val.get("energy_kwh") or {}).get("mape"),
            "service_mape": (val.get("service_s") or {}).get("mape"),
            "notes": info.notes,
        })
    return rows
