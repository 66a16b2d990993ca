"""Electricity Maps hourly carbon-intensity exports.

Source: Electricity Maps (https://www.electricitymaps.com), hourly zone exports for 2024 as
redistributed in JJmingcc/Green_LLM ``Dataset/Carbon`` (no licence stated; origin-attributed
reference data). Timestamps are hour starts in UTC (the header says ``Datetime (UTC)``).

Two layouts are supported:

* one file per zone (``US-MIDW-MISO_2024_hourly.csv`` …): :func:`read_electricity_maps`,
  and a whole directory of them: :func:`read_electricity_maps_dir`;
* the wide ``consolidated_carbon_intensity_*.csv`` tables (one column per zone; the values
  are the life-cycle intensities, see :func:`read_consolidated_carbon`).

All intensities are returned in kg CO₂-eq per kWh; the unit is read from each header
(``gCO₂eq/kWh`` in the published files) and converted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from greensched.data._common import RawTable, read_raw
from greensched.data.gaps import Gap, check_unique_sorted, fill_frame, fill_gaps
from greensched.data.units import carbon_factor, split_unit

__all__ = [
    "ZONE_IDS",
    "read_electricity_maps",
    "read_electricity_maps_dir",
    "read_consolidated_carbon",
]

Basis = Literal["direct", "lifecycle"]

TIME_COLUMN = "Datetime (UTC)"
ZONE_ID_COLUMN = "Zone id"
_CARBON_RE = re.compile(
    r"^carbon intensity\s*(?P<unit>.*?)\s*\((?P<basis>direct|life[\s-]*cycle)\)$", re.IGNORECASE
)
_FRACTION_COLUMNS = {
    "cfe_fraction": "carbon-free energy percentage",
    "re_fraction": "renewable energy percentage",
}
_SOURCE = "Electricity Maps (electricitymaps.com), via JJmingcc/Green_LLM Dataset/Carbon"


def _carbon_column(raw: RawTable, basis: Basis) -> tuple[str, float]:
    wanted = "direct" if basis == "direct" else "lifecycle"
    for name in raw.header:
        m = _CARBON_RE.match(name)
        if m is None:
            continue
        found = re.sub(r"[\s-]", "", m.group("basis").lower())
        if found != wanted:
            continue
        unit = m.group("unit")
        if not unit:
            raise raw.header_error("no unit in carbon-intensity header", column=name)
        try:
            return name, carbon_factor(unit)
        except ValueError as exc:
            raise raw.header_error(str(exc), column=name, value=unit) from exc
    label = "direct" if basis == "direct" else "Life cycle"
    raise raw.header_error(
        f"missing required column (header has {raw.header})",
        column=f"Carbon intensity gCO₂eq/kWh ({label})",
    )


def _fraction_column(raw: RawTable, prefix: str) -> tuple[str, float] | None:
    for name in raw.header:
        if not name.lower().startswith(prefix):
            continue
        if "%" in name:
            return name, 0.01
        if "fraction" in name.lower():
            return name, 1.0
        raise raw.header_error("unknown unit (expected a '%' or 'fraction' header)", column=name)
    return None


def read_electricity_maps(
    path: str | Path,
    basis: Basis = "direct",
    *,
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read one Electricity Maps hourly zone export.

    Parameters
    ----------
    path
        CSV export with columns ``Datetime (UTC)``, ``Country``, ``Zone name``, ``Zone id``,
        ``Carbon intensity gCO₂eq/kWh (direct)``, ``Carbon intensity gCO₂eq/kWh (Life cycle)``,
        ``Carbon-free energy percentage (CFE%)``, ``Renewable energy percentage (RE%)``,
        ``Data source``, ``Data estimated``, ``Data estimation method`` (UTF-8, the header
        contains "₂"). Only the time, zone id and the chosen carbon column are required.
    basis
        ``"direct"`` (operational, combustion only) or ``"lifecycle"`` (includes upstream
        emissions) carbon intensity.
    max_gap_hours
        Missing hours in runs no longer than this are filled by linear interpolation (flagged in
        ``filled``); longer runs stay NaN. ``0`` disables filling.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (hour start, ``datetime64[ns, UTC]``, every hour between the
        first and last row), with columns

        ``zone_id``, ``zone_name``, ``country`` (text)
        ``carbon_kg_per_kwh``
            Carbon intensity of the chosen ``basis``, kg CO₂-eq/kWh.
        ``cfe_fraction``, ``re_fraction``
            Carbon-free and renewable share of consumption, 0–1 (NaN if absent).
        ``estimated``
            Electricity Maps' "Data estimated" flag (nullable boolean; ``<NA>`` where blank).
        ``estimation_method``, ``data_source`` (text)
        ``filled``
            ``True`` where the carbon value was interpolated by this reader.

        ``df.attrs`` holds ``gaps`` (list of :class:`~greensched.data._common.Gap` of the carbon
        column), ``basis``, ``zone_id``, ``unit`` and ``source``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing header column, unknown unit in a header, unparsable time, non-numeric or
        negative intensity, percentage outside 0–100, bad estimated flag, duplicate hour,
        or more than one zone in the file.
    """
    if basis not in ("direct", "lifecycle"):
        raise ValueError(f"basis must be 'direct' or 'lifecycle', got {basis!r}")
    raw = read_raw(path, required=(TIME_COLUMN, ZONE_ID_COLUMN))
    carbon_col, factor = _carbon_column(raw, basis)
    times, _ = raw.times(TIME_COLUMN, tz="UTC")
    times, order = check_unique_sorted(raw, times, TIME_COLUMN)

    zone = raw.text(ZONE_ID_COLUMN)
    if zone.isna().any():
        i = int(np.argmax(zone.isna().to_numpy()))
        raise raw.error("missing zone id", row=i, column=ZONE_ID_COLUMN)
    zones = zone.unique()
    if len(zones) > 1:
        i = int(np.argmax((zone != zones[0]).to_numpy()))
        raise raw.error(
            f"file mixes zones (first zone {zones[0]!r})",
            row=i,
            column=ZONE_ID_COLUMN,
            value=zone.iloc[i],
        )

    cols: dict[str, object] = {}
    n = len(raw)
    for out, src in (
        ("zone_id", ZONE_ID_COLUMN),
        ("zone_name", "Zone name"),
        ("country", "Country"),
    ):
        cols[out] = raw.text(src).to_numpy() if src in raw.header else np.full(n, None)
    cols["carbon_kg_per_kwh"] = raw.numeric(carbon_col, min_value=0.0) * factor
    for out, prefix in _FRACTION_COLUMNS.items():
        found = _fraction_column(raw, prefix)
        if found is None:
            cols[out] = np.full(n, np.nan)
        else:
            name, f = found
            cols[out] = raw.numeric(name, min_value=0.0, max_value=1.0 / f) * f
    if "Data estimated" in raw.header:
        cols["estimated"] = raw.booleans("Data estimated").array
    else:
        cols["estimated"] = pd.array([pd.NA] * n, dtype="boolean")
    for out, src in (
        ("estimation_method", "Data estimation method"),
        ("data_source", "Data source"),
    ):
        cols[out] = raw.text(src).to_numpy() if src in raw.header else np.full(n, None)

    frame = pd.DataFrame(cols, index=pd.RangeIndex(n))
    frame = frame.iloc[order]
    frame.index = pd.DatetimeIndex(times, name="time_utc")
    for c in ("zone_id", "zone_name", "country", "estimation_method", "data_source"):
        frame[c] = frame[c].astype("str")
    out, gaps = fill_frame(
        frame,
        ["cfe_fraction", "re_fraction"],
        primary="carbon_kg_per_kwh",
        max_gap_hours=max_gap_hours,
        constant_columns=("zone_id", "zone_name", "country", "data_source"),
    )
    out["estimated"] = out["estimated"].astype("boolean")
    out.attrs.update(
        gaps=gaps, basis=basis, zone_id=str(zones[0]), unit="kg CO2eq/kWh", source=_SOURCE
    )
    return out


