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
from typing import Any, Literal

import numpy as np
import pandas as pd

from greensched.errors import DataFileError

__all__ = [
    "NA_STRINGS",
    "RawTable",
    "read_raw",
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
