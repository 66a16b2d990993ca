"""Reading and validating predictor datasets (``docs/dataset-format.md``), and building rows of
that format from a jobs table and a scenario.

A dataset has one row per job: the job's fields, the state of every data center in the job's
hour (``<field>__<dc>``), and, for training and evaluation, the ground-truth targets of the job
at every DC (``energy_kwh__<dc>``, ``service_s__<dc>``) and the hindsight-best DC (``best_dc``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError, LocatedError
from greensched.jobs import validate_jobs
from greensched.scenario import Scenario
from greensched.state import STATE_FIELDS, dc_hour_state

__all__ = [
    "DC_FIELDS",
    "JOB_FIELDS",
    "TARGETS",
    "DatasetError",
    "DCMismatchError",
    "check_same_dcs",
    "dataset_dcs",
    "dc_column",
    "read_dataset",
    "rows_from_jobs",
    "validate_dataset",
]

#: Job columns every dataset row carries (``output_tokens`` may be missing/NaN at prediction time).
JOB_FIELDS = ("job_id", "hour", "area", "query_type", "input_tokens", "output_tokens", "sla_s")
#: Per-DC state columns (suffixed ``__<dc>``): ``greensched.state`` fields plus the RTT.
DC_FIELDS = (*STATE_FIELDS, "rtt_s")
#: Per-DC ground-truth targets (suffixed ``__<dc>``).
TARGETS = ("energy_kwh", "service_s")


class DatasetError(LocatedError):
    """A predictor dataset does not follow ``docs/dataset-format.md``.

    The message names the column and, for a bad value, the 0-based ``row`` of the frame and its
    ``job_id``.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, column: str | None = None,
                 row: int | None = None, job_id: Any = None,
                 value: Any = LocatedError._MISSING) -> None:
        self.row = row
        self.job_id = job_id
        if row is not None:
            where = f"row {row}" + (f" (job_id {job_id!r})" if job_id is not None else "")
            message = f"{where}: {message}"
        super().__init__(message, file=file, column=column, value=value)


class DCMismatchError(GreenSchedError):
    """A fitted predictor is asked about a different set of data centers than it was trained on.

    Attributes
    ----------
    only_model, only_other
        DC identifiers known to the model only / to the scenario or dataset only.
    """

    def __init__(self, model_dcs: Sequence[str], other_dcs: Sequence[str], what: str) -> None:
        self.only_model = [d for d in model_dcs if d not in set(other_dcs)]
        self.only_other = [d for d in other_dcs if d not in set(model_dcs)]
        parts = []
        if self.only_model:
            parts.append(f"only the model has {self.only_model!r}")
        if self.only_other:
            parts.append(f"only the {what} has {self.only_other!r}")
        super().__init__(
            f"the predictor was trained for DCs {list(model_dcs)!r} but the {what} has "
            f"{list(other_dcs)!r}: {'; '.join(parts)}; retrain on data of this {what} "
            "(`greensched train`) or use a model trained for these DCs"
        )


def dc_column(field: str, dc: str) -> str:
    """Column name of a per-DC field, e.g. ``dc_column("pue", "dc3") == "pue__dc3"``."""
    return f"{field}__{dc}"


def check_same_dcs(model_dcs: Sequence[str], other_dcs: Sequence[str], what: str) -> None:
    """Raise :class:`DCMismatchError` unless both lists hold the same DCs (in any order)."""
    if set(model_dcs) != set(other_dcs) or len(model_dcs) != len(other_dcs):
        raise DCMismatchError(model_dcs, other_dcs, what)


