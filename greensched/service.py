"""The HTTP service: online assignment of single jobs and batches, outcome feedback, metrics.

``create_app(ServiceConfig(...))`` returns a FastAPI application; ``greensched serve`` runs it
with uvicorn (:func:`serve_command`).  Endpoints (``docs/service.md`` has the details):

==========================  =====  ===========================================================
``POST /v1/assign``         key    one job, or ``{"jobs": [...]}``: a DC per job
``POST /v1/outcomes``       key    measured results, stored in the outcome store
``GET  /v1/plan``           key    the plan's ``plan.json`` and an allocation summary
``GET  /v1/ledger``         key    reserved capacity per (hour, dc, resource), exact ticks
``GET  /healthz``           –      model version, scenario, uptime
``GET  /metrics``           –      Prometheus text format (``metrics_auth`` puts it behind the key)
``GET  /openapi.json``      –      the OpenAPI schema
==========================  =====  ===========================================================

How a request is served
-----------------------
1. The gate (a small ASGI middleware) checks the ``X-API-Key`` header on ``/v1/*`` (SHA-256 of
   both sides compared with :func:`hmac.compare_digest`; 401 otherwise) and the body size
   (``Content-Length`` or the bytes actually received; 413 above ``max_request_bytes``).
2. The body is validated with pydantic models built for the scenario (areas, query types and
   hours are checked; 422 names the field, FastAPI's ``detail[].loc`` format).
3. The jobs are handed to the :class:`MicroBatcher`, one thread that collects the jobs of all
   pending requests for up to ``batch_window_s`` (or ``max_predict_jobs`` jobs), predicts them
   with **one** predictor call, assigns them in arrival order with
   :meth:`~greensched.scheduler.assign.GreedyAssigner.assign_arrays` (which reserves capacity
   in the shared :class:`~greensched.scheduler.assign.CapacityLedger` under its lock, in exact
   integer ticks) and resolves each request's future.  Capacity accounting is therefore exact
   across any number of concurrent requests: the ledger's used ticks equal the sum of the
   accepted jobs' usage ticks.
4. Job ids are remembered (the last ``remember_jobs``): a request re-sent with the same jobs gets
   the same answers without reserving capacity again; a known ``job_id`` sent with different
   content is refused with 409.

Predictions come from a saved predictor directory (``model``), from the promoted version of a
model registry (``registry``: a :class:`~greensched.feedback.registry.HotModel` polls
``CURRENT`` and swaps in a new version once it has loaded and answered a probe, so requests never
see a half-loaded model), or from a ``coefficients.csv`` (per-query coefficients scaled by the
job's tokens, as :func:`~greensched.scheduler.assign.predictions_from_coefficients`).

Capacity lives in the process: run one worker per ledger (``workers=1``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd

try:
    import prometheus_client
    import pydantic
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"greensched.service needs FastAPI, uvicorn and prometheus-client ({_exc}); install "
        "them with pip install 'greensched[service]'"
    ) from _exc

from greensched.errors import GreenSchedError
from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario, load_coefficients, load_scenario
from greensched.scheduler.assign import (
    AssignConfig,
    CapacityLedger,
    GreedyAssigner,
    PlanGuide,
)

__all__ = [
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "MAX_TOKENS",
    "GreenSchedService",
    "MicroBatcher",
    "ServiceConfig",
    "ServiceError",
    "create_app",
    "serve_command",
]

log = logging.getLogger(__name__)

#: Environment variable holding the API key (a key file takes precedence).
API_KEY_ENV = "GREENSCHED_API_KEY"
#: Request header carrying the API key.
API_KEY_HEADER = "X-API-Key"
#: Upper bound of ``input_tokens`` and ``output_tokens`` of one job.
MAX_TOKENS = 10**6
#: Longest accepted ``job_id``.
MAX_JOB_ID = 128

_MODES = ("greedy", "plan", "follow")
#: Prediction variables the service reads (p90s for risk-aware assignment).
_PRED_VARS = ("energy_kwh", "service_s", "energy_kwh_p90", "service_s_p90")
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                      5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_ENDPOINTS = ("/v1/assign", "/v1/outcomes", "/v1/plan", "/v1/ledger", "/healthz", "/metrics",
              "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


class ServiceError(GreenSchedError):
    """The service cannot start or serve with the given configuration."""


# -- configuration -------------------------------------------------------------------------------


@dataclass
class ServiceConfig:
    """Everything :func:`create_app` needs.

    Parameters
    ----------
    scenario
        Scenario directory or a loaded :class:`~greensched.scenario.Scenario`; ``None`` uses the
        embedded default scenario.
    model, registry, coefficients
        Where predictions come from; give exactly one: a saved predictor directory, a model
        registry root (hot-swapped on promotion), or a ``coefficients.csv``.
    plan
        Plan directory (``greensched plan --out``): enables ``GET /v1/plan`` and, with
        ``mode="plan"`` (the default when a plan is given), plan-guided scoring with its shadow
        prices; ``mode="follow"`` draws DCs in proportion to the plan's shares.
    store
        Outcome store (SQLite path or ``postgresql://`` URL) for ``POST /v1/outcomes``.
    api_key, api_key_file
        The API key, or a file holding it; without either, the environment variable
        :data:`API_KEY_ENV`.  The key is never logged nor shown in ``repr``.
    mode
        ``"greedy"``, ``"plan"`` or ``"follow"``; ``None``: ``"plan"`` with a plan, else greedy.
    max_batch_jobs
        Most jobs in one ``POST /v1/assign`` (larger batches get 413).
    max_request_bytes
        Largest request body in bytes (413 above).
    batch_window_s
        How long the micro-batcher collects jobs of concurrent requests before predicting.
    max_predict_jobs
        Most jobs in one predictor call (≥ ``max_batch_jobs``).
    poll_interval_s
        How often a registry's ``CURRENT`` is polled for a promoted version.
    predict_threads
        Threads per XGBoost booster call.  1 is best for the small batches of a service: with
        more, OpenMP workers spin and cost far more than they save on a busy machine.
    remember_jobs
        How many recent job ids are remembered for idempotent re-sends (0 disables).
    metrics_auth
        Require the API key on ``/metrics`` too.
    assign
        Scoring and masking options of the assigner.
    """

    scenario: str | Path | Scenario | None = None
    model: str | Path | None = None
    registry: str | Path | None = None
    coefficients: str | Path | None = None
    plan: str | Path | None = None
    store: str | Path | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_file: str | Path | None = None
    mode: str | None = None
    max_batch_jobs: int = 1000
    max_request_bytes: int = 1 << 20
    batch_window_s: float = 0.002
    max_predict_jobs: int = 4096
    poll_interval_s: float = 1.0
    predict_threads: int = 1
    remember_jobs: int = 20_000
    metrics_auth: bool = False
    assign: AssignConfig = field(default_factory=AssignConfig)

    def __post_init__(self) -> None:
        sources = {"model": self.model, "registry": self.registry,
                   "coefficients": self.coefficients}
        given = [k for k, v in sources.items() if v is not None]
        if len(given) != 1:
            raise ServiceError(
                "give exactly one source of predictions: model (a saved predictor directory), "
                "registry (a model registry root) or coefficients (a coefficients.csv); got "
                f"{', '.join(given) if given else 'none'}"
            )
        if self.mode is not None:
            mode = str(self.mode).strip().lower()
            mode = {"guided": "plan", "plan-guided": "plan", "plan-following": "follow"}.get(
                mode, mode)
            if mode not in _MODES:
                raise ServiceError(f"mode {self.mode!r} is not known; expected one of "
                                   f"{', '.join(_MODES)}")
            if mode in ("plan", "follow") and self.plan is None:
                raise ServiceError(f"mode {mode!r} needs a plan directory (plan=...)")
            self.mode = mode
        for name in ("max_batch_jobs", "max_request_bytes", "max_predict_jobs",
                     "predict_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ServiceError(f"{name} must be a positive integer, got {v!r}")
        if self.max_predict_jobs < self.max_batch_jobs:
            raise ServiceError(
                f"max_predict_jobs ({self.max_predict_jobs}) must be >= max_batch_jobs "
                f"({self.max_batch_jobs}): a request's jobs are predicted in one call"
            )
        if isinstance(self.remember_jobs, bool) or not isinstance(self.remember_jobs, int) or (
            self.remember_jobs < 0
        ):
            raise ServiceError(f"remember_jobs must be an integer >= 0, got "
                               f"{self.remember_jobs!r}")
        for name in ("batch_window_s", "poll_interval_s"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0 or (name == "poll_interval_s" and v == 0):
                raise ServiceError(f"{name} must be a finite number >= 0 (> 0 for the poll "
                                   f"interval), got {getattr(self, name)!r}")
        if not isinstance(self.assign, AssignConfig):
            raise ServiceError(f"assign must be an AssignConfig, got "
                               f"{type(self.assign).__name__}")

    def resolve_api_key(self) -> str:
        """The API key: ``api_key``, else the key file, else :data:`API_KEY_ENV`.

        Raises :class:`ServiceError` when there is none (the service never runs without one).
        """
        if self.api_key is not None:
            key = self.api_key.strip()
            where = "api_key"
        elif self.api_key_file is not None:
            p = Path(self.api_key_file)
            try:
                key = p.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ServiceError(f"cannot read the API key file {str(p)!r}: "
                                   f"{exc.strerror or exc}") from exc
            where = f"the key file {str(p)!r}"
            try:
                if p.stat().st_mode & 0o077:
                    log.warning("API key file %s is readable by group or others; chmod 600 it",
                                p)
            except OSError:  # pragma: no cover - just read it
                pass
        else:
            key = os.environ.get(API_KEY_ENV, "").strip()
            where = f"${API_KEY_ENV}"
            if not key:
                raise ServiceError(
                    f"no API key: set the environment variable {API_KEY_ENV} or pass "
                    "--api-key-file FILE (a file holding the key); the service refuses to "
                    "run without one"
                )
        if not key:
            raise ServiceError(f"the API key from {where} is empty")
        if len(key) < 16:
            log.warning("the API key is shorter than 16 characters; use a long random key")
        return key


# -- request models --------------------------------------------------------------------------------


def _listing(labels: list[str], n: int = 8) -> str:
    shown = ", ".join(labels[:n])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > n else "")


def _request_models(scenario: Scenario, max_batch_jobs: int) -> dict[str, Any]:
    """Pydantic models of the request and response bodies, checking labels of ``scenario``."""
    from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo
    from pydantic import field_validator as fv

    areas, types, dcs = scenario.areas, scenario.query_types, scenario.dcs
    area_set, type_set, dc_set = frozenset(areas), frozenset(types), frozenset(dcs)
    hours = int(scenario.hours)
    name = scenario.name

    def enum_extra(schema: dict[str, Any]) -> None:
        props = schema.get("properties", {})
        for key, labels in (("area", areas), ("query_type", types), ("dc", dcs)):
            if key in props and len(labels) <= 64:
                props[key]["enum"] = list(labels)

    def known(kind: str, labels: list[str], allowed: frozenset[str]) -> Callable[[str], str]:
        def check(v: str) -> str:
            if v not in allowed:
                raise ValueError(f"unknown {kind} {v!r}; scenario {name!r} has "
                                 f"{_listing(labels)}")
            return v
        return check

    check_area = known("area", areas, area_set)
    check_type = known("query type", types, type_set)
    check_dc = known("dc", dcs, dc_set)

    Tokens = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)]
    Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
    NonNeg = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
    Hour = Annotated[int, Field(strict=True, ge=0, lt=hours,
                                description=f"arrival slot 0..{hours - 1}")]
    Arrival = Annotated[float, Field(strict=True, ge=0, lt=hours * 3600.0, allow_inf_nan=False,
                                     description="arrival time, s since the scenario's hour 0")]

    def check_time(v: float | None, info: ValidationInfo) -> float | None:
        if v is None:
            if "hour" in info.data and info.data["hour"] is None:
                raise ValueError(f"give hour (0..{hours - 1}) or arrival_s (s since the "
                                 "scenario's hour 0)")
            return v
        h = info.data.get("hour")
        if h is not None and int(v // 3600.0) != h:
            raise ValueError(f"arrival_s {v!r} is in hour {int(v // 3600.0)}, not hour {h}")
        return v

    class AssignJob(BaseModel):
        """One job to place.  Give ``hour`` or ``arrival_s`` (or both, consistent)."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=enum_extra)

        job_id: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_JOB_ID)]
        area: Annotated[str, Field(strict=True, description="area of the scenario")]
        query_type: Annotated[str, Field(strict=True, description="query type of the scenario")]
        input_tokens: Tokens
        output_tokens: Tokens | None = Field(
            default=None, description="generated tokens when known; else the type's mean")
        sla_s: Positive | None = Field(default=None,
                                       description=f"latency objective, s (default "
                                                   f"{DEFAULT_SLA_S:g})")
        hour: Hour | None = None
        arrival_s: Arrival | None = Field(default=None, validate_default=True)

        v_area = fv("area")(staticmethod(check_area))
        v_type = fv("query_type")(staticmethod(check_type))
        v_time = fv("arrival_s")(staticmethod(check_time))

    class AssignBatch(BaseModel):
        """Several jobs, placed in the order given."""

        model_config = ConfigDict(extra="forbid")

        jobs: Annotated[list[AssignJob], Field(min_length=1, max_length=max_batch_jobs)]

    class Assignment(BaseModel):
        """Where one job goes (``dc`` null and a ``reason`` when it could not be placed)."""

        job_id: str
        dc: str | None = Field(description="chosen DC; null when unplaced")
        hour: int
        predicted_energy_kwh: float | None = Field(description="predicted IT energy at dc, kWh")
        predicted_service_s: float | None = Field(description="predicted service time at dc, s")
        carbon_kg: float | None = Field(description="θ · PUE · energy, kg CO2")
        cost_usd: float | None = Field(description="energy + carbon + delay cost, USD")
        score: float | None = Field(description="weighted score minimised, USD")
        propensity: float | None = Field(description="probability of dc under the policy")
        model_version: str
        reason: str = Field(description="'' when placed, else sovereignty, sla or capacity")

    class AssignBatchResult(BaseModel):
        """Answer to a batch: one assignment per job, in request order."""

        model_version: str
        assignments: list[Assignment]

    class Outcome(BaseModel):
        """What a job really cost where it ran, with the prediction it was placed with."""

        model_config = ConfigDict(extra="forbid", json_schema_extra=enum_extra,
                                  populate_by_name=True)

        job_id: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_JOB_ID)]
        area: Annotated[str, Field(strict=True)]
        query_type: Annotated[str, Field(strict=True)]
        input_tokens: Tokens
        output_tokens: Tokens | None = None
        sla_s: Positive | None = None
        hour: Hour | None = None
        arrival_s: Arrival | None = Field(default=None, validate_default=True)
        dc: Annotated[str, Field(strict=True)]
        model_version: Annotated[str, Field(strict=True, min_length=1, max_length=128)]
        pred_energy_kwh: Positive = Field(
            validation_alias=AliasChoices("pred_energy_kwh", "predicted_energy_kwh"))
        pred_service_s: Positive = Field(
            validation_alias=AliasChoices("pred_service_s", "predicted_service_s"))
        pred_energy_kwh_p10: NonNeg | None = None
        pred_energy_kwh_p90: NonNeg | None = None
        pred_service_s_p10: NonNeg | None = None
        pred_service_s_p90: NonNeg | None = None
        propensity: Annotated[float, Field(strict=True, gt=0, le=1)] | None = None
        energy_kwh: Positive = Field(description="measured IT energy, kWh")
        service_s: Positive = Field(description="measured service time, s")
        measured_at: datetime | None = None
        prompt: Annotated[str, Field(max_length=100_000)] | None = None
        features: dict[str, Any] | None = None

        v_area = fv("area")(staticmethod(check_area))
        v_type = fv("query_type")(staticmethod(check_type))
        v_dc = fv("dc")(staticmethod(check_dc))
        v_time = fv("arrival_s")(staticmethod(check_time))

    class OutcomeBatch(BaseModel):
        """Several outcomes, stored in one transaction."""

        model_config = ConfigDict(extra="forbid")

        outcomes: Annotated[list[Outcome], Field(min_length=1, max_length=max_batch_jobs)]

    class OutcomeConflict(BaseModel):
        job_id: str
        columns: list[str]

    class OutcomeResult(BaseModel):
        """What the store did with the outcomes."""

        rows: int
        inserted: int
        duplicates_identical: int
        conflicts: list[OutcomeConflict]
        ingest_id: str | None

    class Health(BaseModel):
        status: str
        scenario: str
        model_version: str
        mode: str
        uptime_s: float

    class Problem(BaseModel):
        detail: Any

    return {m.__name__: m for m in (AssignJob, AssignBatch, Assignment, AssignBatchResult,
                                    Outcome, OutcomeBatch, OutcomeConflict, OutcomeResult,
                                    Health, Problem)}


