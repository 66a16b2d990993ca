"""Build a scenario (exchange format v1) from real data files described by a TOML configuration.

:func:`build_scenario` reads a configuration such as ``examples/letter-regions.toml`` and turns the
public data sets of ``../shared/data`` (through the adapters of :mod:`greensched.data`) into a
validated :class:`~greensched.scenario.Scenario`; :func:`build_from_config` also saves it, reloads
it and checks that the reload is identical. Every field of the configuration is documented in
``docs/scenario-build.md``; this docstring states how each model input is derived.

Time axis
    Hour slot ``t`` is the UTC hour ``start + t h``; ``T = 24 × days`` (``days`` ≤ 366).

Hourly series (carbon, prices) and the date mapping
    A series read from a file is used *as measured* for every slot whose UTC hour it covers.
    For slots outside the file's period:

    * series spanning at least 52 weeks (Electricity Maps 2024, Let's-Wait-Awhile 2020): when
      the start lies outside the data, the whole horizon is moved into the data's year(s) by a
      whole number of weeks (``date_mapping = "same_weekday"``, default: the same weekday and UTC
      hour, within ±3 days of the same calendar date) or by whole days (``"same_date"``: the same
      calendar date; 29 February maps to 28 February of a common year); slots that then still
      fall after the data's end (or before its start) wrap back (forward) by 52 weeks;
    * shorter series (the two-day LMP files): the mean of the measured values at the same UTC
      hour of day.

    Holes that the adapter did not fill (runs longer than its gap limit) take the series' mean at
    the same UTC hour of day. The description of the built scenario says how many slots were
    measured, mapped or filled.

Energy and processing time per query (default: measured)
    From the Wilkins, Keshav & Mortier measurements (``energy_inference/``; arXiv 2407.04014)
    for one model and system (``[energy]``), inference runs after the warm-up run (iteration ≥ 1):
    the input-token sweep (fixed output length o*: the one measured with the most input lengths)
    and the output-token sweep (fixed input length i*, likewise) give median energy
    and runtime curves E_in(h), E_out(f), R_in(h), R_out(f), interpolated linearly in the token
    count (extrapolated linearly from the outer segments; E_out and R_out pass through the
    origin below the shortest measured output). A request with h input and f output tokens then
    costs E(h, f) = E_out(f) + E_in(h) − E_in(i*) (additive in the two sweeps; energy is CPU +
    GPU energy), and likewise runtime R(h, f). For a query type whose tokens come from a trace
    (``"trace"``) the per-token
    coefficients are means over the type's requests:
    τ_out = mean_r E_out(f_r) / f̄, τ_in = max(0, mean_r [E_in(h_r) − E_in(i*)]) / h̄, so that
    τ_in h̄ + τ_out f̄ is the mean measured energy of the type's requests (E is superlinear in f,
    so this differs from E(h̄, f̄)). The processing delay per token is
    v = mean_r R(h_r, f_r) / (h̄ + f̄), the same in every DC unless a DC sets
    ``delay_s_per_token``; the default resource ``gpu`` is GPU-seconds, used at
    v × (GPUs of the measured runs) per token.

Demand
    queries[t, i, k] = round(Q × pop_i / Σ pop × mix_k × p(local hour of area i at t) × w),
    Q = mean total queries per hour (``"trace"``: the traces' own arrival rate), mix_k = share of
    type k among the trace requests of the modelled types, p = hour-of-day profile with mean 1
    (``diurnal``: 1 + A cos(2π (hour − peak)/24), an assumed shape; ``trace``: the traces'
    hour-of-day counts, needs ≥ 24 h of trace), w = ``weekend_factor`` on local Saturdays and
    Sundays, else 1. Local time follows the area's ``tz`` (with daylight-saving time) or fixed
    ``utc_offset``.

Network
    rtt_s of (area, DC) = the measured mean ping RTT between their cities; ``same_city_rtt_s``
    when the cities coincide; otherwise the fallback ``a + b × great-circle km`` (``fit``: least
    squares over the measured pairs whose cities have coordinates in the config; ``model``:
    a = ``rtt_overhead_s``, b = 2 × ``route_factor`` / ``fiber_speed_km_per_s``).
    bandwidth = ``bandwidth_bps``, optionally limited to 8 × ``tcp_window_bytes`` / rtt (the
    bandwidth-delay-product limit of one TCP connection); token_size = ``token_size_bits``.

Delay limits
    ``latency_limit_s`` is a per-query target L; because the model's delay sums over the hour's
    queries, it becomes Δ[i, k] = L × max(1, max_t queries[t, i, k]) (the target at the busiest
    hour; looser in quieter hours). ``delay_limit_s`` gives Δ directly.

Sizing (``"auto"``)
    capacity[j, r] = ceil(capacity_headroom × peak_t Σ use / J); grid_cap_kw[j] =
    ceil(grid_headroom × PUE_j × peak IT kW / J); ``renewable_share`` s gives a peak on-site
    renewable power of s × PUE_j × peak IT kW / J. Solar profiles are clear-sky
    max(0, cos zenith) at the slot's midpoint (Cooper's declination, solar time from longitude,
    no equation of time, no weather).

Water budget
    ``water_budget_factor`` f gives Z = f × the water of an even split of every hour's IT energy
    over the DCs, Σ_t Σ_j IT_t / J × (WUE_j,t + EWIF_j,t × PUE_j).

All configuration errors raise :class:`~greensched.errors.ScenarioError` with ``file`` = the
configuration and ``column`` = the field path (``datacenter[2].pue``); numbers are indexed from 0.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError, ScenarioError
from greensched.scenario import Scenario, dataset_from_arrays, load_scenario

__all__ = ["build_scenario", "build_from_config", "clear_cache", "DEFAULT_DATA_DIR"]

#: Default of ``[scenario] data_dir``, relative to the configuration file.
DEFAULT_DATA_DIR = "../shared/data"

_HOUR = pd.Timedelta(hours=1)
_WEEK_H = 168
_WRAP_H = 52 * _WEEK_H  # 364 days
_MISSING: Any = object()
_OBJECTIVES = ("energy", "carbon", "delay")


# ================================================================================================
# Configuration access with located errors
# ================================================================================================


class _Node:
    """One table of the configuration, with its field path, for typed access and located errors.

    ``defaults`` (with its own path) supplies values the table does not set itself; an error about
    such a value names the defaults' field.
    """

    def __init__(
        self,
        data: Any,
        path: str,
        file: Path,
        defaults: dict[str, Any] | None = None,
        defaults_path: str | None = None,
    ) -> None:
        if not isinstance(data, dict):
            raise ScenarioError("expected a table", file=file, column=path or None, value=data)
        self.data: dict[str, Any] = data
        self.path = path
        self.file = file
        self.defaults = defaults or {}
        self.defaults_path = defaults_path

    def field(self, key: str) -> str:
        """Field path of ``key`` in this table."""
        return f"{self.path}.{key}" if self.path else key

    def where(self, key: str) -> str:
        """Field path of the place ``key``'s value comes from (this table or the defaults)."""
        if key not in self.data and key in self.defaults and self.defaults_path:
            return f"{self.defaults_path}.{key}"
        return self.field(key)

    def error(self, key: str, message: str, value: Any = _MISSING) -> ScenarioError:
        kwargs: dict[str, Any] = {} if value is _MISSING else {"value": value}
        return ScenarioError(message, file=self.file, column=self.where(key), **kwargs)

    def has(self, key: str) -> bool:
        return key in self.data or key in self.defaults

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.data:
            return self.data[key]
        if key in self.defaults:
            return self.defaults[key]
        if default is _MISSING:
            raise ScenarioError("missing required field", file=self.file, column=self.field(key))
        return default

    def text(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and not self.has(key):
            return value
        if not isinstance(value, str):
            raise self.error(key, "expected a string", value)
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {', '.join(map(repr, choices))}", value)
        return value

    def ident(self, key: str) -> str:
        value = self.text(key)
        if not value.strip() or value != value.strip() or "," in value or "\n" in value:
            raise self.error(
                key, "expected a non-empty identifier without surrounding blanks or commas", value
            )
        return str(value)

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        integer: bool = False,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and not self.has(key):
            return value
        return self.check_number(key, value, lo=lo, hi=hi, lo_open=lo_open, integer=integer)

    def check_number(
        self,
        key: str,
        value: Any,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        integer: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "expected a number", value)
        if not math.isfinite(value):
            raise self.error(key, "expected a finite number", value)
        if integer and value != int(value):
            raise self.error(key, "expected an integer", value)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise self.error(key, f"expected a value {'>' if lo_open else '>='} {lo:g}", value)
        if hi is not None and value > hi:
            raise self.error(key, f"expected a value <= {hi:g}", value)
        return float(value)

    def numbers(self, key: str, length: int, *, lo: float | None = None) -> np.ndarray:
        value = self.raw(key)
        if not isinstance(value, list) or len(value) != length:
            raise self.error(key, f"expected a list of {length} numbers", value)
        out = np.empty(length)
        for n, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(
                item
            ):
                raise ScenarioError(
                    "expected a finite number", file=self.file, column=f"{self.where(key)}[{n}]",
                    value=item,
                )
            if lo is not None and item < lo:
                raise ScenarioError(
                    f"expected a value >= {lo:g}", file=self.file,
                    column=f"{self.where(key)}[{n}]", value=item,
                )
            out[n] = float(item)
        return out

    def table(self, key: str, default: Any = _MISSING) -> _Node:
        value = self.raw(key, {} if default is not _MISSING else _MISSING)
        if not isinstance(value, dict):
            raise self.error(key, "expected a table", value)
        return _Node(value, self.where(key), self.file)

    def check_keys(self, known: Sequence[str]) -> None:
        for key in self.data:
            if key not in known:
                raise ScenarioError(
                    f"unknown field (known fields: {', '.join(sorted(known))})",
                    file=self.file,
                    column=self.field(key),
                )


def _entries(root: _Node, key: str, defaults_key: str) -> list[_Node]:
    value = root.data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise root.error(key, f"expected one or more [[{key}]] tables", value)
    defaults: dict[str, Any] = {}
    if defaults_key in root.data:
        defaults = root.table(defaults_key).data
    return [_Node(v, f"{key}[{n}]", root.file, defaults, defaults_key) for n, v in enumerate(value)]


def _unique(nodes: Sequence[_Node], ids: Sequence[str], kind: str) -> None:
    seen: dict[str, int] = {}
    for n, (node, ident) in enumerate(zip(nodes, ids, strict=True)):
        if ident in seen:
            raise node.error("id", f"duplicated {kind} id (also {kind}[{seen[ident]}])", ident)
        seen[ident] = n


# ================================================================================================
# Cached adapter reads (each file is parsed once per process while it is unchanged)
# ================================================================================================


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _cached_electricity_maps(stamp: tuple[str, int, int], basis: str) -> pd.Series:
    from greensched.data.electricity_maps import read_electricity_maps

    df = read_electricity_maps(stamp[0], basis)  # type: ignore[arg-type]
    series = df["carbon_kg_per_kwh"].copy()
    series.attrs = {"zone": df.attrs.get("zone_id", ""), "basis": basis}
    return series


@functools.lru_cache(maxsize=16)
def _cached_lets_wait_awhile(stamp: tuple[str, int, int], tz: str) -> pd.Series:
    from greensched.data.lets_wait_awhile import read_lets_wait_awhile

    df = read_lets_wait_awhile(stamp[0], tz=tz)
    series = df["carbon_kg_per_kwh"].copy()
    series.attrs = {"zone": df.attrs.get("region", ""), "basis": "source"}
    return series


@functools.lru_cache(maxsize=32)
def _cached_lmp(stamp: tuple[str, int, int]) -> pd.DataFrame:
    from greensched.data.lmp import read_lmp

    return read_lmp(stamp[0])


@functools.lru_cache(maxsize=8)
def _cached_rtt(
    directory: str, stamps: tuple[tuple[str, int, int], ...], stat: str
) -> pd.DataFrame:
    from greensched.data.network_delay import read_rtt_matrix

    return read_rtt_matrix(directory, stat=stat)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=16)
