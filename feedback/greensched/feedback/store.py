"""Outcome store: what each job really cost, next to what the predictor said it would cost.

One row per job that ran (``job_id`` is the primary key). An outcome record has these fields:

| field | type | unit | required | meaning |
|---|---|---|---|---|
| ``job_id`` | str | – | yes | unique job identifier (the key; a job is stored once) |
| ``arrival_s`` | float | s since hour 0 | one of the two | arrival time |
| ``hour`` | int | slot | one of the two | arrival slot (``arrival_s // 3600`` when both given) |
| ``area`` | str | – | yes | area the request came from |
| ``query_type`` | str | – | yes | query type |
| ``input_tokens`` | int | tokens | yes | prompt length |
| ``output_tokens`` | int | tokens | no | generated length |
| ``sla_s`` | float | s | no | latency objective (> 0) |
| ``prompt`` | str | – | no | prompt text (for re-training the prompt predictor) |
| ``features`` | JSON object | – | no | feature dict (or a JSON string of one); stored canonically |
| ``dc`` | str | – | yes | data center that ran the job |
| ``model_version`` | str | – | yes | predictor version that made the prediction |
| ``pred_energy_kwh`` | float | kWh | yes | predicted energy (> 0) |
| ``pred_service_s`` | float | s | yes | predicted service time (> 0) |
| ``pred_energy_kwh_p10`` / ``_p90`` | float | kWh | no | predicted quantiles (p10 <= p90) |
| ``pred_service_s_p10`` / ``_p90`` | float | s | no | predicted quantiles (p10 <= p90) |
| ``propensity`` | float | – | no | probability the policy gave to the chosen dc, in (0, 1] |
| ``energy_kwh`` | float | kWh | yes | measured energy (> 0) |
| ``service_s`` | float | s | yes | measured service time (> 0) |
| ``measured_at`` | timestamp | UTC | no | when measured (ISO 8601, naive = UTC); default: now |

The store adds ``created_at`` (UTC ingest time) and ``ingest_id`` (one id per ingest call).

Semantics of :meth:`OutcomeStore.ingest`:

* **validated before writing** - every row is checked first; any problem raises
  :class:`OutcomeValidationError` naming row (and file line), column, value and what was
  expected, and nothing is written;
* **idempotent** - a ``job_id`` already stored with the same content is counted in
  ``duplicates_identical`` and left alone (``created_at``/``ingest_id`` are bookkeeping, and
  ``measured_at`` is compared only when the re-sent record gives one);
* **conflicts are reported, never overwritten** - a stored ``job_id`` whose content differs is
  listed in ``IngestReport.conflicts`` with the differing columns;
* **atomic** - one database transaction per call: after a crash either the whole batch is
  stored or none of it.

Backends: SQLite (a file path or ``sqlite:///...``) and PostgreSQL (``postgresql://...``,
through psycopg 3), on one SQLAlchemy Core code path.

SQLite durability: the file is put in WAL mode with ``synchronous=FULL``. In WAL mode
``synchronous=NORMAL`` already survives a *process* crash (``kill -9``: the WAL frames are in the
OS page cache once ``COMMIT`` returns), but may lose the last transactions on power loss or an OS
crash; ``FULL`` fsyncs the WAL on every commit, so an acknowledged batch survives both. The cost is
one fsync per batch, negligible next to validating the batch. Write transactions start with
``BEGIN IMMEDIATE`` so that the existence check and the insert see the same data even with
several writers.
"""

from __future__ import annotations

import csv
import json
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from greensched.errors import GreenSchedError, LocatedError

__all__ = [
    "INPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA_VERSION",
    "STORED_COLUMNS",
    "IngestReport",
    "OutcomeStore",
    "OutcomeValidationError",
    "RowIssue",
    "outcomes_table",
    "store_url",
]

#: Version of the table layout written in the ``greensched_meta`` table.
SCHEMA_VERSION = 1

_CHUNK_ROWS = 500  # rows per SELECT ... IN (...) and per INSERT executemany
_MAX_ISSUES = 50  # validation problems collected before giving up


