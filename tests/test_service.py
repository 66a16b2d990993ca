"""The HTTP service: auth, validation, limits, assignment, outcomes, plan, metrics, concurrency
(exact capacity accounting under 50 concurrent clients), hot swap under load, and one real
uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
pytest.importorskip("prometheus_client", reason="the service needs the 'service' extra "
                    "(prometheus-client)")

from fastapi.testclient import TestClient

from greensched.jobs import DEFAULT_SLA_S
from greensched.scenario import Scenario, save_coefficients
from greensched.scheduler.assign import (
    AssignConfig,
    CapacityLedger,
    GreedyAssigner,
    predictions_from_coefficients,
)
from greensched.service import (
    API_KEY_ENV,
    MicroBatcher,
    ServiceConfig,
    ServiceError,
    create_app,
    serve_command,
)
from greensched.synth import synthesize

KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """4 DCs, 3 areas, 3 types, 6 hours."""
    return synthesize(dcs=4, areas=3, types=3, hours=6, seed=3, name="svc-test")


@pytest.fixture(scope="module")
def tight(scenario: Scenario) -> Scenario:
    """The same scenario with 1/80 of the capacity: ~75 jobs per DC and hour."""
    s = scenario.copy()
    s.ds["capacity"] = np.floor(s.ds["capacity"] / 80.0)
    return s


@pytest.fixture(scope="module")
def coef_file(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scenario's own per-query coefficients as a coefficients.csv."""
    coef = xr.Dataset({"energy_kwh_per_query": scenario.energy_kwh_per_query(),
                       "proc_delay_s_per_query": scenario.proc_delay_s_per_query()})
    return save_coefficients(coef, tmp_path_factory.mktemp("coef") / "coefficients.csv")


