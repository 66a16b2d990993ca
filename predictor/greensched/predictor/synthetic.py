"""A small synthetic stand-in for the digital twin's training data (``docs/dataset-format.md``).

It exists so that the predictors, their tests, the benchmark and the accuracy report can run
before/without the twin.  The ground truth is a simple closed form, *not* the twin's physics::

    E[j,d] = (τ_in,k · n_in + τ_out,k · n_out) · η_d · (1 + 0.3 · u[h,d]) · ε_E
    s[j,d] = rtt[a,d] + κ_d · (2e-4 · n_in + 0.025 · n_out) + 0.4 · u / (1 − u) + ε_s

with τ the scenario's per-token energies, η_d ∈ [0.8, 1.25] and κ_d ∈ [0.7, 1.4] per-DC
efficiency and speed factors, u the hour's utilisation (the expected utilisation times a
per-(hour, dc) factor in [0.6, 1.4], at most 0.95), and optional noise
(ε_E = exp(N(0, noise)), ε_s = N(0, noise · 0.05) s, floored at 1 ms).  ``best_dc`` minimises
σ_e · price · PUE · E + σ_c · carbon_price · carbon · PUE · E + σ_d · ρ_k · s with the
scenario's weights σ and delay penalties ρ, each of the three terms divided by its mean over
the dataset's jobs and DCs (so that no term dominates by its unit alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.jobs import DEFAULT_SLA_S
from greensched.predictor.dataset import dc_column, rows_from_jobs
from greensched.scenario import Scenario
from greensched.state import expected_utilization

__all__ = ["synthetic_dataset", "synthetic_jobs", "write_dataset"]


def synthetic_jobs(scenario: Scenario, n_jobs: int, seed: int = 0) -> pd.DataFrame:
    """``n_jobs`` random jobs (uniform hour, area and type; log-normal token counts around the
    type's means; SLA 10–60 s)."""
    rng = np.random.default_rng(seed)
    ds = scenario.ds
    k = rng.integers(0, len(scenario.query_types), n_jobs)
    h_mean = ds["input_tokens"].values[k]
    f_mean = ds["output_tokens"].values[k]
    return pd.DataFrame({
        "job_id": [f"job{i:06d}" for i in range(n_jobs)],
        "arrival_s": np.sort(rng.uniform(0, scenario.hours * 3600.0, n_jobs)),
        "area": np.asarray(scenario.areas, dtype=object)[rng.integers(0, len(scenario.areas),
                                                                      n_jobs)],
        "query_type": np.asarray(scenario.query_types, dtype=object)[k],
        "input_tokens": np.maximum(1, np.round(h_mean * rng.lognormal(0, 0.5, n_jobs)))
        .astype(np.int64),
        "output_tokens": np.maximum(1, np.round(f_mean * rng.lognormal(0, 0.5, n_jobs)))
        .astype(np.int64),
        "sla_s": np.round(rng.uniform(10.0, 60.0, n_jobs), 1) if n_jobs else DEFAULT_SLA_S,
    })


def synthetic_dataset(scenario: Scenario, n_jobs: int, seed: int = 0, noise: float = 0.0,
                      world_seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A dataset in the twin's format with the closed-form ground truth of the module docstring.

    ``seed`` draws the jobs, the utilisation factors and the noise; ``world_seed`` the per-DC
    factors η, κ (keep it fixed so that training and test sets share one ground truth).
    Returns the frame and its ``greensched`` metadata.
    """
    rng = np.random.default_rng(seed + 7919)
    ds = scenario.ds
    dcs = scenario.dcs
    D = len(dcs)
    util = (expected_utilization(scenario) * rng.uniform(0.6, 1.4, (scenario.hours, D)))
    util = util.clip(0.0, 0.95)
    jobs = synthetic_jobs(scenario, n_jobs, seed)
    df = rows_from_jobs(jobs, scenario, xr.DataArray(util.values, coords=util.coords,
                                                     dims=util.dims))
    drng = np.random.default_rng(world_seed + 104729)
    eta = drng.uniform(0.8, 1.25, D)
    kappa = drng.uniform(0.7, 1.4, D)
    kpos = pd.Index(scenario.query_types).get_indexer(df["query_type"])
    tau_in = ds["energy_in_kwh_per_token"].values[kpos]
    tau_out = ds["energy_out_kwh_per_token"].values[kpos]
    rho = ds["delay_penalty_usd_per_s"].values[kpos]
    n_in = df["input_tokens"].to_numpy(float)
    n_out = df["output_tokens"].to_numpy(float)
    w = scenario.weights
    delta = ds["carbon_price_usd_per_kg"].sel(dc=dcs).values
    terms = np.empty((3, len(df), D))
    for j, d in enumerate(dcs):
        u = df[dc_column("utilization", d)].to_numpy(float)
        e = (tau_in * n_in + tau_out * n_out) * eta[j] * (1 + 0.3 * u)
        s = (df[dc_column("rtt_s", d)].to_numpy(float)
             + kappa[j] * (2e-4 * n_in + 0.025 * n_out) + 0.4 * u / (1 - u))
        if noise > 0:
            e = e * np.exp(rng.normal(0.0, noise, len(df)))
            s = np.maximum(s + rng.normal(0.0, noise * 0.05, len(df)), 1e-3)
        df[dc_column("energy_kwh", d)] = e
        df[dc_column("service_s", d)] = s
        pue = df[dc_column("pue", d)].to_numpy(float)
        terms[0, :, j] = df[dc_column("price_usd_per_kwh", d)].to_numpy(float) * pue * e
        terms[1, :, j] = (delta[j] * df[dc_column("carbon_kg_per_kwh", d)].to_numpy(float)
                          * pue * e)
        terms[2, :, j] = rho * s
    scale = np.abs(terms).mean(axis=(1, 2), keepdims=True)
    weights = np.array([w.get("energy", 0.0), w.get("carbon", 0.0), w.get("delay", 0.0)])
    score = (weights[:, None, None] * terms / np.where(scale > 0, scale, 1.0)).sum(axis=0)
    df["best_dc"] = np.asarray(dcs, dtype=object)[score.argmin(axis=1)]
    meta = {
        "format": 1, "dcs": dcs, "scenario": scenario.name, "seed": seed, "noise": noise > 0,
        "objective": {"energy": w.get("energy"), "carbon": w.get("carbon"),
                      "delay": w.get("delay"),
                      "definition": "synthetic closed form (greensched.predictor.synthetic)"},
    }
    return df, meta


def write_dataset(df: pd.DataFrame, meta: dict[str, Any], path: str | Path) -> Path:
    """Write a dataset as Parquet with its ``greensched`` metadata (CSV when the suffix is .csv,
    without metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        df.to_csv(p, index=False)
        return p
    table = pa.Table.from_pandas(df, preserve_index=False)
    md = dict(table.schema.metadata or {})
    md[b"greensched"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    pq.write_table(table.replace_schema_metadata(md), p)
    return p