# ----------------------------------------------------------------------------------------------
# Field specification
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "str", "text", "int", "float", "json", "time"
    required: bool = False
    lower: float | None = None  # inclusive lower bound
    lower_open: bool = False  # lower bound exclusive
    upper: float | None = None  # inclusive upper bound

    def expected(self) -> str:
        if self.kind == "str":
            return "a non-empty string without surrounding spaces"
        if self.kind == "text":
            return "a string"
        if self.kind == "json":
            return "a JSON object (dict or JSON text of one) with finite numbers"
        if self.kind == "time":
            return "an ISO 8601 timestamp (UTC if no offset is given)"
        kind = "an integer" if self.kind == "int" else "a finite number"
        if self.lower is None:
            return kind
        rng = f"> {self.lower:g}" if self.lower_open else f">= {self.lower:g}"
        if self.upper is not None:
            rng += f" and <= {self.upper:g}"
        return f"{kind} {rng}"


_FIELDS: tuple[_Field, ...] = (
    _Field("job_id", "str", required=True),
    _Field("arrival_s", "float", lower=0.0),
    _Field("hour", "int", lower=0.0),
    _Field("area", "str", required=True),
    _Field("query_type", "str", required=True),
    _Field("input_tokens", "int", required=True, lower=0.0),
    _Field("output_tokens", "int", lower=0.0),
    _Field("sla_s", "float", lower=0.0, lower_open=True),
    _Field("prompt", "text"),
    _Field("features", "json"),
    _Field("dc", "str", required=True),
    _Field("model_version", "str", required=True),
    _Field("pred_energy_kwh", "float", required=True, lower=0.0, lower_open=True),
    _Field("pred_service_s", "float", required=True, lower=0.0, lower_open=True),
    _Field("pred_energy_kwh_p10", "float", lower=0.0),
    _Field("pred_energy_kwh_p90", "float", lower=0.0),
    _Field("pred_service_s_p10", "float", lower=0.0),
    _Field("pred_service_s_p90", "float", lower=0.0),
    _Field("propensity", "float", lower=0.0, lower_open=True, upper=1.0),
    _Field("energy_kwh", "float", required=True, lower=0.0, lower_open=True),
    _Field("service_s", "float", required=True, lower=0.0, lower_open=True),
    _Field("measured_at", "time"),
)
_BY_NAME = {f.name: f for f in _FIELDS}

#: Columns accepted by :meth:`OutcomeStore.ingest` (``features_json`` is an alias of ``features``).
INPUT_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
#: Columns every record must have (plus ``arrival_s`` or ``hour``).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.required)
_ALIASES = {"features_json": "features"}

#: Columns of the stored table, in the order :meth:`OutcomeStore.query` returns them.
STORED_COLUMNS: tuple[str, ...] = tuple(
    "features_json" if f.name == "features" else f.name for f in _FIELDS
) + ("created_at", "ingest_id")
# Columns that define "the same outcome" (bookkeeping columns excluded).
_CONTENT_COLUMNS = tuple(c for c in STORED_COLUMNS if c not in ("created_at", "ingest_id"))
_FLOAT_COLUMNS = frozenset(f.name for f in _FIELDS if f.kind == "float")
_INT_COLUMNS = frozenset(f.name for f in _FIELDS if f.kind == "int")
_QUANTILE_PAIRS = (("pred_energy_kwh_p10", "pred_energy_kwh_p90"),
                   ("pred_service_s_p10", "pred_service_s_p90"))


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned as a timezone-aware UTC ``datetime``.

    PostgreSQL keeps it as ``timestamptz``; SQLite as naive UTC text (which sorts correctly).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sa_type(f: _Field) -> Any:
    """The SQLAlchemy column type of a field."""
    return {
        "str": sa.String(),
        "text": sa.Text(),
        "json": sa.Text(),
        "int": sa.BigInteger(),
        "float": sa.Double(),
        "time": _UTCDateTime(),
    }[f.kind]


def outcomes_table(metadata: sa.MetaData) -> sa.Table:
    """Define the ``outcomes`` table (see the module docstring) in ``metadata``."""
    cols: list[sa.Column[Any]] = []
    for f in _FIELDS:
        name = "features_json" if f.name == "features" else f.name
        nullable = not (f.required or f.name in ("arrival_s", "hour", "measured_at"))
        cols.append(sa.Column(name, _sa_type(f), primary_key=f.name == "job_id",
                              nullable=nullable))
    cols.append(sa.Column("created_at", _UTCDateTime(), nullable=False))
    cols.append(sa.Column("ingest_id", sa.String(), nullable=False))
    return sa.Table(
        "outcomes", metadata, *cols,
        sa.Index("ix_outcomes_measured_at", "measured_at"),
        sa.Index("ix_outcomes_model_version", "model_version"),
        sa.Index("ix_outcomes_ingest_id", "ingest_id"),
    )


