"""The per-query delay model (``delay_model = "per_query"``) of the Green-LLM LP.

Contract: ``shared/spec/green-llm-model.md``, section "The per-query delay model"; user guide:
``docs/delay-model.md``.  Every other row of the letter's model is kept; the delay rows and the
delay cost are replaced by:

Per-query latency of a type-k query from area i served at DC j in hour t (s per query)::

    ℓ_{i,j,k,t} = d_{i,j} + β^t_{i,k} (h_k + f_k) / B_{i,j} + s_{j,k,t}          (no λ factor)

Mean latency limit (Δ_{i,k} a per-query SLO, s)::

    Σ_j ℓ_{i,j,k,t} x_{i,j,k,t} ≤ Δ_{i,k}

Congestion.  The twin serves each (dc, query_type) from its own pool of c_{j,k} = replicas ×
batch slots (``docs/fleet.md``), so the contract's per-DC pool is carried per (dc, query_type)
pool (with a single query type the two are the same).  Busy seconds of the pool::

    load_{j,k,t} = Σ_i λ^t_{i,k} s_{j,k,t} x_{i,j,k,t}                          (s)
    load_{j,k,t} ≤ u_max · 3600 · c_{j,k}                                         (utilisation cap)
    Q_{j,k,t} ≥ a_{j,k,t,m} load_{j,k,t} + b_{j,k,t,m}   for every tangent m,  Q ≥ 0   (s)

where the tangents (:func:`greensched.queueing.wait_tangents`) under-estimate the hour's total
queueing seconds ``W(load) = 3600 a C(c, a) / (c − a) (1 + cs²) / 2`` (a = load / 3600), the
twin's own M/G/c wait (:func:`greensched.queueing.hourly_wait_s`).

Delay cost (USD; ρ in USD per query-second)::

    C_delay = Σ_{i,k,t} ρ_k λ^t_{i,k} Σ_j ℓ_{i,j,k,t} x_{i,j,k,t} + Σ_{j,k,t} ρ_k Q_{j,k,t}

Per (dc, query_type) pools make the contract's ρ̄_{j,t} (the demand-weighted mean of ρ_k) exact:
the queueing seconds of a type-k pool are all type-k seconds.  It remains an LP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from greensched.errors import GreenSchedError
from greensched.queueing import (
    DEFAULT_MAX_UTILIZATION,
    DEFAULT_SERVICE_SCV,
    DEFAULT_WAIT_TOLERANCE,
    OVERLOAD_RHO,
    default_pool_slots,
    hourly_wait_s,
    wait_tangents,
)
from greensched.scenario import DELAY_MODELS, Scenario

if TYPE_CHECKING:  # the letter planner runs without linopy (direct.py)
    import linopy

__all__ = [
    "DelayOptions",
    "define_latency_constraints",
    "define_queueing_constraints",
    "define_utilization_constraints",
    "delay_floor_usd",
    "latency_summary",
    "per_query_latency_s",
    "pool_load_s",
    "wait_segments",
]


@dataclass
class DelayOptions:
    """Which delay model the LP carries, and the congestion inputs of ``per_query``.

    Parameters
    ----------
    delay_model
        ``"letter"`` or ``"per_query"``; ``None``: the scenario's ``[objective] delay_model``.
    pool_slots
        Parallel slots c per (dc, query_type) (replicas × batch slots of the fleet);
        ``None``: :func:`greensched.queueing.default_pool_slots`.
    service_scv
        Squared coefficient of variation cs² of service times (1 = exponential).
    max_utilization
        Utilisation cap u_max, in (0, 0.98).
    tolerance
        Relative gap allowed between the tangent under-estimator and the M/G/c wait.
    congestion
        ``False`` leaves out the utilisation and queueing rows (latency rows only): an ablation,
        and the baseline of the planner benchmark.
    """

    delay_model: str | None = None
    pool_slots: xr.DataArray | None = None
    service_scv: float = DEFAULT_SERVICE_SCV
    max_utilization: float = DEFAULT_MAX_UTILIZATION
    tolerance: float = DEFAULT_WAIT_TOLERANCE
    congestion: bool = True

    def __post_init__(self) -> None:
        if self.delay_model is not None and self.delay_model not in DELAY_MODELS:
            raise GreenSchedError(
                f"delay_model {self.delay_model!r} is not known; expected one of "
                f"{', '.join(DELAY_MODELS)}"
            )
        if not (np.isfinite(self.service_scv) and self.service_scv >= 0):
            raise GreenSchedError(f"service_scv {self.service_scv!r} must be a number >= 0")
        if not (0 < self.max_utilization < OVERLOAD_RHO):
            raise GreenSchedError(
                f"max_utilization {self.max_utilization!r} must lie in (0, {OVERLOAD_RHO})"
            )
        if not (0 < self.tolerance < 1):
            raise GreenSchedError(f"tolerance {self.tolerance!r} must lie in (0, 1)")

    def model_of(self, scen: Scenario) -> str:
        """The delay model used for ``scen``."""
        return self.delay_model if self.delay_model is not None else scen.delay_model

    def slots_of(self, scen: Scenario) -> xr.DataArray:
        """Pool slots c_{j,k}, dims (dc, query_type), checked against the scenario."""
        if self.pool_slots is None:
            return default_pool_slots(scen)
        slots = self.pool_slots
        if set(slots.dims) != {"dc", "query_type"}:
            raise GreenSchedError(
                f"pool_slots has dims {tuple(slots.dims)}; expected ('dc', 'query_type')"
            )
        slots = slots.reindex(dc=scen.ds.indexes["dc"], query_type=scen.ds.indexes["query_type"])
        values = np.asarray(slots.values, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 1)
        if bad.any():
            j, k = (int(v[0]) for v in np.nonzero(bad))
            raise GreenSchedError(
                f"pool_slots at dc={scen.dcs[j]!r}, query_type={scen.query_types[k]!r} is "
                f"{values[j, k]!r}; expected a number >= 1 for every (dc, query_type)"
            )
        return slots.transpose("dc", "query_type").astype(np.float64)


def per_query_latency_s(scen: Scenario) -> xr.DataArray:
    """ℓ_{i,j,k,t} = d_{i,j} + β^t_{i,k} (h_k + f_k) / B_{i,j} + s_{j,k,t}  (s per query).

    Propagation (RTT), transmission of the query's tokens and processing; no λ factor and no
    queueing (the queueing seconds are the pool variables Q).  Dims (area, dc, query_type, hour).
    """
    ds = scen.ds
    tokens = ds["input_tokens"] + ds["output_tokens"]
    tran = ds["token_size"] * tokens / ds["bandwidth"]
    return (ds["rtt_s"] + tran + scen.proc_delay_s_per_query()).transpose(
        "area", "dc", "query_type", "hour"
    )


def pool_load_s(x: linopy.Variable, scen: Scenario) -> linopy.LinearExpression:
    """load_{j,k,t} = Σ_i λ^t_{i,k} s_{j,k,t} x_{i,j,k,t}  (busy slot-seconds of the pool)."""
    coef = scen.ds["queries"] * scen.proc_delay_s_per_query()
    return (x * coef.transpose("area", "dc", "query_type", "hour")).sum("area")


def _reachable_load_s(scen: Scenario) -> np.ndarray:
    """Largest load a pool can get in an hour: all its type's demand, within capacity (D, K, T)."""
    ds = scen.ds
    s = scen.proc_delay_s_per_query().transpose("dc", "query_type", "hour").values
    lam = ds["queries"].sum("area").transpose("query_type", "hour").values  # (K, T)
    tokens = (ds["input_tokens"] + ds["output_tokens"]).values
    use = ds["units_per_token"].transpose("query_type", "resource").values * tokens[:, None]
    cap = ds["capacity"].transpose("dc", "resource").values
    with np.errstate(divide="ignore", invalid="ignore"):
        n_cap = np.where(use[None] > 0, cap[:, None, :] / use[None], np.inf).min(axis=2)
    n = np.minimum(lam[None, :, :], n_cap[:, :, None])
    return np.asarray(n * s, dtype=np.float64)


