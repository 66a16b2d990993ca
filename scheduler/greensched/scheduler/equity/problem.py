"""Inputs of equity-aware geographical load balancing (SE-GLB) and its configuration.

Source of the model: Li, Liu, Yang, Ren, "Towards Socially and Environmentally Responsible AI",
arXiv 2407.05176, eqs. (2)-(4) (``../shared/spec/equity-relocation.md``).

Sets: data centers ``dc`` (i), user regions ``region`` (j), models ``model`` (k), hours ``hour``
(t) and resources ``resource`` (r).  Every array of :class:`EquityProblem` is a numpy array whose
axes follow the order given in its field's comment; the label tuples name each axis.

Sign and unit conventions: all quantities are non-negative.  Energy is IT energy per request
(kWh); facility energy is ``PUE × IT``; carbon and water intensities are per *facility* kWh
(kg CO2-eq / kWh and litres / kWh).  Demand ``λ_{j,t}`` is requests in the hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from greensched.errors import GreenSchedError

__all__ = [
    "EnvForm",
    "EquityConfig",
    "EquityProblem",
    "parse_q",
]

#: Paper defaults (spec): water price 60 USD/m³, carbon price 1500 USD/t.
DEFAULT_MU_W_USD_PER_M3 = 60.0
DEFAULT_MU_C_USD_PER_T = 1500.0


class EnvForm(StrEnum):
    """How carbon and water enter the environmental equity term.

    ``combined``: g = ‖h‖_q with h_i = μ_c C_i + μ_w W_i (eq. 3 of the spec).
    ``separate``: g = ‖μ_c C‖_q + ‖μ_w W‖_q (the eGLB code's two norms; its dual has 2N entries).
    Both are the same for q = 1.
    """

    COMBINED = "combined"
    SEPARATE = "separate"


def parse_q(value: float | str) -> float:
    """Parse an Lq exponent: a number ≥ 1, or ``inf``/``∞``/``max``; returns a float (may be inf).

    Raises
    ------
    GreenSchedError
        If the value is not a number ≥ 1 or infinity.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "infinity", "∞", "max"):
            return math.inf
        try:
            q = float(text)
        except ValueError:
            raise GreenSchedError(f"q={value!r}: expected a number >= 1 or 'inf'") from None
    else:
        q = float(value)
    if not (q >= 1.0) or math.isnan(q):
        raise GreenSchedError(f"q={value!r}: expected a number >= 1 or 'inf'")
    return q


