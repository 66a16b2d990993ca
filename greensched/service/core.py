"""The service's shared state and the batch step: predict, assign, remember, report."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from greensched.feedback.ledger import CapacityConflict, JobIdRace, LedgerBusy, Reservation
from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario, load_coefficients, load_scenario
from greensched.scheduler.assign import (
    REASONS,
    CapacityLedger,
    GreedyAssigner,
    PlanGuide,
    assignment_columns,
)
from greensched.service.batcher import JobConflict, MicroBatcher, Pending
from greensched.service.config import ServiceBusy, ServiceConfig, ServiceError
from greensched.service.metrics import Metrics
from greensched.service.predict import CoefficientPredictor, JobArrays, load_model, model_version

__all__ = ["GreenSchedService", "allocation_summary"]


def _fingerprint(jobs: JobArrays, i: int) -> str:
    """Job ``i``'s content as text (what a re-sent job id must match)."""
    return json.dumps(jobs.fingerprint(i), separators=(",", ":"))

log = logging.getLogger("greensched.service")
_REASON_TEXT = np.asarray(["", *REASONS], dtype=object)

class GreenSchedService:
    """State shared by the endpoints: scenario, assigner, ledger, model, store, metrics.

    Reachable from a running app as ``app.state.greensched`` (tests use :attr:`ledger`).
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self._key_digest = hashlib.sha256(config.resolve_api_key().encode("utf-8")).digest()
        self.scenario = self._load_scenario(config)
        scen = self.scenario
        self.plan_meta: dict[str, Any] | None = None
        self.plan_summary: dict[str, Any] | None = None
        guide: PlanGuide | None = None
        self.mode = config.mode or ("plan" if config.plan is not None else "greedy")
        if config.plan is not None:
            guide = self._load_plan(Path(config.plan))
        if self.mode == "greedy":
            guide = None
        elif self.mode == "follow":
            assert guide is not None
            if guide.allocation is None:
                raise ServiceError(f"{config.plan}: allocation.csv not found; plan-following "
                                   "needs the plan's shares")
            guide = PlanGuide(allocation=guide.allocation, weights=guide.weights,
                              source=guide.source)
        self.ledger = CapacityLedger.from_scenario(scen)
        # the durable ledger: reservations and job ids survive restarts, replicas share it
        self.durable: Any = None
        self._expired_before = 0
        if config.ledger is not None:
            from greensched.feedback.ledger import DurableLedger

            self.durable = DurableLedger.open(config.ledger, self.ledger, scenario=scen.name,
                                              busy_timeout_s=config.store_busy_timeout_s)
            self.durable.load_into(self.ledger)
            log.info("capacity ledger %s: %s", self.durable.url, self.durable.counts())
        self.assigner = GreedyAssigner(scen, config.assign, guide=guide, ledger=self.ledger)
        ds = scen.ds
        self._units_per_token = ds["units_per_token"].transpose("query_type", "resource").values
        self._mean_out = np.asarray(ds["output_tokens"].values, dtype=float)
        self._area_pos = {a: i for i, a in enumerate(scen.areas)}
        self._type_pos = {k: i for i, k in enumerate(scen.query_types)}
        # predictions
        self._hot: Any = None
        self._static: tuple[Any, str] | None = None
        if config.registry is not None:
            from greensched.feedback.registry import HotModel, ModelRegistry

            reg = ModelRegistry(config.registry)
            if reg.current() is None:
                raise ServiceError(f"registry {str(config.registry)!r} has no promoted version; "
                                   "register and promote one first")
            self._hot = HotModel(reg, lambda p: load_model(Path(p), scen))
        elif config.model is not None:
            path = Path(config.model)
            self._static = (load_model(path, scen), model_version(path))
        else:
            assert config.coefficients is not None
            cpath = Path(config.coefficients)
            digest = hashlib.sha256(cpath.read_bytes()).hexdigest()[:12]
            self._static = (CoefficientPredictor(scen), f"coefficients-{digest}")
        if config.assign.risk:
            pred, _ = self.predictor()
            if isinstance(pred, CoefficientPredictor):
                raise ServiceError("risk-aware assignment needs p90 predictions from a model; "
                                   "coefficients give none")
        self.versions_served: set[str] = {self.model_version()[0]}
        # outcomes
        self.store: Any = None
        self._store_lock = threading.Lock()
        if config.store is not None:
            from greensched.feedback.store import OutcomeStore

            self.store = OutcomeStore.open(config.store,
                                           busy_timeout_s=config.store_busy_timeout_s)
        self._recent: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._dcs = list(scen.dcs)  # the property goes through xarray's index each time
        self.assigned_counts = np.zeros(len(self._dcs), dtype=np.int64)
        self.started_monotonic = time.monotonic()
        self.metrics = Metrics(self)
        self.batcher = MicroBatcher(self._process, window_s=config.batch_window_s,
                                    max_jobs=config.max_predict_jobs)

    # -- set-up ----------------------------------------------------------------------------------
    @staticmethod
    def _load_scenario(config: ServiceConfig) -> Scenario:
        src = config.scenario
        if isinstance(src, Scenario):
            scen = src.copy() if config.coefficients is not None else src
            if config.coefficients is not None:
                scen.coefficients = load_coefficients(config.coefficients, scen)
            return scen
        if src is None:
            from greensched.defaults import default_scenario

            scen = default_scenario()
            if config.coefficients is not None:
                scen.coefficients = load_coefficients(config.coefficients, scen)
            return scen
        return load_scenario(src, coefficients=config.coefficients)

    def _load_plan(self, root: Path) -> PlanGuide:
        from greensched.scheduler.plan_loader import plan_guide_for

        guide = plan_guide_for(self.scenario, root, need_duals=self.mode == "plan")
        self.plan_meta = json.loads((root / "plan.json").read_text(encoding="utf-8"))
        self.plan_summary = allocation_summary(self.scenario, guide)
        self.plan_summary["has_duals"] = guide.has_duals
        return guide

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the micro-batcher and, with a registry, the version poller."""
        self.batcher.start()
        if self._hot is not None:
            self._hot.start(self.config.poll_interval_s)

    def stop(self) -> None:
        """Stop the threads and close the outcome store."""
        self.batcher.stop()
        if self._hot is not None:
            self._hot.stop()
        if self.store is not None:
            self.store.close()
        if self.durable is not None:
            self.durable.close()

    def check_key(self, provided: str | bytes | None) -> bool:
        """Whether ``provided`` is the API key (constant time in the key's content)."""
        if provided is None:
            return False
        raw = provided.encode("utf-8") if isinstance(provided, str) else provided
        return hmac.compare_digest(hashlib.sha256(raw).digest(), self._key_digest)

    def predictor(self) -> tuple[Any, str]:
        """The predictor in use and its version."""
        if self._hot is not None:
            obj, version = self._hot.get()
            return obj, version
        assert self._static is not None
        return self._static

    def model_version(self) -> tuple[str, str]:
        """(version, kind) of the predictor in use."""
        obj, version = self.predictor()
        return version, str(getattr(obj, "kind", "model"))

    def encode(self, jobs: list[Any]) -> JobArrays:
        """Validated request jobs → integer codes and arrays."""
        n = len(jobs)
        hour = np.empty(n, dtype=np.int64)
        arrival = np.empty(n)
        out = np.empty(n)
        sla = np.empty(n)
        for i, j in enumerate(jobs):
            if j.arrival_s is not None:
                arrival[i] = j.arrival_s
                hour[i] = int(j.arrival_s // 3600.0)
            else:
                hour[i] = j.hour
                arrival[i] = j.hour * 3600.0
            out[i] = np.nan if j.output_tokens is None else j.output_tokens
            sla[i] = DEFAULT_SLA_S if j.sla_s is None else j.sla_s
        return JobArrays(
            job_id=[j.job_id for j in jobs],
            hour=hour,
            area=np.fromiter((self._area_pos[j.area] for j in jobs), np.int64, n),
            qtype=np.fromiter((self._type_pos[j.query_type] for j in jobs), np.int64, n),
            input_tokens=np.fromiter((j.input_tokens for j in jobs), float, n),
            output_tokens=out,
            sla_s=sla,
            arrival_s=arrival,
        )

    async def assign(self, jobs: JobArrays) -> list[dict[str, Any]]:
        """Place ``jobs`` through the micro-batcher; one result dict per job."""
        result: list[dict[str, Any]] = await asyncio.wrap_future(self.batcher.submit(jobs))
        return result

    # -- the batch step (micro-batcher thread) -----------------------------------------------------
    def _process(self, items: list[Pending]) -> None:
        """Predict and assign the jobs of ``items`` (arrival order) and resolve their futures.

        With a durable ledger, job ids not remembered in memory may have been answered before
        (by an earlier run, or by another replica).  PostgreSQL (shared by replicas) is asked
        first; a single SQLite writer skips that read: a known job id makes the batch's insert
        fail as a whole (primary key, nothing written), and the batch is then decided again
        with the stored answers.
        """
        self.metrics.batch_requests.observe(len(items))
        try:
            self._expire()
        except BaseException as exc:
            for it in items:
                it.future.set_exception(exc)
            return
        lookup_first = self.durable is not None and self.durable.shared
        try:
            self._decide(items, lookup_first)
        except JobIdRace:
            if self.durable is None or lookup_first:
                raise  # pragma: no cover - _decide resolves the futures itself
            self._decide([it for it in items if not it.future.done()], True)

    def _decide(self, items: list[Pending], lookup: bool) -> None:
        """One attempt of :meth:`_process`; raises :class:`JobIdRace` only without ``lookup``
        (futures of the undecided requests then stay unresolved)."""
        track = self.config.remember_jobs > 0 or self.durable is not None
        try:
            stored = self._stored_answers(items) if lookup else {}
        except BaseException as exc:
            for it in items:
                it.future.set_exception(exc)
            return
        accepted: list[Pending] = []
        # replays and conflicts, decided before anything is reserved
        answers: list[list[Any]] = []  # per item: per job a dict (replay) or an int (fresh)
        fresh_ids: dict[str, int] = {}
        pending_fp: list[str] = []  # fingerprints of the fresh jobs, in order
        fresh_jobs: list[JobArrays] = []
        n_fresh = 0
        for it in items:
            jobs = it.jobs
            plan: list[Any] = []
            conflicts: list[str] = []
            local: list[int] = []
            for i, jid in enumerate(jobs.job_id):
                fp = _fingerprint(jobs, i) if track else ""
                known = (self._recent.get(jid) or stored.get(jid)) if track else None
                if known is not None:
                    if known[0] != fp:
                        conflicts.append(jid)
                    plan.append(known[1])
                    continue
                pos = fresh_ids.get(jid) if track else None
                if pos is not None:
                    if pending_fp[pos] != fp:
                        conflicts.append(jid)
                    plan.append(pos)
                    continue
                plan.append(n_fresh + len(local))
                local.append(i)
                if track:
                    fresh_ids[jid] = n_fresh + len(local) - 1
                    pending_fp.append(fp)
            if conflicts:
                # nothing of this request is assigned; forget its fresh jobs
                for i in local:
                    fresh_ids.pop(jobs.job_id[i], None)
                if track and local:
                    del pending_fp[len(pending_fp) - len(local):]
                it.future.set_exception(JobConflict(conflicts))
                continue
            if local:
                idx = np.asarray(local, dtype=np.int64)
                fresh_jobs.append(jobs if len(local) == len(jobs) else jobs.take(idx))
                n_fresh += len(local)
            accepted.append(it)
            answers.append(plan)
        try:
            results = self._assign_fresh(JobArrays.concat(fresh_jobs), pending_fp) \
                if fresh_jobs else []
        except JobIdRace:
            if not lookup and self.durable is not None:
                raise  # decided again with the stored answers
            for it in accepted:
                it.future.set_exception(JobIdRace())
            return
        except BaseException as exc:
            if not isinstance(exc, LedgerBusy):
                log.exception("assigning a batch of %d job(s) failed", n_fresh)
            for it in accepted:
                it.future.set_exception(exc)
            return
        replays = 0
        for it, plan in zip(accepted, answers, strict=True):
            out = []
            for x in plan:
                if isinstance(x, int):
                    out.append(results[x])
                else:
                    out.append(x)
                    replays += 1
            it.future.set_result(out)
        if replays:
            self.metrics.replayed.inc(replays)

    def _stored_answers(self, items: list[Pending]) -> dict[str, tuple[str, dict[str, Any]]]:
        """The durable ledger's answers for job ids not in the in-memory cache."""
        unknown = [jid for it in items for jid in it.jobs.job_id if jid not in self._recent]
        return self.durable.lookup(unknown) if unknown else {}

    def _expire(self) -> None:
        """End the reservations of hours that have passed (``hour0_unix_s`` set)."""
        h0 = self.config.hour0_unix_s
        if h0 is None or self.durable is None:
            return
        now_hour = min(int((time.time() - h0) // 3600.0), self.ledger.hours)
        if now_hour <= self._expired_before:
            return
        self._give_back(self.durable.expire_before(now_hour))
        self._expired_before = now_hour

    def _give_back(self, ended: list[tuple[int, int, np.ndarray]]) -> None:
        """Return ended reservations' ticks to the in-memory ledger."""
        for h, d, ticks in ended:
            self.ledger.release_ticks(h, d, ticks)

    def release_jobs(self, job_ids: list[str]) -> int:
        """End the reservations of jobs whose outcome arrived; how many were active."""
        if self.durable is None or not self.config.release_on_outcome:
            return 0
        ended = self.durable.release(job_ids)
        self._give_back(ended)
        return len(ended)

    def _assign_fresh(self, jobs: JobArrays, fingerprints: list[str] | None = None
                      ) -> list[dict[str, Any]]:
        fps = fingerprints or []
        if len(fps) != len(jobs) and (self.durable is not None or self.config.remember_jobs):
            fps = [_fingerprint(jobs, i) for i in range(len(jobs))]
        predictor, version = self.predictor()
        if version not in self.versions_served:
            self.versions_served.add(version)
        n = len(jobs)
        m = self.metrics
        t0 = time.perf_counter()
        preds = predictor.predict(jobs)
        t1 = time.perf_counter()
        m.predict_s.observe(t1 - t0)
        m.batch_jobs.observe(n)
        risk = self.config.assign.risk
        energy_mean, service_mean = preds["energy_kwh"], preds["service_s"]
        if risk:
            if "energy_kwh_p90" not in preds or "service_s_p90" not in preds:
                raise ServiceError(f"model {version!r} gives no p90 predictions; risk-aware "
                                   "assignment needs them")
            energy, service = preds["energy_kwh_p90"], preds["service_s_p90"]
        else:
            energy, service = energy_mean, service_mean
        for name, arr in (("energy_kwh", energy), ("service_s", service)):
            bad = ~np.isfinite(arr) | (arr < 0)
            if bad.any():
                j, d = (int(x[0]) for x in np.nonzero(bad))
                raise ServiceError(f"model {version!r} predicted {name} {arr[j, d]!r} for job "
                                   f"{jobs.job_id[j]!r} at dc {self.scenario.dcs[d]!r}")
        k = jobs.qtype
        tokens = jobs.input_tokens + np.where(np.isnan(jobs.output_tokens), self._mean_out[k],
                                              jobs.output_tokens)
        ticks = self.ledger.to_ticks(self._units_per_token[k] * tokens[:, None])
        a = self.assigner
        follow = self.mode == "follow"
        durable = self.durable
        hours = np.unique(jobs.hour).tolist()
        for attempt in range(self.config.ledger_retries + 1):
            if durable is not None and (durable.shared or attempt > 0):
                durable.load_into(self.ledger, hours)  # other replicas' reservations
            choice, propensity, score = a.assign_arrays(
                hour=jobs.hour, area=jobs.area, qtype=k, tokens=tokens, sla=jobs.sla_s,
                energy=energy, service=service, usage_ticks=ticks, arrival=None,
                follow=follow)
            out, reason = self._answers(jobs, version, choice, propensity, score, tokens,
                                        service, energy_mean, service_mean)
            if durable is None:
                break
            try:
                durable.commit([
                    Reservation(r["job_id"], fps[i], int(jobs.hour[i]), r["dc"],
                                ticks[i].tolist() if r["dc"] is not None else None, r)
                    for i, r in enumerate(out)])
                break
            except CapacityConflict:
                self._undo(jobs.hour, choice, ticks)
                m.ledger_conflicts.inc()
                if attempt == self.config.ledger_retries:
                    raise LedgerBusy(f"capacity of hour(s) {hours} kept changing under "
                                     f"{attempt + 1} attempts; retry the request") from None
            except BaseException:
                self._undo(jobs.hour, choice, ticks)
                raise
        m.assign_s.observe(time.perf_counter() - t1)
        unplaced = reason[choice < 0]
        if unplaced.size:
            for r, cnt in zip(*np.unique(unplaced, return_counts=True), strict=True):
                m.unplaced.labels(str(r)).inc(int(cnt))
        counts = np.bincount(choice[choice >= 0], minlength=len(self._dcs))
        self.assigned_counts += counts
        for dpos in np.flatnonzero(counts).tolist():
            m.assigned.labels(self._dcs[dpos]).inc(int(counts[dpos]))
        remember = self.config.remember_jobs
        if remember:
            recent = self._recent
            for i, res in enumerate(out):
                recent[res["job_id"]] = (fps[i], res)
            while len(recent) > remember:
                recent.popitem(last=False)
        return out

    def _undo(self, hour: np.ndarray, choice: np.ndarray, ticks: np.ndarray) -> None:
        """Give back what :meth:`GreedyAssigner.assign_arrays` reserved in memory."""
        placed = np.flatnonzero(choice >= 0)
        with self.ledger.lock:
            np.subtract.at(self.ledger.used_ticks, (hour[placed], choice[placed]),
                           ticks[placed])

    def _answers(self, jobs: JobArrays, version: str, choice: np.ndarray,
                 propensity: np.ndarray, score: np.ndarray, tokens: np.ndarray,
                 service: np.ndarray, energy_mean: np.ndarray, service_mean: np.ndarray
                 ) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Answer dicts per job from the scheduler's per-job columns (costs at the mean
        predictions, why unplaced), and the reasons."""
        codes = {"area": jobs.area, "qtype": jobs.qtype, "hour": jobs.hour, "tokens": tokens,
                 "sla": jobs.sla_s, "arrival": jobs.arrival_s}
        cols = assignment_columns(self.assigner, codes, {"energy_kwh": energy_mean,
                                                         "service_s": service_mean},
                                  choice, score, propensity, service)
        reason = _REASON_TEXT[cols["reason_code"]]

        def clean(arr: np.ndarray) -> list[float | None]:
            return [None if math.isnan(x) else x for x in arr.tolist()]

        dcs = self._dcs
        dc_names = [dcs[c] if c >= 0 else None for c in choice.tolist()]
        values = [clean(cols[c]) for c in ("predicted_energy_kwh", "predicted_service_s",
                                            "carbon_kg", "cost_usd", "score", "propensity")]
        out = [
            {"job_id": jid, "dc": dc, "hour": h, "predicted_energy_kwh": pe,
             "predicted_service_s": ps, "carbon_kg": ck, "cost_usd": cu, "score": sc,
             "propensity": pr, "model_version": version, "reason": rs}
            for jid, dc, h, pe, ps, ck, cu, sc, pr, rs in zip(
                jobs.job_id, dc_names, jobs.hour.tolist(), *values, reason.tolist(),
                strict=True)
        ]
        return out, reason

    # -- other endpoints' work ---------------------------------------------------------------------
    def ingest(self, records: list[dict[str, Any]]) -> Any:
        """Store outcomes (one transaction); returns the store's IngestReport.

        A locked or unreachable store raises :class:`ServiceBusy` (503 with Retry-After).
        """
        import sqlalchemy as sa

        with self._store_lock:
            try:
                return self.store.ingest(records)
            except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
                why = getattr(exc, "orig", None) or exc
                raise ServiceBusy(f"the outcome store is busy ({why}); retry shortly") from exc

    def model_status(self) -> dict[str, str | None]:
        """``promoted_version``, ``serving_version`` and ``last_load_error``."""
        if self._hot is not None:
            return dict(self._hot.status())
        version = self.model_version()[0]
        return {"promoted_version": version, "serving_version": version,
                "last_load_error": None}

    def ledger_kind(self) -> dict[str, str | None]:
        """Where reservations are kept: ``{"kind": memory|sqlite|postgresql, "url"}``."""
        if self.durable is None:
            return {"kind": "memory", "url": None}
        return {"kind": self.durable.dialect, "url": self.durable.url}

    def ledger_report(self) -> dict[str, Any]:
        """Reserved and total capacity; exact ticks per (hour, dc, resource)."""
        L = self.ledger
        with L.lock:
            used = L.used_ticks.copy()
        cap = L.capacity_ticks
        tpu = L.ticks_per_unit
        used_dc, cap_dc = used.sum(axis=0), cap.sum(axis=0)
        return {
            "ticks_per_unit": tpu,
            "hours": L.hours,
            "dcs": list(L.dcs),
            "resources": list(L.resources),
            "used_ticks": used.tolist(),
            "used_units": {d: {r: used_dc[i, j] / tpu for j, r in enumerate(L.resources)}
                           for i, d in enumerate(L.dcs)},
            "capacity_units": {d: {r: cap_dc[i, j] / tpu for j, r in enumerate(L.resources)}
                               for i, d in enumerate(L.dcs)},
            "utilisation": {d: {r: (float(used_dc[i, j] / cap_dc[i, j]) if cap_dc[i, j] else 0.0)
                                for j, r in enumerate(L.resources)}
                            for i, d in enumerate(L.dcs)},
            "assigned_jobs": {d: int(c) for d, c in zip(L.dcs, self.assigned_counts.tolist(),
                                                        strict=True)},
            "ledger": self.ledger_kind(),
            "jobs_by_status": self.durable.counts() if self.durable is not None else None,
        }


def allocation_summary(scenario: Scenario, guide: PlanGuide) -> dict[str, Any]:
    """Expected queries and shares per DC under the plan's allocation."""
    out: dict[str, Any] = {"rows": 0}
    alloc = guide.allocation
    if alloc is None:
        return out
    out["rows"] = int(np.isfinite(alloc.values).sum())
    x = alloc.reindex(area=scenario.areas, dc=scenario.dcs, query_type=scenario.query_types,
                      hour=np.arange(scenario.hours), fill_value=0.0).fillna(0.0)
    q = scenario.ds["queries"]
    per_dc = (x * q).sum(["area", "query_type", "hour"]).reindex(dc=scenario.dcs)
    total = float(per_dc.sum())
    out["queries_by_dc"] = {d: float(v) for d, v in zip(scenario.dcs, per_dc.values,
                                                        strict=True)}
    out["share_by_dc"] = {d: (float(v) / total if total > 0 else 0.0)
                          for d, v in zip(scenario.dcs, per_dc.values, strict=True)}
    return out