# -- predictions ---------------------------------------------------------------------------------


@dataclass
class _Jobs:
    """Validated jobs, integer-coded, in arrival (request) order."""

    job_id: list[str]
    hour: np.ndarray  # int64
    area: np.ndarray  # int64 position in scenario.areas
    qtype: np.ndarray  # int64 position in scenario.query_types
    input_tokens: np.ndarray  # float
    output_tokens: np.ndarray  # float, NaN = unknown
    sla_s: np.ndarray  # float
    arrival_s: np.ndarray  # float

    def __len__(self) -> int:
        return len(self.job_id)

    @classmethod
    def concat(cls, parts: list[_Jobs]) -> _Jobs:
        if len(parts) == 1:
            return parts[0]
        ids: list[str] = []
        for p in parts:
            ids.extend(p.job_id)
        arrays = {name: np.concatenate([getattr(p, name) for p in parts])
                  for name in ("hour", "area", "qtype", "input_tokens", "output_tokens",
                               "sla_s", "arrival_s")}
        return cls(job_id=ids, **arrays)

    def take(self, idx: np.ndarray) -> _Jobs:
        return _Jobs(job_id=[self.job_id[i] for i in idx], hour=self.hour[idx],
                     area=self.area[idx], qtype=self.qtype[idx],
                     input_tokens=self.input_tokens[idx], output_tokens=self.output_tokens[idx],
                     sla_s=self.sla_s[idx], arrival_s=self.arrival_s[idx])

    def fingerprint(self, i: int) -> tuple[Any, ...]:
        out = self.output_tokens[i]
        return (int(self.hour[i]), int(self.area[i]), int(self.qtype[i]),
                float(self.input_tokens[i]), None if math.isnan(out) else float(out),
                float(self.sla_s[i]), float(self.arrival_s[i]))

    def frame(self, scenario: Scenario) -> pd.DataFrame:
        """A validated jobs table (``greensched.jobs`` columns)."""
        return pd.DataFrame({
            "job_id": np.asarray(self.job_id, dtype=object),
            "arrival_s": self.arrival_s,
            "hour": self.hour.astype(np.int64),
            "area": np.asarray(scenario.areas, dtype=object)[self.area],
            "query_type": np.asarray(scenario.query_types, dtype=object)[self.qtype],
            "input_tokens": self.input_tokens.astype(np.int64),
            "output_tokens": self.output_tokens,  # NaN = not known
            "sla_s": self.sla_s,
        })


