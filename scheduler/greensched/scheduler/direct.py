"""The letter's Green-LLM LP built directly as sparse matrices, without linopy.

Same LP as :func:`greensched.scheduler.greenllm.build_model` with ``delay_model = "letter"``
and ``elastic=False`` (``shared/spec/green-llm-model.md``; the equations are in that module's
``define_*`` docstrings), laid out hour by hour so that an hour is a contiguous block of
columns and rows:

* columns of hour t: x[area, dc, query_type] (C order), then p_grid[dc];
* rows of hour t: demand (area, query_type), power_balance (dc), no_export (dc),
  resource (dc, resource), delay (area, query_type); the water budget row, when the scenario
  has one, comes after the last hour.

Each x column has the same few entries (one per family row it enters), so the CSC matrix is
filled from dense (hour, area, dc, query_type, entry) arrays with numpy and no label
bookkeeping.  Measured at 100 x 100 x 5 x 24 (1.2M columns): see ``reports/decomposition.md``.
The planner uses it for letter plans (:class:`greensched.scheduler.planner.PlanSession` with
``direct=True``) and the hour decomposition builds its hour LPs with :meth:`DirectModel.hour`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from greensched.scenario import Scenario

__all__ = ["DirectModel", "build_direct", "supports_direct"]

#: Constraint families of the letter LP and the dims of their duals (as the linopy planner's).
DUAL_DIMS: dict[str, tuple[str, ...]] = {
    "demand": ("area", "query_type", "hour"),
    "power_balance": ("dc", "hour"),
    "no_export": ("dc", "hour"),
    "resource": ("dc", "hour", "resource"),
    "delay": ("area", "query_type", "hour"),
}


def supports_direct(delay_model: str, elastic: bool = False) -> bool:
    """Whether :func:`build_direct` builds this model (letter delay model, not elastic)."""
    return delay_model == "letter" and not elastic


@dataclass
class DirectModel:
    """The letter LP in matrix form with the arrays that turn a solution into outputs.

    Attributes
    ----------
    A, row_lower, row_upper, lb, ub
        min cᵀx s.t. row_lower ≤ A x ≤ row_upper, lb ≤ x ≤ ub (CSC).
    vectors
        ``energy``, ``carbon``, ``delay`` (USD): (column vector, constant).
    water
        Column vector of the horizon's water (litres).
    itc, delay_coef
        Per (hour, area, dc, query_type): IT kWh per unit share e λ, and the letter's delay
        coefficient (s per unit share).
    pue, water_factor
        PUE per dc; litres per facility kWh per (hour, dc).
    """

    scenario: Scenario
    A: sp.csc_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    vectors: dict[str, tuple[np.ndarray, float]]
    water: np.ndarray
    itc: np.ndarray
    delay_coef: np.ndarray
    pue: np.ndarray
    water_factor: np.ndarray
    resources: int

    @property
    def n(self) -> int:
        """Number of columns."""
        return int(self.A.shape[1])

    def shape(self) -> tuple[int, int, int, int]:
        """(hours, areas, dcs, query types)."""
        return tuple(int(s) for s in self.itc.shape)  # type: ignore[return-value]

    def rows_per_hour(self) -> int:
        """Rows of one hour block."""
        _, i, j, k = self.shape()
        return 2 * i * k + 2 * j + j * self.resources

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Column values as (shares (T, I, J, K), grid kW (T, J))."""
        t, i, j, k = self.shape()
        per = x[: t * (i * j * k + j)].reshape(t, i * j * k + j)
        return per[:, : i * j * k].reshape(t, i, j, k), per[:, i * j * k :]

    def flows(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per (hour, dc): it_kwh, facility_kwh, water_l, grid_kwh; per (hour, area, type):
        delay_s (the letter's hour-total delay Σ_j coef x)."""
        shares, grid = self.split(x)
        it = np.einsum("tijk,tijk->tj", shares, self.itc)
        facility = it * self.pue[None, :]
        return {
            "it_kwh": it,
            "facility_kwh": facility,
            "water_l": facility * self.water_factor,
            "grid_kwh": grid,
            "delay_s": np.einsum("tijk,tijk->tik", shares, self.delay_coef),
        }

    def duals(self, row_duals: np.ndarray) -> dict[str, np.ndarray]:
        """Row duals per family, shaped as :data:`DUAL_DIMS` (water: a 0-d array)."""
        t, i, j, k = self.shape()
        r = self.resources
        per = row_duals[: t * self.rows_per_hour()].reshape(t, self.rows_per_hour())
        cuts = np.cumsum([0, i * k, j, j, j * r, i * k])
        blocks = [per[:, cuts[a] : cuts[a + 1]] for a in range(5)]
        out = {
            "demand": blocks[0].reshape(t, i, k).transpose(1, 2, 0),
            "power_balance": blocks[1].T,
            "no_export": blocks[2].T,
            "resource": blocks[3].reshape(t, j, r).transpose(1, 0, 2),
            "delay": blocks[4].reshape(t, i, k).transpose(1, 2, 0),
        }
        if len(row_duals) > t * self.rows_per_hour():
            out["water"] = np.asarray(row_duals[-1])
        return out

    def hour(self, t: int) -> dict[str, Any]:
        """Hour ``t`` on its own: its CSC block (no water row) and its column and row ranges."""
        _, i, j, k = self.shape()
        nh = i * j * k + j
        mh = self.rows_per_hour()
        c0, r0 = t * nh, t * mh
        a = self.A[:, c0 : c0 + nh]
        block = sp.csc_array(a[r0 : r0 + mh])
        return {"A": block, "cols": slice(c0, c0 + nh), "rows": slice(r0, r0 + mh)}


def _arrays(scen: Scenario) -> dict[str, np.ndarray]:
    """Coefficient arrays of the letter LP, dims (hour, area, dc, query_type) and below."""
    ds = scen.ds

    def arr(name: str, *dims: str) -> np.ndarray:
        return np.asarray(ds[name].transpose(*dims).values, dtype=float)

    lam = arr("queries", "hour", "area", "query_type")  # (T, I, K)
    e = np.asarray(
        scen.energy_kwh_per_query().transpose("hour", "dc", "query_type").values, dtype=float
    )  # (T, J, K)
    proc = np.asarray(
        scen.proc_delay_s_per_query().transpose("hour", "dc", "query_type").values, dtype=float
    )
    tokens = arr("input_tokens", "query_type") + arr("output_tokens", "query_type")  # (K,)
    beta = arr("token_size", "hour", "area", "query_type")
    bw = arr("bandwidth", "area", "dc")
    rtt = arr("rtt_s", "area", "dc")
    tran = (beta * tokens * lam)[:, :, None, :] / bw[None, :, :, None]
    delay_coef = tran + rtt[None, :, :, None] + proc[:, None, :, :] * lam[:, :, None, :]
    per_query = arr("units_per_token", "query_type", "resource") * tokens[:, None]  # (K, R)
    pue = arr("pue", "dc")
    factor = arr("wue_l_per_kwh", "hour", "dc") / pue[None, :] + arr("ewif_l_per_kwh", "hour", "dc")
    return {
        "lam": lam,
        "itc": e[:, None, :, :] * lam[:, :, None, :],
        "delay_coef": delay_coef,
        "res": lam[:, :, None, :, None] * per_query[None, None, None, :, :],  # (T, I, 1, K, R)
        "pue": pue,
        "factor": factor,
        "renew": arr("renewable_kw", "hour", "dc"),
        "cap_kw": arr("grid_cap_kw", "hour", "dc"),
        "capacity": arr("capacity", "dc", "resource"),
        "limit": arr("delay_limit_s", "area", "query_type"),
        "price": arr("price_usd_per_kwh", "hour", "dc"),
        "carbon_usd": arr("carbon_kg_per_kwh", "hour", "dc")
        * arr("carbon_price_usd_per_kg", "dc")[None, :],
        "penalty": arr("delay_penalty_usd_per_s", "query_type"),
    }


def build_direct(scen: Scenario, *, water_row: bool = True) -> DirectModel:
    """Build the letter LP of ``scen`` as a :class:`DirectModel`.

    ``water_row=False`` leaves out the horizon water budget row (the hour decomposition prices
    it instead).
    """
    c = _arrays(scen)
    T, I, J, K = c["itc"].shape
    R = c["capacity"].shape[1]
    nx, nh = I * J * K, I * J * K + J
    mh = 2 * I * K + 2 * J + J * R
    has_water = water_row and scen.water_budget_l is not None
    fac = c["itc"] * c["pue"][None, None, :, None]
    water = fac * c["factor"][:, None, :, None]

    # Entries of every x column in row order: demand, power_balance, no_export, resource × R,
    # delay (, water); hour t's rows start at t * mh.  One array per hour holds its x columns'
    # entries, then its p_grid columns' (power_balance -1, no_export +1), so no copies.
    E = 4 + R + (1 if has_water else 0)
    width = nx * E + 2 * J
    data = np.empty((T, width))
    rows = np.empty((T, width), dtype=np.int32)
    xd = data[:, : nx * E].reshape(T, I, J, K, E)
    xr_ = rows[:, : nx * E].reshape(T, I, J, K, E)
    ii, jj, kk = np.ogrid[:I, :J, :K]
    off = (np.arange(T, dtype=np.int32) * mh)[:, None, None, None]
    local = [ii * K + kk, I * K + jj, I * K + J + jj]
    local += [I * K + 2 * J + jj * R + r for r in range(R)]
    local.append(I * K + 2 * J + J * R + ii * K + kk)
    for e, row in enumerate(local):
        xr_[..., e] = row[None] + off
    xd[..., 0] = 1.0
    xd[..., 1] = fac
    xd[..., 2] = -fac
    for r in range(R):
        xd[..., 3 + r] = c["res"][..., 0, :, r][:, :, None, :]
    xd[..., 3 + R] = c["delay_coef"]
    if has_water:
        xd[..., 4 + R] = water
        xr_[..., 4 + R] = T * mh
    jr = np.arange(J, dtype=np.int32)
    pr = rows[:, nx * E :].reshape(T, J, 2)
    pr[..., 0] = I * K + jr[None, :] + off[:, :, 0, 0]
    pr[..., 1] = I * K + J + jr[None, :] + off[:, :, 0, 0]
    pd_ = data[:, nx * E :].reshape(T, J, 2)
    pd_[..., 0] = -1.0
    pd_[..., 1] = 1.0
    data, rows = data.ravel(), rows.ravel()
    lengths = np.tile(np.concatenate([np.full(nx, E), np.full(J, 2)]), T)
    keep = data != 0.0
    if keep.all():
        indptr = np.concatenate([[0], np.cumsum(lengths)])
    else:  # drop exact zeros (e.g. a resource a query type does not use)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        counts = np.add.reduceat(keep.astype(np.int64), starts[:-1])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        data, rows = data[keep], rows[keep]
    m = T * mh + (1 if has_water else 0)
    A = sp.csc_array((data, rows, indptr), shape=(m, T * nh))
    del data, rows, keep, xd, xr_

    inf = np.inf
    lower = np.empty((T, mh))
    upper = np.empty((T, mh))
    cut = np.cumsum([0, I * K, J, J, J * R, I * K])
    lower[:, cut[0] : cut[1]] = 1.0
    upper[:, cut[0] : cut[1]] = 1.0
    lower[:, cut[1] :] = -inf
    upper[:, cut[1] : cut[2]] = c["renew"]
    upper[:, cut[2] : cut[3]] = 0.0
    upper[:, cut[3] : cut[4]] = np.broadcast_to(c["capacity"].ravel(), (T, J * R))
    upper[:, cut[4] : cut[5]] = np.broadcast_to(c["limit"].ravel(), (T, I * K))
    row_lower, row_upper = lower.ravel(), upper.ravel()
    if has_water:
        row_lower = np.append(row_lower, -inf)
        row_upper = np.append(row_upper, float(scen.water_budget_l))  # type: ignore[arg-type]
    lb = np.zeros(T * nh)
    ub = np.concatenate([np.ones((T, nx)), c["cap_kw"]], axis=1).ravel()

    def on_x(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a.reshape(T, nx), np.zeros((T, J))], axis=1).ravel()

    def on_p(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros((T, nx)), a], axis=1).ravel()

    delay_vec = c["delay_coef"] * c["penalty"][None, None, None, :]
    return DirectModel(
        scenario=scen,
        A=A,
        row_lower=row_lower,
        row_upper=row_upper,
        lb=lb,
        ub=ub,
        vectors={
            "energy": (on_p(c["price"]), 0.0),
            "carbon": (on_p(c["carbon_usd"]), 0.0),
            "delay": (on_x(delay_vec), 0.0),
        },
        water=on_x(water),
        itc=c["itc"],
        delay_coef=c["delay_coef"],
        pue=c["pue"],
        water_factor=c["factor"],
        resources=R,
    )
