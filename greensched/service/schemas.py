"""Pydantic models of the request and response bodies, built per scenario.

:func:`request_models` checks labels (areas, query types, DCs) and hours of the scenario the
service runs on; FastAPI's 422 ``detail[].loc`` then names the offending field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario
from greensched.service.config import MAX_JOB_ID, MAX_TOKENS

__all__ = ["listing", "request_models"]


def listing(labels: list[str], n: int = 8) -> str:
    """The first ``n`` labels, comma-separated, and how many there are in all."""
    shown = ", ".join(labels[:n])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > n else "")


def request_models(scenario: Scenario, max_batch_jobs: int) -> dict[str, Any]:
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
        if "hour" in props and "arrival_s" in props:
            # the hour-or-arrival_s rule: at least one of them, non-null
            schema["anyOf"] = [
                {"required": ["hour"], "properties": {"hour": {"type": "integer"}}},
                {"required": ["arrival_s"], "properties": {"arrival_s": {"type": "number"}}},
            ]
            schema["description"] = (schema.get("description", "") + " Give hour or "
                                     "arrival_s (or both: arrival_s must fall in that hour, "
                                     "i.e. floor(arrival_s / 3600) == hour).").strip()

    def known(kind: str, labels: list[str], allowed: frozenset[str]) -> Callable[[str], str]:
        def check(v: str) -> str:
            if v not in allowed:
                raise ValueError(f"unknown {kind} {v!r}; scenario {name!r} has "
                                 f"{listing(labels)}")
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
        policy: Annotated[str, Field(strict=True, min_length=1, max_length=128)] | None = None
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
        wait_s: NonNeg | None = Field(default=None, description="queueing wait, s")
        carbon_kg: NonNeg | None = Field(default=None, description="carbon of the job, kg")
        water_l: NonNeg | None = Field(default=None, description="water of the job, l")
        cost_usd: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = None
        sla_met: Annotated[bool, Field(strict=True)] | None = None
        assigned_at: datetime | None = None
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

    class LedgerInfo(BaseModel):
        kind: str = Field(description="memory, sqlite or postgresql")
        url: str | None = Field(description="where the durable ledger lives (no password)")

    class Health(BaseModel):
        status: str
        scenario: str
        model_version: str
        promoted_version: str | None = Field(
            description="the registry's promoted version (CURRENT), or the served model")
        serving_version: str = Field(description="the version answering requests")
        last_load_error: str | None = Field(
            description="why the last model version that failed to load failed")
        mode: str
        ledger: LedgerInfo
        uptime_s: float

    class Problem(BaseModel):
        detail: Any

    class JobConflictProblem(BaseModel):
        detail: str
        job_ids: list[str]

    class ValidationIssue(BaseModel):
        type: str
        loc: list[str | int] = Field(description="where: 'body', then keys and indices")
        msg: str
        input: Any = None
        ctx: dict[str, Any] | None = None

    class ValidationProblem(BaseModel):
        """422: the request body does not fit; one issue per bad field."""

        detail: list[ValidationIssue]

    return {m.__name__: m for m in (AssignJob, AssignBatch, Assignment, AssignBatchResult,
                                    Outcome, OutcomeBatch, OutcomeConflict, OutcomeResult,
                                    LedgerInfo, Health, Problem, JobConflictProblem,
                                    ValidationIssue, ValidationProblem)}

