"""The SE-GLB paper's 10-location scenario, assembled from ``../shared/data``.

Li, Liu, Yang, Ren (arXiv 2407.05176) use 10 data centers (Virginia, Georgia, Texas, Nevada,
Belgium, Netherlands, Germany, Denmark, Singapore, Japan), 150 DGX A100 servers each (6.5 kW
maximum per server) and PUE 1.1.  Their hourly prices, carbon and water series are not in
``../shared/data``; this module builds the closest inputs from what is there, and every
substitution is an *assumption* listed in :data:`LOCATIONS` and returned in
``EquityProblem.notes``.

Per-request energy and GPU time of each model are **inputs** (:class:`ModelSpec`): the
scheduler layer does not import the digital twin; :mod:`greensched.eval.equity_scenario` computes
them with the twin's energy model and calls :func:`build_ten_locations`.

Carbon (kg CO2-eq per kWh, direct/operational)
    * Virginia, Texas, Nevada: Electricity Maps 2024 hourly (US-MIDA-PJM, US-TEX-ERCO,
      US-NW-NEVP), from the start date on.
    * Georgia: Google 2024 annual mean of us-east2 (Georgia) × the hourly shape of the nearest
      hourly zone in the data, US-CAR-SCEG (South Carolina).  Assumption.
    * Germany: Let's-Wait-Awhile ``ger_ci`` (2020, ENTSO-E mix × IPCC factors), same month, day
      and hour as the start date (their year is 2020).
    * Belgium, Netherlands: Google 2024 annual means of europe-west1 / europe-west4 × Germany's
      hourly shape (normalised to mean 1 over the horizon).  Assumption.
    * Denmark: no Danish series in the data: an assumed annual mean (0.15 kg/kWh) × Germany's
      shape.  Assumption, not a measured figure.
    * Singapore, Japan: Google 2024 annual means of asia-southeast1 / asia-northeast1, flat.
Prices (USD per kWh)
    * US: real-time LMP, 2025-03-24/25 (two days; hour-of-day aligned in UTC and repeated over
      longer horizons): PJM (Virginia), MISO Louisiana hub (Georgia: the South-East has no ISO;
      assumption), ERCOT Houston hub (Texas), CAISO NP15 (Nevada, as the Green-LLM code maps Las
      Vegas).
    * Europe and Asia: no price data in ``../shared/data``: flat assumed wholesale levels
      (:data:`LOCATIONS`), of the order of 2024 day-ahead averages.  Assumption.
Water (litres per facility kWh) = WUE / PUE + EWIF: constants per location by climate (WUE) and
grid mix (EWIF), assumptions within the published 0.2–1.1 l/kWh (WUE) and 0.5–4 l/kWh (EWIF)
ranges; flat in time (no weather data).
Demand: one user region per location; λ_{j,t} = base × (1 + 0.4 sin(2π(h_local − 8)/24)), peak at
14:00 local time (assumption; the shared Azure trace covers one hour only).  The default base is
100 000 requests per hour per region, so that 70B alone cannot serve the demand.
Routing masks: latency — a region may use a DC whose estimated RTT (great-circle distance × 1.5
route factor at 200 km/ms, round trip) is ≤ 100 ms; sovereignty — European regions stay in
Europe (assumption).  Moving cost m_ij = 1e-5 USD per request per 1000 km (assumption).
Models: Llama-2 7B/13B/70B everywhere except Singapore, which hosts 7B and 13B only (an
illustrative resource-constrained site, assumption).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data.electricity_maps import read_electricity_maps
from greensched.data.google_carbon import read_google_carbon
from greensched.data.lets_wait_awhile import read_lets_wait_awhile
from greensched.data.lmp import read_lmp
from greensched.errors import GreenSchedError
from greensched.scheduler.equity.problem import EquityProblem

__all__ = [
    "DGX_A100_GPUS",
    "DGX_A100_MAX_KW",
    "LLAMA2_SCORES",
    "LOCATIONS",
    "Location",
    "ModelSpec",
    "build_ten_locations",
    "performance_costs",
]

#: NVIDIA DGX A100 datasheet: 8 A100 GPUs, 6.5 kW maximum system power.
DGX_A100_GPUS = 8
DGX_A100_MAX_KW = 6.5

#: Hugging Face Open LLM Leaderboard (v1, 2023) scores of meta-llama/Llama-2-{7,13,70}b-hf:
#: ARC (25-shot), HellaSwag (10-shot), TruthfulQA (0-shot, mc2), in %.  The SE-GLB paper averages
#: these three benchmarks.  (LLM360's own run of Llama 2-70B: 67.2 / 86.9 / 44.9.)
LLAMA2_SCORES: dict[str, tuple[float, float, float]] = {
    "7B": (53.07, 78.59, 38.76),
    "13B": (59.39, 82.13, 37.38),
    "70B": (67.32, 87.33, 44.92),
}


def performance_costs(
    scores: dict[str, tuple[float, ...]] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(score, s_k) per model: score = mean benchmark %, s_k = 1 − score / best score."""
    table = scores or LLAMA2_SCORES
    mean = {m: float(np.mean(v)) for m, v in table.items()}
    best = max(mean.values())
    return mean, {m: 1.0 - v / best for m, v in mean.items()}