_METADATA = sa.MetaData()
_OUTCOMES = outcomes_table(_METADATA)
_META = sa.Table(
    "greensched_meta", _METADATA,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("value", sa.String(), nullable=False),
)


# ----------------------------------------------------------------------------------------------
# Errors and reports
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowIssue:
    """One validation problem: where (row, file line, column), the value and what was expected.

    ``row`` is the 0-based position in the batch; ``line`` the 1-based line in the source file
    (header = line 1) when the batch came from a CSV or JSON-lines file.
    """

    row: int
    column: str
    value: Any
    expected: str
    line: int | None = None

    def describe(self) -> str:
        if self.line is not None:
            where = f"line {self.line}"
        else:
            where = "columns" if self.row < 0 else f"row {self.row}"
        got = "" if self.value is LocatedError._MISSING else f" (got {self.value!r})"
        return f"{where}, column {self.column!r}: expected {self.expected}{got}"


class OutcomeValidationError(LocatedError):
    """A batch of outcomes has invalid rows; nothing of the batch was written.

    ``issues`` lists every problem found (up to 50), ordered by row; the message shows the first
    with its file/line/column and how many more there are.
    """

    def __init__(self, issues: Sequence[RowIssue], *, file: str | Path | None = None) -> None:
        self.issues = list(issues)
        first = self.issues[0]
        self.row = first.row if first.row >= 0 else None
        super().__init__(f"expected {first.expected}", file=file, line=first.line,
                         column=first.column, value=first.value)

    def _format(self) -> str:
        first = self.issues[0]
        where = [] if self.file is None else [self.file]
        if first.line is not None:
            where.append(f"line {first.line}")
        elif first.row >= 0:
            where.append(f"row {first.row}")
        where.append(f"column {first.column!r}")
        got = "" if first.value is LocatedError._MISSING else f" (got {first.value!r})"
        msg = f"{', '.join(where)}: expected {first.expected}{got}"
        if len(self.issues) > 1:
            more = "; ".join(i.describe() for i in self.issues[1:4])
            extra = len(self.issues) - 4
            tail = f"; and {extra} more" if extra > 0 else ""
            msg += f"; {len(self.issues) - 1} more problem(s): {more}{tail}"
        return msg + ". Nothing was stored from this batch."


@dataclass
class IngestReport:
    """What one :meth:`OutcomeStore.ingest` call did.

    Attributes
    ----------
    inserted
        New outcomes written.
    duplicates_identical
        Records whose ``job_id`` was already stored (or repeated in the batch) with identical
        content: no-ops.
    conflicts
        ``job_id`` values already stored with *different* content; the stored rows were kept.
    conflict_columns
        For each conflicting ``job_id``, the columns whose values differ.
    ingest_id
        Id stamped on the inserted rows (``None`` when nothing was inserted).
    rows
        Records received.
    elapsed_s
        Wall time of the call.
    """

    inserted: int
    duplicates_identical: int
    conflicts: list[str] = field(default_factory=list)
    conflict_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ingest_id: str | None = None
    rows: int = 0
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """True when no conflicting duplicate was met."""
        return not self.conflicts


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def _is_missing(v: Any) -> bool:
    """Missing = None, NaN, NaT, NA or a blank string."""
    if v is None:
        return True
    if isinstance(v, str):
        return not v.strip()
    if isinstance(v, float | np.floating):
        return bool(v != v)
    if v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, np.datetime64):
        return bool(np.isnat(v))
    return False


def _as_number(v: Any, integer: bool) -> float | int | None:
    """A finite number (an ``int`` when ``integer``) from a number or its text, else None."""
    if isinstance(v, bool | np.bool_):
        return None
    if isinstance(v, int | np.integer):
        return int(v) if integer else float(v)
    if isinstance(v, float | np.floating):
        x = float(v)
    elif isinstance(v, str):
        if integer:
            try:
                return int(v)
            except ValueError:
                pass
        try:
            x = float(v)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(x):
        return None
    if integer:
        return int(x) if x.is_integer() else None
    return x


