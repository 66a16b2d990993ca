"""The scenario's CSV tables: their specs (keys, value columns, integer columns) and a validating
reader that names file, line, column and value in every error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import ScenarioError

__all__ = ["COEFFICIENTS", "MAGNITUDE_BOUNDS", "TABLES", "TableSpec"]

#: Magnitudes the planner's LP can handle, per value column: (smallest allowed value of a
#: strictly positive column, largest allowed absolute value).  Beyond them HiGHS's tolerances
#: (1e-7 relative, coefficients up to about 1e10 apart) make the model meaningless, so loading
#: refuses them, naming file, line and column (docs/scenario-bounds.md lists them).
MAGNITUDE_BOUNDS: dict[str, tuple[float, float]] = {
    "latitude": (0.0, 90.0),
    "longitude": (0.0, 180.0),
    "pue": (0.0, 10.0),
    "carbon_price_usd_per_kg": (0.0, 1e4),
    "population": (0.0, 1e11),
    "input_tokens": (0.0, 1e7),
    "output_tokens": (0.0, 1e7),
    "energy_in_kwh_per_token": (0.0, 1.0),
    "energy_out_kwh_per_token": (0.0, 1.0),
    "delay_penalty_usd_per_s": (0.0, 1e6),
    "capacity": (0.0, 1e12),
    "units_per_token": (0.0, 1e6),
    "delay_s_per_token": (0.0, 1e3),
    "rtt_s": (0.0, 1e4),
    "bandwidth": (1e-9, 1e15),
    "delay_limit_s": (0.0, 1e7),
    "price_usd_per_kwh": (0.0, 1e5),
    "carbon_kg_per_kwh": (0.0, 100.0),
    "renewable_kw": (0.0, 1e10),
    "grid_cap_kw": (0.0, 1e10),
    "wue_l_per_kwh": (0.0, 1e4),
    "ewif_l_per_kwh": (0.0, 1e4),
    "queries": (0.0, 1e12),
    "token_size": (0.0, 1e9),
    "energy_kwh_per_query": (0.0, 1e6),
    "proc_delay_s_per_query": (0.0, 1e7),
}


@dataclass(frozen=True)
class TableSpec:
    """How one CSV file of the exchange format maps onto the dataset.

    Attributes
    ----------
    file
        File name inside the scenario directory.
    keys
        Key columns, in nesting order (outermost first); each is a dimension of the dataset.
    values
        Numeric value columns (dataset variable names).
    text
        Optional non-numeric descriptive columns (stored as string variables).
    signed
        Value columns that may be negative (e.g. wholesale prices, coordinates).
    positive
        Value columns that must be strictly positive.
    at_least_one
        Value columns that must be >= 1 (PUE).
    integer
        Value columns written back as integers when every value is integral.
    optional_values
        Value columns that may be absent (filled with NaN in the dataset, not written back).
    """

    file: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    text: tuple[str, ...] = ()
    signed: frozenset[str] = frozenset()
    positive: frozenset[str] = frozenset()
    at_least_one: frozenset[str] = frozenset()
    integer: frozenset[str] = frozenset()
    optional_values: frozenset[str] = frozenset()


# Order matters: the tables that define a dimension's labels come first.
TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "datacenters.csv",
        ("dc",),
        ("latitude", "longitude", "pue", "carbon_price_usd_per_kg"),
        text=("name",),
        signed=frozenset({"latitude", "longitude"}),
        at_least_one=frozenset({"pue"}),
    ),
    TableSpec(
        "areas.csv",
        ("area",),
        ("latitude", "longitude", "population"),
        text=("name",),
        signed=frozenset({"latitude", "longitude"}),
        integer=frozenset({"population"}),
    ),
    TableSpec(
        "query_types.csv",
        ("query_type",),
        (
            "input_tokens",
            "output_tokens",
            "energy_in_kwh_per_token",
            "energy_out_kwh_per_token",
            "delay_penalty_usd_per_s",
        ),
        integer=frozenset({"input_tokens", "output_tokens"}),
    ),
    TableSpec("resources.csv", ("dc", "resource"), ("capacity",), integer=frozenset({"capacity"})),
    TableSpec("resource_use.csv", ("query_type", "resource"), ("units_per_token",)),
    TableSpec("processing.csv", ("dc", "query_type"), ("delay_s_per_token",)),
    TableSpec(
        "network.csv", ("area", "dc"), ("rtt_s", "bandwidth"), positive=frozenset({"bandwidth"})
    ),
    TableSpec("area_query.csv", ("area", "query_type"), ("delay_limit_s",)),
    TableSpec(
        "hourly_dc.csv",
        ("hour", "dc"),
        (
            "price_usd_per_kwh",
            "carbon_kg_per_kwh",
            "renewable_kw",
            "grid_cap_kw",
            "wue_l_per_kwh",
            "ewif_l_per_kwh",
        ),
        signed=frozenset({"price_usd_per_kwh"}),
        integer=frozenset({"grid_cap_kw"}),
    ),
    TableSpec(
        "demand.csv",
        ("hour", "area", "query_type"),
        ("queries", "token_size"),
        integer=frozenset({"queries"}),
    ),
)

COEFFICIENTS = TableSpec(
    "coefficients.csv",
    ("hour", "dc", "query_type"),
    ("energy_kwh_per_query", "proc_delay_s_per_query"),
)

# Dataset variable names that would clash between tables get a prefix.
_PREFIX = {"datacenters.csv": "dc_", "areas.csv": "area_"}
_DEFINES = {"dc": "datacenters.csv", "area": "areas.csv", "query_type": "query_types.csv"}


def _var_name(spec: TableSpec, column: str) -> str:
    prefix = _PREFIX.get(spec.file, "")
    if prefix and column in ("name", "latitude", "longitude"):
        return prefix + column
    return column


def _read_csv(path: Path, spec: TableSpec) -> pd.DataFrame:
    """Read a table as strings and check its header."""
    if not path.is_file():
        raise ScenarioError(
            f"file is missing; a scenario needs {spec.file} with columns "
            f"{', '.join(spec.keys + spec.text + spec.values)}",
            file=path,
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise ScenarioError("file is empty; expected a header row", file=path, line=1) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot parse as UTF-8 CSV ({exc})", file=path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    dupcols = [c for c in df.columns if list(df.columns).count(c) > 1]
    if dupcols:
        raise ScenarioError("duplicated column in header", file=path, line=1, column=dupcols[0])
    required = (
        spec.keys + spec.text + tuple(v for v in spec.values if v not in spec.optional_values)
    )
    for col in required:
        if col not in df.columns:
            raise ScenarioError(
                f"missing column; the header must contain {', '.join(required)}",
                file=path,
                line=1,
                column=col,
            )
    return df


def _numeric(df: pd.DataFrame, path: Path, spec: TableSpec, col: str) -> np.ndarray:
    """Convert one column to float64, raising on the first bad cell."""
    raw = df[col].str.strip()
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(num)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = df[col].iloc[row]
        what = "empty value" if value.strip() == "" else "not a finite number"
        raise ScenarioError(
            f"{what}; expected a finite number", file=path, line=row + 2, column=col, value=value
        )
    if col in spec.at_least_one:
        bad = num < 1.0
        expected = "expected a value >= 1"
    elif col in spec.positive:
        bad = num <= 0.0
        expected = "expected a value > 0"
    elif col not in spec.signed:
        bad = num < 0.0
        expected = "expected a value >= 0"
    else:
        bad = np.zeros(len(num), dtype=bool)
        expected = ""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"value out of range; {expected}",
            file=path,
            line=row + 2,
            column=col,
            value=df[col].iloc[row],
        )
    low, high = MAGNITUDE_BOUNDS.get(col, (0.0, math.inf))
    bad = np.abs(num) > high
    expected = f"expected |value| <= {high:g}"
    if low > 0:
        bad |= num < low
        expected = f"expected a value in [{low:g}, {high:g}]"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"value out of the supported range; {expected} (the planner's bounds, "
            "docs/scenario-bounds.md)",
            file=path,
            line=row + 2,
            column=col,
            value=df[col].iloc[row],
        )
    return num


def _check_labels(
    df: pd.DataFrame, path: Path, col: str, labels: Sequence[str], defined_in: str
) -> np.ndarray:
    """Return integer positions of ``df[col]`` in ``labels``, raising on unknown labels."""
    index = pd.Index(labels)
    pos = index.get_indexer(df[col].str.strip())
    if (pos < 0).any():
        row = int(np.flatnonzero(pos < 0)[0])
        raise ScenarioError(
            f"unknown {col}; it is not defined in {defined_in} (known: "
            f"{', '.join(map(str, labels[:8]))}{', ...' if len(labels) > 8 else ''})",
            file=path,
            line=row + 2,
            column=col,
            value=df[col].iloc[row],
        )
    return pos


def _hour_positions(df: pd.DataFrame, path: Path, hours: int) -> np.ndarray:
    raw = df["hour"].str.strip()
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(num) | (num != np.round(num)) | (num < 0) | (num >= hours)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ScenarioError(
            f"hour must be an integer slot index in 0..{hours - 1} (scenario.toml hours = {hours})",
            file=path,
            line=row + 2,
            column="hour",
            value=df["hour"].iloc[row],
        )
    return num.astype(np.int64)


def _key_label(keys: tuple[str, ...], coords: dict[str, Sequence[Any]], flat: int) -> str:
    shape = [len(coords[k]) for k in keys]
    idx = np.unravel_index(flat, shape)
    return ", ".join(f"{k}={coords[k][int(i)]!r}" for k, i in zip(keys, idx, strict=True))


def _table_to_arrays(
    df: pd.DataFrame,
    path: Path,
    spec: TableSpec,
    coords: dict[str, Sequence[Any]],
    hours: int,
) -> dict[str, np.ndarray]:
    """Place a validated table on the full key grid; every combination exactly once."""
    positions = []
    for key in spec.keys:
        if key == "hour":
            positions.append(_hour_positions(df, path, hours))
        else:
            positions.append(_check_labels(df, path, key, coords[key], _DEFINES.get(key, "?")))
    shape = tuple(len(coords[k]) for k in spec.keys)
    flat = np.ravel_multi_index(tuple(positions), shape) if positions else np.zeros(0, int)
    order = np.argsort(flat, kind="stable")
    sflat = flat[order]
    dup = np.flatnonzero(sflat[1:] == sflat[:-1])
    if dup.size:
        row = int(order[dup[0] + 1])
        raise ScenarioError(
            f"duplicated key ({_key_label(spec.keys, coords, int(sflat[dup[0]]))}); each "
            f"combination of {', '.join(spec.keys)} must appear exactly once",
            file=path,
            line=row + 2,
            column=spec.keys[-1],
        )
    size = int(np.prod(shape))
    if len(df) != size:
        present = np.zeros(size, dtype=bool)
        present[flat] = True
        missing = int(np.flatnonzero(~present)[0])
        raise ScenarioError(
            f"missing row for {_key_label(spec.keys, coords, missing)}; expected {size} rows "
            f"(one per combination of {', '.join(spec.keys)}), found {len(df)}",
            file=path,
        )
    out: dict[str, np.ndarray] = {}
    for col in spec.values:
        arr = np.full(size, np.nan)
        if col in df.columns:
            arr[flat] = _numeric(df, path, spec, col)
        out[col] = arr.reshape(shape)
    for col in spec.text:
        arr_s = np.empty(size, dtype=object)
        arr_s[flat] = df[col].to_numpy(dtype=object)
        out[col] = arr_s.reshape(shape)
    return out


def _define_labels(df: pd.DataFrame, path: Path, key: str) -> list[str]:
    if df.empty:
        raise ScenarioError(
            f"no rows; this file defines the {key} labels and needs at least one row after "
            "the header",
            file=path,
            line=2,
        )
    labels = df[key].str.strip()
    empty = labels == ""
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise ScenarioError("empty identifier", file=path, line=row + 2, column=key, value="")
    dup = labels.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ScenarioError(
            f"duplicated {key}; each {key} must appear once",
            file=path,
            line=row + 2,
            column=key,
            value=labels.iloc[row],
        )
    return list(labels)


def _first_appearance(df: pd.DataFrame, key: str) -> list[str]:
    return list(pd.unique(df[key].str.strip()))
