"""The digital twin: ground-truth energy, service time and facility accounting of jobs at DCs.

Physics (``mode="physics"``, the default)
==========================================

Per-job IT energy and GPU time
    The fitted :class:`~greensched.eval.energy_model.EnergyModel` (measurements of Wilkins et al.,
    arXiv 2407.04014, batch 1 *without* a KV cache) gives, for a (model, GPU), the cost of one
    forward pass over ``L`` tokens, ``f(L) = a0 + a1 L + a2 L**2`` (energy in J, time in s), as the
    model's own one-step prediction ``f(L) = E(L, 1) - E(0, 0)``, and a fixed per-request part
    ``c0 = E(0, 0)``.  The twin represents a realistic server — continuous batching with a KV
    cache (vLLM, Orca) — with that per-pass cost (``serving="kv_cache"``):

    * prefill: one pass over the prompt, ``f(tin)``; it emits the first output token;
    * each further decode step ``i = 1 .. tout-1`` processes one new token attending to the
      ``L = tin + i`` cached positions: ``a0 + a1 + a2 L`` (the ``L**2`` attention term of a full
      pass shrinks to one query row);
    * the decode steps share the GPU with the other sequences of the batch: per-sequence energy
      is multiplied by the ML.ENERGY v3 batch factor of energy per token and decode time by its
      inter-token-latency factor (``EnergyModel`` batch factors), evaluated at the replica's
      *effective* batch (below); prefill is taken at batch 1.

    ``serving="no_cache"`` instead replays the measured regime (every step re-processes the whole
    context; energy super-linear in output tokens) with the same batch factors on the decode steps.
    Model size and GPU enter through the energy model's ML.ENERGY / datasheet factors.

Queueing (utilisation-dependent)
    Each (dc, query_type) is served by ``replicas × batch_size`` sequence *slots*
    (:mod:`greensched.eval.fleet`); a request waits only when every slot is busy — continuous
    batching admits a new sequence whenever one finishes.  Per (dc, query_type, hour) the twin
    uses the **M/G/c** queue in the Allen–Cunneen approximation: the Erlang-C waiting probability
    ``C(c, a)`` of M/M/c with ``c`` slots and offered load ``a = λ E[S]`` Erlangs, and mean wait
    ``W = C(c, a) E[S] / (c - a) · (1 + cs²) / 2``, where ``cs²`` is the squared coefficient of
    variation of the slot-holding times of the hour's jobs (heavy-tailed output lengths make
    ``cs² > 1``).  Erlang C is the standard closed form for a multi-server queue with Poisson
    arrivals; Allen–Cunneen is the usual correction for general service times (exact for
    exponential ones).  The effective batch ``x`` (busy slots per replica) and the load solve
    ``x = clip((P + Q φ_T(x)) / R, 1, B)`` with ``P``, ``Q`` the prefill and batch-1 decode work of
    the hour (Erlangs) and ``φ_T`` the latency factor: higher load → larger batches → cheaper
    energy per sequence but slower decoding.  Above ``ρ = a / c ≥ 0.98`` the stationary wait is
    taken at 0.98 and, for ``ρ > 1``, a job arriving ``τ`` s into the hour also waits the fluid
    backlog ``(ρ - 1) τ`` (the backlog is not carried into the next hour).

Service time
    ``service_s = wait + prefill + decode + network`` with ``network = rtt_s[area, dc] +
    token_size[hour, area, type] · (tin + tout) / bandwidth[area, dc]`` (the scenario's RTT and
    transmission quotient, as in the planner; for the letter's scenario that quotient is the
    authors' unconverted KB/Mbps, see its README).

Noise (``noise=True``)
    Multiplicative, mean-one lognormal factors on per-job energy (σ = :data:`ENERGY_SIGMA`) and
    on prefill + decode time (σ = :data:`RUNTIME_SIGMA`), from the measured repeat noise of
    identical runs (1.9 % and 1.3 % mean absolute deviation from the median of the repeats over
    the 1956 fitted runs; σ = MAD·√(π/2); ``reports/twin_energy_fit.md``), and a random wait: with
    probability ``C`` an exponential wait with mean ``W / C``, else none (the M/M/c waiting-time
    law, mean ``W``).  Draws are made for every (job, DC) from the seed, so the same jobs and seed
    give the same draws under every policy (common random numbers).  ``noise=False`` uses the
    means.

``mode="coefficients"``
    Per-job energy is ``scenario.energy_kwh_per_query()`` of its (dc, type, hour), processing time
    ``scenario.proc_delay_s_per_query()``, no queueing, and the network term uses the type's mean
    tokens: the per-query values of the planner, so that the facility totals of a plan's allocation
    equal the planner's (:func:`evaluate_allocation`).

Facility accounting (:func:`facility_accounting`, as in the planner)
    facility = PUE · IT; renewables used first; grid = min(max(0, facility − renewables), grid
    cap) with the excess reported as ``grid_shortfall_kwh``; carbon = θ · grid; water = (WUE / PUE
    + EWIF) · facility; energy cost = price · grid; carbon cost = δ · θ · grid.  A job's share of
    its DC-hour's grid energy, carbon and cost is proportional to its IT energy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from greensched.eval.energy_model import EnergyModel
from greensched.eval.fleet import Fleet, fleet_for
from scipy.special import gammaincc, gammaln, ndtri

from greensched.errors import GreenSchedError
from greensched.jobs import validate_jobs
from greensched.scenario import Scenario

__all__ = [
    "ENERGY_SIGMA",
    "MODES",
    "OVERLOAD_RHO",
    "RUNTIME_SIGMA",
    "SERVING",
    "TARGET_UTILIZATION",
    "FacilityAccount",
    "JobArrays",
    "QueueState",
    "Twin",
    "encode_jobs",
    "erlang_c",
    "evaluate_allocation",
    "facility_accounting",
    "NoiseSource",
    "mgc_wait_s",
]

J_PER_KWH = 3.6e6
#: Mean absolute deviation of repeated identical runs from their median, over the 1956 runs used
#: for the fit (energy_inference data; reports/twin_energy_fit.md): energy 1.9 %, runtime 1.3 %.
ENERGY_REPEAT_MAD = 0.019
RUNTIME_REPEAT_MAD = 0.013
#: Lognormal σ of the multiplicative noise: MAD · √(π/2) (MAD of a normal is σ·√(2/π)).
ENERGY_SIGMA = ENERGY_REPEAT_MAD * math.sqrt(math.pi / 2.0)
RUNTIME_SIGMA = RUNTIME_REPEAT_MAD * math.sqrt(math.pi / 2.0)
#: Utilisation of the slots at which auto-sized replicas serve the scenario's resource capacity.
TARGET_UTILIZATION = 0.7
#: Stationary queueing is evaluated at most at this utilisation; beyond 1 the fluid backlog adds.
OVERLOAD_RHO = 0.98
SERVING = ("kv_cache", "no_cache")
MODES = ("physics", "coefficients")
_PROBE_L = 1024.0
_FIXED_POINT_ITERATIONS = 40


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


def mgc_wait_s(servers: Any, load: Any, mean_service_s: Any, cs2: Any) -> tuple[
    np.ndarray, np.ndarray
]:
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


# ---------------------------------------------------------------------------------------------
# facility accounting


@dataclass
class FacilityAccount:
    """Facility accounting per (hour, dc); every array has shape (hours, dcs).

    Attributes are in kWh (energy), kg (carbon), l (water) and USD (costs).
    """

    it_kwh: np.ndarray
    facility_kwh: np.ndarray
    renewable_used_kwh: np.ndarray
    grid_kwh: np.ndarray
    grid_shortfall_kwh: np.ndarray
    carbon_kg: np.ndarray
    water_l: np.ndarray
    energy_usd: np.ndarray
    carbon_usd: np.ndarray

    def grid_per_it(self) -> np.ndarray:
        """Grid kWh bought per IT kWh in each (hour, dc) (0 where nothing ran)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.it_kwh > 0, self.grid_kwh / np.where(self.it_kwh > 0,
                                                                       self.it_kwh, 1.0), 0.0)

    def totals(self) -> dict[str, float]:
        """Sums over hours and DCs."""
        return {
            "it_kwh": float(self.it_kwh.sum()),
            "facility_kwh": float(self.facility_kwh.sum()),
            "renewable_used_kwh": float(self.renewable_used_kwh.sum()),
            "grid_kwh": float(self.grid_kwh.sum()),
            "grid_shortfall_kwh": float(self.grid_shortfall_kwh.sum()),
            "carbon_kg": float(self.carbon_kg.sum()),
            "water_l": float(self.water_l.sum()),
            "energy_usd": float(self.energy_usd.sum()),
            "carbon_usd": float(self.carbon_usd.sum()),
        }

    def frame(self, scenario: Scenario) -> pd.DataFrame:
        """Per (hour, dc) table like the planner's ``dc_hourly.csv`` plus shortfall and costs."""
        H, D = self.it_kwh.shape
        return pd.DataFrame(
            {
                "hour": np.repeat(np.arange(H), D),
                "dc": np.tile(np.asarray(scenario.dcs, dtype=object), H),
                "it_kw": self.it_kwh.ravel(),
                "facility_kw": self.facility_kwh.ravel(),
                "grid_kw": self.grid_kwh.ravel(),
                "renewable_used_kw": self.renewable_used_kwh.ravel(),
                "grid_shortfall_kw": self.grid_shortfall_kwh.ravel(),
                "water_l": self.water_l.ravel(),
                "carbon_kg": self.carbon_kg.ravel(),
                "energy_usd": self.energy_usd.ravel(),
                "carbon_usd": self.carbon_usd.ravel(),
            }
        )