def _canonical_json(v: Any) -> str | None:
    obj = v
    if isinstance(v, str | bytes):
        try:
            obj = json.loads(v)
        except ValueError:
            return None
    if not isinstance(obj, dict):
        return None
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def _as_str(v: Any) -> str | None:
    if isinstance(v, str):
        return v if v and v == v.strip() else None
    if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_):
        return str(int(v))
    return None


def _as_text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _as_time(v: Any) -> datetime | None:
    """A UTC datetime (microseconds) from ISO 8601 text or a datetime; naive means UTC."""
    if isinstance(v, pd.Timestamp | np.datetime64):
        ts = pd.Timestamp(v)
        if ts is pd.NaT:
            return None
        dt = ts.floor("us").to_pydatetime()
    elif isinstance(v, datetime):
        dt = v
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip())
        except ValueError:
            return None
    else:
        return None  # epoch numbers are ambiguous (s? ms? ns?): ask for ISO 8601
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _as_float(v: Any) -> float | int | None:
    return _as_number(v, integer=False)


def _as_int(v: Any) -> float | int | None:
    return _as_number(v, integer=True)


_CONVERTERS: dict[str, Any] = {"str": _as_str, "text": _as_text, "json": _canonical_json,
                               "time": _as_time, "float": _as_float, "int": _as_int}


class _Validated:
    """A validated batch: python-typed column lists, plus per-row "measured_at was given"."""

    def __init__(self, columns: dict[str, list[Any]], measured_given: list[bool],
                 n_rows: int) -> None:
        self.columns = columns
        self.measured_given = measured_given
        self.n_rows = n_rows

    def record(self, i: int) -> dict[str, Any]:
        return {c: self.columns[c][i] for c in _CONTENT_COLUMNS}


def _as_columns(records: pd.DataFrame | Iterable[Mapping[str, Any]]
                ) -> tuple[list[str], dict[str, list[Any]], int]:
    """Column names (in order, possibly repeated), their values as lists, and the row count."""
    if isinstance(records, pd.DataFrame):
        names = [str(c) for c in records.columns]
        cols: dict[str, list[Any]] = {}
        for j, name in enumerate(names):
            cols.setdefault(name, records.iloc[:, j].to_numpy(dtype=object).tolist())
        return names, cols, len(records)
    recs = list(records)
    names = []
    seen: set[str] = set()
    for i, rec in enumerate(recs):
        if not isinstance(rec, Mapping):
            raise OutcomeValidationError([RowIssue(i, "-", rec, "a mapping of column to value")])
        for k in rec:
            if k not in seen:
                seen.add(str(k))
                names.append(str(k))
    return names, {n: [rec.get(n) for rec in recs] for n in names}, len(recs)