class _CoefficientPredictor:
    """Per-query coefficients scaled by each job's tokens (numpy; cached arrays).

    Same numbers as :func:`~greensched.scheduler.assign.predictions_from_coefficients`::

        energy_kwh[j,d] = e[h,k,d] · (n_in + n_out) / (mean_in_k + mean_out_k)
        service_s[j,d]  = p[h,k,d] · (same scale) + rtt_s[a,d]

    where an unknown ``n_out`` counts as the type's mean.
    """

    kind = "coefficients"

    def __init__(self, scenario: Scenario) -> None:
        ds = scenario.ds
        self.mean_in = np.asarray(ds["input_tokens"].values, dtype=float)
        self.mean_out = np.asarray(ds["output_tokens"].values, dtype=float)
        mean_tokens = self.mean_in + self.mean_out
        if (mean_tokens <= 0).any():
            k = int(np.flatnonzero(mean_tokens <= 0)[0])
            raise ServiceError(f"query type {scenario.query_types[k]!r} has zero mean tokens; "
                               "coefficient predictions cannot be scaled")
        self.mean_tokens = mean_tokens
        self.e = scenario.energy_kwh_per_query().transpose("hour", "query_type", "dc").values
        self.p = scenario.proc_delay_s_per_query().transpose("hour", "query_type", "dc").values
        self.rtt = ds["rtt_s"].transpose("area", "dc").values

    def predict(self, jobs: _Jobs) -> dict[str, np.ndarray]:
        k = jobs.qtype
        out = np.where(np.isnan(jobs.output_tokens), self.mean_out[k], jobs.output_tokens)
        scale = (jobs.input_tokens + out) / self.mean_tokens[k]
        energy = self.e[jobs.hour, k] * scale[:, None]
        service = self.p[jobs.hour, k] * scale[:, None] + self.rtt[jobs.area]
        return {"energy_kwh": energy, "service_s": service}


