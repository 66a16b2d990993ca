"""The outcome record: what one job really cost where it ran, next to what was predicted.

One record format is written by the digital twin (``greensched simulate``), the online assigner
(``greensched assign``), the HTTP service (``POST /v1/outcomes``) and ``greensched loop``, and
read by the outcome store (:mod:`greensched.feedback.store`) as it is.  ``docs/outcomes.md``
shows the table; :data:`FIELDS` is its single source.

Fields are in three groups:

* **job** - ``job_id``, ``arrival_s``/``hour`` (one of the two), ``area``, ``query_type``,
  ``input_tokens``, ``output_tokens``, ``sla_s``, ``prompt``, ``features``;
* **decision** - ``dc`` (where it ran), ``policy``, ``model_version`` and the predictions at
  ``dc`` (``pred_energy_kwh``, ``pred_service_s``, calibrated 10/90 % quantiles), the policy's
  ``propensity`` for ``dc``, ``assigned_at``;
* **measurement** - ``energy_kwh``, ``service_s`` (required), and what the twin also accounts:
  ``wait_s``, ``carbon_kg``, ``water_l``, ``cost_usd``, ``sla_met``, ``measured_at``.

A record without a prediction (a plan-share, nearest or random placement) is still a valid
*record*, but the outcome store refuses it naming ``model_version``/``pred_energy_kwh``: an
outcome is stored to compare a prediction with a measurement.  :func:`validate_outcomes` checks a
batch against the schema (and, given :class:`OutcomeLabels`, against a scenario's areas, query
types, DCs and hours) and returns it typed, or raises :class:`OutcomeValidationError` listing
every problem (up to 50) with row, file line, column, value and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import LocatedError

__all__ = [
    "FIELDS",
    "FIELD_NAMES",
    "PREDICTION_FIELDS",
    "REQUIRED_FIELDS",
    "FieldKind",
    "OutcomeField",
    "OutcomeLabels",
    "OutcomeValidationError",
    "RowIssue",
    "ValidatedOutcomes",
    "field_table",
    "order_columns",
    "validate_outcomes",
    "write_outcomes",
]

MAX_ISSUES = 50  # validation problems collected before giving up


class FieldKind(StrEnum):
    """Value type of an outcome field."""

    STR = "str"  # a non-empty label without surrounding spaces
    TEXT = "text"  # any string
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    JSON = "json"  # a JSON object
    TIME = "time"  # ISO 8601 timestamp, UTC when naive


@dataclass(frozen=True)
class OutcomeField:
    """One field of the outcome record.

    ``required`` fields must be present in every row the store accepts; ``lower``/``upper`` bound
    numbers (``lower_open``: the lower bound is excluded).
    """

    name: str
    kind: FieldKind
    unit: str
    doc: str
    required: bool = False
    lower: float | None = None
    lower_open: bool = False
    upper: float | None = None

    def expected(self) -> str:
        """What a valid value looks like, in words."""
        if self.kind is FieldKind.STR:
            return "a non-empty string without surrounding spaces"
        if self.kind is FieldKind.TEXT:
            return "a string"
        if self.kind is FieldKind.BOOL:
            return "true or false"
        if self.kind is FieldKind.JSON:
            return "a JSON object (dict or JSON text of one) with finite numbers"
        if self.kind is FieldKind.TIME:
            return "an ISO 8601 timestamp (UTC if no offset is given)"
        kind = "an integer" if self.kind is FieldKind.INT else "a finite number"
        if self.lower is None:
            return kind
        rng = f"> {self.lower:g}" if self.lower_open else f">= {self.lower:g}"
        if self.upper is not None:
            rng += f" and <= {self.upper:g}"
        return f"{kind} {rng}"


_F = FieldKind
FIELDS: tuple[OutcomeField, ...] = (
    OutcomeField("job_id", _F.STR, "-", "unique job identifier (a job is stored once)", True),
    OutcomeField("arrival_s", _F.FLOAT, "s", "arrival, seconds since the scenario's hour 0 "
                 "(give arrival_s or hour)", lower=0.0),
    OutcomeField("hour", _F.INT, "slot", "arrival slot (arrival_s // 3600 when both given)",
                 lower=0.0),
    OutcomeField("area", _F.STR, "-", "area the request came from", True),
    OutcomeField("query_type", _F.STR, "-", "query type", True),
    OutcomeField("input_tokens", _F.INT, "tokens", "prompt length", True, lower=0.0),
    OutcomeField("output_tokens", _F.INT, "tokens", "generated length", lower=0.0),
    OutcomeField("sla_s", _F.FLOAT, "s", "latency objective", lower=0.0, lower_open=True),
    OutcomeField("prompt", _F.TEXT, "-", "prompt text (to re-train the prompt predictor)"),
    OutcomeField("features", _F.JSON, "-", "per-DC state the model saw (JSON object)"),
    OutcomeField("dc", _F.STR, "-", "data center that ran the job", True),
    OutcomeField("policy", _F.STR, "-", "placement policy (greedy, plan, model, ...)"),
    OutcomeField("model_version", _F.STR, "-", "predictor version that made the prediction",
                 True),
    OutcomeField("pred_energy_kwh", _F.FLOAT, "kWh", "predicted IT energy at dc", True,
                 lower=0.0, lower_open=True),
    OutcomeField("pred_service_s", _F.FLOAT, "s", "predicted service time at dc", True,
                 lower=0.0, lower_open=True),
    OutcomeField("pred_energy_kwh_p10", _F.FLOAT, "kWh", "calibrated 10 % quantile", lower=0.0),
    OutcomeField("pred_energy_kwh_p90", _F.FLOAT, "kWh", "calibrated 90 % quantile", lower=0.0),
    OutcomeField("pred_service_s_p10", _F.FLOAT, "s", "calibrated 10 % quantile", lower=0.0),
    OutcomeField("pred_service_s_p90", _F.FLOAT, "s", "calibrated 90 % quantile", lower=0.0),
    OutcomeField("propensity", _F.FLOAT, "-", "probability the policy gave to dc",
                 lower=0.0, lower_open=True, upper=1.0),
    OutcomeField("energy_kwh", _F.FLOAT, "kWh", "measured IT energy", True, lower=0.0,
                 lower_open=True),
    OutcomeField("service_s", _F.FLOAT, "s", "measured service time (network + queue + "
                 "processing)", True, lower=0.0, lower_open=True),
    OutcomeField("wait_s", _F.FLOAT, "s", "queueing wait inside service_s", lower=0.0),
    OutcomeField("carbon_kg", _F.FLOAT, "kg CO2", "grid carbon of the job's energy", lower=0.0),
    OutcomeField("water_l", _F.FLOAT, "l", "water of the job's energy", lower=0.0),
    OutcomeField("cost_usd", _F.FLOAT, "USD", "energy + carbon cost (prices can be negative)"),
    OutcomeField("sla_met", _F.BOOL, "-", "service_s <= sla_s"),
    OutcomeField("assigned_at", _F.TIME, "UTC", "when the job was placed"),
    OutcomeField("measured_at", _F.TIME, "UTC", "when measured; the store's default: now"),
)
_BY_NAME = {f.name: f for f in FIELDS}
#: Field names in record order (the column order of every outcomes file GreenSched writes).
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
#: Fields every stored record must have (plus ``arrival_s`` or ``hour``).
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
#: The decision's prediction fields (absent when a policy had no predictor).
PREDICTION_FIELDS: tuple[str, ...] = ("model_version", "pred_energy_kwh", "pred_service_s",
                                      "pred_energy_kwh_p10", "pred_energy_kwh_p90",
                                      "pred_service_s_p10", "pred_service_s_p90")
ALIASES = {"features_json": "features", "predicted_energy_kwh": "pred_energy_kwh",
           "predicted_service_s": "pred_service_s"}
QUANTILE_PAIRS = (("pred_energy_kwh_p10", "pred_energy_kwh_p90"),
                  ("pred_service_s_p10", "pred_service_s_p90"))
_PRED_HINT = (" (outcomes of a policy without a predictor cannot be compared with a prediction; "
              "simulate --policy model --model M or greedy writes predictions)")


def field_table() -> str:
    """The schema as a Markdown table (docs/outcomes.md embeds it; a test keeps them equal)."""
    lines = ["| field | type | unit | required | meaning |", "|---|---|---|---|---|"]
    for f in FIELDS:
        req = "one of the two" if f.name in ("arrival_s", "hour") else (
            "yes" if f.required else "no")
        lines.append(f"| `{f.name}` | {f.kind.value} | {f.unit} | {req} | {f.doc} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowIssue:
    """One validation problem: where (row, file line, column), the value and what was expected.

    ``row`` is the 0-based position in the batch (-1: the header); ``line`` the 1-based line in
    the source file (header = line 1) when the batch came from a CSV or JSON-lines file.
    """

    row: int
    column: str
    value: Any
    expected: str
    line: int | None = None

    def describe(self) -> str:
        """``line 3, column 'dc': expected ... (got 'mars')``."""
        if self.line is not None:
            where = f"line {self.line}"
        else:
            where = "columns" if self.row < 0 else f"row {self.row}"
        got = "" if self.value is LocatedError._MISSING else f" (got {self.value!r})"
        return f"{where}, column {self.column!r}: expected {self.expected}{got}"


class OutcomeValidationError(LocatedError):
    """A batch of outcomes has invalid rows; nothing of the batch was written.

    ``issues`` lists every problem found (up to 50), ordered by row; the message shows the first
    with its file/line/column and up to three more.
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