def _validate(records: pd.DataFrame | Iterable[Mapping[str, Any]], *,
              lines: Sequence[int] | None = None, extra: str = "error") -> _Validated:
    """Check a batch and return it typed; raise :class:`OutcomeValidationError` on problems."""
    names, raw_cols, n = _as_columns(records)
    issues: list[RowIssue] = []

    def add(i: int, col: str, value: Any, expected: str) -> None:
        if len(issues) < _MAX_ISSUES:
            issues.append(RowIssue(i, col, value, expected,
                                   None if lines is None else int(lines[i])))

    def header_issue(col: str, expected: str) -> None:
        issues.append(RowIssue(-1, col, LocatedError._MISSING, expected,
                               1 if lines is not None else None))

    renamed = [_ALIASES.get(c, c) for c in names]
    raw_cols = {_ALIASES.get(c, c): v for c, v in raw_cols.items()}
    dups = sorted({c for c in renamed if renamed.count(c) > 1})
    if dups:
        header_issue(dups[0], "each column once (features_json is another name of features)")
    unknown = [c for c in renamed if c not in _BY_NAME]
    if unknown and extra == "error":
        header_issue(unknown[0], "only the outcome columns " + ", ".join(INPUT_COLUMNS)
                     + " (pass extra='ignore' to drop others)")
    for col in REQUIRED_COLUMNS:
        if col not in raw_cols:
            header_issue(col, "this required column")
    if "arrival_s" not in raw_cols and "hour" not in raw_cols:
        header_issue("arrival_s", "a column arrival_s (s since hour 0) or hour")
    if issues:
        _raise_issues(issues)

    out: dict[str, list[Any]] = {}
    for f in _FIELDS:
        raw = raw_cols.get(f.name)
        if raw is None:
            out[f.name] = [None] * n
            continue
        conv = _CONVERTERS[f.kind]
        numeric = f.kind in ("int", "float")
        lower, upper = f.lower, f.upper
        vals: list[Any] = [None] * n
        for i, v in enumerate(raw):
            if _is_missing(v):
                if f.required:
                    add(i, f.name, v, f.expected() + " (the column is required)")
                continue
            x = conv(v)
            if x is None or (numeric and (
                    (lower is not None and (x <= lower if f.lower_open else x < lower))
                    or (upper is not None and x > upper))):
                add(i, f.name, v, f.expected())
                continue
            vals[i] = x
        out[f.name] = vals

    # arrival_s / hour: one of them per row, consistent when both are given
    arrival, hour = out["arrival_s"], out["hour"]
    for r in range(n):
        a, h = arrival[r], hour[r]
        if a is None and h is None:
            if not any(x.row == r and x.column in ("arrival_s", "hour") for x in issues):
                add(r, "arrival_s", None, "arrival_s (s since hour 0) or hour in every row")
        elif h is None:
            hour[r] = int(math.floor(a / 3600.0))
        elif a is None:
            arrival[r] = float(h) * 3600.0
        elif int(math.floor(a / 3600.0)) != h:
            add(r, "hour", h, f"arrival_s // 3600 = {int(math.floor(a / 3600.0))}")
    for lo, hi in _QUANTILE_PAIRS:
        for r in range(n):
            if out[lo][r] is not None and out[hi][r] is not None and out[lo][r] > out[hi][r]:
                add(r, hi, out[hi][r], f"a value >= {lo} ({out[lo][r]!r})")

    if issues:
        _raise_issues(issues)
    measured_given = [v is not None for v in out["measured_at"]]
    out["features_json"] = out.pop("features")
    return _Validated(out, measured_given, n)


def _raise_issues(issues: list[RowIssue], file: str | Path | None = None) -> None:
    issues.sort(key=lambda x: (x.row, INPUT_COLUMNS.index(x.column)
                               if x.column in INPUT_COLUMNS else -1))
    raise OutcomeValidationError(issues, file=file)


