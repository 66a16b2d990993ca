"""A :class:`~greensched.scheduler.planner.PlanSession` over the directly built letter LP.

:func:`greensched.scheduler.planner.plan` uses it for ``delay_model = "letter"``: the LP comes
from :func:`greensched.scheduler.direct.build_direct` (numpy, no linopy import) and the same
solve loop runs on it (weighted and lexicographic modes, warm starts, diagnosis on
infeasibility).  Its results equal the linopy session's (tests/scheduler/test_direct.py).
The session has no ``gm``/``comp`` (linopy objects); code that needs them builds a
:class:`PlanSession`.
"""

from __future__ import annotations

import time

import numpy as np
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.backends import BackendSolution, make_backend
from greensched.scheduler.direct import DUAL_DIMS, build_direct
from greensched.scheduler.per_query import DelayOptions
from greensched.scheduler.planner import (
    OBJECTIVES,
    PlanResult,
    PlanSession,
    _components,
    set_dc_flows,
)

__all__ = ["DirectPlanSession"]


class DirectPlanSession(PlanSession):
    """A plan session of the letter LP built with numpy (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        solver: str = "highs",
        threads: int | None = None,
        delay: DelayOptions | None = None,
    ):
        t0 = time.perf_counter()
        self.scenario = scenario
        self.solver = solver
        self.delay = delay or DelayOptions()
        self.delay_model = self.delay.model_of(scenario)
        if self.delay_model != "letter":
            raise ValueError("DirectPlanSession builds the letter delay model only")
        self.model = build_direct(scenario)
        self.vectors = {k: self.model.vectors[k] for k in OBJECTIVES}
        self.backend = make_backend(solver, threads)
        d = self.model
        self.backend.load(d.A, d.row_lower, d.row_upper, d.lb, d.ub)
        self.build_seconds = time.perf_counter() - t0

    def _read(self, result: PlanResult, sol: BackendSolution) -> None:
        assert sol.x is not None and sol.row_duals is not None
        d, ds = self.model, self.scenario.ds
        x = sol.x
        result.objective = _components(self.vectors, x)
        shares, _ = d.split(x)
        idx = ds.indexes
        result.allocation = xr.DataArray(
            shares.transpose(1, 2, 3, 0),
            dims=("area", "dc", "query_type", "hour"),
            coords={k: idx[k] for k in ("area", "dc", "query_type", "hour")},
        ).clip(0.0, 1.0)
        f = d.flows(x)

        def dc_hour(a: np.ndarray) -> xr.DataArray:
            return xr.DataArray(
                a.T, dims=("dc", "hour"), coords={"dc": idx["dc"], "hour": idx["hour"]}
            )

        grid = dc_hour(f["grid_kwh"])
        facility = dc_hour(f["facility_kwh"])
        carbon = grid * ds["carbon_kg_per_kwh"].transpose("dc", "hour")
        set_dc_flows(
            result,
            it=dc_hour(f["it_kwh"]),
            facility=facility,
            grid=grid,
            renewable_used=(facility - grid).clip(min=0.0),
            water=dc_hour(f["water_l"]),
            carbon=carbon,
        )
        result.delay_s = xr.DataArray(
            f["delay_s"].transpose(1, 2, 0),
            dims=("area", "query_type", "hour"),
            coords={k: idx[k] for k in ("area", "query_type", "hour")},
        )
        duals: dict[str, xr.DataArray] = {}
        for name, arr in d.duals(sol.row_duals).items():
            dims = DUAL_DIMS.get(name, ())
            duals[name] = xr.DataArray(arr, dims=dims, coords={k: idx[k] for k in dims})
        result.duals = duals
