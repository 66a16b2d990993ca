"""Exact, thread-safe capacity bookkeeping per (hour, dc, resource) in integer ticks."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from greensched.scenario import Scenario
from greensched.scheduler.assign.config import AssignError


class CapacityLedger:
    """Remaining capacity per (hour, dc, resource), shared and thread-safe.

    Capacities and usages are kept in integer *ticks* (``ticks_per_unit`` per resource unit):
    usages are rounded up and capacities down, so that sums are exact, a reservation never
    exceeds the true capacity, and the ledger's totals equal the sum of the accepted jobs' ticks
    exactly.  Every read-modify-write holds :attr:`lock` (re-entrant), so an HTTP service may
    share one ledger between threads; batch assigners hold it while they place an hour's jobs.

    Parameters
    ----------
    capacity
        Capacity in resource units per hour, dims ``(dc, resource)`` (the same every hour) or
        ``(dc, resource, hour)``; a DataArray (labels taken from it) or an array with ``dcs``
        and ``resources`` given.
    hours
        Number of hourly slots T.
    dcs, resources
        Labels when ``capacity`` is a bare array.
    ticks_per_unit
        Resolution of the bookkeeping (default 2**20 ticks per resource unit).
    """

    def __init__(
        self,
        capacity: xr.DataArray | np.ndarray,
        *,
        hours: int,
        dcs: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        ticks_per_unit: int = 2**20,
    ) -> None:
        if isinstance(capacity, xr.DataArray):
            dims = ("dc", "resource", "hour") if "hour" in capacity.dims else ("dc", "resource")
            cap_da = capacity.transpose(*dims)
            dcs = [str(v) for v in cap_da.indexes["dc"]]
            resources = [str(v) for v in cap_da.indexes["resource"]]
            arr = np.asarray(cap_da.values, dtype=float)
        else:
            arr = np.asarray(capacity, dtype=float)
            if dcs is None or resources is None:
                raise AssignError("CapacityLedger: give dcs and resources with a bare array")
        if int(hours) < 1:
            raise AssignError(f"CapacityLedger: hours must be >= 1, got {hours!r}")
        if arr.ndim == 2:
            arr = np.broadcast_to(arr[:, :, None], arr.shape + (int(hours),))
        if arr.shape != (len(dcs), len(resources), int(hours)):
            raise AssignError(
                f"CapacityLedger: capacity has shape {arr.shape}, expected "
                f"({len(dcs)} dcs, {len(resources)} resources, {hours} hours)"
            )
        if not np.all(np.isfinite(arr)) or (arr < 0).any():
            raise AssignError("CapacityLedger: capacities must be finite and >= 0")
        self.ticks_per_unit = int(ticks_per_unit)
        if float(arr.max(initial=0.0)) * self.ticks_per_unit > 2.0**62:
            raise AssignError(
                f"CapacityLedger: capacity {arr.max()!r} is too large for {ticks_per_unit} "
                "ticks per unit; pass a smaller ticks_per_unit"
            )
        self.dcs = list(map(str, dcs))
        self.resources = list(map(str, resources))
        self.hours = int(hours)
        self._dc_index = {d: i for i, d in enumerate(self.dcs)}
        # (hour, dc, resource) layout: one hour's block is contiguous.
        self.capacity_ticks = np.floor(arr.transpose(2, 0, 1) * self.ticks_per_unit).astype(
            np.int64
        )
        self.used_ticks = np.zeros_like(self.capacity_ticks)
        self.lock = threading.RLock()

    @classmethod
    def from_scenario(cls, scenario: Scenario, **kwargs: Any) -> CapacityLedger:
        """A ledger holding the scenario's ``capacity`` for each of its hours."""
        return cls(scenario.ds["capacity"], hours=scenario.hours, **kwargs)

    # -- conversions -------------------------------------------------------------------------
    def to_ticks(self, units: np.ndarray | Sequence[float]) -> np.ndarray:
        """Resource units → integer ticks, rounded up (a usage is never under-counted)."""
        u = np.asarray(units, dtype=float)
        if not np.all(np.isfinite(u)) or (u < 0).any():
            raise AssignError("resource usage must be finite and >= 0")
        scaled = u * self.ticks_per_unit
        # a hair below the next integer still rounds up; exact products stay exact
        return np.ceil(scaled - 1e-9 * np.maximum(1.0, scaled)).astype(np.int64)

    def dc_index(self, dc: int | str) -> int:
        """Position of a DC given by label or position."""
        if isinstance(dc, str):
            if dc not in self._dc_index:
                raise AssignError(f"unknown dc {dc!r}; the ledger has {', '.join(self.dcs)}")
            return self._dc_index[dc]
        i = int(dc)
        if not 0 <= i < len(self.dcs):
            raise AssignError(f"dc index {dc!r} out of range 0..{len(self.dcs) - 1}")
        return i

    def _hour(self, hour: int) -> int:
        h = int(hour)
        if not 0 <= h < self.hours:
            raise AssignError(f"hour {hour!r} out of range 0..{self.hours - 1}")
        return h

    # -- reading -----------------------------------------------------------------------------
    def remaining_ticks(self, hour: int) -> np.ndarray:
        """Copy of the remaining ticks of one hour, shape (dc, resource)."""
        h = self._hour(hour)
        with self.lock:
            return self.capacity_ticks[h] - self.used_ticks[h]

    def used_units(self) -> xr.DataArray:
        """Reserved resource units, dims (dc, resource, hour)."""
        with self.lock:
            used = self.used_ticks.transpose(1, 2, 0) / self.ticks_per_unit
        return self._labelled(used)

    def remaining_units(self) -> xr.DataArray:
        """Remaining resource units, dims (dc, resource, hour)."""
        with self.lock:
            rem = (self.capacity_ticks - self.used_ticks).transpose(1, 2, 0) / self.ticks_per_unit
        return self._labelled(rem)

    def _labelled(self, arr: np.ndarray) -> xr.DataArray:
        return xr.DataArray(
            arr,
            dims=("dc", "resource", "hour"),
            coords={
                "dc": np.asarray(self.dcs, dtype=object),
                "resource": np.asarray(self.resources, dtype=object),
                "hour": np.arange(self.hours, dtype=np.int64),
            },
        )

    def copy(self) -> CapacityLedger:
        """An independent ledger with the same capacities and reservations."""
        new = object.__new__(CapacityLedger)
        with self.lock:
            new.__dict__.update(self.__dict__)
            new.capacity_ticks = self.capacity_ticks.copy()
            new.used_ticks = self.used_ticks.copy()
        new.lock = threading.RLock()
        return new

    # -- changing ----------------------------------------------------------------------------
    def fits(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> bool:
        """Whether ``units`` (one value per resource) fit into the DC's remaining capacity."""
        h, d, t = self._hour(hour), self.dc_index(dc), self._ticks_vector(units)
        with self.lock:
            return bool(np.all(self.used_ticks[h, d] + t <= self.capacity_ticks[h, d]))

    def reserve(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> bool:
        """Reserve ``units`` at ``dc`` in ``hour`` if they fit; returns whether it did."""
        return self.reserve_ticks(hour, dc, self._ticks_vector(units))

    def reserve_ticks(self, hour: int, dc: int | str, ticks: np.ndarray) -> bool:
        """Like :meth:`reserve` with a usage already in ticks."""
        h, d = self._hour(hour), self.dc_index(dc)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            if np.all(self.used_ticks[h, d] + t <= self.capacity_ticks[h, d]):
                self.used_ticks[h, d] += t
                return True
            return False

    def reserve_first(self, hour: int, dc_order: Sequence[int], ticks: np.ndarray) -> int:
        """Reserve at the first DC of ``dc_order`` (positions) with room; -1 when none has."""
        h = self._hour(hour)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            used, cap = self.used_ticks[h], self.capacity_ticks[h]
            for d in dc_order:
                if np.all(used[d] + t <= cap[d]):
                    used[d] += t
                    return int(d)
        return -1

    def release(self, hour: int, dc: int | str, units: np.ndarray | Sequence[float]) -> None:
        """Give back a reservation made with :meth:`reserve` (same units)."""
        self.release_ticks(hour, dc, self._ticks_vector(units))

    def release_ticks(self, hour: int, dc: int | str, ticks: np.ndarray) -> None:
        """Like :meth:`release` with a usage in ticks."""
        h, d = self._hour(hour), self.dc_index(dc)
        t = np.asarray(ticks, dtype=np.int64)
        with self.lock:
            if np.any(self.used_ticks[h, d] < t):
                raise AssignError(
                    f"release at hour {h}, dc {self.dcs[d]!r} exceeds what is reserved "
                    f"({(self.used_ticks[h, d] / self.ticks_per_unit).tolist()} units)"
                )
            self.used_ticks[h, d] -= t

    def _ticks_vector(self, units: np.ndarray | Sequence[float]) -> np.ndarray:
        t = self.to_ticks(units)
        if t.shape != (len(self.resources),):
            raise AssignError(
                f"usage needs one value per resource ({', '.join(self.resources)}), got shape "
                f"{t.shape}"
            )
        return t