def raise_issues(issues: list[RowIssue], file: str | Path | None = None) -> None:
    """Raise :class:`OutcomeValidationError` with ``issues`` sorted by row and field order."""
    issues.sort(key=lambda x: (x.row, FIELD_NAMES.index(x.column)
                               if x.column in FIELD_NAMES else -1))
    raise OutcomeValidationError(issues, file=file)


@dataclass(frozen=True)
class OutcomeLabels:
    """Labels a scenario allows: records naming others are refused (``--scenario`` of ingest)."""

    name: str
    areas: frozenset[str]
    query_types: frozenset[str]
    dcs: frozenset[str]
    hours: int

    @classmethod
    def from_scenario(cls, scenario: Any) -> OutcomeLabels:
        """The labels of a :class:`~greensched.scenario.Scenario`."""
        return cls(str(scenario.name), frozenset(scenario.areas),
                   frozenset(scenario.query_types), frozenset(scenario.dcs), int(scenario.hours))

    def allowed(self, column: str) -> frozenset[str] | None:
        return {"area": self.areas, "query_type": self.query_types, "dc": self.dcs}.get(column)


# ----------------------------------------------------------------------------------------------
# Converters (value -> typed value, or None when invalid)
# ----------------------------------------------------------------------------------------------

def is_missing(v: Any) -> bool:
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


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer) and int(v) in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        return True if s in _TRUE else False if s in _FALSE else None
    return None


