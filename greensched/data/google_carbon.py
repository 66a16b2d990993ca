"""Google Cloud region carbon data (annual averages).

Source: GoogleCloudPlatform/region-carbon-info, ``data/yearly/<year>.csv`` (Apache-2.0).
Columns: ``Google Cloud Region``, ``Location``, ``Google CFE`` (hourly carbon-free energy share
of the region, 0–1) and ``Grid carbon intensity (gCO2eq / kWh)`` — named ``Lifecycle grid
carbon intensity (gCO2eq / kWh)`` in the 2019 and 2020 files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from greensched.data._common import RawTable, read_raw
from greensched.data.units import carbon_factor, split_unit
from greensched.errors import DataFileError

__all__ = ["read_google_carbon", "read_google_carbon_dir"]

_SOURCE = "GoogleCloudPlatform/region-carbon-info data/yearly (Apache-2.0)"
REGION = "Google Cloud Region"
LOCATION = "Location"
CFE = "Google CFE"
_INTENSITY_RE = re.compile(r"^(lifecycle\s+)?grid carbon intensity$", re.IGNORECASE)


def _intensity_column(raw: RawTable) -> tuple[str, float, str]:
    for name in raw.header:
        base, unit = split_unit(name)
        m = _INTENSITY_RE.match(base)
        if m is None:
            continue
        if not unit:
            raise raw.header_error("no unit in carbon-intensity header", column=name)
        try:
            factor = carbon_factor(unit)
        except ValueError as exc:
            raise raw.header_error(str(exc), column=name, value=unit) from exc
        basis = "lifecycle" if m.group(1) else "grid"
        return name, factor, basis
    raise raw.header_error(
        f"missing required column (header has {raw.header})",
        column="Grid carbon intensity (gCO2eq / kWh)",
    )


def read_google_carbon(path: str | Path, *, year: int | None = None) -> pd.DataFrame:
    """Read one yearly Google Cloud region carbon file.

    Parameters
    ----------
    path
        ``<year>.csv`` from region-carbon-info.
    year
        Year of the data; default: the file stem (``2023.csv`` → 2023).

    Returns
    -------
    pandas.DataFrame
        One row per region, columns ``region``, ``location`` (text), ``year`` (int),
        ``time_utc`` (start of the year, UTC — the values are annual averages),
        ``cfe_fraction`` (0–1, NaN where Google publishes none),
        ``carbon_kg_per_kwh`` (kg CO₂-eq/kWh) and ``carbon_basis`` (``"lifecycle"`` for the
        2019–2020 header, ``"grid"`` otherwise, as labelled by the source).

    Raises
    ------
    greensched.errors.DataFileError
        Missing column, unknown unit, CFE outside 0–1, non-numeric, missing or negative
        intensity, missing or duplicate region, year not given and not in the file name.
    """
    p = Path(path)
    if year is None:
        if not re.fullmatch(r"\d{4}", p.stem):
            raise DataFileError("cannot tell the year from the file name; pass year=", file=p)
        year = int(p.stem)
    raw = read_raw(p, required=(REGION, LOCATION, CFE))
    column, factor, basis = _intensity_column(raw)
    region = raw.text(REGION)
    if region.isna().any():
        i = int(region.isna().to_numpy().argmax())
        raise raw.error("missing region", row=i, column=REGION)
    dup = region.duplicated().to_numpy()
    if dup.any():
        i = int(dup.argmax())
        raise raw.error("duplicate region", row=i, column=REGION, value=region.iloc[i])
    df = pd.DataFrame(
        {
            "region": region.to_numpy(),
            "location": raw.text(LOCATION).to_numpy(),
            "year": year,
            "time_utc": pd.Timestamp(year=year, month=1, day=1, tz="UTC").as_unit("ns"),
            "cfe_fraction": raw.numeric(CFE, min_value=0.0, max_value=1.0),
            "carbon_kg_per_kwh": raw.numeric(column, allow_missing=False, min_value=0.0) * factor,
            "carbon_basis": basis,
        }
    )
    for c in ("region", "location", "carbon_basis"):
        df[c] = df[c].astype("str")
    df["year"] = df["year"].astype("int64")
    df.attrs.update(gaps=[], unit="kg CO2eq/kWh", source=_SOURCE)
    return df


def read_google_carbon_dir(
    directory: str | Path, *, pattern: str = "[0-9][0-9][0-9][0-9].csv"
) -> pd.DataFrame:
    """Read every yearly file of a directory into one long table.

    Returns
    -------
    pandas.DataFrame
        Rows of all years (columns as in :func:`read_google_carbon`), sorted by ``year`` then
        ``region``.
    """
    files = sorted(Path(directory).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    df = pd.concat([read_google_carbon(f) for f in files], ignore_index=True)
    df = df.sort_values(["year", "region"], ignore_index=True)
    df.attrs = {"gaps": [], "unit": "kg CO2eq/kWh", "source": _SOURCE}
    return df
