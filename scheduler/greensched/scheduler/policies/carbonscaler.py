"""CarbonScaler — Hanafy, Liang, Bashir, Irwin & Shenoy, "CarbonScaler: Leveraging Cloud
Workload Elasticity for Optimizing Carbon-Efficiency", Proc. ACM Meas. Anal. Comput. Syst.
(SIGMETRICS) 7(3), 2023, doi 10.1145/3626788.

A deferrable batch with a deadline scales between m and M replicas; the job's throughput profile
thr(j) gives marginal throughput Δthr(j) = thr(j) − thr(j − 1) (Δthr(m) = thr(m)) and its power
profile marginal power Δp(j).  For every slot t before the deadline and every j the *marginal
carbon efficiency* is Δthr(j) / (Δp(j) · I(t)); the greedy schedule sorts these items in
decreasing order and takes an item when it extends slot t contiguously (j = m on an idle slot, or
j = schedule[t] + 1) until Σ_t thr(schedule[t]) · slot ≥ remaining work.  The schedule is
recomputed as work progresses (here: at every step, on the remaining capacity).

Adaptation (LLM inference, geo-distributed): the batch is the step's deferrable jobs with a
common latest start hour (one schedule per such group); replicas are ``slices`` equal shares of
a DC's resource capacity, items range over (slot t, DC d, j) triples; throughput of j slices is
(j / slices)^β of the DC's remaining capacity in that hour (β = ``elasticity``, 1 for independent
inference requests) and marginal power Δp = E_d · PUE_d per unit of work, so the value is
Δthr / (Δp · I(t, d)).  Jobs then fill the scheduled (t, d) cells in decreasing value, in
arrival order; interactive jobs run on arrival at their argmin E·I DC with room.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from greensched.scheduler.policies.base import (
    Decision,
    Policy,
    PolicyContext,
    PolicyError,
    StepJobs,
    TemporalStep,
    deadline_groups,
)

__all__ = ["CarbonScalerPolicy", "carbonscaler_schedule"]


def carbonscaler_schedule(
    work: float,
    throughput: np.ndarray,
    power: np.ndarray,
    intensity: np.ndarray,
    min_replicas: int = 1,
    slot_h: float = 1.0,
) -> np.ndarray:
    """CarbonScaler's greedy schedule: replicas per slot (0 = idle).

    Parameters
    ----------
    work
        Remaining work, in throughput units × hours.
    throughput, power
        thr(j), p(j) for j = 0..M (thr(0) = p(0) = 0); the same for every slot, or shape
        (slots, M + 1) for per-slot (e.g. per-DC) profiles.
    intensity
        Forecast carbon intensity of each slot (> 0).
    min_replicas
        m ≥ 1.
    slot_h
        Slot length (h).

    Raises
    ------
    PolicyError
        When even M replicas in every slot cannot finish the work (infeasible deadline).
    """
    ci = np.asarray(intensity, dtype=float)
    T = len(ci)
    thr = np.broadcast_to(np.asarray(throughput, dtype=float), (T, np.shape(throughput)[-1]))
    pw = np.broadcast_to(np.asarray(power, dtype=float), thr.shape)
    M = thr.shape[1] - 1
    m = int(min_replicas)
    if not 1 <= m <= M:
        raise PolicyError(f"min_replicas {m!r} must lie in 1..{M}")
    if (ci <= 0).any():
        raise PolicyError("carbon intensities must be > 0")
    if float(thr[:, M].sum()) * slot_h < work - 1e-12:
        raise PolicyError(
            f"infeasible deadline: {work!r} units of work, at most "
            f"{float(thr[:, M].sum()) * slot_h!r} before the deadline"
        )
    items: list[tuple[float, int, int]] = []
    for t in range(T):
        for j in range(m, M + 1):
            lo = 0 if j == m else j - 1
            d_thr = thr[t, j] - thr[t, lo]
            d_p = pw[t, j] - pw[t, lo]
            value = d_thr / (d_p * ci[t]) if d_p > 0 else np.inf
            items.append((value, t, j))
    # decreasing value; ties: earlier slot, fewer replicas
    items.sort(key=lambda it: (-it[0], it[1], it[2]))
    schedule = np.zeros(T, dtype=np.int64)
    taken = np.zeros(len(items), dtype=bool)
    done = 0.0
    while done < work - 1e-12:
        for i, (_, t, j) in enumerate(items):
            if taken[i]:
                continue
            if (j == m and schedule[t] == 0) or (schedule[t] >= m and j == schedule[t] + 1):
                taken[i] = True
                done += (thr[t, j] - thr[t, schedule[t]]) * slot_h
                schedule[t] = j
                break
        else:  # pragma: no cover - feasibility was checked above
            break
    return schedule


class CarbonScalerPolicy(Policy):
    """CarbonScaler (see the module docstring)."""

    name = "carbonscaler"
    temporal: ClassVar[bool] = True

    def __init__(self, slices: int = 10, min_slices: int = 1, elasticity: float = 1.0) -> None:
        if slices < 1 or not 1 <= min_slices <= slices or not 0 < elasticity <= 1:
            raise PolicyError(
                f"CarbonScaler needs slices >= 1, 1 <= min_slices <= slices and elasticity in "
                f"(0, 1]; got {slices!r}, {min_slices!r}, {elasticity!r}"
            )
        self.slices, self.min_slices, self.elasticity = int(slices), int(min_slices), elasticity

    def decide(self, step: StepJobs, ctx: PolicyContext) -> Decision:
        h = step.hour
        T = step.hours - h
        D = len(ctx.scenario.dcs)
        ts = TemporalStep.begin(ctx, step)
        led = ctx.ledger
        frac = (np.arange(self.slices + 1) / self.slices) ** self.elasticity
        for rows, n_t in deadline_groups(step):
            # work in ticks of the step's scarcest resource
            with led.lock:
                rem = led.capacity_ticks[h : h + n_t] - led.used_ticks[h : h + n_t]  # (n_t,D,R)
            use = step.usage_ticks[rows].sum(axis=0).astype(float)
            r = int(np.argmax(use / np.maximum(rem.sum(axis=(0, 1)), 1)))
            work = float(use[r])
            cells = n_t * D
            cap = rem[:, :, r].reshape(cells).astype(float)
            thr = cap[:, None] * frac[None, :]
            e_mean = step.energy_kwh[rows].mean(axis=0)  # per job at each DC
            per_unit = np.tile(e_mean * ctx.pue, n_t)
            pw = np.maximum(thr * per_unit[:, None], 1e-300)
            ci = ctx.carbon_forecast_kg_per_kwh[h : h + n_t].reshape(cells)
            ci = np.maximum(ci, 1e-3 * max(float(ci.max()), 1e-12))  # carbon-free cells: I > 0
            ok = cap > 0
            if not ok.any():
                continue
            try:
                sched = np.zeros(cells, dtype=np.int64)
                sched[ok] = carbonscaler_schedule(
                    min(work, float(cap[ok].sum())), thr[ok], pw[ok], ci[ok], self.min_slices
                )
            except PolicyError:
                sched = np.where(ok, self.slices, 0)
            value = np.where(sched > 0, 1.0 / (per_unit * ci), 0.0).reshape(n_t, D)
            key = np.full((len(rows), T, D), np.inf)
            key[:, :n_t, :] = np.where(value[None] > 0, -value[None], np.inf)
            ts.place_group(ctx, step, rows, key)  # schedule's cells full: argmin E·I in window
        return ts.decision()