def read_electricity_maps_dir(
    directory: str | Path,
    basis: Basis = "direct",
    *,
    pattern: str = "*_hourly.csv",
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read every Electricity Maps zone export of a directory into one wide table.

    Parameters
    ----------
    directory
        Folder holding the per-zone exports.
    basis
        ``"direct"`` or ``"lifecycle"``, as in :func:`read_electricity_maps`.
    pattern
        Glob selecting the files (default ``*_hourly.csv``).
    max_gap_hours
        Gap-filling limit, as in :func:`read_electricity_maps`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (union of all hours), one column per zone id (sorted), values in
        kg CO₂-eq/kWh. ``df.attrs["gaps"]`` maps zone id → list of gaps.
    """
    files = sorted(Path(directory).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    series: dict[str, pd.Series] = {}
    gaps: dict[str, list[Gap]] = {}
    for f in files:
        df = read_electricity_maps(f, basis, max_gap_hours=max_gap_hours)
        zone = df.attrs["zone_id"]
        if zone in series:
            raise ValueError(f"zone {zone!r} appears in more than one file of {directory}")
        series[zone] = df["carbon_kg_per_kwh"]
        gaps[zone] = df.attrs["gaps"]
    wide = pd.DataFrame({z: series[z] for z in sorted(series)})
    wide.index.name = "time_utc"
    wide.attrs.update(gaps=gaps, basis=basis, unit="kg CO2eq/kWh", source=_SOURCE)
    return wide


#: Electricity Maps zone names (as in the exports' ``Zone name``) → zone ids.
ZONE_IDS: dict[str, str] = {
    "Arizona Public Service Company": "US-SW-AZPS",
    "CAISO": "US-CAL-CISO",
    "Electric Reliability Council of Texas": "US-TEX-ERCO",
    "ISO New England": "US-NE-ISNE",
    "Los Angeles Department of Water and Power": "US-CAL-LDWP",
    "Louisville Gas and Electric Company and Kentucky Utilities": "US-MIDW-LGEE",
    "Midcontinent ISO": "US-MIDW-MISO",
    "Nevada Power Company": "US-NW-NEVP",
    "New York ISO": "US-NY-NYIS",
    "Pacificorp East": "US-NW-PACE",
    "PJM Interconnection": "US-MIDA-PJM",
    "Portland General Electric Company": "US-NW-PGE",
    "South Carolina Electric & Gas Company": "US-CAR-SCEG",
    "Southeastern Power Administration": "US-SE-SEPA",
}


def read_consolidated_carbon(
    path: str | Path,
    *,
    zone_ids: bool = False,
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read a wide ``consolidated_carbon_intensity_*.csv`` table.

    Parameters
    ----------
    path
        CSV with ``Datetime (UTC)`` and one column per zone named ``<Zone name> (<unit>)``,
        e.g. ``Midcontinent ISO (gCO₂eq/kWh)``. The ``..._march24.csv`` file is the θ_{j,t}
        of the Green-LLM experiment.
    zone_ids
        Name the columns by Electricity Maps zone id (``US-MIDW-MISO`` …, see
        :data:`ZONE_IDS`) instead of zone name; names without a known id are kept.
    max_gap_hours
        Gap-filling limit per column (linear, in time).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (hourly, UTC), one column per zone (unit suffix removed), values
        in kg CO₂-eq/kWh. ``df.attrs["gaps"]`` maps column → list of gaps.

    Notes
    -----
    The header does not say which basis the values are. In the published files every value
    equals the *life-cycle* column of the per-zone exports for the same hour (checked for all
    12 zones and 48 hours of ``..._march24_25.csv``), not the direct one, so
    ``df.attrs["basis"]`` is ``"lifecycle"``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing time column, a zone column without a unit or with an unknown unit, unparsable
        time, non-numeric or negative value, duplicate hour.
    """
    raw = read_raw(path, required=(TIME_COLUMN,))
    times, _ = raw.times(TIME_COLUMN, tz="UTC")
    times, order = check_unique_sorted(raw, times, TIME_COLUMN)
    data: dict[str, np.ndarray] = {}
    for name in raw.header:
        if name == TIME_COLUMN:
            continue
        zone, unit = split_unit(name)
        if not unit:
            raise raw.header_error(
                "no unit in column header, expected '<zone> (gCO₂eq/kWh)'", column=name
            )
        try:
            factor = carbon_factor(unit)
        except ValueError as exc:
            raise raw.header_error(str(exc), column=name, value=unit) from exc
        key = ZONE_IDS.get(zone, zone) if zone_ids else zone
        data[key] = raw.numeric(name, min_value=0.0)[order] * factor
    wide = pd.DataFrame(data, index=pd.DatetimeIndex(times, name="time_utc"))
    gaps: dict[str, list[Gap]] = {}
    filled: dict[str, pd.Series] = {}
    for col in wide.columns:
        filled[col], gaps[col] = fill_gaps(wide[col], max_gap_hours)
    out = pd.DataFrame(filled)
    out.index.name = "time_utc"
    out.attrs.update(gaps=gaps, basis="lifecycle", unit="kg CO2eq/kWh", source=_SOURCE)
    return out
