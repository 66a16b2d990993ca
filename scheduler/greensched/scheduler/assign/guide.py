"""What the online assigner reads from a plan: shadow prices, shares, weights (and duals I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scheduler.assign.config import AssignError, _normalise_weights

if TYPE_CHECKING:  # pragma: no cover - typing only
    from greensched.scheduler.planner import PlanResult


@dataclass
class PlanGuide:
    """What the online assigner takes from a plan.

    Attributes
    ----------
    resource_price
        π[d,r,h] = −(dual of the capacity row) ≥ 0, USD (weighted objective) per resource unit,
        dims (dc, resource, hour); ``None`` when the plan carries no duals.
    water_price_usd_per_l
        −(dual of the water-budget row) ≥ 0, USD per litre (0 without a budget).
    energy_price
        Marginal (weighted) USD per kWh of facility energy at (dc, hour) in the plan:
        −dual(power_balance) + dual(no_export), dims (dc, hour).  It is 0 where on-site
        renewables were in surplus and σ_e c + σ_c δ θ where grid power was marginal.  Used in
        place of the price and carbon terms only with ``AssignConfig.plan_energy_prices``.
    allocation
        Plan shares x, dims (area, dc, query_type, hour), for plan-following.
    weights
        The plan's objective weights (weighted mode), used by default in plan-guided scoring.
    water_price_by_hour
        Optional per-hour water shadow price (USD per litre, dims (hour,)), added to
        ``water_price_usd_per_l``: a rolling plan's guide, where each hour follows the window
        that committed it (:mod:`greensched.scheduler.rolling`).
    """

    resource_price: xr.DataArray | None = None
    water_price_usd_per_l: float = 0.0
    energy_price: xr.DataArray | None = None
    allocation: xr.DataArray | None = None
    weights: dict[str, float] | None = None
    source: str = ""
    water_price_by_hour: xr.DataArray | None = None

    @classmethod
    def from_result(cls, result: PlanResult) -> PlanGuide:
        """Duals, allocation and weights of a solved :class:`PlanResult`."""
        if not result.is_ok:
            raise AssignError(f"the plan is not usable: status {result.status.value!r}")
        guide = cls._from_duals(result.duals)
        guide.allocation = result.allocation
        guide.weights = dict(result.weights) if result.weights else None
        guide.source = "PlanResult"
        return guide

    @classmethod
    def _from_duals(cls, duals: Mapping[str, xr.DataArray]) -> PlanGuide:
        price = None
        if "resource" in duals:
            price = (
                (-duals["resource"]).clip(min=0.0).fillna(0.0).transpose("dc", "resource", "hour")
            )
        water = 0.0
        if "water" in duals and duals["water"].size:
            water = max(0.0, -float(np.nan_to_num(duals["water"].values.ravel()[0])))
        energy = None
        if "power_balance" in duals:
            energy = -duals["power_balance"].fillna(0.0)
            if "no_export" in duals:
                energy = energy + duals["no_export"].fillna(0.0)
            energy = energy.transpose("dc", "hour")
        return cls(resource_price=price, water_price_usd_per_l=water, energy_price=energy)

    @classmethod
    def from_directory(cls, directory: str | Path) -> PlanGuide:
        """Read a plan directory (``PlanResult.write``) and its duals when present.

        Reads ``plan.json`` (status must be optimal), ``allocation.csv`` (hour, area,
        query_type, dc, fraction) and, when present, the row duals: ``duals.csv`` as written by
        ``PlanResult.write`` (long form: family, hour, dc, area, query_type, resource, dual) or
        ``duals.json`` as written by :func:`write_plan_duals`.  ``allocation.parquet`` and
        ``duals.parquet`` (``PlanResult.write(tables="parquet")``) are read the same way.
        """
        root = Path(directory)
        meta_path = root / "plan.json"
        if not meta_path.is_file():
            raise AssignError(f"{meta_path}: plan.json not found; is this a plan directory?")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AssignError(f"{meta_path}: invalid JSON ({exc})") from exc
        if meta.get("status") != "optimal":
            raise AssignError(
                f"{meta_path}: plan status is {meta.get('status')!r}; only an optimal plan "
                "can guide assignments"
            )
        guide = cls()
        duals_csv = root / "duals.csv"
        duals_json = root / "duals.json"
        if duals_csv.is_file():
            guide = cls._from_duals(_read_duals_csv(duals_csv))
        elif (root / "duals.parquet").is_file():  # PlanResult.write(tables="parquet")
            guide = cls._from_duals(_read_duals_csv(root / "duals.parquet"))
        elif duals_json.is_file():
            try:
                raw = json.loads(duals_json.read_text(encoding="utf-8"))
                duals = {k: xr.DataArray.from_dict(v) for k, v in raw.items()}
            except (json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                raise AssignError(
                    f"{duals_json}: cannot read duals ({exc}); expected "
                    "{family: DataArray.to_dict()}"
                ) from exc
            guide = cls._from_duals(duals)
        alloc_path = root / "allocation.csv"
        if not alloc_path.is_file():
            alloc_path = root / "allocation.parquet"
        if alloc_path.is_file():
            df = (
                pd.read_parquet(alloc_path)
                if alloc_path.suffix == ".parquet"
                else pd.read_csv(alloc_path, dtype={"area": str, "query_type": str, "dc": str})
            )
            need = {"hour", "area", "query_type", "dc", "fraction"}
            if not need <= set(df.columns):
                raise AssignError(f"{alloc_path}: needs columns {sorted(need)}")
            guide.allocation = df.set_index(["area", "dc", "query_type", "hour"])[
                "fraction"
            ].to_xarray()
        if meta.get("mode") == "weighted" and isinstance(meta.get("weights"), dict):
            guide.weights = _normalise_weights(meta["weights"])
        guide.source = str(root)
        return guide

    @property
    def has_duals(self) -> bool:
        """True when capacity shadow prices are known."""
        return self.resource_price is not None


#: Index columns of the dual families the assigner reads from ``duals.csv``.
_DUAL_DIMS = {
    "resource": ("dc", "resource", "hour"),
    "power_balance": ("dc", "hour"),
    "no_export": ("dc", "hour"),
    "water": (),
}


def _read_duals_csv(path: Path) -> dict[str, xr.DataArray]:
    """Duals of the families in :data:`_DUAL_DIMS` from the planner's long-form ``duals.csv``."""
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path,
                dtype={"family": str, "dc": str, "area": str, "query_type": str, "resource": str},
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AssignError(f"{path}: cannot parse as CSV ({exc})") from exc
    if not {"family", "dual"} <= set(df.columns):
        raise AssignError(f"{path}: needs columns family, ..., dual (PlanResult.duals_frame)")
    out: dict[str, xr.DataArray] = {}
    for family, dims in _DUAL_DIMS.items():
        sub = df[df["family"] == family]
        if sub.empty:
            continue
        if not dims:
            out[family] = xr.DataArray(float(sub["dual"].iloc[0]))
            continue
        missing = [d for d in dims if d not in sub.columns or sub[d].isna().any()]
        if missing:
            raise AssignError(f"{path}: family {family!r} rows lack {missing!r}")
        sub = sub.astype({"hour": np.int64})
        out[family] = sub.set_index(list(dims))["dual"].to_xarray()
    return out


def write_plan_duals(result: PlanResult, directory: str | Path) -> Path:
    """Write the plan's row duals as ``duals.json`` ({family: DataArray.to_dict()}).

    :meth:`PlanGuide.from_directory` reads it back.  Sign: ∂objective/∂rhs (≤ 0 when binding).
    """
    if not result.is_ok:
        raise AssignError(f"the plan has no duals: status {result.status.value!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload = {}
    for name, da in result.duals.items():
        clean = da.copy()
        clean = clean.assign_coords({d: [_plain(v) for v in clean.indexes[d]] for d in clean.dims})
        payload[name] = clean.to_dict(data="list")
    path = out / "duals.json"
    path.write_text(json.dumps(payload, default=_plain) + "\n", encoding="utf-8")
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def _as_guide(guide: PlanGuide | PlanResult | str | Path | None) -> PlanGuide | None:
    if guide is None or isinstance(guide, PlanGuide):
        return guide
    if isinstance(guide, str | Path):
        return PlanGuide.from_directory(guide)
    return PlanGuide.from_result(guide)
