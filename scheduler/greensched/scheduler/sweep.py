"""Sensitivity sweeps and tables of the Green-LLM letter (Section III, Figures 2–4, Tables I–II).

A sweep scales one group of scenario inputs by each factor of a list and solves the presets
(m0 = the scenario's weights, m1 = energy only, m2 = carbon only) at each point.  Points are
independent, so ``workers > 1`` spreads them over a local process pool.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario
from greensched.scheduler.planner import OBJECTIVES, PRESETS, PlanConfig, PlanSession

__all__ = [
    "PARAMS",
    "TABLE_ORDERS",
    "TABLE_WEIGHTS",
    "parse_scale",
    "plot_sweep",
    "run_sweep",
    "run_table",
    "scaled_scenario",
]

#: Sweepable parameter groups → the dataset variables they scale.
PARAMS: dict[str, tuple[str, ...]] = {
    "theta": ("carbon_kg_per_kwh",),
    "renewables": ("renewable_kw",),
    "tau": ("energy_in_kwh_per_token", "energy_out_kwh_per_token"),
    "rho": ("delay_penalty_usd_per_s",),
    "demand": ("queries",),
    "price": ("price_usd_per_kwh",),
}

TABLE_ORDERS: list[tuple[str, str, str]] = list(itertools.permutations(OBJECTIVES))  # type: ignore[arg-type]
TABLE_WEIGHTS: list[tuple[float, float, float]] = [
    (1 / 3, 1 / 3, 1 / 3),
    (0.6, 0.2, 0.2),
    (0.2, 0.6, 0.2),
    (0.2, 0.2, 0.6),
    (0.45, 0.45, 0.1),
    (0.45, 0.1, 0.45),
    (0.1, 0.45, 0.45),
]


def parse_scale(text: str) -> list[float]:
    """Parse ``START:STOP:STEP`` (inclusive of STOP) or ``a,b,c`` into a list of factors."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            n = int(np.floor((parts[1] - parts[0]) / parts[2] + 1e-9)) + 1
            values = [round(parts[0] + i * parts[2], 10) for i in range(n)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise GreenSchedError(
            f"--scale {text!r}: expected START:STOP:STEP with STEP > 0 (e.g. 0.1:1.9:0.2) or a "
            "list such as 0.5,1,1.5"
        ) from exc
    if not values or any(v < 0 or not np.isfinite(v) for v in values):
        raise GreenSchedError(f"--scale {text!r}: factors must be finite and >= 0")
    return values


def scaled_scenario(scen: Scenario, param: str, factor: float) -> Scenario:
    """A copy of ``scen`` with the variables of ``param`` multiplied by ``factor``."""
    if param not in PARAMS:
        raise GreenSchedError(
            f"--param {param!r} is not known; expected one of {', '.join(PARAMS)}"
        )
    new = scen.copy()
    for var in PARAMS[param]:
        new.ds[var] = new.ds[var] * factor
    if param == "tau" and new.coefficients is not None:
        new.coefficients["energy_kwh_per_query"] = new.coefficients["energy_kwh_per_query"] * factor
    return new


def _row(result: Any, **labels: Any) -> dict[str, Any]:
    row = dict(labels)
    row["status"] = result.status.value
    if result.is_ok:
        row.update(result.objective)
        row.update(
            carbon_kg=result.carbon_kg,
            water_l=result.water_l,
            grid_kwh=result.grid_kwh,
            it_kwh=result.it_kwh,
        )
        row.update(result.latency)  # per_query: latency_s_per_query, queueing_s, ...
    return row


def _sweep_point(args: tuple[Scenario, str, float, list[str], str]) -> list[dict[str, Any]]:
    scen, param, factor, presets, solver = args
    session = PlanSession(scaled_scenario(scen, param, factor), solver)
    rows = []
    for name in presets:
        result = session.solve(PlanConfig.preset(name, diagnose=False))
        rows.append(_row(result, param=param, scale=factor, model=name))
    return rows


def run_sweep(
    scen: Scenario,
    param: str,
    scales: Sequence[float],
    presets: Sequence[str] = ("m0", "m1", "m2"),
    *,
    solver: str = "highs",
    workers: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Solve every preset at every scale of ``param``; one row per (scale, preset)."""
    if param not in PARAMS:
        raise GreenSchedError(
            f"--param {param!r} is not known; expected one of {', '.join(PARAMS)}"
        )
    unknown = [p for p in presets if p.lower() not in PRESETS]
    if unknown:
        raise GreenSchedError(f"--presets: {unknown[0]!r} is not known; expected m0, m1, m2")
    jobs = [(scen, param, float(f), [p.lower() for p in presets], solver) for f in scales]
    rows: list[dict[str, Any]] = []
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"sweep {param}", total=len(jobs))
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for part in pool.map(_sweep_point, jobs):
                    rows.extend(part)
                    bar.advance(task)
        else:
            for job in jobs:
                rows.extend(_sweep_point(job))
                bar.advance(task)
    return pd.DataFrame(rows)


def run_table(scen: Scenario, table: str, *, solver: str = "highs") -> pd.DataFrame:
    """The letter's Table I (``lexicographic``: every order) or Table II (``weights``)."""
    session = PlanSession(scen, solver)
    rows = []
    if table == "lexicographic":
        for order in TABLE_ORDERS:
            result = session.solve(PlanConfig(mode="lexicographic", order=order))
            rows.append(_row(result, order=" > ".join(order)))
    elif table == "weights":
        for w in TABLE_WEIGHTS:
            result = session.solve(PlanConfig(weights=w))
            rows.append(_row(result, w_energy=w[0], w_carbon=w[1], w_delay=w[2]))
        for name in ("m1", "m2"):
            result = session.solve(PlanConfig.preset(name))
            pw = PRESETS[name]
            assert pw is not None
            rows.append(_row(result, w_energy=pw[0], w_carbon=pw[1], w_delay=pw[2]))
    else:
        raise GreenSchedError(f"--table {table!r}: expected 'lexicographic' or 'weights'")
    return pd.DataFrame(rows)


def plot_sweep(frame: pd.DataFrame, param: str, out: str | Path, fmt: str = "png") -> Path:
    """Energy, carbon and delay cost and carbon mass against the scale, one line per preset
    (:func:`greensched.scheduler.plots.plot_sweep`: the house style, ``fmt`` png/svg/pdf)."""
    from greensched.scheduler.plots import plot_sweep as plot

    return plot(frame, param, out, fmt)