@dataclass
class EquityConfig:
    """Weights and norms of the SE-GLB objective (4a).

    Parameters
    ----------
    q_social
        Exponent of the social Lq term over regions, per hour (1 = no equity, inf = worst region).
    q_env
        Exponent of the environmental Lq term over data centers, over the horizon.
    mu_s_usd
        Weight (USD) of the social term: USD per unit of Lq-aggregated per-region average
        performance cost per hour.  The paper adds f_t unweighted; a USD weight makes its scale
        explicit (documented in docs/equity.md).  0 drops the performance term.
    mu_c_usd_per_t
        Carbon price μ_c (USD per tonne CO2-eq); paper default 1500.
    mu_w_usd_per_m3
        Water price μ_w (USD per m³); paper default 60.
    env_form
        :class:`EnvForm` (``combined`` = eq. 3; ``separate`` = eGLB's two norms).
    include_moving
        Add the moving cost Σ y m_{ij}.
    mean_scaled
        Divide each Lq term by n^{1/q} (n = regions or DCs): a power mean, so q = 1 is the
        average and q = ∞ the maximum, the AVG / MAX of the eGLB code, and raising q never
        lowers the term (False = the spec's plain norms, eqs. 2-3).
    """

    q_social: float = 2.0
    q_env: float = 2.0
    mu_s_usd: float = 1000.0
    mu_c_usd_per_t: float = DEFAULT_MU_C_USD_PER_T
    mu_w_usd_per_m3: float = DEFAULT_MU_W_USD_PER_M3
    env_form: EnvForm = EnvForm.COMBINED
    include_moving: bool = True
    mean_scaled: bool = False
    name: str = "SE-GLB"

    def __post_init__(self) -> None:
        self.q_social = parse_q(self.q_social)
        self.q_env = parse_q(self.q_env)
        for fname in ("mu_s_usd", "mu_c_usd_per_t", "mu_w_usd_per_m3"):
            value = float(getattr(self, fname))
            if not (value >= 0.0 and math.isfinite(value)):
                raise GreenSchedError(
                    f"EquityConfig.{fname}={value!r}: expected a finite number >= 0"
                )
            setattr(self, fname, value)
        try:
            self.env_form = EnvForm(self.env_form)
        except ValueError:
            raise GreenSchedError(
                f"EquityConfig.env_form={self.env_form!r}: expected 'combined' or 'separate'"
            ) from None

    def social_scale(self, n_regions: int) -> float:
        """μ_s times the power-mean factor n^{-1/q_s} (1 without ``mean_scaled``)."""
        return self.mu_s_usd * _mean_factor(n_regions, self.q_social, self.mean_scaled)

    def env_scale(self, n_dcs: int) -> float:
        """Power-mean factor n^{-1/q_e} of the environmental term (1 without ``mean_scaled``)."""
        return _mean_factor(n_dcs, self.q_env, self.mean_scaled)

    @property
    def is_lp(self) -> bool:
        """True when both exponents are 1 or ∞ (the model is a linear program)."""
        return all(q == 1.0 or math.isinf(q) for q in (self.q_social, self.q_env))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible view (inf written as the string 'inf')."""

        def q(v: float) -> float | str:
            return "inf" if math.isinf(v) else v

        return {
            "name": self.name,
            "q_social": q(self.q_social),
            "q_env": q(self.q_env),
            "mu_s_usd": self.mu_s_usd,
            "mu_c_usd_per_t": self.mu_c_usd_per_t,
            "mu_w_usd_per_m3": self.mu_w_usd_per_m3,
            "env_form": str(self.env_form),
            "include_moving": self.include_moving,
            "mean_scaled": self.mean_scaled,
        }


def _mean_factor(n: int, q: float, on: bool) -> float:
    if not on or math.isinf(q):
        return 1.0
    return float(n) ** (-1.0 / q)


def _arr(name: str, value: Any, shape: tuple[int, ...], *, dtype: Any = float) -> np.ndarray:
    a = np.asarray(value, dtype=dtype)
    if a.shape != shape:
        raise GreenSchedError(f"EquityProblem.{name}: shape {a.shape}, expected {shape}")
    if dtype is float:
        bad = ~np.isfinite(a) | (a < 0)
        if bad.any():
            idx = tuple(int(v) for v in np.argwhere(bad)[0])
            raise GreenSchedError(
                f"EquityProblem.{name}{list(idx)} = {float(a[idx])!r}: "
                "expected a finite number >= 0"
            )
    return a


@dataclass
class EquityProblem:
    """Data of one SE-GLB instance (all arrays non-negative; axis order in brackets).

    Attributes
    ----------
    dcs, regions, models, hours, resources
        Labels of the axes.
    price_usd_per_kwh
        [dc, hour] electricity price p_{i,t}.
    pue
        [dc] power usage effectiveness γ_i (≥ 1).
    energy_kwh_per_request
        [dc, model] IT energy e_{i,k} of one request of model k at DC i.
    perf_cost
        [model] performance-degradation cost s_k (0 for the best model).
    perf_score
        [model] the normalised benchmark score behind s_k (for the metrics; 0-100).
    carbon_kg_per_kwh
        [dc, hour] carbon intensity per facility kWh.
    water_l_per_kwh
        [dc, hour] water (on-site + off-site) per facility kWh.
    demand
        [region, hour] requests λ_{j,t}.
    resource_per_request
        [dc, model, resource] r_{i,k} of one request (e.g. GPU-seconds, IT kWh).
    capacity
        [dc, resource] M_i per hour.
    move_cost_usd_per_request
        [dc, region] m_{ij}.
    route_mask
        [dc, region] True where region j may be served at DC i (latency, sovereignty).
    model_mask
        [dc, model] True where DC i hosts model k.
    notes
        Free-text provenance of the data (assumptions), kept with results.
    """

    dcs: tuple[str, ...]
    regions: tuple[str, ...]
    models: tuple[str, ...]
    hours: tuple[str, ...]
    resources: tuple[str, ...]
    price_usd_per_kwh: np.ndarray
    pue: np.ndarray
    energy_kwh_per_request: np.ndarray
    perf_cost: np.ndarray
    perf_score: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    water_l_per_kwh: np.ndarray
    demand: np.ndarray
    resource_per_request: np.ndarray
    capacity: np.ndarray
    move_cost_usd_per_request: np.ndarray
    route_mask: np.ndarray
    model_mask: np.ndarray
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("dcs", "regions", "models", "hours", "resources"):
            labels = tuple(str(v) for v in getattr(self, name))
            if not labels:
                raise GreenSchedError(f"EquityProblem.{name}: empty, expected at least one label")
            if len(set(labels)) != len(labels):
                raise GreenSchedError(f"EquityProblem.{name}: duplicate labels in {labels!r}")
            setattr(self, name, labels)
        n, j, k, t, r = self.shape + (len(self.resources),)
        self.price_usd_per_kwh = _arr("price_usd_per_kwh", self.price_usd_per_kwh, (n, t))
        self.pue = _arr("pue", self.pue, (n,))
        if (self.pue < 1.0).any():
            i = int(np.argmax(self.pue < 1.0))
            raise GreenSchedError(
                f"EquityProblem.pue[{self.dcs[i]!r}] = {self.pue[i]}: expected >= 1"
            )
        self.energy_kwh_per_request = _arr(
            "energy_kwh_per_request", self.energy_kwh_per_request, (n, k)
        )
        self.perf_cost = _arr("perf_cost", self.perf_cost, (k,))
        self.perf_score = _arr("perf_score", self.perf_score, (k,))
        self.carbon_kg_per_kwh = _arr("carbon_kg_per_kwh", self.carbon_kg_per_kwh, (n, t))
        self.water_l_per_kwh = _arr("water_l_per_kwh", self.water_l_per_kwh, (n, t))
        self.demand = _arr("demand", self.demand, (j, t))
        self.resource_per_request = _arr(
            "resource_per_request", self.resource_per_request, (n, k, r)
        )
        self.capacity = _arr("capacity", self.capacity, (n, r))
        self.move_cost_usd_per_request = _arr(
            "move_cost_usd_per_request", self.move_cost_usd_per_request, (n, j)
        )
        self.route_mask = _arr("route_mask", self.route_mask, (n, j), dtype=bool)
        self.model_mask = _arr("model_mask", self.model_mask, (n, k), dtype=bool)
        reach = self.allowed.any(axis=(0, 2))
        for jj in np.flatnonzero(~reach & (self.demand.sum(axis=1) > 0)):
            raise GreenSchedError(
                f"EquityProblem.route_mask/model_mask: region {self.regions[jj]!r} has demand but "
                "no (dc, model) it may use; expected at least one allowed pair"
            )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(dcs, regions, models, hours)."""
        return len(self.dcs), len(self.regions), len(self.models), len(self.hours)

    @property
    def allowed(self) -> np.ndarray:
        """[dc, region, model] True where y^k_{i,j} may be positive."""
        return self.route_mask[:, :, None] & self.model_mask[:, None, :]

    def facility_kwh_per_request(self) -> np.ndarray:
        """[dc, model] PUE_i × e_{i,k}."""
        return self.pue[:, None] * self.energy_kwh_per_request

    def window(self, start: int, stop: int) -> EquityProblem:
        """The same problem restricted to hours ``start:stop`` (for online, hour-by-hour use)."""
        if not (0 <= start < stop <= len(self.hours)):
            raise GreenSchedError(
                f"EquityProblem.window({start}, {stop}): expected 0 <= start < stop <= "
                f"{len(self.hours)}"
            )
        sl = slice(start, stop)
        return EquityProblem(
            dcs=self.dcs,
            regions=self.regions,
            models=self.models,
            hours=self.hours[sl],
            resources=self.resources,
            price_usd_per_kwh=self.price_usd_per_kwh[:, sl],
            pue=self.pue,
            energy_kwh_per_request=self.energy_kwh_per_request,
            perf_cost=self.perf_cost,
            perf_score=self.perf_score,
            carbon_kg_per_kwh=self.carbon_kg_per_kwh[:, sl],
            water_l_per_kwh=self.water_l_per_kwh[:, sl],
            demand=self.demand[:, sl],
            resource_per_request=self.resource_per_request,
            capacity=self.capacity,
            move_cost_usd_per_request=self.move_cost_usd_per_request,
            route_mask=self.route_mask,
            model_mask=self.model_mask,
            notes=dict(self.notes),
        )
