"""Per-job inputs: integer codes, resource usage and per-(job, dc) predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from greensched.jobs import validate_jobs
from greensched.scenario import Scenario
from greensched.scheduler.assign.config import AssignError


def _type_tokens(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    ds = scenario.ds
    h = np.asarray(ds["input_tokens"].values, dtype=float)
    f = np.asarray(ds["output_tokens"].values, dtype=float)
    return h, f


def _job_codes(scenario: Scenario, jobs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Integer codes and numeric columns of a validated jobs frame."""
    area = np.asarray(pd.Categorical(jobs["area"], categories=scenario.areas).codes)
    qtype = np.asarray(pd.Categorical(jobs["query_type"], categories=scenario.query_types).codes)
    if (area < 0).any() or (qtype < 0).any():
        col = "area" if (area < 0).any() else "query_type"
        row = int(np.flatnonzero((area if col == "area" else qtype) < 0)[0])
        raise AssignError(
            f"jobs row {row}: unknown {col} {jobs[col].iloc[row]!r} for scenario {scenario.name!r}"
        )
    hour = jobs["hour"].to_numpy().astype(np.int64)
    if ((hour < 0) | (hour >= scenario.hours)).any():
        row = int(np.flatnonzero((hour < 0) | (hour >= scenario.hours))[0])
        raise AssignError(f"jobs row {row}: hour {hour[row]} outside 0..{scenario.hours - 1}")
    _, f = _type_tokens(scenario)
    inp = jobs["input_tokens"].to_numpy().astype(float)
    if "output_tokens" in jobs.columns:
        out = pd.to_numeric(jobs["output_tokens"], errors="coerce").to_numpy(dtype=float)
        out = np.where(np.isfinite(out), out, f[qtype])
    else:
        out = f[qtype]
    arrival = (
        jobs["arrival_s"].to_numpy().astype(float) if "arrival_s" in jobs.columns else hour * 3600.0
    )
    return {
        "area": area.astype(np.int64),
        "qtype": qtype.astype(np.int64),
        "hour": hour,
        "tokens": inp + out,
        "sla": jobs["sla_s"].to_numpy().astype(float),
        "arrival": arrival,
    }


def job_usage_units(scenario: Scenario, jobs: pd.DataFrame) -> np.ndarray:
    """Resource units each job uses, u[j,r] = units_per_token[k_j,r] · (input + output tokens).

    Jobs without ``output_tokens`` count their query type's mean ``output_tokens``.  Shape
    (jobs, resources) in the scenario's resource order.
    """
    jobs = _ensure_valid(scenario, jobs)
    codes = _job_codes(scenario, jobs)
    upt = scenario.ds["units_per_token"].transpose("query_type", "resource").values
    return np.asarray(upt[codes["qtype"]] * codes["tokens"][:, None], dtype=float)


def _ensure_valid(scenario: Scenario, jobs: pd.DataFrame) -> pd.DataFrame:
    if (
        "hour" in jobs.columns
        and "sla_s" in jobs.columns
        and "arrival_s" in jobs.columns
        and (jobs["hour"].dtype.kind == "i")
    ):
        return jobs
    return validate_jobs(jobs, scenario)


