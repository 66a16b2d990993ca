"""Simulate jobs through the digital twin under a placement policy; build predictor datasets.

:func:`simulate` places every job with a policy, then runs the twin in two passes (the
assignment's load per (hour, dc, query_type) sets the queues and effective batches, which then
give each job's energy and service time; see :mod:`greensched.eval.twin`), and accounts the
facilities like the planner.  Policies:

``plan``
    Solve the Green-LLM plan of the scenario (:func:`greensched.scheduler.plan`, scenario weights)
    — or use the one given — and send each job to a DC drawn with the plan's shares for its
    (hour, area, query_type) (seeded).  Cells the plan leaves empty fall back to ``nearest``.
``greedy``
    Per job, the DC with the lowest weighted cost σ_e · price · PUE · E + σ_c · δ · θ · PUE · E +
    σ_d · ρ_k · max(0, S − SLA) under the twin's own *expected* energy E and service time S
    (:meth:`Twin.expected`: mean output length of the type, queues of an even split), placed with
    :class:`greensched.scheduler.assign.GreedyAssigner` (exact capacity bookkeeping against the
    scenario's resource capacity, arrival order); jobs that fit nowhere take the unconstrained
    argmin.
``nearest``
    Lowest RTT from the job's area (first DC on ties).
``random``
    Uniform over the DCs (seeded).

All draws derive from ``seed``: the policy's from one stream, the twin's noise from others, drawn
for every (job, DC) so that different policies see the same noise (common random numbers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from greensched.errors import GreenSchedError, InfeasibleError
from greensched.eval.fleet import Fleet
from greensched.eval.twin import JobArrays, NoiseSource, Twin, encode_jobs
from greensched.scenario import Scenario
from greensched.state import dc_hour_state

__all__ = [
    "DATASET_DC_FIELDS",
    "MODEL_POLICY",
    "OUTCOME_COLUMNS",
    "POLICIES",
    "Simulation",
    "build_dataset",
    "dataset_metadata",
    "objective_definition",
    "run_simulation",
    "simulate",
    "write_dataset",
]

POLICIES = ("plan", "greedy", "nearest", "random")
#: The policy placing jobs greedily on a trained predictor's predictions (``predictor=``).
MODEL_POLICY = "model"
#: Model version recorded for the greedy policy's predictions (the twin's expectation).
TWIN_EXPECTED_VERSION = "twin-expected"
#: Columns of the outcomes (the outcome record of :mod:`greensched.outcomes`, in its order;
#: the prediction columns are empty for policies without predictions: plan, nearest, random).
OUTCOME_COLUMNS = (
    "job_id", "arrival_s", "hour", "area", "query_type", "input_tokens", "output_tokens",
    "sla_s", "dc", "policy", "model_version", "pred_energy_kwh", "pred_service_s",
    "pred_energy_kwh_p10", "pred_energy_kwh_p90", "pred_service_s_p10", "pred_service_s_p90",
    "propensity", "energy_kwh", "service_s", "wait_s", "carbon_kg", "water_l", "cost_usd",
    "sla_met", "measured_at",
)
_PRED_KEYS = ("energy_kwh", "service_s", "energy_kwh_p10", "energy_kwh_p90", "service_s_p10",
              "service_s_p90")
#: Per-DC columns of the dataset (``<field>__<dc>``), in docs/dataset-format.md order.
DATASET_DC_FIELDS = (
    "price_usd_per_kwh", "carbon_kg_per_kwh", "renewable_share", "pue", "utilization", "rtt_s",
    "energy_kwh", "service_s",
)
DATASET_JOB_COLUMNS = (
    "job_id", "arrival_s", "hour", "area", "query_type", "input_tokens", "output_tokens", "sla_s",
)
_POLICY_STREAM = 0x504F4C


def objective_definition() -> str:
    """Text of the per-(job, dc) objective used for ``best_dc`` and the greedy policy."""
    return (
        "cost(job, dc) = energy * price_usd_per_kwh[hour,dc] * pue[dc] * energy_kwh[job,dc] "
        "+ carbon * carbon_price_usd_per_kg[dc] * carbon_kg_per_kwh[hour,dc] * pue[dc] * "
        "energy_kwh[job,dc] + delay * delay_penalty_usd_per_s[query_type] * "
        "max(0, service_s[job,dc] - sla_s[job]); weights = the scenario's [objective], "
        "normalised to sum 1; facility energy valued as bought from the grid; best_dc = argmin "
        "(first DC in 'dcs' order on ties)"
    )


def _weights(scenario: Scenario) -> dict[str, float]:
    w = {k: float(scenario.weights[k]) for k in ("energy", "carbon", "delay")}
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


def _objective(scenario: Scenario, jobs: JobArrays, energy: np.ndarray,
               service: np.ndarray) -> np.ndarray:
    """Weighted cost (n, D) of every job at every DC (see :func:`objective_definition`)."""
    ds = scenario.ds
    w = _weights(scenario)
    pue = np.asarray(ds["pue"].values, dtype=np.float64)
    price = np.asarray(ds["price_usd_per_kwh"].transpose("hour", "dc").values, dtype=np.float64)
    theta = np.asarray(ds["carbon_kg_per_kwh"].transpose("hour", "dc").values, dtype=np.float64)
    delta = np.asarray(ds["carbon_price_usd_per_kg"].values, dtype=np.float64)
    per_kwh = (w["energy"] * price + w["carbon"] * delta[None, :] * theta) * pue[None, :]
    rho = np.asarray(ds["delay_penalty_usd_per_s"].values, dtype=np.float64)
    excess = np.maximum(service - jobs.sla_s[:, None], 0.0)
    return per_kwh[jobs.hour] * energy + (w["delay"] * rho[jobs.qtype])[:, None] * excess


# ---------------------------------------------------------------------------------------------
# policies


def _plan_allocation(scenario: Scenario, plan: Any) -> np.ndarray:
    """Plan shares as an array (hour, area, query_type, dc)."""
    if plan is None:
        from greensched.scheduler import PlanConfig
        from greensched.scheduler import plan as solve

        plan = solve(scenario, PlanConfig())
    alloc = plan
    if not isinstance(plan, xr.DataArray):
        if not getattr(plan, "is_ok", False) or plan.allocation is None:
            status = getattr(getattr(plan, "status", None), "value", "unknown")
            msg = getattr(plan, "message", "")
            raise InfeasibleError(
                f"the plan policy needs an optimal plan; the planner ended {status!r}"
                f"{': ' + msg if msg else ''}",
                getattr(plan, "diagnosis", None),
            )
        alloc = plan.allocation
    alloc = alloc.reindex(
        area=scenario.areas, dc=scenario.dcs, query_type=scenario.query_types,
        hour=np.arange(scenario.hours), fill_value=0.0,
    ).fillna(0.0)
    return np.clip(np.asarray(alloc.transpose("hour", "area", "query_type", "dc").values,
                              dtype=np.float64), 0.0, None)


def _nearest(scenario: Scenario, jobs: JobArrays) -> np.ndarray:
    rtt = np.asarray(scenario.ds["rtt_s"].transpose("area", "dc").values, dtype=np.float64)
    return rtt.argmin(axis=1)[jobs.area].astype(np.int64)


def _assign_plan(scenario: Scenario, jobs: JobArrays, rng: np.random.Generator,
                 plan: Any) -> np.ndarray:
    shares = _plan_allocation(scenario, plan)[jobs.hour, jobs.area, jobs.qtype]  # (n, D)
    cum = np.cumsum(shares, axis=1)
    total = cum[:, -1]
    u = rng.random(jobs.n) * total
    choice = (cum <= u[:, None]).sum(axis=1)
    choice = np.minimum(choice, shares.shape[1] - 1).astype(np.int64)
    empty = total <= 0
    if empty.any():
        choice[empty] = _nearest(scenario, jobs)[empty]
    return choice


def _assign_greedy(scenario: Scenario, twin: Twin, jobs: JobArrays,
                   predicted: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    energy, service = twin.expected(jobs) if predicted is None else predicted
    score = _objective(scenario, jobs, energy, service)
    fallback = score.argmin(axis=1).astype(np.int64)
    try:
        from greensched.scheduler.assign import AssignConfig, CapacityLedger, GreedyAssigner
    except ImportError:  # pragma: no cover - the assigner ships with the package
        return fallback
    ledger = CapacityLedger.from_scenario(scenario)
    assigner = GreedyAssigner(scenario, AssignConfig(weights=_weights(scenario)), ledger=ledger)
    tokens = jobs.input_tokens + jobs.output_tokens
    units = assigner.units_per_token[jobs.qtype] * tokens[:, None]
    choice, _, _ = assigner.assign_arrays(
        hour=jobs.hour, area=jobs.area, qtype=jobs.qtype, tokens=tokens, sla=jobs.sla_s,
        energy=energy, service=service, usage_ticks=ledger.to_ticks(units),
        arrival=jobs.arrival_s,
    )
    choice = np.asarray(choice, dtype=np.int64)
    return np.where(choice >= 0, choice, fallback)


def assign_policy(scenario: Scenario, twin: Twin, jobs: JobArrays, policy: str, seed: int,
                  plan: Any = None, predicted: Mapping[str, np.ndarray] | None = None
                  ) -> np.ndarray:
    """DC position of every job under ``policy`` (see the module docstring); ``"model"``
    places greedily on ``predicted`` (``energy_kwh``, ``service_s``, each (n, D))."""
    if policy == MODEL_POLICY:
        if predicted is None:
            raise GreenSchedError("policy 'model' needs a predictor (--model DIR)")
        return _assign_greedy(scenario, twin, jobs, (predicted["energy_kwh"],
                                                     predicted["service_s"]))
    if policy not in POLICIES:
        raise GreenSchedError(f"policy {policy!r} is not known; expected one of "
                              f"{', '.join(POLICIES)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _POLICY_STREAM]))
    if policy == "plan":
        return _assign_plan(scenario, jobs, rng, plan)
    if policy == "greedy":
        return _assign_greedy(scenario, twin, jobs)
    if policy == "nearest":
        return _nearest(scenario, jobs)
    return rng.integers(0, len(scenario.dcs), jobs.n).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# simulation


@dataclass
class Simulation:
    """Everything one simulation produced (outcomes, totals and the twin's internals)."""

    scenario: Scenario
    twin: Twin
    jobs: JobArrays
    policy: str
    seed: int
    noise: bool
    dc: np.ndarray
    result: dict[str, Any]
    outcomes: pd.DataFrame
    totals: dict[str, Any] = field(default_factory=dict)


def _check_args(policy: str, seed: int) -> None:
    if policy not in (*POLICIES, MODEL_POLICY):
        raise GreenSchedError(f"policy {policy!r} is not known; expected one of "
                              f"{', '.join(POLICIES)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise GreenSchedError(f"seed must be an integer >= 0, got {seed!r}")


def run_simulation(
    scenario: Scenario,
    jobs: pd.DataFrame | JobArrays,
    policy: str = "plan",
    seed: int = 0,
    noise: bool = True,
    *,
    fleet: Fleet | None = None,
    twin: Twin | None = None,
    plan: Any = None,
    mode: str = "physics",
    all_dcs: bool = False,
    predictor: Any = None,
    model_version: str | None = None,
) -> Simulation:
    """:func:`simulate` returning a :class:`Simulation` (with ``all_dcs``: every DC's values).

    ``predictor`` (a fitted :class:`~greensched.predictor.base.BasePredictor`) is what policy
    ``"model"`` places with; its predictions at the chosen DC (and their p10/p90) go into the
    outcomes under ``model_version`` (default: the predictor's kind).
    """
    _check_args(policy, seed)
    tw = twin if twin is not None else Twin(scenario, fleet, mode=mode)
    ja = jobs if isinstance(jobs, JobArrays) else encode_jobs(scenario, jobs)
    if ja.n == 0:
        raise GreenSchedError("no jobs to simulate")
    predicted: dict[str, np.ndarray] | None = None
    version: str | None = None
    if policy == MODEL_POLICY:
        if predictor is None:
            raise GreenSchedError("policy 'model' needs a predictor (--model DIR)")
        frame = ja.frame if ja.frame is not None else jobs
        if not isinstance(frame, pd.DataFrame):
            raise GreenSchedError("policy 'model' needs the jobs as a table")
        pred = predictor.predict_jobs(frame, scenario)
        predicted = {k: np.asarray(pred[k].values, dtype=np.float64) for k in _PRED_KEYS
                     if k in pred}
        version = model_version or str(getattr(predictor, "kind", "model"))
    elif policy == "greedy":
        e, sv = tw.expected(ja)
        predicted, version = {"energy_kwh": e, "service_s": sv}, TWIN_EXPECTED_VERSION
    dc = assign_policy(scenario, tw, ja, policy, int(seed), plan, predicted)
    res = tw.evaluate(ja, dc, noise=NoiseSource(int(seed)) if noise else None, all_dcs=all_dcs)
    outcomes = _outcomes(scenario, ja, dc, res, policy=policy, predicted=predicted,
                         model_version=version,
                         propensity=_propensity(scenario, ja, dc, policy, plan))
    totals = _totals(scenario, tw, ja, dc, res, outcomes, policy, int(seed), noise)
    return Simulation(scenario, tw, ja, policy, int(seed), bool(noise), dc, res, outcomes, totals)


def simulate(
    scenario: Scenario,
    jobs: pd.DataFrame,
    policy: str = "plan",
    seed: int = 0,
    noise: bool = True,
    *,
    fleet: Fleet | None = None,
    twin: Twin | None = None,
    plan: Any = None,
    mode: str = "physics",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Place ``jobs`` with ``policy`` and run them through the twin.

    Parameters
    ----------
    scenario
        The scenario.
    jobs
        A jobs table (:mod:`greensched.jobs`; e.g. from :mod:`greensched.eval.traces`).
    policy
        ``"plan"``, ``"greedy"``, ``"nearest"`` or ``"random"``.
    seed
        Seed of the policy's draws and of the twin's noise.
    noise
        Switch the twin's noise on (default) or off.
    fleet, twin
        Serving fleet (default: ``fleet.csv`` beside the scenario, else the defaults) or a
        ready :class:`~greensched.eval.twin.Twin`.
    plan
        For ``policy="plan"``: a solved :class:`~greensched.scheduler.planner.PlanResult` or an
        allocation DataArray; ``None`` solves the scenario.
    mode
        Twin mode, ``"physics"`` or ``"coefficients"`` (the scenario's per-query values).

    Returns
    -------
    outcomes, totals
        One row per job (columns :data:`OUTCOME_COLUMNS`, jobs-table order; ``cost_usd`` is the
        job's energy + carbon cost, its share of its DC-hour's grid purchase) and the totals
        (facility accounting, delay cost = Σ ρ_k max(0, service − SLA), SLA, latency and
        utilisation statistics).
    """
    sim = run_simulation(scenario, jobs, policy, seed, noise, fleet=fleet, twin=twin, plan=plan,
                         mode=mode)
    return sim.outcomes, sim.totals


def _per_kwh(
    scenario: Scenario, res: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per IT kWh of each (hour, dc): grid kWh, carbon kg, water l and USD (energy + carbon)."""
    acc = res["account"]
    ds = scenario.ds
    grid_per_it = acc.grid_per_it()
    theta = np.asarray(ds["carbon_kg_per_kwh"].transpose("hour", "dc").values, dtype=np.float64)
    price = np.asarray(ds["price_usd_per_kwh"].transpose("hour", "dc").values, dtype=np.float64)
    delta = np.asarray(ds["carbon_price_usd_per_kg"].values, dtype=np.float64)[None, :]
    pue = np.asarray(ds["pue"].values, dtype=np.float64)[None, :]
    water = (np.asarray(ds["wue_l_per_kwh"].transpose("hour", "dc").values) / pue
             + np.asarray(ds["ewif_l_per_kwh"].transpose("hour", "dc").values)) * pue
    return grid_per_it, theta * grid_per_it, water, (price + delta * theta) * grid_per_it


def _labels(codes: np.ndarray, labels: list[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))


def _propensity(scenario: Scenario, jobs: JobArrays, dc: np.ndarray, policy: str,
                plan: Any) -> np.ndarray:
    """Probability the policy gave to the chosen DC (deterministic policies: 1)."""
    n = jobs.n
    if policy == "random":
        return np.full(n, 1.0 / len(scenario.dcs))
    if policy == "plan":
        shares = _plan_allocation(scenario, plan)[jobs.hour, jobs.area, jobs.qtype]
        total = shares.sum(axis=1)
        chosen = shares[np.arange(n), dc]
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(total > 0, chosen / np.where(total > 0, total, 1.0), 1.0)
        return np.clip(p, 1e-12, 1.0)
    return np.ones(n)


def _outcomes(scenario: Scenario, jobs: JobArrays, dc: np.ndarray, res: dict[str, Any], *,
              policy: str = "", predicted: Mapping[str, np.ndarray] | None = None,
              model_version: str | None = None,
              propensity: np.ndarray | None = None) -> pd.DataFrame:
    """The outcome records (:mod:`greensched.outcomes`) of a simulation, columns
    :data:`OUTCOME_COLUMNS`; ``measured_at`` is the scenario's ``start`` + arrival + service
    time (empty without a start)."""
    _, carbon_per_it, water_per_it, usd_per_it = _per_kwh(scenario, res)
    e = res["energy_kwh"]
    h = jobs.hour
    n = jobs.n
    service = res["service_s"]
    rows = np.arange(n)
    pred: dict[str, Any] = {}
    for key in _PRED_KEYS:
        arr = None if predicted is None else predicted.get(key)
        pred[key] = np.full(n, np.nan) if arr is None else np.asarray(arr)[rows, dc]
    if scenario.start is not None:
        t0 = pd.Timestamp(scenario.start)
        t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
        measured = t0 + pd.to_timedelta(jobs.arrival_s + service, unit="s")
    else:
        measured = pd.DatetimeIndex([pd.NaT] * n, tz="UTC")
    return pd.DataFrame({
        "job_id": jobs.job_id,
        "arrival_s": jobs.arrival_s.astype(np.float64),
        "hour": h,
        "area": _labels(jobs.area, scenario.areas),
        "query_type": _labels(jobs.qtype, scenario.query_types),
        "input_tokens": jobs.input_tokens.astype(np.int64),
        "output_tokens": jobs.output_tokens.astype(np.int64),
        "sla_s": jobs.sla_s.astype(np.float64),
        "dc": _labels(dc, scenario.dcs),
        "policy": policy,
        "model_version": model_version,
        "pred_energy_kwh": pred["energy_kwh"],
        "pred_service_s": pred["service_s"],
        "pred_energy_kwh_p10": pred["energy_kwh_p10"],
        "pred_energy_kwh_p90": pred["energy_kwh_p90"],
        "pred_service_s_p10": pred["service_s_p10"],
        "pred_service_s_p90": pred["service_s_p90"],
        "propensity": np.ones(n) if propensity is None else propensity,
        "energy_kwh": e,
        "service_s": service,
        "wait_s": res["wait_s"],
        "carbon_kg": e * carbon_per_it[h, dc],
        "water_l": e * water_per_it[h, dc],
        "cost_usd": e * usd_per_it[h, dc],
        "sla_met": service <= jobs.sla_s,
        "measured_at": measured,
    })


def _totals(scenario: Scenario, twin: Twin, jobs: JobArrays, dc: np.ndarray,
            res: dict[str, Any], outcomes: pd.DataFrame, policy: str, seed: int,
            noise: bool) -> dict[str, Any]:
    acc = res["account"]
    out: dict[str, Any] = {
        "scenario": scenario.name, "policy": policy, "seed": seed, "noise": noise,
        "mode": twin.mode, "serving": twin.serving, "jobs": int(jobs.n),
    }
    out.update(acc.totals())
    rho = np.asarray(scenario.ds["delay_penalty_usd_per_s"].values, dtype=np.float64)
    service = res["service_s"]
    excess = np.maximum(service - jobs.sla_s, 0.0)
    out["delay_usd"] = float((rho[jobs.qtype] * excess * jobs.weight).sum())
    out["total_usd"] = out["energy_usd"] + out["carbon_usd"] + out["delay_usd"]
    # one vocabulary with the planner (docs/delay-model.md): delay_usd above is the SLA penalty
    out["sla_penalty_usd"] = out["delay_usd"]
    out["delay_cost_usd"] = float((rho[jobs.qtype] * service * jobs.weight).sum())
    out["latency_s_per_query"] = float((service * jobs.weight).sum() / jobs.weight.sum())
    met = service <= jobs.sla_s
    out["sla_met_fraction"] = float(met.mean())
    for name, arr in (("service_s", service), ("wait_s", res["wait_s"])):
        out[f"{name}_mean"] = float(arr.mean())
        for q in (50, 95, 99):
            out[f"{name}_p{q}"] = float(np.percentile(arr, q))
    out["energy_kwh_per_job"] = float(res["energy_kwh"].mean())
    queue = res["queue"]
    if queue is not None:
        busy = queue.jobs > 0
        out["slot_utilization_max"] = float(queue.utilization.max())
        out["slot_utilization_mean_busy"] = (
            float(queue.utilization[busy].mean()) if busy.any() else 0.0
        )
        out["overloaded_cells"] = int((queue.utilization > 1.0).sum())
    out["resource_utilization_max"] = float(res["resource_util"].max())
    if scenario.water_budget_l is not None:
        out["water_budget_l"] = float(scenario.water_budget_l)
        out["water_budget_exceeded"] = bool(out["water_l"] > scenario.water_budget_l)
    counts = np.bincount(dc, minlength=len(scenario.dcs))
    out["jobs_per_dc"] = {d: int(c) for d, c in zip(scenario.dcs, counts, strict=True)}
    return out


# ---------------------------------------------------------------------------------------------
# datasets


def dataset_metadata(scenario: Scenario, seed: int, noise: bool) -> dict[str, Any]:
    """The ``greensched`` Parquet metadata of docs/dataset-format.md."""
    w = _weights(scenario)
    return {
        "format": 1,
        "dcs": list(scenario.dcs),
        "scenario": scenario.name,
        "seed": int(seed),
        "noise": bool(noise),
        "objective": {"energy": w["energy"], "carbon": w["carbon"], "delay": w["delay"],
                      "definition": objective_definition()},
    }


def build_dataset(
    scenario: Scenario,
    jobs: pd.DataFrame,
    seed: int = 0,
    noise: bool = True,
    *,
    policy: str = "random",
    fleet: Fleet | None = None,
    twin: Twin | None = None,
    plan: Any = None,
    simulation: Simulation | None = None,
) -> pd.DataFrame:
    """Predictor training rows in the format of ``docs/dataset-format.md``.

    The jobs are placed with ``policy`` (default ``random``, which spreads the load; the
    utilisation of every DC in every hour comes from that placement) and every job is evaluated
    at *every* DC against the resulting queues: ``energy_kwh__<dc>`` and ``service_s__<dc>`` are
    the twin's ground truth (noisy when ``noise``; the chosen DC's values equal the simulation's
    outcomes), ``utilization__<dc>`` the binding-resource utilisation of the placement
    (:func:`greensched.state.expected_utilization`'s definition with the jobs' own tokens), and
    ``best_dc`` the argmin of :func:`objective_definition`.  The metadata (``df.attrs
    ["greensched"]``) is written by :func:`write_dataset`.  A finished ``simulation`` run with
    ``all_dcs=True`` may be passed instead of re-running it.
    """
    if simulation is None:
        simulation = run_simulation(scenario, jobs, policy, seed, noise, fleet=fleet, twin=twin,
                                    plan=plan, all_dcs=True)
    elif "energy_kwh_all" not in simulation.result:
        raise GreenSchedError("the simulation was run without all_dcs=True")
    sim = simulation
    ja, res = sim.jobs, sim.result
    dcs = scenario.dcs
    util = xr.DataArray(res["resource_util"], dims=("hour", "dc"),
                        coords={"hour": np.arange(scenario.hours),
                                "dc": np.asarray(dcs, dtype=object)})
    state = dc_hour_state(scenario, util)
    cols: dict[str, Any] = {
        "job_id": ja.job_id,
        "arrival_s": ja.arrival_s,
        "hour": ja.hour,
        "area": _labels(ja.area, scenario.areas),
        "query_type": _labels(ja.qtype, scenario.query_types),
        "input_tokens": ja.input_tokens.astype(np.int64),
        "output_tokens": ja.output_tokens.astype(np.int64),
        "sla_s": ja.sla_s,
    }
    rtt = np.asarray(scenario.ds["rtt_s"].transpose("area", "dc").values, dtype=np.float64)
    per_dc: dict[str, np.ndarray] = {
        f: np.asarray(state[f].transpose("hour", "dc").values, dtype=np.float64)[ja.hour]
        for f in ("price_usd_per_kwh", "carbon_kg_per_kwh", "renewable_share", "pue",
                  "utilization")
    }
    per_dc["rtt_s"] = rtt[ja.area]
    per_dc["energy_kwh"] = res["energy_kwh_all"]
    per_dc["service_s"] = res["service_s_all"]
    for f in DATASET_DC_FIELDS:
        for j, d in enumerate(dcs):
            cols[f"{f}__{d}"] = per_dc[f][:, j]
    score = _objective(scenario, ja, res["energy_kwh_all"], res["service_s_all"])
    cols["best_dc"] = _labels(score.argmin(axis=1), dcs)
    df = pd.DataFrame(cols)
    df.attrs["greensched"] = dataset_metadata(scenario, sim.seed, sim.noise)
    return df


def write_dataset(df: pd.DataFrame, path: str | Path, metadata: dict[str, Any] | None = None
                  ) -> Path:
    """Write a dataset as Parquet with the ``greensched`` key-value metadata (JSON).

    ``metadata`` defaults to ``df.attrs["greensched"]`` (set by :func:`build_dataset`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = metadata if metadata is not None else df.attrs.get("greensched")
    if not meta:
        raise GreenSchedError("no dataset metadata: pass metadata= or use build_dataset()")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    plain = pd.DataFrame({c: df[c] for c in df.columns})
    table = pa.Table.from_pandas(plain, preserve_index=False)
    existing = dict(table.schema.metadata or {})
    existing[b"greensched"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    table = table.replace_schema_metadata(existing)
    tmp = p.with_name(p.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(p)
    return p
