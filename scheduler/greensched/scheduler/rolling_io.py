"""Files of a rolling plan (``greensched plan --rolling --out DIR``) and reading them back.

``rolling.json``
    :meth:`RollingResult.summary`: configuration, budget rule and totals, one entry per window
    (hours planned and committed, budget, committed cost, build and solve seconds).
``committed_allocation.csv``
    ``hour, time_utc, area, query_type, dc, tz, time_local, window, fraction``: the committed
    shares (fraction > 1e-9), one row per committed hour × area × query type × DC.
``committed_dc_hourly.csv``
    ``hour, time_utc, dc, tz, time_local, window`` + the ``dc_hourly.csv`` columns + ``energy_usd,
    carbon_usd``: one row per committed hour × DC.
``committed_duals.csv``
    ``family, hour, dc, area, query_type, resource, dual, window``: the committing window's
    capacity, power-balance and no-export duals per hour, and its water-budget dual repeated on
    every hour it committed (family ``water``).
``windows.csv``
    One row per window (the scalar fields of ``rolling.json``'s windows).
``plan.json``
    The committed plan's totals in ``plan.json``'s form, with ``method: "rolling"``.

``hour`` is the scenario's hour slot, ``time_utc`` its UTC start (``2025-03-25T05:00:00Z``),
``time_local`` the same instant in the DC's zone ``tz`` with its offset
(``2025-03-25T01:00:00-04:00``); both are empty when the scenario has no ``start``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignError, PlanGuide
from greensched.scheduler.assign.guide import _read_duals_csv
from greensched.scheduler.rolling_time import local_time_strings, utc_strings
from greensched.util import jsonable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.rolling import RollingResult

__all__ = [
    "ALLOCATION_COLUMNS",
    "DC_HOURLY_COLUMNS",
    "committed_allocation_frame",
    "committed_dc_hourly_frame",
    "committed_duals_frame",
    "is_rolling_directory",
    "plan_json",
    "read_rolling_guide",
    "write_rolling",
]

ALLOCATION_COLUMNS = (
    "hour",
    "time_utc",
    "area",
    "query_type",
    "dc",
    "tz",
    "time_local",
    "window",
    "fraction",
)
DC_HOURLY_COLUMNS = (
    "hour",
    "time_utc",
    "dc",
    "tz",
    "time_local",
    "window",
    "it_kw",
    "facility_kw",
    "grid_kw",
    "renewable_used_kw",
    "water_l",
    "carbon_kg",
    "energy_usd",
    "carbon_usd",
)
_SCALAR_WINDOW_KEYS = (
    "window",
    "start_hour",
    "end_hour",
    "commit_end_hour",
    "start_utc",
    "status",
    "method",
    "water_budget_l",
    "water_planned_l",
    "water_committed_l",
    "water_price_usd_per_l",
    "weighted_usd",
    "carbon_kg",
    "build_seconds",
    "solve_seconds",
    "wall_seconds",
    "gap_relative",
    "rounds",
)


def _stamp_columns(roll: RollingResult, hour: np.ndarray, dc: np.ndarray) -> dict[str, np.ndarray]:
    """time_utc, tz and time_local of rows at (hour, dc)."""
    dcs = list(roll.zones)
    pos = pd.Series(np.arange(len(dcs)), index=dcs)
    d = pos.reindex(dc).to_numpy()
    tz = np.asarray([roll.zones[x].tz for x in dcs], dtype=object)[d]
    if roll.start_utc is None:
        empty = np.full(len(hour), "", dtype=object)
        return {"time_utc": empty, "tz": tz, "time_local": empty}
    times = pd.date_range(pd.Timestamp(roll.start_utc), periods=roll.span_h, freq="h")
    utc = utc_strings(times)
    local = np.stack([local_time_strings(times, roll.zones[x]) for x in dcs])  # (dc, hour)
    return {"time_utc": utc[hour], "tz": tz, "time_local": local[d, hour]}


def committed_allocation_frame(roll: RollingResult, threshold: float = 1e-9) -> pd.DataFrame:
    """The committed shares with time stamps (``committed_allocation.csv``)."""
    if roll.allocation is None:
        return pd.DataFrame(columns=list(ALLOCATION_COLUMNS))
    da = roll.allocation.transpose("hour", "area", "query_type", "dc")
    df = da.to_series().rename("fraction").reset_index()
    df = df[df["fraction"] > threshold].reset_index(drop=True)
    hour = df["hour"].to_numpy(dtype=np.int64)
    df["window"] = roll.window_of_hour[hour]
    for key, col in _stamp_columns(roll, hour, df["dc"].to_numpy()).items():
        df[key] = col
    return df[list(ALLOCATION_COLUMNS)]


def committed_dc_hourly_frame(roll: RollingResult) -> pd.DataFrame:
    """The committed per (hour, dc) flows with time stamps (``committed_dc_hourly.csv``)."""
    if roll.dc_hourly is None or roll.dc_hourly.empty:
        return pd.DataFrame(columns=list(DC_HOURLY_COLUMNS))
    df = roll.dc_hourly.copy()
    hour = df["hour"].to_numpy(dtype=np.int64)
    for key, col in _stamp_columns(roll, hour, df["dc"].to_numpy()).items():
        df[key] = col
    return df[list(DC_HOURLY_COLUMNS)].sort_values(["hour"], kind="stable").reset_index(drop=True)


def committed_duals_frame(roll: RollingResult) -> pd.DataFrame:
    """Committed duals in the planner's long form plus ``window`` (``committed_duals.csv``)."""
    cols = ["family", "hour", "dc", "area", "query_type", "resource", "dual", "window"]
    parts = []
    for family, da in roll.duals.items():
        df = da.to_dataframe(name="dual").reset_index()
        df.insert(0, "family", family)
        parts.append(df)
    if roll.water_price is not None and roll.water_budget_l is not None:
        committed = roll.window_of_hour >= 0
        hours = np.flatnonzero(committed)
        parts.append(
            pd.DataFrame(
                {"family": "water", "hour": hours, "dual": -roll.water_price.values[hours]}
            )
        )
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    for col in cols:
        if col not in out.columns:
            out[col] = pd.NA
    out["hour"] = out["hour"].astype("Int64")
    out["window"] = roll.window_of_hour[out["hour"].to_numpy(dtype=np.int64)]
    return out[cols]


