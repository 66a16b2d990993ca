"""The water budget of a rolling plan: window scenarios, load weights, least water, the rule.

The rule (``docs/rolling.md``), with S the committed span, Z_S its budget, R_w the budget left
when window w = [s, e) is planned, L the load weight and M the least water of hours:

    B_w = min(max(R_w · L[s, e) / L[s, S),  M[s, e)),  R_w − M[e, S))      (e < S)
    B_w = R_w                                                               (e = S)

The load share spreads the budget like the load; the floor M[s, e) keeps the window feasible and
the cap R_w − M[e, S) reserves the least water every later hour needs.  If Z_S ≥ M[0, S) (the
span is feasible with its budget) every window is feasible, and the committed total ≤ Z_S.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from greensched.errors import InfeasibleError
from greensched.scenario import Scenario, canonical_dataset
from greensched.scheduler.planner import PlanConfig

__all__ = [
    "WaterRule",
    "least_water_by_hour",
    "load_weights",
    "span_water_budget",
    "window_scenario",
]


def window_scenario(scen: Scenario, start: int, end: int, water_budget_l: float | None) -> Scenario:
    """Hours ``[start, end)`` of ``scen`` as a scenario of its own (hours renumbered from 0,
    ``start`` moved to the window's first hour, the given water budget)."""
    ds = scen.ds.isel(hour=slice(start, end)).assign_coords(
        hour=np.arange(end - start, dtype=np.int64)
    )
    coef = None
    if scen.coefficients is not None:
        coef = scen.coefficients.isel(hour=slice(start, end)).assign_coords(
            hour=np.arange(end - start, dtype=np.int64)
        )
    t0 = None
    if scen.start is not None:
        stamp = pd.Timestamp(scen.start)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        t0 = (stamp + pd.Timedelta(hours=start)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Scenario(
        name=scen.name,
        description=scen.description,
        hours=end - start,
        start=t0,
        water_budget_l=water_budget_l,
        weights=dict(scen.weights),
        ds=canonical_dataset(ds),
        coefficients=coef,
        source=scen.source,
        extra_meta=dict(scen.extra_meta),
        delay_model=scen.delay_model,
    )


def load_weights(scen: Scenario) -> np.ndarray:
    """Load weight L_t of every hour (litres): the water of an even split of the hour's IT
    energy over the DCs, Σ_{i,k} λ Σ_j e PUE (WUE/PUE + EWIF) / J."""
    ds = scen.ds
    factor = (ds["wue_l_per_kwh"] / ds["pue"] + ds["ewif_l_per_kwh"]) * ds["pue"]
    per_query = (scen.energy_kwh_per_query() * factor).mean("dc")  # (query_type, hour)
    litres = (ds["queries"] * per_query).sum(("area", "query_type"))
    return np.asarray(litres.transpose("hour").values, dtype=np.float64)


def span_water_budget(scen: Scenario, span_h: int) -> float | None:
    """Budget Z_S of the committed span: Z pro-rated by load weight (Z when S = T)."""
    if scen.water_budget_l is None:
        return None
    if span_h >= scen.hours:
        return float(scen.water_budget_l)
    w = load_weights(scen)
    total = float(w.sum())
    share = float(w[:span_h].sum()) / total if total > 0 else span_h / scen.hours
    return float(scen.water_budget_l) * share


def least_water_by_hour(
    scen: Scenario, config: PlanConfig | None = None, chunk_h: int = 24
) -> np.ndarray:
    """M_t: the least water (litres) hour t can be served with under every other Green-LLM row.

    The Green-LLM LP without a water budget, minimising its water Σ_{j,t} W_{j,t} instead of the
    cost; without the budget the hours do not interact, so one solve per ``chunk_h`` hours gives
    every hour's minimum.  Raises :class:`InfeasibleError` naming the hours that cannot be served
    even without a budget.
    """
    from greensched.scheduler.compiled import _Compiled, _load_backend
    from greensched.scheduler.greenllm import build_model

    cfg = config or PlanConfig()
    out = np.zeros(scen.hours)
    for a in range(0, scen.hours, chunk_h):
        b = min(a + chunk_h, scen.hours)
        sub = window_scenario(scen, a, b, None)
        gm = build_model(sub, delay=cfg.delay_options())
        comp = _Compiled(gm)
        backend = _load_backend(comp, cfg.solver, cfg.threads)
        backend.set_objective(comp.vector(gm.water_l.sum())[0])
        sol = backend.solve(cfg.time_limit_s)
        if not sol.status.is_ok or sol.x is None:
            raise InfeasibleError(
                f"hours {a}-{b - 1} cannot be served even without a water budget "
                f"(least-water LP ended {sol.status.value}); plan them on their own for the "
                "diagnosis"
            )
        water = comp.evaluate(gm.water_l, sol.x).sum("dc").transpose("hour")
        out[a:b] = np.maximum(water.values, 0.0)
    return out


class WaterRule:
    """Window budgets of the carried-forward, load-weighted rule (module docs).

    Parameters
    ----------
    budget_l
        Z_S, the span's budget.
    load
        Load weight L_t of every hour of the span.
    least
        Least water M_t of every hour of the span.
    """

    def __init__(self, budget_l: float, load: np.ndarray, least: np.ndarray) -> None:
        self.budget_l = float(budget_l)
        self.remaining_l = float(budget_l)
        self.span = len(load)
        self._load = np.concatenate([np.cumsum(load[::-1])[::-1], [0.0]])  # L[s, S)
        self._least = np.concatenate([np.cumsum(least[::-1])[::-1], [0.0]])  # M[s, S)

    @property
    def least_total_l(self) -> float:
        """M[0, S): the least water the span can be served with."""
        return float(self._least[0])

    def window_budget(self, start: int, end: int) -> float:
        """B_w of window [start, end) given the budget left."""
        r = self.remaining_l
        if end >= self.span:
            return max(0.0, r)
        total = float(self._load[start])
        share = (
            float(self._load[start] - self._load[end]) / total
            if total > 0
            else ((end - start) / (self.span - start))
        )
        floor = float(self._least[start] - self._least[end])
        cap = r - float(self._least[end])
        return max(0.0, min(max(r * share, floor), cap))

    def commit(self, water_l: float) -> None:
        """Book a window's committed water."""
        self.remaining_l -= float(water_l)