class CoefficientTable:
    """The scenario's per-query coefficients as arrays, scaled per job by its tokens.

    With e[h,k,d] = :meth:`Scenario.energy_kwh_per_query` and p[h,k,d] =
    :meth:`Scenario.proc_delay_s_per_query` (``coefficients.csv`` when present, else the
    scenario's per-token model), job j of type k in hour h from area a with n_j = input + output
    tokens gets::

        scale_j      = n_j / (input_tokens_k + output_tokens_k)
        energy_kwh   = e[h,k,d] · scale_j
        service_s    = p[h,k,d] · scale_j + rtt_s[a,d]

    i.e. energy and processing time are taken as proportional to the job's total tokens, relative
    to its query type's mean tokens (exact for the default per-token model when input and output
    cost the same per token; an approximation otherwise).  Transmission time is left out: the
    scenario's token_size / bandwidth quotient is not in seconds per token for every scenario.
    The arrays are computed once, so :meth:`predict` costs a few array lookups (the HTTP service
    calls it per micro-batch; :func:`predictions_from_coefficients` per table).
    """

    def __init__(self, scenario: Scenario) -> None:
        h, f = _type_tokens(scenario)
        self.mean_output_tokens = f
        self.mean_tokens = h + f
        if (self.mean_tokens <= 0).any():
            k = int(np.flatnonzero(self.mean_tokens <= 0)[0])
            raise AssignError(
                f"query type {scenario.query_types[k]!r} has zero mean tokens; cannot scale"
            )
        self.energy_kwh = scenario.energy_kwh_per_query().transpose(
            "hour", "query_type", "dc").values
        self.proc_s = scenario.proc_delay_s_per_query().transpose(
            "hour", "query_type", "dc").values
        self.rtt_s = scenario.ds["rtt_s"].transpose("area", "dc").values

    def predict(
        self, hour: np.ndarray, qtype: np.ndarray, area: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(energy_kwh, service_s), each (jobs, dcs), for integer-coded jobs with ``tokens`` =
        input + output tokens (an unknown output counted as the type's mean)."""
        scale = tokens / self.mean_tokens[qtype]
        energy = self.energy_kwh[hour, qtype] * scale[:, None]
        service = self.proc_s[hour, qtype] * scale[:, None] + self.rtt_s[area]
        return energy, service


def predictions_from_coefficients(scenario: Scenario, jobs: pd.DataFrame) -> xr.Dataset:
    """Per-(job, dc) predictions from the scenario's per-query coefficients
    (:class:`CoefficientTable`); a job without ``output_tokens`` has scale input_j + f_k over
    h_k + f_k."""
    jobs = _ensure_valid(scenario, jobs)
    codes = _job_codes(scenario, jobs)
    energy, service = CoefficientTable(scenario).predict(
        codes["hour"], codes["qtype"], codes["area"], codes["tokens"])
    coords = {
        "job": pd.Index(jobs["job_id"]).rename("job"),
        "dc": np.asarray(scenario.dcs, dtype=object),
    }
    return xr.Dataset(
        {"energy_kwh": (("job", "dc"), energy), "service_s": (("job", "dc"), service)},
        coords=coords,
    )


def _prediction_arrays(
    predictions: xr.Dataset, job_ids: pd.Index, dcs: list[str], risk: bool
) -> dict[str, np.ndarray]:
    """energy/service (and risk) arrays aligned to the jobs' order and the scenario's DCs."""
    if not isinstance(predictions, xr.Dataset):
        raise AssignError(
            f"predictions must be an xarray Dataset with dims (job, dc), got "
            f"{type(predictions).__name__}"
        )
    need = ["energy_kwh", "service_s"]
    if risk:
        need += ["energy_kwh_p90", "service_s_p90"]
    missing = [v for v in need if v not in predictions.data_vars]
    if missing:
        extra = " (risk-aware mode needs the p90 quantiles)" if risk else ""
        raise AssignError(f"predictions lack variable(s) {missing!r}{extra}")
    for v in need:
        if set(predictions[v].dims) != {"job", "dc"}:
            raise AssignError(
                f"predictions[{v!r}] has dims {predictions[v].dims!r}; expected ('job', 'dc')"
            )
    pdcs = [str(v) for v in predictions.indexes["dc"]] if "dc" in predictions.indexes else None
    if pdcs is None or set(pdcs) != set(dcs):
        raise AssignError(
            f"predictions cover dcs {pdcs!r}; expected exactly the scenario's {dcs!r}"
        )
    dc_pos = pd.Index(pdcs).get_indexer(dcs)
    if "job" in predictions.indexes:
        pjobs = predictions.indexes["job"]
        if len(pjobs) == len(job_ids) and pjobs.equals(job_ids):
            job_pos = None
        else:
            if not pjobs.is_unique:
                raise AssignError("predictions have duplicated job labels")
            job_pos = pjobs.get_indexer(job_ids)
            if (job_pos < 0).any():
                first = job_ids[int(np.flatnonzero(job_pos < 0)[0])]
                raise AssignError(
                    f"predictions have no row for job_id {first!r} "
                    f"({int((job_pos < 0).sum())} job(s) missing)"
                )
    else:
        if int(predictions.sizes["job"]) != len(job_ids):
            raise AssignError(
                f"predictions have {int(predictions.sizes['job'])} jobs without labels, the "
                f"jobs table {len(job_ids)}; label the job dim with job_id"
            )
        job_pos = None
    out = {}
    for v in need:
        arr = np.asarray(predictions[v].transpose("job", "dc").values, dtype=float)
        if job_pos is not None:
            arr = arr[job_pos]
        arr = arr[:, dc_pos] if not np.array_equal(dc_pos, np.arange(len(dcs))) else arr
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            j, d = (int(x[0]) for x in np.nonzero(bad))
            raise AssignError(
                f"predictions[{v!r}] at job {job_ids[j]!r}, dc {dcs[d]!r} is {arr[j, d]!r}; "
                "expected a finite number >= 0"
            )
        out[v] = arr
    return out
