"""The service under attack (issue 17): JSON depth limits, failed-auth rate limit, keys in the
URL, busy stores (503 + Retry-After), slow clients and the connection bound on a real uvicorn
server, registry name checks and fall-back, the OpenAPI schema, and a property-based fuzz of
the HTTP API (zero 5xx, every response conforms to the schema)."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
pytest.importorskip("prometheus_client", reason="the service needs the 'service' extra")

import jsonschema
import xarray as xr
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greensched.feedback.registry import ModelRegistry, RegistryError, check_version_name
from greensched.scenario import Scenario, save_coefficients
from greensched.service import ServiceConfig, create_app
from greensched.service.serve import RedactKeys, timed_protocol
from greensched.synth import synthesize

KEY = "hardening-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return synthesize(dcs=3, areas=2, types=2, hours=4, seed=5, name="hard-test")


@pytest.fixture(scope="module")
def coef_file(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    coef = xr.Dataset({"energy_kwh_per_query": scenario.energy_kwh_per_query(),
                       "proc_delay_s_per_query": scenario.proc_delay_s_per_query()})
    return save_coefficients(coef, tmp_path_factory.mktemp("coef") / "coefficients.csv")


def job(i: int | str, **kw: Any) -> dict[str, Any]:
    return {"job_id": str(i), "area": "area000", "query_type": "type0", "input_tokens": 200,
            "output_tokens": 100, "hour": 1, **kw}


def outcome(i: int | str, **kw: Any) -> dict[str, Any]:
    return {**job(i), "dc": "dc000", "model_version": "m1", "pred_energy_kwh": 0.01,
            "pred_service_s": 2.0, "energy_kwh": 0.012, "service_s": 2.2, **kw}


@pytest.fixture(scope="module")
def client(scenario: Scenario, coef_file: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    d = tmp_path_factory.mktemp("svc")
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                   store=d / "outcomes.sqlite",
                                   ledger=f"sqlite:///{d / 'ledger.sqlite'}",
                                   auth_failures_per_min=0))
    with TestClient(app) as c:
        yield c


# -- JSON depth -----------------------------------------------------------------------------------


def test_deep_json_is_422_naming_the_field(client: TestClient) -> None:
    body = "[" * 2000 + "]" * 2000
    r = client.post("/v1/assign", content=body,
                    headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    d = r.json()["detail"][0]
    assert d["type"] == "json_too_deep" and d["loc"][:3] == ["body", 0, 0]
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    text = json.dumps(outcome("deep", features=None))[:-1] + ', "features": ' + (
        '{"a": ' * 5000 + "1" + "}" * 5000) + "}"
    text = text.replace('"features": null, ', "")
    r = client.post("/v1/outcomes", content=text,
                    headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422
    loc = r.json()["detail"][0]["loc"]
    assert loc[:4] == ["body", "features", "a", "a"] and len(loc) == 33
    # moderately deep (decodable): the same answer, from the parsed value
    r = client.post("/v1/outcomes", json=outcome("d40", features=json.loads(
        '{"b": ' * 40 + "1" + "}" * 40)), headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "features", "b"]
    ok = client.post("/v1/outcomes", json=outcome("d3", features={"x": {"y": [1, 2]}}),
                     headers=AUTH)
    assert ok.status_code == 200, ok.text


# -- authentication -------------------------------------------------------------------------------


def test_failed_auth_is_rate_limited(scenario: Scenario, coef_file: Path) -> None:
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                   auth_failures_per_min=3))
    with TestClient(app) as c:
        for _ in range(3):
            assert c.post("/v1/assign", json=job(1), headers={"X-API-Key": "wrong"}
                          ).status_code == 401
        r = c.post("/v1/assign", json=job(1), headers={"X-API-Key": "wrong"})
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        # while blocked even the right key waits: no oracle for a guesser
        assert c.post("/v1/assign", json=job(1), headers=AUTH).status_code == 429
        assert c.get("/healthz").status_code == 200  # probes are not blocked
        assert "greensched_rate_limited_requests_total 2.0" in c.get("/metrics").text


def test_a_key_in_the_url_is_refused_and_never_logged(client: TestClient) -> None:
    r = client.get(f"/v1/ledger?api_key={KEY}", headers=AUTH)
    assert r.status_code == 400 and "X-API-Key header" in r.json()["detail"]
    assert client.get("/healthz?token=abc").status_code == 400
    assert client.get("/healthz?verbose=1").status_code == 200
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                            '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5000", "GET", f"/v1/ledger?x=1&api_key={KEY}", "1.1",
                             400), None)
    assert RedactKeys().filter(rec)
    assert KEY not in rec.getMessage() and "api_key=REDACTED" in rec.getMessage()


# -- busy stores ----------------------------------------------------------------------------------


def test_locked_stores_give_503_with_retry_after(scenario: Scenario, coef_file: Path,
                                                 tmp_path: Path) -> None:
    store, ledger = tmp_path / "o.sqlite", tmp_path / "l.sqlite"
    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY,
                                   store=store, ledger=f"sqlite:///{ledger}",
                                   store_busy_timeout_s=0.2))
    with TestClient(app) as c:
        for path, call in ((store, lambda: c.post("/v1/outcomes", json=outcome("o1"),
                                                  headers=AUTH)),
                           (ledger, lambda: c.post("/v1/assign", json=job("a1"), headers=AUTH))):
            lock = sqlite3.connect(path, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                r = call()
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1" and "busy" in r.json()["detail"]
            finally:
                lock.execute("ROLLBACK")
                lock.close()
            assert call().status_code == 200  # served once the lock is gone


# -- a real server: slow clients, connection bound, access log -----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.parametrize("impl", ["h11", "httptools"])
def test_slow_clients_and_connection_bound(scenario: Scenario, coef_file: Path,
                                          caplog: pytest.LogCaptureFixture, impl: str) -> None:
    import httpx
    import uvicorn

    if impl == "httptools":
        pytest.importorskip("httptools")

    app = create_app(ServiceConfig(scenario=scenario, coefficients=coef_file, api_key=KEY))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           log_level="info", access_log=True,
                                           http=timed_protocol(0.6, 4, impl),
                                           timeout_keep_alive=1))
    logging.getLogger("uvicorn.access").addFilter(RedactKeys())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        while not server.started and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            r = httpx.get(f"http://127.0.0.1:{port}/healthz?api_key=SECRET-IN-URL")
        assert r.status_code == 400
        assert "SECRET-IN-URL" not in caplog.text
        # a client that never finishes its request is cut off
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"POST /v1/assign HTTP/1.1\r\nHost: x\r\n")  # headers never end
            t1 = time.monotonic()
            assert _closed_within(slow, 5.0)
            assert 0.4 < time.monotonic() - t1 < 3.0
        # more than 4 open connections: the extra ones are closed at once
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            time.sleep(0.1)
            closed = [_closed_within(s, 0.15) for s in socks]
        finally:
            for s in socks:
                s.close()
        # (a connection of the requests above may still be winding down on the server)
        assert not any(closed[:3]) and all(closed[4:])
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/assign", json=job("real"), headers=AUTH)
        assert ok.status_code == 200 and ok.json()["dc"] is not None
    finally:
        server.should_exit = True
        thread.join(10)


# -- registry -------------------------------------------------------------------------------------


def test_registry_names_and_fall_back(scenario: Scenario, tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    from greensched.predictor.synthetic import synthetic_dataset
    from greensched.predictor.xgb import XGBoostPredictor

    for bad in ("../../evil", "/etc", "a/b", "..", "v..1", "", ".hidden"):
        with pytest.raises(RegistryError, match="invalid model version name"):
            check_version_name(bad)
    df, _ = synthetic_dataset(scenario, 80, seed=1, noise=0.02)
    good = XGBoostPredictor(n_estimators=5, action_n_estimators=2, max_depth=2, n_jobs=1
                            ).fit(df).save(tmp_path / "good")
    reg = ModelRegistry(tmp_path / "registry")
    reg.promote(reg.register(good))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"kind": "xgboost"}')
    reg.promote(reg.register(broken))  # v0002 does not load
    with pytest.raises(RegistryError, match="invalid model version name"):
        reg.promote("../../evil")
    for current, why in (("v0002", "v0002"), ("../../evil", "invalid model version name")):
        (reg.root / "CURRENT").write_text(current + "\n")
        app = create_app(ServiceConfig(scenario=scenario, registry=reg.root, api_key=KEY,
                                       poll_interval_s=0.05))
        with TestClient(app) as c:
            h = c.get("/healthz").json()
            assert h["promoted_version"] == current and h["serving_version"] == "v0001"
            assert why in h["last_load_error"]
            assert c.post("/v1/assign", json=job("r"), headers=AUTH).json()[
                "model_version"] == "v0001"
            text = c.get("/metrics").text
            assert 'serving_version="v0001"' in text and "greensched_model_load_failing 1.0" in text
            (reg.root / "CURRENT").write_text("v0001\n")  # hot swap back to a good one
            t0 = time.monotonic()
            while c.get("/healthz").json()["promoted_version"] != "v0001" and (
                    time.monotonic() - t0 < 10):
                time.sleep(0.05)
            assert "greensched_model_load_failing 0.0" in c.get("/metrics").text


# -- OpenAPI and the fuzz -----------------------------------------------------------------------


def test_openapi_documents_errors_and_the_hour_rule(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/assign"]["post"]
    assert {"200", "401", "409", "413", "422", "429", "503"} <= set(op["responses"])
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ValidationProblem")
    assert "Retry-After" in op["responses"]["503"]["headers"]
    job_schema = doc["components"]["schemas"]["AssignJob"]
    assert [a["required"] for a in job_schema["anyOf"]] == [["hour"], ["arrival_s"]]
    validator = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/AssignJob",
                                                 "components": doc["components"]})
    assert validator.is_valid(job(1)) and not validator.is_valid(
        {k: v for k, v in job(1).items() if k != "hour"})


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False), st.text(max_size=12))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _mutated(base: dict[str, Any]) -> Any:
    keys = sorted(base)
    return st.builds(lambda drop, changes: {**{k: v for k, v in base.items() if k not in drop},
                                            **changes},
                     st.sets(st.sampled_from(keys), max_size=3),
                     st.dictionaries(st.sampled_from([*keys, "extra"]), _json, max_size=3))


_bodies = st.one_of(_json, _mutated(job("f")), _mutated(outcome("f")),
                    st.builds(lambda js: {"jobs": js}, st.lists(_mutated(job("g")), max_size=3)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/assign", "/v1/outcomes"]), body=_bodies)
def test_fuzz_no_5xx_and_responses_follow_the_schema(client: TestClient, path: str,
                                                     body: Any) -> None:
    doc = _openapi(client)
    r = client.post(path, content=json.dumps(body), headers={
        **AUTH, "content-type": "application/json"})
    assert r.status_code < 500, r.text
    responses = doc["paths"][path]["post"]["responses"]
    assert str(r.status_code) in responses, f"undocumented status {r.status_code}: {r.text}"
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(
        r.json())


_DOC: dict[str, Any] = {}


def _openapi(client: TestClient) -> dict[str, Any]:
    if not _DOC:
        _DOC.update(client.get("/openapi.json").json())
    return _DOC
