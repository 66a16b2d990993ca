"""Jobs as arrays, facility accounting and seeded noise of the digital twin.

Split from :mod:`greensched.eval.twin` (which re-exports every name here).

Facility accounting (:func:`facility_accounting`, as in the planner)
    facility = PUE · IT; renewables used first; grid = min(max(0, facility − renewables), grid
    cap) with the excess reported as ``grid_shortfall_kwh``; carbon = θ · grid; water = (WUE / PUE
    + EWIF) · facility; energy cost = price · grid; carbon cost = δ · θ · grid.  A job's share of
    its DC-hour's grid energy, carbon and cost is proportional to its IT energy.

Noise (``noise=True``)
    Multiplicative, mean-one lognormal factors on per-job energy (σ = :data:`ENERGY_SIGMA`) and
    on prefill + decode time (σ = :data:`RUNTIME_SIGMA`), from the measured repeat noise of
    identical runs (1.9 % and 1.3 % mean absolute deviation from the median of the repeats over
    the 1956 fitted runs; σ = MAD·√(π/2); ``reports/twin_energy_fit.md``), and a random wait: with
    probability ``C`` an exponential wait with mean ``W / C``, else none (the M/M/c waiting-time
    law, mean ``W``).  Draws are made for every (job, DC) from the seed, so the same jobs and seed
    give the same draws under every policy (common random numbers).  ``noise=False`` uses the
    means.
    Implemented by :class:`NoiseSource`, a counter-based generator: every draw is a hash of
    (seed, stream, job row, DC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

from greensched.errors import GreenSchedError
from greensched.jobs import validate_jobs
from greensched.scenario import Scenario

__all__ = [
    "STREAM_ENERGY",
    "STREAM_RUNTIME",
    "STREAM_WAIT",
    "FacilityAccount",
    "JobArrays",
    "NoiseSource",
    "QueueState",
    "encode_jobs",
    "lognormal_factor",
    "stationary_plus_backlog_wait",
    "facility_accounting",
]


# ---------------------------------------------------------------------------------------------
# facility accounting


@dataclass
class FacilityAccount:
    """Facility accounting per (hour, dc); every array has shape (hours, dcs).

    Attributes are in kWh (energy), kg (carbon), l (water) and USD (costs).
    """

    it_kwh: np.ndarray
    facility_kwh: np.ndarray
    renewable_used_kwh: np.ndarray
    grid_kwh: np.ndarray
    grid_shortfall_kwh: np.ndarray
    carbon_kg: np.ndarray
    water_l: np.ndarray
    energy_usd: np.ndarray
    carbon_usd: np.ndarray

    def grid_per_it(self) -> np.ndarray:
        """Grid kWh bought per IT kWh in each (hour, dc) (0 where nothing ran)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.it_kwh > 0, self.grid_kwh / np.where(self.it_kwh > 0, self.it_kwh, 1.0), 0.0
            )

    def totals(self) -> dict[str, float]:
        """Sums over hours and DCs."""
        return {
            "it_kwh": float(self.it_kwh.sum()),
            "facility_kwh": float(self.facility_kwh.sum()),
            "renewable_used_kwh": float(self.renewable_used_kwh.sum()),
            "grid_kwh": float(self.grid_kwh.sum()),
            "grid_shortfall_kwh": float(self.grid_shortfall_kwh.sum()),
            "carbon_kg": float(self.carbon_kg.sum()),
            "water_l": float(self.water_l.sum()),
            "energy_usd": float(self.energy_usd.sum()),
            "carbon_usd": float(self.carbon_usd.sum()),
        }

    def frame(self, scenario: Scenario) -> pd.DataFrame:
        """Per (hour, dc) table like the planner's ``dc_hourly.csv`` plus shortfall and costs."""
        H, D = self.it_kwh.shape
        return pd.DataFrame(
            {
                "hour": np.repeat(np.arange(H), D),
                "dc": np.tile(np.asarray(scenario.dcs, dtype=object), H),
                "it_kw": self.it_kwh.ravel(),
                "facility_kw": self.facility_kwh.ravel(),
                "grid_kw": self.grid_kwh.ravel(),
                "renewable_used_kw": self.renewable_used_kwh.ravel(),
                "grid_shortfall_kw": self.grid_shortfall_kwh.ravel(),
                "water_l": self.water_l.ravel(),
                "carbon_kg": self.carbon_kg.ravel(),
                "energy_usd": self.energy_usd.ravel(),
                "carbon_usd": self.carbon_usd.ravel(),
            }
        )