def _cached_trace(stamp: tuple[str, int, int], tz: str) -> pd.DataFrame:
    from greensched.data.azure_trace import read_azure_trace

    return read_azure_trace(stamp[0], tz=tz)


@functools.lru_cache(maxsize=4)
def _cached_energy(stamps: tuple[tuple[str, int, int], ...], target: str) -> pd.DataFrame:
    from greensched.data.energy_inference import read_energy_inference

    return read_energy_inference(target)


def clear_cache() -> None:
    """Forget every data file read so far (the next build reads them again)."""
    for fn in (
        _cached_electricity_maps,
        _cached_lets_wait_awhile,
        _cached_lmp,
        _cached_rtt,
        _cached_trace,
        _cached_energy,
    ):
        fn.cache_clear()


def _read_data(node: _Node, key: str, reader: Callable[[], Any]) -> Any:
    """Run an adapter; any failure becomes a ScenarioError at the config field naming the file."""
    try:
        return reader()
    except (GreenSchedError, OSError, ValueError, KeyError, IndexError) as exc:
        raise node.error(key, f"cannot read the data it names: {exc}", node.raw(key)) from exc


def _data_path(node: _Node, key: str, data_dir: Path, *, directory: bool = False) -> Path:
    rel = node.text(key)
    path = Path(rel)
    if not path.is_absolute():
        path = data_dir / path
    if directory and not path.is_dir():
        raise node.error(key, f"directory not found ({path})", rel)
    if not directory and not path.is_file():
        raise node.error(key, f"file not found ({path})", rel)
    return path


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


# ================================================================================================
# Parsed configuration
# ================================================================================================


@dataclass
class _Meta:
    name: str
    description: str
    start: pd.Timestamp
    days: int
    weights: dict[str, float]
    water_budget_l: float | None
    water_budget_factor: float | None
    data_dir: Path
    carbon_basis: str
    date_mapping: str
    resources: list[str]


@dataclass
class _Measured:
    """Median energy / runtime curves of one model on one system (see the module docstring)."""

    label: str
    i_ref: float
    in_x: np.ndarray
    in_e: np.ndarray
    in_r: np.ndarray
    out_x: np.ndarray
    out_e: np.ndarray
    out_r: np.ndarray
    num_gpus: float

    def parts(self, h: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, ...]:
        """(input energy J, output energy J, runtime s) per request."""
        e_in = _lin(h, self.in_x, self.in_e) - float(_lin(np.array([self.i_ref]), self.in_x,
                                                           self.in_e)[0])
        r_in = _lin(h, self.in_x, self.in_r) - float(_lin(np.array([self.i_ref]), self.in_x,
                                                           self.in_r)[0])
        e_out = _lin(f, self.out_x, self.out_e)
        r_out = _lin(f, self.out_x, self.out_r)
        return e_in, e_out, np.clip(r_in + r_out, 0.0, None)


