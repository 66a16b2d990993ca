"""Queueing wait of a multi-server station: M/G/c in the Allen–Cunneen approximation.

Core layer (shared by the digital twin, :mod:`greensched.eval.twin`, and the planner's per-query
delay model, :mod:`greensched.scheduler.greenllm`), so that both price congestion with one
formula.

A station with ``c`` parallel slots, Poisson arrivals and offered load ``a = λ E[S]`` Erlangs
waits with the Erlang-C probability ``C(c, a)`` of M/M/c, and the mean wait is
``W = C(c, a) E[S] / (c − a) · (1 + cs²) / 2`` where ``cs²`` is the squared coefficient of
variation of the service times (Allen–Cunneen; exact for exponential service, ``cs² = 1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaincc, gammaln

__all__ = ["OVERLOAD_RHO", "erlang_c", "mgc_wait_s"]

#: Stationary queueing is evaluated at most at this utilisation; beyond 1 the fluid backlog adds.
OVERLOAD_RHO = 0.98


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