def _hd(scenario: Scenario, name: str) -> np.ndarray:
    return np.asarray(scenario.ds[name].transpose("hour", "dc").values, dtype=np.float64)


def facility_accounting(scenario: Scenario, it_kwh: np.ndarray) -> FacilityAccount:
    """Facility energy, grid purchase, carbon, water and cost from IT energy per (hour, dc).

    Same equations as the planner (shared/spec/green-llm-model.md): P^d = PUE · P^c; on-site
    renewables P^w are used first; grid P^g = max(0, P^d − P^w), capped at P^max (the excess is
    ``grid_shortfall_kwh``, a supply the site does not have); carbon = θ · P^g; water =
    (WUE / PUE + EWIF) · P^d; energy cost = c · P^g; carbon cost = δ · θ · P^g.
    """
    it = np.asarray(it_kwh, dtype=np.float64)
    H, D = scenario.hours, len(scenario.dcs)
    if it.shape != (H, D):
        raise GreenSchedError(f"it_kwh has shape {it.shape}; expected (hours, dcs) = {(H, D)}")
    pue = np.asarray(scenario.ds["pue"].values, dtype=np.float64)[None, :]
    facility = it * pue
    ren = _hd(scenario, "renewable_kw")
    cap = _hd(scenario, "grid_cap_kw")
    need = np.maximum(facility - ren, 0.0)
    grid = np.minimum(need, cap)
    theta = _hd(scenario, "carbon_kg_per_kwh")
    delta = np.asarray(scenario.ds["carbon_price_usd_per_kg"].values, dtype=np.float64)[None, :]
    water_f = _hd(scenario, "wue_l_per_kwh") / pue + _hd(scenario, "ewif_l_per_kwh")
    carbon = theta * grid
    return FacilityAccount(
        it_kwh=it,
        facility_kwh=facility,
        renewable_used_kwh=np.minimum(facility, ren),
        grid_kwh=grid,
        grid_shortfall_kwh=need - grid,
        carbon_kg=carbon,
        water_l=water_f * facility,
        energy_usd=_hd(scenario, "price_usd_per_kwh") * grid,
        carbon_usd=delta * carbon,
    )