@dataclass(frozen=True)
class Location:
    """Facts and assumptions of one location (see the module docstring)."""

    name: str
    lat: float
    lon: float
    utc_offset_h: int
    europe: bool
    carbon: str  # "em:<file>", "google:<region>[*shape]", "lwa:<file>", "assumed:<g/kWh>*shape"
    price: str  # "lmp:<file>" or "flat:<usd/kWh>"
    wue_l_per_kwh: float
    ewif_l_per_kwh: float
    models: tuple[str, ...] = ("7B", "13B", "70B")


_DE_SHAPE = "lwa:ger_ci.csv"
LOCATIONS: tuple[Location, ...] = (
    Location("Virginia", 38.9, -77.5, -5, False, "em:US-MIDA-PJM", "lmp:PJM_LMP", 0.6, 3.1),
    Location(
        "Georgia",
        33.7,
        -84.4,
        -5,
        False,
        "google:us-east2*em:US-CAR-SCEG",
        "lmp:LOUISIANA_LMP",
        0.8,
        3.1,
    ),
    Location("Texas", 32.8, -96.8, -6, False, "em:US-TEX-ERCO", "lmp:ERCOT_LMP", 0.9, 3.1),
    Location("Nevada", 36.2, -115.1, -8, False, "em:US-NW-NEVP", "lmp:CAISO_LMP", 1.1, 3.1),
    Location(
        "Belgium", 50.5, 3.8, 1, True, f"google:europe-west1*{_DE_SHAPE}", "flat:0.075", 0.3, 1.9
    ),
    Location(
        "Netherlands",
        53.4,
        6.8,
        1,
        True,
        f"google:europe-west4*{_DE_SHAPE}",
        "flat:0.080",
        0.3,
        1.5,
    ),
    Location("Germany", 50.1, 8.7, 1, True, _DE_SHAPE, "flat:0.085", 0.3, 1.6),
    Location("Denmark", 55.6, 9.8, 1, True, f"assumed:150*{_DE_SHAPE}", "flat:0.070", 0.2, 0.7),
    Location(
        "Singapore",
        1.35,
        103.8,
        8,
        False,
        "google:asia-southeast1",
        "flat:0.150",
        1.0,
        1.2,
        ("7B", "13B"),
    ),
    Location("Japan", 35.7, 139.7, 9, False, "google:asia-northeast1", "flat:0.090", 0.6, 1.6),
)


@dataclass(frozen=True)
class ModelSpec:
    """Per-request cost of one model on a DGX A100 (computed by the caller, e.g. the twin).

    ``energy_kwh`` is IT energy per request; ``gpu_s`` the GPU-seconds one request occupies
    (GPUs per replica × runtime / batch).
    """

    name: str
    energy_kwh: float
    gpu_s: float


def _great_circle_km(a: Location, b: Location) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


