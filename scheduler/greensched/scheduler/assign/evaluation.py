"""Jobs drawn from a scenario's demand, and outcomes of an assignment under the hourly model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from greensched.jobs import validate_jobs
from greensched.scenario import Scenario
from greensched.scheduler.assign.config import AssignError
from greensched.scheduler.assign.inputs import _ensure_valid, _job_codes, _type_tokens
from greensched.scheduler.assign.results import Assignment


def sample_jobs_from_demand(
    scenario: Scenario,
    *,
    seed: int = 0,
    fraction: float = 1.0,
    token_spread: float = 0.0,
    sla_s: float | None = None,
) -> pd.DataFrame:
    """A jobs table drawn from the scenario's demand (validated; arrival order).

    Each (hour, area, type) gets round(fraction · queries) jobs with arrivals uniform in the
    hour.  Tokens are the type's means, or lognormal around them (mean preserved) with
    coefficient of variation ``token_spread``.  ``sla_s`` None keeps the jobs-table default.
    """
    if not (fraction > 0 and math.isfinite(fraction)):
        raise AssignError(f"fraction {fraction!r} must be a finite number > 0")
    rng = np.random.default_rng(seed)
    ds = scenario.ds
    q = ds["queries"].transpose("hour", "area", "query_type").values
    counts = np.round(q * fraction).astype(np.int64).ravel()
    H, A, K = q.shape
    cell = np.repeat(np.arange(counts.size), counts)
    hh, aa, kk = np.unravel_index(cell, (H, A, K))
    n = len(cell)
    arrival = (hh + rng.random(n)) * 3600.0
    h_tok, f_tok = _type_tokens(scenario)

    def draw(mean: np.ndarray) -> np.ndarray:
        if token_spread <= 0:
            return np.round(mean).astype(np.int64)
        s2 = math.log1p(token_spread**2)
        vals = mean * np.exp(rng.normal(-s2 / 2, math.sqrt(s2), len(mean)))
        return np.maximum(1, np.round(vals)).astype(np.int64)

    frame = pd.DataFrame(
        {
            "arrival_s": arrival,
            "area": np.asarray(scenario.areas, dtype=object)[aa],
            "query_type": np.asarray(scenario.query_types, dtype=object)[kk],
            "input_tokens": draw(h_tok[kk]),
            "output_tokens": draw(f_tok[kk]),
        }
    )
    if sla_s is not None:
        frame["sla_s"] = float(sla_s)
    frame = frame.sort_values("arrival_s", kind="stable").reset_index(drop=True)
    frame.insert(0, "job_id", [f"j{i:07d}" for i in range(n)])
    return validate_jobs(frame, scenario)


def evaluate_assignment(
    scenario: Scenario, jobs: pd.DataFrame, assignment: Assignment | pd.DataFrame
) -> dict[str, float]:
    """Outcomes of an assignment under the scenario's hourly model.

    IT energy of the placed jobs (their ``predicted_energy_kwh``) is summed per (dc, hour);
    facility energy = PUE · IT; grid = max(0, facility − renewable) (on-site renewables used
    first, as in the plan); energy_usd = Σ price · grid, carbon_kg = Σ θ · grid, carbon_usd =
    Σ δ θ grid, water_l = Σ (WUE/PUE + EWIF) · facility.  Also: delay_usd (α · SLA excess per
    job), SLA violations (predicted service time > SLA), grid-cap excess (kWh above
    grid_cap_kw) and capacity overflow (rows and units above capacity, from the jobs' usage).
    ``model_*`` values are the planner's objective at the realised shares (see
    :func:`_model_costs`).
    """
    frame = assignment.frame if isinstance(assignment, Assignment) else assignment
    jobs = _ensure_valid(scenario, jobs)
    if len(frame) != len(jobs) or not np.array_equal(
        np.asarray(frame["job_id"], dtype=object), np.asarray(jobs["job_id"], dtype=object)
    ):
        raise AssignError("the assignment's job_id column does not match the jobs table")
    ds = scenario.ds
    dcs = scenario.dcs
    dpos = pd.Index(dcs).get_indexer(np.asarray(frame["dc"], dtype=object))
    placed = dpos >= 0
    codes = _job_codes(scenario, jobs)
    H, D = scenario.hours, len(dcs)
    it = np.zeros((H, D))
    np.add.at(
        it, (codes["hour"][placed], dpos[placed]), frame["predicted_energy_kwh"].to_numpy()[placed]
    )
    pue = ds["pue"].values
    facility = it * pue[None, :]
    ren = ds["renewable_kw"].transpose("hour", "dc").values
    grid = np.maximum(facility - ren, 0.0)
    cap = ds["grid_cap_kw"].transpose("hour", "dc").values
    price = ds["price_usd_per_kwh"].transpose("hour", "dc").values
    theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    delta = ds["carbon_price_usd_per_kg"].values
    wf = (
        ds["wue_l_per_kwh"].transpose("hour", "dc").values / pue[None, :]
        + ds["ewif_l_per_kwh"].transpose("hour", "dc").values
    )
    upt = ds["units_per_token"].transpose("query_type", "resource").values
    units = upt[codes["qtype"]] * codes["tokens"][:, None]
    used = np.zeros((H, D, units.shape[1]))
    np.add.at(used, (codes["hour"][placed], dpos[placed]), units[placed])
    capacity = ds["capacity"].transpose("dc", "resource").values[None, :, :]
    over = np.maximum(used - capacity, 0.0)
    s = frame["predicted_service_s"].to_numpy()
    alpha = ds["delay_penalty_usd_per_s"].values[codes["qtype"]]
    excess = np.where(placed, np.maximum(s - codes["sla"], 0.0), 0.0)
    carbon_kg = float((theta * grid).sum())
    out = {
        "jobs": float(len(frame)),
        "assigned": float(placed.sum()),
        "it_kwh": float(it.sum()),
        "grid_kwh": float(grid.sum()),
        "energy_usd": float((price * grid).sum()),
        "carbon_kg": carbon_kg,
        "carbon_usd": float((delta[None, :] * theta * grid).sum()),
        "water_l": float((wf * facility).sum()),
        "delay_usd": float(np.nansum(alpha * excess)),
        "sla_violations": float((placed & (s > codes["sla"])).sum()),
        "grid_cap_excess_kwh": float(np.maximum(grid - cap, 0.0).sum()),
        "capacity_overflow_rows": float((over > 1e-9).any(axis=1).sum()),
        "capacity_overflow_units": float(over.sum()),
    }
    out["total_usd"] = out["energy_usd"] + out["carbon_usd"] + out["delay_usd"]
    out.update(_model_costs(scenario, codes, dpos))
    return out


def _model_costs(
    scenario: Scenario, codes: dict[str, np.ndarray], dpos: np.ndarray
) -> dict[str, float]:
    """The planner's objective at the shares the assignment realised.

    x̂[a,d,k,h] = (jobs of (a,k,h) placed at d) / (jobs of (a,k,h)); the scenario's demand λ,
    per-query coefficients and hour-total delay terms are then those of the Green-LLM model,
    with grid = max(0, PUE · IT − renewable) (the cheapest purchase for non-negative prices).
    Comparable with the plan's ``objective`` when the jobs follow the scenario's demand.
    """
    from greensched.scheduler.greenllm import delay_coefficients

    ds = scenario.ds
    A, D, K, H = (len(scenario.areas), len(scenario.dcs), len(scenario.query_types), scenario.hours)
    placed = dpos >= 0
    counts = np.zeros((A, D, K, H))
    np.add.at(
        counts,
        (codes["area"][placed], dpos[placed], codes["qtype"][placed], codes["hour"][placed]),
        1.0,
    )
    total = np.zeros((A, K, H))
    np.add.at(total, (codes["area"], codes["qtype"], codes["hour"]), 1.0)
    x = counts / np.where(total > 0, total, 1.0)[:, None, :, :]
    lam = ds["queries"].transpose("area", "query_type", "hour").values
    e = scenario.energy_kwh_per_query().transpose("dc", "query_type", "hour").values
    it = np.einsum("adkh,dkh,akh->hd", x, e, lam)
    pue = ds["pue"].values
    facility = it * pue[None, :]
    grid = np.maximum(facility - ds["renewable_kw"].transpose("hour", "dc").values, 0.0)
    price = ds["price_usd_per_kwh"].transpose("hour", "dc").values
    theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    delta = ds["carbon_price_usd_per_kg"].values
    coef = delay_coefficients(scenario).transpose("area", "dc", "query_type", "hour").values
    rho = ds["delay_penalty_usd_per_s"].values
    out = {
        "model_energy_usd": float((price * grid).sum()),
        "model_carbon_usd": float((delta[None, :] * theta * grid).sum()),
        "model_carbon_kg": float((theta * grid).sum()),
        "model_delay_usd": float(np.einsum("adkh,adkh,k->", coef, x, rho)),
    }
    out["model_total_usd"] = (
        out["model_energy_usd"] + out["model_carbon_usd"] + out["model_delay_usd"]
    )
    return out
