"""PCAPS and CAP — Lechowicz et al., "Carbon- and Precedence-Aware Scheduling for Data
Processing Clusters", ACM SIGCOMM 2025 (arXiv 2502.09717).

PCAPS defers a task while the grid's carbon intensity is above a threshold that depends on the
task's *importance* r ∈ (0, 1]::

    L = 0.95 · min(forecast over the next 48 slots),   U = max(same window)
    B = γ L + (1 − γ) U
    Ψ_γ(r) = B + (U − B) · (e^{γ r} − 1) / (e^{γ} − 1)

and runs it once I(t) ≤ Ψ_γ(r) (γ = 0: carbon-agnostic, Ψ = U).  CAP, the provisioning variant,
caps the cluster's active machines with k-search thresholds::

    α = 1 / (1 + W((L/U − 1)/e))        (W: Lambert W, principal branch)
    Φ_i = U · [1 − (1 − 1/α) · (1 + 1/(α K'))^{i−1}],   i = 1..K'

and allows B_min + (the number of Φ_i at or above the current intensity) machines.

Adaptation here (LLM inference jobs over geo-distributed DCs; ``../shared/spec/baselines.md``):

* importance r = 1 − slack / max_slack for batch jobs (slack = latest start − arrival;
  max_slack the largest slack in the run's class, i.e. the batch deadline), r = 1 for
  interactive jobs (Ψ = U: they run on arrival);
* spatial: the job may run at any DC whose forecast intensity I(t, d) ≤ Ψ_γ(r) (L and U over
  the job's usable DCs and the 48-slot window, clipped to the horizon); among those it takes
  argmin E·I·PUE with room; when its slack is gone (its latest start hour) it runs regardless,
  at the argmin with room.  Deciding at arrival on the forecast is the online rule evaluated
  ahead (the forecast is what the online rule would see).
* CAP: machines = ``slices`` equal shares of a DC's capacity (K' = slices, B_min = ``b_min``);
  in hour t a DC admits deferrable jobs up to (B_min + #{Φ_i ≥ I(t,d)}) / K' of its capacity;
  interactive jobs are not capped.
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
    carbon_cells,
    hour_window_mask,
    place_in_cells,
    place_or_overflow,
)

__all__ = ["CAPPolicy", "PCAPSPolicy", "cap_alpha", "cap_thresholds", "pcaps_bounds", "pcaps_psi"]


def pcaps_psi(r: np.ndarray | float, gamma: float, lower: float, upper: float) -> np.ndarray:
    """PCAPS's threshold Ψ_γ(r) (see the module docstring); γ = 0 gives U."""
    if not 0.0 <= gamma <= 1.0:
        raise PolicyError(f"PCAPS gamma {gamma!r} must lie in [0, 1]")
    r = np.asarray(r, dtype=float)
    b = gamma * lower + (1.0 - gamma) * upper
    if gamma == 0.0:
        return np.full(r.shape, float(upper))
    return np.asarray(b + (upper - b) * np.expm1(gamma * r) / math.expm1(gamma))


def pcaps_bounds(forecast: np.ndarray, hour: int, window: int = 48) -> tuple[float, float]:
    """(L, U) = (0.95 · min, max) of ``forecast`` (hour, …) over ``hour .. hour + window − 1``."""
    w = np.asarray(forecast[hour : hour + window], dtype=float)
    return 0.95 * float(w.min()), float(w.max())


def cap_alpha(lower: float, upper: float) -> float:
    """α = 1 / (1 + W((L/U − 1)/e)) of CAP's k-search thresholds (α ≥ 1; 1 when L = U)."""
    if not (0 < lower <= upper):
        raise PolicyError(f"CAP needs 0 < L <= U, got L={lower!r}, U={upper!r}")
    w = float(np.real(lambertw((lower / upper - 1.0) / math.e)))
    return 1.0 / (1.0 + w)


def cap_thresholds(lower: float, upper: float, k: int) -> np.ndarray:
    """Φ_1..Φ_K' (decreasing) of CAP."""
    if k < 1:
        raise PolicyError(f"CAP needs K' >= 1 thresholds, got {k!r}")
    a = cap_alpha(lower, upper)
    i = np.arange(1, k + 1)
    return upper * (1.0 - (1.0 - 1.0 / a) * (1.0 + 1.0 / (a * k)) ** (i - 1))


def _importance(step: StepJobs, max_slack_s: float) -> np.ndarray:
    slack = np.maximum(step.latest_start_s - step.arrival_s, 0.0)
    r = 1.0 - slack / max(max_slack_s, 1e-9)
    return np.where(step.deferrable, np.clip(r, 1e-6, 1.0), 1.0)


