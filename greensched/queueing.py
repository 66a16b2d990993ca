"""Queueing wait of a multi-server station: M/G/c in the Allen–Cunneen approximation.

Core layer (shared by the digital twin, :mod:`greensched.eval.twin`, and the planner's per-query
delay model, :mod:`greensched.scheduler.greenllm`), so that both price congestion with one
formula.

A station with ``c`` parallel slots, Poisson arrivals and offered load ``a = λ E[S]`` Erlangs
waits with the Erlang-C probability ``C(c, a)`` of M/M/c, and the mean wait is
``W = C(c, a) E[S] / (c − a) · (1 + cs²) / 2`` where ``cs²`` is the squared coefficient of
variation of the service times (Allen–Cunneen; exact for exponential service, ``cs² = 1``).

Hourly queueing seconds (the per-query delay model, ``docs/delay-model.md``)
    A pool busy ``load`` seconds in an hour has ``a = load / 3600`` Erlangs and serves
    ``λ = 3600 a / E[S]`` queries, so the hour's total waiting is
    ``W(load) = λ · mean wait = 3600 · a · C(c, a) / (c − a) · (1 + cs²) / 2`` seconds —
    independent of ``E[S]``, convex and increasing in ``load`` (:func:`hourly_wait_s`).
    :func:`wait_tangents` returns tangents of ``W`` whose maximum is a piecewise-linear
    under-estimator within a relative tolerance on ``[0, u_max · 3600 c]``; the planner carries
    them as LP rows ``Q ≥ slope · load + intercept``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import xarray as xr
from scipy.special import gammaincc, gammaln

from greensched.scenario import Scenario

__all__ = [
    "DEFAULT_MAX_UTILIZATION",
    "DEFAULT_SERVICE_SCV",
    "DEFAULT_WAIT_FLOOR",
    "DEFAULT_WAIT_TOLERANCE",
    "OVERLOAD_RHO",
    "TARGET_UTILIZATION",
    "default_pool_slots",
    "erlang_c",
    "hourly_wait_s",
    "marginal_wait",
    "mgc_wait_s",
    "wait_tangents",
]

#: Stationary queueing is evaluated at most at this utilisation; beyond 1 the fluid backlog adds.
OVERLOAD_RHO = 0.98
#: Slot utilisation at which an auto-sized pool serves its DC's whole resource capacity (the
#: twin's ``auto`` replicas and :func:`default_pool_slots`).
TARGET_UTILIZATION = 0.7
#: Utilisation cap u_max of the per-query delay model (u = load / (3600 c) ≤ u_max).
DEFAULT_MAX_UTILIZATION = 0.9
#: Squared coefficient of variation of service times assumed by the planner (exponential: 1).
DEFAULT_SERVICE_SCV = 1.0
#: Largest relative gap between W and its piecewise-linear under-estimator.
DEFAULT_WAIT_TOLERANCE = 0.02
#: Error floor of the under-estimator, as a share of the fit range's busy seconds (s).
DEFAULT_WAIT_FLOOR = 1e-3
_GRID_POINTS = 2001
_MAX_TANGENTS = 64


def erlang_c(servers: Any, load: Any) -> np.ndarray:
    """Probability of waiting in an M/M/c queue (Erlang C), vectorised.

    Parameters
    ----------
    servers
        Number of servers ``c`` (≥ 1).
    load
        Offered load ``a = λ / μ`` in Erlangs, ``0 ≤ a < c``.

    Uses the Erlang-B ratio ``B = pmf(c; a) / cdf(c; a)`` of a Poisson(a) variable (stable for
    thousands of servers) and ``C = B / (1 - (a/c)(1 - B))``.
    """
    c = np.asarray(servers, dtype=np.float64)
    a = np.asarray(load, dtype=np.float64)
    c, a = np.broadcast_arrays(c, a)
    out = np.zeros(c.shape)
    pos = a > 0
    if pos.any():
        cc, aa = c[pos], a[pos]
        log_pmf = cc * np.log(aa) - aa - gammaln(cc + 1.0)
        cdf = gammaincc(cc + 1.0, aa)
        b = np.exp(log_pmf) / np.maximum(cdf, 1e-300)
        rho = aa / cc
        out[pos] = np.clip(b / (1.0 - rho * (1.0 - b)), 0.0, 1.0)
    return out


def mgc_wait_s(
    servers: Any, load: Any, mean_service_s: Any, cs2: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Mean wait (s) and waiting probability of M/G/c, Allen–Cunneen approximation.

    ``W = C(c, a) · E[S] / (c − a) · (1 + cs²) / 2`` with ``a`` capped at
    :data:`OVERLOAD_RHO` · c (the stationary part of an overloaded hour).
    """
    c = np.asarray(servers, dtype=np.float64)
    a = np.minimum(np.asarray(load, dtype=np.float64), OVERLOAD_RHO * c)
    s = np.asarray(mean_service_s, dtype=np.float64)
    p_wait = erlang_c(c, a)
    wait = p_wait * s / np.maximum(c - a, 1e-12) * (1.0 + np.asarray(cs2, dtype=np.float64)) / 2.0
    return np.where(a > 0, wait, 0.0), p_wait