def plan_json(roll: RollingResult) -> dict[str, object]:
    """The committed plan in ``plan.json``'s form (totals over the span), ``method: rolling``;
    readers of plan directories (the service) see the committed plan as one plan."""
    flows = roll.dc_hourly if roll.dc_hourly is not None else pd.DataFrame()

    def total(col: str) -> float:
        return float(flows[col].sum()) if col in flows else 0.0

    cfg = roll.plan_config
    out: dict[str, object] = {"status": roll.status, "mode": str(cfg.mode)}
    if str(cfg.mode) == "weighted":
        out["weights"] = roll.weights
    else:
        out["order"] = list(cfg.order)
        out["epsilon"] = cfg.epsilon
    out.update(
        {
            "objective": roll.objective,
            "carbon_kg": total("carbon_kg"),
            "water_l": total("water_l"),
            "grid_kwh": total("grid_kw"),
            "it_kwh": total("it_kw"),
            "solver": cfg.solver,
            "solve_seconds": float(sum(w.solve_s for w in roll.windows)),
            "phases": [],
            "method": "rolling",
            "rolling": "rolling.json",
        }
    )
    if roll.message:
        out["message"] = roll.message
    return out


def write_rolling(roll: RollingResult, directory: str | Path) -> Path:
    """Write ``rolling.json``, ``windows.csv`` and (when ok) the committed tables."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    summary = roll.summary()
    (out / "rolling.json").write_text(
        json.dumps(jsonable(summary), indent=2) + "\n", encoding="utf-8"
    )
    windows = pd.DataFrame([{k: w[k] for k in _SCALAR_WINDOW_KEYS} for w in summary["windows"]])
    for key in ("energy_usd", "carbon_usd", "delay_usd", "total_usd"):
        windows[key] = [w["objective"].get(key, np.nan) for w in summary["windows"]]
    windows.to_csv(out / "windows.csv", index=False)
    (out / "plan.json").write_text(
        json.dumps(jsonable(plan_json(roll)), indent=2) + "\n", encoding="utf-8"
    )
    if roll.windows:
        committed_allocation_frame(roll).to_csv(out / "committed_allocation.csv", index=False)
        committed_dc_hourly_frame(roll).to_csv(out / "committed_dc_hourly.csv", index=False)
        committed_duals_frame(roll).to_csv(out / "committed_duals.csv", index=False)
    return out


def read_rolling_guide(directory: str | Path, scenario: Scenario | None = None) -> PlanGuide:
    """The guide of a rolling plan directory: every hour follows the window that committed it.

    Reads ``rolling.json`` (status must be optimal), ``committed_allocation.csv`` and
    ``committed_duals.csv``; the water rows become :attr:`PlanGuide.water_price_by_hour`.
    With ``scenario``, the plan's span and DCs must fit it.
    """
    root = Path(directory)
    meta_path = root / "rolling.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AssignError(f"{meta_path}: cannot read the rolling plan ({exc})") from exc
    if meta.get("status") != "optimal":
        raise AssignError(
            f"{meta_path}: rolling plan status is {meta.get('status')!r}; only a rolling plan "
            "whose windows were all optimal can guide assignments"
        )
    duals_path = root / "committed_duals.csv"
    alloc_path = root / "committed_allocation.csv"
    for path in (duals_path, alloc_path):
        if not path.is_file():
            raise AssignError(f"{path}: not found; write the rolling plan with --out")
    guide = PlanGuide._from_duals(_read_duals_csv(duals_path))
    raw = pd.read_csv(duals_path, dtype={"family": str})
    water = raw[raw["family"] == "water"]
    if not water.empty:
        guide.water_price_by_hour = xr.DataArray(
            np.maximum(0.0, -water["dual"].to_numpy(dtype=float)),
            dims=("hour",),
            coords={"hour": water["hour"].to_numpy(dtype=np.int64)},
        )
    guide.water_price_usd_per_l = 0.0
    df = pd.read_csv(alloc_path, dtype={"area": str, "query_type": str, "dc": str})
    need = {"hour", "area", "query_type", "dc", "fraction"}
    if not need <= set(df.columns):
        raise AssignError(f"{alloc_path}: needs columns {sorted(need)}")
    if scenario is not None:
        span = int(meta.get("span_hours", 0))
        unknown = sorted(set(df["dc"]) - set(scenario.dcs))
        if span > scenario.hours or unknown:
            what = f"dc {unknown[0]!r}" if unknown else f"{span} hours"
            raise AssignError(
                f"{meta_path}: the rolling plan has {what}, which the scenario "
                f"{scenario.name!r} ({scenario.hours} hours) does not; is it of another scenario?"
            )
    guide.allocation = df.set_index(["area", "dc", "query_type", "hour"])["fraction"].to_xarray()
    weights = meta.get("weights")
    if meta.get("mode") == "weighted" and isinstance(weights, dict):
        from greensched.scheduler.assign import _normalise_weights

        guide.weights = _normalise_weights(weights)
    guide.source = str(root)
    return guide


def is_rolling_directory(directory: str | Path) -> bool:
    """True when ``directory`` holds a rolling plan (``rolling.json``)."""
    return (Path(directory) / "rolling.json").is_file()
