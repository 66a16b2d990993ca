"""Relocation placement LP: energy cost + carbon cost + friction over the feasibility masks.

Variables (shares, all in [0, 1]):

* x[w, a, d, t]: share of class w's demand from area a in hour t served at DC d; its upper
  bound is the feasibility mask F[w, a, d] (0 fixes it to zero);
* y[w, a, d]: share of the class's state of area a held at DC d (moved there once).

Rows (one function-free family each, units in brackets):

* serve      Σ_d x[w, a, d, t] = 1                                        [–]
* state      x[w, a, d, t] ≤ y[w, a, d]        (serving a share needs that share of the state)
* capacity   Σ_{w,a} λ[w, a, t] u[w, r] x[w, a, d, t] ≤ share · C[d, r]   [resource units]

Objective (USD over the horizon):

    Σ g[w, a, d, t] x  +  Σ φ[w, a, d] y
    g = λ · PUE_d · E[w, d, t] · (price[t, d] + δ_d θ[t, d])  +  λ · ρ^lat_w · ℓ[w, a, d] / 1000
    φ = egress(home_a → d) · S_w  +  m_w · t_mig(S_w)/3600,   t_mig = setup + 8 S_w / Gbps
    (φ = 0 inside the home region)

λ: the class's queries, E: IT kWh per query, θ: grid kg CO2/kWh, δ: carbon price USD/kg,
ρ^lat: latency penalty USD/s, S: state GB, m: migration cost USD/h. On-site renewables, the
water budget and grid caps of the Green-LLM model are left out here (grid power only).

:class:`PlacementModel` is built once per scenario and class set; each solve only changes the
upper bounds of x (the masks), so a frontier sweep re-solves warm.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import linopy
import numpy as np
import pandas as pd
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.backends import (
    SolveStatus,
    label_maps,
    load_highs_model,
    set_highs_threads,
    silence_highs_banner,
)
from greensched.scheduler.relocation.config import RelocationConfig

__all__ = ["PlacementModel", "PlacementResult", "friction", "unit_costs"]


def unit_costs(scenario: Scenario, config: RelocationConfig, inputs: xr.Dataset) -> xr.Dataset:
    """Per-share costs of serving class demand at each DC.

    Returns
    -------
    xarray.Dataset
        ``energy_usd``, ``carbon_kg``, ``carbon_usd``, ``latency_usd``, ``facility_kwh``
        (workload, area, dc, hour): the value of x = 1 for that hour; ``total_usd`` their
        objective sum (energy + carbon cost + latency penalty).
    """
    ds = scenario.ds
    lam = inputs["queries"]
    fac_kwh = lam * ds["pue"] * inputs["energy_kwh_per_query"]
    if config.carbon_price_usd_per_kg is None:
        delta = ds["carbon_price_usd_per_kg"]
    else:
        delta = xr.full_like(ds["pue"], config.carbon_price_usd_per_kg)
    energy = fac_kwh * ds["price_usd_per_kwh"]
    carbon = fac_kwh * ds["carbon_kg_per_kwh"]
    rho = xr.DataArray(
        [c.latency_penalty_usd_per_s for c in config.classes],
        dims="workload",
        coords={"workload": config.class_ids},
    )
    latency = lam * rho * inputs["latency_ms"] / 1000.0
    order = ("workload", "area", "dc", "hour")
    out = xr.Dataset(
        {
            "facility_kwh": fac_kwh.transpose(*order),
            "energy_usd": energy.transpose(*order),
            "carbon_kg": carbon.transpose(*order),
            "carbon_usd": (carbon * delta).transpose(*order),
            "latency_usd": latency.transpose(*order),
        }
    )
    out["total_usd"] = out["energy_usd"] + out["carbon_usd"] + out["latency_usd"]
    return out


def friction(config: RelocationConfig, inputs: xr.Dataset) -> xr.Dataset:
    """Friction of moving each class's state of an area to each DC.

    Returns
    -------
    xarray.Dataset
        ``egress_usd_per_gb``, ``egress_usd``, ``migration_s``, ``migration_usd`` and
        ``friction_usd`` (workload, area, dc); zero inside the home region.
    """
    areas = [str(a) for a in inputs["area"].values]
    dcs = [str(d) for d in inputs["dc"].values]
    homes = [str(h) for h in inputs["home"].values]
    price = np.array([[config.egress_usd_per_gb(h, d) for d in dcs] for h in homes])
    moved = np.array(
        [[config.region_of(d) != config.region_of(h) for d in dcs] for h in homes], dtype=float
    )
    state = np.array([c.state_gb for c in config.classes])
    mig_s = config.migration_setup_s + 8.0 * state / config.transfer_gbps
    rate = np.array([c.migration_usd_per_h for c in config.classes])
    egress = state[:, None, None] * price[None] * moved[None]
    mig_usd = (rate * mig_s / 3600.0)[:, None, None] * moved[None]
    coords = {"workload": config.class_ids, "area": areas, "dc": dcs}
    dims = ("workload", "area", "dc")
    return xr.Dataset(
        {
            "egress_usd_per_gb": (("area", "dc"), price * moved),
            "egress_usd": (dims, egress),
            "migration_s": (dims, mig_s[:, None, None] * moved[None]),
            "migration_usd": (dims, mig_usd),
            "friction_usd": (dims, egress + mig_usd),
        },
        coords=coords,
    )


@dataclass
class PlacementResult:
    """One solve of the placement LP.

    ``x`` (workload, area, dc, hour) and ``y`` (workload, area, dc) are ``None`` unless the
    status is optimal. ``by_class`` holds per class: ``energy_usd``, ``carbon_kg``,
    ``carbon_usd``, ``latency_usd``, ``friction_usd``, ``objective_usd``, ``facility_kwh``,
    ``moved_share`` (share of the class's facility energy served outside the home region) and
    ``mean_latency_ms`` (query-weighted).
    """

    status: SolveStatus
    objective_usd: float | None
    x: xr.DataArray | None
    y: xr.DataArray | None
    by_class: pd.DataFrame | None
    solve_s: float

    @property
    def is_ok(self) -> bool:
        """True when a solution may be read."""
        return self.status.is_ok


class PlacementModel:
    """The placement LP of one scenario and class set (module docstring).

    Parameters
    ----------
    scenario, config
        Scenario and classes.
    inputs
        :func:`~greensched.scheduler.relocation.masks.class_inputs` of the two.
    threads
        HiGHS threads (``None``: solver default).
    """

    def __init__(
        self,
        scenario: Scenario,
        config: RelocationConfig,
        inputs: xr.Dataset,
        threads: int | None = 1,
    ) -> None:
        import highspy

        self.scenario = scenario
        self.config = config
        self.inputs = inputs
        self.costs = unit_costs(scenario, config, inputs)
        self.friction = friction(config, inputs)
        idx4 = [
            pd.Index(config.class_ids, name="workload"),
            pd.Index(scenario.areas, name="area"),
            pd.Index(scenario.dcs, name="dc"),
            pd.Index(scenario.ds["hour"].values, name="hour"),
        ]
        m = linopy.Model()
        x = m.add_variables(lower=0.0, upper=1.0, coords=idx4, name="x")
        y = m.add_variables(lower=0.0, upper=1.0, coords=idx4[:3], name="y")
        m.add_constraints(x.sum("dc") == 1.0, name="serve")
        m.add_constraints(x - y <= 0.0, name="state")
        use = inputs["queries"] * inputs["gpu_units_per_query"]  # workload, area, hour, resource
        cap = scenario.ds["capacity"] * config.capacity_share  # dc, resource
        for r in scenario.resources:
            lhs = (x * use.sel(resource=r)).sum(["workload", "area"])
            m.add_constraints(lhs <= cap.sel(resource=r), name=f"capacity_{r}")
        m.add_objective(
            (x * self.costs["total_usd"]).sum() + (y * self.friction["friction_usd"]).sum()
        )
        with warnings.catch_warnings():
            # linopy warns about future semantics of masked variables; this model has none.
            warnings.simplefilter("ignore")
            mat = m.matrices
            A = mat.A
            assert A is not None, "the placement LP has no constraint matrix"
            b = np.asarray(mat.b, dtype=float)
            sense = np.asarray(mat.sense)
            cost = np.asarray(mat.c, dtype=float)
            lb = np.asarray(mat.lb, dtype=float)
            ub = np.asarray(mat.ub, dtype=float)
        row_lower = np.where(sense == "<", -np.inf, b)
        row_upper = np.where(sense == ">", np.inf, b)
        col_of, _ = label_maps(m)
        self._x_cols = col_of[x.labels.values]
        self._y_cols = col_of[y.labels.values]
        self._x_coords = x.labels.coords
        self._y_coords = y.labels.coords
        silence_highs_banner()
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        set_highs_threads(self.h, threads)
        self.n = load_highs_model(self.h, A, row_lower, row_upper, lb, ub, cost)
        self._hs = highspy
        self._x_flat = self._x_cols.ravel().astype(np.int32)
        self.n_rows = int(A.shape[0])
        self._np: dict[str, np.ndarray] = {}

    def solve(self, feasible: xr.DataArray) -> PlacementResult:
        """Solve with x bounded by ``feasible`` (workload, area, dc) and read the result."""
        hs = self._hs
        f = feasible.transpose("workload", "area", "dc").values.astype(float)
        ub = np.broadcast_to(f[..., None], self._x_cols.shape).ravel()
        self.h.changeColsBounds(
            len(self._x_flat), self._x_flat, np.zeros(len(self._x_flat)), np.ascontiguousarray(ub)
        )
        t0 = time.perf_counter()
        self.h.run()
        seconds = time.perf_counter() - t0
        ms = self.h.getModelStatus()
        status = {
            hs.HighsModelStatus.kOptimal: SolveStatus.OPTIMAL,
            hs.HighsModelStatus.kInfeasible: SolveStatus.INFEASIBLE,
            hs.HighsModelStatus.kUnboundedOrInfeasible: SolveStatus.INFEASIBLE_OR_UNBOUNDED,
        }.get(ms, SolveStatus.ERROR)
        if not status.is_ok:
            return PlacementResult(status, None, None, None, None, seconds)
        col = np.asarray(self.h.getSolution().col_value, dtype=float)
        x = xr.DataArray(np.clip(col[self._x_cols], 0.0, 1.0), coords=self._x_coords)
        y = xr.DataArray(np.clip(col[self._y_cols], 0.0, 1.0), coords=self._y_coords)
        obj = float(self.h.getInfo().objective_function_value)
        return PlacementResult(status, obj, x, y, self.summarise(x, y), seconds)

    def summarise(self, x: xr.DataArray, y: xr.DataArray) -> pd.DataFrame:
        """Per-class components of a placement (see :class:`PlacementResult`)."""
        if not self._np:
            self._prepare_summary()
        xs = x.transpose("workload", "area", "dc", "hour").values
        ys = y.transpose("workload", "area", "dc").values
        c = self._np
        axes = (1, 2, 3)
        out = pd.DataFrame(
            {k: (xs * c[k]).sum(axis=axes) for k in _SUMMED},
            index=pd.Index(self.config.class_ids, name="workload"),
        )
        out["friction_usd"] = (ys * c["friction_usd"]).sum(axis=(1, 2))
        out["objective_usd"] = (
            out["energy_usd"] + out["carbon_usd"] + out["latency_usd"] + out["friction_usd"]
        )
        moved = (xs * c["facility_kwh"] * c["away"][None, :, :, None]).sum(axis=axes)
        fac = out["facility_kwh"].to_numpy()
        out["moved_share"] = np.where(fac > 0, moved / np.where(fac > 0, fac, 1.0), 0.0)
        lat = (xs * c["lam_latency"]).sum(axis=axes)
        q = c["queries"]
        out["mean_latency_ms"] = np.where(q > 0, lat / np.where(q > 0, q, 1.0), np.nan)
        return out

    def _prepare_summary(self) -> None:
        """Cost arrays as numpy in (workload, area, dc, hour) order, for fast summaries."""
        order = ("workload", "area", "dc", "hour")
        sel = {d: self._x_coords[d].values for d in order}
        cost = self.costs.sel(sel).transpose(*order)
        self._np = {k: cost[k].values for k in _SUMMED}
        self._np["friction_usd"] = (
            self.friction["friction_usd"]
            .sel({d: sel[d] for d in order[:3]})
            .transpose(*order[:3])
            .values
        )
        homes = self.inputs["home"].sel(area=sel["area"]).values
        self._np["away"] = np.array(
            [
                [self.config.region_of(str(d)) != self.config.region_of(str(h)) for d in sel["dc"]]
                for h in homes
            ],
            dtype=float,
        )
        lam = self.inputs["queries"].sel(
            workload=sel["workload"], area=sel["area"], hour=sel["hour"]
        )
        lat = self.inputs["latency_ms"].sel({d: sel[d] for d in order[:3]})
        self._np["lam_latency"] = (lam * lat).transpose(*order).values
        self._np["queries"] = lam.sum(["area", "hour"]).values


_SUMMED = ("energy_usd", "carbon_kg", "carbon_usd", "latency_usd", "facility_kwh")