def _hd(scenario: Scenario, name: str) -> np.ndarray:
    return np.asarray(scenario.ds[name].transpose("hour", "dc").values, dtype=np.float64)


def facility_accounting(scenario: Scenario, it_kwh: np.ndarray) -> FacilityAccount:
    """Facility energy, grid purchase, carbon, water and cost from IT energy per (hour, dc).

    Same equations as the planner (shared/spec/green-llm-model.md): P^d = PUE · P^c; on-site
    renewables P^w are used first; grid P^g = max(0, P^d − P^w), capped at P^max (the excess is
    ``grid_shortfall_kwh``, a supply the site does not have); carbon = θ · P^g; water =
    (WUE / PUE + EWIF) · P^d; energy cost = c · P^g; carbon cost = δ · θ · P^g.
    """
    it = np.asarray(it_kwh, dtype=np.float64)
    H, D = scenario.hours, len(scenario.dcs)
    if it.shape != (H, D):
        raise GreenSchedError(f"it_kwh has shape {it.shape}; expected (hours, dcs) = {(H, D)}")
    pue = np.asarray(scenario.ds["pue"].values, dtype=np.float64)[None, :]
    facility = it * pue
    ren = _hd(scenario, "renewable_kw")
    cap = _hd(scenario, "grid_cap_kw")
    need = np.maximum(facility - ren, 0.0)
    grid = np.minimum(need, cap)
    theta = _hd(scenario, "carbon_kg_per_kwh")
    delta = np.asarray(scenario.ds["carbon_price_usd_per_kg"].values, dtype=np.float64)[None, :]
    water_f = _hd(scenario, "wue_l_per_kwh") / pue + _hd(scenario, "ewif_l_per_kwh")
    carbon = theta * grid
    return FacilityAccount(
        it_kwh=it,
        facility_kwh=facility,
        renewable_used_kwh=np.minimum(facility, ren),
        grid_kwh=grid,
        grid_shortfall_kwh=need - grid,
        carbon_kg=carbon,
        water_l=water_f * facility,
        energy_usd=_hd(scenario, "price_usd_per_kwh") * grid,
        carbon_usd=delta * carbon,
    )


# ---------------------------------------------------------------------------------------------
# jobs as arrays


@dataclass
class JobArrays:
    """A validated jobs table as integer codes and numbers (one entry per job)."""

    job_id: Any
    hour: np.ndarray
    area: np.ndarray
    qtype: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    sla_s: np.ndarray
    arrival_s: np.ndarray
    weight: np.ndarray
    frame: pd.DataFrame | None = None

    @property
    def n(self) -> int:
        return len(self.hour)


def _is_valid_frame(jobs: pd.DataFrame) -> bool:
    need = ("job_id", "arrival_s", "hour", "area", "query_type", "input_tokens", "sla_s")
    if any(c not in jobs.columns for c in need):
        return False
    return bool(
        jobs["hour"].dtype.kind == "i"
        and jobs["input_tokens"].dtype.kind == "i"
        and jobs["arrival_s"].dtype.kind == "f"
        and jobs["sla_s"].dtype.kind == "f"
        and jobs.attrs.get("greensched_validated", False)
    )


def _codes(column: pd.Series, labels: list[str]) -> np.ndarray:
    """Positions of a column's values in ``labels`` (-1 when unknown), via factorize."""
    codes, uniques = pd.factorize(column)
    pos = pd.Index(labels).get_indexer(pd.Index(uniques).astype(str))
    pos = np.append(pos, -1)  # factorize's -1 (missing) maps to -1
    return pos[codes]


def encode_jobs(scenario: Scenario, jobs: pd.DataFrame) -> JobArrays:
    """Validate a jobs table (:func:`greensched.jobs.validate_jobs`) and code it as arrays.

    Jobs without ``output_tokens`` get their query type's ``output_tokens`` from the scenario.
    Tables produced by :mod:`greensched.eval.traces` are marked as validated and not re-checked.
    """
    if not _is_valid_frame(jobs):
        jobs = validate_jobs(jobs, scenario)
    area = _codes(jobs["area"], scenario.areas)
    qtype = _codes(jobs["query_type"], scenario.query_types)
    if (area < 0).any() or (qtype < 0).any():
        jobs = validate_jobs(jobs, scenario)  # raises with file/line/column
    hour = jobs["hour"].to_numpy(dtype=np.int64)
    if ((hour < 0) | (hour >= scenario.hours)).any():
        jobs = validate_jobs(jobs, scenario)
    f = np.asarray(scenario.ds["output_tokens"].values, dtype=np.float64)
    if "output_tokens" in jobs.columns:
        out = pd.to_numeric(jobs["output_tokens"], errors="coerce").to_numpy(dtype=np.float64)
        out = np.where(np.isfinite(out), out, np.round(f[qtype]))
    else:
        out = np.round(f[qtype])
    weight = (
        jobs["weight"].to_numpy(dtype=np.float64)
        if "weight" in jobs.columns
        else np.ones(len(jobs))
    )
    return JobArrays(
        job_id=jobs["job_id"].array,
        hour=hour,
        area=area.astype(np.int64),
        qtype=qtype.astype(np.int64),
        input_tokens=jobs["input_tokens"].to_numpy(dtype=np.float64),
        output_tokens=out,
        sla_s=jobs["sla_s"].to_numpy(dtype=np.float64),
        arrival_s=jobs["arrival_s"].to_numpy(dtype=np.float64),
        weight=weight,
        frame=jobs,
    )