def as_time(v: Any) -> datetime | None:
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


_CONVERTERS: dict[FieldKind, Any] = {
    _F.STR: _as_str, _F.TEXT: _as_text, _F.JSON: _canonical_json, _F.TIME: as_time,
    _F.FLOAT: _as_float, _F.INT: _as_int, _F.BOOL: _as_bool}


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

@dataclass
class ValidatedOutcomes:
    """A validated batch: one Python-typed list per field (``None`` = missing), in
    :data:`FIELD_NAMES` order, and per row whether ``measured_at`` was given."""

    columns: dict[str, list[Any]]
    measured_given: list[bool]
    n_rows: int

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a dict of every field."""
        return {c: self.columns[c][i] for c in FIELD_NAMES}


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
            raise OutcomeValidationError([RowIssue(i, "-", rec, "a mapping of field to value")])
        for k in rec:
            if str(k) not in seen:
                seen.add(str(k))
                names.append(str(k))
    return names, {n: [rec.get(n) for rec in recs] for n in names}, len(recs)


def validate_outcomes(records: pd.DataFrame | Iterable[Mapping[str, Any]], *,
                      lines: Sequence[int] | None = None, extra: str = "error",
                      labels: OutcomeLabels | None = None) -> ValidatedOutcomes:
    """Check a batch of outcome records and return it typed.

    Parameters
    ----------
    records
        A DataFrame or dicts with the fields of :data:`FIELDS` (aliases: ``features_json``,
        ``predicted_energy_kwh``, ``predicted_service_s``).
    lines
        1-based file line of each record, for the messages.
    extra
        ``"error"`` rejects columns that are not fields, ``"ignore"`` drops them.
    labels
        When given, ``area``, ``query_type`` and ``dc`` must be labels of that scenario and
        ``hour`` lie in ``0..hours-1``.

    Raises
    ------
    OutcomeValidationError
        Every problem found (up to 50), each naming row/line, column, value and expectation.
    """
    if extra not in ("error", "ignore"):
        raise ValueError(f"extra must be 'error' or 'ignore', got {extra!r}")
    names, raw_cols, n = _as_columns(records)
    issues: list[RowIssue] = []

    def add(i: int, col: str, value: Any, expected: str) -> None:
        if len(issues) < MAX_ISSUES:
            issues.append(RowIssue(i, col, value, expected,
                                   None if lines is None else int(lines[i])))

    def header_issue(col: str, expected: str) -> None:
        issues.append(RowIssue(-1, col, LocatedError._MISSING, expected,
                               1 if lines is not None else None))

    renamed = [ALIASES.get(c, c) for c in names]
    raw_cols = {ALIASES.get(c, c): v for c, v in raw_cols.items()}
    dups = sorted({c for c in renamed if renamed.count(c) > 1})
    if dups:
        header_issue(dups[0], "each column once (features_json is another name of features)")
    unknown = [c for c in renamed if c not in _BY_NAME]
    if unknown and extra == "error":
        header_issue(unknown[0], "only the outcome fields (docs/outcomes.md): "
                     + ", ".join(FIELD_NAMES))
    for col in REQUIRED_FIELDS:
        if col not in raw_cols:
            hint = _PRED_HINT if col in PREDICTION_FIELDS else ""
            header_issue(col, "this required column" + hint)
    if "arrival_s" not in raw_cols and "hour" not in raw_cols:
        header_issue("arrival_s", "a column arrival_s (s since hour 0) or hour")
    if issues:
        raise_issues(issues)

    out: dict[str, list[Any]] = {}
    for f in FIELDS:
        raw = raw_cols.get(f.name)
        if raw is None:
            out[f.name] = [None] * n
            continue
        conv = _CONVERTERS[f.kind]
        numeric = f.kind in (_F.INT, _F.FLOAT)
        lower, upper = f.lower, f.upper
        allowed = labels.allowed(f.name) if labels is not None else None
        vals: list[Any] = [None] * n
        for i, v in enumerate(raw):
            if is_missing(v):
                if f.required:
                    hint = _PRED_HINT if f.name in PREDICTION_FIELDS else ""
                    add(i, f.name, v, f.expected() + " (the column is required)" + hint)
                continue
            x = conv(v)
            if x is None or (numeric and (
                    (lower is not None and (x <= lower if f.lower_open else x < lower))
                    or (upper is not None and x > upper))):
                add(i, f.name, v, f.expected())
                continue
            if allowed is not None and x not in allowed:
                assert labels is not None
                add(i, f.name, v, f"one of scenario {labels.name!r}'s {f.name} labels ("
                    + ", ".join(sorted(allowed)[:8]) + (", ..." if len(allowed) > 8 else "")
                    + ")")
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
            continue
        if h is None:
            hour[r] = h = int(math.floor(a / 3600.0))
        elif a is None:
            arrival[r] = float(h) * 3600.0
        elif int(math.floor(a / 3600.0)) != h:
            add(r, "hour", h, f"arrival_s // 3600 = {int(math.floor(a / 3600.0))}")
            continue
        if labels is not None and h >= labels.hours:
            add(r, "hour", h, f"an hour slot in 0..{labels.hours - 1} of scenario "
                f"{labels.name!r}")
    for lo, hi in QUANTILE_PAIRS:
        for r in range(n):
            if out[lo][r] is not None and out[hi][r] is not None and out[lo][r] > out[hi][r]:
                add(r, hi, out[hi][r], f"a value >= {lo} ({out[lo][r]!r})")
    if issues:
        raise_issues(issues)
    measured_given = [v is not None for v in out["measured_at"]]
    return ValidatedOutcomes(out, measured_given, n)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its outcome fields in record order (other columns are dropped) and fields
    that are entirely missing left out."""
    cols = [c for c in FIELD_NAMES if c in df.columns and not df[c].isna().all()]
    return df.loc[:, cols]


def write_outcomes(df: pd.DataFrame, path: str | Path) -> Path:
    """Write outcome records as CSV (``.csv``), JSON lines (``.jsonl``) or Parquet, fields in
    record order, timestamps as ISO 8601 UTC; the store ingests the file as it is."""
    p = Path(path)
    out = order_columns(df).copy()
    for c in ("assigned_at", "measured_at"):
        if c in out.columns:
            out[c] = pd.to_datetime(out[c], utc=True).map(
                lambda t: None if t is pd.NaT else t.isoformat())
    if "features" in out.columns:
        out["features"] = out["features"].map(
            lambda v: v if v is None or isinstance(v, str) else _canonical_json(v))
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        out.to_json(p, orient="records", lines=True)
    elif suffix in (".parquet", ".pq"):
        out.to_parquet(p, index=False)
    else:
        out.to_csv(p, index=False, lineterminator="\n")
    return p
