"""Plan from predicted vs true coefficients: zero gap when the prediction is the truth."""

from __future__ import annotations

import pytest

from greensched.defaults import default_scenario
from greensched.eval.plan_gap import plan_gap, true_coefficients


def test_gap_is_zero_for_perfect_coefficients_and_positive_for_biased() -> None:
    # real-data default day (its delay limits are sized for physical processing times)
    scen = default_scenario().subset(hours=[12, 13])
    scen.water_budget_l = None
    truth = true_coefficients(scen)
    assert set(truth.dims) == {"hour", "dc", "query_type"}
    assert float(truth["energy_kwh_per_query"].min()) > 0
    exact = plan_gap(scen, truth)
    assert exact.gap_pct == pytest.approx(0.0, abs=1e-6)
    assert exact.coefficient_mape["energy_kwh_per_query"] == pytest.approx(0.0, abs=1e-12)
    biased = truth.copy(deep=True)
    e = biased["energy_kwh_per_query"]
    biased["energy_kwh_per_query"] = e * xr_ramp(e)
    worse = plan_gap(scen, biased)
    assert worse.gap_pct >= -1e-6  # never better than the true optimum
    assert worse.coefficient_mape["energy_kwh_per_query"] > 0.1


def xr_ramp(e):  # type: ignore[no-untyped-def]
    """A DC-dependent distortion: the first DC looks 5x cheaper, the last 3x dearer."""
    import numpy as np
    import xarray as xr

    n = e.sizes["dc"]
    return xr.DataArray(np.linspace(0.2, 3.0, n), coords={"dc": e.indexes["dc"]}, dims=["dc"])
