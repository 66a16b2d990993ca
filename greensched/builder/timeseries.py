"""Aligning hourly series to the scenario's hours: year shifts, profiles, local time, solar."""

from __future__ import annotations

import calendar
import math
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from greensched.builder.config import _HOUR, _WEEK_H, _WRAP_H, _Node

# ================================================================================================
# Time helpers
# ================================================================================================


@dataclass
class _Align:
    """How the slots of one series were obtained."""

    measured: int = 0
    mapped: int = 0
    profile: int = 0
    filled: int = 0
    first_source: pd.Timestamp | None = None


def _hour_profile(values: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Mean of ``values`` by UTC hour of day (NaN-aware); empty hours take the overall mean."""
    ok = ~np.isnan(values)
    sums = np.bincount(hours[ok], weights=values[ok], minlength=24)
    counts = np.bincount(hours[ok], minlength=24)
    overall = float(values[ok].mean()) if ok.any() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    return prof


def _year_shift_hours(
    t0: pd.Timestamp, n_hours: int, first: pd.Timestamp, last: pd.Timestamp, mode: str
) -> int:
    """Hours to subtract from a horizon starting at ``t0`` to move it into the data's year(s).

    Candidates: the same calendar date in each year of the data (29 February → 28 February),
    rounded to whole weeks for ``same_weekday``. The candidate whose horizon overlaps the data
    most wins (ties: the later year).
    """
    best: tuple[tuple[int, int], int] | None = None
    for year in range(first.year, last.year + 1):
        leap_day = t0.month == 2 and t0.day == 29 and not calendar.isleap(year)
        day = 28 if leap_day else t0.day
        same = t0.replace(year=year, day=day)
        delta_h = int(round((t0 - same) / _HOUR))
        if mode == "same_weekday":
            delta_h = int(round(delta_h / _WEEK_H)) * _WEEK_H
        cand = t0 - pd.Timedelta(hours=delta_h)
        lo = max(cand, first)
        hi = min(cand + pd.Timedelta(hours=n_hours - 1), last)
        overlap = max(0, int(round((hi - lo) / _HOUR)) + 1) if hi >= lo else 0
        score = (overlap, year)
        if best is None or score > best[0]:
            best = (score, delta_h)
    return 0 if best is None else best[1]


def _align(series: pd.Series, times: pd.DatetimeIndex, mode: str) -> tuple[np.ndarray, _Align]:
    """Values of an hourly UTC series at the slots ``times`` (see the module docstring)."""
    s = series.sort_index()
    first, last = s.index[0], s.index[-1]
    n = int(round((last - first) / _HOUR)) + 1
    values = np.full(n, np.nan)
    pos_src = np.rint(np.asarray((s.index - first) / _HOUR, dtype=np.float64)).astype(np.int64)
    values[pos_src] = s.to_numpy(dtype=np.float64)
    src_hours = ((first.hour + np.arange(n)) % 24).astype(np.int64)
    prof = _hour_profile(values, src_hours)
    if np.isnan(prof).all():
        raise ValueError("the series has no values")

    pos = np.rint(np.asarray((times - first) / _HOUR, dtype=np.float64)).astype(np.int64)
    inside = (pos >= 0) & (pos < n)
    info = _Align()
    out = np.full(len(times), np.nan)
    if inside.all() or n < _WRAP_H:
        out[inside] = values[pos[inside]]
        info.measured = int(inside.sum())
        outside = ~inside
        out[outside] = prof[times.hour.to_numpy()[outside]]
        info.profile = int(outside.sum())
        if inside.any():
            info.first_source = first + pd.Timedelta(hours=int(pos[inside][0]))
    else:
        shift = (0 if 0 <= pos[0] < n
                 else _year_shift_hours(times[0], len(times), first, last, mode))
        mpos = pos - shift
        hi = mpos >= n
        mpos[hi] -= ((mpos[hi] - n) // _WRAP_H + 1) * _WRAP_H
        lo = mpos < 0
        mpos[lo] += ((-mpos[lo] - 1) // _WRAP_H + 1) * _WRAP_H
        out[:] = values[mpos]
        exact = mpos == pos
        info.measured = int(exact.sum())
        info.mapped = int((~exact).sum())
        info.first_source = first + pd.Timedelta(hours=int(mpos[0]))
    hole = np.isnan(out)
    if hole.any():
        out[hole] = prof[times.hour.to_numpy()[hole]]
        info.filled = int(hole.sum())
    return out, info


def _parse_start(node: _Node, value: Any, key: str) -> pd.Timestamp:
    try:
        if isinstance(value, datetime):
            ts = pd.Timestamp(value)
        elif isinstance(value, date):
            ts = pd.Timestamp(value.isoformat())
        elif isinstance(value, str):
            ts = pd.Timestamp(value.strip())
        else:
            raise ValueError
    except ValueError as exc:
        raise node.error(
            key, "expected a date (2024-03-24) or an ISO-8601 UTC time", value
        ) from exc
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.floor("h"):
        raise node.error(key, "the start must be on a whole hour", value)
    return ts


def _local_time(
    node: _Node, times: pd.DatetimeIndex, *, required: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """(local hour of day, local weekday 0=Monday) of every slot, from ``tz`` or ``utc_offset``."""
    if node.has("tz") and node.has("utc_offset"):
        raise node.error("tz", "give either tz or utc_offset, not both")
    if node.has("tz"):
        name = node.text("tz")
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise node.error("tz", "unknown IANA time zone (e.g. 'America/Chicago')", name) from exc
        local = times.tz_convert(name)
        return local.hour.to_numpy(), local.day_of_week.to_numpy()
    if node.has("utc_offset"):
        offset = node.number("utc_offset", lo=-14, hi=14)
        local = times.tz_localize(None) + pd.Timedelta(hours=offset)
        return local.hour.to_numpy(), local.day_of_week.to_numpy()
    if required:
        raise node.error("tz", "missing field: give tz (IANA name) or utc_offset (hours)")
    return None


def _profile24(node: _Node, key: str, local: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    values = node.numbers(key, 24, lo=0.0)
    if local is None:
        raise node.error(key, "a 24-hour list is in local time: give the entry a tz or utc_offset")
    return values[local[0]]


def _solar(times: pd.DatetimeIndex, lat: float, lon: float) -> np.ndarray:
    """Clear-sky shape max(0, cos zenith) at each slot's midpoint (Cooper 1969 declination)."""
    mid = times + pd.Timedelta(minutes=30)
    doy = mid.day_of_year.to_numpy(dtype=np.float64)
    hour = mid.hour.to_numpy(dtype=np.float64) + mid.minute.to_numpy(dtype=np.float64) / 60.0
    decl = np.radians(23.44) * np.sin(2.0 * np.pi * (284.0 + doy) / 365.0)
    omega = np.radians(15.0 * (hour + lon / 15.0 - 12.0))
    phi = math.radians(lat)
    cz = math.sin(phi) * np.sin(decl) + math.cos(phi) * np.cos(decl) * np.cos(omega)
    return np.clip(cz, 0.0, None)


def _haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
                  ) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2 - lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2.0 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _lin(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation, extrapolated linearly from the outer segments."""
    x = np.asarray(x, dtype=np.float64)
    y = np.interp(x, xp, fp)
    if len(xp) >= 2:
        lo = x < xp[0]
        y[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
        hi = x > xp[-1]
        y[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return y


def _sig(x: np.ndarray | float, digits: int = 6) -> np.ndarray:
    """Round to ``digits`` significant digits (short, exact-round-trip CSV text)."""
    arr = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(arr)
    nz = arr != 0
    mag = np.floor(np.log10(np.abs(arr[nz])))
    scale = 10.0 ** (digits - 1 - mag)
    out[nz] = np.round(arr[nz] * scale) / scale
    return out




def _describe(info: _Align) -> str:
    parts = []
    if info.measured:
        parts.append(f"{info.measured} h as measured")
    if info.mapped:
        parts.append(f"{info.mapped} h date-mapped")
    if info.profile:
        parts.append(f"{info.profile} h from the UTC hour-of-day mean")
    if info.filled:
        parts.append(f"{info.filled} h gap-filled by the hour-of-day mean")
    src = ""
    if info.first_source is not None:
        src = f", hour 0 ← {info.first_source.strftime('%Y-%m-%d %H:00Z')}"
    return "(" + ", ".join(parts) + src + ")"


# ================================================================================================
# Public API
# ================================================================================================
