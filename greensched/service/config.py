"""Configuration of the HTTP service: :class:`ServiceConfig`, its error type and constants."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from greensched.errors import GreenSchedError
from greensched.scenario import Scenario
from greensched.scheduler.assign import AssignConfig, AssignError, AssignMode

__all__ = [
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "MAX_JOB_ID",
    "MAX_TOKENS",
    "MODES",
    "ServiceBusy",
    "ServiceConfig",
    "ServiceError",
]

log = logging.getLogger("greensched.service")

#: Environment variable holding the API key (a key file takes precedence).
API_KEY_ENV = "GREENSCHED_API_KEY"
#: Request header carrying the API key.
API_KEY_HEADER = "X-API-Key"
#: Upper bound of ``input_tokens`` and ``output_tokens`` of one job.
MAX_TOKENS = 10**6
#: Longest accepted ``job_id``.
MAX_JOB_ID = 128
#: Assignment modes: plain greedy, plan-guided scoring, plan-following draws.
MODES = ("greedy", "plan", "follow")

class ServiceError(GreenSchedError):
    """The service cannot start or serve with the given configuration."""


class ServiceBusy(ServiceError):
    """A store is locked or unreachable right now: 503 with ``Retry-After``."""

    retry_after_s = 1


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
    remember_jobs
        How many recent job ids are remembered in memory for idempotent re-sends (0 disables
        the memory; with a durable ``ledger`` every job id stays answerable from the ledger).
    metrics_auth
        Require the API key on ``/metrics`` too.
    assign
        Scoring and masking options of the assigner.
    ledger
        Durable capacity ledger (``sqlite:///file`` for one node, ``postgresql://...`` for
        replicas sharing capacity; see :mod:`greensched.feedback.ledger`); ``None`` keeps the
        ledger in memory only (lost on restart).
    ledger_retries
        Re-assignments of a batch after another replica took the capacity it wanted.
    hour0_unix_s
        Unix time of the scenario's hour 0; when set, reservations of hours that have passed
        expire (durable ledger).
    release_on_outcome
        End a job's reservation when its outcome is stored (durable ledger).
    store_busy_timeout_s
        How long a write waits for a locked store or ledger before answering 503.
    max_json_depth
        Deepest nesting of arrays/objects accepted in a request body (422 beyond).
    auth_failures_per_min
        Failed authentications per client address and minute before 429 (0: no limit).
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
    remember_jobs: int = 20_000
    metrics_auth: bool = False
    assign: AssignConfig = field(default_factory=AssignConfig)
    ledger: str | Path | None = None
    ledger_retries: int = 8
    hour0_unix_s: float | None = None
    release_on_outcome: bool = True
    store_busy_timeout_s: float = 5.0
    max_json_depth: int = 32
    auth_failures_per_min: int = 30

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
            try:
                mode = AssignMode.parse(self.mode, allowed=(AssignMode.GREEDY, AssignMode.PLAN,
                                                            AssignMode.FOLLOW))
            except AssignError as exc:
                raise ServiceError(str(exc)) from None
            if mode in ("plan", "follow") and self.plan is None:
                raise ServiceError(f"mode {mode!r} needs a plan directory (plan=...)")
            self.mode = mode
        for name in ("max_batch_jobs", "max_request_bytes", "max_predict_jobs",
                     "max_json_depth"):
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
        for name in ("ledger_retries", "auth_failures_per_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ServiceError(f"{name} must be an integer >= 0, got {v!r}")
        v = float(self.store_busy_timeout_s)
        if not math.isfinite(v) or v <= 0:
            raise ServiceError(f"store_busy_timeout_s must be a finite number > 0, got "
                               f"{self.store_busy_timeout_s!r}")
        if self.hour0_unix_s is not None and not math.isfinite(float(self.hour0_unix_s)):
            raise ServiceError(f"hour0_unix_s must be a finite Unix time, got "
                               f"{self.hour0_unix_s!r}")
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

