"""Real-time locational marginal prices (LMP) in gridstatus-style CSV files.

Source: ISO real-time 5-minute markets (CAISO, ERCOT, ISO-NE, MISO, NYISO, PJM, SPP) as exported
with the ``gridstatus`` Python package and redistributed in JJmingcc/Green_LLM ``Dataset/LMP``
(no licence stated; origin-attributed reference data).

The files have ``interval_start_local, interval_start_utc, interval_end_local,
interval_end_utc, location[, market, location_type …], lmp[, energy, congestion, loss, ghg]``;
prices are in $/MWh (the gridstatus convention — the header has no unit). Rows with a blank
location are attributed to the file's single node; rows with a blank price are skipped.
:func:`read_lmp` returns hourly means in $/kWh indexed by the UTC hour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data._common import RawTable, read_raw
from greensched.data.gaps import Gap, fill_frame
from greensched.data.units import price_factor, split_unit

__all__ = ["read_lmp", "read_lmp_dir"]

START_UTC = "interval_start_utc"
START_LOCAL = "interval_start_local"
_COMPONENTS = ("lmp", "energy", "congestion", "loss", "ghg")
_SOURCE = "ISO real-time LMP (gridstatus export), via JJmingcc/Green_LLM Dataset/LMP"


def _price_columns(raw: RawTable, unit: str | None) -> dict[str, tuple[str, float]]:
    """Map component → (header, factor to $/kWh)."""
    found: dict[str, tuple[str, float]] = {}
    for name in raw.header:
        base, header_unit = split_unit(name)
        key = base.lower()
        if key not in _COMPONENTS:
            continue
        text = header_unit or unit or "$/MWh"
        try:
            factor = price_factor(text)
        except ValueError as exc:
            raise raw.header_error(str(exc), column=name, value=text) from exc
        found[key] = (name, factor)
    if "lmp" not in found:
        raise raw.header_error(f"missing required column (header has {raw.header})", column="lmp")
    return found


def read_lmp(
    path: str | Path,
    *,
    unit: str | None = None,
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read a gridstatus-style real-time LMP file and average it per UTC hour.

    Parameters
    ----------
    path
        CSV with at least ``interval_start_utc`` (ISO 8601 with offset, e.g.
        ``2025-03-24 07:00:00+00:00``) and ``lmp``. Optional columns: ``location``, ``market``,
        ``energy``, ``congestion``, ``loss``, ``ghg`` (price components) and
        ``interval_start_local`` (checked against the UTC column when present).
    unit
        Price unit of headers that carry none (gridstatus: ``"$/MWh"``, the default). A unit in a
        header, e.g. ``lmp ($/kWh)``, takes precedence. Unknown units are an error.
    max_gap_hours
        Hours without any price, in runs no longer than this, are filled by linear
        interpolation (``filled`` column); longer runs stay NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (hour start, ``datetime64[ns, UTC]``; every hour between the
        first and last priced hour, per location), columns

        ``location``
            Price node (text).
        ``lmp_usd_per_kwh``
            Mean of the interval LMPs whose start falls in the hour, $/kWh.
        ``energy_usd_per_kwh``, ``congestion_usd_per_kwh``, ``loss_usd_per_kwh``,
        ``ghg_usd_per_kwh``
            Hourly means of the components present in the file, $/kWh.
        ``n_intervals``
            Number of priced intervals averaged (0 on filled or missing hours).
        ``filled``
            ``True`` where ``lmp_usd_per_kwh`` was interpolated.

        ``df.attrs``: ``gaps`` (dict location → list of
        :class:`~greensched.data._common.Gap`), ``skipped_rows`` (line numbers of rows without
        a price), ``unit`` and ``source``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing ``interval_start_utc``/``lmp`` column, unknown unit, unparsable time, local and
        UTC starts that disagree, non-numeric price, a blank location in a file with several
        nodes, or a file mixing markets.
    """
    raw = read_raw(path, required=(START_UTC,))
    prices = _price_columns(raw, unit)
    times, _ = raw.times(START_UTC, tz=None)
    if START_LOCAL in raw.header:
        local, _ = raw.times(START_LOCAL, tz=None)
        off = np.asarray(local != times)
        if off.any():
            i = int(np.argmax(off))
            raise raw.error(
                f"local start does not match {START_UTC} ({raw.text(START_UTC).iloc[i]})",
                row=i,
                column=START_LOCAL,
                value=raw.text(START_LOCAL).iloc[i],
            )
    values = {k: raw.numeric(name) * f for k, (name, f) in prices.items()}

    n = len(raw)
    if "location" in raw.header:
        loc = raw.text("location")
        names = loc.dropna().unique()
        if loc.isna().any():
            if len(names) > 1:
                i = int(np.argmax(loc.isna().to_numpy()))
                raise raw.error(
                    "blank location in a file with several nodes", row=i, column="location"
                )
            loc = loc.fillna(names[0] if len(names) else "")
        location = loc.to_numpy(dtype=object)
    else:
        location = np.full(n, "", dtype=object)
    if "market" in raw.header:
        market = raw.text("market")
        kinds = market.dropna().unique()
        if len(kinds) > 1:
            i = int(np.argmax((market.notna() & (market != kinds[0])).to_numpy()))
            raise raw.error(
                f"file mixes markets (first {kinds[0]!r})",
                row=i,
                column="market",
                value=market.iloc[i],
            )

    priced = ~np.isnan(values["lmp"])
    skipped = raw.lines[~priced].tolist()
    hour = times.floor("h")
    table = pd.DataFrame({k: v for k, v in values.items()})
    table["location"] = location
    table["time_utc"] = hour
    table = table[priced]

    value_cols = [f"{k}_usd_per_kwh" for k in values]
    grouped = table.groupby(["location", "time_utc"], sort=True)
    means = grouped[list(values)].mean()
    means.columns = value_cols
    means["n_intervals"] = grouped.size().astype(np.int64)

    parts: list[pd.DataFrame] = []
    gaps: dict[str, list[Gap]] = {}
    for loc_name, part in means.groupby(level="location", sort=True):
        part = part.droplevel("location")
        filled, loc_gaps = fill_frame(
            part, value_cols[1:], primary="lmp_usd_per_kwh", max_gap_hours=max_gap_hours
        )
        filled["n_intervals"] = filled["n_intervals"].fillna(0).astype(np.int64)
        filled.insert(0, "location", str(loc_name))
        parts.append(filled)
        gaps[str(loc_name)] = loc_gaps
    if parts:
        out = pd.concat(parts)
    else:
        out = pd.DataFrame(
            columns=["location", *value_cols, "n_intervals", "filled"],
            index=pd.DatetimeIndex([], dtype="datetime64[ns, UTC]"),
        )
    out.index.name = "time_utc"
    out["location"] = out["location"].astype("str")
    out.attrs.update(gaps=gaps, skipped_rows=skipped, unit="$/kWh", source=_SOURCE)
    return out