def hourly_wait_s(load_s: Any, slots: Any, cs2: Any = DEFAULT_SERVICE_SCV) -> np.ndarray:
    """Total queueing seconds of one hour of a pool busy ``load_s`` seconds (vectorised).

    ``W = 3600 · a · C(c, a) / (c − a) · (1 + cs²) / 2`` with ``a = load_s / 3600`` Erlangs and
    ``c = slots``: the hour's queries, ``λ = 3600 a / E[S]``, times the Allen–Cunneen mean wait
    of :func:`mgc_wait_s` (so ``E[S]`` cancels).  Above :data:`OVERLOAD_RHO` the stationary
    wait is taken at that utilisation, as in the twin.

    Parameters
    ----------
    load_s
        Busy slot-seconds in the hour, Σ λ · s (s).
    slots
        Parallel slots c (replicas × batch slots), ≥ 1.
    cs2
        Squared coefficient of variation of the service times.
    """
    a = np.asarray(load_s, dtype=np.float64) / 3600.0
    mean_wait, _ = mgc_wait_s(slots, a, 1.0, cs2)
    return 3600.0 * a * mean_wait


def marginal_wait(load_s: Any, slots: Any, cs2: Any = DEFAULT_SERVICE_SCV) -> np.ndarray:
    """dW/d(load) of :func:`hourly_wait_s`: queueing seconds one more busy second adds (≥ 0).

    A one-sided difference over 10⁻⁶ · 3600 c seconds, vectorised; what a greedy score charges a
    job per second of service at a pool already busy ``load_s`` seconds.
    """
    c = np.asarray(slots, dtype=np.float64)
    load = np.asarray(load_s, dtype=np.float64)
    h = 1e-6 * 3600.0 * c
    up = hourly_wait_s(load + h, c, cs2)
    return np.maximum((up - hourly_wait_s(load, c, cs2)) / h, 0.0)


@functools.lru_cache(maxsize=4096)
def _tangents_unit(
    slots: float, u_top: float, tol: float, floor_frac: float
) -> tuple[tuple[float, float], ...]:
    """Tangents (slope, intercept) of W(load) for ``cs² = 1`` on [0, u_top · 3600 c]."""
    top = u_top * 3600.0 * slots
    grid = top * np.linspace(0.0, 1.0, _GRID_POINTS)
    w = hourly_wait_s(grid, slots, 1.0)
    floor = floor_frac * top
    if float(w[-1]) <= floor:
        return ()
    h = 1e-6 * top

    def tangent(x0: float) -> tuple[float, float]:
        lo, hi = max(x0 - h, 0.0), x0 + h
        slope = float((hourly_wait_s(hi, slots, 1.0) - hourly_wait_s(lo, slots, 1.0)) / (hi - lo))
        return slope, float(hourly_wait_s(x0, slots, 1.0)) - slope * x0

    lines = [tangent(top)]
    for _ in range(_MAX_TANGENTS):
        env = np.maximum(np.max([a * grid + b for a, b in lines], axis=0), 0.0)
        gap = w - env
        worst = int(np.argmax(gap - tol * w))
        if gap[worst] <= tol * w[worst] + floor:
            break
        lines.append(tangent(float(grid[worst])))
    return tuple(sorted(lines))