class _ModelPredictor:
    """A saved predictor, fed dataset-format rows built from cached per-(hour, dc) state.

    The rows are those of :func:`greensched.predictor.dataset.rows_from_jobs` (the scenario's
    expected utilisation), built from arrays computed once instead of per call; predictors
    without ``predict_frame`` get a jobs table through ``predict_jobs``.
    """

    kind = "model"

    def __init__(self, model: Any, scenario: Scenario, threads: int = 1,
                 fast: bool = True) -> None:
        from greensched.predictor.dataset import dc_column
        from greensched.state import STATE_FIELDS, dc_hour_state

        self.model = model
        self.scenario = scenario
        self.kind = str(getattr(model, "kind", type(model).__name__))
        boosters = getattr(model, "boosters_", None)
        if isinstance(boosters, dict):
            for b in boosters.values():
                b.set_param({"nthread": int(threads)})
        dcs = scenario.dcs
        state = dc_hour_state(scenario)
        self._state = [
            ([dc_column(f, d) for d in dcs], state[f].transpose("hour", "dc").values)
            for f in STATE_FIELDS
        ]
        self._rtt = ([dc_column("rtt_s", d) for d in dcs],
                     scenario.ds["rtt_s"].transpose("area", "dc").values)
        self._areas = np.asarray(scenario.areas, dtype=object)
        self._types = np.asarray(scenario.query_types, dtype=object)
        self._column = dc_column
        # BasePredictor's estimator hook takes rows in the validated dataset format, which
        # rows() builds (typed columns; labels, ranges and tokens checked by the request
        # models), and returns arrays per variable in the model's DC order.
        self._arrays: Callable[[pd.DataFrame], dict[str, np.ndarray]] | None = None
        model_dcs = [str(d) for d in getattr(model, "dcs_", [])]
        if fast and callable(getattr(model, "_predict_arrays", None)) and (
            sorted(model_dcs) == sorted(dcs)
        ):
            self._arrays = model._predict_arrays
            self._order = np.asarray([model_dcs.index(d) for d in dcs], dtype=np.int64)

    def rows(self, jobs: _Jobs) -> pd.DataFrame:
        """Dataset-format rows without targets (``docs/dataset-format.md``)."""
        cols: dict[str, Any] = {
            "job_id": np.asarray(jobs.job_id, dtype=object),
            "arrival_s": jobs.arrival_s,
            "hour": jobs.hour,
            "area": self._areas[jobs.area],
            "query_type": self._types[jobs.qtype],
            "input_tokens": jobs.input_tokens,
            "output_tokens": jobs.output_tokens,
            "sla_s": jobs.sla_s,
        }
        for names, arr in self._state:
            vals = arr[jobs.hour]
            for j, c in enumerate(names):
                cols[c] = vals[:, j]
        names, rtt = self._rtt
        vals = rtt[jobs.area]
        for j, c in enumerate(names):
            cols[c] = vals[:, j]
        return pd.DataFrame(cols)

    def predict(self, jobs: _Jobs) -> dict[str, np.ndarray]:
        dcs = self.scenario.dcs
        if self._arrays is not None:
            # rows are typed and checked already: straight to the estimator's arrays
            arrays = self._arrays(self.rows(jobs))
            return {v: np.asarray(arrays[v], dtype=float)[:, self._order]
                    for v in _PRED_VARS if v in arrays}
        if hasattr(self.model, "predict_frame"):
            frame = self.model.predict_frame(self.rows(jobs))
            out = {}
            for var in _PRED_VARS:
                cols = [self._column(var, d) for d in dcs]
                if all(c in frame.columns for c in cols):
                    out[var] = frame[cols].to_numpy(dtype=float)
            return out
        ds = self.model.predict_jobs(jobs.frame(self.scenario), self.scenario)
        return {v: np.asarray(ds[v].transpose("job", "dc").sel(dc=dcs).values, dtype=float)
                for v in _PRED_VARS if v in ds.data_vars}

    def warm_up(self) -> _ModelPredictor:
        """One prediction (first hour, area and type), so that a broken model fails here."""
        probe = _Jobs(job_id=["warm-up"], hour=np.zeros(1, np.int64), area=np.zeros(1, np.int64),
                      qtype=np.zeros(1, np.int64), input_tokens=np.full(1, 100.0),
                      output_tokens=np.full(1, 100.0), sla_s=np.full(1, DEFAULT_SLA_S),
                      arrival_s=np.zeros(1))
        out = self.predict(probe)
        for v in ("energy_kwh", "service_s"):
            if v not in out or out[v].shape != (1, len(self.scenario.dcs)):
                raise ServiceError(f"the predictor returned no {v!r} per DC")
        return self


def _model_version(path: Path) -> str:
    """``version`` from a registry copy's ``registry.json``, else the directory name."""
    meta = path / "registry.json"
    if meta.is_file():
        try:
            v = json.loads(meta.read_text(encoding="utf-8")).get("version")
            if isinstance(v, str) and v:
                return v
        except (OSError, ValueError):
            pass
    return path.resolve().name


def _load_model(path: Path, scenario: Scenario, threads: int) -> _ModelPredictor:
    try:
        from greensched.predictor.base import load_predictor
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ServiceError(f"model {str(path)!r} needs the predictor (pip install "
                           f"'greensched[ml]'): {exc}") from exc
    model = load_predictor(path, dcs=scenario.dcs)
    return _ModelPredictor(model, scenario, threads).warm_up()


# -- the micro-batcher ---------------------------------------------------------------------------


@dataclass
class _Pending:
    jobs: _Jobs
    future: concurrent.futures.Future[Any]