@functools.lru_cache(maxsize=32)
def _read_carbon(kind: str, path: str) -> pd.Series:
    """Carbon series of one file, read once per process (the files are large and immutable)."""
    reader = read_electricity_maps if kind == "em" else read_lets_wait_awhile
    return reader(path)["carbon_kg_per_kwh"]


def _em(data: Path, zone: str, times: pd.DatetimeIndex) -> np.ndarray:
    series = _read_carbon("em", str(data / "green_llm" / "Carbon" / f"{zone}_2024_hourly.csv"))
    s = series.reindex(times)
    if s.isna().any():
        raise GreenSchedError(
            f"Electricity Maps zone {zone}: no carbon value at {s.index[s.isna()][0]} "
            "(expected the horizon inside 2024)"
        )
    return s.to_numpy(dtype=float)


def _lwa(data: Path, name: str, times: pd.DatetimeIndex) -> np.ndarray:
    series = _read_carbon("lwa", str(data / "lets_wait_awhile" / name))
    shifted = times.map(lambda ts: ts.replace(year=2020))
    s = series.reindex(shifted).interpolate(limit_direction="both")
    return s.to_numpy(dtype=float)


def _google(data: Path, region: str, year: int = 2024) -> float:
    df = read_google_carbon(data / "google_region_carbon" / f"{year}.csv")
    row = df[df["region"] == region]
    if row.empty:
        raise GreenSchedError(f"google_region_carbon/{year}.csv: no region {region!r}")
    return float(row["carbon_kg_per_kwh"].iloc[0])


def _carbon(data: Path, spec: str, times: pd.DatetimeIndex) -> np.ndarray:
    base, _, shape = spec.partition("*")
    kind, _, arg = base.partition(":")
    if kind == "em":
        series = _em(data, arg, times)
    elif kind == "lwa":
        series = _lwa(data, arg, times)
    elif kind == "google":
        series = np.full(len(times), _google(data, arg))
    elif kind == "assumed":
        series = np.full(len(times), float(arg) / 1000.0)
    else:  # pragma: no cover - LOCATIONS is fixed
        raise GreenSchedError(f"carbon source {spec!r}: unknown kind {kind!r}")
    if shape:
        shaped = _carbon(data, shape, times)
        series = series.mean() * shaped / shaped.mean()
    return series


