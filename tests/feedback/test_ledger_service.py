"""The service with a durable capacity ledger (``ServiceConfig(ledger=...)``).

* a restart keeps the capacity and the answers given per job id (issue 17, item 1: the same 600
  job ids do not place again, a re-sent job id reserves nothing);
* ``kill -9`` of the server at random points during a bounded loopback load (3 rounds × 200
  requests here; ``bench/bench_service.py --kill-rounds`` runs 10 × 2000): after each restart no
  job id is placed twice, the ledger equals the acknowledged reservations exactly, and no
  acknowledged outcome is missing;
* two service processes sharing one throw-away PostgreSQL ledger, hammered on the same scarce
  hour, never accept more than the capacity.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service needs the 'service' extra")
pytest.importorskip("prometheus_client", reason="the service needs the 'service' extra")

import httpx
import xarray as xr
from fastapi.testclient import TestClient
from ledger_server import KEY, scenario

from greensched.feedback.ledger import DurableLedger
from greensched.feedback.store import OutcomeStore
from greensched.scenario import Scenario, save_coefficients
from greensched.scheduler.assign import CapacityLedger
from greensched.service import ServiceConfig, create_app

HERE = Path(__file__).resolve().parent
AUTH = {"X-API-Key": KEY}


def jobs_for(scen: Scenario, n: int, seed: int, prefix: str, hour: int | None = None
             ) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"job_id": f"{prefix}{i}", "area": scen.areas[int(rng.integers(3))],
             "query_type": scen.query_types[int(rng.integers(3))],
             "input_tokens": int(rng.integers(50, 400)), "output_tokens": int(rng.integers(1, 200)),
             "hour": int(rng.integers(scen.hours)) if hour is None else hour}
            for i in range(n)]


def job_ticks(scen: Scenario, ledger: CapacityLedger, job: dict[str, Any]) -> np.ndarray:
    upt = scen.ds["units_per_token"].sel(query_type=job["query_type"]).sel(
        resource=ledger.resources).values
    return ledger.to_ticks(upt * (job["input_tokens"] + job["output_tokens"]))


def expected_used(scen: Scenario, jobs: dict[str, dict[str, Any]],
                  answers: dict[str, dict[str, Any]], released: set[str]) -> np.ndarray:
    """Sum of the acknowledged, not released reservations per (hour, dc, resource)."""
    ledger = CapacityLedger.from_scenario(scen)
    out = np.zeros_like(ledger.capacity_ticks)
    for jid, a in answers.items():
        if a["dc"] is not None and jid not in released:
            out[a["hour"], ledger.dc_index(a["dc"])] += job_ticks(scen, ledger, jobs[jid])
    return out


def outcome_of(job: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    return {**job, "dc": answer["dc"], "model_version": answer["model_version"],
            "pred_energy_kwh": answer["predicted_energy_kwh"],
            "pred_service_s": answer["predicted_service_s"],
            "energy_kwh": answer["predicted_energy_kwh"] * 1.1,
            "service_s": answer["predicted_service_s"] * 0.9}


@pytest.fixture(scope="module")
def coef_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("coef")
    s = scenario(2000)
    save_coefficients(xr.Dataset({"energy_kwh_per_query": s.energy_kwh_per_query(),
                                  "proc_delay_s_per_query": s.proc_delay_s_per_query()}),
                      d / "coefficients.csv")
    return d


def test_restart_keeps_capacity_and_answers(coef_dir: Path, tmp_path: Path) -> None:
    scen = scenario(2000)  # about 40 such jobs fit in hour 1
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    jobs = jobs_for(scen, 600, seed=1, prefix="j", hour=1)

    def app() -> Any:
        return create_app(ServiceConfig(scenario=scen, coefficients=coef_dir / "coefficients.csv",
                                        api_key=KEY, ledger=ledger, remember_jobs=0))

    with TestClient(app()) as c:
        first = c.post("/v1/assign", json={"jobs": jobs}, headers=AUTH).json()["assignments"]
        used_before = c.get("/v1/ledger", headers=AUTH).json()["used_ticks"]
    placed = [a for a in first if a["dc"] is not None]
    assert 0 < len(placed) < 100 and sum(a["reason"] == "capacity" for a in first) > 400
    with TestClient(app()) as c:  # a restart: a new process' worth of state, same ledger
        assert c.get("/v1/ledger", headers=AUTH).json()["used_ticks"] == used_before
        again = c.post("/v1/assign", json={"jobs": jobs}, headers=AUTH).json()["assignments"]
        assert again == first  # same answers, nothing placed again
        one = c.post("/v1/assign", json=jobs[first.index(placed[0])], headers=AUTH).json()
        assert one == placed[0]
        changed = {**jobs[0], "input_tokens": jobs[0]["input_tokens"] + 1}
        assert c.post("/v1/assign", json=changed, headers=AUTH).status_code == 409
        assert c.get("/v1/ledger", headers=AUTH).json()["used_ticks"] == used_before
        health = c.get("/healthz").json()
        assert health["ledger"]["kind"] == "sqlite"


# -- kill -9 under load ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port: int, ledger: str, store: str, workdir: Path, divisor: float
           ) -> subprocess.Popen[str]:
    log_path = workdir / f"server-{port}.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "ledger_server.py"), str(port), ledger, store,
             str(workdir), str(divisor)],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(HERE.parents[1] / p) for p in
                 (".", "predictor", "scheduler", "feedback", "eval")])})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.stdout.close()
    if line.strip() != "ready":
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"server did not start: {log_path.read_text()}")
    return proc


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


def _load(port: int, jobs: list[dict[str, Any]], answers: dict[str, dict[str, Any]],
          outcomes: set[str], *, outcome_every: int = 5, kill: subprocess.Popen[str] | None = None,
          kill_after: int = 0, workers: int = 8) -> None:
    """Send each job once (and an outcome for every ``outcome_every``-th placed job), recording
    what was acknowledged; with ``kill``, SIGKILL it after ``kill_after`` acknowledgements."""
    lock = threading.Lock()
    killed = threading.Event()
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH,
                                            timeout=30.0)
            with lock:
                clients.append(c)
        return c

    def one(i_job: tuple[int, dict[str, Any]]) -> None:
        i, job = i_job
        try:
            c = client()
            a = answers.get(job["job_id"])
            if a is None:
                r = c.post("/v1/assign", json=job)
                if r.status_code != 200:
                    assert killed.is_set() or r.status_code == 503, r.text
                    return
                a = r.json()
                with lock:
                    answers[job["job_id"]] = a
                    if kill is not None and len(answers) >= kill_after and not killed.is_set():
                        killed.set()
                        os.kill(kill.pid, signal.SIGKILL)
            if a["dc"] is not None and i % outcome_every == 0 and job["job_id"] not in outcomes:
                r = c.post("/v1/outcomes", json=outcome_of(job, a))
                if r.status_code == 200:
                    with lock:
                        outcomes.add(job["job_id"])
        except httpx.TransportError:
            assert killed.is_set(), "a request failed while the server was up"

    try:
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(one, enumerate(jobs)))
    finally:
        for c in clients:
            c.close()


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_and_places_nothing_twice(
        tmp_path: Path, servers: list[subprocess.Popen[str]]) -> None:
    divisor = 300.0
    scen = scenario(divisor)
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    store = str(tmp_path / "outcomes.sqlite")
    port = _free_port()
    rng = np.random.default_rng(17)
    jobs: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}
    outcomes: set[str] = set()
    servers.append(_start(port, ledger, store, tmp_path, divisor))
    for r in range(3):
        batch = jobs_for(scen, 200, seed=100 + r, prefix=f"r{r}-")
        jobs.update({j["job_id"]: j for j in batch})
        _load(port, batch, answers, outcomes, kill=servers[-1],
              kill_after=len(answers) + int(rng.integers(20, 150)))
        servers[-1].wait(10)
        assert servers[-1].returncode == -signal.SIGKILL
        servers.append(_start(port, ledger, store, tmp_path, divisor))
        acked_before = dict(answers)
        # the client retries what was not acknowledged (assignments and outcomes)
        _load(port, list(jobs.values()), answers, outcomes)
        assert len(answers) == len(jobs)
        for jid, a in acked_before.items():  # an acknowledged answer never changes
            assert answers[jid] == a
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as c:
            used = np.asarray(c.get("/v1/ledger").json()["used_ticks"])
            np.testing.assert_array_equal(used, expected_used(scen, jobs, answers, outcomes))
            # re-sending every job places nothing twice and changes nothing
            sample = list(jobs.values())
            resent = c.post("/v1/assign", json={"jobs": sample[:1000]}).json()["assignments"]
            assert resent == [answers[j["job_id"]] for j in sample[:1000]]
            np.testing.assert_array_equal(np.asarray(c.get("/v1/ledger").json()["used_ticks"]),
                                          used)
        with OutcomeStore.open(store, create=False) as st:
            stored = set(st.query()["job_id"])
        assert outcomes <= stored  # no acknowledged outcome is missing
    placed = sum(a["dc"] is not None for a in answers.values())
    assert placed > 100 and len(outcomes) > 30


@pytest.mark.slow
def test_two_replicas_on_one_postgresql_ledger_never_overbook(
        pg_server: Any, tmp_path: Path, servers: list[subprocess.Popen[str]]) -> None:
    divisor = 2000.0  # about 40 jobs fit in hour 1 in all
    scen = scenario(divisor)
    name, url = pg_server.create_schema()
    try:
        ports = [_free_port(), _free_port()]
        for port in ports:
            servers.append(_start(port, url, "", tmp_path, divisor))
        batch = jobs_for(scen, 300, seed=5, prefix="pg", hour=1)
        answers: list[dict[str, dict[str, Any]]] = [{}, {}]
        threads = [threading.Thread(target=_load, args=(ports[k], batch[k::2], answers[k],
                                                        set()), kwargs={"workers": 6})
                   for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        acked = {**answers[0], **answers[1]}
        assert len(acked) == len(batch)
        placed = [j for j, a in acked.items() if a["dc"] is not None]
        assert 10 < len(placed) < 100
        assert sum(a["reason"] == "capacity" for a in acked.values()) > 150
        mem = CapacityLedger.from_scenario(scen)
        led = DurableLedger.open(url, mem, scenario=scen.name)
        try:
            used = led.used_ticks()
            assert (used <= mem.capacity_ticks).all()
            jobs = {j["job_id"]: j for j in batch}
            np.testing.assert_array_equal(used, expected_used(scen, jobs, acked, set()))
            assert sorted(led.placed_jobs()) == sorted(placed)
        finally:
            led.close()
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(10)
        pg_server.drop_schema(name)