STREAM_ENERGY = 1
STREAM_RUNTIME = 2
STREAM_WAIT = 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) on uint64 arrays."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class NoiseSource:
    """Seeded noise addressed by (stream, job row, DC): a counter-based generator.

    Every value is a hash of (seed, stream, row, column), so any subset can be drawn in any order
    and the same (job, DC) always gets the same draw — the chosen DC of a simulation and the
    dataset's counterfactual columns agree, and policies share their noise.
    """

    seed: int

    def uniform(self, stream: int, rows: Any, cols: Any) -> np.ndarray:
        """Uniforms in (0, 1), broadcast over ``rows`` and ``cols``."""
        with np.errstate(over="ignore"):
            seed = np.asarray([int(self.seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
            key = _mix64(seed ^ (np.uint64(int(stream)) * _GOLDEN))[0]
            r = np.asarray(rows, dtype=np.uint64)
            c = np.asarray(cols, dtype=np.uint64)
            z = _mix64(key ^ ((r << np.uint64(20)) | c))
        return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)

    def normal(self, stream: int, rows: Any, cols: Any) -> np.ndarray:
        """Standard normals (inverse CDF of :meth:`uniform`)."""
        return ndtri(self.uniform(stream, rows, cols))


@dataclass
class QueueState:
    """Queue of every (hour, dc, query_type) cell; arrays of shape (hours, dcs, types).

    Attributes
    ----------
    jobs
        Jobs (queries) in the cell.
    slots
        Servers c = replicas · batch_size.
    load
        Offered load a (Erlangs, time-average busy slots).
    utilization
        ρ = a / c (may exceed 1: overload).
    batch
        Effective batch x (busy slots per replica, 1..batch_size).
    wait_s, p_wait
        Stationary mean wait (s) and waiting probability (M/G/c, Allen–Cunneen).
    energy_factor, latency_factor
        Batch factors on decode energy and decode time at the effective batch.
    """

    jobs: np.ndarray
    slots: np.ndarray
    load: np.ndarray
    utilization: np.ndarray
    batch: np.ndarray
    wait_s: np.ndarray
    p_wait: np.ndarray
    energy_factor: np.ndarray
    latency_factor: np.ndarray


def lognormal_factor(
    noise: NoiseSource, stream: int, sigma: float, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Mean-one lognormal factor exp(σ z − σ²/2)."""
    if sigma == 0:
        return np.ones(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
    return np.exp(sigma * noise.normal(stream, rows, cols) - 0.5 * sigma * sigma)


def stationary_plus_backlog_wait(
    queue: QueueState,
    h: np.ndarray,
    d: np.ndarray,
    k: np.ndarray,
    tau: np.ndarray,
    u: np.ndarray | None,
) -> np.ndarray:
    """Per-job wait: stationary (mean, or sampled from ``u``) plus the fluid backlog if ρ > 1.

    ``tau`` is the arrival's offset into its hour (s); arrays broadcast together.  With a
    uniform ``u``: wait with probability C (``u < C``), then exponential with mean W / C
    (inverse transform of ``u / C``).
    """
    mean = queue.wait_s[h, d, k]
    rho = queue.utilization[h, d, k]
    if u is not None:
        pw = queue.p_wait[h, d, k]
        safe = np.where(pw > 0, pw, 1.0)
        cond = np.where(pw > 0, mean / safe, 0.0)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            ratio = np.where(pw > 0, u / safe, 2.0)
        stat = np.where(ratio < 1.0, -cond * np.log(np.maximum(ratio, 1e-300)), 0.0)
    else:
        stat = mean
    return stat + np.maximum(rho - 1.0, 0.0) * tau
