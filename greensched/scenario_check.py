"""Every problem of a scenario directory, not only the first (``greensched scenario validate``).

:func:`check_scenario_dir` runs the loader's checks (:mod:`greensched.scenario_tables`) file by
file and column by column, resuming after each bad row, and collects the
:class:`~greensched.errors.ScenarioError` of each problem (file, line, column, value, what was
expected) up to a limit.  When no table has a problem the full :func:`~greensched.scenario.
load_scenario` runs too (cross-file checks, coefficients), so an empty list means the scenario
loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import ScenarioError
from greensched.scenario import _DEFINES, TABLES, _parse_meta, load_scenario
from greensched.scenario_tables import (
    _check_labels,
    _define_labels,
    _first_appearance,
    _hour_positions,
    _numeric,
    _read_csv,
    _table_to_arrays,
)

__all__ = ["DEFAULT_LIMIT", "check_scenario_dir"]

#: Problems reported at most (the rest are counted).
DEFAULT_LIMIT = 20


def _rows_from(check: Callable[[pd.DataFrame], Any], df: pd.DataFrame,
               errors: list[ScenarioError], limit: int) -> bool:
    """Run ``check`` on ``df``; after each failing row, again without that row (lines keep
    their numbers in the file), until it passes or ``limit`` problems are known.  True if the
    first run passed."""
    keep = np.arange(len(df))
    ok = True
    while len(keep) and len(errors) < limit:
        try:
            check(df.iloc[keep])
            return ok
        except ScenarioError as exc:
            ok = False
            if exc.line is None or not 2 <= exc.line < len(keep) + 2:
                errors.append(exc)
                return ok
            row = int(keep[exc.line - 2])
            errors.append(ScenarioError(exc.reason, file=exc.file, line=row + 2,
                                        column=exc.column, value=exc.value))
            keep = np.delete(keep, exc.line - 2)
    return ok


def check_scenario_dir(directory: str | Path, *, limit: int = DEFAULT_LIMIT
                       ) -> list[ScenarioError]:
    """Problems of the scenario directory, at most ``limit`` (empty: it loads).

    Raises
    ------
    ValueError
        ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    root = Path(directory)
    if not root.is_dir():
        return [ScenarioError("scenario directory not found", file=root)]
    errors: list[ScenarioError] = []
    try:
        meta = _parse_meta(root / "scenario.toml")
    except ScenarioError as exc:
        return [exc]
    hours = int(meta["hours"])
    frames: dict[str, pd.DataFrame] = {}
    for spec in TABLES:
        try:
            frames[spec.file] = _read_csv(root / spec.file, spec)
        except ScenarioError as exc:
            errors.append(exc)
    coords: dict[str, Any] = {"hour": list(range(hours))}
    for dim, file in _DEFINES.items():
        if file in frames:
            try:
                coords[dim] = _define_labels(frames[file], root / file, dim)
            except ScenarioError as exc:
                errors.append(exc)
    if "resources.csv" in frames:
        coords["resource"] = _first_appearance(frames["resources.csv"], "resource")
    for spec in TABLES:
        if len(errors) >= limit:
            break
        df, path = frames.get(spec.file), root / spec.file
        if df is None or any(k not in coords for k in spec.keys):
            continue
        keys_ok = True
        for key in spec.keys:
            defined = _DEFINES.get(key, "resources.csv")

            def check(d: pd.DataFrame, path: Path = path, key: str = key,
                      defined: str = defined) -> Any:
                if key == "hour":
                    return _hour_positions(d, path, hours)
                return _check_labels(d, path, key, coords[key], defined)

            keys_ok &= _rows_from(check, df, errors, limit)
        for col in spec.values:
            if col in df.columns:
                def check_col(d: pd.DataFrame, path: Path = path, spec: Any = spec,
                              col: str = col) -> Any:
                    return _numeric(d, path, spec, col)

                _rows_from(check_col, df, errors, limit)
        if keys_ok and len(errors) < limit:
            try:
                _table_to_arrays(df, path, spec, coords, hours)
            except ScenarioError as exc:
                if not any((e.file, e.line, e.column) == (exc.file, exc.line, exc.column)
                           for e in errors):
                    errors.append(exc)
    if not errors:
        try:
            load_scenario(root)
        except ScenarioError as exc:
            errors.append(exc)
    return errors[:limit]