def wait_segments(
    scen: Scenario, options: DelayOptions, slots_da: xr.DataArray | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Tangent slopes a and intercepts b of every pool-hour, dims (dc, query_type, hour, segment).

    Cells with fewer tangents than the widest are padded with NaN (no row).  The fit range of a
    pool-hour is [0, min(u_max · 3600 c, reachable load)] (:func:`greensched.queueing
    .wait_tangents`), so quiet pools need few rows and idle ones none.  ``slots_da``: the pool
    slots when already resolved (else ``options.slots_of(scen)``).
    """
    slots = np.asarray(
        (options.slots_of(scen) if slots_da is None else slots_da).values, dtype=np.float64
    )
    reach = _reachable_load_s(scen)
    D, K, T = reach.shape
    # one fit per distinct (slots, utilisation range): wait_tangents rounds the range to 1/64
    u = np.minimum(
        options.max_utilization, np.ceil(reach / (3600.0 * slots[:, :, None]) * 64.0) / 64.0
    )
    c = np.broadcast_to(slots[:, :, None], reach.shape)
    keys = np.stack([c.ravel(), np.where(reach.ravel() > 0, u.ravel(), 0.0)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    fits = [
        wait_tangents(
            float(cs),
            options.service_scv,
            u_max=options.max_utilization,
            load_max_s=float(us) * 3600.0 * float(cs) * (1.0 - 1e-12),
            tolerance=options.tolerance,
        )
        for cs, us in uniq
    ]
    width = max((len(f[0]) for f in fits), default=0)
    table_a = np.full((len(fits), width), np.nan)
    table_b = np.full((len(fits), width), np.nan)
    for i, (fa, fb) in enumerate(fits):
        table_a[i, : len(fa)] = fa
        table_b[i, : len(fb)] = fb
    inverse = np.asarray(inverse).ravel()
    slope = table_a[inverse].reshape(D, K, T, width)
    icpt = table_b[inverse].reshape(D, K, T, width)
    ds = scen.ds
    coords = {
        "dc": ds.indexes["dc"],
        "query_type": ds.indexes["query_type"],
        "hour": ds.indexes["hour"],
        "segment": np.arange(width),
    }
    dims = ("dc", "query_type", "hour", "segment")
    return xr.DataArray(slope, coords=coords, dims=dims), xr.DataArray(
        icpt, coords=coords, dims=dims
    )


def define_latency_constraints(
    m: linopy.Model,
    scen: Scenario,
    latency: linopy.LinearExpression,
    slack: linopy.Variable | None,
) -> None:
    """Mean latency limit per area, query type and hour (s per query).

    Σ_j ℓ_{i,j,k,t} x_{i,j,k,t} ≤ Δ_{i,k}, with ℓ of :func:`per_query_latency_s`.  The family is
    named ``delay`` like the letter's rows it replaces.
    """
    lhs = latency if slack is None else latency - slack
    m.add_constraints(lhs <= scen.ds["delay_limit_s"], name="delay")


def define_utilization_constraints(
    m: linopy.Model,
    scen: Scenario,
    load: linopy.LinearExpression,
    slots: xr.DataArray,
    max_utilization: float,
    slack: linopy.Variable | None,
) -> None:
    """Utilisation cap per pool and hour (busy s): load_{j,k,t} ≤ u_max · 3600 · c_{j,k}.

    Rows that cannot bind — the pool-hour's reachable load (all its type's demand, within the
    DC's capacity) is below the cap, as with :func:`greensched.queueing.default_pool_slots` —
    are left out.
    """
    cap = (max_utilization * 3600.0 * slots).broadcast_like(scen.ds["hour"])
    cap = cap.transpose("dc", "query_type", "hour")
    reach = xr.DataArray(_reachable_load_s(scen), coords=cap.coords, dims=cap.dims)
    can_bind = reach > cap * (1.0 - 1e-9)
    if not bool(can_bind.any()):
        return
    lhs = load if slack is None else load - slack
    m.add_constraints(lhs <= cap, name="utilization", mask=can_bind)


def define_queueing_constraints(
    m: linopy.Model,
    scen: Scenario,
    load: linopy.LinearExpression,
    options: DelayOptions,
    slots: xr.DataArray | None = None,
) -> linopy.Variable:
    """Queueing seconds Q_{j,k,t} ≥ a_m load_{j,k,t} + b_m for every tangent m; Q ≥ 0 (s).

    The tangents are those of :func:`wait_segments`; pool-hours without a tangent get Q = 0 (an
    upper bound of 0).  Always satisfiable (Q is free upwards), so it has no slack.  Returns Q.
    """
    ds = scen.ds
    if not options.congestion:
        zero = xr.zeros_like(ds["pue"] * ds["input_tokens"] * ds["hour"], dtype=float)
        return m.add_variables(
            lower=0.0,
            upper=zero.transpose("dc", "query_type", "hour"),
            coords=[ds.indexes[d] for d in ("dc", "query_type", "hour")],
            name="queue_s",
        )
    slope, icpt = wait_segments(scen, options, slots)
    has = slope.notnull().any("segment")
    upper = xr.where(has, np.inf, 0.0).transpose("dc", "query_type", "hour")
    q = m.add_variables(
        lower=0.0,
        upper=upper,
        coords=[ds.indexes[d] for d in ("dc", "query_type", "hour")],
        name="queue_s",
    )
    if slope.sizes["segment"]:
        mask = slope.notnull()
        lhs = q - load * slope.fillna(0.0)
        m.add_constraints(lhs >= icpt.fillna(0.0), name="queueing", mask=mask)
    return q


def delay_floor_usd(scen: Scenario) -> float:
    """Delay cost no plan can avoid: every query at its lowest-latency DC, no queueing (USD).

    Σ_{i,k,t} ρ_k λ^t_{i,k} min_j ℓ_{i,j,k,t}; the rest of a plan's delay cost is the
    decision-dependent part.
    """
    ds = scen.ds
    best = per_query_latency_s(scen).min("dc")
    return float((ds["delay_penalty_usd_per_s"] * ds["queries"] * best).sum())


def latency_summary(
    scen: Scenario,
    delay_s: xr.DataArray,
    pool_load_s: xr.DataArray,
    slots: xr.DataArray,
    service_scv: float,
    queueing_lp_s: float,
    delay_usd: float,
) -> dict[str, float]:
    """The ``latency`` block of a per_query plan (:class:`~greensched.scheduler.PlanResult`).

    ``delay_s`` is the plan's mean latency Σ_j ℓ x per (area, query_type, hour) (queueing
    excluded), ``pool_load_s`` its busy seconds per (dc, query_type, hour), ``queueing_lp_s``
    the LP's queueing seconds ΣQ and ``delay_usd`` its delay cost.  The queueing seconds are
    re-evaluated with the M/G/c wait at the pool loads (the LP's tangents under-estimate it).
    """
    lam = scen.ds["queries"]
    load = pool_load_s.clip(min=0.0)
    c = slots.broadcast_like(load).transpose(*load.dims)
    queue = float(hourly_wait_s(load.values, c.values, service_scv).sum())
    query_s = float((delay_s * lam).sum()) + queue
    floor = delay_floor_usd(scen)
    return {
        "latency_s_per_query": query_s / max(float(lam.sum()), 1e-300),
        "queueing_s": queue,
        "queueing_lp_s": float(queueing_lp_s),
        "delay_floor_usd": floor,
        "decision_share": (delay_usd - floor) / delay_usd if delay_usd > 0 else 0.0,
    }
