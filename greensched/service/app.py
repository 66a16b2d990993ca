"""The FastAPI application: endpoints, error bodies and the OpenAPI schema."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from greensched.feedback.ledger import LedgerError
from greensched.service.auth import Gate, GateRoutes
from greensched.service.batcher import JobConflict
from greensched.service.bodies import parse_json, unprocessable, validation_errors
from greensched.service.config import API_KEY_HEADER, ServiceConfig, ServiceError
from greensched.service.core import GreenSchedService
from greensched.service.schemas import request_models

__all__ = ["create_app"]

log = logging.getLogger("greensched.service")


def create_app(config: ServiceConfig) -> Any:
    """Build the FastAPI application for ``config`` (see the module docstring).

    Loads the scenario, the predictor (or registry, or coefficients), the plan and the outcome
    store, and checks that an API key is configured; raises :class:`ServiceError` (or another
    :class:`~greensched.errors.GreenSchedError`) when something does not fit.  Threads start
    with the application's lifespan (or on the first request).
    """
    service = GreenSchedService(config)
    models = request_models(service.scenario, config.max_batch_jobs)
    AssignJob, AssignBatch = models["AssignJob"], models["AssignBatch"]
    Outcome, OutcomeBatch = models["Outcome"], models["OutcomeBatch"]
    max_jobs = config.max_batch_jobs
    max_depth = config.max_json_depth

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        service.start()
        # Everything loaded at start-up (model, scenario, feature tables, libraries) is moved to
        # the collector's permanent generation: full collections then stop traversing it, which
        # took tens of ms per collection and set the tail latency under load.
        gc.collect()
        gc.freeze()
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
    gate = GateRoutes()
    app.add_middleware(Gate, service=service, direct=gate.direct)

    def body_schema(*names: str) -> dict[str, Any]:
        refs = [{"$ref": f"#/components/schemas/{n}"} for n in names]
        return {"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": refs} if len(refs) > 1 else refs[0]}}}}

    retry = {"Retry-After": {"description": "seconds to wait before retrying",
                             "schema": {"type": "integer"}}}
    auth_err: dict[int | str, dict[str, Any]] = {
        401: {"model": models["Problem"], "description": "missing or wrong API key"},
        400: {"model": models["Problem"],
              "description": "an API key in the query string (send it in the X-API-Key header)"},
        429: {"model": models["Problem"], "headers": retry,
              "description": "too many failed authentications from this address"},
    }
    err: dict[int | str, dict[str, Any]] = {
        **auth_err,
        413: {"model": models["Problem"], "description": "request too large"},
        422: {"model": models["ValidationProblem"],
              "description": "malformed body: invalid JSON, nested too deep, or a field out of "
                             "range; detail[].loc names the field"},
        503: {"model": models["Problem"], "headers": retry,
              "description": "the ledger or outcome store is busy (locked), or the service is "
                             "shutting down; retry after Retry-After seconds"},
    }

    def busy(exc: Exception) -> JSONResponse:
        wait = int(getattr(exc, "retry_after_s", 1))
        return JSONResponse({"detail": str(exc)}, status_code=503,
                            headers={"Retry-After": str(wait)})

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
            return batch, unprocessable(validation_errors(exc, ("body",)))

    @app.post(
        "/v1/assign",
        summary="Place one job or a batch of jobs",
        openapi_extra=body_schema("AssignJob", "AssignBatch"),
        responses={200: {"model": models["Assignment"] | models["AssignBatchResult"],
                         "description": "one assignment (single job) or "
                                        "{model_version, assignments} (batch)"},
                   409: {"model": models["JobConflictProblem"],
                         "description": "a job_id was already assigned with other content"},
                   **err},
    )
    async def assign(request: Request) -> Any:
        return await assign_body(await request.body())

    async def assign_body(body: bytes) -> Response:
        """``POST /v1/assign`` from its body: the route above, and the direct ASGI path the
        gate takes (:meth:`Gate.direct`: the same answers without the framework's routing,
        which costs more CPU than the rest of the request)."""
        payload, bad = parse_json(body, max_depth)
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
                return unprocessable(dups)
        try:
            results = await service.assign(service.encode(jobs))
        except JobConflict as exc:
            return JSONResponse({"detail": str(exc), "job_ids": exc.job_ids}, status_code=409)
        except (ServiceError, LedgerError) as exc:
            return busy(exc)
        if not batch:
            return JSONResponse(results[0])
        return JSONResponse({"model_version": results[0]["model_version"],
                             "assignments": results})

    gate.direct[("POST", "/v1/assign")] = assign_body

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
        payload, bad = parse_json(await request.body(), max_depth)
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
            return unprocessable([
                {"type": "value_error",
                 "loc": [*prefix, *([i.row] if batch and i.row >= 0 else []), i.column],
                 "msg": f"Value error, expected {i.expected}",
                 "input": None if i.value is exc._MISSING else i.value}
                for i in exc.issues])
        except (ServiceError, LedgerError) as exc:
            return busy(exc)
        stored = [r["job_id"] for r in records if r["job_id"] not in set(report.conflicts)]
        try:
            await run_in_threadpool(service.release_jobs, stored)
        except LedgerError as exc:  # stored, but the reservation stays until its hour passes
            log.warning("outcomes stored; releasing their reservations failed: %s", exc)
        return JSONResponse({
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates_identical": report.duplicates_identical,
            "conflicts": [{"job_id": j, "columns": list(report.conflict_columns.get(j, ()))}
                          for j in report.conflicts],
            "ingest_id": report.ingest_id,
        })

    @app.get("/v1/plan", summary="The plan the service follows",
             responses={404: {"model": models["Problem"], "description": "no plan"},
                        **auth_err})
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
             responses={**auth_err, 503: err[503]})
    async def ledger() -> Any:
        try:
            return JSONResponse(await run_in_threadpool(service.ledger_report))
        except LedgerError as exc:
            return busy(exc)

    @app.get("/healthz", summary="Liveness and what is being served",
             responses={200: {"model": models["Health"]}})
    async def healthz() -> Any:
        version, _ = service.model_version()
        return JSONResponse({"status": "ok", "scenario": service.scenario.name,
                             "model_version": version, **service.model_status(),
                             "mode": service.mode, "ledger": service.ledger_kind(),
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
        for name in ("AssignJob", "AssignBatch", "Outcome", "OutcomeBatch",
                     "ValidationProblem"):
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