@pytest.fixture(scope="module")
def client(scenario: Scenario, coef_file: Path) -> Iterator[TestClient]:
    """A coefficients-based service shared by the read-mostly tests."""
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def xgb_dir(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny XGBoost predictor trained on the synthetic stand-in dataset, saved."""
    pytest.importorskip("xgboost")
    from greensched.predictor.synthetic import synthetic_dataset
    from greensched.predictor.xgb import XGBoostPredictor

    df, _ = synthetic_dataset(scenario, 160, seed=1, noise=0.02)
    model = XGBoostPredictor(n_estimators=20, action_n_estimators=5, max_depth=3, n_jobs=1)
    return model.fit(df).save(tmp_path_factory.mktemp("xgb") / "model")


def job(i: int | str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"job_id": str(i), "area": "area000", "query_type": "type0",
                           "input_tokens": 200, "output_tokens": 100, "hour": 1}
    out.update(kw)
    return out


def random_jobs(scenario: Scenario, n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        j = {"job_id": f"{prefix}{i}", "area": scenario.areas[rng.integers(len(scenario.areas))],
             "query_type": scenario.query_types[rng.integers(len(scenario.query_types))],
             "input_tokens": int(rng.integers(1, 2000)),
             "arrival_s": float(rng.uniform(0, scenario.hours * 3600.0 - 1))}
        if rng.random() < 0.7:
            j["output_tokens"] = int(rng.integers(1, 800))
        if rng.random() < 0.5:
            j["sla_s"] = float(rng.uniform(0.5, 60.0))
        out.append(j)
    return out


def jobs_frame(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    """The request jobs as a typed jobs table (unknown output tokens NaN, default SLA)."""
    df = pd.DataFrame(jobs)
    df["hour"] = np.floor(df["arrival_s"] / 3600.0).astype(np.int64)
    df["sla_s"] = df["sla_s"].fillna(DEFAULT_SLA_S).astype(float)
    df["output_tokens"] = df["output_tokens"].astype(float)
    return df


def usage_ticks(scenario: Scenario, ledger: CapacityLedger, jobs: list[dict[str, Any]],
                results: list[dict[str, Any]]) -> np.ndarray:
    """Σ usage ticks of the placed jobs per (hour, dc, resource), computed independently."""
    ds = scenario.ds
    upt = ds["units_per_token"].transpose("query_type", "resource").values
    mean_out = ds["output_tokens"].values
    total = np.zeros_like(ledger.used_ticks)
    for j, r in zip(jobs, results, strict=True):
        assert r["job_id"] == j["job_id"]
        if r["dc"] is None:
            continue
        k = scenario.query_types.index(j["query_type"])
        tokens = j["input_tokens"] + j.get("output_tokens", mean_out[k])
        t = ledger.to_ticks(upt[k] * tokens)
        total[r["hour"], scenario.dcs.index(r["dc"])] += t
    return total


# -- configuration -------------------------------------------------------------------------------


def test_config_needs_one_prediction_source(scenario: Scenario, coef_file: Path) -> None:
    with pytest.raises(ServiceError, match="exactly one source"):
        ServiceConfig(scenario=scenario, api_key=KEY)
    with pytest.raises(ServiceError, match="exactly one source"):
        ServiceConfig(scenario=scenario, model="m", coefficients=coef_file, api_key=KEY)
    with pytest.raises(ServiceError, match="needs a plan"):
        ServiceConfig(scenario=scenario, coefficients=coef_file, mode="plan", api_key=KEY)
    with pytest.raises(ServiceError, match="max_predict_jobs"):
        ServiceConfig(scenario=scenario, coefficients=coef_file, max_batch_jobs=10,
                      max_predict_jobs=5)


def test_api_key_sources_and_secrecy(scenario: Scenario, coef_file: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    cfg = ServiceConfig(scenario=scenario, coefficients=coef_file)
    with pytest.raises(ServiceError, match=API_KEY_ENV):
        create_app(cfg)
    monkeypatch.setenv(API_KEY_ENV, "from-the-environment-123")
    assert cfg.resolve_api_key() == "from-the-environment-123"
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file-456789\n")
    key_file.chmod(0o600)
    assert ServiceConfig(scenario=scenario, coefficients=coef_file,
                         api_key_file=key_file).resolve_api_key() == "from-the-file-456789"
    shown = ServiceConfig(scenario=scenario, coefficients=coef_file, api_key="s3cret-value-xyz")
    assert "s3cret" not in repr(shown)
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ServiceError, match="empty"):
        ServiceConfig(scenario=scenario, coefficients=coef_file,
                      api_key_file=empty).resolve_api_key()


def test_serve_command_refuses_without_key_or_with_workers(
    coef_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(ServiceError, match="no API key"):
        serve_command(None, None, coef_file, None, None, "127.0.0.1", 0, None)
    with pytest.raises(ServiceError, match="one worker"):
        serve_command(None, None, coef_file, None, None, "127.0.0.1", 0, None, workers=2)


# -- auth, validation, limits -------------------------------------------------------------------


def test_auth_required_then_valid_request_works(client: TestClient) -> None:
    r = client.post("/v1/assign", json=job("auth0"))
    assert r.status_code == 401
    assert "missing API key" in r.json()["detail"]
    r = client.post("/v1/assign", json=job("auth0"), headers={"X-API-Key": KEY + "x"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert KEY not in r.text
    assert client.get("/v1/ledger").status_code == 401
    assert client.get("/healthz").status_code == 200  # no auth
    r = client.post("/v1/assign", json=job("auth0"), headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["job_id"] == "auth0"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (job("v1", input_tokens=-1), ["body", "input_tokens"]),
        (job("v2", input_tokens=10**6 + 1), ["body", "input_tokens"]),
        (job("v3", input_tokens="12"), ["body", "input_tokens"]),
        (job("v4", area="atlantis"), ["body", "area"]),
        (job("v5", query_type="poetry"), ["body", "query_type"]),
        (job("v6", sla_s=0), ["body", "sla_s"]),
        (job("v7", hour=6), ["body", "hour"]),
        (job("v8", hour=None), ["body", "arrival_s"]),
        (job("v9", hour=None, arrival_s=6 * 3600.0), ["body", "arrival_s"]),
        (job("v10", hour=2, arrival_s=100.0), ["body", "arrival_s"]),
        (job("v11", output_tokens=1.5), ["body", "output_tokens"]),
        (job("x" * 129), ["body", "job_id"]),
        ({**job("e"), "job_id": ""}, ["body", "job_id"]),
        ({**job("v13"), "input_token": 3}, ["body", "input_token"]),
        ({"jobs": [job("b1"), job("b2", area="atlantis")]}, ["body", "jobs", 1, "area"]),
        ({"jobs": [job("b3"), job("b3")]}, ["body", "jobs", 1, "job_id"]),
        ({"jobs": []}, ["body", "jobs"]),
    ],
)
def test_malformed_job_is_422_naming_the_field(client: TestClient, body: dict[str, Any],
                                               loc: list[Any]) -> None:
    r = client.post("/v1/assign", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["detail"]]
    assert loc in locs, locs
    # the server keeps serving
    ok = client.post("/v1/assign", json=job(f"after-{json.dumps(loc)}"), headers=AUTH)
    assert ok.status_code == 200


def test_unknown_area_message_lists_the_scenario_areas(client: TestClient) -> None:
    r = client.post("/v1/assign", json=job("m1", area="atlantis"), headers=AUTH)
    msg = r.json()["detail"][0]["msg"]
    assert "'atlantis'" in msg and "area000" in msg


def test_invalid_json_is_422(client: TestClient) -> None:
    r = client.post("/v1/assign", content=b"{not json", headers={**AUTH,
                                                               "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"


def test_oversize_requests_are_413(client: TestClient) -> None:
    big = b'{"jobs": [' + b" " * (1 << 20) + b"]}"
    r = client.post("/v1/assign", content=big, headers=AUTH)
    assert r.status_code == 413 and "bytes" in r.json()["detail"]
    # no Content-Length: the gate counts the bytes as they arrive
    r = client.post("/v1/assign", content=iter([b" " * (700 << 10)] * 2), headers=AUTH)
    assert r.status_code == 413
    r = client.post("/v1/assign", json={"jobs": [job(f"o{i}") for i in range(1001)]},
                    headers=AUTH)
    assert r.status_code == 413 and "1000" in r.json()["detail"]
    assert client.post("/v1/assign", json=job("after-413"), headers=AUTH).status_code == 200


# -- assignment ----------------------------------------------------------------------------------


def test_single_and_batch_match_the_greedy_assigner(scenario: Scenario, coef_file: Path) -> None:
    jobs = random_jobs(scenario, 120, seed=5, prefix="s")
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY))
    with TestClient(app) as c:
        single = c.post("/v1/assign", json=jobs[0], headers=AUTH)
        assert single.status_code == 200
        one = single.json()
        assert set(one) == {"job_id", "dc", "hour", "predicted_energy_kwh",
                            "predicted_service_s", "carbon_kg", "cost_usd", "score",
                            "propensity", "model_version", "reason"}
        r = c.post("/v1/assign", json={"jobs": jobs[1:]}, headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["model_version"].startswith("coefficients-")
        results = [one, *body["assignments"]]
    assert [x["job_id"] for x in results] == [j["job_id"] for j in jobs]
    # the same jobs through the library, in the same order
    frame = jobs_frame(jobs)
    ref = GreedyAssigner(scenario, AssignConfig()).assign(
        frame, predictions_from_coefficients(scenario, frame))
    # the service assigns in request order; the library sorts by arrival: compare per job on
    # hours holding a single request's jobs only when orders agree, i.e. capacity is slack here
    got = {x["job_id"]: x for x in results}
    for row in ref.frame.itertuples():
        x = got[row.job_id]
        assert x["dc"] == row.dc
        assert x["predicted_energy_kwh"] == pytest.approx(row.predicted_energy_kwh, rel=1e-12)
        assert x["predicted_service_s"] == pytest.approx(row.predicted_service_s, rel=1e-12)
        assert x["carbon_kg"] == pytest.approx(row.carbon_kg, rel=1e-12)
        assert x["cost_usd"] == pytest.approx(row.cost_usd, rel=1e-12)
        assert x["score"] == pytest.approx(row.score, rel=1e-12)
        assert x["propensity"] == 1.0 and x["reason"] == ""


def test_resend_is_idempotent_and_conflicts_are_409(scenario: Scenario, coef_file: Path) -> None:
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY))
    ledger = app.state.greensched.ledger
    with TestClient(app) as c:
        first = c.post("/v1/assign", json={"jobs": [job("r1"), job("r2")]}, headers=AUTH)
        used = ledger.used_ticks.copy()
        again = c.post("/v1/assign", json={"jobs": [job("r1"), job("r2")]}, headers=AUTH)
        assert again.json() == first.json()
        assert np.array_equal(ledger.used_ticks, used)
        clash = c.post("/v1/assign", json={"jobs": [job("r3"), job("r1", input_tokens=999)]},
                       headers=AUTH)
        assert clash.status_code == 409 and clash.json()["job_ids"] == ["r1"]
        assert np.array_equal(ledger.used_ticks, used)  # nothing of that request reserved
        assert c.post("/v1/assign", json=job("r3"), headers=AUTH).status_code == 200


def test_capacity_and_reasons(tight: Scenario, coef_file: Path) -> None:
    s = tight.copy()
    s.ds["capacity"] = s.ds["capacity"] * 0.0
    app = create_app(ServiceConfig(scenario=s, coefficients=coef_file, api_key=KEY))
    with TestClient(app) as c:
        r = c.post("/v1/assign", json=job("full"), headers=AUTH).json()
    assert r["dc"] is None and r["reason"] == "capacity"
    assert r["predicted_energy_kwh"] is None and r["propensity"] is None
    sov = AssignConfig(sovereignty={"area000": []})
    app = create_app(ServiceConfig(scenario=tight, coefficients=coef_file, api_key=KEY,
                                   assign=sov))
    with TestClient(app) as c:
        r = c.post("/v1/assign", json=job("sov"), headers=AUTH).json()
    assert r["dc"] is None and r["reason"] == "sovereignty"


def test_model_predictions_equal_predict_jobs(scenario: Scenario, xgb_dir: Path) -> None:
    from greensched.predictor.checkpoint import load_predictor

    jobs = random_jobs(scenario, 40, seed=9, prefix="x")
    app = create_app(ServiceConfig(scenario=scenario, model=xgb_dir, api_key=KEY))
    with TestClient(app) as c:
        body = c.post("/v1/assign", json={"jobs": jobs}, headers=AUTH).json()
        assert c.get("/healthz").json()["model_version"] == "model"
    frame = jobs_frame(jobs)
    ref = load_predictor(xgb_dir).predict_jobs(frame, scenario)
    for x in body["assignments"]:
        assert x["model_version"] == "model"
        e = float(ref["energy_kwh"].sel(job=x["job_id"], dc=x["dc"]))
        s = float(ref["service_s"].sel(job=x["job_id"], dc=x["dc"]))
        assert x["predicted_energy_kwh"] == pytest.approx(e, rel=1e-9)
        assert x["predicted_service_s"] == pytest.approx(s, rel=1e-9)


# -- outcomes, plan, metrics, schema ---------------------------------------------------------------


def test_outcomes_stored_idempotent_conflicts_reported(scenario: Scenario, coef_file: Path,
                                                       tmp_path: Path) -> None:
    from greensched.feedback.store import OutcomeStore

    store = tmp_path / "outcomes.sqlite"
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                   store=store))
    with TestClient(app) as c:
        a = c.post("/v1/assign", json=job("o1"), headers=AUTH).json()
        outcome = {**job("o1"), "dc": a["dc"], "model_version": a["model_version"],
                   "predicted_energy_kwh": a["predicted_energy_kwh"],
                   "predicted_service_s": a["predicted_service_s"],
                   "propensity": a["propensity"], "energy_kwh": 0.002, "service_s": 1.5,
                   "measured_at": "2026-01-02T03:04:05Z"}
        r = c.post("/v1/outcomes", json=outcome, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["inserted"] == 1
        r = c.post("/v1/outcomes", json={"outcomes": [outcome]}, headers=AUTH).json()
        assert r["inserted"] == 0 and r["duplicates_identical"] == 1 and r["conflicts"] == []
        changed = {**outcome, "energy_kwh": 0.003}
        r = c.post("/v1/outcomes", json=changed, headers=AUTH).json()
        assert r["conflicts"] == [{"job_id": "o1", "columns": ["energy_kwh"]}]
        for bad, loc in (({**outcome, "energy_kwh": 0}, ["body", "energy_kwh"]),
                         ({**outcome, "dc": "dc999"}, ["body", "dc"]),
                         ({"outcomes": [outcome, {**outcome, "job_id": "o2", "service_s": -1}]},
                          ["body", "outcomes", 1, "service_s"])):
            r = c.post("/v1/outcomes", json=bad, headers=AUTH)
            assert r.status_code == 422
            assert loc in [e["loc"] for e in r.json()["detail"]]
        assert c.post("/v1/outcomes", json=outcome).status_code == 401
    with OutcomeStore.open(store, create=False) as st:
        rows = st.query()
    assert list(rows["job_id"]) == ["o1"] and float(rows["energy_kwh"].iloc[0]) == 0.002
    assert float(rows["pred_energy_kwh"].iloc[0]) == a["predicted_energy_kwh"]


def test_outcomes_without_store_is_404(client: TestClient) -> None:
    r = client.post("/v1/outcomes", json={}, headers=AUTH)
    assert r.status_code == 404 and "store" in r.json()["detail"]


def test_plan_endpoint(scenario: Scenario, coef_file: Path, client: TestClient,
                       tmp_path: Path) -> None:
    from greensched.scheduler.planner import plan

    assert client.get("/v1/plan", headers=AUTH).status_code == 404
    result = plan(scenario)
    assert result.is_ok
    result.write(tmp_path / "plan")
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                   plan=tmp_path / "plan"))
    with TestClient(app) as c:
        assert c.get("/v1/plan").status_code == 401
        assert c.post("/v1/assign", json=job("p1"), headers=AUTH).status_code == 200
        body = c.get("/v1/plan", headers=AUTH).json()
    assert body["mode"] == "plan" and body["plan"]["status"] == "optimal"
    shares = body["allocation"]["share_by_dc"]
    assert set(shares) == set(scenario.dcs) and sum(shares.values()) == pytest.approx(1.0)
    assert body["allocation"]["has_duals"] is True
    assert sum(body["assigned_jobs_by_dc"].values()) == 1


def test_metrics_and_healthz(client: TestClient) -> None:
    client.post("/v1/assign", json=job("met1"), headers=AUTH)
    client.post("/v1/assign", json=job("met2"))
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["scenario"] == "svc-test" and h["uptime_s"] >= 0
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'greensched_http_requests_total{endpoint="/v1/assign",method="POST",status="200"}',
        'greensched_http_requests_total{endpoint="/v1/assign",method="POST",status="401"}',
        'greensched_http_request_duration_seconds_bucket{endpoint="/v1/assign"',
        "greensched_assigned_jobs_total{dc=",
        "greensched_ledger_utilisation_ratio{dc=",
        f'version="{h["model_version"]}"',
        "greensched_prediction_batch_jobs_bucket",
    ):
        assert needle in text, needle
    assert KEY not in text


def test_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/v1/assign"]["post"]
    refs = op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in refs} == {"AssignJob", "AssignBatch"}
    comps = schema["components"]
    assert comps["schemas"]["AssignJob"]["properties"]["area"]["enum"] == [
        "area000", "area001", "area002"]
    assert comps["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert op["security"] == [{"ApiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_micro_batcher_coalesces_and_drops_cancelled() -> None:
    from greensched.service.predict import JobArrays

    calls: list[int] = []

    def process(items: list[Any]) -> None:
        calls.append(len(items))
        for it in items:
            it.future.set_result(len(it.jobs))

    def jobs(n: int) -> JobArrays:
        z = np.zeros(n, dtype=np.int64)
        return JobArrays([f"j{i}" for i in range(n)], z, z, z, z * 1.0, z * 1.0, z + 1.0, z * 1.0)

    b = MicroBatcher(process, window_s=0.2, max_jobs=10)
    try:
        cancelled = b.submit(jobs(1))
        assert cancelled.cancel() or cancelled.done()
        futs = [b.submit(jobs(2)) for _ in range(6)]  # 12 jobs > max 10: two calls
        assert [f.result(timeout=5) for f in futs] == [2] * 6
    finally:
        b.stop()
    assert sum(calls) == 6 and len(calls) == 2
    late = b.submit(jobs(1))
    with pytest.raises(ServiceError, match="shutting down"):
        late.result(timeout=1)


# -- concurrency: exact capacity, hot swap ---------------------------------------------------------


async def _hammer(app: Any, bodies: list[dict[str, Any]], concurrency: int
                  ) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc",
                                 headers=AUTH, timeout=60.0) as c:
        async def one(body: dict[str, Any]) -> httpx.Response:
            async with sem:
                return await c.post("/v1/assign", json=body)

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def test_concurrent_requests_keep_the_ledger_exact(tight: Scenario, coef_file: Path) -> None:
    jobs = random_jobs(tight, 3000, seed=11, prefix="c")
    # 2,000 requests: mostly single jobs, every 7th a batch of 2-4 jobs
    bodies: list[dict[str, Any]] = []
    sent: list[list[dict[str, Any]]] = []
    i = 0
    while len(bodies) < 2000:
        n = 1 if len(bodies) % 7 else 2 + len(bodies) % 3
        part = jobs[i:i + n]
        i += n
        bodies.append(part[0] if n == 1 else {"jobs": part})
        sent.append(part)
    app = create_app(ServiceConfig(scenario=tight, coefficients=coef_file, api_key=KEY))
    service = app.state.greensched
    try:
        responses = asyncio.run(_hammer(app, bodies, concurrency=50))
    finally:
        service.stop()
    assert [r.status_code for r in responses if r.status_code >= 500] == []
    assert all(r.status_code == 200 for r in responses)
    flat_jobs: list[dict[str, Any]] = []
    flat_results: list[dict[str, Any]] = []
    for part, r in zip(sent, responses, strict=True):
        body = r.json()
        results = body["assignments"] if "assignments" in body else [body]
        flat_jobs.extend(part)
        flat_results.extend(results)
    expected = usage_ticks(tight, service.ledger, flat_jobs, flat_results)
    assert np.array_equal(service.ledger.used_ticks, expected)
    assert (service.ledger.used_ticks <= service.ledger.capacity_ticks).all()
    reasons = {x["reason"] for x in flat_results}
    assert "capacity" in reasons and "" in reasons  # capacity binds in this test
    # requests were coalesced: fewer predictor calls than requests
    sample = service.metrics.registry.get_sample_value
    assert sample("greensched_prediction_batch_jobs_sum") == len(flat_jobs)
    assert sample("greensched_prediction_batch_jobs_count") < len(bodies)


def test_hot_swap_under_load(scenario: Scenario, xgb_dir: Path, tmp_path: Path) -> None:
    from greensched.feedback.registry import ModelRegistry

    reg = ModelRegistry(tmp_path / "registry")
    v1 = reg.register(xgb_dir, kind="xgboost")
    reg.promote(v1)
    app = create_app(ServiceConfig(scenario=scenario, registry=reg.root, api_key=KEY,
                                   poll_interval_s=0.05))
    service = app.state.greensched
    service.start()
    jobs = iter(random_jobs(scenario, 100_000, seed=13, prefix="h"))
    seen: list[str] = []
    failures: list[str] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        state = {"promoted_at": None, "stop": False}

        async with httpx.AsyncClient(transport=transport, base_url="http://svc",
                                     headers=AUTH, timeout=60.0) as c:
            async def client_loop() -> None:
                while not state["stop"]:
                    r = await c.post("/v1/assign", json=next(jobs))
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                        continue
                    seen.append(r.json()["model_version"])

            async def operator() -> None:
                while len(seen) < 80:
                    await asyncio.sleep(0.01)
                v2 = await asyncio.to_thread(reg.register, xgb_dir, kind="xgboost",
                                             parent=v1)
                await asyncio.to_thread(reg.promote, v2, reason="test")
                t0 = time.monotonic()
                while time.monotonic() - t0 < 30:
                    if seen.count(v2) >= 80:
                        break
                    await asyncio.sleep(0.01)
                state["stop"] = True

            await asyncio.gather(operator(), *(client_loop() for _ in range(16)))

    try:
        asyncio.run(run())
    finally:
        service.stop()
    assert failures == []
    assert seen[0] == "v0001" and seen[-1] == "v0002"
    first_v2 = seen.index("v0002")
    # in completion order, at most the batch in flight at the swap still answers v0001
    assert seen[first_v2:].count("v0001") <= 16
    assert seen.count("v0002") >= 80


# -- a real server on loopback --------------------------------------------------------------------


def test_real_uvicorn_server(scenario: Scenario, coef_file: Path, tmp_path: Path) -> None:
    import uvicorn

    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while not server.started:
            assert time.monotonic() - t0 < 20, "server did not start"
            time.sleep(0.02)
        with httpx.Client(base_url=base, timeout=10.0) as c:
            assert c.get("/healthz").json()["scenario"] == "svc-test"
            assert c.post("/v1/assign", json=job("u0")).status_code == 401
            r = c.post("/v1/assign", json=job("u0", input_tokens=-5), headers=AUTH)
            assert r.status_code == 422 and ["body", "input_tokens"] in [
                e["loc"] for e in r.json()["detail"]]
            r = c.post("/v1/assign", content=b"[" + b" " * (2 << 20) + b"]", headers=AUTH)
            assert r.status_code == 413
            r = c.post("/v1/assign", content=iter([b" " * (800 << 10)] * 2), headers=AUTH)
            assert r.status_code == 413
            assert c.post("/v1/assign", json=job("u0"), headers=AUTH).status_code == 200

        bodies = random_jobs(scenario, 300, seed=17, prefix="burst")

        async def burst() -> list[int]:
            sem = asyncio.Semaphore(25)
            async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30.0) as c:
                async def one(b: dict[str, Any]) -> int:
                    async with sem:
                        return (await c.post("/v1/assign", json=b)).status_code
                return list(await asyncio.gather(*(one(b) for b in bodies)))

        assert set(asyncio.run(burst())) == {200}
        with httpx.Client(base_url=base, timeout=10.0, headers=AUTH) as c:
            led = c.get("/v1/ledger").json()
            assert sum(led["assigned_jobs"].values()) == 301
            assert np.array_equal(np.asarray(led["used_ticks"]),
                                  app.state.greensched.ledger.used_ticks)
            assert 'status="413"' in c.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
    assert not thread.is_alive()


# -- modes, fallbacks, failed versions ------------------------------------------------------------


@pytest.fixture(scope="module")
def plan_dir(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from greensched.scheduler.planner import plan

    result = plan(scenario)
    assert result.is_ok
    return result.write(tmp_path_factory.mktemp("plan") / "plan")


def test_follow_mode_and_exploration_report_propensities(scenario: Scenario, coef_file: Path,
                                                         plan_dir: Path) -> None:
    jobs = random_jobs(scenario, 200, seed=21, prefix="f")
    for kw in ({"plan": plan_dir, "mode": "follow"},
               {"assign": AssignConfig(explore="epsilon", epsilon=0.5, seed=1)}):
        app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                       **kw))
        with TestClient(app) as c:
            body = c.post("/v1/assign", json={"jobs": jobs}, headers=AUTH).json()
        props = [x["propensity"] for x in body["assignments"]]
        assert all(0 < p <= 1 for p in props)
        if "plan" in kw:  # every job lands where the plan sends its (area, type, hour)
            alloc = pd.read_csv(plan_dir / "allocation.csv")
            share = alloc.set_index(["area", "query_type", "hour", "dc"])["fraction"]
            for j, x in zip(jobs, body["assignments"], strict=True):
                assert share[(j["area"], j["query_type"], x["hour"], x["dc"])] > 0
        else:
            assert min(props) < 1
    with pytest.raises(ServiceError, match="p90"):
        create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                 assign=AssignConfig(risk=True)))


def test_predict_jobs_fallback_equals_coefficients(scenario: Scenario) -> None:
    from greensched.service.predict import CoefficientPredictor, ModelPredictor

    class JobsOnly:
        """A predictor offering only predict_jobs (coefficients underneath)."""

        kind = "jobs-only"

        def predict_jobs(self, jobs: pd.DataFrame, scen: Scenario) -> xr.Dataset:
            return predictions_from_coefficients(scen, jobs)

    app_jobs = random_jobs(scenario, 30, seed=23, prefix="p")
    for j in app_jobs:  # predictions_from_coefficients needs known output tokens
        j.setdefault("output_tokens", 50)
    from greensched.service import GreenSchedService

    svc = GreenSchedService.__new__(GreenSchedService)
    svc._area_pos = {a: i for i, a in enumerate(scenario.areas)}
    svc._type_pos = {k: i for i, k in enumerate(scenario.query_types)}
    from greensched.service.schemas import request_models

    model = request_models(scenario, 1000)["AssignJob"]
    encoded = svc.encode([model.model_validate(j) for j in app_jobs])
    a = ModelPredictor(JobsOnly(), scenario).predict(encoded)
    b = CoefficientPredictor(scenario).predict(encoded)
    for v in ("energy_kwh", "service_s"):
        np.testing.assert_allclose(a[v], b[v], rtol=1e-12)


def test_a_broken_version_is_skipped(scenario: Scenario, xgb_dir: Path, tmp_path: Path) -> None:
    from greensched.feedback.registry import ModelRegistry

    reg = ModelRegistry(tmp_path / "registry")
    reg.promote(reg.register(xgb_dir))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    app = create_app(ServiceConfig(scenario=scenario, registry=reg.root, api_key=KEY,
                                   poll_interval_s=0.02))
    with TestClient(app) as c:
        reg.promote(reg.register(broken))
        hot = app.state.greensched._hot
        t0 = time.monotonic()
        while "v0002" not in hot.failed and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        assert "v0002" in hot.failed
        r = c.post("/v1/assign", json=job("bv"), headers=AUTH)
        assert r.status_code == 200 and r.json()["model_version"] == "v0001"