def read_dataset(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a dataset (Parquet with ``greensched`` metadata, or CSV) and its metadata.

    Returns the frame and the metadata dict (empty for CSV or when absent).
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError("dataset file not found", file=p)
    meta: dict[str, Any] = {}
    if p.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types
            raise DatasetError(f"cannot read as Parquet ({exc})", file=p) from exc
        raw = (table.schema.metadata or {}).get(b"greensched")
        if raw:
            try:
                meta = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                raise DatasetError(f"metadata 'greensched' is not JSON ({exc})", file=p) from exc
        df = table.to_pandas()
    else:
        try:
            df = pd.read_csv(p, dtype={"job_id": str, "area": str, "query_type": str,
                                       "best_dc": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DatasetError(f"cannot parse as CSV ({exc})", file=p) from exc
    return df, meta


def dataset_dcs(df: pd.DataFrame, meta: dict[str, Any] | None = None) -> list[str]:
    """The DCs of a dataset: ``meta["dcs"]`` if given, else the ``energy_kwh__*`` (or, without
    targets, ``price_usd_per_kwh__*``) column suffixes in column order."""
    if meta and meta.get("dcs"):
        return [str(d) for d in meta["dcs"]]
    for field in ("energy_kwh", "price_usd_per_kwh"):
        pre = field + "__"
        dcs = [str(c)[len(pre):] for c in df.columns if str(c).startswith(pre)]
        if dcs:
            return dcs
    raise DatasetError("no per-DC columns; expected e.g. 'price_usd_per_kwh__<dc>' and "
                       "'energy_kwh__<dc>' (docs/dataset-format.md)", column="price_usd_per_kwh")


def _first_bad(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def validate_dataset(
    df: pd.DataFrame,
    dcs: Sequence[str],
    *,
    targets: bool = True,
    file: str | Path | None = None,
) -> pd.DataFrame:
    """Check a dataset frame against the format and return a typed copy.

    Parameters
    ----------
    df
        Dataset rows.
    dcs
        DC identifiers whose columns must be present.
    targets
        Also require the ground-truth columns (``energy_kwh__<dc>``, ``service_s__<dc>``,
        ``best_dc``), finite and positive (``best_dc`` one of ``dcs``).
    file
        Shown in error messages.

    Raises
    ------
    DatasetError
        Missing column, bad value (NaN/negative target, non-numeric field) or unknown DC, naming
        the column and row.
    """
    if len(df) == 0:
        raise DatasetError("dataset has no rows", file=file)
    required = ["job_id", "area", "query_type", "input_tokens", "sla_s"]
    if "hour" not in df.columns and "arrival_s" not in df.columns:
        raise DatasetError("missing column; give 'hour' (or 'arrival_s')", file=file,
                           column="hour")
    cols = list(required)
    cols += [dc_column(f, d) for d in dcs for f in DC_FIELDS]
    if targets:
        cols += [dc_column(t, d) for d in dcs for t in TARGETS] + ["best_dc"]
    for col in cols:
        if col not in df.columns:
            raise DatasetError("missing column (docs/dataset-format.md lists the columns)",
                               file=file, column=col)
    out = df.copy().reset_index(drop=True)
    out["job_id"] = out["job_id"].astype(str)
    ids = out["job_id"].to_numpy()
    if "hour" not in out.columns:
        out["hour"] = np.floor(pd.to_numeric(out["arrival_s"], errors="coerce") / 3600.0)
    if "output_tokens" not in out.columns:
        out["output_tokens"] = np.nan
    for col in ("area", "query_type"):
        out[col] = out[col].astype(str)

    converted: dict[str, np.ndarray] = {}

    def numeric(col: str, *, allow_nan: bool = False, positive: bool = False,
                signed: bool = False) -> None:
        series = out[col]
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
                series.dtype):
            vals = series.to_numpy(dtype=float, na_value=np.nan)
        else:
            vals = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        nan = ~np.isfinite(vals)
        bad = np.zeros(len(vals), dtype=bool) if allow_nan else nan
        if positive:
            bad |= ~nan & (vals <= 0)
        elif not signed:
            bad |= ~nan & (vals < 0)
        row = _first_bad(bad)
        if row is not None:
            what = "missing or not a finite number" if nan[row] else (
                "expected a value > 0" if positive else "expected a value >= 0")
            raise DatasetError(what, file=file, column=col, row=row, job_id=ids[row],
                               value=df[col].iloc[row])
        if series.dtype != np.float64:
            converted[col] = vals

    for col in ("hour", "input_tokens"):
        numeric(col)
    numeric("output_tokens", allow_nan=True)
    numeric("sla_s", positive=True)
    for d in dcs:
        for f in DC_FIELDS:
            numeric(dc_column(f, d), signed=(f == "price_usd_per_kwh"))
    if targets:
        for d in dcs:
            for t in TARGETS:
                numeric(dc_column(t, d), positive=True)
        best = out["best_dc"].astype(str).to_numpy()
        row = _first_bad(~np.isin(best, np.asarray(list(dcs), dtype=object)))
        if row is not None:
            raise DatasetError(f"unknown DC; expected one of {list(dcs)!r}", file=file,
                               column="best_dc", row=row, job_id=ids[row], value=best[row])
        out["best_dc"] = best
    if converted:  # one assignment: column-by-column inserts are slow on wide frames
        out = out.assign(**converted)
    out["hour"] = out["hour"].astype(np.int64)
    return out


def rows_from_jobs(
    jobs: pd.DataFrame, scenario: Scenario, utilization: xr.DataArray | None = None
) -> pd.DataFrame:
    """Dataset-format rows (without targets) for a jobs table in a scenario.

    Each job gets the :func:`greensched.state.dc_hour_state` of its hour for every DC
    (``utilization`` per (hour, dc) overrides the expected utilisation) and the RTT from its area
    to every DC.  Jobs are validated with :func:`greensched.jobs.validate_jobs`; a missing
    (empty/NaN) ``output_tokens`` on some rows means "not known yet" for those jobs.
    """
    unknown_out = None
    if "output_tokens" in jobs.columns:
        raw_out = jobs["output_tokens"]
        unknown_out = (raw_out.isna() | (raw_out.astype(str).str.strip() == "")).to_numpy()
        if unknown_out.any():
            jobs = jobs.copy()
            jobs["output_tokens"] = raw_out.where(~unknown_out, 0)
        else:
            unknown_out = None
    jobs = validate_jobs(jobs, scenario)
    if unknown_out is not None:
        jobs["output_tokens"] = jobs["output_tokens"].astype(float).where(~unknown_out, np.nan)
    state = dc_hour_state(scenario, utilization)
    dcs = scenario.dcs
    hours = jobs["hour"].to_numpy()
    area_pos = pd.Index(scenario.areas).get_indexer(jobs["area"])
    cols: dict[str, Any] = {
        "job_id": jobs["job_id"].to_numpy(dtype=object),
        "arrival_s": jobs["arrival_s"].to_numpy(dtype=float),
        "hour": hours.astype(np.int64),
        "area": jobs["area"].to_numpy(dtype=object),
        "query_type": jobs["query_type"].to_numpy(dtype=object),
        "input_tokens": jobs["input_tokens"].to_numpy(dtype=float),
        "output_tokens": (jobs["output_tokens"].to_numpy(dtype=float)
                          if "output_tokens" in jobs.columns else np.full(len(jobs), np.nan)),
        "sla_s": jobs["sla_s"].to_numpy(dtype=float),
    }
    hour_pos = pd.Index(state.indexes["hour"]).get_indexer(hours)
    for f in STATE_FIELDS:
        arr = state[f].transpose("hour", "dc").values[hour_pos]
        for j, d in enumerate(dcs):
            cols[dc_column(f, d)] = arr[:, j]
    rtt = scenario.ds["rtt_s"].transpose("area", "dc").values[area_pos]
    for j, d in enumerate(dcs):
        cols[dc_column("rtt_s", d)] = rtt[:, j]
    return pd.DataFrame(cols)