class MicroBatcher:
    """One thread that coalesces concurrent requests into batched calls of ``process``.

    :meth:`submit` queues a request's jobs and returns a future.  The thread takes the first
    pending request, keeps collecting for ``window_s`` seconds (or until ``max_jobs`` jobs),
    then calls ``process(items)`` with the requests in arrival order; ``process`` must resolve
    every item's future.  Requests whose future was cancelled before processing are dropped.
    """

    def __init__(self, process: Callable[[list[_Pending]], None], *, window_s: float,
                 max_jobs: int, name: str = "greensched-batcher") -> None:
        self._process = process
        self.window_s = float(window_s)
        self.max_jobs = int(max_jobs)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._name = name
        self._count_lock = threading.Lock()
        self._pending_jobs = 0

    @property
    def pending_jobs(self) -> int:
        """Jobs submitted and not yet taken by the thread."""
        return self._pending_jobs

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._pending_jobs += delta

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the queued work, then stop the thread."""
        with self._start_lock:
            self._stopping = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)
        self._fail_rest(ServiceError("the service is shutting down"))

    def submit(self, jobs: _Jobs) -> concurrent.futures.Future[Any]:
        """Queue ``jobs``; the future resolves to what ``process`` sets for them."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(ServiceError("the service is shutting down"))
            return fut
        if self._thread is None:
            self.start()
        self._count(len(jobs))
        self._queue.put(_Pending(jobs, fut))
        return fut

    def _fail_rest(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)

    def _run(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            items, n = [first], len(first.jobs)
            deadline = time.monotonic() + self.window_s
            stop = False
            while n < self.max_jobs:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (self._queue.get(timeout=remaining) if remaining > 0
                           else self._queue.get_nowait())
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if n + len(nxt.jobs) > self.max_jobs:
                    carry = nxt
                    break
                items.append(nxt)
                n += len(nxt.jobs)
            self._count(-n)
            live = [it for it in items if it.future.set_running_or_notify_cancel()]
            if live:
                try:
                    self._process(live)
                except BaseException as exc:  # never leave a future unresolved
                    log.exception("batch of %d job(s) failed", n)
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
            if stop:
                if carry is not None and carry.future.set_running_or_notify_cancel():
                    carry.future.set_exception(ServiceError("the service is shutting down"))
                return


class _JobConflict(ServiceError):
    """Job ids already assigned with other content."""

    def __init__(self, job_ids: list[str]) -> None:
        self.job_ids = job_ids
        super().__init__(f"job_id(s) {_listing(job_ids, 5)} were already assigned with "
                         "different content; use new job ids")


# -- metrics ------------------------------------------------------------------------------------


class _Metrics:
    """Prometheus metrics of one service (own registry, so several apps can live in a process)."""

    def __init__(self, service: GreenSchedService) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        r = CollectorRegistry(auto_describe=True)
        self.registry = r
        self.requests = Counter("greensched_http_requests", "HTTP requests by endpoint, method "
                                "and status", ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("greensched_http_request_duration_seconds",
                                 "Time from request start to the last response byte",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.assigned = Counter("greensched_assigned_jobs", "Jobs placed, by DC", ["dc"],
                                registry=r)
        self.unplaced = Counter("greensched_unplaced_jobs", "Jobs no DC could take, by reason",
                                ["reason"], registry=r)
        self.replayed = Counter("greensched_replayed_jobs", "Re-sent jobs answered from memory",
                                registry=r)
        self.batch_jobs = Histogram("greensched_prediction_batch_jobs",
                                    "Jobs per predictor call (micro-batch size)",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("greensched_prediction_batch_requests",
                                        "Requests coalesced into one predictor call",
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.predict_s = Histogram("greensched_prediction_duration_seconds",
                                   "Time of one predictor call", buckets=_LATENCY_BUCKETS_S,
                                   registry=r)
        self.assign_s = Histogram("greensched_assignment_duration_seconds",
                                  "Time to assign one micro-batch (ledger included)",
                                  buckets=_LATENCY_BUCKETS_S, registry=r)
        for dc in service.scenario.dcs:
            self.assigned.labels(dc)
        r.register(_StateCollector(service))

    def render(self) -> tuple[bytes, str]:
        return (prometheus_client.generate_latest(self.registry),
                prometheus_client.CONTENT_TYPE_LATEST)


class _StateCollector:
    """Gauges read at scrape time: ledger use per DC, model version, uptime, queue."""

    def __init__(self, service: GreenSchedService) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        s = self.service
        ledger = s.ledger
        with ledger.lock:
            used = ledger.used_ticks.sum(axis=0)  # (dc, resource)
        cap = ledger.capacity_ticks.sum(axis=0)
        tpu = float(ledger.ticks_per_unit)
        g_used = GaugeMetricFamily("greensched_ledger_used_units",
                                   "Reserved resource units over all hours",
                                   labels=["dc", "resource"])
        g_cap = GaugeMetricFamily("greensched_ledger_capacity_units",
                                  "Capacity in resource units over all hours",
                                  labels=["dc", "resource"])
        g_util = GaugeMetricFamily("greensched_ledger_utilisation_ratio",
                                   "Reserved / capacity over all hours (0..1)",
                                   labels=["dc", "resource"])
        for i, dc in enumerate(ledger.dcs):
            for r, res in enumerate(ledger.resources):
                g_used.add_metric([dc, res], used[i, r] / tpu)
                g_cap.add_metric([dc, res], cap[i, r] / tpu)
                g_util.add_metric([dc, res], float(used[i, r] / cap[i, r]) if cap[i, r] else 0.0)
        yield g_used
        yield g_cap
        yield g_util
        version, kind = s.model_version()
        info = InfoMetricFamily("greensched_model", "The model version serving predictions")
        info.add_metric([], {"version": version, "kind": kind, "scenario": s.scenario.name,
                             "mode": s.mode})
        yield info
        swaps = GaugeMetricFamily("greensched_model_versions_served",
                                  "Distinct model versions served since start")
        swaps.add_metric([], float(len(s.versions_served)))
        yield swaps
        up = GaugeMetricFamily("greensched_uptime_seconds", "Seconds since the service started")
        up.add_metric([], time.monotonic() - s.started_monotonic)
        yield up
        q = GaugeMetricFamily("greensched_batcher_pending_jobs",
                              "Jobs waiting for the micro-batcher")
        q.add_metric([], float(max(0, s.batcher.pending_jobs)))
        yield q


# -- the service --------------------------------------------------------------------------------


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
            threads = config.predict_threads
            self._hot = HotModel(reg, lambda p: _load_model(Path(p), scen, threads))
        elif config.model is not None:
            path = Path(config.model)
            self._static = (_load_model(path, scen, config.predict_threads),
                            _model_version(path))
        else:
            assert config.coefficients is not None
            cpath = Path(config.coefficients)
            digest = hashlib.sha256(cpath.read_bytes()).hexdigest()[:12]
            self._static = (_CoefficientPredictor(scen), f"coefficients-{digest}")
        if config.assign.risk:
            pred, _ = self.predictor()
            if isinstance(pred, _CoefficientPredictor):
                raise ServiceError("risk-aware assignment needs p90 predictions from a model; "
                                   "coefficients give none")
        self.versions_served: set[str] = {self.model_version()[0]}
        # outcomes
        self.store: Any = None
        self._store_lock = threading.Lock()
        if config.store is not None:
            from greensched.feedback.store import OutcomeStore

            self.store = OutcomeStore.open(config.store)
        self._recent: OrderedDict[str, tuple[tuple[Any, ...], dict[str, Any]]] = OrderedDict()
        self.assigned_counts = np.zeros(len(scen.dcs), dtype=np.int64)
        self.started_monotonic = time.monotonic()
        self.metrics = _Metrics(self)
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
        from greensched.scheduler.assign_cli import plan_guide_for

        guide = plan_guide_for(self.scenario, root, need_duals=self.mode == "plan")
        self.plan_meta = json.loads((root / "plan.json").read_text(encoding="utf-8"))
        self.plan_summary = _allocation_summary(self.scenario, guide)
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

    def encode(self, jobs: list[Any]) -> _Jobs:
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
        return _Jobs(
            job_id=[j.job_id for j in jobs],
            hour=hour,
            area=np.fromiter((self._area_pos[j.area] for j in jobs), np.int64, n),
            qtype=np.fromiter((self._type_pos[j.query_type] for j in jobs), np.int64, n),
            input_tokens=np.fromiter((j.input_tokens for j in jobs), float, n),
            output_tokens=out,
            sla_s=sla,
            arrival_s=arrival,
        )

    async def assign(self, jobs: _Jobs) -> list[dict[str, Any]]:
        """Place ``jobs`` through the micro-batcher; one result dict per job."""
        result: list[dict[str, Any]] = await asyncio.wrap_future(self.batcher.submit(jobs))
        return result

    # -- the batch step (micro-batcher thread) -----------------------------------------------------
    def _process(self, items: list[_Pending]) -> None:
        """Predict and assign the jobs of ``items`` (arrival order) and resolve their futures."""
        remember = self.config.remember_jobs
        self.metrics.batch_requests.observe(len(items))
        accepted: list[_Pending] = []
        # replays and conflicts, decided before anything is reserved
        answers: list[list[Any]] = []  # per item: per job a dict (replay) or an int (fresh)
        fresh_ids: dict[str, int] = {}
        pending_fp: list[tuple[Any, ...]] = []  # fingerprints of the fresh jobs, in order
        fresh_jobs: list[_Jobs] = []
        n_fresh = 0
        for it in items:
            jobs = it.jobs
            plan: list[Any] = []
            conflicts: list[str] = []
            local: list[int] = []
            for i, jid in enumerate(jobs.job_id):
                fp = jobs.fingerprint(i) if remember else ()
                known = self._recent.get(jid) if remember else None
                if known is not None:
                    if known[0] != fp:
                        conflicts.append(jid)
                    plan.append(known[1])
                    continue
                pos = fresh_ids.get(jid) if remember else None
                if pos is not None:
                    if pending_fp[pos] != fp:
                        conflicts.append(jid)
                    plan.append(pos)
                    continue
                plan.append(n_fresh + len(local))
                local.append(i)
                if remember:
                    fresh_ids[jid] = n_fresh + len(local) - 1
                    pending_fp.append(fp)
            if conflicts:
                # nothing of this request is assigned; forget its fresh jobs
                for i in local:
                    fresh_ids.pop(jobs.job_id[i], None)
                if remember and local:
                    del pending_fp[len(pending_fp) - len(local):]
                it.future.set_exception(_JobConflict(conflicts))
                continue
            if local:
                idx = np.asarray(local, dtype=np.int64)
                fresh_jobs.append(jobs if len(local) == len(jobs) else jobs.take(idx))
                n_fresh += len(local)
            accepted.append(it)
            answers.append(plan)
        try:
            results = self._assign_fresh(_Jobs.concat(fresh_jobs)) if fresh_jobs else []
        except BaseException as exc:
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

    def _assign_fresh(self, jobs: _Jobs) -> list[dict[str, Any]]:
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
        choice, propensity, score = a.assign_arrays(
            hour=jobs.hour, area=jobs.area, qtype=k, tokens=tokens, sla=jobs.sla_s,
            energy=energy, service=service, usage_ticks=ticks, arrival=None,
            follow=self.mode == "follow")
        m.assign_s.observe(time.perf_counter() - t1)
        # per-job figures at the chosen DC (mean predictions), as Assignment.frame
        placed = choice >= 0
        rows = np.flatnonzero(placed)
        cc, hh = choice[rows], jobs.hour[rows]
        e = np.full(n, np.nan)
        s = np.full(n, np.nan)
        e[rows] = energy_mean[rows, cc]
        s[rows] = service_mean[rows, cc]
        carbon_kg = np.full(n, np.nan)
        carbon_kg[rows] = a.carbon_kg_per_kwh[hh, cc] * e[rows]
        cost = np.full(n, np.nan)
        alpha = a.alpha[k[rows]]
        delay = (np.maximum(s[rows] - jobs.sla_s[rows], 0.0) if a.config.delay_cost == "excess"
                 else s[rows])
        cost[rows] = (a.energy_usd_per_kwh[hh, cc] + a.carbon_usd_per_kwh[hh, cc]) * e[rows] \
            + alpha * delay
        reason = np.full(n, "", dtype=object)
        unplaced = np.flatnonzero(~placed)
        if unplaced.size:
            sov = a.area_allowed[jobs.area[unplaced]]
            sla_ok = sov & (service[unplaced] <= jobs.sla_s[unplaced, None]) \
                if a.config.sla_hard else sov
            reason[unplaced] = np.where(~sov.any(axis=1), "sovereignty",
                                        np.where(~sla_ok.any(axis=1), "sla", "capacity"))
            for r, cnt in zip(*np.unique(reason[unplaced], return_counts=True), strict=True):
                m.unplaced.labels(str(r)).inc(int(cnt))
        counts = np.bincount(cc, minlength=len(self.scenario.dcs))
        self.assigned_counts += counts
        for dpos in np.flatnonzero(counts).tolist():
            m.assigned.labels(self.scenario.dcs[dpos]).inc(int(counts[dpos]))

        def clean(arr: np.ndarray) -> list[float | None]:
            return [None if math.isnan(x) else x for x in arr.tolist()]

        dcs = self.scenario.dcs
        dc_names = [dcs[c] if c >= 0 else None for c in choice.tolist()]
        out = [
            {"job_id": jid, "dc": dc, "hour": h, "predicted_energy_kwh": pe,
             "predicted_service_s": ps, "carbon_kg": ck, "cost_usd": cu, "score": sc,
             "propensity": pr, "model_version": version, "reason": rs}
            for jid, dc, h, pe, ps, ck, cu, sc, pr, rs in zip(
                jobs.job_id, dc_names, jobs.hour.tolist(), clean(e), clean(s), clean(carbon_kg),
                clean(cost), clean(score), clean(propensity), reason.tolist(), strict=True)
        ]
        remember = self.config.remember_jobs
        if remember:
            recent = self._recent
            for i, res in enumerate(out):
                recent[res["job_id"]] = (jobs.fingerprint(i), res)
            while len(recent) > remember:
                recent.popitem(last=False)
        return out

    # -- other endpoints' work ---------------------------------------------------------------------
    def ingest(self, records: list[dict[str, Any]]) -> Any:
        """Store outcomes (one transaction); returns the store's IngestReport."""
        with self._store_lock:
            return self.store.ingest(records)

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
        }


def _allocation_summary(scenario: Scenario, guide: PlanGuide) -> dict[str, Any]:
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


# -- the ASGI gate: auth, size limit, request metrics -------------------------------------------


async def _send_json(send: Callable[[MutableMapping[str, Any]], Awaitable[None]], status: int,
                     payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class _Gate:
    """Pure ASGI middleware: API key on ``/v1/*``, body size limit, request metrics."""

    def __init__(self, app: Any, service: GreenSchedService) -> None:
        self.app = app
        self.service = service
        self.max_bytes = service.config.max_request_bytes
        self.metrics_auth = service.config.metrics_auth
        self.header = API_KEY_HEADER.lower().encode("latin-1")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else "other"
        status = [500]

        async def send_tracked(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            headers = scope.get("headers") or []
            if path.startswith("/v1/") or (self.metrics_auth and path == "/metrics"):
                key = next((v for k, v in headers if k == self.header), None)
                if not self.service.check_key(key):
                    what = "missing" if key is None else "invalid"
                    await _send_json(send_tracked, 401, {
                        "detail": f"{what} API key: send the service's key in the "
                                  f"{API_KEY_HEADER} header"},
                        [(b"www-authenticate", b'ApiKey header="X-API-Key"')])
                    return
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                length = next((v for k, v in headers if k == b"content-length"), None)
                if length is not None:
                    try:
                        too_big = int(length) > self.max_bytes
                    except ValueError:
                        await _send_json(send_tracked, 400, {"detail": "bad Content-Length"})
                        return
                    if too_big:
                        await _send_json(send_tracked, 413, self._too_large())
                        return
                receive = self._limited(receive)
            await self.app(scope, receive, send_tracked)
        finally:
            m = self.service.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status[0])).inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - t0)

    def _too_large(self) -> dict[str, Any]:
        return {"detail": f"request body larger than {self.max_bytes} bytes; send fewer jobs "
                          "per request"}

    def _limited(self, receive: Any) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
        seen = 0

        async def limited() -> MutableMapping[str, Any]:
            nonlocal seen
            message: MutableMapping[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._too_large()["detail"])
            return message

        return limited


# -- the application ------------------------------------------------------------------------------


def _validation_errors(exc: Any, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's ``detail`` format, locations prefixed."""
    out = []
    for err in exc.errors(include_url=False):
        item = {"type": err["type"], "loc": [*prefix, *err["loc"]], "msg": err["msg"],
                "input": err.get("input")}
        if err.get("ctx"):
            item["ctx"] = {k: (v if isinstance(v, int | float | str | bool) or v is None
                               else str(v)) for k, v in err["ctx"].items()}
        out.append(item)
    return out


def _json_safe(value: Any) -> Any:
    """Inputs echoed in errors may hold values json cannot write (NaN from a client's JSON)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _unprocessable(errors: list[dict[str, Any]]) -> Any:
    for e in errors:
        e["input"] = _json_safe(e.get("input"))
    return JSONResponse({"detail": errors}, status_code=422)


def _parse_json(body: bytes) -> tuple[Any, Any]:
    """(payload, None) or (None, a 422 response)."""
    try:
        return json.loads(body), None
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        return None, _unprocessable([{"type": "json_invalid", "loc": ["body", pos],
                                      "msg": f"JSON decode error: {exc}", "input": {}}])


def create_app(config: ServiceConfig) -> Any:
    """Build the FastAPI application for ``config`` (see the module docstring).

    Loads the scenario, the predictor (or registry, or coefficients), the plan and the outcome
    store, and checks that an API key is configured; raises :class:`ServiceError` (or another
    :class:`~greensched.errors.GreenSchedError`) when something does not fit.  Threads start
    with the application's lifespan (or on the first request).
    """
    service = GreenSchedService(config)
    models = _request_models(service.scenario, config.max_batch_jobs)
    AssignJob, AssignBatch = models["AssignJob"], models["AssignBatch"]
    Outcome, OutcomeBatch = models["Outcome"], models["OutcomeBatch"]
    max_jobs = config.max_batch_jobs

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, service.stop)

    app = FastAPI(
        title="GreenSched",
        version=_package_version(),
        description="Carbon-, cost-, water- and delay-aware placement of LLM inference jobs "
                    f"across data centers (scenario {service.scenario.name!r}).",
        lifespan=lifespan,
    )
    app.state.greensched = service
    app.add_middleware(_Gate, service=service)

    def body_schema(*names: str) -> dict[str, Any]:
        refs = [{"$ref": f"#/components/schemas/{n}"} for n in names]
        return {"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": refs} if len(refs) > 1 else refs[0]}}}}

    err: dict[int | str, dict[str, Any]] = {
        401: {"model": models["Problem"], "description": "missing or wrong API key"},
        413: {"model": models["Problem"], "description": "request too large"},
    }

    def _parse_items(payload: Any, key: str, single: Any, many: Any) -> tuple[bool, Any]:
        """One item or ``{key: [...]}``: (is_batch, validated items or an error response)."""
        batch = isinstance(payload, dict) and key in payload
        try:
            if not batch:
                return False, [single.model_validate(payload)]
            raw = payload[key]
            if isinstance(raw, list) and len(raw) > max_jobs:
                return True, JSONResponse(
                    {"detail": f"{len(raw)} {key} in one request; at most {max_jobs} are "
                               "accepted"},
                    status_code=413,
                )
            return True, getattr(many.model_validate(payload), key)
        except pydantic.ValidationError as exc:
            return batch, _unprocessable(_validation_errors(exc, ("body",)))

    @app.post(
        "/v1/assign",
        summary="Place one job or a batch of jobs",
        openapi_extra=body_schema("AssignJob", "AssignBatch"),
        responses={200: {"model": models["Assignment"] | models["AssignBatchResult"],
                         "description": "one assignment (single job) or "
                                        "{model_version, assignments} (batch)"},
                   409: {"model": models["Problem"],
                         "description": "a job_id was already assigned with other content"},
                   **err},
    )
    async def assign(request: Request) -> Any:
        payload, bad = _parse_json(await request.body())
        if bad is not None:
            return bad
        batch, parsed = _parse_items(payload, "jobs", AssignJob, AssignBatch)
        if isinstance(parsed, JSONResponse):
            return parsed
        jobs = parsed
        if batch:
            seen: dict[str, int] = {}
            dups = []
            for i, j in enumerate(jobs):
                if j.job_id in seen:
                    dups.append({"type": "value_error", "loc": ["body", "jobs", i, "job_id"],
                                 "msg": f"Value error, job_id {j.job_id!r} repeats job "
                                        f"{seen[j.job_id]} of this batch",
                                 "input": j.job_id})
                seen.setdefault(j.job_id, i)
            if dups:
                return _unprocessable(dups)
        try:
            results = await service.assign(service.encode(jobs))
        except _JobConflict as exc:
            return JSONResponse({"detail": str(exc), "job_ids": exc.job_ids}, status_code=409)
        except ServiceError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        if not batch:
            return JSONResponse(results[0])
        return JSONResponse({"model_version": results[0]["model_version"],
                             "assignments": results})

    @app.post(
        "/v1/outcomes",
        summary="Store measured outcomes for feedback",
        openapi_extra=body_schema("Outcome", "OutcomeBatch"),
        responses={200: {"model": models["OutcomeResult"]},
                   404: {"model": models["Problem"], "description": "no outcome store"},
                   **err},
    )
    async def outcomes(request: Request) -> Any:
        if service.store is None:
            return JSONResponse({"detail": "this service has no outcome store; start it with "
                                           "store=PATH_OR_URL (greensched serve --store)"},
                                status_code=404)
        payload, bad = _parse_json(await request.body())
        if bad is not None:
            return bad
        batch, parsed = _parse_items(payload, "outcomes", Outcome, OutcomeBatch)
        if isinstance(parsed, JSONResponse):
            return parsed
        rows = parsed
        records = [r.model_dump(exclude_none=True) for r in rows]
        from greensched.feedback.store import OutcomeValidationError

        try:
            report = await run_in_threadpool(service.ingest, records)
        except OutcomeValidationError as exc:
            prefix = ["body", "outcomes"] if batch else ["body"]
            return _unprocessable([
                {"type": "value_error",
                 "loc": [*prefix, *([i.row] if batch and i.row >= 0 else []), i.column],
                 "msg": f"Value error, expected {i.expected}",
                 "input": None if i.value is exc._MISSING else i.value}
                for i in exc.issues])
        return JSONResponse({
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates_identical": report.duplicates_identical,
            "conflicts": [{"job_id": j, "columns": list(report.conflict_columns.get(j, ()))}
                          for j in report.conflicts],
            "ingest_id": report.ingest_id,
        })

    @app.get("/v1/plan", summary="The plan the service follows",
             responses={404: {"model": models["Problem"], "description": "no plan"}, **err})
    async def plan() -> Any:
        if service.plan_meta is None:
            return JSONResponse({"detail": "this service runs without a plan; start it with "
                                           "plan=PLAN_DIR (greensched serve --plan)"},
                                status_code=404)
        return JSONResponse({
            "mode": service.mode,
            "plan": service.plan_meta,
            "allocation": service.plan_summary,
            "assigned_jobs_by_dc": {d: int(c) for d, c in zip(
                service.scenario.dcs, service.assigned_counts.tolist(), strict=True)},
        })

    @app.get("/v1/ledger", summary="Reserved capacity (exact ticks per hour, dc, resource)",
             responses=err)
    async def ledger() -> Any:
        return JSONResponse(service.ledger_report())

    @app.get("/healthz", summary="Liveness and what is being served",
             responses={200: {"model": models["Health"]}})
    async def healthz() -> Any:
        version, _ = service.model_version()
        return JSONResponse({"status": "ok", "scenario": service.scenario.name,
                             "model_version": version, "mode": service.mode,
                             "uptime_s": round(time.monotonic() - service.started_monotonic, 3)})

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)",
             response_class=Response)
    async def metrics() -> Any:
        body, ctype = service.metrics.render()
        return Response(body, media_type=ctype)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        comps = schema.setdefault("components", {})
        schemas = comps.setdefault("schemas", {})
        for name in ("AssignJob", "AssignBatch", "Outcome", "OutcomeBatch"):
            s = models[name].model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(s.pop("$defs", {}))
            schemas[name] = s
        comps.setdefault("securitySchemes", {})["ApiKey"] = {
            "type": "apiKey", "in": "header", "name": API_KEY_HEADER}
        for path, ops in schema.get("paths", {}).items():
            if path.startswith("/v1/") or (config.metrics_auth and path == "/metrics"):
                for op in ops.values():
                    op["security"] = [{"ApiKey": []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("greensched")
    except Exception:  # pragma: no cover - not installed
        return "0"


# -- command line ---------------------------------------------------------------------------------


def _is_registry(path: Path) -> bool:
    return (path / "versions").is_dir() and not (path / "config.json").is_file()


def serve_command(
    scenario: Path | None = None,
    model: Path | None = None,
    coefficients: Path | None = None,
    plan: Path | None = None,
    store: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_file: Path | None = None,
    workers: int = 1,
    *,
    mode: str | None = None,
    poll_interval_s: float = 1.0,
    batch_window_s: float = 0.002,
    max_batch_jobs: int = 1000,
    max_request_bytes: int = 1 << 20,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the service with uvicorn until interrupted (``greensched serve``).

    Parameters
    ----------
    scenario
        Scenario directory (``None``: the embedded default scenario).
    model
        A saved predictor directory, or a model registry root (a directory with ``versions/``),
        whose promoted version is served and hot-swapped on promotion.
    coefficients
        A ``coefficients.csv`` to predict from instead of a model.
    plan, store
        Plan directory; outcome store path or URL.
    host, port
        Where to listen (loopback by default; put TLS in front for anything else).
    api_key_file
        File holding the API key; without it, ``$GREENSCHED_API_KEY``.  The service refuses to
        start without a key.
    workers
        Must be 1: the capacity ledger lives in the process, and several workers would each
        hand out the full capacity.
    mode, poll_interval_s, batch_window_s, max_batch_jobs, max_request_bytes
        See :class:`ServiceConfig`.
    log_level, access_log
        uvicorn's log level and whether it logs one line per request (headers, and so the
        API key, are never logged).
    """
    if workers != 1:
        raise ServiceError(
            f"workers={workers!r}: the capacity ledger is kept in one process, so the service "
            "runs with one worker (requests are batched inside it); run several services with "
            "separate scenarios/capacity shares to scale out"
        )
    # OpenMP workers that spin while waiting cost more than they save on small batches.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    registry = None
    if model is not None and _is_registry(Path(model)):
        registry, model = model, None
    config = ServiceConfig(
        scenario=scenario, model=model, registry=registry, coefficients=coefficients,
        plan=plan, store=store, api_key_file=api_key_file, mode=mode,
        poll_interval_s=poll_interval_s, batch_window_s=batch_window_s,
        max_batch_jobs=max_batch_jobs, max_request_bytes=max_request_bytes,
    )
    config.resolve_api_key()  # fail before loading anything
    app = create_app(config)
    if not _is_loopback(host):
        log.warning("serving on %s, which is not a loopback address: the API key travels in "
                    "clear text unless a TLS proxy is in front", host)
    import uvicorn

    uvicorn.run(app, host=host, port=int(port), log_level=log_level, access_log=access_log,
                server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