def _price(data: Path, spec: str, times: pd.DatetimeIndex) -> np.ndarray:
    kind, _, arg = spec.partition(":")
    if kind == "flat":
        return np.full(len(times), float(arg))
    df = read_lmp(data / "green_llm" / "LMP" / f"{arg}.csv")
    s = df["lmp_usd_per_kwh"].dropna()
    by_hour: dict[int, list[float]] = {}
    for ts, v in s.items():
        by_hour.setdefault(pd.Timestamp(ts).hour, []).append(float(v))
    out = np.empty(len(times))
    for n, ts in enumerate(times):
        vals = by_hour[ts.hour]
        out[n] = vals[(n // 24) % len(vals)]
    # Real-time prices can be negative; SE-GLB's costs are non-negative by assumption.
    return np.maximum(out, 0.0)


def build_ten_locations(
    data_dir: str | Path,
    models: tuple[ModelSpec, ...],
    *,
    start: str = "2024-03-24",
    hours: int = 24,
    base_requests_per_h: float = 100_000.0,
    servers_per_dc: int = 150,
    pue: float = 1.1,
    rtt_limit_ms: float = 100.0,
    move_usd_per_request_per_1000km: float = 1e-5,
    masks: bool = True,
    site_models: bool = True,
) -> EquityProblem:
    """Build the 10-location SE-GLB problem (see the module docstring for every assumption).

    Parameters
    ----------
    data_dir
        The shared data directory (``../shared/data``).
    models
        Per-request energy and GPU time of each model; names must be keys of
        :data:`LLAMA2_SCORES` (``7B``, ``13B``, ``70B``).
    start, hours
        First hour (UTC, inside 2024) and length of the horizon.
    masks
        Apply the latency, sovereignty and model-availability masks (False: every region may use
        every model at every DC, the full 10 × 10 × 3 problem).
    site_models
        Apply the per-site model lists of :data:`LOCATIONS` (Singapore: 7B, 13B); False hosts
        every model everywhere.

    Raises
    ------
    GreenSchedError
        Unknown model name, bad horizon, or missing data.
    """
    data = Path(data_dir)
    if not data.is_dir():
        raise GreenSchedError(f"data_dir {str(data)!r}: not a directory (expected ../shared/data)")
    if hours < 1:
        raise GreenSchedError(f"hours={hours}: expected >= 1")
    score, cost = performance_costs()
    for m in models:
        if m.name not in score:
            raise GreenSchedError(f"model {m.name!r}: expected one of {sorted(score)}")
    times = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=hours, freq="h")
    locs = LOCATIONS
    n = len(locs)
    carbon = np.vstack([_carbon(data, loc.carbon, times) for loc in locs])
    price = np.vstack([_price(data, loc.price, times) for loc in locs])
    water = np.array([[loc.wue_l_per_kwh / pue + loc.ewif_l_per_kwh] * hours for loc in locs])
    utc_h = times.hour.to_numpy()
    demand = np.vstack(
        [
            base_requests_per_h
            * (1 + 0.4 * np.sin(2 * np.pi * (((utc_h + loc.utc_offset_h) % 24) - 8) / 24))
            for loc in locs
        ]
    )
    dist = np.array([[_great_circle_km(a, b) for b in locs] for a in locs])  # [dc, region]
    rtt_ms = 2 * dist * 1.5 / 200.0
    europe = np.array([loc.europe for loc in locs])
    route = (rtt_ms <= rtt_limit_ms) & ~(europe[None, :] & ~europe[:, None])
    model_mask = np.array([[m.name in loc.models for m in models] for loc in locs])
    if not masks:
        route = np.ones_like(route)
    if not masks or not site_models:
        model_mask = np.ones_like(model_mask)
    energy = np.array([[m.energy_kwh for m in models]] * n)
    gpu_s = np.array([m.gpu_s for m in models])
    resource = np.stack([np.tile(gpu_s, (n, 1)), energy], axis=2)  # [dc, model, (gpu_s, it_kwh)]
    capacity = np.array(
        [[servers_per_dc * DGX_A100_GPUS * 3600.0, servers_per_dc * DGX_A100_MAX_KW]] * n
    )
    notes = {
        "source": "SE-GLB paper's 10 locations (arXiv 2407.05176), built from ../shared/data",
        "horizon": f"{hours} h from {times[0].isoformat()}",
        "carbon": "; ".join(f"{loc.name}: {loc.carbon}" for loc in locs),
        "price": "; ".join(f"{loc.name}: {loc.price}" for loc in locs),
        "water": "WUE/PUE + EWIF per location (assumed constants)",
        "demand": f"{base_requests_per_h:g} req/h per region, ±40% diurnal, peak 14:00 local",
        "masks": (
            f"RTT <= {rtt_limit_ms:g} ms; Europe stays in Europe; Singapore: 7B, 13B"
            if masks
            else "none (every region, model and DC)"
        ),
        "scores": "Open LLM Leaderboard v1: mean of ARC, HellaSwag, TruthfulQA",
    }
    return EquityProblem(
        dcs=tuple(loc.name for loc in locs),
        regions=tuple(loc.name for loc in locs),
        models=tuple(m.name for m in models),
        hours=tuple(ts.isoformat() for ts in times),
        resources=("gpu_s", "it_kwh"),
        price_usd_per_kwh=price,
        pue=np.full(n, pue),
        energy_kwh_per_request=energy,
        perf_cost=np.array([cost[m.name] for m in models]),
        perf_score=np.array([score[m.name] for m in models]),
        carbon_kg_per_kwh=carbon,
        water_l_per_kwh=water,
        demand=demand,
        resource_per_request=resource,
        capacity=capacity,
        move_cost_usd_per_request=dist / 1000.0 * move_usd_per_request_per_1000km,
        route_mask=route,
        model_mask=model_mask,
        notes=notes,
    )
