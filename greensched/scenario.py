"""The scenario exchange format (version 1) as labelled arrays.

A scenario is a directory holding ``scenario.toml`` and tidy CSV tables (see
``shared/spec/scenario-format.md``).  :func:`load_scenario` validates every file and returns a
:class:`Scenario` whose :attr:`Scenario.ds` is an :class:`xarray.Dataset` with the dimensions
``area, dc, query_type, hour, resource``; :meth:`Scenario.save` writes the same format back so that
load → save → load is identical.

Units are part of the variable names (``price_usd_per_kwh``, ``rtt_s`` ...).  Identifiers are
strings; ``hour`` is an integer slot index ``0..T-1`` (one slot = one hour, so kW held for a slot
is that many kWh).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import ScenarioError
from greensched.scenario_tables import (
    _DEFINES,
    COEFFICIENTS,
    TABLES,
    TableSpec,
    _check_labels,
    _define_labels,
    _first_appearance,
    _read_csv,
    _table_to_arrays,
    _var_name,
)

__all__ = [
    "DELAY_MODELS",
    "DIMS",
    "MAX_HOURS",
    "TABLES",
    "Scenario",
    "TableSpec",
    "canonical_dataset",
    "dataset_from_arrays",
    "variable_dims",
    "load_coefficients",
    "load_scenario",
    "save_coefficients",
]


DIMS = ("area", "dc", "query_type", "hour", "resource")
#: Longest horizon ``scenario.toml`` may declare (hourly slots of a leap year).
MAX_HOURS = 8784
#: Delay models of ``[objective] delay_model`` (green-llm-model.md; docs/delay-model.md).
DELAY_MODELS = ("letter", "per_query")



@dataclass
class Scenario:
    """A validated scenario: metadata plus labelled arrays.

    Attributes
    ----------
    name, description
        Free text from ``scenario.toml``.
    hours
        Number of hourly slots T.
    start
        ISO-8601 UTC time of hour 0, or ``None``.
    water_budget_l
        Water budget Z over the whole horizon in litres, or ``None`` (no cap).
    weights
        Default objective weights ``{"energy", "carbon", "delay"}``.
    delay_model
        ``"letter"`` (the Green-LLM letter's hour-total delay rows) or ``"per_query"`` (per-query
        latency with congestion, ``docs/delay-model.md``); ``[objective] delay_model`` in
        ``scenario.toml``, default ``"letter"``.
    ds
        Dataset with dims ``area, dc, query_type, hour, resource`` holding every table's values.
    coefficients
        Optional predicted coefficients (dims ``hour, dc, query_type``), from ``coefficients.csv``.
    source
        Directory the scenario was loaded from, if any.
    """

    name: str
    description: str
    hours: int
    start: str | None
    water_budget_l: float | None
    weights: dict[str, float]
    ds: xr.Dataset
    coefficients: xr.Dataset | None = None
    source: Path | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)
    delay_model: str = "letter"

    def __post_init__(self) -> None:
        self.ds = canonical_dataset(self.ds)
        if self.delay_model not in DELAY_MODELS:
            raise ScenarioError(
                f"delay_model {self.delay_model!r} is not known; expected one of {DELAY_MODELS}",
                column="objective.delay_model",
            )

    # -- convenient labels -------------------------------------------------------------------
    @property
    def dcs(self) -> list[str]:
        """Data-center identifiers, in file order."""
        return [str(v) for v in self.ds.indexes["dc"]]

    @property
    def areas(self) -> list[str]:
        """Area identifiers, in file order."""
        return [str(v) for v in self.ds.indexes["area"]]

    @property
    def query_types(self) -> list[str]:
        """Query-type identifiers, in file order."""
        return [str(v) for v in self.ds.indexes["query_type"]]

    @property
    def resources(self) -> list[str]:
        """Resource identifiers, in file order."""
        return [str(v) for v in self.ds.indexes["resource"]]

    def sizes(self) -> dict[str, int]:
        """Length of each dimension."""
        return {d: int(self.ds.sizes[d]) for d in DIMS}

    def copy(self) -> Scenario:
        """A deep copy (arrays included) that can be modified freely."""
        return Scenario(
            name=self.name,
            description=self.description,
            hours=self.hours,
            start=self.start,
            water_budget_l=self.water_budget_l,
            weights=dict(self.weights),
            ds=self.ds.copy(deep=True),
            coefficients=None if self.coefficients is None else self.coefficients.copy(deep=True),
            source=self.source,
            extra_meta=dict(self.extra_meta),
            delay_model=self.delay_model,
        )

    def subset(
        self,
        *,
        hours: Sequence[int] | None = None,
        dc: Sequence[str] | None = None,
        area: Sequence[str] | None = None,
        query_type: Sequence[str] | None = None,
    ) -> Scenario:
        """A smaller scenario over the given labels; kept hours are renumbered 0..len-1.

        The water budget is kept as it is (scale it yourself if the horizon shrinks).
        """
        sel: dict[str, Any] = {}
        for dim, labels in (("dc", dc), ("area", area), ("query_type", query_type)):
            if labels is not None:
                known = set(self.ds.indexes[dim])
                bad = [v for v in labels if v not in known]
                if bad:
                    raise ScenarioError(f"subset: unknown {dim} {bad[0]!r}")
                sel[dim] = list(labels)
        ds = self.ds.sel(sel) if sel else self.ds
        coef = (
            self.coefficients.sel({k: v for k, v in sel.items() if k != "area"})
            if (self.coefficients is not None)
            else None
        )
        n_hours = self.hours
        if hours is not None:
            hrs = [int(h) for h in hours]
            if not hrs or min(hrs) < 0 or max(hrs) >= self.hours:
                raise ScenarioError(f"subset: hours must lie in 0..{self.hours - 1}")
            ds = ds.sel(hour=hrs).assign_coords(hour=np.arange(len(hrs), dtype=np.int64))
            if coef is not None:
                coef = coef.sel(hour=hrs).assign_coords(hour=np.arange(len(hrs), dtype=np.int64))
            n_hours = len(hrs)
        new = self.copy()
        new.ds = canonical_dataset(ds.copy(deep=True))
        new.coefficients = None if coef is None else coef.copy(deep=True)
        new.hours = n_hours
        return new

    def equals(self, other: Scenario) -> bool:
        """True when metadata and every array are identical (NaN-aware)."""
        same_meta = (
            self.name == other.name
            and self.description == other.description
            and self.hours == other.hours
            and self.start == other.start
            and self.water_budget_l == other.water_budget_l
            and self.weights == other.weights
            and self.delay_model == other.delay_model
        )
        same_coef = (self.coefficients is None) == (other.coefficients is None) and (
            self.coefficients is None
            or other.coefficients is None
            or self.coefficients.identical(other.coefficients)
        )
        return bool(same_meta and self.ds.identical(other.ds) and same_coef)

    # -- saving ------------------------------------------------------------------------------
    def save(self, directory: str | Path, *, include_coefficients: bool = True) -> Path:
        """Write the scenario in the exchange format; returns the directory.

        Floats are written in their shortest round-trip form, so that loading the result gives
        arrays identical to ``self.ds``.  Files are first written to temporary names and then
        renamed, so an interrupted save never leaves a half-written table behind.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        pending: list[tuple[Path, str]] = [(out / "scenario.toml", self._toml())]
        for spec in TABLES:
            pending.append((out / spec.file, self._table_csv(self.ds, spec)))
        if include_coefficients and self.coefficients is not None:
            pending.append(
                (out / COEFFICIENTS.file, self._table_csv(self.coefficients, COEFFICIENTS))
            )
        for path, text in pending:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        return out

    def _toml(self) -> str:
        lines = [f"name = {json.dumps(self.name, ensure_ascii=False)}"]
        lines.append(f"description = {json.dumps(self.description, ensure_ascii=False)}")
        lines.append(f"hours = {self.hours}")
        if self.start is not None:
            lines.append(f"start = {json.dumps(self.start)}")
        if self.water_budget_l is not None:
            lines.append(f"water_budget_l = {_fmt_float(self.water_budget_l)}")
        for key, value in self.extra_meta.items():
            if isinstance(value, str | int | float | bool):
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[objective]")
        for key in ("energy", "carbon", "delay"):
            lines.append(f"{key} = {_fmt_float(self.weights[key])}")
        if self.delay_model != "letter":
            lines.append(f"delay_model = {json.dumps(self.delay_model)}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _table_csv(ds: xr.Dataset, spec: TableSpec) -> str:
        dims = list(spec.keys)
        coords = [ds.indexes[d] for d in dims]
        grid = pd.MultiIndex.from_product(coords, names=dims).to_frame(index=False)
        columns: dict[str, Any] = {k: grid[k].astype(str) for k in dims}
        text_cols = []
        for col in spec.text:
            var = ds[_var_name(spec, col)].transpose(*dims).to_numpy().ravel()
            columns[col] = pd.Series(var, dtype=object).astype(str)
            text_cols.append(col)
        for col in spec.values:
            arr = ds[_var_name(spec, col)].transpose(*dims).to_numpy().ravel()
            if col in spec.optional_values and np.isnan(arr).all():
                continue
            columns[col] = _fmt_column(arr, col in spec.integer)
        header = list(spec.keys) + text_cols + [c for c in spec.values if c in columns]
        frame = pd.DataFrame({c: columns[c] for c in header})
        return str(frame.to_csv(index=False, lineterminator="\n"))

    # -- views used by the planner ----------------------------------------------------------------
    def energy_kwh_per_query(self) -> xr.DataArray:
        """IT energy per query e_{j,k,t} (kWh), dims (dc, query_type, hour).

        ``coefficients.csv`` when present, else τ^in_k h_k + τ^out_k f_k for every DC and hour.
        """
        if self.coefficients is not None:
            return self.coefficients["energy_kwh_per_query"].transpose("dc", "query_type", "hour")
        ds = self.ds
        per_type = (
            ds["energy_in_kwh_per_token"] * ds["input_tokens"]
            + ds["energy_out_kwh_per_token"] * ds["output_tokens"]
        )
        return per_type.broadcast_like(ds["price_usd_per_kwh"]).transpose(
            "dc", "query_type", "hour"
        )

    def proc_delay_s_per_query(self) -> xr.DataArray:
        """Processing delay per query s_{j,k,t} (s), dims (dc, query_type, hour).

        ``coefficients.csv`` when present, else v_{j,k} (h_k + f_k) for every hour.
        """
        if self.coefficients is not None:
            return self.coefficients["proc_delay_s_per_query"].transpose("dc", "query_type", "hour")
        ds = self.ds
        per = ds["delay_s_per_token"] * (ds["input_tokens"] + ds["output_tokens"])
        return per.broadcast_like(ds["price_usd_per_kwh"]).transpose("dc", "query_type", "hour")

    def with_coefficients(self, coefficients: xr.Dataset | None) -> Scenario:
        """A copy of the scenario using the given predicted coefficients (or none)."""
        new = self.copy()
        if coefficients is not None:
            _check_coefficients_match(coefficients, self)
        new.coefficients = coefficients
        return new


def variable_dims() -> dict[str, tuple[str, ...]]:
    """Dimensions of every dataset variable of the format (its table's key columns)."""
    dims: dict[str, tuple[str, ...]] = {}
    for spec in TABLES:
        for col in spec.values + spec.text:
            dims[_var_name(spec, col)] = spec.keys
    return dims


def dataset_from_arrays(
    values: dict[str, Any],
    *,
    areas: Sequence[str],
    dcs: Sequence[str],
    query_types: Sequence[str],
    resources: Sequence[str],
    hours: int,
) -> xr.Dataset:
    """A scenario dataset from plain arrays, each shaped as its table's key columns.

    ``values`` maps every variable of :func:`variable_dims` (e.g. ``price_usd_per_kwh`` shaped
    (hour, dc), ``dc_name`` shaped (dc,)) to an array; lower-dimensional arrays are broadcast.
    """
    dims = variable_dims()
    missing = sorted(set(dims) - set(values))
    if missing:
        raise ScenarioError(f"dataset_from_arrays: no values for {missing!r}")
    coords = {
        "area": np.asarray(list(areas), dtype=object),
        "dc": np.asarray(list(dcs), dtype=object),
        "query_type": np.asarray(list(query_types), dtype=object),
        "hour": np.arange(hours, dtype=np.int64),
        "resource": np.asarray(list(resources), dtype=object),
    }
    data = {}
    for name, var_dims in dims.items():
        shape = tuple(len(coords[d]) for d in var_dims)
        arr = np.asarray(values[name])
        data[name] = (var_dims, np.broadcast_to(arr, shape).copy())
    return xr.Dataset(data, coords=coords)


def canonical_dataset(ds: xr.Dataset) -> xr.Dataset:
    """Order every variable's dimensions as its table's key columns (outermost first).

    Builders may create variables in any dimension order; the canonical order makes
    :meth:`Scenario.equals` independent of how a scenario was made.
    """
    order = variable_dims()
    missing = [name for name in order if name not in ds.data_vars]
    if missing:
        raise ScenarioError(f"dataset lacks variable(s) {missing!r} required by the format")
    return xr.Dataset(
        {
            str(name): ds[name].transpose(*order.get(str(name), tuple(map(str, ds[name].dims))))
            for name in ds.data_vars
        },
        coords=ds.coords,
        attrs=ds.attrs,
    )


def _check_coefficients_match(coef: xr.Dataset, scen: Scenario) -> None:
    for dim in ("dc", "query_type"):
        a, b = set(map(str, coef.indexes[dim])), set(map(str, scen.ds.indexes[dim]))
        if a != b:
            raise ScenarioError(
                f"coefficients cover {dim}s {sorted(a ^ b)!r} that differ from the scenario's",
                file=COEFFICIENTS.file,
            )
    if int(coef.sizes["hour"]) != scen.hours:
        raise ScenarioError(
            f"coefficients have {int(coef.sizes['hour'])} hours, the scenario {scen.hours}",
            file=COEFFICIENTS.file,
        )


def _fmt_float(x: float) -> str:
    return repr(float(x))


def _toml_value(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _fmt_float(v)
    return json.dumps(v, ensure_ascii=False)


def _fmt_column(arr: np.ndarray, integer: bool) -> pd.Series:
    if integer and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
        return pd.Series(arr.astype(np.int64)).astype(str)
    return pd.Series([repr(float(v)) for v in arr], dtype=object)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ScenarioError(
            "file is missing; a scenario directory needs scenario.toml (name, hours, [objective])",
            file=path,
        )
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"invalid TOML ({exc})", file=path) from exc


def _meta_number(meta: dict[str, Any], key: str, path: Path, *, minimum: float = 0.0,
                 maximum: float = 1e15, column: str | None = None) -> float:
    value = meta[key]
    column = column or key
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError("expected a finite number", file=path, column=column, value=value)
    if value < minimum or value > maximum:
        raise ScenarioError(f"expected a value in [{minimum:g}, {maximum:g}]", file=path,
                            column=column, value=value)
    return float(value)


def _parse_meta(path: Path) -> dict[str, Any]:
    meta = _read_toml(path)
    hours = meta.get("hours")
    if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1:
        raise ScenarioError(
            "hours (T) must be a positive integer", file=path, column="hours", value=hours
        )
    if hours > MAX_HOURS:  # checked before anything is allocated per hour
        raise ScenarioError(
            f"hours (T) must be at most {MAX_HOURS} (one leap year of hourly slots; "
            "docs/scenario-bounds.md): split longer horizons into several scenarios",
            file=path, column="hours", value=hours,
        )
    start = meta.get("start")
    if start is not None:
        start = str(start)
        try:
            pd.Timestamp(start)
        except ValueError as exc:
            raise ScenarioError(
                "start must be an ISO-8601 UTC time", file=path, column="start", value=start
            ) from exc
    water = meta.get("water_budget_l")
    if water is not None:
        water = _meta_number(meta, "water_budget_l", path)
    objective = meta.get("objective", {"energy": 1 / 3, "carbon": 1 / 3, "delay": 1 / 3})
    if not isinstance(objective, dict):
        raise ScenarioError("[objective] must be a table", file=path, column="objective")
    delay_model = objective.get("delay_model", "letter")
    if delay_model not in DELAY_MODELS:
        raise ScenarioError(
            f"unknown delay model; expected one of {', '.join(DELAY_MODELS)}",
            file=path,
            column="objective.delay_model",
            value=delay_model,
        )
    weights = {}
    for key in ("energy", "carbon", "delay"):
        if key not in objective:
            raise ScenarioError(
                "missing objective weight; [objective] needs energy, carbon and delay",
                file=path,
                column=f"objective.{key}",
            )
        weights[key] = _meta_number(objective, key, path, maximum=1e6)
    unknown_w = set(objective) - {"energy", "carbon", "delay", "delay_model"}
    if unknown_w:
        raise ScenarioError(
            "unknown objective weight; expected energy, carbon, delay",
            file=path,
            column=f"objective.{sorted(unknown_w)[0]}",
        )
    if sum(weights.values()) <= 0:
        raise ScenarioError("objective weights must not all be zero", file=path, column="objective")
    known = {"name", "description", "hours", "start", "water_budget_l", "objective"}
    extra = {k: v for k, v in meta.items() if k not in known}
    return {
        "name": str(meta.get("name", path.parent.name)),
        "description": str(meta.get("description", "")),
        "hours": hours,
        "start": start,
        "water_budget_l": water,
        "weights": weights,
        "delay_model": str(delay_model),
        "extra_meta": extra,
    }


def load_scenario(directory: str | Path, *, coefficients: str | Path | None = None) -> Scenario:
    """Load and validate a scenario directory.

    Parameters
    ----------
    directory
        Directory in the exchange format (scenario-format.md).
    coefficients
        Optional path of a ``coefficients.csv`` to use instead of the one in the directory.

    Raises
    ------
    ScenarioError
        Naming the file, line, column, bad value and what was expected.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ScenarioError("scenario directory not found", file=root)
    meta = _parse_meta(root / "scenario.toml")
    hours: int = meta["hours"]
    frames = {spec.file: _read_csv(root / spec.file, spec) for spec in TABLES}

    coords: dict[str, Sequence[Any]] = {"hour": list(range(hours))}
    for dim, file in _DEFINES.items():
        coords[dim] = _define_labels(frames[file], root / file, dim)
    # resource labels: first appearance in resources.csv; resource_use.csv must match.
    coords["resource"] = _first_appearance(frames["resources.csv"], "resource")
    _check_labels(
        frames["resource_use.csv"],
        root / "resource_use.csv",
        "resource",
        coords["resource"],
        "resources.csv",
    )

    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for spec in TABLES:
        arrays = _table_to_arrays(frames[spec.file], root / spec.file, spec, coords, hours)
        for col, arr in arrays.items():
            data_vars[_var_name(spec, col)] = (spec.keys, arr)
    ds = xr.Dataset(
        {k: xr.Variable(dims, arr) for k, (dims, arr) in data_vars.items()},
        coords={d: np.asarray(coords[d], dtype=np.int64 if d == "hour" else object) for d in DIMS},
    )
    scen = Scenario(ds=ds, source=root, **meta)
    coef_path = Path(coefficients) if coefficients is not None else root / COEFFICIENTS.file
    if coefficients is not None or coef_path.is_file():
        scen.coefficients = load_coefficients(coef_path, scen)
    return scen


def load_coefficients(path: str | Path, scenario: Scenario) -> xr.Dataset:
    """Load a ``coefficients.csv`` (hour, dc, query_type → per-query energy and delay).

    Every (hour, dc, query_type) of ``scenario`` must be present exactly once.
    """
    p = Path(path)
    df = _read_csv(p, COEFFICIENTS)
    coords: dict[str, Sequence[Any]] = {
        "hour": list(range(scenario.hours)),
        "dc": scenario.dcs,
        "query_type": scenario.query_types,
    }
    arrays = _table_to_arrays(df, p, COEFFICIENTS, coords, scenario.hours)
    return xr.Dataset(
        {k: (COEFFICIENTS.keys, v) for k, v in arrays.items()},
        coords={
            "hour": np.arange(scenario.hours, dtype=np.int64),
            "dc": np.asarray(scenario.dcs, dtype=object),
            "query_type": np.asarray(scenario.query_types, dtype=object),
        },
    )


def save_coefficients(coefficients: xr.Dataset, path: str | Path) -> Path:
    """Write predicted coefficients as ``coefficients.csv`` (spec: hour, dc, query_type)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(Scenario._table_csv(coefficients, COEFFICIENTS), encoding="utf-8")
    tmp.replace(p)
    return p
