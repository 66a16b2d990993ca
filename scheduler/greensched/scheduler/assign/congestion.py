"""Pool congestion for greedy scores in ``per_query`` scenarios (docs/delay-model.md).

The greedy assigner charges a job σ_d ρ_k W'(load_{d,k}) s_{d,k} at DC d: the queueing seconds its
service adds to the (dc, query_type) pool, with the same M/G/c wait as the planner and the twin
(:func:`greensched.queueing.marginal_wait`) and the planner's default pool slots
(:func:`greensched.queueing.default_pool_slots`).  Loads are the pools' busy seconds committed so
far, s_{d,k} the scenario's processing time per query.
"""

from __future__ import annotations

import numpy as np

from greensched.queueing import default_pool_slots, marginal_wait
from greensched.scenario import Scenario

__all__ = ["PoolCongestion"]

#: Marginal waits below this (s per busy s) cannot change a choice: the hour is not chunked.
NEGLIGIBLE = 1e-9


class PoolCongestion:
    """Busy seconds per (hour, dc, query_type) pool and the marginal wait they imply."""

    def __init__(self, scenario: Scenario, dcs: list[str]) -> None:
        self.slots = default_pool_slots(scenario).sel(dc=dcs).values.astype(float)  # (D, K)
        self.proc_s = (
            scenario.proc_delay_s_per_query()
            .sel(dc=dcs)
            .transpose("hour", "dc", "query_type")
            .values.astype(float)
        )  # (H, D, K)
        self.load_s = np.zeros_like(self.proc_s)

    def can_queue(self, h: int, k: np.ndarray) -> bool:
        """Could jobs of types ``k`` queue anywhere in hour h (all of a type in one pool)?"""
        extra = np.bincount(k, minlength=self.proc_s.shape[2])[None, :] * self.proc_s[h]
        return bool((marginal_wait(self.load_s[h] + extra, self.slots) >= NEGLIGIBLE).any())

    def extra_s(self, h: int, k: np.ndarray) -> np.ndarray:
        """W'(load_{d,k}) s_{d,k} for jobs of types ``k`` at every DC, shape (m, D) (s)."""
        slope = marginal_wait(self.load_s[h], self.slots)  # (D, K)
        return np.asarray((slope * self.proc_s[h])[:, k].T)

    def commit(self, h: int, d: np.ndarray, k: np.ndarray) -> None:
        """Add placed jobs (DC ``d``, type ``k``) to their pools' busy seconds."""
        np.add.at(self.load_s[h], (d, k), self.proc_s[h, d, k])
