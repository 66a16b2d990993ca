"""The twin executing a schedule: deferred jobs are held and run at their start hour.

A :class:`~greensched.scheduler.policies.Schedule` gives every job a DC and a start time
(arrival, or later for deferred batch jobs).  The twin runs each job in its *start* hour, so it
meets that hour's grid (price, carbon, renewables), that hour's queues and effective batches —
built from every job that runs in the hour, deferred or not — and its facility accounting.  A
job's response time is the time it was held plus the twin's service time.

Jobs the policy could not place (``dc = -1``) run on arrival at the DC nearest their area and
count as SLA violations (``dropped``).

SLA: an interactive job meets it when its service time is within ``sla_s``; a batch job when it
completes (start + service) by ``deadline_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from greensched.eval.twin import JobArrays, NoiseSource, Twin

__all__ = ["Execution", "execute_schedule"]


@dataclass
class Execution:
    """What the twin measured for a schedule (jobs-table order)."""

    dc: np.ndarray
    start_hour: np.ndarray
    start_s: np.ndarray
    energy_kwh: np.ndarray
    service_s: np.ndarray
    response_s: np.ndarray
    sla_met: np.ndarray
    dropped: np.ndarray
    carbon_kg: np.ndarray
    result: dict[str, Any]


def execute_schedule(
    twin: Twin,
    jobs: JobArrays,
    dc: np.ndarray,
    start_hour: np.ndarray,
    start_s: np.ndarray,
    *,
    deadline_s: np.ndarray,
    job_class: np.ndarray,
    noise: NoiseSource | None = None,
) -> Execution:
    """Run ``jobs`` at (``dc``, ``start_hour``, ``start_s``) through the twin (module docs)."""
    scen = twin.scenario
    dc = np.asarray(dc, dtype=np.int64).copy()
    start_hour = np.asarray(start_hour, dtype=np.int64).copy()
    start_s = np.asarray(start_s, dtype=float).copy()
    dropped = dc < 0
    if dropped.any():
        rtt = np.asarray(scen.ds["rtt_s"].transpose("area", "dc").values, dtype=float)
        dc[dropped] = rtt.argmin(axis=1)[jobs.area[dropped]]
        start_hour[dropped] = jobs.hour[dropped]
        start_s[dropped] = jobs.arrival_s[dropped]
    held = replace(jobs, hour=start_hour, arrival_s=start_s)
    res = twin.evaluate(held, dc, noise=noise)
    service = np.asarray(res["service_s"], dtype=float)
    response = (start_s - jobs.arrival_s) + service
    batch = np.asarray(job_class) == 1
    met = np.where(batch, start_s + service <= deadline_s, service <= jobs.sla_s) & ~dropped
    acc = res["account"]
    grid_per_it = acc.grid_per_it()
    theta = np.asarray(scen.ds["carbon_kg_per_kwh"].transpose("hour", "dc").values, dtype=float)
    carbon = res["energy_kwh"] * (theta * grid_per_it)[start_hour, dc]
    return Execution(dc, start_hour, start_s, np.asarray(res["energy_kwh"]), service, response,
                     met, dropped, carbon, res)
