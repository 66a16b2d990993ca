"""The closed loop, period by period: serve -> measure -> store -> drift check -> re-tune ->
promote -> hot swap (what ``greensched loop`` runs; the drift experiment is one configuration).

Each period ``p`` (scenario hour ``p mod hours``):

1. ``jobs_per_period`` jobs are drawn from the scenario's demand for that hour (after an injected
   drift with the query-type weights of ``load_shift``);
2. they are sent to the **service** (a :class:`Transport`: ``POST /v1/assign`` of the HTTP service
   over loopback, or the same steps in process), which predicts them with the promoted model
   version and places them greedily with epsilon-greedy exploration, logging propensities;
3. the **digital twin** runs the placed jobs (after the drift, a copy whose energy coefficients at
   ``drift_dcs`` are multiplied by ``energy_factor``) and the outcome records
   (:mod:`greensched.outcomes`) go back to the service (``POST /v1/outcomes``), which stores
   them;
4. one cycle of the feedback loop (:func:`greensched.feedback.loop.run_once`) checks the
   promoted version for drift on the store and, on DRIFT, re-tunes and promotes a better
   version; the service's registry poller then swaps it in, and the loop waits (bounded by
   ``swap_timeout_s``) until the service answers with the new version.

Counterfactuals on the same jobs and noise (common random numbers) measure what re-tuning buys:
greedy placement without exploration with the *stale* initial model, the *current* promoted
model, and an *oracle* that knows each job's true energy and service time in the current world.
Carbon per job is location-based, ``theta[h, d] * PUE[d] * E``.  Error is the MAPE of a model's
energy prediction at the DC that ran each job.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np
import pandas as pd

from greensched.errors import GreenSchedError
from greensched.eval.twin import NoiseSource, Twin, encode_jobs
from greensched.feedback.loop import LoopCycle, LoopState, run_once
from greensched.feedback.registry import ModelRegistry
from greensched.feedback.store import OutcomeStore
from greensched.feedback.world import (
    FAST_XGB,
    T0,
    _arrays_dataset,
    changed_twin,
    greedy_choice,
    period_jobs,
    train_initial_model,
)
from greensched.predictor.base import BasePredictor
from greensched.predictor.checkpoint import load_predictor
from greensched.predictor.dataset import DC_FIELDS, dc_column, rows_from_jobs
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, GreedyAssigner

__all__ = [
    "HttpTransport",
    "LocalTransport",
    "LoopConfig",
    "LoopResult",
    "RunResult",
    "LoopSetup",
    "Transport",
    "prepare_loop",
    "run_closed_loop",
    "summarise",
]

ASSIGN_COLUMNS = ("job_id", "dc", "propensity", "pred_energy_kwh", "pred_service_s",
                  "model_version")


@dataclass(frozen=True)
class LoopConfig:
    """Settings of a closed-loop run.

    ``drift_period`` is the first period of the changed world (``None``: no injected drift);
    the change multiplies the energy of every job at ``drift_dcs`` by ``energy_factor`` and the
    share of each query type named in ``load_shift`` by its weight.  ``window`` (default two
    periods of jobs) is the drift check's window of the promoted version's latest outcomes,
    ``retune_window`` (default one period) what a re-tune learns from (plus the initial
    training data as replay); a candidate must beat the current model by ``min_improvement``.
    ``max_wall_s`` stops the run after the period that crosses it.
    """

    periods: int = 24
    jobs_per_period: int = 300
    train_jobs: int = 3000
    drift_period: int | None = None
    drift_dcs: tuple[str, ...] = ()
    energy_factor: float = 1.0
    load_shift: tuple[tuple[str, float], ...] = ()
    epsilon: float = 0.15
    window: int | None = None
    retune_window: int | None = None
    min_improvement: float = 0.05
    xgb: tuple[tuple[str, Any], ...] = FAST_XGB
    seed: int = 0
    swap_timeout_s: float = 30.0
    max_wall_s: float | None = None
    post_batch: int = 100

    def __post_init__(self) -> None:
        if self.periods < 1:
            raise GreenSchedError(f"periods must be >= 1, got {self.periods!r}")
        if self.drift_period is not None and not 1 <= self.drift_period < self.periods:
            raise GreenSchedError(f"need 1 <= drift period < periods, got {self.drift_period!r} "
                                  f"and {self.periods!r}")
        if self.jobs_per_period < 50 or self.train_jobs < 100:
            raise GreenSchedError(f"need jobs per period >= 50 and training jobs >= 100, got "
                                  f"{self.jobs_per_period!r} and {self.train_jobs!r}")
        if not self.energy_factor > 0:
            raise GreenSchedError(f"energy factor must be > 0, got {self.energy_factor!r}")
        if not 0 <= self.epsilon <= 1:
            raise GreenSchedError(f"epsilon must lie in [0, 1], got {self.epsilon!r}")
        for name, w in self.load_shift:
            if not w > 0:
                raise GreenSchedError(f"load shift weight of {name!r} must be > 0, got {w!r}")
        if not 1 <= self.post_batch <= 1000:
            raise GreenSchedError(f"post_batch must lie in 1..1000, got {self.post_batch!r}")

    @property
    def drift_window(self) -> int:
        return self.window or 2 * self.jobs_per_period

    @property
    def tune_window(self) -> int:
        return self.retune_window or self.jobs_per_period

    @property
    def has_drift(self) -> bool:
        return self.drift_period is not None


# ----------------------------------------------------------------------------------------------
# Transports: how jobs reach the service and outcomes come back
# ----------------------------------------------------------------------------------------------

class Transport(Protocol):
    """The service as the loop sees it."""

    def assign(self, jobs: pd.DataFrame) -> pd.DataFrame:
        """One row per job (jobs order), columns :data:`ASSIGN_COLUMNS`; ``dc`` None when the
        job could not be placed."""
        ...

    def post_outcomes(self, records: list[dict[str, Any]]) -> int:
        """Store outcome records; returns how many were new."""
        ...

    def served_version(self) -> str:
        """The model version the service answers with now."""
        ...


def job_bodies(jobs: pd.DataFrame) -> list[dict[str, Any]]:
    """Jobs as ``POST /v1/assign`` bodies (plain JSON types)."""
    return [{"job_id": str(r.job_id), "area": str(r.area), "query_type": str(r.query_type),
             "input_tokens": int(r.input_tokens), "output_tokens": int(r.output_tokens),
             "sla_s": float(r.sla_s), "hour": int(r.hour), "arrival_s": float(r.arrival_s)}
            for r in jobs.itertuples(index=False)]


class HttpTransport:
    """The HTTP service at ``base_url`` (``X-API-Key`` authentication), with bounded timeouts."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 60.0,
                 post_batch: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.timeout_s = float(timeout_s)
        self.post_batch = int(post_batch)
        self.requests = 0

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "X-API-Key": self._key})
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:500]
            raise GreenSchedError(f"{method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise GreenSchedError(f"{method} {self.base_url}{path}: {exc}") from exc

    def assign(self, jobs: pd.DataFrame) -> pd.DataFrame:
        bodies = job_bodies(jobs)
        out: list[dict[str, Any]] = []
        for i in range(0, len(bodies), 1000):
            out += self._call("POST", "/v1/assign", {"jobs": bodies[i:i + 1000]})["assignments"]
        df = pd.DataFrame(out)
        return df.rename(columns={"predicted_energy_kwh": "pred_energy_kwh",
                                  "predicted_service_s": "pred_service_s"}).loc[
            :, list(ASSIGN_COLUMNS)]

    def post_outcomes(self, records: list[dict[str, Any]]) -> int:
        inserted = 0
        for i in range(0, len(records), self.post_batch):
            res = self._call("POST", "/v1/outcomes", {"outcomes": records[i:i + self.post_batch]})
            inserted += int(res["inserted"])
        return inserted

    def served_version(self) -> str:
        return str(self._call("GET", "/healthz")["model_version"])


class LocalTransport:
    """The service's steps in this process (no HTTP): the registry's promoted model predicts,
    the greedy assigner places with epsilon-greedy exploration, the store ingests."""

    def __init__(self, scenario: Scenario, registry: ModelRegistry, store: OutcomeStore, *,
                 epsilon: float, seed: int) -> None:
        self.scenario, self.registry, self.store = scenario, registry, store
        self.epsilon, self.seed = epsilon, seed
        self._models: dict[str, BasePredictor] = {}
        self._calls = 0

    def _model(self) -> tuple[BasePredictor, str]:
        v = self.registry.current()
        if v is None:
            raise GreenSchedError(f"no model version promoted in {self.registry.root}")
        if v not in self._models:
            self._models[v] = load_predictor(self.registry.path(v))
        return self._models[v], v

    def assign(self, jobs: pd.DataFrame) -> pd.DataFrame:
        model, version = self._model()
        preds = model.predict_jobs(jobs, self.scenario)
        self._calls += 1
        cfg = AssignConfig(explore="epsilon", epsilon=self.epsilon,
                           seed=self.seed * 7919 + self._calls)
        frame = GreedyAssigner(self.scenario, cfg).assign(jobs, preds).frame
        dc = pd.Index(self.scenario.dcs).get_indexer(frame["dc"].astype(str))
        rows = np.arange(len(jobs))
        ok = dc >= 0
        e = np.where(ok, preds["energy_kwh"].values[rows, np.maximum(dc, 0)], np.nan)
        s = np.where(ok, preds["service_s"].values[rows, np.maximum(dc, 0)], np.nan)
        return pd.DataFrame({"job_id": jobs["job_id"].astype(str).to_numpy(),
                             "dc": [self.scenario.dcs[d] if d >= 0 else None for d in dc],
                             "propensity": frame["propensity"].to_numpy(dtype=float),
                             "pred_energy_kwh": e, "pred_service_s": s,
                             "model_version": version})

    def post_outcomes(self, records: list[dict[str, Any]]) -> int:
        return self.store.ingest(records).inserted

    def served_version(self) -> str:
        return self._model()[1]


def wait_for_version(transport: Transport, version: str, timeout_s: float) -> float | None:
    """Seconds until the service answers with ``version`` (``None``: not within the timeout)."""
    t0 = time.perf_counter()
    while True:
        if transport.served_version() == version:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            return None
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------
# Set-up, records, one run
# ----------------------------------------------------------------------------------------------

@dataclass
class LoopSetup:
    """What exists before the service starts: the worlds, v1 and its training data, the
    registry (v1 promoted) and the store path."""

    scenario: Scenario
    before: Twin
    after: Twin
    v1: BasePredictor
    train: pd.DataFrame
    registry: ModelRegistry
    first_version: str
    store_path: Path
    train_s: float


def prepare_loop(cfg: LoopConfig, scenario: Scenario, work_dir: str | Path) -> LoopSetup:
    """Train v1 on the twin, register and promote it in ``work_dir/registry``; the store is
    ``work_dir/outcomes.sqlite`` (both created)."""
    t0 = time.perf_counter()
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    unknown = [d for d in cfg.drift_dcs if d not in scenario.dcs]
    if unknown:
        raise GreenSchedError(f"drift DCs {unknown!r} are not in scenario {scenario.name!r} "
                              f"(DCs: {', '.join(scenario.dcs)})")
    types = [k for k, _ in cfg.load_shift if k not in scenario.query_types]
    if types:
        raise GreenSchedError(f"load-shift query types {types!r} are not in scenario "
                              f"{scenario.name!r} ({', '.join(scenario.query_types)})")
    before = Twin(scenario)
    after = changed_twin(before, cfg.drift_dcs, cfg.energy_factor) if cfg.has_drift else before
    v1, train = train_initial_model(scenario, before, cfg, serving_state=True)
    registry = ModelRegistry(work / "registry")
    v1.save(work / "v1")
    metrics = cast(dict[str, Any], v1.metrics_)
    val = metrics["validation"]
    first = registry.register(work / "v1", kind=v1.kind, notes="initial model (twin data)",
                              data_window={"n_train_rows": int(metrics["n_train"])},
                              metrics={"validation": {t: {k: val[t][k] for k in
                                                          ("mape", "rmse_log")}
                                                      for t in ("energy_kwh", "service_s")}})
    registry.promote(first, reason="initial model")
    return LoopSetup(scenario, before, after, v1, train, registry, first,
                     work / "outcomes.sqlite", time.perf_counter() - t0)


def period_records(scenario: Scenario, jobs: pd.DataFrame, ans: pd.DataFrame,
                   res: dict[str, Any], period: int) -> list[dict[str, Any]]:
    """Outcome records (plain JSON types) of the placed jobs of one period: the job, the
    service's answer, the twin's measurement and accounting, and the state the model saw."""
    ds = scenario.ds
    dcs = list(scenario.dcs)
    dc = pd.Index(dcs).get_indexer(ans["dc"].astype(str))
    h = jobs["hour"].to_numpy(dtype=np.int64)
    theta = ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    pue = ds["pue"].sel(dc=dcs).values
    e, s = res["energy_kwh"], res["service_s"]
    carbon = theta[h, dc] * pue[dc] * e
    state = rows_from_jobs(jobs, scenario)
    state_cols = [dc_column(f, d) for d in dcs for f in DC_FIELDS]
    feats = state[state_cols].to_numpy(dtype=float)
    offset = jobs["arrival_s"].to_numpy(dtype=float) - 3600.0 * h
    start = T0 + timedelta(hours=period)
    out = []
    for i, r in enumerate(jobs.itertuples(index=False)):
        out.append({
            "job_id": str(r.job_id), "arrival_s": float(r.arrival_s), "hour": int(r.hour),
            "area": str(r.area), "query_type": str(r.query_type),
            "input_tokens": int(r.input_tokens), "output_tokens": int(r.output_tokens),
            "sla_s": float(r.sla_s),
            "features": dict(zip(state_cols, map(float, feats[i]), strict=True)),
            "dc": dcs[dc[i]], "policy": "service-greedy-epsilon",
            "model_version": str(ans["model_version"].iloc[i]),
            "pred_energy_kwh": float(ans["pred_energy_kwh"].iloc[i]),
            "pred_service_s": float(ans["pred_service_s"].iloc[i]),
            "propensity": float(min(max(ans["propensity"].iloc[i], 1e-9), 1.0)),
            "energy_kwh": float(e[i]), "service_s": float(s[i]),
            "wait_s": float(res["wait_s"][i]), "carbon_kg": float(carbon[i]),
            "sla_met": bool(s[i] <= r.sla_s),
            "assigned_at": (start + timedelta(seconds=float(offset[i]))).isoformat(),
            "measured_at": (start + timedelta(seconds=float(offset[i] + s[i]))).isoformat(),
        })
    return out


ConfigT = TypeVar("ConfigT")


@dataclass
class RunResult(Generic[ConfigT]):
    """Numbers of one closed-loop run; ``periods`` has one row per period served.

    Shared by :class:`LoopResult` and the drift experiment's result, which differ only in their
    configuration type.
    """

    config: ConfigT
    periods: pd.DataFrame
    summary: dict[str, Any]
    cycles: list[dict[str, Any]] = field(default_factory=list)
    robustness: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    plot_path: Path | None = None

    @property
    def is_ok(self) -> bool:
        """True when the loop re-tuned after the drift and cut the error by >= 10 %."""
        red = self.summary.get("error_reduction")
        return red is not None and math.isfinite(red) and red >= 0.10


@dataclass
class LoopResult(RunResult[LoopConfig]):
    """Numbers of one :func:`run_closed_loop` run."""


def _mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - meas) / meas)) if len(meas) else math.nan


