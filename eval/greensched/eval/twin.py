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
    Seeded, mean-one lognormal factors and a random wait; see
    :mod:`greensched.eval.twin_accounting`.

``mode="coefficients"``
    Per-job energy is ``scenario.energy_kwh_per_query()`` of its (dc, type, hour), processing time
    ``scenario.proc_delay_s_per_query()``, no queueing, and the network term uses the type's mean
    tokens: the per-query values of the planner, so that the facility totals of a plan's allocation
    equal the planner's (:func:`evaluate_allocation`).

Layout: jobs as arrays, facility accounting and noise live in
:mod:`greensched.eval.twin_accounting`, the M/G/c wait in :mod:`greensched.queueing` (shared with
the planner), plan execution in :mod:`greensched.eval.twin_plan`; this module re-exports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.eval.energy_model import EnergyModel
from greensched.eval.fleet import Fleet, fleet_for
from greensched.eval.twin_accounting import (
    STREAM_ENERGY,
    STREAM_RUNTIME,
    STREAM_WAIT,
    FacilityAccount,
    JobArrays,
    NoiseSource,
    QueueState,
    encode_jobs,
    facility_accounting,
    lognormal_factor,
    stationary_plus_backlog_wait,
)
from greensched.queueing import OVERLOAD_RHO, erlang_c, mgc_wait_s
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
SERVING = ("kv_cache", "no_cache")
MODES = ("physics", "coefficients")
_PROBE_L = 1024.0
_FIXED_POINT_ITERATIONS = 40


# ---------------------------------------------------------------------------------------------
# the twin


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
                        raise GreenSchedError(f"fleet row dc {j}, query_type {k}: {exc}") from exc
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

    def _costs(
        self, idx: np.ndarray | tuple[np.ndarray, ...], tin: np.ndarray, tout: np.ndarray
    ) -> _Costs:
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
        alpha = np.asarray(
            ds["units_per_token"].transpose("query_type", "resource").values, dtype=np.float64
        )
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
                (sums["pp"] + 2.0 * ft * sums["pq"] + ft * ft * sums["qq"])
                / np.where(n > 0, n, 1.0),
                0.0,
            )
            cs2 = np.where(mean_s > 0, second / np.where(mean_s > 0, mean_s, 1.0) ** 2 - 1.0, 0.0)
        cs2 = np.maximum(cs2, 0.0)
        wait, p_wait = mgc_wait_s(slots, load, mean_s, cs2)
        return QueueState(
            jobs=n,
            slots=np.broadcast_to(slots, n.shape).copy(),
            load=load,
            utilization=load / slots,
            batch=x,
            wait_s=wait,
            p_wait=p_wait,
            energy_factor=fe,
            latency_factor=ft,
        )

    def cell_sums(
        self,
        jobs: JobArrays,
        dc: np.ndarray,
        weight: np.ndarray | None = None,
        costs: _Costs | None = None,
    ) -> dict[str, np.ndarray]:
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

        return {
            "n": acc(w),
            "p": acc(w * p),
            "q": acc(w * q),
            "pp": acc(w * p * p),
            "pq": acc(w * p * q),
            "qq": acc(w * q * q),
        }

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
        alpha = np.asarray(
            ds["units_per_token"].transpose("query_type", "resource").values, dtype=np.float64
        )
        cap = np.asarray(ds["capacity"].transpose("dc", "resource").values, dtype=np.float64)
        tokens = (jobs.input_tokens + jobs.output_tokens) * jobs.weight
        cell = jobs.hour * D + dc
        util = np.zeros((H, D))
        for r in range(alpha.shape[1]):
            used = np.bincount(cell, weights=alpha[jobs.qtype, r] * tokens, minlength=H * D)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = np.where(
                    cap[:, r][None, :] > 0,
                    used.reshape(H, D) / cap[:, r][None, :],
                    np.where(used.reshape(H, D) > 0, np.inf, 0.0),
                )
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
            wait_ch = stationary_plus_backlog_wait(queue, h, dc, k, tau, u)
        if noise is not None:
            e_ch = e_ch * lognormal_factor(noise, STREAM_ENERGY, self.energy_sigma, rows, dc)
            run_ch = run_ch * lognormal_factor(noise, STREAM_RUNTIME, self.runtime_sigma, rows, dc)
        net_ch = self.network_s(jobs, dc)
        service = wait_ch + run_ch + net_ch
        H = self.scenario.hours
        it = np.bincount(jobs.hour * D + dc, weights=e_ch * jobs.weight, minlength=H * D).reshape(
            H, D
        )
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

    def _all_dcs(
        self, jobs: JobArrays, queue: QueueState | None, noise: NoiseSource | None
    ) -> tuple[np.ndarray, np.ndarray]:
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
            wait_all = stationary_plus_backlog_wait(queue, hh, dd, kk, tau, u)
        if noise is not None:
            e_all = e_all * lognormal_factor(noise, STREAM_ENERGY, self.energy_sigma, rows, dd)
            run_all = run_all * lognormal_factor(
                noise, STREAM_RUNTIME, self.runtime_sigma, rows, dd
            )
        return e_all, wait_all + run_all + self.network_s(jobs)

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
            for key, v in (
                ("p", w * p),
                ("q", w * q),
                ("pp", w * p * p),
                ("pq", w * p * q),
                ("qq", w * q * q),
            ):
                sums[key][:, d, :] = np.bincount(cell, weights=v, minlength=H * K).reshape(H, K)
            sums["n"][:, d, :] = n_hk
        queue = self.queue_state(sums)
        fe = queue.energy_factor[hh, dd, kk]
        ft = queue.latency_factor[hh, dd, kk]
        e = (c_all.energy_fixed_j + c_all.energy_decode_j * fe) / J_PER_KWH
        run = p_all + q_all * ft
        wait = (
            queue.wait_s[hh, dd, kk] + np.maximum(queue.utilization[hh, dd, kk] - 1.0, 0.0) * 1800.0
        )
        return e, run + wait + self.network_s(jobs)

    def fleet_table(self) -> pd.DataFrame:
        """The resolved fleet (auto replicas filled in)."""
        return self.fleet_.to_frame()


# re-exported (defined after Twin: twin_plan imports Twin lazily)
from greensched.eval.twin_plan import evaluate_allocation  # noqa: E402
