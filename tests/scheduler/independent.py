"""An independent formulation of the Green-LLM LP (green-llm-model.md), built row by row.

Plain numpy index arithmetic and scipy's ``linprog``: no linopy, no xarray algebra and none of
the planner's code, so that agreement with the planner checks both.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from greensched.scenario import Scenario


def solve_independent(scen: Scenario, weights: tuple[float, float, float]) -> dict[str, float]:
    """Minimise σ_e C_e + σ_c C_c + σ_d C_d; return the components and the weighted value."""
    ds = scen.ds
    I, J, K, T = (len(scen.areas), len(scen.dcs), len(scen.query_types), scen.hours)
    R = len(scen.resources)

    def a(name: str, *dims: str) -> np.ndarray:
        return ds[name].transpose(*dims).to_numpy().astype(float)

    h, f = a("input_tokens", "query_type"), a("output_tokens", "query_type")
    tin, tout = (
        a("energy_in_kwh_per_token", "query_type"),
        a("energy_out_kwh_per_token", "query_type"),
    )
    rho = a("delay_penalty_usd_per_s", "query_type")
    pue, delta = a("pue", "dc"), a("carbon_price_usd_per_kg", "dc")
    cap = a("capacity", "dc", "resource")
    alpha = a("units_per_token", "query_type", "resource")
    v = a("delay_s_per_token", "dc", "query_type")
    rtt, bw = a("rtt_s", "area", "dc"), a("bandwidth", "area", "dc")
    limit = a("delay_limit_s", "area", "query_type")
    price, theta = a("price_usd_per_kwh", "hour", "dc"), a("carbon_kg_per_kwh", "hour", "dc")
    pw, pmax = a("renewable_kw", "hour", "dc"), a("grid_cap_kw", "hour", "dc")
    wue, ewif = a("wue_l_per_kwh", "hour", "dc"), a("ewif_l_per_kwh", "hour", "dc")
    lam, beta = (
        a("queries", "hour", "area", "query_type"),
        a("token_size", "hour", "area", "query_type"),
    )

    nx = I * J * K * T

    def xi(i: int, j: int, k: int, t: int) -> int:
        return ((i * J + j) * K + k) * T + t

    def gi(j: int, t: int) -> int:
        return nx + j * T + t

    n = nx + J * T
    e = tin * h + tout * f  # kWh per query, per type
    s = v * (h + f)[None, :]  # s per query, (J, K)

    rows_ub: list[tuple[dict[int, float], float]] = []
    rows_eq: list[tuple[dict[int, float], float]] = []
    c_e = np.zeros(n)
    c_c = np.zeros(n)
    c_d = np.zeros(n)
    for j in range(J):
        for t in range(T):
            c_e[gi(j, t)] = price[t, j]
            c_c[gi(j, t)] = delta[j] * theta[t, j]
            bal = {gi(j, t): -1.0}
            noexp = {gi(j, t): 1.0}
            for i in range(I):
                for k in range(K):
                    coef = pue[j] * e[k] * lam[t, i, k]
                    bal[xi(i, j, k, t)] = coef
                    noexp[xi(i, j, k, t)] = -coef
            rows_ub.append((bal, pw[t, j]))
            rows_ub.append((noexp, 0.0))
            for r in range(R):
                row = {
                    xi(i, j, k, t): alpha[k, r] * (h[k] + f[k]) * lam[t, i, k]
                    for i in range(I)
                    for k in range(K)
                }
                rows_ub.append((row, cap[j, r]))
    if scen.water_budget_l is not None:
        water = {}
        for j in range(J):
            for t in range(T):
                wf = (wue[t, j] / pue[j] + ewif[t, j]) * pue[j]
                for i in range(I):
                    for k in range(K):
                        water[xi(i, j, k, t)] = wf * e[k] * lam[t, i, k]
        rows_ub.append((water, scen.water_budget_l))
    for i in range(I):
        for k in range(K):
            for t in range(T):
                rows_eq.append(({xi(i, j, k, t): 1.0 for j in range(J)}, 1.0))
                delay = {}
                for j in range(J):
                    d = (
                        beta[t, i, k] * (h[k] + f[k]) * lam[t, i, k] / bw[i, j]
                        + rtt[i, j]
                        + s[j, k] * lam[t, i, k]
                    )
                    delay[xi(i, j, k, t)] = d
                    c_d[xi(i, j, k, t)] = rho[k] * d
                rows_ub.append((delay, limit[i, k]))

    def matrix(rows: list[tuple[dict[int, float], float]]) -> tuple[sp.csr_array, np.ndarray]:
        r_idx, c_idx, vals = [], [], []
        for r, (row, _) in enumerate(rows):
            r_idx.extend([r] * len(row))
            c_idx.extend(row.keys())
            vals.extend(row.values())
        mat = sp.csr_array((vals, (r_idx, c_idx)), shape=(len(rows), n))
        return mat, np.array([b for _, b in rows])

    A_ub, b_ub = matrix(rows_ub)
    A_eq, b_eq = matrix(rows_eq)
    bounds = [(0.0, 1.0)] * nx + [(0.0, pmax[t, j]) for j in range(J) for t in range(T)]
    we, wc, wd = weights
    res = linprog(
        we * c_e + wc * c_c + wd * c_d,
        A_ub=A_ub,
        b_ub=b_ub,
        A_eq=A_eq,
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        return {"status": float(res.status)}
    x = res.x
    return {
        "status": 0.0,
        "weighted": float(res.fun),
        "energy_usd": float(c_e @ x),
        "carbon_usd": float(c_c @ x),
        "delay_usd": float(c_d @ x),
    }