def run_closed_loop(cfg: LoopConfig, setup: LoopSetup, transport: Transport, *,
                    on_period: Callable[[dict[str, Any]], None] | None = None) -> LoopResult:
    """Serve ``cfg.periods`` periods through ``transport`` (see the module docstring)."""
    t_start = time.perf_counter()
    scenario, registry, first = setup.scenario, setup.registry, setup.first_version
    dcs = list(scenario.dcs)
    shift = dict(cfg.load_shift)
    theta = scenario.ds["carbon_kg_per_kwh"].transpose("hour", "dc").values
    pue = scenario.ds["pue"].sel(dc=dcs).values
    plain = AssignConfig()
    models: dict[str, BasePredictor] = {first: setup.v1}
    state = LoopState()
    rows: list[dict[str, Any]] = []
    cycles: list[LoopCycle] = []
    with OutcomeStore.open(setup.store_path) as store:
        for p in range(cfg.periods):
            if cfg.max_wall_s is not None and time.perf_counter() - t_start > cfg.max_wall_s:
                break
            t_p = time.perf_counter()
            changed = cfg.has_drift and p >= int(cfg.drift_period or 0)
            world = setup.after if changed else setup.before
            hour = p % scenario.hours
            seed_p = cfg.seed * 100_003 + p
            jobs = period_jobs(scenario, cfg.jobs_per_period, hour, seed_p, prefix=f"p{p:03d}-",
                               type_weight=shift if changed and shift else None)
            ans = transport.assign(jobs)
            placed = ans["dc"].notna().to_numpy()
            jobs_p = jobs[placed].reset_index(drop=True)
            ans_p = ans[placed].reset_index(drop=True)
            dc_live = pd.Index(dcs).get_indexer(ans_p["dc"].astype(str)).astype(np.int64)
            ja = encode_jobs(scenario, jobs_p)
            res = world.evaluate(ja, dc_live, noise=NoiseSource(seed_p), all_dcs=True)
            inserted = transport.post_outcomes(period_records(scenario, jobs_p, ans_p, res, p))
            version = str(ans_p["model_version"].mode().iloc[0])
            if version not in models:
                models[version] = load_predictor(registry.path(version))
            pred_cur = models[version].predict_jobs(jobs_p, scenario)
            pred_stale = pred_cur if version == first else setup.v1.predict_jobs(jobs_p,
                                                                                 scenario)
            dc_cur, _ = greedy_choice(scenario, jobs_p, pred_cur, plain)
            dc_stale = dc_cur if version == first else greedy_choice(
                scenario, jobs_p, pred_stale, plain)[0]
            truth = world.evaluate(ja, dc_stale, noise=None, all_dcs=True)
            dc_orc, _ = greedy_choice(scenario, jobs_p, _arrays_dataset(
                jobs_p["job_id"].to_numpy(), dcs, truth["energy_kwh_all"],
                truth["service_s_all"]), plain)
            e_all = res["energy_kwh_all"]
            n = len(jobs_p)

            def carbon(dc: np.ndarray, e_all: np.ndarray = e_all,
                       hours: np.ndarray = ja.hour) -> float:
                return float(np.mean(theta[hours, dc] * pue[dc] * e_all[np.arange(len(dc)), dc]))

            e_meas, s_meas = res["energy_kwh"], res["service_s"]
            stale_e = pred_stale["energy_kwh"].values[np.arange(n), dc_live]
            stale_s = pred_stale["service_s"].values[np.arange(n), dc_live]
            cycle = run_once(store, registry, replay_data=setup.train, window=cfg.drift_window,
                             min_samples=100, retune_window=cfg.tune_window,
                             min_improvement=cfg.min_improvement, seed=cfg.seed + p,
                             state=state)
            cycles.append(cycle)
            swap_s = None
            if cycle.promoted and cycle.version_after is not None:
                swap_s = wait_for_version(transport, cycle.version_after, cfg.swap_timeout_s)
                if swap_s is None:
                    raise GreenSchedError(f"the service did not swap in {cycle.version_after} "
                                          f"within {cfg.swap_timeout_s:g} s")
            drift = cycle.drift
            row = {
                "period": p, "hour": hour, "changed": changed, "n_jobs": n,
                "n_unplaced": int((~placed).sum()), "stored": inserted,
                "version": version, "version_after": cycle.version_after,
                "mape_energy_live": _mape(ans_p["pred_energy_kwh"].to_numpy(float), e_meas),
                "mape_energy_stale": _mape(stale_e, e_meas),
                "mape_service_live": _mape(ans_p["pred_service_s"].to_numpy(float), s_meas),
                "mape_service_stale": _mape(stale_s, s_meas),
                "carbon_live_kg": carbon(dc_live), "carbon_current_kg": carbon(dc_cur),
                "carbon_stale_kg": carbon(dc_stale), "carbon_oracle_kg": carbon(dc_orc),
                "share_changed_dcs_current": float(np.isin(
                    dc_cur, [dcs.index(d) for d in cfg.drift_dcs]).mean()),
                "share_changed_dcs_oracle": float(np.isin(
                    dc_orc, [dcs.index(d) for d in cfg.drift_dcs]).mean()),
                "verdict": None if cycle.verdict is None else cycle.verdict.value,
                "energy_error_ratio": None if drift is None
                else drift.target("energy_kwh").ratio,
                "baseline": cycle.baseline, "reasons": "; ".join(cycle.reasons()),
                "action": cycle.action.value, "cycle_s": cycle.elapsed_s, "swap_s": swap_s,
                "period_s": time.perf_counter() - t_p,
            }
            rows.append(row)
            if on_period is not None:
                on_period(row)
    per = pd.DataFrame(rows)
    summary = summarise(cfg, per, time.perf_counter() - t_start,
                        cast(dict[str, Any], setup.v1.metrics_)["validation"])
    summary["train_s"] = setup.train_s
    summary["versions"] = registry.versions()
    summary["current_version"] = registry.current()
    return LoopResult(cfg, per, summary, [c.to_dict() for c in cycles])


