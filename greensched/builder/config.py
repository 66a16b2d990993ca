"""Configuration access with located errors (file and field path in every message)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import ScenarioError
from greensched.weights import OBJECTIVES

#: Default of ``[scenario] data_dir``, relative to the configuration file.
DEFAULT_DATA_DIR = "../shared/data"

_HOUR = pd.Timedelta(hours=1)
_WEEK_H = 168
_WRAP_H = 52 * _WEEK_H  # 364 days
_MISSING: Any = object()
_OBJECTIVES = OBJECTIVES


# ================================================================================================
# Configuration access with located errors
# ================================================================================================


class _Node:
    """One table of the configuration, with its field path, for typed access and located errors.

    ``defaults`` (with its own path) supplies values the table does not set itself; an error about
    such a value names the defaults' field.
    """

    def __init__(
        self,
        data: Any,
        path: str,
        file: Path,
        defaults: dict[str, Any] | None = None,
        defaults_path: str | None = None,
    ) -> None:
        if not isinstance(data, dict):
            raise ScenarioError("expected a table", file=file, column=path or None, value=data)
        self.data: dict[str, Any] = data
        self.path = path
        self.file = file
        self.defaults = defaults or {}
        self.defaults_path = defaults_path

    def field(self, key: str) -> str:
        """Field path of ``key`` in this table."""
        return f"{self.path}.{key}" if self.path else key

    def where(self, key: str) -> str:
        """Field path of the place ``key``'s value comes from (this table or the defaults)."""
        if key not in self.data and key in self.defaults and self.defaults_path:
            return f"{self.defaults_path}.{key}"
        return self.field(key)

    def error(self, key: str, message: str, value: Any = _MISSING) -> ScenarioError:
        kwargs: dict[str, Any] = {} if value is _MISSING else {"value": value}
        return ScenarioError(message, file=self.file, column=self.where(key), **kwargs)

    def has(self, key: str) -> bool:
        return key in self.data or key in self.defaults

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.data:
            return self.data[key]
        if key in self.defaults:
            return self.defaults[key]
        if default is _MISSING:
            raise ScenarioError("missing required field", file=self.file, column=self.field(key))
        return default

    def text(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and not self.has(key):
            return value
        if not isinstance(value, str):
            raise self.error(key, "expected a string", value)
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {', '.join(map(repr, choices))}", value)
        return value

    def ident(self, key: str) -> str:
        value = self.text(key)
        if not value.strip() or value != value.strip() or "," in value or "\n" in value:
            raise self.error(
                key, "expected a non-empty identifier without surrounding blanks or commas", value
            )
        return str(value)

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        integer: bool = False,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and not self.has(key):
            return value
        return self.check_number(key, value, lo=lo, hi=hi, lo_open=lo_open, integer=integer)

    def check_number(
        self,
        key: str,
        value: Any,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        integer: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "expected a number", value)
        if not math.isfinite(value):
            raise self.error(key, "expected a finite number", value)
        if integer and value != int(value):
            raise self.error(key, "expected an integer", value)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise self.error(key, f"expected a value {'>' if lo_open else '>='} {lo:g}", value)
        if hi is not None and value > hi:
            raise self.error(key, f"expected a value <= {hi:g}", value)
        return float(value)

    def numbers(self, key: str, length: int, *, lo: float | None = None) -> np.ndarray:
        value = self.raw(key)
        if not isinstance(value, list) or len(value) != length:
            raise self.error(key, f"expected a list of {length} numbers", value)
        out = np.empty(length)
        for n, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(
                item
            ):
                raise ScenarioError(
                    "expected a finite number", file=self.file, column=f"{self.where(key)}[{n}]",
                    value=item,
                )
            if lo is not None and item < lo:
                raise ScenarioError(
                    f"expected a value >= {lo:g}", file=self.file,
                    column=f"{self.where(key)}[{n}]", value=item,
                )
            out[n] = float(item)
        return out

    def table(self, key: str, default: Any = _MISSING) -> _Node:
        value = self.raw(key, {} if default is not _MISSING else _MISSING)
        if not isinstance(value, dict):
            raise self.error(key, "expected a table", value)
        return _Node(value, self.where(key), self.file)

    def check_keys(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key not in known:
                raise ScenarioError(
                    f"unknown field (known fields: {', '.join(sorted(known))})",
                    file=self.file,
                    column=self.field(key),
                )


def _entries(root: _Node, key: str, defaults_key: str) -> list[_Node]:
    value = root.data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise root.error(key, f"expected one or more [[{key}]] tables", value)
    defaults: dict[str, Any] = {}
    if defaults_key in root.data:
        defaults = root.table(defaults_key).data
    return [_Node(v, f"{key}[{n}]", root.file, defaults, defaults_key) for n, v in enumerate(value)]


def _unique(nodes: Sequence[_Node], ids: Sequence[str], kind: str) -> None:
    seen: dict[str, int] = {}
    for n, (node, ident) in enumerate(zip(nodes, ids, strict=True)):
        if ident in seen:
            raise node.error("id", f"duplicated {kind} id (also {kind}[{seen[ident]}])", ident)
        seen[ident] = n


# ================================================================================================
# Cached adapter reads (each file is parsed once per process while it is unchanged)
# ================================================================================================