def read_lmp_dir(
    directory: str | Path,
    *,
    pattern: str = "*_LMP.csv",
    unit: str | None = None,
    max_gap_hours: float = 3,
) -> pd.DataFrame:
    """Read every LMP file of a directory into one wide hourly table.

    Parameters
    ----------
    directory
        Folder with gridstatus-style LMP files.
    pattern
        Glob selecting the files (default ``*_LMP.csv``; the merged
        ``consolidated_iso_lmp_long.csv`` has another layout and is not matched).
    unit, max_gap_hours
        As in :func:`read_lmp`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``time_utc`` (union of the hours), one column per file, named after the file
        stem without ``_LMP`` (``CAISO``, ``ERCOT`` …; ``<stem>:<node>`` when a file has several
        nodes), values = hourly mean LMP in $/kWh. ``df.attrs["gaps"]`` maps column → gaps.
    """
    files = sorted(Path(directory).glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files matching {pattern!r} in {directory}")
    cols: dict[str, pd.Series] = {}
    gaps: dict[str, list[Gap]] = {}
    for f in files:
        stem = f.stem[:-4] if f.stem.upper().endswith("_LMP") else f.stem
        df = read_lmp(f, unit=unit, max_gap_hours=max_gap_hours)
        nodes = list(df.attrs["gaps"])
        for node in nodes:
            key = stem if len(nodes) == 1 else f"{stem}:{node}"
            cols[key] = df.loc[df["location"] == node, "lmp_usd_per_kwh"]
            gaps[key] = df.attrs["gaps"][node]
    wide = pd.DataFrame(cols)
    wide.index.name = "time_utc"
    wide.attrs.update(gaps=gaps, unit="$/kWh", source=_SOURCE)
    return wide
