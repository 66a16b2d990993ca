"""The grid and data-center state of each hour, as seen by predictors and online assigners.

:func:`dc_hour_state` gives, per (hour, dc): electricity price, grid carbon intensity, the share
of the facility load that on-site renewables could cover, PUE and utilisation.  Utilisation is the
fraction of the binding resource in use; when it is not observed (planning ahead), it is
estimated from the scenario's demand spread evenly over the data centers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from greensched.scenario import Scenario

__all__ = ["STATE_FIELDS", "dc_hour_state", "expected_utilization"]

#: Fields of :func:`dc_hour_state`, in prompt/feature order.
STATE_FIELDS = (
    "price_usd_per_kwh",
    "carbon_kg_per_kwh",
    "renewable_share",
    "pue",
    "utilization",
)


def expected_utilization(scenario: Scenario) -> xr.DataArray:
    """Utilisation per (hour, dc) if the hour's demand were spread evenly over the DCs.

    For each resource r: Σ_{i,k} α_{k,r} (h_k + f_k) λ^t_{i,k} / |J| / C_j^r; the maximum over
    resources (the binding one), clipped to [0, 1].
    """
    ds = scenario.ds
    tokens = ds["input_tokens"] + ds["output_tokens"]
    use = (ds["units_per_token"] * tokens * ds["queries"]).sum(["area", "query_type"])
    per_dc = use / len(scenario.dcs)
    util = (per_dc / ds["capacity"]).max("resource")
    return util.clip(0.0, 1.0).transpose("hour", "dc")


def dc_hour_state(scenario: Scenario, utilization: xr.DataArray | None = None) -> xr.Dataset:
    """State per (hour, dc): price, carbon, renewable share, PUE, utilisation.

    ``renewable_share`` = P^w / (P^w + P^max): the part of the DC's available supply that is
    on-site renewable in that hour (0..1).  ``utilization`` defaults to
    :func:`expected_utilization`.
    """
    ds = scenario.ds
    supply = ds["renewable_kw"] + ds["grid_cap_kw"]
    share = xr.where(supply > 0, ds["renewable_kw"] / supply.where(supply > 0, 1.0), 0.0)
    util = expected_utilization(scenario) if utilization is None else utilization
    out = xr.Dataset(
        {
            "price_usd_per_kwh": ds["price_usd_per_kwh"],
            "carbon_kg_per_kwh": ds["carbon_kg_per_kwh"],
            "renewable_share": share,
            "pue": ds["pue"].broadcast_like(ds["price_usd_per_kwh"]),
            "utilization": util,
        }
    )
    out = out.transpose("hour", "dc")
    assert np.isfinite(out["renewable_share"].values).all()
    return out