# ---------------------------------------------------------------------------------------------
# jobs as arrays


@dataclass
class JobArrays:
    """A validated jobs table as integer codes and numbers (one entry per job)."""

    job_id: Any
    hour: np.ndarray
    area: np.ndarray
    qtype: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    sla_s: np.ndarray
    arrival_s: np.ndarray
    weight: np.ndarray
    frame: pd.DataFrame | None = None

    @property
    def n(self) -> int:
        return len(self.hour)


def _is_valid_frame(jobs: pd.DataFrame) -> bool:
    need = ("job_id", "arrival_s", "hour", "area", "query_type", "input_tokens", "sla_s")
    if any(c not in jobs.columns for c in need):
        return False
    return bool(
        jobs["hour"].dtype.kind == "i"
        and jobs["input_tokens"].dtype.kind == "i"
        and jobs["arrival_s"].dtype.kind == "f"
        and jobs["sla_s"].dtype.kind == "f"
        and jobs.attrs.get("greensched_validated", False)
    )


def _codes(column: pd.Series, labels: list[str]) -> np.ndarray:
    """Positions of a column's values in ``labels`` (-1 when unknown), via factorize."""
    codes, uniques = pd.factorize(column)
    pos = pd.Index(labels).get_indexer(pd.Index(uniques).astype(str))
    pos = np.append(pos, -1)  # factorize's -1 (missing) maps to -1
    return pos[codes]


def encode_jobs(scenario: Scenario, jobs: pd.DataFrame) -> JobArrays:
    """Validate a jobs table (:func:`greensched.jobs.validate_jobs`) and code it as arrays.

    Jobs without ``output_tokens`` get their query type's ``output_tokens`` from the scenario.
    Tables produced by :mod:`greensched.eval.traces` are marked as validated and not re-checked.
    """
    if not _is_valid_frame(jobs):
        jobs = validate_jobs(jobs, scenario)
    area = _codes(jobs["area"], scenario.areas)
    qtype = _codes(jobs["query_type"], scenario.query_types)
    if (area < 0).any() or (qtype < 0).any():
        jobs = validate_jobs(jobs, scenario)  # raises with file/line/column
    hour = jobs["hour"].to_numpy(dtype=np.int64)
    if ((hour < 0) | (hour >= scenario.hours)).any():
        jobs = validate_jobs(jobs, scenario)
    f = np.asarray(scenario.ds["output_tokens"].values, dtype=np.float64)
    if "output_tokens" in jobs.columns:
        out = pd.to_numeric(jobs["output_tokens"], errors="coerce").to_numpy(dtype=np.float64)
        out = np.where(np.isfinite(out), out, np.round(f[qtype]))
    else:
        out = np.round(f[qtype])
    weight = (
        jobs["weight"].to_numpy(dtype=np.float64)
        if "weight" in jobs.columns
        else np.ones(len(jobs))
    )
    return JobArrays(
        job_id=jobs["job_id"].array,
        hour=hour,
        area=area.astype(np.int64),
        qtype=qtype.astype(np.int64),
        input_tokens=jobs["input_tokens"].to_numpy(dtype=np.float64),
        output_tokens=out,
        sla_s=jobs["sla_s"].to_numpy(dtype=np.float64),
        arrival_s=jobs["arrival_s"].to_numpy(dtype=np.float64),
        weight=weight,
        frame=jobs,
    )


# ---------------------------------------------------------------------------------------------
# the twin


@dataclass
class QueueState:
    """Queue of every (hour, dc, query_type) cell; arrays of shape (hours, dcs, types).

    Attributes
    ----------
    jobs
        Jobs (queries) in the cell.
    slots
        Servers c = replicas · batch_size.
    load
        Offered load a (Erlangs, time-average busy slots).
    utilization
        ρ = a / c (may exceed 1: overload).
    batch
        Effective batch x (busy slots per replica, 1..batch_size).
    wait_s, p_wait
        Stationary mean wait (s) and waiting probability (M/G/c, Allen–Cunneen).
    energy_factor, latency_factor
        Batch factors on decode energy and decode time at the effective batch.
    """

    jobs: np.ndarray
    slots: np.ndarray
    load: np.ndarray
    utilization: np.ndarray
    batch: np.ndarray
    wait_s: np.ndarray
    p_wait: np.ndarray
    energy_factor: np.ndarray
    latency_factor: np.ndarray


@dataclass
class _Costs:
    """Per-job batch-1 costs split into request constant, prefill and decode."""

    energy_fixed_j: np.ndarray
    energy_decode_j: np.ndarray
    time_fixed_s: np.ndarray
    time_decode_s: np.ndarray


