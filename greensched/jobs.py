"""Jobs: individual inference requests, the unit of online assignment and simulation.

A jobs table (CSV or Parquet) has one row per job:

| column | type | unit | required | meaning |
|---|---|---|---|---|
| ``job_id`` | str | – | yes | unique identifier |
| ``arrival_s`` | float | s since the scenario's hour 0 | one of the two | arrival time |
| ``hour`` | int | slot 0..T-1 | one of the two | arrival slot (derived from ``arrival_s``) |
| ``area`` | str | – | yes | an area of the scenario |
| ``query_type`` | str | – | yes | a query type of the scenario |
| ``input_tokens`` | int | tokens | yes | prompt (context) length |
| ``output_tokens`` | int | tokens | no | generated length, when known (simulation, feedback) |
| ``sla_s`` | float | s | no | latency objective; default :data:`DEFAULT_SLA_S` by query type |

Unknown columns are kept (tools may add their own); a bad row raises
:class:`~greensched.errors.ScenarioError` naming the file, line and column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from greensched.errors import ScenarioError
from greensched.scenario import Scenario

__all__ = ["DEFAULT_SLA_S", "JOB_COLUMNS", "load_jobs", "validate_jobs"]

JOB_COLUMNS = (
    "job_id",
    "arrival_s",
    "hour",
    "area",
    "query_type",
    "input_tokens",
    "output_tokens",
    "sla_s",
)

#: Latency objective used when a job carries none (s): interactive vs. batch-like work.
DEFAULT_SLA_S = 30.0


def load_jobs(path: str | Path, scenario: Scenario | None = None) -> pd.DataFrame:
    """Read and validate a jobs table (CSV or Parquet); see the module docstring."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("jobs file not found", file=p)
    if p.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(p)
        raw = df.astype(str)
    else:
        try:
            raw = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot parse as CSV ({exc})", file=p) from exc
        df = raw
    return validate_jobs(df, scenario, file=p, raw=raw)


def _numeric(
    df: pd.DataFrame,
    raw: pd.DataFrame,
    col: str,
    file: str | Path | None,
    *,
    integer: bool = False,
    positive: bool = False,
) -> np.ndarray:
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(vals) | (vals < 0)
    if positive:
        bad |= vals <= 0
    if integer:
        bad |= np.isfinite(vals) & (vals != np.round(vals))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "a positive" if positive else "a non-negative"
        kind = "integer" if integer else "number"
        raise ScenarioError(
            f"expected {what} {kind}", file=file, line=row + 2, column=col, value=raw[col].iloc[row]
        )
    return vals


def validate_jobs(
    df: pd.DataFrame,
    scenario: Scenario | None = None,
    *,
    file: str | Path | None = None,
    raw: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Check a jobs frame and return a typed copy with ``hour`` and ``sla_s`` filled in."""
    raw = df if raw is None else raw
    where = file if file is not None else "jobs"
    required = ["job_id", "area", "query_type", "input_tokens"]
    for col in required:
        if col not in df.columns:
            raise ScenarioError(
                f"missing column; a jobs table needs {', '.join(required)} and arrival_s or hour",
                file=where,
                line=1,
                column=col,
            )
    if "arrival_s" not in df.columns and "hour" not in df.columns:
        raise ScenarioError(
            "missing column; give arrival_s (s since hour 0) or hour",
            file=where,
            line=1,
            column="arrival_s",
        )
    out = df.copy()
    out["job_id"] = out["job_id"].astype(str)
    dup = out["job_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ScenarioError(
            "duplicated job_id",
            file=where,
            line=row + 2,
            column="job_id",
            value=out["job_id"].iloc[row],
        )
    if "arrival_s" in out.columns:
        out["arrival_s"] = _numeric(out, raw, "arrival_s", where)
        hour_from_arrival = np.floor(out["arrival_s"].to_numpy() / 3600.0).astype(np.int64)
    if "hour" in out.columns:
        out["hour"] = _numeric(out, raw, "hour", where, integer=True).astype(np.int64)
        if "arrival_s" in out.columns:
            bad = out["hour"].to_numpy() != hour_from_arrival
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ScenarioError(
                    "hour disagrees with arrival_s // 3600",
                    file=where,
                    line=row + 2,
                    column="hour",
                    value=raw["hour"].iloc[row],
                )
    else:
        out["hour"] = hour_from_arrival
    if "arrival_s" not in out.columns:
        out["arrival_s"] = out["hour"].astype(float) * 3600.0
    out["input_tokens"] = _numeric(out, raw, "input_tokens", where, integer=True).astype(np.int64)
    if "output_tokens" in out.columns:
        out["output_tokens"] = _numeric(out, raw, "output_tokens", where, integer=True).astype(
            np.int64
        )
    if "sla_s" in out.columns:
        out["sla_s"] = _numeric(out, raw, "sla_s", where, positive=True)
    else:
        out["sla_s"] = DEFAULT_SLA_S
    out["area"] = out["area"].astype(str)
    out["query_type"] = out["query_type"].astype(str)
    if scenario is not None:
        hours = out["hour"].to_numpy()
        bad = (hours < 0) | (hours >= scenario.hours)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            col = "hour" if "hour" in raw.columns else "arrival_s"
            raise ScenarioError(
                f"arrival outside the scenario's {scenario.hours} hours",
                file=where,
                line=row + 2,
                column=col,
                value=raw[col].iloc[row],
            )
        for col, labels in (("area", scenario.areas), ("query_type", scenario.query_types)):
            bad = ~out[col].isin(labels).to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ScenarioError(
                    f"unknown {col}; the scenario has {', '.join(labels[:8])}",
                    file=where,
                    line=row + 2,
                    column=col,
                    value=out[col].iloc[row],
                )
    return out.reset_index(drop=True)