def _pooled(df: pd.DataFrame, num: str, den: str = "n_jobs") -> float:
    if len(df) == 0 or df[den].sum() == 0:
        return math.nan
    return float((df[num] * df[den]).sum() / df[den].sum())


def summarise(cfg: LoopConfig, per: pd.DataFrame, elapsed: float,
              train_metrics: dict[str, Any]) -> dict[str, Any]:
    """Detection period and delay, promotions, error and carbon before/after (pooled)."""
    c = cfg.drift_period if cfg.drift_period is not None else len(per)
    pre, post = per[per["period"] < c], per[per["period"] >= c]
    drift_post = post[post["verdict"] == "drift"]
    promo = per[per["action"] == "promoted"]
    promo_post = promo[promo["period"] >= c]
    detected = int(drift_post["period"].iloc[0]) if len(drift_post) else None
    promoted = int(promo_post["period"].iloc[0]) if len(promo_post) else None
    s: dict[str, Any] = {
        "change_period": cfg.drift_period, "periods": cfg.periods,
        "periods_served": len(per), "jobs_per_period": cfg.jobs_per_period,
        "detected_period": detected,
        "detection_delay_periods": None if detected is None else detected - c + 1,
        "detection_delay_jobs": None if detected is None else int(
            per[(per["period"] >= c) & (per["period"] <= detected)]["n_jobs"].sum()),
        "false_alarms_before_change": int((pre["verdict"] == "drift").sum()),
        "promoted_period": promoted,
        "promotions": promo["period"].astype(int).tolist(),
        "versions_promoted": [str(v) for v in promo["version_after"]],
        "rejected_retunes": per.loc[per["action"] == "rejected", "period"].astype(int).tolist(),
        "v1_validation_energy_mape": train_metrics["energy_kwh"]["mape"],
        "v1_validation_service_mape": train_metrics["service_s"]["mape"],
        "pre_change_energy_mape": _pooled(pre, "mape_energy_live"),
        "pre_change_service_mape": _pooled(pre, "mape_service_live"),
        "carbon_pre_live_g": 1000.0 * _pooled(pre, "carbon_live_kg"),
        "swap_s_max": float(per["swap_s"].dropna().max()) if per["swap_s"].notna().any()
        else None,
        "elapsed_s": elapsed,
    }
    if promoted is None:
        s.update(error_before=math.nan, error_after=math.nan, error_reduction=math.nan)
        return s
    drifted = per[(per["period"] >= c) & (per["period"] <= promoted)]
    after = per[per["period"] > promoted]
    s["error_before"] = _pooled(drifted, "mape_energy_stale")
    s["error_stale_after"] = _pooled(after, "mape_energy_stale")
    s["error_after"] = _pooled(after, "mape_energy_live")
    s["error_reduction"] = 1.0 - s["error_after"] / s["error_stale_after"]
    s["error_reduction_vs_drifted"] = 1.0 - s["error_after"] / s["error_before"]
    s["service_error_stale_after"] = _pooled(after, "mape_service_stale")
    s["service_error_after"] = _pooled(after, "mape_service_live")
    for name in ("stale", "current", "oracle", "live"):
        s[f"carbon_{name}_g"] = 1000.0 * _pooled(after, f"carbon_{name}_kg")
        s[f"carbon_{name}_pre_g"] = 1000.0 * _pooled(pre, f"carbon_{name}_kg")
        s[f"carbon_{name}_drifted_g"] = 1000.0 * _pooled(drifted, f"carbon_{name}_kg")
    gap = s["carbon_stale_g"] - s["carbon_oracle_g"]
    s["carbon_gap_stale_vs_oracle"] = gap / s["carbon_oracle_g"]
    s["carbon_recovered"] = (s["carbon_stale_g"] - s["carbon_current_g"]) / gap \
        if gap > 0 else math.nan
    s["carbon_saving_vs_stale"] = 1.0 - s["carbon_current_g"] / s["carbon_stale_g"]
    return s


def json_ready(obj: Any) -> Any:
    """``obj`` with NaN/inf as None and NumPy scalars as Python numbers (for JSON)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    return obj