@dataclass
class Twin:
    """Ground-truth model of a scenario's data centers (see the module docstring).

    Parameters
    ----------
    scenario
        The scenario (prices, carbon, PUE, network, capacities, demand).
    fleet
        Serving fleet; ``None``: ``fleet.csv`` beside the scenario, else the defaults.
    energy_model
        Fitted energy model; ``None``: :meth:`EnergyModel.load_default`.
    mode
        ``"physics"`` or ``"coefficients"``.
    serving
        ``"kv_cache"`` (continuous batching with a KV cache) or ``"no_cache"`` (as measured).
    target_utilization
        Slot utilisation at which ``auto`` replicas serve the scenario's resource capacity.
    energy_sigma, runtime_sigma
        Lognormal σ of the multiplicative noise.
    """

    scenario: Scenario
    fleet: Fleet | None = None
    energy_model: EnergyModel | None = None
    mode: str = "physics"
    serving: str = "kv_cache"
    target_utilization: float = TARGET_UTILIZATION
    energy_sigma: float = ENERGY_SIGMA
    runtime_sigma: float = RUNTIME_SIGMA

    coef_: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    fleet_: Fleet = field(init=False, repr=False)
    replicas_: np.ndarray = field(init=False, repr=False)
    batch_size_: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GreenSchedError(f"twin mode {self.mode!r} is not known; expected {MODES}")
        if self.serving not in SERVING:
            raise GreenSchedError(f"serving {self.serving!r} is not known; expected {SERVING}")
        if not (0 < self.target_utilization <= 1):
            raise GreenSchedError("target_utilization must lie in (0, 1]")
        if self.energy_sigma < 0 or self.runtime_sigma < 0:
            raise GreenSchedError("noise sigmas must be >= 0")
        scen = self.scenario
        self.energy_model = self.energy_model or EnergyModel.load_default()
        fleet = self.fleet if self.fleet is not None else fleet_for(scen)
        arrays = fleet.arrays(scen)
        self._extract_costs(arrays)
        self.batch_size_ = arrays["batch_size"].astype(np.float64)
        replicas = arrays["replicas"].astype(np.float64)
        auto = replicas <= 0
        if auto.any():
            sized = self._auto_replicas()
            replicas = np.where(auto, sized, replicas)
            fleet = fleet.with_replicas(sized.astype(np.int64), scen)
        self.replicas_ = replicas
        self.fleet_ = fleet
        ds = scen.ds
        self._rtt = np.asarray(ds["rtt_s"].transpose("area", "dc").values, dtype=np.float64)
        bw = np.asarray(ds["bandwidth"].transpose("area", "dc").values, dtype=np.float64)
        self._inv_bw = 1.0 / bw
        self._token_size = np.asarray(
            ds["token_size"].transpose("hour", "area", "query_type").values, dtype=np.float64
        )
        self._mean_in = np.asarray(ds["input_tokens"].values, dtype=np.float64)
        self._mean_out = np.asarray(ds["output_tokens"].values, dtype=np.float64)
        if self.mode == "coefficients":
            self._coef_energy_kwh = np.asarray(
                scen.energy_kwh_per_query().transpose("hour", "dc", "query_type").values,
                dtype=np.float64,
            )
            self._coef_proc_s = np.asarray(
                scen.proc_delay_s_per_query().transpose("hour", "dc", "query_type").values,
                dtype=np.float64,
            )

    # -- per-pass costs from the energy model ---------------------------------------------------
    def _extract_costs(self, arrays: dict[str, np.ndarray]) -> None:
        """a0, a1, a2 (per-pass cost) and c0 (per request) for energy and time, shape (D, K)."""
        em = self.energy_model
        assert em is not None
        shape = arrays["params_b"].shape
        names = ("e_c0", "e_a0", "e_a1", "e_a2", "t_c0", "t_a0", "t_a1", "t_a2")
        coef = {n: np.zeros(shape) for n in names}
        tin = np.array([0.0, 0.0, _PROBE_L, 2 * _PROBE_L])
        tout = np.array([0.0, 1.0, 1.0, 1.0])
        cache: dict[tuple[float, str], tuple[np.ndarray, np.ndarray]] = {}
        for j in range(shape[0]):
            for k in range(shape[1]):
                key = (float(arrays["params_b"][j, k]), str(arrays["gpu"][j, k]))
                if key not in cache:
                    try:
                        e = em.predict_energy_j(tin, tout, model=key[0], gpu=key[1])
                        t = em.predict_runtime_s(tin, tout, model=key[0], gpu=key[1])
                    except GreenSchedError as exc:
                        raise GreenSchedError(
                            f"fleet row dc {j}, query_type {k}: {exc}"
                        ) from exc
                    cache[key] = (np.asarray(e, dtype=float), np.asarray(t, dtype=float))
                for prefix, v in zip(("e", "t"), cache[key], strict=True):
                    c0 = v[0]
                    f0, f1, f2 = v[1] - c0, v[2] - c0, v[3] - c0
                    a2 = (f2 - 2.0 * f1 + f0) / (2.0 * _PROBE_L**2)
                    a1 = (f1 - f0) / _PROBE_L - _PROBE_L * a2
                    coef[f"{prefix}_c0"][j, k] = c0
                    coef[f"{prefix}_a0"][j, k] = f0
                    coef[f"{prefix}_a1"][j, k] = max(a1, 0.0)
                    coef[f"{prefix}_a2"][j, k] = max(a2, 0.0)
        self.coef_ = coef

    def batch_factors(self, batch: Any) -> tuple[np.ndarray, np.ndarray]:
        """(energy, latency) factors of the decode steps at effective batch ``batch`` (≥ 1)."""
        em = self.energy_model
        assert em is not None
        b = np.maximum(np.asarray(batch, dtype=np.float64), 1.0)
        one = np.ones_like(b)
        e1 = float(em.predict_energy_j(1.0, 1.0, batch_size=1.0))
        t1 = float(em.predict_runtime_s(1.0, 1.0, batch_size=1.0))
        fe = np.asarray(em.predict_energy_j(one, one, batch_size=b), dtype=np.float64) / e1
        ft = np.asarray(em.predict_runtime_s(one, one, batch_size=b), dtype=np.float64) / t1
        return fe, ft

    def _costs(self, idx: np.ndarray | tuple[np.ndarray, ...], tin: np.ndarray,
               tout: np.ndarray) -> _Costs:
        """Batch-1 costs for coefficient cells ``idx`` (into (D, K) arrays) and token counts."""
        c = self.coef_
        m = np.maximum(tout - 1.0, 0.0)
        out: dict[str, np.ndarray] = {}
        for p in ("e", "t"):
            a0, a1, a2 = c[f"{p}_a0"][idx], c[f"{p}_a1"][idx], c[f"{p}_a2"][idx]
            prefill = a0 + tin * (a1 + a2 * tin)
            if self.serving == "kv_cache":
                decode = m * (a0 + a1) + a2 * (m * tin + 0.5 * m * (m + 1.0))
            else:
                # the measured regime: step i re-processes L_i = tin + i, i = 1..m
                s1 = m * tin + 0.5 * m * (m + 1.0)
                s2 = m * tin * tin + tin * m * (m + 1.0) + m * (m + 1.0) * (2.0 * m + 1.0) / 6.0
                decode = a0 * m + a1 * s1 + a2 * s2
            out[f"{p}_fixed"] = c[f"{p}_c0"][idx] + prefill
            out[f"{p}_decode"] = decode
        return _Costs(out["e_fixed"], out["e_decode"], out["t_fixed"], out["t_decode"])

    # -- replica sizing -------------------------------------------------------------------------
    def _auto_replicas(self) -> np.ndarray:
        """Replicas per (dc, type) so that a type's pool absorbs the DC's whole capacity at ρ*.

        DC j can serve at most N_{j,k} = min_r C_{j,r} / (α_{k,r} (h_k + f_k)) type-k queries per
        hour within its resource capacity (the planner's constraint, with the type's mean tokens).
        At full batches such a query holds a slot for S_{j,k} = prefill + decode · φ_T(batch)
        seconds, so the pool needs a = N_{j,k} S_{j,k} / 3600 busy slots and gets
        R = ceil(a / (ρ* · batch_size)) replicas (at least 1).  Any allocation that respects the
        scenario's capacity therefore loads every pool to at most ρ* (for mean-sized jobs);
        lighter loads batch less and cost more energy per job.
        """
        ds = self.scenario.ds
        tokens = np.asarray((ds["input_tokens"] + ds["output_tokens"]).values, dtype=np.float64)
        alpha = np.asarray(ds["units_per_token"].transpose("query_type", "resource").values,
                           dtype=np.float64)
        cap = np.asarray(ds["capacity"].transpose("dc", "resource").values, dtype=np.float64)
        use = alpha * tokens[:, None]  # (K, R) units per query
        with np.errstate(divide="ignore", invalid="ignore"):
            n_jk = np.where(use[None, :, :] > 0, cap[:, None, :] / use[None, :, :], np.inf)
        n_jk = n_jk.min(axis=2)  # (D, K)
        peak = float(ds["queries"].sum(["area", "query_type"]).max())
        n_jk = np.where(np.isfinite(n_jk), n_jk, peak)
        D, K = self.batch_size_.shape
        jj, kk = np.meshgrid(np.arange(D), np.arange(K), indexing="ij")
        h = np.broadcast_to(np.asarray(ds["input_tokens"].values, dtype=float), (D, K))
        f = np.broadcast_to(np.asarray(ds["output_tokens"].values, dtype=float), (D, K))
        cost = self._costs((jj, kk), h, f)
        _, ft = self.batch_factors(self.batch_size_)
        slot_s = cost.time_fixed_s + cost.time_decode_s * ft
        load = n_jk * slot_s / 3600.0
        reps = np.ceil(load / (self.target_utilization * self.batch_size_))
        return np.maximum(reps, 1.0)

    # -- queue state ---------------------------------------------------------------------------
    def queue_state(self, sums: Mapping[str, np.ndarray]) -> QueueState:
        """Queue of every cell from aggregated job sums, each of shape (H, D, K).

        ``sums`` holds ``n`` (jobs), ``p`` and ``q`` (Σ fixed and batch-1 decode time, s) and
        ``pp``, ``pq``, ``qq`` (Σ of their squares / product, s²).
        """
        n, p, q = sums["n"], sums["p"], sums["q"]
        R = self.replicas_[None, :, :]
        B = self.batch_size_[None, :, :]
        P, Q = p / 3600.0, q / 3600.0
        x = np.ones_like(P)
        for _ in range(_FIXED_POINT_ITERATIONS):
            _, ft = self.batch_factors(x)
            x_new = np.clip((P + Q * ft) / R, 1.0, B)
            if np.allclose(x_new, x, rtol=1e-10, atol=1e-12):
                x = x_new
                break
            x = x_new
        fe, ft = self.batch_factors(x)
        load = P + Q * ft
        slots = R * B
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_s = np.where(n > 0, (p + q * ft) / np.where(n > 0, n, 1.0), 0.0)
            second = np.where(
                n > 0,
                (sums["pp"] + 2.0 * ft * sums["pq"] + ft * ft * sums["qq"]) / np.where(n > 0, n,
                                                                                      1.0),
                0.0,
            )
            cs2 = np.where(mean_s > 0, second / np.where(mean_s > 0, mean_s, 1.0) ** 2 - 1.0,
                           0.0)
        cs2 = np.maximum(cs2, 0.0)
        wait, p_wait = mgc_wait_s(slots, load, mean_s, cs2)
        return QueueState(
            jobs=n, slots=np.broadcast_to(slots, n.shape).copy(), load=load,
            utilization=load / slots, batch=x, wait_s=wait, p_wait=p_wait,
            energy_factor=fe, latency_factor=ft,
        )

    def cell_sums(self, jobs: JobArrays, dc: np.ndarray, weight: np.ndarray | None = None,
                  costs: _Costs | None = None) -> dict[str, np.ndarray]:
        """Aggregate the batch-1 slot times of jobs placed at ``dc`` per (hour, dc, type)."""
        H, D, K = self.scenario.hours, len(self.scenario.dcs), len(self.scenario.query_types)
        w = jobs.weight if weight is None else weight
        if costs is None:
            costs = self._costs((dc, jobs.qtype), jobs.input_tokens, jobs.output_tokens)
        cell = (jobs.hour * D + dc) * K + jobs.qtype
        size = H * D * K
        p, q = costs.time_fixed_s, costs.time_decode_s

        def acc(v: np.ndarray) -> np.ndarray:
            return np.bincount(cell, weights=v, minlength=size).reshape(H, D, K)

        return {"n": acc(w), "p": acc(w * p), "q": acc(w * q), "pp": acc(w * p * p),
                "pq": acc(w * p * q), "qq": acc(w * q * q)}

    def network_s(self, jobs: JobArrays, dc: np.ndarray | None = None) -> np.ndarray:
        """RTT + transmission of the job's tokens; (n,) at ``dc`` or (n, D) for every DC."""
        if self.mode == "coefficients":
            tokens = self._mean_in[jobs.qtype] + self._mean_out[jobs.qtype]
        else:
            tokens = jobs.input_tokens + jobs.output_tokens
        per = self._token_size[jobs.hour, jobs.area, jobs.qtype] * tokens
        if dc is None:
            return self._rtt[jobs.area] + per[:, None] * self._inv_bw[jobs.area]
        return self._rtt[jobs.area, dc] + per * self._inv_bw[jobs.area, dc]

    def resource_utilization(self, jobs: JobArrays, dc: np.ndarray) -> np.ndarray:
        """Binding-resource utilisation per (hour, dc) of the placed jobs, clipped to [0, 1].

        Σ_jobs α_{k,r} (tin + tout) / C_{dc,r}, maximum over resources — the definition of
        :func:`greensched.state.expected_utilization`, with the jobs' own tokens.
        """
        ds = self.scenario.ds
        H, D = self.scenario.hours, len(self.scenario.dcs)
        alpha = np.asarray(ds["units_per_token"].transpose("query_type", "resource").values,
                           dtype=np.float64)
        cap = np.asarray(ds["capacity"].transpose("dc", "resource").values, dtype=np.float64)
        tokens = (jobs.input_tokens + jobs.output_tokens) * jobs.weight
        cell = jobs.hour * D + dc
        util = np.zeros((H, D))
        for r in range(alpha.shape[1]):
            used = np.bincount(cell, weights=alpha[jobs.qtype, r] * tokens, minlength=H * D)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.where(cap[:, r][None, :] > 0, used.reshape(H, D) / cap[:, r][None, :],
                             np.where(used.reshape(H, D) > 0, np.inf, 0.0))
            util = np.maximum(util, u)
        return np.clip(util, 0.0, 1.0)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(
        self,
        jobs: JobArrays,
        dc: np.ndarray,
        *,
        noise: NoiseSource | None = None,
        all_dcs: bool = False,
    ) -> dict[str, Any]:
        """Ground truth of jobs placed at ``dc`` (two passes: load → queue → service).

        Parameters
        ----------
        jobs
            Encoded jobs (:func:`encode_jobs`).
        dc
            DC position of each job.
        noise
            Seeded noise (:class:`NoiseSource`), or ``None`` for the noise-free means.
        all_dcs
            Also return ``energy_kwh_all`` and ``service_s_all`` (n, D): what each job would
            have cost at every DC given the hour's queues (the chosen DC's column equals the
            job's own values: noise is a function of (seed, job row, DC)).

        Returns
        -------
        dict
            ``energy_kwh``, ``service_s``, ``wait_s``, ``runtime_s``, ``network_s`` (n,),
            ``queue`` (:class:`QueueState`, ``None`` in coefficients mode), ``account``
            (:class:`FacilityAccount`), ``resource_util`` ((H, D)), and the ``*_all`` arrays
            when asked.
        """
        n = jobs.n
        D = len(self.scenario.dcs)
        rows = np.arange(n, dtype=np.int64)
        dc = np.asarray(dc, dtype=np.int64)
        tau = jobs.arrival_s - 3600.0 * jobs.hour
        queue: QueueState | None = None
        if self.mode == "coefficients":
            e_ch = self._coef_energy_kwh[jobs.hour, dc, jobs.qtype]
            run_ch = self._coef_proc_s[jobs.hour, dc, jobs.qtype]
            wait_ch = np.zeros(n)
        else:
            # pass 1: load of the chosen DCs → queue state per (hour, dc, type)
            costs = self._costs((dc, jobs.qtype), jobs.input_tokens, jobs.output_tokens)
            queue = self.queue_state(self.cell_sums(jobs, dc, costs=costs))
            # pass 2: per-job costs at the resulting effective batch and queue
            h, k = jobs.hour, jobs.qtype
            fe = queue.energy_factor[h, dc, k]
            ft = queue.latency_factor[h, dc, k]
            e_ch = (costs.energy_fixed_j + costs.energy_decode_j * fe) / J_PER_KWH
            run_ch = costs.time_fixed_s + costs.time_decode_s * ft
            u = None if noise is None else noise.uniform(STREAM_WAIT, rows, dc)
            wait_ch = self._wait(queue, h, dc, k, tau, u)
        if noise is not None:
            e_ch = e_ch * self._factor(noise, STREAM_ENERGY, self.energy_sigma, rows, dc)
            run_ch = run_ch * self._factor(noise, STREAM_RUNTIME, self.runtime_sigma, rows, dc)
        net_ch = self.network_s(jobs, dc)
        service = wait_ch + run_ch + net_ch
        H = self.scenario.hours
        it = np.bincount(jobs.hour * D + dc, weights=e_ch * jobs.weight,
                         minlength=H * D).reshape(H, D)
        out: dict[str, Any] = {
            "energy_kwh": e_ch,
            "service_s": service,
            "wait_s": wait_ch,
            "network_s": net_ch,
            "runtime_s": run_ch,
            "queue": queue,
            "account": facility_accounting(self.scenario, it),
            "resource_util": self.resource_utilization(jobs, dc),
        }
        if all_dcs:
            out["energy_kwh_all"], out["service_s_all"] = self._all_dcs(jobs, queue, noise)
        return out

    def _all_dcs(self, jobs: JobArrays, queue: QueueState | None,
                 noise: NoiseSource | None) -> tuple[np.ndarray, np.ndarray]:
        n, D = jobs.n, len(self.scenario.dcs)
        rows = np.arange(n, dtype=np.int64)[:, None]
        dd = np.broadcast_to(np.arange(D, dtype=np.int64)[None, :], (n, D))
        hh = jobs.hour[:, None]
        kk = np.broadcast_to(jobs.qtype[:, None], (n, D))
        if self.mode == "coefficients" or queue is None:
            e_all = self._coef_energy_kwh[hh, dd, kk]
            run_all = self._coef_proc_s[hh, dd, kk]
            wait_all = np.zeros((n, D))
        else:
            c_all = self._costs((dd, kk), jobs.input_tokens[:, None], jobs.output_tokens[:, None])
            fe = queue.energy_factor[hh, dd, kk]
            ft = queue.latency_factor[hh, dd, kk]
            e_all = (c_all.energy_fixed_j + c_all.energy_decode_j * fe) / J_PER_KWH
            run_all = c_all.time_fixed_s + c_all.time_decode_s * ft
            tau = (jobs.arrival_s - 3600.0 * jobs.hour)[:, None]
            u = None if noise is None else noise.uniform(STREAM_WAIT, rows, dd)
            wait_all = self._wait(queue, hh, dd, kk, tau, u)
        if noise is not None:
            e_all = e_all * self._factor(noise, STREAM_ENERGY, self.energy_sigma, rows, dd)
            run_all = run_all * self._factor(noise, STREAM_RUNTIME, self.runtime_sigma, rows, dd)
        return e_all, wait_all + run_all + self.network_s(jobs)

    @staticmethod
    def _factor(noise: NoiseSource, stream: int, sigma: float, rows: np.ndarray,
                cols: np.ndarray) -> np.ndarray:
        """Mean-one lognormal factor exp(σ z − σ²/2)."""
        if sigma == 0:
            return np.ones(np.broadcast_shapes(np.shape(rows), np.shape(cols)))
        return np.exp(sigma * noise.normal(stream, rows, cols) - 0.5 * sigma * sigma)

    @staticmethod
    def _wait(queue: QueueState, h: np.ndarray, d: np.ndarray, k: np.ndarray, tau: np.ndarray,
              u: np.ndarray | None) -> np.ndarray:
        """Per-job wait: stationary (mean, or sampled from ``u``) plus the fluid backlog if ρ > 1.

        ``tau`` is the arrival's offset into its hour (s); arrays broadcast together.  With a
        uniform ``u``: wait with probability C (``u < C``), then exponential with mean W / C
        (inverse transform of ``u / C``).
        """
        mean = queue.wait_s[h, d, k]
        rho = queue.utilization[h, d, k]
        if u is not None:
            pw = queue.p_wait[h, d, k]
            safe = np.where(pw > 0, pw, 1.0)
            cond = np.where(pw > 0, mean / safe, 0.0)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                ratio = np.where(pw > 0, u / safe, 2.0)
            stat = np.where(ratio < 1.0, -cond * np.log(np.maximum(ratio, 1e-300)), 0.0)
        else:
            stat = mean
        return stat + np.maximum(rho - 1.0, 0.0) * tau

    def expected(self, jobs: JobArrays) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free expected (energy_kwh, service_s), each (n, D), for scoring.

        Output lengths are replaced by their query type's mean over ``jobs`` (a population
        statistic, not the job's own hindsight length); queues are those of an even split of
        the jobs over the DCs; the wait is the stationary mean plus half an hour of any fluid
        backlog.
        """
        n = jobs.n
        D, K = len(self.scenario.dcs), len(self.scenario.query_types)
        H = self.scenario.hours
        if self.mode == "coefficients":
            e = self._coef_energy_kwh[jobs.hour, :, jobs.qtype]
            s = self._coef_proc_s[jobs.hour, :, jobs.qtype]
            return e, s + self.network_s(jobs)
        cnt = np.bincount(jobs.qtype, weights=jobs.weight, minlength=K)
        tot = np.bincount(jobs.qtype, weights=jobs.weight * jobs.output_tokens, minlength=K)
        mean_out = np.where(cnt > 0, tot / np.where(cnt > 0, cnt, 1.0), self._mean_out)
        tin = jobs.input_tokens[:, None]
        tout = np.round(mean_out[jobs.qtype])[:, None]
        kk = np.broadcast_to(jobs.qtype[:, None], (n, D))
        dd = np.broadcast_to(np.arange(D)[None, :], (n, D))
        hh = jobs.hour[:, None]
        c_all = self._costs((dd, kk), tin, tout)
        # even split: every DC receives 1/D of each job, so a cell's sums are the (hour, type)
        # sums of the job's costs at that DC divided by D
        cell = jobs.hour * K + jobs.qtype
        w = jobs.weight / D
        p_all, q_all = c_all.time_fixed_s, c_all.time_decode_s
        sums = {key: np.zeros((H, D, K)) for key in ("n", "p", "q", "pp", "pq", "qq")}
        n_hk = np.bincount(cell, weights=w, minlength=H * K).reshape(H, K)
        for d in range(D):
            p, q = p_all[:, d], q_all[:, d]
            for key, v in (("p", w * p), ("q", w * q), ("pp", w * p * p), ("pq", w * p * q),
                           ("qq", w * q * q)):
                sums[key][:, d, :] = np.bincount(cell, weights=v, minlength=H * K).reshape(H, K)
            sums["n"][:, d, :] = n_hk
        queue = self.queue_state(sums)
        fe = queue.energy_factor[hh, dd, kk]
        ft = queue.latency_factor[hh, dd, kk]
        e = (c_all.energy_fixed_j + c_all.energy_decode_j * fe) / J_PER_KWH
        run = p_all + q_all * ft
        wait = queue.wait_s[hh, dd, kk] + np.maximum(queue.utilization[hh, dd, kk] - 1.0,
                                                      0.0) * 1800.0
        return e, run + wait + self.network_s(jobs)

    def fleet_table(self) -> pd.DataFrame:
        """The resolved fleet (auto replicas filled in)."""
        return self.fleet_.to_frame()


STREAM_ENERGY = 1
STREAM_RUNTIME = 2
STREAM_WAIT = 3
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) on uint64 arrays."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class NoiseSource:
    """Seeded noise addressed by (stream, job row, DC): a counter-based generator.

    Every value is a hash of (seed, stream, row, column), so any subset can be drawn in any order
    and the same (job, DC) always gets the same draw — the chosen DC of a simulation and the
    dataset's counterfactual columns agree, and policies share their noise.
    """

    seed: int

    def uniform(self, stream: int, rows: Any, cols: Any) -> np.ndarray:
        """Uniforms in (0, 1), broadcast over ``rows`` and ``cols``."""
        with np.errstate(over="ignore"):
            seed = np.asarray([int(self.seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
            key = _mix64(seed ^ (np.uint64(int(stream)) * _GOLDEN))[0]
            r = np.asarray(rows, dtype=np.uint64)
            c = np.asarray(cols, dtype=np.uint64)
            z = _mix64(key ^ ((r << np.uint64(20)) | c))
        return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)

    def normal(self, stream: int, rows: Any, cols: Any) -> np.ndarray:
        """Standard normals (inverse CDF of :meth:`uniform`)."""
        return ndtri(self.uniform(stream, rows, cols))


def evaluate_allocation(
    scenario: Scenario,
    allocation: xr.DataArray,
    *,
    twin: Twin | None = None,
    mode: str = "coefficients",
) -> dict[str, Any]:
    """Expected (noise-free) totals of a planner allocation served by the twin.

    The demand of every (hour, area, query_type) is split over the DCs by the allocation's
    shares, as fractional queries (weight λ·x) with the type's mean tokens; the twin then
    evaluates those weighted jobs with the same code as :func:`~greensched.eval.simulate.simulate`.
    In ``mode="coefficients"`` energy and delay per query are the scenario's coefficients, so
    ``it_kwh``, ``grid_kwh``, ``carbon_kg``, ``water_l``, ``energy_usd`` and ``carbon_usd`` equal
    the planner's ``plan.json`` (when the plan buys no more grid power than it needs, which holds
    at every optimum with positive energy or carbon weight and prices).

    ``planner_delay_usd`` re-computes the planner's delay term Σ ρ_k (D^tran + D^prop + D^proc),
    whose transmission and processing parts are hour totals (they scale with λ), for comparison
    with ``delay_usd``, the twin's per-query delay cost Σ ρ_k λ x · delay.
    """
    tw = twin if twin is not None else Twin(scenario, mode=mode)
    if twin is not None and twin.mode != mode:
        raise GreenSchedError(f"the twin is in mode {twin.mode!r}, not {mode!r}")
    alloc = allocation.reindex(
        area=scenario.areas, dc=scenario.dcs, query_type=scenario.query_types,
        hour=np.arange(scenario.hours), fill_value=0.0,
    ).fillna(0.0).clip(0.0, 1.0).transpose("hour", "area", "query_type", "dc")
    x = np.asarray(alloc.values, dtype=np.float64)
    lam = np.asarray(scenario.ds["queries"].transpose("hour", "area", "query_type").values,
                     dtype=np.float64)
    w = lam[..., None] * x
    hh, aa, kk, dd = np.nonzero(w > 0)
    weight = w[hh, aa, kk, dd]
    K = len(scenario.query_types)
    h_tok = np.asarray(scenario.ds["input_tokens"].values, dtype=np.float64)
    f_tok = np.asarray(scenario.ds["output_tokens"].values, dtype=np.float64)
    delta = np.asarray(scenario.ds["delay_limit_s"].transpose("area", "query_type").values,
                       dtype=np.float64)
    jobs = JobArrays(
        job_id=np.arange(len(weight)).astype(object), hour=hh.astype(np.int64),
        area=aa.astype(np.int64), qtype=kk.astype(np.int64), input_tokens=h_tok[kk],
        output_tokens=f_tok[kk], sla_s=delta[aa, kk], arrival_s=hh * 3600.0 + 1800.0,
        weight=weight,
    )
    res = tw.evaluate(jobs, dd.astype(np.int64))
    totals = res["account"].totals()
    rho_k = np.asarray(scenario.ds["delay_penalty_usd_per_s"].values, dtype=np.float64)
    alpha = rho_k[kk]
    rtt = tw._rtt[aa, dd]
    per_query = res["service_s"] - rtt
    excess = np.maximum(res["service_s"] - jobs.sla_s, 0.0)
    totals["delay_usd"] = float((alpha * weight * excess).sum())
    totals["delay_linear_usd"] = float((alpha * weight * res["service_s"]).sum())
    totals["planner_delay_usd"] = float((alpha * (weight * per_query + x[hh, aa, kk, dd] * rtt))
                                        .sum())
    totals["queries"] = float(weight.sum())
    totals["types"] = K
    totals["dc_hourly"] = res["account"].frame(scenario)
    return totals
