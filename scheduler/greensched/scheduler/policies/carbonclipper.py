"""CarbonClipper (ST-CLIP) — Lechowicz, Christianson, Sun, Bashir, Hajiesmaili, Wierman &
Shenoy, "CarbonClipper: Optimal Algorithms for Carbon-Aware Spatiotemporal Workload
Management", arXiv 2408.07831.

Deferrable work w ∈ [0, 1] must be done by the deadline over points X = DCs × {on, off}, with
per-unit cost f_t(x) ∈ [L, U], movement cost d(x, x') (here: diameter D between DCs plus the
switching cost τ, both per unit of work moved or switched) and the threshold::

    ψ(w) = U − τ + (U/γ − U + D + τ) · e^{w/γ}

with γ the competitive ratio, the root of ψ(1) = L (the threshold falls to L as the work
completes), found by Newton's method from the Lambert-W root of the τ = D = 0 case,
γ₀ = 1 / (1 + W((L/U − 1)/e)).  Each step::

    x_t = argmin_{c(x) ≤ 1 − w_t}  f_t · x + d(x, x_{t−1}) − ∫_{w_t}^{w_t + c(x)} ψ(u) du

and once the remaining steps cannot be skipped (the deadline step here) the rest runs at the
cheapest point.  With advice a_t (the offline optimum on the forecast: all work at the cheapest
(hour, DC) of the window) and trust ε, CLIP keeps the learning-augmented guarantee by taking the
pseudo-cost minimiser among the actions whose cost so far, plus finishing the rest along the
advice, stays ≤ (1 + ε) · (advice cost).

Adaptation (``../shared/spec/baselines.md``): the unit of work is the step's deferrable jobs
with a common latest start hour; f_t(d) = mean predicted E_d · I_f(t, d) · PUE_d (kg per job),
L and U the min and max of f over the window; D = ``movement`` · L, τ = ``switching`` · L
(γ exists only for D < L: ψ(1) → D as γ → ∞), L floored at ``floor`` · U when a cell is
carbon-free; the
simplex minimisation is done on a grid of ``grid`` rates per DC (the objective is convex in the
rate for a fixed DC).  Fractions become job counts by cumulative rounding; jobs fill their
(hour, DC) cells in arrival order, overflow takes the argmin E·I cell with room in the window;
interactive jobs run on arrival at their argmin E·I DC with room.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy.special import lambertw

from greensched.scheduler.policies.base import (
    Decision,
    Policy,
    PolicyContext,
    PolicyError,
    StepJobs,
    TemporalStep,
    deadline_groups,
)

__all__ = [
    "CarbonClipperPolicy",
    "stclip_gamma",
    "stclip_psi",
    "stclip_psi_integral",
    "stclip_rates",
]


def stclip_psi(w: np.ndarray | float, upper: float, tau: float, diameter: float,
               gamma: float) -> np.ndarray:
    """ψ(w) = U − τ + (U/γ − U + D + τ) e^{w/γ}."""
    w = np.asarray(w, dtype=float)
    return np.asarray(upper - tau + (upper / gamma - upper + diameter + tau) * np.exp(w / gamma))


def stclip_psi_integral(a: float, b: float, upper: float, tau: float, diameter: float,
                        gamma: float) -> float:
    """∫_a^b ψ(u) du in closed form."""
    k = upper / gamma - upper + diameter + tau
    return float((upper - tau) * (b - a) + k * gamma * (math.exp(b / gamma) - math.exp(a / gamma)))


def stclip_gamma(lower: float, upper: float, tau: float = 0.0, diameter: float = 0.0) -> float:
    """The root γ ≥ 1 of ψ(1) = L (Newton from the Lambert-W start)."""
    if not 0 < lower <= upper:
        raise PolicyError(f"ST-CLIP needs 0 < L <= U, got L={lower!r}, U={upper!r}")
    if lower == upper:
        return 1.0
    g = 1.0 / (1.0 + float(np.real(lambertw((lower / upper - 1.0) / math.e))))

    def f(x: float) -> float:
        return float(stclip_psi(1.0, upper, tau, diameter, x)) - lower

    for _ in range(100):
        e = math.exp(1.0 / g)
        k = upper / g - upper + diameter + tau
        # d/dγ [k e^{1/γ}] = (−U/γ²) e^{1/γ} + k e^{1/γ} (−1/γ²)
        df = -e / g**2 * (upper + k)
        step = f(g) / df
        g_new = max(g - step, 1.0 + 1e-12)
        if abs(g_new - g) < 1e-14 * max(1.0, g):
            g = g_new
            break
        g = g_new
    if abs(f(g)) > 1e-8 * max(1.0, upper):
        raise PolicyError(f"ST-CLIP's γ did not converge (L={lower!r}, U={upper!r})")
    return g


def stclip_rates(
    cost: np.ndarray,
    lower: float,
    upper: float,
    *,
    tau: float = 0.0,
    diameter: float = 0.0,
    advice: np.ndarray | None = None,
    epsilon: float = 1.0,
    grid: int = 201,
) -> np.ndarray:
    """ST-CLIP's schedule of one unit of work: rates (steps, DCs) summing to 1.

    ``cost`` (steps, DCs) per unit of work (the last step is the deadline: compulsory).
    ``advice`` (steps, DCs) an advice schedule summing to 1, followed within trust ``epsilon``.
    """
    T, D = cost.shape
    gamma = stclip_gamma(lower, upper, tau, diameter)
    x = np.zeros((T, D))
    w = 0.0
    prev = np.zeros(D)
    spent = 0.0
    adv_total = float((advice * cost).sum()) if advice is not None else 0.0
    for t in range(T):
        left = 1.0 - w
        if left <= 1e-12:
            break
        if t == T - 1:  # compulsory execution at the cheapest point
            d = int(cost[t].argmin())
            x[t, d] = left
            break
        rates = np.linspace(0.0, left, grid)
        k = upper / gamma - upper + diameter + tau
        integral = (upper - tau) * rates + k * gamma * (np.exp((w + rates) / gamma)
                                                         - math.exp(w / gamma))
        best: tuple[float, int, float] | None = None
        fallback: tuple[float, int, float] | None = None
        if advice is not None:
            adv_future, future = advice[t + 1 :], cost[t + 1 :]
            a_sum = float(adv_future.sum())
            tail = (float((adv_future * future).sum()) / a_sum if a_sum > 1e-12
                    else float(future.min()))
        for d in range(D):
            others = float(np.abs(prev).sum() - abs(prev[d]))
            move = (others + np.abs(rates - prev[d])) * (tau + diameter / 2.0)
            step_cost = float(cost[t, d]) * rates + move
            g = step_cost - integral
            ok = np.ones(grid, dtype=bool)
            if advice is not None:
                lhs = spent + step_cost + (1.0 - w - rates) * tail
                i_min = int(lhs.argmin())
                if fallback is None or lhs[i_min] < fallback[0]:
                    fallback = (float(lhs[i_min]), d, float(rates[i_min]))
                ok = lhs <= (1.0 + epsilon) * adv_total + 1e-12
            if not ok.any():
                continue
            i = int(np.where(ok, g, np.inf).argmin())
            if best is None or g[i] < best[0] - 1e-15:
                best = (float(g[i]), d, float(rates[i]))
        choice = best if best is not None else fallback
        assert choice is not None
        _, d, c = choice
        x[t, d] = c
        spent += float(cost[t, d]) * c + float(np.abs(x[t] - prev).sum()) * (tau + diameter / 2)
        prev = x[t]
        w += c
    return x


class CarbonClipperPolicy(Policy):
    """CarbonClipper (ST-CLIP), optionally learning-augmented (see the module docstring)."""

    name = "carbonclipper"
    temporal: ClassVar[bool] = True

    def __init__(self, advice: bool = False, epsilon: float = 0.5, movement: float = 0.05,
                 switching: float = 0.02, grid: int = 41, floor: float = 1e-3) -> None:
        if epsilon < 0 or movement < 0 or switching < 0 or grid < 2:
            raise PolicyError("CarbonClipper needs epsilon, movement, switching >= 0, grid >= 2")
        self.advice, self.epsilon = bool(advice), float(epsilon)
        self.movement, self.switching, self.grid = float(movement), float(switching), int(grid)
        self.floor = float(floor)
        self.name = "carbonclipper-advice" if advice else "carbonclipper"  # type: ignore[misc]

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h = step.hour
        T = step.hours - h
        D = len(ctx.scenario.dcs)
        ci = ctx.carbon_per_it_kwh()
        ts = TemporalStep.begin(ctx, step)
        for rows, n_t in deadline_groups(step):
            cost = ci[h : h + n_t] * step.energy_kwh[rows].mean(axis=0)[None, :]
            up = float(cost.max())
            lo = max(float(cost.min()), self.floor * up)  # a zero-carbon cell: L > 0 needed
            if n_t == 1 or up <= 0:
                x = np.zeros((n_t, D))
                x[-1, int(cost[-1].argmin())] = 1.0
            else:
                adv = None
                if self.advice:
                    adv = np.zeros((n_t, D))
                    adv[np.unravel_index(int(cost.argmin()), cost.shape)] = 1.0
                x = stclip_rates(cost, lo, up, tau=self.switching * lo,
                                 diameter=self.movement * lo, advice=adv,
                                 epsilon=self.epsilon, grid=self.grid)
            # fractions → counts by cumulative rounding, in (hour, dc) order
            flat = x.ravel()
            cum = np.round(np.cumsum(flat) * rows.size).astype(np.int64)
            counts = np.diff(np.concatenate([[0], cum]))
            target = np.repeat(np.arange(flat.size), np.maximum(counts, 0))[: rows.size]
            key = np.full((rows.size, T, D), np.inf)
            tt, dd = np.divmod(target, D)
            key[np.arange(target.size), tt, dd] = 0.0
            ts.place_group(ctx, step, rows, key)
        return ts.decision()
