"""Shared helpers of the real-data adapters.

Every adapter in :mod:`greensched.data` reads a CSV file through :func:`read_raw`, which

* checks the header (line 1) for the required columns,
* keeps every cell as text so that a bad value can be reported with its exact location,
* remembers the 1-based line number of every data row (header = line 1, first data row = line 2).

Values are then converted column by column with :meth:`RawTable.numeric`,
:meth:`RawTable.times` and :meth:`RawTable.booleans`; any malformed value raises
:class:`greensched.errors.DataFileError` naming the file, the line, the column and the value.

Unit handling: the unit written in a header (``gCO₂eq/kWh``, ``$/MWh``, ``ms`` …) is parsed by
:func:`carbon_factor`, :func:`price_factor` and :func:`duration_factor`, which return the factor
to the package's canonical units (kg CO₂-eq/kWh, $/kWh and seconds). An unknown unit is an error.

Gap handling: :func:`fill_gaps` fills short holes of a regular time series by linear
interpolation in time and reports every hole as a :class:`Gap`.

Time zones: timestamps carrying an explicit UTC offset are converted to UTC; naive timestamps are
localised in the time zone that the *caller* states. Local times that do not exist or occur twice
around a daylight-saving change are an error unless the caller picks an explicit policy; they are
never shifted silently.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from greensched.errors import DataFileError

__all__ = [
    "NA_STRINGS",
    "Gap",
    "RawTable",
    "read_raw",
    "fill_gaps",
    "fill_frame",
    "gaps_frame",
    "check_unique_sorted",
    "carbon_factor",
    "price_factor",
    "duration_factor",
    "split_unit",
    "AmbiguousPolicy",
    "NonexistentPolicy",
]

#: Cell texts read as "missing" (besides the empty cell). Anything else must parse.
NA_STRINGS: tuple[str, ...] = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")

AmbiguousPolicy = Literal["raise", "infer", "earliest", "latest", "NaT"]
NonexistentPolicy = Literal["raise", "NaT", "shift_forward", "shift_backward"]

_AMBIGUOUS = ("raise", "infer", "earliest", "latest", "NaT")
_NONEXISTENT = ("raise", "NaT", "shift_forward", "shift_backward")
_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2})$"


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------

_MASS_KG = {
    "mg": 1e-6,
    "g": 1e-3,
    "kg": 1.0,
    "t": 1e3,
    "tonne": 1e3,
    "tonnes": 1e3,
    "lb": 0.45359237,
    "lbs": 0.45359237,
}
_ENERGY_KWH = {"wh": 1e-3, "kwh": 1.0, "mwh": 1e3, "gwh": 1e6}
_CURRENCY_USD = {
    "$": 1.0,
    "usd": 1.0,
    "us$": 1.0,
    "¢": 0.01,
    "c": 0.01,
    "cent": 0.01,
    "cents": 0.01,
}
_DURATION_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "h": 3600.0,
}
_GAS_RE = re.compile(r"co(?:2|₂)(?:[-_ ]?eq|e)?\.?", re.IGNORECASE)


def _norm_unit(unit: str) -> str:
    return re.sub(r"\s+", "", unit).strip().lower()


def _ratio(unit: str) -> tuple[str, str]:
    parts = _norm_unit(unit).split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"unit {unit!r} is not of the form <numerator>/<denominator>")
    return parts[0], parts[1]


def carbon_factor(unit: str) -> float:
    """Factor converting a carbon-intensity unit to kg CO₂-eq per kWh.

    Parameters
    ----------
    unit
        Unit text such as ``"gCO₂eq/kWh"``, ``"gCO2eq / kWh"``, ``"kgCO2/MWh"``, ``"lb/MWh"``.
        The gas label (CO2, CO₂, CO2eq, CO2e) is optional.

    Returns
    -------
    float
        Multiply values in ``unit`` by this factor to get kg/kWh.

    Raises
    ------
    ValueError
        If the mass or the energy part is not recognised.
    """
    num, den = _ratio(unit)
    mass = _GAS_RE.sub("", num)
    if mass not in _MASS_KG or den not in _ENERGY_KWH:
        raise ValueError(f"unknown carbon-intensity unit {unit!r}; expected e.g. 'gCO2eq/kWh'")
    return _MASS_KG[mass] / _ENERGY_KWH[den]


def price_factor(unit: str) -> float:
    """Factor converting an electricity-price unit (``$/MWh``, ``USD/kWh``, ``¢/kWh``) to $/kWh.

    Raises
    ------
    ValueError
        If the currency or the energy part is not recognised (only US dollars and cents are).
    """
    num, den = _ratio(unit)
    if num not in _CURRENCY_USD or den not in _ENERGY_KWH:
        raise ValueError(f"unknown price unit {unit!r}; expected e.g. '$/MWh' or '$/kWh'")
    return _CURRENCY_USD[num] / _ENERGY_KWH[den]


def duration_factor(unit: str) -> float:
    """Factor converting a duration unit (``ms``, ``s``, ``us``, ``min`` …) to seconds.

    Raises
    ------
    ValueError
        If the unit is not recognised.
    """
    key = _norm_unit(unit)
    if key not in _DURATION_S:
        raise ValueError(f"unknown duration unit {unit!r}; expected e.g. 'ms' or 's'")
    return _DURATION_S[key]


def split_unit(header: str) -> tuple[str, str | None]:
    """Split ``"name (unit)"`` or ``"name [unit]"`` into ``(name, unit)``.

    A trailing bracket group is taken as the unit; ``(name, None)`` is returned when the header
    has none.
    """
    m = re.match(r"^(?P<name>.*?)\s*[(\[](?P<unit>[^()\[\]]*)[)\]]\s*$", header)
    if m is None:
        return header.strip(), None
    return m.group("name").strip(), m.group("unit").strip()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _file_error(path: Path, message: str, **where: Any) -> DataFileError:
    return DataFileError(message, file=path, **where)


@dataclass
class RawTable:
    """A CSV file read as text, with the line number of every data row.

    Attributes
    ----------
    path
        The file read.
    header
        Column names of line 1 (surrounding blanks stripped).
    frame
        Text cells (``str`` dtype, missing cells as NaN), one row per non-blank data line,
        index ``0..n-1``.
    lines
        1-based line number in the file of each row of ``frame``.
    """

    path: Path
    header: list[str]
    frame: pd.DataFrame
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    # -- errors -------------------------------------------------------------------------------
    def error(
        self,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: Any = DataFileError._MISSING,
        line: int | None = None,
    ) -> DataFileError:
        """Build a :class:`DataFileError` for row position ``row`` (or explicit ``line``)."""
        if line is None and row is not None:
            line = int(self.lines[row])
        return DataFileError(message, file=self.path, line=line, column=column, value=value)

    def header_error(
        self, message: str, column: str, value: Any = DataFileError._MISSING
    ) -> DataFileError:
        """Build a :class:`DataFileError` located in the header (line 1)."""
        return DataFileError(message, file=self.path, line=1, column=column, value=value)

    # -- conversions --------------------------------------------------------------------------
    def text(self, column: str) -> pd.Series:
        """The raw text of ``column`` (NaN where the cell is empty)."""
        return self.frame[column]

    def numeric(
        self,
        column: str,
        *,
        allow_missing: bool = True,
        integer: bool = False,
        min_value: float | None = None,
        max_value: float | None = None,
    ) -> np.ndarray:
        """Convert ``column`` to a float64 array (or int64 with ``integer=True``).

        Raises
        ------
        DataFileError
            At the first cell that is not a finite number, that is missing while
            ``allow_missing`` is false, that is not integral while ``integer`` is true, or that
            lies outside ``[min_value, max_value]``.
        """
        raw = self.frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        present = raw.notna().to_numpy()
        finite = np.isfinite(values)
        bad = present & ~finite
        if bad.any():
            i = int(np.argmax(bad))
            raise self.error("not a number", row=i, column=column, value=raw.iloc[i])
        if not allow_missing and not present.all():
            i = int(np.argmin(present))
            raise self.error("missing value", row=i, column=column)
        if integer:
            frac = finite & (values != np.round(values))
            if frac.any():
                i = int(np.argmax(frac))
                raise self.error("not an integer", row=i, column=column, value=raw.iloc[i])
        for bound, cmp, word in ((min_value, np.less, "below"), (max_value, np.greater, "above")):
            if bound is None:
                continue
            with np.errstate(invalid="ignore"):
                out = finite & cmp(values, bound)
            if out.any():
                i = int(np.argmax(out))
                raise self.error(
                    f"value {word} the allowed {'minimum' if word == 'below' else 'maximum'} "
                    f"{bound:g}",
                    row=i,
                    column=column,
                    value=raw.iloc[i],
                )
        if integer:
            return values.astype(np.int64)
        return values

    def booleans(self, column: str) -> pd.Series:
        """Convert ``column`` of ``true``/``false`` text (any case, also 1/0) to nullable booleans.

        Empty cells become ``<NA>``; any other text raises :class:`DataFileError`.
        """
        raw = self.frame[column]
        low = raw.str.strip().str.lower()
        mapped = low.map(
            {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        )
        bad = (raw.notna() & mapped.isna()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise self.error("expected true or false", row=i, column=column, value=raw.iloc[i])
        return pd.Series(mapped.to_numpy(dtype=object), dtype="boolean", index=self.frame.index)

    def times(
        self,
        column: str,
        *,
        fmt: str | None = None,
        tz: str | None = "UTC",
        ambiguous: AmbiguousPolicy = "raise",
        nonexistent: NonexistentPolicy = "raise",
    ) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """Parse ``column`` as timestamps and return them in UTC.

        Parameters
        ----------
        column
            Column to parse.
        fmt
            ``strftime`` format of the cells (fast, exact); ``None`` accepts ISO 8601.
        tz
            Time zone of *naive* cells (IANA name such as ``"UTC"`` or ``"Europe/Berlin"``).
            ``None`` means the caller does not know: naive cells are then an error. Cells
            carrying an explicit UTC offset are converted with their own offset and must not be
            mixed with naive cells.
        ambiguous
            What to do with local times that occur twice (end of daylight-saving time):
            ``"raise"`` (default), ``"infer"`` (from the order of repeated times),
            ``"earliest"`` (first occurrence, DST), ``"latest"`` (second, standard time) or
            ``"NaT"`` (drop the row; reported in the returned mask).
        nonexistent
            What to do with local times skipped at the start of daylight-saving time:
            ``"raise"`` (default), ``"NaT"`` (drop the row), ``"shift_forward"`` or
            ``"shift_backward"`` (move to the nearest existing instant).

        Returns
        -------
        (DatetimeIndex, ndarray)
            UTC timestamps (``datetime64[ns, UTC]``) of the kept rows and a boolean mask of kept
            rows (all ``True`` unless a ``"NaT"`` policy dropped some).

        Raises
        ------
        DataFileError
            At the first empty or unparsable cell, or the first ambiguous/nonexistent local time
            under the ``"raise"`` policy.
        """
        if ambiguous not in _AMBIGUOUS:
            raise ValueError(f"ambiguous must be one of {_AMBIGUOUS}, got {ambiguous!r}")
        if nonexistent not in _NONEXISTENT:
            raise ValueError(f"nonexistent must be one of {_NONEXISTENT}, got {nonexistent!r}")
        raw = self.frame[column]
        missing = raw.isna().to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            raise self.error("missing time", row=i, column=column)
        n = len(raw)
        if n == 0:
            return pd.DatetimeIndex([], dtype="datetime64[ns, UTC]"), np.ones(0, dtype=bool)
        has_offset = raw.str.strip().str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool)
        aware = bool(has_offset[0])
        mixed = has_offset != aware
        if mixed.any():
            i = int(np.argmax(mixed))
            if pd.isna(pd.to_datetime(raw.iloc[i], format=fmt or "ISO8601", errors="coerce")):
                raise self.error("unparsable time", row=i, column=column, value=raw.iloc[i])
            raise self.error(
                "time zone offset present on some rows but not on others",
                row=i,
                column=column,
                value=raw.iloc[i],
            )
        if not aware and tz is None:
            raise self.error(
                "naive timestamps but no time zone given; pass tz=",
                row=0,
                column=column,
                value=raw.iloc[0],
            )
        parsed = pd.to_datetime(raw, format=fmt or "ISO8601", errors="coerce", utc=aware)
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            expected = f"format {fmt!r}" if fmt else "an ISO 8601 date-time"
            raise self.error(
                f"unparsable time, expected {expected}", row=i, column=column, value=raw.iloc[i]
            )
        dti = pd.DatetimeIndex(parsed).as_unit("ns")
        keep = np.ones(n, dtype=bool)
        if aware:
            return dti.tz_convert("UTC"), keep
        assert tz is not None
        if tz.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
            return dti.tz_localize("UTC"), keep
        return self._localize(dti, column, tz, ambiguous, nonexistent)

    def _localize(
        self,
        dti: pd.DatetimeIndex,
        column: str,
        tz: str,
        ambiguous: str,
        nonexistent: str,
    ) -> tuple[pd.DatetimeIndex, np.ndarray]:
        n = len(dti)
        try:
            first = dti.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
        except Exception as exc:  # unknown time zone name
            raise ValueError(f"unknown time zone {tz!r}: {exc}") from exc
        second = dti.tz_localize(tz, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
        gone = first.isna()
        twice = ~gone & (first != second)
        raw = self.frame[column]
        if nonexistent == "raise" and gone.any():
            i = int(np.argmax(gone))
            raise self.error(
                f"local time does not exist in {tz} (skipped at the daylight-saving change); "
                "pass nonexistent='NaT', 'shift_forward' or 'shift_backward' to handle it",
                row=i,
                column=column,
                value=raw.iloc[i],
            )
        if ambiguous == "raise" and twice.any():
            i = int(np.argmax(twice))
            raise self.error(
                f"local time is ambiguous in {tz} (occurs twice at the daylight-saving change); "
                "pass ambiguous='infer', 'earliest', 'latest' or 'NaT' to handle it",
                row=i,
                column=column,
                value=raw.iloc[i],
            )
        amb_arg: Any
        if ambiguous == "earliest":
            amb_arg = np.ones(n, dtype=bool)
        elif ambiguous == "latest":
            amb_arg = np.zeros(n, dtype=bool)
        else:
            amb_arg = ambiguous
        nonex_arg = nonexistent if nonexistent != "raise" else "NaT"
        if ambiguous == "infer" and twice.any():
            try:
                local = dti.tz_localize(tz, ambiguous="infer", nonexistent=nonex_arg)
            except ValueError as exc:
                i = int(np.argmax(twice))
                raise self.error(
                    f"cannot infer which of the repeated local times in {tz} is meant ({exc}); "
                    "pass ambiguous='earliest', 'latest' or 'NaT'",
                    row=i,
                    column=column,
                    value=raw.iloc[i],
                ) from exc
        else:
            local = dti.tz_localize(
                tz, ambiguous=amb_arg if ambiguous != "infer" else "NaT", nonexistent=nonex_arg
            )
        keep = ~np.asarray(local.isna())
        return local[keep].tz_convert("UTC"), keep

    def subset(self, mask: np.ndarray) -> RawTable:
        """Rows selected by boolean ``mask`` (index reset, line numbers kept)."""
        return RawTable(
            self.path, self.header, self.frame[mask].reset_index(drop=True), self.lines[mask]
        )


def _read_header(path: Path, encoding: str) -> list[str]:
    try:
        with path.open("r", encoding=encoding, newline="") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise _file_error(path, f"not {encoding} text ({exc.reason})", line=1) from exc
    if not first.strip():
        raise _file_error(path, "empty file or empty header line", line=1)
    return [c.strip() for c in next(csv.reader([first]))]


def read_raw(
    path: str | Path,
    required: Iterable[str] = (),
    *,
    usecols: Sequence[str] | None = None,
    encoding: str = "utf-8-sig",
) -> RawTable:
    """Read a CSV file as text after checking its header.

    Parameters
    ----------
    path
        The CSV file (UTF-8; a byte-order mark is accepted).
    required
        Column names that line 1 must contain (compared after stripping blanks).
    usecols
        Columns to keep (default: all). Must be a subset of the header.
    encoding
        Text encoding.

    Returns
    -------
    RawTable
        Text cells and 1-based line numbers. Entirely blank lines are skipped (their numbers are
        accounted for). A file whose cells contain quoted line breaks would shift the reported
        line numbers; none of the supported sources does that.

    Raises
    ------
    DataFileError
        If the file is missing, not decodable, has no header, lacks a required column,
        repeats a column name, or a row has more fields than the header.
    """
    p = Path(path)
    if not p.is_file():
        raise _file_error(p, "no such file")
    header = _read_header(p, encoding)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise _file_error(p, "duplicate column name in header", line=1, column=name)
        seen.add(name)
    for name in required:
        if name not in seen:
            raise _file_error(
                p, f"missing required column (header has {header})", line=1, column=name
            )
    if usecols is not None:
        for name in usecols:
            if name not in seen:
                raise _file_error(
                    p, f"missing required column (header has {header})", line=1, column=name
                )
    try:
        frame = pd.read_csv(
            p,
            dtype=str,
            keep_default_na=False,
            na_values=list(NA_STRINGS),
            skip_blank_lines=False,
            encoding=encoding,
            header=0,
            names=header,
            usecols=list(usecols) if usecols is not None else None,
        )
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) if m else None
        raise _file_error(p, f"malformed CSV row ({exc})", line=line) from exc
    except UnicodeDecodeError as exc:
        raise _file_error(p, f"not {encoding} text ({exc.reason})") from exc
    lines = np.arange(2, len(frame) + 2, dtype=np.int64)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return RawTable(p, header, frame, lines)


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