class PCAPSPolicy(Policy):
    """PCAPS (see the module docstring); ``gamma`` the carbon-awareness, ``window`` slots."""

    name = "pcaps"
    temporal: ClassVar[bool] = True

    def __init__(self, gamma: float = 0.5, window: int = 48,
                 max_slack_s: float | None = None) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise PolicyError(f"PCAPS gamma {gamma!r} must lie in [0, 1]")
        self.gamma = float(gamma)
        self.window = int(window)
        self.max_slack_s = max_slack_s

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h, m = step.hour, step.m
        T = step.hours - h
        hrs = h + np.arange(T)
        intensity = ctx.carbon_forecast_kg_per_kwh
        slack = np.maximum(step.latest_start_s - step.arrival_s, 0.0)
        max_slack = self.max_slack_s or float(slack.max(initial=0.0)) or 1.0
        r = _importance(step, max_slack)
        # threshold per (job, start hour): L, U over the rolling window from that hour
        psi = np.empty((m, T))
        for i, t in enumerate(hrs):
            lo, up = pcaps_bounds(intensity, int(t), self.window)
            psi[:, i] = pcaps_psi(r, self.gamma, lo, up)
        window = hour_window_mask(step, True)
        below = intensity[hrs][None, :, :] <= psi[:, :, None]  # (m, T, D)
        # first hour with a DC below the threshold, else the latest start hour
        any_below = (below.any(axis=2) & window)
        first = np.where(any_below.any(axis=1), any_below.argmax(axis=1), -1)
        last = step.latest_start_hour - h
        run_at = np.where(first >= 0, first, last)
        forced = first < 0
        e_i = carbon_cells(step, ctx)  # (m, T, D)
        onehot = np.arange(T)[None, :] == run_at[:, None]
        allowed = onehot[:, :, None] & (below | forced[:, None, None])
        # a job whose hour is full waits for room within its window (argmin E·I)
        dc, start = place_or_overflow(ctx, step, np.where(allowed, e_i, np.inf),
                                      np.where(window[:, :, None], e_i, np.inf))
        return Decision(dc, start)


class CAPPolicy(Policy):
    """CAP (see the module docstring): carbon-capped capacity for deferrable jobs."""

    name = "cap"
    temporal: ClassVar[bool] = True

    def __init__(self, slices: int = 10, b_min: int = 1, window: int = 48,
                 lower_scale: float = 1.1) -> None:
        if slices < 1 or not 0 <= b_min <= slices:
            raise PolicyError(f"CAP needs slices >= 1 and 0 <= b_min <= slices, got "
                              f"{slices!r}, {b_min!r}")
        self.slices, self.b_min, self.window = int(slices), int(b_min), int(window)
        self.lower_scale = float(lower_scale)

    def allowed_fraction(self, intensity: np.ndarray, hour: int) -> np.ndarray:
        """Share of capacity open to deferrable work per DC at ``hour``."""
        lo, up = pcaps_bounds(intensity, hour, self.window)
        if up <= 0:
            return np.ones(intensity.shape[1])
        lo = min(lo / 0.95 * self.lower_scale, up)  # the authors' code: L = 1.1 · min
        lo = max(lo, 1e-3 * up)  # a carbon-free DC: α needs L > 0
        phi = cap_thresholds(lo, up, self.slices)
        count = (phi[None, :] >= intensity[hour][:, None]).sum(axis=1)
        return np.minimum(self.b_min + count, self.slices) / self.slices

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h = step.hour
        T = step.hours - h
        hrs = h + np.arange(T)
        led = ctx.ledger
        intensity = ctx.carbon_forecast_kg_per_kwh
        ts = TemporalStep.begin(ctx, step)
        e_i, window, dc, start = ts.carbon, ts.window, ts.dc, ts.start
        todo = step.deferrable.copy()
        for i, t in enumerate(hrs):
            rows = np.flatnonzero(todo & window[:, i])
            if rows.size == 0:
                continue
            last = step.latest_start_hour[rows] == t
            frac = self.allowed_fraction(intensity, int(t))
            with led.lock:
                cap = led.capacity_ticks[t]
                # hide the capped share: reserve it temporarily, place, release
                used = led.used_ticks[t]
                open_ticks = np.floor(cap * frac[:, None]).astype(np.int64)
                hidden = (cap - used) - np.maximum(open_ticks - used, 0)
                capped = rows[~last]
                if capped.size:
                    led.used_ticks[t] += hidden
                    d, s = place_in_cells(ctx, step.subset(capped),
                                          e_i[capped][:, i : i + 1, :], first_hour=int(t))
                    led.used_ticks[t] -= hidden
                    dc[capped], start[capped] = d, s
                forced = rows[last]
                if forced.size:
                    d, s = place_in_cells(ctx, step.subset(forced),
                                          e_i[forced][:, i : i + 1, :], first_hour=int(t))
                    dc[forced], start[forced] = d, s
            todo &= dc < 0
        return Decision(dc, start)