@dataclass
class _QT:
    id: str
    node: _Node
    input_tokens: float
    output_tokens: float
    tau_in: float
    tau_out: float
    v: float | None  # measured processing s/token (computed on first use)
    gpu_s_per_token: float | None
    rho: float
    mix: float
    count: int = 0
    hour_counts: np.ndarray | None = None
    h_arr: np.ndarray | None = None
    f_arr: np.ndarray | None = None


# ================================================================================================
# The builder
# ================================================================================================


class _Builder:
    def __init__(self, config_path: Path, days: int | None, start: str | None,
                 data_dir: str | Path | None) -> None:
        self.file = config_path
        try:
            with config_path.open("rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ScenarioError("configuration file not found", file=config_path) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"invalid TOML ({exc})", file=config_path) from exc
        self.root = _Node(doc, "", config_path)
        self.root.check_keys(
            ("scenario", "sizing", "energy", "datacenter", "datacenter_defaults", "area",
             "area_defaults", "query_type", "query_type_defaults", "demand", "network")
        )
        self.override_days = days
        self.override_start = start
        self.override_data_dir = data_dir
        self.notes: list[str] = []
        self.trace_span_h = 0.0
        self.data_dir = Path(".")
        self._measured: _Measured | None = None

    # -- [scenario] --------------------------------------------------------------------------------
    def parse_meta(self) -> _Meta:
        node = self.root.table("scenario")
        node.check_keys(("name", "description", "start", "days", "weights", "water_budget_l",
                         "water_budget_factor", "data_dir", "carbon_basis", "date_mapping",
                         "resources"))
        name = node.text("name")
        if not name.strip():
            raise node.error("name", "expected a non-empty name", name)
        description = node.text("description", "")
        if self.override_start is not None:
            start = _parse_start(_Node({"--start": self.override_start}, "", self.file),
                                 self.override_start, "--start")
        else:
            start = _parse_start(node, node.raw("start"), "start")
        if self.override_days is not None:
            days_node = _Node({"--days": self.override_days}, "", self.file)
            days = int(days_node.number("--days", lo=1, hi=366, integer=True))
        else:
            days = int(node.number("days", 1, lo=1, hi=366, integer=True))
        weights = {k: 1 / 3 for k in _OBJECTIVES}
        if node.has("weights"):
            wnode = node.table("weights")
            wnode.check_keys(_OBJECTIVES)
            raw = {k: wnode.number(k, 0.0, lo=0.0) for k in _OBJECTIVES}
            total = sum(raw.values())
            if total <= 0:
                raise node.error("weights", "the weights must not all be zero", node.raw("weights"))
            weights = {k: v / total for k, v in raw.items()}
        if node.has("water_budget_l") and node.has("water_budget_factor"):
            raise node.error("water_budget_factor", "give water_budget_l or water_budget_factor, "
                             "not both")
        budget = node.number("water_budget_l", None, lo=0.0)
        factor = node.number("water_budget_factor", None, lo=0.0, lo_open=True)
        if self.override_data_dir is not None:
            data_dir = Path(self.override_data_dir)
        else:
            data_dir = Path(node.text("data_dir", DEFAULT_DATA_DIR))
            if not data_dir.is_absolute():
                data_dir = (self.file.parent / data_dir).resolve()
        if not data_dir.is_dir():
            raise ScenarioError(
                f"data directory not found ({data_dir}); set [scenario] data_dir (relative to "
                "the configuration file)",
                file=self.file, column="scenario.data_dir", value=str(data_dir),
            )
        basis = node.text("carbon_basis", "direct", ("direct", "lifecycle"))
        mapping = node.text("date_mapping", "same_weekday", ("same_weekday", "same_date"))
        resources = node.raw("resources", ["gpu"])
        if (not isinstance(resources, list) or not resources
                or not all(isinstance(r, str) and r.strip() == r and r for r in resources)
                or len(set(resources)) != len(resources)):
            raise node.error("resources", "expected a list of distinct resource names", resources)
        self.data_dir = data_dir
        return _Meta(name, description, start, days, weights, budget, factor, data_dir, basis,
                     mapping, list(resources))

    # -- [energy] ----------------------------------------------------------------------------------
    def measured(self, data_dir: Path) -> _Measured:
        node = self.root.table("energy", {})
        node.check_keys(("data", "model", "system"))
        target = node.text("data", "energy_inference")
        path = Path(target) if Path(target).is_absolute() else data_dir / target
        if not path.exists():
            raise node.error("data", f"not found ({path})", target)
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        stamps = tuple(_stamp(f) for f in files)
        df = _read_data(node, "data", lambda: _cached_energy(stamps, str(path)))
        model = node.text("model", "Llama-2 (7B)")
        system = node.text("system", "Palmetto Intel+A100")
        sel = df[(df["model"] == model) & (df["system"] == system)]
        if sel.empty:
            combos = sorted({f"{m} on {s}" for m, s in zip(df["model"], df["system"], strict=True)})
            raise node.error("model", f"no measurements of this model on system {system!r} "
                             f"(available: {'; '.join(combos)})", model)
        warm = sel[sel["iteration"] >= 1]
        sel = warm if not warm.empty else sel
        # the input sweep holds the output length with the most distinct input lengths, and
        # conversely for the output sweep
        o_ref = float(sel.groupby("output_tokens")["input_tokens"].nunique().idxmax())
        i_ref = float(sel.groupby("input_tokens")["output_tokens"].nunique().idxmax())
        ins = sel[sel["output_tokens"] == o_ref].groupby("input_tokens")[["energy_j", "runtime_s"]]
        outs = sel[sel["input_tokens"] == i_ref].groupby("output_tokens")[
            ["energy_j", "runtime_s"]]
        ins_m, outs_m = ins.median(), outs.median()
        if len(ins_m) < 2 or len(outs_m) < 2:
            raise node.error("model", "the measurements hold no input- and output-token sweeps "
                             "(need >= 2 token counts each)", model)
        out_x = np.concatenate([[0.0], outs_m.index.to_numpy(dtype=np.float64)])
        out_e = np.concatenate([[0.0], outs_m["energy_j"].to_numpy()])
        out_r = np.concatenate([[0.0], outs_m["runtime_s"].to_numpy()])
        if out_x[1] == 0.0:
            out_x, out_e, out_r = out_x[1:], out_e[1:], out_r[1:]
        gpus = float(sel["num_gpus"].median())
        label = (f"Wilkins et al. (arXiv 2407.04014) measurements of {model} on {system} "
                 f"({len(sel)} runs; input sweep at {o_ref:g} output tokens, output sweep at "
                 f"{i_ref:g} input tokens)")
        return _Measured(label, i_ref, ins_m.index.to_numpy(dtype=np.float64),
                         ins_m["energy_j"].to_numpy(), ins_m["runtime_s"].to_numpy(),
                         out_x, out_e, out_r, gpus)

    # -- [demand] traces -----------------------------------------------------------------------
    def read_traces(self, demand: _Node, data_dir: Path) -> pd.DataFrame | None:
        if not demand.has("trace_files"):
            return None
        files = demand.raw("trace_files")
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise demand.error("trace_files", "expected a list of trace file paths", files)
        tz = demand.text("trace_tz", "UTC")
        frames = []
        for n, rel in enumerate(files):
            path = Path(rel) if Path(rel).is_absolute() else data_dir / rel
            if not path.is_file():
                raise ScenarioError(f"file not found ({path})", file=self.file,
                                    column=f"{demand.field('trace_files')}[{n}]", value=rel)
            try:
                frames.append(_cached_trace(_stamp(path), tz))
            except (GreenSchedError, OSError, ValueError) as exc:
                raise ScenarioError(f"cannot read the trace: {exc}", file=self.file,
                                    column=f"{demand.field('trace_files')}[{n}]", value=rel
                                    ) from exc
        df = pd.concat(
            [pd.DataFrame({"time_utc": f["time_utc"], "input_tokens": f["input_tokens"],
                           "output_tokens": f["output_tokens"],
                           "label": f["query_type"].astype(str)}) for f in frames],
            ignore_index=True,
        )
        return df

    # -- [[query_type]] ----------------------------------------------------------------------------
    def parse_query_types(self, meta: _Meta, demand: _Node, source: str) -> tuple[list[_QT], float,
                                                                                 str]:
        nodes = _entries(self.root, "query_type", "query_type_defaults")
        if not nodes:
            raise ScenarioError("no [[query_type]] entries", file=self.file, column="query_type")
        known = ("id", "trace", "input_tokens", "output_tokens", "input_tokens_min",
                 "input_tokens_max", "output_tokens_min", "output_tokens_max",
                 "energy_in_kwh_per_token", "energy_out_kwh_per_token",
                 "delay_penalty_usd_per_s", "resource_use_per_token", "latency_limit_s",
                 "delay_limit_s", "share")
        for node in nodes:
            node.check_keys(known)
        ids = [node.ident("id") for node in nodes]
        _unique(nodes, ids, "query_type")
        trace = self.read_traces(demand, meta.data_dir) if source == "trace" else None
        get_measured = functools.partial(self.get_measured, meta.data_dir)
        out: list[_QT] = []
        owner = np.full(0 if trace is None else len(trace), -1)  # query type of each request
        for n, (node, ident) in enumerate(zip(nodes, ids, strict=True)):
            h_arr: np.ndarray | None = None
            f_arr: np.ndarray | None = None
            count = 0
            label = node.text("trace", None)
            if label is not None and trace is None:
                raise node.error("trace", 'a trace label needs [demand] source = "trace" with '
                                 "trace_files", label)
            if trace is not None:
                if label is None:
                    raise node.error("trace", "missing field: the trace label of this query type "
                                     "(with [demand] source = \"trace\")")
                labels = sorted(trace["label"].unique())
                if label not in labels:
                    raise node.error("trace", f"no such label in the traces (labels: "
                                     f"{', '.join(labels)})", label)
                mask = (trace["label"] == label).to_numpy().copy()
                for col in ("input_tokens", "output_tokens"):
                    for suffix, op in (("_min", np.greater_equal), ("_max", np.less_equal)):
                        key = col + suffix
                        if node.has(key):
                            mask &= op(trace[col].to_numpy(), node.number(key, lo=0.0))
                count = int(mask.sum())
                if count == 0:
                    raise node.error("trace", "no trace request matches this query type's label "
                                     "and token filters", label)
                clash = mask & (owner >= 0)
                if clash.any():
                    other = int(owner[np.argmax(clash)])
                    raise node.error("trace", f"its requests overlap those of query_type[{other}] "
                                     "(token filters must not overlap)", label)
                owner[mask] = n
                h_arr = trace["input_tokens"].to_numpy(dtype=np.float64)[mask]
                f_arr = trace["output_tokens"].to_numpy(dtype=np.float64)[mask]
            tokens = {}
            from_trace = True
            for key, arr in (("input_tokens", h_arr), ("output_tokens", f_arr)):
                value = node.raw(key, "trace" if arr is not None else _MISSING)
                if value == "trace":
                    if arr is None:
                        raise node.error(key, '"trace" needs a trace label', value)
                    tokens[key] = float(np.rint(arr.mean()))
                else:
                    tokens[key] = node.check_number(key, value, lo=0.0)
                    from_trace = False
            h, f = tokens["input_tokens"], tokens["output_tokens"]
            if h + f <= 0:
                raise node.error("output_tokens", "a query needs at least one token", f)
            if h_arr is None or f_arr is None or not from_trace:
                # configured token counts: derive the measured values at that point
                h_arr, f_arr = np.array([h]), np.array([f])
            qt = _QT(ident, node, h, f, 0.0, 0.0, None, None, 0.0, 0.0, count)
            # energy per token
            e_mode = [node.raw(k, "measured") for k in ("energy_in_kwh_per_token",
                                                        "energy_out_kwh_per_token")]
            if "measured" in e_mode:
                m = get_measured()
                e_in, e_out, _ = m.parts(h_arr, f_arr)
                qt.tau_in = max(0.0, float(e_in.mean())) / 3.6e6 / h if h > 0 else 0.0
                qt.tau_out = float(e_out.mean()) / 3.6e6 / f if f > 0 else 0.0
            for key, attr in (("energy_in_kwh_per_token", "tau_in"),
                              ("energy_out_kwh_per_token", "tau_out")):
                value = node.raw(key, "measured")
                if value != "measured":
                    setattr(qt, attr, node.check_number(key, value, lo=0.0))
            qt.h_arr, qt.f_arr = h_arr, f_arr  # for the measured processing time, if needed
            qt.rho = node.number("delay_penalty_usd_per_s", lo=0.0)
            if source == "synthetic":
                qt.mix = node.number("share", 1.0, lo=0.0)
            elif node.has("share"):
                raise node.error("share", "with trace demand the mix comes from the traces")
            else:
                qt.mix = float(count)
            out.append(qt)
        total_mix = sum(q.mix for q in out)
        if total_mix <= 0:
            raise ScenarioError("the query-type shares must not all be zero", file=self.file,
                                column="query_type[0].share")
        for q in out:
            q.mix /= total_mix
        rate_note = ""
        rate = float("nan")
        if trace is not None:
            modelled = trace[owner >= 0]
            span_h = (modelled["time_utc"].max() - modelled["time_utc"].min()) / _HOUR
            if span_h <= 0:
                raise demand.error("trace_files", "the traces span no time")
            rate = len(modelled) / span_h
            rate_note = (f"{len(modelled)} requests over {span_h:.2f} h "
                         f"(rate {rate:,.0f} per hour)")
            hours = modelled["time_utc"].dt.tz_convert(demand.text("trace_tz", "UTC")).dt.hour
            for n, q in enumerate(out):
                sel = hours[owner[owner >= 0] == n].to_numpy()
                q.hour_counts = np.bincount(sel, minlength=24).astype(np.float64)
            self.trace_span_h = float(span_h)
        return out, rate, rate_note

    def get_measured(self, data_dir: Path) -> _Measured:
        """The measured energy/runtime curves (read on first use)."""
        if self._measured is None:
            self._measured = self.measured(data_dir)
            self.notes.append(f"energy and processing time per token: {self._measured.label}")
        return self._measured

    def measured_time(self, q: _QT) -> tuple[float, float]:
        """(processing s/token, GPU-s/token) of a query type from the measured runtimes."""
        if q.v is None or q.gpu_s_per_token is None:
            assert q.h_arr is not None and q.f_arr is not None
            m = self.get_measured(self.data_dir)
            _, _, runtime = m.parts(q.h_arr, q.f_arr)
            q.v = float(runtime.mean()) / (q.input_tokens + q.output_tokens)
            q.gpu_s_per_token = q.v * m.num_gpus
        return q.v, q.gpu_s_per_token

    # -- demand ------------------------------------------------------------------------------------
    def demand(self, meta: _Meta, times: pd.DatetimeIndex, areas: list[_Node],
               qts: list[_QT], demand: _Node, source: str, rate: float, rate_note: str
               ) -> np.ndarray:
        q_raw = demand.raw("queries_per_hour", "trace" if source == "trace" else _MISSING)
        if q_raw == "trace":
            if source != "trace":
                raise demand.error("queries_per_hour", '"trace" needs source = "trace"', q_raw)
            total = rate
            self.notes.append(f"demand scale: the traces' arrival rate, {rate_note}")
        else:
            total = demand.check_number("queries_per_hour", q_raw, lo=0.0, lo_open=True)
            self.notes.append(f"demand scale: {total:,.0f} queries per hour (configured)")
        default_profile = "diurnal"
        if source == "trace" and self.trace_span_h >= 24.0:
            default_profile = "trace"
        profile = demand.text("profile", default_profile, ("diurnal", "trace", "hourly"))
        weekend = demand.number("weekend_factor", 1.0, lo=0.0)
        K = len(qts)
        if profile == "trace":
            if source != "trace" or self.trace_span_h < 24.0:
                raise demand.error("profile", "a trace profile needs traces covering >= 24 h "
                                   "(the Azure 2023 traces cover about 1 h)", profile)
            prof_k = np.stack([q.hour_counts for q in qts if q.hour_counts is not None])
            prof_k = prof_k / np.maximum(prof_k.mean(axis=1, keepdims=True), 1e-300)
            self.notes.append("hour-of-day profile: the traces' hourly counts")
        elif profile == "hourly":
            base = demand.numbers("hourly_profile", 24, lo=0.0)
            if base.sum() <= 0:
                raise demand.error("hourly_profile", "the profile must not be all zero")
            prof_k = np.tile(base / base.mean(), (K, 1))
            self.notes.append("hour-of-day profile: configured 24 local-hour weights")
        else:
            amp = demand.number("diurnal_amplitude", 0.5, lo=0.0, hi=1.0)
            peak = demand.number("peak_local_hour", 14.0, lo=0.0, hi=24.0)
            hrs = np.arange(24, dtype=np.float64)
            base = 1.0 + amp * np.cos(2.0 * np.pi * (hrs - peak) / 24.0)
            prof_k = np.tile(base, (K, 1))
            self.notes.append(
                f"hour-of-day profile: assumed diurnal shape 1 + {amp:g} cos(2π(h − {peak:g})/24) "
                "in each area's local time"
            )
        pops = np.array([a.number("population", lo=0.0) for a in areas])
        if pops.sum() <= 0:
            raise ScenarioError("the area populations must not all be zero", file=self.file,
                                column="area[0].population")
        share = pops / pops.sum()
        mix = np.array([q.mix for q in qts])
        T, NA = len(times), len(areas)
        queries = np.empty((T, NA, K))
        for i, node in enumerate(areas):
            local = _local_time(node, times, required=True)
            assert local is not None
            hour, wday = local
            w = np.where(wday >= 5, weekend, 1.0)
            queries[:, i, :] = (total * share[i] * w)[:, None] * mix[None, :] * prof_k[:, hour].T
        return np.rint(queries)

    # -- network -------------------------------------------------------------------------------
    def network(self, meta: _Meta, areas: list[_Node], dcs: list[_Node]
                ) -> tuple[np.ndarray, np.ndarray, float]:
        node = self.root.table("network", {})
        node.check_keys(("ping_dir", "rtt_stat", "same_city_rtt_s", "fallback", "rtt_overhead_s",
                         "route_factor", "fiber_speed_km_per_s", "bandwidth_bps",
                         "tcp_window_bytes", "token_size_bits"))
        same_city = node.number("same_city_rtt_s", 0.002, lo=0.0)
        fallback = node.text("fallback", "fit", ("fit", "model"))
        overhead = node.number("rtt_overhead_s", 0.002, lo=0.0)
        route = node.number("route_factor", 1.5, lo=1.0)
        fiber = node.number("fiber_speed_km_per_s", 200_000.0, lo=0.0, lo_open=True)
        bandwidth = node.number("bandwidth_bps", 1e9, lo=0.0, lo_open=True)
        window = node.number("tcp_window_bytes", None, lo=0.0, lo_open=True)
        token_bits = node.number("token_size_bits", 32.0, lo=0.0, lo_open=True)
        matrix: pd.DataFrame | None = None
        if node.has("ping_dir"):
            directory = _data_path(node, "ping_dir", meta.data_dir, directory=True)
            stat = node.text("rtt_stat", "mean", ("mean", "median", "p95", "min", "max"))
            stamps = tuple(_stamp(p) for p in sorted(directory.glob("*_delay.csv")))
            matrix = _read_data(node, "ping_dir",
                                lambda: _cached_rtt(str(directory), stamps, stat))
        a_city = [a.text("city", None) for a in areas]
        d_city = [d.text("city", None) for d in dcs]
        a_lat = np.array([a.number("latitude", lo=-90, hi=90) for a in areas])
        a_lon = np.array([a.number("longitude", lo=-180, hi=180) for a in areas])
        d_lat = np.array([d.number("latitude", lo=-90, hi=90) for d in dcs])
        d_lon = np.array([d.number("longitude", lo=-180, hi=180) for d in dcs])
        NA, J = len(areas), len(dcs)
        rtt = np.full((NA, J), np.nan)
        known = set(matrix.index) if matrix is not None else set()
        n_meas = n_same = 0
        for i in range(NA):
            for j in range(J):
                if a_city[i] is not None and a_city[i] == d_city[j]:
                    rtt[i, j] = same_city
                    n_same += 1
                elif (matrix is not None and a_city[i] in known and d_city[j] in known
                      and np.isfinite(matrix.loc[a_city[i], d_city[j]])):
                    rtt[i, j] = float(matrix.loc[a_city[i], d_city[j]])
                    n_meas += 1
        missing = np.isnan(rtt)
        dist = _haversine_km(a_lat[:, None], a_lon[:, None], d_lat[None, :], d_lon[None, :])
        a, b = overhead, 2.0 * route / fiber
        how = f"model {overhead * 1000:g} ms + 2 × {route:g} × km / {fiber:,.0f} km/s"
        if missing.any() and fallback == "fit":
            coords: dict[str, tuple[float, float]] = {}
            for cities, lat, lon in ((d_city, d_lat, d_lon), (a_city, a_lat, a_lon)):
                for c, la, lo in zip(cities, lat, lon, strict=True):
                    if c is not None:
                        coords[c] = (float(la), float(lo))
            xs, ys = [], []
            if matrix is not None:
                names = [c for c in matrix.index if c in coords]
                for p, c1 in enumerate(names):
                    for c2 in names[p + 1:]:
                        val = float(matrix.loc[c1, c2])
                        if np.isfinite(val):
                            xs.append(float(_haversine_km(np.array(coords[c1][0]),
                                                          np.array(coords[c1][1]),
                                                          np.array(coords[c2][0]),
                                                          np.array(coords[c2][1]))))
                            ys.append(val)
            if len(xs) < 3:
                raise node.error("fallback", 'the "fit" fallback needs >= 3 measured city pairs '
                                 "whose cities have coordinates in the config (set ping_dir and "
                                 'city fields, or use fallback = "model")', fallback)
            slope, intercept = np.polyfit(np.array(xs), np.array(ys), 1)
            a, b = max(0.0, float(intercept)), max(0.0, float(slope))
            how = (f"least-squares fit over {len(xs)} measured pairs: {a * 1000:.2f} ms + "
                   f"{b * 1e6:.2f} µs/km × great-circle km")
        rtt[missing] = a + b * dist[missing]
        rtt = np.round(rtt, 6)
        n_fall = int(missing.sum())
        self.notes.append(
            f"RTT: measured ping ({node.raw('rtt_stat', 'mean')}) for {n_meas} of {NA * J} "
            f"area-DC pairs, {n_same} same-city pairs at {same_city * 1000:g} ms, {n_fall} from "
            "the fallback" + (f" ({how})" if n_fall else "")
        )
        bw = np.full((NA, J), bandwidth)
        if window is not None:
            bw = np.minimum(bw, 8.0 * window / np.maximum(rtt, 1e-6))
            self.notes.append(f"bandwidth: min({bandwidth:g} bit/s, 8 × {window:g} B / RTT) "
                              "(TCP window limit); token size "
                              f"{token_bits:g} bit")
        else:
            self.notes.append(f"bandwidth: {bandwidth:g} bit/s; token size {token_bits:g} bit")
        return rtt, np.round(bw), token_bits

    # -- the whole build -------------------------------------------------------------------------
    def build(self) -> Scenario:
        meta = self.parse_meta()
        T = 24 * meta.days
        times = pd.date_range(meta.start, periods=T, freq="h")
        sizing = self.root.table("sizing", {})
        sizing.check_keys(("capacity_headroom", "grid_headroom"))
        demand = self.root.table("demand")
        demand.check_keys(("source", "trace_files", "trace_tz", "queries_per_hour", "profile",
                           "diurnal_amplitude", "peak_local_hour", "hourly_profile",
                           "weekend_factor"))
        source = demand.text("source", None, ("trace", "synthetic"))
        if source is None:
            raise demand.error("source", 'missing field: "trace" or "synthetic"')

        areas = _entries(self.root, "area", "area_defaults")
        dcs = _entries(self.root, "datacenter", "datacenter_defaults")
        if not areas:
            raise ScenarioError("no [[area]] entries", file=self.file, column="area")
        if not dcs:
            raise ScenarioError("no [[datacenter]] entries", file=self.file, column="datacenter")
        for a in areas:
            a.check_keys(("id", "name", "city", "latitude", "longitude", "population", "tz",
                          "utc_offset"))
        for d in dcs:
            d.check_keys(("id", "name", "city", "latitude", "longitude", "tz", "utc_offset",
                          "carbon_file", "carbon_format", "carbon_tz", "carbon_kg_per_kwh",
                          "price_file", "price_node", "price_usd_per_kwh",
                          "price_adder_usd_per_kwh", "pue", "wue_l_per_kwh", "ewif_l_per_kwh",
                          "carbon_price_usd_per_kg", "grid_cap_kw", "renewable_kw",
                          "renewable_share", "renewable_profile", "capacity",
                          "delay_s_per_token"))
        area_ids = [a.ident("id") for a in areas]
        _unique(areas, area_ids, "area")
        dc_ids = [d.ident("id") for d in dcs]
        _unique(dcs, dc_ids, "datacenter")

        qts, rate, rate_note = self.parse_query_types(meta, demand, source)
        queries = self.demand(meta, times, areas, qts, demand, source, rate, rate_note)
        NA, J, K, R = len(areas), len(dcs), len(qts), len(meta.resources)
        h = np.array([q.input_tokens for q in qts])
        f = np.array([q.output_tokens for q in qts])
        tau_in = _sig(np.array([q.tau_in for q in qts]))
        tau_out = _sig(np.array([q.tau_out for q in qts]))
        e_query = tau_in * h + tau_out * f  # kWh per query
        it_kw = queries.sum(axis=1) @ e_query  # (T,)
        peak_it = float(it_kw.max())

        # -- per-DC static values
        pue = np.array([d.number("pue", lo=1.0) for d in dcs])
        wue = np.array([d.number("wue_l_per_kwh", lo=0.0) for d in dcs])
        ewif = np.array([d.number("ewif_l_per_kwh", lo=0.0) for d in dcs])
        delta = np.array([d.number("carbon_price_usd_per_kg", lo=0.0) for d in dcs])

        # -- hourly series
        carbon = np.empty((T, J))
        price = np.empty((T, J))
        renewable = np.empty((T, J))
        grid_cap = np.empty((T, J))
        carbon_notes, price_notes = [], []
        grid_headroom = sizing.number("grid_headroom", 2.0, lo=0.0, lo_open=True)
        for j, d in enumerate(dcs):
            local = _local_time(d, times, required=False)
            carbon[:, j], note = self.carbon_series(d, meta, times)
            carbon_notes.append(f"{dc_ids[j]}: {note}")
            price[:, j], note = self.price_series(d, meta, times, local)
            price_notes.append(f"{dc_ids[j]}: {note}")
            even_kw = pue[j] * peak_it / J
            renewable[:, j] = self.renewable_series(d, times, local, even_kw)
            cap = d.raw("grid_cap_kw")
            if cap == "auto":
                grid_cap[:, j] = math.ceil(grid_headroom * even_kw)
            else:
                grid_cap[:, j] = d.check_number("grid_cap_kw", cap, lo=0.0)
        carbon = np.round(carbon, 9)
        price = np.round(price, 8)
        renewable = np.round(renewable, 3)
        self.notes.append(f"carbon ({meta.carbon_basis} basis for Electricity Maps, "
                          f"date mapping {meta.date_mapping}): " + "; ".join(carbon_notes))
        self.notes.append("electricity price: " + "; ".join(price_notes))

        # -- processing delay, resources, capacity
        v = np.empty((J, K))
        for j, d in enumerate(dcs):
            v[j] = self.delay_per_token(d, qts)
        v = _sig(v)
        alpha = np.empty((K, R))
        for k, q in enumerate(qts):
            alpha[k] = self.resource_use(q, meta.resources)
        alpha = _sig(alpha)
        use_t = np.einsum("tk,kr->tr", queries.sum(axis=1) * (h + f)[None, :], alpha)
        peak_use = use_t.max(axis=0)
        cap_headroom = sizing.number("capacity_headroom", 2.0, lo=0.0, lo_open=True)
        capacity = np.empty((J, R))
        for j, d in enumerate(dcs):
            capacity[j] = self.capacity(d, meta.resources, peak_use, cap_headroom, J)

        # -- network and delays
        rtt, bandwidth, token_bits = self.network(meta, areas, dcs)
        token_size = np.full((T, NA, K), token_bits)
        # delay of serving (i,k,t) entirely at j: (T, NA, J, K)
        per_q_tran = token_bits * (h + f)[None, None, :] / bandwidth[:, :, None]  # (NA,J,K)
        s_jk = v * (h + f)[None, :]  # (J,K)
        lam = queries[:, :, None, :]
        full_delay = lam * (per_q_tran[None] + s_jk[None, None]) + rtt[None, :, :, None]
        best = full_delay.min(axis=2)  # (T, NA, K)
        delay_limit = np.empty((NA, K))
        for k, q in enumerate(qts):
            delay_limit[:, k] = self.delay_limit(q, area_ids, queries[:, :, k])
        delay_limit = np.ceil(delay_limit * 1000.0) / 1000.0
        bad = best > delay_limit[None] * (1 + 1e-12)
        if bad.any():
            t, i, k = (int(x[0]) for x in np.nonzero(bad))
            key = "latency_limit_s" if qts[k].node.has("latency_limit_s") else "delay_limit_s"
            raise qts[k].node.error(
                key,
                f"no data center meets the delay limit of area {area_ids[i]!r} at hour {t}: "
                f"limit {delay_limit[i, k]:.6g} s (hour total), best {best[t, i, k]:.6g} s; raise "
                "the limit",
                qts[k].node.raw(key),
            )

        # -- necessary feasibility checks
        short = np.flatnonzero(capacity.sum(axis=0) < peak_use * (1 - 1e-9))
        if short.size:
            r = int(short[0])
            raise ScenarioError(
                f"the data centers' total {meta.resources[r]!r} capacity "
                f"{capacity[:, r].sum():.6g} is below the peak-hour use {peak_use[r]:.6g}; raise "
                "the capacities (or capacity_headroom)",
                file=self.file, column=f"datacenter[*].capacity.{meta.resources[r]}",
            )
        supply = ((grid_cap + renewable) / pue[None, :]).sum(axis=1)
        short_t = np.flatnonzero(supply < it_kw * (1 - 1e-9))
        if short_t.size:
            t = int(short_t[0])
            raise ScenarioError(
                f"at hour {t} the grid caps plus renewables ({supply[t]:.6g} kW of IT load) "
                f"cannot carry the demand's IT load {it_kw[t]:.6g} kW; raise grid_cap_kw "
                "(or grid_headroom)",
                file=self.file, column="datacenter[*].grid_cap_kw",
            )

        # -- water budget
        water_per_it = wue[None, :] + ewif[None, :] * pue[None, :]  # l per IT kWh, (T,J)
        water_per_it = np.broadcast_to(water_per_it, (T, J))
        budget = meta.water_budget_l
        if meta.water_budget_factor is not None:
            even = float((it_kw[:, None] / J * water_per_it).sum())
            budget = float(np.round(meta.water_budget_factor * even, 3))
            self.notes.append(f"water budget: {meta.water_budget_factor:g} × the water of an "
                              f"even split ({even:,.1f} l)")
        if budget is not None:
            least = float((it_kw * water_per_it.min(axis=1)).sum())
            if budget < least * (1 - 1e-9):
                raise ScenarioError(
                    f"water budget {budget:.6g} l is below the least water any allocation needs "
                    f"({least:.6g} l)",
                    file=self.file,
                    column="scenario.water_budget_factor" if meta.water_budget_factor is not None
                    else "scenario.water_budget_l",
                )

        ds = dataset_from_arrays(
            {
                "dc_name": np.array([d.text("name", d.raw("id")) for d in dcs], dtype=object),
                "dc_latitude": np.array([d.number("latitude") for d in dcs]),
                "dc_longitude": np.array([d.number("longitude") for d in dcs]),
                "pue": pue,
                "carbon_price_usd_per_kg": delta,
                "area_name": np.array(
                    [a.text("name", a.raw("id")) for a in areas], dtype=object
                ),
                "area_latitude": np.array([a.number("latitude") for a in areas]),
                "area_longitude": np.array([a.number("longitude") for a in areas]),
                "population": np.array([a.number("population") for a in areas]),
                "input_tokens": h,
                "output_tokens": f,
                "energy_in_kwh_per_token": tau_in,
                "energy_out_kwh_per_token": tau_out,
                "delay_penalty_usd_per_s": np.array([q.rho for q in qts]),
                "capacity": capacity,
                "units_per_token": alpha,
                "delay_s_per_token": v,
                "rtt_s": rtt,
                "bandwidth": bandwidth,
                "delay_limit_s": delay_limit,
                "price_usd_per_kwh": price,
                "carbon_kg_per_kwh": carbon,
                "renewable_kw": renewable,
                "grid_cap_kw": grid_cap,
                "wue_l_per_kwh": wue,
                "ewif_l_per_kwh": ewif,
                "queries": queries,
                "token_size": token_size,
            },
            areas=area_ids,
            dcs=dc_ids,
            query_types=[q.id for q in qts],
            resources=meta.resources,
            hours=T,
        )
        start_text = meta.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        provenance = (
            f"Built by greensched.builder from {self.file.name}: {T} h from {start_text}. "
            + ". ".join(self.notes) + "."
        )
        description = (meta.description.strip() + " " if meta.description.strip() else "") + \
            provenance
        return Scenario(
            name=meta.name,
            description=description,
            hours=T,
            start=start_text,
            water_budget_l=budget,
            weights=meta.weights,
            ds=ds,
            extra_meta={"build_config": self.file.name},
        )

    # -- per-DC pieces ---------------------------------------------------------------------------
    def carbon_series(self, d: _Node, meta: _Meta, times: pd.DatetimeIndex
                      ) -> tuple[np.ndarray, str]:
        if d.has("carbon_file") == d.has("carbon_kg_per_kwh"):
            raise d.error("carbon_file", "give exactly one of carbon_file or carbon_kg_per_kwh")
        if d.has("carbon_kg_per_kwh"):
            value = d.number("carbon_kg_per_kwh", lo=0.0)
            return np.full(len(times), value), f"constant {value:g} kg/kWh (configured)"
        path = _data_path(d, "carbon_file", meta.data_dir)
        fmt = d.text("carbon_format", "auto", ("auto", "electricity_maps", "lets_wait_awhile"))
        if fmt == "auto":
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                header = fh.readline()
            if "Datetime (UTC)" in header:
                fmt = "electricity_maps"
            elif re.match(r"^\s*Time\s*,", header) and "Carbon Intensity" in header:
                fmt = "lets_wait_awhile"
            else:
                raise d.error("carbon_file", "cannot tell the file's format from its header; set "
                              "carbon_format", d.raw("carbon_file"))
        if fmt == "electricity_maps":
            series = _read_data(d, "carbon_file",
                                lambda: _cached_electricity_maps(_stamp(path), meta.carbon_basis))
            what = f"Electricity Maps {series.attrs.get('zone', '')}"
        else:
            tz = d.text("carbon_tz", "UTC")
            series = _read_data(d, "carbon_file",
                                lambda: _cached_lets_wait_awhile(_stamp(path), tz))
            what = f"Let's-Wait-Awhile {series.attrs.get('zone', '')} (timestamps read as {tz})"
        try:
            values, info = _align(series, times, meta.date_mapping)
        except ValueError as exc:
            raise d.error("carbon_file", str(exc), d.raw("carbon_file")) from exc
        return values, what + " " + _describe(info)

    def price_series(self, d: _Node, meta: _Meta, times: pd.DatetimeIndex,
                     local: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, str]:
        adder = d.number("price_adder_usd_per_kwh", 0.0)
        if d.has("price_file") == d.has("price_usd_per_kwh"):
            raise d.error("price_file", "give exactly one of price_file or price_usd_per_kwh")
        suffix = f" + adder {adder:g} $/kWh" if adder else ""
        if d.has("price_usd_per_kwh"):
            value = d.raw("price_usd_per_kwh")
            if isinstance(value, list):
                prices = _profile24(d, "price_usd_per_kwh", local)
                return prices + adder, "configured 24-hour local tariff" + suffix
            flat = d.check_number("price_usd_per_kwh", value)
            return np.full(len(times), flat + adder), f"flat {flat:g} $/kWh (configured)" + suffix
        path = _data_path(d, "price_file", meta.data_dir)
        df = _read_data(d, "price_file", lambda: _cached_lmp(_stamp(path)))
        nodes = sorted(df["location"].unique())
        node_name = d.text("price_node", None)
        if node_name is None:
            if len(nodes) != 1:
                raise d.error("price_node", f"the price file has several nodes ({', '.join(nodes)})"
                              "; name one")
            node_name = nodes[0]
        elif node_name not in nodes:
            raise d.error("price_node", f"not in the price file (nodes: {', '.join(nodes)})",
                          node_name)
        series = df.loc[df["location"] == node_name, "lmp_usd_per_kwh"]
        try:
            values, info = _align(series, times, meta.date_mapping)
        except ValueError as exc:
            raise d.error("price_file", str(exc), d.raw("price_file")) from exc
        note = f"real-time LMP {path.stem} node {node_name} (hourly mean) " + _describe(info)
        return values + adder, note + suffix

    def renewable_series(self, d: _Node, times: pd.DatetimeIndex,
                         local: tuple[np.ndarray, np.ndarray] | None, even_kw: float
                         ) -> np.ndarray:
        if d.has("renewable_kw") and d.has("renewable_share"):
            raise d.error("renewable_share", "give renewable_kw or renewable_share, not both")
        if d.has("renewable_share"):
            peak = d.number("renewable_share", lo=0.0) * even_kw
        else:
            peak = d.number("renewable_kw", 0.0, lo=0.0)
        prof = d.raw("renewable_profile", "solar")
        if isinstance(prof, list):
            shape = _profile24(d, "renewable_profile", local)
        elif prof == "solar":
            shape = _solar(times, d.number("latitude", lo=-90, hi=90),
                           d.number("longitude", lo=-180, hi=180))
        elif prof == "flat":
            shape = np.ones(len(times))
        else:
            raise d.error("renewable_profile", 'expected "solar", "flat" or a list of 24 numbers',
                          prof)
        return peak * shape

    def delay_per_token(self, d: _Node, qts: list[_QT]) -> np.ndarray:
        if not d.has("delay_s_per_token"):
            return np.array([self.measured_time(q)[0] for q in qts])
        value = d.raw("delay_s_per_token")
        fallback: np.ndarray | None = None
        if "delay_s_per_token" in d.data and "delay_s_per_token" in d.defaults:
            # types the DC's own table leaves out take the [datacenter_defaults] value
            fallback = self.delay_per_token(_Node(d.defaults, d.defaults_path or "", d.file), qts)
        if isinstance(value, dict):
            sub = d.table("delay_s_per_token")
            ids = [q.id for q in qts]
            sub.check_keys([*ids, "default"])
            out = np.empty(len(qts))
            for k, q in enumerate(qts):
                if sub.has(q.id):
                    out[k] = sub.number(q.id, lo=0.0)
                elif sub.has("default"):
                    out[k] = sub.number("default", lo=0.0)
                elif fallback is not None:
                    out[k] = fallback[k]
                else:
                    out[k] = self.measured_time(q)[0]
            return out
        return np.full(len(qts), d.check_number("delay_s_per_token", value, lo=0.0))

    def resource_use(self, q: _QT, resources: list[str]) -> np.ndarray:
        out = np.empty(len(resources))
        node = q.node
        table = node.table("resource_use_per_token") if node.has("resource_use_per_token") else None
        if table is not None:
            table.check_keys(resources)
        for r, name in enumerate(resources):
            if table is not None and table.has(name):
                out[r] = table.number(name, lo=0.0)
            elif name == "gpu":
                out[r] = self.measured_time(q)[1]
            else:
                raise node.error("resource_use_per_token", f"missing use of resource {name!r} "
                                 "(only 'gpu' has a measured default, in GPU-seconds)")
        return out

    def capacity(self, d: _Node, resources: list[str], peak_use: np.ndarray, headroom: float,
                 J: int) -> np.ndarray:
        value = d.raw("capacity", "auto")
        if value == "auto":
            return np.ceil(headroom * peak_use / J)
        if not isinstance(value, dict):
            raise d.error("capacity", 'expected "auto" or a table {resource = units}', value)
        table = d.table("capacity")
        table.check_keys(resources)
        out = np.empty(len(resources))
        for r, name in enumerate(resources):
            raw = table.raw(name, "auto")
            out[r] = (math.ceil(headroom * peak_use[r] / J) if raw == "auto"
                      else table.check_number(name, raw, lo=0.0))
        return out

    def delay_limit(self, q: _QT, area_ids: list[str], lam: np.ndarray) -> np.ndarray:
        node = q.node
        if node.has("latency_limit_s") == node.has("delay_limit_s"):
            raise node.error("latency_limit_s", "give exactly one of latency_limit_s (per query) "
                             "or delay_limit_s (the model's hour total)")
        if node.has("latency_limit_s"):
            per_query = node.number("latency_limit_s", lo=0.0, lo_open=True)
            return per_query * np.maximum(1.0, lam.max(axis=0))
        value = node.raw("delay_limit_s")
        if isinstance(value, dict):
            table = node.table("delay_limit_s")
            table.check_keys(area_ids)
            return np.array([table.number(a, lo=0.0) for a in area_ids])
        return np.full(len(area_ids), node.check_number("delay_limit_s", value, lo=0.0))


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


def build_scenario(
    config_path: str | Path,
    *,
    days: int | None = None,
    start: str | None = None,
    data_dir: str | Path | None = None,
) -> Scenario:
    """Build a scenario from a TOML build configuration (see ``docs/scenario-build.md``).

    Parameters
    ----------
    config_path
        The configuration file.
    days
        Override ``[scenario] days`` (1–366).
    start
        Override ``[scenario] start`` (``YYYY-MM-DD`` or an ISO-8601 UTC time).
    data_dir
        Override ``[scenario] data_dir`` (the folder of the shared data sets).

    Returns
    -------
    Scenario
        A validated scenario (``hours = 24 × days``; ``start`` = the UTC time of hour 0).

    Raises
    ------
    ScenarioError
        With ``file`` = the configuration and ``column`` = the field path at fault
        (``datacenter[2].pue``), for every bad, missing or unknown field, unreadable data file,
        or a configuration that cannot be feasible (no DC meets a delay limit, too little
        capacity, grid power or water).
    """
    path = Path(config_path)
    return _Builder(path, days, start, data_dir).build()


def build_from_config(
    config_path: str | Path,
    out_dir: str | Path,
    days: int | None = None,
    start: str | None = None,
    *,
    data_dir: str | Path | None = None,
) -> Path:
    """Build a scenario, save it in ``out_dir``, reload it and check the reload is identical.

    ``days`` and ``start`` override the configuration (as in ``greensched scenario build``).
    Returns the output directory.
    """
    scen = build_scenario(config_path, days=days, start=start, data_dir=data_dir)
    out = scen.save(out_dir)
    back = load_scenario(out)
    same = (
        back.ds.identical(scen.ds)
        and back.name == scen.name
        and back.description == scen.description
        and back.hours == scen.hours
        and back.start == scen.start
        and back.water_budget_l == scen.water_budget_l
        and back.weights == scen.weights
    )
    if not same:
        raise ScenarioError("the saved scenario does not reload identically", file=out)
    return Path(out)