def _same(col: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if col in _FLOAT_COLUMNS:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if col in _INT_COLUMNS:
        return int(a) == int(b)
    return bool(a == b)


def _differing(stored: Mapping[str, Any], new: Mapping[str, Any],
               compare_measured_at: bool) -> tuple[str, ...]:
    return tuple(c for c in _CONTENT_COLUMNS
                 if (c != "measured_at" or compare_measured_at)
                 and not _same(c, stored[c], new[c]))


# ----------------------------------------------------------------------------------------------
# File readers
# ----------------------------------------------------------------------------------------------

def _read_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """Read a CSV as strings, with the 1-based starting line of each record."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise LocatedError("empty file; expected a header line naming the outcome "
                                   "columns", file=path, line=1) from None
            except csv.Error as exc:
                raise LocatedError(f"cannot parse as CSV ({exc})", file=path, line=1) from exc
            rows: list[list[str]] = []
            lines: list[int] = []
            while True:
                start = reader.line_num + 1
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise LocatedError(f"cannot parse as CSV ({exc})", file=path,
                                       line=start) from exc
                if not rec:  # blank line
                    continue
                if len(rec) != len(header):
                    raise LocatedError(f"expected {len(header)} fields as in the header, found "
                                       f"{len(rec)}", file=path, line=start)
                rows.append(rec)
                lines.append(start)
    except UnicodeDecodeError as exc:
        raise LocatedError(f"not UTF-8 text ({exc.reason})", file=path) from exc
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(
        {h: pd.Series([], dtype=object) for h in header})
    return df, lines


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    recs: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for no, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    raise LocatedError(f"not a JSON object ({exc})", file=path, line=no) from exc
                if not isinstance(obj, dict):
                    raise LocatedError("expected one JSON object per line", file=path, line=no)
                recs.append(obj)
                lines.append(no)
    except UnicodeDecodeError as exc:
        raise LocatedError(f"not UTF-8 text ({exc.reason})", file=path) from exc
    return pd.DataFrame.from_records(recs) if recs else pd.DataFrame(), lines


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise GreenSchedError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), "
                              "or give the outcomes as CSV") from exc
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise LocatedError(f"cannot read as Parquet ({exc})", file=path) from exc


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------

def store_url(url_or_path: str | Path) -> str:
    """Turn a path or URL into the SQLAlchemy URL the store uses.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver; anything that is not a
    ``sqlite:`` or ``postgresql:`` URL is taken as the path of an SQLite file.
    """
    s = str(url_or_path)
    for prefix in ("postgresql://", "postgres://"):
        if s.startswith(prefix):
            return "postgresql+psycopg://" + s[len(prefix):]
    if s.startswith(("postgresql+", "sqlite:")):
        return s
    if "://" in s:
        raise GreenSchedError(f"unsupported outcome store URL {s!r}: give a file path (SQLite) "
                              "or postgresql://user@host:port/database")
    return "sqlite:///" + str(Path(s).expanduser().resolve())


def _install_sqlite_hooks(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below), so the driver must not.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA busy_timeout = 30000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("greensched_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class OutcomeStore:
    """Measured outcomes of jobs, with the prediction made for them; see the module docstring.

    Open with :meth:`open`; close with :meth:`close` or use as a context manager.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url
        self.table = _OUTCOMES

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | Path, *, create: bool = True) -> OutcomeStore:
        """Open (and with ``create``, initialise) the store at a path or database URL.

        Parameters
        ----------
        url_or_path
            An SQLite file path, ``sqlite:///path``, or ``postgresql://user@host:port/db``.
        create
            Create the SQLite file and the tables when absent. With ``create=False`` a missing
            store raises :class:`~greensched.errors.GreenSchedError`.
        """
        url = store_url(url_or_path)
        sa_url = sa.engine.make_url(url)
        shown = sa_url.render_as_string(hide_password=True)
        if sa_url.get_backend_name() == "sqlite":
            db = sa_url.database or ""
            if db in ("", ":memory:"):
                raise GreenSchedError("an in-memory SQLite outcome store would vanish on exit; "
                                      "give a file path")
            p = Path(db)
            if not create and not p.is_file():
                raise GreenSchedError(f"no outcome store at {p}: ingest outcomes first "
                                      "(greensched feedback ingest FILE --store ...)")
            if not p.parent.is_dir():
                raise GreenSchedError(f"cannot create the outcome store {p}: folder "
                                      f"{p.parent} does not exist")
            engine = sa.create_engine(url)
            _install_sqlite_hooks(engine)
        else:
            try:
                engine = sa.create_engine(url, pool_pre_ping=True)
            except ImportError as exc:
                raise GreenSchedError("a PostgreSQL outcome store needs psycopg 3: "
                                      "pip install 'psycopg[binary]'") from exc
        store = cls(engine, shown)
        try:
            store._init_schema(create)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise GreenSchedError(f"cannot open the outcome store {shown}: "
                                  f"{exc.orig or exc}") from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    def _init_schema(self, create: bool) -> None:
        version: str | None = None
        for attempt in range(3):
            try:
                with _WriteTx(self._engine, write=create) as conn:
                    have = sa.inspect(conn).has_table("outcomes")
                    if not have:
                        if not create:
                            raise GreenSchedError(f"{self.url} holds no outcome store: ingest "
                                                  "outcomes first")
                        _METADATA.create_all(conn)
                        conn.execute(_META.insert(), [{"key": "schema_version",
                                                       "value": str(SCHEMA_VERSION)}])
                    version = conn.execute(sa.select(_META.c.value).where(
                        _META.c.key == "schema_version")).scalar_one_or_none()
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                # Another process created the tables at the same moment (PostgreSQL).
                if attempt == 2:
                    raise
        if version is None or int(version) > SCHEMA_VERSION:
            raise GreenSchedError(f"{self.url}: outcome store schema version {version!r} is "
                                  f"not supported by this GreenSched (supports <= "
                                  f"{SCHEMA_VERSION}); upgrade greensched")

    def close(self) -> None:
        """Release all database connections."""
        self._engine.dispose()

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OutcomeStore({self.url!r})"

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def _write(self) -> _WriteTx:
        return _WriteTx(self._engine)

    # -- writing ---------------------------------------------------------------------------
    def ingest(self, records: pd.DataFrame | Iterable[Mapping[str, Any]], *,
               extra: str = "error", _lines: Sequence[int] | None = None,
               _file: str | Path | None = None) -> IngestReport:
        """Store a batch of outcomes in one transaction; see the module docstring.

        Parameters
        ----------
        records
            A DataFrame or a list of dicts with the outcome fields.
        extra
            ``"error"`` (default) rejects unknown columns, ``"ignore"`` drops them.

        Returns
        -------
        IngestReport

        Raises
        ------
        OutcomeValidationError
            A row is invalid; nothing was written.
        """
        t0 = time.perf_counter()
        if extra not in ("error", "ignore"):
            raise ValueError(f"extra must be 'error' or 'ignore', got {extra!r}")
        if not isinstance(records, pd.DataFrame):
            records = list(records)
        if len(records) == 0:
            return IngestReport(0, 0, rows=0, elapsed_s=time.perf_counter() - t0)
        try:
            batch = _validate(records, lines=_lines, extra=extra)
        except OutcomeValidationError as exc:
            if _file is None:
                raise
            raise OutcomeValidationError(exc.issues, file=_file) from None

        # Collapse repeats inside the batch: identical ones are no-ops, differing ones are
        # an input error (which of them is right cannot be told).
        first: dict[str, int] = {}
        keep: list[int] = []
        dup_in_batch = 0
        issues: list[RowIssue] = []
        ids = batch.columns["job_id"]
        for i, jid in enumerate(ids):
            j = first.get(jid)
            if j is None:
                first[jid] = i
                keep.append(i)
                continue
            diff = _differing(batch.record(j), batch.record(i),
                              batch.measured_given[i] and batch.measured_given[j])
            if diff:
                line = None if _lines is None else int(_lines[i])
                issues.append(RowIssue(i, "job_id", jid, f"job_id unique within a batch (row "
                                       f"{j} has the same job_id with different {diff[0]})",
                                       line))
            else:
                dup_in_batch += 1
        if issues:
            _raise_issues(issues, _file)

        for attempt in range(3):
            try:
                report = self._ingest_once(batch, keep)
                break
            except sa.exc.IntegrityError:
                # A concurrent writer inserted one of these job_ids after our existence check
                # (possible on PostgreSQL); the transaction rolled back: classify again.
                if attempt == 2:
                    raise
        report.duplicates_identical += dup_in_batch
        report.rows = batch.n_rows
        report.elapsed_s = time.perf_counter() - t0
        return report

    def _ingest_once(self, batch: _Validated, keep: list[int]) -> IngestReport:
        now = datetime.now(UTC)
        ingest_id = uuid.uuid4().hex
        cols = batch.columns
        t = self.table
        identical = 0
        conflicts: list[str] = []
        conflict_cols: dict[str, tuple[str, ...]] = {}
        with self._write() as conn:
            existing: dict[str, dict[str, Any]] = {}
            for chunk in _chunks([cols["job_id"][i] for i in keep], _CHUNK_ROWS):
                rows = conn.execute(sa.select(*[t.c[c] for c in _CONTENT_COLUMNS])
                                    .where(t.c.job_id.in_(chunk))).mappings()
                for r in rows:
                    existing[r["job_id"]] = dict(r)
            new_rows: list[dict[str, Any]] = []
            for i in keep:
                rec = batch.record(i)
                old = existing.get(rec["job_id"])
                if old is None:
                    if rec["measured_at"] is None:
                        rec["measured_at"] = now
                    rec["created_at"] = now
                    rec["ingest_id"] = ingest_id
                    new_rows.append(rec)
                    continue
                diff = _differing(old, rec, batch.measured_given[i])
                if diff:
                    conflicts.append(rec["job_id"])
                    conflict_cols[rec["job_id"]] = diff
                else:
                    identical += 1
            for start in range(0, len(new_rows), _CHUNK_ROWS):
                self._insert_chunk(conn, new_rows[start:start + _CHUNK_ROWS])
        return IngestReport(inserted=len(new_rows), duplicates_identical=identical,
                            conflicts=conflicts, conflict_columns=conflict_cols,
                            ingest_id=ingest_id if new_rows else None)

    def _insert_chunk(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.execute(self.table.insert(), rows)

    def ingest_file(self, path: str | Path, *, extra: str = "error") -> IngestReport:
        """Ingest a CSV, JSON-lines (``.jsonl``/``.ndjson``) or Parquet file as one batch.

        Errors name the file, the line (CSV/JSON lines; Parquet: the 0-based row) and the column.
        """
        p = Path(path)
        if not p.is_file():
            raise LocatedError("outcomes file not found", file=p)
        suffix = p.suffix.lower()
        lines: list[int] | None
        if suffix in (".parquet", ".pq"):
            df, lines = _read_parquet(p), None
        elif suffix in (".jsonl", ".ndjson"):
            df, lines = _read_jsonl(p)
        else:
            df, lines = _read_csv(p)
        if len(df) == 0:
            raise LocatedError("no outcome rows in the file", file=p)
        return self.ingest(df, extra=extra, _lines=lines, _file=p)

    # -- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        """Number of stored outcomes."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table))
                       .scalar_one())

    def query(self, since: datetime | str | pd.Timestamp | None = None,
              until: datetime | str | pd.Timestamp | None = None,
              model_version: str | None = None, dc: str | None = None) -> pd.DataFrame:
        """Outcomes with ``since <= measured_at < until`` (UTC; naive times are UTC), filtered
        by ``model_version`` and ``dc``, oldest first (ties by ``job_id``)."""
        t = self.table
        stmt = sa.select(*[t.c[c] for c in STORED_COLUMNS])
        for bound, op in ((since, "ge"), (until, "lt")):
            if bound is not None:
                ts = _as_time(bound)
                if ts is None:
                    raise GreenSchedError(f"expected a timestamp, got {bound!r}")
                stmt = stmt.where(t.c.measured_at >= ts if op == "ge" else t.c.measured_at < ts)
        if model_version is not None:
            stmt = stmt.where(t.c.model_version == model_version)
        if dc is not None:
            stmt = stmt.where(t.c.dc == dc)
        stmt = stmt.order_by(t.c.measured_at, t.c.job_id)
        return self._frame(stmt)

    def window(self, n_latest: int, *, skip: int = 0) -> pd.DataFrame:
        """The ``n_latest`` most recently measured outcomes (after skipping the ``skip`` most
        recent ones), oldest first."""
        if n_latest < 0 or skip < 0:
            raise GreenSchedError(f"window sizes must be >= 0, got n_latest={n_latest!r}, "
                                  f"skip={skip!r}")
        t = self.table
        stmt = (sa.select(*[t.c[c] for c in STORED_COLUMNS])
                .order_by(t.c.measured_at.desc(), t.c.created_at.desc(), t.c.job_id.desc())
                .limit(n_latest).offset(skip))
        return self._frame(stmt).iloc[::-1].reset_index(drop=True)

    def _frame(self, stmt: sa.Select[Any]) -> pd.DataFrame:
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        df = pd.DataFrame([tuple(r) for r in rows], columns=list(STORED_COLUMNS), dtype=object)
        for c in STORED_COLUMNS:
            if c in _FLOAT_COLUMNS:
                df[c] = pd.to_numeric(df[c]).astype("float64")
            elif c in _INT_COLUMNS:
                df[c] = pd.array([None if v is None else int(v) for v in df[c]], dtype="Int64")
            elif c in ("measured_at", "created_at"):
                df[c] = pd.to_datetime(df[c], utc=True)
        if df["output_tokens"].notna().all():
            df["output_tokens"] = df["output_tokens"].astype("int64")
        for c in ("hour", "input_tokens"):
            df[c] = df[c].astype("int64")
        return df


class _WriteTx:
    """Context manager: a connection in a transaction, committed on success.

    With ``write`` (default) it is a write transaction from the start (``BEGIN IMMEDIATE`` on
    SQLite), so that what is read in it cannot change before it writes.
    """

    def __init__(self, engine: Engine, write: bool = True) -> None:
        self._engine = engine
        self._write = write

    def __enter__(self) -> Connection:
        self._conn = self._engine.connect().execution_options(greensched_write=self._write)
        try:
            self._tx = self._conn.begin()
        except BaseException:
            self._conn.close()
            raise
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
