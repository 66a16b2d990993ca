"""Seeded synthetic scenarios of any size, for tests, examples and benchmarks.

The generator draws plausible magnitudes (loosely after the Green-LLM letter's experiment:
per-token energy of a few Wh per thousand tokens, prices of 0.05–0.25 USD/kWh, grid intensity of
0.1–0.8 kg/kWh with a diurnal swing) and sizes capacities, grid caps and delay limits so that the
scenario is feasible: every DC alone could serve well over its share of the peak hour.
The same arguments always give the same scenario.
"""

from __future__ import annotations

import numpy as np

from greensched.scenario import Scenario, dataset_from_arrays

__all__ = ["synthesize"]


def synthesize(
    dcs: int = 4,
    areas: int = 3,
    types: int = 3,
    hours: int = 24,
    seed: int = 0,
    *,
    resources: int = 3,
    water_budget: bool = True,
    name: str | None = None,
) -> Scenario:
    """Make a feasible synthetic scenario.

    Parameters
    ----------
    dcs, areas, types, hours, resources
        Sizes of the dimensions (each ≥ 1).
    seed
        Seed of numpy's ``default_rng``; equal seeds give identical scenarios.
    water_budget
        Set a water budget Z (loose: 1.5 × the water of an even split).
    """
    for label, value in (
        ("dcs", dcs),
        ("areas", areas),
        ("types", types),
        ("hours", hours),
        ("resources", resources),
    ):
        if int(value) < 1:
            raise ValueError(f"synthesize: {label} must be >= 1, got {value!r}")
    rng = np.random.default_rng(seed)
    J, I, K, T, R = dcs, areas, types, hours, resources
    dc = [f"dc{j:03d}" for j in range(J)]
    area = [f"area{i:03d}" for i in range(I)]
    qt = [f"type{k}" for k in range(K)]
    res = ["cpu", "gpu", "memory", *[f"res{r}" for r in range(3, R)]][:R]
    hour = np.arange(T)

    h = rng.integers(50, 1500, K).astype(float)
    f = rng.integers(20, 600, K).astype(float)
    tau_in = rng.uniform(0.5e-6, 3e-6, K)
    tau_out = rng.uniform(2e-6, 1e-5, K)
    rho = rng.uniform(0.05, 0.25, K)

    lat_dc = rng.uniform(25, 48, J)
    lon_dc = rng.uniform(-122, -72, J)
    lat_a = rng.uniform(25, 48, I)
    lon_a = rng.uniform(-122, -72, I)
    pue = rng.uniform(1.08, 1.5, J)
    delta = rng.uniform(0.01, 0.05, J)

    # distance-based RTT (~1 ms per 100 km of great-circle-ish distance, + 2 ms)
    dist = np.hypot(
        (lat_a[:, None] - lat_dc[None, :]) * 111.0, (lon_a[:, None] - lon_dc[None, :]) * 85.0
    )
    rtt = 0.002 + dist / 100.0 * 0.001
    bandwidth = rng.uniform(500.0, 5000.0, (I, J))

    diurnal = 0.6 + 0.4 * np.sin((hour - 8) / 24 * 2 * np.pi) ** 2
    queries = np.round(rng.uniform(200, 1200, (T, I, K)) * diurnal[:, None, None])
    token_size = rng.uniform(0.003, 0.005, (T, I, K))

    e_query = tau_in * h + tau_out * f  # kWh per query
    peak_it = float((queries.sum(axis=(1,)) * e_query[None, :]).sum(axis=1).max())
    share = 3.0 / J  # each DC can take three times an even share of the peak
    grid_cap = np.ceil(peak_it * pue.max() * share * rng.uniform(1.0, 1.5, (T, J)))
    renewable = (
        peak_it
        * share
        * rng.uniform(0.0, 0.6, (T, J))
        * np.clip(np.sin((hour[:, None] - 6) / 12 * np.pi), 0, None)
    )
    price = rng.uniform(0.05, 0.15, J)[None, :] * (1 + 0.6 * (diurnal[:, None] - 0.6))
    carbon = rng.uniform(0.1, 0.8, J)[None, :] * (1 + 0.2 * rng.standard_normal((T, J))).clip(0.5)
    wue = rng.uniform(0.3, 1.2, (T, J))
    ewif = rng.uniform(0.3, 0.8, (T, J))

    alpha = rng.uniform(5e-4, 3e-3, (K, R))
    peak_use = (queries.sum(axis=1) * ((h + f)[None, :])) @ alpha  # (T, R)
    capacity = np.ceil(peak_use.max(axis=0)[None, :] * share * rng.uniform(1.0, 1.5, (J, R)))
    v = np.round(rng.uniform(1e-6, 5e-6, (J, K)), 6)

    # delay limit: comfortably above the hour total of the nearest DC
    tokens = h + f
    tran = token_size * tokens[None, None, :] * queries
    worst = (
        tran.max(axis=0)[:, None, :] / bandwidth[:, :, None]
        + rtt[:, :, None]
        + v[None, :, :] * (queries.max(axis=0) * tokens[None, :])[:, None, :]
    )
    delay_limit = np.round(worst.max(axis=1) * 1.5 + 1.0, 2)

    ds = dataset_from_arrays(
        {
            "dc_latitude": lat_dc,
            "dc_longitude": lon_dc,
            "pue": pue,
            "carbon_price_usd_per_kg": delta,
            "dc_name": np.array([f"Data center {j}" for j in range(J)], dtype=object),
            "area_latitude": lat_a,
            "area_longitude": lon_a,
            "population": rng.integers(100_000, 9_000_000, I).astype(float),
            "area_name": np.array([f"Area {i}" for i in range(I)], dtype=object),
            "input_tokens": h,
            "output_tokens": f,
            "energy_in_kwh_per_token": tau_in,
            "energy_out_kwh_per_token": tau_out,
            "delay_penalty_usd_per_s": rho,
            "capacity": capacity,
            "units_per_token": alpha,
            "delay_s_per_token": v,
            "rtt_s": rtt,
            "bandwidth": bandwidth,
            "delay_limit_s": delay_limit,
            "price_usd_per_kwh": price,
            "carbon_kg_per_kwh": carbon,
            "renewable_kw": renewable,
            "grid_cap_kw": grid_cap,
            "wue_l_per_kwh": wue,
            "ewif_l_per_kwh": ewif,
            "queries": queries,
            "token_size": token_size,
        },
        areas=area,
        dcs=dc,
        query_types=qt,
        resources=res,
        hours=T,
    )
    water = None
    if water_budget:
        even = (e_query[None, None, :] * queries).sum() * pue.mean() * (wue.mean() + ewif.mean())
        water = float(np.round(even * 1.5, 3))
    return Scenario(
        name=name or f"synth-d{J}-a{I}-k{K}-t{T}-s{seed}",
        description=f"Synthetic scenario (greensched.synth, seed {seed}); magnitudes after the "
        "Green-LLM letter (arXiv 2507.09942), all values random.",
        hours=T,
        start=None,
        water_budget_l=water,
        weights={"energy": 1 / 3, "carbon": 1 / 3, "delay": 1 / 3},
        ds=ds,
    )
