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

Modules
-------
``config``   :class:`ServiceConfig`, :class:`ServiceError`, constants
``schemas``  pydantic request/response models built for the scenario
``predict``  predictor adapters (coefficients; a saved model through ``predict_arrays``)
``batcher``  :class:`MicroBatcher`: one thread coalescing concurrent requests
``metrics``  Prometheus metrics
``core``     :class:`GreenSchedService`: shared state and the batch step
``auth``     the ASGI gate (API key, body size, request metrics)
``app``      :func:`create_app`
``serve``    :func:`serve_command` (uvicorn)

How a request is served
-----------------------
1. The gate checks the ``X-API-Key`` header on ``/v1/*`` (SHA-256 of both sides compared with
   :func:`hmac.compare_digest`; 401 otherwise) and the body size (413 above
   ``max_request_bytes``).
2. The body is validated with pydantic models built for the scenario (422 names the field,
   FastAPI's ``detail[].loc`` format).
3. The jobs are handed to the :class:`MicroBatcher`, which predicts the jobs of all pending
   requests with **one** predictor call, assigns them in arrival order with
   :meth:`~greensched.scheduler.assign.GreedyAssigner.assign_arrays` (capacity reserved in the
   shared :class:`~greensched.scheduler.assign.CapacityLedger` under its lock, in exact integer
   ticks) and resolves each request's future.
4. Job ids are remembered: a re-sent job gets the same answer without reserving again; a known
   ``job_id`` sent with different content is refused with 409.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"greensched.service needs FastAPI, uvicorn and prometheus-client ({_exc}); install "
        "them with pip install 'greensched[service]'"
    ) from _exc

from greensched.service.app import create_app
from greensched.service.batcher import MicroBatcher
from greensched.service.config import (
    API_KEY_ENV,
    API_KEY_HEADER,
    MAX_TOKENS,
    ServiceConfig,
    ServiceError,
)
from greensched.service.core import GreenSchedService
from greensched.service.serve import serve_command

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