def wait_tangents(
    slots: float,
    cs2: float = DEFAULT_SERVICE_SCV,
    *,
    u_max: float = DEFAULT_MAX_UTILIZATION,
    load_max_s: float | None = None,
    tolerance: float = DEFAULT_WAIT_TOLERANCE,
    floor: float = DEFAULT_WAIT_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Tangent lines of :func:`hourly_wait_s` forming a piecewise-linear under-estimator.

    Returns ``(slope, intercept)`` arrays (slope: s of queueing per busy second; intercept: s)
    such that ``Q(load) = max(0, max_m slope_m · load + intercept_m)`` satisfies
    ``W(load) − tolerance · W(load) − floor · top ≤ Q(load) ≤ W(load)`` on
    ``[0, top]``, ``top = min(u_max, load_max_s / 3600 c) · 3600 c`` (checked on a
    2001-point grid).  Tangents of a convex function lie below it, so Q never over-states W;
    points are added greedily where the gap is largest.  The floor term bounds the error in
    queueing seconds by a small share of the busy seconds (the latency the pool adds anyway),
    so a pool whose whole reachable wait is below it gets no tangent (empty arrays: Q = 0).
    ``cs²`` only scales W by ``(1 + cs²) / 2``.  The utilisation range is rounded up to a
    multiple of 1/64 so that pools share fits (cached).
    """
    if not (slots >= 1 and np.isfinite(slots)):
        raise ValueError(f"slots {slots!r} must be a finite number >= 1")
    if not (0 < u_max < OVERLOAD_RHO):
        raise ValueError(f"u_max {u_max!r} must lie in (0, {OVERLOAD_RHO})")
    if not (cs2 >= 0 and np.isfinite(cs2)):
        raise ValueError(f"cs2 {cs2!r} must be a finite number >= 0")
    if not (0 < tolerance < 1):
        raise ValueError(f"tolerance {tolerance!r} must lie in (0, 1)")
    u_top = float(u_max)
    if load_max_s is not None:
        u_reach = float(load_max_s) / (3600.0 * float(slots))
        if u_reach <= 0:
            return np.zeros(0), np.zeros(0)
        u_top = min(u_top, math.ceil(u_reach * 64.0) / 64.0)
    lines = _tangents_unit(float(slots), u_top, float(tolerance), float(floor))
    scale = (1.0 + float(cs2)) / 2.0
    slopes = np.array([a for a, _ in lines], dtype=np.float64) * scale
    intercepts = np.array([b for _, b in lines], dtype=np.float64) * scale
    return slopes, intercepts


def default_pool_slots(
    scenario: Scenario, target_utilization: float = TARGET_UTILIZATION
) -> xr.DataArray:
    """Parallel slots c_{j,k} of each (dc, query_type) pool when no fleet table says otherwise.

    The rule of the twin's ``auto`` replicas (``docs/fleet.md``) with the scenario's per-query
    processing time as the slot-holding time: DC j serves at most
    ``N_{j,k} = min_r C_{j,r} / (α_{k,r} (h_k + f_k))`` type-k queries per hour within its
    resource capacity; at that rate the pool is busy ``a = N_{j,k} max_t s_{j,k,t} / 3600``
    Erlangs, and gets ``c_{j,k} = max(1, ceil(a / ρ*))`` slots (ρ* = ``target_utilization``).
    Any allocation that respects the capacity rows therefore loads a pool to at most ρ*.

    Returns
    -------
    xarray.DataArray
        Slots (≥ 1), dims ``(dc, query_type)``.
    """
    if not (0 < target_utilization <= 1):
        raise ValueError(f"target_utilization {target_utilization!r} must lie in (0, 1]")
    ds = scenario.ds
    tokens = ds["input_tokens"] + ds["output_tokens"]
    use = (ds["units_per_token"] * tokens).transpose("query_type", "resource").values
    cap = ds["capacity"].transpose("dc", "resource").values
    with np.errstate(divide="ignore", invalid="ignore"):
        n_jk = np.where(use[None] > 0, cap[:, None, :] / use[None], np.inf).min(axis=2)
    peak = float(ds["queries"].sum(["area", "query_type"]).max())
    n_jk = np.where(np.isfinite(n_jk), n_jk, peak)
    s_max = scenario.proc_delay_s_per_query().max("hour").transpose("dc", "query_type").values
    slots = np.maximum(1.0, np.ceil(n_jk * s_max / (3600.0 * target_utilization) - 1e-9))
    return xr.DataArray(
        slots,
        coords={"dc": ds.indexes["dc"], "query_type": ds.indexes["query_type"]},
        dims=("dc", "query_type"),
        name="slots",
    )
