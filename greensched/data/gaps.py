"""Regular hourly series: filling short gaps by linear interpolation in time, and reporting every
gap (:class:`Gap`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from greensched.data._common import RawTable

__all__ = ["Gap", "check_unique_sorted", "fill_frame", "fill_gaps", "gaps_frame"]


# --------------------------------------------------------------------------------------------
# Gaps
# --------------------------------------------------------------------------------------------


class Gap(NamedTuple):
    """A hole in a regular time series.

    Attributes
    ----------
    start
        First missing timestamp.
    end
        Last missing timestamp (inclusive).
    hours
        Length of the hole in hours (number of missing steps × step length).
    filled
        ``True`` if the hole was filled by linear interpolation.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    hours: float
    filled: bool


def _regular(series: pd.Series, freq: str | pd.Timedelta) -> pd.Series:
    idx = series.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise TypeError("fill_gaps needs a series indexed by a DatetimeIndex")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][0]
        raise ValueError(f"duplicate timestamp {dup} in series index")
    if len(idx) == 0:
        return series
    if not idx.is_monotonic_increasing:
        series = series.sort_index()
        idx = series.index
    grid = pd.date_range(idx[0], idx[-1], freq=freq, unit="ns")
    if len(grid) == len(idx) and (grid == idx).all():
        return series
    off = ~idx.isin(grid)
    if off.any():
        raise ValueError(f"timestamp {idx[off][0]} is not on the {freq} grid starting {idx[0]}")
    return series.reindex(grid)


def fill_gaps(
    series: pd.Series,
    max_gap_hours: float = 3,
    *,
    freq: str | pd.Timedelta = "1h",
) -> tuple[pd.Series, list[Gap]]:
    """Fill short holes of a regular time series by linear interpolation.

    Missing timestamps are first restored (the series is reindexed onto the regular ``freq``
    grid between its first and last timestamps); then every run of missing values (NaN) is a
    gap. Gaps no longer than ``max_gap_hours`` that have a valid value on both sides are filled
    by linear interpolation in time; longer gaps, and gaps at either end, stay NaN.

    Parameters
    ----------
    series
        Values indexed by a ``DatetimeIndex`` on a regular grid (some steps may be absent).
    max_gap_hours
        Longest gap (in hours, as ``Gap.hours``) that is filled. ``0`` fills nothing.
    freq
        Step of the grid (default one hour).

    Returns
    -------
    (Series, list of Gap)
        The series on the full grid (float64) with short gaps filled, and one :class:`Gap`
        per hole, in time order.

    Raises
    ------
    ValueError
        If the index has duplicates or timestamps off the grid.

    Examples
    --------
    >>> idx = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")
    >>> s, gaps = fill_gaps(pd.Series([1.0, None, None, 4.0, 5.0], index=idx))
    >>> s.tolist(), gaps[0].hours, gaps[0].filled
    ([1.0, 2.0, 3.0, 4.0, 5.0], 2.0, True)
    """
    if max_gap_hours < 0:
        raise ValueError("max_gap_hours must be >= 0")
    s = _regular(series, freq).astype(np.float64)
    isna = s.isna().to_numpy()
    if not isna.any():
        return s, []
    step_h = pd.Timedelta(freq) / pd.Timedelta(hours=1)
    edges = np.diff(np.concatenate(([0], isna.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    n = len(s)
    hours = (ends - starts + 1) * step_h
    bounded = (starts > 0) & (ends < n - 1)
    fillable = bounded & (hours <= max_gap_hours + 1e-9)
    if fillable.any():
        run_id = np.cumsum(edges[:-1] == 1) - 1  # index of the run each position belongs to
        mask = isna & fillable[np.clip(run_id, 0, None)]
        interp = s.interpolate(method="time", limit_area="inside")
        values = s.to_numpy(copy=True)
        values[mask] = interp.to_numpy()[mask]
        s = pd.Series(values, index=s.index, name=s.name)
    idx = s.index
    gaps = [
        Gap(idx[a], idx[b], float(h), bool(f))
        for a, b, h, f in zip(starts, ends, hours, fillable, strict=True)
    ]
    return s, gaps


def gaps_frame(gaps: Sequence[Gap]) -> pd.DataFrame:
    """The gap report as a DataFrame with columns ``start, end, hours, filled``."""
    return pd.DataFrame(list(gaps), columns=list(Gap._fields))


def fill_frame(
    frame: pd.DataFrame,
    value_columns: Sequence[str],
    *,
    primary: str,
    max_gap_hours: float,
    constant_columns: Sequence[str] = (),
    freq: str = "1h",
) -> tuple[pd.DataFrame, list[Gap]]:
    """Put a single-entity time table on its full grid and fill short gaps.

    Every column of ``value_columns`` is filled with :func:`fill_gaps`; the gap report is the
    one of ``primary``. Columns of ``constant_columns`` that hold one value (zone id, node
    name …) get that value on restored rows; other columns are left missing there. A boolean
    ``filled`` column marks interpolated rows of ``primary``.
    """
    out_cols: dict[str, Any] = {}
    filled_primary, gaps = fill_gaps(frame[primary], max_gap_hours, freq=freq)
    grid = filled_primary.index
    for col in frame.columns:
        if col == primary:
            out_cols[col] = filled_primary
        elif col in value_columns:
            out_cols[col] = fill_gaps(frame[col], max_gap_hours, freq=freq)[0]
        else:
            col_values = frame[col].reindex(grid)
            uniq = frame[col].dropna().unique()
            if col in constant_columns and len(uniq) == 1 and col_values.isna().any():
                col_values = col_values.fillna(uniq[0])
            out_cols[col] = col_values
    out = pd.DataFrame(out_cols, index=grid)
    was_missing = frame[primary].reindex(grid).isna().to_numpy()
    out["filled"] = was_missing & filled_primary.notna().to_numpy()
    out.index.name = frame.index.name
    return out, gaps


def check_unique_sorted(
    raw: RawTable, times: pd.DatetimeIndex, column: str
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Raise on duplicate timestamps; return the sort order (stable) of ``times``.

    Returns
    -------
    (DatetimeIndex, ndarray)
        Sorted timestamps and the positions that sort them.
    """
    if times.has_duplicates:
        dup = times.duplicated()
        i = int(np.argmax(dup))
        raise raw.error("duplicate timestamp", row=i, column=column, value=raw.text(column).iloc[i])
    if times.is_monotonic_increasing:
        return times, np.arange(len(times))
    order = np.argsort(times.asi8, kind="stable")
    return times[order], order
